//! Strict mode's resolver: the DNS server on UDP and TCP port 53 inside the
//! tool's network namespace. It answers from the policy and the private
//! pool, never by asking a real resolver, so a name the tool may not reach
//! never leaves the machine, not even as a lookup.
//!
//! [`answer_query`] is the decision, pure but for the pool: an A query for a
//! name the allowlist allows on any of its ports (`ToolPolicy::decide_name`) gets the
//! name's pool address; AAAA for such a name, no records (NODATA: the pool
//! is IPv4 only); any other name, type or class, REFUSED; a malformed query,
//! FORMERR; an opcode other than QUERY, NOTIMP; a response or a message
//! shorter than a header, nothing. [`serve_udp`] and [`serve_tcp`] are the
//! loops around it; TCP messages carry a two-byte length (RFC 1035
//! §4.2.2), several per connection, each under [`TCP_MAX_MESSAGE`] and
//! [`TCP_TIMEOUT`].
//!
//! Every query is one `egress` row: `method` `dns`, `host` the normalised
//! name (none if there is no host name to give), `port` none, `qtype`, and
//! `conn` 0 (a query opens no tunnel, and the proxy numbers connections from
//! 1, so no `egress_close` row is ever matched to one). Statuses, like the
//! proxy's: `200` answered (an address, or NODATA), `403` a name not on the
//! allowlist, `501` a type, class or opcode not answered, `503` the pool
//! exhausted, `400` malformed, a name that is no host name, or a response.
//! Rows are capped per invocation (`tally`); the rest are counted in
//! `end.suppressed`.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::gate::dns::{self, Parsed, QName, Query};
use crate::gate::listener::{back_off, next_connection};
use crate::gate::outcome::{Aim, Method, Outcome};
use crate::gate::pool::Pool;
use crate::gate::shutdown::Shutdown;
use crate::gate::{datagram, Gate};
use crate::policy::authority::Host;
use crate::policy::{Acting, Decision, ToolPolicy, Verdict};
use crate::who::Actor;

/// The largest DNS message read over TCP; a query is at most a few hundred
/// bytes (EDNS padding included), so a larger length is junk.
pub(super) const TCP_MAX_MESSAGE: usize = 4096;
/// Each TCP message must arrive whole within this long of the connection's
/// accept or the previous answer: a deadline a slow drip cannot extend.
pub(super) const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries answered on one TCP connection before it is closed.
const TCP_MAX_QUERIES: usize = 100;
/// TCP connections served at once; one over it is closed at once.
const TCP_MAX_CONNECTIONS: usize = 64;
/// Large enough for any UDP datagram, so none is cut short and misread.
const UDP_BUFFER: usize = 65_536;

/// One query's answer and its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The bytes to send back; `None` for a message that gets no answer.
    pub reply: Option<Vec<u8>>,
    pub row: QueryRow,
}

/// What a DNS query's `egress` row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRow {
    /// The normalised name asked; `None` if there is no host name to give.
    pub host: Option<Host>,
    /// The query type (`A`, `AAAA`, `TYPE65`); `None` if unreadable.
    pub qtype: Option<String>,
    pub verdict: Verdict,
    pub status: u16,
    pub reason: String,
}

/// Answers one DNS message (see the module docs). Pure but for the pool,
/// which gives an allowed name its address on its first A query.
pub fn answer_query(policy: &ToolPolicy, pool: &Pool, msg: &[u8]) -> Answered {
    answer_query_as(policy, &Acting::Tool, pool, msg)
}

/// [`answer_query`] for a query `acting` sent: a package's own code gets
/// the names of its entries.
pub(crate) fn answer_query_as(policy: &ToolPolicy, acting: &Acting<'_>, pool: &Pool, msg: &[u8]) -> Answered {
    let deny = |reply, host, qtype, status, reason| Answered {
        reply,
        row: QueryRow {
            host,
            qtype,
            verdict: Verdict::Deny,
            status,
            reason,
        },
    };
    let query = match dns::parse(msg) {
        Parsed::Query(query) => query,
        Parsed::Malformed { header, why } => {
            return deny(
                Some(dns::formerr(header)),
                None,
                None,
                400,
                format!("malformed DNS query ({why})"),
            )
        }
        Parsed::NotQuery { header } => {
            return deny(
                Some(dns::notimp(header)),
                None,
                None,
                501,
                format!("DNS opcode {} is not a query: not implemented", header.opcode()),
            )
        }
        Parsed::Ignored { why } => return deny(None, None, None, 400, why.to_string()),
    };
    let qtype = Some(dns::type_name(query.qtype));
    let host = match &query.name {
        QName::Host(host) => host,
        QName::NotAHost { shown, why } => {
            return deny(
                Some(dns::refused(&query)),
                None,
                qtype,
                400,
                format!("{shown:?} is not a host name ({why}): refused"),
            )
        }
    };
    let name = Some(host.clone());
    let decision = policy.decide_name_as(acting, host);
    if !decision.is_allow() {
        let reason = format!("{}; the query is refused", decision.reason(policy));
        return deny(Some(dns::refused(&query)), name, qtype, 403, reason);
    }
    if query.qclass != dns::CLASS_IN {
        let reason = format!("only class IN is answered: class {} refused", query.qclass);
        return deny(Some(dns::refused(&query)), name, qtype, 501, reason);
    }
    match query.qtype {
        dns::TYPE_A => answer_a(policy, pool, &query, name, &decision),
        dns::TYPE_AAAA => Answered {
            reply: Some(dns::nodata(&query)),
            row: QueryRow {
                host: name,
                qtype,
                verdict: Verdict::Allow,
                status: 200,
                reason: format!(
                    "no AAAA records (NODATA): the private pool is IPv4 only ({})",
                    decision.reason(policy)
                ),
            },
        },
        _ => {
            let reason = format!(
                "only A and AAAA queries are answered: {} refused",
                dns::type_name(query.qtype)
            );
            deny(Some(dns::refused(&query)), name, qtype, 501, reason)
        }
    }
}

/// The answer to an A query for an allowed name: its pool address, or
/// REFUSED if the pool is full.
fn answer_a(
    policy: &ToolPolicy,
    pool: &Pool,
    query: &Query<'_>,
    name: Option<Host>,
    decision: &Decision,
) -> Answered {
    let qtype = Some(dns::type_name(dns::TYPE_A));
    let assigned = name.as_ref().map(|n| pool.assign(&n.logged()));
    let (reply, verdict, status, reason) = match assigned {
        Some(Ok(ip)) => (
            dns::answer_a(query, ip),
            Verdict::Allow,
            200,
            format!(
                "answered from the private pool: {ip} ({})",
                decision.reason(policy)
            ),
        ),
        Some(Err(full)) => (
            dns::refused(query),
            Verdict::Deny,
            503,
            format!("{full}: refused"),
        ),
        // A decided host always has a name; refuse if not.
        None => (
            dns::refused(query),
            Verdict::Deny,
            400,
            "no name to answer".to_string(),
        ),
    };
    Answered {
        reply: Some(reply),
        row: QueryRow {
            host: name,
            qtype,
            verdict,
            status,
            reason,
        },
    }
}

/// Answers `msg` as the gate judges who sent it (`actor`).
fn answer(gate: &Gate, pool: &Pool, actor: Option<&Actor>, msg: &[u8]) -> Answered {
    let acting = actor.map_or(Acting::Tool, Actor::acting);
    let mut answered = answer_query_as(gate.policy, &acting, pool, msg);
    if let Some(by) = actor.and_then(|a| crate::who::package_code_label(&a.row())) {
        answered.row.reason = format!("made by {by}: {}", answered.row.reason);
    }
    answered
}

/// Counts one query and writes its row (unless past the row cap).
fn record(gate: &Gate, row: QueryRow, actor: Option<&Actor>) {
    gate.record(
        0,
        Outcome {
            method: Some(Method::Dns),
            aim: row.host.as_ref().map_or(Aim::Unknown, Aim::Name),
            verdict: row.verdict,
            status: row.status,
            reason: row.reason,
            qtype: row.qtype,
            process: actor.map(Actor::row),
        },
    );
}

/// Answers DNS over UDP on `socket` until the gate stops, from the gate's
/// pool (a gate without one, behind the plain proxy, answers none).
pub(super) async fn serve_udp(socket: UdpSocket, gate: Arc<Gate>, mut shutdown: Shutdown) {
    let Some(pool) = gate.pool() else {
        return;
    };
    let mut buf = vec![0u8; UDP_BUFFER];
    // Which address a query was sent to comes with it as packet info: the
    // sender's socket is looked up by both (`who`).
    datagram::want_destinations(&socket);
    let own_port = socket.local_addr().map(|a| a.port()).unwrap_or(53);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => return,
            ready = socket.readable() => if ready.is_err() { return },
        }
        let received = socket.try_io(tokio::io::Interest::READABLE, || {
            datagram::receive(socket.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        });
        let datagram = match received {
            Ok(datagram) => datagram,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // A transient error (out of memory, an ICMP error queued on
            // the socket): back off briefly rather than spin.
            Err(_) => {
                back_off().await;
                continue;
            }
        };
        let Some(peer) = datagram.peer else { continue };
        let actor = datagram
            .destination
            .and_then(|dst| gate.actor_of_datagram(peer, SocketAddr::new(dst, own_port)));
        let answered = answer(
            &gate,
            pool,
            actor.as_ref(),
            buf.get(..datagram.len).unwrap_or_default(),
        );
        // The row is on disk before the answer leaves: a tool that then
        // kills the shim cannot hide the query.
        record(&gate, answered.row, actor.as_ref());
        if let Some(reply) = &answered.reply {
            // Lost answers are the client's to retry, as on any network.
            let _ = socket.send_to(reply, peer).await;
        }
    }
}

/// Answers DNS over TCP on `listener` until the gate stops, from the
/// gate's pool, as [`serve_udp`]; connections still open then are closed.
pub(super) async fn serve_tcp(listener: TcpListener, gate: Arc<Gate>, mut shutdown: Shutdown) {
    if gate.pool().is_none() {
        return;
    }
    let slots = Arc::new(Semaphore::new(TCP_MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopping() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = next_connection(&listener) => if let Some(stream) = accepted {
                // Over the cap: closed at once; the client retries.
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    continue;
                };
                let gate = Arc::clone(&gate);
                tasks.spawn(async move {
                    if let Some(pool) = gate.pool() {
                        serve_connection(stream, &gate, pool).await;
                    }
                    drop(slot);
                });
            },
        }
    }
    // Answers are immediate: nothing is left to finish but idle readers.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// One TCP connection: length-prefixed queries, answered in order, until
/// the client closes, a message is late or too long, or the query cap.
async fn serve_connection(mut stream: TcpStream, gate: &Gate, pool: &Pool) {
    let actor = gate.actor_of(&stream);
    for _ in 0..TCP_MAX_QUERIES {
        let deadline = Instant::now() + TCP_TIMEOUT;
        let mut len = [0u8; 2];
        // Closed, late or cut short before a whole message: no query to
        // answer or record.
        let Ok(Ok(_)) = timeout_at(deadline, stream.read_exact(&mut len)).await else {
            return;
        };
        let len = usize::from(u16::from_be_bytes(len));
        if len > TCP_MAX_MESSAGE {
            let reason =
                format!("malformed DNS query (a TCP message of {len} bytes, over {TCP_MAX_MESSAGE})");
            record(
                gate,
                QueryRow {
                    host: None,
                    qtype: None,
                    verdict: Verdict::Deny,
                    status: 400,
                    reason,
                },
                actor.as_ref(),
            );
            return;
        }
        let mut msg = vec![0u8; len];
        let Ok(Ok(_)) = timeout_at(deadline, stream.read_exact(&mut msg)).await else {
            return;
        };
        let answered = answer(gate, pool, actor.as_ref(), &msg);
        // The row first, as over UDP.
        record(gate, answered.row, actor.as_ref());
        if let Some(reply) = &answered.reply {
            let Ok(prefix) = u16::try_from(reply.len()) else {
                return;
            };
            let mut framed = Vec::with_capacity(2 + reply.len());
            framed.extend_from_slice(&prefix.to_be_bytes());
            framed.extend_from_slice(reply);
            let written = timeout_at(deadline, stream.write_all(&framed)).await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// The address in an A answer from [`answer_query`], if it is one.
pub fn answered_address(reply: &[u8]) -> Option<Ipv4Addr> {
    let ancount = u16::from_be_bytes([*reply.get(6)?, *reply.get(7)?]);
    if ancount != 1 {
        return None;
    }
    let start = reply.len().checked_sub(4)?;
    let octets: [u8; 4] = reply.get(start..)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::credential::Credential;
    use crate::gate::dial::Dialer;
    use crate::gate::dns::tests::query;
    use crate::gate::dns::{TYPE_A, TYPE_AAAA};
    use crate::gate::Settings;
    use crate::policy::{lookup, Rule};

    fn logged(host: &Option<Host>) -> Option<String> {
        host.as_ref().map(Host::logged)
    }

    fn npm() -> &'static ToolPolicy {
        lookup("npm").unwrap_or_else(|| panic!("npm is pinned"))
    }

    fn rcode(reply: &[u8]) -> u8 {
        reply.get(3).map_or(0xff, |b| b & 0x0f)
    }

    fn answered(policy: &ToolPolicy, pool: &Pool, msg: &[u8]) -> (Vec<u8>, QueryRow) {
        let a = answer_query(policy, pool, msg);
        match a.reply {
            Some(reply) => (reply, a.row),
            None => panic!("no reply: {:?}", a.row),
        }
    }

    #[test]
    fn an_allowed_name_gets_its_pool_address() {
        let pool = Pool::new();
        let (reply, row) = answered(npm(), &pool, &query("registry.npmjs.org", TYPE_A, true));
        assert_eq!(rcode(&reply), dns::NOERROR);
        assert_eq!(answered_address(&reply), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(
            pool.name_of(Ipv4Addr::new(198, 18, 0, 1)).as_deref(),
            Some("registry.npmjs.org")
        );
        assert_eq!(logged(&row.host).as_deref(), Some("registry.npmjs.org"));
        assert_eq!(
            (row.qtype.as_deref(), row.verdict, row.status),
            (Some("A"), Verdict::Allow, 200)
        );
        assert_eq!(
            row.reason,
            "answered from the private pool: 198.18.0.1 (allowlist rule registry.npmjs.org:443)"
        );
        // Asked again, in another case: the same address.
        let (reply, _) = answered(npm(), &pool, &query("REGISTRY.npmjs.org.", TYPE_A, false));
        assert_eq!(answered_address(&reply), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn aaaa_for_an_allowed_name_is_nodata() {
        let pool = Pool::new();
        let (reply, row) = answered(npm(), &pool, &query("registry.npmjs.org", TYPE_AAAA, false));
        assert_eq!(rcode(&reply), dns::NOERROR);
        assert_eq!(answered_address(&reply), None);
        assert_eq!(
            (row.qtype.as_deref(), row.verdict, row.status),
            (Some("AAAA"), Verdict::Allow, 200)
        );
        assert!(
            row.reason.starts_with("no AAAA records (NODATA)"),
            "{}",
            row.reason
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn other_types_of_an_allowed_name_are_refused() {
        let pool = Pool::new();
        let (reply, row) = answered(npm(), &pool, &query("registry.npmjs.org", 16, false));
        assert_eq!(rcode(&reply), dns::REFUSED);
        assert_eq!(
            (row.qtype.as_deref(), row.verdict, row.status),
            (Some("TXT"), Verdict::Deny, 501)
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn another_class_is_refused() {
        let mut msg = query("registry.npmjs.org", TYPE_A, false);
        let class = msg.len() - 1;
        msg[class] = 3; // CH
        let (reply, row) = answered(npm(), &Pool::new(), &msg);
        assert_eq!(rcode(&reply), dns::REFUSED);
        assert_eq!(row.status, 501);
    }

    #[test]
    fn a_name_not_on_the_allowlist_is_refused_whatever_the_type() {
        let pool = Pool::new();
        for qtype in [TYPE_A, TYPE_AAAA, 16] {
            let (reply, row) = answered(npm(), &pool, &query("evil.example", qtype, false));
            assert_eq!(rcode(&reply), dns::REFUSED);
            assert_eq!(
                (logged(&row.host).as_deref(), row.verdict, row.status),
                (Some("evil.example"), Verdict::Deny, 403)
            );
            assert!(row.reason.starts_with("not on npm's allowlist"), "{}", row.reason);
        }
        for name in [
            "pypi.org",
            "x.registry.npmjs.org",
            "registry.npmjs.org.evil.example",
            "104.16.0.35",
        ] {
            let (reply, _) = answered(npm(), &pool, &query(name, TYPE_A, false));
            assert_eq!(rcode(&reply), dns::REFUSED, "{name}");
        }
        assert!(pool.is_empty());
    }

    #[test]
    fn names_that_are_no_host_are_refused_without_a_host() {
        let mut msg = query("a.example", TYPE_A, false);
        msg[13] = b' ';
        let (reply, row) = answered(npm(), &Pool::new(), &msg);
        assert_eq!(rcode(&reply), dns::REFUSED);
        assert_eq!((row.host, row.status), (None, 400));
        assert!(row.reason.contains("\"\\\\032.example\""), "{}", row.reason);
    }

    #[test]
    fn junk_gets_formerr_or_nothing() {
        let pool = Pool::new();
        let mut two_questions = query("registry.npmjs.org", TYPE_A, false);
        two_questions[5] = 2;
        let looping = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1];
        for msg in [
            &two_questions[..],
            &looping,
            &[0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let (reply, row) = answered(npm(), &pool, msg);
            assert_eq!(rcode(&reply), dns::FORMERR);
            assert_eq!(&reply[..2], &[0x12, 0x34]);
            assert_eq!((row.host, row.qtype, row.status), (None, None, 400));
        }
        let mut response = query("registry.npmjs.org", TYPE_A, false);
        response[2] |= 0x80;
        for msg in [&b"\x12\x34"[..], &response] {
            let a = answer_query(npm(), &pool, msg);
            assert_eq!((a.reply, a.row.status, a.row.verdict), (None, 400, Verdict::Deny));
        }
        assert!(pool.is_empty());
    }

    const TWO_NAMES: &[Rule] = &[Rule::https("a.example"), Rule::https("b.example")];

    #[test]
    fn a_full_pool_refuses_new_names() {
        let policy = ToolPolicy {
            allow: TWO_NAMES,
            ..*npm()
        };
        let pool = Pool::with_limit(1);
        let (_, row) = answered(&policy, &pool, &query("a.example", TYPE_A, false));
        assert_eq!(row.status, 200);
        let (reply, row) = answered(&policy, &pool, &query("b.example", TYPE_A, false));
        assert_eq!(rcode(&reply), dns::REFUSED);
        assert_eq!((row.verdict, row.status), (Verdict::Deny, 503));
        assert!(row.reason.contains("exhausted"), "{}", row.reason);
    }

    /// A gate for npm writing to an in-memory log.
    fn npm_gate() -> (Arc<Gate>, Arc<AuditLog>) {
        let log = Arc::new(AuditLog::in_memory("test-audit-id".into()));
        let settings = Settings {
            dialer: Dialer::default(),
            credential: Credential::from_token("00112233445566778899aabbccddeeff".to_string()),
            max_connections: 8,
        };
        let gate = Gate::new(npm(), Arc::clone(&log), settings).with_pool(Arc::new(Pool::new()));
        (Arc::new(gate), log)
    }

    fn rows(log: &AuditLog) -> Vec<serde_json::Value> {
        log.take_lines()
            .iter()
            .map(|line| serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends one datagram and reads one answer.
    async fn udp_ask(client: &UdpSocket, msg: Vec<u8>) -> Vec<u8> {
        client.send(&msg).await.unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
        buf[..n].to_vec()
    }

    #[test]
    fn udp_queries_are_answered_and_each_leaves_a_row() {
        runtime().block_on(async {
            let (gate, log) = npm_gate();
            let server = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = server.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let shutdown = Shutdown::new();
            let served = tokio::spawn(serve_udp(server, Arc::clone(&gate), shutdown.clone()));
            let client = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            client.connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
            let ask = |msg: Vec<u8>| udp_ask(&client, msg);
            let a = ask(query("registry.npmjs.org", TYPE_A, true)).await;
            assert_eq!(answered_address(&a), Some(Ipv4Addr::new(198, 18, 0, 1)));
            let refused = ask(query("evil.example", TYPE_A, false)).await;
            assert_eq!(rcode(&refused), dns::REFUSED);
            let mut junk = query("evil.example", TYPE_A, false);
            junk[5] = 0;
            assert_eq!(rcode(&ask(junk).await), dns::FORMERR);
            // A response gets no answer, but a row; the next query is still answered.
            let mut response = query("registry.npmjs.org", TYPE_A, false);
            response[2] |= 0x80;
            client.send(&response).await.unwrap_or_else(|e| panic!("{e}"));
            let aaaa = ask(query("registry.npmjs.org", TYPE_AAAA, false)).await;
            assert_eq!(rcode(&aaaa), dns::NOERROR);
            shutdown.stop();
            served.await.unwrap_or_else(|e| panic!("{e}"));

            let rows = rows(&log);
            let got: Vec<(String, String, String, u64)> = rows
                .iter()
                .map(|r| {
                    (
                        r["host"].as_str().unwrap_or("-").to_string(),
                        r["qtype"].as_str().unwrap_or("-").to_string(),
                        r["decision"].as_str().unwrap_or("-").to_string(),
                        r["status"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let want = [
                ("registry.npmjs.org", "A", "allow", 200),
                ("evil.example", "A", "deny", 403),
                ("-", "-", "deny", 400),
                ("-", "-", "deny", 400),
                ("registry.npmjs.org", "AAAA", "allow", 200),
            ];
            let want: Vec<(String, String, String, u64)> = want
                .iter()
                .map(|(h, q, d, s)| (h.to_string(), q.to_string(), d.to_string(), *s))
                .collect();
            assert_eq!(got, want);
            for row in &rows {
                assert_eq!(
                    (row["kind"].as_str(), row["method"].as_str()),
                    (Some("egress"), Some("dns"))
                );
                assert_eq!((row["conn"].as_u64(), row["port"].is_null()), (Some(0), true));
            }
            let s = gate.summary();
            assert_eq!((s.allowed, s.denied, s.strangers), (2, 3, 0));
            assert_eq!(s.denials.len(), 1);
            assert_eq!(s.denials[0].target, "evil.example");
        });
    }

    /// Sends one length-prefixed message and reads one answer.
    async fn tcp_ask(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        let len = u16::try_from(msg.len()).unwrap_or_else(|e| panic!("{e}"));
        stream
            .write_all(&len.to_be_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stream.write_all(msg).await.unwrap_or_else(|e| panic!("{e}"));
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream
            .read_exact(&mut reply)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        reply
    }

    #[test]
    fn tcp_queries_are_answered_several_per_connection() {
        runtime().block_on(async {
            let (gate, log) = npm_gate();
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let shutdown = Shutdown::new();
            let served = tokio::spawn(serve_tcp(listener, Arc::clone(&gate), shutdown.clone()));
            let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
            let a = tcp_ask(&mut stream, &query("registry.npmjs.org", TYPE_A, false)).await;
            assert_eq!(answered_address(&a), Some(Ipv4Addr::new(198, 18, 0, 1)));
            let refused = tcp_ask(&mut stream, &query("evil.example", TYPE_A, false)).await;
            assert_eq!(rcode(&refused), dns::REFUSED);
            let formerr = tcp_ask(&mut stream, b"\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00").await;
            assert_eq!(rcode(&formerr), dns::FORMERR);
            // Too long a message: a row, and the connection is closed.
            stream
                .write_all(&[0xff, 0xff])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
            shutdown.stop();
            served.await.unwrap_or_else(|e| panic!("{e}"));

            let rows = rows(&log);
            let statuses: Vec<u64> = rows.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect();
            assert_eq!(statuses, [200, 403, 400, 400]);
            assert_eq!(rows[0]["qtype"].as_str(), Some("A"));
            assert!(rows[3]["reason"].as_str().unwrap_or("").contains("65535 bytes"));
        });
    }

    #[test]
    fn the_tcp_loop_stops_with_connections_open() {
        runtime().block_on(async {
            let (gate, _log) = npm_gate();
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let shutdown = Shutdown::new();
            let served = tokio::spawn(serve_tcp(listener, gate, shutdown.clone()));
            let mut idle = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
            // Answered, so the connection is surely accepted before the stop.
            let a = tcp_ask(&mut idle, &query("registry.npmjs.org", TYPE_A, false)).await;
            assert_eq!(rcode(&a), dns::NOERROR);
            shutdown.stop();
            served.await.unwrap_or_else(|e| panic!("{e}"));
            let mut rest = Vec::new();
            let _ = idle.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
        });
    }
}
