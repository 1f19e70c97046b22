//! The record that shows tampering and leaves the machine: every row
//! linked to the line before it (checked here with the tests' own
//! SHA-256), across concurrent writers, relayed rows and a rotation;
//! `cli-guard audit --verify` naming a changed, an inserted and a removed
//! row; rows shipped to a collector as they are written (octet-counted
//! RFC 5424, read by the tests' own collector), the spool while it is
//! away, `required` shipping failing closed; and the fleet view of a
//! collector's file. The same with Debian's rsyslog, over TCP and TLS, and
//! a real `npm install`, are `#[ignore]`d (`.ci/run` installs rsyslog and
//! openssl).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::collector::{rfc5424_parts, sha256_hex, Catcher, Certs, Rsyslog, ARRIVAL};
use crate::util::real_clients::{need, Client};
use crate::util::*;

/// The rotation cap (src/audit/log.rs), written out as the tests know it.
const ROTATE_AT: u64 = 32 * 1024 * 1024;

/// The lines of `files`, in order, without their newlines.
fn lines_of(files: &[&Path]) -> Vec<Vec<u8>> {
    files
        .iter()
        .flat_map(|f| {
            let data = fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            data.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A line's link, read as JSON: (seq, prev_sha256), if it has one. It must
/// come first in the line.
fn link(line: &[u8]) -> Option<(u64, Option<String>)> {
    if !line.starts_with(b"{\"seq\":") {
        return None;
    }
    let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}: {}", lossy(line)));
    Some((v["seq"].as_u64()?, v["prev_sha256"].as_str().map(str::to_string)))
}

/// Checks the chain the way the README says it is made, independently of
/// cli-guard's code: from the first line with a link on, every line has
/// one, counting up by one, naming the SHA-256 of the line before it (or
/// null only on the log's very first line). Returns how many are chained.
fn expect_chained(lines: &[Vec<u8>], what: &str) -> usize {
    let first = lines
        .iter()
        .position(|l| link(l).is_some())
        .unwrap_or_else(|| panic!("{what}: no line carries a link"));
    let mut seq = None;
    for (i, line) in lines.iter().enumerate().skip(first) {
        let (n, prev) =
            link(line).unwrap_or_else(|| panic!("{what}: line {} has no link: {}", i + 1, lossy(line)));
        match i {
            0 => assert_eq!(prev, None, "{what}: the log's first line links to nothing"),
            _ => assert_eq!(
                prev.as_deref(),
                Some(sha256_hex(&lines[i - 1]).as_str()),
                "{what}: line {} names the line before it",
                i + 1
            ),
        }
        if let Some(before) = seq {
            assert_eq!(n, before + 1, "{what}: line {} counts on by one", i + 1);
        }
        seq = Some(n);
    }
    lines.len() - first
}

/// `cli-guard audit --verify --log PATH` (and `extra`).
fn verify(g: &Sandbox, path: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec!["audit", "--verify", "--log", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    g.run(g.cli_guard(args))
}

/// A fake npm that asks its gate for `hosts` (one CONNECT each) and exits 0.
fn asking_npm(g: &Sandbox, hosts: &[&str]) {
    let net = g.net();
    let asks: String = hosts
        .iter()
        .map(|h| format!("\"$NET\" proxy-echo {h} 443 1 > /dev/null 2>&1\n"))
        .collect();
    g.tool("npm", &format!("NET=\"{net}\"\n{asks}exit 0\n"));
}

/// Fills `path` with rows of an older cli-guard (no links) to within
/// 16 KiB of the rotation cap.
fn prefill_unchained(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let pad = "padding ".repeat(500);
    let mut written = 0u64;
    let mut conn = 0;
    while written < ROTATE_AT - 20 * 1024 {
        conn += 1;
        let row = format!(
            "{{\"ts\":\"2026-01-01T00:00:00.000Z\",\"kind\":\"egress\",\"audit_id\":\"01a000000000-00000000000000000000000000000007\",\"conn\":{conn},\"tool\":\"npm\",\"mode\":\"enforce\",\"method\":\"CONNECT\",\"host\":\"evil.example\",\"port\":443,\"decision\":\"deny\",\"status\":403,\"reason\":\"{pad}\"}}\n"
        );
        w.write_all(row.as_bytes()).unwrap();
        written += row.len() as u64;
    }
    w.flush().unwrap();
}

#[test]
fn rows_of_concurrent_writers_chain_across_a_rotation_and_verify() {
    const SHIMS: usize = 6;
    const EACH: usize = 30;
    let g = Sandbox::new();
    let sandboxes = g.sharing_the_log(SHIMS);
    // An older log close to the cap: the chain begins after its rows, and
    // the writers' rows cross the cap mid-burst.
    prefill_unchained(&g.audit);
    let older = lines_of(&[&g.audit]).len();
    let sessions: Vec<(Running, ChildEnv)> = sandboxes.iter().map(|sb| sb.session("npm", &[])).collect();
    for statuses in burst(&sessions, EACH, "denied.example:443") {
        assert!(statuses.iter().all(|s| *s == 403), "{statuses:?}");
    }
    for (sb, (run, _)) in sandboxes.iter().zip(sessions) {
        sb.finish(run, 0);
    }
    let rotated = PathBuf::from(format!("{}.1", g.audit.display()));
    assert!(rotated.exists(), "the writes crossed the cap");
    let lines = lines_of(&[&rotated, &g.audit]);
    let chained = expect_chained(&lines, "audit.jsonl.1 then audit.jsonl");
    assert_eq!(chained, SHIMS * (EACH + 2), "every row of every writer, chained");
    assert_eq!(
        lines.len(),
        older + chained,
        "the older rows, then the chained ones"
    );
    // The first chained row links to the last older row.
    assert_eq!(
        link(&lines[older]).and_then(|l| l.1),
        Some(sha256_hex(&lines[older - 1]))
    );
    let out = verify(&g, &g.audit, &[]);
    out.expect_code(0);
    check!(
        out,
        out.stdout()
            .contains(&format!("intact: {chained} rows chained, seq 1 at"))
            && out.stdout().contains(&format!("{older} lines before the chain")),
        "verify says the chain is whole and the older rows are unchained: {}",
        out.stdout()
    );
}

#[test]
fn rows_relayed_by_a_nested_strict_invocation_are_chained_by_the_gate_that_appends_them() {
    let g = Sandbox::new();
    g.shim("pip");
    g.tool(
        "npm",
        "pip install six > /dev/null 2>&1; echo $? > \"$S/pip-rc\"\nexit 0\n",
    );
    g.tool("pip", "exit 0\n");
    let mut cmd = g.shim_cmd("npm", ["install"]);
    Sandbox::strict(&mut cmd, "auto");
    let out = g.run(cmd);
    out.expect_code(0);
    let log = g.log();
    let pip = log.rows().kind("start").tool("pip");
    check_eq!(out, pip.len(), 1, "pip's rows reached the log");
    let lines = lines_of(&[&g.audit]);
    check_eq!(
        out,
        expect_chained(&lines, "the log"),
        lines.len(),
        "every line, npm's and pip's relayed ones, chained"
    );
    verify(&g, &g.audit, &[]).expect_code(0);
}

/// A log of three invocations with egress rows: (its lines, the rows'
/// texts).
fn a_real_log(g: &Sandbox) -> Vec<Vec<u8>> {
    for hosts in [
        &["e.example", "a.example"][..],
        &["b.example"],
        &["c.example", "d.example"],
    ] {
        asking_npm(g, hosts);
        g.run(g.shim_cmd("npm", ["install"])).expect_code(0);
    }
    let lines = lines_of(&[&g.audit]);
    assert_eq!(expect_chained(&lines, "the log"), lines.len());
    lines
}

fn write_copy(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    let mut data = Vec::new();
    for line in lines {
        data.extend_from_slice(line);
        data.push(b'\n');
    }
    fs::write(&path, data).unwrap();
    path
}

#[test]
fn verify_finds_a_changed_an_inserted_and_a_removed_row_in_a_copy_and_passes_the_untouched_one() {
    let g = Sandbox::new();
    let lines = a_real_log(&g);
    assert!(lines.len() >= 10, "{} lines", lines.len());
    let dir = g.dir("copies");

    let (_, out) = verify_copy(&g, &dir, "untouched.jsonl", &lines, 0);
    expect_said(
        &out,
        &format!("intact: {} rows chained", lines.len()),
        "the untouched copy passes",
    );

    // Changed: an egress row's decision, what a forger wants.
    let at = lines
        .iter()
        .position(|l| lossy(l).contains("\"host\":\"a.example\""))
        .unwrap();
    let mut changed = lines.clone();
    changed[at] = lossy(&lines[at])
        .replace("\"decision\":\"deny\"", "\"decision\":\"allow\"")
        .into_bytes();
    assert_ne!(changed[at], lines[at]);
    let (path, out) = verify_copy(&g, &dir, "changed.jsonl", &changed, 3);
    let named = format!("{}:{} (seq {}) was changed", path.display(), at + 1, at + 1);
    expect_said(&out, &format!("first: {named}"), "names the changed row");
    expect_said(
        &out,
        &format!("through seq {} at {}:{}", at, path.display(), at),
        "intact up to the row before it",
    );

    // Inserted: a forged end row under the first invocation's ID, as the
    // issue's forger wrote it (no link), and one with a link copied from
    // its neighbour.
    let first_id = serde_json::from_slice::<Value>(&lines[0]).unwrap()["audit_id"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = format!(
        r#"{{"ts":"2026-01-01T00:00:00.000Z","kind":"end","audit_id":"{first_id}","exit_code":0,"signal":null,"duration_ms":5,"allowed":1,"denied":0,"suppressed":0,"error":null}}"#
    );
    let mut inserted = lines.clone();
    inserted.insert(3, forged.clone().into_bytes());
    let (path, out) = verify_copy(&g, &dir, "inserted.jsonl", &inserted, 3);
    expect_said(
        &out,
        &format!("first: {}:4 was inserted", path.display()),
        "names the inserted row",
    );
    let (seq, prev) = link(&lines[3]).unwrap();
    let with_link = format!(
        "{{\"seq\":{seq},\"prev_sha256\":\"{}\",{}",
        prev.unwrap(),
        &forged[1..]
    );
    let mut inserted = lines.clone();
    inserted.insert(3, with_link.into_bytes());
    let (path, out) = verify_copy(&g, &dir, "inserted-linked.jsonl", &inserted, 3);
    expect_said(
        &out,
        &format!("first: {}:4 was inserted", path.display()),
        "names the inserted row with a forged link",
    );

    // Removed: the denied rows of the second invocation.
    let gone = lines
        .iter()
        .position(|l| lossy(l).contains("\"host\":\"b.example\""))
        .unwrap();
    let mut removed = lines.clone();
    removed.remove(gone);
    let (path, out) = verify_copy(&g, &dir, "removed.jsonl", &removed, 3);
    let (file, next) = (path.display(), gone + 1);
    expect_said(
        &out,
        &format!("first: row seq {next} was removed between {file}:{gone} and {file}:{next}"),
        "names the removed row",
    );
    // And `cli-guard audit` still reads each copy as before.
    g.run(g.cli_guard(["audit", "--file", path.to_str().unwrap()]))
        .expect_code(0);
}

/// `cli-guard audit --verify` of `lines` written to `dir/name`, which must
/// exit `code`: the copy's path, and the outcome.
fn verify_copy(g: &Sandbox, dir: &Path, name: &str, lines: &[Vec<u8>], code: i32) -> (PathBuf, Outcome) {
    let path = write_copy(dir, name, lines);
    let out = verify(g, &path, &[]);
    out.expect_code(code);
    (path, out)
}

/// `out`'s stdout says `text`: `what` the test shows by it.
fn expect_said(out: &Outcome, text: &str, what: &str) {
    check!(out, out.stdout().contains(text), "{what}: {}", out.stdout());
}

#[test]
fn verify_follows_the_chain_across_a_rotation_and_finds_a_row_removed_before_it() {
    let g = Sandbox::new();
    prefill_unchained(&g.audit);
    // Chained rows on both sides of the rotation.
    asking_npm(&g, &["x.example"; 40]);
    g.run(g.shim_cmd("npm", ["install"])).expect_code(0);
    let rotated = PathBuf::from(format!("{}.1", g.audit.display()));
    assert!(rotated.exists(), "rotated");
    let (old, new) = (lines_of(&[&rotated]), lines_of(&[&g.audit]));
    assert!(
        link(old.last().unwrap()).is_some() && !new.is_empty(),
        "chained rows on both sides"
    );
    let out = verify(&g, &g.audit, &[]);
    out.expect_code(0);
    check!(out, out.stdout().contains("intact:"), "{}", out.stdout());

    // A copy of both files with the rotated file's last chained row gone.
    let dir = g.dir("copy");
    let mut cut = old.clone();
    cut.pop();
    write_copy(&dir, "audit.jsonl.1", &cut);
    let copy = write_copy(&dir, "audit.jsonl", &new);
    let out = verify(&g, &copy, &[]);
    out.expect_code(3);
    let seq = link(old.last().unwrap()).unwrap().0;
    check!(
        out,
        out.stdout().contains(&format!(
            "first: row seq {seq} was removed between {}.1:{} and {}:1",
            copy.display(),
            cut.len(),
            copy.display()
        )),
        "named across the two files: {}",
        out.stdout()
    );
}

#[test]
fn an_older_log_reads_as_before_and_verifies_as_unchained_until_the_chain_begins() {
    let g = Sandbox::new();
    let id = "01a000000000-00000000000000000000000000000009";
    fs::create_dir_all(g.audit.parent().unwrap()).unwrap();
    fs::write(
        &g.audit,
        format!(
            "{{\"ts\":\"2026-01-01T00:00:00.000Z\",\"kind\":\"start\",\"audit_id\":\"{id}\",\"parent_audit_id\":null,\"tool\":\"npm\",\"mode\":\"enforce\",\"argv\":[\"npm\",\"ci\"],\"cwd\":\"/w\",\"real_path\":\"/usr/bin/npm\",\"pid\":1}}\n\
             {{\"ts\":\"2026-01-01T00:00:01.000Z\",\"kind\":\"end\",\"audit_id\":\"{id}\",\"exit_code\":0,\"signal\":null,\"duration_ms\":9,\"allowed\":0,\"denied\":0,\"error\":null}}\n"
        ),
    )
    .unwrap();
    let out = g.run(g.cli_guard(["audit"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(id) && out.stdout().contains("npm ci"),
        "read as before"
    );
    let out = verify(&g, &g.audit, &[]);
    out.expect_code(3);
    check!(
        out,
        out.stdout().contains("unchained: no row carries the chain")
            && out.stdout().contains("2 lines before the chain"),
        "{}",
        out.stdout()
    );
    asking_npm(&g, &[]);
    g.run(g.shim_cmd("npm", ["install"])).expect_code(0);
    let out = verify(&g, &g.audit, &[]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("intact: 2 rows chained") && out.stdout().contains("2 lines before the chain"),
        "{}",
        out.stdout()
    );
}

// ---------------------------------------------------------------------------
// Shipping, to the tests' own collector

/// The rows of a collector's messages: each message's header words and
/// its row.
fn shipped(messages: &[Vec<u8>]) -> Vec<(Vec<String>, Vec<u8>)> {
    messages.iter().map(|m| rfc5424_parts(m)).collect()
}

#[test]
fn rows_are_shipped_as_written_one_octet_counted_rfc5424_message_each() {
    let catcher = Catcher::start();
    let g = Sandbox::new();
    let ship = format!("{} machine=laptop-1", catcher.url());
    let (run, env) = g.session("npm", &[("CLI_GUARD_SHIP", &ship)]);
    let id = env.audit_id().to_string();
    let proxy = env.proxy();
    assert_eq!(proxy.connect("evil.example:443").status, 403);
    // The denial's row reaches the collector while the tool still runs.
    check!(
        run,
        catcher.wait(ARRIVAL, |m| m.iter().any(|m| lossy(m).contains("evil.example"))),
        "the denial was shipped as it was written: {:?}",
        catcher.messages().iter().map(|m| lossy(m)).collect::<Vec<_>>()
    );
    let out = g.finish(run, 0);
    let lines = lines_of(&[&g.audit]);
    check!(
        out,
        catcher.wait(ARRIVAL, |m| m.len() >= lines.len()),
        "every row arrives"
    );
    let got = shipped(&catcher.messages());
    check_eq!(out, got.len(), lines.len(), "one message per row");
    for ((words, row), line) in got.iter().zip(&lines) {
        check_eq!(
            out,
            lossy(row),
            lossy(line),
            "the message is the row, byte for byte"
        );
        let v: Value = serde_json::from_slice(line).unwrap();
        let kind = v["kind"].as_str().unwrap();
        let severity = if v["decision"] == "deny" { 4 } else { 6 };
        check_eq!(
            out,
            words,
            &vec![
                (13 * 8 + severity).to_string(),
                "1".to_string(),
                v["ts"].as_str().unwrap().to_string(),
                "laptop-1".to_string(),
                "cli-guard".to_string(),
                id.clone(),
                kind.to_string(),
                "-".to_string(),
            ],
            "PRI (log audit), version, the row's time, the machine, app, the audit ID, the kind, no SD"
        );
    }
    let end = g.log().rows().of(&id).kind("end").one().clone();
    check_eq!(out, end["spooled"], 0, "nothing left waiting: {end:?}");
    expect_chained(
        &catcher
            .messages()
            .iter()
            .map(|m| rfc5424_parts(m).1)
            .collect::<Vec<_>>(),
        "the collector's copy",
    );
}

#[test]
fn a_collector_stopped_mid_run_never_holds_the_tool_and_gets_every_row_once_it_is_back() {
    let catcher = Catcher::start();
    let port = catcher.port;
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[("CLI_GUARD_SHIP", &catcher.url())]);
    let id = env.audit_id().to_string();
    check!(
        run,
        catcher.wait(ARRIVAL, |m| m
            .iter()
            .any(|m| lossy(m).contains("\"kind\":\"start\""))),
        "the start row arrived"
    );
    // The collector goes away mid-run; the tool goes on making requests.
    let before = catcher.stop();
    let proxy = env.proxy();
    for _ in 0..5 {
        assert_eq!(proxy.connect("evil.example:443").status, 403);
    }
    // The shim exits while the collector is still away: its exit did not
    // wait for it.
    let out = g.finish(run, 0);
    let end = g.log().rows().of(&id).kind("end").one().clone();
    check!(
        out,
        end["spooled"].as_u64().is_some_and(|n| n >= 5),
        "the end row counts the rows left waiting: {end:?}"
    );
    let spool = PathBuf::from(format!("{}.spool", g.audit.display()));
    check!(
        out,
        lossy(&fs::read(&spool).unwrap()).contains("evil.example"),
        "they wait in the spool beside the log"
    );
    // Back on its port: the drainer the shim left delivers them, with no
    // other invocation.
    let catcher = Catcher::on(port);
    let lines = lines_of(&[&g.audit]);
    let rest = lines.len() - before.len();
    check!(
        out,
        catcher.wait(ARRIVAL, |m| m.len() >= rest),
        "the rest arrives once the collector is back: {} of {rest}",
        catcher.messages().len()
    );
    let mut all: Vec<Vec<u8>> = before.iter().map(|m| rfc5424_parts(m).1).collect();
    all.extend(catcher.messages().iter().map(|m| rfc5424_parts(m).1));
    check_eq!(
        out,
        all.iter().map(|l| lossy(l)).collect::<Vec<_>>(),
        lines.iter().map(|l| lossy(l)).collect::<Vec<_>>(),
        "every row once, in order: none lost, none doubled"
    );
    check!(
        out,
        wait_until(ARRIVAL, || fs::metadata(&spool).is_ok_and(|m| m.len() == 74)),
        "the spool is cut back to its header"
    );
}

#[test]
fn required_shipping_fails_closed_when_rows_can_be_neither_shipped_nor_spooled() {
    let catcher = Catcher::start();
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    // Something that is not a file where the spool goes.
    let spool = PathBuf::from(format!("{}.spool", g.audit.display()));
    fs::create_dir_all(&spool).unwrap();
    let required = format!("collector={} required=yes", catcher.url());
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env("CLI_GUARD_SHIP", &required);
    let out = g.run(cmd);
    out.expect_code(125);
    check!(
        out,
        out.stderr()
            .contains("shipping the audit log is required (CLI_GUARD_SHIP)")
            && out.stderr().contains(&spool.display().to_string())
            && out.stderr().contains("Nothing runs until"),
        "says why and what to do: {}",
        out.stderr()
    );
    check!(out, !g.state_path("argv").exists(), "the tool did not run");
    // Not required: the tool runs, and stderr says rows stay local.
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env("CLI_GUARD_SHIP", catcher.url());
    let out = g.run(cmd);
    out.expect_code(0);
    check!(out, out.stderr().contains("not shipping to"), "{}", out.stderr());
    // An unwritable log under required shipping: nothing to spool beside.
    fs::remove_dir(&spool).unwrap();
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env("CLI_GUARD_SHIP", &required).env(
        "CLI_GUARD_AUDIT_LOG",
        g.root().join("no-such-dir-file").join("x").join("audit.jsonl"),
    );
    let blocker = g.root().join("no-such-dir-file");
    fs::write(&blocker, "a file where a directory should be").unwrap();
    let out = g.run(cmd);
    out.expect_code(125);
    check!(
        out,
        out.stderr().contains("the audit log cannot be written"),
        "{}",
        out.stderr()
    );
}

#[test]
fn a_shipping_configuration_that_cannot_be_read_is_exit_125() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    for (value, says) in [
        (
            "http://logs.example",
            "expected tcp://HOST:PORT or tls://HOST:PORT",
        ),
        ("tcp://logs.example required=maybe", "expected yes or no"),
        ("tls://logs.example ca=/no/such/ca.pem", ""),
    ] {
        let mut cmd = g.shim_cmd("npm", ["install"]);
        cmd.env("CLI_GUARD_SHIP", value);
        let out = g.run(cmd);
        if says.is_empty() {
            // A CA file that is not there is found on the shipping
            // thread: the tool runs, and its rows wait in the spool.
            out.expect_code(0);
            continue;
        }
        out.expect_code(125);
        check!(
            out,
            out.stderr()
                .contains("cannot ship the audit log as configured: CLI_GUARD_SHIP:")
                && out.stderr().contains(says),
            "{value}: {}",
            out.stderr()
        );
        check!(
            out,
            !g.state_path("argv").exists(),
            "{value}: the tool did not run"
        );
    }
}

/// Runs one invocation shipped under `machine` to `url`, asking for `hosts`.
fn ship_one(g: &Sandbox, url: &str, machine: &str, hosts: &[&str]) -> String {
    asking_npm(g, hosts);
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env("CLI_GUARD_SHIP", format!("{url} machine={machine}"));
    let out = g.run(cmd);
    out.expect_code(0);
    g.log()
        .rows()
        .kind("start")
        .iter()
        .last()
        .unwrap()
        .audit_id()
        .to_string()
}

#[test]
fn the_fleet_view_reads_verifies_and_filters_a_collectors_file_by_machine() {
    let catcher = Catcher::start();
    // Two machines, each with its own log and chain.
    let (alpha, beta) = (Sandbox::new(), Sandbox::new());
    let a1 = ship_one(&alpha, &catcher.url(), "alpha", &["a.example"]);
    let b1 = ship_one(&beta, &catcher.url(), "beta", &["b.example"]);
    let a2 = ship_one(&alpha, &catcher.url(), "alpha", &["c.example"]);
    let total = lines_of(&[&alpha.audit]).len() + lines_of(&[&beta.audit]).len();
    assert!(catcher.wait(ARRIVAL, |m| m.len() >= total), "every row arrives");
    // The collector's file, as rsyslog's RFC 5424 template writes it.
    let fleet = alpha.root().join("fleet.log");
    let mut data = Vec::new();
    for m in catcher.messages() {
        data.extend_from_slice(&m);
        data.push(b'\n');
    }
    fs::write(&fleet, data).unwrap();
    let fleet_arg = fleet.to_str().unwrap();

    let out = alpha.run(alpha.cli_guard(["audit", "--file", fleet_arg]));
    out.expect_code(0);
    let text = out.stdout();
    for (machine, id) in [("alpha", &a1), ("beta", &b1), ("alpha", &a2)] {
        let entry = text.lines().find(|l| l.contains(id.as_str())).unwrap_or("");
        check!(
            out,
            entry.contains(&format!("  {machine} ")) && entry.contains(" npm "),
            "{id} under {machine}: {text}"
        );
    }
    let out = alpha.run(alpha.cli_guard(["audit", "--file", fleet_arg, "--machine", "alpha"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(&a1) && out.stdout().contains(&a2) && !out.stdout().contains(&b1),
        "--machine alpha: {}",
        out.stdout()
    );
    let out = alpha.run(alpha.cli_guard(["audit", "--file", fleet_arg, "--machine", "beta", "--json"]));
    out.expect_code(0);
    let objects = Log::parse(out.stdout().as_bytes(), "--json");
    check_eq!(out, objects.len(), 1, "beta's one invocation");
    check_eq!(
        out,
        objects.rows().one()["machine"],
        "beta",
        "--json names the machine"
    );

    let out = verify(&alpha, &fleet, &[]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("a collector's file: 2 machines")
            && out.stdout().contains("  alpha: intact:")
            && out.stdout().contains("  beta: intact:"),
        "each machine's chain: {}",
        out.stdout()
    );
    // A row of beta's removed from the collector's copy.
    let mut lines = lines_of(&[&fleet]);
    let gone = lines.iter().position(|l| lossy(l).contains("b.example")).unwrap();
    lines.remove(gone);
    let cut = write_copy(&alpha.root().join(""), "fleet-cut.log", &lines);
    let out = verify(&alpha, &cut, &[]);
    out.expect_code(3);
    check!(
        out,
        out.stdout().contains("  alpha: intact:") && out.stdout().contains("  beta: NOT intact"),
        "{}",
        out.stdout()
    );
    verify(&alpha, &cut, &["--machine", "alpha"]).expect_code(0);
}

// ---------------------------------------------------------------------------
// With Debian's rsyslog

/// The rows rsyslog wrote, machine and row, in its file's order.
fn collected(rsyslog: &Rsyslog) -> Vec<(String, Vec<u8>)> {
    rsyslog
        .lines()
        .iter()
        .map(|line| {
            let text = lossy(line);
            let (head, row) = text
                .split_once(" {")
                .unwrap_or_else(|| panic!("not a row: {text}"));
            // `<PRI>1 TS HOST …` or `TS HOST cli-guard[ID] …`.
            let words: Vec<&str> = head.split(' ').collect();
            let host = if head.starts_with('<') { words[2] } else { words[1] };
            (host.to_string(), format!("{{{row}").into_bytes())
        })
        .collect()
}

/// `npm install PACKAGES…` into a fresh project of `c`, shipped to `url`
/// under `machine`; the command and the project.
fn npm_install_shipping(c: &Client, packages: &[&str], url: &str, machine: &str) -> (Command, PathBuf) {
    need("npm");
    let proj = c.dir("proj");
    fs::write(
        proj.join("package.json"),
        "{\"name\":\"p\",\"version\":\"1.0.0\"}",
    )
    .unwrap();
    let cache = c.dir("cache");
    let mut args = vec!["install"];
    args.extend(packages);
    args.extend([
        "--cache",
        cache.to_str().unwrap(),
        "--no-audit",
        "--no-fund",
        "--prefix",
        proj.to_str().unwrap(),
    ]);
    let mut cmd = c.cmd("npm", &args);
    cmd.env("CLI_GUARD_SHIP", format!("{url} machine={machine}"));
    (cmd, proj)
}

/// A real `npm install` shipped to `rsyslog`, under `machine`; the client,
/// its audit ID and its log's lines.
fn npm_install_shipped(rsyslog: &Rsyslog, machine: &str, extra: &[(&str, String)]) -> (Client, String) {
    let c = Client::new();
    let (mut cmd, proj) = npm_install_shipping(&c, &["is-number"], &rsyslog.url(), machine);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = c.run(cmd);
    out.expect_code(0);
    assert!(
        proj.join("node_modules/is-number/package.json").exists(),
        "installed"
    );
    let id = crate::util::real_clients::only_start(&c.log(), "npm")
        .audit_id()
        .to_string();
    (c, id)
}

/// rsyslog has exactly the log's rows, in order, under `machine`, each
/// with its audit ID.
fn expect_collected(rsyslog: &Rsyslog, audit: &Path, machine: &str) {
    let lines = lines_of(&[audit]);
    assert!(
        rsyslog.wait(ARRIVAL, |l| l.len() >= lines.len()),
        "every row arrives: {} of {}\n{}",
        rsyslog.lines().len(),
        lines.len(),
        rsyslog.report()
    );
    let got = collected(rsyslog);
    assert_eq!(
        got.iter().map(|(_, r)| lossy(r)).collect::<Vec<_>>(),
        lines.iter().map(|l| lossy(l)).collect::<Vec<_>>(),
        "intact, in order, once each\n{}",
        rsyslog.report()
    );
    assert!(got.iter().all(|(m, _)| m == machine), "all under {machine}");
    for (line, raw) in lines.iter().zip(rsyslog.lines()) {
        let id = serde_json::from_slice::<Value>(line).unwrap()["audit_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            lossy(&raw).contains(&id),
            "the audit ID in the header: {}",
            lossy(&raw)
        );
    }
    expect_chained(
        &got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        "rsyslog's copy",
    );
}

#[test]
#[ignore = "needs rsyslogd (Debian's rsyslog), npm and the npm registry"]
fn rsyslog_gets_the_rows_of_a_real_npm_install_intact_chained_with_machine_and_audit_id() {
    let rsyslog = Rsyslog::tcp();
    let (c, id) = npm_install_shipped(&rsyslog, "laptop-1", &[]);
    expect_collected(&rsyslog, &c.audit, "laptop-1");
    // In the RFC 5424 header: HOSTNAME, APP-NAME, PROCID = the audit ID.
    let first = lossy(&rsyslog.lines()[0]);
    assert!(
        first.contains(&format!(" laptop-1 cli-guard {id} start - {{")),
        "{first}"
    );
    // And `cli-guard audit` reads and verifies rsyslog's file.
    let g = Sandbox::new();
    let out = verify(&g, &rsyslog.out, &[]);
    out.expect_code(0);
    check!(out, out.stdout().contains("laptop-1: intact"), "{}", out.stdout());
    let out = g.run(g.cli_guard(["audit", "--file", rsyslog.out.to_str().unwrap(), "--id", &id]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("laptop-1") && out.stdout().contains("registry.npmjs.org:443"),
        "{}",
        out.stdout()
    );
}

#[test]
#[ignore = "needs rsyslogd with rsyslog-gnutls, openssl, npm and the npm registry"]
fn rsyslog_over_tls_with_a_ca_made_here_gets_the_rows_of_a_real_npm_install() {
    let rsyslog = Rsyslog::tls();
    let ca = rsyslog.certs.as_ref().unwrap().ca.display().to_string();
    // The system's CA store, as OpenSSL finds it (SSL_CERT_FILE): the CA
    // made here is the only one in it.
    let (c, _) = npm_install_shipped(&rsyslog, "ci-runner-3", &[("SSL_CERT_FILE", ca.clone())]);
    expect_collected(&rsyslog, &c.audit, "ci-runner-3");
    // A CA the configuration names instead (`ca=`), from the fake tools.
    let g = Sandbox::new();
    asking_npm(&g, &["evil.example"]);
    let mut cmd = g.shim_cmd("npm", ["install"]);
    cmd.env(
        "CLI_GUARD_SHIP",
        format!("{} machine=ci-runner-4 ca={ca}", rsyslog.url()),
    );
    g.run(cmd).expect_code(0);
    let want = lines_of(&[&c.audit]).len() + lines_of(&[&g.audit]).len();
    assert!(rsyslog.wait(ARRIVAL, |l| l.len() >= want), "{}", rsyslog.report());
    let out = verify(&g, &rsyslog.out, &[]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("ci-runner-3: intact") && out.stdout().contains("ci-runner-4: intact"),
        "{}",
        out.stdout()
    );
    // A collector whose certificate the trusted CA did not sign gets
    // nothing: the rows wait in the spool, and stderr says what to fix.
    let other = Sandbox::new();
    let wrong = Certs::make(&other.dir("wrong-ca"));
    asking_npm(&other, &[]);
    let mut cmd = other.shim_cmd("npm", ["install"]);
    cmd.env(
        "CLI_GUARD_SHIP",
        format!("{} machine=untrusting ca={}", rsyslog.url(), wrong.ca.display()),
    );
    let out = other.run(cmd);
    out.expect_code(0);
    let spool = PathBuf::from(format!("{}.spool", other.audit.display()));
    check!(
        out,
        out.stderr()
            .contains(&format!("rows are not reaching the collector {}", rsyslog.url()))
            && out.stderr().contains(&spool.display().to_string()),
        "says the certificate is to fix: {}",
        out.stderr()
    );
    check!(
        out,
        lossy(&fs::read(&spool).unwrap()).contains("\"kind\":\"end\""),
        "its rows wait in the spool"
    );
    assert!(
        !collected(&rsyslog).iter().any(|(m, _)| m == "untrusting"),
        "none reached rsyslog (checked after the others arrived)"
    );
}

#[test]
#[ignore = "needs rsyslogd (Debian's rsyslog), npm and the npm registry"]
fn rsyslog_stopped_mid_install_gets_every_row_once_it_is_back() {
    let mut rsyslog = Rsyslog::tcp();
    let c = Client::new();
    let (cmd, _) = npm_install_shipping(&c, &["is-number", "is-odd"], &rsyslog.url(), "laptop-2");
    let running = Running::spawn(cmd, Some(c.audit.clone()), None);
    // Mid-install: once its start row is at the collector.
    assert!(
        rsyslog.wait(ARRIVAL, |l| l
            .iter()
            .any(|l| lossy(l).contains("\"kind\":\"start\""))),
        "{}",
        rsyslog.report()
    );
    rsyslog.stop();
    let out = running.wait_for(crate::util::real_clients::CLIENT_TIMEOUT);
    out.expect_code(0);
    // The install ended while the collector was away.
    let log = c.log();
    let end = log.rows().kind("end").one().clone();
    check!(
        out,
        end["spooled"].as_u64().is_some_and(|n| n > 0),
        "its end row counts the rows left in the spool: {end:?}"
    );
    rsyslog.restart();
    expect_collected(&rsyslog, &c.audit, "laptop-2");
}

#[test]
#[ignore = "needs rsyslogd (Debian's rsyslog)"]
fn the_fleet_view_over_two_machines_in_rsyslogs_file() {
    let rsyslog = Rsyslog::tcp();
    let (alpha, beta) = (Sandbox::new(), Sandbox::new());
    let a = ship_one(&alpha, &rsyslog.url(), "alpha", &["a.example"]);
    let b = ship_one(&beta, &rsyslog.url(), "beta", &["b.example", "c.example"]);
    let total = lines_of(&[&alpha.audit]).len() + lines_of(&[&beta.audit]).len();
    assert!(
        rsyslog.wait(ARRIVAL, |l| l.len() >= total),
        "{}",
        rsyslog.report()
    );
    let file = rsyslog.out.to_str().unwrap();
    let out = alpha.run(alpha.cli_guard(["audit", "--file", file, "--machine", "beta"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(&b) && !out.stdout().contains(&a) && out.stdout().contains("  beta "),
        "{}",
        out.stdout()
    );
    let out = alpha.run(alpha.cli_guard(["audit", "--file", file, "--denied"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(&a) && out.stdout().contains(&b),
        "{}",
        out.stdout()
    );
    let out = verify(&alpha, &rsyslog.out, &[]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("2 machines")
            && out.stdout().contains("alpha: intact")
            && out.stdout().contains("beta: intact"),
        "{}",
        out.stdout()
    );
}
