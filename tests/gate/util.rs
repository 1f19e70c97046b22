//! Helpers shared by the gate tests.
//!
//! Layout:
//! - `check!`/`check_eq!`: assertions that, on failure, print the full report
//!   of the process under test (command, status, stdout, stderr, audit log).
//! - `TempDir`: a private directory that removes itself on drop.
//! - `Gate`: one sandbox per test: `shims/` (symlinks to the built binary),
//!   `real/` (fake "real tools", POSIX sh scripts, later on PATH), `state/`
//!   (what the fake tools record), `work/` (the cwd) and a private audit log.
//! - `Running`/`Outcome`: a spawned process with captured output and a hard
//!   timeout, so a broken implementation fails instead of hanging.
//! - `Proxy`/`Answer`: a raw CONNECT client over `std::net::TcpStream`.
//! - `Upstream`: loopback servers on 127.0.0.1:0 that count connections.
//! - `Pty`: a pseudo-terminal for Ctrl-C/Ctrl-Z tests.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cli-guard");
/// The six proxy variables the child gets (docs/contract.md), written out
/// here rather than imported, so the tests stay an independent check.
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Upper bound for any one process under test to finish.
pub const PROC_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any one socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for waiting on something a process is expected to do.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to keep watching after a signal arrived, to catch a second copy.
pub const SETTLE: Duration = Duration::from_millis(300);

/// `assert!` that appends the full report of `$ctx` (anything with a
/// `report() -> String`) to the failure message.
macro_rules! check {
    ($ctx:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("{}\n\n{}", format_args!($($arg)+), $ctx.report());
        }
    };
}

/// `assert_eq!` that appends the full report of `$ctx` to the failure message.
macro_rules! check_eq {
    ($ctx:expr, $left:expr, $right:expr, $($arg:tt)+) => {
        // `match` keeps temporaries alive, as std's assert_eq! does.
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    panic!(
                        "{}\n  left: {:?}\n right: {:?}\n\n{}",
                        format_args!($($arg)+),
                        left,
                        right,
                        $ctx.report()
                    );
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Temp dirs

/// A fresh directory under cargo's per-target temp dir (same filesystem as
/// the built binary, so hard links to it work), removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("g{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        let path = fs::canonicalize(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Hermetic commands

/// Variables, by exact name, that route a process through a proxy or tell
/// cli-guard it already runs behind a gate. A test process started under a
/// gate (say, `cargo test` through cli-guard's own cargo shim) has them
/// all, and a child that inherited them would chain through that gate.
pub const STEERING_VARS: [&str; 12] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "PIP_PROXY",
    "CARGO_HTTP_PROXY",
    "NODE_USE_ENV_PROXY",
    "GIT_CONFIG_COUNT",
];

/// Whether the variable `name` steers a child: one of `STEERING_VARS`,
/// any `CLI_GUARD_*` or `GIT_CONFIG_*`, npm's `npm_config_*proxy*` (npm
/// reads them in any case) and yarn's `YARN_*PROXY*`.
pub fn is_steering(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    STEERING_VARS.contains(&name)
        || name.starts_with("CLI_GUARD_")
        || name.starts_with("GIT_CONFIG_")
        || (lower.starts_with("npm_config_") && lower.contains("proxy"))
        || (name.starts_with("YARN_") && name.contains("PROXY"))
}

/// Removes from `cmd` every steering variable (`is_steering`) this test
/// process has, and those of `STEERING_VARS` in any case, so nothing a
/// test runs inherits a proxy or a gate. Call it first: a variable the
/// test sets on `cmd` afterwards stays.
pub fn hermetic(cmd: &mut Command) -> &mut Command {
    for var in STEERING_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_steering) {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `Command::new(program)`, made `hermetic`. Every process the tests start
/// is made here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    hermetic(&mut cmd);
    cmd
}

/// Where the local program `name` is installed: on PATH, or in a usual bin
/// or sbin directory. A test that needs it fails, naming it, when it is
/// missing; it is never skipped.
pub fn require(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is needed by this test and is not installed (.ci/run installs it with apt)")
        })
}

// ---------------------------------------------------------------------------
// Small utilities

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

/// Writes `data` to `path` atomically (write a temp file, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data).unwrap();
    fs::rename(&tmp, path).unwrap();
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

/// Sends `sig` to `pid` (negative: a process group).
pub fn send(pid: i32, sig: Signal) {
    assert!(pid != 0 && pid != -1, "refusing to signal pid {pid}");
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Deterministic pseudo-random bytes (xorshift), for relay payloads.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn lossy(b: &[u8]) -> String {
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

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Standard base64 with padding (RFC 4648), written here rather than taken
/// from the crate, so the tests check the gate's credentials independently.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Copies `src` to a new executable file `dst` in a separate process.
///
/// A file this (multi-threaded) test process holds open for writing leaks,
/// for a moment, into every child another test thread forks, and exec'ing
/// it then fails with ETXTBSY ("Text file busy"). `cp` writes the file
/// instead, and has exited before anything runs it.
pub fn install_executable(src: &Path, dst: &Path) {
    let st = command("/bin/cp")
        .arg(src)
        .arg(dst)
        .env_clear()
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "cp {} {}: {st}", src.display(), dst.display());
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
}

static NEXT_SRC: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// The sandbox

/// Shell functions every fake tool gets. `S` is the state directory.
/// - `rec "$@"`: record argv, pid, ppid, then the environment (last, so its
///   presence means the others are there);
/// - `hold`: wait (bounded, ~15 s) for `$S/done`, or until the sandbox is gone;
/// - `code`: the exit code the test asked for in `$S/done`.
const PRELUDE: &str = r#"
rec() {
  printf '%s\0' "$0" "$@" > "$S/argv.tmp" && mv "$S/argv.tmp" "$S/argv"
  echo $$ > "$S/pid.tmp" && mv "$S/pid.tmp" "$S/pid"
  echo $PPID > "$S/ppid.tmp" && mv "$S/ppid.tmp" "$S/ppid"
  env -0 > "$S/env.tmp" && mv "$S/env.tmp" "$S/env"
}
hold() {
  n=0
  while [ ! -e "$S/done" ]; do
    n=$((n + 1))
    if [ "$n" -gt 300 ] || [ ! -d "$S" ]; then exit 124; fi
    sleep 0.05
  done
}
code() { cat "$S/done"; }
"#;

/// The standard fake tool: record, wait for the test, exit with its code.
pub const HOLD: &str = "rec \"$@\"\nhold\nexit \"$(code)\"\n";

/// A sandbox for one test. See the module doc.
#[derive(Debug)]
pub struct Gate {
    pub tmp: TempDir,
    pub shims: PathBuf,
    pub real: PathBuf,
    pub state: PathBuf,
    pub work: PathBuf,
    pub home: PathBuf,
    pub audit: PathBuf,
    /// PATH for every command; defaults to shims, real, /usr/bin, /bin.
    pub path: Vec<PathBuf>,
}

impl Gate {
    pub fn new() -> Gate {
        let tmp = TempDir::new();
        let root = tmp.path().to_path_buf();
        let mk = |name: &str| {
            let p = root.join(name);
            fs::create_dir(&p).unwrap();
            p
        };
        let (shims, real, state, work, home) = (mk("shims"), mk("real"), mk("state"), mk("work"), mk("home"));
        let audit = root.join("log").join("audit.jsonl");
        let path = vec![
            shims.clone(),
            real.clone(),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/bin"),
        ];
        Gate {
            tmp,
            shims,
            real,
            state,
            work,
            home,
            audit,
            path,
        }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Creates (if needed) and returns `root/name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.root().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// `shims/NAME` -> the built binary (idempotent).
    pub fn shim(&self, name: &str) -> PathBuf {
        let p = self.shims.join(name);
        if fs::symlink_metadata(&p).is_err() {
            symlink(BIN, &p).unwrap();
        }
        p
    }

    /// Writes an executable `#!/bin/sh` script at `path`: the prelude, then `body`.
    pub fn script(&self, path: &Path, body: &str) -> PathBuf {
        let s = self.state.to_str().unwrap();
        assert!(!s.contains('\''), "state path must not need quoting: {s}");
        let text =
            format!("#!/bin/sh\n# fake tool written by the cli-guard tests\nS='{s}'\n{PRELUDE}\n{body}");
        let src = self
            .dir("src")
            .join(format!("{}", NEXT_SRC.fetch_add(1, Ordering::SeqCst)));
        fs::write(&src, text).unwrap();
        install_executable(&src, path);
        path.to_path_buf()
    }

    /// A fake tool `real/NAME` running `body`.
    pub fn tool(&self, name: &str, body: &str) -> PathBuf {
        self.script(&self.real.join(name), body)
    }

    /// The PATH value for commands.
    pub fn path_var(&self) -> std::ffi::OsString {
        std::env::join_paths(&self.path).unwrap()
    }

    /// A command for `program` with a clean, private environment: only PATH,
    /// HOME and CLI_GUARD_AUDIT_LOG, so nothing from the machine leaks in.
    ///
    /// These tests drive the plain proxy from outside, as a client on the
    /// host's loopback (the fake tool publishes the URL it was given), so
    /// they run with `CLI_GUARD_STRICT=off`: in strict mode that listener is
    /// inside the tool's namespace, out of the test's reach. Strict mode has
    /// its own tests (`strict`), which set it back with [`Gate::strict`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = command(program);
        cmd.env_clear()
            .env("PATH", self.path_var())
            .env("HOME", &self.home)
            .env("CLI_GUARD_AUDIT_LOG", &self.audit)
            .env("CLI_GUARD_STRICT", "off")
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Sets `CLI_GUARD_STRICT` on `cmd` (made by [`Gate::command`], which
    /// turns strict mode off): `auto` (the default a user gets), `require`
    /// or `off`.
    pub fn strict<'c>(cmd: &'c mut Command, setting: &str) -> &'c mut Command {
        cmd.env("CLI_GUARD_STRICT", setting)
    }

    /// `NAME ARGS...` as a shell would run it: the shim `shims/NAME`, with
    /// argv[0] = NAME as typed.
    pub fn shim_cmd<I, A>(&self, name: &str, args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut cmd = self.command(self.shim(name));
        cmd.arg0(name).args(args);
        cmd
    }

    /// The binary under its own name, `cli-guard ARGS...`.
    pub fn cli_guard<I, A>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut cmd = self.command(BIN);
        cmd.args(args);
        cmd
    }

    pub fn start(&self, cmd: Command) -> Running {
        Running::spawn(cmd, Some(self.audit.clone()), None)
    }

    pub fn run(&self, cmd: Command) -> Outcome {
        self.start(cmd).wait()
    }

    pub fn state_path(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// Lets the holding fake tool exit with `code`.
    pub fn release(&self, code: i32) {
        write_atomic(&self.state_path("done"), code.to_string().as_bytes());
    }

    /// Waits for the fake tool to create `state/NAME` and returns its bytes.
    /// Fails early, with the full report, if the process under test exits.
    pub fn wait_state(&self, run: &mut Running, name: &str) -> Vec<u8> {
        let path = self.state_path(name);
        let deadline = Instant::now() + PROC_TIMEOUT;
        loop {
            if let Ok(data) = fs::read(&path) {
                return data;
            }
            if let Some(status) = run.poll() {
                // One last look: the file may have appeared just before exit.
                if let Ok(data) = fs::read(&path) {
                    return data;
                }
                panic!(
                    "process exited ({status}) before the fake tool wrote {}\n\n{}",
                    path.display(),
                    run.report()
                );
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {}\n\n{}", path.display(), run.report());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the fake tool's recorded environment.
    pub fn wait_env(&self, run: &mut Running) -> ChildEnv {
        let data = self.wait_state(run, "env");
        ChildEnv::parse(&data)
    }

    /// The fake tool's recorded pid.
    pub fn child_pid(&self, run: &mut Running) -> i32 {
        let data = self.wait_state(run, "pid");
        lossy(&data).trim().parse().unwrap()
    }

    /// The fake tool's recorded argv ($0 first).
    pub fn child_argv(&self, run: &mut Running) -> Vec<Vec<u8>> {
        split_nul(&self.wait_state(run, "argv"))
    }

    /// Every record of the audit log.
    pub fn records(&self) -> Vec<Value> {
        read_records(&self.audit)
    }

    /// Runs `tool` (a holding fake tool) through its shim with `env` added,
    /// and waits until the fake tool has recorded its environment.
    pub fn session(&self, tool: &str, env: &[(&str, &str)]) -> (Running, ChildEnv) {
        self.tool(tool, HOLD);
        let mut cmd = self.shim_cmd(tool, ["install"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut run = self.start(cmd);
        let child_env = self.wait_env(&mut run);
        (run, child_env)
    }

    /// Lets the holding fake tool exit with `code`; the shim must exit the same.
    pub fn finish(&self, run: Running, code: i32) -> Outcome {
        self.release(code);
        let out = run.wait();
        out.expect_code(code);
        out
    }

    /// A CLI_GUARD_RESOLVE value mapping each `host:port` to `addr`. `host:port` -> `addr`.
    pub fn resolve(entries: &[(&str, SocketAddr)]) -> String {
        entries
            .iter()
            .map(|(hp, a)| format!("{hp}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

// ---------------------------------------------------------------------------
// Processes

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

    /// The audit records printed on stderr (the lines that start with
    /// `{`), parsed; fails naming `what` on one that is not a record.
    pub fn stderr_records(&self, what: &str) -> Vec<Value> {
        let json: String = self
            .stderr()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| format!("{l}\n"))
            .collect();
        parse_records(json.as_bytes(), what)
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

// ---------------------------------------------------------------------------
// The child's environment and the proxy client

/// The environment the fake tool recorded with `env -0`.
#[derive(Debug)]
pub struct ChildEnv(pub BTreeMap<String, String>);

impl ChildEnv {
    pub fn parse(data: &[u8]) -> ChildEnv {
        let mut vars = BTreeMap::new();
        for entry in split_nul(data) {
            let entry = lossy(&entry);
            if let Some((k, v)) = entry.split_once('=') {
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
        ChildEnv(vars)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key`; fails listing the whole environment if unset.
    pub fn var(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("child env lacks {key}; it has:\n{:#?}", self.0))
    }

    /// The proxy named by HTTPS_PROXY.
    pub fn proxy(&self) -> Proxy {
        let url = self.var("HTTPS_PROXY");
        Proxy::parse(url).unwrap_or_else(|e| panic!("HTTPS_PROXY={url:?}: {e}"))
    }

    pub fn audit_id(&self) -> &str {
        self.var("CLI_GUARD_AUDIT_ID")
    }
}

/// Where the proxy listens, parsed from its URL as a URL (scheme, optional
/// `user:pass@`, host, port), so credentials added later keep working.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub url: String,
    pub host: String,
    pub addr: SocketAddr,
    pub auth: Option<String>,
}

impl Proxy {
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let rest = url.strip_prefix("http://").ok_or("scheme is not http://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => (Some(format!("Basic {}", base64(userinfo.as_bytes()))), hp),
            None => (None, authority),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or("no port")?;
        let port: u16 = port.parse().map_err(|e| format!("port: {e}"))?;
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        let addr = SocketAddr::new(ip.parse().map_err(|e| format!("host {host}: {e}"))?, port);
        Ok(Proxy {
            url: url.to_owned(),
            host: host.to_owned(),
            addr,
            auth,
        })
    }

    /// A new connection to the proxy, with read/write timeouts.
    pub fn dial(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot reach the proxy at {}: {e}", self.addr));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// A well-formed CONNECT head for `authority`.
    pub fn connect_head(&self, authority: &str) -> Vec<u8> {
        self.head_with(authority, &format!("Host: {authority}\r\n"))
    }

    /// A CONNECT head for `authority` with `headers` (each ending CRLF).
    pub fn head_with(&self, authority: &str, headers: &str) -> Vec<u8> {
        let mut h = format!("CONNECT {authority} HTTP/1.1\r\n{headers}");
        if let Some(a) = &self.auth {
            h.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    /// Sends `raw` on a new connection and reads the whole answer.
    pub fn ask(&self, raw: &[u8]) -> Answer {
        let mut s = self.dial();
        if let Err(e) = s.write_all(raw) {
            return Answer::failed(format!("write failed: {e}"));
        }
        read_answer(&mut s, true)
    }

    /// `ask` for `raw` with this invocation's credential added after the
    /// request line, as a real client sends it.
    pub fn ask_authed(&self, raw: &[u8]) -> Answer {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(raw.len(), |i| i + 2);
        let mut req = raw[..line_end].to_vec();
        if let Some(a) = &self.auth {
            req.extend_from_slice(format!("Proxy-Authorization: {a}\r\n").as_bytes());
        }
        req.extend_from_slice(&raw[line_end..]);
        self.ask(&req)
    }

    /// `ask` for a well-formed CONNECT to `authority`.
    pub fn connect(&self, authority: &str) -> Answer {
        self.ask(&self.connect_head(authority))
    }

    /// Through an allowed tunnel to an echo upstream: `early` behind the
    /// head, then `more`, each checked as it comes back, then a half-close
    /// answered by EOF. Failures report `ctx`.
    pub fn echo_tunnel_and_close(&self, ctx: &Running, authority: &str, early: &[u8], more: &[u8]) {
        let (a, mut s) = self.tunnel(authority, early);
        check_eq!(ctx, a.status, 200, "{}", a.report());
        let mut echoed = vec![0u8; early.len()];
        check!(
            ctx,
            s.read_exact(&mut echoed).is_ok() && echoed == early,
            "early bytes echoed"
        );
        check!(ctx, echo_roundtrip(&mut s, more).is_ok(), "relay");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        check!(ctx, at_eof(&mut s), "the tunnel closes");
    }

    /// Sends a CONNECT head and `early` bytes in one write; reads only the
    /// answer head, leaving the stream positioned at the tunnel's first byte.
    pub fn tunnel(&self, authority: &str, early: &[u8]) -> (Answer, TcpStream) {
        let mut s = self.dial();
        let mut packet = self.connect_head(authority);
        packet.extend_from_slice(early);
        s.write_all(&packet).unwrap();
        let a = read_answer(&mut s, false);
        (a, s)
    }
}

/// A proxy's answer.
#[derive(Debug)]
pub struct Answer {
    /// 0 when no status line arrived.
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the proxy closed the connection after the answer.
    pub closed: bool,
    pub raw: Vec<u8>,
}

impl Answer {
    fn failed(why: String) -> Answer {
        Answer {
            status: 0,
            status_line: format!("<no answer: {why}>"),
            headers: Vec::new(),
            body: Vec::new(),
            closed: false,
            raw: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        lossy(&self.body)
    }

    pub fn report(&self) -> String {
        format!(
            "---- proxy answer ----\n{}{}",
            lossy(&self.raw),
            lossy(&self.body)
        )
    }
}

/// Sends `data` on `s` from a second thread, then half-closes, while this
/// thread reads everything that comes back until EOF: a transfer in both
/// directions at once, as a real client makes it.
pub fn send_and_read_back(mut s: TcpStream, data: &[u8]) -> (io::Result<usize>, Vec<u8>) {
    let mut w = s.try_clone().unwrap();
    let d = data.to_vec();
    let writer = thread::spawn(move || {
        w.write_all(&d).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let read = s.read_to_end(&mut back);
    writer.join().unwrap();
    (read, back)
}

/// `read`, retried when a stop/continue of this test process interrupts it
/// (a socket read with a timeout then fails with EINTR).
pub fn read_retrying(s: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads an answer head byte by byte (so no tunnel byte is consumed); for
/// non-200 answers with `body`, reads the body (Content-Length, else to EOF).
pub fn read_answer(s: &mut TcpStream, body: bool) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match read_retrying(s, &mut byte) {
            Ok(0) if raw.is_empty() => return Answer::failed("connection closed".into()),
            Ok(0) => break,
            Ok(_) => raw.push(byte[0]),
            Err(e) if raw.is_empty() => return Answer::failed(format!("read failed: {e}")),
            Err(_) => break,
        }
        if raw.len() > 64 * 1024 {
            break;
        }
    }
    let text = lossy(&raw);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut a = Answer {
        status,
        status_line,
        headers,
        body: Vec::new(),
        closed: false,
        raw,
    };
    if body && status != 200 {
        match a.header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                let mut b = vec![0u8; n];
                if s.read_exact(&mut b).is_ok() {
                    a.body = b;
                }
                a.closed = at_eof(s);
            }
            None => {
                let mut b = Vec::new();
                a.closed = s.read_to_end(&mut b).is_ok();
                a.body = b;
            }
        }
    }
    a
}

/// Whether the peer closes `s` (EOF or reset) within IO_TIMEOUT with no more data.
pub fn at_eof(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match read_retrying(s, &mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

// ---------------------------------------------------------------------------
// Upstream servers

/// A loopback address that never answers: a listener with a backlog of 0
/// that never accepts, its one queue slot already taken, so the kernel drops
/// further SYNs and a connect() to it hangs (with
/// `net.ipv4.tcp_abort_on_overflow` at 0, the default).
#[derive(Debug)]
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    /// A black hole on `addr` (port 0 for any); `None` if it cannot be bound
    /// (the port is taken). Panics if the queue cannot be filled.
    pub fn bind(addr: SocketAddr) -> Option<BlackHole> {
        let listener = TcpListener::bind(addr).ok()?;
        // SAFETY: listen(2) on a descriptor this listener owns and keeps open
        // for the call; it changes only the backlog of an already-listening socket.
        let rc = unsafe { nix::libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) };
        assert_eq!(rc, 0, "listen: {}", io::Error::last_os_error());
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        let full = (0..4).any(
            |_| match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => {
                    fillers.push(s);
                    false
                }
                Err(_) => true,
            },
        );
        assert!(
            full,
            "could not fill a backlog-0 accept queue on {addr} ({} connections went through); \
             this kernel completes handshakes the listener never accepts",
            fillers.len()
        );
        Some(BlackHole {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }

    /// A black hole on a free port of 127.0.0.1.
    pub fn new() -> BlackHole {
        BlackHole::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0")
    }
}

/// A server on 127.0.0.1:0 that runs `handler` on each connection in its
/// own thread and counts connections. Stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start<F>(handler: F) -> Upstream
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (acc, st) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                        let h = handler.clone();
                        thread::spawn(move || h(s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Upstream { addr, accepted, stop }
    }

    /// Echoes every byte back; at EOF, half-closes its side.
    pub fn echo() -> Upstream {
        Upstream::start(|mut s| {
            let mut buf = [0u8; 16384];
            loop {
                match read_retrying(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
        })
    }

    /// How many connections it accepted so far. Waits briefly first so that
    /// a connection in flight is counted.
    pub fn accepted(&self) -> usize {
        thread::sleep(Duration::from_millis(50));
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Round-trips `data` through an echo tunnel and checks it comes back.
pub fn echo_roundtrip(s: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    s.write_all(data).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back == data {
        Ok(())
    } else {
        Err(format!("echoed {:?}, sent {:?}", lossy(&back), lossy(data)))
    }
}

// ---------------------------------------------------------------------------
// Audit log

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

// ---------------------------------------------------------------------------
// Pseudo-terminal

/// A pseudo-terminal whose master side the test holds; everything the
/// session writes is kept in a transcript.
#[derive(Debug)]
pub struct Pty {
    master: fs::File,
    pub transcript: Arc<Mutex<Vec<u8>>>,
    slave: Option<OwnedFd>,
}

impl Pty {
    pub fn open() -> Pty {
        let pty = nix::pty::openpty(None, None).unwrap();
        for fd in [&pty.master, &pty.slave] {
            // Keep other tests' children from inheriting the terminal.
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
        }
        let master = fs::File::from(pty.master);
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let t = transcript.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once every holder of the slave side is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            transcript,
            slave: Some(pty.slave),
        }
    }

    /// Makes `cmd` a session leader whose stdin/stdout/stderr and controlling
    /// terminal are this pty's slave side.
    pub fn attach(&mut self, cmd: &mut Command) {
        let slave = self.slave.take().expect("attach once");
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (setsid, ioctl); it touches no
        // locks or allocations of the parent. std has already made the pty
        // slave the child's fd 0 when pre_exec closures run.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Types `bytes` at the terminal.
    pub fn type_bytes(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).unwrap();
    }
}

/// Runs `cmd` in a new session with no controlling terminal (so its
/// process group is its own, with pgid = pid).
pub fn detach(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; setsid is
    // async-signal-safe and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
}

/// OsStr from raw bytes, for non-UTF-8 arguments.
pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

// ---------------------------------------------------------------------------
// The policy as the issue fixes it

/// Tools the issue requires in enforce mode.
pub const ENFORCED: &[&str] = &[
    "brew", "npm", "npx", "pnpm", "yarn", "pip", "pip3", "uv", "cargo", "gem", "bundle", "go", "composer",
];
/// Tools the issue requires in observe mode.
pub const OBSERVED: &[&str] = &["aws", "gh", "kubectl", "docker", "tailscale"];
/// npm's registry: on npm's allowlist, port 443.
pub const NPM_REGISTRY: &str = "registry.npmjs.org:443";
