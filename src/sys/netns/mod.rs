//! Strict mode's primitive: start a tool inside new namespaces whose only
//! way out is the gate, and hand the sockets made in there to the parent,
//! which stays in the host's namespaces.
//!
//! [`spawn_isolated`] forks a namespace child that, before the tool runs:
//! 1. unshares a user and a network namespace (`CLONE_NEWUSER |
//!    CLONE_NEWNET`), and with the [`Layers`] asked for a mount and a PID
//!    namespace, and maps the effective uid and gid onto themselves
//!    (`setgroups` "deny", one-line `uid_map` and `gid_map`), so the tool
//!    sees the ids it would have seen outside; this works unprivileged;
//! 2. brings `lo` up and adds `local 0.0.0.0/0 dev lo table local` and
//!    `local ::/0 dev lo table local` over rtnetlink (`sys::netlink`), so a
//!    connect to any address lands on a socket bound there or is refused
//!    at once;
//! 3. creates the sockets asked for ([`SocketSpec`]: TCP listening, UDP
//!    bound; all nonblocking and close-on-exec; IPv6 ones `IPV6_V6ONLY`,
//!    so `[::]:443` and `0.0.0.0:443` coexist);
//! 4. makes everything read-only but the places the tool may write
//!    (`sys::mounts`), with the mounts layer;
//! 5. with the PID layer, clones the namespace's init (PID 1: it reaps
//!    and holds the namespace, `init`) and the tool's process (PID 2),
//!    both as the shim's own children (`CLONE_PARENT`), so that the shim
//!    waits for, signals and hands the terminal to the tool as for any
//!    child; the tool mounts a `/proc` that shows the namespace's
//!    processes alone. Without it the namespace child becomes the tool;
//! 6. reports the sockets (SCM_RIGHTS) and the two pids, and exits (it
//!    lives on as the tool without the PID layer).
//!
//! The tool's process then unshares a second user namespace with the same
//! one-line maps (the network, mount and PID namespaces belong to the
//! first, so the tool holds no capability over them: no route, address,
//! mount or remount, even as root), installs the seccomp filters
//! (`sys::seccomp`), joins a process group of its own, arms the death
//! signal, puts the relayed pipes on stdio, reports itself armed (with the
//! unix-socket listener), and waits for [`Waiting::start`]; EOF instead
//! (the parent is gone or dropped the [`Waiting`]) ends it without running
//! the tool. Then the descriptor limit, the signal mask, SIGPIPE, exec.
//!
//! A step that fails is reported to the parent with its errno, and the
//! children exit: the parent reaps them and returns a [`NamespaceError`],
//! which names what refused and the layer it belongs to, so the caller can
//! try again without that layer, or run the tool behind the plain proxy.
//! An exec that fails comes back from [`Waiting::start`] as its errno, as
//! `sys::spawn::spawn` reports it.
//!
//! The children are forks (fork(2), or clone(2) with fork's semantics),
//! not the vfork-style clone `sys::spawn` uses: they must outlive the
//! parent's return from [`spawn_isolated`], waiting for the go. They
//! allocate nothing and take no lock (every buffer, map line, netlink
//! message, socket address, mount path and filter is prepared before the
//! fork, in `plan`), so they are sound even in a process with other
//! threads (the tests).
//!
//! By side, as youki lays it out: `plan` (what is prepared before the
//! fork), `parent` (the fork, the reports received, the tool waiting for
//! the go), `child` (the only code that runs after the fork, alone in its
//! file), `init` (PID 1's loop) and `message` (the bytes between them).

mod child;
mod init;
mod message;
mod parent;
mod plan;

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::mounts::Mounts;
use super::seccomp::Filters;
use super::spawn::{self, Prepared, Steps};

pub(crate) use parent::Waiting;

/// At most this many sockets per namespace (the kernel's limit for one
/// SCM_RIGHTS message is 253); strict mode asks for a few dozen at most.
pub(crate) const MAX_SOCKETS: usize = 64;

/// The step named when the spawn is asked for off the main thread.
const MAIN_THREAD: &str = "spawn from the main thread";

/// One socket to create inside the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketSpec {
    pub proto: Proto,
    /// TCP: bound here and listening (backlog SOMAXCONN), e.g.
    /// 127.0.0.1:3128, 0.0.0.0:443, `[::]:443`. UDP: bound here, e.g.
    /// 0.0.0.0:53.
    pub addr: SocketAddr,
}

impl SocketSpec {
    /// A TCP socket listening on `addr`.
    pub(crate) fn tcp(addr: SocketAddr) -> SocketSpec {
        SocketSpec {
            proto: Proto::Tcp,
            addr,
        }
    }

    /// A UDP socket bound to `addr`.
    pub(crate) fn udp(addr: SocketAddr) -> SocketSpec {
        SocketSpec {
            proto: Proto::Udp,
            addr,
        }
    }

    /// A `NETLINK_SOCK_DIAG` socket in the namespace, bound to nothing:
    /// how the gate asks whose socket a connection's other end is
    /// (`sys::sock_diag`), which only works from inside.
    pub(crate) fn sock_diag() -> SocketSpec {
        SocketSpec {
            proto: Proto::SockDiag,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// Which kind of socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    /// `NETLINK_SOCK_DIAG` ([`SocketSpec::sock_diag`]).
    SockDiag,
}

/// The isolation beyond the network namespace that strict mode can do
/// without, each under its own name in the start row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layer {
    /// Everything read-only but the places the tool writes.
    Mounts,
    /// A PID namespace with an init and a `/proc` of its own.
    Pid,
    /// The system-call filters.
    Seccomp,
}

impl Layer {
    pub(crate) const ALL: [Layer; 3] = [Layer::Mounts, Layer::Pid, Layer::Seccomp];

    /// The layer's name in the start row and in `cli-guard doctor`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layer::Mounts => "mounts",
            Layer::Pid => "pid",
            Layer::Seccomp => "seccomp",
        }
    }
}

/// The layers asked for, prepared before the fork.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layers {
    pub(crate) mounts: Option<Mounts>,
    pub(crate) pid: bool,
    pub(crate) seccomp: Option<Filters>,
    /// For each of stdin, stdout and stderr that is to be relayed, the
    /// tool's end of its pipe, put in its place before the exec.
    pub(crate) stdio: [Option<RawFd>; 3],
}

impl Layers {
    /// These layers without `layer`.
    pub(crate) fn drop_layer(&mut self, layer: Layer) {
        match layer {
            Layer::Mounts => self.mounts = None,
            Layer::Pid => self.pid = false,
            Layer::Seccomp => self.seccomp = None,
        }
    }
}

/// A tool waiting inside its namespaces, and what it made there
/// (nonblocking and close-on-exec in this process too).
#[derive(Debug)]
pub(crate) struct Isolated {
    /// The tool's process, waiting for the go.
    pub waiting: Waiting,
    /// One socket per [`SocketSpec`] asked for, in the same order.
    pub sockets: Vec<OwnedFd>,
    /// The seccomp listener for `socket(AF_UNIX)`, when the filter reports.
    pub unix_listener: Option<OwnedFd>,
    /// The namespace's init (the PID layer), whose children are the tool's
    /// leftovers.
    pub init: Option<Pid>,
}

/// What refused, and why: the start row's `isolation_reason` and the one
/// line on stderr (via Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NamespaceError {
    /// The step, e.g. "unshare(CLONE_NEWUSER|CLONE_NEWNET)", "uid_map".
    pub step: &'static str,
    /// The errno it failed with.
    pub errno: Errno,
    /// The socket the step was for, if it was for one.
    pub socket: Option<(Proto, SocketAddr)>,
    /// The layer the step belongs to; `None` for the network namespace
    /// itself, without which there is no strict mode.
    pub layer: Option<Layer>,
}

impl NamespaceError {
    /// A step of the parent's (no socket, no layer).
    fn parent(step: &'static str, errno: Errno) -> NamespaceError {
        NamespaceError {
            step,
            errno,
            socket: None,
            layer: None,
        }
    }
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.step)?;
        if let Some((proto, addr)) = self.socket {
            let proto = match proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
                Proto::SockDiag => "sock_diag",
            };
            write!(f, " {proto} {addr}")?;
        }
        write!(f, ": {} ({:?})", self.errno.desc(), self.errno)
    }
}

impl std::error::Error for NamespaceError {}

/// Forks the namespace child that makes the namespaces, the `sockets` and
/// the `layers` (see the module doc), and returns once the tool waits for
/// the go; the tool runs on [`Waiting::start`]. Every refusal before that
/// is a [`NamespaceError`] and the children are gone.
///
/// Only from the main thread, as `sys::spawn::spawn`: the death signal the
/// tool arms follows the thread that forked it.
pub(crate) fn spawn_isolated(
    program: &Prepared,
    steps: Steps<'_>,
    sockets: &[SocketSpec],
    layers: &Layers,
) -> Result<Isolated, NamespaceError> {
    if !spawn::on_main_thread() {
        return Err(NamespaceError::parent(MAIN_THREAD, Errno::EINVAL));
    }
    parent::isolate(Some((program, steps)), sockets, layers)
}

/// Makes this process not dumpable (`PR_SET_DUMPABLE` 0): no process
/// without CAP_SYS_PTRACE in its user namespace can ptrace it, read its
/// memory or take its descriptors (pidfd_getfd), same user or not. A
/// child's execve makes the child dumpable again.
pub(crate) fn not_dumpable() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// Whether this process can make the namespaces, the routes and `layers`
/// (for `cli-guard doctor`): the tool's process goes as far as the go,
/// then is killed. Any thread: it never execs.
pub(crate) fn probe(layers: &Layers) -> Result<(), NamespaceError> {
    parent::isolate(None, &[], layers).map(drop)
}

#[cfg(test)]
mod tests {
    use super::child::write_file;
    use super::message::{encode_failure, Step, STEPS};
    use super::parent::isolate;
    use super::plan::{map_line, Plan, TOO_MANY};
    use super::*;
    use nix::fcntl::OFlag;
    use nix::libc;
    use nix::sched::{unshare, CloneFlags};
    use nix::sys::wait::waitpid;
    use std::collections::BTreeMap;
    use std::ffi::{OsStr, OsString};
    use std::io;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
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
            layer: None,
        };
        assert_eq!(
            err.to_string(),
            "unshare(CLONE_NEWUSER|CLONE_NEWNET): No space left on device (ENOSPC)"
        );
        let err = NamespaceError {
            step: Step::Bind.name(),
            errno: Errno::EADDRINUSE,
            socket: Some((Proto::Udp, "[::]:53".parse().unwrap())),
            layer: None,
        };
        assert_eq!(
            err.to_string(),
            "bind udp [::]:53: Address already in use (EADDRINUSE)"
        );
    }

    #[test]
    fn a_failure_report_round_trips_with_its_socket() {
        let plan = Plan::new(
            &[
                SocketSpec::tcp("0.0.0.0:443".parse().unwrap()),
                SocketSpec::udp("0.0.0.0:53".parse().unwrap()),
            ],
            &Layers::default(),
        )
        .unwrap();
        let decode = |report: &[u8]| message::decode_failure(report).and_then(|f| plan.error(f));
        for step in STEPS {
            let report = encode_failure((step, Some(1), Errno::EACCES));
            let err = decode(&report).unwrap();
            assert_eq!(err.step, step.name());
            assert_eq!(err.errno, Errno::EACCES);
            assert_eq!(err.socket, Some((Proto::Udp, "0.0.0.0:53".parse().unwrap())));
        }
        let report = encode_failure((Step::GidMap, None, Errno::EPERM));
        assert_eq!(decode(&report).unwrap().socket, None);
        let mut bad = report;
        bad[1] = STEPS.len() as u8;
        assert_eq!(decode(&bad), None, "no such step");
        assert_eq!(decode(&report[..7]), None);
        let no_such_socket = encode_failure((Step::Bind, Some(2), Errno::EACCES));
        assert_eq!(decode(&no_such_socket), None, "no such socket");
    }

    #[test]
    fn too_many_sockets_are_refused_before_any_fork() {
        let sockets: Vec<SocketSpec> = (0..=MAX_SOCKETS as u16)
            .map(|p| SocketSpec::tcp(SocketAddr::from(([0; 4], p))))
            .collect();
        let err = isolate(None, &sockets, &Layers::default()).unwrap_err();
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
        /// One per socket asked for, in order.
        sockets: Vec<OwnedFd>,
        /// The script's stdout and stderr.
        out: String,
    }

    /// Runs `script` (its output goes to "$1") in the namespaces with
    /// `sockets`, to its end: whatever it sent waits in the sockets' queues.
    fn run(script: &str, sockets: &[SocketSpec]) -> Ran {
        run_with(script, sockets, &Layers::default())
    }

    /// [`run`], with `layers` on.
    fn run_with(script: &str, sockets: &[SocketSpec], layers: &Layers) -> Ran {
        let out = scratch("out");
        let program = bash(&format!("exec >\"$1\" 2>&1\n{script}"), &out);
        let isolated = isolate(Some((&program, steps())), sockets, layers).unwrap();
        let child = isolated.waiting.pid();
        isolated.waiting.start(None).unwrap();
        assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        if let Some(init) = isolated.init {
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(init, None);
        }
        Ran {
            sockets: isolated.sockets,
            out: text,
        }
    }

    fn accept(listener: &OwnedFd) -> std::net::TcpStream {
        let fd = nix::sys::socket::accept(listener.as_raw_fd()).expect("a connection waiting");
        // SAFETY: the descriptor accept just returned, owned by nothing else.
        std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    #[test]
    fn the_tool_sees_its_own_uid_and_gid() {
        let ran = run("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g", &[]);
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let fields: Vec<&str> = ran.out.split_whitespace().collect();
        let expected = [uid, uid, 1, gid, gid, 1, uid, gid].map(|n| n.to_string());
        assert_eq!(fields, expected, "{}", ran.out);
    }

    #[test]
    fn a_connect_to_any_address_lands_on_the_passed_listener() {
        let sockets = ["0.0.0.0:443", "[::]:443", "127.0.0.1:3128"].map(|a| SocketSpec::tcp(addr(a)));
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
        for (listener, (local, said)) in ran.sockets.iter().zip(dialled) {
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
        let sockets = [SocketSpec::tcp(addr("0.0.0.0:443"))];
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
    #[ignore = "needs ip (iproute2; .ci/run installs it)"]
    fn the_tool_cannot_change_its_network() {
        let ran = run(
            "ip route add 192.0.2.0/24 dev lo; echo \"route $?\"
             ip route del local default dev lo table local; echo \"del $?\"
             ip addr add 192.0.2.1/32 dev lo; echo \"addr $?\"
             ip link add cgtest0 type dummy; echo \"link $?\"
             ip link set lo down; echo \"down $?\"
             ip -4 route show table local; ip -6 route show table local",
            &[],
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
        let sockets = [
            SocketSpec::tcp(addr("0.0.0.0:53")),
            SocketSpec::udp(addr("0.0.0.0:53")),
            SocketSpec::udp(addr("[::]:53")),
        ];
        let ran = run(
            "printf q4 >/dev/udp/10.255.255.53/53
             printf q6 >/dev/udp/2001:db8::53/53
             exec 3<>/dev/tcp/10.255.255.53/53 && printf t4 >&3",
            &sockets,
        );
        assert_eq!(ran.out, "");
        let mut sockets = ran.sockets.into_iter();
        let tcp = sockets.next().unwrap();
        for (socket, sent) in sockets.zip(["q4", "q6"]) {
            let socket = std::net::UdpSocket::from(socket);
            let mut buf = [0u8; 16];
            let (n, _) = socket.recv_from(&mut buf).expect("a datagram waiting");
            assert_eq!(&buf[..n], sent.as_bytes());
        }
        let mut text = String::new();
        accept(&tcp).read_to_string(&mut text).unwrap();
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
        let waiting = isolate(Some((&program, steps())), &[], &Layers::default())
            .unwrap()
            .waiting;
        let child = waiting.pid();
        let err = waiting.start(None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(waitpid(child, None), Err(Errno::ECHILD));
    }

    #[test]
    fn without_the_go_the_tool_never_runs() {
        let out = scratch("ran");
        let program = bash("touch \"$1\"", &out);
        let isolated = isolate(Some((&program, steps())), &[], &Layers::default()).unwrap();
        let child = isolated.waiting.pid();
        drop(isolated);
        assert_eq!(waitpid(child, None), Err(Errno::ECHILD), "reaped");
        assert!(!out.exists(), "the tool ran");
    }

    #[test]
    fn a_socket_that_cannot_be_made_is_named_in_the_error() {
        let sockets = [SocketSpec::tcp(addr("0.0.0.0:443")); 2];
        let err = isolate(None, &sockets, &Layers::default()).unwrap_err();
        assert_eq!(
            err,
            NamespaceError {
                step: "bind",
                errno: Errno::EADDRINUSE,
                socket: Some((Proto::Tcp, addr("0.0.0.0:443"))),
                layer: None,
            }
        );
    }

    #[test]
    fn the_probe_succeeds_where_namespaces_are_allowed() {
        assert_eq!(probe(&Layers::default()), Ok(()));
    }

    #[test]
    fn spawning_off_the_main_thread_is_refused() {
        let err = std::thread::spawn(|| {
            let program = Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("true")], &BTreeMap::new())?;
            spawn_isolated(&program, steps(), &[], &Layers::default())
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
        let err = isolate(Some((&program, steps())), &[], &Layers::default()).unwrap_err();
        assert_eq!((err.step, err.errno), (Step::Unshare.name(), Errno::ENOSPC));
        assert_eq!(probe(&Layers::default()), Err(err));
        println!("refused: {err}");
    }
}
