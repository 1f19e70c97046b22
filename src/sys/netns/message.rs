//! The byte protocol between the shim and its namespace children, over two
//! SOCK_SEQPACKET pairs so that each side's messages arrive in order. On
//! the first, the namespace child reports the sockets ready (sent with
//! SCM_RIGHTS) and the pids of the tool and of the namespace's init, or
//! the step that failed. On the second, the tool's process reports every
//! layer on (with the unix-socket listener) or the step that failed, gets
//! the go, and answers an exec that failed with its errno. Fixed-size
//! messages in host byte order, built and read without allocating, since
//! the child side runs after a fork.

use nix::errno::Errno;

use super::Layer;

/// The namespace child's report: the sockets are ready (the message
/// carries them), then the tool's and the init's pids (i32 each, 0 where
/// the namespace child itself becomes the tool, or makes no init).
pub(super) const READY: u8 = b'R';
/// The length of a ready report.
pub(super) const READY_LEN: usize = 9;
/// The tool's report: every layer is on and it waits for the go (the
/// message carries the unix-socket listener, when there is one).
pub(super) const ARMED: u8 = b'A';
/// A step failed: `FAILED`, the step's index, the socket's index (or
/// [`NO_SOCKET`]) as u16, the errno as i32.
pub(super) const FAILED: u8 = b'F';
/// The parent's go: exec the tool.
pub(super) const GO: u8 = b'G';
/// No socket: the failed step was not for one.
pub(super) const NO_SOCKET: u16 = u16::MAX;
/// The length of a failure report.
pub(super) const FAILURE_LEN: usize = 8;
/// An exec that failed comes back as its errno (i32); one that succeeded
/// as EOF (the channel is close-on-exec).
pub(super) const EXEC_ERRNO_LEN: usize = 4;

/// The steps, in the order the child makes them; the child reports a
/// failure as the step's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Step {
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
    MountSlave,
    MountClone,
    MountReadOnly,
    MountKernelFs,
    MountShm,
    MountMove,
    MountPin,
    MountHide,
    MountChdir,
    Init,
    Tool,
    ProcMount,
    InnerUnshare,
    InnerSetgroups,
    InnerUidMap,
    InnerGidMap,
    SeccompRefuse,
    SeccompUnix,
    Stdio,
    Setpgid,
    DeathSignal,
    Orphaned,
    SendSockets,
    SendArmed,
}

pub(super) const STEPS: [Step; 40] = [
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
    Step::MountSlave,
    Step::MountClone,
    Step::MountReadOnly,
    Step::MountKernelFs,
    Step::MountShm,
    Step::MountMove,
    Step::MountPin,
    Step::MountHide,
    Step::MountChdir,
    Step::Init,
    Step::Tool,
    Step::ProcMount,
    Step::InnerUnshare,
    Step::InnerSetgroups,
    Step::InnerUidMap,
    Step::InnerGidMap,
    Step::SeccompRefuse,
    Step::SeccompUnix,
    Step::Stdio,
    Step::Setpgid,
    Step::DeathSignal,
    Step::Orphaned,
    Step::SendSockets,
    Step::SendArmed,
];

impl Step {
    /// The step as an error names it.
    pub(super) fn name(self) -> &'static str {
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
            Step::MountSlave => "mount --make-rslave /",
            Step::MountClone => "open_tree (a writable place)",
            Step::MountReadOnly => "mount_setattr / read-only",
            Step::MountKernelFs => {
                "the kernel filesystems (/proc's host parts read-only, device nodes, devpts)"
            }
            Step::MountShm => "mount tmpfs /dev/shm",
            Step::MountMove => "move_mount (a writable place)",
            Step::MountPin => "pin a protected path read-only",
            Step::MountHide => "hide the audit log's directory",
            Step::MountChdir => "chdir to the working directory",
            Step::Init => "clone the namespace's init",
            Step::Tool => "clone the tool's process",
            Step::ProcMount => "mount /proc for the PID namespace",
            Step::InnerUnshare => "unshare(CLONE_NEWUSER) to drop capabilities",
            Step::InnerSetgroups => "inner setgroups",
            Step::InnerUidMap => "inner uid_map",
            Step::InnerGidMap => "inner gid_map",
            Step::SeccompRefuse => "seccomp (the refusing filter)",
            Step::SeccompUnix => "seccomp (the unix-socket filter)",
            Step::Stdio => "dup2 a relayed stdio pipe",
            Step::Setpgid => "setpgid",
            Step::DeathSignal => "PR_SET_PDEATHSIG",
            Step::Orphaned => "the shim is gone",
            Step::SendSockets => "sendmsg(SCM_RIGHTS)",
            Step::SendArmed => "report the tool ready",
        }
    }

    /// The layer the step belongs to, if it is one that strict mode can
    /// do without (under `auto`); `None` for the network namespace itself.
    pub(super) fn layer(self) -> Option<Layer> {
        match self {
            Step::MountSlave
            | Step::MountClone
            | Step::MountReadOnly
            | Step::MountKernelFs
            | Step::MountShm
            | Step::MountMove
            | Step::MountPin
            | Step::MountHide
            | Step::MountChdir => Some(Layer::Mounts),
            Step::Init | Step::Tool | Step::ProcMount => Some(Layer::Pid),
            Step::SeccompRefuse | Step::SeccompUnix => Some(Layer::Seccomp),
            _ => None,
        }
    }
}

/// A ready report: the tool's and the init's pids.
pub(super) fn encode_ready(tool: i32, init: i32) -> [u8; READY_LEN] {
    let mut out = [0u8; READY_LEN];
    out[0] = READY;
    out[1..5].copy_from_slice(&tool.to_ne_bytes());
    out[5..9].copy_from_slice(&init.to_ne_bytes());
    out
}

/// A ready report read back; `None` if it is not one.
pub(super) fn decode_ready(bytes: &[u8]) -> Option<(i32, i32)> {
    let [READY, t0, t1, t2, t3, i0, i1, i2, i3] = *bytes else {
        return None;
    };
    Some((
        i32::from_ne_bytes([t0, t1, t2, t3]),
        i32::from_ne_bytes([i0, i1, i2, i3]),
    ))
}

/// A failure in the child: the step, the index of the socket it was for,
/// the errno.
pub(super) type Failure = (Step, Option<usize>, Errno);

/// A failure report, as the child sends it.
pub(super) fn encode_failure((step, socket, errno): Failure) -> [u8; FAILURE_LEN] {
    let mut out = [0u8; FAILURE_LEN];
    out[0] = FAILED;
    out[1] = step as u8;
    let socket = socket.and_then(|i| u16::try_from(i).ok()).unwrap_or(NO_SOCKET);
    out[2..4].copy_from_slice(&socket.to_ne_bytes());
    out[4..8].copy_from_slice(&(errno as i32).to_ne_bytes());
    out
}

/// A failure report read back: the step, the socket's index, the errno;
/// `None` if it is not one.
pub(super) fn decode_failure(bytes: &[u8]) -> Option<(Step, Option<usize>, Errno)> {
    let [FAILED, step, s0, s1, e0, e1, e2, e3] = *bytes else {
        return None;
    };
    let step = *STEPS.get(usize::from(step))?;
    let socket = match u16::from_ne_bytes([s0, s1]) {
        NO_SOCKET => None,
        i => Some(usize::from(i)),
    };
    Some((
        step,
        socket,
        Errno::from_raw(i32::from_ne_bytes([e0, e1, e2, e3])),
    ))
}
