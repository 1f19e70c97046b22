//! Processes under test: `Running` (spawned, output captured in the
//! background, a hard timeout) and `Outcome` (finished), each with a full
//! report for failure messages; what /proc says about a process; signals.

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::log::Log;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Upper bound for any one process under test to finish.
pub const PROC_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any one socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for waiting on something a process is expected to do.
pub const WAIT: Duration = Duration::from_secs(5);

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of /proc/PID/stat (R, S, T, Z, ...), None if gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
pub fn pgrp_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The foreground process group of `pid`'s controlling terminal (field 8
/// of /proc/PID/stat, `tpgid`): None if gone or without a terminal.
pub fn tpgid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let tpgid: i32 = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(5)?
        .parse()
        .ok()?;
    (tpgid > 0).then_some(tpgid)
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .is_some_and(|stat| {
                    let after = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or_default();
                    after.split_whitespace().nth(1) == Some(&pid.to_string())
                })
        })
        .collect()
}

/// True when `pid` is stopped: state T, or (dash runs commands with vfork)
/// state D while waiting on vfork'ed children that are all stopped.
pub fn is_stopped(pid: i32) -> bool {
    match proc_state(pid) {
        Some('T') => true,
        Some('D') => {
            let kids = children_of(pid);
            !kids.is_empty() && kids.iter().all(|k| proc_state(*k) == Some('T'))
        }
        _ => false,
    }
}

/// True when `pid` no longer runs (gone, or a zombie nobody reaped yet).
pub fn is_dead(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Whether `sig` is pending for `pid`: sent and not yet taken (a signal
/// the process blocks, as the shim blocks those it reads from a signalfd,
/// waits there until it is read). False once `pid` is gone.
pub fn signal_pending(pid: i32, sig: Signal) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (sig as i32 - 1);
    status
        .lines()
        .filter_map(|l| l.strip_prefix("ShdPnd:").or_else(|| l.strip_prefix("SigPnd:")))
        .filter_map(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .any(|mask| mask & bit != 0)
}

/// The pids, in this test's PID namespace, of every process whose argv is
/// `argv`, exactly.
pub fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Sends `sig` to `pid` (negative: a process group).
pub fn send(pid: i32, sig: Signal) {
    assert!(pid != 0 && pid != -1, "refusing to signal pid {pid}");
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The NUL-separated fields of a file such as /proc/PID/cmdline or
/// `printf '%s\0' ...` output.
pub fn split_nul(data: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = data.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    if data.last() == Some(&0) {
        fields.pop();
    }
    fields
}

/// A process under test, with stdout/stderr captured in the background.
/// Dropping it (say, when a test panics) SIGKILLs the process.
#[derive(Debug)]
pub struct Running {
    child: Child,
    what: String,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    done_rx: mpsc::Receiver<()>,
    readers: usize,
    audit: Option<PathBuf>,
    transcript: Option<Arc<Mutex<Vec<u8>>>>,
    status: Option<ExitStatus>,
}

impl Running {
    pub fn spawn(
        mut cmd: Command,
        audit: Option<PathBuf>,
        transcript: Option<Arc<Mutex<Vec<u8>>>>,
    ) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        drop(cmd); // close our copies of any stdio handed to the child
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let (tx, done_rx) = mpsc::channel();
        let mut readers = 0;
        if let Some(pipe) = child.stdout.take() {
            readers += 1;
            pump(pipe, out.clone(), tx.clone());
        }
        if let Some(pipe) = child.stderr.take() {
            readers += 1;
            pump(pipe, err.clone(), tx.clone());
        }
        Running {
            child,
            what,
            out,
            err,
            done_rx,
            readers,
            audit,
            transcript,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// The exit status if the process has exited.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    pub fn wait(self) -> Outcome {
        self.wait_for(PROC_TIMEOUT)
    }

    /// Waits up to `limit`; on timeout kills the process and fails the test.
    pub fn wait_for(mut self, limit: Duration) -> Outcome {
        if !wait_until(limit, || self.poll().is_some()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("timed out after {limit:?}; killed it\n\n{}", self.report());
        }
        // Output pipes close when the last holder exits; a stray grandchild
        // may keep them open a little longer, so don't wait forever.
        let deadline = Instant::now() + Duration::from_secs(2);
        for _ in 0..self.readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        Outcome {
            status: self.status.unwrap(),
            stdout: self.out.lock().unwrap().clone(),
            stderr: self.err.lock().unwrap().clone(),
            what: self.what.clone(),
            audit: self.audit.clone(),
            transcript: self.transcript.as_ref().map(|t| t.lock().unwrap().clone()),
        }
    }

    pub fn report(&self) -> String {
        render_report(
            &self.what,
            &match self.status {
                Some(s) => describe_status(s),
                None => "still running".into(),
            },
            &self.out.lock().unwrap(),
            &self.err.lock().unwrap(),
            self.audit.as_deref(),
            self.transcript
                .as_ref()
                .map(|t| t.lock().unwrap().clone())
                .as_deref(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pump(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
        let _ = done.send(());
    });
}

fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig).map(Signal::as_str).unwrap_or("?");
            format!("killed by signal {sig} ({name})")
        }
        _ => format!("{s:?}"),
    }
}

fn render_report(
    what: &str,
    status: &str,
    stdout: &[u8],
    stderr: &[u8],
    audit: Option<&Path>,
    transcript: Option<&[u8]>,
) -> String {
    let mut r = format!(
        "---- command ----\n{what}\n---- status ----\n{status}\n---- stdout ----\n{}\n---- stderr ----\n{}\n",
        lossy(stdout),
        lossy(stderr)
    );
    if let Some(t) = transcript {
        r.push_str(&format!("---- terminal transcript ----\n{}\n", lossy(t)));
    }
    if let Some(p) = audit {
        let log = fs::read(p)
            .map(|d| lossy(&d))
            .unwrap_or_else(|e| format!("<unreadable: {e}>"));
        r.push_str(&format!("---- audit log {} ----\n{log}\n", p.display()));
    }
    r
}

/// A finished process.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    what: String,
    audit: Option<PathBuf>,
    transcript: Option<Vec<u8>>,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn stdout(&self) -> String {
        lossy(&self.stdout)
    }

    pub fn stderr(&self) -> String {
        lossy(&self.stderr)
    }

    /// The audit rows printed on stderr (the lines that start with `{`);
    /// fails naming `what` on one that is not a row.
    pub fn stderr_log(&self, what: &str) -> Log {
        let json: String = self
            .stderr()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| format!("{l}\n"))
            .collect();
        Log::parse(json.as_bytes(), what)
    }

    /// Lines of stderr that start with `cli-guard:`.
    pub fn guard_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("cli-guard:"))
            .map(str::to_owned)
            .collect()
    }

    pub fn report(&self) -> String {
        render_report(
            &self.what,
            &describe_status(self.status),
            &self.stdout,
            &self.stderr,
            self.audit.as_deref(),
            self.transcript.as_deref(),
        )
    }

    pub fn expect_code(&self, code: i32) -> &Outcome {
        check_eq!(self, self.code(), Some(code), "unexpected exit status");
        self
    }
}
