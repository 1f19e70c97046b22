//! Starting the real tool: a vfork-style spawn that keeps the guarantees a
//! fork would have been needed for.
//!
//! std's `Command` starts a child with posix_spawn, whose child borrows the
//! parent's memory until it execs, unless a `pre_exec` hook is set; then it
//! forks, copying the shim's page tables, about a quarter of a millisecond
//! on every run. The shim needs a few steps in the child before exec that
//! posix_spawn has no attribute for: `PR_SET_PDEATHSIG` (the tool dies with
//! its gate rather than running on without it), a check that the shim did
//! not die before that took hold, the descriptor limit the shim raised for
//! itself put back, and the terminal's foreground handed to the tool's own
//! process group. So this does what glibc's posix_spawn does, clone(2)
//! with `CLONE_VM | CLONE_VFORK` on a stack of its own, and makes those
//! steps, all plain system calls, in the child.
//!
//! Everything the child touches is built before the clone (the path, argv
//! and envp as C strings with their pointer arrays), so the child never
//! allocates or takes a lock: it shares the shim's heap until it execs.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::os::raw::{c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{pthread_sigmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{getpgrp, getppid, setpgid, sysconf, tcgetpgrp, tcsetpgrp, Pid, SysconfVar};

/// The child's stack until it execs. The child makes a handful of system
/// calls through thin wrappers and needs a fraction of this; only the pages
/// it touches are ever faulted in.
const CHILD_STACK: usize = 64 * 1024;

/// A program prepared to run: path, argv and environment, as C strings with the
/// NULL-terminated pointer arrays execve(2) takes.
#[derive(Debug)]
pub(crate) struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    /// `/bin/sh PATH ARGS…`, for a file the kernel will not exec (ENOEXEC:
    /// a script without a `#!` line), as execvp and shells run it.
    sh_argv_ptrs: Vec<*const c_char>,
}

/// The shell a script without a `#!` line is run with.
const SH: &std::ffi::CStr = c"/bin/sh";

impl Prepared {
    /// `argv` includes argv[0]. `env` is the whole environment the child
    /// gets. Fails (InvalidInput) if any string holds a NUL byte, which no
    /// C string can carry.
    pub(crate) fn new(
        path: &OsStr,
        argv: &[&OsStr],
        env: &BTreeMap<OsString, OsString>,
    ) -> io::Result<Prepared> {
        let c =
            |bytes: Vec<u8>| CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
        let path = c(path.as_bytes().to_vec())?;
        let argv = argv
            .iter()
            .map(|a| c(a.as_bytes().to_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                c(kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let sh_argv_ptrs = [SH.as_ptr(), path.as_ptr()]
            .into_iter()
            .chain(argv.iter().skip(1).map(|a| a.as_ptr()))
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Prepared {
            argv_ptrs: pointers(&argv),
            envp_ptrs: pointers(&envp),
            sh_argv_ptrs,
            path,
            _argv: argv,
            _envp: envp,
        })
    }
}

/// What the child does between the clone and the exec. The child always
/// gets a process group of its own, so that a signal aimed at the shim's
/// group reaches the tool once, through the shim, and never also directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps<'a> {
    /// The controlling terminal and the shim's process group: if that group
    /// is the terminal's foreground group, the child makes its own group the
    /// foreground group before it execs, as sudo does, so the terminal's
    /// Ctrl-C, Ctrl-Z and resizes go to the tool and the tool may read the
    /// terminal from its first instruction.
    pub terminal: Option<(BorrowedFd<'a>, Pid)>,
    /// Set this (soft, hard) descriptor limit.
    pub nofile: Option<(u64, u64)>,
    /// The shim: if the child's parent is not this by the time the death
    /// signal is armed, the shim is gone and the tool must not run.
    pub parent: Pid,
}

/// A started child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spawned {
    pub pid: Pid,
    /// The child's group took the terminal's foreground from the shim's.
    pub took_terminal: bool,
}

/// Starts `program` and returns its pid once it has exec'd. An exec that
/// fails comes back as its errno, as `Command::spawn` reports it, the
/// child is reaped and the terminal, if it took it, is the shim's again.
///
/// Only from the main thread: the child's PR_SET_PDEATHSIG fires when the
/// parent *thread* exits, not the parent process (prctl(2)), so a tool
/// spawned from a short-lived thread (a runtime's blocking pool, say)
/// would be killed when that thread ends. The main thread lives as long
/// as the shim, which is what the death signal is meant to follow.
pub(crate) fn spawn(program: &Prepared, steps: Steps<'_>) -> io::Result<Spawned> {
    if !on_main_thread() {
        return Err(io::Error::other(NOT_MAIN_THREAD));
    }
    let failed = AtomicI32::new(0);
    let took_terminal = AtomicBool::new(false);
    let mut stack = ChildStack::map()?;
    let child = Box::new(|| -> isize {
        let errno = in_child(program, steps, &took_terminal);
        failed.store(errno as i32, Ordering::Relaxed);
        127
    });
    // Nothing may run a signal handler in the child while it shares this
    // memory: every signal glibc lets a program block stays blocked from
    // before the clone until the child sets the tool's mask just before
    // exec. The shim installs no handlers today (no std runtime, tokio
    // without its signal feature); this is a second line, not the first.
    let mut mask = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut mask))?;
    // SAFETY: with CLONE_VM | CLONE_VFORK the child runs on `stack` in this
    // process's memory while this thread is suspended, until it execs or
    // exits; `stack`, `program`, `failed` and `took_terminal` outlive that, since clone
    // returns only then. The child (`in_child`) makes only system calls
    // through thin wrappers, allocating nothing and taking no lock, so it
    // cannot find the heap or a lock in a state another thread left it.
    // No handler can run in the child before exec: every signal is blocked
    // around the clone, and without CLONE_SIGHAND the child's changes to
    // dispositions stay its own. SIGCHLD as the exit signal makes it an
    // ordinary child for waitpid.
    let pid = unsafe {
        nix::sched::clone(
            child,
            stack.usable(),
            CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
            Some(Signal::SIGCHLD as i32),
        )
    };
    let took_terminal = took_terminal.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    if let (true, Some((tty, shim_group))) = (took_terminal && failed != 0, steps.terminal) {
        // The exec failed after the child took the terminal: the shim's
        // group gets it back (every signal is still blocked here, SIGTTOU
        // included, as tcsetpgrp from outside the foreground group needs).
        let _ = tcsetpgrp(tty, shim_group);
    }
    // Cannot fail with a mask it returned; and a child already started
    // must not be lost to an error here.
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    let pid = pid?;
    match failed {
        0 => Ok(Spawned { pid, took_terminal }),
        errno => {
            let _ = waitpid(pid, None);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// Whether this is the process's main thread, the only one a tool may be
/// spawned from (see [`spawn`]); `sys::netns` keeps the same rule.
pub(super) fn on_main_thread() -> bool {
    nix::unistd::gettid() == nix::unistd::getpid()
}

/// Why a spawn off the main thread is refused.
pub(super) const NOT_MAIN_THREAD: &str =
    "the tool must be spawned from the shim's main thread: its death signal follows the thread that spawned it";

/// The child's stack: mapped rather than allocated, so that only the pages
/// the child touches are faulted in (a zeroed 64 KiB buffer cost about
/// 50 µs of page faults per run here), with a guard page below it, so that
/// an overflow faults in the child instead of writing over the shim's
/// memory.
struct ChildStack {
    base: NonNull<c_void>,
    guard: usize,
    len: usize,
}

impl ChildStack {
    fn map() -> io::Result<ChildStack> {
        let guard = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(4096);
        let len = guard + CHILD_STACK;
        let size = NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a new private anonymous mapping where the kernel chooses:
        // no memory that exists already is touched.
        let base = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_STACK,
            )
        }?;
        let stack = ChildStack { base, guard, len };
        // SAFETY: the lowest page of the mapping just made, which nothing
        // else refers to.
        unsafe { mprotect(base, guard, ProtFlags::PROT_NONE) }?;
        Ok(stack)
    }

    /// The stack above the guard page.
    fn usable(&mut self) -> &mut [u8] {
        // SAFETY: these bytes are mapped read-write for as long as `self`
        // lives and are initialised (the kernel fills anonymous pages with
        // zeros); `&mut self` makes this the only reference to them.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u8>().add(self.guard), CHILD_STACK)
        }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, of this length; no slice of it
        // outlives `self`.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}

/// The child's side: the steps, then exec. Returns only on failure, with
/// the reason. Makes only system calls and allocates nothing, so it may
/// run in a child that shares the shim's memory (here) or in a fork(2)
/// child of a process with other threads (`sys::netns`). `took_terminal`
/// is set when the child's group took the terminal's foreground (seen by
/// the parent only when they share memory).
pub(super) fn in_child(program: &Prepared, steps: Steps<'_>, took_terminal: &AtomicBool) -> Errno {
    // The parent cannot close a race here as sudo does with its own
    // setpgid(child, child): with CLONE_VFORK it resumes only once this
    // child has exec'd, by when the group exists (and setpgid would fail
    // with EACCES).
    if let Err(e) = setpgid(Pid::from_raw(0), Pid::from_raw(0)) {
        return e;
    }
    // If the shim dies (SIGKILL), the tool dies with it rather than running
    // on without its gate.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return e;
    }
    // The shim may have died before the death signal was armed.
    if getppid() != steps.parent {
        return Errno::ESRCH;
    }
    // The terminal last, so no failure above leaves it with a child that
    // will not run (a failed exec gives it back, in `spawn`). Only if the
    // shim's group is in the foreground now: a shim sent to the background
    // must not take the terminal from the shell. Every signal is blocked
    // here, SIGTTOU included, which tcsetpgrp needs from a group that is
    // not (yet) the foreground one. A failure leaves the tool in the
    // background, as if the shim had been.
    if let Some((tty, shim_group)) = steps.terminal {
        if tcgetpgrp(tty) == Ok(shim_group) && tcsetpgrp(tty, getpgrp()).is_ok() {
            took_terminal.store(true, Ordering::Relaxed);
        }
    }
    exec_prepared(program, steps.nofile)
}

/// The last steps before the tool's first instruction, and the exec: the
/// descriptor limit as the shim found it, SIGPIPE's default back, no
/// signal blocked. Returns only on failure, with the reason. System calls
/// only, nothing allocated (the child of `spawn`, or strict mode's tool).
pub(crate) fn exec_prepared(program: &Prepared, nofile: Option<(u64, u64)>) -> Errno {
    if let Some((soft, hard)) = nofile {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, soft, hard) {
            return e;
        }
    }
    // main ignores SIGPIPE in the shim; the tool gets the default back, as
    // Command gives it.
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run on it.
    if let Err(e) = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        return e;
    }
    // The shim blocks the forwarded signals for its signalfd; the tool
    // starts with none blocked.
    if let Err(e) = SigSet::empty().thread_set_mask() {
        return e;
    }
    // SAFETY: `path` is a C string; `argv_ptrs` and `envp_ptrs` point at the
    // C strings `program` owns and end with NULL, as execve requires, and
    // `program` outlives the call. nix's execve would build these arrays
    // itself, allocating in the child, which must not allocate.
    unsafe {
        nix::libc::execve(
            program.path.as_ptr(),
            program.argv_ptrs.as_ptr(),
            program.envp_ptrs.as_ptr(),
        )
    };
    let errno = Errno::last();
    if errno == Errno::ENOEXEC {
        // SAFETY: as above, with `sh_argv_ptrs` (NULL-terminated, pointing
        // at SH and at strings `program` owns).
        unsafe {
            nix::libc::execve(
                SH.as_ptr(),
                program.sh_argv_ptrs.as_ptr(),
                program.envp_ptrs.as_ptr(),
            )
        };
    }
    errno
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn a_nul_byte_anywhere_is_refused_not_truncated() {
        let env: BTreeMap<OsString, OsString> = [(os("A"), os("b\0c"))].into_iter().collect();
        let err = Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("true")], &env).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err =
            Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("a\0b")], &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn spawning_off_the_main_thread_is_refused() {
        let steps = Steps {
            terminal: None,
            nofile: None,
            parent: nix::unistd::getpid(),
        };
        let result = std::thread::spawn(move || {
            let program = Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("true")], &BTreeMap::new())?;
            spawn(&program, steps)
        })
        .join()
        .unwrap();
        let err = result.expect_err("a spawn from a short-lived thread must be refused");
        assert!(err.to_string().contains("main thread"), "{err}");
    }

    #[test]
    fn pointer_arrays_end_with_null() {
        let env: BTreeMap<OsString, OsString> =
            [(os("A"), os("1")), (os("B"), os("2"))].into_iter().collect();
        let p = Prepared::new(OsStr::new("/bin/true"), &[OsStr::new("x"), OsStr::new("y")], &env).unwrap();
        assert_eq!(p.argv_ptrs.len(), 3);
        assert!(p.argv_ptrs[2].is_null() && p.envp_ptrs[2].is_null());
        assert_eq!(p.sh_argv_ptrs.len(), 4, "sh, the path, y, NULL");
        assert!(p.sh_argv_ptrs[3].is_null());
        assert!(p.argv_ptrs[..2]
            .iter()
            .chain(&p.envp_ptrs[..2])
            .all(|p| !p.is_null()));
    }
}
