//! One connection, from accept to close.
//!
//! [`Handler::run`] takes a connection from its first byte to an open
//! upstream ([`Allowed`]) or to a [`Refusal`], which every check returns with
//! `?`; [`Handler::serve`] then answers the refusal (one place:
//! [`Gate::refuse`]) or opens the tunnel: the `egress` row, the 200, the
//! relay, and the `egress_close` row.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::gate::dial::Dialled;
use crate::gate::http::{self, RequestHead};
use crate::gate::judge::{judge, judge_as, Judged};
use crate::gate::outcome::Method;
use crate::gate::refusal::{Closing, Refusal};
use crate::gate::rows;
use crate::gate::shutdown::Shutdown;
use crate::gate::tunnel::{self, dial_failed, Opened};
use crate::gate::Gate;
use crate::policy::authority::Authority;
use crate::who::{self, Actor};

/// The whole request head must arrive within this long of the accept. It is
/// a deadline, not an idle timeout: a client dripping a byte at a time does
/// not reset it.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection and what it needs.
#[derive(Debug)]
pub(super) struct Handler {
    gate: Arc<Gate>,
    client: TcpStream,
    /// The connection's number in the audit rows.
    conn: u64,
    /// Says when open connections must end.
    shutdown: Shutdown,
    /// What the client has sent so far: the head, then early tunnel bytes.
    buf: Vec<u8>,
    /// [`HEAD_TIMEOUT`], but for tests.
    head_timeout: Duration,
}

/// What a connection turned out to be, past its head.
#[derive(Debug)]
pub(super) enum Next {
    /// An allowed CONNECT, dialled.
    Tunnel(Allowed),
    /// A nested invocation's rows (`rows`), from after its head.
    Rows { head_len: usize },
    /// A script's wrapper whose user namespace is now registered
    /// (`who`): answered 200, then closed.
    Registered,
}

/// An allowed request with its upstream connection open, not yet answered:
/// what [`Handler::open`] makes a tunnel of.
#[derive(Debug)]
pub(super) struct Allowed {
    dialled: Dialled,
    target: Authority,
    /// The policy's reason and the route, for the `egress` row.
    reason: String,
    /// Where the head ends in the handler's buffer; what follows is the
    /// tunnel's first bytes up.
    head_len: usize,
    /// Who made it (`who`).
    process: Option<Box<crate::audit::Process>>,
}

impl Handler {
    /// A handler for connection number `conn`, ended early if the gate is
    /// forced closed.
    pub(super) fn new(gate: Arc<Gate>, client: TcpStream, conn: u64, shutdown: Shutdown) -> Handler {
        Handler {
            gate,
            client,
            conn,
            shutdown,
            buf: Vec::with_capacity(1024),
            head_timeout: HEAD_TIMEOUT,
        }
    }

    /// Handles the connection to its end.
    pub(super) async fn serve(mut self) {
        match self.run().await {
            Ok(Some(Next::Tunnel(tunnel))) => self.open(tunnel).await,
            Ok(Some(Next::Rows { head_len })) => {
                let early = self.buf.get(head_len..).unwrap_or_default();
                rows::relay(&self.gate, self.client, early, self.shutdown).await;
            }
            Ok(Some(Next::Registered)) => {
                let _ = self.client.write_all(http::REGISTERED).await;
                let _ = self.client.shutdown().await;
            }
            // The client left, or the gate stopped, before a request.
            Ok(None) => {}
            Err(refusal) => {
                self.gate
                    .refuse(self.client, self.conn, refusal, Closing::Linger)
                    .await
            }
        }
    }

    /// From the accept to an open upstream, in order: read the head
    /// (bounded in size and by a deadline a slow drip cannot extend);
    /// refuse a request line that carries the secret; judge it; answer a
    /// malformed target 400 for anyone, then require the credential before
    /// any other answer (any local process can dial 127.0.0.1); dial
    /// (directly, with the policy's address check, or through an upstream).
    /// `Ok(None)`: nothing to answer (the client left, or the gate was
    /// forced closed, before a full head).
    pub(super) async fn run(&mut self) -> Result<Option<Next>, Refusal> {
        let _ = self.client.set_nodelay(true);
        let head = tokio::select! {
            head = read_head(&mut self.client, &mut self.buf, self.head_timeout) => head?,
            _ = self.shutdown.forced() => return Ok(None),
        };
        let Some(head) = head else {
            return Ok(None);
        };
        let gate = &*self.gate;
        if gate
            .settings
            .credential
            .in_request_line(&head.method, &head.target)
        {
            return Err(Refusal::deny(
                400,
                "the request line carries this gate's proxy credential; it belongs in Proxy-Authorization",
            ));
        }
        // A guarded tool nested in this strict invocation, sending its
        // rows (its own log is read-only in here): for the credential
        // holder only, like everything else.
        if head.method == rows::ROWS_METHOD && head.target == rows::ROWS_TARGET {
            authenticate(gate, &head, &Err(Refusal::deny(400, "rows")))?;
            // From a nested cli-guard only: a script's own program has no
            // rows of its own to relay. Without attribution nobody can
            // say who sends them: refused too.
            let from_cli_guard = match (gate.who(), self.client.peer_addr(), self.client.local_addr()) {
                (Some(who), Ok(peer), Ok(own)) => who.runs_cli_guard(peer, own),
                _ => false,
            };
            if !from_cli_guard {
                let actor = gate.actor_of(&self.client);
                return Err(Refusal::deny(
                    403,
                    "rows to relay from a process that does not run cli-guard, or shares its socket with one \
                     that does not: refused",
                )
                .of(actor.as_ref().map(Actor::row)));
            }
            return Ok(Some(Next::Rows {
                head_len: head.head_len,
            }));
        }
        // A script's wrapper registering its user namespace (`who`):
        // for the credential holder only, answered by the gate itself.
        if head.method == "CONNECT" && head.target == who::REGISTER_TARGET {
            authenticate(gate, &head, &Err(Refusal::deny(400, "register")))?;
            return self.register().map(|()| Some(Next::Registered));
        }
        let judged = judge(gate.policy, &head, gate.pool());
        // A malformed target is a 400 whoever asks (it reveals nothing);
        // every other answer, the policy's included, is for the credential
        // holder.
        if !matches!(&judged, Err(refusal) if refusal.status == 400) {
            authenticate(gate, &head, &judged)?;
        }
        // Who made it: the tool is judged by its allowlist (done above),
        // a package's own code by its entries.
        let actor = gate.actor_of(&self.client);
        let judged = match &actor {
            Some(actor) if actor.is_package_code() => {
                judge_as(gate.policy, &actor.acting(), &head, gate.pool())
            }
            _ => judged,
        };
        let judged = judged
            .map(|j| j.by(actor.as_ref()))
            .map_err(|r| r.of_actor(actor.as_ref()))?;
        let process = actor.as_ref().map(Actor::row);
        match tunnel::dial(gate, &judged, &mut self.shutdown).await {
            Ok(dialled) => Ok(Some(Next::Tunnel(Allowed {
                reason: format!("{}; {}", judged.reason, dialled.route),
                dialled,
                target: judged.target,
                head_len: head.head_len,
                process,
            }))),
            Err(e) => Err(dial_failed(Method::Connect, judged, e, process)),
        }
    }

    /// Writes the `egress` row, answers 200, relays until both sides are
    /// done (or the gate forces it closed), and writes the `egress_close`
    /// row.
    async fn open(self, tunnel: Allowed) {
        let Allowed {
            dialled,
            target,
            reason,
            head_len,
            process,
        } = tunnel;
        let opened = Opened {
            method: Method::Connect,
            target,
            reason,
            early_up: &self.buf[head_len..],
            answer: http::ESTABLISHED,
            process,
        };
        opened
            .relay(&self.gate, self.client, self.conn, self.shutdown, dialled)
            .await;
    }
}

impl Handler {
    /// A script's wrapper asks to register its fresh user namespace: `who`
    /// checks it from /proc and reads whose script it runs. A refusal (not
    /// cli-guard, not started by the tool, a namespace already known) is a
    /// 403 with a row: something tried to pass for a script's wrapper.
    fn register(&self) -> Result<(), Refusal> {
        let gate = &*self.gate;
        let (Some(who), Ok(peer), Ok(own)) = (gate.who(), self.client.peer_addr(), self.client.local_addr())
        else {
            return Err(Refusal::deny(
                403,
                "a script's wrapper asked to register, but this gate does not attribute connections",
            )
            .by(Method::Connect));
        };
        match who.register(peer, own) {
            Ok(_) => Ok(()),
            Err(why) => {
                let actor = gate.actor_of(&self.client);
                // Named by its target: it carried the credential, so it is
                // listed (and summed up) as what its process tried, not as
                // a stranger's request.
                let refusal = Refusal {
                    target: crate::policy::authority::parse_authority(who::REGISTER_TARGET).ok(),
                    ..Refusal::deny(
                        403,
                        format!("a process asked to register as a script's wrapper and was refused: {why}"),
                    )
                };
                Err(refusal.by(Method::Connect).of(actor.as_ref().map(Actor::row)))
            }
        }
    }
}

/// Whether a request carries this invocation's credential: exactly one
/// `Proxy-Authorization`, and the right one. The refusal names what was
/// judged of the request, and never quotes the credential.
fn authenticate(gate: &Gate, head: &RequestHead, judged: &Result<Judged, Refusal>) -> Result<(), Refusal> {
    let (status, reason) = match head.proxy_authorization.as_slice() {
        [one] if gate.settings.credential.matches(one) => return Ok(()),
        [] => (
            407,
            "no valid proxy credential: the request had no Proxy-Authorization",
        ),
        [_] => (
            407,
            "no valid proxy credential: the Proxy-Authorization did not match",
        ),
        _ => (400, "conflicting Proxy-Authorization headers"),
    };
    let target = match judged {
        Ok(judged) => Some(judged.target.clone()),
        Err(refusal) => refusal.target.clone(),
    };
    Err(Refusal {
        target,
        ..Refusal::deny(status, reason).by(Method::of_request(&head.method))
    })
}

/// Reads a request head into `buf` within `within` of now. `Ok(None)`: the
/// client closed or errored before a full head (nothing to answer).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
) -> Result<Option<RequestHead>, Refusal> {
    let deadline = tokio::time::Instant::now() + within;
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
            Ok(Some(head)) => return Ok(Some(head)),
            Ok(None) => {}
            Err(e) => return Err(Refusal::deny(e.status(), e.to_string())),
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(n)) => {
                worth_parsing = buf.len() < 16 || chunk[..n].contains(&b'\n');
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => {
                return Err(Refusal::deny(
                    408,
                    format!("request head not complete within {} s", within.as_secs()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::credential::Credential;
    use crate::gate::dial::Dialer;
    use crate::gate::Settings;
    use crate::policy::lookup;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const TOKEN: &str = "00112233445566778899aabbccddeeff";

    fn credential() -> Credential {
        Credential::from_token(TOKEN.to_string())
    }

    /// A gate for npm (enforce mode) writing to an in-memory log.
    fn npm_gate() -> (Arc<Gate>, Arc<AuditLog>) {
        let log = Arc::new(AuditLog::in_memory("test-audit-id".into()));
        let settings = Settings {
            dialer: Dialer::default(),
            credential: credential(),
            max_connections: 8,
        };
        let policy = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        (Arc::new(Gate::new(policy, Arc::clone(&log), settings)), log)
    }

    /// What one connection got back, and the rows it left.
    struct Exchange {
        answer: String,
        rows: Vec<serde_json::Value>,
    }

    impl Exchange {
        fn status(&self) -> u16 {
            self.answer
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status in {:?}", self.answer))
        }

        fn row(&self) -> &serde_json::Value {
            match self.rows.as_slice() {
                [row] => row,
                rows => panic!("expected one row, got {rows:?}"),
            }
        }
    }

    /// Runs a handler (with `head_timeout`) over a real loopback connection
    /// while the client side sends `chunks`, `gap` apart, then reads the
    /// answer to its end.
    fn exchange_with(chunks: &[&[u8]], gap: Duration, head_timeout: Duration) -> Exchange {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (gate, log) = npm_gate();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let shutdown = Shutdown::new();
            let server = async {
                let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
                let mut handler = Handler::new(Arc::clone(&gate), stream, 1, shutdown);
                handler.head_timeout = head_timeout;
                handler.serve().await;
            };
            let client = async {
                let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
                let (mut reader, mut writer) = stream.split();
                // Read while writing: the handler may answer (and close)
                // before the last chunk, and a write error then is expected.
                let send = async {
                    for (i, chunk) in chunks.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(gap).await;
                        }
                        if writer.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                };
                let mut answer = Vec::new();
                let ((), _) = tokio::join!(send, reader.read_to_end(&mut answer));
                String::from_utf8_lossy(&answer).into_owned()
            };
            let ((), answer) = tokio::join!(server, client);
            let rows = log
                .take_lines()
                .iter()
                .map(|line| serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            Exchange { answer, rows }
        })
    }

    fn exchange(request: &str) -> Exchange {
        exchange_with(&[request.as_bytes()], Duration::ZERO, HEAD_TIMEOUT)
    }

    fn authorized(request_line: &str) -> String {
        format!(
            "{request_line}\r\nProxy-Authorization: {}\r\n\r\n",
            credential().header()
        )
    }

    #[test]
    fn no_credential_is_407_with_a_challenge() {
        let x = exchange("CONNECT registry.npmjs.org:443 HTTP/1.1\r\n\r\n");
        assert_eq!(x.status(), 407, "{}", x.answer);
        assert!(
            x.answer
                .contains("\r\nProxy-Authenticate: Basic realm=\"cli-guard\"\r\n"),
            "{}",
            x.answer
        );
        assert_eq!(x.row()["decision"], "deny");
        assert_eq!(x.row()["status"], 407);
        assert_eq!(x.row()["host"], "registry.npmjs.org");
    }

    #[test]
    fn a_wrong_credential_is_407() {
        let wrong = Credential::from_token("ffeeddccbbaa99887766554433221100".into());
        let x = exchange(&format!(
            "CONNECT registry.npmjs.org:443 HTTP/1.1\r\nProxy-Authorization: {}\r\n\r\n",
            wrong.header()
        ));
        assert_eq!(x.status(), 407, "{}", x.answer);
        assert!(
            x.row()["reason"]
                .as_str()
                .is_some_and(|r| r.contains("did not match")),
            "{:?}",
            x.rows
        );
    }

    #[test]
    fn two_credentials_are_400() {
        let header = credential().header().to_string();
        let x = exchange(&format!(
            "CONNECT registry.npmjs.org:443 HTTP/1.1\r\nProxy-Authorization: {header}\r\nProxy-Authorization: {header}\r\n\r\n"
        ));
        assert_eq!(x.status(), 400, "{}", x.answer);
        assert!(
            x.answer.contains("conflicting Proxy-Authorization"),
            "{}",
            x.answer
        );
    }

    #[test]
    fn plaintext_is_405_with_allow_connect() {
        let x = exchange(&authorized("GET http://registry.npmjs.org/is-number HTTP/1.1"));
        assert_eq!(x.status(), 405, "{}", x.answer);
        assert!(x.answer.contains("\r\nAllow: CONNECT\r\n"), "{}", x.answer);
        assert_eq!(x.row()["method"], "GET");
        assert_eq!(x.row()["port"], 80);
    }

    #[test]
    fn an_unlisted_host_is_403_with_its_row() {
        let x = exchange(&authorized("CONNECT evil.example:443 HTTP/1.1"));
        assert_eq!(x.status(), 403, "{}", x.answer);
        assert!(
            x.answer.contains("npm may not reach evil.example:443"),
            "{}",
            x.answer
        );
        let row = x.row();
        assert_eq!(row["kind"], "egress");
        assert_eq!(row["decision"], "deny");
        assert_eq!(row["host"], "evil.example");
        assert_eq!(row["port"], 443);
        assert_eq!(row["method"], "CONNECT");
        assert_eq!(row["tool"], "npm");
    }

    #[test]
    fn a_malformed_target_is_400_even_without_a_credential() {
        let x = exchange("CONNECT a..b:443 HTTP/1.1\r\n\r\n");
        assert_eq!(x.status(), 400, "{}", x.answer);
        assert!(!x.answer.contains("Proxy-Authenticate"), "{}", x.answer);
        assert!(x.row()["host"].is_null(), "{:?}", x.rows);
    }

    #[test]
    fn the_secret_in_the_request_line_is_400_and_never_logged() {
        let x = exchange(&format!(
            "CONNECT cli-guard:{TOKEN}@registry.npmjs.org:443 HTTP/1.1\r\n\r\n"
        ));
        assert_eq!(x.status(), 400, "{}", x.answer);
        assert!(x.answer.contains("proxy credential"), "{}", x.answer);
        let encoded = credential().header().trim_start_matches("Basic ").to_string();
        let row = x.row().to_string();
        assert!(!row.contains(TOKEN) && !row.contains(&encoded), "{row}");
        assert!(!x.answer.contains(TOKEN), "{}", x.answer);
    }

    #[test]
    fn a_head_dripped_within_the_deadline_is_accepted() {
        let request = authorized("CONNECT evil.example:443 HTTP/1.1");
        let bytes: Vec<&[u8]> = request.as_bytes().chunks(1).collect();
        let x = exchange_with(&bytes, Duration::from_millis(2), Duration::from_secs(10));
        // Judged, so read whole: the policy's 403, not a 408.
        assert_eq!(x.status(), 403, "{}", x.answer);
    }

    #[test]
    fn a_head_not_complete_by_the_deadline_is_408() {
        let request = authorized("CONNECT evil.example:443 HTTP/1.1");
        let bytes: Vec<&[u8]> = request.as_bytes().chunks(1).collect();
        // A byte every 20 ms would take over a second; the deadline is
        // 300 ms and dripping does not extend it.
        let x = exchange_with(&bytes, Duration::from_millis(20), Duration::from_millis(300));
        assert_eq!(x.status(), 408, "{}", x.answer);
        assert_eq!(x.row()["status"], 408);
        assert!(x.row()["host"].is_null(), "{:?}", x.rows);
    }
}
