//! The CONNECT proxy: an accept loop and one task per connection.
//!
//! `serve(listener, gate, stop)` takes an already-bound listener, so the shim
//! binds before the child exists (and fails closed if it can't), and tests
//! and the demo bind 127.0.0.1:0 and decide when to stop. Errors on one
//! connection stay inside its task. On stop: no new connections; tunnels
//! still open get [`GRACE`] to finish, then are closed with their
//! `egress_close` rows written.
//!
//! Each connection, in order: read the head (bounded in size and by a
//! deadline a slow drip cannot extend), judge the request line, answer a
//! malformed one 400 for anyone, then require the per-invocation credential
//! (407 without it: any local process can dial 127.0.0.1) before any other
//! answer, dial (directly with address checks, or through an upstream
//! proxy), write the `egress` row, answer, relay.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::audit::{self, AuditLog, Record};
use crate::env::{Env, RESOLVE_VAR};
use crate::gate::dial::{AddressCheck, DialError, Dialer, Resolve};
use crate::gate::http::{self, credential_matches, HeadError, RequestHead};
use crate::gate::relay::{relay, PipePool, RelayOutcome};
use crate::gate::upstream::NoProxy;
use crate::gate::verdict::{judge, Action};
use crate::policy::authority::Authority;
use crate::policy::{Decision, Mode, ToolPolicy, Verdict};

/// The whole request head must arrive within this long of the accept. It is
/// a deadline, not an idle timeout: a client dripping a byte at a time does
/// not reset it.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open tunnels may outlive the stop (the child's exit).
pub const GRACE: Duration = Duration::from_secs(2);
/// After an error answer, how long we keep reading (and discarding) what the
/// client already sent, so that closing does not reset the connection and
/// destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
/// Refusals of callers without the credential that get a row each; past
/// this, they are only counted (in the `end` row's `suppressed`), so another
/// local process cannot flood the log and push real history out of it.
const STRANGER_ROWS: u64 = 1000;
/// Distinct refusals kept for the summary printed after the child exits.
const LISTED_DENIALS: usize = 20;

/// The user name in the child's proxy URL; the password is the secret.
pub const CREDENTIAL_USER: &str = "cli-guard";

/// How a gate is set up, beyond its policy and log.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dialer: Dialer,
    /// The exact `Proxy-Authorization` value a request must carry. Never
    /// logged.
    pub credential: String,
    /// The forms of the secret a client could paste (the token, its
    /// base64): a request line holding one is refused before it is judged,
    /// and refusal reasons are scrubbed of them.
    pub secrets: Vec<String>,
    /// Connections handled at once; more are answered 503. Keeps the gate
    /// answering instead of failing when descriptors run out.
    pub max_connections: usize,
}

impl Settings {
    /// The settings a real invocation uses: the environment's upstream proxy
    /// and NO_PROXY, `CLI_GUARD_RESOLVE`, a fresh credential, and a cap
    /// under the descriptor limit. `own` is the gate's listener.
    pub fn from_env(own: SocketAddr, token: &str, env: &Env) -> Result<Settings, String> {
        let credential =
            crate::gate::upstream::basic_authorization(CREDENTIAL_USER.as_bytes(), token.as_bytes());
        let encoded = credential.trim_start_matches("Basic ").to_string();
        let resolve = Resolve::parse(env.resolve()).map_err(|e| format!("{RESOLVE_VAR}: {e}"))?;
        let upstream = crate::gate::upstream::from_env(env)?;
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
                own: Some(own),
            },
            secrets: vec![token.to_string(), encoded],
            credential,
            max_connections: connection_cap(),
        })
    }
}

/// Binds the gate's listener on 127.0.0.1 at a port of the kernel's
/// choosing, non-blocking and close-on-exec, with the largest accept queue
/// the system allows (`net.core.somaxconn`). std's `bind` asks for 128: a tool that opens more
/// connections than that at once would overflow it, and an overflowing
/// queue means SYN cookies, retransmits a second apart, or resets.
pub fn bind_loopback() -> std::io::Result<(std::net::TcpListener, SocketAddr)> {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    listen(&fd, Backlog::MAXALLOWABLE)?;
    let listener = std::net::TcpListener::from(fd);
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    connection_cap_for(soft)
}

/// The connection cap under a descriptor soft limit: half of what is left
/// (each tunnel holds two sockets) after a reserve of 64 for the log, the
/// runtime and the child's pipes, and two for each of the relay's pipes
/// (at most MAX_PIPES); at least 8.
pub fn connection_cap_for(soft_limit: u64) -> usize {
    let reserve = 64 + 2 * crate::gate::relay::MAX_PIPES as u64;
    let usable = usize::try_from(soft_limit.saturating_sub(reserve) / 2).unwrap_or(usize::MAX);
    usable.clamp(8, 1 << 20)
}

/// Everything a connection task needs: the policy, the log, how to dial,
/// and the running tallies for the `end` record.
#[derive(Debug)]
pub struct Gate {
    pub policy: &'static ToolPolicy,
    pub audit: Arc<AuditLog>,
    settings: Settings,
    slots: Arc<Semaphore>,
    allowed: AtomicU64,
    denied: AtomicU64,
    denials: Mutex<Denials>,
    /// Pipes for the relay's splice, shared by all tunnels.
    pipes: PipePool,
}

/// Refusals for the summary, bounded whatever a flood of requests holds.
#[derive(Debug, Default)]
struct Denials {
    seen: std::collections::HashSet<(String, u16)>,
    listed: Vec<Denial>,
    unlisted: u64,
    strangers: u64,
    suppressed: u64,
}

/// A refused request, for the summary printed after the child exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `host:port`.
    pub target: String,
    pub status: u16,
    pub reason: String,
}

/// Totals after the proxy stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub allowed: u64,
    pub denied: u64,
    /// Distinct refusals of the credential holder, in the order first seen,
    /// at most [`LISTED_DENIALS`].
    pub denials: Vec<Denial>,
    /// Distinct refusals past that.
    pub unlisted: u64,
    /// Requests refused for want of the credential (another local process).
    pub strangers: u64,
    /// Of those, how many got no row of their own (see [`STRANGER_ROWS`]).
    pub suppressed: u64,
}

/// One `egress` row's worth of outcome.
struct Row<'a> {
    method: Option<&'a str>,
    target: Option<&'a Authority>,
    allow: bool,
    status: u16,
    reason: String,
}

impl Gate {
    pub fn new(policy: &'static ToolPolicy, audit: Arc<AuditLog>, settings: Settings) -> Gate {
        Gate {
            policy,
            audit,
            slots: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            denials: Mutex::new(Denials::default()),
            pipes: PipePool::default(),
        }
    }

    /// The tallies so far.
    pub fn summary(&self) -> Summary {
        let denials = self
            .denials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Summary {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            denials: denials.listed.clone(),
            unlisted: denials.unlisted,
            strangers: denials.strangers,
            suppressed: denials.suppressed,
        }
    }

    /// `text` with every form of this invocation's secret blanked out.
    fn scrub(&self, text: String) -> String {
        self.settings
            .secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .fold(text, |text, secret| text.replace(secret.as_str(), "<redacted>"))
    }

    /// Whether the request line carries a form of the secret (a confused
    /// client pasting its proxy URL): refused, so it is never logged.
    fn in_request_line(&self, head: &RequestHead) -> bool {
        self.settings
            .secrets
            .iter()
            .any(|s| !s.is_empty() && (head.target.contains(s.as_str()) || head.method.contains(s.as_str())))
    }

    /// Writes the `egress` row for one answered request and counts it.
    fn record(&self, conn: u64, row: Row<'_>) {
        if row.allow {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
            let Ok(mut denials) = self.denials.lock() else {
                return;
            };
            // A refusal with no credential checked (407), or before there
            // was a request to check (503, 408, 431, junk), may come from
            // any local process: counted, not listed by target.
            if row.status == 407 || row.target.is_none() {
                denials.strangers += 1;
                if denials.strangers > STRANGER_ROWS {
                    denials.suppressed += 1;
                    return;
                }
            } else if let Some(target) = row.target {
                let key = (target.to_string(), row.status);
                if denials.seen.insert(key.clone()) {
                    if denials.listed.len() < LISTED_DENIALS {
                        denials.listed.push(Denial {
                            target: key.0,
                            status: row.status,
                            reason: row.reason.clone(),
                        });
                    } else {
                        denials.unlisted += 1;
                    }
                }
            }
        }
        self.audit.write(&Record::Egress(audit::Egress {
            conn,
            tool: self.policy.name.to_string(),
            mode: Some(self.policy.mode),
            method: row.method.map(str::to_string),
            host: row.target.map(Authority::host_string),
            port: row.target.map(|t| t.port),
            decision: Some(if row.allow { Verdict::Allow } else { Verdict::Deny }),
            status: row.status,
            reason: row.reason,
        }));
    }

    /// Records a refusal and answers it with a body that says what happened
    /// and what to do next.
    async fn refuse(&self, client: TcpStream, conn: u64, mut row: Row<'_>) {
        row.reason = self.scrub(row.reason);
        let id = self.audit.audit_id();
        let tool = self.policy.name;
        let target = row.target.map(|t| t.to_string()).unwrap_or_default();
        let (status, reason) = (row.status, row.reason.clone());
        // An allow row here is a refusal from further on (an upstream, the
        // network): only this gate's own refusals carry its policy text.
        let body = match status {
            _ if row.allow => format!("cli-guard: {reason}. audit id {id}"),
            403 => format!(
                "cli-guard: {tool} may not reach {target}: {reason}.\n\
                 This is a block by policy, not a network fault: do not retry.\n\
                 Changing the allowlist ({}) is a code change for an operator. audit id {id}",
                self.policy.allowlist_summary()
            ),
            405 => format!(
                "cli-guard: plaintext {} to {target} refused: only CONNECT tunnels (HTTPS) pass the gate, \
                 and it never downgrades. Use an https:// URL. audit id {id}",
                row.method.unwrap_or("request")
            ),
            407 => format!(
                "cli-guard: {reason}. This proxy serves only the {tool} invocation that started it. audit id {id}"
            ),
            _ => format!("cli-guard: {reason}. audit id {id}"),
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if status == 405 {
            headers.push(("Allow", "CONNECT"));
        }
        // Our own 407 is a deny; an upstream's 407 passed back is this gate's
        // allow, and its challenge is not ours to make.
        if status == 407 && !row.allow {
            headers.push(("Proxy-Authenticate", "Basic realm=\"cli-guard\""));
        }
        self.record(conn, row);
        answer_and_close(client, status, &headers, &body).await;
    }

    /// Whether a request carries this invocation's credential. `Err` holds
    /// the status and the reason (which never quotes the credential).
    fn authenticate(&self, head: &RequestHead) -> Result<(), (u16, String)> {
        let expected = &self.settings.credential;
        match head.proxy_authorization.as_slice() {
            [one] if credential_matches(one, expected.as_bytes()) => Ok(()),
            [] => Err((
                407,
                "no valid proxy credential: the request had no Proxy-Authorization".into(),
            )),
            [_] => Err((
                407,
                "no valid proxy credential: the Proxy-Authorization did not match".into(),
            )),
            _ => Err((400, "conflicting Proxy-Authorization headers".into())),
        }
    }

    /// Which address checks a direct dial to an allowed target gets.
    fn address_check(&self, decision: Option<&Decision>) -> AddressCheck {
        match (self.policy.mode, decision) {
            (Mode::Enforce, Some(Decision::Allowed(rule))) => AddressCheck::Enforce {
                private_ok: rule.private,
            },
            (Mode::Enforce, _) => AddressCheck::Enforce { private_ok: false },
            (Mode::Observe, _) => AddressCheck::None,
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
                    match Arc::clone(&gate.slots).try_acquire_owned() {
                        Ok(slot) => {
                            tasks.spawn(handle(Arc::clone(&gate), stream, next_conn, force_rx.clone(), slot));
                        }
                        Err(_) => {
                            tasks.spawn(overloaded(Arc::clone(&gate), stream, next_conn));
                        }
                    }
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

/// Answers a connection over the cap with 503, at once.
async fn overloaded(gate: Arc<Gate>, mut client: TcpStream, conn: u64) {
    let reason = format!(
        "too many connections at once (the cap is {}): try again shortly",
        gate.settings.max_connections
    );
    gate.record(
        conn,
        Row {
            method: None,
            target: None,
            allow: false,
            status: 503,
            reason: reason.clone(),
        },
    );
    let body = format!("cli-guard: {reason}. audit id {}", gate.audit.audit_id());
    // No lingering here: under overload, the descriptor matters more.
    let _ = client.write_all(&http::error_response(503, &[], &body)).await;
    let _ = client.shutdown().await;
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
    // Parse the first bytes at once (junk is refused on its first byte),
    // then again only when a line ends: a head dripped a byte at a time is
    // not re-parsed from its start for every byte.
    let mut worth_parsing = true;
    loop {
        let parsed = if worth_parsing || buf.len() >= http::MAX_HEAD_BYTES {
            http::parse_head(buf)
        } else {
            Ok(None)
        };
        match parsed {
            Ok(Some(head)) => return ReadHead::Head(head),
            Ok(None) => {}
            Err(e @ HeadError::Malformed(_)) => return ReadHead::Bad(e.status(), e.to_string()),
            Err(e) => return ReadHead::Bad(e.status(), e.to_string()),
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return ReadHead::Gone,
            Ok(Ok(n)) => {
                worth_parsing = buf.len() < 16 || chunk[..n].contains(&b'\n');
                buf.extend_from_slice(&chunk[..n]);
            }
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

/// One connection, from accept to close. `_slot` is its place under the
/// connection cap, released when the task ends.
async fn handle(
    gate: Arc<Gate>,
    mut client: TcpStream,
    conn: u64,
    mut force: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
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
        ReadHead::Bad(status, reason) => {
            let row = Row {
                method: None,
                target: None,
                allow: false,
                status,
                reason,
            };
            return gate.refuse(client, conn, row).await;
        }
    };
    if gate.in_request_line(&head) {
        let row = Row {
            method: None,
            target: None,
            allow: false,
            status: 400,
            reason:
                "the request line carries this gate's proxy credential; it belongs in Proxy-Authorization"
                    .to_string(),
        };
        return gate.refuse(client, conn, row).await;
    }
    let verdict = judge(gate.policy, &head);
    let method = Some(head.method.as_str());
    // A malformed target is a 400 whoever asks (it reveals nothing); every
    // other answer, the policy's included, is for the credential holder.
    let malformed = verdict.action == Action::Refuse(400);
    if let (false, Err((status, reason))) = (malformed, gate.authenticate(&head)) {
        let row = Row {
            method,
            target: verdict.target.as_ref(),
            allow: false,
            status,
            reason,
        };
        return gate.refuse(client, conn, row).await;
    }
    let target = match &verdict.action {
        Action::Refuse(status) => {
            let row = Row {
                method,
                target: verdict.target.as_ref(),
                allow: false,
                status: *status,
                reason: verdict.reason.clone(),
            };
            return gate.refuse(client, conn, row).await;
        }
        Action::Dial(target) => target,
    };
    let check = gate.address_check(verdict.decision.as_ref());
    let dialled = tokio::select! {
        dialled = gate.settings.dialer.dial(target, check) => dialled,
        _ = forced(&mut force) => Err(DialError::Stopped),
    };
    let dialled = match dialled {
        Ok(dialled) => dialled,
        Err(e) => {
            // Refused by this gate's address check: a deny. Otherwise this
            // gate allowed it and the network or the upstream said no.
            let allow = !matches!(e, DialError::Forbidden(_));
            let reason = match &e {
                DialError::Forbidden(why) => why.clone(),
                _ => format!("{}; dial {target}: {e}", verdict.reason),
            };
            let row = Row {
                method,
                target: Some(target),
                allow,
                status: e.status(),
                reason,
            };
            return gate.refuse(client, conn, row).await;
        }
    };
    let mut upstream = dialled.stream;
    let _ = upstream.set_nodelay(true);
    // The row is on disk before the tunnel carries a byte: a child that then
    // kills its shim cannot hide the connection.
    let row = Row {
        method,
        target: Some(target),
        allow: true,
        status: 200,
        reason: format!("{}; {}", verdict.reason, dialled.route),
    };
    gate.record(conn, row);
    let opened = Instant::now();
    let early_up = &buf[head.head_len..];
    let outcome = match client.write_all(http::ESTABLISHED).await {
        Ok(()) => {
            let stop = async {
                forced(&mut force).await;
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

/// Sends an error answer and closes without resetting the connection.
async fn answer_and_close(mut client: TcpStream, status: u16, headers: &[(&str, &str)], body: &str) {
    if client
        .write_all(&http::error_response(status, headers, body))
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
