//! Shim mode: one guarded invocation, from argv to exit status. This file
//! is the orchestration only; each step has its own home: [`invocation`]
//! says what is run (and the 126/127 messages), [`locate`] finds the real
//! tool, [`hand_through`] passes a copied shim on to it, [`child_env`]
//! makes its environment, [`signals`] forwards signals, [`summary`] prints
//! the refusals, [`fetch_run`] makes a fetch-and-run form (`npx X`) two
//! invocations, and the gate itself is `crate::gate`.
//!
//! Order matters and fails closed: the gate's sockets and the audit `start`
//! row exist before the tool runs; if the listener, the credential, signal
//! handling or the runtime cannot be set up, the tool is not run (exit
//! 125). A strict invocation ([`strict`]) first makes the tool's process
//! inside a network namespace that holds the gate's sockets (`sys::netns`),
//! which waits there until the `start` row, with its `isolation`, is
//! written; where the kernel refuses, the tool runs behind the plain proxy
//! instead, and the row says why. Every invocation writes exactly one
//! `start` and one `end` row, each on one path: [`Started::write_start`]
//! and [`guarded`]'s `write_end` (a fetch and run is two invocations).

mod child_env;
mod fetch_run;
mod hand_through;
mod invocation;
mod launch;
mod locate;
mod overrides;
pub(crate) mod python;
mod sandbox;
mod script_shell;
mod signals;
mod stdio;
mod strict;
mod summary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nix::sys::signalfd::SignalFd;

use self::fetch_run::Phase;
use self::hand_through::hand_through;
use self::invocation::{lookup_failure, spawn_failure};
use self::launch::{Child, Launch};
use self::locate::{check_path, find_on_path, own_file_id, skip_list, skip_var, FileId, Found};
use self::signals::{wait_forwarding, Job, Terminal, WATCHED};
use self::strict::Isolation;
use crate::audit::{self, AuditLog, Record};
use crate::credential::Credential;
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::gate::{self, Gate, Pool, Shutdown, Summary};
use crate::policy::{self, InvocationPolicy, ToolPolicy};
use crate::sys::signal;
use crate::sys::sock_diag::SockDiag;
use crate::who::Who;

pub(crate) use self::invocation::{Invocation, Program};
pub(crate) use self::locate::{shim_names, shim_status, ShimStatus};
pub(crate) use self::sandbox::probe as probe_strict_mode;
pub(crate) use self::script_shell::exec_hook;
pub(crate) use self::strict::Setting as StrictSetting;

/// Processes left behind that are counted one by one; past this the count
/// stops (they are all ended either way).
const MAX_LEFTOVERS_COUNTED: usize = 100_000;

/// Nesting deeper than this is a loop, not a build (a tool whose wrapper
/// script runs the same name from PATH again, say). Generous on purpose:
/// rustup's counter was once too low and broke legitimate nesting.
const MAX_DEPTH: u32 = 32;

/// Runs one guarded invocation to the end: a fetch-and-run form
/// (`npx X`, `uvx X`) as its two phases ([`fetch_run`]), anything else as
/// one.
pub(crate) fn run(inv: Invocation, env: &Env) -> Result<Exit, Failure> {
    let self_id = own_file_id();
    // A second copy of cli-guard that an outer one took for the real tool:
    // the gate is already in place, so hand straight through.
    let ran_as_real = env.real_tool().and_then(FileId::from_var);
    if inv.as_shim && self_id.is_some() && ran_as_real == self_id {
        return Err(hand_through(&inv, &skip_list(env.skip(), self_id), env));
    }
    match fetch_run::plan(&inv, env) {
        Some(plan) => fetch_run::run(&inv, env, plan),
        None => guarded(&inv, env, &Phase::default()).outcome,
    }
}

/// How one guarded invocation ended, and its audit ID.
struct Ran {
    outcome: Result<Exit, Failure>,
    audit_id: String,
}

/// Runs one guarded invocation (or one phase of a fetch-and-run) to the end.
fn guarded(inv: &Invocation, env: &Env, phase: &Phase) -> Ran {
    let started = Instant::now();
    let skip = skip_list(env.skip(), own_file_id());
    let depth = match check_recursion(inv, env.depth()) {
        Ok(depth) => depth,
        Err(failure) => return Ran::before_start(failure),
    };
    let audit_id = match audit::new_audit_id() {
        Ok(id) => id,
        Err(e) => {
            return Ran::before_start(Failure::gate(anyhow::anyhow!(
                "cannot draw a random audit ID: {e}"
            )))
        }
    };
    let parent_audit_id = env.parent_audit_id().map(str::to_string);
    // Shipping the record: a configuration that cannot be read is a gate
    // that cannot be put in place, as a bad CLI_GUARD_STRICT is.
    let ship = match env.ship_config() {
        Ok(ship) => ship,
        Err(e) => {
            return Ran::before_start(Failure::gate(anyhow::anyhow!(
                "cannot ship the audit log as configured: {e}"
            )))
        }
    };
    let log_path = env.audit_log_path();
    let log = match AuditLog::open(
        audit_id,
        log_path.as_deref(),
        relay_to(env).as_ref(),
        ship.as_ref(),
    ) {
        Ok(log) => Arc::new(log),
        Err(refused) => return Ran::before_start(Failure::gate(anyhow::anyhow!("{refused}"))),
    };

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
    let tool_args = inv.args.get(inv.tool_args_from..).unwrap_or_default();
    let split = phase.split.clone().unwrap_or_else(|| {
        policy::invocation_policy(inv.policy, tool_args, &|| {
            std::fs::read_to_string("package.json")
                .ok()
                .map(|json| policy::script_names(&json))
        })
    });
    let start = audit::Start {
        parent_audit_id,
        tool: inv.policy.name.to_string(),
        mode: Some(split.mode),
        subcommand: logged_subcommand(inv.policy.name, split.subcommand.as_deref()),
        argv,
        argv_redacted,
        cwd: std::env::current_dir()
            .ok()
            .map(|d| d.to_string_lossy().into_owned()),
        real_path: found.as_ref().ok().map(|f| f.path.to_string_lossy().into_owned()),
        pid: std::process::id(),
        isolation: None,
        isolation_reason: None,
        phase: phase.mark.phase.map(str::to_string),
        fetch_audit_id: phase.mark.fetch_audit_id.clone(),
        package: phase.mark.package.clone(),
        layers: None,
        attribution: None,
    };
    let started_gate = Started {
        inv,
        split,
        env,
        log: &log,
        depth,
        skip,
        start,
        phase,
    };
    let (outcome, summary) = match found {
        Ok(found) => started_gate.guarded(found),
        Err(e) => {
            started_gate.write_start(
                &Isolation::None {
                    reason: "the real tool was not found: nothing ran".to_string(),
                },
                None,
                None,
            );
            (Err(lookup_failure(inv, e)), Summary::default())
        }
    };
    // The collector has until the bound to acknowledge the rows; the end
    // row says how many it had not, and the rest waits in the spool.
    let shipping = log.shipping();
    let deadline = Instant::now() + crate::ship::BOUND;
    let spooled = shipping.as_ref().map(|s| s.settle(deadline));
    write_end(&log, started, &outcome, &summary, spooled);
    if let (Some(shipping), Some(path)) = (log.shipping(), log_path.as_deref()) {
        shipping.settle(deadline);
        if let Some(warning) = shipping.finish(path) {
            eprintln!("{warning}");
        }
    }
    let failed = !matches!(outcome, Ok(Exit::Code(0)));
    summary::print_denials(inv.policy, &summary, log.audit_id(), failed);
    Ran {
        outcome,
        audit_id: log.audit_id().to_string(),
    }
}

impl Ran {
    /// Refused before any row was written (a loop, no randomness).
    fn before_start(failure: Failure) -> Ran {
        Ran {
            outcome: Err(failure),
            audit_id: String::new(),
        }
    }
}

/// Where a guarded tool nested in a strict invocation sends its rows when
/// its log is read-only there: the enclosing gate, through the proxy it
/// chains through (its address and credential from the environment).
fn relay_to(env: &Env) -> Option<audit::RelayTo> {
    if !(env.in_netns() && crate::sys::procfs::in_loopback_only_netns()) {
        return None;
    }
    let (addr, authorization) = gate::upstream_of(env)?;
    Some(audit::RelayTo {
        addr,
        head: format!(
            "{} {} HTTP/1.1\r\nProxy-Authorization: {authorization}\r\n\r\n",
            gate::ROWS_METHOD,
            gate::ROWS_TARGET
        ),
    })
}

/// The subcommand as the start row records it: a word (a script, say, is
/// not one: `cli-guard run --as npm -- sh -c '…'`), masked like argv.
fn logged_subcommand(tool: &str, subcommand: Option<&str>) -> Option<String> {
    let word = subcommand.filter(|s| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '+' | '@' | '/'))
    })?;
    let (masked, _) = audit::redact_argv(tool, &[word.to_string()]);
    masked.into_iter().next()
}

/// An invocation whose real tool was found and whose `start` row is drawn
/// up but not yet written (it waits for where the tool will run): what
/// [`Started::guarded`] needs to put the gate in place, write that row and
/// run the tool.
struct Started<'a> {
    inv: &'a Invocation,
    /// The policy the invocation got (the gate applies `split.policy`: the
    /// tool's, or its observe-mode twin when it runs the project's own
    /// code) and whether it is strict.
    split: InvocationPolicy,
    env: &'a Env,
    log: &'a Arc<AuditLog>,
    depth: u32,
    /// cli-guard binaries the child's own lookups must skip.
    skip: Vec<FileId>,
    /// The `start` row, written once the isolation is known and before the
    /// tool runs.
    start: audit::Start,
    /// A fetch-and-run phase's arguments and environment, if this is one.
    phase: &'a Phase,
}

impl<'a> Started<'a> {
    /// Writes the `start` row with where the tool runs.
    fn write_start(
        &self,
        isolation: &Isolation,
        layers: Option<BTreeMap<String, String>>,
        attribution: Option<String>,
    ) {
        self.log.write(&Record::Start(audit::Start {
            isolation: Some(isolation.label().to_string()),
            isolation_reason: isolation.reason().map(str::to_string),
            layers,
            attribution,
            ..self.start.clone()
        }));
    }

    /// Puts the gate in place, writes the `start` row, and runs the tool
    /// behind the gate. Returns how the run ended and the gate's tallies,
    /// for the one `end` row.
    fn guarded(self, found: Found) -> (Result<Exit, Failure>, Summary) {
        match self.prepare(found) {
            Ok(Ready {
                launch,
                supervisor,
                signals,
                runtime,
            }) => {
                let attribution = Some(match &supervisor.who {
                    Ok(_) => "on".to_string(),
                    Err(why) => format!("off: {why}"),
                });
                self.write_start(&launch.isolation, launch.layers.clone(), attribution);
                let ended = runtime.block_on(supervisor.supervise(launch, signals));
                // A DNS lookup still blocking in the runtime's pool must not
                // hold the exit: its connection is already answered and logged.
                runtime.shutdown_background();
                ended
            }
            Err(failure) => {
                self.write_start(
                    &Isolation::None {
                        reason: format!("the gate could not be put in place: {failure}"),
                    },
                    None,
                    None,
                );
                (Err(failure), Summary::default())
            }
        }
    }

    /// Everything that must exist before the tool runs; any failure here
    /// means it is not run. In strict mode the tool's process exists at the
    /// end of this, inside its namespace, waiting for the go.
    fn prepare(&self, found: Found) -> Result<Ready<'a>, Failure> {
        let env = self.env;
        // The gate holds two descriptors a tunnel: with a soft limit of 1,024
        // its cap would be 480. Raise it to the hard limit for the gate alone;
        // the child gets the original back.
        let nofile = raise_nofile();
        // Any local process can dial the gate's listener: the child's proxy
        // URL carries a secret of this invocation's, and requests without it
        // get 407.
        let credential = Credential::mint()
            .map_err(|e| Failure::gate(anyhow::anyhow!("cannot draw a random proxy credential: {e}")))?;
        // Before any child exists, so that it starts with them blocked too.
        let signals = signal::block_into_signalfd(&WATCHED)
            .context("cannot set up signal forwarding")
            .map_err(Failure::gate)?;
        let terminal = Terminal::open();
        let setting = strict::Setting::parse(env.strict()).map_err(|e| Failure::gate(anyhow::anyhow!(e)))?;
        // Inside an enclosing strict invocation's namespace: its marker,
        // checked, since any process can set a variable.
        let inside = env.in_netns() && crate::sys::procfs::in_loopback_only_netns();
        let skip = skip_var(&self.skip);
        let real_tool = found.id.to_var();
        let tool = launch::Tool {
            inv: self.inv,
            policy: self.split.policy,
            real_path: &found.path,
            env,
            audit_id: self.log.audit_id(),
            depth: self.depth,
            skip: &skip,
            real_tool: &real_tool,
            phase: self.phase,
            subcommand: self.split.subcommand.as_deref(),
            shim_dirs: &locate::shim_dirs(self.inv.policy.name.as_ref(), env.path(), &self.skip),
        };
        let isolation = match strict::attempt(&self.split, setting) {
            // Inside an enclosing strict invocation, the tool runs in its
            // namespace whether or not this one is strict.
            strict::Attempt::Plain(_) if inside => Isolation::Netns,
            strict::Attempt::Plain(isolation) => isolation,
            strict::Attempt::Isolate => {
                let steps = launch::steps(terminal.as_ref(), nofile);
                match Launch::isolated(&tool, &credential, steps, setting, inside)? {
                    Ok(launch) => return self.ready(launch, found.path, nofile, terminal, signals),
                    Err(refused) => {
                        let isolation = strict::fallback(&refused, setting, inside)
                            .map_err(|e| Failure::gate(anyhow::anyhow!(e)))?;
                        if isolation != Isolation::Netns {
                            eprintln!("{}", strict::fallback_warning(self.inv.policy.name, &refused));
                        }
                        isolation
                    }
                }
            }
        };
        // Behind the plain proxy, a config file of the tool's own that beats
        // the environment would send it around the gate: say so.
        if self.split.policy.mode == policy::Mode::Enforce {
            for warning in self.config_overrides() {
                eprintln!("{warning}");
            }
        }
        let launch = Launch::plain(&tool, &credential, isolation, inside)?;
        self.ready(launch, found.path, nofile, terminal, signals)
    }

    /// Attribution for this invocation (`who`): the lookup socket (strict
    /// mode's, made in the tool's namespace, or one here), the project and
    /// its direct dependencies, and the shim made the subreaper of what the
    /// tool starts, so that an orphan stays below it. Or why not: then
    /// every connection is judged as the tool's, and the start row says so.
    fn attribution(
        &self,
        in_namespace: Option<std::os::fd::OwnedFd>,
        real_path: &std::path::Path,
    ) -> Result<Arc<Who>, String> {
        let sealed = in_namespace.is_some();
        let diag = match in_namespace {
            Some(fd) => SockDiag::from_fd(fd),
            None => SockDiag::open().map_err(|e| format!("no NETLINK_SOCK_DIAG socket: {e}"))?,
        };
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot be the tool's subreaper: {e}"))?;
        let project = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
        let dependencies = match self.split.policy.family {
            policy::Family::Node => std::fs::read_to_string("package.json")
                .map(|json| policy::dependency_names(&json))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let program = match (self.phase.mark.phase, &self.phase.mark.package) {
            (Some("run"), Some(package)) => Some(match &package.version {
                Some(version) => format!("{}@{version}", package.name),
                None => package.name.clone(),
            }),
            _ => None,
        };
        Ok(Arc::new(Who::new(crate::who::Setup {
            diag,
            sealed,
            launcher: crate::who::version_manager_shim(real_path, |p| p.exists()),
            hooked: script_shell::hooked(self.split.policy),
            project,
            dependencies,
            program,
            helpers: crate::who::resolve_helpers(self.split.policy.helpers(), self.env.path()),
        })))
    }

    /// The tool's config files that would beat the plain proxy (read only
    /// when the invocation is not isolated).
    fn config_overrides(&self) -> Vec<String> {
        let env = self.env;
        let path = |key: &str| env.var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        let places = overrides::Places {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: path("HOME"),
            xdg_config_home: path("XDG_CONFIG_HOME"),
            gradle_user_home: path("GRADLE_USER_HOME"),
        };
        overrides::config_overrides(self.inv.policy.name, &places, &|file| {
            std::fs::read_to_string(file).ok()
        })
    }

    /// The launch with what runs it: the supervisor, the signals, the
    /// runtime.
    fn ready(
        &self,
        mut launch: Launch,
        real_path: PathBuf,
        nofile: Option<(u64, u64)>,
        terminal: Option<Terminal>,
        signals: SignalFd,
    ) -> Result<Ready<'a>, Failure> {
        let who = self.attribution(launch.sockets.sock_diag.take(), &real_path);
        Ok(Ready {
            launch,
            supervisor: Supervisor {
                inv: self.inv,
                policy: self.split.policy,
                real_path,
                log: Arc::clone(self.log),
                terminal,
                nofile,
                who,
            },
            signals,
            runtime: runtime()?,
        })
    }
}

/// An invocation whose gate is in place and whose tool is ready to run.
struct Ready<'a> {
    launch: Launch,
    supervisor: Supervisor<'a>,
    signals: SignalFd,
    runtime: tokio::runtime::Runtime,
}

/// A current-thread runtime: one thread starts fastest, and the spawn must
/// stay on the main thread (see `sys::spawn`).
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::gate)
}

/// Raises the descriptor soft limit to the hard limit; returns the original
/// (soft, hard) for the child: the limit as the process found it, also for
/// a fetch-and-run's second phase, after the first raised it.
fn raise_nofile() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    static ORIGINAL: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    let original = *ORIGINAL.get_or_init(|| getrlimit(Resource::RLIMIT_NOFILE).ok());
    let (soft, hard) = original?;
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

/// The async half: runs the tool behind its gate.
struct Supervisor<'a> {
    inv: &'a Invocation,
    /// The policy the gate applies.
    policy: &'static ToolPolicy,
    real_path: PathBuf,
    log: Arc<AuditLog>,
    terminal: Option<Terminal>,
    /// The descriptor limit as the shim found it, restored for the child.
    nofile: Option<(u64, u64)>,
    /// Attribution, or why it is off.
    who: Result<Arc<Who>, String>,
}

impl Supervisor<'_> {
    /// Starts the gate, runs the child, forwards signals until it exits,
    /// then stops the gate. Returns the exit and the gate's tallies.
    async fn supervise(self, launch: Launch, signals: SignalFd) -> (Result<Exit, Failure>, Summary) {
        let Launch {
            child,
            sockets,
            settings,
            isolation: _,
            layers: _,
            init,
            relays,
            writable,
        } = launch;
        let mut gate = Gate::new(self.policy, Arc::clone(&self.log), settings);
        if let Ok(who) = &self.who {
            gate = gate.with_who(Arc::clone(who));
        }
        // Strict mode's own namespace: names are answered from a pool.
        if matches!(child, Child::Isolated(_)) {
            gate = gate.with_pool(Arc::new(Pool::new()));
        }
        let gate = Arc::new(gate);
        let shutdown = Shutdown::new();
        let serving = match gate::start(sockets, &gate, &shutdown) {
            Ok(serving) => serving,
            Err(e) => {
                let failure = Failure::gate(anyhow::Error::new(e).context("cannot start the proxy"));
                return (Err(failure), gate.summary());
            }
        };
        let relaying = (!relays.is_empty()).then(|| tokio::spawn(relays.run()));
        let outcome = self.run_child(child, signals).await;
        if let (Some(writable), false) = (&writable, matches!(outcome, Ok(Exit::Code(0)))) {
            eprintln!("{}", summary::read_only_line(self.policy.name, writable));
        }
        // What the tool left behind ends with it: the init's death ends
        // every process in its namespace.
        let leftovers = init.map(|init| {
            let left = crate::sys::procfs::descendants(init.as_raw(), MAX_LEFTOVERS_COUNTED);
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            left as u64
        });
        if let Some(relaying) = relaying {
            // stdout and stderr end once every writer is gone; stdin's
            // reader may wait on a socket that never ends.
            let _ = tokio::time::timeout(gate::GRACE, relaying).await;
        }
        shutdown.stop();
        serving.finished().await;
        let mut summary = gate.summary();
        summary.leftovers = leftovers;
        (outcome, summary)
    }

    async fn run_child(&self, child: Child, signals: SignalFd) -> Result<Exit, Failure> {
        let signals = signal::watch(signals)
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("cannot watch signals")))?;
        let terminal = self.terminal.as_ref();
        // The spawn (or the go) runs here, on the main thread (the runtime
        // is current-thread): PR_SET_PDEATHSIG fires when the parent
        // *thread* exits, not the process, so spawning from a short-lived
        // thread would kill the tool when that thread ends. `spawn` and
        // `spawn_isolated` refuse any other thread.
        let (pid, took_terminal) = child
            .start(launch::steps(terminal, self.nofile), terminal)
            .map_err(|e| spawn_failure(self.inv, &self.real_path, &e))?;
        // Before the first await: no connection is judged before the gate
        // knows its tool.
        if let Ok(who) = &self.who {
            who.set_tool(pid.as_raw());
        }
        // Dropped on every way out of here, which gives the terminal back
        // to the shim's group if the tool's held it.
        let mut job = Job::new(pid, terminal, took_terminal);
        wait_forwarding(&signals, &mut job)
            .await
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("lost track of the child")))
    }
}

/// The invocation's one `end` row: how it ended, the gate's tallies.
fn write_end(
    log: &AuditLog,
    started: Instant,
    outcome: &Result<Exit, Failure>,
    summary: &Summary,
    spooled: Option<u64>,
) {
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
        // Strangers past their row cap, and DNS queries past theirs.
        suppressed: summary.suppressed + summary.direct_suppressed,
        error,
        leftovers: summary.leftovers,
        unix_sockets: Some(summary.unix_sockets).filter(|&n| n > 0),
        spooled,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_subcommand_is_a_word_and_masked() {
        assert_eq!(
            logged_subcommand("npm", Some("install")),
            Some("install".to_string())
        );
        assert_eq!(logged_subcommand("npm", Some("echo $HOME; curl x")), None);
        assert_eq!(logged_subcommand("npm", Some("")), None);
        assert_eq!(logged_subcommand("npm", None), None);
        let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(logged_subcommand("gh", Some(token)), Some("***".to_string()));
    }
}
