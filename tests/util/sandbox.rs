//! The sandbox each test runs in ([`Sandbox`]): the built binary under the
//! tools' names, fake "real tools" (POSIX sh scripts with a prelude that
//! records what they were given), a private audit log, and commands with a
//! clean environment. Also the ways a test changes where the shim runs:
//! another /etc/hosts, no namespaces left, as nobody.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::command::{command, install_executable, require, BIN};
use super::log::Log;
use super::net;
use super::policy::NPM_REGISTRY;
use super::process::{lossy, split_nul, Outcome, Running, PROC_TIMEOUT};
use super::proxy::Proxy;
use super::servers::Upstream;

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

/// Writes `data` to `path` atomically (write a temp file, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data).unwrap();
    fs::rename(&tmp, path).unwrap();
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
pub struct Sandbox {
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

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = TempDir::new();
        let root = tmp.path().to_path_buf();
        let mk = |name: &str| {
            let p = root.join(name);
            fs::create_dir(&p).unwrap();
            p
        };
        let (shims, real, state, work, home) = (mk("shims"), mk("real"), mk("state"), mk("work"), mk("home"));
        // The fake tools' reports go to `state` (the tools' TMPDIR), also
        // from a tool run as another user (setpriv).
        fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
        let audit = root.join("log").join("audit.jsonl");
        let path = vec![
            shims.clone(),
            real.clone(),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/bin"),
        ];
        Sandbox {
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
    /// its own tests (`strict`), which set it back with [`Sandbox::strict`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = command(program);
        cmd.env_clear()
            .env("PATH", self.path_var())
            .env("HOME", &self.home)
            .env("CLI_GUARD_AUDIT_LOG", &self.audit)
            .env("CLI_GUARD_STRICT", "off")
            // Strict mode's tools write only their project, caches and
            // temp: the fake tools' reports go to `state`, made the temp
            // directory.
            .env("TMPDIR", &self.state)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Sets `CLI_GUARD_STRICT` on `cmd` (made by [`Sandbox::command`], which
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

    /// The text the fake tool wrote to `state/NAME`, trimmed ("" when it
    /// wrote nothing there).
    pub fn state_text(&self, name: &str) -> String {
        fs::read_to_string(self.state_path(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The JSON line the fake tool's network client wrote last to
    /// `state/NAME`; fails the test, with `out`'s report, without one.
    pub fn step(&self, out: &Outcome, name: &str) -> serde_json::Value {
        let text = fs::read_to_string(self.state_path(name)).unwrap_or_default();
        let line = text.lines().last().unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => v,
            _ => panic!(
                "the fake tool's step {name} wrote {text:?}, not a JSON line\n\n{}",
                out.report()
            ),
        }
    }

    /// The fake tools' network client (`util::net`), as a fake tool runs
    /// it: `NET="$(...)"`-safe, no space or quote in it.
    pub fn net(&self) -> String {
        let path = net::client().to_str().unwrap().to_owned();
        assert!(!path.contains([' ', '\'', '"', '\\', '$']), "{path}");
        path
    }

    /// The fake tool's recorded pid.
    pub fn child_pid(&self, run: &mut Running) -> i32 {
        let data = self.wait_state(run, "pid");
        let recorded: i32 = lossy(&data).trim().parse().unwrap();
        host_pid_of(run.pid(), recorded)
    }

    /// The fake tool's recorded argv ($0 first).
    pub fn child_argv(&self, run: &mut Running) -> Vec<Vec<u8>> {
        split_nul(&self.wait_state(run, "argv"))
    }

    /// The audit log as it is now: every row.
    pub fn log(&self) -> Log {
        Log::read(&self.audit)
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

    /// `n` sandboxes of their own (each its fake tools, its state), all
    /// writing this one's audit log.
    pub fn sharing_the_log(&self, n: usize) -> Vec<Sandbox> {
        (0..n)
            .map(|_| {
                let mut sb = Sandbox::new();
                sb.audit = self.audit.clone();
                sb
            })
            .collect()
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

/// A fake tool like `HOLD`, but holding up to ~2 minutes instead of ~15 s,
/// for sessions that keep the gate busy longer than the standard tool
/// waits (a 10 s dial timeout, a thousand tunnels).
pub const LONG_HOLD: &str = "rec \"$@\"
n=0
while [ ! -e \"$S/done\" ]; do
  n=$((n + 1))
  if [ \"$n\" -gt 2400 ] || [ ! -d \"$S\" ]; then exit 124; fi
  sleep 0.05
done
exit \"$(code)\"
";

// ---------------------------------------------------------------------------
// Sessions

impl Sandbox {
    /// An npm invocation whose registry name is dialled at `up`.
    pub fn npm_at(&self, up: &Upstream) -> (Running, ChildEnv) {
        let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
        self.session("npm", &[("CLI_GUARD_RESOLVE", &resolve)])
    }

    /// Runs `tool` (holding, see `LONG_HOLD`) through its shim with `env`
    /// added, and waits until the fake tool has recorded its environment.
    pub fn long_session(&self, tool: &str, env: &[(&str, &str)]) -> (Running, ChildEnv) {
        self.long_session_with(tool, env, |_| {})
    }

    /// `long_session`, with the shim's command changed by `adjust` first.
    pub fn long_session_with(
        &self,
        tool: &str,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> (Running, ChildEnv) {
        self.tool(tool, LONG_HOLD);
        let mut cmd = self.shim_cmd(tool, ["install"]);
        cmd.envs(env.iter().copied());
        adjust(&mut cmd);
        let mut run = self.start(cmd);
        let env = self.wait_env(&mut run);
        (run, env)
    }

    /// A command that runs what is appended to it (program, then arguments)
    /// with /etc/hosts replaced by `hosts` (kept in the file `name` under the
    /// test's root) for it alone, in a private mount namespace.
    pub fn with_hosts(&self, name: &str, hosts: &str) -> Command {
        let hosts_file = self.root().join(name);
        fs::write(&hosts_file, format!("127.0.0.1 localhost\n{hosts}\n")).unwrap();
        let mut cmd = self.command("unshare");
        cmd.args([
            "--mount",
            "--fork",
            "/bin/sh",
            "-c",
            "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"",
            "sh",
        ])
        .arg(&hosts_file);
        cmd
    }

    /// Starts the `tool` shim with /etc/hosts replaced by `hosts` for it
    /// alone, and `env` added to its environment.
    pub fn session_with_hosts(&self, tool: &str, hosts: &str, env: &[(&str, &str)]) -> (Running, ChildEnv) {
        self.tool(tool, HOLD);
        let mut cmd = self.with_hosts("hosts", hosts);
        cmd.arg(self.shim(tool)).arg("install").envs(env.iter().copied());
        let mut run = self.start(cmd);
        let child_env = self.wait_env(&mut run);
        (run, child_env)
    }

    /// `cli-guard ARGS...` in a user namespace of its own (root in there, as
    /// `unshare --map-root-user` makes it) whose namespace limit is 0, so any
    /// namespace it tries to make is refused with ENOSPC, as on a host where
    /// `user.max_user_namespaces` is 0. The host's settings are untouched.
    pub fn with_no_namespaces_left(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(require("unshare"));
        cmd.args([
            "--user",
            "--map-root-user",
            "/bin/sh",
            "-c",
            "echo 0 >/proc/sys/user/max_user_namespaces && exec \"$@\"",
            "sh",
            BIN,
        ])
        .args(args);
        cmd
    }

    /// `program ARGS...` as uid and gid 65534 (nobody), with no groups.
    pub fn as_nobody(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(require("setpriv"));
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
            .args(args);
        cmd
    }
}

/// A fake tool's last line: it becomes the network client (`exec`), which
/// runs `steps` (NAME, COMMAND) in turn and writes each JSON line to
/// `$S/NAME`, so that every connection is made by the tool's own process,
/// as a real package manager's are: cli-guard judges any other process
/// below the tool as a package's code. Shell variables in a command are
/// expanded; `$NET` must be set.
pub fn as_tool(steps: &[(&str, &str)]) -> String {
    let quoted: Vec<String> = steps
        .iter()
        .map(|(name, command)| format!("\"{name}={command}\""))
        .collect();
    format!("exec \"$NET\" steps \"$S\" {}\n", quoted.join(" "))
}

/// Gives `dir`, and everything in it, to uid and gid 65534 (nobody), so
/// that a tool run as nobody ([`Sandbox::as_nobody`]) owns its places as a
/// user owns theirs. Needs root, as the tests that run as nobody do.
pub fn hand_to_nobody(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        if path.is_dir() && !path.is_symlink() {
            todo.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

/// The pid, in this test's PID namespace, of the process under `root` (a
/// shim, or a shell that runs one) that knows itself as `own_pid`: in
/// strict mode's PID namespace the tool's `$$` is 2 (it is the shim's own
/// child, as the namespace's init is). The last `NSpid` field is the pid
/// as the process sees it; outside a PID namespace it is the pid itself.
pub fn host_pid_of(root: i32, own_pid: i32) -> i32 {
    let children = |pid: i32| -> Vec<i32> {
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    let sees_itself_as = |pid: i32| -> Option<i32> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|pids| pids.split_whitespace().last())
            .and_then(|last| last.parse().ok())
    };
    let mut level = children(root);
    for _ in 0..4 {
        if let Some(&found) = level
            .iter()
            .find(|&&pid| pid != root && sees_itself_as(pid) == Some(own_pid))
        {
            return found;
        }
        level = level.iter().flat_map(|&pid| children(pid)).collect();
    }
    own_pid
}

/// Every session's proxy at once, `each` CONNECTs to `target` apiece, as
/// fast as they are answered (released together by a barrier); the
/// statuses, per session.
pub fn burst(sessions: &[(Running, ChildEnv)], each: usize, target: &str) -> Vec<Vec<u16>> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(sessions.len()));
    let threads: Vec<_> = sessions
        .iter()
        .map(|(_, env)| {
            let (proxy, barrier, target) = (env.proxy(), barrier.clone(), target.to_string());
            thread::spawn(move || {
                barrier.wait();
                (0..each)
                    .map(|_| proxy.connect(&target).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}
