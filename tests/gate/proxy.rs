//! The proxy, as the child sees it through the URL in its environment:
//! every status, the relay, matching, observe mode. Host normalisation,
//! lookalikes and oversized heads are `hostile`'s, one test per trick.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;

use crate::util::*;

const OK_200: &str = "HTTP/1.1 200 Connection established";
const BAD_400: &str = "HTTP/1.1 400 Bad Request";
const FORBIDDEN_403: &str = "HTTP/1.1 403 Forbidden";
const METHOD_405: &str = "HTTP/1.1 405 Method Not Allowed";
const GATEWAY_502: &str = "HTTP/1.1 502 Bad Gateway";

/// Asserts each raw request, sent with the invocation's credential as a
/// real client sends it, gets exactly `want` as its status line.
fn expect_status_lines(run: &Running, proxy: &Proxy, cases: &[&[u8]], want: &str) {
    for raw in cases {
        let a = proxy.ask_authed(raw);
        check_eq!(
            run,
            a.status_line,
            want,
            "request {:?}\n{}",
            String::from_utf8_lossy(raw),
            a.report()
        );
    }
}

fn connect_line(authority: &[u8]) -> Vec<u8> {
    let mut v = b"CONNECT ".to_vec();
    v.extend_from_slice(authority);
    v.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    v
}

#[test]
fn allowed_connect_answers_200_and_relays_both_ways() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    for round in 0..3 {
        let data = pattern(1000 + round, round as u64);
        if let Err(e) = echo_roundtrip(&mut s, &data) {
            panic!("round {round}: {e}\n{}", run.report());
        }
    }
    s.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut s), "the tunnel closes after both sides are done");
    g.finish(run, 0);
    assert_eq!(up.accepted(), 1, "exactly one upstream connection");
}

#[test]
fn early_bytes_behind_the_connect_head_are_forwarded_first() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    // Clients put the TLS ClientHello in the same packet as the CONNECT head.
    let early = b"\x16\x03\x01\x00\x05early-hello-bytes";
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, early);
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    let mut back = vec![0u8; early.len()];
    let got = s.read_exact(&mut back);
    check!(
        run,
        got.is_ok(),
        "the early bytes must reach upstream and come back: {got:?}"
    );
    check_eq!(run, back, early.to_vec(), "early bytes come first, unchanged");
    check!(
        run,
        echo_roundtrip(&mut s, b"after").is_ok(),
        "later bytes follow"
    );
    drop(s);
    g.finish(run, 0);
}

#[test]
fn client_half_close_reaches_upstream_and_the_reply_still_flows() {
    let (tx, rx) = mpsc::channel();
    let reply = pattern(5000, 7);
    let r = reply.clone();
    let up = Upstream::start(move |mut s| {
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got).map_err(|e| e.to_string());
        let _ = tx.send((got, read));
        // The client has half-closed; we can still answer.
        let _ = s.write_all(&r);
    });
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let early = b"early!".to_vec();
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, &early);
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    let later = pattern(3000, 3);
    s.write_all(&later).unwrap();
    s.shutdown(Shutdown::Write).unwrap();

    let seen = rx.recv_timeout(WAIT);
    let Ok((got, read)) = seen else {
        panic!(
            "upstream never saw EOF after the client's half-close\n{}",
            run.report()
        );
    };
    check!(run, read.is_ok(), "upstream read failed: {read:?}");
    let mut sent = early;
    sent.extend_from_slice(&later);
    check_eq!(run, got.len(), sent.len(), "bytes upstream received");
    check!(run, got == sent, "upstream received different bytes");

    let mut back = Vec::new();
    let r = s.read_to_end(&mut back);
    check!(run, r.is_ok(), "reading the reply after half-close: {r:?}");
    check_eq!(
        run,
        back.len(),
        reply.len(),
        "reply length after the client's half-close"
    );
    check!(run, back == reply, "reply bytes differ");
    drop(s);
    g.finish(run, 0);
}

#[test]
fn upstream_half_close_reaches_the_client_which_can_still_send() {
    let (tx, rx) = mpsc::channel();
    let up = Upstream::start(move |mut s| {
        let _ = s.write_all(b"greeting from upstream");
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got).map_err(|e| e.to_string());
        let _ = tx.send((got, read));
    });
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    let mut greeting = Vec::new();
    let r = s.read_to_end(&mut greeting);
    check!(
        run,
        r.is_ok(),
        "the client must see EOF after upstream's half-close: {r:?}"
    );
    check_eq!(
        run,
        greeting,
        b"greeting from upstream".to_vec(),
        "upstream's bytes"
    );

    s.write_all(b"late bytes from the client").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let Ok((got, read)) = rx.recv_timeout(WAIT) else {
        panic!(
            "upstream never got the client's late bytes and EOF\n{}",
            run.report()
        );
    };
    check!(run, read.is_ok(), "upstream read failed: {read:?}");
    check_eq!(
        run,
        got,
        b"late bytes from the client".to_vec(),
        "bytes after upstream's half-close"
    );
    check!(run, at_eof(&mut s), "both sides done: the tunnel closes");
    g.finish(run, 0);
}

#[test]
fn a_large_transfer_is_byte_exact_both_ways() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, s) = env.proxy().tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    let data = pattern(1 << 20, 11);
    let (res, back) = send_and_read_back(s, &data);
    check!(run, res.is_ok(), "reading the echo: {res:?}");
    check_eq!(run, back.len(), data.len(), "echoed length");
    check!(run, back == data, "echoed bytes differ");
    g.finish(run, 0);
}

#[test]
fn several_tunnels_at_once_stay_separate() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let proxy = env.proxy();
    let mut tunnels: Vec<_> = (0..4)
        .map(|i| {
            let (a, s) = proxy.tunnel(NPM_REGISTRY, format!("early-{i}|").as_bytes());
            check_eq!(run, a.status_line, OK_200, "tunnel {i}: {}", a.report());
            s
        })
        .collect();
    for round in 0..3 {
        for (i, s) in tunnels.iter_mut().enumerate() {
            s.write_all(format!("t{i}r{round}|").as_bytes()).unwrap();
        }
    }
    for (i, s) in tunnels.iter_mut().enumerate() {
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        let r = s.read_to_string(&mut back);
        check!(run, r.is_ok(), "tunnel {i}: {r:?}");
        check_eq!(
            run,
            back,
            format!("early-{i}|t{i}r0|t{i}r1|t{i}r2|"),
            "tunnel {i} bytes"
        );
    }
    g.finish(run, 0);
    assert_eq!(up.accepted(), 4);
}

#[test]
fn denied_host_gets_403_with_connection_close_and_a_body_naming_it() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let a = env.proxy().connect("evil.example:443");
    check_eq!(run, a.status_line, FORBIDDEN_403, "{}", a.report());
    let conn = a.header("connection").unwrap_or_default().to_ascii_lowercase();
    check_eq!(run, conn, "close", "Connection header\n{}", a.report());
    let body = a.body_text();
    for needle in ["npm", "evil.example:443", env.audit_id()] {
        check!(
            run,
            body.contains(needle),
            "403 body must name {needle:?}\n{}",
            a.report()
        );
    }
    check!(
        run,
        body.to_ascii_lowercase().contains("allowlist"),
        "403 body must say it is an allowlist block\n{}",
        a.report()
    );
    check!(run, a.closed, "the proxy must close after a 403\n{}", a.report());
    g.finish(run, 0);
}

#[test]
fn ip_literals_are_denied_in_enforce_mode() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let proxy = env.proxy();
    let direct = format!("127.0.0.1:{}", up.addr.port());
    for target in [
        direct.as_str(),
        "[::1]:443",
        "104.16.3.35:443",
        "[2606:4700::6810:123]:443",
    ] {
        let a = proxy.connect(target);
        check_eq!(run, a.status_line, FORBIDDEN_403, "{target}\n{}", a.report());
    }
    g.finish(run, 0);
    assert_eq!(
        up.accepted(),
        0,
        "an IP literal must never be dialled in enforce mode"
    );
}

#[test]
fn other_ports_of_an_allowed_host_are_denied() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let names = [
        "registry.npmjs.org:8443",
        "registry.npmjs.org:80",
        "registry.npmjs.org:22",
    ];
    let map: Vec<_> = names.iter().map(|n| (*n, up.addr)).collect();
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &Sandbox::resolve(&map))]);
    for name in names {
        let a = env.proxy().connect(name);
        check_eq!(run, a.status_line, FORBIDDEN_403, "{name}\n{}", a.report());
    }
    g.finish(run, 0);
    assert_eq!(up.accepted(), 0, "a denied port must never be dialled");
}

#[test]
fn a_host_header_cannot_change_the_target() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let proxy = env.proxy();
    let sneaky = proxy.head_with("evil.example:443", "Host: registry.npmjs.org:443\r\n");
    let a = proxy.ask(&sneaky);
    check_eq!(
        run,
        a.status_line,
        FORBIDDEN_403,
        "Host header must not allow\n{}",
        a.report()
    );

    let mut s = proxy.dial();
    s.write_all(&proxy.head_with(NPM_REGISTRY, "Host: evil.example:443\r\n"))
        .unwrap();
    let a = read_answer(&mut s, false);
    check_eq!(
        run,
        a.status_line,
        OK_200,
        "Host header must not deny\n{}",
        a.report()
    );
    check!(
        run,
        echo_roundtrip(&mut s, b"x").is_ok(),
        "the request line's target is dialled"
    );
    drop(s);
    g.finish(run, 0);
    assert_eq!(up.accepted(), 1);
}

#[test]
fn resolve_override_never_changes_a_decision() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[("evil.example:443", up.addr)]);
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let a = env.proxy().connect("evil.example:443");
    check_eq!(run, a.status_line, FORBIDDEN_403, "{}", a.report());
    g.finish(run, 0);
    assert_eq!(up.accepted(), 0);
}

#[test]
fn garbage_request_lines_get_400() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let cases: &[&[u8]] = &[
        b"hello\r\n\r\n",
        b"CONNECT\r\n\r\n",
        b"CONNECT registry.npmjs.org:443\r\n\r\n",
        b"CONNECT registry.npmjs.org:443 HTTP/1.1 extra\r\n\r\n",
        b"CONNECT registry.npmjs.org:443 FTP/1.1\r\n\r\n",
        b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nno colon in this header\r\n\r\n",
    ];
    expect_status_lines(&run, &env.proxy(), cases, BAD_400);
    g.finish(run, 0);
}

#[test]
fn a_tls_client_hello_sent_to_the_proxy_is_answered_400_at_once() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    // A TLS 1.2 ClientHello record header and the start of its body; the
    // connection stays open, so only an immediate answer arrives in time.
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
    hello.extend(pattern(32, 5));
    hello.extend([0x00, 0x00, 0x20, 0xc0, 0x2b, 0xc0, 0x2f]);
    let mut s = env.proxy().dial();
    s.write_all(&hello).unwrap();
    let a = read_answer(&mut s, false);
    check_eq!(run, a.status_line, BAD_400, "{}", a.report());
    drop(s);
    g.finish(run, 0);
}

#[test]
fn missing_or_bad_ports_get_400() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let ports: &[&[u8]] = &[
        b"registry.npmjs.org",
        b"registry.npmjs.org:",
        b"registry.npmjs.org:0",
        b"registry.npmjs.org:65536",
        b"registry.npmjs.org:99999999999",
        b"registry.npmjs.org:-1",
        b"registry.npmjs.org:+443",
        b"registry.npmjs.org:443abc",
        b"registry.npmjs.org:abc",
        b"registry.npmjs.org:443:443",
        b"[::1]",
    ];
    let cases: Vec<Vec<u8>> = ports.iter().map(|p| connect_line(p)).collect();
    let refs: Vec<&[u8]> = cases.iter().map(Vec::as_slice).collect();
    expect_status_lines(&run, &env.proxy(), &refs, BAD_400);
    g.finish(run, 0);
}

#[test]
fn invalid_hosts_get_400() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let hosts: &[&[u8]] = &[
        // percent signs (zone ids, escapes)
        b"registry%2enpmjs.org:443",
        b"[fe80::1%25eth0]:443",
        b"[::ffff:1.2.3.4%x.registry.npmjs.org]:443",
        // userinfo
        b"user@registry.npmjs.org:443",
        b"user:pw@registry.npmjs.org:443",
        b"evil.example:443@registry.npmjs.org:443",
        // empty labels
        b"registry..npmjs.org:443",
        b".registry.npmjs.org:443",
        b"registry.npmjs.org..:443",
        b":443",
        // NUL, non-ASCII, other bytes that are not in a DNS name
        b"registry.npmjs.org\x00.evil.com:443",
        "régistry.npmjs.org:443".as_bytes(),
        b"registry.npmjs.org\xff:443",
        b"*.npmjs.org:443",
        b"registry.npmjs.org/x:443",
        // broken IPv6 literals
        b"[::1:443",
        b"::1:443",
        b"[registry.npmjs.org]:443",
    ];
    let cases: Vec<Vec<u8>> = hosts.iter().map(|h| connect_line(h)).collect();
    let refs: Vec<&[u8]> = cases.iter().map(Vec::as_slice).collect();
    expect_status_lines(&run, &env.proxy(), &refs, BAD_400);
    g.finish(run, 0);
}

#[test]
fn other_methods_get_405_with_allow_connect_and_nothing_is_forwarded() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr), ("registry.npmjs.org:80", up.addr)]);
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let cases: &[&[u8]] = &[
        b"GET http://registry.npmjs.org/ HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
        b"GET http://registry.npmjs.org:443/ HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n\r\n",
        b"POST http://registry.npmjs.org/-/v1/login HTTP/1.1\r\nHost: registry.npmjs.org\r\nContent-Length: 2\r\n\r\n{}",
        b"HEAD https://registry.npmjs.org/ HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
        b"PUT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
    ];
    let proxy = env.proxy();
    for raw in cases {
        let a = proxy.ask_authed(raw);
        let req = String::from_utf8_lossy(raw);
        check_eq!(run, a.status_line, METHOD_405, "{req}\n{}", a.report());
        check_eq!(run, a.header("allow"), Some("CONNECT"), "{req}\n{}", a.report());
    }
    g.finish(run, 0);
    assert_eq!(up.accepted(), 0, "plaintext must never be forwarded");
}

#[test]
fn an_allowed_name_that_cannot_be_reached_gets_502_with_the_reason() {
    let g = Sandbox::new();
    let dead = format!("127.0.0.1:{}", closed_port());
    let resolve = format!("{NPM_REGISTRY}={dead}");
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let a = env.proxy().connect(NPM_REGISTRY);
    check_eq!(run, a.status_line, GATEWAY_502, "{}", a.report());
    check!(
        run,
        !a.body_text().trim().is_empty(),
        "502 body must give the reason\n{}",
        a.report()
    );
    g.finish(run, 0);
}

#[test]
fn observe_mode_forwards_any_host_and_logs_it_as_allowed() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[("anything.example:443", up.addr), ("kube.internal:6443", up.addr)]);
    let (run, env) = g.session("aws", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let direct = format!("127.0.0.1:{}", up.addr.port());
    for target in ["anything.example:443", "kube.internal:6443", direct.as_str()] {
        let (a, mut s) = env.proxy().tunnel(target, b"early|");
        check_eq!(
            run,
            a.status_line,
            OK_200,
            "observe mode forwards {target}\n{}",
            a.report()
        );
        let mut b = [0u8; 6];
        let early_back = s.read_exact(&mut b).is_ok() && &b == b"early|";
        check!(run, early_back, "{target}: early bytes relayed");
        check!(run, echo_roundtrip(&mut s, b"more").is_ok(), "{target}: relay");
    }
    g.finish(run, 0);
    assert_eq!(up.accepted(), 3);
    let log = g.log();
    let rows = log.rows().of(env.audit_id()).kind("egress");
    assert_eq!(rows.len(), 3, "{}", log);
    for r in rows {
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(r["mode"], "observe", "{r}");
        assert_eq!(r["tool"], "aws", "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }
}

#[test]
fn kubectl_is_observed_on_any_port() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[("cluster.example:6443", up.addr)]);
    let (run, env) = g.session("kubectl", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let (a, mut s) = env.proxy().tunnel("cluster.example:6443", b"");
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    check!(run, echo_roundtrip(&mut s, b"kube").is_ok(), "relay");
    drop(s);
    g.finish(run, 0);
    let log = g.log();
    let rows = log.rows().of(env.audit_id()).kind("egress");
    assert_eq!(rows.len(), 1, "{}", log);
    assert_eq!(rows[0]["mode"], "observe");
    assert_eq!(rows[0]["decision"], "allow");
}

#[test]
fn observe_mode_still_refuses_plaintext_and_malformed_requests() {
    let g = Sandbox::new();
    let (run, env) = g.session("aws", &[]);
    let proxy = env.proxy();
    expect_status_lines(
        &run,
        &proxy,
        &[b"GET http://s3.amazonaws.com/ HTTP/1.1\r\nHost: s3.amazonaws.com\r\n\r\n"],
        METHOD_405,
    );
    let bad: Vec<Vec<u8>> = [
        &b"s3..amazonaws.com:443"[..],
        b"s3.amazonaws.com:0",
        b"a%b.com:443",
    ]
    .iter()
    .map(|h| connect_line(h))
    .collect();
    let refs: Vec<&[u8]> = bad.iter().map(Vec::as_slice).collect();
    expect_status_lines(&run, &proxy, &refs, BAD_400);
    g.finish(run, 0);
}

#[test]
fn every_enforced_tool_denies_an_unlisted_host() {
    for tool in ENFORCED {
        let g = Sandbox::new();
        let (run, env) = g.session(tool, &[]);
        let a = env.proxy().connect("evil.example:443");
        check_eq!(run, a.status_line, FORBIDDEN_403, "{tool}\n{}", a.report());
        check!(
            run,
            a.body_text().contains(tool),
            "the 403 names {tool}\n{}",
            a.report()
        );
        g.finish(run, 0);
    }
}

#[test]
fn every_observed_tool_forwards_an_unlisted_host() {
    let up = Upstream::echo();
    for tool in OBSERVED {
        let g = Sandbox::new();
        let resolve = Sandbox::resolve(&[("unlisted.example:8443", up.addr)]);
        let (run, env) = g.session(tool, &[("CLI_GUARD_RESOLVE", &resolve)]);
        let (a, mut s) = env.proxy().tunnel("unlisted.example:8443", b"");
        check_eq!(run, a.status_line, OK_200, "{tool}\n{}", a.report());
        check!(
            run,
            echo_roundtrip(&mut s, tool.as_bytes()).is_ok(),
            "{tool}: relay"
        );
        drop(s);
        g.finish(run, 0);
    }
}

#[test]
fn each_enforced_tool_allows_its_core_registry_hosts() {
    // The hosts a default install needs, per ../shared/docs/registries.md
    // ("core hosts"), all on port 443. Each is pointed at our loopback server.
    let core: &[(&str, &[&str])] = &[
        ("npm", &["registry.npmjs.org"]),
        ("npx", &["registry.npmjs.org"]),
        ("pnpm", &["registry.npmjs.org"]),
        ("yarn", &["registry.yarnpkg.com"]),
        ("pip", &["pypi.org", "files.pythonhosted.org"]),
        ("pip3", &["pypi.org", "files.pythonhosted.org"]),
        ("uv", &["pypi.org", "files.pythonhosted.org"]),
        ("cargo", &["index.crates.io", "static.crates.io"]),
        (
            "brew",
            &[
                "formulae.brew.sh",
                "ghcr.io",
                "pkg-containers.githubusercontent.com",
            ],
        ),
        ("gem", &["rubygems.org", "index.rubygems.org"]),
        ("bundle", &["rubygems.org", "index.rubygems.org"]),
        (
            "go",
            &["proxy.golang.org", "sum.golang.org", "storage.googleapis.com"],
        ),
        (
            "composer",
            &[
                "repo.packagist.org",
                "packagist.org",
                "api.github.com",
                "codeload.github.com",
            ],
        ),
    ];
    let up = Upstream::echo();
    for (tool, hosts) in core {
        let g = Sandbox::new();
        let targets: Vec<String> = hosts.iter().map(|h| format!("{h}:443")).collect();
        let map: Vec<_> = targets.iter().map(|t| (t.as_str(), up.addr)).collect();
        let (run, env) = g.session(tool, &[("CLI_GUARD_RESOLVE", &Sandbox::resolve(&map))]);
        for t in &targets {
            let (a, mut s) = env.proxy().tunnel(t, b"");
            check_eq!(
                run,
                a.status_line,
                OK_200,
                "{tool} must reach {t}\n{}",
                a.report()
            );
            check!(run, echo_roundtrip(&mut s, b"x").is_ok(), "{tool} {t}: relay");
        }
        g.finish(run, 0);
    }
}

#[test]
fn open_tunnels_are_closed_and_logged_after_the_child_exits() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status_line, OK_200, "{}", a.report());
    check!(run, echo_roundtrip(&mut s, b"still open").is_ok(), "relay");
    // The child exits while the tunnel is open: the shim must still finish
    // (after a short grace), closing the tunnel and completing its records.
    let out = g.finish(run, 0);
    check!(
        out,
        at_eof(&mut s),
        "the left-open tunnel is closed once the shim is done"
    );
    let log = g.log();
    let id = env.audit_id();
    let kinds: Vec<&str> = log
        .rows()
        .of(id)
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    check_eq!(
        out,
        kinds,
        vec!["start", "egress", "egress_close", "end"],
        "the tunnel's close is recorded before the end"
    );
    let close = log.rows().of(id).kind("egress_close");
    check_eq!(out, close[0]["bytes_up"], 10, "bytes_up");
    check_eq!(out, close[0]["bytes_down"], 10, "bytes_down");
}
