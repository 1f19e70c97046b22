//! Strict mode's primitive: start a tool inside a new user and network
//! namespace where every address is local, and hand the sockets made in
//! there to the parent, which stays in the host's namespace.
//!
//! [`spawn_isolated`] forks a child that, before the tool runs:
//! 1. unshares a user and a network namespace (`CLONE_NEWUSER |
//!    CLONE_NEWNET`) and maps the effective uid and gid onto themselves
//!    (`setgroups` "deny", one-line `uid_map` and `gid_map`), so the tool
//!    sees the ids it would have seen outside; this works unprivileged;
//! 2. brings `lo` up and adds `local 0.0.0.0/0 dev lo table local` and
//!    `local ::/0 dev lo table local` over rtnetlink (`sys::netlink`), so a
//!    connect to any address lands on a socket bound there or is refused
//!    at once;
//! 3. creates the [`Sockets`] asked for (TCP listening, UDP bound; all
//!    nonblocking and close-on-exec; IPv6 ones `IPV6_V6ONLY`, so `[::]:443`
//!    and `0.0.0.0:443` coexist);
//! 4. unshares a second user namespace with the same one-line maps: the
//!    network namespace belongs to the first, so the tool, in the second,
//!    holds no capability over it (it cannot add routes, addresses or
//!    links), even as root;
//! 5. sends every socket to the parent in one message (SCM_RIGHTS) and
//!    waits for [`Go::start`]; EOF instead (the parent is gone or dropped
//!    the [`Isolated`]) ends it without running the tool;
//! 6. makes `sys::spawn`'s steps (death signal and parent check, process
//!    group, descriptor limit, signal mask and SIGPIPE) and execs.
//!
//! A step that fails is reported to the parent with its errno, and the
//! child exits: the parent reaps it and returns a [`NamespaceError`],
//! which names what refused, so the caller can run the tool behind the
//! plain proxy instead. An exec that fails comes back from
//! [`Go::start`] as its errno, as `sys::spawn::spawn` reports it.
//!
//! The child is a fork(2), not the vfork-style clone `sys::spawn` uses:
//! it must outlive the parent's return from [`spawn_isolated`], waiting
//! for the go. It allocates nothing and takes no lock (every buffer, map
//! line, netlink message and socket address is prepared before the fork),
//! so it is sound even in a process with other threads (the tests).

use std::ffi::CStr;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    bind, cmsg_space, listen, recvmsg, send, setsockopt, socket, socketpair, sockopt, AddressFamily, Backlog,
    ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use nix::libc;

use super::netlink;
use super::spawn::{self, Prepared, Steps};

/// At most this many sockets per namespace (the kernel's limit for one
/// SCM_RIGHTS message is 253); strict mode asks for a few dozen at most.
pub const MAX_SOCKETS: usize = 64;

/// The sockets to create inside the namespace, in the order they come
/// back in [`Isolated::tcp`] and [`Isolated::udp`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sockets {
    /// TCP sockets bound here and listening (backlog SOMAXCONN), e.g.
    /// 127.0.0.1:3128, 0.0.0.0:443, `[::]:443`.
    pub tcp_listen: Vec<SocketAddr>,
    /// UDP sockets bound here, e.g. 0.0.0.0:53.
    pub udp_bind: Vec<SocketAddr>,
}

/// Which kind of socket a step failed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A child waiting inside its namespaces, and the sockets it made there
/// (nonblocking and close-on-exec in this process too).
#[derive(Debug)]
pub struct Isolated {
    /// The child; after [`Go::start`] succeeds, the tool.
    pub child: Pid,
    /// One listening socket per [`Sockets::tcp_listen`], in order.
    pub tcp: Vec<OwnedFd>,
    /// One bound socket per [`Sockets::udp_bind`], in order.
    pub udp: Vec<OwnedFd>,
    /// Lets the child exec. Dropped unused, it kills and reaps the child.
    pub go: Go,
}

/// The parent's end of the handshake with an [`Isolated`] child.
#[derive(Debug)]
pub struct Go {
    chan: Option<OwnedFd>,
    child: Pid,
}

/// What refused, and why: the start row's `isolation_reason` and the one
/// line on stderr (via Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceError {
    /// The step, e.g. "unshare(CLONE_NEWUSER|CLONE_NEWNET)", "uid_map".
    pub step: &'static str,
    /// The errno it failed with.
    pub errno: Errno,
    /// The socket the step was for, if it was for one.
    pub socket: Option<(Proto, SocketAddr)>,
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.step)?;
        if let Some((proto, addr)) = self.socket {
            let proto = match proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            write!(f, " {proto} {addr}")?;
        }
        write!(f, ": {} ({:?})", self.errno.desc(), self.errno)
    }
}

impl std::error::Error for NamespaceError {}

/// The steps, in the order the child makes them; the child reports a
/// failure as the step's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Unshare,
    Setgroups,
    UidMap,
    GidMap,
    NetlinkSocket,
    NetlinkSend,
    NetlinkReceive,
    NetlinkReply,
    LinkUp,
    RouteV4,
    RouteV6,
    Socket,
    ReuseAddr,
    V6Only,
    Bind,
    Listen,
    InnerUnshare,
    InnerSetgroups,
    InnerUidMap,
    InnerGidMap,
    SendSockets,
}

const STEPS: [Step; 21] = [
    Step::Unshare,
    Step::Setgroups,
    Step::UidMap,
    Step::GidMap,
    Step::NetlinkSocket,
    Step::NetlinkSend,
    Step::NetlinkReceive,
    Step::NetlinkReply,
    Step::LinkUp,
    Step::RouteV4,
    Step::RouteV6,
    Step::Socket,
    Step::ReuseAddr,
    Step::V6Only,
    Step::Bind,
    Step::Listen,
    Step::InnerUnshare,
    Step::InnerSetgroups,
    Step::InnerUidMap,
    Step::InnerGidMap,
    Step::SendSockets,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Unshare => "unshare(CLONE_NEWUSER|CLONE_NEWNET)",
            Step::Setgroups => "setgroups",
            Step::UidMap => "uid_map",
            Step::GidMap => "gid_map",
            Step::NetlinkSocket => "socket(AF_NETLINK)",
            Step::NetlinkSend => "send to rtnetlink",
            Step::NetlinkReceive => "receive from rtnetlink",
            Step::NetlinkReply => "rtnetlink reply",
            Step::LinkUp => "ip link set lo up",
            Step::RouteV4 => "ip route add local 0.0.0.0/0 dev lo table local",
            Step::RouteV6 => "ip route add local ::/0 dev lo table local",
            Step::Socket => "socket",
            Step::ReuseAddr => "SO_REUSEADDR",
            Step::V6Only => "IPV6_V6ONLY",
            Step::Bind => "bind",
            Step::Listen => "listen",
            Step::InnerUnshare => "unshare(CLONE_NEWUSER) to drop capabilities",
            Step::InnerSetgroups => "inner setgroups",
            Step::InnerUidMap => "inner uid_map",
            Step::InnerGidMap => "inner gid_map",
            Step::SendSockets => "sendmsg(SCM_RIGHTS)",
        }
    }
}

/// Steps the parent makes, or that have no index in the child's report.
const SOCKETPAIR: &str = "socketpair";
const FORK: &str = "fork";
const RECEIVE: &str = "receive the sockets";
const HANDSHAKE: &str = "handshake with the namespace child";
const TOO_MANY: &str = "too many sockets";
const MAIN_THREAD: &str = "spawn from the main thread";

/// The child's messages: the sockets are ready (with SCM_RIGHTS), or a
/// step failed (`FAILED`, step index, socket index or `NO_SOCKET` as u16,
/// errno as i32, host order). The parent's go is `GO`; an exec failure
/// comes back as its errno (i32); success as EOF (the socket is
/// close-on-exec).
const READY: u8 = b'R';
const FAILED: u8 = b'F';
const GO: u8 = b'G';
const NO_SOCKET: u16 = u16::MAX;
const FAILURE_LEN: usize = 8;

/// A failure in the child: the step, the index of the socket it was for,
/// the errno.
type Failure = (Step, Option<usize>, Errno);

fn encode_failure((step, socket, errno): Failure) -> [u8; FAILURE_LEN] {
    let mut out = [0u8; FAILURE_LEN];
    out[0] = FAILED;
    out[1] = step as u8;
    let socket = socket.and_then(|i| u16::try_from(i).ok()).unwrap_or(NO_SOCKET);
    out[2..4].copy_from_slice(&socket.to_ne_bytes());
    out[4..8].copy_from_slice(&(errno as i32).to_ne_bytes());
    out
}

fn decode_failure(bytes: &[u8], plan: &Plan) -> Option<NamespaceError> {
    let [FAILED, step, s0, s1, e0, e1, e2, e3] = *bytes else {
        return None;
    };
    let step = *STEPS.get(usize::from(step))?;
    let socket = match u16::from_ne_bytes([s0, s1]) {
        NO_SOCKET => None,
        i => Some(plan.sockets.get(usize::from(i))?),
    };
    Some(NamespaceError {
        step: step.name(),
        errno: Errno::from_raw(i32::from_ne_bytes([e0, e1, e2, e3])),
        socket: socket.map(|s| (s.proto, s.requested)),
    })
}

/// `ID ID 1`: the one-line map of an id onto itself, which a process may
/// write for its own namespace without privilege.
fn map_line(id: u32) -> String {
    format!("{id} {id} 1\n")
}

/// Everything the child needs, prepared before the fork.
struct Plan {
    uid_map: String,
    gid_map: String,
    netlink: [u8; netlink::SETUP_LEN],
    sockets: Vec<Planned>,
    tcp: usize,
}

struct Planned {
    proto: Proto,
    requested: SocketAddr,
    family: AddressFamily,
    addr: SockaddrStorage,
}

impl Plan {
    fn new(sockets: &Sockets) -> Result<Plan, NamespaceError> {
        let planned = |proto: Proto| {
            move |requested: &SocketAddr| Planned {
                proto,
                requested: *requested,
                family: match requested {
                    SocketAddr::V4(_) => AddressFamily::Inet,
                    SocketAddr::V6(_) => AddressFamily::Inet6,
                },
                addr: SockaddrStorage::from(*requested),
            }
        };
        let all: Vec<Planned> = (sockets.tcp_listen.iter().map(planned(Proto::Tcp)))
            .chain(sockets.udp_bind.iter().map(planned(Proto::Udp)))
            .collect();
        if all.len() > MAX_SOCKETS {
            return Err(NamespaceError {
                step: TOO_MANY,
                errno: Errno::E2BIG,
                socket: None,
            });
        }
        Ok(Plan {
            uid_map: map_line(nix::unistd::geteuid().as_raw()),
            gid_map: map_line(nix::unistd::getegid().as_raw()),
            netlink: netlink::setup(),
            sockets: all,
            tcp: sockets.tcp_listen.len(),
        })
    }
}

/// Forks a child that makes the namespaces and `sockets` (see the module
/// doc), and returns once they are in this process's hands; the tool runs
/// on [`Go::start`]. Every refusal before that is a [`NamespaceError`] and
/// the child is gone.
///
/// Only from the main thread, as `sys::spawn::spawn`: the death signal the
/// child arms follows the thread that forked it.
pub fn spawn_isolated(
    program: &Prepared,
    steps: Steps<'_>,
    sockets: &Sockets,
) -> Result<Isolated, NamespaceError> {
    if !spawn::on_main_thread() {
        return Err(NamespaceError {
            step: MAIN_THREAD,
            errno: Errno::EINVAL,
            socket: None,
        });
    }
    isolate(Some((program, steps)), sockets)
}

/// Marks every socket this process inherited close-on-exec, so that the
/// tool in the namespace does not get them: a socket connected or bound in
/// the host's namespace (an IDE's, a CI agent's, systemd's `LISTEN_FDS`)
/// would be a way out. Pipes, files and terminals are left as inherited.
/// Returns how many it marked.
pub fn keep_inherited_sockets_from_the_tool() -> usize {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::stat::{fstat, SFlag};
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut marked = 0;
    for fd in fds {
        // SAFETY: `fd` was listed as open in /proc/self/fd a moment ago and
        // this process is single-threaded here (before the runtime exists),
        // so nothing closes it meanwhile; the borrow ends in this loop.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let is_socket = fstat(fd)
            .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK);
        let flags = fcntl(fd, FcntlArg::F_GETFD).map(FdFlag::from_bits_truncate);
        if let (true, Ok(flags)) = (is_socket, flags) {
            if !flags.contains(FdFlag::FD_CLOEXEC)
                && fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).is_ok()
            {
                marked += 1;
            }
        }
    }
    marked
}

/// Whether this process's network namespace is not init's: what a claim
/// to run inside a strict invocation's namespace (`CLI_GUARD_NETNS`, which
/// any process can set) is checked against before it labels a row. `false`
/// when init's cannot be read (another user's init, as an unprivileged
/// user in most containers): then the claim is not taken.
pub fn outside_init_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    match (id("/proc/self/ns/net"), id("/proc/1/ns/net")) {
        (Some(ours), Some(init)) => ours != init,
        _ => false,
    }
}

/// Makes this process not dumpable (`PR_SET_DUMPABLE` 0): no process
/// without CAP_SYS_PTRACE in its user namespace can ptrace it, read its
/// memory or take its descriptors (pidfd_getfd), same user or not. A
/// child's execve makes the child dumpable again.
pub fn not_dumpable() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// Whether this process can make the namespaces and routes (for
/// `cli-guard doctor`): a child goes as far as the go, then is killed.
/// Any thread: it never execs.
pub fn probe() -> Result<(), NamespaceError> {
    isolate(None, &Sockets::default()).map(drop)
}

/// [`spawn_isolated`] without the main-thread rule: the tests spawn from
/// their own threads, which outlive the children they spawn, and
/// [`probe`] never arms the death signal. `None`: exit at the go instead
/// of exec'ing.
fn isolate(exec: Option<(&Prepared, Steps<'_>)>, sockets: &Sockets) -> Result<Isolated, NamespaceError> {
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
            child_main(&plan, &theirs, exec)
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let go = Go {
                chan: Some(ours),
                child,
            };
            receive(&plan, go)
        }
    }
}

/// The parent's side, until the sockets arrive or the child reports a
/// failure.
fn receive(plan: &Plan, mut go: Go) -> Result<Isolated, NamespaceError> {
    let failed = |step: &'static str, errno: Errno| NamespaceError {
        step,
        errno,
        socket: None,
    };
    let Some(chan) = go.chan.as_ref() else {
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
        [READY] if fds.len() == plan.sockets.len() => {
            let mut tcp = fds;
            let udp = tcp.split_off(plan.tcp);
            Ok(Isolated {
                child: go.child,
                tcp,
                udp,
                go,
            })
        }
        [] => {
            go.chan = None;
            reap(go.child);
            Err(failed(HANDSHAKE, Errno::ECHILD))
        }
        report => {
            let error = decode_failure(report, plan).unwrap_or(failed(HANDSHAKE, Errno::EBADMSG));
            // Drop kills (a no-op for a child that reported and exits) and
            // reaps.
            drop(go);
            Err(error)
        }
    }
}

impl Go {
    /// Lets the child exec the tool, and returns once it has: an exec that
    /// failed (or a `sys::spawn` step before it) comes back as its errno,
    /// and the child is reaped; so is a child already gone when the go is
    /// sent (EPIPE). A child killed between the go and the exec is not an
    /// error here: the caller's wait sees how it ended, as with
    /// `sys::spawn::spawn`.
    pub fn start(mut self) -> io::Result<()> {
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
            let mut errno = [0u8; 4];
            loop {
                match nix::unistd::read(&chan, &mut errno) {
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                    Ok(0) => return Ok(()),
                    Ok(4) => return Err(Errno::from_raw(i32::from_ne_bytes(errno))),
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

impl Drop for Go {
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

/// The child: the namespace steps, the report, the go, exec. Never
/// returns.
fn child_main(plan: &Plan, chan: &OwnedFd, exec: Option<(&Prepared, Steps<'_>)>) -> ! {
    let send_all = |bytes: &[u8]| {
        while let Err(Errno::EINTR) = send(chan.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {}
    };
    if let Err(failure) = make_namespace(plan, chan) {
        send_all(&encode_failure(failure));
        exit_now(1);
    }
    let mut go = [0u8; 1];
    loop {
        match nix::unistd::read(chan, &mut go) {
            Err(Errno::EINTR) => continue,
            Ok(1) if go[0] == GO => break,
            // EOF (the parent is gone or dropped us) or nonsense: the tool
            // must not run.
            _ => exit_now(1),
        }
    }
    let Some((program, steps)) = exec else {
        exit_now(0);
    };
    // A fork child: the parent cannot see the flag, and learns whether the
    // tool took the terminal from the terminal itself.
    let took_terminal = std::sync::atomic::AtomicBool::new(false);
    let errno = spawn::in_child(program, steps, &took_terminal);
    send_all(&(errno as i32).to_ne_bytes());
    exit_now(127)
}

/// Ends the child at once: no atexit handlers or stdio flushing, which
/// belong to the parent's copy of the process.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) only ends the process; nothing of it runs after.
    unsafe { libc::_exit(code) }
}

/// Steps 1 to 5 of the module doc, in the child.
fn make_namespace(plan: &Plan, chan: &OwnedFd) -> Result<(), Failure> {
    let at = |step: Step| move |errno: Errno| (step, None, errno);
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(at(Step::Unshare))?;
    write_maps(plan, [Step::Setgroups, Step::UidMap, Step::GidMap])?;
    add_routes(plan)?;
    let mut fds: [Option<OwnedFd>; MAX_SOCKETS] = [const { None }; MAX_SOCKETS];
    for ((i, planned), slot) in plan.sockets.iter().enumerate().zip(fds.iter_mut()) {
        *slot = Some(make_socket(planned).map_err(|(step, errno)| (step, Some(i), errno))?);
    }
    unshare(CloneFlags::CLONE_NEWUSER).map_err(at(Step::InnerUnshare))?;
    write_maps(plan, [Step::InnerSetgroups, Step::InnerUidMap, Step::InnerGidMap])?;
    send_sockets(chan, &fds[..plan.sockets.len()]).map_err(at(Step::SendSockets))
    // `fds` closes here: the tool gets none of them (they are close-on-exec
    // in any case).
}

/// `setgroups` "deny" (required before an unprivileged `gid_map`), then
/// the one-line maps, each in one write as the kernel requires.
fn write_maps(plan: &Plan, [setgroups, uid, gid]: [Step; 3]) -> Result<(), Failure> {
    let files: [(&CStr, &[u8], Step); 3] = [
        (c"/proc/self/setgroups", b"deny", setgroups),
        (c"/proc/self/uid_map", plan.uid_map.as_bytes(), uid),
        (c"/proc/self/gid_map", plan.gid_map.as_bytes(), gid),
    ];
    for (path, bytes, step) in files {
        write_file(path, bytes).map_err(|errno| (step, None, errno))?;
    }
    Ok(())
}

fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    match nix::unistd::write(&fd, bytes)? {
        n if n == bytes.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// `lo` up and the two local default routes, one netlink datagram, then
/// every acknowledgement checked.
fn add_routes(plan: &Plan) -> Result<(), Failure> {
    let at = |step: Step| move |errno: Errno| (step, None, errno);
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(at(Step::NetlinkSocket))?;
    send(nl.as_raw_fd(), &plan.netlink, MsgFlags::empty()).map_err(at(Step::NetlinkSend))?;
    let request = |seq: u32| match seq {
        netlink::SEQ_LINK_UP => Some((0, Step::LinkUp)),
        netlink::SEQ_ROUTE_V4 => Some((1, Step::RouteV4)),
        netlink::SEQ_ROUTE_V6 => Some((2, Step::RouteV6)),
        _ => None,
    };
    let mut acked = [false; 3];
    let mut reply = [0u8; 4096];
    while acked.contains(&false) {
        let n = match nix::sys::socket::recv(nl.as_raw_fd(), &mut reply, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            other => other.map_err(at(Step::NetlinkReceive))?,
        };
        for ack in netlink::acks(&reply[..n]) {
            let (seq, error) = ack.map_err(|()| (Step::NetlinkReply, None, Errno::EBADMSG))?;
            let (index, step) = request(seq).ok_or((Step::NetlinkReply, None, Errno::EBADMSG))?;
            if error != 0 {
                return Err((step, None, Errno::from_raw(error)));
            }
            acked[index] = true;
        }
    }
    Ok(())
}

/// One socket of the plan: nonblocking and close-on-exec; TCP with
/// SO_REUSEADDR and listening; IPv6 with IPV6_V6ONLY. UDP gets no
/// SO_REUSEADDR: on UDP it would let a second socket bind the same port
/// and hide a duplicate in the plan.
fn make_socket(planned: &Planned) -> Result<OwnedFd, (Step, Errno)> {
    let at = |step: Step| move |errno: Errno| (step, errno);
    let kind = match planned.proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(
        planned.family,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(at(Step::Socket))?;
    if planned.proto == Proto::Tcp {
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(at(Step::ReuseAddr))?;
    }
    if planned.family == AddressFamily::Inet6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(at(Step::V6Only))?;
    }
    bind(fd.as_raw_fd(), &planned.addr).map_err(at(Step::Bind))?;
    if planned.proto == Proto::Tcp {
        listen(&fd, Backlog::MAXCONN).map_err(at(Step::Listen))?;
    }
    Ok(fd)
}

/// The space for one SCM_RIGHTS message of up to [`MAX_SOCKETS`]
/// descriptors.
const CONTROL_LEN: usize = cmsg_space::<[RawFd; MAX_SOCKETS]>();

/// A control buffer on the stack, aligned for `cmsghdr`.
#[repr(C)]
union Control {
    _align: libc::cmsghdr,
    bytes: [u8; CONTROL_LEN],
}

/// [`READY`] and every socket, in one sendmsg. By hand rather than with
/// nix's `sendmsg`, which allocates its control buffer: this runs in the
/// fork child, which must not allocate.
fn send_sockets(chan: &OwnedFd, fds: &[Option<OwnedFd>]) -> Result<(), Errno> {
    let mut raw = [-1 as RawFd; MAX_SOCKETS];
    let mut count = 0;
    for (slot, fd) in raw.iter_mut().zip(fds.iter().flatten()) {
        *slot = fd.as_raw_fd();
        count += 1;
    }
    let mut payload = [READY];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut control = Control {
        bytes: [0; CONTROL_LEN],
    };
    // SAFETY: msghdr is plain data; all zeros is a header without name,
    // data or control, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if count > 0 {
        let data_len = (count * size_of::<RawFd>()) as libc::c_uint;
        msg.msg_control = (&raw mut control).cast();
        // SAFETY: CMSG_SPACE is arithmetic; count <= MAX_SOCKETS, so the
        // space fits CONTROL_LEN.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as _;
        // SAFETY: msg_control points at `control`, aligned for cmsghdr and
        // msg_controllen long, so CMSG_FIRSTHDR returns a header inside it
        // with CMSG_LEN(data_len) bytes of room, into which the `count`
        // descriptors are copied byte by byte (CMSG_DATA need not be
        // aligned for RawFd).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(Errno::ENOBUFS);
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                data_len as usize,
            );
        }
    }
    loop {
        // SAFETY: `msg` points at `iov`, `payload` and `control`, all alive
        // for the call and set up above.
        let sent = unsafe { libc::sendmsg(chan.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match Errno::result(sent) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::{OsStr, OsString};
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::sys::wait::WaitStatus;

    #[test]
    fn map_lines_map_an_id_onto_itself() {
        assert_eq!(map_line(1000), "1000 1000 1\n");
        assert_eq!(map_line(0), "0 0 1\n");
        assert_eq!(map_line(u32::MAX), "4294967295 4294967295 1\n");
    }

    #[test]
    fn errors_name_the_step_the_socket_and_the_errno() {
        let err = NamespaceError {
            step: Step::Unshare.name(),
            errno: Errno::ENOSPC,
            socket: None,
        };
        assert_eq!(
            err.to_string(),
            "unshare(CLONE_NEWUSER|CLONE_NEWNET): No space left on device (ENOSPC)"
        );
        let err = NamespaceError {
            step: Step::Bind.name(),
            errno: Errno::EADDRINUSE,
            socket: Some((Proto::Udp, "[::]:53".parse().unwrap())),
        };
        assert_eq!(
            err.to_string(),
            "bind udp [::]:53: Address already in use (EADDRINUSE)"
        );
    }

    #[test]
    fn a_failure_report_round_trips_with_its_socket() {
        let plan = Plan::new(&Sockets {
            tcp_listen: vec!["0.0.0.0:443".parse().unwrap()],
            udp_bind: vec!["0.0.0.0:53".parse().unwrap()],
        })
        .unwrap();
        for step in STEPS {
            let report = encode_failure((step, Some(1), Errno::EACCES));
            let err = decode_failure(&report, &plan).unwrap();
            assert_eq!(err.step, step.name());
            assert_eq!(err.errno, Errno::EACCES);
            assert_eq!(err.socket, Some((Proto::Udp, "0.0.0.0:53".parse().unwrap())));
        }
        let report = encode_failure((Step::GidMap, None, Errno::EPERM));
        assert_eq!(decode_failure(&report, &plan).unwrap().socket, None);
        let mut bad = report;
        bad[1] = STEPS.len() as u8;
        assert_eq!(decode_failure(&bad, &plan), None, "no such step");
        assert_eq!(decode_failure(&report[..7], &plan), None);
    }

    #[test]
    fn too_many_sockets_are_refused_before_any_fork() {
        let sockets = Sockets {
            tcp_listen: (0..=MAX_SOCKETS as u16)
                .map(|p| SocketAddr::from(([0; 4], p)))
                .collect(),
            udp_bind: vec![],
        };
        let err = isolate(None, &sockets).unwrap_err();
        assert_eq!((err.step, err.errno), (TOO_MANY, Errno::E2BIG));
    }

    // What follows spawns for real: each child makes its namespaces.

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn steps() -> Steps<'static> {
        Steps {
            terminal: None,
            nofile: None,
            parent: nix::unistd::getpid(),
        }
    }

    fn bash(script: &str, out: &std::path::Path) -> Prepared {
        let env: BTreeMap<OsString, OsString> = [("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())]
            .into_iter()
            .collect();
        let argv = [
            OsStr::new("bash"),
            OsStr::new("-c"),
            OsStr::new(script),
            OsStr::new("bash"),
            out.as_os_str(),
        ];
        Prepared::new(OsStr::new("/bin/bash"), &argv, &env).unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("cli-guard-netns-{}-{n}-{name}", std::process::id()))
    }

    struct Ran {
        tcp: Vec<OwnedFd>,
        udp: Vec<OwnedFd>,
        /// The script's stdout and stderr.
        out: String,
    }

    /// Runs `script` (its output goes to "$1") in the namespaces with
    /// `sockets`, to its end: whatever it sent waits in the sockets' queues.
    fn run(script: &str, sockets: &Sockets) -> Ran {
        let out = scratch("out");
        let program = bash(&format!("exec >\"$1\" 2>&1\n{script}"), &out);
        let Isolated { child, tcp, udp, go } = isolate(Some((&program, steps())), sockets).unwrap();
        go.start().unwrap();
        assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        Ran { tcp, udp, out: text }
    }

    fn accept(listener: &OwnedFd) -> std::net::TcpStream {
        let fd = nix::sys::socket::accept(listener.as_raw_fd()).expect("a connection waiting");
        // SAFETY: the descriptor accept just returned, owned by nothing else.
        std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    #[test]
    fn the_tool_sees_its_own_uid_and_gid() {
        let ran = run(
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g",
            &Sockets::default(),
        );
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let fields: Vec<&str> = ran.out.split_whitespace().collect();
        let expected = [uid, uid, 1, gid, gid, 1, uid, gid].map(|n| n.to_string());
        assert_eq!(fields, expected, "{}", ran.out);
    }

    #[test]
    fn a_connect_to_any_address_lands_on_the_passed_listener() {
        let sockets = Sockets {
            tcp_listen: vec![addr("0.0.0.0:443"), addr("[::]:443"), addr("127.0.0.1:3128")],
            udp_bind: vec![],
        };
        let ran = run(
            "for to in 203.0.113.80/443 2001:db8::1/443 127.0.0.1/3128; do
                 exec 3<>/dev/tcp/$to && echo \"to $to\" >&3 && exec 3>&-
             done",
            &sockets,
        );
        assert_eq!(ran.out, "");
        let dialled = [
            ("203.0.113.80:443", "to 203.0.113.80/443\n"),
            ("[2001:db8::1]:443", "to 2001:db8::1/443\n"),
            ("127.0.0.1:3128", "to 127.0.0.1/3128\n"),
        ];
        for (listener, (local, said)) in ran.tcp.iter().zip(dialled) {
            let flags = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            assert!(OFlag::from_bits_retain(flags).contains(OFlag::O_NONBLOCK));
            let fd_flags = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert!(nix::fcntl::FdFlag::from_bits_retain(fd_flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC));
            let mut stream = accept(listener);
            assert_eq!(
                stream.local_addr().unwrap(),
                addr(local),
                "getsockname: the dialled address"
            );
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            assert_eq!(text, said);
        }
    }

    #[test]
    fn a_port_nobody_listens_on_is_refused_at_once() {
        let sockets = Sockets {
            tcp_listen: vec![addr("0.0.0.0:443")],
            udp_bind: vec![],
        };
        let ran = run(
            "(exec 3<>/dev/tcp/203.0.113.80/444); echo \"exit $?\"
             (exec 3<>/dev/tcp/2001:db8::1/443); echo \"exit $?\"",
            &sockets,
        );
        assert_eq!(
            ran.out.matches("connect: Connection refused").count(),
            2,
            "{}",
            ran.out
        );
        assert_eq!(ran.out.matches("exit 1").count(), 2, "{}", ran.out);
    }

    #[test]
    fn the_tool_cannot_change_its_network() {
        let ran = run(
            "ip route add 192.0.2.0/24 dev lo; echo \"route $?\"
             ip route del local default dev lo table local; echo \"del $?\"
             ip addr add 192.0.2.1/32 dev lo; echo \"addr $?\"
             ip link add cgtest0 type dummy; echo \"link $?\"
             ip link set lo down; echo \"down $?\"
             ip -4 route show table local; ip -6 route show table local",
            &Sockets::default(),
        );
        for refused in ["route 2", "del 2", "addr 2", "link 2", "down 2"] {
            assert!(ran.out.contains(refused), "{refused}: {}", ran.out);
        }
        assert_eq!(
            ran.out.matches("Operation not permitted").count(),
            5,
            "{}",
            ran.out
        );
        assert_eq!(
            ran.out.matches("local default dev lo").count(),
            2,
            "v4 and v6: {}",
            ran.out
        );
    }

    #[test]
    fn a_datagram_to_any_resolver_address_arrives_on_the_passed_socket() {
        let sockets = Sockets {
            tcp_listen: vec![addr("0.0.0.0:53")],
            udp_bind: vec![addr("0.0.0.0:53"), addr("[::]:53")],
        };
        let ran = run(
            "printf q4 >/dev/udp/10.255.255.53/53
             printf q6 >/dev/udp/2001:db8::53/53
             exec 3<>/dev/tcp/10.255.255.53/53 && printf t4 >&3",
            &sockets,
        );
        assert_eq!(ran.out, "");
        for (socket, sent) in ran.udp.into_iter().zip(["q4", "q6"]) {
            let socket = std::net::UdpSocket::from(socket);
            let mut buf = [0u8; 16];
            let (n, _) = socket.recv_from(&mut buf).expect("a datagram waiting");
            assert_eq!(&buf[..n], sent.as_bytes());
        }
        let mut text = String::new();
        accept(&ran.tcp[0]).read_to_string(&mut text).unwrap();
        assert_eq!(text, "t4");
    }

    #[test]
    fn a_failed_exec_comes_back_as_its_errno_and_the_child_is_reaped() {
        let program = Prepared::new(
            OsStr::new("/nonexistent/tool"),
            &[OsStr::new("tool")],
            &BTreeMap::new(),
        )
        .unwrap();
        let isolated = isolate(Some((&program, steps())), &Sockets::default()).unwrap();
        let child = isolated.child;
        let err = isolated.go.start().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(waitpid(child, None), Err(Errno::ECHILD));
    }

    #[test]
    fn without_the_go_the_tool_never_runs() {
        let out = scratch("ran");
        let program = bash("touch \"$1\"", &out);
        let isolated = isolate(Some((&program, steps())), &Sockets::default()).unwrap();
        let child = isolated.child;
        drop(isolated);
        assert_eq!(waitpid(child, None), Err(Errno::ECHILD), "reaped");
        assert!(!out.exists(), "the tool ran");
    }

    #[test]
    fn a_socket_that_cannot_be_made_is_named_in_the_error() {
        let sockets = Sockets {
            tcp_listen: vec![addr("0.0.0.0:443"), addr("0.0.0.0:443")],
            udp_bind: vec![],
        };
        let err = isolate(None, &sockets).unwrap_err();
        assert_eq!(
            err,
            NamespaceError {
                step: "bind",
                errno: Errno::EADDRINUSE,
                socket: Some((Proto::Tcp, addr("0.0.0.0:443"))),
            }
        );
    }

    #[test]
    fn the_probe_succeeds_where_namespaces_are_allowed() {
        assert_eq!(probe(), Ok(()));
    }

    #[test]
    fn spawning_off_the_main_thread_is_refused() {
        let err = std::thread::spawn(|| {
            let program = Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("true")], &BTreeMap::new())?;
            spawn_isolated(&program, steps(), &Sockets::default())
                .map(drop)
                .map_err(io::Error::other)
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().starts_with(MAIN_THREAD), "{err}");
    }

    /// Set in the environment of this test binary re-run by
    /// `a_namespace_limit_of_zero_refuses_with_enospc`.
    const LIMITED: &str = "NETNS_TEST_LIMITED";

    /// Runs this test binary's [`limited_helper`] in a user namespace of
    /// its own where `limit` (under /proc/sys/user) is 0.
    fn run_limited(limit: &str) -> std::process::Output {
        let uid_map = map_line_to_root(nix::unistd::geteuid().as_raw());
        let gid_map = map_line_to_root(nix::unistd::getegid().as_raw());
        let path = std::ffi::CString::new(format!("/proc/sys/user/{limit}")).unwrap();
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "sys::netns::tests::limited_helper", "--nocapture"])
            .env(LIMITED, limit);
        // SAFETY: the hook runs in the forked child before exec and makes
        // only system calls on buffers built above, allocating nothing
        // (io::Error from an errno does not allocate).
        unsafe {
            command.pre_exec(move || {
                unshare(CloneFlags::CLONE_NEWUSER)?;
                // Both ids mapped: a user namespace cannot be made by a
                // process whose uid or gid has no mapping (EPERM).
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
                write_file(&path, b"0\n")?;
                Ok(())
            });
        }
        command.output().unwrap()
    }

    /// `0 ID 1`: root inside, `id` outside, which may write the namespace
    /// limits there.
    fn map_line_to_root(id: u32) -> String {
        format!("0 {id} 1\n")
    }

    #[test]
    fn a_namespace_limit_of_zero_refuses_with_enospc() {
        for limit in ["max_user_namespaces", "max_net_namespaces"] {
            let output = run_limited(limit);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{limit}: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let expected = "refused: unshare(CLONE_NEWUSER|CLONE_NEWNET): No space left on device (ENOSPC)";
            assert!(stdout.contains(expected), "{limit}: {stdout}");
        }
    }

    /// Does its work only when re-run by
    /// `a_namespace_limit_of_zero_refuses_with_enospc`.
    #[test]
    fn limited_helper() {
        if std::env::var_os(LIMITED).is_none() {
            return;
        }
        let program =
            Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("true")], &BTreeMap::new()).unwrap();
        let err = isolate(Some((&program, steps())), &Sockets::default()).unwrap_err();
        assert_eq!((err.step, err.errno), (Step::Unshare.name(), Errno::ENOSPC));
        assert_eq!(probe(), Err(err));
        println!("refused: {err}");
    }
}
