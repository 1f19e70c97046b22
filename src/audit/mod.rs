//! The audit log: record types, audit IDs, timestamps, and the append-only
//! JSON Lines writer.
//!
//! Each record is serialised to one line and written with a single `write(2)`
//! on a file opened `O_APPEND`, so concurrent invocations writing the same
//! file never tear or interleave a line (Linux serialises appends to one
//! inode). If the log can't be written, the writer warns once and sends every
//! record to stderr instead: nothing is silently lost, and the tool's exit
//! status is not affected.

pub mod fold;
pub mod render;
pub mod show;
pub mod suggest;
mod tail;

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::policy::{Mode, Verdict};

/// Where the log goes when nothing says otherwise, under the state dir.
const LOG_RELATIVE: &str = "cli-guard/audit.jsonl";
/// A log at or over this size is rotated before the next row is written.
pub const ROTATE_AT: u64 = 32 * 1024 * 1024;
/// How many rotated files are kept (audit.jsonl.1 … audit.jsonl.5).
pub const KEEP: u32 = 5;

/// The rotated file `n` of `path` (`audit.jsonl.n`).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log's files, oldest first: the rotated ones that exist, then the
/// live one (whether or not it exists yet).
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=KEEP)
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// The audit log path from its variables (see `Env::audit_log_path`):
/// `$CLI_GUARD_AUDIT_LOG`, else `$XDG_STATE_HOME/cli-guard/audit.jsonl`,
/// else `~/.local/state/cli-guard/audit.jsonl`. Empty or relative state
/// dirs are ignored, as the XDG spec says. Pure.
pub fn log_path(
    audit_log: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(path) = audit_log.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    if let Some(dir) = xdg_state_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(dir.join(LOG_RELATIVE));
    }
    home.map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|home| home.join(".local/state").join(LOG_RELATIVE))
}

/// A new audit ID: 12 hex digits of Unix milliseconds, a dash, then 128
/// random bits as 32 hex digits. Sorts by creation time as a plain string.
pub fn new_audit_id() -> Result<String, getrandom::Error> {
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
pub fn rfc3339_millis(t: SystemTime) -> String {
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
#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub parent_audit_id: Option<String>,
    pub tool: String,
    pub mode: Mode,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub real_path: Option<String>,
    pub pid: u32,
}

/// One per request the proxy answers, written once the answer is known and
/// before the tunnel carries a byte.
#[derive(Debug, Clone, Serialize)]
pub struct Egress {
    pub conn: u64,
    pub tool: String,
    pub mode: Mode,
    pub method: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub decision: Verdict,
    pub status: u16,
    pub reason: String,
}

/// One per tunnel that was opened, when it closes.
#[derive(Debug, Clone, Serialize)]
pub struct EgressClose {
    pub conn: u64,
    pub host: String,
    pub port: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// Written after the child exits and the proxy has stopped.
#[derive(Debug, Clone, Serialize)]
pub struct End {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub duration_ms: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Refusals of callers without the credential past the per-invocation
    /// row cap: counted here instead of logged one by one.
    pub suppressed: u64,
    pub error: Option<String>,
}

/// The body of one audit line.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Record {
    Start(Start),
    Egress(Egress),
    EgressClose(EgressClose),
    End(End),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Start(_) => "start",
            Record::Egress(_) => "egress",
            Record::EgressClose(_) => "egress_close",
            Record::End(_) => "end",
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    kind: &'static str,
    audit_id: &'a str,
    #[serde(flatten)]
    record: &'a Record,
}

/// Serialises one record as a JSON line, newline included.
pub fn to_line(audit_id: &str, record: &Record, at: SystemTime) -> Vec<u8> {
    let line = Line {
        ts: rfc3339_millis(at),
        kind: record.kind(),
        audit_id,
        record,
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

/// Where records go.
#[derive(Debug)]
enum Target {
    File { log: LogFile, path: PathBuf },
    Stderr,
    Memory(Vec<Vec<u8>>),
}

/// The append-only writer for one invocation. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    audit_id: String,
    target: Mutex<Target>,
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`. Never fails: if the log
    /// can't be opened, warns once on stderr and writes records there.
    pub fn open(audit_id: String, path: Option<&Path>) -> AuditLog {
        let target = match path {
            None => {
                warn_fallback("no audit log path (HOME is unset)", "set CLI_GUARD_AUDIT_LOG");
                Target::Stderr
            }
            Some(path) => match LogFile::open(path) {
                Ok(log) => Target::File {
                    log,
                    path: path.to_path_buf(),
                },
                Err(e) => {
                    warn_fallback(
                        &format!("cannot open the audit log {}: {e}", path.display()),
                        "make it writable or set CLI_GUARD_AUDIT_LOG to a writable path",
                    );
                    Target::Stderr
                }
            },
        };
        AuditLog {
            audit_id,
            target: Mutex::new(target),
        }
    }

    /// A log that keeps its lines in memory (for egress-demo).
    pub fn in_memory(audit_id: String) -> AuditLog {
        AuditLog {
            audit_id,
            target: Mutex::new(Target::Memory(Vec::new())),
        }
    }

    pub fn audit_id(&self) -> &str {
        &self.audit_id
    }

    /// Appends one record. A write failure switches to stderr (warning
    /// once) and the record goes there, so it is never lost.
    pub fn write(&self, record: &Record) {
        let line = to_line(&self.audit_id, record, SystemTime::now());
        let mut target = self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *target {
            Target::File { log, path } => {
                if let Err(e) = keep_current(log, path).and_then(|()| log.file.write_all(&line)) {
                    // A partial write (a full disk) leaves a fragment; end it
                    // so the next writer's row does not run into it.
                    let _ = log.file.write(b"\n");
                    warn_fallback(
                        &format!("cannot write the audit log {}: {e}", path.display()),
                        "free space or fix the file, or set CLI_GUARD_AUDIT_LOG",
                    );
                    *target = Target::Stderr;
                    write_stderr(&line);
                }
            }
            Target::Stderr => write_stderr(&line),
            Target::Memory(lines) => lines.push(line),
        }
    }

    /// The lines kept by an in-memory log (empty for the others).
    pub fn take_lines(&self) -> Vec<Vec<u8>> {
        let mut target = self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *target {
            Target::Memory(lines) => std::mem::take(lines),
            _ => Vec::new(),
        }
    }
}

/// The open log and the identity (device, inode) of the file it is, taken
/// once at open, so that each row needs one stat of the path, not two.
#[derive(Debug)]
struct LogFile {
    file: File,
    id: (u64, u64),
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<LogFile> {
        let file = open_log_file(path)?;
        let meta = file.metadata()?;
        Ok(LogFile {
            file,
            id: (meta.dev(), meta.ino()),
        })
    }
}

/// Before a row: reopens the log if another writer rotated it (our
/// descriptor then points at audit.jsonl.1), and rotates it if it is over
/// the cap. The path's size is the file's, ours or not, when it is ours.
fn keep_current(log: &mut LogFile, path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(current) if (current.dev(), current.ino()) == log.id => {
            if current.len() >= ROTATE_AT {
                rotate(path)?;
                *log = LogFile::open(path)?;
            }
        }
        _ => *log = LogFile::open(path)?,
    }
    Ok(())
}

/// Shifts audit.jsonl → .1 → … → .KEEP under an exclusive lock, if the log
/// is still over the cap once the lock is held.
fn rotate(path: &Path) -> std::io::Result<()> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(PathBuf::from(lock_path))?;
    let _lock =
        Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| std::io::Error::from(errno))?;
    if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < ROTATE_AT {
        return Ok(());
    }
    for n in (1..KEEP).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

fn open_log_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn warn_fallback(what: &str, fix: &str) {
    eprintln!("cli-guard: {what}; writing audit records to stderr instead ({fix})");
}

fn write_stderr(line: &[u8]) {
    // Nothing better to do if stderr is gone too.
    let _ = std::io::stderr().lock().write_all(line);
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
    fn log_path_precedence() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            log_path(some("/a/b.jsonl"), some("/x"), some("/h")),
            Some(PathBuf::from("/a/b.jsonl"))
        );
        assert_eq!(
            log_path(some(""), some("/x"), some("/h")),
            Some(PathBuf::from("/x/cli-guard/audit.jsonl"))
        );
        assert_eq!(
            log_path(None, some("relative"), some("/h")),
            Some(PathBuf::from("/h/.local/state/cli-guard/audit.jsonl"))
        );
        assert_eq!(log_path(None, None, None), None);
    }

    #[test]
    fn rotated_names_and_order() {
        let dir = std::env::temp_dir().join(format!("cli-guard-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join("audit.jsonl");
        assert_eq!(rotated(&log, 2), dir.join("audit.jsonl.2"));
        for n in [1, 3] {
            std::fs::write(rotated(&log, n), "").unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            files_oldest_first(&log),
            vec![rotated(&log, 3), rotated(&log, 1), log.clone()]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn line_has_kind_id_and_ts_first() {
        let record = Record::End(End {
            exit_code: Some(0),
            signal: None,
            duration_ms: 5,
            allowed: 1,
            denied: 2,
            suppressed: 0,
            error: None,
        });
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
}
