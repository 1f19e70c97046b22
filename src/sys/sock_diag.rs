//! Which socket is the other end of a loopback connection the gate
//! accepted: one exact `SOCK_DIAG_BY_FAMILY` lookup on a
//! `NETLINK_SOCK_DIAG` socket (inet_diag, no dump), giving the client
//! socket's inode and owner, which `who` then finds in a process's
//! descriptor table. Rootless; the netlink socket must live in the
//! client's network namespace (strict mode's namespace child makes one and
//! passes it out with the gate's other sockets).
//!
//! The request and the reply are hand-written bytes (a fixed 16-byte
//! header and a fixed 56-byte request, host byte order as netlink uses, the
//! addresses and ports in network order as inet_diag does), as
//! `sys::netlink` writes rtnetlink's: [`request`] and [`parse_reply`] are
//! pure and tested; [`SockDiag`] sends and receives.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_NOCOOKIE`: match by address, not by cookie.
const NO_COOKIE: u32 = !0;
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the
/// 48-byte `inet_diag_sockid`.
const REQ: usize = 56;
pub(crate) const REQUEST_LEN: usize = NLMSG_HDR + REQ;
/// In `struct inet_diag_msg` (after the header): family, state, timer,
/// retrans (4), the sockid (48), expires, rqueue, wqueue (12), then uid and
/// inode.
const MSG_UID: usize = 64;
const MSG_INODE: usize = 68;

/// The socket at the other end: its inode (as `/proc/PID/fd` links show
/// it, `socket:[INODE]`) and the uid that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketOwner {
    pub(crate) inode: u64,
    pub(crate) uid: u32,
}

/// The transport of the socket looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

/// The request for the socket whose own address is `src` and whose peer
/// is `dst` (TCP: the client's address, then the gate's). UDP is looked up
/// from the receiving side (`udp_dump_one`), so for a datagram `src` is
/// the address it was sent to and `dst` the client's. Pure.
pub(crate) fn request(transport: Transport, src: SocketAddr, dst: SocketAddr, seq: u32) -> [u8; REQUEST_LEN] {
    let mut out = [0u8; REQUEST_LEN];
    out[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    let body = &mut out[NLMSG_HDR..];
    body[0] = match src {
        SocketAddr::V4(_) => libc::AF_INET as u8,
        SocketAddr::V6(_) => libc::AF_INET6 as u8,
    };
    body[1] = match transport {
        Transport::Tcp => libc::IPPROTO_TCP as u8,
        Transport::Udp => libc::IPPROTO_UDP as u8,
    };
    // Every state.
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = &mut body[8..];
    id[0..2].copy_from_slice(&src.port().to_be_bytes());
    id[2..4].copy_from_slice(&dst.port().to_be_bytes());
    id[4..20].copy_from_slice(&address_bytes(src));
    id[20..36].copy_from_slice(&address_bytes(dst));
    // idiag_if 0: any interface; the cookie: none.
    id[40..44].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    id[44..48].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    out
}

/// An address as inet_diag's `__be32[4]`: IPv4 in the first word.
fn address_bytes(addr: SocketAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        SocketAddr::V4(v4) => out[..4].copy_from_slice(&v4.ip().octets()),
        SocketAddr::V6(v6) => out.copy_from_slice(&v6.ip().octets()),
    }
    out
}

/// What a reply to request `seq` says: the socket's owner, `None` when the
/// kernel has no such socket (ENOENT: the client has gone), or the errno
/// it answered. `Err(None)`: not a reply to `seq` (read on). Pure.
pub(crate) fn parse_reply(reply: &[u8], seq: u32) -> Result<Option<SocketOwner>, Option<Errno>> {
    let word = |at: usize| -> Option<u32> {
        reply
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let (Some(len), Some(kind), Some(got_seq)) = (
        word(0),
        reply
            .get(4..6)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_ne_bytes),
        word(8),
    ) else {
        return Err(Some(Errno::EBADMSG));
    };
    if got_seq != seq {
        return Err(None);
    }
    if (len as usize) > reply.len() {
        return Err(Some(Errno::EBADMSG));
    }
    if kind == libc::NLMSG_ERROR as u16 {
        let code = word(NLMSG_HDR).map(|c| c as i32).ok_or(Some(Errno::EBADMSG))?;
        return match Errno::from_raw(-code) {
            Errno::ENOENT => Ok(None),
            errno => Err(Some(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(Some(Errno::EBADMSG));
    }
    match (word(NLMSG_HDR + MSG_UID), word(NLMSG_HDR + MSG_INODE)) {
        (Some(uid), Some(inode)) => Ok(Some(SocketOwner {
            inode: u64::from(inode),
            uid,
        })),
        _ => Err(Some(Errno::EBADMSG)),
    }
}

/// A `NETLINK_SOCK_DIAG` socket, in the network namespace it was made in.
#[derive(Debug)]
pub(crate) struct SockDiag {
    socket: OwnedFd,
}

impl SockDiag {
    /// A socket in this process's network namespace.
    pub(crate) fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            socket: open_socket()?,
        })
    }

    /// One made elsewhere (strict mode's namespace child).
    pub(crate) fn from_fd(socket: OwnedFd) -> SockDiag {
        SockDiag { socket }
    }

    /// The socket whose address is `src` and peer `dst` (see [`request`]);
    /// `None` if the kernel has none. Blocking, but the kernel answers at
    /// once (a few microseconds): no I/O waits behind it.
    pub(crate) fn owner(
        &self,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
    ) -> io::Result<Option<SocketOwner>> {
        let req = request(transport, src, dst, seq);
        socket::send(self.socket.as_raw_fd(), &req, MsgFlags::empty())?;
        let mut buf = [0u8; 512];
        // Replies to earlier, abandoned lookups are skipped by their seq.
        for _ in 0..8 {
            let n = socket::recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            match parse_reply(&buf[..n], seq) {
                Ok(owner) => return Ok(owner),
                Err(None) => continue,
                Err(Some(errno)) => return Err(errno.into()),
            }
        }
        Err(Errno::EBADMSG.into())
    }
}

/// The netlink socket, close-on-exec.
pub(crate) fn open_socket() -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_request_names_the_socket_by_its_addresses_in_network_order() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}"));
        let dst: SocketAddr = "127.0.0.2:3128".parse().unwrap_or_else(|e| panic!("{e}"));
        let req = request(Transport::Tcp, src, dst, 7);
        assert_eq!(
            u32::from_ne_bytes([req[0], req[1], req[2], req[3]]) as usize,
            REQUEST_LEN
        );
        assert_eq!(req[16], libc::AF_INET as u8);
        assert_eq!(req[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&req[24..26], &40000u16.to_be_bytes());
        assert_eq!(&req[26..28], &3128u16.to_be_bytes());
        assert_eq!(&req[28..32], &[127, 0, 0, 1]);
        assert_eq!(&req[44..48], &[127, 0, 0, 2]);
    }

    #[test]
    fn replies_are_read_by_their_sequence_and_an_unknown_socket_is_none() {
        let mut reply = vec![0u8; NLMSG_HDR + 72];
        let len = reply.len() as u32;
        reply[0..4].copy_from_slice(&len.to_ne_bytes());
        reply[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        reply[8..12].copy_from_slice(&9u32.to_ne_bytes());
        reply[NLMSG_HDR + MSG_UID..][..4].copy_from_slice(&1000u32.to_ne_bytes());
        reply[NLMSG_HDR + MSG_INODE..][..4].copy_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(
            parse_reply(&reply, 9),
            Ok(Some(SocketOwner {
                inode: 4242,
                uid: 1000
            }))
        );
        assert_eq!(parse_reply(&reply, 8), Err(None));
        let mut error = vec![0u8; NLMSG_HDR + 4];
        let len = error.len() as u32;
        error[0..4].copy_from_slice(&len.to_ne_bytes());
        error[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        error[8..12].copy_from_slice(&9u32.to_ne_bytes());
        error[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_reply(&error, 9), Ok(None));
        assert!(parse_reply(&error[..10], 9).is_err());
        assert!(parse_reply(&[], 9).is_err());
    }

    #[test]
    fn the_kernel_names_the_client_socket_of_a_loopback_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let client = TcpStream::connect(listener.local_addr().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let (accepted, peer) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let own = accepted.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let diag = SockDiag::open().unwrap_or_else(|e| panic!("{e}"));
        let owner = diag
            .owner(Transport::Tcp, peer, own, 1)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no socket"));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(owner.inode, meta.ino());
        assert_eq!(owner.uid, nix::unistd::getuid().as_raw());
        drop(client);
        drop(accepted);
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(diag.owner(Transport::Tcp, gone, own, 2).ok().flatten(), None);
    }
}
