//! The audit log: the four record kinds and their fields, when they are
//! written, file permissions and default paths, a SIGKILLed shim, many
//! writers at once, an unwritable log; and the denial summary on stderr.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn is_uint(v: &Value) -> bool {
    v.as_u64().is_some()
}

#[test]
fn all_four_record_kinds_carry_their_fields() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let shim_pid = run.pid();
    let id = env.audit_id().to_owned();
    let proxy = env.proxy();

    proxy.echo_tunnel_and_close(&run, NPM_REGISTRY, b"early", b"-more");
    check_eq!(run, proxy.connect("evil.example:443").status, 403, "denied");
    check_eq!(run, proxy.ask(b"hello\r\n\r\n").status, 400, "garbage");
    check_eq!(
        run,
        proxy
            .ask_authed(b"GET http://registry.npmjs.org/ HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n")
            .status,
        405,
        "plaintext"
    );
    let out = g.finish(run, 3);

    let log = g.log();
    let all = &log;
    let mine = log.rows().of(&id);
    check_eq!(
        out,
        mine.len(),
        log.len(),
        "only this invocation wrote the log\n{all}"
    );
    for r in &mine {
        check!(
            out,
            r["ts"].as_str().is_some_and(is_timestamp),
            "ts must be RFC 3339 UTC with ms: {r}"
        );
    }
    check_eq!(
        out,
        mine.first().map(|r| r["kind"].clone()),
        Some("start".into()),
        "start comes first"
    );
    check_eq!(
        out,
        mine.last().map(|r| r["kind"].clone()),
        Some("end".into()),
        "end comes last"
    );

    // start
    let start = log.rows().of(&id).kind("start");
    check_eq!(out, start.len(), 1, "one start\n{all}");
    let st = start[0];
    check_eq!(out, st["parent_audit_id"], Value::Null, "start.parent_audit_id");
    check_eq!(out, st["tool"], "npm", "start.tool");
    check_eq!(out, st["mode"], "enforce", "start.mode");
    check!(
        out,
        st["argv"]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        "start.argv: {st}"
    );
    check_eq!(
        out,
        st["argv"].as_array().and_then(|a| a.last()).cloned(),
        Some("install".into()),
        "start.argv ends with the args: {st}"
    );
    check_eq!(out, st["cwd"], g.work.to_str().unwrap(), "start.cwd");
    check_eq!(
        out,
        st["real_path"],
        g.real.join("npm").to_str().unwrap(),
        "start.real_path"
    );
    check_eq!(out, st["pid"], shim_pid, "start.pid");

    // egress
    let egress = log.rows().of(&id).kind("egress");
    check_eq!(out, egress.len(), 4, "one egress row per answered request\n{all}");
    let conns: BTreeSet<u64> = egress.iter().filter_map(|r| r["conn"].as_u64()).collect();
    check_eq!(out, conns.len(), 4, "conn: distinct integers\n{all}");
    check!(out, conns.iter().all(|c| *c >= 1), "conn counts from 1\n{all}");
    for r in &egress {
        check_eq!(out, r["tool"], "npm", "egress.tool: {r}");
        check_eq!(out, r["mode"], "enforce", "egress.mode: {r}");
        // The contract marks host and port nullable "when unparseable"; a
        // request line too broken to name a method (the 400 row) may say null.
        let method_ok = r["method"].is_string() || (r["status"] == 400 && r["method"].is_null());
        check!(out, method_ok, "egress.method: {r}");
        check!(
            out,
            r["host"].is_string() || r["host"].is_null(),
            "egress.host: {r}"
        );
        check!(
            out,
            is_uint(&r["port"]) || r["port"].is_null(),
            "egress.port: {r}"
        );
        check!(out, r["reason"].is_string(), "egress.reason: {r}");
        check!(out, is_uint(&r["status"]), "egress.status: {r}");
    }
    let by_status = |s: u64| -> &Row {
        egress
            .iter()
            .find(|r| r["status"] == s)
            .copied()
            .unwrap_or_else(|| panic!("no egress row with status {s}\n{}", out.report()))
    };
    let ok = by_status(200);
    check_eq!(
        out,
        (
            ok["method"].clone(),
            ok["host"].clone(),
            ok["port"].clone(),
            ok["decision"].clone()
        ),
        (
            "CONNECT".into(),
            "registry.npmjs.org".into(),
            443.into(),
            "allow".into()
        ),
        "the 200 row: {ok}"
    );
    let no = by_status(403);
    check_eq!(
        out,
        (
            no["method"].clone(),
            no["host"].clone(),
            no["port"].clone(),
            no["decision"].clone()
        ),
        ("CONNECT".into(), "evil.example".into(), 443.into(), "deny".into()),
        "the 403 row: {no}"
    );
    let bad = by_status(400);
    check_eq!(
        out,
        (bad["host"].clone(), bad["port"].clone(), bad["decision"].clone()),
        (Value::Null, Value::Null, "deny".into()),
        "the 400 row (unparseable: host and port null): {bad}"
    );
    let plain = by_status(405);
    check_eq!(
        out,
        (plain["method"].clone(), plain["decision"].clone()),
        ("GET".into(), "deny".into()),
        "the 405 row: {plain}"
    );

    // egress_close
    let close = log.rows().of(&id).kind("egress_close");
    check_eq!(
        out,
        close.len(),
        1,
        "one egress_close: only the 200 opened a tunnel\n{all}"
    );
    let c = close[0];
    check_eq!(
        out,
        c["conn"],
        ok["conn"],
        "egress_close.conn matches the 200 row"
    );
    check_eq!(
        out,
        (c["host"].clone(), c["port"].clone()),
        ("registry.npmjs.org".into(), 443.into()),
        "egress_close host/port"
    );
    check_eq!(out, c["bytes_up"], 10, "bytes_up: 'early' + '-more' + nothing");
    check_eq!(out, c["bytes_down"], 10, "bytes_down: the echo");
    check!(out, is_uint(&c["duration_ms"]), "egress_close.duration_ms: {c}");
    check_eq!(out, c["error"], Value::Null, "a clean close has no error");

    // end
    let end = log.rows().of(&id).kind("end");
    check_eq!(out, end.len(), 1, "one end\n{all}");
    let e = end[0];
    check_eq!(out, e["exit_code"], 3, "end.exit_code");
    check_eq!(out, e["signal"], Value::Null, "end.signal");
    check!(out, is_uint(&e["duration_ms"]), "end.duration_ms: {e}");
    check_eq!(out, e["allowed"], 1, "end.allowed");
    check_eq!(out, e["denied"], 3, "end.denied");
    check_eq!(out, e["error"], Value::Null, "end.error");
}

#[test]
fn the_egress_row_is_written_before_the_tunnel_carries_a_byte() {
    // Upstream looks at the audit log the moment the first byte reaches it.
    let g = Sandbox::new();
    let log = g.audit.clone();
    let (tx, rx) = mpsc::channel();
    let up = Upstream::start(move |mut s| {
        let mut b = [0u8; 1];
        let first = s.read(&mut b).unwrap_or(0);
        let snapshot = fs::read(&log).unwrap_or_default();
        let _ = tx.send((first, snapshot));
        let _ = s.write_all(b"!");
    });
    let (run, env) = g.npm_at(&up);
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, b"x");
    check_eq!(run, a.status, 200, "{}", a.report());
    let Ok((first, snapshot)) = rx.recv_timeout(WAIT) else {
        panic!("upstream got nothing\n{}", run.report());
    };
    check_eq!(run, first, 1, "upstream got the early byte");
    let seen = Log::parse(&snapshot, "the log when the first byte arrived");
    let rows = seen
        .rows()
        .of(env.audit_id())
        .kind("egress")
        .host("registry.npmjs.org")
        .filter("allowed with 200", |r| {
            r["decision"] == "allow" && r["status"] == 200
        });
    check_eq!(
        run,
        rows.len(),
        1,
        "the egress row must exist before a byte is relayed\n{}",
        seen
    );
    check!(
        run,
        seen.rows().of(env.audit_id()).kind("egress_close").is_empty(),
        "no egress_close while the tunnel is open"
    );
    let mut b = [0u8; 1];
    check!(run, s.read_exact(&mut b).is_ok(), "upstream's reply is relayed");
    drop(s);
    g.finish(run, 0);
}

#[test]
fn egress_close_counts_bytes_exactly_including_early_bytes() {
    let reply = pattern(777, 2);
    let r = reply.clone();
    let up = Upstream::start(move |mut s| {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = s.write_all(&r);
    });
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, mut s) = env.proxy().tunnel(NPM_REGISTRY, &pattern(100, 1));
    check_eq!(run, a.status, 200, "{}", a.report());
    s.write_all(&pattern(1000, 9)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    check!(run, s.read_to_end(&mut back).is_ok(), "reply");
    check_eq!(run, back.len(), 777, "reply length");
    drop(s);
    let out = g.finish(run, 0);
    let log = g.log();
    let close = log.rows().of(env.audit_id()).kind("egress_close");
    check_eq!(out, close.len(), 1, "one egress_close");
    check_eq!(
        out,
        close[0]["bytes_up"],
        1100,
        "bytes_up counts the 100 early bytes too"
    );
    check_eq!(out, close[0]["bytes_down"], 777, "bytes_down");
}

#[test]
fn an_unreachable_upstream_is_logged_as_allowed_with_502_and_no_close() {
    let g = Sandbox::new();
    let resolve = format!("{NPM_REGISTRY}=127.0.0.1:{}", closed_port());
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    check_eq!(run, env.proxy().connect(NPM_REGISTRY).status, 502, "unreachable");
    let out = g.finish(run, 0);
    let log = g.log();
    let rows = log.rows().of(env.audit_id()).kind("egress");
    check_eq!(out, rows.len(), 1, "one egress row");
    check_eq!(
        out,
        (rows[0]["decision"].clone(), rows[0]["status"].clone()),
        ("allow".into(), 502.into()),
        "row"
    );
    check!(
        out,
        rows[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "the reason is logged"
    );
    check!(
        out,
        log.rows().of(env.audit_id()).kind("egress_close").is_empty(),
        "no tunnel, no egress_close"
    );
    let end = log.rows().of(env.audit_id()).kind("end");
    check_eq!(
        out,
        (end[0]["allowed"].clone(), end[0]["denied"].clone()),
        (1.into(), 0.into()),
        "counts"
    );
}

#[test]
fn start_is_written_before_the_child_runs() {
    let g = Sandbox::new();
    g.tool(
        "npm",
        "cp \"$CLI_GUARD_AUDIT_LOG\" \"$S/log-at-start\"\nrec \"$@\"\nexit 0\n",
    );
    let out = g.run(g.shim_cmd("npm", ["install"]));
    out.expect_code(0);
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    let snapshot = fs::read(g.state_path("log-at-start"));
    check!(out, snapshot.is_ok(), "the log must exist when the child starts");
    let seen = Log::parse(&snapshot.unwrap(), "the log when the child started");
    check_eq!(
        out,
        seen.rows().of(env.audit_id()).kind("start").len(),
        1,
        "start row already written"
    );
}

#[test]
fn end_records_a_death_by_signal() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nkill -s TERM $$\nsleep 2\nexit 99\n");
    let out = g.run(g.shim_cmd("npm", ["install"]));
    check_eq!(
        out,
        out.signal(),
        Some(Signal::SIGTERM as i32),
        "the shim dies by SIGTERM"
    );
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    let log = g.log();
    let end = log.rows().of(env.audit_id()).kind("end");
    check_eq!(out, end.len(), 1, "one end record");
    check_eq!(out, end[0]["signal"], "SIGTERM", "end.signal");
    check_eq!(out, end[0]["exit_code"], Value::Null, "end.exit_code");
}

#[test]
fn end_counts_allowed_and_denied_requests() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let proxy = env.proxy();
    for _ in 0..2 {
        let (a, s) = proxy.tunnel(NPM_REGISTRY, b"");
        check_eq!(run, a.status, 200, "{}", a.report());
        drop(s);
    }
    for host in ["a.example:443", "b.example:443", "a.example:443"] {
        check_eq!(run, proxy.connect(host).status, 403, "{host}");
    }
    let out = g.finish(run, 0);
    let log = g.log();
    let end = log.rows().of(env.audit_id()).kind("end");
    check_eq!(out, end.len(), 1, "one end");
    check_eq!(out, end[0]["allowed"], 2, "end.allowed");
    check_eq!(out, end[0]["denied"], 3, "end.denied");
}

#[test]
fn audit_ids_are_unique_and_sort_by_time() {
    let g = Sandbox::new();
    g.tool("npm", "exit 0\n");
    for _ in 0..3 {
        g.run(g.shim_cmd("npm", ["install"])).expect_code(0);
    }
    let log = g.log();
    let ids: Vec<String> = log
        .rows()
        .kind("start")
        .ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 3, "{}", log);
    for id in &ids {
        assert!(is_audit_id(id), "{id:?} is not <12 hex>-<32 hex>");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted, ids,
        "IDs of successive invocations must be distinct and sort by time"
    );
}

#[test]
fn the_log_is_created_0600_in_0700_directories() {
    let mut g = Sandbox::new();
    let top = g.root().join("new");
    g.audit = top.join("sub").join("audit.jsonl");
    g.tool("npm", "exit 0\n");
    let out = g.run(g.shim_cmd("npm", ["install"]));
    out.expect_code(0);
    check!(out, g.audit.exists(), "the log was created");
    check_eq!(
        out,
        format!("{:o}", mode(&top)),
        "700",
        "created directory {}",
        top.display()
    );
    check_eq!(
        out,
        format!("{:o}", mode(&top.join("sub"))),
        "700",
        "created directory sub"
    );
    check_eq!(out, format!("{:o}", mode(&g.audit)), "600", "the log file");
}

fn default_path_run(g: &Sandbox, env: &[(&str, &Path)], want: &Path) {
    g.tool("npm", "exit 0\n");
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env_remove("CLI_GUARD_AUDIT_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = g.run(cmd);
    out.expect_code(0);
    check!(out, want.is_file(), "the log must be at {}", want.display());
    let log = Log::read(want);
    check!(out, !log.rows().kind("start").is_empty(), "with a start record");
    check_eq!(
        out,
        format!("{:o}", mode(want.parent().unwrap())),
        "700",
        "its directory"
    );
    check_eq!(out, format!("{:o}", mode(want)), "600", "the file");
}

#[test]
fn without_cli_guard_audit_log_the_log_is_under_xdg_state_home() {
    let g = Sandbox::new();
    let xdg = g.dir("xdg");
    default_path_run(
        &g,
        &[("XDG_STATE_HOME", &xdg)],
        &xdg.join("cli-guard/audit.jsonl"),
    );
}

#[test]
fn without_xdg_state_home_the_log_is_under_home() {
    let g = Sandbox::new();
    default_path_run(&g, &[], &g.home.join(".local/state/cli-guard/audit.jsonl"));
}

#[test]
fn a_sigkilled_shim_leaves_start_and_egress_rows_and_its_child_dies() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (mut run, env) = g.npm_at(&up);
    let child = g.child_pid(&mut run);
    let proxy = env.proxy();
    let (a, s) = proxy.tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    check_eq!(run, proxy.connect("evil.example:443").status, 403, "denied");
    send(run.pid(), Signal::SIGKILL);
    let out = run.wait();
    check_eq!(out, out.signal(), Some(9), "the shim was SIGKILLed");
    drop(s);
    check!(
        out,
        wait_until(WAIT, || is_dead(child)),
        "the child (pid {child}) must die with its shim: state {:?}",
        proc_state(child)
    );
    let log = g.log();
    let id = env.audit_id();
    check_eq!(out, log.rows().of(id).kind("start").len(), 1, "start survives");
    let rows = log.rows().of(id).kind("egress");
    let has = |host: &str, status: u64| rows.iter().any(|r| r["host"] == host && r["status"] == status);
    check!(
        out,
        has("registry.npmjs.org", 200),
        "the allowed connection is on record"
    );
    check!(
        out,
        has("evil.example", 403),
        "the denied connection is on record"
    );
}

#[test]
fn concurrent_invocations_share_one_log_without_tearing() {
    const SHIMS: usize = 8;
    const EACH: usize = 25;
    let g = Sandbox::new();
    let net = g.net();
    g.tool(
        "npm",
        &format!(
            "rec \"$@\"\ni=0\nwhile [ $i -lt {EACH} ]; do\n  {net} proxy-echo denied.example 443 0 > /dev/null\n  i=$((i + 1))\ndone\nexit 0\n"
        ),
    );
    let runs: Vec<Running> = (0..SHIMS)
        .map(|_| g.start(g.shim_cmd("npm", ["install"])))
        .collect();
    for r in runs {
        r.wait_for(Duration::from_secs(30)).expect_code(0);
    }
    let data = fs::read(&g.audit).unwrap();
    assert!(data.ends_with(b"\n"), "the log ends with a complete line");
    let log = Log::read(&g.audit);
    assert_eq!(log.len(), SHIMS * (EACH + 2), "every record, none lost or merged");
    let ids: BTreeSet<&str> = log.iter().map(Row::audit_id).collect();
    assert_eq!(ids.len(), SHIMS, "one audit ID per invocation");
    for id in ids {
        let rs = log.rows().of(id);
        let kind = |k: &str| rs.clone().kind(k).len();
        assert_eq!((kind("start"), kind("egress"), kind("end")), (1, EACH, 1), "{id}");
        let conns: BTreeSet<u64> = rs.iter().filter_map(|r| r["conn"].as_u64()).collect();
        assert_eq!(conns.len(), EACH, "{id}: distinct conn ids");
        for r in rs.clone().kind("egress") {
            assert_eq!(
                (&r["host"], &r["status"], &r["decision"]),
                (&"denied.example".into(), &403.into(), &"deny".into()),
                "{r}"
            );
        }
        let end = rs.kind("end")[0];
        assert_eq!(
            (&end["denied"], &end["allowed"]),
            (&EACH.into(), &0.into()),
            "{end}"
        );
    }
}

/// Runs npm whose child makes one denied request and exits 3, with the
/// audit log at `log`; checks the stderr fallback.
fn unwritable(log: &Path) {
    unwritable_with(|cmd| {
        cmd.env("CLI_GUARD_AUDIT_LOG", log);
    });
}

fn unwritable_with(set_up: impl FnOnce(&mut std::process::Command)) {
    let g = Sandbox::new();
    g.tool(
        "npm",
        &format!(
            "rec \"$@\"\n{} proxy-echo denied.example 443 0 > \"$S/request\"\nexit 3\n",
            g.net()
        ),
    );
    let mut cmd = g.shim_cmd("npm", ["install"]);
    set_up(&mut cmd);
    let out = g.run(cmd);
    out.expect_code(3);
    let warnings: Vec<String> = out
        .guard_lines()
        .into_iter()
        .filter(|l| !l.contains("denied.example"))
        .collect();
    check_eq!(
        out,
        warnings.len(),
        1,
        "exactly one warning about the log: {warnings:#?}"
    );
    let log = out.stderr_log("records on stderr");
    let kinds: Vec<&str> = log.iter().filter_map(|r| r["kind"].as_str()).collect();
    check_eq!(
        out,
        kinds,
        vec!["start", "egress", "end"],
        "every record goes to stderr instead"
    );
    check_eq!(
        out,
        (log[1]["host"].clone(), log[1]["status"].clone()),
        ("denied.example".into(), 403.into()),
        "still enforced"
    );
    check_eq!(out, log[2]["exit_code"], 3, "end.exit_code");
    let request = fs::read_to_string(g.state_path("request")).unwrap_or_default();
    let answered = serde_json::from_str::<Value>(request.trim()).unwrap_or(Value::Null);
    check!(
        out,
        answered["status"] != 200,
        "the child's request failed: {request}"
    );
}

#[test]
fn a_log_whose_parent_is_a_file_falls_back_to_stderr() {
    let t = TempDir::new();
    let file = t.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    unwritable(&file.join("audit.jsonl"));
}

#[test]
fn a_log_on_a_full_disk_falls_back_to_stderr() {
    let t = TempDir::new();
    let log = t.path().join("audit.jsonl");
    unwritable_with(|cmd| with_a_full_log(cmd, &log));
    let kept = fs::read(&log).unwrap_or_default();
    assert!(
        kept.iter().all(|&b| b == b'\n'),
        "nothing of a row lands in a log that cannot grow: {:?}",
        String::from_utf8_lossy(&kept)
    );
}

#[test]
fn a_log_that_is_a_device_or_a_fifo_or_a_symlink_stops_the_tool_before_it_runs() {
    let t = TempDir::new();
    let fifo = t.path().join("fifo.jsonl");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let link = t.path().join("link.jsonl");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let before = mode(Path::new("/dev/full"));
    for (log, what) in [
        (Path::new("/dev/full"), "a device"),
        (fifo.as_path(), "a FIFO"),
        (link.as_path(), "a symbolic link"),
    ] {
        let g = Sandbox::new();
        g.tool("npm", "rec \"$@\"\nexit 0\n");
        let mut cmd = g.shim_cmd("npm", ["install"]);
        cmd.env("CLI_GUARD_AUDIT_LOG", log);
        // A FIFO must not hang the shim: `run` waits with a deadline.
        let out = g.run(cmd);
        out.expect_code(125);
        check!(
            out,
            out.stderr().contains(&format!("is {what}, not a regular file")),
            "the refusal says what is there"
        );
        check!(out, !g.state_path("argv").exists(), "the tool never ran");
    }
    let after = mode(Path::new("/dev/full"));
    if after != before {
        let _ = fs::set_permissions("/dev/full", fs::Permissions::from_mode(before));
        panic!("cli-guard changed the mode of /dev/full ({before:o} -> {after:o})");
    }
}

// ----- the denial summary ------------------------------------------------------

const SUMMARY_TOOL: &str = "rec \"$@\"\nhold\necho fake-npm-exiting >&2\nexit \"$(code)\"\n";

fn denied_run(targets: &[&str]) -> (Outcome, String) {
    let g = Sandbox::new();
    g.tool("npm", SUMMARY_TOOL);
    let mut run = g.start(g.shim_cmd("npm", ["install"]));
    let env = g.wait_env(&mut run);
    for t in targets {
        check_eq!(run, env.proxy().connect(t).status, 403, "{t}");
    }
    g.release(0);
    let out = run.wait();
    out.expect_code(0);
    (out, env.audit_id().to_owned())
}

#[test]
fn the_denial_summary_names_host_tool_allowlist_and_audit_id_after_the_child_exits() {
    let (out, id) = denied_run(&["evil.example:443", "evil.example:443", "evil.example:443"]);
    let lines: Vec<String> = out
        .guard_lines()
        .into_iter()
        .filter(|l| l.contains("evil.example:443"))
        .collect();
    check_eq!(
        out,
        lines.len(),
        1,
        "one line per denied host:port, however often it was tried"
    );
    let line = &lines[0];
    for needle in ["npm", "registry.npmjs.org", id.as_str()] {
        check!(
            out,
            line.contains(needle),
            "the summary must name {needle:?}: {line}"
        );
    }
    let lower = line.to_ascii_lowercase();
    for word in ["policy", "network", "retry"] {
        check!(
            out,
            lower.contains(word),
            "the summary must say it is policy, not a network fault, don't retry ({word:?} missing): {line}"
        );
    }
    let err = out.stderr();
    let exiting = err.find("fake-npm-exiting");
    let summary = err.find(line.as_str());
    check!(
        out,
        exiting.is_some() && summary > exiting,
        "the summary comes after the child exits"
    );
}

#[test]
fn the_denial_summary_has_one_line_per_distinct_host_and_port() {
    let targets = [
        "a.example:443",
        "b.example:443",
        "a.example:8443",
        "a.example:443",
    ];
    let (out, _) = denied_run(&targets);
    let lines = out.guard_lines();
    check_eq!(out, lines.len(), 3, "three distinct denied host:port pairs");
    for t in ["a.example:443", "b.example:443", "a.example:8443"] {
        let n = lines.iter().filter(|l| l.contains(t)).count();
        check_eq!(out, n, 1, "one line names {t}");
    }
}

#[test]
fn no_denial_summary_when_nothing_was_denied() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.npm_at(&up);
    let (a, s) = env.proxy().tunnel(NPM_REGISTRY, b"");
    check_eq!(run, a.status, 200, "{}", a.report());
    drop(s);
    let out = g.finish(run, 0);
    check!(
        out,
        out.guard_lines().is_empty(),
        "no cli-guard: lines without a denial"
    );
}

// ----- secrets ---------------------------------------------------------------

const GHP: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

/// Every secret `typed_with_secrets` puts in argv.
const SECRETS: &[&str] = &["s3cret", GHP, "hunter2", "abcdefghijklmnopqrstuvwxyz0123456789"];

/// A command line with a secret in each of the forms the log must not keep.
fn typed_with_secrets() -> Vec<String> {
    vec![
        "install".into(),
        "--index-url".into(),
        "https://alice:s3cret@127.0.0.1:9/simple".into(),
        format!("--token={GHP}"),
        "--password".into(),
        "hunter2".into(),
        "left-pad".into(),
    ]
}

#[test]
fn secrets_in_argv_reach_the_tool_but_not_the_log() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let args = typed_with_secrets();
    let out = g.run(g.shim_cmd("npm", &args));
    out.expect_code(0);

    // The tool got every argument unchanged: only the log is redacted.
    let got = split_nul(&fs::read(g.state_path("argv")).unwrap());
    let want: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    check_eq!(out, got[1..].to_vec(), want, "the tool's arguments");

    // The whole log, not only the start row's argv.
    let text = fs::read_to_string(&g.audit).unwrap();
    for secret in SECRETS {
        check!(out, !text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
    let log = g.log();
    check!(
        out,
        !log.rows()
            .filter("redacted", |r| r["argv_redacted"] == true)
            .is_empty(),
        "argv_redacted:\n{text}"
    );
    let start = log.rows().kind("start");
    check_eq!(
        out,
        start[0]["argv"],
        serde_json::json!([
            "npm",
            "install",
            "--index-url",
            "https://alice:***@127.0.0.1:9/simple",
            "--token=***",
            "--password",
            "***",
            "left-pad"
        ]),
        "start.argv"
    );

    // Nor does `cli-guard audit` show them, as text or as JSON. The text
    // view shortens long command lines: a second, short one fits whole.
    g.run(g.shim_cmd("npm", [format!("--token={GHP}")]))
        .expect_code(0);
    let text = g.run(g.cli_guard(["audit"]));
    text.expect_code(0);
    let json = g.run(g.cli_guard(["audit", "--json"]));
    json.expect_code(0);
    for shown in [&text, &json] {
        for secret in SECRETS {
            check!(shown, !shown.stdout().contains(secret), "audit shows {secret:?}");
        }
    }
    check!(
        text,
        text.stdout().contains("'https://alice:***@127.0.0.1:9/"),
        "the masked URL"
    );
    check!(
        text,
        text.stdout().contains("npm '--token=***'"),
        "the masked option"
    );
    check!(
        json,
        json.stdout().contains(r#""argv_redacted":true"#),
        "--json carries argv_redacted"
    );
    check!(
        json,
        json.stdout().contains(r#""--token=***""#),
        "--json shows the masked argv"
    );
}

#[test]
fn an_argv_without_secrets_is_logged_as_typed_and_not_redacted() {
    let g = Sandbox::new();
    g.tool("npm", "exit 0\n");
    let out = g.run(g.shim_cmd("npm", ["install", "--registry", "https://registry.npmjs.org/"]));
    out.expect_code(0);
    let log = g.log();
    check!(
        out,
        !log.rows()
            .filter("not redacted", |r| r["argv_redacted"] == false)
            .is_empty(),
        "{log}"
    );
    let typed = serde_json::json!(["npm", "install", "--registry", "https://registry.npmjs.org/"]);
    check!(
        out,
        !log.rows()
            .filter("argv as typed", |r| r["argv"] == typed)
            .is_empty(),
        "{log}"
    );
}

#[test]
fn the_environment_is_never_logged() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let secret = "env-secret-5d1c7e9a0b3f";
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env("DEPLOY_TOKEN", secret).env("NPM_CONFIG__AUTH", secret);
    let out = g.run(cmd);
    out.expect_code(0);
    // The tool had it; the log has no trace of it.
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    check_eq!(
        out,
        env.get("DEPLOY_TOKEN"),
        Some(secret),
        "the tool's environment"
    );
    let text = fs::read_to_string(&g.audit).unwrap();
    check!(
        out,
        !g.log().rows().kind("end").is_empty(),
        "the run was logged:\n{text}"
    );
    check!(
        out,
        !text.contains(secret),
        "the environment is in the log:\n{text}"
    );
    check!(
        out,
        !text.contains("DEPLOY_TOKEN"),
        "a variable's name is in the log:\n{text}"
    );
}
