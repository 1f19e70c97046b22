//! Reading the audit log back: folding its rows into the invocations they
//! belong to, and the filters of `cli-guard audit`.
//!
//! One streaming pass with memory bounded by the invocations still in
//! flight: rows attach to their invocation as they come; an invocation is
//! emitted when its `end` arrives (so the output is newest last), or nested
//! under its parent if the parent is still running. A line that is not an
//! audit record (torn, foreign, not JSON) is reported with its file and line
//! number and skipped; it never stops the pass.
//!
//! A fetch-and-run's two phases (`npx X`: a fetch, enforced, then a run,
//! observed; see `shim::fetch_run`) are one entry: a fetch phase that ended
//! well is held until the run phase naming it in `fetch_audit_id` starts,
//! and rides in that invocation's `fetch`.
//!
//! Pure apart from reading lines: `Folder` and `Filter` take records and
//! give invocations, and tests drive them directly.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::audit::record::{parse_line, Egress, EgressClose, End, Record, Row, Start};
use crate::policy::Verdict;
use crate::ship::syslog;

/// Invocations in flight beyond this are emitted as unfinished (oldest
/// first), so a log full of SIGKILLed shims cannot grow memory without end.
const MAX_OPEN: usize = 10_000;

/// A record with the time its line was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped<T> {
    pub ts: String,
    pub record: T,
}

/// One egress entry of an invocation: the request's row with its tunnel's
/// close merged in, or a close alone when its request's row was in a file
/// rotated away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tunnel {
    Request {
        request: Stamped<Egress>,
        close: Option<Stamped<EgressClose>>,
    },
    Orphan(Stamped<EgressClose>),
}

impl Tunnel {
    /// The request's row, if it was read.
    pub(crate) fn request(&self) -> Option<&Egress> {
        match self {
            Tunnel::Request { request, .. } => Some(&request.record),
            Tunnel::Orphan(_) => None,
        }
    }

    /// The tunnel's close, if it has closed.
    pub(crate) fn close(&self) -> Option<&EgressClose> {
        match self {
            Tunnel::Request { close, .. } => close.as_ref().map(|c| &c.record),
            Tunnel::Orphan(close) => Some(&close.record),
        }
    }

    /// Whether the gate refused it.
    pub(crate) fn denied(&self) -> bool {
        self.request().and_then(|r| r.decision) == Some(Verdict::Deny)
    }

    fn conn(&self) -> u64 {
        match self {
            Tunnel::Request { request, .. } => request.record.conn,
            Tunnel::Orphan(close) => close.record.conn,
        }
    }
}

/// One guarded invocation, folded: its `start` and `end` rows, its egress
/// rows with each tunnel's close merged in, the invocations nested under
/// it, and for a fetch-and-run's run phase, its fetch phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub audit_id: String,
    pub start: Option<Start>,
    pub end: Option<Stamped<End>>,
    pub egress: Vec<Tunnel>,
    pub children: Vec<Invocation>,
    /// The fetch phase of a run phase: one entry with it.
    pub fetch: Option<Box<Invocation>>,
    /// The first timestamp seen for it (its start's, normally).
    pub first_ts: String,
    /// The machine it ran on, for rows read from a collector's file.
    pub machine: Option<String>,
    /// Order of first appearance in the log.
    seq: u64,
}

impl Invocation {
    fn new(audit_id: &str, ts: &str, seq: u64) -> Invocation {
        Invocation {
            audit_id: audit_id.to_string(),
            first_ts: ts.to_string(),
            seq,
            ..Invocation::default()
        }
    }

    /// The tool's name, from its start row or else its first egress row;
    /// `?` when neither says.
    pub(crate) fn tool(&self) -> &str {
        let named = |tool: &str| !tool.is_empty();
        self.start
            .as_ref()
            .map(|s| s.tool.as_str())
            .filter(|t| named(t))
            .or_else(|| {
                self.egress
                    .first()
                    .and_then(Tunnel::request)
                    .map(|e| e.tool.as_str())
                    .filter(|t| named(t))
            })
            .unwrap_or("?")
    }

    pub(crate) fn parent(&self) -> Option<&str> {
        self.start.as_ref()?.parent_audit_id.as_deref()
    }

    /// A fetch-and-run phase: `fetch`, `run` or `fetch+run`.
    pub(crate) fn phase(&self) -> Option<&str> {
        self.start.as_ref()?.phase.as_deref()
    }

    /// When the entry began: its fetch phase's start, if it has one.
    pub(crate) fn entry_ts(&self) -> &str {
        self.fetch.as_ref().map_or(&self.first_ts, |f| &f.first_ts)
    }

    /// Allowed and denied egress rows of this entry: the invocation's own
    /// and its fetch phase's, not those nested under it.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let (allowed, denied) = tally(&self.egress);
        match &self.fetch {
            Some(fetch) => {
                let (a, d) = tally(&fetch.egress);
                (allowed + a, denied + d)
            }
            None => (allowed, denied),
        }
    }

    /// Whether a row of this entry (or its fetch phase's) was made by the
    /// code of package `name`.
    pub(crate) fn has_package(&self, name: &str) -> bool {
        self.egress
            .iter()
            .chain(self.fetch.iter().flat_map(|f| &f.egress))
            .filter_map(Tunnel::request)
            .filter_map(|r| r.process.as_deref())
            .any(|p| p.package.as_deref() == Some(name))
    }

    /// This invocation and everything nested under it (its fetch phase and
    /// what is nested under that included), depth first.
    pub(crate) fn walk(&self) -> Vec<&Invocation> {
        let mut out = vec![self];
        for inner in self.fetch.iter().flat_map(|f| &f.children).chain(&self.children) {
            out.extend(inner.walk());
        }
        out
    }

    /// This invocation and everything nested under it as entries of their
    /// own, depth first, each parent before its children, each with no
    /// children left (its start's `parent_audit_id` still names its
    /// parent). A fetch phase stays in its run phase's entry.
    pub(crate) fn flatten(mut self) -> Vec<Invocation> {
        let mut children = self
            .fetch
            .as_mut()
            .map(|f| std::mem::take(&mut f.children))
            .unwrap_or_default();
        children.append(&mut self.children);
        let mut out = vec![self];
        for child in children {
            out.extend(child.flatten());
        }
        out
    }

    /// This invocation alone as one flat JSON object: the start fields
    /// (`parent_audit_id` among them), the end fields (`ts` renamed
    /// `end_ts`) and `egress`; what is nested under it is not in it. Its
    /// keys come out sorted, as a `serde_json` map keeps them.
    pub(crate) fn to_json(&self) -> Value {
        // Plain structs of strings and numbers always serialise.
        serde_json::to_value(InvocationJson::from(self)).unwrap_or(Value::Null)
    }
}

/// Allowed and denied rows among `egress`.
fn tally(egress: &[Tunnel]) -> (usize, usize) {
    let denied = egress.iter().filter(|e| e.denied()).count();
    (egress.len() - denied, denied)
}

/// `Invocation::to_json`'s shape. A run phase carries its fetch phase's
/// object in `fetch` (absent on every other invocation).
#[derive(Serialize)]
struct InvocationJson<'a> {
    audit_id: &'a str,
    /// A collector's file only.
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<&'a str>,
    ts: &'a str,
    #[serde(flatten)]
    start: Option<&'a Start>,
    end_ts: Option<&'a str>,
    #[serde(flatten)]
    end: Option<&'a End>,
    egress: Vec<TunnelJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch: Option<Box<InvocationJson<'a>>>,
}

impl<'a> From<&'a Invocation> for InvocationJson<'a> {
    fn from(inv: &'a Invocation) -> Self {
        InvocationJson {
            audit_id: &inv.audit_id,
            machine: inv.machine.as_deref(),
            ts: &inv.first_ts,
            start: inv.start.as_ref(),
            end_ts: inv.end.as_ref().map(|e| e.ts.as_str()),
            end: inv.end.as_ref().map(|e| &e.record),
            egress: inv.egress.iter().map(TunnelJson::from).collect(),
            fetch: inv.fetch.as_deref().map(|f| Box::new(InvocationJson::from(f))),
        }
    }
}

/// One egress entry in `to_json`: the request's fields and `ts`, then its
/// close's as `closed_ts`, `close_error`, bytes and duration; a close alone
/// keeps its own names (`ts`, `conn`, `error`).
#[derive(Serialize)]
#[serde(untagged)]
enum TunnelJson<'a> {
    Request {
        ts: &'a str,
        #[serde(flatten)]
        request: &'a Egress,
        #[serde(flatten)]
        close: Option<ClosedJson<'a>>,
    },
    Orphan {
        ts: &'a str,
        conn: u64,
        bytes_up: u64,
        bytes_down: u64,
        duration_ms: Option<u64>,
        error: &'a Option<String>,
    },
}

#[derive(Serialize)]
struct ClosedJson<'a> {
    closed_ts: &'a str,
    close_error: &'a Option<String>,
    bytes_up: u64,
    bytes_down: u64,
    duration_ms: Option<u64>,
}

impl<'a> From<&'a Tunnel> for TunnelJson<'a> {
    fn from(tunnel: &'a Tunnel) -> Self {
        match tunnel {
            Tunnel::Request { request, close } => TunnelJson::Request {
                ts: &request.ts,
                request: &request.record,
                close: close.as_ref().map(|c| ClosedJson {
                    closed_ts: &c.ts,
                    close_error: &c.record.error,
                    bytes_up: c.record.bytes_up,
                    bytes_down: c.record.bytes_down,
                    duration_ms: c.record.duration_ms,
                }),
            },
            Tunnel::Orphan(c) => TunnelJson::Orphan {
                ts: &c.ts,
                conn: c.record.conn,
                bytes_up: c.record.bytes_up,
                bytes_down: c.record.bytes_down,
                duration_ms: c.record.duration_ms,
                error: &c.record.error,
            },
        }
    }
}

/// A line that is not an audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadLine {
    pub file: PathBuf,
    pub line: u64,
    pub why: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: skipped: {}", self.file.display(), self.line, self.why)
    }
}

/// Folds records into invocations as they stream past.
#[derive(Debug, Default)]
pub(super) struct Folder {
    open: HashMap<String, Invocation>,
    /// The open invocations by order of first appearance, so the oldest is
    /// found without a scan.
    order: BTreeMap<u64, String>,
    /// Fetch phases that ended well, waiting for their run phase's start.
    held: HashMap<String, Invocation>,
    held_order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Folder {
    /// Takes one row; returns the invocations it finished (at most one,
    /// plus any evicted to keep memory bounded).
    pub(super) fn push(&mut self, row: Row) -> Vec<Invocation> {
        let Row {
            ts,
            audit_id,
            record,
            machine,
        } = row;
        // Each invocation under its machine: the same ID from two machines
        // is two invocations.
        let id = keyed(machine.as_deref(), &audit_id);
        let mut out = Vec::new();
        if !self.open.contains_key(&id) {
            if self.open.len() >= MAX_OPEN {
                out.extend(self.evict_oldest());
            }
            self.next_seq += 1;
            let mut inv = Invocation::new(&audit_id, &ts, self.next_seq);
            inv.machine.clone_from(&machine);
            self.open.insert(id.clone(), inv);
            self.order.insert(self.next_seq, id.clone());
        }
        let Some(inv) = self.open.get_mut(&id) else {
            return out;
        };
        match record {
            Record::Start(start) => {
                inv.first_ts = ts;
                let fetched = start
                    .fetch_audit_id
                    .as_deref()
                    .map(|f| keyed(machine.as_deref(), f));
                inv.start = Some(start);
                if let Some(fetch) = fetched.and_then(|f| self.held.remove(&f)) {
                    self.held_order.remove(&fetch.seq);
                    inv.fetch = Some(Box::new(fetch));
                }
            }
            Record::Egress(request) => inv.egress.push(Tunnel::Request {
                request: Stamped { ts, record: request },
                close: None,
            }),
            Record::EgressClose(close) => merge_close(inv, Stamped { ts, record: close }),
            Record::End(end) => {
                inv.end = Some(Stamped { ts, record: end });
                if let Some(done) = self.open.remove(&id) {
                    self.order.remove(&done.seq);
                    match done.phase() == Some("fetch")
                        && done.end.as_ref().and_then(|e| e.record.exit_code) == Some(0)
                    {
                        // Its run phase starts next: they are one entry.
                        true => self.hold(done, &mut out),
                        false => self.settle(done, &mut out),
                    }
                }
            }
        }
        out
    }

    /// A finished invocation goes under its parent while that runs, else out.
    fn settle(&mut self, done: Invocation, out: &mut Vec<Invocation>) {
        match done
            .parent()
            .map(|p| keyed(done.machine.as_deref(), p))
            .and_then(|p| self.open.get_mut(&p))
        {
            Some(parent) => parent.children.push(done),
            None => out.push(done),
        }
    }

    /// Holds a fetch phase for its run phase (the oldest held one goes on
    /// alone when too many wait).
    fn hold(&mut self, fetch: Invocation, out: &mut Vec<Invocation>) {
        if self.held.len() >= MAX_OPEN {
            if let Some(oldest) = self
                .held_order
                .pop_first()
                .and_then(|(_, id)| self.held.remove(&id))
            {
                self.settle(oldest, out);
            }
        }
        let id = keyed(fetch.machine.as_deref(), &fetch.audit_id);
        self.held_order.insert(fetch.seq, id.clone());
        self.held.insert(id, fetch);
    }

    /// Emits the invocation open longest.
    fn evict_oldest(&mut self) -> Option<Invocation> {
        let (_, oldest) = self.order.pop_first()?;
        self.open.remove(&oldest)
    }

    /// The invocations still open at the end of the log (running, or their
    /// shim was killed), oldest first, each nested under its parent when
    /// the parent is open too.
    pub(super) fn finish(mut self) -> Vec<Invocation> {
        let mut all: Vec<Invocation> = Vec::with_capacity(self.open.len() + self.held.len());
        while let Some(inv) = self.evict_oldest() {
            all.push(inv);
        }
        // Fetch phases whose run never started (the shim was killed between).
        all.extend(self.held.into_values());
        all.sort_by_key(|inv| inv.seq);
        // Bottom-up, so a grandchild joins its parent before that parent
        // joins its own.
        for i in (0..all.len()).rev() {
            let parent = all[i].parent().map(str::to_string);
            let machine = all[i].machine.clone();
            if let Some(j) = parent.and_then(|p| {
                all[..i]
                    .iter()
                    .position(|x| x.audit_id == p && x.machine == machine)
            }) {
                let child = all.remove(i);
                all[j].children.insert(0, child);
            }
        }
        all
    }
}

/// The key an invocation is folded under: its audit ID, with its machine
/// when it has one (a collector's file).
fn keyed(machine: Option<&str>, audit_id: &str) -> String {
    match machine {
        Some(machine) => format!("{machine}\u{1f}{audit_id}"),
        None => audit_id.to_string(),
    }
}

/// Merges a tunnel's close into its request's row (the latest with its
/// `conn`).
fn merge_close(inv: &mut Invocation, closed: Stamped<EgressClose>) {
    let conn = closed.record.conn;
    match inv.egress.iter_mut().rev().find(|e| e.conn() == conn) {
        Some(Tunnel::Request { close, .. }) => *close = Some(closed),
        // A second close of a tunnel whose request was rotated away.
        Some(orphan @ Tunnel::Orphan(_)) => *orphan = Tunnel::Orphan(closed),
        // Its request's row was in a file rotated away.
        None => inv.egress.push(Tunnel::Orphan(closed)),
    }
}

/// Which folded invocations to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub denied: bool,
    pub tool: Option<String>,
    /// Only invocations with a row made by this package's own code.
    pub package: Option<String>,
    /// RFC 3339 UTC in the log's own format; compared as strings.
    pub since: Option<String>,
    pub id: Option<String>,
    /// Only invocations of this machine (a collector's file).
    pub machine: Option<String>,
}

impl Filter {
    /// The tree to show of `inv`'s, if any, for the human view: `--id` may
    /// pick a nested subtree; `--tool` and `--denied` keep a tree if any
    /// invocation in it matches; `--since` looks at its top.
    pub(crate) fn apply(&self, inv: Invocation) -> Option<Invocation> {
        let inv = match &self.id {
            Some(id) => find_subtree(inv, id)?,
            None => inv,
        };
        if !self.since_ok(&inv) || !self.machine_ok(&inv) {
            return None;
        }
        let nodes = inv.walk();
        if let Some(tool) = &self.tool {
            if !nodes.iter().any(|n| n.tool() == tool) {
                return None;
            }
        }
        if self.denied && !nodes.iter().any(|n| n.counts().1 > 0) {
            return None;
        }
        if let Some(package) = &self.package {
            if !nodes.iter().any(|n| n.has_package(package)) {
                return None;
            }
        }
        Some(inv)
    }

    /// The invocations to show of `inv`'s tree, each on its own, for
    /// `--json`: `--id` picks that invocation and its descendants, and the
    /// other filters then select invocations by their own start, tool and
    /// denials, never by what is nested under them. Parents come before
    /// their children.
    pub(crate) fn select(&self, inv: Invocation) -> Vec<Invocation> {
        let Some(inv) = (match &self.id {
            Some(id) => find_subtree(inv, id),
            None => Some(inv),
        }) else {
            return Vec::new();
        };
        inv.flatten()
            .into_iter()
            .filter(|one| {
                self.since_ok(one)
                    && self.machine_ok(one)
                    && self.tool.as_ref().is_none_or(|tool| one.tool() == tool)
                    && (!self.denied || one.counts().1 > 0)
                    && self.package.as_ref().is_none_or(|p| one.has_package(p))
            })
            .collect()
    }

    fn machine_ok(&self, inv: &Invocation) -> bool {
        self.machine
            .as_ref()
            .is_none_or(|machine| inv.machine.as_ref() == Some(machine))
    }

    fn since_ok(&self, inv: &Invocation) -> bool {
        self.since
            .as_ref()
            .is_none_or(|since| inv.entry_ts() >= since.as_str())
    }
}

/// The entry with audit ID `id` in `inv`'s tree: a run phase's entry also
/// by its fetch phase's ID.
fn find_subtree(mut inv: Invocation, id: &str) -> Option<Invocation> {
    if inv.audit_id == id || inv.fetch.as_ref().is_some_and(|f| f.audit_id == id) {
        return Some(inv);
    }
    let under_fetch = inv
        .fetch
        .as_mut()
        .map(|f| std::mem::take(&mut f.children))
        .unwrap_or_default();
    under_fetch
        .into_iter()
        .chain(inv.children)
        .find_map(|child| find_subtree(child, id))
}

/// Parses `--since`: a duration back from `now` (`90s`, `15m`, `1h`, `2d`)
/// or a UTC time (`2026-11-23`, `2026-11-23T10:00Z`, `…T10:00:00Z`, with
/// or without the `Z`), into the log's timestamp format.
pub(crate) fn parse_since(arg: &str, now: std::time::SystemTime) -> Result<String, String> {
    let arg = arg.trim();
    if let Some(unit) = arg.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = arg[..arg.len() - 1].parse::<u64>() {
            let secs = n.saturating_mul(match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            });
            let then = now
                .checked_sub(std::time::Duration::from_secs(secs))
                .unwrap_or(std::time::UNIX_EPOCH);
            return Ok(crate::audit::rfc3339_millis(then));
        }
    }
    let t = arg.strip_suffix('Z').unwrap_or(arg);
    let shape_ok = |s: &str, shape: &str| {
        s.len() == shape.len()
            && s.bytes()
                .zip(shape.bytes())
                .all(|(c, p)| if p == b'd' { c.is_ascii_digit() } else { c == p })
    };
    let full = "dddd-dd-ddTdd:dd:dd.ddd";
    let padded = if shape_ok(t, "dddd-dd-dd") {
        format!("{t}T00:00:00.000")
    } else if shape_ok(t, "dddd-dd-ddTdd:dd") {
        format!("{t}:00.000")
    } else if shape_ok(t, "dddd-dd-ddTdd:dd:dd") {
        format!("{t}.000")
    } else if shape_ok(t, full) {
        t.to_string()
    } else {
        return Err(format!(
            "--since {arg:?}: expected a duration like 30m, 1h, 2d, or a UTC time like 2026-11-23T10:00Z"
        ));
    };
    Ok(format!("{padded}Z"))
}

/// Reads every line of `files` in order, calling `record` for each audit
/// record and `bad` for each line that is not one.
pub(super) fn read_files(
    files: &[PathBuf],
    mut record: impl FnMut(Row) -> ControlFlow<()>,
    mut bad: impl FnMut(BadLine),
) -> std::io::Result<()> {
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let mut stopped = false;
        read_stream(
            path,
            &mut BufReader::with_capacity(64 * 1024, file),
            0,
            &mut |row| {
                let flow = record(row);
                stopped = flow.is_break();
                flow
            },
            &mut bad,
        )?;
        if stopped {
            break;
        }
    }
    Ok(())
}

/// Reads complete lines from `reader` (a partial last line is left for the
/// caller, for `--follow`) until `record` says stop; returns how many lines
/// it read.
pub(super) fn read_stream(
    path: &Path,
    reader: &mut impl BufRead,
    first_line: u64,
    record: &mut impl FnMut(Row) -> ControlFlow<()>,
    bad: &mut impl FnMut(BadLine),
) -> std::io::Result<u64> {
    let mut line = Vec::with_capacity(512);
    let mut n = first_line;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(n - first_line);
        }
        n += 1;
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A collector's line: the row, and the machine it came from.
        let (machine, content) = match syslog::unwrap(content) {
            Some((machine, row)) => (Some(machine), row),
            None => (None, content),
        };
        match parse_line(content) {
            Ok(mut row) => {
                row.machine = machine.map(str::to_string);
                if record(row).is_break() {
                    return Ok(n - first_line);
                }
            }
            Err(why) => bad(BadLine {
                file: path.to_path_buf(),
                line: n,
                why,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: &str) -> Row {
        parse_line(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn start(id: &str, ts: &str, tool: &str, parent: Option<&str>) -> Row {
        let parent = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
        rec(&format!(
            r#"{{"ts":"{ts}","kind":"start","audit_id":"{id}","parent_audit_id":{parent},"tool":"{tool}","mode":"enforce","argv":["{tool}","install"],"cwd":"/w","real_path":"/usr/bin/{tool}","pid":1}}"#
        ))
    }

    fn egress(id: &str, conn: u64, host: &str, decision: &str, status: u16) -> Row {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:01.000Z","kind":"egress","audit_id":"{id}","conn":{conn},"tool":"npm","mode":"enforce","method":"CONNECT","host":"{host}","port":443,"decision":"{decision}","status":{status},"reason":"r"}}"#
        ))
    }

    fn close(id: &str, conn: u64) -> Row {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:02.000Z","kind":"egress_close","audit_id":"{id}","conn":{conn},"host":"h","port":443,"bytes_up":10,"bytes_down":20,"duration_ms":5,"error":null}}"#
        ))
    }

    fn end(id: &str, code: i32) -> Row {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:03.000Z","kind":"end","audit_id":"{id}","exit_code":{code},"signal":null,"duration_ms":9,"allowed":1,"denied":0,"error":null}}"#
        ))
    }

    fn start_of(row: Row) -> Start {
        match row.record {
            Record::Start(start) => start,
            other => panic!("not a start: {other:?}"),
        }
    }

    #[test]
    fn folds_rows_into_their_invocation_with_closes_merged() {
        let mut f = Folder::default();
        assert!(f
            .push(start("a", "2026-11-24T00:00:00.000Z", "npm", None))
            .is_empty());
        assert!(f
            .push(egress("a", 1, "registry.npmjs.org", "allow", 200))
            .is_empty());
        assert!(f.push(close("a", 1)).is_empty());
        let done = f.push(end("a", 0));
        assert_eq!(done.len(), 1);
        let inv = &done[0];
        assert_eq!(inv.egress.len(), 1);
        assert_eq!(inv.egress[0].close().map(|c| c.bytes_down), Some(20));
        assert_eq!(inv.egress[0].request().map(|e| e.status), Some(200));
        let json = inv.to_json();
        assert_eq!(json["egress"][0]["bytes_down"], 20);
        assert_eq!(json["egress"][0]["closed_ts"], "2026-11-24T00:00:02.000Z");
        assert_eq!(json["tool"], "npm");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["ts"], "2026-11-24T00:00:00.000Z");
        assert_eq!(json["end_ts"], "2026-11-24T00:00:03.000Z");
        assert!(f.finish().is_empty());
    }

    #[test]
    fn to_json_passes_the_redacted_argv_and_its_flag_through() {
        let mut f = Folder::default();
        f.push(rec(
            r#"{"ts":"2026-11-24T00:00:00.000Z","kind":"start","audit_id":"a","tool":"pip","argv":["pip","--password=***"],"argv_redacted":true}"#,
        ));
        let done = f.push(end("a", 0));
        let json = done[0].to_json();
        assert_eq!(json["argv"], serde_json::json!(["pip", "--password=***"]));
        assert_eq!(json["argv_redacted"], true);
        // A row from before redaction reads as not redacted.
        f.push(start("b", "2026-11-24T00:00:00.000Z", "npm", None));
        let done = f.push(end("b", 0));
        assert_eq!(done[0].to_json()["argv_redacted"], false);
    }

    #[test]
    fn a_close_without_its_request_keeps_its_own_names() {
        let mut f = Folder::default();
        f.push(close("a", 4));
        let left = f.finish();
        let json = left[0].to_json();
        assert_eq!(
            json["egress"][0].to_string(),
            r#"{"bytes_down":20,"bytes_up":10,"conn":4,"duration_ms":5,"error":null,"ts":"2026-11-24T00:00:02.000Z"}"#
        );
        assert_eq!(left[0].counts(), (1, 0));
        assert_eq!(left[0].tool(), "?");
        assert!(
            json.get("exit_code").is_none() && json.get("tool").is_none(),
            "{json}"
        );
    }

    #[test]
    fn interleaved_invocations_stay_apart_and_nest_under_a_running_parent() {
        let mut f = Folder::default();
        f.push(start("outer", "2026-11-24T00:00:00.000Z", "npm", None));
        f.push(start("other", "2026-11-24T00:00:00.100Z", "pip", None));
        f.push(start("inner", "2026-11-24T00:00:00.200Z", "aws", Some("outer")));
        f.push(egress("inner", 1, "s3.amazonaws.com", "allow", 502));
        f.push(egress("outer", 1, "evil.example", "deny", 403));
        assert!(
            f.push(end("inner", 0)).is_empty(),
            "nested under its running parent"
        );
        let other = f.push(end("other", 0));
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].audit_id, "other");
        let outer = f.push(end("outer", 1));
        assert_eq!(outer[0].children.len(), 1);
        assert_eq!(outer[0].children[0].audit_id, "inner");
        assert_eq!(outer[0].counts(), (0, 1));
    }

    #[test]
    fn unfinished_invocations_come_out_at_the_end_nested() {
        let mut f = Folder::default();
        f.push(start("p", "2026-11-24T00:00:00.000Z", "npm", None));
        f.push(start("c", "2026-11-24T00:00:00.100Z", "aws", Some("p")));
        f.push(egress("c", 1, "x.example", "allow", 200));
        let left = f.finish();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].audit_id, "p");
        assert_eq!(left[0].children[0].audit_id, "c");
        assert_eq!(left[0].to_json()["end_ts"], Value::Null);
    }

    #[test]
    fn apply_keeps_a_tree_when_anything_in_it_matches() {
        let mut inv = Invocation::new("p", "2026-11-24T00:00:00.000Z", 1);
        inv.start = Some(start_of(start("p", "2026-11-24T00:00:00.000Z", "npm", None)));
        let mut child = Invocation::new("c", "2026-11-24T00:00:01.000Z", 2);
        child.start = Some(start_of(start("c", "2026-11-24T00:00:01.000Z", "aws", Some("p"))));
        let Row {
            ts,
            record: Record::Egress(request),
            ..
        } = egress("c", 1, "evil.example", "deny", 403)
        else {
            panic!("not an egress row");
        };
        child.egress.push(Tunnel::Request {
            request: Stamped { ts, record: request },
            close: None,
        });
        inv.children.push(child);
        let keep = |f: Filter| f.apply(inv.clone()).map(|i| i.audit_id);
        assert_eq!(keep(Filter::default()), Some("p".into()));
        assert_eq!(
            keep(Filter {
                denied: true,
                ..Filter::default()
            }),
            Some("p".into()),
            "a nested denial counts"
        );
        assert_eq!(
            keep(Filter {
                tool: Some("aws".into()),
                ..Filter::default()
            }),
            Some("p".into())
        );
        assert_eq!(
            keep(Filter {
                tool: Some("pip".into()),
                ..Filter::default()
            }),
            None
        );
        assert_eq!(
            keep(Filter {
                id: Some("c".into()),
                ..Filter::default()
            }),
            Some("c".into())
        );
        assert_eq!(
            keep(Filter {
                id: Some("zz".into()),
                ..Filter::default()
            }),
            None
        );
        let since = |s: &str| Filter {
            since: Some(s.into()),
            ..Filter::default()
        };
        assert_eq!(keep(since("2026-11-23T00:00:00.000Z")), Some("p".into()));
        assert_eq!(keep(since("2026-11-24T00:00:00.001Z")), None);
    }

    /// npm (p, allowed only) → gh (c, denied) → aws (g), as folded.
    fn npm_gh_aws() -> Invocation {
        let mut f = Folder::default();
        f.push(start("p", "2026-11-24T00:00:00.000Z", "npm", None));
        f.push(egress("p", 1, "registry.npmjs.org", "allow", 200));
        f.push(start("c", "2026-11-24T00:00:01.000Z", "gh", Some("p")));
        f.push(egress("c", 1, "evil.example", "deny", 403));
        f.push(start("g", "2026-11-24T00:00:02.000Z", "aws", Some("c")));
        f.push(end("g", 0));
        f.push(end("c", 1));
        let mut done = f.push(end("p", 1));
        assert_eq!(done.len(), 1, "{done:?}");
        done.remove(0)
    }

    fn selected(filter: Filter) -> Vec<String> {
        filter
            .select(npm_gh_aws())
            .into_iter()
            .map(|i| i.audit_id)
            .collect()
    }

    #[test]
    fn select_gives_each_invocation_of_a_tree_on_its_own_parents_first() {
        let all = Filter::default().select(npm_gh_aws());
        let ids: Vec<&str> = all.iter().map(|i| i.audit_id.as_str()).collect();
        assert_eq!(ids, ["p", "c", "g"]);
        assert!(all.iter().all(|i| i.children.is_empty()), "{all:?}");
        let json: Vec<Value> = all.iter().map(Invocation::to_json).collect();
        assert!(json.iter().all(|j| j.get("children").is_none()), "{json:?}");
        assert_eq!(json[0]["parent_audit_id"], Value::Null);
        assert_eq!(json[1]["parent_audit_id"], "p");
        assert_eq!(json[2]["parent_audit_id"], "c");
        assert_eq!(
            json[0]["egress"].as_array().map(Vec::len),
            Some(1),
            "npm's own row only"
        );
        assert_eq!(
            json[1]["egress"][0]["host"], "evil.example",
            "gh's row in gh's object"
        );
    }

    #[test]
    fn select_filters_invocations_by_their_own_tool_denials_and_start() {
        let some = |s: &str| Some(s.to_string());
        let tool = |t: &str| Filter {
            tool: some(t),
            ..Filter::default()
        };
        assert_eq!(selected(tool("gh")), ["c"], "not the npm gh ran under");
        assert_eq!(selected(tool("npm")), ["p"], "not what ran under npm");
        assert_eq!(selected(tool("pip")), Vec::<String>::new());
        let denied = Filter {
            denied: true,
            ..Filter::default()
        };
        assert_eq!(selected(denied), ["c"], "only the one that was denied");
        let since = Filter {
            since: some("2026-11-24T00:00:00.500Z"),
            ..Filter::default()
        };
        assert_eq!(selected(since), ["c", "g"], "each by its own start");
    }

    #[test]
    fn select_by_id_gives_that_invocation_and_its_descendants_apart() {
        let id = |i: &str| Filter {
            id: Some(i.to_string()),
            ..Filter::default()
        };
        assert_eq!(selected(id("p")), ["p", "c", "g"]);
        assert_eq!(selected(id("c")), ["c", "g"]);
        assert_eq!(selected(id("g")), ["g"]);
        assert_eq!(selected(id("zz")), Vec::<String>::new());
        let both = Filter {
            tool: Some("aws".into()),
            ..id("p")
        };
        assert_eq!(selected(both), ["g"], "then the other filters select among them");
    }

    /// A fetch phase's start row, and a run phase's naming it.
    fn phase_start(id: &str, ts: &str, phase: &str, fetch: Option<&str>, parent: Option<&str>) -> Row {
        let fetch = fetch.map_or(String::new(), |f| {
            format!(r#","fetch_audit_id":"{f}","package":{{"name":"netcli","version":"1.0.0"}}"#)
        });
        let parent = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
        let mode = if phase == "fetch" { "enforce" } else { "observe" };
        rec(&format!(
            r#"{{"ts":"{ts}","kind":"start","audit_id":"{id}","parent_audit_id":{parent},"tool":"npx","mode":"{mode}","argv":["npx","-y","netcli"],"pid":1,"isolation":"netns","phase":"{phase}"{fetch}}}"#
        ))
    }

    /// npx's fetch (f: registry allowed, a postinstall denied) and run (r:
    /// the program's host allowed), with another invocation (o) between.
    fn npx_pair(f: &mut Folder) -> Vec<Invocation> {
        let mut out = Vec::new();
        out.extend(f.push(phase_start("f", "2026-11-24T00:00:00.000Z", "fetch", None, None)));
        out.extend(f.push(egress("f", 1, "registry.npmjs.org", "allow", 200)));
        out.extend(f.push(egress("f", 2, "pypi.org", "deny", 403)));
        out.extend(f.push(start("o", "2026-11-24T00:00:00.500Z", "pip", None)));
        out.extend(f.push(end("f", 0)));
        out.extend(f.push(phase_start(
            "r",
            "2026-11-24T00:00:01.000Z",
            "run",
            Some("f"),
            None,
        )));
        out.extend(f.push(end("o", 0)));
        out.extend(f.push(egress("r", 1, "pypi.org", "allow", 200)));
        out.extend(f.push(end("r", 0)));
        out
    }

    #[test]
    fn a_fetch_and_its_run_are_one_entry() {
        let mut f = Folder::default();
        let out = npx_pair(&mut f);
        let ids: Vec<&str> = out.iter().map(|i| i.audit_id.as_str()).collect();
        assert_eq!(
            ids,
            ["o", "r"],
            "the fetch waits for its run, the pip between goes on"
        );
        let pair = &out[1];
        let fetch = pair
            .fetch
            .as_deref()
            .unwrap_or_else(|| panic!("no fetch: {pair:?}"));
        assert_eq!(fetch.audit_id, "f");
        assert_eq!(pair.counts(), (2, 1), "both phases' rows");
        assert_eq!(
            pair.entry_ts(),
            "2026-11-24T00:00:00.000Z",
            "it began with the fetch"
        );
        let json = pair.to_json();
        assert_eq!(json["phase"], "run");
        assert_eq!(json["fetch_audit_id"], "f");
        assert_eq!(json["package"]["name"], "netcli");
        assert_eq!(json["package"]["version"], "1.0.0");
        assert_eq!(json["fetch"]["audit_id"], "f");
        assert_eq!(json["fetch"]["phase"], "fetch");
        assert_eq!(json["fetch"]["mode"], "enforce");
        assert_eq!(json["fetch"]["egress"][1]["status"], 403);
        assert_eq!(json["egress"][0]["host"], "pypi.org");
        assert!(f.finish().is_empty());
    }

    #[test]
    fn a_pair_is_one_json_object_found_by_either_id_and_filtered_whole() {
        let mut f = Folder::default();
        let pair = npx_pair(&mut f).remove(1);
        let all = Filter::default().select(pair.clone());
        assert_eq!(all.len(), 1, "the fetch is not an object of its own");
        for id in ["f", "r"] {
            let by_id = Filter {
                id: Some(id.into()),
                ..Filter::default()
            };
            assert_eq!(by_id.select(pair.clone()).len(), 1, "{id}");
            assert!(by_id.apply(pair.clone()).is_some(), "{id}");
        }
        let denied = Filter {
            denied: true,
            ..Filter::default()
        };
        assert_eq!(
            denied.select(pair.clone()).len(),
            1,
            "the fetch's denial is the entry's"
        );
        let since = Filter {
            since: Some("2026-11-24T00:00:00.500Z".into()),
            ..Filter::default()
        };
        assert!(since.apply(pair).is_none(), "it began with its fetch");
    }

    #[test]
    fn a_failed_fetch_is_an_entry_of_its_own() {
        let mut f = Folder::default();
        f.push(phase_start("f", "2026-11-24T00:00:00.000Z", "fetch", None, None));
        let out = f.push(end("f", 1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].phase(), Some("fetch"));
        assert_eq!(out[0].fetch, None);
    }

    #[test]
    fn a_fetch_whose_run_never_came_is_shown_at_the_end() {
        let mut f = Folder::default();
        f.push(phase_start("f", "2026-11-24T00:00:00.000Z", "fetch", None, None));
        assert!(f.push(end("f", 0)).is_empty());
        f.push(start("later", "2026-11-24T00:00:01.000Z", "pip", None));
        let left = f.finish();
        let ids: Vec<&str> = left.iter().map(|i| i.audit_id.as_str()).collect();
        assert_eq!(ids, ["f", "later"], "in log order");
    }

    #[test]
    fn a_pair_under_a_running_parent_nests_there() {
        let mut f = Folder::default();
        f.push(start("p", "2026-11-24T00:00:00.000Z", "npm", None));
        f.push(phase_start(
            "f",
            "2026-11-24T00:00:00.100Z",
            "fetch",
            None,
            Some("p"),
        ));
        f.push(start("g", "2026-11-24T00:00:00.200Z", "npm", Some("f")));
        f.push(end("g", 0));
        assert!(f.push(end("f", 0)).is_empty());
        f.push(phase_start(
            "r",
            "2026-11-24T00:00:01.000Z",
            "run",
            Some("f"),
            Some("p"),
        ));
        assert!(f.push(end("r", 0)).is_empty());
        let out = f.push(end("p", 0));
        assert_eq!(out[0].children.len(), 1);
        let pair = &out[0].children[0];
        assert_eq!(
            (
                pair.audit_id.as_str(),
                pair.fetch.as_ref().map(|x| x.audit_id.as_str())
            ),
            ("r", Some("f"))
        );
        let walked: Vec<&str> = out[0].walk().iter().map(|i| i.audit_id.as_str()).collect();
        assert_eq!(walked, ["p", "r", "g"], "what ran under the fetch is in the tree");
        let flat: Vec<String> = Filter::default()
            .select(out[0].clone())
            .into_iter()
            .map(|i| i.audit_id)
            .collect();
        assert_eq!(flat, ["p", "r", "g"]);
    }

    #[test]
    fn since_forms() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_478_400);
        assert_eq!(parse_since("1h", now), Ok("2026-11-23T23:00:00.000Z".into()));
        assert_eq!(parse_since("90s", now), Ok("2026-11-23T23:58:30.000Z".into()));
        assert_eq!(parse_since("2d", now), Ok("2026-11-22T00:00:00.000Z".into()));
        assert_eq!(
            parse_since("2026-11-23T10:00Z", now),
            Ok("2026-11-23T10:00:00.000Z".into())
        );
        assert_eq!(
            parse_since("2026-11-23", now),
            Ok("2026-11-23T00:00:00.000Z".into())
        );
        assert_eq!(
            parse_since("2026-11-23T10:00:05", now),
            Ok("2026-11-23T10:00:05.000Z".into())
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("1y", now).is_err());
    }

    #[test]
    fn reading_stops_where_the_consumer_says_so() {
        let line = "{\"ts\":\"t\",\"kind\":\"start\",\"audit_id\":\"a\"}\n";
        let data = line.repeat(5);
        let mut seen = 0;
        let n = read_stream(
            Path::new("log"),
            &mut data.as_bytes(),
            0,
            &mut |_| {
                seen += 1;
                match seen {
                    2 => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                }
            },
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((seen, n), (2, 2), "no line is read past the stop");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_skipped() {
        let data = b"{\"ts\":\"t\",\"kind\":\"start\",\"audit_id\":\"a\"}\n{\"ts\":\"t\",\"kind\":\"eg\ngarbage\n\xff\xfe\n{\"other\":\"json\"}\n\n{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}\n";
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let n = read_stream(
            Path::new("log"),
            &mut &data[..],
            0,
            &mut |r| {
                records.push(r);
                ControlFlow::Continue(())
            },
            &mut |b| bad.push(b),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 7);
        assert_eq!(records.len(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(bad[0].to_string().starts_with("log:2: skipped: "), "{}", bad[0]);
    }
}
