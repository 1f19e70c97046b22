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
//! Pure apart from reading lines: `Folder` and `Filter` take records and
//! give invocations, and tests drive them directly.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Invocations in flight beyond this are emitted as unfinished (oldest
/// first), so a log full of SIGKILLed shims cannot grow memory without end.
const MAX_OPEN: usize = 10_000;

/// One JSON object from the log.
pub type Fields = Map<String, Value>;

/// One guarded invocation, folded: its `start` and `end` rows, its egress
/// rows with each tunnel's close merged in, and the invocations nested
/// under it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub audit_id: String,
    pub start: Option<Fields>,
    pub end: Option<Fields>,
    pub egress: Vec<Fields>,
    pub children: Vec<Invocation>,
    /// The first timestamp seen for it (its start's, normally).
    pub first_ts: String,
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

    /// A start field as a string.
    pub fn start_str(&self, key: &str) -> Option<&str> {
        self.start.as_ref()?.get(key)?.as_str()
    }

    /// An end field.
    pub fn end_field(&self, key: &str) -> Option<&Value> {
        self.end.as_ref()?.get(key)
    }

    pub fn tool(&self) -> &str {
        self.start_str("tool")
            .or_else(|| self.egress.first().and_then(|e| e.get("tool")?.as_str()))
            .unwrap_or("?")
    }

    pub fn parent(&self) -> Option<&str> {
        self.start_str("parent_audit_id")
    }

    /// Allowed and denied egress rows of this invocation alone.
    pub fn counts(&self) -> (usize, usize) {
        let denied = self
            .egress
            .iter()
            .filter(|e| e.get("decision").and_then(Value::as_str) == Some("deny"))
            .count();
        (self.egress.len() - denied, denied)
    }

    /// This invocation and everything nested under it, depth first.
    pub fn walk(&self) -> Vec<&Invocation> {
        let mut out = vec![self];
        for child in &self.children {
            out.extend(child.walk());
        }
        out
    }

    /// The folded view as one JSON object: the start fields, the end fields
    /// (`ts` renamed `end_ts`), `egress` and `children`.
    pub fn to_json(&self) -> Value {
        let mut out = Fields::new();
        out.insert("audit_id".into(), Value::String(self.audit_id.clone()));
        for (k, v) in self.start.iter().flatten() {
            if k != "kind" {
                out.insert(k.clone(), v.clone());
            }
        }
        if !out.contains_key("ts") {
            out.insert("ts".into(), Value::String(self.first_ts.clone()));
        }
        match &self.end {
            Some(end) => {
                for (k, v) in end {
                    match k.as_str() {
                        "kind" | "audit_id" => {}
                        "ts" => {
                            out.insert("end_ts".into(), v.clone());
                        }
                        _ => {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            None => {
                out.insert("end_ts".into(), Value::Null);
            }
        }
        out.insert(
            "egress".into(),
            Value::Array(self.egress.iter().cloned().map(Value::Object).collect()),
        );
        out.insert(
            "children".into(),
            Value::Array(self.children.iter().map(Invocation::to_json).collect()),
        );
        Value::Object(out)
    }
}

/// A line that is not an audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: PathBuf,
    pub line: u64,
    pub why: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: skipped: {}", self.file.display(), self.line, self.why)
    }
}

/// Parses one log line into a record with `kind`, `audit_id` and `ts`.
pub fn parse_line(line: &[u8]) -> Result<Fields, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8 (a torn or foreign line)".to_string())?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".to_string());
    };
    for key in ["kind", "audit_id", "ts"] {
        if !fields.get(key).is_some_and(Value::is_string) {
            return Err(format!("no {key:?}: not a cli-guard audit record"));
        }
    }
    match fields.get("kind").and_then(Value::as_str) {
        Some("start" | "egress" | "egress_close" | "end") => Ok(fields),
        Some(other) => Err(format!("unknown kind {other:?}")),
        None => Err("no kind".to_string()),
    }
}

/// Folds records into invocations as they stream past.
#[derive(Debug, Default)]
pub struct Folder {
    open: HashMap<String, Invocation>,
    /// The open invocations by order of first appearance, so the oldest is
    /// found without a scan.
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Folder {
    /// Takes one record; returns the invocations it finished (at most one,
    /// plus any evicted to keep memory bounded).
    pub fn push(&mut self, record: Fields) -> Vec<Invocation> {
        let kind = record
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let id = record
            .get("audit_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ts = record.get("ts").and_then(Value::as_str).unwrap_or("").to_string();
        let mut out = Vec::new();
        if !self.open.contains_key(&id) {
            if self.open.len() >= MAX_OPEN {
                out.extend(self.evict_oldest());
            }
            self.next_seq += 1;
            self.open
                .insert(id.clone(), Invocation::new(&id, &ts, self.next_seq));
            self.order.insert(self.next_seq, id.clone());
        }
        let Some(inv) = self.open.get_mut(&id) else {
            return out;
        };
        match kind.as_str() {
            "start" => {
                inv.first_ts = ts;
                inv.start = Some(record);
            }
            "egress" => inv.egress.push(without(record, &["kind", "audit_id"])),
            "egress_close" => merge_close(inv, record),
            "end" => {
                inv.end = Some(record);
                if let Some(done) = self.open.remove(&id) {
                    self.order.remove(&done.seq);
                    match done
                        .parent()
                        .map(str::to_string)
                        .and_then(|p| self.open.get_mut(&p))
                    {
                        Some(parent) => parent.children.push(done),
                        None => out.push(done),
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Emits the invocation open longest.
    fn evict_oldest(&mut self) -> Option<Invocation> {
        let (_, oldest) = self.order.pop_first()?;
        self.open.remove(&oldest)
    }

    /// The invocations still open at the end of the log (running, or their
    /// shim was killed), oldest first, each nested under its parent when
    /// the parent is open too.
    pub fn finish(mut self) -> Vec<Invocation> {
        let mut all: Vec<Invocation> = Vec::with_capacity(self.open.len());
        while let Some(inv) = self.evict_oldest() {
            all.push(inv);
        }
        // Bottom-up, so a grandchild joins its parent before that parent
        // joins its own.
        for i in (0..all.len()).rev() {
            let parent = all[i].parent().map(str::to_string);
            if let Some(j) = parent.and_then(|p| all[..i].iter().position(|x| x.audit_id == p)) {
                let child = all.remove(i);
                all[j].children.insert(0, child);
            }
        }
        all
    }
}

fn without(mut fields: Fields, keys: &[&str]) -> Fields {
    for key in keys {
        fields.remove(*key);
    }
    fields
}

/// Merges a tunnel's close into its egress row (by `conn`).
fn merge_close(inv: &mut Invocation, close: Fields) {
    let conn = close.get("conn").cloned();
    let close = without(close, &["kind", "audit_id", "host", "port"]);
    let row = inv
        .egress
        .iter_mut()
        .rev()
        .find(|e| e.get("conn") == conn.as_ref());
    match row {
        Some(row) => {
            for (k, v) in close {
                match k.as_str() {
                    "ts" => row.insert("closed_ts".into(), v),
                    "error" => row.insert("close_error".into(), v),
                    "conn" => None,
                    _ => row.insert(k, v),
                };
            }
        }
        // Its egress row was in a file rotated away.
        None => inv.egress.push(close),
    }
}

/// Which folded invocations to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub denied: bool,
    pub tool: Option<String>,
    /// RFC 3339 UTC in the log's own format; compared as strings.
    pub since: Option<String>,
    pub id: Option<String>,
}

impl Filter {
    /// The part of `inv` to show, if any: `--id` may pick a nested subtree.
    pub fn apply(&self, inv: Invocation) -> Option<Invocation> {
        let inv = match &self.id {
            Some(id) => find_subtree(inv, id)?,
            None => inv,
        };
        if self
            .since
            .as_ref()
            .is_some_and(|since| inv.first_ts.as_str() < since.as_str())
        {
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
        Some(inv)
    }
}

fn find_subtree(inv: Invocation, id: &str) -> Option<Invocation> {
    if inv.audit_id == id {
        return Some(inv);
    }
    inv.children.into_iter().find_map(|child| find_subtree(child, id))
}

/// Parses `--since`: a duration back from `now` (`90s`, `15m`, `1h`, `2d`)
/// or a UTC time (`2026-11-23`, `2026-11-23T10:00Z`, `…T10:00:00Z`, with
/// or without the `Z`), into the log's timestamp format.
pub fn parse_since(arg: &str, now: std::time::SystemTime) -> Result<String, String> {
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
pub fn read_files(
    files: &[PathBuf],
    mut record: impl FnMut(Fields),
    mut bad: impl FnMut(BadLine),
) -> std::io::Result<()> {
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        read_stream(
            path,
            &mut BufReader::with_capacity(64 * 1024, file),
            0,
            &mut record,
            &mut bad,
        )?;
    }
    Ok(())
}

/// Reads complete lines from `reader` (a partial last line is left for the
/// caller, for `--follow`); returns how many lines it read.
pub fn read_stream(
    path: &Path,
    reader: &mut impl BufRead,
    first_line: u64,
    record: &mut impl FnMut(Fields),
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
        match parse_line(content) {
            Ok(fields) => record(fields),
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

    fn rec(json: &str) -> Fields {
        parse_line(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn start(id: &str, ts: &str, tool: &str, parent: Option<&str>) -> Fields {
        let parent = parent.map_or("null".to_string(), |p| format!("\"{p}\""));
        rec(&format!(
            r#"{{"ts":"{ts}","kind":"start","audit_id":"{id}","parent_audit_id":{parent},"tool":"{tool}","mode":"enforce","argv":["{tool}","install"],"cwd":"/w","real_path":"/usr/bin/{tool}","pid":1}}"#
        ))
    }

    fn egress(id: &str, conn: u64, host: &str, decision: &str, status: u16) -> Fields {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:01.000Z","kind":"egress","audit_id":"{id}","conn":{conn},"tool":"npm","mode":"enforce","method":"CONNECT","host":"{host}","port":443,"decision":"{decision}","status":{status},"reason":"r"}}"#
        ))
    }

    fn close(id: &str, conn: u64) -> Fields {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:02.000Z","kind":"egress_close","audit_id":"{id}","conn":{conn},"host":"h","port":443,"bytes_up":10,"bytes_down":20,"duration_ms":5,"error":null}}"#
        ))
    }

    fn end(id: &str, code: i32) -> Fields {
        rec(&format!(
            r#"{{"ts":"2026-11-24T00:00:03.000Z","kind":"end","audit_id":"{id}","exit_code":{code},"signal":null,"duration_ms":9,"allowed":1,"denied":0,"error":null}}"#
        ))
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
        assert_eq!(inv.egress[0]["bytes_down"], 20);
        assert_eq!(inv.egress[0]["status"], 200);
        assert_eq!(inv.egress[0]["closed_ts"], "2026-11-24T00:00:02.000Z");
        let json = inv.to_json();
        assert_eq!(json["tool"], "npm");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["ts"], "2026-11-24T00:00:00.000Z");
        assert_eq!(json["end_ts"], "2026-11-24T00:00:03.000Z");
        assert!(f.finish().is_empty());
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
    fn filters() {
        let mut inv = Invocation::new("p", "2026-11-24T00:00:00.000Z", 1);
        inv.start = Some(start("p", "2026-11-24T00:00:00.000Z", "npm", None));
        let mut child = Invocation::new("c", "2026-11-24T00:00:01.000Z", 2);
        child.start = Some(start("c", "2026-11-24T00:00:01.000Z", "aws", Some("p")));
        child.egress.push(egress("c", 1, "evil.example", "deny", 403));
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
    fn bad_lines_are_reported_with_their_number_and_skipped() {
        let data = b"{\"ts\":\"t\",\"kind\":\"start\",\"audit_id\":\"a\"}\n{\"ts\":\"t\",\"kind\":\"eg\ngarbage\n\xff\xfe\n{\"other\":\"json\"}\n\n{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}\n";
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let n = read_stream(
            Path::new("log"),
            &mut &data[..],
            0,
            &mut |r| records.push(r),
            &mut |b| bad.push(b),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 7);
        assert_eq!(records.len(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(bad[0].to_string().starts_with("log:2: skipped: "), "{}", bad[0]);
    }
}
