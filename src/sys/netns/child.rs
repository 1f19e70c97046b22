//! The namespace child and the tool's process: the only code that runs
//! between the fork and the exec (but the init's, `init`), and the only
//! code in this file. It allocates nothing and takes no lock (every
//! buffer, map line, netlink message, socket address, mount path and
//! filter is in the `Plan`, made before the fork), so it is sound even in
//! a process with other threads. The namespace child makes the namespaces,
//! the routes, the sockets and the mounts and reports them; the tool's
//! process arms itself, reports, waits for the go, and execs.

use std::ffi::CStr;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::libc;
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    bind, cmsg_space, listen, send, setsockopt, socket, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::stat::Mode;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::init;
use super::message::{encode_failure, encode_ready, Failure, Step, ARMED, GO};
use super::plan::{Plan, Planned};
use super::{Proto, MAX_SOCKETS};
use crate::sys::mounts::{self, MountStep};
use crate::sys::spawn::{self, Prepared, Steps};
use crate::sys::{netlink, seccomp};

/// The namespace child: the namespaces, the routes, the sockets, the
/// mounts; then the init and the tool's process (the PID layer), or the
/// tool in this same process. Never returns.
pub(super) fn child_main(plan: &Plan, chans: Channels<'_>, exec: Option<(&Prepared, Steps<'_>)>) -> ! {
    let mut fds: [Option<OwnedFd>; MAX_SOCKETS] = [const { None }; MAX_SOCKETS];
    if let Err(failure) = outer(plan, &mut fds) {
        send_all(chans.namespace, &encode_failure(failure));
        exit_now(1);
    }
    let sockets = &fds[..plan.sockets.len()];
    if !plan.layers.pid {
        // This process becomes the tool.
        if send_fds(chans.namespace, &encode_ready(0, 0), sockets).is_err() {
            exit_now(1);
        }
        tool_main(plan, chans.tool, exec, false)
    }
    let init = match clone_sibling() {
        Ok(0) => init::init_main(),
        Ok(pid) => pid,
        Err(errno) => {
            send_all(chans.namespace, &encode_failure((Step::Init, None, errno)));
            exit_now(1);
        }
    };
    let tool = match clone_sibling() {
        Ok(0) => tool_main(plan, chans.tool, exec, true),
        Ok(pid) => pid,
        Err(errno) => {
            send_all(chans.namespace, &encode_failure((Step::Tool, None, errno)));
            exit_now(1);
        }
    };
    let sent = send_fds(chans.namespace, &encode_ready(tool, init), sockets);
    exit_now(if sent.is_ok() { 0 } else { 1 })
}

/// The channels of the two reporters: the namespace child's and the
/// tool's (the same process without the PID layer).
#[derive(Debug, Clone, Copy)]
pub(super) struct Channels<'a> {
    pub(super) namespace: &'a OwnedFd,
    pub(super) tool: &'a OwnedFd,
}

/// Sends one message, retrying an interrupted send.
fn send_all(chan: &OwnedFd, bytes: &[u8]) {
    while let Err(Errno::EINTR) = send(chan.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {}
}

/// A child of this process's parent (the shim), in fork's manner: 0 in the
/// child, its pid here. With the PID layer the first one is the new
/// namespace's init.
fn clone_sibling() -> Result<i32, Errno> {
    // SAFETY: clone with no stack and no CLONE_VM duplicates this process
    // as fork does (the child returns 0 on a copy of this stack); the child
    // goes on in code that makes system calls only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Errno::result(rc).map(|pid| pid as i32)
}

/// Ends the child at once: no atexit handlers or stdio flushing, which
/// belong to the parent's copy of the process.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) only ends the process; nothing of it runs after.
    unsafe { libc::_exit(code) }
}

/// The namespace child's steps 1 to 4 (see the module doc): the sockets
/// end up in `fds`.
fn outer(plan: &Plan, fds: &mut [Option<OwnedFd>; MAX_SOCKETS]) -> Result<(), Failure> {
    let at = |step: Step| move |errno: Errno| (step, None, errno);
    unshare(plan.namespaces).map_err(at(Step::Unshare))?;
    write_maps(plan, [Step::Setgroups, Step::UidMap, Step::GidMap])?;
    add_routes(plan)?;
    for ((i, planned), slot) in plan.sockets.iter().enumerate().zip(fds.iter_mut()) {
        *slot = Some(make_socket(planned).map_err(|(step, errno)| (step, Some(i), errno))?);
    }
    if let Some(layer) = &plan.layers.mounts {
        mounts::apply(layer).map_err(|(step, errno)| (mount_step(step), None, errno))?;
    }
    Ok(())
}

fn mount_step(step: MountStep) -> Step {
    match step {
        MountStep::Slave => Step::MountSlave,
        MountStep::Clone => Step::MountClone,
        MountStep::ReadOnly => Step::MountReadOnly,
        MountStep::KernelFs => Step::MountKernelFs,
        MountStep::Shm => Step::MountShm,
        MountStep::Move => Step::MountMove,
        MountStep::Pin => Step::MountPin,
        MountStep::Hide => Step::MountHide,
        MountStep::Chdir => Step::MountChdir,
    }
}

/// The tool's process: its own `/proc` (`in_pid_namespace`), its own user
/// namespace without capabilities, the filters, its process group and
/// death signal, stdio; armed, it waits for the go and execs. Never
/// returns.
fn tool_main(plan: &Plan, chan: &OwnedFd, exec: Option<(&Prepared, Steps<'_>)>, in_pid_namespace: bool) -> ! {
    let listener = match arm(plan, exec.map(|(_, steps)| steps.parent), in_pid_namespace) {
        Ok(listener) => listener,
        Err(failure) => {
            send_all(chan, &encode_failure(failure));
            exit_now(1);
        }
    };
    let armed = send_fds(chan, &[ARMED], std::slice::from_ref(&listener));
    // The gate holds the listener now; this process must not.
    drop(listener);
    if armed.is_err() {
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
    let errno = spawn::exec_prepared(program, steps.nofile);
    send_all(chan, &(errno as i32).to_ne_bytes());
    exit_now(127)
}

/// Everything between the tool's process coming to be and its report.
/// Returns the unix-socket listener, if the filter reports.
fn arm(plan: &Plan, shim: Option<Pid>, in_pid_namespace: bool) -> Result<Option<OwnedFd>, Failure> {
    let at = |step: Step| move |errno: Errno| (step, None, errno);
    if in_pid_namespace {
        // SAFETY: C string literals; mount(2) reads them.
        let rc = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        Errno::result(rc).map_err(at(Step::ProcMount))?;
        mounts::protect_proc().map_err(at(Step::ProcMount))?;
    }
    unshare(CloneFlags::CLONE_NEWUSER).map_err(at(Step::InnerUnshare))?;
    write_maps(plan, [Step::InnerSetgroups, Step::InnerUidMap, Step::InnerGidMap])?;
    let mut listener = None;
    if let Some(filters) = &plan.layers.seccomp {
        seccomp::install(&filters.refuse, false).map_err(at(Step::SeccompRefuse))?;
        let fd = seccomp::install(&filters.unix, filters.notify).map_err(at(Step::SeccompUnix))?;
        // SAFETY: the listener seccomp just returned, owned by nothing else.
        listener = fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    }
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(at(Step::Setpgid))?;
    // If the shim dies (SIGKILL), the tool dies with it rather than
    // running on without its gate.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at(Step::DeathSignal))?;
    // The shim may have died before the death signal was armed. In the PID
    // namespace the shim is outside it: the parent reads as 0 while it
    // lives (1, the init, once it is gone).
    let parent = nix::unistd::getppid();
    let alive = match (in_pid_namespace, shim) {
        (true, _) => parent == Pid::from_raw(0),
        (false, Some(shim)) => parent == shim,
        (false, None) => true,
    };
    if !alive {
        return Err((Step::Orphaned, None, Errno::ESRCH));
    }
    for (fd, pipe) in plan.layers.stdio.iter().enumerate() {
        if let Some(pipe) = *pipe {
            // SAFETY: dup2 takes integers; `pipe` is the tool's end, open
            // in this process since before the fork.
            let rc = unsafe { libc::dup2(pipe, fd as libc::c_int) };
            Errno::result(rc).map_err(at(Step::Stdio))?;
        }
    }
    Ok(listener)
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
        Proto::SockDiag => {
            return socket(
                AddressFamily::Netlink,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkSockDiag,
            )
            .map_err(at(Step::Socket))
        }
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

/// `payload` and every descriptor of `fds` (the `None`s skipped), in one
/// sendmsg. By hand rather than with nix's `sendmsg`, which allocates its
/// control buffer: this runs in a fork child, which must not allocate.
fn send_fds(chan: &OwnedFd, payload: &[u8], fds: &[Option<OwnedFd>]) -> Result<(), Errno> {
    let mut raw = [-1 as RawFd; MAX_SOCKETS];
    let mut count = 0;
    for (slot, fd) in raw.iter_mut().zip(fds.iter().flatten()) {
        *slot = fd.as_raw_fd();
        count += 1;
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
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
