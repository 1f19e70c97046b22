//! What the kernel knows of a TCP connection that std does not ask: how
//! many bytes written to it the peer has not yet acknowledged.

use std::os::fd::AsRawFd;

/// Bytes written to `socket` that the peer's TCP has not acknowledged yet
/// (`SIOCOUTQ`: sent and unacknowledged, and not yet sent).
pub(crate) fn unacknowledged(socket: &impl AsRawFd) -> std::io::Result<u64> {
    let mut queued: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ's number) writes one int through the
    // pointer, which points at `queued`, alive for the call.
    let rc = unsafe { nix::libc::ioctl(socket.as_raw_fd(), nix::libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::try_from(queued).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn bytes_read_by_the_peer_are_acknowledged() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        let (mut server, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        client.write_all(b"hello").unwrap_or_else(|e| panic!("{e}"));
        let mut got = [0u8; 5];
        server.read_exact(&mut got).unwrap_or_else(|e| panic!("{e}"));
        // The data was read, so its acknowledgement is on its way or in.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while unacknowledged(&client).unwrap_or(1) != 0 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::yield_now();
        }
    }
}
