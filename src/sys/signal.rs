//! Signals read from a signalfd instead of handlers: blocked in every
//! thread, then read one by one with where each came from; and the two
//! signal calls nix has no safe wrapper for.

use std::io;

use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Blocks `signals` and SIGCHLD in this thread (and so in every thread
/// created after) and returns a signalfd that reads them. Must run before
/// any other thread exists, or a thread that does not block them could
/// take one.
pub(crate) fn block_into_signalfd(signals: &[Signal]) -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for &sig in signals {
        mask.add(sig);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Registers the signalfd with the async runtime, to await its signals.
pub(crate) fn watch(signals: SignalFd) -> io::Result<AsyncFd<SignalFd>> {
    // SAFETY: SignalFd owns its descriptor (an OwnedFd) and returns that
    // same descriptor from as_raw_fd until it is dropped, which happens
    // only when the AsyncFd that now owns it is dropped.
    unsafe { AsyncFd::register_with_interest(signals, Interest::READABLE) }.map_err(io::Error::from)
}

/// Gives `sig` its default action back (undoing an ignore or a handler
/// this process inherited or set).
pub(crate) fn restore_default(sig: Signal) -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no handler of ours, so there is no
    // async-signal-safety contract to uphold.
    unsafe { signal(sig, SigHandler::SigDfl) }.map(drop)
}

/// Whether `sig` waits in this thread's (blocked, pending) set.
pub(crate) fn is_pending(sig: Signal) -> bool {
    let mut set = std::mem::MaybeUninit::<nix::libc::sigset_t>::uninit();
    // SAFETY: sigpending writes a whole sigset_t to the pointer it is given,
    // which points at one; nix has no wrapper for it.
    if unsafe { nix::libc::sigpending(set.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: sigpending succeeded, so it initialised the set that
    // sigismember reads.
    unsafe { nix::libc::sigismember(set.as_ptr(), sig as nix::libc::c_int) == 1 }
}
