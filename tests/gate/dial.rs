//! Dials that survive a dead address, and the test seam that cannot widen
//! anything. A name with two addresses (two `CLI_GUARD_RESOLVE` targets, or
//! two /etc/hosts lines in a private mount namespace for an upstream proxy's
//! name) whose first never answers ([`BlackHole`]): the gate must reach the
//! second well inside its 10 s budget, as Happy Eyeballs does, and say which
//! address it used. Loopback only. No durations are asserted: a dial stuck
//! on the first address is 504, and that answer only comes after 10 s.

use std::net::SocketAddr;
use std::time::Duration;

use crate::util::*;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for an answer: well past the dial budget, so a
/// gate stuck on a dead address answers 504 instead of the test timing out.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn a_black_holed_first_address_gives_way_to_the_next_and_the_row_names_it() {
    let hole = BlackHole::new();
    let live = Upstream::echo();
    let g = Sandbox::new();
    let resolve = format!("{NPM_REGISTRY}={}|{}", hole.addr, live.addr);
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let (status, answer, _) = ask_slowly(&env.proxy(), NPM_REGISTRY, PATIENCE);
    check_eq!(run, status, 200, "the second address answers: {answer}");
    check_eq!(run, live.accepted(), 1, "the second address was dialled");
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        row.reason().ends_with(&format!("; direct to {}", live.addr)),
        "the reason names the address used: {row}"
    );
}

#[test]
fn two_refusing_addresses_are_502_naming_both() {
    let dead = [closed_port(), closed_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let g = Sandbox::new();
    let resolve = format!("{NPM_REGISTRY}={}|{}", dead[0], dead[1]);
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let (status, answer, _) = ask_slowly(&env.proxy(), NPM_REGISTRY, PATIENCE);
    check_eq!(run, status, 502, "{answer}");
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "registry.npmjs.org", 443);
    check_eq!(out, row["status"], 502, "{row}");
    for addr in dead {
        check!(
            out,
            row.reason().contains(&addr.to_string()),
            "names {addr}: {row}"
        );
    }
}

#[test]
fn two_black_holed_addresses_are_504_after_the_dial_timeout() {
    let holes = [BlackHole::new(), BlackHole::new()];
    let g = Sandbox::new();
    // Observe mode allows any name; the seam still decides where it lands.
    let target = "two-holes.example:443";
    let resolve = format!("{target}={}|{}", holes[0].addr, holes[1].addr);
    let (run, env) = g.long_session(OBSERVER, &[("CLI_GUARD_RESOLVE", &resolve)]);
    let (status, answer, _) = ask_slowly(&env.proxy(), target, DIAL_TIMEOUT + PATIENCE);
    check_eq!(run, status, 504, "{answer}");
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "two-holes.example", 443);
    check_eq!(
        out,
        (row["tool"].as_str(), row["status"].as_u64()),
        (Some(OBSERVER), Some(504)),
        "{row}"
    );
}

/// The order this machine's getaddrinfo gives `name` under the /etc/hosts
/// lines `hosts`, seen from a mount namespace like the shim's.
fn resolved_order(g: &Sandbox, hosts: &str, name: &str) -> Vec<String> {
    let mut cmd = g.with_hosts("hosts-probe", hosts);
    cmd.args(["getent", "ahosts", name]);
    let out = g.run(cmd);
    out.expect_code(0);
    let mut order: Vec<String> = Vec::new();
    for ip in out.stdout().lines().filter_map(|l| l.split_whitespace().next()) {
        if !order.iter().any(|o| o == ip) {
            order.push(ip.to_owned());
        }
    }
    order
}

#[test]
fn an_upstream_proxy_whose_first_address_is_black_holed_is_reached_at_the_next() {
    // proxy.test is ::1 and 127.0.0.1, on one port: the IPv6 address never
    // answers (the broken-IPv6 case), the IPv4 one is the proxy.
    let (up, hole) = (0..20)
        .find_map(|_| {
            let up = FakeProxy::start(|_| Reply::Tunnel);
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, up.server.addr.port()));
            BlackHole::bind(v6).map(|hole| (up, hole))
        })
        .expect("a port free on both 127.0.0.1 and ::1");
    let port = up.server.addr.port();
    let g = Sandbox::new();
    let hosts = "::1 proxy.test\n127.0.0.1 proxy.test";
    assert_eq!(
        resolved_order(&g, hosts, "proxy.test"),
        ["::1", "127.0.0.1"],
        "this test needs getaddrinfo to put ::1 first, as it does for loopback"
    );
    let url = format!("http://proxy.test:{port}");
    let (run, env) = g.session_with_hosts("npm", hosts, &[("HTTPS_PROXY", &url)]);
    let (status, answer, _) = ask_slowly(&env.proxy(), NPM_REGISTRY, PATIENCE);
    check_eq!(run, status, 200, "the proxy's second address answers: {answer}");
    check_eq!(
        run,
        up.request_lines(),
        vec![format!("CONNECT {NPM_REGISTRY} HTTP/1.1")],
        "the upstream was asked"
    );
    let out = g.finish(run, 0);
    let log = g.log();
    let row = log.egress_to(env.audit_id(), "registry.npmjs.org", 443);
    check!(
        out,
        row.reason().ends_with(&format!(
            "; through the upstream proxy {url} at {}",
            up.server.addr
        )),
        "the reason names the proxy and the address used: {row}"
    );
    drop(hole);
}

// ---------------------------------------------------------------------------
// CLI_GUARD_RESOLVE may only point at loopback

#[test]
fn a_resolve_target_off_loopback_exits_125_without_running_the_tool() {
    for bad in [
        "registry.npmjs.org:443=169.254.169.254:80",
        "registry.npmjs.org:443=127.0.0.1:1|10.0.0.1:443",
        "registry.npmjs.org:443=[::ffff:169.254.169.254]:80",
        "registry.npmjs.org:443=0.0.0.0:443",
    ] {
        let g = Sandbox::new();
        g.tool("npm", "echo the tool ran\nrec \"$@\"\nexit 0\n");
        let mut cmd = g.shim_cmd("npm", ["install"]);
        cmd.env("CLI_GUARD_RESOLVE", bad);
        let out = g.run(cmd);
        out.expect_code(125);
        check!(out, !g.state_path("argv").exists(), "the tool ran with {bad:?}");
        check!(
            out,
            !out.stdout().contains("the tool ran"),
            "the tool ran with {bad:?}"
        );
        let said = out.guard_lines().join("\n");
        check!(
            out,
            said.contains(bad)
                && said.contains("CLI_GUARD_RESOLVE is a test seam that may only point at loopback"),
            "names the entry and says why: {said}"
        );
        let log = g.log();
        let end = log.rows().kind("end");
        check!(
            out,
            end.len() == 1 && end[0]["exit_code"] == 125 && end[0]["error"].is_string(),
            "one end row with 125 and the error: {end:?}"
        );
    }
}

#[test]
fn egress_demo_refuses_a_resolve_target_off_loopback() {
    let g = Sandbox::new();
    let mut cmd = g.cli_guard(["egress-demo", "allowed"]);
    cmd.env("CLI_GUARD_RESOLVE", format!("{NPM_REGISTRY}=169.254.169.254:80"));
    let out = g.run(cmd);
    out.expect_code(125);
    check!(
        out,
        out.stdout().is_empty(),
        "nothing was dialled: {}",
        out.stdout()
    );
    check!(
        out,
        out.stderr()
            .contains("CLI_GUARD_RESOLVE is a test seam that may only point at loopback"),
        "says why: {}",
        out.stderr()
    );
}
