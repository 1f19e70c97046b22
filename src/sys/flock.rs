//! An exclusive `flock(2)` held on a file the caller keeps open: the audit
//! log's lock, taken for each row and for a rotation (nix's `Flock` takes
//! the file by value and closes it with the lock).

use std::fs::File;
use std::os::fd::AsRawFd;

/// The lock, held until dropped.
#[derive(Debug)]
pub(crate) struct Held<'a>(&'a File);

/// Waits for an exclusive lock on `file` (retrying after a signal).
pub(crate) fn exclusive(file: &File) -> std::io::Result<Held<'_>> {
    lock(file, nix::libc::LOCK_EX).map(|()| Held(file))
}

/// Takes an exclusive lock on `file` if no one holds one; `None` if
/// someone does.
pub(crate) fn try_exclusive(file: &File) -> std::io::Result<Option<Held<'_>>> {
    match lock(file, nix::libc::LOCK_EX | nix::libc::LOCK_NB) {
        Ok(()) => Ok(Some(Held(file))),
        Err(e) if e.raw_os_error() == Some(nix::libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(e),
    }
}

fn lock(file: &File, how: nix::libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock(2) takes a descriptor and flags and touches no
        // memory of ours; `file` keeps the descriptor open for the call.
        if unsafe { nix::libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an error leaves nothing
        // to do.
        let _ = lock(self.0, nix::libc::LOCK_UN);
    }
}
