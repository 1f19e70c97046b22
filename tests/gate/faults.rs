//! Faults: targets and upstream proxies that are closed, reset, stall, hang
//! up, answer nonsense or half-close; clients that vanish mid-tunnel; a tool
//! that exits with tunnels open; dials that never complete. In each case the
//! child gets the right status or close, the shim does not crash (it exits
//! with the child's code), and the rows that should exist exist. Also the
//! shim itself SIGKILLed, and its log on a full disk, with a tunnel open
//! (`audit` has both without one).
//!
//! Socket reads here retry EINTR: a socket with a receive timeout is not
//! restarted after this process is stopped and continued, which happens.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// How long open tunnels may outlive the tool (README: Limits).
const GRACE: Duration = Duration::from_secs(2);
/// The dial timeout (README: Limits).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The `egress_close` error of a tunnel the gate closed after the grace.
const CLOSED_AFTER_GRACE: &str = "closed by cli-guard: still open 2 s after the tool exited";

/// Extra environment for a session.
type Env<'a> = &'a [(&'a str, &'a str)];

/// An observe-mode session (IP literals allowed, no address checks).
fn observe(g: &Sandbox, env: &[(&str, &str)]) -> (Running, ChildEnv) {
    g.session(OBSERVER, env)
}

/// Reads until the peer closes (EOF or reset), discarding data; Err if it
/// is still open after IO_TIMEOUT.
///
/// EINTR is retried here: a socket with a receive timeout is never restarted
/// after a signal, nor after this process is stopped and continued.
fn closed_by_peer(s: &mut TcpStream) -> Result<String, String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok("EOF".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                return Err(format!("still open after {IO_TIMEOUT:?}"))
            }
            Err(e) => return Ok(format!("{e}")),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// `peek`, with EINTR retried (see `closed_by_peer`).
fn peek(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.peek(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Asserts the `egress_close` of `conn` comes before `end` in the log.
fn close_before_end(out: &Outcome, log: &Log, id: &str, conn: &Value) {
    let close = log
        .rows()
        .of(id)
        .kind("egress_close")
        .conn(conn)
        .positions()
        .first()
        .copied();
    let end = log.rows().of(id).kind("end").positions().first().copied();
    check!(
        out,
        matches!((close, end), (Some(c), Some(e)) if c < e),
        "conn {conn}: egress_close ({close:?}) must be written before end ({end:?})\n{}",
        log
    );
}

/// The one egress row for `host:port` under `id` says this gate allowed it
/// and the dial failed with `status`, its reason names `target`, and no
/// tunnel (no egress_close) followed.
fn check_failed_dial(
    out: &Outcome,
    log: &Log,
    id: &str,
    (host, port): (&str, u16),
    status: u64,
    target: &str,
) {
    let row = log.egress_to(id, host, port);
    check_eq!(
        out,
        (row["decision"].as_str(), row["status"].as_u64()),
        (Some("allow"), Some(status)),
        "{row}"
    );
    check!(
        out,
        row.reason().contains(target),
        "the reason names the target: {row}"
    );
    check!(
        out,
        log.rows().of(id).kind("egress_close").is_empty(),
        "no tunnel, no egress_close"
    );
}

// ---------------------------------------------------------------------------
// Unreachable, hanging-up and nonsense upstreams: 502

#[test]
fn an_allowed_target_on_a_closed_port_is_502_with_an_allow_row_and_no_close() {
    let g = Sandbox::new();
    let port = closed_port();
    let (run, env) = observe(&g, &[]);
    let target = format!("127.0.0.1:{port}");
    let a = env.proxy().connect(&target);
    check_eq!(run, a.status, 502, "{}", a.report());
    check!(run, a.closed, "the connection closes after the 502");
    let out = g.finish(run, 9);
    let log = g.log();
    check_failed_dial(&out, &log, env.audit_id(), ("127.0.0.1", port), 502, &target);
    check_eq!(out, log.rows().of(env.audit_id()).kind("end").len(), 1, "one end");
}

#[test]
fn an_unreachable_upstream_proxy_is_502() {
    let g = Sandbox::new();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let (run, env) = observe(&g, &[("HTTPS_PROXY", &url)]);
    let a = env.proxy().connect("somewhere.example:443");
    check_eq!(run, a.status, 502, "{}", a.report());
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "somewhere.example", 443);
    check_eq!(
        out,
        (row["decision"].as_str(), row["status"].as_u64()),
        (Some("allow"), Some(502)),
        "{row}"
    );
    check!(
        out,
        row.reason().contains(&format!("the upstream proxy {url}")),
        "the reason names the upstream: {row}"
    );
}

#[test]
fn an_upstream_proxy_that_hangs_up_or_answers_nonsense_is_502() {
    // hangup.example: closes without a word; garbage.example: not HTTP;
    // redirect.example: an HTTP answer that is neither a tunnel nor an error.
    let up = FakeProxy::start(|head| {
        if head.starts_with("CONNECT hangup.") {
            Reply::Hangup
        } else if head.starts_with("CONNECT garbage.") {
            Reply::Garbage
        } else {
            Reply::Status(302)
        }
    });
    let g = Sandbox::new();
    let url = up.url();
    let (run, env) = observe(&g, &[("HTTPS_PROXY", &url)]);
    let proxy = env.proxy();
    let hosts = ["hangup.example", "garbage.example", "redirect.example"];
    for host in hosts {
        let a = proxy.connect(&format!("{host}:443"));
        check_eq!(run, a.status, 502, "{host}\n{}", a.report());
    }
    let out = g.finish(run, 6);
    let log = g.log();
    for host in hosts {
        let row = log.egress_to(env.audit_id(), host, 443);
        check_eq!(
            out,
            (row["decision"].as_str(), row["status"].as_u64()),
            (Some("allow"), Some(502)),
            "{row}"
        );
        check!(
            out,
            row.reason().contains(&format!("the upstream proxy {url}")),
            "the reason names the upstream: {row}"
        );
    }
    check!(
        out,
        log.rows().of(env.audit_id()).kind("egress_close").is_empty(),
        "no tunnels"
    );
}

// ---------------------------------------------------------------------------
// Mid-tunnel faults

#[test]
fn an_upstream_that_resets_mid_stream_closes_the_client_and_the_close_row_has_the_error() {
    let (tx, rx) = mpsc::channel();
    let up = Upstream::start(move |mut s| {
        let _ = s.write_all(b"partial reply");
        // Wait until the client's bytes are here, unread, then close: with
        // unread data in the receive queue, close(2) sends a reset.
        let mut b = [0u8; 1];
        let peeked = peek(&s, &mut b);
        drop(s);
        let _ = tx.send(peeked.map_err(|e| e.to_string()));
    });
    let g = Sandbox::new();
    let (run, env) = observe(&g, &[]);
    let target = up.addr.to_string();
    let (a, mut s) = env.proxy().tunnel(&target, b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    let mut got = [0u8; 13];
    let r = s.read_exact(&mut got);
    check!(
        run,
        r.is_ok() && &got == b"partial reply",
        "the first bytes arrive: {r:?}"
    );
    s.write_all(b"client bytes the upstream never reads").unwrap();
    let peeked = rx.recv_timeout(WAIT);
    check!(
        run,
        matches!(peeked, Ok(Ok(1))),
        "the upstream saw the client's bytes, then reset: {peeked:?}"
    );
    let closed = closed_by_peer(&mut s);
    check!(run, closed.is_ok(), "the client's connection closes: {closed:?}");
    drop(s);

    let out = g.finish(run, 11);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "127.0.0.1", up.addr.port());
    check_eq!(out, row["status"], 200, "{row}");
    let close = log.close_of(row);
    check!(
        out,
        close["error"].as_str().is_some_and(|e| !e.is_empty()),
        "egress_close records the reset: {close}"
    );
    check_eq!(out, close["bytes_down"], 13, "bytes_down: {close}");
    close_before_end(&out, &log, env.audit_id(), &row["conn"]);
}

#[test]
fn a_stalled_upstream_holds_the_tunnel_until_the_grace_after_the_child_exits() {
    let released = Arc::new(AtomicBool::new(false));
    let r = released.clone();
    // Accepts, then never reads or writes.
    let up = Upstream::start(move |s| hold_until(&r, s));
    let g = Sandbox::new();
    let (run, env) = observe(&g, &[]);
    let target = up.addr.to_string();
    let (a, mut s) = env.proxy().tunnel(&target, b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    s.write_all(&pattern(100, 1)).unwrap();

    g.release(5);
    let released_at = Instant::now();
    let out = run.wait();
    let took = released_at.elapsed();
    out.expect_code(5);
    check!(
        out,
        took >= GRACE,
        "the tunnel gets its grace after the tool exits (the shim exited {took:?} after the release)"
    );
    let closed = closed_by_peer(&mut s);
    check!(
        out,
        closed.is_ok(),
        "the client's connection is closed: {closed:?}"
    );
    released.store(true, Ordering::SeqCst);

    let log = g.log();
    let row = log.egress_to(env.audit_id(), "127.0.0.1", up.addr.port());
    // Its one egress_close is the grace's: the tunnel was still open when
    // the tool exited, and no egress_close came while the tool ran.
    let close = log.close_of(row);
    check_eq!(
        out,
        close["error"],
        CLOSED_AFTER_GRACE,
        "a stalled tunnel stays open while the tool runs: {close}"
    );
    check_eq!(out, close["bytes_up"], 100, "{close}");
    check_eq!(out, close["bytes_down"], 0, "{close}");
    close_before_end(&out, &log, env.audit_id(), &row["conn"]);
    let end = log.rows().of(env.audit_id()).kind("end");
    check_eq!(out, end[0]["exit_code"], 5, "end.exit_code");
}

/// The far end of a half-close test: greets, half-closes, then reads the
/// client's late bytes to EOF and reports them.
fn greet_and_half_close(tx: mpsc::Sender<Result<Vec<u8>, String>>) -> impl Fn(TcpStream) + Send + Sync {
    let tx = std::sync::Mutex::new(tx);
    move |mut s: TcpStream| {
        let _ = s.write_all(b"greeting from upstream");
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got).map(|_| got).map_err(|e| e.to_string());
        let _ = tx.lock().unwrap().send(read);
    }
}

#[test]
fn an_upstream_half_close_reaches_the_client_which_can_still_send() {
    // Directly, and through an upstream proxy whose tunnel half-closes.
    let (tx, rx) = mpsc::channel();
    let far = Upstream::start(greet_and_half_close(tx.clone()));
    let chained = FakeProxy::with_tunnel(|_| Reply::Tunnel, greet_and_half_close(tx));
    let chained_url = chained.url();
    let far_target = far.addr.to_string();
    let cases: [(&str, Env, &str); 2] = [
        ("direct", &[], &far_target),
        ("chained", &[("HTTPS_PROXY", &chained_url)], "far.example:443"),
    ];
    for (what, env, target) in cases {
        let g = Sandbox::new();
        let (run, child) = observe(&g, env);
        let (a, mut s) = child.proxy().tunnel(target, b"");
        check_eq!(run, a.status, 200, "{what}: {}", a.report());
        let mut greeting = Vec::new();
        let r = s.read_to_end(&mut greeting);
        check!(
            run,
            r.is_ok(),
            "{what}: the client sees EOF after the upstream's half-close: {r:?}"
        );
        check_eq!(
            run,
            greeting,
            b"greeting from upstream".to_vec(),
            "{what}: upstream's bytes"
        );
        let late = pattern(4000, 8);
        s.write_all(&late).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = rx.recv_timeout(WAIT);
        check!(
            run,
            matches!(&got, Ok(Ok(bytes)) if *bytes == late),
            "{what}: the upstream gets the client's late bytes and EOF: {:?}",
            got.map(|r| r.map(|b| b.len()))
        );
        check!(run, at_eof(&mut s), "{what}: both sides done, the tunnel closes");
        drop(s);
        let out = g.finish(run, 0);
        let log = g.log();
        let (host, port) = target.rsplit_once(':').unwrap();
        let row = log.egress_to(child.audit_id(), host, port.parse().unwrap());
        let close = log.close_of(row);
        check_eq!(out, close["error"], Value::Null, "{what}: a clean close: {close}");
        check_eq!(out, close["bytes_up"], late.len(), "{what}: {close}");
        check_eq!(out, close["bytes_down"], 22, "{what}: {close}");
    }
}

#[test]
fn a_client_that_closes_mid_tunnel_closes_the_upstream_and_the_row_is_written() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let up = Upstream::start(move |mut s| {
        let mut got = Vec::new();
        let read = s
            .read_to_end(&mut got)
            .map(|_| got.len())
            .map_err(|e| e.to_string());
        let _ = tx.lock().unwrap().send(read);
    });
    let g = Sandbox::new();
    let (run, env) = observe(&g, &[]);
    let (a, mut s) = env.proxy().tunnel(&up.addr.to_string(), b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    s.write_all(&pattern(500, 2)).unwrap();
    drop(s); // gone, without a word
    let seen = rx.recv_timeout(WAIT);
    check!(
        run,
        matches!(seen, Ok(Ok(500))),
        "the upstream gets the bytes, then EOF: {seen:?}"
    );
    // The row is written while the tool still runs.
    let written = wait_until(WAIT, || {
        !g.log().rows().of(env.audit_id()).kind("egress_close").is_empty()
    });
    check!(run, written, "egress_close is written once the tunnel is gone");
    let out = g.finish(run, 12);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "127.0.0.1", up.addr.port());
    let close = log.close_of(row);
    check_eq!(out, close["bytes_up"], 500, "{close}");
    close_before_end(&out, &log, env.audit_id(), &row["conn"]);
}

#[test]
fn a_client_that_resets_mid_tunnel_closes_the_upstream_and_the_row_has_the_error() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    // Talks without pause until its peer goes away (bounded).
    let up = Upstream::start(move |mut s| {
        let chunk = pattern(16 * 1024, 3);
        let deadline = Instant::now() + Duration::from_secs(20);
        let outcome = loop {
            if Instant::now() > deadline {
                break Err("still writing after 20 s".to_string());
            }
            if let Err(e) = s.write_all(&chunk) {
                break Ok(e.to_string());
            }
        };
        let _ = tx.lock().unwrap().send(outcome);
    });
    let g = Sandbox::new();
    let (run, env) = observe(&g, &[]);
    let (a, mut s) = env.proxy().tunnel(&up.addr.to_string(), b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    let mut first = [0u8; 1000];
    check!(run, s.read_exact(&mut first).is_ok(), "data flows");
    // Closing with unread data resets the connection.
    drop(s);
    let seen = rx.recv_timeout(WAIT + WAIT);
    check!(
        run,
        matches!(seen, Ok(Ok(_))),
        "the upstream's connection is closed once the client is gone: {seen:?}"
    );
    let written = wait_until(WAIT, || {
        !g.log().rows().of(env.audit_id()).kind("egress_close").is_empty()
    });
    check!(run, written, "egress_close is written once the tunnel is gone");
    let out = g.finish(run, 13);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "127.0.0.1", up.addr.port());
    let close = log.close_of(row);
    check!(
        out,
        close["error"].as_str().is_some_and(|e| !e.is_empty()),
        "egress_close records the reset: {close}"
    );
    close_before_end(&out, &log, env.audit_id(), &row["conn"]);
}

#[test]
fn tunnels_open_when_the_child_exits_are_closed_and_logged_before_end() {
    let released = Arc::new(AtomicBool::new(false));
    let (r1, r2) = (released.clone(), released.clone());
    let echo = Upstream::echo();
    let stalled = Upstream::start(move |s| hold_until(&r1, s));
    // Half-closes, then waits for the client, who never finishes.
    let half = Upstream::start(move |mut s| {
        let _ = s.write_all(b"bye");
        let _ = s.shutdown(Shutdown::Write);
        hold_until(&r2, s);
    });
    let g = Sandbox::new();
    let (run, env) = observe(&g, &[]);
    let proxy = env.proxy();
    let open = |addr: &std::net::SocketAddr| {
        let (a, s) = proxy.tunnel(&addr.to_string(), b"");
        check_eq!(run, a.status, 200, "{addr}: {}", a.report());
        s
    };
    // 1: idle, the far end waiting on us.
    let mut idle = open(&echo.addr);
    check!(
        run,
        echo_roundtrip(&mut idle, b"hello").is_ok(),
        "idle tunnel works"
    );
    // 2: the far end never reads or writes.
    let mut stall = open(&stalled.addr);
    stall.write_all(b"into the void").unwrap();
    // 3: the far end half-closed; our side stays open.
    let mut halfway = open(&half.addr);
    let mut bye = Vec::new();
    check!(
        run,
        halfway.read_to_end(&mut bye).is_ok() && bye == b"bye",
        "half-closed"
    );
    // 4: busy: a daemon still talking when the tool exits.
    let busy = open(&echo.addr);
    let (busy_tx, busy_rx) = mpsc::channel();
    let mut pump = busy.try_clone().unwrap();
    thread::spawn(move || {
        let data = pattern(4096, 4);
        let mut back = vec![0u8; data.len()];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut rounds = 0u64;
        let why = loop {
            if Instant::now() > deadline {
                break "still pumping after 30 s".to_string();
            }
            if let Err(e) = pump.write_all(&data) {
                break format!("write: {e}");
            }
            match pump.read_exact(&mut back) {
                Ok(()) => rounds += 1,
                Err(e) => break format!("read: {e}"),
            }
            if rounds == 1 {
                let _ = busy_tx.send("pumping".to_string());
            }
        };
        let _ = busy_tx.send(why);
    });
    let pumping = busy_rx.recv_timeout(WAIT);
    check!(
        run,
        pumping.as_deref() == Ok("pumping"),
        "the busy tunnel carries data: {pumping:?}"
    );

    g.release(3);
    let released_at = Instant::now();
    let out = run.wait();
    let took = released_at.elapsed();
    out.expect_code(3);
    check!(out, took >= GRACE, "open tunnels get their grace ({took:?})");
    for (what, s) in [
        ("idle", &mut idle),
        ("stalled", &mut stall),
        ("half-closed", &mut halfway),
    ] {
        let closed = closed_by_peer(s);
        check!(
            out,
            closed.is_ok(),
            "{what}: the client's side is closed: {closed:?}"
        );
    }
    let ended = busy_rx.recv_timeout(WAIT);
    check!(
        out,
        matches!(&ended, Ok(why) if why.starts_with("read") || why.starts_with("write")),
        "busy: the pump sees the tunnel close: {ended:?}"
    );
    drop(busy);
    released.store(true, Ordering::SeqCst);

    let log = g.log();
    let id = env.audit_id();
    let rows = log.rows().of(id).kind("egress");
    check_eq!(out, rows.len(), 4, "four tunnels\n{}", log);
    for row in rows {
        check_eq!(out, row["status"], 200, "{row}");
        let close = log.close_of(row);
        check_eq!(
            out,
            close["error"],
            CLOSED_AFTER_GRACE,
            "every tunnel was closed by the gate: {close}"
        );
        close_before_end(&out, &log, id, &row["conn"]);
    }
    let end = log.rows().of(id).kind("end");
    check_eq!(out, end[0]["allowed"], 4, "end.allowed");
    check_eq!(out, end[0]["exit_code"], 3, "end.exit_code");
}

// ---------------------------------------------------------------------------
// Dials that never complete: 504

#[test]
fn a_connect_that_never_completes_is_504_after_the_dial_timeout() {
    // A listener with a backlog of 0 that never accepts: one connection
    // fills its queue, and after that SYNs are dropped and connect() hangs.
    let hole = BlackHole::new();
    let addr = hole.addr;

    let g = Sandbox::new();
    let (run, env) = g.long_session(OBSERVER, &[]);
    let target = addr.to_string();
    let (status, answer, took) = ask_slowly(&env.proxy(), &target, DIAL_TIMEOUT + Duration::from_secs(20));
    check_eq!(run, status, 504, "after {took:?}: {answer}");
    check!(
        run,
        took >= DIAL_TIMEOUT - Duration::from_millis(500),
        "504 only after the dial timeout ({took:?})"
    );
    let out = g.finish(run, 14);
    let log = g.log();
    check_failed_dial(
        &out,
        &log,
        env.audit_id(),
        ("127.0.0.1", addr.port()),
        504,
        &target,
    );
    drop(hole);
}

#[test]
fn an_upstream_proxy_that_never_answers_is_504_after_the_dial_timeout() {
    let up = FakeProxy::start(|_| Reply::Stall);
    let g = Sandbox::new();
    let url = up.url();
    let (run, env) = g.long_session(OBSERVER, &[("HTTPS_PROXY", &url)]);
    let (status, answer, took) = ask_slowly(
        &env.proxy(),
        "slow.example:443",
        DIAL_TIMEOUT + Duration::from_secs(20),
    );
    check_eq!(run, status, 504, "after {took:?}: {answer}");
    check_eq!(
        run,
        up.request_lines(),
        vec!["CONNECT slow.example:443 HTTP/1.1".to_string()],
        "the upstream was asked"
    );
    let out = g.finish(run, 15);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "slow.example", 443);
    check_eq!(
        out,
        (row["decision"].as_str(), row["status"].as_u64()),
        (Some("allow"), Some(504)),
        "{row}"
    );
}

#[test]
fn an_upstream_proxy_that_resets_mid_tunnel_closes_the_client_and_the_row_has_the_error() {
    // Through an upstream proxy this time: it opens the tunnel, sends a
    // little, then resets once the client's bytes are waiting unread.
    let up = FakeProxy::with_tunnel(
        |_| Reply::Tunnel,
        |mut s| {
            let _ = s.write_all(b"partial");
            let mut b = [0u8; 1];
            let _ = peek(&s, &mut b);
            drop(s);
        },
    );
    let g = Sandbox::new();
    let url = up.url();
    let (run, env) = observe(&g, &[("HTTPS_PROXY", &url)]);
    let (a, mut s) = env.proxy().tunnel("far.example:443", b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    let mut got = [0u8; 7];
    let r = s.read_exact(&mut got);
    check!(
        run,
        r.is_ok() && &got == b"partial",
        "the first bytes arrive: {r:?}"
    );
    s.write_all(b"never read").unwrap();
    let closed = closed_by_peer(&mut s);
    check!(run, closed.is_ok(), "the client's connection closes: {closed:?}");
    drop(s);
    let out = g.finish(run, 16);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "far.example", 443);
    let close = log.close_of(row);
    check!(
        out,
        close["error"].as_str().is_some_and(|e| !e.is_empty()),
        "egress_close records the reset: {close}"
    );
}

// ---------------------------------------------------------------------------
// The shim itself: killed, or unable to write its log

#[test]
fn a_sigkilled_shim_drops_its_tunnels_and_its_rows_up_to_then_remain() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let up = Upstream::start(move |mut s| {
        let _ = s.write_all(b"hello");
        let mut got = Vec::new();
        let read = s
            .read_to_end(&mut got)
            .map(|_| got.len())
            .map_err(|e| e.to_string());
        let _ = tx.lock().unwrap().send(read);
    });
    let g = Sandbox::new();
    let (mut run, env) = observe(&g, &[]);
    let child = g.child_pid(&mut run);
    let (a, mut s) = env.proxy().tunnel(&up.addr.to_string(), b"before the kill");
    check_eq!(run, a.status, 200, "{}", a.report());
    let mut hello = [0u8; 5];
    check!(run, s.read_exact(&mut hello).is_ok(), "the tunnel works");
    send(run.pid(), nix::sys::signal::Signal::SIGKILL);
    let out = run.wait();
    check_eq!(out, out.signal(), Some(9), "the shim was SIGKILLed");
    let closed = closed_by_peer(&mut s);
    check!(
        out,
        closed.is_ok(),
        "the client's side is closed with the shim: {closed:?}"
    );
    let seen = rx.recv_timeout(WAIT);
    check!(
        out,
        matches!(seen, Ok(Ok(15)) | Ok(Err(_))),
        "the upstream's side is closed with the shim: {seen:?}"
    );
    check!(
        out,
        wait_until(WAIT, || is_dead(child)),
        "the child dies with its shim"
    );
    let log = g.log();
    let id = env.audit_id();
    check_eq!(out, log.rows().of(id).kind("start").len(), 1, "start remains");
    let row = log.egress_to(id, "127.0.0.1", up.addr.port());
    check_eq!(out, row["status"], 200, "the tunnel's row remains: {row}");
    check!(
        out,
        log.rows().of(id).kind("end").is_empty(),
        "a killed shim writes no end"
    );
}

#[test]
fn with_the_log_on_a_full_disk_tunnels_still_work_and_every_row_goes_to_stderr() {
    let echo = Upstream::echo();
    let g = Sandbox::new();
    g.tool(OBSERVER, HOLD);
    let mut cmd = g.shim_cmd(OBSERVER, ["install"]);
    with_a_full_log(&mut cmd, &g.root().join("full.jsonl"));
    let mut run = g.start(cmd);
    let env = g.wait_env(&mut run);
    let (a, mut s) = env.proxy().tunnel(&echo.addr.to_string(), b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    let data = pattern(10_000, 5);
    check!(
        run,
        echo_roundtrip(&mut s, &data).is_ok(),
        "bytes relayed exactly"
    );
    s.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut s), "closes");
    drop(s);
    let out = g.finish(run, 17);
    let log = out.stderr_log("records on stderr");
    let kinds: Vec<&str> = log.iter().filter_map(|r| r["kind"].as_str()).collect();
    check_eq!(
        out,
        kinds,
        vec!["start", "egress", "egress_close", "end"],
        "every record, on stderr"
    );
    check_eq!(out, log[2]["bytes_up"], data.len(), "egress_close.bytes_up");
    check_eq!(out, log[3]["exit_code"], 17, "end.exit_code");
}
