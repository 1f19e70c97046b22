//! The gate: a CONNECT proxy for one invocation, and in strict mode the
//! other ways out of the tool's namespace.
//!
//! `serve` starts everything one gate serves (`Sockets`) on the runtime,
//! with one `Shutdown` for every task. `listener` accepts (under a
//! connection cap; over it, 503) and, on the stop, gives open tunnels a
//! grace, then forces them closed. Each proxy connection is a `handler`
//! task, which in order:
//!
//! 1. reads the request head (`http`), bounded in size and by a deadline a
//!    slow drip cannot extend (400, 431, 408);
//! 2. refuses a request line that carries the secret (400), so it is never
//!    logged;
//! 3. judges the request line (`judge`): only CONNECT (405), only a plain
//!    `host:port` (400, answered to anyone), then the policy (403);
//! 4. requires the per-invocation credential (`crate::credential`) before
//!    any answer but that 400 (407; two of them, 400);
//! 5. dials (`dial`): directly, with the policy's address check (403 for a
//!    forbidden address), or through an upstream proxy (`upstream`), under
//!    a timeout (502, 504; 503 if the gate stops first);
//! 6. opens the tunnel (`tunnel`): the `egress` row, the 200, the relay
//!    (`relay`) until both sides are done, then the `egress_close` row.
//!
//! In strict mode the gate also takes the tool's direct connections
//! (`transparent`, judged by `judge::judge_direct` and opened by the same
//! `tunnel`), answers DNS inside its namespace (`resolver`, on the pure
//! message code in `dns`: allowed names get an address from the private
//! `pool`, which maps an address a connection lands on back to its name),
//! and refuses QUIC (`quic`).
//!
//! One place decides ([`judge`], asking `policy`); one place writes an
//! `egress` row ([`Gate::record`], in `outcome`, which names how each
//! attempt came in with one `Method`) and `tally` counts them, under caps
//! for strangers, DNS queries and direct connections; every refusal is one
//! `refusal::Refusal`, answered in one place ([`Gate::refuse`]).

mod datagram;
mod dial;
pub mod dns;
mod handler;
mod http;
mod judge;
mod listener;
mod outcome;
mod pool;
mod quic;
mod refusal;
mod relay;
mod resolver;
mod rows;
mod serve;
mod shutdown;
mod tally;
mod transparent;
mod tunnel;
mod unix;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::credential::Credential;
use crate::env::{Env, RESOLVE_VAR};
use crate::gate::dial::{Dialer, Resolve};
use crate::gate::relay::PipePool;
use crate::gate::tally::Tally;
use crate::gate::upstream::NoProxy;
use crate::policy::ToolPolicy;
use crate::sys::sock_diag::Transport;
use crate::who::{Actor, Who};

pub(crate) use dial::DIAL_TIMEOUT;
pub use http::parse_head;
pub use judge::{judge, Judged};
pub(crate) use listener::GRACE;
pub use listener::{bind_loopback, connection_cap_for};
pub use pool::Pool;
pub use refusal::Refusal;
pub use relay::IDLE_PIPES;
pub use resolver::{answer_query, answered_address};
pub(crate) use rows::{ROWS_METHOD, ROWS_TARGET};
pub(crate) use serve::{start, Sockets};
pub(crate) use shutdown::Shutdown;
pub(crate) use tally::{Denial, Summary};
pub(crate) use upstream::upstream_of;

/// How a gate is set up, beyond its policy and log.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub dialer: Dialer,
    /// What a request must carry in `Proxy-Authorization`; a request line
    /// holding it is refused, and refusal reasons are scrubbed of it.
    pub credential: Credential,
    /// Connections handled at once; more are answered 503. Keeps the gate
    /// answering instead of failing when descriptors run out.
    pub max_connections: usize,
}

impl Settings {
    /// The settings a real invocation uses: the environment's upstream proxy
    /// and NO_PROXY, `CLI_GUARD_RESOLVE`, the invocation's credential, and a
    /// cap under the descriptor limit. `own` is the gate's listener.
    pub(crate) fn from_env(
        own: Option<SocketAddr>,
        credential: &Credential,
        env: &Env,
    ) -> Result<Settings, String> {
        let resolve = Resolve::parse(env.resolve()).map_err(|e| format!("{RESOLVE_VAR}: {e}"))?;
        let upstream = upstream::from_env(env)?;
        // Nested inside another cli-guard, NO_PROXY is the outer gate's
        // (loopback and its pinned exceptions), not the user's: honouring it
        // would let this gate dial around the outer allowlist. Everything
        // then goes through the upstream, and the outer gate applies the
        // user's own NO_PROXY at the hop that dials directly.
        let no_proxy = match env.parent_audit_id() {
            Some(_) => NoProxy::default(),
            None => env.no_proxy().map(NoProxy::parse).unwrap_or_default(),
        };
        Ok(Settings {
            dialer: Dialer {
                resolve,
                upstream,
                no_proxy,
                own,
            },
            credential: credential.clone(),
            max_connections: listener::connection_cap(),
        })
    }
}

/// What every connection task shares: the policy, the log, the settings,
/// the tallies for the `end` record, and the relay's pipes.
#[derive(Debug)]
pub(crate) struct Gate {
    pub policy: &'static ToolPolicy,
    pub audit: Arc<AuditLog>,
    settings: Settings,
    tally: Tally,
    /// Pipes for the relay's splice, shared by all tunnels.
    pipes: PipePool,
    /// Rows relayed from nested invocations (`rows`), under a cap.
    relayed: rows::Relayed,
    /// Strict mode's private addresses, by name: what the transparent path
    /// maps a dialled address back with. `None` behind the plain proxy.
    pool: Option<Arc<Pool>>,
    /// Who made each connection (`who`). `None` where attribution could
    /// not be set up (the start row says why): then everything is judged
    /// as the tool, as before attribution.
    who: Option<Arc<Who>>,
}

impl Gate {
    /// A gate for one tool's invocation, with empty tallies.
    pub(crate) fn new(policy: &'static ToolPolicy, audit: Arc<AuditLog>, settings: Settings) -> Gate {
        Gate {
            policy,
            audit,
            settings,
            tally: Tally::default(),
            pipes: PipePool::default(),
            relayed: rows::Relayed::default(),
            pool: None,
            who: None,
        }
    }

    /// The gate of an invocation whose connections are attributed.
    pub(crate) fn with_who(self, who: Arc<Who>) -> Gate {
        Gate {
            who: Some(who),
            ..self
        }
    }

    /// Counts an attempt that gets no row of its own (a relayed row
    /// refused): in the end row's `suppressed`.
    pub(crate) fn count_unrecorded(&self) {
        self.tally.count_unrecorded();
    }

    /// The invocation's attribution, when it is on.
    pub(crate) fn who(&self) -> Option<&Who> {
        self.who.as_deref()
    }

    /// Who sent a datagram from `peer` to `destination`, when attribution
    /// is on.
    pub(crate) fn actor_of_datagram(&self, peer: SocketAddr, destination: SocketAddr) -> Option<Actor> {
        Some(self.who.as_ref()?.find(Transport::Udp, peer, destination))
    }

    /// Who made the TCP connection `client` (accepted by this gate), when
    /// attribution is on.
    pub(crate) fn actor_of(&self, client: &tokio::net::TcpStream) -> Option<Actor> {
        let who = self.who.as_ref()?;
        let (Ok(peer), Ok(own)) = (client.peer_addr(), client.local_addr()) else {
            return Some(Actor::Unknown {
                pid: None,
                exe: None,
                why: "the connection had no addresses left to look up".to_string(),
            });
        };
        Some(who.find(Transport::Tcp, peer, own))
    }

    /// The gate of a strict-mode invocation: names are looked up in `pool`.
    pub(crate) fn with_pool(self, pool: Arc<Pool>) -> Gate {
        Gate {
            pool: Some(pool),
            ..self
        }
    }

    /// Strict mode's pool, if this gate has one.
    pub(crate) fn pool(&self) -> Option<&Pool> {
        self.pool.as_deref()
    }

    /// The tallies so far.
    pub(crate) fn summary(&self) -> Summary {
        self.tally.summary()
    }
}
