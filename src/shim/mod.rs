//! Shim mode: one guarded invocation, from argv to exit status. This file
//! is the orchestration only; each step has its own home: [`invocation`]
//! says what is run (and the 126/127 messages), [`locate`] finds the real
//! tool, [`hand_through`] passes a copied shim on to it, [`child_env`]
//! makes its environment, [`signals`] forwards signals, [`summary`] prints
//! the refusals, and the gate itself is `crate::gate`.
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
//! and [`run`]'s `write_end`.

mod child_env;
mod hand_through;
mod invocation;
mod locate;
mod overrides;
pub mod python;
mod signals;
mod strict;
mod summary;

use std::ffi::{OsStr, OsString};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nix::sys::signalfd::SignalFd;
use tokio::sync::{oneshot, watch};

use self::child_env::ChildMarks;
use self::hand_through::hand_through;
use self::invocation::{lookup_failure, spawn_failure};
use self::locate::{check_path, find_on_path, own_file_id, skip_list, skip_var, FileId, Found};
use self::signals::{wait_forwarding, Job, Terminal, WATCHED};
use self::strict::Isolation;
use crate::audit::{self, AuditLog, Record};
use crate::credential::Credential;
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::gate::{self, Gate, Pool, Settings, Summary};
use crate::policy::{self, InvocationPolicy, ToolPolicy};
use crate::sys::netns::{self, Isolated};
use crate::sys::{signal, spawn};

pub use self::invocation::{Invocation, Program};
pub use self::locate::{shim_names, shim_status, ShimStatus};
pub use self::strict::Setting as StrictSetting;

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
    let tool_args = inv.args.get(inv.tool_args_from..).unwrap_or_default();
    let split = policy::invocation_policy(inv.policy, tool_args, &|| {
        std::fs::read_to_string("package.json")
            .ok()
            .map(|json| policy::script_names(&json))
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
    };
    let started_gate = Started {
        inv: &inv,
        split,
        env,
        log: &log,
        depth,
        skip,
        start,
    };
    let (outcome, summary) = match found {
        Ok(found) => started_gate.guarded(found),
        Err(e) => {
            started_gate.write_start(&Isolation::None {
                reason: "the real tool was not found: nothing ran".to_string(),
            });
            (Err(lookup_failure(&inv, e)), Summary::default())
        }
    };
    write_end(&log, started, &outcome, &summary);
    summary::print_denials(inv.policy, &summary, log.audit_id());
    outcome
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

/// An invocation about to be guarded: what [`Started::guarded`] needs to put
/// the gate in place, write the `start` row and run the tool.
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
}

/// The tool, ready to run: spawned at once (behind the plain proxy), or
/// waiting inside its namespace for the go.
enum Child {
    Plain(spawn::Prepared),
    Isolated(Isolated),
}

/// The sockets the gate serves: the proxy's listener (on the host's
/// loopback, or inside the namespace), and in strict mode the namespace's
/// transparent listeners, DNS and QUIC sockets.
struct Sockets {
    proxy: TcpListener,
    strict: Option<StrictSockets>,
}

/// Strict mode's sockets, made inside the tool's namespace.
struct StrictSockets {
    transparent: Vec<TcpListener>,
    dns_tcp: Vec<TcpListener>,
    dns_udp: Vec<UdpSocket>,
    quic: Vec<UdpSocket>,
}

impl<'a> Started<'a> {
    /// Writes the `start` row with where the tool runs.
    fn write_start(&self, isolation: &Isolation) {
        self.log.write(&Record::Start(audit::Start {
            isolation: Some(isolation.label().to_string()),
            isolation_reason: isolation.reason().map(str::to_string),
            ..self.start.clone()
        }));
    }

    /// Puts the gate in place, writes the `start` row, and runs the tool
    /// behind the gate. Returns how the run ended and the gate's tallies,
    /// for the one `end` row.
    fn guarded(self, found: Found) -> (Result<Exit, Failure>, Summary) {
        match self.prepare(found) {
            Ok((setup, sockets, signals, runtime, isolation)) => {
                self.write_start(&isolation);
                let ended = runtime.block_on(setup.supervise(sockets, signals));
                // A DNS lookup still blocking in the runtime's pool must not
                // hold the exit: its connection is already answered and logged.
                runtime.shutdown_background();
                ended
            }
            Err(failure) => {
                self.write_start(&Isolation::None {
                    reason: format!("the gate could not be put in place: {failure}"),
                });
                (Err(failure), Summary::default())
            }
        }
    }

    /// Everything that must exist before the tool runs; any failure here
    /// means it is not run. In strict mode the tool's process exists at the
    /// end of this, inside its namespace, waiting for the go.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        found: Found,
    ) -> Result<
        (
            Supervised<'a>,
            Sockets,
            SignalFd,
            tokio::runtime::Runtime,
            Isolation,
        ),
        Failure,
    > {
        let env = self.env;
        let Found {
            path: real_path,
            id: real_id,
        } = found;
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
        let inside = env.in_netns() && netns::outside_init_netns();
        let argv: Vec<&OsStr> = std::iter::once(self.inv.child_argv0(&real_path))
            .chain(self.inv.args.iter().map(OsString::as_os_str))
            .collect();
        let skip = skip_var(&self.skip);
        let real_tool = real_id.to_var();
        let prepare_child = |proxy_url: &str, in_netns: bool| {
            let marks = ChildMarks {
                proxy_url,
                audit_id: self.log.audit_id(),
                depth: self.depth,
                skip: &skip,
                real_tool: &real_tool,
                in_netns,
            };
            let child_env = child_env::for_child(env, self.inv.policy, marks);
            spawn::Prepared::new(real_path.as_os_str(), &argv, &child_env)
                .map_err(|e| spawn_failure(self.inv, &real_path, &e))
        };
        let steps = spawn::Steps {
            terminal: terminal.as_ref().map(Terminal::handoff),
            nofile,
            parent: nix::unistd::getpid(),
        };
        let plain = match strict::plan(&self.split, setting) {
            strict::Plan::Plain(isolation) => isolation,
            strict::Plan::Isolate => {
                let layout = strict::layout(self.split.policy);
                let proxy_url = credential.proxy_url(strict::PROXY_IN_NAMESPACE);
                let prepared = prepare_child(&proxy_url, true)?;
                netns::keep_inherited_sockets_from_the_tool();
                match netns::spawn_isolated(&prepared, steps, &layout.sockets) {
                    Ok(mut isolated) => {
                        // The tool runs as the same user: without this, it could
                        // ptrace the shim (or take its sockets with pidfd_getfd)
                        // wherever Yama does not forbid tracing a parent, and dial
                        // from the host's namespace through it. Not dumpable, the
                        // shim is out of reach of anything without CAP_SYS_PTRACE
                        // in the host's user namespace; the tool execs and is
                        // dumpable again. Only now: the child wrote its own
                        // uid_map, which a non-dumpable parent's fork could not.
                        netns::not_dumpable().map_err(|e| {
                            Failure::gate(anyhow::anyhow!(
                                "strict mode: cannot keep the tool from tracing the shim: {e}"
                            ))
                        })?;

                        // The gate dials from the host's namespace, where
                        // the in-namespace listener cannot be reached: it
                        // has no own listener there to avoid.
                        let settings = Settings::from_env(None, &credential, env)
                            .map_err(|e| Failure::gate(anyhow::anyhow!("{e}")))?;
                        let sockets = strict_sockets(&layout, &mut isolated)?;
                        let setup = self.supervised(real_path.clone(), nofile, settings, terminal);
                        let runtime = runtime()?;
                        let setup = Supervised {
                            child: Some(Child::Isolated(isolated)),
                            ..setup
                        };
                        return Ok((setup, sockets, signals, runtime, Isolation::Netns));
                    }
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
        // Fail closed: no listener, no child.
        let (listener, addr) = gate::bind_loopback()
            .context("cannot start the proxy on 127.0.0.1")
            .map_err(Failure::gate)?;
        let settings = Settings::from_env(Some(addr), &credential, env)
            .map_err(|e| Failure::gate(anyhow::anyhow!("{e}")))?;
        let prepared = prepare_child(&credential.proxy_url(addr), inside)?;
        let runtime = runtime()?;
        let setup = Supervised {
            child: Some(Child::Plain(prepared)),
            ..self.supervised(real_path.clone(), nofile, settings, terminal)
        };
        let sockets = Sockets {
            proxy: listener,
            strict: None,
        };
        Ok((setup, sockets, signals, runtime, plain))
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

    /// The async half's state, without its child yet.
    fn supervised(
        &self,
        real_path: PathBuf,
        nofile: Option<(u64, u64)>,
        settings: Settings,
        terminal: Option<Terminal>,
    ) -> Supervised<'a> {
        Supervised {
            inv: self.inv,
            policy: self.split.policy,
            real_path,
            log: Arc::clone(self.log),
            settings,
            terminal,
            nofile,
            child: None,
        }
    }
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

/// The isolated child's sockets as the gate uses them, by the layout. They
/// are moved out of `isolated`, which keeps only the child and the go.
fn strict_sockets(layout: &strict::Layout, isolated: &mut Isolated) -> Result<Sockets, Failure> {
    let mut tcp: Vec<Option<OwnedFd>> = std::mem::take(&mut isolated.tcp).into_iter().map(Some).collect();
    let mut udp: Vec<Option<OwnedFd>> = std::mem::take(&mut isolated.udp).into_iter().map(Some).collect();
    fn take(list: &mut [Option<OwnedFd>], i: usize) -> Result<OwnedFd, Failure> {
        list.get_mut(i).and_then(Option::take).ok_or_else(|| {
            Failure::gate(anyhow::anyhow!(
                "strict mode: the namespace's socket {i} is missing"
            ))
        })
    }
    let mut tcp_range = |range: std::ops::Range<usize>| -> Result<Vec<TcpListener>, Failure> {
        range.map(|i| take(&mut tcp, i).map(TcpListener::from)).collect()
    };
    let proxy = tcp_range(layout.proxy..layout.proxy + 1)?;
    let transparent = tcp_range(layout.transparent.clone())?;
    let dns_tcp = tcp_range(layout.dns_tcp.clone())?;
    let mut udp_range = |range: std::ops::Range<usize>| -> Result<Vec<UdpSocket>, Failure> {
        range.map(|i| take(&mut udp, i).map(UdpSocket::from)).collect()
    };
    let dns_udp = udp_range(layout.dns_udp.clone())?;
    let quic = udp_range(layout.quic.clone())?;
    let proxy = proxy.into_iter().next().ok_or_else(|| {
        Failure::gate(anyhow::anyhow!(
            "strict mode: the namespace's proxy listener is missing"
        ))
    })?;
    Ok(Sockets {
        proxy,
        strict: Some(StrictSockets {
            transparent,
            dns_tcp,
            dns_udp,
            quic,
        }),
    })
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
    real_path: PathBuf,
    log: Arc<AuditLog>,
    settings: Settings,
    terminal: Option<Terminal>,
    /// The descriptor limit as the shim found it, restored for the child.
    nofile: Option<(u64, u64)>,
    /// The tool, ready to run.
    child: Option<Child>,
}

impl Supervised<'_> {
    /// Starts the gate, runs the child, forwards signals until it exits,
    /// then stops the gate. Returns the exit and the gate's tallies.
    async fn supervise(mut self, sockets: Sockets, signals: SignalFd) -> (Result<Exit, Failure>, Summary) {
        let mut gate = Gate::new(self.policy, Arc::clone(&self.log), self.settings.clone());
        if sockets.strict.is_some() {
            gate = gate.with_pool(Arc::new(Pool::new()));
        }
        let gate = Arc::new(gate);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = watch::channel(false);
        let mut helpers = tokio::task::JoinSet::new();
        let served = serve_sockets(sockets, &gate, &done_rx, &mut helpers);
        let (proxy, transparent) = match served {
            Ok(served) => served,
            Err(e) => {
                let failure = Failure::gate(anyhow::Error::new(e).context("cannot start the proxy"));
                return (Err(failure), gate.summary());
            }
        };
        let proxy_task = tokio::spawn(gate::serve_with_transparent(
            proxy,
            transparent,
            Arc::clone(&gate),
            stop_rx,
        ));
        let outcome = self.run_child(signals).await;
        let _ = stop_tx.send(());
        let _ = done_tx.send(true);
        let _ = proxy_task.await;
        while helpers.join_next().await.is_some() {}
        (outcome, gate.summary())
    }

    async fn run_child(&mut self, signals: SignalFd) -> Result<Exit, Failure> {
        let signals = signal::watch(signals)
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("cannot watch signals")))?;
        let child = self
            .child
            .take()
            .ok_or_else(|| Failure::gate(anyhow::anyhow!("the tool was already started")))?;
        let terminal = self.terminal.as_ref();
        // The spawn (or the go) runs here, on the main thread (the runtime
        // is current-thread): PR_SET_PDEATHSIG fires when the parent
        // *thread* exits, not the process, so spawning from a short-lived
        // thread would kill the tool when that thread ends. `spawn` and
        // `spawn_isolated` refuse any other thread.
        let (pid, took_terminal) = match child {
            Child::Plain(prepared) => {
                let steps = spawn::Steps {
                    terminal: terminal.map(Terminal::handoff),
                    nofile: self.nofile,
                    parent: nix::unistd::getpid(),
                };
                let spawned = spawn::spawn(&prepared, steps)
                    .map_err(|e| spawn_failure(self.inv, &self.real_path, &e))?;
                (spawned.pid, spawned.took_terminal)
            }
            Child::Isolated(isolated) => {
                let pid = isolated.child;
                isolated.go.start().map_err(|e| {
                    // The child may have taken the terminal before its exec
                    // failed: the shell must get it back.
                    if let Some(terminal) = terminal {
                        terminal.take_back_from(pid);
                    }
                    spawn_failure(self.inv, &self.real_path, &e)
                })?;
                (pid, terminal.is_some_and(|t| t.foreground() == Some(pid)))
            }
        };
        // Dropped on every way out of here, which gives the terminal back
        // to the shim's group if the tool's held it.
        let mut job = Job::new(pid, terminal, took_terminal);
        wait_forwarding(&signals, &mut job)
            .await
            .map_err(|e| Failure::gate(anyhow::Error::new(e).context("lost track of the child")))
    }
}

/// Starts what serves the gate's sockets besides the proxy's listener (DNS,
/// QUIC's refusal) as tasks that end when `done` is raised, and returns the
/// proxy's listener and the transparent ones, ready for the accept loop.
fn serve_sockets(
    sockets: Sockets,
    gate: &Arc<Gate>,
    done: &watch::Receiver<bool>,
    helpers: &mut tokio::task::JoinSet<()>,
) -> std::io::Result<(tokio::net::TcpListener, Vec<tokio::net::TcpListener>)> {
    let proxy = tokio::net::TcpListener::from_std(sockets.proxy)?;
    let Some(strict) = sockets.strict else {
        return Ok((proxy, Vec::new()));
    };
    let stopped = |done: &watch::Receiver<bool>| {
        let mut done = done.clone();
        async move {
            let _ = done.wait_for(|done| *done).await;
        }
    };
    for socket in strict.dns_udp {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        helpers.spawn(gate::serve_dns_udp(socket, Arc::clone(gate), stopped(done)));
    }
    for listener in strict.dns_tcp {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        helpers.spawn(gate::serve_dns_tcp(listener, Arc::clone(gate), stopped(done)));
    }
    for socket in strict.quic {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        helpers.spawn(gate::refuse_quic(socket, Arc::clone(gate), stopped(done)));
    }
    let transparent = strict
        .transparent
        .into_iter()
        .map(tokio::net::TcpListener::from_std)
        .collect::<std::io::Result<_>>()?;
    Ok((proxy, transparent))
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
        // Strangers past their row cap, and DNS queries past theirs.
        suppressed: summary.suppressed + summary.direct_suppressed,
        error,
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
