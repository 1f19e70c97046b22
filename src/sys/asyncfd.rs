//! Registering a descriptor this process owns with the async runtime, for
//! readiness: tokio's safe constructor is deprecated as unsound for
//! descriptors that may be closed under it, which an `OwnedFd` moved into
//! the `AsyncFd` cannot be.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `fd`, watched for `interest`.
pub(crate) fn watch(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, which stays open (and the same
    // descriptor) until the AsyncFd is dropped and deregisters it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
