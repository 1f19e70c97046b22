//! Where an allowed name's dial may land. The shim runs in a private mount
//! namespace (`unshare --mount`) whose /etc/hosts points a pinned registry
//! name at a forbidden address, as a rebinding or poisoned DNS would; the
//! network namespace is the machine's, so the test still talks to its proxy
//! on 127.0.0.1 and nothing leaves loopback.

use std::net::TcpListener;

use crate::util::{Sandbox, Upstream};

/// A listener on 127.0.0.1:443 if the port is free, to prove that a refused
/// dial was never made (without the check it would have connected).
fn loopback_443() -> Option<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:443").ok()?;
    listener.set_nonblocking(true).ok()?;
    Some(listener)
}

fn accepted_any(listener: &Option<TcpListener>) -> bool {
    listener.as_ref().is_some_and(|l| l.accept().is_ok())
}

#[test]
fn an_allowed_name_that_resolves_to_a_forbidden_address_is_refused_before_the_dial() {
    let witness = loopback_443();
    let cases = [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:169.254.169.254", "IPv4-mapped"),
        ("64:ff9b::a9fe:a9fe", "NAT64"),
        ("2002:7f00:1::1", "6to4"),
        ("fd00:ec2::254", "unique local"),
    ];
    for (ip, why) in cases {
        let g = Sandbox::new();
        let (run, env) = g.session_with_hosts("npm", &format!("{ip} registry.npmjs.org"), &[]);
        let answer = env.proxy().connect("registry.npmjs.org:443");
        check_eq!(run, answer.status, 403, "{ip}: {}", answer.report());
        let body = answer.body_text();
        check!(
            run,
            body.contains(ip) && body.contains(why),
            "{ip}: the body must name the address and why:\n{body}"
        );
        g.finish(run, 0);
        let log = g.log();
        let rows = log.rows().of(env.audit_id()).kind("egress");
        assert_eq!(rows.len(), 1, "{ip}: {rows:?}");
        assert_eq!(rows[0]["decision"], "deny", "{ip}: {}", rows[0]);
        assert_eq!(rows[0]["status"], 403, "{ip}: {}", rows[0]);
        assert!(
            rows[0]["reason"].as_str().unwrap().contains(ip),
            "{ip}: {}",
            rows[0]
        );
        assert!(
            log.rows().of(env.audit_id()).kind("egress_close").is_empty(),
            "{ip}: no tunnel may open"
        );
    }
    assert!(!accepted_any(&witness), "a refused dial reached 127.0.0.1:443");
}

#[test]
fn observe_mode_dials_private_addresses_but_never_the_gate_itself() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.session_with_hosts("kubectl", "127.0.0.1 cluster.internal.example", &[]);
    let proxy = env.proxy();
    let a = proxy.connect(&format!("cluster.internal.example:{}", up.addr.port()));
    check_eq!(
        run,
        a.status,
        200,
        "observe mode is not address-checked: {}",
        a.report()
    );
    let own = proxy.addr.port();
    for target in [
        format!("127.0.0.1:{own}"),
        format!("[::ffff:127.0.0.1]:{own}"),
        format!("0.0.0.0:{own}"),
        format!("cluster.internal.example:{own}"),
    ] {
        let a = proxy.connect(&target);
        check_eq!(
            run,
            a.status,
            403,
            "{target}: the gate must not dial itself: {}",
            a.report()
        );
        check!(
            run,
            a.body_text().contains("own listener"),
            "{target}: {}",
            a.body_text()
        );
    }
    g.finish(run, 0);
}

#[test]
fn a_resolve_override_is_the_operators_and_is_not_range_checked() {
    // The same loopback answer is refused from DNS and honoured from
    // CLI_GUARD_RESOLVE: the override is the operator's own choice.
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[("registry.npmjs.org:443", up.addr)]);
    let env_pairs = [("CLI_GUARD_RESOLVE", resolve.as_str())];
    let (run, env) = g.session_with_hosts("npm", "127.0.0.1 registry.npmjs.org", &env_pairs);
    let a = env.proxy().connect("registry.npmjs.org:443");
    check_eq!(run, a.status, 200, "{}", a.report());
    check_eq!(run, up.accepted(), 1, "the override's address was dialled");
    g.finish(run, 0);
}
