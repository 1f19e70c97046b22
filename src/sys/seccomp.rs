//! Strict mode's system-call filters for the tool, and the gate's side of
//! the one that reports.
//!
//! Two programs, compiled by seccompiler before the fork ([`Filters::new`])
//! and installed in the tool's process after its user namespace is made
//! ([`install`], which allocates nothing):
//! - **refuse** (EPERM): `ioctl` TIOCSTI and TIOCLINUX (pushing keystrokes
//!   into the user's terminal, which the shell would run after the tool;
//!   the command's low 32 bits are compared, so `TIOCSTI | 1 << 32` is
//!   caught too), `socket(AF_VSOCK)` (vsock is not per network namespace),
//!   `socketpair(AF_UNIX, SOCK_DGRAM or SOCK_RAW)` (a datagram end can be re-aimed at a
//!   host socket with `connect`; stream and seqpacket pairs cannot),
//!   io_uring (whose IORING_OP_SOCKET makes sockets without `socket()`),
//!   ptrace, `process_vm_readv`/`writev` and `pidfd_getfd` (a build
//!   script could otherwise make the tool, its parent and the same user,
//!   connect for it, or take its sockets, and pass for the tool: `who`),
//!   and the kernel keyrings (`keyctl`, `add_key`, `request_key`: the
//!   user's session keyring is shared, and a `dns_resolver` key would
//!   resolve a name outside).
//! - **unix** (`socket(AF_UNIX, …)`): handed to the gate as a user
//!   notification ([`Notification`]), which answers EAFNOSUPPORT and
//!   writes a row. The gate never lets the call continue; once it is gone,
//!   the kernel answers ENOSYS, so the call stays refused. Where the kernel
//!   has no notifications the same program answers EAFNOSUPPORT itself
//!   (counted nowhere). `socketpair(AF_UNIX)` stays open: child stdio,
//!   Node's IPC and pipes need it.
//!
//! seccompiler (rust-vmm, the Firecracker team's) writes the BPF, with the
//! architecture check that kills a foreign-arch call (i386's `socketcall`
//! could otherwise hide a `socket` behind a pointer). It has no user
//! notification action, so the unix program is compiled answering
//! EAFNOSUPPORT and that one return instruction is turned into
//! SECCOMP_RET_USER_NOTIF ([`to_notification`], tested to change exactly
//! one instruction).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// BPF's "return a constant" instruction (BPF_RET | BPF_K).
const BPF_RET_K: u16 = 0x06;
/// `TIOCLINUX`, which libc does not name: 0x541C on every Linux
/// architecture that has TIOCSTI at 0x5412.
const TIOCLINUX: u64 = 0x541C;

/// The compiled programs, ready to install after the fork.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    pub(crate) refuse: BpfProgram,
    /// `socket(AF_UNIX)` to the gate, or answered EAFNOSUPPORT in BPF when
    /// the kernel has no user notifications (`notify` false).
    pub(crate) unix: BpfProgram,
    pub(crate) notify: bool,
}

impl Filters {
    /// Compiles both programs for this machine's architecture. `notify`:
    /// the unix program reports to the gate (a listener).
    pub(crate) fn new(notify: bool) -> Result<Filters, String> {
        let refuse = refuse_program()?;
        let unix = unix_program()?;
        let unix = if notify { to_notification(unix)? } else { unix };
        Ok(Filters { refuse, unix, notify })
    }
}

fn arch() -> Result<TargetArch, String> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else if cfg!(target_arch = "riscv64") {
        Ok(TargetArch::riscv64)
    } else {
        Err("seccomp filters are built for x86_64, aarch64 and riscv64 only".to_string())
    }
}

/// One condition: argument `arg` (its low 32 bits) equals `value`.
fn arg_is(arg: u8, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).map_err(|e| e.to_string())
}

/// A rule of one condition.
fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, action: SeccompAction) -> Result<BpfProgram, String> {
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, action, arch()?).map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// The refuse program (see the module doc).
fn refuse_program() -> Result<BpfProgram, String> {
    let mut rules = BTreeMap::new();
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![arg_is(1, libc::TIOCSTI)?])?,
            rule(vec![arg_is(1, TIOCLINUX)?])?,
        ],
    );
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![arg_is(0, libc::AF_VSOCK as u64)?])?],
    );
    // The type may carry SOCK_NONBLOCK and SOCK_CLOEXEC: compare the low
    // bits that name the kind, under a mask. The kernel makes SOCK_RAW a
    // datagram socket for AF_UNIX: refused alike.
    let kind = |kind: i32| {
        SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(0xf),
            kind as u64,
        )
        .map_err(|e| e.to_string())
    };
    rules.insert(
        libc::SYS_socketpair,
        vec![
            rule(vec![arg_is(0, libc::AF_UNIX as u64)?, kind(libc::SOCK_DGRAM)?])?,
            rule(vec![arg_is(0, libc::AF_UNIX as u64)?, kind(libc::SOCK_RAW)?])?,
        ],
    );
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
    ] {
        rules.insert(nr, Vec::new());
    }
    compile(rules, SeccompAction::Errno(libc::EPERM as u32))
}

/// The unix program, answering EAFNOSUPPORT itself.
fn unix_program() -> Result<BpfProgram, String> {
    let mut rules = BTreeMap::new();
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![arg_is(0, libc::AF_UNIX as u64)?])?],
    );
    compile(rules, SeccompAction::Errno(libc::EAFNOSUPPORT as u32))
}

/// `program` with its EAFNOSUPPORT answer handed to a user notification
/// instead. Exactly one instruction may carry it.
fn to_notification(mut program: BpfProgram) -> Result<BpfProgram, String> {
    let errno = libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
    let mut answers = program
        .iter_mut()
        .filter(|insn| insn.code == BPF_RET_K && insn.k == errno);
    let (Some(answer), None) = (answers.next(), answers.next()) else {
        return Err("the unix-socket filter does not answer in exactly one place".to_string());
    };
    answer.k = libc::SECCOMP_RET_USER_NOTIF;
    Ok(program)
}

/// Installs `program` on the calling thread (the tool's only one), after
/// `PR_SET_NO_NEW_PRIVS`, which an unprivileged filter needs. With
/// `listener`, asks for a notification listener and returns it.
///
/// Runs in the namespace child: system calls only, on memory prepared
/// before the fork; it allocates nothing.
pub(crate) fn install(program: &[sock_filter], listener: bool) -> Result<Option<RawFd>, Errno> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?,
        // sock_filter is seccompiler's #[repr(C)] copy of the kernel's
        // struct (u16, u8, u8, u32), the layout libc's names too.
        filter: program.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `prog` points at `program`, alive and unchanged for the call;
    // the kernel copies the program before returning.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    let fd = Errno::result(fd)?;
    Ok(listener.then_some(fd as RawFd))
}

/// One `socket(AF_UNIX)` the tool made, waiting for the gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notification {
    id: u64,
    /// The caller, in the gate's pid namespace.
    pub(crate) pid: u32,
}

/// Reads the next notification from `listener`. `WouldBlock` when none is
/// waiting (the gate polls the listener for readiness first); `ENOENT`
/// when the caller went away before it could be read.
pub(crate) fn receive(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is plain data; all zeros is what
    // SECCOMP_IOCTL_NOTIF_RECV requires on entry.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `notif`, which is
    // one, of the size the request number encodes.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            &mut notif as *mut libc::seccomp_notif,
        )
    };
    Errno::result(rc).map_err(io::Error::from)?;
    Ok(Notification {
        id: notif.id,
        pid: notif.pid,
    })
}

/// Whether no process is left under the listener's filter (the listener
/// hangs up): nothing more can be received.
pub(crate) fn orphaned(listener: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)),
        Err(_) => true,
    }
}

/// Answers a notification: the call fails with `errno`. Never lets it
/// continue. `ENOENT` when the caller is gone (nothing to answer).
pub(crate) fn refuse(listener: BorrowedFd<'_>, notification: Notification, errno: Errno) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id: notification.id,
        val: 0,
        error: -(errno as i32),
        flags: 0,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from `resp`.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unix_program_differs_from_its_fallback_in_one_instruction() {
        let plain = unix_program().unwrap_or_else(|e| panic!("{e}"));
        let notifying = to_notification(plain.clone()).unwrap_or_else(|e| panic!("{e}"));
        let changed: Vec<(&sock_filter, &sock_filter)> =
            plain.iter().zip(&notifying).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].1.k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(plain.len(), notifying.len());
    }

    #[test]
    fn both_programs_compile_for_this_machine() {
        let filters = Filters::new(true).unwrap_or_else(|e| panic!("{e}"));
        assert!(!filters.refuse.is_empty() && !filters.unix.is_empty());
        assert!(filters.refuse.len() < 200 && filters.unix.len() < 100);
    }
}
