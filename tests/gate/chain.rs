//! Chaining through an upstream proxy named by the shim's own environment:
//! real ones (tinyproxy with basic auth, squid: `#[ignore]`d, run by
//! `.ci/run`, which installs them), an outer cli-guard (nesting), and a
//! fake upstream (`util::servers`) that records what it was asked and
//! answers as told. Also the user's NO_PROXY (which targets skip the
//! upstream), `CLI_GUARD_RESOLVE` only at the direct hop, the upstream's
//! refusals reaching the child unchanged, upstreams the gate cannot chain
//! through (exit 125), and the upstream's credentials staying secret.
//!
//! Targets are on loopback: observe-mode `aws` dials IP literals, and names
//! are pointed at loopback servers with `CLI_GUARD_RESOLVE` where they are
//! dialled directly. Names sent through an upstream need not resolve.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

use serde_json::Value;

use crate::util::*;

/// The status a proxy answers a CONNECT sent straight to it (not through
/// the gate), with `Proxy-Authorization: Basic base64(credentials)` if given.
fn direct_status(addr: SocketAddr, target: &str, credentials: Option<&str>) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = credentials {
        head.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(c.as_bytes())
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    read_answer(&mut s, false).status
}

// ---------------------------------------------------------------------------
// Helpers

/// The suffix of a row's reason for a tunnel through `upstream`.
fn through(upstream: SocketAddr) -> String {
    format!("; through the upstream proxy http://{upstream}")
}

/// The suffix of a row's reason for a direct dial to `addr`.
fn direct(addr: SocketAddr) -> String {
    format!("; direct to {addr}")
}

/// Opens a tunnel to `target` and round-trips some bytes through it (the
/// far end must echo), early bytes included.
fn roundtrip(run: &Running, proxy: &Proxy, target: &str, seed: u64) {
    let early = pattern(300, seed);
    let (a, mut s) = proxy.tunnel(target, &early);
    check_eq!(run, a.status, 200, "CONNECT {target}\n{}", a.report());
    let mut back = vec![0u8; early.len()];
    let got = s.read_exact(&mut back);
    check!(
        run,
        got.is_ok() && back == early,
        "{target}: the early bytes must come back unchanged: {got:?}"
    );
    let data = pattern(5000, seed + 1);
    if let Err(e) = echo_roundtrip(&mut s, &data) {
        panic!("{target}: {e}\n{}", run.report());
    }
    s.shutdown(Shutdown::Write).unwrap();
    check!(
        run,
        at_eof(&mut s),
        "{target}: the tunnel closes after both sides are done"
    );
}

/// Every byte of the audit log and of `stderr`, to search for secrets.
fn everything_logged(g: &Sandbox, stderr: &str) -> String {
    let bytes = fs::read(&g.audit).unwrap_or_default();
    format!("{}\n{stderr}", String::from_utf8_lossy(&bytes))
}

/// Checks that none of `secrets` appears in the audit log or in `out`'s
/// stderr.
fn check_never_logged<S: AsRef<str>>(g: &Sandbox, out: &Outcome, secrets: impl IntoIterator<Item = S>) {
    let all = everything_logged(g, &out.stderr());
    for secret in secrets {
        let secret = secret.as_ref();
        check!(
            out,
            !all.contains(secret),
            "{secret:?} leaked into the audit log or stderr"
        );
    }
}

// ---------------------------------------------------------------------------
// tinyproxy and squid

#[test]
#[ignore = "the real tinyproxy: run by .ci/run (cargo test -- --ignored)"]
fn tinyproxy_with_basic_auth_carries_the_tunnel_and_the_row_names_it() {
    let tp = tinyproxy(Some(("user", "p.ss-w0rd_X")));
    let echo = Upstream::echo();
    let g = Sandbox::new();
    // Characters percent-encoded that need not be: the gate must decode the
    // userinfo before it builds Proxy-Authorization. (tinyproxy takes only
    // [-a-z0-9._] in BasicAuth, so a password that must be encoded,
    // `p@ss:w%rd`, is checked against the fake upstream further down.)
    let url = tp.url(Some("us%65r:p%2Ess%2Dw0rd%5FX"));
    let (run, env) = g.session(OBSERVER, &[("https_proxy", &url)]);
    let target = echo.addr.to_string();
    let proxy = env.proxy();

    let early = pattern(1000, 1);
    let (a, s) = proxy.tunnel(&target, &early);
    check_eq!(
        run,
        a.status,
        200,
        "through tinyproxy\n{}\n{}",
        a.report(),
        tp.report()
    );
    // A large transfer both ways, byte for byte. (tinyproxy does not
    // honour a half-close: at the client's EOF it closes both ways, so the
    // client reads everything back before it closes.)
    let data = pattern(256 * 1024, 2);
    let mut w = s.try_clone().unwrap();
    let d = data.clone();
    let writer = thread::spawn(move || w.write_all(&d).map_err(|e| e.to_string()));
    let mut sent = early.clone();
    sent.extend_from_slice(&data);
    let mut back = vec![0u8; sent.len()];
    let mut r = s;
    let read = r.read_exact(&mut back);
    let wrote = writer.join().unwrap();
    check!(
        run,
        wrote.is_ok(),
        "writing through tinyproxy: {wrote:?}\n{}",
        tp.report()
    );
    check!(run, read.is_ok(), "reading the echo: {read:?}\n{}", tp.report());
    check!(run, back == sent, "the echoed bytes differ");
    r.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut r), "the tunnel closes after the client does");
    drop(r);

    let out = g.finish(run, 0);
    check_eq!(out, echo.accepted(), 1, "tinyproxy dialled the echo server once");
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "127.0.0.1", echo.addr.port());
    check_eq!(
        out,
        (row["decision"].as_str(), row["status"].as_u64()),
        (Some("allow"), Some(200)),
        "{row}"
    );
    check!(
        out,
        row.reason().ends_with(&through(tp.addr)),
        "the reason names the upstream: {row}"
    );
    let close = log.close_of(row);
    check_eq!(out, close["bytes_up"], sent.len(), "bytes_up: {close}");
    check_eq!(out, close["bytes_down"], sent.len(), "bytes_down: {close}");
    check_eq!(out, close["error"], Value::Null, "a clean close: {close}");
    check_never_logged(
        &g,
        &out,
        ["p.ss-w0rd_X", "p%2Ess%2Dw0rd%5FX", &base64(b"user:p.ss-w0rd_X")],
    );
}

#[test]
#[ignore = "the real tinyproxy: run by .ci/run (cargo test -- --ignored)"]
fn tinyproxys_refusals_reach_the_child_with_its_status() {
    let tp = tinyproxy(Some(("user", "right")));
    let echo = Upstream::echo();
    let target = echo.addr.to_string();
    // What tinyproxy itself answers each case (tinyproxy 1.11 answers a
    // wrong password with 401, a missing one with 407).
    let cases = [
        ("no credentials", None, direct_status(tp.addr, &target, None)),
        (
            "a wrong password",
            Some("user:wrong"),
            direct_status(tp.addr, &target, Some("user:wrong")),
        ),
    ];
    assert_eq!(cases[0].2, 407, "tinyproxy without credentials\n{}", tp.report());
    assert!(
        matches!(cases[1].2, 401 | 407),
        "tinyproxy with a wrong password: {}\n{}",
        cases[1].2,
        tp.report()
    );
    for (what, userinfo, want) in cases {
        let g = Sandbox::new();
        let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &tp.url(userinfo))]);
        let a = env.proxy().connect(&target);
        check_eq!(
            run,
            a.status,
            want,
            "{what}: the child gets tinyproxy's own status\n{}\n{}",
            a.report(),
            tp.report()
        );
        let out = g.finish(run, 0);
        let log = g.log();
        let row = log.egress_to(env.audit_id(), "127.0.0.1", echo.addr.port());
        check_eq!(
            out,
            row["decision"],
            "allow",
            "{what}: this gate allowed it: {row}"
        );
        check_eq!(
            out,
            row["status"],
            want,
            "{what}: the row records the upstream's status: {row}"
        );
        check!(
            out,
            row.reason()
                .contains(&format!("the upstream proxy http://{} answered {want}", tp.addr)),
            "{what}: the reason names the upstream and its answer: {row}"
        );
        check!(
            out,
            log.rows().of(env.audit_id()).kind("egress_close").is_empty(),
            "{what}: no tunnel, no egress_close"
        );
        check!(
            out,
            !everything_logged(&g, &out.stderr()).contains("wrong"),
            "{what}: the password leaked"
        );
    }
    assert_eq!(echo.accepted(), 0, "tinyproxy never dialled the target");
}

#[test]
#[ignore = "the real squid: run by .ci/run (cargo test -- --ignored)"]
fn squid_as_an_unauthenticated_upstream_tunnels_and_its_403_is_relayed() {
    let sq = squid();
    let echo = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &sq.url(None))]);
    let proxy = env.proxy();
    let target = echo.addr.to_string();
    let (a, mut s) = proxy.tunnel(&target, b"");
    check_eq!(
        run,
        a.status,
        200,
        "through squid\n{}\n{}",
        a.report(),
        sq.report()
    );
    for round in 0..3 {
        let data = pattern(20_000 + round, round as u64);
        if let Err(e) = echo_roundtrip(&mut s, &data) {
            panic!("round {round}: {e}\n{}\n{}", run.report(), sq.report());
        }
    }
    s.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut s), "the tunnel closes after both sides are done");
    drop(s);

    let refused = proxy.connect("www.blocked.example:443");
    check_eq!(
        run,
        refused.status,
        403,
        "squid's own 403 reaches the child\n{}\n{}",
        refused.report(),
        sq.report()
    );

    let out = g.finish(run, 0);
    let log = g.log();
    let ok = log.egress_to(env.audit_id(), "127.0.0.1", echo.addr.port());
    check_eq!(
        out,
        (ok["decision"].as_str(), ok["status"].as_u64()),
        (Some("allow"), Some(200)),
        "{ok}"
    );
    check!(out, ok.reason().ends_with(&through(sq.addr)), "{ok}");
    let no = log.egress_to(env.audit_id(), "www.blocked.example", 443);
    check_eq!(
        out,
        (no["decision"].as_str(), no["status"].as_u64()),
        (Some("allow"), Some(403)),
        "{no}"
    );
    check!(
        out,
        no.reason()
            .contains(&format!("the upstream proxy http://{} answered 403", sq.addr)),
        "{no}"
    );
    check_eq!(out, echo.accepted(), 1, "squid dialled the echo server once");
}

// ---------------------------------------------------------------------------
// Nested gates: an outer npm (enforce) whose child runs an inner aws (observe)

/// The outer tool: records its own environment (the inner shim's), then
/// runs `aws` by name (the inner shim, first on PATH) and exits with its code.
const OUTER_NPM: &str = "env -0 > \"$S/outer-env.tmp\" && mv \"$S/outer-env.tmp\" \"$S/outer-env\"\n\
                         aws install\nexit $?\n";

/// A running nest: the outer shim, the outer child's environment (what the
/// inner shim sees) and the inner child's.
struct Nest {
    run: Running,
    outer: ChildEnv,
    inner: ChildEnv,
}

fn nest(g: &Sandbox, env: &[(&str, &str)]) -> Nest {
    g.tool("npm", OUTER_NPM);
    g.tool("aws", HOLD);
    g.shim("aws");
    let mut cmd = g.shim_cmd("npm", ["install"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut run = g.start(cmd);
    let inner = g.wait_env(&mut run);
    let outer = ChildEnv::parse(&g.wait_state(&mut run, "outer-env"));
    Nest { run, outer, inner }
}

/// The secrets of a gate's proxy URL: its token, and the header carrying it.
fn secrets_of(env: &ChildEnv) -> Vec<String> {
    let proxy = env.proxy();
    let url = proxy.url.clone();
    let userinfo = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('@'))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_default();
    let token = userinfo
        .split_once(':')
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default();
    assert!(token.len() >= 16, "a gate's URL carries a token: {url}");
    let header = proxy.auth.unwrap_or_default();
    vec![token, header.trim_start_matches("Basic ").to_owned()]
}

#[test]
fn a_nested_gate_is_held_to_the_outer_allowlist() {
    let g = Sandbox::new();
    let Nest { run, outer, inner } = nest(&g, &[]);
    let outer_addr = outer.proxy().addr;
    check!(
        run,
        inner.proxy().addr != outer_addr,
        "the inner tool has its own gate"
    );

    // aws observes everything, but npm's gate is its upstream.
    let a = inner.proxy().connect("evil.example:443");
    check_eq!(
        run,
        a.status,
        403,
        "the outer gate's 403 reaches the inner child\n{}",
        a.report()
    );

    let out = g.finish(run, 4);
    let log = g.log();
    let (outer_id, inner_id) = (outer.audit_id(), inner.audit_id());
    check!(out, outer_id != inner_id, "each level has its own audit id");

    let starts = |id: &str| log.rows().of(id).kind("start");
    check_eq!(out, starts(outer_id).len(), 1, "one outer start\n{}", log);
    check_eq!(out, starts(inner_id).len(), 1, "one inner start\n{}", log);
    check_eq!(out, starts(outer_id)[0]["tool"], "npm", "outer tool");
    check_eq!(out, starts(inner_id)[0]["tool"], "aws", "inner tool");
    check_eq!(
        out,
        starts(outer_id)[0]["parent_audit_id"],
        Value::Null,
        "the outer has no parent"
    );
    check_eq!(
        out,
        starts(inner_id)[0]["parent_audit_id"],
        outer_id,
        "the inner's parent is the outer"
    );

    let outer_row = log.egress_to(outer_id, "evil.example", 443);
    check_eq!(out, outer_row["tool"], "npm", "{outer_row}");
    check_eq!(
        out,
        (outer_row["decision"].as_str(), outer_row["status"].as_u64()),
        (Some("deny"), Some(403)),
        "the outer gate's own deny: {outer_row}"
    );
    let inner_row = log.egress_to(inner_id, "evil.example", 443);
    check_eq!(out, inner_row["tool"], "aws", "{inner_row}");
    check_eq!(
        out,
        (inner_row["decision"].as_str(), inner_row["status"].as_u64()),
        (Some("allow"), Some(403)),
        "the inner gate allowed it and relayed the outer's 403: {inner_row}"
    );
    check!(
        out,
        inner_row
            .reason()
            .contains(&format!("the upstream proxy http://{outer_addr} answered 403")),
        "the inner reason names the outer gate: {inner_row}"
    );
    for id in [outer_id, inner_id] {
        check!(
            out,
            log.rows().of(id).kind("egress_close").is_empty(),
            "no tunnel at either level"
        );
        check_eq!(
            out,
            log.rows().of(id).kind("end").len(),
            1,
            "each level ends\n{}",
            log
        );
    }
    check!(
        out,
        out.guard_lines()
            .iter()
            .any(|l| l.contains("evil.example:443") && l.contains("npm")),
        "the outer gate's denial summary names the host and npm"
    );
    check_never_logged(&g, &out, secrets_of(&outer).into_iter().chain(secrets_of(&inner)));
}

#[test]
fn a_nested_gate_tunnels_what_both_allow_and_each_level_logs_it() {
    let echo = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, echo.addr)]);
    let Nest { run, outer, inner } = nest(&g, &[("CLI_GUARD_RESOLVE", &resolve)]);
    let outer_addr = outer.proxy().addr;

    let early = pattern(777, 5);
    let (a, s) = inner.proxy().tunnel(NPM_REGISTRY, &early);
    check_eq!(run, a.status, 200, "allowed by both gates\n{}", a.report());
    let data = pattern(300 * 1024, 6);
    let (read, back) = send_and_read_back(s, &data);
    check!(run, read.is_ok(), "reading through two gates: {read:?}");
    let mut sent = early;
    sent.extend_from_slice(&data);
    check_eq!(run, back.len(), sent.len(), "bytes through two gates");
    check!(run, back == sent, "bytes differ through two gates");

    let out = g.finish(run, 0);
    check_eq!(
        out,
        echo.accepted(),
        1,
        "one connection reached the registry stand-in"
    );
    let log = g.log();
    let (outer_id, inner_id) = (outer.audit_id(), inner.audit_id());
    let inner_row = log.egress_to(inner_id, "registry.npmjs.org", 443);
    check_eq!(
        out,
        (inner_row["decision"].as_str(), inner_row["status"].as_u64()),
        (Some("allow"), Some(200)),
        "{inner_row}"
    );
    check!(
        out,
        inner_row.reason().ends_with(&through(outer_addr)),
        "the inner gate chained through the outer (CLI_GUARD_RESOLVE is not its hop): {inner_row}"
    );
    let outer_row = log.egress_to(outer_id, "registry.npmjs.org", 443);
    check_eq!(
        out,
        (outer_row["decision"].as_str(), outer_row["status"].as_u64()),
        (Some("allow"), Some(200)),
        "{outer_row}"
    );
    check!(
        out,
        outer_row.reason().ends_with(&direct(echo.addr)),
        "the outer gate dials directly, where CLI_GUARD_RESOLVE applies: {outer_row}"
    );
    for row in [inner_row, outer_row] {
        let close = log.close_of(row);
        check_eq!(out, close["bytes_up"], sent.len(), "bytes_up: {close}");
        check_eq!(out, close["bytes_down"], sent.len(), "bytes_down: {close}");
        check_eq!(out, close["error"], Value::Null, "{close}");
    }
    check_eq!(
        out,
        log.rows().of(inner_id).kind("start")[0]["parent_audit_id"],
        outer_id,
        "linked"
    );
    check_never_logged(&g, &out, secrets_of(&outer).into_iter().chain(secrets_of(&inner)));
}

#[test]
fn a_nested_gate_cannot_reach_loopback_around_the_outer_allowlist() {
    // The outer gate refuses loopback to npm's child; the inner gate must
    // not open it for a grandchild: the effective policy is the
    // intersection. (The inner shim's NO_PROXY is the outer gate's, listing
    // loopback: it is not the user's and must not send loopback direct.)
    let echo = Upstream::echo();
    let g = Sandbox::new();
    let Nest { run, outer, inner } = nest(&g, &[]);
    let target = echo.addr.to_string();
    check_eq!(
        run,
        outer.proxy().connect(&target).status,
        403,
        "the outer gate refuses loopback"
    );
    for t in [target.clone(), format!("localhost:{}", echo.addr.port())] {
        let a = inner.proxy().connect(&t);
        check_eq!(run, a.status, 403, "{t} through the inner gate\n{}", a.report());
    }
    let out = g.finish(run, 0);
    check_eq!(out, echo.accepted(), 0, "nothing reached the loopback server");
}

#[test]
fn a_nested_gate_goes_through_the_outer_which_applies_the_users_upstream_and_no_proxy() {
    // user -> npm (outer) -> corporate proxy; npm's child runs aws (inner).
    let echo = Upstream::echo();
    let corp = FakeProxy::start(|_| Reply::Tunnel);
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, echo.addr)]);
    let corp_url = corp.url_with("corp:s3cret");

    // Without NO_PROXY: inner -> outer -> corporate proxy, which is asked
    // for the name with the user's credentials.
    let g = Sandbox::new();
    let Nest { run, outer, inner } = nest(&g, &[("HTTPS_PROXY", &corp_url), ("CLI_GUARD_RESOLVE", &resolve)]);
    roundtrip(&run, &inner.proxy(), NPM_REGISTRY, 7);
    let out = g.finish(run, 0);
    let heads = corp.heads();
    check_eq!(
        out,
        heads.len(),
        1,
        "one CONNECT reached the corporate proxy: {heads:?}"
    );
    check!(
        out,
        heads[0].starts_with("CONNECT registry.npmjs.org:443 HTTP/1.1\r\n")
            && heads[0].contains(&format!("Proxy-Authorization: Basic {}", base64(b"corp:s3cret"))),
        "the outer gate asks the corporate proxy for the name, with the user's credentials: {heads:?}"
    );
    check_eq!(out, echo.accepted(), 0, "nobody dialled the override");
    let log = g.log();
    let outer_row = log.egress_to(outer.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        outer_row.reason().ends_with(&through(corp.server.addr)),
        "{outer_row}"
    );
    let inner_row = log.egress_to(inner.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        inner_row.reason().ends_with(&through(outer.proxy().addr)),
        "{inner_row}"
    );
    check!(
        out,
        !everything_logged(&g, &out.stderr()).contains("s3cret"),
        "credentials leaked"
    );

    // With the user's NO_PROXY naming the registry: the outer gate, which
    // dials directly, applies it (and CLI_GUARD_RESOLVE); the inner still
    // goes through the outer.
    let g = Sandbox::new();
    let Nest { run, outer, inner } = nest(
        &g,
        &[
            ("HTTPS_PROXY", &corp_url),
            ("CLI_GUARD_RESOLVE", &resolve),
            ("NO_PROXY", "registry.npmjs.org"),
        ],
    );
    roundtrip(&run, &inner.proxy(), NPM_REGISTRY, 8);
    let out = g.finish(run, 0);
    check_eq!(
        out,
        corp.heads().len(),
        1,
        "nothing more reached the corporate proxy"
    );
    check_eq!(
        out,
        echo.accepted(),
        1,
        "the outer gate dialled the override directly"
    );
    let log = g.log();
    let outer_row = log.egress_to(outer.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        outer_row.reason().ends_with(&direct(echo.addr)),
        "{outer_row}"
    );
    let inner_row = log.egress_to(inner.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        inner_row.reason().ends_with(&through(outer.proxy().addr)),
        "{inner_row}"
    );
}

// ---------------------------------------------------------------------------
// NO_PROXY

/// How a target should be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Direct,
    Through,
}

/// One session per NO_PROXY setting: each target is tunnelled (everything
/// echoes: direct targets are pointed at an echo server, and the fake
/// upstream echoes) and its row and the upstream's log say which way it went.
fn expect_routes(no_proxy: &[(&str, &str)], cases: &[(&str, Route)]) {
    let echo = Upstream::echo();
    let up = FakeProxy::start(|_| Reply::Tunnel);
    let g = Sandbox::new();
    // Names dialled directly go to the echo server.
    let names: Vec<(&str, SocketAddr)> = cases
        .iter()
        .filter(|(t, _)| !t.starts_with("127.0.0.1:"))
        .map(|(t, _)| (*t, echo.addr))
        .collect();
    let resolve = Sandbox::resolve(&names);
    let url = up.url();
    let mut env = vec![("https_proxy", url.as_str()), ("CLI_GUARD_RESOLVE", &resolve)];
    env.extend_from_slice(no_proxy);
    let (run, child) = g.session(OBSERVER, &env);
    // The child never sees the user's NO_PROXY: the gate's replaces it.
    for var in ["NO_PROXY", "no_proxy"] {
        let theirs: Vec<&str> = child.var(var).split(',').collect();
        for (_, value) in no_proxy {
            for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                check!(
                    run,
                    !theirs.iter().any(|t| t.eq_ignore_ascii_case(entry)),
                    "the child's {var} has the user's {entry:?}: {theirs:?}"
                );
            }
        }
    }
    let proxy = child.proxy();
    for (i, (target, _)) in cases.iter().enumerate() {
        roundtrip(&run, &proxy, target, i as u64 * 10);
    }
    let out = g.finish(run, 0);
    let log = g.log();
    let asked = up.request_lines();
    for (target, route) in cases {
        let (host, port) = target.rsplit_once(':').unwrap();
        let row = log.egress_to(child.audit_id(), host, port.parse().unwrap());
        let went_through = asked.contains(&format!("CONNECT {target} HTTP/1.1"));
        match route {
            Route::Direct => {
                check!(
                    out,
                    row.reason().ends_with(&direct(echo.addr)) && !went_through,
                    "{no_proxy:?}: {target} must be dialled directly: {row}\nthe upstream was asked {asked:?}"
                );
            }
            Route::Through => {
                check!(
                    out,
                    row.reason().ends_with(&through(up.server.addr)) && went_through,
                    "{no_proxy:?}: {target} must go through the upstream: {row}\nthe upstream was asked {asked:?}"
                );
            }
        }
    }
    let through_count = cases.iter().filter(|(_, r)| *r == Route::Through).count();
    check_eq!(
        out,
        asked.len(),
        through_count,
        "the upstream was asked {asked:?}"
    );
}

#[test]
fn no_proxy_names_and_their_subdomains_are_dialled_directly() {
    use Route::*;
    let cases = [
        ("internal.example:443", Direct),
        ("pkgs.internal.example:443", Direct),
        ("a.b.internal.example:8443", Direct),
        ("notinternal.example:443", Through),
        ("internal.example.evil:443", Through),
        ("other.example:443", Through),
    ];
    expect_routes(&[("NO_PROXY", "internal.example")], &cases);
    // Case and surrounding space in the list do not matter; a trailing
    // dot neither.
    expect_routes(&[("NO_PROXY", " Internal.EXAMPLE. , unrelated.test")], &cases);
}

#[test]
fn no_proxy_dot_and_star_suffixes_match_subdomains() {
    use Route::*;
    for entry in [".internal.example", "*.internal.example"] {
        expect_routes(
            &[("NO_PROXY", entry)],
            &[
                ("pkgs.internal.example:443", Direct),
                ("a.b.internal.example:443", Direct),
                ("notinternal.example:443", Through),
                ("other.example:443", Through),
            ],
        );
    }
}

#[test]
fn no_proxy_star_sends_everything_direct() {
    use Route::*;
    expect_routes(
        &[("NO_PROXY", "*")],
        &[
            ("registry.npmjs.org:443", Direct),
            ("anything.example:8443", Direct),
        ],
    );
}

#[test]
fn no_proxy_ips_and_cidr_blocks_match_ip_targets() {
    // The echo server's port is only known once it runs, so these build
    // their own sessions: an IP-literal target at the echo server.
    for (no_proxy, route) in [
        ("127.0.0.0/8", Route::Direct),
        ("127.0.0.1", Route::Direct),
        ("127.0.0.1/32,10.0.0.0/8", Route::Direct),
        ("10.0.0.0/8", Route::Through),
        ("127.0.0.2/32", Route::Through),
    ] {
        let echo = Upstream::echo();
        let up = FakeProxy::start(|_| Reply::Tunnel);
        let g = Sandbox::new();
        let url = up.url();
        let (run, child) = g.session(OBSERVER, &[("https_proxy", &url), ("no_proxy", no_proxy)]);
        let target = echo.addr.to_string();
        roundtrip(&run, &child.proxy(), &target, 3);
        let out = g.finish(run, 0);
        let log = g.log();
        let row = log.egress_to(child.audit_id(), "127.0.0.1", echo.addr.port());
        let want = match route {
            Route::Direct => direct(echo.addr),
            Route::Through => through(up.server.addr),
        };
        check!(
            out,
            row.reason().ends_with(&want),
            "no_proxy={no_proxy:?}: want {route:?}: {row}"
        );
        let asked = up.request_lines();
        let want_asked = match route {
            Route::Direct => vec![],
            Route::Through => vec![format!("CONNECT {target} HTTP/1.1")],
        };
        check_eq!(
            out,
            asked,
            want_asked,
            "no_proxy={no_proxy:?}: what the upstream was asked"
        );
    }
}

#[test]
fn no_proxy_host_port_entries_match_that_port_only() {
    use Route::*;
    expect_routes(
        &[("NO_PROXY", "pkgs.internal.example:8443")],
        &[
            ("pkgs.internal.example:8443", Direct),
            ("pkgs.internal.example:443", Through),
        ],
    );
}

#[test]
fn lowercase_no_proxy_wins_over_uppercase() {
    use Route::*;
    expect_routes(
        &[("no_proxy", "lower.example"), ("NO_PROXY", "upper.example")],
        &[("lower.example:443", Direct), ("upper.example:443", Through)],
    );
}

#[test]
fn without_no_proxy_everything_goes_through_the_upstream() {
    use Route::*;
    expect_routes(
        &[],
        &[("registry.npmjs.org:443", Through), ("localhost:443", Through)],
    );
}

// ---------------------------------------------------------------------------
// CLI_GUARD_RESOLVE only at the direct hop

#[test]
fn cli_guard_resolve_applies_only_at_the_direct_hop() {
    let echo = Upstream::echo();
    let up = FakeProxy::start(|_| Reply::Tunnel);
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, echo.addr)]);

    // Through the upstream: the upstream is asked for the name, and the
    // override's address is never dialled.
    let g = Sandbox::new();
    let url = up.url();
    let (run, env) = g.session("npm", &[("HTTPS_PROXY", &url), ("CLI_GUARD_RESOLVE", &resolve)]);
    roundtrip(&run, &env.proxy(), NPM_REGISTRY, 1);
    let out = g.finish(run, 0);
    let heads = up.heads();
    check_eq!(out, heads.len(), 1, "one CONNECT upstream: {heads:?}");
    let mut lines = heads[0].lines();
    check_eq!(
        out,
        lines.next(),
        Some("CONNECT registry.npmjs.org:443 HTTP/1.1"),
        "the upstream is asked for the name, not the override: {heads:?}"
    );
    check!(
        out,
        !heads[0].contains(&echo.addr.to_string()),
        "the override's address is not sent upstream: {heads:?}"
    );
    check!(
        out,
        !heads[0].to_ascii_lowercase().contains("proxy-authorization"),
        "no userinfo in the upstream URL, no Proxy-Authorization: {heads:?}"
    );
    check_eq!(out, echo.accepted(), 0, "the override's address was not dialled");
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "registry.npmjs.org", 443);
    check!(out, row.reason().ends_with(&through(up.server.addr)), "{row}");

    // The same target in NO_PROXY: dialled directly, where the override applies.
    let g = Sandbox::new();
    let (run, env) = g.session(
        "npm",
        &[
            ("HTTPS_PROXY", &url),
            ("CLI_GUARD_RESOLVE", &resolve),
            ("NO_PROXY", "registry.npmjs.org"),
        ],
    );
    roundtrip(&run, &env.proxy(), NPM_REGISTRY, 2);
    let out = g.finish(run, 0);
    check_eq!(out, up.heads().len(), 1, "nothing more went upstream");
    check_eq!(out, echo.accepted(), 1, "the override's address was dialled");
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "registry.npmjs.org", 443);
    check!(out, row.reason().ends_with(&direct(echo.addr)), "{row}");
}

#[test]
fn bytes_an_upstream_sends_behind_its_200_reach_the_child_first() {
    // A server that speaks first, in the same packet as its proxy's 200.
    let up = Upstream::start(|mut s| {
        if read_request_head(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-server-speaks-first\r\n");
        echo_until_eof(s);
    });
    let g = Sandbox::new();
    let url = format!("http://{}", up.addr);
    let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &url)]);
    let (a, mut s) = env.proxy().tunnel("server.example:22", b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    let greeting = b"SSH-2.0-server-speaks-first\r\n";
    let mut got = vec![0u8; greeting.len()];
    let r = s.read_exact(&mut got);
    check!(
        run,
        r.is_ok() && got == greeting,
        "the bytes behind the 200 come first: {r:?} {:?}",
        String::from_utf8_lossy(&got)
    );
    check!(
        run,
        echo_roundtrip(&mut s, b"then the rest").is_ok(),
        "and the tunnel works"
    );
    s.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut s), "closes");
    drop(s);
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "server.example", 22);
    let close = log.close_of(row);
    check_eq!(
        out,
        close["bytes_down"],
        greeting.len() + b"then the rest".len(),
        "bytes_down counts the bytes behind the 200: {close}"
    );
}

// ---------------------------------------------------------------------------
// The upstream's refusals

#[test]
fn an_upstreams_refusal_reaches_the_child_with_exactly_its_status() {
    const CODES: [u16; 9] = [400, 401, 403, 407, 429, 500, 502, 503, 504];
    // s403.example asks for a 403, and so on.
    let up = FakeProxy::start(|head| {
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.strip_prefix('s'))
            .and_then(|t| t.split('.').next())
            .and_then(|c| c.parse().ok());
        code.map_or(Reply::Tunnel, Reply::Status)
    });
    let g = Sandbox::new();
    let url = up.url();
    let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &url)]);
    let proxy = env.proxy();
    for code in CODES {
        let a = proxy.connect(&format!("s{code}.example:443"));
        check_eq!(
            run,
            a.status,
            code,
            "the upstream answered {code}\n{}",
            a.report()
        );
        check!(
            run,
            a.closed,
            "{code}: the connection is closed after the refusal"
        );
    }
    let out = g.finish(run, 0);
    let log = g.log();
    for code in CODES {
        let row = log.egress_to(env.audit_id(), &format!("s{code}.example"), 443);
        check_eq!(
            out,
            (row["decision"].as_str(), row["status"].as_u64()),
            (Some("allow"), Some(u64::from(code))),
            "this gate allowed it; the row has the upstream's status: {row}"
        );
        check!(
            out,
            row.reason().contains(&format!(
                "the upstream proxy http://{} answered {code} {}",
                up.server.addr,
                phrase(code)
            )),
            "{row}"
        );
    }
    check!(
        out,
        log.rows().of(env.audit_id()).kind("egress_close").is_empty(),
        "no tunnels"
    );
    let end = log.rows().of(env.audit_id()).kind("end");
    check_eq!(out, end[0]["allowed"], CODES.len(), "end.allowed");
    check_eq!(out, end[0]["denied"], 0, "end.denied");
}

// ---------------------------------------------------------------------------
// Which proxy variable, and proxies the gate cannot chain through

#[test]
fn the_first_non_empty_proxy_variable_names_the_upstream_lowercase_first() {
    let a = FakeProxy::start(|_| Reply::Status(403));
    let b = FakeProxy::start(|_| Reply::Status(403));
    let cases: [(&[(&str, String)], &FakeProxy); 5] = [
        (&[("https_proxy", a.url()), ("HTTPS_PROXY", b.url())], &a),
        (&[("HTTPS_PROXY", a.url()), ("all_proxy", b.url())], &a),
        (&[("all_proxy", a.url()), ("ALL_PROXY", b.url())], &a),
        (&[("ALL_PROXY", a.url())], &a),
        // Empty is unset; a variable further down that the gate cannot use
        // does not matter once an earlier one names a proxy.
        (
            &[
                ("https_proxy", String::new()),
                ("HTTPS_PROXY", b.url()),
                ("ALL_PROXY", "socks5://127.0.0.1:1".into()),
            ],
            &b,
        ),
    ];
    for (i, (env, want)) in cases.iter().enumerate() {
        let before = (a.heads().len(), b.heads().len());
        let g = Sandbox::new();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (run, child) = g.session(OBSERVER, &env);
        let answer = child.proxy().connect(&format!("case{i}.example:443"));
        check_eq!(run, answer.status, 403, "case {i} {env:?}: {}", answer.report());
        g.finish(run, 0);
        let after = (a.heads().len(), b.heads().len());
        let asked_a = after.0 - before.0;
        let asked_b = after.1 - before.1;
        let want_a = std::ptr::eq(*want, &a);
        assert_eq!(
            (asked_a, asked_b),
            if want_a { (1, 0) } else { (0, 1) },
            "case {i} {env:?}: which upstream was asked"
        );
    }
}

#[test]
fn an_https_or_socks_upstream_is_refused_before_the_tool_runs() {
    for (var, url, scheme) in [
        (
            "https_proxy",
            "https://user:hunter2secret@127.0.0.1:3128",
            "https",
        ),
        (
            "HTTPS_PROXY",
            "socks5://user:hunter2secret@127.0.0.1:1080",
            "socks5",
        ),
        ("all_proxy", "socks5h://127.0.0.1:1080", "socks5h"),
        ("ALL_PROXY", "socks4://127.0.0.1:1080", "socks4"),
    ] {
        let g = Sandbox::new();
        g.tool(OBSERVER, "rec \"$@\"\nexit 0\n");
        let mut cmd = g.shim_cmd(OBSERVER, ["s3", "ls"]);
        cmd.env(var, url);
        let out = g.run(cmd);
        out.expect_code(125);
        check!(
            out,
            !g.state_path("argv").exists(),
            "{var}={url}: the tool must not run"
        );
        let err = out.stderr();
        check!(
            out,
            err.contains(&format!("{scheme}://")) && err.contains(var) && err.contains("http://"),
            "{var}={url}: stderr says which variable, which scheme, and that only http:// works"
        );
        check!(
            out,
            !err.contains("hunter2secret"),
            "{var}: the password is not repeated"
        );
        let log = g.log();
        let ends = log.rows().kind("end");
        check_eq!(out, ends.len(), 1, "one end record\n{}", log);
        check_eq!(out, ends[0]["exit_code"], 125, "end.exit_code");
        check!(out, ends[0]["error"].is_string(), "end.error says why");
        check!(
            out,
            !everything_logged(&g, &err).contains("hunter2secret"),
            "{var}: the password is not logged"
        );
    }
}

#[test]
fn a_malformed_http_upstream_url_is_refused_without_quoting_its_password() {
    for url in [
        "http://user:hunter2%zz@127.0.0.1:3128",
        "http://user:hunter2secret@127.0.0.1:notaport",
        "http://user:hunter2secret@/",
    ] {
        let g = Sandbox::new();
        g.tool(OBSERVER, "rec \"$@\"\nexit 0\n");
        let mut cmd = g.shim_cmd(OBSERVER, ["s3", "ls"]);
        cmd.env("HTTPS_PROXY", url);
        let out = g.run(cmd);
        out.expect_code(125);
        check!(
            out,
            !g.state_path("argv").exists(),
            "{url}: the tool must not run"
        );
        check!(
            out,
            out.stderr().contains("HTTPS_PROXY"),
            "{url}: names the variable"
        );
        check!(
            out,
            !everything_logged(&g, &out.stderr()).contains("hunter2"),
            "{url}: the password is not repeated"
        );
    }
}

// ---------------------------------------------------------------------------
// The upstream's credentials

#[test]
fn upstream_credentials_are_decoded_sent_upstream_and_never_logged() {
    let (user, pass) = ("us@er", "p@ss:w%rd");
    let want = format!(
        "Proxy-Authorization: Basic {}",
        base64(format!("{user}:{pass}").as_bytes())
    );
    let w = want.clone();
    let up = FakeProxy::start(move |head| {
        if !head.lines().any(|l| l == w) {
            Reply::Status(407)
        } else if head.starts_with("CONNECT refused.example:") {
            Reply::Status(403)
        } else {
            Reply::Tunnel
        }
    });
    let g = Sandbox::new();
    let url = up.url_with("us%40er:p%40ss%3Aw%25rd");
    let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &url), ("https_proxy", &url)]);
    // The child gets the gate's URL, not the upstream's.
    for var in PROXY_VARS {
        let v = env.var(var);
        check!(
            run,
            !v.contains(&up.server.addr.to_string()) && !v.contains("p%40ss"),
            "{var}={v}: the child must get the gate's own URL"
        );
    }
    let proxy = env.proxy();
    roundtrip(&run, &proxy, "allowed.example:443", 4);
    let refused = proxy.connect("refused.example:443");
    check_eq!(run, refused.status, 403, "{}", refused.report());
    check!(
        run,
        !refused.body_text().contains("p@ss") && !refused.body_text().contains("p%40ss"),
        "the answer's body does not quote the upstream's password: {}",
        refused.body_text()
    );
    let out = g.finish(run, 0);

    let heads = up.heads();
    check_eq!(out, heads.len(), 2, "{heads:?}");
    for h in &heads {
        check!(
            out,
            h.lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("proxy-authorization:"))
                .count()
                == 1
                && h.lines().any(|l| l == want),
            "the upstream gets exactly the percent-decoded credentials: {h:?}, want {want:?}"
        );
        // The child's credential for this gate is not passed on.
        for secret in secrets_of(&env) {
            check!(
                out,
                !h.contains(&secret),
                "the gate's own credential went upstream: {h:?}"
            );
        }
    }
    let b64_creds = base64(format!("{user}:{pass}").as_bytes());
    check_never_logged(&g, &out, [pass, "p%40ss%3Aw%25rd", "p@ss", b64_creds.as_str()]);
    let log = g.log();
    for r in log.rows().of(env.audit_id()).kind("egress") {
        check!(
            out,
            r.reason().contains(&format!("http://{}", up.server.addr)),
            "rows name the upstream: {r}"
        );
    }
}

#[test]
fn a_relayed_upstream_407_is_not_the_gates_own_challenge() {
    // An upstream 407 is the upstream's: the child's own credential was
    // fine, so the inner gate must not claim its own realm.
    let up = FakeProxy::start(|_| Reply::Status(407));
    let g = Sandbox::new();
    let url = up.url_with("someone:wrong");
    let (run, env) = g.session(OBSERVER, &[("HTTPS_PROXY", &url)]);
    let a = env.proxy().connect("anything.example:443");
    check_eq!(run, a.status, 407, "{}", a.report());
    let challenge = a.header("Proxy-Authenticate").unwrap_or_default().to_owned();
    check!(
        run,
        !challenge.contains("cli-guard"),
        "a relayed 407 is not the gate's own challenge: {challenge:?}"
    );
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "anything.example", 443);
    check_eq!(
        out,
        (row["decision"].as_str(), row["status"].as_u64()),
        (Some("allow"), Some(407)),
        "{row}"
    );
}
