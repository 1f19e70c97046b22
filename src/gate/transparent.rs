//! Strict mode's transparent path: a connection that ignored the proxy.
//!
//! Inside the tool's network namespace every address is local, so a client
//! that dials an address directly (Node's `https.get`, `curl --noproxy`, a
//! raw socket) lands on one of the gate's listeners there. The address it
//! dialled is the accepted socket's own (`getsockname`), and the judge
//! (`judge::judge_direct`) decides by it: an address from the private pool
//! maps back to the name the tool looked up, and the connection is then
//! judged and dialled exactly like a `CONNECT name:port` and relayed byte
//! for byte: no TLS is terminated, nothing is read. An address that is not
//! in the pool (a bare IP, a name from /etc/hosts) is denied with a row
//! naming the IP and port. Port 80 is answered `405`, as the proxy answers
//! plaintext.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::gate::judge::judge_direct;
use crate::gate::outcome::Method;
use crate::gate::refusal::Closing;
use crate::gate::shutdown::Shutdown;
use crate::gate::tunnel::{self, dial_failed, Opened};
use crate::gate::Gate;
use crate::policy::Acting;
use crate::who::Actor;

/// Handles one transparent connection to its end: the refusal (its row, and
/// for port 80 a `405`), or the dial, the row, and the relay.
pub(super) async fn serve(gate: Arc<Gate>, client: TcpStream, conn: u64, mut shutdown: Shutdown) {
    let _ = client.set_nodelay(true);
    // The accepted socket's own address is the one the client dialled.
    let Ok(dialled) = client.local_addr() else {
        return;
    };
    let Some(pool) = gate.pool() else {
        return;
    };
    let actor = gate.actor_of(&client);
    let acting = actor.as_ref().map_or(Acting::Tool, Actor::acting);
    let process = actor.as_ref().map(Actor::row);
    let judged = match judge_direct(gate.policy, &acting, pool, dialled) {
        Ok(judged) => judged.by(actor.as_ref()),
        Err(refusal) => {
            let refusal = refusal.of_actor(actor.as_ref());
            let closing = match refusal.status {
                // A plaintext client can read an answer.
                405 => Closing::Linger,
                // A TLS or SSH client cannot: it sees the connection closed.
                _ => Closing::WithoutAnswer,
            };
            return gate.refuse(client, conn, refusal, closing).await;
        }
    };
    match tunnel::dial(&gate, &judged, &mut shutdown).await {
        Ok(dialled) => {
            let opened = Opened {
                method: Method::Transparent,
                reason: format!("{}; {}", judged.reason, dialled.route),
                target: judged.target,
                early_up: &[],
                answer: &[],
                process,
            };
            opened.relay(&gate, client, conn, shutdown, dialled).await;
        }
        Err(e) => {
            let refusal = dial_failed(Method::Transparent, judged, e, process);
            gate.refuse(client, conn, refusal, Closing::WithoutAnswer).await;
        }
    }
}
