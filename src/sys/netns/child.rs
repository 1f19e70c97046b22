//! The namespace child: the only code that runs between the fork and the
//! exec, and the only code in this file. It allocates nothing and takes no
//! lock (every buffer, map line, netlink message and socket address is in
//! the `Plan`, made before the fork), so it is sound even in a process
//! with other threads. It makes the namespaces, the routes and the
//! sockets, reports (the sockets, or the step that failed), waits for the
//! go, and execs through `sys::spawn`'s steps.

use std::ffi::CStr;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::libc;
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    bind, cmsg_space, listen, send, setsockopt, socket, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::stat::Mode;

use super::message::{encode_failure, Failure, Step, GO, READY};
use super::plan::{Plan, Planned};
use super::{Proto, MAX_SOCKETS};
use crate::sys::netlink;
use crate::sys::spawn::{self, Prepared, Steps};

/// The child: the namespace steps, the report, the go, exec. Never
/// returns.
pub(super) fn child_main(plan: &Plan, chan: &OwnedFd, exec: Option<(&Prepared, Steps<'_>)>) -> ! {
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

pub(super) fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
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
