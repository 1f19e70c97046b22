//! Shim mode: find the real tool, put the gate in front of it, run it as a
//! child, forward signals, and pass its exit status back.
//!
//! Order matters and fails closed: the audit `start` row and the proxy's
//! listener exist before the child does; if either the listener or signal
//! handling cannot be set up, the tool is not run (exit 125).
//!
//! Signals (the hard case, because the shim must outlive the child to run
//! its proxy): every forwarded signal and SIGCHLD are blocked and read from a
//! signalfd, which tells where each came from. With a controlling terminal
//! the child shares the shim's process group, so the terminal's Ctrl-C,
//! Ctrl-Z and SIGWINCH reach it directly; those arrive with `SI_KERNEL` and
//! are not forwarded again. Without one, the child gets a group of its own so
//! a kill aimed at the shim's group is forwarded exactly once. Signals from
//! the child's own process tree are never echoed back to it.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{access, AccessFlags, Pid};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

use crate::audit::{self, AuditLog, Record};
use crate::env::{Env, AUDIT_ID_VAR, DEPTH_VAR, REAL_TOOL_VAR, SKIP_VAR};
use crate::exit::{Exit, Failure, GATE_FAILED, NOT_EXECUTABLE, NOT_FOUND};
use crate::gate::proxy::{self, Denial, Gate, Settings, Summary, CREDENTIAL_USER};
use crate::gate::upstream;
use crate::policy::{Family, ToolPolicy};
use crate::sys::spawn;

/// Nesting deeper than this is a loop, not a build (a tool whose wrapper
/// script runs the same name from PATH again, say). Generous on purpose:
/// rustup's counter was once too low and broke legitimate nesting.
const MAX_DEPTH: u32 = 32;
/// Loopback, always bypassed: a CONNECT proxy cannot carry it anyway.
const LOOPBACK_NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// Signals another process may send the shim, forwarded to the child.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// What to run.
#[derive(Debug, Clone)]
pub enum Program {
    /// A name to look up on PATH, skipping this binary.
    Lookup(OsString),
    /// An explicit path (`cli-guard run --as npm -- ./bin/tool`).
    Path(PathBuf),
}

/// One guarded invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub policy: &'static ToolPolicy,
    /// argv[0] as the user typed it; the child gets it unchanged.
    pub argv0: OsString,
    pub args: Vec<OsString>,
    pub program: Program,
    /// True when dispatched by argv[0] (not `cli-guard run`): only then can
    /// finding cli-guard itself as the "real" tool mean a copied shim.
    pub as_shim: bool,
}

/// A file's identity: same device and inode means the same file, whatever
/// path (symlink, hardlink, repeated PATH entry) leads to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn to_var(self) -> String {
        format!("{}:{}", self.dev, self.ino)
    }

    fn from_var(s: &str) -> Option<FileId> {
        let (dev, ino) = s.split_once(':')?;
        Some(FileId {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
        })
    }
}

/// Why the real tool could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// Nothing of that name on PATH but this binary (exit 127).
    NotFound,
    /// Found, but not an executable regular file (exit 126).
    NotExecutable(PathBuf),
}

/// Finds the first executable regular file called `name` on `path_var` that
/// is not in `skip` (cli-guard itself). The path is returned as found on PATH, not
/// canonicalised: the real tool may itself dispatch on argv[0] (rustup's
/// proxies, pyenv's shims). Empty PATH entries mean the current directory,
/// as in the shell.
pub fn find_on_path(name: &OsStr, path_var: &OsStr, skip: &[FileId]) -> Result<Found, LookupError> {
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if skip.contains(&id) || !meta.is_file() {
            continue;
        }
        if access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(Found { path: candidate, id });
        }
        not_executable.get_or_insert(candidate);
    }
    Err(not_executable.map_or(LookupError::NotFound, LookupError::NotExecutable))
}

/// A real tool found on PATH (or given as a path): where, and which file,
/// as read by the one stat that checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub id: FileId,
}

/// What PATH makes of one tool name, for `cli-guard shims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimStatus {
    /// The first executable `name` on PATH, shim or not.
    pub first: Option<PathBuf>,
    /// Whether that first one is this binary.
    pub first_is_shim: bool,
    /// The real tool a shim would run.
    pub real: Option<PathBuf>,
}

/// Looks `name` up on `path_var` both ways: as the shell would, and as the
/// shim would (skipping this binary).
pub fn shim_status(name: &OsStr, path_var: &OsStr) -> ShimStatus {
    let self_id = own_file_id();
    let first = find_on_path(name, path_var, &[]).ok();
    ShimStatus {
        first_is_shim: first.as_ref().is_some_and(|f| Some(f.id) == self_id),
        first: first.map(|f| f.path),
        real: find_on_path(name, path_var, &self_id.into_iter().collect::<Vec<_>>())
            .ok()
            .map(|f| f.path),
    }
}

/// This binary's identity, to recognise it behind any link.
fn own_file_id() -> Option<FileId> {
    FileId::of(Path::new("/proc/self/exe"))
        .or_else(|_| std::env::current_exe().and_then(|p| FileId::of(&p)))
        .ok()
}

/// Checks an explicit path the way `find_on_path` checks a candidate.
fn check_path(path: &Path) -> Result<Found, LookupError> {
    match std::fs::metadata(path) {
        Err(_) => Err(LookupError::NotFound),
        Ok(meta) if meta.is_file() && access(path, AccessFlags::X_OK).is_ok() => Ok(Found {
            path: path.to_path_buf(),
            id: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        }),
        Ok(_) => Err(LookupError::NotExecutable(path.to_path_buf())),
    }
}

/// The environment the child gets on top of the inherited one. Pure.
///
/// All four proxy variables are set alike (clients disagree on which case
/// wins), the user's NO_PROXY is replaced so it cannot open a silent hole,
/// and each tool family gets the override that beats its own config file.
pub fn child_env(policy: &ToolPolicy, proxy_url: &str, audit_id: &str) -> Vec<(&'static str, String)> {
    let mut no_proxy = LOOPBACK_NO_PROXY.to_string();
    for extra in policy.no_proxy {
        no_proxy.push(',');
        no_proxy.push_str(extra);
    }
    let mut env = Vec::with_capacity(16);
    for key in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        env.push((key, proxy_url.to_string()));
    }
    env.push(("NO_PROXY", no_proxy.clone()));
    env.push(("no_proxy", no_proxy.clone()));
    match policy.family {
        Family::Node => {
            env.push(("npm_config_https_proxy", proxy_url.to_string()));
            env.push(("npm_config_proxy", proxy_url.to_string()));
            env.push(("npm_config_noproxy", no_proxy));
            env.push(("YARN_HTTPS_PROXY", proxy_url.to_string()));
            env.push(("YARN_HTTP_PROXY", proxy_url.to_string()));
            // Node itself ignores the proxy variables unless asked, so an
            // install script's own fetch() would go around the gate.
            env.push(("NODE_USE_ENV_PROXY", "1".to_string()));
        }
        Family::Python => env.push(("PIP_PROXY", proxy_url.to_string())),
        Family::Cargo => env.push(("CARGO_HTTP_PROXY", proxy_url.to_string())),
        Family::Plain => {}
    }
    env.push((AUDIT_ID_VAR, audit_id.to_string()));
    env
}

/// git's `http.proxy` beats the proxy variables, and git is what npm's git
/// dependencies, cargo's `git-fetch-with-cli`, go's direct mode, brew and
/// composer run: pin it to the gate through git's environment config,
/// appended after any entries the user already passes that way. Pure.
pub fn git_proxy_env(existing_count: Option<&str>, proxy_url: &str) -> Vec<(String, String)> {
    let n = existing_count
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0);
    vec![
        ("GIT_CONFIG_COUNT".to_string(), (n + 1).to_string()),
        (format!("GIT_CONFIG_KEY_{n}"), "http.proxy".to_string()),
        (format!("GIT_CONFIG_VALUE_{n}"), proxy_url.to_string()),
    ]
}

/// Where a signal came from, as far as the decision to forward it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Sent by the kernel: for our signals, the terminal driver (Ctrl-C,
    /// Ctrl-\, window resize), which signals the whole foreground group.
    Kernel,
    /// Sent by the child or by a process in its tree.
    ChildTree,
    /// Sent by some other process.
    Other,
}

/// Whether a signal should be forwarded to the child. Pure.
pub fn should_forward(origin: Origin, child_shares_group: bool) -> bool {
    match origin {
        // The terminal already signalled the group the child is in.
        Origin::Kernel => !child_shares_group,
        // Echoing the child's own signal back would loop.
        Origin::ChildTree => false,
        Origin::Other => true,
    }
}

/// `si_code` for signals the kernel sends itself (the tty driver's).
const SI_KERNEL: i32 = 0x80;

fn origin_of(info: &nix::sys::signalfd::siginfo, child: Pid) -> Origin {
    if info.ssi_code == SI_KERNEL {
        return Origin::Kernel;
    }
    // si_code <= 0 means a process sent it (kill, sigqueue, tgkill).
    if info.ssi_code <= 0 {
        let sender = i32::try_from(info.ssi_pid).unwrap_or(0);
        if sender > 0 && is_in_tree(Pid::from_raw(sender), child) {
            return Origin::ChildTree;
        }
    }
    Origin::Other
}

/// Whether `pid` is `root` or one of its descendants, by walking parent
/// links in /proc (bounded, so a racing pid reuse cannot loop).
fn is_in_tree(mut pid: Pid, root: Pid) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match parent_of(pid) {
            Some(parent) if parent.as_raw() > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

/// The parent pid from a `/proc/PID/stat` line. The command name in
/// parentheses may itself hold spaces and parentheses, so parse after the
/// last `)`.
fn parse_stat_ppid(stat: &[u8]) -> Option<Pid> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok().map(Pid::from_raw)
}

/// Whether this process has a controlling terminal.
fn has_controlling_terminal() -> bool {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open("/dev/tty")
        .is_ok()
}

/// Runs one guarded invocation to the end.
pub fn run(inv: Invocation, env: &Env) -> Result<Exit, Failure> {
    let started = Instant::now();
    let self_id = own_file_id();
    let skip = skip_list(env.skip(), self_id);
    // A second copy of cli-guard that an outer one took for the real tool:
    // the gate is already in place, so hand straight through.
    let ran_as_real = env.real_tool().and_then(FileId::from_var);
    if inv.as_shim && self_id.is_some() && ran_as_real == self_id {
        return Err(hand_through(&inv, &skip, env));
    }
    let depth = check_recursion(&inv, env.depth())?;
    let audit_id = audit::new_audit_id()
        .map_err(|e| Failure::gate(anyhow::anyhow!("cannot draw a random audit ID: {e}")))?;
    let parent_audit_id = env.parent_audit_id().map(str::to_string);
    let log = Arc::new(AuditLog::open(audit_id, env.audit_log_path().as_deref()));

    let found = match &inv.program {
        Program::Lookup(name) => find_on_path(name, env.path(), &skip),
        Program::Path(path) => check_path(path),
    };
    log.write(&Record::Start(audit::Start {
        parent_audit_id,
        tool: inv.policy.name.to_string(),
        mode: Some(inv.policy.mode),
        argv: std::iter::once(&inv.argv0)
            .chain(&inv.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: std::env::current_dir()
            .ok()
            .map(|d| d.to_string_lossy().into_owned()),
        real_path: found.as_ref().ok().map(|f| f.path.to_string_lossy().into_owned()),
        pid: std::process::id(),
    }));
    let ended = |failure: Failure| {
        write_end(
            &log,
            started,
            Some(i32::from(failure.code)),
            None,
            &Summary::default(),
            Some(&failure),
        );
        failure
    };
    let Found {
        path: real_path,
        id: real_id,
    } = found.map_err(|e| ended(lookup_failure(&inv, e)))?;

    // Fail closed: no listener, no child.
    let (listener, addr) = proxy::bind_loopback()
        .context("cannot start the proxy on 127.0.0.1")
        .map_err(|e| ended(Failure::gate(e)))?;
    // The gate holds two descriptors a tunnel: with a soft limit of 1,024
    // its cap would be 480. Raise it to the hard limit for the gate alone;
    // the child gets the original back.
    let nofile = raise_nofile();
    // Any local process can dial 127.0.0.1: the child's proxy URL carries a
    // secret of this invocation's, and requests without it get 407.
    let token = upstream::new_token().map_err(|e| {
        ended(Failure::gate(anyhow::anyhow!(
            "cannot draw a random proxy credential: {e}"
        )))
    })?;
    let settings = Settings::from_env(addr, &token, env).map_err(|e| {
        ended(Failure::gate(anyhow::anyhow!(
            "{e}; the gate cannot chain through this proxy"
        )))
    })?;
    let proxy_url = format!("http://{CREDENTIAL_USER}:{token}@{addr}");
    let signals = block_signals()
        .context("cannot set up signal forwarding")
        .map_err(|e| ended(Failure::gate(e)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|e| ended(Failure::gate(e)))?;

    let setup = Supervised {
        inv: &inv,
        env,
        real_path: &real_path,
        real_id,
        depth,
        log: Arc::clone(&log),
        skip,
        nofile,
        settings,
        proxy_url,
    };
    let (outcome, summary) = runtime.block_on(setup.supervise(listener, signals));
    // A DNS lookup still blocking in the runtime's pool must not hold the
    // exit: its connection is already answered and logged.
    runtime.shutdown_background();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(failure) => {
            write_end(
                &log,
                started,
                Some(i32::from(failure.code)),
                None,
                &summary,
                Some(&failure),
            );
            print_denials(&inv, &summary, log.audit_id());
            return Err(failure);
        }
    };
    let (code, signal) = match outcome {
        Exit::Code(code) => (Some(i32::from(code)), None),
        Exit::Signal(sig) => (None, Some(sig.as_str().to_string())),
    };
    write_end(&log, started, code, signal, &summary, None);
    print_denials(&inv, &summary, log.audit_id());
    Ok(outcome)
}

/// Raises the descriptor soft limit to the hard limit; returns the original
/// (soft, hard) for the child.
fn raise_nofile() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    }
    Some((soft, hard))
}

/// Refuses runaway recursion: nesting deeper than any real build goes (a
/// wrapper that runs the same name from PATH again). Returns our depth.
fn check_recursion(inv: &Invocation, depth: u32) -> Result<u32, Failure> {
    if depth >= MAX_DEPTH {
        return Err(Failure::gate(anyhow::anyhow!(
            "{} is nested {depth} guarded invocations deep; this looks like a loop (a wrapper that runs `{}` from PATH again?). \
             Check that the real {} comes later on PATH than the cli-guard shims.",
            inv.policy.name,
            inv.policy.name,
            inv.policy.name
        )));
    }
    Ok(depth + 1)
}

/// The cli-guard binaries to skip on PATH: this one and every one above it.
fn skip_list(inherited: &str, self_id: Option<FileId>) -> Vec<FileId> {
    let mut skip: Vec<FileId> = inherited.split(',').filter_map(FileId::from_var).collect();
    skip.extend(self_id);
    skip
}

fn skip_var(skip: &[FileId]) -> String {
    skip.iter().map(|id| id.to_var()).collect::<Vec<_>>().join(",")
}

/// Replaces this process with the next real tool on PATH, skipping every
/// cli-guard: the outer gate stays in front of it. Returns only on failure.
fn hand_through(inv: &Invocation, skip: &[FileId], env: &Env) -> Failure {
    let name = inv.policy.name;
    let real = match find_on_path(OsStr::new(name), env.path(), skip) {
        Ok(real) => real,
        Err(e) => return lookup_failure(inv, e),
    };
    // If it is yet another copy, it hands through in turn.
    let e = Command::new(&real.path)
        .arg0(&inv.argv0)
        .args(&inv.args)
        .env(SKIP_VAR, skip_var(skip))
        .env(REAL_TOOL_VAR, real.id.to_var())
        .exec();
    spawn_failure(inv, &real.path, &e)
}

fn lookup_failure(inv: &Invocation, e: LookupError) -> Failure {
    let name = match &inv.program {
        Program::Lookup(name) => name.to_string_lossy().into_owned(),
        Program::Path(path) => path.display().to_string(),
    };
    match e {
        LookupError::NotFound => Failure::new(
            NOT_FOUND,
            anyhow::anyhow!(
                "{name}: the real {name} was not found on PATH (after skipping cli-guard's own shims). \
                 Install {name}, or put its directory on PATH after the shims directory."
            ),
        ),
        LookupError::NotExecutable(path) => Failure::new(
            NOT_EXECUTABLE,
            anyhow::anyhow!(
                "{name}: {} is not an executable file (check its permissions)",
                path.display()
            ),
        ),
    }
}

/// Blocks the forwarded signals and SIGCHLD in this thread (and so in every
/// thread created after) and returns a signalfd that reads them. Must run
/// before any other thread exists.
fn block_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for sig in FORWARDED {
        mask.add(sig);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// The parts of an invocation the async half needs.
struct Supervised<'a> {
    inv: &'a Invocation,
    env: &'a Env,
    real_path: &'a Path,
    real_id: FileId,
    depth: u32,
    log: Arc<AuditLog>,
    /// cli-guard binaries the child's own lookups must skip.
    skip: Vec<FileId>,
    /// The descriptor limit as the shim found it, restored for the child.
    nofile: Option<(u64, u64)>,
    settings: Settings,
    /// The URL the child gets, credential included. Never logged.
    proxy_url: String,
}

impl Supervised<'_> {
    /// Starts the proxy, runs the child, forwards signals until it exits,
    /// then stops the proxy. Returns the exit and the proxy's tallies.
    async fn supervise(self, listener: TcpListener, signals: SignalFd) -> (Result<Exit, Failure>, Summary) {
        let gate = Arc::new(Gate::new(
            self.inv.policy,
            Arc::clone(&self.log),
            self.settings.clone(),
        ));
        let (stop_tx, stop_rx) = oneshot::channel();
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                let failure = Failure::gate(anyhow::Error::new(e).context("cannot start the proxy"));
                return (Err(failure), gate.summary());
            }
        };
        let proxy_task = tokio::spawn(proxy::serve(listener, Arc::clone(&gate), stop_rx));
        let outcome = self.run_child(signals).await;
        let _ = stop_tx.send(());
        let _ = proxy_task.await;
        (outcome, gate.summary())
    }

    async fn run_child(&self, signals: SignalFd) -> Result<Exit, Failure> {
        // SAFETY: SignalFd owns its descriptor (an OwnedFd) and returns that
        // same descriptor from as_raw_fd until it is dropped, which happens
        // only when the AsyncFd that now owns it is dropped.
        let signals =
            unsafe { AsyncFd::register_with_interest(signals, Interest::READABLE) }.map_err(|e| {
                Failure::gate(anyhow::Error::new(io::Error::from(e)).context("cannot watch signals"))
            })?;
        let shares_group = has_controlling_terminal();
        let mut set: Vec<(OsString, Option<OsString>)> = Vec::new();
        let mut put = |key: &str, value: Option<String>| set.push((key.into(), value.map(OsString::from)));
        for (key, value) in child_env(self.inv.policy, &self.proxy_url, self.log.audit_id()) {
            put(key, Some(value));
        }
        let git = git_proxy_env(self.env.git_config_count(), &self.proxy_url);
        for (key, value) in git {
            put(&key, Some(value));
        }
        put(DEPTH_VAR, Some(self.depth.to_string()));
        put(SKIP_VAR, Some(skip_var(&self.skip)));
        put(REAL_TOOL_VAR, Some(self.real_id.to_var()));
        let env = spawn::environment(self.env.vars(), set);
        let argv: Vec<&OsStr> = std::iter::once(&self.inv.argv0)
            .chain(&self.inv.args)
            .map(OsString::as_os_str)
            .collect();
        let steps = spawn::Steps {
            new_group: !shares_group,
            nofile: self.nofile,
            parent: nix::unistd::getpid(),
        };
        let child = spawn::Prepared::new(self.real_path.as_os_str(), &argv, &env)
            .and_then(|prepared| spawn::spawn(&prepared, steps))
            .map_err(|e| spawn_failure(self.inv, self.real_path, &e))?;
        wait_forwarding(&signals, child, shares_group)
            .await
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("lost track of the child")))
    }
}

fn spawn_failure(inv: &Invocation, path: &Path, e: &io::Error) -> Failure {
    let name = inv.policy.name;
    // 126 and 127 speak of the tool; anything else (out of descriptors or
    // memory, say) is cli-guard failing to run it, and fails closed as 125.
    let errno = e.raw_os_error().map(Errno::from_raw);
    let (code, hint) = match errno {
        Some(Errno::ENOENT) => (NOT_FOUND, " (a script whose #! interpreter is missing?)"),
        Some(Errno::ENOEXEC) => (
            NOT_EXECUTABLE,
            " (not a program the kernel can run, nor a script /bin/sh can)",
        ),
        Some(Errno::EACCES | Errno::EISDIR | Errno::ETXTBSY | Errno::EPERM) => (NOT_EXECUTABLE, ""),
        _ => (GATE_FAILED, ""),
    };
    Failure::new(
        code,
        anyhow::anyhow!("{name}: cannot run {}: {e}{hint}", path.display()),
    )
}

/// Reads signals until the child exits, forwarding what should reach it.
async fn wait_forwarding(signals: &AsyncFd<SignalFd>, child: Pid, shares_group: bool) -> io::Result<Exit> {
    loop {
        let mut ready = signals.readable().await?;
        while let Some(info) = ready.get_inner().read_signal().map_err(io::Error::from)? {
            let Ok(sig) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                if let Some(exit) = reap(child)? {
                    return Ok(exit);
                }
                continue;
            }
            if should_forward(origin_of(&info, child), shares_group) {
                // ESRCH: the child is already gone; its SIGCHLD is queued.
                let _ = kill(child, sig);
            }
        }
        ready.clear_ready();
    }
}

/// The child's exit, if it has exited (stops and continues are not exits).
fn reap(child: Pid) -> io::Result<Option<Exit>> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit::Code(u8::try_from(code & 0xff).unwrap_or(u8::MAX)))),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(Exit::Signal(sig))),
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

fn write_end(
    log: &AuditLog,
    started: Instant,
    exit_code: Option<i32>,
    signal: Option<String>,
    summary: &Summary,
    failure: Option<&Failure>,
) {
    log.write(&Record::End(audit::End {
        exit_code,
        signal,
        duration_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        allowed: summary.allowed,
        denied: summary.denied,
        suppressed: summary.suppressed,
        error: failure.map(|f| f.to_string()),
    }));
}

/// One stderr line per distinct refusal, after the child exits, worded so
/// that neither a person nor an agent mistakes it for a network fault; at
/// most a screenful, however many requests were refused.
fn print_denials(inv: &Invocation, summary: &Summary, audit_id: &str) {
    for denial in &summary.denials {
        eprintln!("{}", denial_line(inv.policy, denial, audit_id));
    }
    let tool = inv.policy.name;
    if summary.unlisted > 0 {
        eprintln!(
            "cli-guard: {tool} was refused {} more hosts; `cli-guard audit --id {audit_id}` lists every row.",
            summary.unlisted
        );
    }
    if summary.strangers > 0 {
        let unlogged = match summary.suppressed {
            0 => String::new(),
            n => format!(
                "; {n} of them past the first {} are counted, not logged one by one",
                summary.strangers - n
            ),
        };
        eprintln!(
            "cli-guard: {} requests without {tool}'s proxy credential were refused (407 or malformed): \
             another local process tried to use this gate{unlogged} (audit id {audit_id}).",
            summary.strangers
        );
    }
}

/// The summary line for one refusal: what to do next depends on why.
fn denial_line(policy: &ToolPolicy, denial: &Denial, audit_id: &str) -> String {
    let tool = policy.name;
    let target = &denial.target;
    let status = denial.status;
    let next = match status {
        // The reason says which: not on the allowlist, or resolved to an
        // address the gate will not dial.
        403 => format!(
            "{}. This is policy, not a network fault: do not retry; \
             an allowlist change is a code change for an operator",
            denial.reason
        ),
        405 => {
            "plaintext HTTP through the gate is refused, never downgraded: use an https:// URL".to_string()
        }
        _ => format!(
            "{}. Refused before any dial: the request is at fault, not the network",
            denial.reason
        ),
    };
    format!("cli-guard: {tool} was refused {target} ({status}): {next} (audit id {audit_id}).")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lookup;

    fn policy(name: &str) -> &'static ToolPolicy {
        lookup(name).unwrap_or_else(|| panic!("{name} is pinned"))
    }

    fn get<'a>(env: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn all_proxy_variables_are_set_alike() {
        let env = child_env(policy("npm"), "http://127.0.0.1:1", "id");
        for key in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "npm_config_https_proxy",
            "npm_config_proxy",
            "YARN_HTTPS_PROXY",
        ] {
            assert_eq!(get(&env, key), Some("http://127.0.0.1:1"), "{key}");
        }
        assert_eq!(get(&env, "NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(get(&env, "CLI_GUARD_AUDIT_ID"), Some("id"));
        assert_eq!(get(&env, "CARGO_HTTP_PROXY"), None);
    }

    #[test]
    fn no_proxy_is_loopback_plus_pinned_exceptions() {
        let npm = child_env(policy("npm"), "u", "id");
        assert_eq!(get(&npm, "NO_PROXY"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get(&npm, "npm_config_noproxy"), Some("localhost,127.0.0.1,::1"));
        let aws = child_env(policy("aws"), "u", "id");
        assert_eq!(
            get(&aws, "no_proxy"),
            Some("localhost,127.0.0.1,::1,169.254.169.254,169.254.170.2,fd00:ec2::254")
        );
    }

    #[test]
    fn tool_families_get_their_overrides() {
        assert_eq!(
            get(&child_env(policy("cargo"), "u", "i"), "CARGO_HTTP_PROXY"),
            Some("u")
        );
        assert_eq!(get(&child_env(policy("pip3"), "u", "i"), "PIP_PROXY"), Some("u"));
        assert_eq!(get(&child_env(policy("gh"), "u", "i"), "PIP_PROXY"), None);
    }

    #[test]
    fn git_proxy_is_appended_to_the_users_env_config() {
        let fresh = git_proxy_env(None, "u");
        assert_eq!(fresh[0], ("GIT_CONFIG_COUNT".to_string(), "1".to_string()));
        assert_eq!(
            fresh[1],
            ("GIT_CONFIG_KEY_0".to_string(), "http.proxy".to_string())
        );
        assert_eq!(fresh[2], ("GIT_CONFIG_VALUE_0".to_string(), "u".to_string()));
        let after_two = git_proxy_env(Some("2"), "u");
        assert_eq!(after_two[0].1, "3");
        assert_eq!(after_two[1].0, "GIT_CONFIG_KEY_2");
        assert_eq!(git_proxy_env(Some("bogus"), "u")[0].1, "1");
    }

    #[test]
    fn forwarding_rules() {
        assert!(!should_forward(Origin::Kernel, true));
        assert!(should_forward(Origin::Kernel, false));
        assert!(!should_forward(Origin::ChildTree, true));
        assert!(!should_forward(Origin::ChildTree, false));
        assert!(should_forward(Origin::Other, true));
        assert!(should_forward(Origin::Other, false));
    }

    #[test]
    fn stat_ppid_survives_odd_command_names() {
        assert_eq!(
            parse_stat_ppid(b"123 (a) b) c) S 77 123 123 0"),
            Some(Pid::from_raw(77))
        );
        assert_eq!(parse_stat_ppid(b"123 (sh) S 1 1 1"), Some(Pid::from_raw(1)));
        assert_eq!(parse_stat_ppid(b"garbage"), None);
    }

    #[test]
    fn file_id_round_trips() {
        let id = FileId { dev: 2049, ino: 77 };
        assert_eq!(FileId::from_var(&id.to_var()), Some(id));
        assert_eq!(FileId::from_var("x:1"), None);
    }

    #[test]
    fn path_lookup_skips_self_and_reports_non_executables() {
        let dir = std::env::temp_dir().join(format!("cli-guard-unit-{}", std::process::id()));
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::create_dir_all(&a).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&b).unwrap_or_else(|e| panic!("{e}"));
        let plain = a.join("tool");
        std::fs::write(&plain, "x").unwrap_or_else(|e| panic!("{e}"));
        let path_var = std::env::join_paths([&a, &b]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_on_path(OsStr::new("tool"), &path_var, &[]).map(|f| f.path),
            Err(LookupError::NotExecutable(plain.clone()))
        );
        let exe = b.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_on_path(OsStr::new("tool"), &path_var, &[]).map(|f| f.path),
            Ok(exe.clone())
        );
        let exe_id = FileId::of(&exe).ok();
        assert_eq!(
            find_on_path(
                OsStr::new("tool"),
                &path_var,
                &exe_id.into_iter().collect::<Vec<_>>()
            )
            .map(|f| f.path),
            Err(LookupError::NotExecutable(plain))
        );
        assert_eq!(
            find_on_path(OsStr::new("nope"), &path_var, &[]).map(|f| f.path),
            Err(LookupError::NotFound)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
