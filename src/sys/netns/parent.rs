//! The shim's side of strict mode's spawn: the fork, the two reports (the
//! namespace child's sockets and pids, the tool's armed state), and the
//! tool waiting for the go ([`Waiting`]). The children's side is `child`
//! (and `init`), the messages between them `message`.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    cmsg_space, recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use super::child::{self, Channels};
use super::message::{decode_failure, decode_ready, ARMED, EXEC_ERRNO_LEN, FAILURE_LEN, GO, READY_LEN};
use super::plan::Plan;
use super::{Isolated, Layers, NamespaceError, SocketSpec, MAX_SOCKETS};
use crate::sys::spawn::{Prepared, Steps};

/// Steps the parent makes, or that have no index in the child's report.
const SOCKETPAIR: &str = "socketpair";
const FORK: &str = "fork";
const RECEIVE: &str = "receive the sockets";
pub(super) const HANDSHAKE: &str = "handshake with the namespace child";

/// The tool's process, waiting inside its namespaces for the go: the
/// parent's end of the handshake. Dropped unused, it kills and reaps the
/// tool and the namespace's init.
#[derive(Debug)]
pub(crate) struct Waiting {
    chan: Option<OwnedFd>,
    tool: Pid,
    init: Option<Pid>,
    /// Until the tool has exec'd, dropping this ends the children.
    end_on_drop: bool,
}

/// [`super::spawn_isolated`] without the main-thread rule: the tests spawn
/// from their own threads, which outlive the children they spawn, and
/// [`super::probe`] never arms the death signal. `None`: exit at the go
/// instead of exec'ing.
pub(super) fn isolate(
    exec: Option<(&Prepared, Steps<'_>)>,
    sockets: &[SocketSpec],
    layers: &Layers,
) -> Result<Isolated, NamespaceError> {
    let plan = Plan::new(sockets, layers)?;
    let pair = || {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|errno| NamespaceError::parent(SOCKETPAIR, errno))
    };
    let (namespace_ours, namespace_theirs) = pair()?;
    let (tool_ours, tool_theirs) = pair()?;
    // SAFETY: the child makes only system calls through thin wrappers on
    // memory prepared before the fork (`plan`, `exec`, its own stack),
    // allocating nothing and taking no lock, so another thread of this
    // process holding the heap's or any lock at the fork cannot stall it;
    // it ends in exec or _exit, never returning into Rust code.
    match unsafe { fork() }.map_err(|errno| NamespaceError::parent(FORK, errno))? {
        ForkResult::Child => {
            drop((namespace_ours, tool_ours));
            // Out of the shim's process group at once: a Ctrl-Z at the
            // terminal while the child waits for the go must not stop it
            // (stopped, it would never read the go, and the shim would wait
            // on it for good). The tool's process joins a group of its own
            // before it reports, and the shim hands it the terminal.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let chans = Channels {
                namespace: &namespace_theirs,
                tool: &tool_theirs,
            };
            child::child_main(&plan, chans, exec)
        }
        ForkResult::Parent { child } => {
            drop((namespace_theirs, tool_theirs));
            receive(&plan, child, &namespace_ours, tool_ours)
        }
    }
}

/// One message and the descriptors it carried (owned at once, so none
/// leaks on an error after). An empty message is EOF.
fn receive_message(chan: &OwnedFd, message: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), Errno> {
    let mut control = vec![0u8; cmsg_space::<[RawFd; MAX_SOCKETS]>()];
    loop {
        let mut iov = [IoSliceMut::new(message)];
        match recvmsg::<()>(
            chan.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: descriptors the kernel just installed in
                        // this process for this message; nothing else
                        // refers to them.
                        fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                return Ok((msg.bytes, fds));
            }
        }
    }
}

/// The parent's side, until the tool is armed or a child reports a
/// failure. `namespace_child` is the fork: reaped here when it is not the
/// tool itself.
fn receive(
    plan: &Plan,
    namespace_child: Pid,
    namespace_chan: &OwnedFd,
    tool_chan: OwnedFd,
) -> Result<Isolated, NamespaceError> {
    let failed = |step: &'static str| move |errno: Errno| NamespaceError::parent(step, errno);
    let report = |bytes: &[u8]| {
        decode_failure(bytes)
            .and_then(|failure| plan.error(failure))
            .unwrap_or(NamespaceError::parent(HANDSHAKE, Errno::EBADMSG))
    };
    // Until the namespace child has reported, it is the one to reap.
    let mut waiting = Waiting {
        chan: None,
        tool: namespace_child,
        init: None,
        end_on_drop: true,
    };
    let mut message = [0u8; if FAILURE_LEN > READY_LEN {
        FAILURE_LEN
    } else {
        READY_LEN
    }];
    let (len, sockets) = receive_message(namespace_chan, &mut message).map_err(failed(RECEIVE))?;
    let (tool, init) = match decode_ready(&message[..len]) {
        Some(pids) if sockets.len() == plan.sockets.len() => pids,
        _ if len == 0 => return Err(NamespaceError::parent(HANDSHAKE, Errno::ECHILD)),
        _ => return Err(report(&message[..len])),
    };
    if tool != 0 {
        // The PID layer: the namespace child made the init and the tool as
        // this process's children and exits; the tool is the one to wait for.
        waiting.tool = Pid::from_raw(tool);
        waiting.init = Some(Pid::from_raw(init));
        reap(namespace_child);
    }
    let (len, mut listener) = receive_message(&tool_chan, &mut message).map_err(failed(RECEIVE))?;
    match &message[..len] {
        [ARMED] if listener.len() <= 1 => {
            waiting.chan = Some(tool_chan);
            Ok(Isolated {
                init: waiting.init,
                waiting,
                sockets,
                unix_listener: listener.pop(),
            })
        }
        [] => Err(NamespaceError::parent(HANDSHAKE, Errno::ECHILD)),
        bytes => Err(report(bytes)),
    }
}

impl Waiting {
    /// The tool's process; after [`Waiting::start`] succeeds, the tool.
    pub(crate) fn pid(&self) -> Pid {
        self.tool
    }

    /// Lets the tool exec, and returns once it has: an exec that failed
    /// (or a step before it) comes back as its errno, and the tool is
    /// reaped; so is a tool already gone when the go is sent (EPIPE). A
    /// tool killed between the go and the exec is not an error here: the
    /// caller's wait sees how it ended, as with `sys::spawn::spawn`.
    ///
    /// `terminal` (the controlling terminal and the shim's group): if that
    /// group is the terminal's foreground group, the tool's group (it made
    /// one of its own before it reported) takes its place before the go,
    /// as sudo does; inside a PID namespace the tool could not see the
    /// shim's group to do it itself. Returns whether it did.
    pub(crate) fn start(mut self, terminal: Option<(BorrowedFd<'_>, Pid)>) -> io::Result<bool> {
        let Some(chan) = self.chan.take() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let took_terminal = terminal.is_some_and(|(tty, shim_group)| {
            nix::unistd::tcgetpgrp(tty) == Ok(shim_group) && nix::unistd::tcsetpgrp(tty, self.tool).is_ok()
        });
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
            Ok(()) => {
                self.end_on_drop = false;
                Ok(took_terminal)
            }
            // Drop ends the children.
            Err(errno) => Err(io::Error::from(errno)),
        }
    }

    /// Kills and reaps the tool and the init.
    fn end(&mut self) {
        for pid in std::iter::once(self.tool).chain(self.init) {
            let _ = kill(pid, Signal::SIGKILL);
            reap(pid);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Not started, or failed before the exec: nothing may run.
        if self.end_on_drop {
            self.end();
        }
    }
}

fn reap(child: Pid) {
    while let Err(Errno::EINTR) = waitpid(child, None) {}
}
