//! A datagram as strict mode's UDP sockets receive it: bound to every
//! address of the tool's namespace, they learn the address a datagram was
//! sent to from its packet info, which the resolver and QUIC's refusal
//! need to look the sender's socket up (`who`) and QUIC to name where it
//! was going.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use tokio::net::UdpSocket;

/// One datagram as received: its length, who sent it, and the address it
/// was sent to (from its packet info; the socket is bound to every
/// address, and the sender's socket is looked up by both, `who`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Datagram {
    pub(super) len: usize,
    pub(super) peer: Option<SocketAddr>,
    pub(super) destination: Option<IpAddr>,
}

/// Asks for packet info on `socket`'s datagrams (for [`receive`]).
pub(super) fn want_destinations(socket: &UdpSocket) {
    let _ = setsockopt(socket, sockopt::Ipv4PacketInfo, &true);
    let _ = setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true);
}

/// Reads one datagram into `buf` without blocking.
pub(super) fn receive(fd: std::os::fd::RawFd, buf: &mut [u8]) -> nix::Result<Datagram> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)?;
    let len = msg.bytes;
    let peer = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
            })
    });
    let mut dst = None;
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    Ok(Datagram {
        len,
        peer,
        destination: dst,
    })
}
