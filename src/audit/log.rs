//! The append-only JSON Lines writer, and where the log's files are.
//!
//! Each record is serialised to one line and written with a single `write(2)`
//! on a file opened `O_APPEND`, so concurrent invocations writing the same
//! file never tear or interleave a line (Linux serialises appends to one
//! inode). If the log can't be written, the writer warns once and sends every
//! record to stderr instead: nothing is silently lost, and the tool's exit
//! status is not affected. A log over `ROTATE_AT` is shifted to
//! `audit.jsonl.1` (keeping `KEEP` files) before the next row.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use crate::audit::record::{to_line, Record};

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
}
