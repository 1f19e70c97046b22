//! Strict mode's answer to QUIC (UDP 443): none. A datagram to port 443 of
//! any address in the tool's namespace lands on the gate's socket and is
//! dropped, so a client falls back to TCP, where the transparent path
//! judges it; each destination tried gets one row.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use tokio::net::UdpSocket;

use crate::gate::outcome::{Aim, Method, Outcome};
use crate::gate::shutdown::Shutdown;
use crate::gate::Gate;
use crate::policy::authority::{Authority, Host};
use crate::policy::Verdict;

/// Distinct destinations a QUIC refusal gets a row for; the datagrams a
/// client retries to the same one are not new attempts.
const QUIC_ROWS: usize = 256;

/// Refuses QUIC on `socket` until the gate stops (see the module doc).
pub(super) async fn refuse(socket: UdpSocket, gate: Arc<Gate>, mut shutdown: Shutdown) {
    // Which address a datagram was sent to comes with it as packet info.
    let _ = setsockopt(&socket, sockopt::Ipv4PacketInfo, &true);
    let _ = setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true);
    let mut seen: HashSet<IpAddr> = HashSet::new();
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            _ = shutdown.stopping() => return,
            ready = socket.readable() => if ready.is_err() { return },
        }
        let received = socket.try_io(tokio::io::Interest::READABLE, || {
            datagram_destination(socket.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        });
        let dst = match received {
            Ok(dst) => dst,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let Some(dst) = dst else { continue };
        if seen.len() >= QUIC_ROWS || !seen.insert(dst) {
            continue;
        }
        let bare = Authority {
            host: Host::Ip(dst),
            port: 443,
        };
        let target = match (dst, gate.pool()) {
            (IpAddr::V4(_), Some(pool)) => pool.named(bare),
            _ => bare,
        };
        gate.record(
            0,
            Outcome {
                method: Some(Method::Quic),
                reason: format!(
                    "QUIC (UDP 443) to {target}, directly, ignoring the proxy: refused; strict mode carries TCP \
                     only, and a client falls back to it"
                ),
                aim: Aim::Endpoint(&target),
                verdict: Verdict::Deny,
                status: 403,
                qtype: None,
            },
        );
    }
}

/// Reads one datagram and returns the address it was sent to, from its
/// packet info (`None` without it).
fn datagram_destination(fd: std::os::fd::RawFd, buf: &mut [u8]) -> nix::Result<Option<IpAddr>> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)?;
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
    Ok(dst)
}
