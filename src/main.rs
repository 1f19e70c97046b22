//! The `cli-guard` binary: everything lives in the library; this sets the
//! process up and maps the library's outcome to its exit.
//!
//! There is no Rust `main`: std's start-up (`lang_start`) cost about a
//! quarter of a millisecond per run here, most of it reading
//! /proc/self/maps to find the main thread's stack, and a shim starts
//! before every `npm`. The C `main` below makes the steps of it this
//! program relies on itself: descriptors 0 to 2 are opened on /dev/null if
//! they are closed (otherwise the audit log or the proxy's listener could
//! become "stderr"), SIGPIPE is ignored (a write to a closed socket or pipe
//! is an error to handle, not a death), and stdout is flushed at the end.
//! Given up: the "stack overflow" message on the main thread (a plain
//! SIGSEGV instead), the main thread's name in panic messages, and exit
//! 101 on a panic in a debug build (a panic cannot unwind out of a C
//! `main`, so it aborts, as release builds do anyway with panic=abort).
//! Relied on: `std::env::args_os` without `lang_start`, which glibc makes
//! work by passing argv to std's `.init_array` hook (build.rs already
//! assumes a `-linux-gnu` target).
#![no_main]

use std::ffi::{c_char, c_int};
use std::io::Write;
use std::os::fd::{AsFd, IntoRawFd};

use cli_guard::{die_by, Exit, GATE_FAILED};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::stat::Mode;

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    if prepare_process().is_err() {
        // Nowhere safe to say why: stderr may be what could not be opened.
        return c_int::from(GATE_FAILED);
    }
    let code = match cli_guard::dispatch(std::env::args_os().collect()) {
        Ok(Exit::Code(code)) => code,
        Ok(Exit::Signal(sig)) => die_by(sig),
        Err(failure) => {
            eprintln!("cli-guard: {failure}");
            failure.code
        }
    };
    let _ = std::io::stdout().flush();
    c_int::from(code)
}

/// What std's start-up would have done that this program needs.
fn prepare_process() -> nix::Result<()> {
    for fd in [
        std::io::stdin().as_fd(),
        std::io::stdout().as_fd(),
        std::io::stderr().as_fd(),
    ] {
        if fcntl(fd, FcntlArg::F_GETFD) == Err(Errno::EBADF) {
            // open(2) takes the lowest free number: this one, as 0 to 2
            // are filled in order. It stays open for the process's life.
            let null = open("/dev/null", OFlag::O_RDWR, Mode::empty())?;
            let _ = null.into_raw_fd();
        }
    }
    // SAFETY: SIG_IGN installs no handler, so no code of ours runs on it.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }?;
    Ok(())
}
