//! Strict mode's transparent path: a connection that ignored the proxy.
//!
//! Inside the tool's network namespace every address is local, so a client
//! that dials an address directly (Node's `https.get`, `curl --noproxy`, a
//! raw socket) lands on one of the gate's listeners there. The address it
//! dialled is the accepted socket's own (`getsockname`); an address from
//! the private pool maps back to the name the tool looked up, and the
//! connection is then judged and dialled exactly like a `CONNECT name:port`
//! and relayed byte for byte: no TLS is terminated, nothing is read. An
//! address that is not in the pool (a bare IP, a name from /etc/hosts) is
//! denied with a row naming the IP and port. Port 80 is answered `405`, as
//! the proxy answers plaintext.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::gate::dial::DialError;
use crate::gate::handler::{dial_failed, forced, Opened};
use crate::gate::judge::Judged;
use crate::gate::pool::Pool;
use crate::gate::refusal::{Closing, Refusal};
use crate::gate::tally::Row;
use crate::gate::Gate;
use crate::policy::authority::{Authority, Host};
use crate::policy::{Decision, ToolPolicy, Verdict};

/// The method recorded in a transparent connection's rows.
pub const METHOD: &str = "transparent";
/// The method recorded in a refused QUIC attempt's row.
pub const QUIC_METHOD: &str = "quic";

/// What to do with a connection that arrived at `dialled`. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A name from the pool on a port its rule allows: dial it.
    Dial { target: Authority, decision: Decision },
    /// Refuse: the status for the row, and why.
    Refuse {
        target: Authority,
        status: u16,
        reason: String,
    },
}

/// A CONNECT target `198.18.x.y:port` that the pool gave out, as
/// `name:port`; `None` for anything else (which is then judged as sent).
pub fn named_target(pool: &Pool, target: &str) -> Option<String> {
    let authority = crate::policy::authority::parse_authority(target).ok()?;
    let Host::Ip(IpAddr::V4(v4)) = authority.host else {
        return None;
    };
    pool.name_of(v4).map(|name| format!("{name}:{}", authority.port))
}

/// Decides a transparent connection by the address it dialled.
pub fn plan(policy: &ToolPolicy, pool: &Pool, dialled: SocketAddr) -> Plan {
    let port = dialled.port();
    let name = match dialled.ip() {
        IpAddr::V4(v4) => pool.name_of(v4),
        // IPv4-mapped addresses reach a dual-stack socket as IPv6.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().and_then(|v4| pool.name_of(v4)),
    };
    let host = match &name {
        Some(name) => Host::Name(name.to_string()),
        None => Host::Ip(dialled.ip()),
    };
    let target = Authority { host, port };
    // Plaintext is answered 405 whoever it was for, as the proxy answers
    // it: a plaintext client can read that, where a closed connection
    // looks like a network fault.
    if port == 80 {
        return Plan::Refuse {
            reason: format!(
                "plaintext HTTP to {target}, directly, ignoring the proxy: refused; cli-guard carries only \
                 TLS and never downgrades"
            ),
            target,
            status: 405,
        };
    }
    if name.is_none() {
        return Plan::Refuse {
            reason: format!(
                "a direct connection to {target}, ignoring the proxy: not an address this invocation \
                 looked up by name, so strict mode refused it"
            ),
            target,
            status: 403,
        };
    }
    match policy.decide(&target) {
        decision @ (Decision::Allowed(_) | Decision::Observed) => Plan::Dial { target, decision },
        Decision::NotAllowed => Plan::Refuse {
            reason: format!(
                "a direct connection to {target}, ignoring the proxy: {}; strict mode refused it",
                Decision::NotAllowed.reason(policy)
            ),
            target,
            status: 403,
        },
    }
}

/// Handles one transparent connection to its end: the refusal (its row, and
/// for port 80 a `405`), or the dial, the row, and the relay.
pub async fn serve(gate: Arc<Gate>, client: TcpStream, conn: u64, mut force: watch::Receiver<bool>) {
    let _ = client.set_nodelay(true);
    // The accepted socket's own address is the one the client dialled.
    let Ok(dialled) = client.local_addr() else {
        return;
    };
    let Some(pool) = gate.pool() else {
        return;
    };
    let (target, decision) = match plan(gate.policy, pool, dialled) {
        Plan::Refuse {
            target,
            status,
            reason,
        } => {
            let closing = match status {
                // A plaintext client can read an answer.
                405 => Closing::Linger,
                // A TLS or SSH client cannot: it sees the connection closed.
                _ => Closing::WithoutAnswer,
            };
            let refusal = Refusal {
                method: Some(METHOD.to_string()),
                target: Some(target),
                ..Refusal::deny(status, reason)
            };
            return gate.refuse(client, conn, refusal, closing).await;
        }
        Plan::Dial { target, decision } => (target, decision),
    };
    let judged = Judged {
        reason: format!(
            "{}; a direct connection, ignoring the proxy, mapped back to its name",
            decision.reason(gate.policy)
        ),
        target,
        decision,
    };
    let check = gate.policy.address_check(&judged.decision);
    let attempt = tokio::select! {
        dialled = gate.settings.dialer.dial(&judged.target, check) => dialled,
        _ = forced(&mut force) => Err(DialError::Stopped),
    };
    match attempt {
        Ok(dialled) => {
            let opened = Opened {
                method: METHOD,
                reason: format!("{}; {}", judged.reason, dialled.route),
                target: judged.target,
                early_up: &[],
                answer: &[],
            };
            opened.relay(&gate, client, conn, force, dialled).await;
        }
        Err(e) => {
            let refusal = Refusal {
                method: Some(METHOD.to_string()),
                ..dial_failed(judged, e)
            };
            gate.refuse(client, conn, refusal, Closing::WithoutAnswer).await;
        }
    }
}

/// Distinct destinations a QUIC refusal gets a row for; the datagrams a
/// client retries to the same one are not new attempts.
const QUIC_ROWS: usize = 256;

/// Refuses QUIC (UDP 443) until `stop` completes: nothing is answered, so
/// a client falls back to TCP, where the transparent path judges it; each
/// destination tried gets one row.
pub async fn refuse_quic<F: Future>(socket: UdpSocket, gate: Arc<Gate>, stop: F) {
    // Which address a datagram was sent to comes with it as packet info.
    let _ = setsockopt(&socket, sockopt::Ipv4PacketInfo, &true);
    let _ = setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true);
    tokio::pin!(stop);
    let mut seen: HashSet<IpAddr> = HashSet::new();
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            _ = &mut stop => return,
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
        let pooled = match dst {
            IpAddr::V4(v4) => gate.pool().and_then(|pool| pool.name_of(v4)),
            IpAddr::V6(_) => None,
        };
        let host = match pooled {
            Some(name) => Host::Name(name.to_string()),
            None => Host::Ip(dst),
        };
        let target = Authority { host, port: 443 };
        gate.record(
            0,
            Row {
                method: Some(QUIC_METHOD),
                reason: format!(
                    "QUIC (UDP 443) to {target}, directly, ignoring the proxy: refused; strict mode carries TCP \
                     only, and a client falls back to it"
                ),
                target: Some(&target),
                verdict: Verdict::Deny,
                status: 403,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lookup;

    fn refused_status(plan: Plan) -> u16 {
        match plan {
            Plan::Refuse { status, .. } => status,
            Plan::Dial { target, .. } => panic!("dialled {target}"),
        }
    }

    #[test]
    fn port_80_is_answered_405_for_a_pool_name_and_a_bare_address_alike() {
        let npm = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        let pool = Pool::new();
        let pooled = pool
            .assign("registry.npmjs.org")
            .unwrap_or_else(|_| panic!("pool"));
        let at = |ip: IpAddr, port| plan(npm, &pool, SocketAddr::new(ip, port));
        assert_eq!(refused_status(at(IpAddr::V4(pooled), 80)), 405);
        let bare = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(refused_status(at(bare, 80)), 405);
        assert_eq!(refused_status(at(bare, 443)), 403);
        assert!(matches!(at(IpAddr::V4(pooled), 443), Plan::Dial { .. }));
    }

    #[test]
    fn a_connect_to_a_pool_address_is_judged_by_its_name() {
        let pool = Pool::new();
        let pooled = pool
            .assign("registry.npmjs.org")
            .unwrap_or_else(|_| panic!("pool"));
        assert_eq!(
            named_target(&pool, &format!("{pooled}:443")).as_deref(),
            Some("registry.npmjs.org:443")
        );
        assert_eq!(named_target(&pool, "198.51.100.1:443"), None);
        assert_eq!(named_target(&pool, "registry.npmjs.org:443"), None);
        assert_eq!(named_target(&pool, "junk"), None);
    }
}
