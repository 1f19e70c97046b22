//! Shim mode: one guarded invocation, from argv to exit status. This file
//! is the orchestration only; each step has its own home: [`invocation`]
//! says what is run (and the 126/127 messages), [`locate`] finds the real
//! tool, [`hand_through`] passes a copied shim on to it, [`child_env`]
//! makes its environment, [`signals`] forwards signals, [`summary`] prints
//! the refusals, and the gate itself is `crate::gate`.
//!
//! Order matters and fails closed: the audit `start` row and the proxy's
//! listener exist before the child does; if the listener, the credential,
//! signal handling or the runtime cannot be set up, the tool is not run
//! (exit 125). Every invocation that wrote a `start` row writes exactly one
//! `end` row, on one path: [`run`] after [`guarded`] returns.

mod child_env;
mod hand_through;
mod invocation;
mod locate;
mod signals;
mod summary;

use std::ffi::{OsStr, OsString};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nix::sys::signalfd::SignalFd;
use tokio::sync::oneshot;

use self::child_env::ChildMarks;
use self::hand_through::hand_through;
use self::invocation::{lookup_failure, spawn_failure};
use self::locate::{check_path, find_on_path, own_file_id, skip_list, skip_var, FileId, Found};
use self::signals::{wait_forwarding, Job, Terminal, WATCHED};
use crate::audit::{self, AuditLog, Record};
use crate::credential::Credential;
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::gate::{self, Gate, Settings, Summary};
use crate::policy::{self, ToolPolicy};
use crate::sys::{signal, spawn};

pub use self::invocation::{Invocation, Program};
pub use self::locate::shim_status;

/// Nesting deeper than this is a loop, not a build (a tool whose wrapper
/// script runs the same name from PATH again, say). Generous on purpose:
/// rustup's counter was once too low and broke legitimate nesting.
const MAX_DEPTH: u32 = 32;

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
    // Only the logged copy is masked; the child gets argv byte for byte.
    let typed: Vec<String> = std::iter::once(&inv.argv0)
        .chain(&inv.args)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (argv, argv_redacted) = audit::redact_argv(inv.policy.name, &typed);
    // Fetching and building are enforced; running the project's own code
    // (`npm test`, `cargo run`) is observed. ./package.json is read only for
    // a yarn or pnpm word that may name one of its scripts.
    let split = policy::invocation_policy(inv.policy, &inv.args, &|| {
        std::fs::read_to_string("package.json")
            .ok()
            .map(|json| policy::script_names(&json))
    });
    log.write(&Record::Start(audit::Start {
        parent_audit_id,
        tool: inv.policy.name.to_string(),
        mode: Some(split.mode),
        subcommand: split.subcommand.clone(),
        argv,
        argv_redacted,
        cwd: std::env::current_dir()
            .ok()
            .map(|d| d.to_string_lossy().into_owned()),
        real_path: found.as_ref().ok().map(|f| f.path.to_string_lossy().into_owned()),
        pid: std::process::id(),
    }));
    let started_gate = Started {
        inv: &inv,
        policy: split.policy,
        env,
        log: &log,
        depth,
        skip,
    };
    let (outcome, summary) = match found {
        Ok(found) => started_gate.guarded(found),
        Err(e) => (Err(lookup_failure(&inv, e)), Summary::default()),
    };
    write_end(&log, started, &outcome, &summary);
    summary::print_denials(inv.policy, &summary, log.audit_id());
    outcome
}

/// An invocation whose `start` row is written: what [`Started::guarded`]
/// needs to put the gate in place and run the tool.
struct Started<'a> {
    inv: &'a Invocation,
    /// The policy the gate applies: the tool's, or its observe-mode twin
    /// when the invocation runs the project's own code.
    policy: &'static ToolPolicy,
    env: &'a Env,
    log: &'a Arc<AuditLog>,
    depth: u32,
    /// cli-guard binaries the child's own lookups must skip.
    skip: Vec<FileId>,
}

impl<'a> Started<'a> {
    /// Puts the gate in place and runs the tool behind it. Returns how the
    /// run ended and the gate's tallies, for the one `end` row.
    fn guarded(self, found: Found) -> (Result<Exit, Failure>, Summary) {
        match self.prepare(found) {
            Ok((setup, listener, signals, runtime)) => {
                let ended = runtime.block_on(setup.supervise(listener, signals));
                // A DNS lookup still blocking in the runtime's pool must not
                // hold the exit: its connection is already answered and logged.
                runtime.shutdown_background();
                ended
            }
            Err(failure) => (Err(failure), Summary::default()),
        }
    }

    /// Everything that must exist before the child does; any failure here
    /// means the tool is not run.
    fn prepare(
        self,
        found: Found,
    ) -> Result<(Supervised<'a>, TcpListener, SignalFd, tokio::runtime::Runtime), Failure> {
        let env = self.env;
        let Found {
            path: real_path,
            id: real_id,
        } = found;
        // Fail closed: no listener, no child.
        let (listener, addr) = gate::bind_loopback()
            .context("cannot start the proxy on 127.0.0.1")
            .map_err(Failure::gate)?;
        // The gate holds two descriptors a tunnel: with a soft limit of 1,024
        // its cap would be 480. Raise it to the hard limit for the gate alone;
        // the child gets the original back.
        let nofile = raise_nofile();
        // Any local process can dial 127.0.0.1: the child's proxy URL carries a
        // secret of this invocation's, and requests without it get 407.
        let credential = Credential::mint()
            .map_err(|e| Failure::gate(anyhow::anyhow!("cannot draw a random proxy credential: {e}")))?;
        let settings =
            Settings::from_env(addr, &credential, env).map_err(|e| Failure::gate(anyhow::anyhow!("{e}")))?;
        let proxy_url = credential.proxy_url(addr);
        let signals = signal::block_into_signalfd(&WATCHED)
            .context("cannot set up signal forwarding")
            .map_err(Failure::gate)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .map_err(Failure::gate)?;
        let setup = Supervised {
            inv: self.inv,
            policy: self.policy,
            env,
            real_path,
            real_id,
            depth: self.depth,
            log: Arc::clone(self.log),
            skip: self.skip,
            nofile,
            settings,
            proxy_url,
        };
        Ok((setup, listener, signals, runtime))
    }
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

/// The parts of an invocation the async half needs.
struct Supervised<'a> {
    inv: &'a Invocation,
    policy: &'static ToolPolicy,
    env: &'a Env,
    real_path: PathBuf,
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
            self.policy,
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
        let proxy_task = tokio::spawn(gate::serve(listener, Arc::clone(&gate), stop_rx));
        let outcome = self.run_child(signals).await;
        let _ = stop_tx.send(());
        let _ = proxy_task.await;
        (outcome, gate.summary())
    }

    async fn run_child(&self, signals: SignalFd) -> Result<Exit, Failure> {
        let signals = signal::watch(signals)
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("cannot watch signals")))?;
        let terminal = Terminal::open();
        let marks = ChildMarks {
            proxy_url: &self.proxy_url,
            audit_id: self.log.audit_id(),
            depth: self.depth,
            skip: &skip_var(&self.skip),
            real_tool: &self.real_id.to_var(),
        };
        let env = child_env::for_child(self.env, self.inv.policy, marks);
        let argv: Vec<&OsStr> = std::iter::once(&self.inv.argv0)
            .chain(&self.inv.args)
            .map(OsString::as_os_str)
            .collect();
        // The spawn runs here, on the main thread (the runtime is
        // current-thread): PR_SET_PDEATHSIG fires when the parent *thread*
        // exits, not the process, so spawning from a short-lived thread
        // would kill the tool when that thread ends. `spawn` refuses any
        // other thread.
        let steps = spawn::Steps {
            terminal: terminal.as_ref().map(Terminal::handoff),
            nofile: self.nofile,
            parent: nix::unistd::getpid(),
        };
        let child = spawn::Prepared::new(self.real_path.as_os_str(), &argv, &env)
            .and_then(|prepared| spawn::spawn(&prepared, steps))
            .map_err(|e| spawn_failure(self.inv, &self.real_path, &e))?;
        // Dropped on every way out of here, which gives the terminal back
        // to the shim's group if the tool's held it.
        let mut job = Job::new(child.pid, terminal.as_ref(), child.took_terminal);
        wait_forwarding(&signals, &mut job)
            .await
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("lost track of the child")))
    }
}

/// The invocation's one `end` row: how it ended, the gate's tallies.
fn write_end(log: &AuditLog, started: Instant, outcome: &Result<Exit, Failure>, summary: &Summary) {
    let (exit_code, signal, error) = match outcome {
        Ok(Exit::Code(code)) => (Some(i32::from(*code)), None, None),
        Ok(Exit::Signal(sig)) => (None, Some(sig.as_str().to_string()), None),
        Err(failure) => (Some(i32::from(failure.code)), None, Some(failure.to_string())),
    };
    log.write(&Record::End(audit::End {
        exit_code,
        signal,
        duration_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        allowed: summary.allowed,
        denied: summary.denied,
        suppressed: summary.suppressed,
        error,
    }));
}
