//! Pipes for `splice(2)`: the relay's zero-copy path, behind safe calls.
//!
//! A [`Pipe`] is non-blocking and close-on-exec; its capacity can be read
//! and set (`F_GETPIPE_SZ`, `F_SETPIPE_SZ`), and bytes move between it and
//! a socket with `splice` (`SPLICE_F_MOVE | SPLICE_F_NONBLOCK`), so a
//! would-block comes back as `io::ErrorKind::WouldBlock`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// Both ends of one pipe (two descriptors, closed on drop).
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Page moves rather than copies where the kernel can, and never blocks.
const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

impl Pipe {
    /// A new empty pipe at the kernel's default capacity.
    pub(crate) fn open() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Pipe { read, write })
    }

    /// How many bytes the pipe can hold.
    pub(crate) fn capacity(&self) -> io::Result<usize> {
        let size = fcntl(&self.write, FcntlArg::F_GETPIPE_SZ)?;
        Ok(usize::try_from(size).unwrap_or(0))
    }

    /// Asks for a capacity of `size` bytes; returns what the kernel granted
    /// (it rounds up to a power of two pages, or refuses).
    pub(crate) fn set_capacity(&self, size: usize) -> io::Result<usize> {
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        let granted = fcntl(&self.write, FcntlArg::F_SETPIPE_SZ(size))?;
        Ok(usize::try_from(granted).unwrap_or(0))
    }

    /// Moves up to `len` bytes from `from` (a socket) into the pipe. `Ok(0)`
    /// is the socket's EOF.
    pub(crate) fn fill_from(&self, from: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        Ok(splice(from, None, &self.write, None, len, FLAGS)?)
    }

    /// Moves up to `len` bytes from the pipe into `to` (a socket).
    pub(crate) fn drain_into(&self, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
        Ok(splice(&self.read, None, to, None, len, FLAGS)?)
    }

    /// The read end, for tests that look inside.
    #[cfg(test)]
    pub(crate) fn read_end(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.read.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_go_through_and_capacity_can_be_set() {
        let pipe = Pipe::open().unwrap_or_else(|e| panic!("{e}"));
        let default = pipe.capacity().unwrap_or_else(|e| panic!("{e}"));
        assert!(default > 0);
        let granted = pipe.set_capacity(2 * default).unwrap_or_else(|e| panic!("{e}"));
        assert!(granted >= 2 * default, "{granted}");
        let (mut a, b) = UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let (c, mut d) = UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        a.write_all(b"hello").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pipe.fill_from(b.as_fd(), 64).ok(), Some(5));
        assert_eq!(pipe.drain_into(c.as_fd(), 64).ok(), Some(5));
        let mut got = [0u8; 5];
        d.read_exact(&mut got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"hello");
        let empty = pipe.drain_into(c.as_fd(), 64);
        assert!(
            matches!(empty, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock),
            "{empty:?}"
        );
    }
}
