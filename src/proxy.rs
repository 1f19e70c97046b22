//! The CONNECT proxy: an accept loop, one task per connection, and the relay.
//!
//! `serve(listener, gate, stop)` takes an already-bound listener, so the shim
//! binds before the child exists (and fails closed if it can't), and tests
//! and the demo bind 127.0.0.1:0 and decide when to stop. Errors on one
//! connection stay inside its task. On stop: no new connections; tunnels
//! still open get [`GRACE`] to finish, then are closed with their
//! `egress_close` rows written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::audit::{self, AuditLog, Record};
use crate::connect::{self, HeadError, RequestHead};
use crate::dial::{dial, Resolve};
use crate::policy::ToolPolicy;
use crate::verdict::{judge, Action, Verdict};

/// The whole request head must arrive within this long of the accept. It is
/// a deadline, not an idle timeout: a client dripping a byte at a time does
/// not reset it.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open tunnels may outlive the stop (the child's exit).
pub const GRACE: Duration = Duration::from_secs(2);
/// Relay buffer per direction.
const RELAY_BUF: usize = 16 * 1024;
/// After an error answer, how long we keep reading (and discarding) what the
/// client already sent, so that closing does not reset the connection and
/// destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_millis(500);

/// Everything a connection task needs: the policy, the log, the dial
/// overrides, and the running tallies for the `end` record.
#[derive(Debug)]
pub struct Gate {
    pub policy: &'static ToolPolicy,
    pub audit: Arc<AuditLog>,
    pub resolve: Resolve,
    allowed: AtomicU64,
    denied: AtomicU64,
    denials: Mutex<Vec<Denial>>,
}

/// A refused request, for the summary printed after the child exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `host:port`, or the quoted raw target when it was not valid.
    pub target: String,
    pub status: u16,
    pub reason: String,
}

/// Totals after the proxy stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub allowed: u64,
    pub denied: u64,
    /// Distinct refusals, in the order first seen.
    pub denials: Vec<Denial>,
}

impl Gate {
    pub fn new(policy: &'static ToolPolicy, audit: Arc<AuditLog>, resolve: Resolve) -> Gate {
        Gate {
            policy,
            audit,
            resolve,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            denials: Mutex::new(Vec::new()),
        }
    }

    /// The tallies so far.
    pub fn summary(&self) -> Summary {
        Summary {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            denials: self.denials.lock().map(|d| d.clone()).unwrap_or_default(),
        }
    }

    /// Writes the `egress` row for one answered request and counts it.
    fn record(&self, conn: u64, method: Option<&str>, verdict: &Verdict, status: u16, reason: String) {
        let allow = matches!(verdict.action, Action::Dial(_));
        if allow {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
            let target = verdict
                .target
                .as_ref()
                .map_or_else(|| "(invalid target)".to_string(), |t| t.to_string());
            if let Ok(mut denials) = self.denials.lock() {
                if !denials.iter().any(|d| d.target == target && d.status == status) {
                    denials.push(Denial {
                        target,
                        status,
                        reason: reason.clone(),
                    });
                }
            }
        }
        self.audit.write(&Record::Egress(audit::Egress {
            conn,
            tool: self.policy.name.to_string(),
            mode: self.policy.mode,
            method: method.map(str::to_string),
            host: verdict.target.as_ref().map(|t| t.host_string()),
            port: verdict.target.as_ref().map(|t| t.port),
            decision: if allow {
                audit::Decision::Allow
            } else {
                audit::Decision::Deny
            },
            status,
            reason,
        }));
    }

    /// The text body of a refusal: what happened and what to do next.
    fn refusal_body(&self, status: u16, verdict: &Verdict, method: &str) -> String {
        let id = self.audit.audit_id();
        let tool = self.policy.name;
        let target = verdict.target.as_ref().map(|t| t.to_string()).unwrap_or_default();
        match status {
            403 => format!(
                "cli-guard: {tool} may not reach {target}: it is not on {tool}'s allowlist ({}).\n\
                 This is an allowlist block by policy, not a network fault: do not retry.\n\
                 Changing the allowlist is a code change for an operator. audit id {id}",
                self.policy.allowlist_summary()
            ),
            405 => format!(
                "cli-guard: plaintext {method} to {target} refused: only CONNECT tunnels (HTTPS) pass the gate, \
                 and it never downgrades. Use an https:// URL. audit id {id}"
            ),
            _ => format!("cli-guard: {}. audit id {id}", verdict.reason),
        }
    }
}

/// Runs the accept loop until `stop` fires, then drains (see module docs).
pub async fn serve(listener: TcpListener, gate: Arc<Gate>, mut stop: oneshot::Receiver<()>) {
    let (force_tx, force_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_conn = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_conn += 1;
                    tasks.spawn(handle(Arc::clone(&gate), stream, next_conn, force_rx.clone()));
                }
                // Out of descriptors or a connection reset before accept:
                // back off briefly rather than spin; the listener stays up.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        let _ = force_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }
}

/// Resolves when the force-close signal is raised.
async fn forced(force: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after serve
    // returns; treat it as forced too.
    let _ = force.wait_for(|forced| *forced).await;
}

/// Why a request head could not be had.
enum ReadHead {
    Head(RequestHead),
    /// The client closed or errored before a full head; nothing to answer.
    Gone,
    /// Answer with this status.
    Bad(u16, String),
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: tokio::time::Instant) -> ReadHead {
    let mut chunk = [0u8; 2048];
    loop {
        match connect::parse_head(buf) {
            Ok(Some(head)) => return ReadHead::Head(head),
            Ok(None) => {}
            Err(e @ HeadError::Malformed(_)) => return ReadHead::Bad(e.status(), e.to_string()),
            Err(e) => return ReadHead::Bad(e.status(), e.to_string()),
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return ReadHead::Gone,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if buf.is_empty() => return ReadHead::Gone,
            Err(_) => {
                return ReadHead::Bad(
                    408,
                    format!("request head not complete within {} s", HEAD_TIMEOUT.as_secs()),
                )
            }
        }
    }
}

/// One connection, from accept to close.
async fn handle(gate: Arc<Gate>, mut client: TcpStream, conn: u64, mut force: watch::Receiver<bool>) {
    let _ = client.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::select! {
        head = read_head(&mut client, &mut buf, deadline) => head,
        _ = forced(&mut force) => return,
    };
    let head = match head {
        ReadHead::Head(head) => head,
        ReadHead::Gone => return,
        ReadHead::Bad(status, why) => {
            let verdict = Verdict {
                action: Action::Refuse(status),
                target: None,
                reason: why,
            };
            gate.record(conn, None, &verdict, status, verdict.reason.clone());
            let body = gate.refusal_body(status, &verdict, "");
            refuse(client, status, &body).await;
            return;
        }
    };
    let verdict = judge(gate.policy, &head);
    let target = match &verdict.action {
        Action::Refuse(status) => {
            gate.record(
                conn,
                Some(&head.method),
                &verdict,
                *status,
                verdict.reason.clone(),
            );
            let body = gate.refusal_body(*status, &verdict, &head.method);
            refuse(client, *status, &body).await;
            return;
        }
        Action::Dial(target) => target.clone(),
    };
    let dialled = tokio::select! {
        dialled = dial(&target, &gate.resolve) => dialled,
        _ = forced(&mut force) => return,
    };
    let mut upstream = match dialled {
        Ok(upstream) => upstream,
        Err(e) => {
            let status = e.status();
            let reason = format!("{}; dial {target}: {e}", verdict.reason);
            gate.record(conn, Some(&head.method), &verdict, status, reason);
            let body = format!(
                "cli-guard: could not reach {target}: {e}. audit id {}",
                gate.audit.audit_id()
            );
            refuse(client, status, &body).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    // The row is on disk before the tunnel carries a byte: a child that then
    // kills its shim cannot hide the connection.
    gate.record(conn, Some(&head.method), &verdict, 200, verdict.reason.clone());
    let opened = Instant::now();
    let early = &buf[head.head_len..];
    let outcome = match client.write_all(connect::ESTABLISHED).await {
        Ok(()) => relay(&mut client, &mut upstream, early, &mut force).await,
        Err(e) => RelayOutcome {
            up: 0,
            down: 0,
            error: Some(format!("writing 200 to the client: {e}")),
        },
    };
    gate.audit.write(&Record::EgressClose(audit::EgressClose {
        conn,
        host: target.host_string(),
        port: target.port,
        bytes_up: outcome.up,
        bytes_down: outcome.down,
        duration_ms: u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: outcome.error,
    }));
}

/// Sends an error answer and closes without resetting the connection.
async fn refuse(mut client: TcpStream, status: u16, body: &str) {
    if client
        .write_all(&connect::error_response(status, body))
        .await
        .is_err()
    {
        return;
    }
    let _ = client.shutdown().await;
    let mut sink = [0u8; 1024];
    let until = tokio::time::Instant::now() + LINGER;
    while let Ok(Ok(n)) = timeout_at(until, client.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

/// Bytes each way and how the tunnel ended.
#[derive(Debug)]
struct RelayOutcome {
    up: u64,
    down: u64,
    error: Option<String>,
}

/// Relays both ways until both directions are done, honouring half-close:
/// EOF from one side becomes a write shutdown towards the other. `early` is
/// what the client sent behind the CONNECT head; it goes upstream first.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    early: &[u8],
    force: &mut watch::Receiver<bool>,
) -> RelayOutcome {
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let upward = async {
        if !early.is_empty() {
            upstream_write
                .write_all(early)
                .await
                .map_err(|e| format!("client→upstream: {e}"))?;
            up.fetch_add(early.len() as u64, Ordering::Relaxed);
        }
        copy_counting(&mut client_read, &mut upstream_write, &up)
            .await
            .map_err(|e| format!("client→upstream: {e}"))
    };
    let downward = async {
        copy_counting(&mut upstream_read, &mut client_write, &down)
            .await
            .map_err(|e| format!("upstream→client: {e}"))
    };
    let error = tokio::select! {
        result = async { tokio::try_join!(upward, downward) } => result.err(),
        _ = forced(force) => Some(format!(
            "closed by cli-guard: still open {} s after the tool exited",
            GRACE.as_secs()
        )),
    };
    RelayOutcome {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        error,
    }
}

/// Copies until EOF, then shuts down the writer (the half-close).
async fn copy_counting<R, W>(reader: &mut R, writer: &mut W, count: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        writer.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
