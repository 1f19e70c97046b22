//! An allowed, dialled connection's life, whichever way it came in (the
//! proxy's CONNECT or strict mode's direct path): the `egress` row on disk
//! before a byte moves, the answer, the relay until both sides are done or
//! the gate forces it closed, then the `egress_close` row. And the refusal
//! for an allowed connection whose dial failed.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::audit::{self, Record};
use crate::gate::dial::{DialError, Dialled};
use crate::gate::judge::Judged;
use crate::gate::outcome::{Aim, Method, Outcome};
use crate::gate::refusal::Refusal;
use crate::gate::relay::{relay, RelayOutcome};
use crate::gate::shutdown::Shutdown;
use crate::gate::{Gate, GRACE};
use crate::policy::authority::Authority;
use crate::policy::Verdict;

/// A connection the gate allowed and dialled, about to carry bytes.
#[derive(Debug)]
pub(super) struct Opened<'a> {
    /// [`Method::Connect`], or [`Method::Transparent`] for strict mode's
    /// direct connections.
    pub method: Method,
    pub target: Authority,
    /// The policy's reason and the route, for the `egress` row.
    pub reason: String,
    /// What the client sent after its request, for the upstream first.
    pub early_up: &'a [u8],
    /// What the client gets before the tunnel's bytes (the 200), if any.
    pub answer: &'a [u8],
    /// Who made the connection (`who`).
    pub process: Option<Box<audit::Process>>,
}

impl Opened<'_> {
    /// Writes the `egress` row, answers, relays until both sides are done
    /// (or the gate forces it closed), and writes the `egress_close` row.
    pub(super) async fn relay(
        self,
        gate: &Gate,
        mut client: TcpStream,
        conn: u64,
        mut shutdown: Shutdown,
        dialled: Dialled,
    ) {
        let Opened {
            method,
            target,
            reason,
            early_up,
            answer,
            process,
        } = self;
        let mut upstream = dialled.stream;
        let _ = upstream.set_nodelay(true);
        // The row is on disk before the tunnel carries a byte: a child that
        // then kills its shim cannot hide the connection.
        gate.record(
            conn,
            Outcome {
                method: Some(method),
                aim: Aim::Endpoint(&target),
                verdict: Verdict::Allow,
                status: 200,
                reason,
                qtype: None,
                process,
            },
        );
        let opened = Instant::now();
        let outcome = match client.write_all(answer).await {
            Ok(()) => {
                let stop = async {
                    shutdown.forced().await;
                    format!(
                        "closed by cli-guard: still open {} s after the tool exited",
                        GRACE.as_secs()
                    )
                };
                relay(
                    &mut client,
                    &mut upstream,
                    early_up,
                    &dialled.early_down,
                    &gate.pipes,
                    stop,
                )
                .await
            }
            Err(e) => RelayOutcome {
                error: Some(format!("writing 200 to the client: {e}")),
                ..RelayOutcome::default()
            },
        };
        gate.audit.write(&Record::EgressClose(audit::EgressClose {
            conn,
            host: target.host_string(),
            port: target.port,
            bytes_up: outcome.up,
            bytes_down: outcome.down,
            duration_ms: Some(u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX)),
            error: outcome.error,
        }));
    }
}

/// The refusal for an allowed connection (arrived by `method`) whose dial
/// failed.
pub(super) fn dial_failed(
    method: Method,
    judged: Judged,
    e: DialError,
    process: Option<Box<audit::Process>>,
) -> Refusal {
    let forbidden = matches!(e, DialError::Forbidden(_));
    let status = e.status();
    let reason = match e {
        DialError::Forbidden(why) => why,
        e => format!("{}; dial {}: {e}", judged.reason, judged.target),
    };
    Refusal {
        status,
        verdict: Verdict::of_failed_dial(forbidden),
        method: Some(method),
        target: Some(judged.target),
        reason,
        process,
    }
}

/// Dials an allowed target, unless the gate is forced closed first.
pub(super) async fn dial(
    gate: &Gate,
    judged: &Judged,
    shutdown: &mut Shutdown,
) -> Result<Dialled, DialError> {
    let check = gate.policy.address_check(&judged.decision);
    tokio::select! {
        dialled = gate.settings.dialer.dial(&judged.target, check) => dialled,
        _ = shutdown.forced() => Err(DialError::Stopped),
    }
}
