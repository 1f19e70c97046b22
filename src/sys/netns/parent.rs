//! The shim's side of strict mode's spawn: the fork, the sockets the child
//! sends back, and the child waiting for the go ([`Waiting`]). The child's
//! side is `child`, the messages between them `message`.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    cmsg_space, recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use super::child;
use super::message::{decode_failure, EXEC_ERRNO_LEN, FAILURE_LEN, GO, READY};
use super::plan::Plan;
use super::{Isolated, NamespaceError, SocketSpec, MAX_SOCKETS};
use crate::sys::spawn::{Prepared, Steps};

/// Steps the parent makes, or that have no index in the child's report.
const SOCKETPAIR: &str = "socketpair";
const FORK: &str = "fork";
const RECEIVE: &str = "receive the sockets";
pub(super) const HANDSHAKE: &str = "handshake with the namespace child";

/// A child waiting inside its namespaces for the go: the parent's end of
/// the handshake. Dropped unused, it kills and reaps the child.
#[derive(Debug)]
pub(crate) struct Waiting {
    chan: Option<OwnedFd>,
    child: Pid,
}

/// [`super::spawn_isolated`] without the main-thread rule: the tests spawn
/// from their own threads, which outlive the children they spawn, and
/// [`super::probe`] never arms the death signal. `None`: exit at the go instead
/// of exec'ing.
pub(super) fn isolate(
    exec: Option<(&Prepared, Steps<'_>)>,
    sockets: &[SocketSpec],
) -> Result<Isolated, NamespaceError> {
    let plan = Plan::new(sockets)?;
    let parent_step = |step: &'static str| {
        move |errno| NamespaceError {
            step,
            errno,
            socket: None,
        }
    };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(parent_step(SOCKETPAIR))?;
    // SAFETY: the child makes only system calls through thin wrappers on
    // memory prepared before the fork (`plan`, `exec`, its own stack),
    // allocating nothing and taking no lock, so another thread of this
    // process holding the heap's or any lock at the fork cannot stall it;
    // it ends in exec or _exit, never returning into Rust code.
    match unsafe { fork() }.map_err(parent_step(FORK))? {
        ForkResult::Child => {
            drop(ours);
            // Out of the shim's process group at once: a Ctrl-Z at the
            // terminal while the child waits for the go must not stop it
            // (stopped, it would never read the go, and the shim would wait
            // on it for good). `sys::spawn`'s steps make the same call again
            // before exec, and hand it the terminal then.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            child::child_main(&plan, &theirs, exec)
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let waiting = Waiting {
                chan: Some(ours),
                child,
            };
            receive(&plan, waiting)
        }
    }
}

/// The parent's side, until the sockets arrive or the child reports a
/// failure.
fn receive(plan: &Plan, mut waiting: Waiting) -> Result<Isolated, NamespaceError> {
    let failed = |step: &'static str, errno: Errno| NamespaceError {
        step,
        errno,
        socket: None,
    };
    let Some(chan) = waiting.chan.as_ref() else {
        return Err(failed(HANDSHAKE, Errno::EBADF));
    };
    let mut message = [0u8; FAILURE_LEN];
    let mut control = vec![0u8; cmsg_space::<[RawFd; MAX_SOCKETS]>()];
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut message)];
        match recvmsg::<()>(
            chan.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(failed(RECEIVE, errno)),
            Ok(msg) => {
                let mut fds = Vec::new();
                // Own every descriptor that arrived before looking at the
                // rest, so none leaks on an error below.
                for cmsg in msg.cmsgs().map_err(|errno| failed(RECEIVE, errno))? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: descriptors the kernel just installed in
                        // this process for this message; nothing else
                        // refers to them.
                        fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    match &message[..len] {
        [READY] if fds.len() == plan.sockets.len() => Ok(Isolated {
            waiting,
            sockets: fds,
        }),
        [] => {
            waiting.chan = None;
            reap(waiting.child);
            Err(failed(HANDSHAKE, Errno::ECHILD))
        }
        report => {
            let error = decode_failure(report)
                .and_then(|failure| plan.error(failure))
                .unwrap_or(failed(HANDSHAKE, Errno::EBADMSG));
            // Drop kills (a no-op for a child that reported and exits) and
            // reaps.
            drop(waiting);
            Err(error)
        }
    }
}

impl Waiting {
    /// The child; after [`Waiting::start`] succeeds, the tool.
    pub(crate) fn pid(&self) -> Pid {
        self.child
    }

    /// Lets the child exec the tool, and returns once it has: an exec that
    /// failed (or a `sys::spawn` step before it) comes back as its errno,
    /// and the child is reaped; so is a child already gone when the go is
    /// sent (EPIPE). A child killed between the go and the exec is not an
    /// error here: the caller's wait sees how it ended, as with
    /// `sys::spawn::spawn`.
    pub(crate) fn start(mut self) -> io::Result<()> {
        let Some(chan) = self.chan.take() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let outcome = loop {
            match send(chan.as_raw_fd(), &[GO], MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                Err(errno) => break Err(errno),
                Ok(_) => break Ok(()),
            }
        }
        .and_then(|()| {
            let mut errno = [0u8; EXEC_ERRNO_LEN];
            loop {
                match nix::unistd::read(&chan, &mut errno) {
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                    Ok(0) => return Ok(()),
                    Ok(EXEC_ERRNO_LEN) => return Err(Errno::from_raw(i32::from_ne_bytes(errno))),
                    Ok(_) => return Err(Errno::EBADMSG),
                }
            }
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(errno) => {
                let _ = kill(self.child, Signal::SIGKILL);
                reap(self.child);
                Err(io::Error::from(errno))
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.chan.take().is_some() {
            let _ = kill(self.child, Signal::SIGKILL);
            reap(self.child);
        }
    }
}

fn reap(child: Pid) {
    while let Err(Errno::EINTR) = waitpid(child, None) {}
}
