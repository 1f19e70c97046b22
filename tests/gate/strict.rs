//! Strict mode from outside: the shim runs an enforce-mode tool in a network
//! namespace of its own, and these tests play the tool. Fake tools (sh
//! scripts) run through the shim try every way past the proxy, a client
//! that ignores it (Node's own `https.get` and `fetch`, `curl --noproxy`,
//! curl without the proxy variables, the tests' own), a raw socket, QUIC,
//! a forward proxy left on the host's loopback, an inherited socket, and
//! talk DNS to the namespace's resolver; the audit log and the
//! tool's own view say what happened. Then the allowed path (a direct
//! connection to an allowed name, relayed byte for byte to a loopback
//! server by `CLI_GUARD_RESOLVE`), bare addresses and ports, the
//! subcommand split (`npm start` is observed, not isolated), the fallback
//! where the kernel refuses the namespace (made to, inside a user
//! namespace of the test's own whose namespace limit is 0), nesting,
//! signals, and all of it as an unprivileged user.
//!
//! Inside the tool's namespace every address is local, so a fake tool may
//! dial any address (203.0.113.7, a name the namespace's DNS answered): it
//! lands on the gate's sockets there or is refused, and never reaches a
//! network. The gate itself dials only `CLI_GUARD_RESOLVE`'s loopback
//! servers. The fake tools' network work is done by the tests' network
//! client (`util::net`), which prints one JSON line per step; the escapes
//! by a real client (node, curl) are `#[ignore]`d, run by `.ci/run`.

use std::fs;
use std::process::Command;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

/// A sandbox, and the path of the network client its fake tools run.
fn sandbox() -> (Sandbox, String) {
    let g = Sandbox::new();
    let net = g.net();
    (g, net)
}

/// `TOOL ARGS...` through its shim with `CLI_GUARD_STRICT=setting`.
fn strict_cmd(g: &Sandbox, tool: &str, args: &[&str], setting: &str) -> Command {
    let mut cmd = g.shim_cmd(tool, args);
    Sandbox::strict(&mut cmd, setting);
    cmd
}

/// The one start row of `tool`.
fn start_of<'a>(out: &Outcome, log: &'a Log, tool: &str) -> &'a Row {
    let starts = log.rows().kind("start").tool(tool);
    check_eq!(out, starts.len(), 1, "one start row for {tool}");
    starts[0]
}

/// The egress rows of invocation `id` for `host`.
fn rows_for<'a>(log: &'a Log, id: &str, host: &str) -> Rows<'a> {
    log.rows().of(id).kind("egress").host(host)
}

fn expect_isolated(out: &Outcome, start: &Row) {
    check_eq!(
        out,
        start["isolation"],
        "netns",
        "the start row says the tool ran isolated"
    );
    check!(
        out,
        start["isolation_reason"].is_null(),
        "no reason when isolated: {start}"
    );
}

/// The invocation ran isolated, every row for `host` is a deny by `method`
/// (DNS: the query refused, 403; transparent: naming `port`), and the
/// stderr summary names the host and the audit ID.
fn expect_refused(g: &Sandbox, out: &Outcome, host: &str, method: &str, port: Option<u16>) {
    let log = g.log();
    let start = start_of(out, &log, "npm");
    expect_isolated(out, start);
    let id = start.audit_id().to_string();
    let rows = rows_for(&log, &id, host);
    check!(out, !rows.is_empty(), "no row for {host} under npm's audit ID");
    for row in &rows {
        check_eq!(out, row["decision"], "deny", "{row}");
        check_eq!(out, row["method"], method, "{row}");
        check_eq!(out, row["status"], 403, "{row}");
        match port {
            Some(port) => check_eq!(out, row["port"], port, "{row}"),
            None => check!(
                out,
                row["port"].is_null() && row["qtype"].is_string(),
                "a DNS row: {row}"
            ),
        }
    }
    let named = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    check!(
        out,
        out.guard_lines()
            .iter()
            .any(|l| l.contains(&format!("reach {named} directly")) && l.contains(&id)),
        "the stderr summary names {named} and the audit ID"
    );
}

/// Runs `npm install` whose fake tool runs `body` (with `$NET` set).
fn npm_install(g: &Sandbox, net: &str, body: &str, env: &[(&str, &str)]) -> Outcome {
    g.tool("npm", &format!("NET=\"{net}\"\n{body}\nexit 0\n"));
    let mut cmd = strict_cmd(g, "npm", &["install"], "auto");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = g.run(cmd);
    out.expect_code(0);
    out
}

// ---------------------------------------------------------------------------
// Escapes

/// Node runs `js` (which prints `error CODE` or `status N`) without
/// NODE_USE_ENV_PROXY, which a newer Node obeys: the escape. It must fail,
/// with DNS rows refusing `host`.
fn node_escape(js: &str, host: &str) {
    require("node");
    let (g, net) = sandbox();
    let body = format!("env -u NODE_USE_ENV_PROXY node -e '{js}' > \"$S/node\" 2>&1");
    let out = npm_install(&g, &net, &body, &[]);
    let said = g.state_text("node");
    check!(
        out,
        said.starts_with("error"),
        "node must fail to reach {host}: {said:?}"
    );
    expect_refused(&g, &out, host, "dns", None);
}

#[test]
#[ignore = "the real node: run by .ci/run (cargo test -- --ignored)"]
fn node_https_get_ignoring_the_proxy_is_refused_with_a_dns_row() {
    node_escape(
        r#"require("https").get("https://pypi.org/", r => console.log("status", r.statusCode)).on("error", e => console.log("error", e.code))"#,
        "pypi.org",
    );
}

#[test]
#[ignore = "the real node: run by .ci/run (cargo test -- --ignored)"]
fn node_fetch_ignoring_the_proxy_is_refused_with_a_dns_row() {
    node_escape(
        r#"fetch("https://fetch.example.com/").then(r => console.log("status", r.status), e => console.log("error", e.cause && e.cause.code))"#,
        "fetch.example.com",
    );
}

/// `curl` (run as `curl_words`) fetches `https://HOST/` directly: it
/// cannot resolve the name (exit 6), and DNS rows refuse it.
fn curl_escape(curl_words: &str, host: &str) {
    require("curl");
    let (g, net) = sandbox();
    let body = format!("{curl_words} -sS -m 5 -o /dev/null https://{host}/; echo $? > \"$S/rc\"");
    let out = npm_install(&g, &net, &body, &[]);
    check_eq!(
        out,
        g.state_text("rc"),
        "6",
        "curl cannot resolve the name (exit 6)"
    );
    expect_refused(&g, &out, host, "dns", None);
}

#[test]
#[ignore = "the real curl: run by .ci/run (cargo test -- --ignored)"]
fn curl_noproxy_is_refused_with_a_dns_row() {
    curl_escape("curl --noproxy '*'", "noproxy.example.com");
}

#[test]
#[ignore = "the real curl: run by .ci/run (cargo test -- --ignored)"]
fn curl_with_the_proxy_variables_unset_is_refused_with_a_dns_row() {
    let unset = PROXY_VARS.map(|v| format!("-u {v}")).join(" ");
    curl_escape(&format!("env {unset} curl"), "unset.example.com");
}

/// Any client that ignores the proxy (here the tests' own, dialling a
/// name) meets the namespace's resolver: the name does not resolve, and
/// DNS rows refuse it. Node's and curl's own ways of ignoring it are the
/// tests above, with the real clients.
#[test]
fn a_client_ignoring_the_proxy_cannot_resolve_a_name_and_is_refused_with_a_dns_row() {
    let (g, net) = sandbox();
    let out = npm_install(
        &g,
        &net,
        "$NET echo direct.example.com 443 16 > \"$S/direct\"",
        &[],
    );
    let direct = g.step(&out, "direct");
    check_eq!(
        out,
        direct["connect"],
        "gaierror",
        "the name does not resolve: {direct}"
    );
    expect_refused(&g, &out, "direct.example.com", "dns", None);
}

/// The tool is the shim's child and the same user: were the shim
/// traceable, the tool could read its memory or take its sockets (ptrace,
/// pidfd_getfd) and dial from the host's namespace through it. The shim
/// makes itself not dumpable; kernels may refuse for reasons of their own
/// as well (this one does, across the user namespace), so this asserts the
/// property, not which check gives it.
#[test]
fn the_tool_cannot_reach_into_the_shim() {
    let (g, net) = sandbox();
    // Opening the shim's memory is the check (a read at offset 0 would
    // fail anyway): a redirection in a subshell opens it and nothing more.
    let body = "cat /proc/$PPID/environ > /dev/null 2>&1; echo $? > \"$S/environ\"\n\
                (exec 3< \"/proc/$PPID/mem\") 2>/dev/null; echo $? > \"$S/mem\"";
    let out = npm_install(&g, &net, body, &[]);
    check!(
        out,
        g.state_text("environ") != "0",
        "the shim's environment is not readable"
    );
    check!(
        out,
        g.state_text("mem") != "0",
        "the shim's memory is not readable"
    );
}

/// A socket the shim inherited (an IDE's, a CI agent's) is in the host's
/// namespace: passed on to the tool, it would be a way out.
#[test]
fn a_socket_the_shim_inherited_does_not_reach_the_tool() {
    let (g, net) = sandbox();
    g.tool(
        "npm",
        &format!(
            "NET=\"{net}\"\nif [ -e /proc/self/fd/$HELD ]; then echo held > \"$S/fd\"; else echo gone > \"$S/fd\"; fi\n\
             [ -e /proc/self/fd/$CONTROL ] && echo kept > \"$S/control\"\nexit 0\n"
        ),
    );
    let shim = g.shim("npm");
    // bash holds a connected socket (to a server on the host's loopback)
    // and a pipe (a FIFO), both inheritable, and execs the shim with them
    // open.
    let server = Upstream::start(|_| {});
    let fifo = g.state_path("control.fifo");
    let launcher = format!(
        "exec 5<>/dev/tcp/127.0.0.1/{port} || exit 97\n\
         mkfifo '{fifo}' && exec 6<>'{fifo}' || exit 98\n\
         HELD=5 CONTROL=6 exec -a npm '{shim}' install\n",
        port = server.addr.port(),
        fifo = fifo.display(),
        shim = shim.display()
    );
    let mut cmd = g.command(bash());
    cmd.arg("-c").arg(launcher);
    Sandbox::strict(&mut cmd, "auto");
    let out = g.run(cmd);
    out.expect_code(0);
    check_eq!(
        out,
        g.state_text("fd"),
        "gone",
        "the inherited socket is not the tool's"
    );
    check_eq!(out, g.state_text("control"), "kept", "an inherited pipe still is");
}

#[test]
fn a_raw_socket_to_an_address_is_refused_with_a_transparent_row() {
    let (g, net) = sandbox();
    let out = npm_install(&g, &net, "$NET echo 203.0.113.7 443 64 > \"$S/raw\"", &[]);
    let raw = g.step(&out, "raw");
    // The gate's listener takes the connection, then closes it unanswered.
    check_eq!(out, raw["back"], 0, "nothing came back: {raw}");
    check!(
        out,
        raw["end"] == "eof" || raw["end"] == "ECONNRESET",
        "closed: {raw}"
    );
    expect_refused(&g, &out, "203.0.113.7", "transparent", Some(443));
}

#[test]
fn quic_is_refused_unanswered_with_one_row_per_destination() {
    let (g, net) = sandbox();
    let out = npm_install(&g, &net, "$NET quic 203.0.113.9 443 5 > \"$S/quic\"", &[]);
    let quic = g.step(&out, "quic");
    check_eq!(
        out,
        quic["answer"],
        false,
        "no answer, so a client falls back to TCP: {quic}"
    );
    expect_refused(&g, &out, "203.0.113.9", "quic", Some(443));
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    check_eq!(
        out,
        rows_for(&log, &id, "203.0.113.9").len(),
        1,
        "five datagrams to one destination are one attempt, one row"
    );
}

#[test]
fn a_bash_without_shell_looking_up_its_user_is_a_unix_socket_not_a_denial() {
    let (g, net) = sandbox();
    // Without $SHELL, bash reads its user's passwd entry at start, and
    // glibc first looks for nscd's socket: what pyenv's shims do in CI.
    let body = "for i in 1 2 3; do env -u SHELL bash -c : ; done";
    let out = npm_install(&g, &net, body, &[]);
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    let end = log.rows().of(&id).kind("end").first_or_fail();
    check_eq!(out, end["denied"], 0, "no connection was refused: {end}");
    let refused = end["unix_sockets"].as_u64().unwrap_or(0);
    check!(out, refused >= 3, "each bash's look for nscd is counted: {end}");
    let rows = log.rows().of(&id).method("unix");
    check_eq!(out, rows.len(), 1, "one row for the one program: {rows:?}");
    check_eq!(
        out,
        end["suppressed"].as_u64(),
        Some(refused - 1),
        "the rest are counted as suppressed: {end}"
    );
}

#[test]
fn a_payload_looping_on_connect_cannot_flood_the_log() {
    let (g, net) = sandbox();
    let out = npm_install(&g, &net, "$NET flood 203.0.113.7 443 1100 > \"$S/loop\"", &[]);
    let flood = g.step(&out, "loop");
    check_eq!(out, flood["tried"], 1100, "the loop ran: {flood}");
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    let rows = rows_for(&log, &id, "203.0.113.7");
    check_eq!(out, rows.len(), 1000, "rows are capped at 1,000");
    let end = log.rows().of(&id).kind("end").first_or_fail();
    check_eq!(out, end["denied"], 1100, "every refusal is counted: {end}");
    check_eq!(
        out,
        end["suppressed"],
        100,
        "and the ones past the cap say so: {end}"
    );
}

#[test]
fn a_forward_proxy_on_the_hosts_loopback_is_out_of_reach() {
    let host_proxy = Upstream::start(|_| {});
    let (g, net) = sandbox();
    let out = npm_install(
        &g,
        &net,
        &format!(
            "HTTPS_PROXY=http://127.0.0.1:{} $NET proxy-echo example.org 443 16 > \"$S/proxied\"",
            host_proxy.addr.port()
        ),
        &[],
    );
    let proxied = g.step(&out, "proxied");
    check_eq!(
        out,
        proxied["connect"],
        "ECONNREFUSED",
        "the namespace's 127.0.0.1 refuses the connection: {proxied}"
    );
    check_eq!(
        out,
        host_proxy.accepted(),
        0,
        "the host's listener saw no connection"
    );
    let log = g.log();
    expect_isolated(&out, start_of(&out, &log, "npm"));
}

// ---------------------------------------------------------------------------
// The allowed path

/// A client that resolved the name through the namespace's DNS and then
/// asks the proxy for the address it got is judged by the name.
#[test]
fn a_connect_to_a_pool_address_is_judged_by_its_name() {
    let up = Upstream::echo();
    let (g, net) = sandbox();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
    let out = npm_install(
        &g,
        &net,
        &as_tool(&[("connect", "proxy-echo-address registry.npmjs.org 443 1000")]),
        &[("CLI_GUARD_RESOLVE", &resolve)],
    );
    let said = g.state_text("connect");
    let first: Value = serde_json::from_str(said.lines().next().unwrap_or_default()).unwrap_or_default();
    let ip = first["ip"].as_str().unwrap_or_default().to_string();
    check!(
        out,
        ip.starts_with("198.1"),
        "the name resolved to the pool: {ip:?}"
    );
    let connect = g.step(&out, "connect");
    check_eq!(
        out,
        connect["status"],
        200,
        "the CONNECT to {ip}:443 was allowed: {connect}"
    );
    check_eq!(out, connect["same"], true, "and relayed: {connect}");
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    let rows = rows_for(&log, &id, "registry.npmjs.org");
    check!(
        out,
        rows.iter()
            .any(|r| r["method"] == "CONNECT" && r["decision"] == "allow"),
        "the CONNECT row names registry.npmjs.org: {rows:?}"
    );
}

#[test]
fn a_direct_connection_to_an_allowed_name_is_relayed_byte_for_byte() {
    const N: usize = 200_000;
    let up = Upstream::echo();
    let (g, net) = sandbox();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
    let out = npm_install(
        &g,
        &net,
        &as_tool(&[("echo", &format!("echo registry.npmjs.org 443 {N}"))]),
        &[("CLI_GUARD_RESOLVE", &resolve)],
    );
    let echo = g.step(&out, "echo");
    let peer = echo["peer"].as_str().unwrap_or_default().to_string();
    check!(
        out,
        peer.starts_with("198.18.") || peer.starts_with("198.19."),
        "the name resolved to the private pool 198.18.0.0/15: {echo}"
    );
    check_eq!(out, echo["same"], true, "every byte came back as sent: {echo}");
    check_eq!(out, echo["back"], N, "{echo}");
    check_eq!(out, up.accepted(), 1, "the gate dialled the loopback server once");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    expect_isolated(&out, start);
    let id = start.audit_id().to_string();
    let rows = rows_for(&log, &id, "registry.npmjs.org");
    check!(
        out,
        rows.iter()
            .any(|r| r["method"] == "dns" && r["qtype"] == "A" && r["decision"] == "allow"),
        "a dns allow row for the A query"
    );
    let relayed = rows.clone().method("transparent");
    check_eq!(out, relayed.len(), 1, "one transparent row");
    let row = relayed[0];
    check_eq!(
        out,
        (
            row["decision"].clone(),
            row["status"].clone(),
            row["port"].clone()
        ),
        (Value::from("allow"), Value::from(200), Value::from(443)),
        "{row}"
    );
    let closes = log.rows().of(&id).kind("egress_close").conn(&row["conn"]);
    check_eq!(out, closes.len(), 1, "one egress_close for the connection");
    check_eq!(out, closes[0]["bytes_up"], N, "{}", closes[0]);
    check_eq!(out, closes[0]["bytes_down"], N, "{}", closes[0]);
}

// ---------------------------------------------------------------------------
// DNS

#[test]
fn dns_from_inside_answers_allowed_names_from_the_pool_and_refuses_the_rest() {
    let (g, net) = sandbox();
    let queries = [
        ("udp-a", "dns udp 10.0.0.53 registry.npmjs.org A"),
        ("tcp-a", "dns tcp 192.0.2.1 registry.npmjs.org A"),
        ("aaaa", "dns udp 10.0.0.53 registry.npmjs.org AAAA"),
        ("txt", "dns udp 10.0.0.53 registry.npmjs.org TXT"),
        ("off-list", "dns udp 10.0.0.53 off-list.example.com A"),
        ("tcp-off-list", "dns tcp 10.0.0.53 off-list.example.com A"),
        ("junk", "dns-junk udp 10.0.0.53"),
        ("tcp-junk", "dns-junk tcp 10.0.0.53"),
    ];
    let out = npm_install(&g, &net, &as_tool(&queries), &[]);
    let answer = |name: &str| g.step(&out, name);
    let (udp_a, tcp_a) = (answer("udp-a"), answer("tcp-a"));
    check_eq!(out, udp_a["rcode"], 0, "{udp_a}");
    let addr = udp_a["addrs"][0].as_str().unwrap_or_default().to_string();
    check!(
        out,
        addr.starts_with("198.18.") || addr.starts_with("198.19."),
        "A from the pool: {udp_a}"
    );
    check_eq!(
        out,
        tcp_a["addrs"][0],
        addr.as_str(),
        "over TCP, the same address: one per name per invocation"
    );
    let aaaa = answer("aaaa");
    check_eq!(
        out,
        (aaaa["rcode"].clone(), aaaa["ancount"].clone()),
        (Value::from(0), Value::from(0)),
        "AAAA: NODATA: {aaaa}"
    );
    for name in ["txt", "off-list", "tcp-off-list"] {
        let a = answer(name);
        check_eq!(out, a["rcode"], 5, "{name}: REFUSED: {a}");
    }
    for name in ["junk", "tcp-junk"] {
        let a = answer(name);
        check!(
            out,
            a["answer"].is_null() || a["rcode"] == 1,
            "{name}: FORMERR or no answer: {a}"
        );
    }
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    let id = start.audit_id().to_string();
    let dns: Vec<(String, String, String, u64)> = log
        .rows()
        .of(&id)
        .kind("egress")
        .iter()
        .map(|r| {
            check_eq!(out, r["method"], "dns", "only DNS rows: {r}");
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (
                s("host"),
                s("qtype"),
                s("decision"),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let row = |h: &str, t: &str, d: &str, st: u64| (h.to_string(), t.to_string(), d.to_string(), st);
    let npm = "registry.npmjs.org";
    let off = "off-list.example.com";
    check_eq!(
        out,
        dns,
        vec![
            row(npm, "A", "allow", 200),
            row(npm, "A", "allow", 200),
            row(npm, "AAAA", "allow", 200),
            row(npm, "TXT", "deny", 501),
            row(off, "A", "deny", 403),
            row(off, "A", "deny", 403),
            row("-", "-", "deny", 400),
            row("-", "-", "deny", 400),
        ],
        "one row per query, in order, with its qtype"
    );
}

// ---------------------------------------------------------------------------
// Bare addresses and ports

#[test]
fn a_bare_address_is_refused_with_a_row_naming_it() {
    let (g, net) = sandbox();
    let out = npm_install(&g, &net, "$NET echo 198.51.100.1 443 16 > \"$S/bare\"", &[]);
    let bare = g.step(&out, "bare");
    check_eq!(out, bare["back"], 0, "nothing came back: {bare}");
    expect_refused(&g, &out, "198.51.100.1", "transparent", Some(443));
}

#[test]
fn a_watched_port_is_refused_with_a_row() {
    let (g, net) = sandbox();
    let out = npm_install(
        &g,
        &net,
        &as_tool(&[
            ("ssh", "echo 198.51.100.1 22 16"),
            ("pooled", "echo registry.npmjs.org 22 16"),
        ]),
        &[],
    );
    for name in ["ssh", "pooled"] {
        let s = g.step(&out, name);
        check_eq!(
            out,
            (s["connect"].clone(), s["back"].clone()),
            (Value::from("ok"), Value::from(0)),
            "{name}: taken, then closed: {s}"
        );
    }
    expect_refused(&g, &out, "198.51.100.1", "transparent", Some(22));
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    let pooled = rows_for(&log, &id, "registry.npmjs.org").method("transparent");
    check!(
        out,
        pooled.len() == 1
            && pooled[0]["port"] == 22
            && pooled[0]["decision"] == "deny"
            && pooled[0]["status"] == 403,
        "an allowed name on a port its rule does not name is denied: {pooled:?}"
    );
}

#[test]
fn a_port_nobody_watches_is_refused_at_once_without_a_row() {
    let (g, net) = sandbox();
    let out = npm_install(
        &g,
        &net,
        &as_tool(&[
            ("bare", "echo 198.51.100.1 4444 16"),
            ("pooled", "echo registry.npmjs.org 4444 16"),
        ]),
        &[],
    );
    for name in ["bare", "pooled"] {
        let s = g.step(&out, name);
        check_eq!(out, s["connect"], "ECONNREFUSED", "{name}: {s}");
    }
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    let transparent = log
        .rows()
        .of(&id)
        .kind("egress")
        // glibc's resolver asks nscd first, over a unix socket strict mode
        // refuses (with a row): the DNS query follows.
        .filter("not DNS", |r| r["method"] != "dns" && r["method"] != "unix");
    check!(out, transparent.is_empty(), "no row but DNS: {transparent:?}");
}

#[test]
fn port_80_is_answered_405() {
    let (g, net) = sandbox();
    let out = npm_install(
        &g,
        &net,
        &as_tool(&[
            ("pooled", "http registry.npmjs.org 80"),
            ("bare", "http 198.51.100.1 80"),
        ]),
        &[],
    );
    for name in ["pooled", "bare"] {
        let s = g.step(&out, name);
        let line = s["line"].as_str().unwrap_or_default();
        check!(out, line.starts_with("HTTP/1.1 405"), "{name}: {s}");
    }
    let log = g.log();
    let id = start_of(&out, &log, "npm").audit_id().to_string();
    for host in ["registry.npmjs.org", "198.51.100.1"] {
        let rows = rows_for(&log, &id, host).method("transparent");
        check!(
            out,
            rows.len() == 1
                && rows[0]["port"] == 80
                && rows[0]["status"] == 405
                && rows[0]["decision"] == "deny",
            "{host}:80: one deny row, 405: {rows:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The subcommand split

/// A fake npm that reaches an unlisted host through the proxy and a
/// service on loopback directly; `npm SUB` through the shim.
fn split_run(sub: &str) -> (Sandbox, Outcome, Upstream, Upstream) {
    let (g, net) = sandbox();
    let unlisted = Upstream::echo();
    let service = Upstream::echo();
    g.tool(
        "npm",
        &format!(
            "NET=\"{net}\"\n$NET proxy-echo unlisted.example.com 443 1000 > \"$S/proxied\"\n\
             $NET echo 127.0.0.1 {} 1000 > \"$S/local\"\nexit 0\n",
            service.addr.port()
        ),
    );
    let mut cmd = strict_cmd(&g, "npm", &[sub], "auto");
    cmd.env(
        "CLI_GUARD_RESOLVE",
        Sandbox::resolve(&[("unlisted.example.com:443", unlisted.addr)]),
    );
    let out = g.run(cmd);
    out.expect_code(0);
    (g, out, unlisted, service)
}

#[test]
fn npm_start_is_observed_and_not_isolated() {
    let (g, out, unlisted, service) = split_run("start");
    let proxied = g.step(&out, "proxied");
    check!(
        out,
        proxied["status"] == 200 && proxied["same"] == true,
        "the unlisted host is reached: {proxied}"
    );
    check_eq!(out, unlisted.accepted(), 1, "dialled once");
    let local = g.step(&out, "local");
    check_eq!(
        out,
        local["same"],
        true,
        "the host's loopback service is reached: {local}"
    );
    check_eq!(out, service.accepted(), 1, "the service saw the connection");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    check_eq!(out, start["isolation"], "none", "{start}");
    check_eq!(out, start["mode"], "observe", "{start}");
    let reason = start["isolation_reason"].as_str().unwrap_or_default();
    check!(
        out,
        reason.contains("npm start"),
        "the reason names `npm start`: {reason}"
    );
    let rows = rows_for(&log, start.audit_id(), "unlisted.example.com");
    check!(
        out,
        rows.len() == 1 && rows[0]["mode"] == "observe" && rows[0]["decision"] == "allow",
        "one observed allow row: {rows:?}"
    );
}

#[test]
fn npm_install_of_the_same_tool_is_isolated() {
    let (g, out, unlisted, service) = split_run("install");
    let proxied = g.step(&out, "proxied");
    check_eq!(
        out,
        proxied["status"],
        403,
        "the unlisted host is denied: {proxied}"
    );
    check_eq!(out, unlisted.accepted(), 0, "never dialled");
    let local = g.step(&out, "local");
    check_eq!(
        out,
        local["connect"],
        "ECONNREFUSED",
        "the host's loopback is out of reach: {local}"
    );
    check_eq!(out, service.accepted(), 0, "the service saw nothing");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    expect_isolated(&out, start);
    check_eq!(out, start["mode"], "enforce", "{start}");
}

// ---------------------------------------------------------------------------
// Fallback where the kernel refuses

/// `npm install` through its shim, from inside a user namespace of the
/// test's own where `max_user_namespaces` is 0, so the shim's unshare
/// fails with ENOSPC. The fake tool records that it ran and reaches the
/// npm registry through the proxy.
fn refused_namespace_run(setting: &str) -> (Sandbox, Outcome, Upstream) {
    let (g, net) = sandbox();
    let up = Upstream::echo();
    g.tool(
        "npm",
        &format!(
            "NET=\"{net}\"\n: > \"$S/ran\"\nrec \"$@\"\n{}",
            as_tool(&[("proxied", "proxy-echo registry.npmjs.org 443 1000")])
        ),
    );
    let mut cmd = g.command(require("unshare"));
    cmd.args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces || exit 97; exec \"$0\" \"$@\"")
        .arg(g.shim("npm"))
        .arg("install")
        .env("CLI_GUARD_RESOLVE", Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
    Sandbox::strict(&mut cmd, setting);
    let out = g.run(cmd);
    check!(
        out,
        out.code() != Some(97),
        "the namespace limit could not be set to 0"
    );
    (g, out, up)
}

const UNAVAILABLE: &str = "strict mode is not available here";

#[test]
fn where_the_kernel_refuses_the_namespace_auto_runs_behind_the_proxy_and_says_so() {
    let (g, out, up) = refused_namespace_run("auto");
    out.expect_code(0);
    let proxied = g.step(&out, "proxied");
    check!(
        out,
        proxied["status"] == 200 && proxied["same"] == true,
        "behind the plain proxy: {proxied}"
    );
    check_eq!(out, up.accepted(), 1, "dialled");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    check_eq!(out, start["isolation"], "none", "{start}");
    let reason = start["isolation_reason"].as_str().unwrap_or_default();
    check!(
        out,
        reason.contains("ENOSPC"),
        "the reason names the errno: {reason}"
    );
    let said: Vec<String> = out
        .guard_lines()
        .into_iter()
        .filter(|l| l.contains(UNAVAILABLE))
        .collect();
    check!(
        out,
        said.len() == 1 && said[0].contains("ENOSPC"),
        "one stderr line says so, naming ENOSPC"
    );
}

#[test]
fn where_the_kernel_refuses_the_namespace_require_exits_125_without_running_the_tool() {
    let (g, out, up) = refused_namespace_run("require");
    out.expect_code(125);
    check!(out, !g.state_path("ran").exists(), "the tool must not run");
    check_eq!(out, up.accepted(), 0, "nothing dialled");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    check_eq!(out, start["isolation"], "none", "{start}");
    let id = start.audit_id().to_string();
    let ends = log.rows().of(&id).kind("end");
    check_eq!(out, ends.len(), 1, "one end row");
    check_eq!(out, ends[0]["exit_code"], 125, "{}", ends[0]);
    let error = ends[0]["error"].as_str().unwrap_or_default();
    check!(
        out,
        error.contains("CLI_GUARD_STRICT=require") && error.contains("ENOSPC"),
        "the end row says why: {error}"
    );
    check!(out, log.rows().of(&id).kind("egress").is_empty(), "no egress");
}

#[test]
fn strict_off_runs_behind_the_proxy_and_the_start_row_says_so() {
    let (g, net) = sandbox();
    g.tool("npm", &format!("NET=\"{net}\"\nrec \"$@\"\nexit 0\n"));
    let out = g.run(strict_cmd(&g, "npm", &["install"], "off"));
    out.expect_code(0);
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    check!(
        out,
        env.get("CLI_GUARD_NETNS").is_none(),
        "not marked as inside a namespace"
    );
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    check_eq!(out, start["isolation"], "none", "{start}");
    let reason = start["isolation_reason"].as_str().unwrap_or_default();
    check!(out, reason.contains("CLI_GUARD_STRICT=off"), "{reason}");
    check!(
        out,
        !out.stderr().contains(UNAVAILABLE),
        "off is no fallback: nothing to warn about"
    );
}

// ---------------------------------------------------------------------------
// Nesting

#[test]
fn a_guarded_tool_inside_a_strict_one_is_isolated_too_and_its_rows_link_up() {
    let up = Upstream::echo();
    let (g, net) = sandbox();
    g.shim("pip");
    g.shim("pnpm");
    g.tool(
        "npm",
        "pip install six > /dev/null 2>&1; echo $? > \"$S/pip-rc\"\npnpm install > /dev/null 2>&1; echo $? > \"$S/pnpm-rc\"\nexit 0\n",
    );
    // pip may not reach the npm registry; pnpm may, but pypi.org is not
    // npm's, so the outer gate refuses pip's pypi.org.
    g.tool(
        "pip",
        &format!(
            "NET=\"{net}\"\n{}",
            as_tool(&[
                ("pip-npm", "proxy-echo registry.npmjs.org 443 100"),
                ("pip-pypi", "proxy-echo pypi.org 443 100"),
                ("pip-raw", "echo 203.0.113.7 443 16"),
            ])
        ),
    );
    g.tool(
        "pnpm",
        &format!(
            "NET=\"{net}\"\n{}",
            as_tool(&[
                ("pnpm-proxied", "proxy-echo registry.npmjs.org 443 5000"),
                ("pnpm-direct", "echo registry.npmjs.org 443 5000"),
            ])
        ),
    );
    let mut cmd = strict_cmd(&g, "npm", &["install"], "auto");
    cmd.env("CLI_GUARD_RESOLVE", Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
    let out = g.run(cmd);
    out.expect_code(0);
    let s = |name: &str| g.step(&out, name);
    check_eq!(
        out,
        s("pip-npm")["status"],
        403,
        "pip's gate refuses the npm registry"
    );
    check!(
        out,
        s("pip-pypi")["status"] != 200,
        "npm's gate refuses pypi.org: {}",
        s("pip-pypi")
    );
    check_eq!(out, s("pip-raw")["back"], 0, "pip's direct connection is refused");
    for name in ["pnpm-proxied", "pnpm-direct"] {
        check_eq!(
            out,
            s(name)["same"],
            true,
            "{name}: relayed through both gates: {}",
            s(name)
        );
    }
    check_eq!(
        out,
        up.accepted(),
        2,
        "the outer gate dialled the registry twice, for pnpm"
    );

    let log = g.log();
    let outer = start_of(&out, &log, "npm");
    expect_isolated(&out, outer);
    let outer_id = outer.audit_id().to_string();
    let pip = start_of(&out, &log, "pip");
    let pnpm = start_of(&out, &log, "pnpm");
    for inner in [pip, pnpm] {
        expect_isolated(&out, inner);
        check_eq!(
            out,
            inner["parent_audit_id"],
            outer_id.as_str(),
            "linked to npm's: {inner}"
        );
    }
    let (pip_id, pnpm_id) = (pip.audit_id().to_string(), pnpm.audit_id().to_string());
    let has = |id: &str, host: &str, method: &str, decision: &str| {
        rows_for(&log, id, host)
            .method(method)
            .iter()
            .any(|r| r["decision"] == decision)
    };
    let expected = [
        (&pip_id, "registry.npmjs.org", "CONNECT", "deny", true),
        (&pip_id, "pypi.org", "CONNECT", "allow", true),
        (&outer_id, "pypi.org", "CONNECT", "deny", true),
        (&pip_id, "203.0.113.7", "transparent", "deny", true),
        (&outer_id, "203.0.113.7", "transparent", "deny", false),
        (&pnpm_id, "registry.npmjs.org", "CONNECT", "allow", true),
        (&pnpm_id, "registry.npmjs.org", "dns", "allow", true),
        (&pnpm_id, "registry.npmjs.org", "transparent", "allow", true),
        (&outer_id, "registry.npmjs.org", "CONNECT", "allow", true),
        (&outer_id, "registry.npmjs.org", "dns", "allow", false),
    ];
    for (id, host, method, decision, present) in expected {
        let who = if *id == outer_id {
            "npm"
        } else if *id == pip_id {
            "pip"
        } else {
            "pnpm"
        };
        check_eq!(
            out,
            has(id, host, method, decision),
            present,
            "{who}: {method} {host} {decision}"
        );
    }
    let outer_allowed = rows_for(&log, &outer_id, "registry.npmjs.org")
        .method("CONNECT")
        .iter()
        .filter(|r| r["decision"] == "allow")
        .count();
    check_eq!(
        out,
        outer_allowed,
        2,
        "the outer gate carried both of pnpm's connections"
    );
}

// ---------------------------------------------------------------------------
// Signals

fn isolated_start(g: &Sandbox, run: &Running) {
    let log = g.log();
    let start = log.rows().kind("start").first().copied();
    check!(
        run,
        start.is_some_and(|s| s["isolation"] == "netns"),
        "the tool runs isolated"
    );
}

#[test]
fn sigterm_at_a_strict_shim_reaches_the_tool_once_and_its_exit_code_passes_through() {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut run = g.start(strict_cmd(&g, "npm", &["install"], "auto"));
    g.wait_env(&mut run);
    isolated_start(&g, &run);
    send(run.pid(), Signal::SIGTERM);
    expect_once(&g, &run, run.pid(), "TERM", Marker::kill(run.pid(), "TERM"));
    check!(
        run,
        run.poll().is_none(),
        "the shim outlives the SIGTERM it forwarded"
    );
    g.finish(run, 3);
}

#[test]
fn ctrl_c_at_a_terminal_reaches_a_strict_tool_once() {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let (pty, mut run) = at_terminal(&g, strict_cmd(&g, "npm", &["install"], "auto"));
    g.wait_env(&mut run);
    isolated_start(&g, &run);
    let child = g.child_pid(&mut run);
    check_eq!(
        run,
        tpgid_of(run.pid()),
        Some(child),
        "the tool's group has the terminal"
    );
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, run.pid(), "INT", Marker::typed(&pty));
    check!(
        run,
        run.poll().is_none(),
        "Ctrl-C does not kill the shim before the tool decides"
    );
    g.release(7);
    run.wait().expect_code(7);
}

#[test]
fn a_sigkilled_strict_shim_takes_its_tool_with_it() {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut run = g.start(strict_cmd(&g, "npm", &["install"], "auto"));
    g.wait_env(&mut run);
    isolated_start(&g, &run);
    let child = g.child_pid(&mut run);
    send(run.pid(), Signal::SIGKILL);
    let out = run.wait();
    check_eq!(out, out.signal(), Some(9), "the shim was SIGKILLed");
    check!(
        out,
        wait_until(WAIT, || is_dead(child)),
        "the tool (pid {child}) dies with its shim: state {:?}",
        proc_state(child)
    );
}

#[test]
fn a_strict_tool_killed_by_a_signal_kills_the_shim_by_the_same_signal() {
    let g = Sandbox::new();
    g.tool("npm", "kill -s USR1 $$\nsleep 2\nexit 99\n");
    let out = g.run(strict_cmd(&g, "npm", &["install"], "auto"));
    check_eq!(
        out,
        out.signal(),
        Some(Signal::SIGUSR1 as i32),
        "the shim dies by the tool's signal"
    );
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    expect_isolated(&out, start);
    let ends = log.rows().of(start.audit_id()).kind("end");
    check!(
        out,
        ends.len() == 1 && ends[0]["signal"] == "SIGUSR1",
        "the end row names the signal: {ends:?}"
    );
}

// ---------------------------------------------------------------------------
// Unprivileged

#[test]
fn as_an_unprivileged_user_strict_mode_refuses_an_escape_and_relays_an_allowed_name() {
    const NOBODY: u32 = 65534;
    const N: usize = 50_000;
    let up = Upstream::echo();
    let (g, net) = sandbox();
    for dir in [&g.state, &g.home, &g.work, g.audit.parent().unwrap()] {
        hand_to_nobody(dir);
    }
    g.tool(
        "npm",
        &format!(
            "NET=\"{net}\"\nid -u > \"$S/uid\"\n\
             {}",
            as_tool(&[
                ("raw", "echo 203.0.113.7 443 16"),
                ("direct", "echo noproxy.example.com 443 16"),
                ("echo", &format!("echo registry.npmjs.org 443 {N}")),
            ])
        ),
    );
    let shim = g.shim("npm");
    let mut cmd = g.as_nobody(shim.to_str().unwrap(), &["install"]);
    cmd.env("CLI_GUARD_RESOLVE", Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
    Sandbox::strict(&mut cmd, "auto");
    let out = g.run(cmd);
    out.expect_code(0);
    check_eq!(
        out,
        g.state_text("uid"),
        NOBODY.to_string(),
        "the tool ran as nobody"
    );
    let raw = g.step(&out, "raw");
    check_eq!(out, raw["back"], 0, "the raw connection is refused: {raw}");
    let direct = g.step(&out, "direct");
    check_eq!(
        out,
        direct["connect"],
        "gaierror",
        "a client ignoring the proxy cannot resolve the name: {direct}"
    );
    let echo = g.step(&out, "echo");
    check!(
        out,
        echo["same"] == true && echo["back"] == N,
        "the allowed name is relayed: {echo}"
    );
    check_eq!(out, up.accepted(), 1, "dialled once");
    let log = g.log();
    let start = start_of(&out, &log, "npm");
    expect_isolated(&out, start);
    let id = start.audit_id().to_string();
    let denied = |host: &str, method: &str| {
        let rows = rows_for(&log, &id, host);
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r["method"] == method && r["decision"] == "deny")
    };
    check!(
        out,
        denied("203.0.113.7", "transparent"),
        "a transparent deny row for the address"
    );
    check!(
        out,
        denied("noproxy.example.com", "dns"),
        "a dns deny row for the name"
    );
    check!(
        out,
        rows_for(&log, &id, "registry.npmjs.org")
            .iter()
            .any(|r| r["method"] == "transparent" && r["decision"] == "allow"),
        "a transparent allow row for the registry"
    );
}
