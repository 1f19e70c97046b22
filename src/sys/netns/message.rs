//! The byte protocol between the shim and its namespace child over their
//! SOCK_SEQPACKET pair: the child's report (the sockets are ready, sent
//! with SCM_RIGHTS, or the step that failed), the parent's go, and an exec
//! failure's errno. Fixed-size messages in host byte order, built and read
//! without allocating, since the child side runs after a fork.

use nix::errno::Errno;

/// The sockets are ready (the message carries them).
pub(super) const READY: u8 = b'R';
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
    InnerUnshare,
    InnerSetgroups,
    InnerUidMap,
    InnerGidMap,
    SendSockets,
}

pub(super) const STEPS: [Step; 21] = [
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
            Step::InnerUnshare => "unshare(CLONE_NEWUSER) to drop capabilities",
            Step::InnerSetgroups => "inner setgroups",
            Step::InnerUidMap => "inner uid_map",
            Step::InnerGidMap => "inner gid_map",
            Step::SendSockets => "sendmsg(SCM_RIGHTS)",
        }
    }
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
