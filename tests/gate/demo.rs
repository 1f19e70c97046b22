//! egress-demo: stdout lines `<mode> <host:port> -> <status line>`, egress
//! rows as JSON lines on stderr, exit 0 when the gate behaved as the command
//! says. Loopback only: the demo's allowed names are pointed at our servers
//! (or at a closed port) through CLI_GUARD_RESOLVE.

use std::os::unix::fs::symlink;

use nix::sys::socket::{setsockopt, sockopt};
use serde_json::Value;

use crate::util::*;

fn demo(g: &Sandbox, args: &[&str], resolve: &str) -> Outcome {
    let link = g.shims.join("egress-demo");
    if !link.exists() {
        symlink(BIN, &link).unwrap();
    }
    let mut cmd = g.command(&link);
    cmd.args(args).env("CLI_GUARD_RESOLVE", resolve);
    g.run(cmd)
}

/// (mode, host:port, status line) per stdout line.
fn dials(out: &Outcome) -> Vec<(String, String, String)> {
    out.stdout()
        .lines()
        .map(|l| {
            let (left, status) = l
                .split_once(" -> ")
                .unwrap_or_else(|| panic!("not `<mode> <host:port> -> <status>`: {l:?}\n{}", out.report()));
            let mut words = left.split_whitespace();
            let mode = words.next().unwrap_or_default().to_owned();
            let target = words.next().unwrap_or_default().to_owned();
            (mode, target, status.to_owned())
        })
        .collect()
}

fn status_of(line: &str) -> u16 {
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The rows the demo printed on stderr.
fn printed(out: &Outcome) -> Log {
    out.stderr_log("egress-demo stderr")
}

/// The first egress row the demo printed for `target` (host:port).
fn row_for<'a>(out: &Outcome, printed: &'a Log, target: &str) -> &'a Row {
    let (host, port) = target.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    printed
        .rows()
        .kind("egress")
        .host(host)
        .port(port)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no egress row for {target}\n{}", out.report()))
}

#[test]
fn demo_help_has_the_seeds_shape() {
    let g = Sandbox::new();
    let out = demo(&g, &["--help"], "");
    out.expect_code(0);
    let text = out.stdout();
    for word in [
        "NAME",
        "USAGE",
        "COMMANDS",
        "GLOBAL OPTIONS",
        "allowed",
        "denied",
        "observe",
    ] {
        check!(out, text.contains(word), "--help must show {word}");
    }
    let order: Vec<_> = ["NAME", "USAGE", "COMMANDS", "GLOBAL OPTIONS"]
        .iter()
        .map(|w| text.find(w))
        .collect();
    check!(
        out,
        order.windows(2).all(|w| w[0] < w[1]),
        "sections in the seed's order"
    );
}

#[test]
fn demo_allowed_shows_decision_allow_even_offline() {
    let g = Sandbox::new();
    // Every name on the demo's allowlist that `allowed` might dial goes to a
    // closed loopback port: offline, the answer is 502 with decision allow.
    let dead = format!("127.0.0.1:{}", closed_port());
    let resolve = ["registry.npmjs.org:443", "pypi.org:443"]
        .map(|n| format!("{n}={dead}"))
        .join(",");
    let out = demo(&g, &["allowed"], &resolve);
    out.expect_code(0);
    let d = dials(&out);
    check_eq!(out, d.len(), 1, "one dial");
    let (mode, target, status) = &d[0];
    check_eq!(out, mode.as_str(), "allowed", "mode word");
    check!(
        out,
        [200, 502, 504].contains(&status_of(status)),
        "allowed: 200, or 502/504 offline: {status}"
    );
    let log = printed(&out);
    let row = row_for(&out, &log, target);
    check_eq!(out, row["decision"], "allow", "decision");
    check_eq!(
        out,
        row["status"],
        status_of(status),
        "the row's status is what the client saw"
    );
    check!(
        out,
        row["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "the error is in the row"
    );
}

#[test]
fn demo_allowed_relays_to_a_reachable_upstream() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let out = demo(
        &g,
        &["allowed"],
        &Sandbox::resolve(&[(NPM_REGISTRY, up.addr), ("pypi.org:443", up.addr)]),
    );
    out.expect_code(0);
    let d = dials(&out);
    check_eq!(out, d.len(), 1, "one dial");
    check_eq!(
        out,
        d[0].2.as_str(),
        "HTTP/1.1 200 Connection established",
        "status line"
    );
    check_eq!(
        out,
        row_for(&out, &printed(&out), &d[0].1)["decision"],
        "allow",
        "decision"
    );
    assert_eq!(up.accepted(), 1);
}

#[test]
fn demo_close_rows_carry_no_error_for_the_close_the_client_asked_for() {
    // Once the demo's client has closed, an upstream ends the tunnel with a
    // FIN (the echo server) or with a reset, as a TLS server that got no
    // handshake does (the real registry, answering the demo's bare close).
    let fin = Upstream::echo();
    let reset = Upstream::start(|mut s| {
        let mut buf = [0u8; 1024];
        while matches!(read_retrying(&mut s, &mut buf), Ok(n) if n > 0) {}
        let abort = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let set = setsockopt(&s, sockopt::Linger, &abort);
        assert!(set.is_ok(), "SO_LINGER: {set:?}");
        drop(s);
    });
    let g = Sandbox::new();
    for (what, up) in [("a FIN", &fin), ("a reset", &reset)] {
        let out = demo(&g, &["allowed"], &Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
        out.expect_code(0);
        check_eq!(
            out,
            status_of(&dials(&out)[0].2),
            200,
            "{what}: the tunnel opened"
        );
        let log = printed(&out);
        let closes = log.rows().kind("egress_close");
        check_eq!(out, closes.len(), 1, "{what}: one tunnel, one close row");
        check_eq!(
            out,
            closes[0]["error"],
            Value::Null,
            "{what}: the client closed, so the close is no error: {}",
            closes[0]
        );
    }
    assert_eq!(reset.accepted(), 1, "the resetting upstream was dialled");
}

#[test]
fn demo_denied_shows_403_and_exits_0() {
    let g = Sandbox::new();
    let out = demo(&g, &["denied"], "");
    out.expect_code(0);
    let d = dials(&out);
    check_eq!(out, d.len(), 1, "one dial");
    let (mode, target, status) = &d[0];
    check_eq!(out, mode.as_str(), "denied", "mode word");
    check_eq!(out, status.as_str(), "HTTP/1.1 403 Forbidden", "status line");
    let log = printed(&out);
    let row = row_for(&out, &log, target);
    check_eq!(
        out,
        (row["decision"].clone(), row["status"].clone()),
        ("deny".into(), 403.into()),
        "row"
    );
}

#[test]
fn demo_observe_dials_and_logs_every_host() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[("one.example:443", up.addr), ("two.example:8443", up.addr)]);
    let targets = ["one.example:443", "two.example:8443", "nowhere.invalid:443"];
    let mut args = vec!["observe"];
    args.extend(targets);
    let out = demo(&g, &args, &resolve);
    out.expect_code(0);
    let d = dials(&out);
    let seen: Vec<&str> = d.iter().map(|x| x.1.as_str()).collect();
    check_eq!(out, seen, targets.to_vec(), "one line per HOST:PORT, in order");
    check!(out, d.iter().all(|x| x.0 == "observe"), "mode word");
    check_eq!(out, status_of(&d[0].2), 200, "resolved to our server");
    check_eq!(out, status_of(&d[1].2), 200, "resolved to our server");
    check!(
        out,
        [502, 504].contains(&status_of(&d[2].2)),
        "unresolvable: 502/504: {}",
        d[2].2
    );
    let log = printed(&out);
    for (_, target, status) in &d {
        let row = row_for(&out, &log, target);
        check_eq!(out, row["decision"], "allow", "{target}: observe mode allows");
        check_eq!(out, row["mode"], "observe", "{target}");
        check_eq!(out, row["status"], status_of(status), "{target}: status");
    }
    assert_eq!(up.accepted(), 2);
}

#[test]
fn cli_guard_egress_demo_is_egress_demo() {
    let g = Sandbox::new();
    let named = demo(&g, &["--help"], "");
    let sub = g.run(g.cli_guard(["egress-demo", "--help"]));
    sub.expect_code(0);
    check_eq!(sub, sub.stdout(), named.stdout(), "same help");

    let mut cmd = g.cli_guard(["egress-demo", "denied"]);
    cmd.env("CLI_GUARD_RESOLVE", "");
    let sub = g.run(cmd);
    let named = demo(&g, &["denied"], "");
    sub.expect_code(0);
    check_eq!(sub, sub.stdout(), named.stdout(), "same dials and answers");
}

#[test]
fn demo_with_an_unknown_command_fails() {
    let g = Sandbox::new();
    let out = demo(&g, &["frobnicate"], "");
    check!(out, out.code() != Some(0), "an unknown command must fail");
    check!(out, out.stderr().contains("frobnicate"), "and name it");
}

#[test]
fn demo_exits_1_when_the_gate_did_not_behave_as_the_command_says() {
    let g = Sandbox::new();
    // `allowed` pointed at a host off the demo allowlist: 403, not allow.
    let out = demo(&g, &["allowed", "evil.example:443"], "");
    out.expect_code(1);
    check_eq!(out, status_of(&dials(&out)[0].2), 403, "the gate denied it");
    // `denied` pointed at an allowlisted host: allowed (502 offline), not 403.
    let dead = format!("{NPM_REGISTRY}=127.0.0.1:{}", closed_port());
    let out = demo(&g, &["denied", NPM_REGISTRY], &dead);
    out.expect_code(1);
    check_eq!(out, status_of(&dials(&out)[0].2), 502, "the gate allowed it");
}

#[test]
fn demo_strict_refuses_a_direct_connection_with_a_row() {
    let g = Sandbox::new();
    let out = demo(&g, &["strict"], "");
    out.expect_code(0);
    let d = dials(&out);
    let direct = d.iter().find(|(mode, _, _)| mode == "direct");
    let strict = d.iter().find(|(mode, _, _)| mode == "strict");
    let (Some(direct), Some(strict)) = (direct, strict) else {
        panic!("a direct line and a strict line\n{}", out.report());
    };
    check_eq!(out, direct.1.as_str(), "203.0.113.7:443", "the default target");
    check_eq!(
        out,
        direct.2.as_str(),
        "connected to 203.0.113.7:443, then closed with nothing received",
        "the child's connect landed in the namespace and was closed"
    );
    check!(
        out,
        strict.2.starts_with("deny 403 (transparent): "),
        "the verdict: {}",
        strict.2
    );
    let log = printed(&out);
    let row = row_for(&out, &log, "203.0.113.7:443");
    check_eq!(out, row["method"], "transparent", "method");
    check_eq!(out, row["decision"], "deny", "decision");
    check_eq!(out, row["status"], 403, "status");
    check_eq!(out, row["tool"], "egress-demo", "tool");
    let starts = log.rows().kind("start");
    check_eq!(out, starts.len(), 1, "one guarded invocation");
    check_eq!(out, starts[0]["isolation"], "netns", "it ran in the namespace");
    check!(
        out,
        !g.audit.exists(),
        "the demo's rows go to a log of its own, not CLI_GUARD_AUDIT_LOG"
    );
}

#[test]
fn demo_strict_judges_names_by_the_demo_policy() {
    // A name not on the demo allowlist is refused at the lookup; a bare
    // address on a watched port is refused at the connect.
    let g = Sandbox::new();
    let out = demo(&g, &["strict", "exfil.example.net:443", "203.0.113.7:22"], "");
    out.expect_code(0);
    let d = dials(&out);
    let verdict = |target: &str| {
        d.iter()
            .find(|(mode, t, _)| mode == "strict" && t == target)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("no verdict for {target}\n{}", out.report()))
    };
    check!(
        out,
        verdict("exfil.example.net:443").starts_with("deny 403 (dns): "),
        "the lookup is refused"
    );
    check!(
        out,
        verdict("203.0.113.7:22").starts_with("deny 403 (transparent): "),
        "port 22 is watched"
    );
    let log = printed(&out);
    check!(
        out,
        !log.rows()
            .kind("egress")
            .host("exfil.example.net")
            .filter("dns denials", |r| r["method"] == "dns" && r["decision"] == "deny")
            .is_empty(),
        "a dns deny row for the name"
    );
}

#[test]
fn demo_strict_works_for_an_unprivileged_user() {
    let g = Sandbox::new();
    let link = g.shims.join("egress-demo");
    symlink(BIN, &link).unwrap();
    let out = g.run(g.as_nobody(link.to_str().unwrap(), &["strict"]));
    out.expect_code(0);
    let log = printed(&out);
    check_eq!(
        out,
        row_for(&out, &log, "203.0.113.7:443")["decision"],
        "deny",
        "decision"
    );
}

#[test]
fn demo_strict_where_the_kernel_refuses_points_at_the_doctor() {
    let g = Sandbox::new();
    let mut cmd = g.with_no_namespaces_left(&["egress-demo", "strict"]);
    // BIN is cli-guard: its `egress-demo` subcommand is the demo.
    cmd.env("CLI_GUARD_STRICT", "auto");
    let out = g.run(cmd);
    out.expect_code(1);
    check!(
        out,
        out.stderr().contains("strict mode is not available here")
            && out.stderr().contains("`cli-guard doctor`"),
        "it says so and where to look"
    );
    check_eq!(out, out.stdout(), "", "nothing ran, so nothing is shown");
}
