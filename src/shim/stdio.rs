//! A socket on stdin, stdout or stderr never reaches a strict invocation's
//! tool: a socket made in the host's network (a CI agent's, an IDE's, a
//! TCP connection handed to the shim) can be disconnected and connected
//! again anywhere by whoever holds it (`connect(AF_UNSPEC)`, then
//! `connect`). The tool gets a pipe there instead, and the shim relays
//! the bytes between the pipe and the socket: the socket stays the shim's.
//!
//! The inherited socket's open file description is shared with whoever
//! handed it over, so its flags are never changed: it is read and written
//! with `MSG_DONTWAIT` on readiness alone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recv, send, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How much is read at a time.
const CHUNK: usize = 64 * 1024;

/// One relayed stdio descriptor: which it is, and the shim's end of its
/// pipe.
#[derive(Debug)]
struct Relay {
    fd: RawFd,
    ours: OwnedFd,
}

/// The relays of an invocation, and until the tool has them, the tool's
/// ends of their pipes.
#[derive(Debug, Default)]
pub(super) struct Relays {
    relays: Vec<Relay>,
    tool_ends: [Option<OwnedFd>; 3],
}

impl Relays {
    /// No relay.
    pub(super) fn none() -> Relays {
        Relays::default()
    }

    /// A pipe for each of stdin, stdout and stderr that is a socket.
    pub(super) fn new(sockets: [bool; 3]) -> io::Result<Relays> {
        let mut relays = Relays::default();
        for (fd, is_socket) in sockets.into_iter().enumerate() {
            if !is_socket {
                continue;
            }
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            // stdin flows to the tool; stdout and stderr from it.
            let (tool, ours) = if fd == 0 { (read, write) } else { (write, read) };
            fcntl(&ours, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            relays.tool_ends[fd] = Some(tool);
            relays.relays.push(Relay {
                fd: fd as RawFd,
                ours,
            });
        }
        Ok(relays)
    }

    /// The tool's ends, to be put on 0 to 2 before its exec.
    pub(super) fn tool_ends(&self) -> [Option<RawFd>; 3] {
        [0, 1, 2].map(|i| self.tool_ends[i].as_ref().map(AsRawFd::as_raw_fd))
    }

    /// Closes the shim's copies of the tool's ends, once the tool has its
    /// own: a pipe's reader sees EOF only when every writer is gone.
    pub(super) fn close_tool_ends(&mut self) {
        self.tool_ends = Default::default();
    }

    /// Whether anything is relayed.
    pub(super) fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Relays every pipe until its end: stdin until the socket's EOF (then
    /// the tool sees EOF too), stdout and stderr until the tool's side is
    /// closed (the tool and everything it left behind are gone).
    pub(super) async fn run(self) {
        let tasks = self.relays.into_iter().map(|relay| async move {
            // Errors end a relay as EOF would: the peer is gone.
            let _ = match relay.fd {
                0 => socket_to_pipe(relay.fd, relay.ours).await,
                _ => pipe_to_socket(relay.ours, relay.fd).await,
            };
        });
        let mut set = tokio::task::JoinSet::new();
        for task in tasks {
            set.spawn(task);
        }
        while set.join_next().await.is_some() {}
    }
}

/// A duplicate of stdio descriptor `fd`, to watch for readiness (the
/// registration leaves the shared description's flags alone).
fn watch(fd: RawFd) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = match fd {
        0 => std::io::stdin().as_fd().try_clone_to_owned()?,
        1 => std::io::stdout().as_fd().try_clone_to_owned()?,
        _ => std::io::stderr().as_fd().try_clone_to_owned()?,
    };
    crate::sys::asyncfd::watch(dup, Interest::READABLE | Interest::WRITABLE)
}

async fn socket_to_pipe(fd: RawFd, pipe: OwnedFd) -> io::Result<()> {
    let socket = watch(fd)?;
    let pipe = crate::sys::asyncfd::watch(pipe, Interest::WRITABLE)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = loop {
            let mut ready = socket.readable().await?;
            match ready
                .try_io(|s| recv(s.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from))
            {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        if n == 0 {
            return Ok(());
        }
        write_all(&pipe, &buf[..n]).await?;
    }
}

async fn pipe_to_socket(pipe: OwnedFd, fd: RawFd) -> io::Result<()> {
    let socket = watch(fd)?;
    let pipe = crate::sys::asyncfd::watch(pipe, Interest::READABLE)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = loop {
            let mut ready = pipe.readable().await?;
            match ready.try_io(|p| nix::unistd::read(p.as_fd(), &mut buf).map_err(io::Error::from)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        if n == 0 {
            return Ok(());
        }
        let mut sent = 0;
        while sent < n {
            let mut ready = socket.writable().await?;
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match ready.try_io(|s| send(s.as_raw_fd(), &buf[sent..n], flags).map_err(io::Error::from)) {
                Ok(result) => sent += result?,
                Err(_would_block) => continue,
            }
        }
    }
}

async fn write_all(pipe: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = pipe.writable().await?;
        match ready.try_io(|p| match nix::unistd::write(p.get_ref(), bytes) {
            Err(Errno::EAGAIN) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            other => other.map_err(io::Error::from),
        }) {
            Ok(result) => bytes = &bytes[result?..],
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
