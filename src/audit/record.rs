//! The audit log's schema, written once for the writer and the reader: the
//! four record kinds and their fields, the line around them (`ts`, `kind`,
//! `audit_id`), audit IDs and timestamps.
//!
//! A line is `{"ts":…,"kind":…,"audit_id":…,` then the record's fields in
//! declaration order, `None` written as `null`. The reader is tolerant: a
//! line with a known kind, an audit ID and a timestamp is a record even if a
//! field is missing, of the wrong type, or one it does not know (an older or
//! hand-edited log still folds). A missing or unreadable field reads as
//! absent: `None` where the reader shows it as unknown (`?`, `-`), else its
//! default (`0`, `""`, `[]`). Only lines that are not records at all (torn,
//! foreign, not JSON, an unknown kind) are rejected, each with why.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::policy::{Mode, Verdict};

/// A new audit ID: 12 hex digits of Unix milliseconds, a dash, then 128
/// random bits as 32 hex digits. Sorts by creation time as a plain string.
pub(crate) fn new_audit_id() -> Result<String, getrandom::Error> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)?;
    let millis = unix_millis(SystemTime::now());
    Ok(format_audit_id(millis, u128::from_be_bytes(random)))
}

fn format_audit_id(millis: u64, random: u128) -> String {
    format!("{:012x}-{random:032x}", millis & 0xffff_ffff_ffff)
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-24T00:10:00.123Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let millis = unix_millis(t);
    let secs = millis / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Written before the child is spawned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Start {
    pub parent_audit_id: Option<String>,
    pub tool: String,
    /// Always written; `None` only when a row read back lacks it. The mode
    /// the invocation got: an enforce-mode tool running the project's own
    /// code (`npm test`) is observed.
    pub mode: Option<Mode>,
    /// The tool's subcommand as the policy read it (`install`, `test`), if
    /// it has one.
    pub subcommand: Option<String>,
    /// As typed, argv[0] first, with secrets masked (see `redact`).
    pub argv: Vec<String>,
    /// Whether masking changed anything in `argv`. Always written; `false`
    /// when a row read back lacks it (logs from before redaction).
    pub argv_redacted: bool,
    pub cwd: Option<String>,
    pub real_path: Option<String>,
    pub pid: u32,
    /// Where the tool ran: `netns` (strict mode: a network namespace whose
    /// only way out is the gate, its own or the enclosing invocation's) or
    /// `none` (behind the plain proxy). `None` when a row read back lacks
    /// it (logs from before strict mode).
    pub isolation: Option<String>,
    /// Why `none`: what refused the namespace, or why the invocation is
    /// not strict.
    pub isolation_reason: Option<String>,
    /// A fetch-and-run invocation's phase (`npx X`, `uvx X`): `fetch`
    /// (enforced: fetches the package and runs its tree's install
    /// scripts), `run` (observed: runs the program asked for from what the
    /// fetch left), or `fetch+run` (a tool that cannot run from what it
    /// fetched, observed whole). Absent, not `null`, on every other start
    /// row, as are the two fields below, so those rows are as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// A run phase's fetch phase: the invocation that fetched what it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_audit_id: Option<String>,
    /// A run phase's program: the package it came from, as read from the
    /// files the fetch left (its package.json, its dist-info), not argv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// Strict mode's layers beyond the network namespace (`mounts`, `pid`,
    /// `seccomp`; `stdio` when a socket there is relayed): `on`, or `off:`
    /// and why. Absent, not `null`, on a row without strict mode's own
    /// namespace, so those rows are as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<std::collections::BTreeMap<String, String>>,
    /// Whether each connection is attributed to the process that made it
    /// (`on`), or `off:` and why (then every connection is judged as the
    /// tool's). Absent on rows from before attribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
}

/// A package as its own metadata names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Package {
    pub name: String,
    pub version: Option<String>,
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One per request the proxy answers, written once the answer is known and
/// before the tunnel carries a byte.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Egress {
    pub conn: u64,
    pub tool: String,
    /// Always written; `None` only when a row read back lacks it.
    pub mode: Option<Mode>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Always written; `None` only when a row read back lacks it (the
    /// reader never guesses a verdict).
    pub decision: Option<Verdict>,
    pub status: u16,
    pub reason: String,
    /// A DNS query's type (`A`, `AAAA`, `TXT`, `TYPE65`...), on strict
    /// mode's `dns` rows only. Absent, not `null`, on every other row, so
    /// those are byte for byte as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// Who made the attempt (`who`): absent where the gate did not look
    /// (a caller without the credential, a row read back from before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<Process>>,
}

/// The process behind an egress row, and whose code it ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Process {
    /// In the gate's PID namespace (the host's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// `tool`, `helper`, `package`, `project`, `program` or `unknown`.
    pub actor: String,
    /// The package whose code it ran (or the project's name, for
    /// `project`; the program's, for `program`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The lifecycle script (`postinstall`), where one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Whether the package's name was read where its code cannot forge
    /// it, from the registry's own package: only then is its entry honoured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// How the gate knows.
    pub how: String,
}

/// One per tunnel that was opened, when it closes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct EgressClose {
    pub conn: u64,
    pub host: String,
    pub port: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Always written; `None` only when a row read back lacks it.
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

/// Written after the child exits and the proxy has stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct End {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Always written; `None` only when a row read back lacks it.
    pub duration_ms: Option<u64>,
    pub allowed: u64,
    pub denied: u64,
    /// Refusals of callers without the credential past the per-invocation
    /// row cap: counted here instead of logged one by one.
    pub suppressed: u64,
    pub error: Option<String>,
    /// Strict mode's PID layer: processes the tool left behind, ended with
    /// the invocation. Absent, not `null`, without the layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leftovers: Option<u64>,
    /// Strict mode's seccomp layer: unix sockets refused (`socket(AF_UNIX)`;
    /// a row for each program's first). Not in `denied`, which counts
    /// refused connections and queries: glibc looks for nscd's socket in
    /// most processes. Absent, not `0`, when none was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_sockets: Option<u64>,
    /// With shipping: this invocation's rows still waiting in the spool
    /// (the collector had not acknowledged them) when this row was
    /// written. Absent, not `null`, without shipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spooled: Option<u64>,
}

/// The body of one audit line, tagged by its `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // built once per row and written at once: a box would only add an allocation
pub(crate) enum Record {
    Start(Start),
    Egress(Egress),
    EgressClose(EgressClose),
    End(End),
}

impl Record {
    /// The `kind` this record is written under.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Record::Start(_) => "start",
            Record::Egress(_) => "egress",
            Record::EgressClose(_) => "egress_close",
            Record::End(_) => "end",
        }
    }
}

/// One line of the log as read back: the record and the two fields every
/// line carries besides its kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct Row {
    pub ts: String,
    pub audit_id: String,
    #[serde(flatten)]
    pub record: Record,
    /// The machine a collector's file says the row came from (set by the
    /// reader, not a field of the row).
    #[serde(skip)]
    pub machine: Option<String>,
}

/// The line as written: `ts`, `kind` and `audit_id` first, so that a
/// reader (or a person) sees what a line is before its fields.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    kind: &'static str,
    audit_id: &'a str,
    #[serde(flatten)]
    fields: Fields<'a>,
}

/// A record's fields without its tag, which `Line` has already written in
/// second place.
struct Fields<'a>(&'a Record);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Record::Start(r) => r.serialize(serializer),
            Record::Egress(r) => r.serialize(serializer),
            Record::EgressClose(r) => r.serialize(serializer),
            Record::End(r) => r.serialize(serializer),
        }
    }
}

/// Serialises one record as a JSON line, newline included.
pub(super) fn to_line(audit_id: &str, record: &Record, at: SystemTime) -> Vec<u8> {
    let line = Line {
        ts: rfc3339_millis(at),
        kind: record.kind(),
        audit_id,
        fields: Fields(record),
    };
    // Serialising plain structs of strings and numbers cannot fail; if it
    // ever did, a line that says so beats a panic or a silent gap.
    let mut out = serde_json::to_vec(&line).unwrap_or_else(|e| {
        format!(r#"{{"kind":"error","audit_id":"{audit_id}","error":"cannot serialise record: {e}"}}"#)
            .into_bytes()
    });
    out.push(b'\n');
    out
}

/// A row a nested invocation relays, read strictly (no lenient reading, no
/// duplicate keys' last-one-wins: it is written back as cli-guard writes
/// a row): its audit ID, its parent's for a `start` row, and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayedRow {
    pub audit_id: String,
    /// `Some(parent)` for a `start` row (the parent may be `None`).
    pub starts_under: Option<Option<String>>,
    pub line: Vec<u8>,
}

/// Reads `line` as a relayed row, or `None`.
pub(crate) fn relayed_row(line: &[u8]) -> Option<RelayedRow> {
    let row: Row = serde_json::from_slice(line).ok()?;
    let line = Line {
        ts: row.ts.clone(),
        kind: row.record.kind(),
        audit_id: &row.audit_id,
        fields: Fields(&row.record),
    };
    let mut out = serde_json::to_vec(&line).ok()?;
    out.push(b'\n');
    let starts_under = match &row.record {
        Record::Start(start) => Some(start.parent_audit_id.clone()),
        _ => None,
    };
    Some(RelayedRow {
        audit_id: row.audit_id,
        starts_under,
        line: out,
    })
}

/// What a shipped row's syslog header says of it (`crate::ship`): its
/// time, audit ID and kind, and whether it is a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowHead {
    pub ts: String,
    pub audit_id: String,
    pub kind: &'static str,
    pub denied: bool,
}

/// The header fields of a line that reads back as a row.
pub(crate) fn head_of(line: &[u8]) -> Option<RowHead> {
    let row = parse_line(line).ok()?;
    let denied = matches!(&row.record, Record::Egress(e) if e.decision == Some(Verdict::Deny));
    Some(RowHead {
        kind: row.record.kind(),
        ts: row.ts,
        audit_id: row.audit_id,
        denied,
    })
}

/// Parses one log line into a row, or says why it is not an audit record.
pub(super) fn parse_line(line: &[u8]) -> Result<Row, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8 (a torn or foreign line)".to_string())?;
    // Nearly every line is well-formed and takes this one pass; the rest
    // are explained, or read leniently, below.
    match serde_json::from_str::<Row>(text) {
        Ok(row) => Ok(row),
        Err(_) => parse_leniently(text),
    }
}

/// The slow path of `parse_line`: the reasons a line is not a record, in
/// the order they are checked; a record with an odd field is read without
/// that field.
fn parse_leniently(text: &str) -> Result<Row, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    let Value::Object(mut fields) = value else {
        return Err("not a JSON object".to_string());
    };
    for key in ["kind", "audit_id", "ts"] {
        if !fields.get(key).is_some_and(Value::is_string) {
            return Err(format!("no {key:?}: not a cli-guard audit record"));
        }
    }
    let (Some(Value::String(ts)), Some(Value::String(audit_id)), Some(Value::String(kind))) = (
        fields.remove("ts"),
        fields.remove("audit_id"),
        fields.remove("kind"),
    ) else {
        return Err("no kind".to_string());
    };
    let tagged = |mut fields: Map<String, Value>| {
        fields.insert("kind".into(), Value::String(kind.clone()));
        fields
    };
    // A kind the schema knows reads from its tag alone (every field has a
    // default), so one that does not is unknown.
    if from_fields::<Record>(tagged(Map::new())).is_err() {
        return Err(format!("unknown kind {kind:?}"));
    }
    // Keep each field that reads on its own; drop the others.
    fields.retain(|key, value| {
        let one = Map::from_iter([(key.clone(), value.clone())]);
        from_fields::<Record>(tagged(one)).is_ok()
    });
    let record = from_fields::<Record>(tagged(fields))
        .or_else(|_| from_fields::<Record>(tagged(Map::new())))
        .map_err(|e| format!("unreadable record ({e})"))?;
    Ok(Row {
        ts,
        audit_id,
        record,
        machine: None,
    })
}

fn from_fields<T: DeserializeOwned>(fields: Map<String, Value>) -> serde_json::Result<T> {
    serde_json::from_value(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_478_400_123);
        assert_eq!(rfc3339_millis(t), "2026-11-24T00:00:00.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339_millis(t), "2000-02-29T01:02:03.000Z");
    }

    #[test]
    fn audit_id_shape_and_order() {
        let a = format_audit_id(0x19ab1c2d3e4, 1);
        assert_eq!(a, "019ab1c2d3e4-00000000000000000000000000000001");
        let b = format_audit_id(0x19ab1c2d3e5, 0);
        assert!(a < b);
        let id = new_audit_id().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.len(), 45);
        assert_ne!(id, new_audit_id().unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn line_has_kind_id_and_ts_first() {
        let Some((record, _)) = golden().into_iter().find(|(r, _)| r.kind() == "end") else {
            panic!("no end record");
        };
        let line = to_line("id1", &record, UNIX_EPOCH);
        let text = String::from_utf8(line).unwrap_or_default();
        assert!(
            text.starts_with(
                r#"{"ts":"1970-01-01T00:00:00.000Z","kind":"end","audit_id":"id1","exit_code":0"#
            ),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
    }

    const ID: &str = "019ab1c2d3e4-00000000000000000000000000000001";

    /// One record of each kind, with and without its optional fields, and
    /// the exact line the writer produced for it before the schema was
    /// shared with the reader (`subcommand` and `argv_redacted` came later).
    fn golden() -> Vec<(Record, &'static str)> {
        vec![
            (
                Record::Start(Start {
                    parent_audit_id: None,
                    tool: "npm".into(),
                    mode: Some(Mode::Enforce),
                    subcommand: Some("i".into()),
                    argv: vec!["npm".into(), "i \"x\"\n".into()],
                    argv_redacted: false,
                    cwd: Some("/w".into()),
                    real_path: None,
                    pid: 42,
                    isolation: Some("netns".into()),
                    isolation_reason: None,
                    ..Start::default()
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"start","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","parent_audit_id":null,"tool":"npm","mode":"enforce","subcommand":"i","argv":["npm","i \"x\"\n"],"argv_redacted":false,"cwd":"/w","real_path":null,"pid":42,"isolation":"netns","isolation_reason":null}"#,
            ),
            (
                Record::Start(Start {
                    parent_audit_id: Some("p".into()),
                    tool: "pip".into(),
                    mode: Some(Mode::Observe),
                    subcommand: None,
                    argv: vec![],
                    argv_redacted: true,
                    cwd: None,
                    real_path: Some("/usr/bin/pip".into()),
                    pid: 1,
                    isolation: Some("none".into()),
                    isolation_reason: Some("CLI_GUARD_STRICT=off".into()),
                    ..Start::default()
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"start","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","parent_audit_id":"p","tool":"pip","mode":"observe","subcommand":null,"argv":[],"argv_redacted":true,"cwd":null,"real_path":"/usr/bin/pip","pid":1,"isolation":"none","isolation_reason":"CLI_GUARD_STRICT=off"}"#,
            ),
            (
                Record::Egress(Egress {
                    conn: 3,
                    tool: "npm".into(),
                    mode: Some(Mode::Enforce),
                    method: Some("CONNECT".into()),
                    host: Some("registry.npmjs.org".into()),
                    port: Some(443),
                    decision: Some(Verdict::Allow),
                    status: 200,
                    reason: "allowlist rule".into(),
                    qtype: None,
                    process: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"egress","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","conn":3,"tool":"npm","mode":"enforce","method":"CONNECT","host":"registry.npmjs.org","port":443,"decision":"allow","status":200,"reason":"allowlist rule"}"#,
            ),
            (
                Record::Egress(Egress {
                    conn: 4,
                    tool: "npm".into(),
                    mode: Some(Mode::Observe),
                    method: None,
                    host: None,
                    port: None,
                    decision: Some(Verdict::Deny),
                    status: 405,
                    reason: "plain".into(),
                    qtype: None,
                    process: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"egress","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","conn":4,"tool":"npm","mode":"observe","method":null,"host":null,"port":null,"decision":"deny","status":405,"reason":"plain"}"#,
            ),
            (
                Record::Egress(Egress {
                    conn: 0,
                    tool: "npm".into(),
                    mode: Some(Mode::Enforce),
                    method: Some("dns".into()),
                    host: Some("registry.npmjs.org".into()),
                    port: None,
                    decision: Some(Verdict::Allow),
                    status: 200,
                    reason: "answered from the private pool: 198.18.0.1".into(),
                    qtype: Some("A".into()),
                    process: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"egress","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","conn":0,"tool":"npm","mode":"enforce","method":"dns","host":"registry.npmjs.org","port":null,"decision":"allow","status":200,"reason":"answered from the private pool: 198.18.0.1","qtype":"A"}"#,
            ),
            (
                Record::EgressClose(EgressClose {
                    conn: 3,
                    host: "registry.npmjs.org".into(),
                    port: 443,
                    bytes_up: 10,
                    bytes_down: 20,
                    duration_ms: Some(5),
                    error: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"egress_close","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","conn":3,"host":"registry.npmjs.org","port":443,"bytes_up":10,"bytes_down":20,"duration_ms":5,"error":null}"#,
            ),
            (
                Record::EgressClose(EgressClose {
                    conn: 3,
                    host: "h".into(),
                    port: 8443,
                    bytes_up: 0,
                    bytes_down: 0,
                    duration_ms: Some(0),
                    error: Some("reset".into()),
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"egress_close","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","conn":3,"host":"h","port":8443,"bytes_up":0,"bytes_down":0,"duration_ms":0,"error":"reset"}"#,
            ),
            (
                Record::End(End {
                    exit_code: Some(0),
                    signal: None,
                    duration_ms: Some(5),
                    allowed: 1,
                    denied: 2,
                    suppressed: 0,
                    error: None,
                    leftovers: None,
                    unix_sockets: None,
                    spooled: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"end","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","exit_code":0,"signal":null,"duration_ms":5,"allowed":1,"denied":2,"suppressed":0,"error":null}"#,
            ),
            (
                Record::End(End {
                    exit_code: None,
                    signal: Some("SIGKILL".into()),
                    duration_ms: Some(7),
                    allowed: 0,
                    denied: 0,
                    suppressed: 3,
                    error: Some("boom".into()),
                    leftovers: Some(1),
                    unix_sockets: Some(4),
                    spooled: None,
                }),
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"end","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","exit_code":null,"signal":"SIGKILL","duration_ms":7,"allowed":0,"denied":0,"suppressed":3,"error":"boom","leftovers":1,"unix_sockets":4}"#,
            ),
        ]
    }

    fn golden_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_478_400_123)
    }

    #[test]
    fn lines_are_byte_for_byte_what_the_writer_wrote_before() {
        for (record, want) in golden() {
            let line = to_line(ID, &record, golden_time());
            assert_eq!(String::from_utf8_lossy(&line), format!("{want}\n"));
        }
    }

    #[test]
    fn each_kind_round_trips() {
        for (record, _) in golden() {
            let line = to_line(ID, &record, golden_time());
            let row = parse_line(line.strip_suffix(b"\n").unwrap_or(&line)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(row.ts, "2026-11-24T00:00:00.123Z");
            assert_eq!(row.audit_id, ID);
            assert_eq!(row.record, record);
        }
    }

    #[test]
    fn an_unknown_field_is_ignored() {
        let row = parse_line(
            br#"{"ts":"t","kind":"egress_close","audit_id":"a","conn":2,"future":{"x":[1]},"bytes_up":9}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            row.record,
            Record::EgressClose(EgressClose {
                conn: 2,
                bytes_up: 9,
                ..EgressClose::default()
            })
        );
    }

    /// A fetch-and-run pair's start rows: the new fields come last, and
    /// only on them.
    #[test]
    fn fetch_and_run_start_rows_carry_their_phase_and_package() {
        let run = Record::Start(Start {
            tool: "npx".into(),
            mode: Some(Mode::Observe),
            argv: vec!["npx".into(), "-y".into(), "netcli".into()],
            pid: 7,
            isolation: Some("none".into()),
            isolation_reason: Some("runs the program".into()),
            phase: Some("run".into()),
            fetch_audit_id: Some("f1".into()),
            package: Some(Package {
                name: "netcli".into(),
                version: Some("1.0.0".into()),
            }),
            ..Start::default()
        });
        let line = to_line(ID, &run, golden_time());
        assert_eq!(
            String::from_utf8_lossy(&line),
            concat!(
                r#"{"ts":"2026-11-24T00:00:00.123Z","kind":"start","audit_id":"019ab1c2d3e4-00000000000000000000000000000001","#,
                r#""parent_audit_id":null,"tool":"npx","mode":"observe","subcommand":null,"argv":["npx","-y","netcli"],"#,
                r#""argv_redacted":false,"cwd":null,"real_path":null,"pid":7,"isolation":"none","isolation_reason":"runs the program","#,
                r#""phase":"run","fetch_audit_id":"f1","package":{"name":"netcli","version":"1.0.0"}}"#,
                "\n"
            )
        );
        let row = parse_line(line.strip_suffix(b"\n").unwrap_or(&line)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.record, run);
        // An odd package reads as absent, the rest of the row as written.
        let row =
            parse_line(br#"{"ts":"t","kind":"start","audit_id":"a","tool":"npx","phase":"run","package":7}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        let Record::Start(start) = row.record else {
            panic!("not a start: {row:?}");
        };
        assert_eq!((start.phase.as_deref(), start.package), (Some("run"), None));
    }

    #[test]
    fn a_start_from_before_redaction_reads_as_not_redacted() {
        let row = parse_line(
            br#"{"ts":"t","kind":"start","audit_id":"a","tool":"npm","argv":["npm","i"],"cwd":"/w","pid":3}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let Record::Start(start) = row.record else {
            panic!("not a start: {row:?}");
        };
        assert_eq!(start.argv, ["npm", "i"]);
        assert!(!start.argv_redacted);
        assert_eq!(start.pid, 3);
    }

    #[test]
    fn a_missing_or_odd_field_reads_as_absent() {
        let row = parse_line(
            br#"{"ts":"t","kind":"egress","audit_id":"a","conn":"one","host":"h","port":70000,"decision":"maybe","status":403}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            row.record,
            Record::Egress(Egress {
                host: Some("h".into()),
                status: 403,
                ..Egress::default()
            })
        );
        let row = parse_line(br#"{"ts":"t","kind":"start","audit_id":"a","argv":"npm"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.record, Record::Start(Start::default()));
    }

    #[test]
    fn lines_that_are_not_records_say_why() {
        let why = |line: &[u8]| parse_line(line).err().unwrap_or_default();
        assert_eq!(why(b"\xff\xfe"), "not UTF-8 (a torn or foreign line)");
        assert_eq!(
            why(br#"{"ts":"2026-01-01T00:00:00.000Z","kind":"egr"#),
            "not a JSON object (EOF while parsing a string at line 1 column 44)"
        );
        assert_eq!(why(b"[1,2,3]"), "not a JSON object");
        assert_eq!(
            why(br#"{"hello":"world"}"#),
            r#"no "kind": not a cli-guard audit record"#
        );
        assert_eq!(
            why(br#"{"kind":"end","ts":"t"}"#),
            r#"no "audit_id": not a cli-guard audit record"#
        );
        assert_eq!(
            why(br#"{"kind":"end","audit_id":"a","ts":5}"#),
            r#"no "ts": not a cli-guard audit record"#
        );
        assert_eq!(
            why(br#"{"ts":"t","kind":"mystery","audit_id":"a"}"#),
            r#"unknown kind "mystery""#
        );
        assert_eq!(
            why("{\"ts\":\"t\",\"kind\":\"m\u{e9}\\u0001\\\"\",\"audit_id\":\"a\"}".as_bytes()),
            "unknown kind \"m\u{e9}\\u{1}\\\"\""
        );
    }
}
