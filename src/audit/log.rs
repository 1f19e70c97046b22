//! The append-only JSON Lines writer, and where the log's files are.
//!
//! Each record is serialised to one line and written with a single `write(2)`
//! on a file opened `O_APPEND`, so concurrent invocations writing the same
//! file never tear or interleave a line (Linux serialises appends to one
//! inode). If the log can't be written, the writer warns once and sends every
//! record to stderr instead: nothing is silently lost, and the tool's exit
//! status is not affected. A short write (a full disk) is never continued:
//! its fragment is ended with a newline, left as one torn line that the
//! reader skips, and the whole row goes to stderr with the ones after it. A log over `ROTATE_AT` is shifted to
//! `audit.jsonl.1` (keeping `KEEP` files) before the next row.
//!
//! Each row is chained to the one before it (`chain`): under an exclusive
//! `flock` on `audit.jsonl.lock`, the writer rotates if it must, reads the
//! log's last line (unless it wrote it itself), puts the link first, and
//! writes; so rows of any number of writers, in any number of processes,
//! and rows relayed from nested invocations, chain in the order the file
//! has them, across a rotation too. With shipping configured (`ship`), the
//! same row goes to the spool beside the log in the same turn of the
//! lock, and the shipping thread is woken.
//!
//! The log is opened once, `O_NOFOLLOW | O_NONBLOCK`, and must be a regular
//! file: a symlink (to /dev/null, say), a FIFO (on which an open would hang)
//! or anything else there is refused before the tool runs ([`Refused`]). It
//! is reopened by path only after a rotation, which is recognised under the
//! rotation's lock by the file this writer holds now being `audit.jsonl.1`;
//! a log renamed or replaced otherwise keeps getting the rows, wherever it
//! now is, and stderr says so once.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::audit::chain::{self, Link};
use crate::audit::record::{to_line, Record};
use crate::ship::{self, ShipConfig, Shipping};
use crate::sys::flock;

/// Where the log goes when nothing says otherwise, under the state dir.
const LOG_RELATIVE: &str = "cli-guard/audit.jsonl";
/// A log at or over this size is rotated before the next row is written.
pub(super) const ROTATE_AT: u64 = 32 * 1024 * 1024;
/// How many rotated files are kept (audit.jsonl.1 … audit.jsonl.5).
pub(super) const KEEP: u32 = 5;

/// The rotated file `n` of `path` (`audit.jsonl.n`).
pub(super) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log's files, oldest first: the rotated ones that exist, then the
/// live one (whether or not it exists yet).
pub(crate) fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
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
pub(crate) fn log_path(
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
    File {
        log: LogFile,
        path: PathBuf,
        /// The spool and its thread, when shipping is configured.
        ship: Option<Shipping>,
    },
    /// The enclosing strict invocation's gate, which appends them to its
    /// log (`gate::rows`): this one's is read-only in its namespace.
    Relay(TcpStream),
    Stderr,
    Memory(Vec<Vec<u8>>),
}

/// Where a guarded tool nested in a strict invocation sends its rows when
/// its own log is read-only: the enclosing gate's proxy listener, and the
/// head that opens the stream there (with the proxy credential).
#[derive(Clone)]
pub(crate) struct RelayTo {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) head: String,
}

impl std::fmt::Debug for RelayTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The head holds the credential.
        f.debug_struct("RelayTo").field("addr", &self.addr).finish()
    }
}

impl RelayTo {
    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect_timeout(&self.addr, std::time::Duration::from_secs(2))?;
        stream.write_all(self.head.as_bytes())?;
        Ok(stream)
    }
}

/// The append-only writer for one invocation. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct AuditLog {
    audit_id: String,
    target: Mutex<Target>,
}

/// Something other than a regular file where the log should be: the
/// invocation must not run, since its rows would be lost (a symlink to
/// /dev/null) or the open would hang (a FIFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`. If the log can't be
    /// opened (no path, no permission, a full disk), warns once on stderr
    /// and writes records there. Refused: something other than a regular
    /// file is at `path`.
    /// Where the log is read-only and `relay` is given (a tool nested in
    /// a strict invocation), rows go to the enclosing gate instead.
    /// With `ship`, rows are spooled and shipped too; where shipping is
    /// required and rows could be neither shipped nor spooled, refused.
    pub(crate) fn open(
        audit_id: String,
        path: Option<&Path>,
        relay: Option<&RelayTo>,
        ship: Option<&ShipConfig>,
    ) -> Result<AuditLog, Refused> {
        let mut target = match path {
            None => {
                warn_fallback("no audit log path (HOME is unset)", "set CLI_GUARD_AUDIT_LOG");
                Target::Stderr
            }
            Some(path) => match LogFile::open(path) {
                Ok(log) => Target::File {
                    log,
                    path: path.to_path_buf(),
                    ship: None,
                },
                Err(OpenError::NotRegular(what)) => {
                    return Err(Refused(format!(
                        "the audit log {} is {what}, not a regular file: rows written there would be lost or \
                         the write would hang, so nothing runs. Remove it (a new log is made), or set \
                         CLI_GUARD_AUDIT_LOG to a file",
                        path.display()
                    )))
                }
                Err(OpenError::Io(e)) => match (e.raw_os_error(), relay.map(RelayTo::connect)) {
                    (Some(nix::libc::EROFS), Some(Ok(stream))) => Target::Relay(stream),
                    _ => {
                        warn_fallback(
                            &format!("cannot open the audit log {}: {e}", path.display()),
                            "make it writable or set CLI_GUARD_AUDIT_LOG to a writable path",
                        );
                        Target::Stderr
                    }
                },
            },
        };
        if let Some(config) = ship {
            attach_shipping(&mut target, config)?;
        }
        Ok(AuditLog {
            audit_id,
            target: Mutex::new(target),
        })
    }

    /// What waits on this log's shipping, if it ships: taken without the
    /// writer's lock, for the end of the invocation.
    pub(crate) fn shipping(&self) -> Option<ship::Waiter> {
        let target = self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*target {
            Target::File { ship: Some(ship), .. } => Some(ship.waiter()),
            _ => None,
        }
    }

    /// A log that keeps its lines in memory (for egress-demo).
    pub(crate) fn in_memory(audit_id: String) -> AuditLog {
        AuditLog {
            audit_id,
            target: Mutex::new(Target::Memory(Vec::new())),
        }
    }

    pub(crate) fn audit_id(&self) -> &str {
        &self.audit_id
    }

    /// Appends one record. A write failure switches to stderr (warning
    /// once) and the record goes there, so it is never lost.
    pub(crate) fn write(&self, record: &Record) {
        self.append_line(&to_line(&self.audit_id, record, SystemTime::now()));
    }

    /// Appends one row (one line, newline included): this invocation's, or
    /// one another invocation wrote (`gate::rows`), as is.
    pub(crate) fn append_line(&self, line: &[u8]) {
        let mut target = self
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *target {
            Target::File { log, path, ship } => {
                let mut stderr = std::io::stderr().lock();
                if !log.append_chained(path, line, ship.as_mut(), &mut stderr) {
                    *target = Target::Stderr;
                }
            }
            Target::Relay(stream) => {
                if stream.write_all(line).is_err() {
                    warn_fallback(
                        "the enclosing strict invocation's gate takes no more rows",
                        "nothing to do: it has ended",
                    );
                    write_stderr(line);
                    *target = Target::Stderr;
                }
            }
            Target::Stderr => write_stderr(line),
            Target::Memory(lines) => lines.push(line.to_vec()),
        }
    }

    /// The lines kept by an in-memory log (empty for the others).
    pub(crate) fn take_lines(&self) -> Vec<Vec<u8>> {
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
    /// The path no longer leads to this file, and not by a rotation: said
    /// once, then rows keep going to this file.
    moved: bool,
    /// `audit.jsonl.lock`, held for each row (and each rotation); `None`
    /// where it cannot be opened (rows are then chained without it).
    lock: Option<File>,
    /// The last row this writer wrote, while it is the log's last line.
    last: Option<Last>,
    /// A row could not be spooled: said once.
    warned_spool: bool,
}

/// A row this writer wrote: which file and how long it was after it, so
/// that the next row needs no read when no one wrote in between.
#[derive(Debug, Clone, Copy)]
struct Last {
    file: (u64, u64),
    size: u64,
    digest: chain::Digest,
    link: Link,
}

/// Why the log could not be opened.
#[derive(Debug)]
enum OpenError {
    /// What is at the path, when it is not a regular file.
    NotRegular(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

impl LogFile {
    fn open(path: &Path) -> Result<LogFile, OpenError> {
        let file = open_log_file(path)?;
        let meta = file.metadata()?;
        let lock_at = lock_path(path);
        let lock = match open_lock(&lock_at) {
            Ok(lock) => Some(lock),
            Err(e) => {
                // Rows of concurrent writers may then take the same place in
                // the chain, which `audit --verify` reports: say why now.
                eprintln!(
                    "cli-guard: cannot open the audit log's lock {}: {e}; rows are chained without it, \
                     and concurrent writers may break the chain (make it a regular file you can open)",
                    lock_at.display()
                );
                None
            }
        };
        Ok(LogFile {
            file,
            id: (meta.dev(), meta.ino()),
            moved: false,
            lock,
            last: None,
            warned_spool: false,
        })
    }

    /// Opens the log at `path` again in place of this file (after a
    /// rotation), keeping the lock.
    fn reopen(&mut self, path: &Path) -> std::io::Result<()> {
        let file = match open_log_file(path) {
            Ok(file) => file,
            Err(OpenError::Io(e)) => return Err(e),
            Err(OpenError::NotRegular(what)) => {
                return Err(std::io::Error::other(format!(
                    "{what} is where the new log should be"
                )))
            }
        };
        let meta = file.metadata()?;
        self.file = file;
        self.id = (meta.dev(), meta.ino());
        self.moved = false;
        Ok(())
    }

    /// Appends `row` (a whole line) with its link, under the lock; spools
    /// it when shipping. `false` when the log could not be written and
    /// the row went to `fallback` (later rows go there too).
    fn append_chained(
        &mut self,
        path: &Path,
        row: &[u8],
        ship: Option<&mut Shipping>,
        fallback: &mut impl Write,
    ) -> bool {
        // The lock is taken out for the turn, so that it can be held while
        // the rest of `self` changes.
        let lock = self.lock.take();
        let ok = self.append_locked(path, row, ship, fallback, lock.as_ref());
        self.lock = lock;
        ok
    }

    /// [`append_chained`](Self::append_chained) with the lock file at hand.
    fn append_locked(
        &mut self,
        path: &Path,
        row: &[u8],
        ship: Option<&mut Shipping>,
        fallback: &mut impl Write,
        lock: Option<&File>,
    ) -> bool {
        let ready = lock.map(flock::exclusive).transpose().and_then(|held| {
            keep_current(self, path)?;
            let (link, ends_line) = self.next_link(path)?;
            Ok((held, link, ends_line))
        });
        let (line, link) = match &ready {
            Ok((_, link, ends_line)) => {
                let mut line = if *ends_line { Vec::new() } else { b"\n".to_vec() };
                line.extend_from_slice(&chain::chained(row, *link));
                (line, Some(*link))
            }
            Err(_) => (row.to_vec(), None),
        };
        let size_before = self.file.metadata().map(|m| m.len()).ok();
        let ok = append_or_divert(
            ready
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            &mut self.file,
            path,
            &line,
            fallback,
        );
        self.last = None;
        let (Some(link), Some(size), true) = (link, size_before, ok) else {
            return ok;
        };
        let own = line.strip_prefix(b"\n").unwrap_or(&line);
        let body = own.strip_suffix(b"\n").unwrap_or(own);
        self.last = Some(Last {
            file: self.id,
            size: size + line.len() as u64,
            digest: chain::sha256(body),
            link,
        });
        if let Some(ship) = ship {
            if let Err(warning) = ship.spool(own, link.seq) {
                if !std::mem::replace(&mut self.warned_spool, true) {
                    let _ = writeln!(fallback, "cli-guard: {warning}");
                }
            }
        }
        // The lock is released here, after the spool has the row too.
        drop(ready);
        true
    }

    /// The next row's link, and whether the log ends with a whole line
    /// (if not, the row starts with a newline, ending the fragment).
    fn next_link(&self, path: &Path) -> std::io::Result<(Link, bool)> {
        let meta = self.file.metadata()?;
        let (file, size, id) = if meta.len() > 0 {
            (None, meta.len(), (meta.dev(), meta.ino()))
        } else {
            // A new log after a rotation: the chain goes on from the
            // rotated file's last row.
            match open_to_read(&rotated(path, 1)) {
                Some(old) => {
                    let m = old.metadata()?;
                    (Some(old), m.len(), (m.dev(), m.ino()))
                }
                None => return Ok((Link { seq: 1, prev: None }, true)),
            }
        };
        if let Some(last) = self.last.filter(|l| l.file == id && l.size == size) {
            let link = Link {
                seq: last.link.seq.saturating_add(1),
                prev: Some(last.digest),
            };
            return Ok((link, true));
        }
        let tail = read_tail(file.as_ref().unwrap_or(&self.file), size)?;
        let earlier: Vec<&[u8]> = tail.earlier.iter().map(Vec::as_slice).collect();
        let link = chain::next_link(Some(chain::End {
            digest: tail.digest,
            head: &tail.head,
            earlier: &earlier,
        }));
        // A fragment in the rotated file was ended by its rotation.
        Ok((link, tail.ends_line || file.is_some()))
    }
}

/// Opens a file to read, never through a symlink; `None` if it cannot be.
fn open_to_read(path: &Path) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
}

/// How far back the writer reads for a line with a link, after a last
/// line without one (a torn row, rows from before the chain).
const LOOK_BACK: u64 = 64 * 1024;
/// What the writer reads at a time.
const CHUNK: u64 = 64 * 1024;

/// The end of a non-empty log, as the next row's link needs it.
#[derive(Debug)]
struct Tail {
    /// The last line's digest (without its newline).
    digest: chain::Digest,
    /// Its first bytes.
    head: Vec<u8>,
    /// The lines before it within [`LOOK_BACK`], newest last; read only
    /// when the last line has no link.
    earlier: Vec<Vec<u8>>,
    /// Whether the file ends with a newline.
    ends_line: bool,
}

/// Reads the end of `file` (its first `size` bytes, at least one): finds
/// where its last line starts and hashes that line as it streams past, so
/// that a line of any length costs bounded memory.
fn read_tail(file: &File, size: u64) -> std::io::Result<Tail> {
    use std::os::unix::fs::FileExt;
    let read = |from: u64, to: u64| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
        file.read_exact_at(&mut buf, from)?;
        Ok(buf)
    };
    let ends_line = read(size - 1, size)? == b"\n";
    let end = size - u64::from(ends_line);
    // Where the last line starts: after the last newline before `end`.
    let mut start = 0;
    let mut at = end;
    while at > 0 {
        let from = at.saturating_sub(CHUNK);
        if let Some(i) = read(from, at)?.iter().rposition(|b| *b == b'\n') {
            start = from + i as u64 + 1;
            break;
        }
        at = from;
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut head = Vec::new();
    let mut at = start;
    while at < end {
        let to = (at + CHUNK).min(end);
        let chunk = read(at, to)?;
        if head.len() < chain::HEAD {
            head.extend_from_slice(&chunk[..chunk.len().min(chain::HEAD - head.len())]);
        }
        context.update(&chunk);
        at = to;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    let mut earlier = Vec::new();
    if chain::link_of(&head).is_none() && start > 0 {
        let from = (start - 1).saturating_sub(LOOK_BACK);
        let window = read(from, start - 1)?;
        let mut lines: Vec<&[u8]> = window.split(|b| *b == b'\n').collect();
        if from > 0 {
            // The first piece is a line's end.
            lines.remove(0);
        }
        earlier = lines.into_iter().map(<[u8]>::to_vec).collect();
    }
    Ok(Tail {
        digest,
        head,
        earlier,
        ends_line,
    })
}

/// Opens the spool and its thread for a file log; the rest need none (a
/// relay's rows are shipped by the gate that appends them). Refused when
/// shipping is required and rows can be neither shipped nor spooled.
fn attach_shipping(target: &mut Target, config: &ShipConfig) -> Result<(), Refused> {
    let refuse = |why: &str| {
        Refused(format!(
            "shipping the audit log is required ({}) and rows can be neither shipped nor spooled: {why}. \
             Nothing runs until they can: bring the collector {} back and run `cli-guard ship`, or fix what is named",
            config.source, config.collector
        ))
    };
    match target {
        Target::File { path, ship, .. } => match Shipping::open(config, path) {
            Ok(opened) => *ship = Some(opened),
            Err(why) if config.required => return Err(refuse(&why)),
            Err(why) => eprintln!(
                "cli-guard: not shipping to {}: {why}; rows stay in the audit log only",
                config.collector
            ),
        },
        Target::Stderr if config.required => return Err(refuse("the audit log cannot be written")),
        Target::Relay(_) | Target::Stderr | Target::Memory(_) => {}
    }
    Ok(())
}

/// Before a row, under the lock: rotates the log if it is over the cap,
/// and follows a rotation (another writer's, or this one's): after one,
/// this writer's file is `audit.jsonl.1` and a new log is opened. A path
/// that leads elsewhere for any other reason (the log renamed, a symlink
/// or another file put there) is not followed: the rows stay with the
/// file this writer opened, and stderr says so once.
fn keep_current(log: &mut LogFile, path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(current) if (current.dev(), current.ino()) == log.id => {
            if current.len() >= ROTATE_AT {
                rotate(path)?;
                return reopen_after_rotation(log, path);
            }
            Ok(())
        }
        _ if !log.moved => reopen_after_rotation(log, path),
        _ => Ok(()),
    }
}

/// Reopens the log (the lock held) if this writer's file is now a
/// rotated one (`audit.jsonl.1`, …); otherwise keeps it and warns.
fn reopen_after_rotation(log: &mut LogFile, path: &Path) -> std::io::Result<()> {
    // One rotation or several (another writer's, while this one waited).
    let rotated_away = (1..=KEEP).any(|n| {
        std::fs::symlink_metadata(rotated(path, n)).is_ok_and(|old| (old.dev(), old.ino()) == log.id)
    });
    if rotated_away {
        return log.reopen(path);
    }
    log.moved = true;
    warn_moved(path);
    Ok(())
}

fn warn_moved(path: &Path) {
    eprintln!(
        "cli-guard: the audit log {} is no longer the file this invocation opened, and no rotation moved it \
         (renamed, or replaced); rows keep going to the file it opened, wherever that is now",
        path.display()
    );
}

/// The lock every row and every rotation is written under, beside the
/// log (`audit.jsonl.lock`).
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    PathBuf::from(lock_path)
}

/// Opens (creating) a lock file: read-only is enough for `flock`, so it
/// opens where only the file is writable too; never through a symlink.
pub(crate) fn open_lock(path: &Path) -> std::io::Result<File> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// Opens a file to append to as the log is opened (the spool): created
/// 0600, never through a symlink, a regular file only.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    open_log_file(path).map_err(|e| match e {
        OpenError::Io(e) => e,
        OpenError::NotRegular(what) => std::io::Error::other(format!("it is {what}, not a regular file")),
    })
}

/// Shifts audit.jsonl → .1 → … → .KEEP (the lock held), if the log is
/// still over the cap.
fn rotate(path: &Path) -> std::io::Result<()> {
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

/// Opens the log for appending, creating it: never through a symlink
/// (`O_NOFOLLOW`: ELOOP), never waiting (`O_NONBLOCK`: a FIFO without a
/// reader is ENXIO, and one with a reader is caught by the check that
/// follows), never as a controlling terminal; then it must be a regular
/// file, and blocking writes come back.
fn open_log_file(path: &Path) -> Result<File, OpenError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // Read too: the writer reads the last line to link the next row to.
    let opened = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => return Err(not_regular(path).map_or(OpenError::Io(e), OpenError::NotRegular)),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegular(kind_of(&meta.file_type())));
    }
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    Ok(file)
}

/// What is at `path`, when it is there and not a regular file.
fn not_regular(path: &Path) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    (!meta.file_type().is_file()).then(|| kind_of(&meta.file_type()))
}

fn kind_of(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Appends one row to the log file, once `ready` (the rotation check)
/// says it may; if that fails, warns on `fallback` and writes the whole row
/// there. `false` when it did, so that later rows go there too.
fn append_or_divert(
    ready: std::io::Result<()>,
    file: &mut impl Write,
    path: &Path,
    line: &[u8],
    fallback: &mut impl Write,
) -> bool {
    let Err(e) = ready.and_then(|()| append_row(file, line)) else {
        return true;
    };
    // Nothing better to do if stderr is gone too.
    let _ = writeln!(
        fallback,
        "{}",
        fallback_warning(
            &format!("cannot write the audit log {}: {e}", path.display()),
            "free space or fix the file, or set CLI_GUARD_AUDIT_LOG",
        )
    );
    let _ = fallback.write_all(line);
    false
}

/// Writes `line` (a whole row, newline included) with exactly one
/// `write(2)`: on an `O_APPEND` file that is what keeps rows of concurrent
/// writers from interleaving, so a short write is never continued by a
/// second call (`write_all` would: its rest would land after whatever
/// another writer appended meanwhile). A short write (a full disk, a quota)
/// leaves a fragment, which is ended with a newline so the next writer's
/// row starts on a line of its own; the fragment is then one torn line,
/// and the error says the row did not make it. A failed `write(2)` wrote
/// nothing, so there is nothing to end.
fn append_row(file: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    loop {
        match file.write(line) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(n) => {
                if n > 0 {
                    let _ = file.write(b"\n");
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", line.len()),
                ));
            }
            // Interrupted before a byte was written: the same row again is
            // still one row.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn fallback_warning(what: &str, fix: &str) -> String {
    format!("cli-guard: {what}; writing audit records to stderr instead ({fix})")
}

fn warn_fallback(what: &str, fix: &str) {
    eprintln!("{}", fallback_warning(what, fix));
}

fn write_stderr(line: &[u8]) {
    // Nothing better to do if stderr is gone too.
    let _ = std::io::stderr().lock().write_all(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that takes at most `room` more bytes, and at most `per_write`
    /// of them per `write(2)`, recording the length of each it was given.
    #[derive(Default)]
    struct Cramped {
        room: usize,
        per_write: usize,
        data: Vec<u8>,
        calls: Vec<usize>,
        interrupt_first: bool,
    }

    impl Write for Cramped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if std::mem::take(&mut self.interrupt_first) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            self.calls.push(buf.len());
            let n = buf.len().min(self.room).min(self.per_write);
            if n == 0 && !buf.is_empty() {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
            }
            self.room -= n;
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const ROW: &[u8] = b"{\"ts\":\"2026-11-24T00:00:00.000Z\",\"kind\":\"end\",\"audit_id\":\"a\"}\n";

    fn divert(file: &mut Cramped) -> (bool, Vec<u8>) {
        let mut stderr = Vec::new();
        let kept = append_or_divert(Ok(()), file, Path::new("/l/audit.jsonl"), ROW, &mut stderr);
        (kept, stderr)
    }

    #[test]
    fn a_row_is_one_write() {
        let mut file = Cramped {
            room: 1 << 20,
            per_write: 1 << 20,
            ..Cramped::default()
        };
        assert_eq!(divert(&mut file), (true, Vec::new()));
        assert_eq!(file.calls, [ROW.len()]);
        assert_eq!(file.data, ROW);
    }

    #[test]
    fn an_interrupted_write_is_tried_again_whole() {
        let mut file = Cramped {
            room: 1 << 20,
            per_write: 1 << 20,
            interrupt_first: true,
            ..Cramped::default()
        };
        assert!(divert(&mut file).0);
        assert_eq!(file.data, ROW);
    }

    #[test]
    fn a_short_write_is_ended_not_continued_and_the_row_goes_whole_to_stderr() {
        // The kernel takes 10 bytes of the row, then the newline.
        let mut file = Cramped {
            room: 1 << 20,
            per_write: 10,
            ..Cramped::default()
        };
        let (kept, stderr) = divert(&mut file);
        assert!(!kept, "later rows go to stderr");
        assert_eq!(file.calls, [ROW.len(), 1], "the row once, then the newline");
        let mut torn = ROW[..10].to_vec();
        torn.push(b'\n');
        assert_eq!(
            file.data, torn,
            "the fragment, ended: the next row starts on its own line"
        );
        let stderr = String::from_utf8_lossy(&stderr);
        let (warning, row) = stderr.split_once('\n').unwrap_or_default();
        assert!(
            warning.contains("cannot write the audit log /l/audit.jsonl: short write: 10 of"),
            "{warning}"
        );
        assert_eq!(row.as_bytes(), ROW, "the whole row, not the rest of it");
    }

    #[test]
    fn a_failed_write_leaves_nothing_to_end_and_the_row_goes_to_stderr() {
        let mut file = Cramped::default();
        let (kept, stderr) = divert(&mut file);
        assert!(!kept);
        assert!(file.data.is_empty());
        assert!(stderr.ends_with(ROW), "{}", String::from_utf8_lossy(&stderr));
    }

    #[test]
    fn a_log_that_cannot_be_readied_is_not_written_and_the_row_goes_to_stderr() {
        let mut file = Cramped {
            room: 1 << 20,
            ..Cramped::default()
        };
        file.per_write = 1 << 20;
        let mut stderr = Vec::new();
        let gone = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!append_or_divert(
            gone,
            &mut file,
            Path::new("/l"),
            ROW,
            &mut stderr
        ));
        assert!(file.calls.is_empty());
        assert!(stderr.ends_with(ROW));
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

    /// A fresh directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cli-guard-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn end_row() -> Record {
        Record::End(crate::audit::record::End::default())
    }

    #[test]
    fn anything_but_a_regular_file_is_refused_before_a_row() {
        let dir = scratch("refused");
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap_or_else(|e| panic!("{e}"));
        let fifo = dir.join("fifo.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        let subdir = dir.join("dir.jsonl");
        std::fs::create_dir(&subdir).unwrap_or_else(|e| panic!("{e}"));
        for (path, what) in [
            (&link, "a symbolic link"),
            (&fifo, "a FIFO"),
            (&subdir, "a directory"),
        ] {
            // A FIFO would hang a plain open: this one must return.
            let refused = AuditLog::open("id".into(), Some(path), None, None).err();
            assert!(
                refused
                    .as_ref()
                    .is_some_and(|r| r.0.contains(what) && r.0.contains("not a regular file")),
                "{path:?}: {refused:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_renamed_log_keeps_the_rows_and_its_path_is_not_followed() {
        let dir = scratch("renamed");
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open("id".into(), Some(&path), None, None).unwrap_or_else(|e| panic!("{e}"));
        log.write(&end_row());
        let away = dir.join("elsewhere.jsonl");
        std::fs::rename(&path, &away).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/dev/null", &path).unwrap_or_else(|e| panic!("{e}"));
        log.write(&end_row());
        let kept = std::fs::read_to_string(&away).unwrap_or_default();
        assert_eq!(kept.lines().count(), 2, "{kept}");
        assert!(std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_by_another_writer_is_followed() {
        let dir = scratch("rotation");
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open("id".into(), Some(&path), None, None).unwrap_or_else(|e| panic!("{e}"));
        log.write(&end_row());
        // What another writer's rotation leaves: this file is .1 now.
        std::fs::rename(&path, rotated(&path, 1)).unwrap_or_else(|e| panic!("{e}"));
        log.write(&end_row());
        let old = std::fs::read_to_string(rotated(&path, 1)).unwrap_or_default();
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!((old.lines().count(), new.lines().count()), (1, 1), "{old}|{new}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
