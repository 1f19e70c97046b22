//! The PID namespace's init (PID 1): holds the namespace while the tool
//! runs, and reaps what the tool leaves behind (orphans are reparented to
//! it). It never runs the tool's code and never execs; the shim counts
//! its children once the tool has exited and then kills it, which ends
//! every process left in the namespace. Runs after a fork: system calls
//! only, nothing allocated.

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The init's life. Never returns.
pub(super) fn init_main() -> ! {
    // Dies with the shim: then the kernel kills the whole namespace.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Its parent is the shim (CLONE_PARENT), outside the namespace: it reads
    // as 0 while the shim lives.
    if nix::unistd::getppid() != Pid::from_raw(0) {
        exit_now(1);
    }
    // Nothing of the shim's (the gate's sockets, the channels, a pipe a
    // `$(npm install)` reads to its end) stays open in a process that
    // outlives the tool.
    // SAFETY: close_range takes integers only; it closes this process's
    // descriptors from 3 up.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: a C string literal; the descriptor it returns is put on 0 to
    // 2 below and then closed.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null >= 0 {
        for fd in 0..3 {
            // SAFETY: dup2 takes integers only.
            unsafe { libc::dup2(null, fd) };
        }
        if null > 2 {
            // SAFETY: a descriptor this process just opened.
            unsafe { libc::close(null) };
        }
    }
    // Every signal blocked: SIGCHLD is read with sigwaitinfo, and an init
    // takes no default action on the others anyway.
    let _ = SigSet::all().thread_block();
    let mut child = SigSet::empty();
    child.add(Signal::SIGCHLD);
    loop {
        // Reap every orphan that has exited, then wait for the next.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let _ = child.wait();
    }
}

/// Ends the process at once, as the namespace child does.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) only ends the process; nothing of it runs after.
    unsafe { libc::_exit(code) }
}
