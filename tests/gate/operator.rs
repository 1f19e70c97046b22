//! The operator's side (issue 6): `cli-guard audit` (folding, filters,
//! `--json`, `--follow`, streaming a large log, torn and foreign lines,
//! colour, `--suggest`), `cli-guard check`, size-based rotation under
//! concurrent writers, and `--help` and usage errors on every command.
//!
//! Logs come from real shims (fake tools, a loopback echo upstream, a
//! nested invocation, a denial, a SIGKILLed shim); where volume or odd
//! content is needed, lines are written here in the record format of
//! docs/contract.md.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::*;

/// The rotation cap and the number of rotated files kept (issue 6 pins
/// them; src/audit.rs has them as ROTATE_AT and KEEP), written out here so
/// the tests stay an independent check.
const ROTATE_AT: u64 = 32 * 1024 * 1024;
const KEEP: u32 = 5;

/// Upper bound for one `cli-guard audit` over a big log (debug build, two
/// cores shared with the rest of the suite).
const BIG_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Writing log lines by hand, in the record format

/// A synthetic audit ID (`<12 hex>-<32 hex>`), distinct per `n`.
fn sid(n: u64) -> String {
    format!(
        "{:012x}-{:032x}",
        0x0190_0000_0000_u64 + n,
        (0xc0de_u128 << 64) | u128::from(n)
    )
}

fn mode_of(tool: &str) -> &'static str {
    if OBSERVED.contains(&tool) {
        "observe"
    } else {
        "enforce"
    }
}

fn start_row(ts: &str, id: &str, parent: Option<&str>, tool: &str, argv: &[&str]) -> String {
    let parent = parent.map_or("null".to_owned(), |p| format!("\"{p}\""));
    let argv = serde_json::to_string(argv).unwrap();
    format!(
        r#"{{"ts":"{ts}","kind":"start","audit_id":"{id}","parent_audit_id":{parent},"tool":"{tool}","mode":"{}","argv":{argv},"cwd":"/w","real_path":"/usr/bin/{tool}","pid":4242}}"#,
        mode_of(tool)
    )
}

/// An egress row: allowed (200) or denied (403).
fn egress_row(ts: &str, id: &str, conn: u64, tool: &str, host: &str, port: u16, allow: bool) -> String {
    let (decision, status, reason) = if allow {
        ("allow", 200, "allowlist rule")
    } else {
        ("deny", 403, "not on the allowlist: an allowlist block")
    };
    format!(
        r#"{{"ts":"{ts}","kind":"egress","audit_id":"{id}","conn":{conn},"tool":"{tool}","mode":"{}","method":"CONNECT","host":"{host}","port":{port},"decision":"{decision}","status":{status},"reason":"{reason}"}}"#,
        mode_of(tool)
    )
}

fn close_row(ts: &str, id: &str, conn: u64, (host, port): (&str, u16), (up, down): (u64, u64)) -> String {
    format!(
        r#"{{"ts":"{ts}","kind":"egress_close","audit_id":"{id}","conn":{conn},"host":"{host}","port":{port},"bytes_up":{up},"bytes_down":{down},"duration_ms":7,"error":null}}"#
    )
}

fn end_row(ts: &str, id: &str, exit_code: i32, duration_ms: u64, (allowed, denied): (u64, u64)) -> String {
    format!(
        r#"{{"ts":"{ts}","kind":"end","audit_id":"{id}","exit_code":{exit_code},"signal":null,"duration_ms":{duration_ms},"allowed":{allowed},"denied":{denied},"error":null}}"#
    )
}

/// Writes `lines` (each without its newline) as the whole of `path`.
fn write_lines(path: &Path, lines: &[String]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).create(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// `path.N`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

// ---------------------------------------------------------------------------
// Reading `cli-guard audit` output

fn audit(g: &Sandbox, args: &[&str]) -> Outcome {
    g.run(g.cli_guard(std::iter::once("audit").chain(args.iter().copied())))
}

fn id_in(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| is_audit_id(w))
        .map(str::to_owned)
}

/// The audit IDs of the top-level entries (lines starting in column 0), in order.
fn top_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(id_in)
        .collect()
}

/// The audit IDs of nested entries (lines whose first non-blank is `└`).
fn nested_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('└'))
        .filter_map(id_in)
        .collect()
}

/// The entry line of `id` and its egress rows (the lines under it up to the
/// next entry line).
fn block<'a>(text: &'a str, id: &str) -> (&'a str, Vec<&'a str>) {
    let mut lines = text.lines().skip_while(|l| id_in(l).as_deref() != Some(id));
    let Some(entry) = lines.next() else {
        return ("", Vec::new());
    };
    (entry, lines.take_while(|l| id_in(l).is_none()).collect())
}

/// Whether `parts` occur in `line` in this order (a part's trailing blank
/// may be the next part's leading one).
fn in_order(line: &str, parts: &[&str]) -> bool {
    let mut rest = line;
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.trim_end().len()..],
            None => return false,
        }
    }
    true
}

/// The column (in characters) where `needle` starts in `line`.
fn column(line: &str, needle: &str) -> Option<usize> {
    line.find(needle).map(|i| line[..i].chars().count())
}

/// `2026-11-24T00:20:47.123Z` as shown: `2026-11-24 00:20:47Z`.
fn shown_time(ts: &str) -> String {
    format!("{}Z", ts[..19].replacen('T', " ", 1))
}

/// A duration as shown (`135 ms`, `1.2 s`, `1.5 min`).
fn shown_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// A byte count as shown (`12 B`, `1.5 KiB`).
fn shown_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Runs `cmd` to the end without the audit log in its failure report (for
/// logs grown to the rotation cap).
fn run_quiet(cmd: std::process::Command) -> Outcome {
    Running::spawn(cmd, None, None).wait()
}

/// `cli-guard audit --follow ARGS`, its stdout in a file: what it has
/// printed is there the moment it wrote it.
struct Follower {
    run: Running,
    out: PathBuf,
    log: PathBuf,
}

impl Follower {
    fn start(g: &Sandbox, args: &[&str]) -> Follower {
        let out = g.root().join("follow.out");
        let mut cmd = g.cli_guard(["audit", "--follow"].iter().chain(args));
        cmd.stdout(File::create(&out).unwrap());
        Follower {
            run: Running::spawn(cmd, None, None),
            out,
            log: g.audit.clone(),
        }
    }

    /// What it has printed so far.
    fn printed(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits (up to `limit`) until it has printed `needle`.
    fn shows(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.printed().contains(needle))
    }

    /// Waits until it has read the live log to its end as the log is now,
    /// and then made another read call (/proc/PID/io): it prints what the
    /// rows it read make it print before it reads again, so all of that is
    /// printed by then.
    fn caught_up(&self) {
        let pid = self.run.pid();
        let end = fs::metadata(&self.log).unwrap().len();
        let read = wait_until(BIG_TIMEOUT, || {
            offset_in(pid, &self.log).is_some_and(|at| at >= end)
        });
        check!(self, read, "--follow never read the log to its end ({end} bytes)");
        let reads = read_calls(pid);
        let again = wait_until(BIG_TIMEOUT, || read_calls(pid) > reads);
        check!(self, again, "--follow never read again");
    }

    /// SIGTERM, and all it printed.
    fn stop(self) -> Followed {
        send(self.run.pid(), Signal::SIGTERM);
        let out = self.run.wait();
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        Followed { out, text }
    }

    fn report(&self) -> String {
        format!("{}---- printed ----\n{}\n", self.run.report(), self.printed())
    }
}

/// A follower that was stopped: how it ended, and all it printed.
struct Followed {
    out: Outcome,
    text: String,
}

impl Followed {
    fn report(&self) -> String {
        format!("{}---- printed ----\n{}\n", self.out.report(), self.text)
    }
}

/// The offset of `pid`'s descriptor open on `path` (`pos` in its fdinfo).
fn offset_in(pid: i32, path: &Path) -> Option<u64> {
    let fd = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(Result::ok)
        .find(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))?;
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("pos:"))
        .and_then(|pos| pos.trim().parse().ok())
}

/// How many read calls `pid` has made (`syscr` in /proc/PID/io).
fn read_calls(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("syscr:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A log made by real shims

/// Invocations recorded by real shims, oldest first.
#[derive(Debug)]
struct RealLog {
    _up: Upstream,
    /// npm install left-pad: runs `aws s3 ls` (nested), then one denied
    /// CONNECT; exit 3. The nested aws chains through npm's gate, so npm
    /// has an allowed row for the aws tunnel too.
    outer: String,
    /// The nested aws: observe mode, one tunnel to the npm registry (through
    /// npm's gate), exit 0.
    inner: String,
    /// npm install: one allowed tunnel carrying 12 bytes each way, exit 0.
    tunnel: String,
    /// pip install: one denied CONNECT, then its shim is SIGKILLed (no end row).
    killed: String,
}

/// Empties the sandbox's state directory between sessions.
fn clear_state(g: &Sandbox) {
    for entry in fs::read_dir(&g.state).unwrap() {
        let _ = fs::remove_file(entry.unwrap().path());
    }
}

fn real_log(g: &Sandbox) -> RealLog {
    let up = Upstream::echo();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);

    // A real npm that runs aws by name (the shim first on PATH), whose
    // request reaches the registry (through aws's gate, then npm's: gates
    // chain), then makes a denied request of its own.
    let net = g.net();
    g.shim("aws");
    g.tool(
        "aws",
        &format!("{net} proxy-echo registry.npmjs.org 443 16 > /dev/null\nexit 0\n"),
    );
    g.tool(
        "npm",
        &format!(
            "NET={net}\nrec \"$@\"\naws s3 ls\n{}",
            as_tool(&[("denied", "proxy-echo denied.example 443 0"), ("exit", "3")])
        ),
    );
    let mut cmd = g.shim_cmd("npm", ["install", "left-pad"]);
    cmd.env("CLI_GUARD_RESOLVE", &resolve);
    let out = g.run(cmd);
    out.expect_code(3);
    let outer = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap())
        .audit_id()
        .to_owned();
    let log = g.log();
    let inner = log
        .rows()
        .kind("start")
        .under(&outer)
        .first()
        .map(|r| r.audit_id().to_owned());
    let Some(inner) = inner else {
        panic!("no nested start row under {outer}\n\n{}", out.report());
    };
    check_eq!(
        out,
        log.rows().of(&inner).kind("egress_close").len(),
        1,
        "the nested aws opened one tunnel"
    );
    let rows: Vec<(Value, Value)> = log
        .rows()
        .of(&outer)
        .kind("egress")
        .iter()
        .map(|r| (r["host"].clone(), r["status"].clone()))
        .collect();
    check_eq!(
        out,
        rows,
        vec![
            ("registry.npmjs.org".into(), 200.into()),
            ("denied.example".into(), 403.into())
        ],
        "the outer npm: the nested tunnel through it, then its own denial"
    );

    // An allowed tunnel with bytes both ways.
    clear_state(g);
    let (run, env) = g.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let tunnel = env.audit_id().to_owned();
    let proxy = env.proxy();
    proxy.echo_tunnel_and_close(&run, NPM_REGISTRY, b"hello", b" world!");
    g.finish(run, 0);

    // A denied request, then the shim is SIGKILLed: no end row.
    clear_state(g);
    let (run, env) = g.session("pip", &[]);
    let killed = env.audit_id().to_owned();
    check_eq!(run, env.proxy().connect("evil.example:443").status, 403, "denied");
    send(run.pid(), Signal::SIGKILL);
    let out = run.wait();
    check_eq!(out, out.signal(), Some(9), "the shim was SIGKILLed");
    clear_state(g);

    RealLog {
        _up: up,
        outer,
        inner,
        tunnel,
        killed,
    }
}

// ---------------------------------------------------------------------------
// Folding

#[test]
fn audit_folds_each_invocation_with_its_egress_rows_and_nested_invocations() {
    let g = Sandbox::new();
    let r = real_log(&g);
    let log = g.log();
    let out = audit(&g, &[]);
    out.expect_code(0);
    let text = out.stdout();

    check_eq!(
        out,
        top_ids(&text),
        vec![r.outer.clone(), r.tunnel.clone(), r.killed.clone()],
        "one entry per invocation, newest last, the nested one not on its own"
    );
    check_eq!(
        out,
        nested_ids(&text),
        vec![r.inner.clone()],
        "the nested invocation beneath its parent"
    );
    for id in [&r.outer, &r.inner, &r.tunnel, &r.killed] {
        check_eq!(
            out,
            text.lines().filter(|l| l.contains(id.as_str())).count(),
            1,
            "{id} is shown once"
        );
    }

    let start_ts = |id: &str| {
        log.rows().of(id).kind("start")[0]["ts"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let end_ms = |id: &str| log.rows().of(id).kind("end")[0]["duration_ms"].as_u64().unwrap();
    let close = |id: &str| log.rows().of(id).kind("egress_close")[0].clone();

    // The outer npm: time, tool, mode, exit, duration, counts, ID, command line.
    let (entry, rows) = block(&text, &r.outer);
    let (time, dur) = (shown_time(&start_ts(&r.outer)), shown_duration(end_ms(&r.outer)));
    check!(
        out,
        entry.starts_with(&time)
            && in_order(
                entry,
                &[
                    &time,
                    " npm ",
                    " enforce ",
                    " exit 3 ",
                    &dur,
                    " 1 allowed ",
                    " 1 denied ",
                    &r.outer,
                    " npm install left-pad"
                ]
            ),
        "outer entry line: {entry:?}"
    );
    check_eq!(
        out,
        rows.len(),
        2,
        "outer: its egress rows (then the nested entry): {rows:?}"
    );
    let c = close(&r.outer);
    check!(
        out,
        rows[0].starts_with("    ")
            && in_order(
                rows[0],
                &[
                    "allow",
                    "200",
                    "registry.npmjs.org:443",
                    &format!("{} up", shown_size(c["bytes_up"].as_u64().unwrap())),
                    &format!("{} down", shown_size(c["bytes_down"].as_u64().unwrap())),
                ]
            ),
        "outer's first egress row, the nested tunnel through it: {:?}",
        rows[0]
    );
    check!(
        out,
        rows[1].starts_with("    ") && in_order(rows[1], &["deny", "403", "denied.example:443", "allowlist"]),
        "outer's own denied row: {:?}",
        rows[1]
    );

    // The nested aws, indented with └, and its tunnel.
    let (entry, rows) = block(&text, &r.inner);
    let (time, dur) = (shown_time(&start_ts(&r.inner)), shown_duration(end_ms(&r.inner)));
    check!(
        out,
        entry.starts_with("    └ ")
            && in_order(
                entry,
                &[
                    &time,
                    " aws ",
                    " observe ",
                    " exit 0 ",
                    &dur,
                    " 1 allowed ",
                    " 0 denied ",
                    &r.inner,
                    " aws s3 ls"
                ]
            ),
        "nested entry line: {entry:?}"
    );
    let c = close(&r.inner);
    let (up, down) = (c["bytes_up"].as_u64().unwrap(), c["bytes_down"].as_u64().unwrap());
    check!(out, up > 0 && down > 0, "the nested tunnel carried bytes: {c}");
    check_eq!(out, rows.len(), 1, "nested: one egress row: {rows:?}");
    check!(
        out,
        rows[0].starts_with("      ")
            && in_order(
                rows[0],
                &[
                    "allow",
                    "200",
                    "registry.npmjs.org:443",
                    &format!("{} up", shown_size(up)),
                    &format!("{} down", shown_size(down)),
                    &shown_duration(c["duration_ms"].as_u64().unwrap()),
                ]
            ),
        "nested egress row, indented deeper: {:?}",
        rows[0]
    );

    // The tunnel: bytes up and down, duration.
    let (entry, rows) = block(&text, &r.tunnel);
    check!(
        out,
        in_order(
            entry,
            &[
                " npm ",
                " enforce ",
                " exit 0 ",
                " 1 allowed ",
                " 0 denied ",
                &r.tunnel,
                " npm install"
            ]
        ),
        "tunnel entry line: {entry:?}"
    );
    let c = close(&r.tunnel);
    check_eq!(
        out,
        (c["bytes_up"].as_u64(), c["bytes_down"].as_u64()),
        (Some(12), Some(12)),
        "close row"
    );
    check_eq!(out, rows.len(), 1, "tunnel: one egress row: {rows:?}");
    check!(
        out,
        in_order(
            rows[0],
            &[
                "allow",
                "200",
                "registry.npmjs.org:443",
                "12 B up",
                "12 B down",
                &shown_duration(c["duration_ms"].as_u64().unwrap())
            ]
        ),
        "tunnel egress row: {:?}",
        rows[0]
    );

    // The SIGKILLed pip: no end row.
    let (entry, rows) = block(&text, &r.killed);
    check!(
        out,
        in_order(
            entry,
            &[
                " pip ",
                " enforce ",
                " running? ",
                " 0 allowed ",
                " 1 denied ",
                &r.killed,
                " pip install"
            ]
        ),
        "killed entry line: {entry:?}"
    );
    check!(
        out,
        rows.len() == 1 && in_order(rows[0], &["deny", "403", "evil.example:443"]),
        "killed: its denied row: {rows:?}"
    );

    // Aligned in columns: the audit ID and the target start at the same
    // column on every line of their kind and depth.
    let tops: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    let id_cols: BTreeSet<Option<usize>> = tops
        .iter()
        .map(|l| column(l, &id_in(l).unwrap_or_default()))
        .collect();
    check_eq!(out, id_cols.len(), 1, "audit IDs in one column: {tops:#?}");
    let row_cols: BTreeSet<Option<usize>> = [
        (r.outer.as_str(), "denied.example"),
        (r.tunnel.as_str(), "registry.npmjs.org"),
        (r.killed.as_str(), "evil.example"),
    ]
    .iter()
    .map(|(id, host)| column(block(&text, id).1.last().copied().unwrap_or_default(), host))
    .collect();
    check_eq!(out, row_cols.len(), 1, "egress targets in one column");
}

/// Invocations written by hand into `audit.jsonl.1` (read before the live
/// log), for the filters: old timestamps, a nested denial, out-of-order ends.
#[derive(Debug)]
struct Written {
    /// npm, 2020: denied, exit 1.
    old: String,
    /// gh, 2026-01-01T09:59:59.999Z: allowed.
    early: String,
    /// pip, 2026-01-01T10:00:00.000Z exactly.
    edge: String,
    /// cargo, 11:00, with a nested gh that was denied.
    parent: String,
    child: String,
    /// Started before `quick`, ended after it.
    late: String,
    quick: String,
}

fn write_old_rows(g: &Sandbox) -> Written {
    let w = Written {
        old: sid(10),
        early: sid(11),
        edge: sid(12),
        parent: sid(13),
        child: sid(14),
        late: sid(15),
        quick: sid(16),
    };
    let t = |hms: &str| format!("2026-01-01T{hms}Z");
    let lines = vec![
        start_row(
            "2020-01-01T00:00:00.000Z",
            &w.old,
            None,
            "npm",
            &["npm", "install", "old"],
        ),
        egress_row(
            "2020-01-01T00:00:00.100Z",
            &w.old,
            1,
            "npm",
            "evil.example",
            443,
            false,
        ),
        end_row("2020-01-01T00:00:00.200Z", &w.old, 1, 200, (0, 1)),
        start_row(&t("09:59:59.999"), &w.early, None, "gh", &["gh", "pr", "list"]),
        egress_row(&t("10:00:00.100"), &w.early, 1, "gh", "api.github.com", 443, true),
        close_row(
            &t("10:00:00.200"),
            &w.early,
            1,
            ("api.github.com", 443),
            (100, 2000),
        ),
        end_row(&t("10:00:00.300"), &w.early, 0, 301, (1, 0)),
        start_row(&t("10:00:00.000"), &w.edge, None, "pip", &["pip", "list"]),
        end_row(&t("10:00:00.500"), &w.edge, 0, 500, (0, 0)),
        start_row(&t("11:00:00.000"), &w.parent, None, "cargo", &["cargo", "build"]),
        start_row(
            &t("11:00:00.100"),
            &w.child,
            Some(w.parent.as_str()),
            "gh",
            &["gh", "release", "view"],
        ),
        egress_row(
            &t("11:00:00.200"),
            &w.child,
            1,
            "gh",
            "blocked.example",
            443,
            false,
        ),
        end_row(&t("11:00:00.300"), &w.child, 0, 200, (0, 1)),
        end_row(&t("11:00:00.400"), &w.parent, 0, 400, (0, 0)),
        start_row(&t("11:00:01.000"), &w.late, None, "npm", &["npm", "ci"]),
        start_row(&t("11:00:02.000"), &w.quick, None, "npm", &["npm", "view", "x"]),
        end_row(&t("11:00:03.000"), &w.quick, 0, 1000, (0, 0)),
        end_row(&t("11:00:04.000"), &w.late, 0, 3000, (0, 0)),
    ];
    write_lines(&rotated(&g.audit, 1), &lines);
    w
}

#[test]
fn audit_filters_by_denied_tool_since_id_and_last_and_their_combinations() {
    let g = Sandbox::new();
    let r = real_log(&g);
    let w = write_old_rows(&g);
    let log = g.log();
    let now = log.rows().of(&r.outer).kind("start")[0]["ts"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        now.as_str() > "2026-01-02",
        "this test writes rows dated 2026-01-01 as the past; the clock says {now}"
    );

    let unknown = sid(999);
    let all = [
        &w.old, &w.early, &w.edge, &w.parent, &w.quick, &w.late, &r.outer, &r.tunnel, &r.killed,
    ];
    let cases: Vec<(Vec<&str>, Vec<&String>)> = vec![
        (vec![], all.to_vec()),
        (vec!["--denied"], vec![&w.old, &w.parent, &r.outer, &r.killed]),
        (vec!["--tool", "gh"], vec![&w.early, &w.parent]),
        (vec!["--tool", "aws"], vec![&r.outer]),
        (vec!["--tool=pip"], vec![&w.edge, &r.killed]),
        (
            vec!["--tool", "npm"],
            vec![&w.old, &w.quick, &w.late, &r.outer, &r.tunnel],
        ),
        (vec!["--tool", "docker"], vec![]),
        (vec!["--since", "1h"], vec![&r.outer, &r.tunnel, &r.killed]),
        (
            vec!["--since", "2026-01-01T10:00Z"],
            vec![
                &w.edge, &w.parent, &w.quick, &w.late, &r.outer, &r.tunnel, &r.killed,
            ],
        ),
        (
            vec!["--since=2026-01-01T10:00:00.001Z"],
            vec![&w.parent, &w.quick, &w.late, &r.outer, &r.tunnel, &r.killed],
        ),
        (
            vec!["--since", "2026-01-01"],
            vec![
                &w.early, &w.edge, &w.parent, &w.quick, &w.late, &r.outer, &r.tunnel, &r.killed,
            ],
        ),
        (vec!["--id", r.outer.as_str()], vec![&r.outer]),
        (vec!["--id", r.inner.as_str()], vec![&r.inner]),
        (vec!["--id", w.child.as_str()], vec![&w.child]),
        (vec!["--id", unknown.as_str()], vec![]),
        (vec!["--last", "1"], vec![&r.killed]),
        (vec!["--last", "2"], vec![&r.tunnel, &r.killed]),
        (vec!["--last", "100"], all.to_vec()),
        // Combinations.
        (vec!["--denied", "--tool", "npm"], vec![&w.old, &r.outer]),
        (vec!["--denied", "--last", "1"], vec![&r.killed]),
        (vec!["--tool", "npm", "--last", "2"], vec![&r.outer, &r.tunnel]),
        (vec!["--tool", "gh", "--denied"], vec![&w.parent]),
        (vec!["--since", "1h", "--tool", "pip"], vec![&r.killed]),
        (vec!["--since", "1h", "--denied", "--tool", "npm"], vec![&r.outer]),
        (
            vec!["--since", "2026-01-01T10:00Z", "--denied", "--last", "2"],
            vec![&r.outer, &r.killed],
        ),
        (vec!["--id", r.outer.as_str(), "--tool", "aws"], vec![&r.outer]),
        (vec!["--id", r.outer.as_str(), "--tool", "pip"], vec![]),
        (vec!["--id", r.inner.as_str(), "--denied"], vec![]),
        (vec!["--id", w.parent.as_str(), "--denied"], vec![&w.parent]),
        (
            vec!["--id", w.child.as_str(), "--since", "2026-01-01T10:00Z"],
            vec![&w.child],
        ),
    ];
    for (args, want) in &cases {
        let out = audit(&g, args);
        out.expect_code(0);
        let want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        check_eq!(out, top_ids(&out.stdout()), want, "audit {args:?}");
    }

    // --id: an invocation with what is nested under it; a nested ID alone.
    let out = audit(&g, &["--id", &r.outer]);
    check_eq!(
        out,
        nested_ids(&out.stdout()),
        vec![r.inner.clone()],
        "--id outer shows the nested aws"
    );
    let out = audit(&g, &["--id", &r.inner]);
    let text = out.stdout();
    check!(
        out,
        !text.contains(&r.outer) && nested_ids(&text).is_empty() && text.contains(" aws s3 ls"),
        "--id of a nested invocation shows it alone, as an entry of its own"
    );
    // --tool matches nested invocations, and shows the whole tree.
    let out = audit(&g, &["--tool", "gh", "--denied"]);
    check_eq!(
        out,
        nested_ids(&out.stdout()),
        vec![w.child.clone()],
        "the denied gh beneath its cargo"
    );
    check!(
        out,
        in_order(
            &out.stdout(),
            &[&w.parent, "cargo build", &w.child, "blocked.example:443"]
        ),
        "the nested denial under its parent"
    );
}

// ---------------------------------------------------------------------------
// --json

/// Checks one folded JSON object against the raw rows of `id`, that
/// invocation alone: flat, what ran under it in objects of their own.
fn check_json(out: &Outcome, j: &Row, log: &Log, id: &str) {
    check_eq!(out, j["audit_id"], id, "audit_id");
    let start = log.rows().of(id).kind("start");
    check_eq!(out, start.len(), 1, "{id}: one start row");
    for (k, v) in start[0].as_object().unwrap() {
        // The row's link in the log's chain is the row's, not the
        // invocation's.
        if !matches!(k.as_str(), "kind" | "seq" | "prev_sha256") {
            check_eq!(out, &j[k.as_str()], v, "{id}: start field {k}");
        }
    }
    match log.rows().of(id).kind("end").first() {
        Some(end) => {
            for (k, v) in end.as_object().unwrap() {
                match k.as_str() {
                    "kind" | "audit_id" | "seq" | "prev_sha256" => {}
                    "ts" => check_eq!(out, &j["end_ts"], v, "{id}: the end's ts as end_ts"),
                    _ => check_eq!(out, &j[k.as_str()], v, "{id}: end field {k}"),
                }
            }
        }
        None => {
            check_eq!(out, j["end_ts"], Value::Null, "{id}: no end row: end_ts null");
            check!(out, j.get("exit_code").is_none(), "{id}: no end fields: {j}");
        }
    }
    let egress = log.rows().of(id).kind("egress");
    let closes = log.rows().of(id).kind("egress_close");
    let rows = j["egress"].as_array().cloned().unwrap_or_default();
    check_eq!(
        out,
        rows.len(),
        egress.len(),
        "{id}: one egress entry per egress row"
    );
    for (raw, row) in egress.iter().zip(&rows) {
        for (k, v) in raw.as_object().unwrap() {
            if !matches!(k.as_str(), "kind" | "audit_id" | "seq" | "prev_sha256") {
                check_eq!(out, &row[k.as_str()], v, "{id}: egress field {k}");
            }
        }
        match closes.iter().find(|c| c["conn"] == raw["conn"]) {
            Some(c) => {
                for k in ["bytes_up", "bytes_down", "duration_ms"] {
                    check_eq!(out, &row[k], &c[k], "{id}: close field {k} merged in");
                }
                check_eq!(
                    out,
                    &row["closed_ts"],
                    &c["ts"],
                    "{id}: the close's ts as closed_ts"
                );
            }
            None => check!(
                out,
                row.get("bytes_up").is_none(),
                "{id}: no close, no bytes: {row}"
            ),
        }
    }
    check!(
        out,
        j.get("children").is_none(),
        "{id}: flat, nothing nested in it: {j}"
    );
}

/// The `audit_id`s of `--json` objects, in order.
fn json_ids(out: &Outcome, what: &str) -> Vec<String> {
    Log::parse(&out.stdout, what)
        .iter()
        .map(|o| o["audit_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn audit_json_is_one_flat_object_per_invocation_nested_ones_with_their_parent_id() {
    let g = Sandbox::new();
    let r = real_log(&g);
    let log = g.log();
    let out = audit(&g, &["--json"]);
    out.expect_code(0);
    let objects = Log::parse(&out.stdout, "audit --json");
    let ids: Vec<&str> = objects
        .iter()
        .map(|o| o["audit_id"].as_str().unwrap_or(""))
        .collect();
    check_eq!(
        out,
        ids,
        vec![
            r.outer.as_str(),
            r.inner.as_str(),
            r.tunnel.as_str(),
            r.killed.as_str()
        ],
        "one object per invocation, the nested aws right after its npm"
    );
    for (o, id) in objects.iter().zip([&r.outer, &r.inner, &r.tunnel, &r.killed]) {
        check_json(&out, o, &log, id);
    }
    check_eq!(out, objects[1]["tool"], "aws", "the nested aws");
    check_eq!(
        out,
        objects[1]["parent_audit_id"],
        r.outer.as_str(),
        "the nested aws names its npm"
    );
    check_eq!(
        out,
        objects[0]["parent_audit_id"],
        Value::Null,
        "npm has no parent"
    );
    check_eq!(out, objects[2]["egress"][0]["bytes_up"], 12, "bytes up");
    check_eq!(out, objects[2]["egress"][0]["bytes_down"], 12, "bytes down");

    // Filters apply to --json too, and a nested ID comes out on its own.
    let out = audit(&g, &["--json", "--id", &r.inner]);
    out.expect_code(0);
    let objects = Log::parse(&out.stdout, "audit --json --id");
    check_eq!(out, objects.len(), 1, "one object");
    check_json(&out, &objects[0], &log, &r.inner);
    // The outer ID: npm's object and aws's, apart.
    let out = audit(&g, &["--json", "--id", &r.outer]);
    out.expect_code(0);
    let objects = Log::parse(&out.stdout, "audit --json --id outer");
    check_eq!(out, objects.len(), 2, "npm's object, then aws's");
    check_json(&out, &objects[0], &log, &r.outer);
    check_json(&out, &objects[1], &log, &r.inner);
    // --tool picks the nested invocation itself, not the npm it ran under.
    let out = audit(&g, &["--json", "--tool", "aws"]);
    out.expect_code(0);
    check_eq!(
        out,
        json_ids(&out, "audit --json --tool aws"),
        vec![r.inner.clone()],
        "only aws's object"
    );
    let out = audit(&g, &["--json", "--denied", "--last", "1"]);
    let objects = Log::parse(&out.stdout, "audit --json --denied --last 1");
    check_eq!(out, objects.len(), 1, "one object");
    check_eq!(out, objects[0]["audit_id"], r.killed.as_str(), "the last denied");
}

#[test]
fn audit_json_filters_select_invocations_not_trees() {
    let g = Sandbox::new();
    let r = real_log(&g);
    let w = write_old_rows(&g);
    let all = [
        &w.old, &w.early, &w.edge, &w.parent, &w.child, &w.quick, &w.late, &r.outer, &r.inner, &r.tunnel,
        &r.killed,
    ];
    let cases: Vec<(Vec<&str>, Vec<&String>)> = vec![
        (vec![], all.to_vec()),
        // The cargo whose nested gh was denied was not denied itself.
        (vec!["--denied"], vec![&w.old, &w.child, &r.outer, &r.killed]),
        (vec!["--tool", "gh"], vec![&w.early, &w.child]),
        (vec!["--tool", "cargo"], vec![&w.parent]),
        (vec!["--tool", "aws"], vec![&r.inner]),
        (vec!["--tool", "gh", "--denied"], vec![&w.child]),
        (vec!["--id", w.parent.as_str()], vec![&w.parent, &w.child]),
        (vec!["--id", w.child.as_str()], vec![&w.child]),
        (vec!["--id", w.parent.as_str(), "--denied"], vec![&w.child]),
        (vec!["--id", r.inner.as_str(), "--denied"], vec![]),
        (vec!["--id", r.outer.as_str(), "--tool", "npm"], vec![&r.outer]),
        // Each by its own start: the gh started after its cargo.
        (
            vec!["--since", "2026-01-01T11:00:00.050Z", "--last", "3"],
            vec![&r.inner, &r.tunnel, &r.killed],
        ),
        (
            vec!["--since", "2026-01-01T11:00:00.050Z", "--tool", "gh"],
            vec![&w.child],
        ),
        (vec!["--id", r.outer.as_str(), "--last", "1"], vec![&r.inner]),
    ];
    for (args, want) in &cases {
        let mut argv = vec!["--json"];
        argv.extend(args);
        let out = audit(&g, &argv);
        out.expect_code(0);
        let want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        check_eq!(out, json_ids(&out, "audit --json"), want, "audit --json {args:?}");
    }
}

// ---------------------------------------------------------------------------
// --follow

#[test]
fn audit_follow_prints_invocations_as_they_end_across_a_rotation() {
    let g = Sandbox::new();
    g.tool("npm", "exit 0\n");
    g.run(g.shim_cmd("npm", ["first"])).expect_code(0);
    let first = g.log()[0]["audit_id"].as_str().unwrap().to_owned();

    // An invocation in flight when the follower starts.
    let (run, env) = g.session("pip", &[]);
    let flying = env.audit_id().to_owned();
    check_eq!(run, env.proxy().connect("evil.example:443").status, 403, "denied");

    let mut follower = Follower::start(&g, &[]);
    let seen = |follower: &Follower, needle: &str| follower.shows(needle, Duration::from_secs(20));
    check!(
        follower,
        seen(&follower, &first),
        "the log so far is printed first"
    );
    // Once it has read past the running invocation's rows, it would have
    // printed it by now.
    follower.caught_up();
    check!(
        follower,
        !follower.printed().contains(&flying),
        "an invocation still running is not printed yet"
    );

    g.finish(run, 0);
    check!(
        follower,
        seen(&follower, "evil.example:443"),
        "the invocation is printed once it ends"
    );
    let text = follower.printed();
    let (entry, rows) = block(&text, &flying);
    check!(
        follower,
        in_order(
            entry,
            &[" pip ", " exit 0 ", " 1 denied ", &flying, " pip install"]
        ),
        "folded with the start row read before following began: {entry:?}"
    );
    check!(
        follower,
        rows.len() == 1 && rows[0].contains("deny"),
        "its egress row: {rows:?}"
    );

    // Grow the log to the cap: the next row rotates it.
    let len = fs::metadata(&g.audit).unwrap().len();
    let mut pad = vec![b' '; usize::try_from(ROTATE_AT - len).unwrap()];
    pad.push(b'\n');
    append(&g.audit, &pad);
    drop(pad);
    run_quiet(g.shim_cmd("npm", ["second"])).expect_code(0);
    check!(follower, rotated(&g.audit, 1).exists(), "the log was rotated");
    let second = Log::read(&g.audit)[0]["audit_id"].as_str().unwrap().to_owned();
    check!(
        follower,
        seen(&follower, &format!("{second}  npm second")),
        "an invocation written after the rotation is printed"
    );

    let running = follower.run.poll().is_none();
    check!(follower, running, "--follow keeps running");
    let stopped = follower.stop();
    check_eq!(
        stopped,
        top_ids(&stopped.text),
        vec![first, flying, second],
        "each invocation printed once, in order"
    );
    check!(
        stopped,
        !stopped.out.stderr().contains("skipped"),
        "nothing skipped"
    );
}

/// Writes invocations of three rows each (start, a denied egress row with a
/// long reason, end) to `path` until it is about `size` bytes; returns their
/// IDs. Few lines, many bytes: quick to fold even in a debug build.
fn fill_with_invocations(path: &Path, size: u64) -> Vec<String> {
    let t = "2026-01-01T00:00:00.000Z";
    let reason = "padding ".repeat(500);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let (mut written, mut ids) = (0, Vec::new());
    while written < size {
        let id = sid(100_000 + ids.len() as u64);
        let egress = format!(
            r#"{{"ts":"{t}","kind":"egress","audit_id":"{id}","conn":1,"tool":"npm","mode":"enforce","method":"CONNECT","host":"evil.example","port":443,"decision":"deny","status":403,"reason":"{reason}"}}"#
        );
        for line in [
            start_row(t, &id, None, "npm", &["npm", "ci"]),
            egress,
            end_row(t, &id, 1, 5, (0, 1)),
        ] {
            w.write_all(line.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
            written += line.len() as u64 + 1;
        }
        ids.push(id);
    }
    w.flush().unwrap();
    ids
}

#[test]
fn audit_follow_reads_a_big_live_log_with_bounded_memory() {
    const LIMIT_KIB: u64 = 16 * 1024;
    let g = Sandbox::new();
    let ids = fill_with_invocations(&g.audit, 24 * 1024 * 1024);
    let last = ids.last().unwrap().clone();
    let follower = Follower::start(&g, &["--last", "1"]);
    check!(
        follower,
        follower.shows(&last, Duration::from_secs(60)),
        "the last invocation of the log is printed"
    );
    let peak = vm_hwm_kib(follower.run.pid()).unwrap_or(0);
    check_eq!(
        follower,
        top_ids(&follower.printed()),
        vec![last],
        "--last 1 holds back all but the last"
    );
    check!(
        follower,
        peak > 0 && peak < LIMIT_KIB,
        "peak RSS {peak} KiB after reading a 24 MiB live log: --follow must stream it too"
    );
    follower.stop();
}

#[test]
fn audit_follow_applies_filters_and_last_to_what_comes_later() {
    let g = Sandbox::new();
    g.tool(
        "npm",
        &format!(
            "{} proxy-echo denied.example 443 0 > /dev/null\nexit 0\n",
            g.net()
        ),
    );
    g.tool("pip", "exit 0\n");
    for args in [["install", "a"], ["install", "b"]] {
        run_quiet(g.shim_cmd("npm", args)).expect_code(0);
    }
    let log = g.log();
    let before = log.rows().kind("start").ids();
    let follower = Follower::start(&g, &["--last", "1", "--denied", "--json"]);
    check!(
        follower,
        follower.shows(before[1], Duration::from_secs(20)),
        "the last denied one so far"
    );
    // What comes next, it reads as it comes.
    follower.caught_up();
    run_quiet(g.shim_cmd("pip", ["list"])).expect_code(0);
    run_quiet(g.shim_cmd("npm", ["install", "c"])).expect_code(0);
    let log = g.log();
    let after = log
        .rows()
        .kind("start")
        .tool("npm")
        .ids()
        .last()
        .map(|id| id.to_string())
        .unwrap();
    check!(
        follower,
        follower.shows(&after, Duration::from_secs(20)),
        "a later denied npm is printed"
    );
    // It has read the whole log, the clean pip's rows included: all it
    // would print, it has printed.
    follower.caught_up();
    let out = follower.stop();
    let objects = Log::parse(out.text.as_bytes(), "audit --follow --json");
    let ids: Vec<&str> = objects
        .iter()
        .map(|o| o["audit_id"].as_str().unwrap_or(""))
        .collect();
    check_eq!(
        out,
        ids,
        vec![before[1], after.as_str()],
        "--last 1 of the log, then only what passes --denied (not the clean pip)"
    );
}

// ---------------------------------------------------------------------------
// A big log

/// The peak RSS so far of a running process, in KiB.
fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cli-guard ARGS` and returns its outcome and peak RSS in KiB (from
/// GNU time if present, else VmHWM polled from /proc while it runs).
fn run_measured(g: &Sandbox, args: &[&str]) -> (Outcome, u64) {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let report = g.root().join("time.out");
        let mut cmd = g.command(time);
        cmd.arg("-f").arg("%M").arg("-o").arg(&report).arg(BIN).args(args);
        let out = Running::spawn(cmd, None, None).wait_for(BIG_TIMEOUT);
        let text = fs::read_to_string(&report).unwrap_or_default();
        if let Some(kib) = text.lines().last().and_then(|l| l.trim().parse().ok()) {
            return (out, kib);
        }
        panic!("cannot read the peak RSS from {text:?}\n\n{}", out.report());
    }
    let mut run = Running::spawn(g.cli_guard(args), None, None);
    let (pid, mut peak) = (run.pid(), 0);
    let deadline = Instant::now() + BIG_TIMEOUT;
    while run.poll().is_none() && Instant::now() < deadline {
        peak = peak.max(vm_hwm_kib(pid).unwrap_or(0));
        thread::sleep(Duration::from_millis(5));
    }
    (run.wait_for(BIG_TIMEOUT), peak)
}

#[test]
fn a_large_log_is_folded_in_one_streaming_pass_with_bounded_memory() {
    // 40,000 invocations of 5 rows: 200,000 lines, about 47 MB. A debug
    // build folds some 50,000 such lines a second (1,000,000 lines would take
    // about 20 s alone, more beside the rest of the suite), so this is the
    // size that fits the test's budget; the log is still well over the
    // memory limit, so holding it (or its folded rows) would not pass.
    const INVOCATIONS: u64 = 40_000;
    const LIMIT_KIB: u64 = 32 * 1024;
    let g = Sandbox::new();
    fs::create_dir_all(g.audit.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&g.audit).unwrap());
    let mut denied = Vec::new();
    for i in 0..INVOCATIONS {
        let id = sid(i);
        let ts = format!("2026-01-01T{:02}:{:02}:{:02}.000Z", i / 3600, i / 60 % 60, i % 60);
        let deny = i % 1000 == 999;
        if deny {
            denied.push(id.clone());
        }
        let pkg = format!("pkg-{i}");
        for line in [
            start_row(&ts, &id, None, "npm", &["npm", "install", &pkg]),
            egress_row(&ts, &id, 1, "npm", "registry.npmjs.org", 443, true),
            close_row(&ts, &id, 1, ("registry.npmjs.org", 443), (700, 90_000)),
            egress_row(
                &ts,
                &id,
                2,
                "npm",
                if deny {
                    "evil.example"
                } else {
                    "registry.npmjs.org"
                },
                443,
                !deny,
            ),
            end_row(&ts, &id, 0, 40, if deny { (1, 1) } else { (2, 0) }),
        ] {
            w.write_all(line.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
        }
    }
    w.flush().unwrap();
    drop(w);
    let size = fs::metadata(&g.audit).unwrap().len();
    assert!(
        size > LIMIT_KIB * 1024 * 5 / 4,
        "the log ({size} bytes) must be well over the memory limit"
    );

    let started = Instant::now();
    let (out, peak_kib) = run_measured(&g, &["audit", "--denied"]);
    let took = started.elapsed();
    out.expect_code(0);
    check_eq!(
        out,
        top_ids(&out.stdout()),
        denied,
        "every invocation folded: exactly the denied ones, in order"
    );
    check_eq!(out, out.stderr(), "", "no complaints");
    let text = out.stdout();
    let (entry, rows) = block(&text, denied.last().unwrap());
    check!(
        out,
        in_order(
            entry,
            &[" exit 0 ", " 1 allowed ", " 1 denied ", " npm install pkg-39999"]
        ) && rows.len() == 2,
        "the last invocation, whole: {entry:?} {rows:?}"
    );
    check!(
        out,
        peak_kib < LIMIT_KIB,
        "peak RSS {peak_kib} KiB for a {size}-byte log (took {took:?}): memory must stay bounded"
    );
    eprintln!(
        "{} lines ({size} bytes) in {took:?}, peak RSS {peak_kib} KiB",
        INVOCATIONS * 5
    );
}

/// 40,000 invocations whose shims never wrote an `end` row (SIGKILLed)
/// fold to the end of the log and the last one is shown, as for ended ones.
/// How long that takes is the benchmark's to judge, not a test's: the wait
/// is only a bound on a hang.
#[test]
fn a_log_of_unended_invocations_folds_to_its_end() {
    const N: u64 = 40_000;
    let g = Sandbox::new();
    let ended = g.root().join("ended.jsonl");
    let unended = g.root().join("unended.jsonl");
    let ts = "2026-01-01T00:00:00.000Z";
    let mut a = BufWriter::new(File::create(&ended).unwrap());
    let mut b = BufWriter::new(File::create(&unended).unwrap());
    for i in 0..N {
        let id = sid(i);
        let start = start_row(ts, &id, None, "npm", &["npm", "ci"]);
        writeln!(a, "{start}\n{}", end_row(ts, &id, 0, 1, (0, 0))).unwrap();
        writeln!(
            b,
            "{start}\n{}",
            egress_row(ts, &id, 1, "npm", "evil.example", 443, false)
        )
        .unwrap();
    }
    drop((a, b));
    let last = |file: &Path| {
        let out = Running::spawn(
            g.cli_guard(["audit", "--last", "1", "--file", file.to_str().unwrap()]),
            None,
            None,
        )
        .wait_for(BIG_TIMEOUT);
        out.expect_code(0);
        out.stdout()
    };
    let final_id = sid(N - 1);
    for file in [&ended, &unended] {
        let shown = last(file);
        assert!(
            shown.contains(&final_id) && !shown.contains(&sid(N - 2)),
            "{}: --last 1 shows only the last invocation, {final_id}:\n{shown}",
            file.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Torn and foreign lines

#[test]
fn torn_and_foreign_lines_are_reported_with_their_line_number_and_skipped() {
    let g = Sandbox::new();
    let (a, b, c) = (sid(1), sid(2), sid(3));
    let t = "2026-01-01T00:00:00.000Z";
    // The rotated file, read first: one foreign line on its line 2.
    write_lines(
        &rotated(&g.audit, 1),
        &[
            start_row(t, &c, None, "npm", &["npm", "ci"]),
            r#"{"level":"info","msg":"a line from some other program"}"#.to_owned(),
            end_row(t, &c, 0, 5, (0, 0)),
        ],
    );
    let mut data = Vec::new();
    let mut line = |bytes: &[u8]| {
        data.extend_from_slice(bytes);
        data.push(b'\n');
    };
    line(start_row(t, &a, None, "npm", &["npm", "install"]).as_bytes()); // 1
    line(egress_row(t, &a, 1, "npm", "evil.example", 443, false).as_bytes()); // 2
    line(br#"{"ts":"2026-01-01T00:00:00.000Z","kind":"egr"#); // 3: torn
    line(b"\xff\xfe not UTF-8 \x80\x81"); // 4
    line(br#"{"hello":"world"}"#); // 5: JSON, not an audit record
    line(b""); // 6: empty
    line(b"[1,2,3]"); // 7: JSON, not an object
    line(format!(r#"{{"ts":"{t}","kind":"mystery","audit_id":"{a}"}}"#).as_bytes()); // 8
    line(end_row(t, &a, 1, 9, (0, 1)).as_bytes()); // 9
    line(start_row(t, &b, None, "pip", &["pip", "install"]).as_bytes()); // 10
    line(end_row(t, &b, 0, 9, (0, 0)).as_bytes()); // 11
    data.extend_from_slice(br#"{"ts":"2026-01-01T00:00:01.000Z","kind":"st"#); // 12: torn, no newline
    fs::write(&g.audit, &data).unwrap();

    let out = audit(&g, &[]);
    out.expect_code(0);
    check_eq!(
        out,
        top_ids(&out.stdout()),
        vec![c.clone(), a.clone(), b.clone()],
        "the rest is still folded"
    );
    check!(
        out,
        in_order(&out.stdout(), &[&a, "deny", "evil.example:443"]),
        "rows around the bad lines are kept"
    );
    let skipped: Vec<String> = out
        .stderr()
        .lines()
        .filter(|l| l.contains(": skipped"))
        .map(str::to_owned)
        .collect();
    let live = g.audit.display().to_string();
    let want: Vec<String> = std::iter::once(format!("{}:2: skipped", rotated(&g.audit, 1).display()))
        .chain([3, 4, 5, 7, 8, 12].iter().map(|n| format!("{live}:{n}: skipped")))
        .collect();
    check_eq!(
        out,
        skipped.len(),
        want.len(),
        "one report per bad line (the empty line is not one)"
    );
    for (got, want) in skipped.iter().zip(&want) {
        check!(out, got.contains(want.as_str()), "{got:?} should say {want:?}");
    }

    // --json: stdout stays pure JSON; the reports go to stderr.
    let out = audit(&g, &["--json"]);
    out.expect_code(0);
    check_eq!(
        out,
        Log::parse(&out.stdout, "audit --json").len(),
        3,
        "three objects"
    );
    check_eq!(
        out,
        out.stderr().matches(": skipped").count(),
        7,
        "reported on stderr"
    );
}

#[test]
fn many_bad_lines_are_reported_twenty_in_full_then_counted() {
    let g = Sandbox::new();
    let id = sid(1);
    let t = "2026-01-01T00:00:00.000Z";
    let mut lines = vec![start_row(t, &id, None, "npm", &["npm", "ci"])];
    lines.extend((0..25).map(|i| format!("garbage {i}")));
    lines.push(end_row(t, &id, 0, 5, (0, 0)));
    write_lines(&g.audit, &lines);
    let out = audit(&g, &[]);
    out.expect_code(0);
    check_eq!(out, top_ids(&out.stdout()), vec![id], "folded");
    check_eq!(
        out,
        out.stderr().matches(": skipped").count(),
        20,
        "twenty in full"
    );
    check!(
        out,
        out.stderr().contains("5 more lines skipped (25 in all)"),
        "then a count"
    );
}

// ---------------------------------------------------------------------------
// Colour

/// A log with a denied, failed invocation and a clean one.
fn colour_log(g: &Sandbox) -> String {
    let (bad, good) = (sid(1), sid(2));
    let t = "2026-01-01T00:00:00.000Z";
    write_lines(
        &g.audit,
        &[
            start_row(t, &bad, None, "npm", &["npm", "install"]),
            egress_row(t, &bad, 1, "npm", "evil.example", 443, false),
            end_row(t, &bad, 1, 5, (0, 1)),
            start_row(t, &good, None, "npm", &["npm", "ci"]),
            egress_row(t, &good, 1, "npm", "registry.npmjs.org", 443, true),
            close_row(t, &good, 1, ("registry.npmjs.org", 443), (1, 2)),
            end_row(t, &good, 0, 5, (1, 0)),
        ],
    );
    good
}

/// `cli-guard audit ARGS` on a pseudo-terminal; returns what it wrote there.
fn audit_on_pty(g: &Sandbox, args: &[&str], env: &[(&str, &str)], last: &str) -> String {
    let mut pty = Pty::open();
    let mut cmd = g.cli_guard(std::iter::once("audit").chain(args.iter().copied()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    pty.attach(&mut cmd);
    let out = Running::spawn(cmd, None, Some(pty.transcript.clone())).wait();
    out.expect_code(0);
    let text = || String::from_utf8_lossy(&pty.transcript.lock().unwrap()).into_owned();
    check!(
        out,
        wait_until(WAIT, || text().contains(last)),
        "the output reaches the terminal"
    );
    text()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let g = Sandbox::new();
    let last = colour_log(&g);
    for env in [vec![], vec![("NO_COLOR", "1")]] {
        let mut cmd = g.cli_guard(["audit"]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = g.run(cmd);
        out.expect_code(0);
        check!(out, out.stdout().contains(&last), "output");
        check!(
            out,
            !out.stdout.contains(&0x1b),
            "no escapes into a pipe (env {env:?})"
        );
    }
    let tty = audit_on_pty(&g, &[], &[], &last);
    assert!(tty.contains("\x1b["), "colour on a terminal:\n{tty:?}");
    let tty = audit_on_pty(&g, &[], &[("NO_COLOR", "1")], &last);
    assert!(!tty.contains('\x1b'), "no colour with NO_COLOR=1:\n{tty:?}");
    // no-color.org: only a non-empty NO_COLOR turns colour off.
    let tty = audit_on_pty(&g, &[], &[("NO_COLOR", "")], &last);
    assert!(tty.contains("\x1b["), "colour with NO_COLOR empty:\n{tty:?}");
    let tty = audit_on_pty(&g, &["--json"], &[], &last);
    assert!(!tty.contains('\x1b'), "never in --json:\n{tty:?}");
}

// ---------------------------------------------------------------------------
// --suggest

/// Opens and closes one tunnel per authority through `proxy`.
fn reach(run: &Running, proxy: &Proxy, targets: &[&str]) {
    for target in targets {
        let a = proxy.connect(target);
        check_eq!(run, a.status, 200, "{target}: {}", a.report());
    }
}

#[test]
fn audit_suggest_prints_a_pinned_policy_entry_from_what_the_tool_reached() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let names_443 = [
        "a.pkg.example.com",
        "b.pkg.example.com",
        "c.pkg.example.com",
        "api.other.org",
        "b1.s3.amazonaws.com",
        "b2.s3.amazonaws.com",
        "b3.s3.amazonaws.com",
        "api.kube.example",
    ];
    let mut map: Vec<(String, std::net::SocketAddr)> =
        names_443.iter().map(|n| (format!("{n}:443"), up.addr)).collect();
    map.push(("k8s.example.net:6443".into(), up.addr));
    map.push(("api.kube.example:6443".into(), up.addr));
    let map: Vec<(&str, std::net::SocketAddr)> = map.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let resolve = Sandbox::resolve(&map);

    // Rows written earlier (in the rotated file): first sightings, a denial
    // and another tool's host, which must not count.
    let old = sid(1);
    let t0 = "2026-01-01T00:00:00.000Z";
    write_lines(
        &rotated(&g.audit, 1),
        &[
            start_row(t0, &old, None, "aws", &["aws", "sts", "get-caller-identity"]),
            egress_row(t0, &old, 1, "aws", "api.other.org", 443, true),
            egress_row(t0, &old, 2, "aws", "api.github.com", 443, true),
            egress_row(t0, &old, 3, "aws", "uploads.github.com", 443, true),
            egress_row(t0, &old, 4, "aws", "blocked.example", 443, false),
            end_row(t0, &old, 0, 5, (3, 1)),
            start_row(t0, &sid(2), None, "npm", &["npm", "ci"]),
            egress_row(t0, &sid(2), 1, "npm", "registry.npmjs.org", 443, true),
            end_row(t0, &sid(2), 0, 5, (1, 0)),
        ],
    );

    // Real observe-mode rows: aws and kubectl reaching loopback names and an IP literal.
    let ip_target = format!("127.0.0.1:{}", up.addr.port());
    let (run, env) = g.session("aws", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let mut aws_targets: Vec<String> = names_443[..7].iter().map(|n| format!("{n}:443")).collect();
    aws_targets.push("api.other.org:443".into());
    aws_targets.push("k8s.example.net:6443".into());
    aws_targets.push(ip_target.clone());
    let targets: Vec<&str> = aws_targets.iter().map(String::as_str).collect();
    reach(&run, &env.proxy(), &targets);
    g.finish(run, 0);
    clear_state(&g);
    let (run, env) = g.session("kubectl", &[("CLI_GUARD_RESOLVE", &resolve)]);
    reach(
        &run,
        &env.proxy(),
        &["api.kube.example:443", "api.kube.example:6443"],
    );
    g.finish(run, 0);

    let log = g.log();
    let last_seen = |host: &str| {
        log.rows()
            .kind("egress")
            .host(host)
            .iter()
            .filter_map(|r| r["ts"].as_str())
            .max()
            .unwrap()
            .to_owned()
    };

    let out = audit(&g, &["--suggest", "aws"]);
    out.expect_code(0);
    let text = out.stdout();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let rule_line = |rule: &str| lines.iter().position(|l| l.starts_with(rule));
    check!(
        out,
        text.contains("enforce(\n    \"aws\",\n"),
        "an enforce( block for aws"
    );
    check!(
        out,
        text.contains("11 hosts, 13 connections in 2 invocations"),
        "the summary counts"
    );
    // Exact names on 443, with counts and first/last seen.
    check!(
        out,
        text.contains(&format!(
            "Rule::https(\"api.other.org\"), // 3 connections, {t0} .. {}",
            last_seen("api.other.org")
        )),
        "api.other.org: written once, reached twice"
    );
    for host in ["api.github.com", "uploads.github.com"] {
        check!(
            out,
            text.contains(&format!("Rule::https(\"{host}\"), // 1 connection, {t0} .. {t0}")),
            "{host}: two subdomains are not a wildcard"
        );
    }
    check!(
        out,
        !text.contains("*.github.com"),
        "no wildcard for two subdomains"
    );
    // Three subdomains: one wildcard, flagged for review on the line before.
    let wild = rule_line("Rule::https(\"*.pkg.example.com\"), // 3 connections");
    check!(out, wild.is_some(), "a wildcard for three subdomains");
    let wild = wild.unwrap();
    check!(
        out,
        wild > 0 && lines[wild - 1].starts_with("// REVIEW:") && lines[wild - 1].contains("3 subdomains"),
        "the wildcard is flagged for review"
    );
    for n in ["a", "b", "c"] {
        check!(
            out,
            rule_line(&format!("Rule::https(\"{n}.pkg.example.com\")")).is_none(),
            "{n}.pkg.example.com is covered by the wildcard"
        );
    }
    // A shared host: exact names only.
    for n in ["b1", "b2", "b3"] {
        check!(
            out,
            rule_line(&format!("Rule::https(\"{n}.s3.amazonaws.com\"), // 1 connection")).is_some(),
            "{n}.s3.amazonaws.com exactly"
        );
    }
    check!(
        out,
        !text.contains("*.s3.amazonaws.com") && !text.contains("*.amazonaws.com"),
        "never a wildcard under a shared host"
    );
    check_eq!(
        out,
        lines.iter().filter(|l| l.starts_with("// REVIEW:")).count(),
        2,
        "review comments: the wildcard and the shared host"
    );
    // Another port.
    check!(
        out,
        text.contains(
            "Rule { pattern: \"k8s.example.net\", ports: &[6443], private: false }, // 1 connection"
        ),
        "a non-443 port as a Rule literal"
    );
    // IP literals, denials, other tools.
    check!(
        out,
        lines
            .iter()
            .any(|l| l.starts_with("// Not expressible: ") && l.contains(&ip_target)),
        "the IP literal listed as not expressible"
    );
    check!(
        out,
        rule_line("Rule::https(\"127.0.0.1\")").is_none(),
        "no rule for an IP literal"
    );
    for host in ["blocked.example", "registry.npmjs.org", "api.kube.example"] {
        check!(
            out,
            !text.contains(host),
            "{host}: a denial or another tool's host"
        );
    }
    check!(out, text.contains("\n    ],\n),\n"), "the block is closed");

    let out = audit(&g, &["--suggest", "kubectl"]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(
            "Rule { pattern: \"api.kube.example\", ports: &[443, 6443], private: false }, // 2 connections"
        ),
        "one entry with both ports"
    );
    check!(
        out,
        !out.stdout().contains("api.other.org"),
        "only kubectl's hosts"
    );

    let out = audit(&g, &["--suggest", "gh"]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("nothing to suggest"),
        "no rows, nothing to suggest"
    );
    check!(out, !out.stdout().contains("enforce("), "and no block");
}

// ---------------------------------------------------------------------------
// check

#[test]
fn check_says_what_the_gate_would_decide_and_why_without_dialling() {
    let g = Sandbox::new();
    let expect = |args: &[&str], code: i32, want: &[&str]| {
        let out = g.run(g.cli_guard(std::iter::once("check").chain(args.iter().copied())));
        out.expect_code(code);
        let text = format!("{}{}", out.stdout(), out.stderr());
        for w in want {
            check!(out, text.contains(w), "check {args:?} should say {w:?}");
        }
        out
    };
    // Allow: exit 0, naming the rule; the port defaults to 443.
    expect(
        &["--as", "npm", "registry.npmjs.org"],
        0,
        &["allow", "registry.npmjs.org:443", "rule registry.npmjs.org:443"],
    );
    expect(
        &["--as", "npm", "registry.npmjs.org:443"],
        0,
        &["rule registry.npmjs.org:443"],
    );
    expect(
        &["--as=yarn", "registry.yarnpkg.com"],
        0,
        &["rule registry.yarnpkg.com:443"],
    );
    expect(
        &["--as", "npm", "REGISTRY.NPMJS.ORG."],
        0,
        &["allow", "registry.npmjs.org:443"],
    );
    expect(
        &["--as", "pip", "files.pythonhosted.org"],
        0,
        &["rule files.pythonhosted.org:443"],
    );
    // Deny: exit 1.
    let out = expect(
        &["--as", "npm", "evil.example"],
        1,
        &["deny", "evil.example:443", "registry.npmjs.org:443"],
    );
    check!(out, out.stdout().starts_with("deny"), "the decision first");
    expect(
        &["--as", "npm", "registry.npmjs.org:80"],
        1,
        &["deny", "registry.npmjs.org:80"],
    );
    expect(&["--as", "npm", "sub.registry.npmjs.org"], 1, &["deny"]);
    expect(&["--as", "npm", "[::1]"], 1, &["deny", "[::1]:443"]);
    expect(&["--as", "npm", "104.16.0.1:443"], 1, &["deny"]);
    // Observe mode: anything goes.
    expect(
        &["--as", "aws", "anything.example:8443"],
        0,
        &["allow", "anything.example:8443", "observe"],
    );
    expect(&["--as", "kubectl", "10.0.0.1:6443"], 0, &["allow", "observe"]);
    // Invalid targets: deny.
    for bad in [
        "exa%mple.com",
        "user@registry.npmjs.org",
        "registry.npmjs.org:99999",
        "a..b",
        "bad host",
    ] {
        expect(&["--as", "npm", bad], 1, &["deny"]);
    }
    // Usage errors: exit 2.
    expect(&["--as", "nosuch", "x.example"], 2, &["unknown tool", "npm"]);
    expect(&[], 2, &["usage"]);
    expect(&["--as", "npm"], 2, &["usage"]);
    expect(&["registry.npmjs.org"], 2, &["usage"]);
    expect(&["--as"], 2, &["usage"]);
    expect(&["--as", "npm", "a.example", "b.example"], 2, &["b.example"]);
    expect(&["--as", "npm", "--bogus", "a.example"], 2, &["--help"]);
    // Nothing dialled, nothing logged.
    assert!(!g.audit.exists(), "check writes no audit log");
}

// ---------------------------------------------------------------------------
// Rotation

/// Fills `path` with valid rows of one fake npm invocation (start, denied
/// egress rows with long reasons, end) to at most `size` bytes and within
/// 5 KiB of it; returns its ID and its number of egress rows.
fn prefill(path: &Path, size: u64) -> (String, u64) {
    let id = sid(7);
    let t = "2026-01-01T00:00:00.000Z";
    let reason = "padding ".repeat(500);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut written = 0u64;
    let put = |w: &mut BufWriter<File>, line: &str| {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        line.len() as u64 + 1
    };
    written += put(&mut w, &start_row(t, &id, None, "npm", &["npm", "ci", "prefill"]));
    let mut n = 0;
    loop {
        let row = format!(
            r#"{{"ts":"{t}","kind":"egress","audit_id":"{id}","conn":{},"tool":"npm","mode":"enforce","method":"CONNECT","host":"evil.example","port":443,"decision":"deny","status":403,"reason":"{reason}"}}"#,
            n + 1
        );
        let end_len = end_row(t, &id, 0, 5, (0, n + 1)).len() as u64 + 1;
        if written + row.len() as u64 + 1 + end_len > size {
            break;
        }
        written += put(&mut w, &row);
        n += 1;
    }
    put(&mut w, &end_row(t, &id, 0, 5, (0, n)));
    w.flush().unwrap();
    (id, n)
}

#[test]
fn rotation_under_concurrent_writers_loses_and_duplicates_no_row() {
    const SHIMS: usize = 8;
    const EACH: usize = 25;
    let g = Sandbox::new();
    // Each invocation in a sandbox of its own (its fake tool, its state), all
    // writing the one log.
    let sandboxes = g.sharing_the_log(SHIMS);
    let (pre, pre_rows) = prefill(&g.audit, ROTATE_AT - 16 * 1024);
    let pre_size = fs::metadata(&g.audit).unwrap().len();
    assert!(
        (ROTATE_AT - 24 * 1024..ROTATE_AT - 8 * 1024).contains(&pre_size),
        "prefilled to {pre_size}"
    );
    let sessions: Vec<(Running, ChildEnv)> = sandboxes.iter().map(|sb| sb.session("npm", &[])).collect();
    // Then every proxy at once, as fast as they answer: the rows (about
    // 47 KB) cross the cap mid-burst, with eight writers racing to rotate.
    for statuses in burst(&sessions, EACH, "denied.example:443") {
        assert!(
            statuses.iter().all(|s| *s == 403),
            "every request denied: {statuses:?}"
        );
    }
    for (sb, (run, _)) in sandboxes.iter().zip(sessions) {
        sb.finish(run, 0);
    }

    let (one, live) = (rotated(&g.audit, 1), g.audit.clone());
    assert!(one.exists(), "the writes crossed the cap: audit.jsonl.1 exists");
    assert!(!rotated(&g.audit, 2).exists(), "rotated once, not twice");
    let one_size = fs::metadata(&one).unwrap().len();
    let live_size = fs::metadata(&live).unwrap().len();
    assert!(one_size >= ROTATE_AT, "rotated at the cap: {one_size}");
    assert!(
        live_size > 0 && live_size < ROTATE_AT,
        "a new live log: {live_size}"
    );
    for f in [&one, &live] {
        assert!(
            fs::read(f).unwrap().ends_with(b"\n"),
            "{} ends with a whole line",
            f.display()
        );
    }
    // Every line of both files parses (no torn lines).
    let in_one = Log::read(&one).len();
    let log = Log::read_all(&[&one, &live]);
    let logged: BTreeSet<&str> = log.iter().map(Row::audit_id).collect();
    let kinds = |id: &str| {
        let k = |kind: &str| log.rows().of(id).kind(kind).len();
        (k("start"), k("egress"), k("end"))
    };
    assert_eq!(logged.len(), SHIMS + 1, "the prefill and one ID per invocation");
    assert_eq!(
        kinds(&pre),
        (1, usize::try_from(pre_rows).unwrap(), 1),
        "the prefill is intact"
    );
    let mut straddling = 0;
    for id in logged.iter().copied().filter(|id| *id != pre) {
        let rs = log.rows().of(id);
        assert_eq!(kinds(id), (1, EACH, 1), "{id}: every row exactly once");
        let conns: BTreeSet<u64> = rs.iter().filter_map(|r| r["conn"].as_u64()).collect();
        assert_eq!(conns.len(), EACH, "{id}: no duplicate conn");
        let positions = rs.positions();
        let (first_pos, last_pos) = (positions[0], positions[positions.len() - 1]);
        if first_pos < in_one && last_pos >= in_one {
            straddling += 1;
        }
    }
    assert_eq!(
        log.len(),
        usize::try_from(pre_rows).unwrap() + 2 + SHIMS * (EACH + 2),
        "no row lost or added"
    );
    eprintln!(
        "{in_one} rows in audit.jsonl.1, {} in audit.jsonl, {straddling} invocations straddle",
        log.len() - in_one
    );

    // `cli-guard audit` reads across both files.
    let out = Running::spawn(g.cli_guard(["audit"]), None, None).wait_for(BIG_TIMEOUT);
    out.expect_code(0);
    let text = out.stdout();
    let ids = top_ids(&text);
    check_eq!(out, ids.len(), SHIMS + 1, "the prefill and the eight invocations");
    check_eq!(out, ids[0], pre, "the prefill first (it ended first)");
    check_eq!(
        out,
        ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        logged,
        "all of them"
    );
    for id in &ids[1..] {
        let (entry, rows) = block(&text, id);
        check!(
            out,
            in_order(
                entry,
                &[
                    " npm ",
                    " exit 0 ",
                    " 0 allowed ",
                    " 25 denied ",
                    id,
                    " npm install"
                ]
            ),
            "{id}: folded whole across the two files: {entry:?}"
        );
        check_eq!(out, rows.len(), EACH, "{id}: its egress rows");
    }
    check_eq!(out, out.stderr(), "", "no skipped lines");
}

#[test]
fn rotation_keeps_at_most_five_old_files() {
    const ROUNDS: usize = 7;
    let g = Sandbox::new();
    g.tool("npm", "exit 0\n");
    fs::create_dir_all(g.audit.parent().unwrap()).unwrap();
    let grow = |path: &Path| {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(ROTATE_AT)
            .unwrap();
    };
    let first_id = |path: &Path| -> String {
        let data = fs::read(path).unwrap();
        let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
        Log::parse(line, &path.display().to_string())[0]
            .audit_id()
            .to_owned()
    };
    write_lines(
        &g.audit,
        &[start_row(
            "2026-01-01T00:00:00.000Z",
            &sid(0),
            None,
            "npm",
            &["npm", "gen"],
        )],
    );
    grow(&g.audit);
    let mut ids = Vec::new();
    for i in 0..ROUNDS {
        run_quiet(g.shim_cmd("npm", [format!("round{i}")])).expect_code(0);
        let id = first_id(&g.audit);
        assert!(
            is_audit_id(&id) && !ids.contains(&id),
            "round {i}: a new live log, got {id}"
        );
        ids.push(id);
        grow(&g.audit);
    }
    for n in 1..=KEEP {
        let f = rotated(&g.audit, n);
        assert!(f.exists(), "{} kept", f.display());
        // .1 is the newest: round ROUNDS-1-n's file.
        assert_eq!(
            first_id(&f),
            ids[ROUNDS - 1 - n as usize],
            "{} holds round {}",
            f.display(),
            ROUNDS - 1 - n as usize
        );
    }
    for n in KEEP + 1..=KEEP + 3 {
        assert!(!rotated(&g.audit, n).exists(), "audit.jsonl.{n} must not exist");
    }
    assert_eq!(
        first_id(&g.audit),
        ids[ROUNDS - 1],
        "the live log is the newest round's"
    );
}

// ---------------------------------------------------------------------------
// Help and usage errors

#[test]
fn every_command_has_help() {
    let g = Sandbox::new();
    let cases: &[&[&str]] = &[
        &["--help"],
        &["-h"],
        &["help"],
        &["audit", "--help"],
        &["audit", "-h"],
        &["check", "--help"],
        &["check", "-h"],
        &["run", "--help"],
        &["policy", "--help"],
        &["shims", "--help"],
        &["egress-demo", "--help"],
    ];
    for args in cases {
        let out = g.run(g.cli_guard(*args));
        out.expect_code(0);
        check!(
            out,
            out.stdout().to_lowercase().contains("usage"),
            "{args:?} prints usage"
        );
        check_eq!(out, out.stderr(), "", "{args:?}: nothing on stderr");
    }
    let out = g.run(g.cli_guard(["audit", "--help"]));
    for opt in [
        "--denied",
        "--tool",
        "--since",
        "--id",
        "--last",
        "--json",
        "--follow",
        "--suggest",
    ] {
        check!(out, out.stdout().contains(opt), "audit --help lists {opt}");
    }
    let out = g.run(g.cli_guard(["check", "--help"]));
    check!(
        out,
        out.stdout().contains("--as TOOL [--package NAME] HOST[:PORT]"),
        "check --help: usage line"
    );
    // `egress-demo --help` under its own name too.
    let demo = g.shims.join("egress-demo");
    std::os::unix::fs::symlink(BIN, &demo).unwrap();
    let mut cmd = g.command(&demo);
    cmd.arg("--help");
    let out = g.run(cmd);
    out.expect_code(0);
    check!(out, out.stdout().contains("USAGE"), "egress-demo --help");
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do_next() {
    let g = Sandbox::new();
    // (args, what stderr must say)
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "expected run, policy, shims, audit, check"),
        (&[], "see cli-guard --help"),
        (&["audit", "--bogus"], "see cli-guard audit --help"),
        (&["audit", "--tool"], "see cli-guard audit --help"),
        (&["audit", "--id"], "see cli-guard audit --help"),
        (&["audit", "--since"], "see cli-guard audit --help"),
        (&["audit", "--suggest"], "see cli-guard audit --help"),
        (&["audit", "--last", "0"], "expected a positive number"),
        (&["audit", "--last", "x"], "expected a positive number"),
        (
            &["audit", "--since", "yesterday"],
            "expected a duration like 30m, 1h",
        ),
        (&["check", "--bogus"], "see cli-guard check --help"),
        (&["check", "--as", "nosuch", "x.example"], "known: "),
        (&["run", "--bogus"], "usage: cli-guard run"),
        (&["run", "--as", "npm"], "usage: cli-guard run"),
        (&["run", "--as", "nosuch", "--", "true"], "known: "),
        (&["policy", "nosuch"], "known: "),
        (&["egress-demo", "--bogus"], "see egress-demo --help"),
        (
            &["egress-demo", "sideways"],
            "expected allowed, denied or observe",
        ),
    ];
    for (args, hint) in cases {
        let out = g.run(g.cli_guard(*args));
        out.expect_code(2);
        check!(
            out,
            out.stderr()
                .lines()
                .any(|l| l.starts_with("cli-guard:") && l.contains(hint)),
            "{args:?}: a cli-guard: line saying {hint:?}"
        );
    }
    // Unknown options exit 2 here too; their messages are not pinned.
    let unhelpful: [&[&str]; 3] = [
        &["shims", "--bogus"],
        &["check", "--as", "npm", "a.example", "b.example"],
        &["policy", "--bogus"],
    ];
    for args in unhelpful {
        g.run(g.cli_guard(args)).expect_code(2);
    }
    // No log yet: exit 1, naming the path and what to do.
    let out = g.run(g.cli_guard(["audit"]));
    out.expect_code(1);
    check!(
        out,
        out.stderr().contains(g.audit.to_str().unwrap()) && out.stderr().contains("CLI_GUARD_AUDIT_LOG"),
        "names the path it looked at and how to point it elsewhere"
    );
}

#[test]
fn every_usage_error_points_at_help_or_the_usage() {
    let g = Sandbox::new();
    let cases: [&[&str]; 3] = [
        &["shims", "--bogus"],
        &["policy", "--bogus"],
        &["check", "--as", "npm", "a.example", "b.example"],
    ];
    for args in cases {
        let out = g.run(g.cli_guard(args));
        out.expect_code(2);
        let err = out.stderr();
        check!(
            out,
            err.contains("--help") || err.contains("usage:"),
            "{args:?} says what to do next"
        );
    }
}
