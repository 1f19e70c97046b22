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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::gate::dial::DialError;
use crate::gate::handler::{dial_failed, forced, Opened};
use crate::gate::judge::Judged;
use crate::gate::pool::Pool;
use crate::gate::refusal::{Closing, Refusal};
use crate::gate::Gate;
use crate::policy::authority::{Authority, Host};
use crate::policy::{Decision, ToolPolicy};

/// The method recorded in a transparent connection's rows.
pub const METHOD: &str = "transparent";

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

/// Decides a transparent connection by the address it dialled.
pub fn plan(policy: &ToolPolicy, pool: &Pool, dialled: SocketAddr) -> Plan {
    let port = dialled.port();
    let name = match dialled.ip() {
        IpAddr::V4(v4) => pool.name_of(v4),
        // IPv4-mapped addresses reach a dual-stack socket as IPv6.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().and_then(|v4| pool.name_of(v4)),
    };
    let Some(name) = name else {
        let target = Authority {
            host: Host::Ip(dialled.ip()),
            port,
        };
        return Plan::Refuse {
            reason: format!(
                "a direct connection to {target}, ignoring the proxy: not an address this invocation \
                 looked up by name, so strict mode refused it"
            ),
            target,
            status: 403,
        };
    };
    let target = Authority {
        host: Host::Name(name.to_string()),
        port,
    };
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
