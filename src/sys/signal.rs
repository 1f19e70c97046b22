//! Signals read from a signalfd instead of handlers: blocked in every
//! thread, then read one by one with where each came from.

use std::io;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Blocks `signals` and SIGCHLD in this thread (and so in every thread
/// created after) and returns a signalfd that reads them. Must run before
/// any other thread exists, or a thread that does not block them could
/// take one.
pub fn block_into_signalfd(signals: &[Signal]) -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for &sig in signals {
        mask.add(sig);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Registers the signalfd with the async runtime, to await its signals.
pub fn watch(signals: SignalFd) -> io::Result<AsyncFd<SignalFd>> {
    // SAFETY: SignalFd owns its descriptor (an OwnedFd) and returns that
    // same descriptor from as_raw_fd until it is dropped, which happens
    // only when the AsyncFd that now owns it is dropped.
    unsafe { AsyncFd::register_with_interest(signals, Interest::READABLE) }.map_err(io::Error::from)
}
