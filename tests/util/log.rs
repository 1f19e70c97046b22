//! The audit log as the tests read it.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::process::{lossy, Outcome};

/// Parses every line of the JSON Lines file at `path`; a line that is not a
/// JSON object fails the test with the line.
pub fn read_records(path: &Path) -> Vec<Value> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    parse_records(&data, &path.display().to_string())
}

/// Parses JSON Lines; fails naming `what` and the bad line.
pub fn parse_records(data: &[u8], what: &str) -> Vec<Value> {
    let text = String::from_utf8(data.to_vec())
        .unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}\n{}", lossy(data)));
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{what}: line is not JSON ({e}): {line:?}\n---- whole ----\n{text}")
            });
            assert!(v.is_object(), "{what}: line is not an object: {line}");
            v
        })
        .collect()
}

/// The records of one invocation and kind.
pub fn records_of<'a>(recs: &'a [Value], audit_id: &str, kind: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["audit_id"] == audit_id && r["kind"] == kind)
        .collect()
}

/// A fetch and run's two top-level invocations of `tool`, in order,
/// checked: the fetch phase enforced, then the run phase observed, not
/// isolated, naming the fetch in `fetch_audit_id`. Where the fetch ran
/// (strict mode or not) is the caller's to check.
pub fn fetch_and_run_phases<'a>(out: &Outcome, recs: &'a [Value], tool: &str) -> (&'a Value, &'a Value) {
    let starts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "start" && r["tool"] == tool && r["parent_audit_id"].is_null())
        .collect();
    check_eq!(out, starts.len(), 2, "{tool}: a fetch and a run:\n{}", dump(recs));
    let (fetch, run) = (starts[0], starts[1]);
    check_eq!(out, fetch["phase"], "fetch", "{fetch}");
    check_eq!(out, fetch["mode"], "enforce", "{fetch}");
    check!(out, fetch.get("fetch_audit_id").is_none(), "{fetch}");
    check_eq!(out, run["phase"], "run", "{run}");
    check_eq!(out, run["mode"], "observe", "{run}");
    check_eq!(out, run["isolation"], "none", "{run}");
    check_eq!(
        out,
        run["fetch_audit_id"],
        fetch["audit_id"],
        "the run names its fetch"
    );
    (fetch, run)
}

/// A printable dump of records, for failure messages.
pub fn dump(recs: &[Value]) -> String {
    recs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
}

/// `<12 hex>-<32 hex>`, lowercase.
pub fn is_audit_id(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    matches!(s.split_once('-'), Some((a, b)) if hex(a, 12) && hex(b, 32))
}

/// RFC 3339 UTC with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn is_timestamp(s: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == shape.len()
        && s.bytes()
            .zip(shape.bytes())
            .all(|(c, p)| if p == b'd' { c.is_ascii_digit() } else { c == p })
}

/// The one egress row of invocation `id` for `host`:`port`.
pub fn row_for<'a>(recs: &'a [Value], id: &str, host: &str, port: u16) -> &'a Value {
    let rows: Vec<&Value> = records_of(recs, id, "egress")
        .into_iter()
        .filter(|r| r["host"] == host && r["port"] == port)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "expected one egress row for {host}:{port} under {id}\n{}",
        dump(recs)
    );
    rows[0]
}

/// The one egress_close row of invocation `id` for connection `conn`.
pub fn close_for<'a>(recs: &'a [Value], id: &str, conn: &Value) -> &'a Value {
    let rows: Vec<&Value> = records_of(recs, id, "egress_close")
        .into_iter()
        .filter(|r| &r["conn"] == conn)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "expected one egress_close for conn {conn} under {id}\n{}",
        dump(recs)
    );
    rows[0]
}

pub fn reason(row: &Value) -> &str {
    row["reason"].as_str().unwrap_or_default()
}
