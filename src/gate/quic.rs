//! Strict mode's answer to QUIC (UDP 443): none. A datagram to port 443 of
//! any address in the tool's namespace lands on the gate's socket and is
//! dropped, so a client falls back to TCP, where the transparent path
//! judges it; each destination tried gets one row.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::gate::datagram;
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
    datagram::want_destinations(&socket);
    let mut seen: HashSet<IpAddr> = HashSet::new();
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            _ = shutdown.stopping() => return,
            ready = socket.readable() => if ready.is_err() { return },
        }
        let received = socket.try_io(tokio::io::Interest::READABLE, || {
            datagram::receive(socket.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        });
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let Some(dst) = datagram.destination else { continue };
        if seen.len() >= QUIC_ROWS || !seen.insert(dst) {
            continue;
        }
        let process = datagram
            .peer
            .and_then(|peer| gate.actor_of_datagram(peer, SocketAddr::new(dst, 443)));
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
                process: process.as_ref().map(crate::who::Actor::row),
            },
        );
    }
}
