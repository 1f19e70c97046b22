//! The tool, ready to run behind its gate: one [`Launch`] (its process,
//! the gate's sockets and settings, where it runs) from each of the two
//! paths. Behind the plain proxy ([`Launch::plain`]) the gate listens on
//! the host's loopback and the tool is spawned at the go; in strict mode
//! ([`Launch::isolated`]) the tool's process already waits inside its
//! namespace, which made the gate's sockets (`strict::Layout`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use std::collections::BTreeMap;

use super::child_env::{self, ChildMarks};
use super::fetch_run::Phase;
use super::invocation::spawn_failure;
use super::sandbox;
use super::signals::Terminal;
use super::stdio::Relays;
use super::strict::{self, Isolation};
use crate::credential::Credential;
use crate::env::{Env, STRICT_LAYERS_VAR};
use crate::exit::Failure;
use crate::gate::{self, Settings, Sockets};
use crate::policy::ToolPolicy;
use crate::shim::Invocation;
use crate::sys::netns::{self, Layer, Layers, NamespaceError, Waiting};
use crate::sys::seccomp::Filters;
use crate::sys::spawn::{self, Prepared, Steps};

/// The tool, ready to run.
#[derive(Debug)]
pub(super) enum Child {
    /// To be spawned at the go (behind the plain proxy).
    Plain(Prepared),
    /// Waiting inside its namespace for the go.
    Isolated(Waiting),
}

/// Everything one invocation's run needs from the path it took.
#[derive(Debug)]
pub(super) struct Launch {
    pub child: Child,
    /// What the gate serves.
    pub sockets: Sockets,
    pub settings: Settings,
    /// Where the tool runs, for the `start` row.
    pub isolation: Isolation,
    /// Strict mode's layers, each on or why not, for the `start` row.
    pub layers: Option<BTreeMap<String, String>>,
    /// The PID namespace's init: what the tool leaves behind is its.
    pub init: Option<nix::unistd::Pid>,
    /// Sockets on stdio, relayed to the tool through pipes.
    pub relays: Relays,
    /// The places the tool may write, when everything else is read-only.
    pub writable: Option<Vec<PathBuf>>,
}

/// The tool to run and what its environment is made of, the same on both
/// paths but for the proxy's URL and whether it runs in a namespace.
#[derive(Debug)]
pub(super) struct Tool<'a> {
    pub inv: &'a Invocation,
    /// The policy the gate applies to this invocation (the tool's, or its
    /// observe-mode twin): what strict mode's namespace listens for.
    pub policy: &'static ToolPolicy,
    pub real_path: &'a Path,
    pub env: &'a Env,
    pub audit_id: &'a str,
    pub depth: u32,
    /// `CLI_GUARD_SKIP`'s value for the child.
    pub skip: &'a str,
    /// `CLI_GUARD_REAL_TOOL`'s value for the child.
    pub real_tool: &'a str,
    /// A fetch-and-run phase's arguments and environment, if this is one.
    pub phase: &'a Phase,
    /// The subcommand, as the policy read it.
    pub subcommand: Option<&'a str>,
    /// Directories holding cli-guard under the tool's name (its shims):
    /// never writable to a strict invocation.
    pub shim_dirs: &'a [PathBuf],
}

impl<'a> Tool<'a> {
    /// What strict mode's write layer needs to know of the invocation.
    fn sandbox(&self) -> sandbox::Invocation<'_> {
        let args = self.phase.args.as_ref().unwrap_or(&self.inv.args);
        sandbox::Invocation {
            policy: self.policy,
            subcommand: self.subcommand,
            args: args.iter().filter_map(|a| a.to_str()).collect(),
            real_path: self.real_path,
            env: self.env,
            shim_dirs: self.shim_dirs,
        }
    }

    /// The tool's argv and environment, ready to exec, with its proxy at
    /// `proxy_url`.
    fn prepare(&self, proxy_url: &str, in_netns: bool) -> Result<Prepared, Failure> {
        let args = self.phase.args.as_ref().unwrap_or(&self.inv.args);
        let argv: Vec<&OsStr> = std::iter::once(self.inv.child_argv0(self.real_path))
            .chain(args.iter().map(|a| a.as_os_str()))
            .collect();
        let marks = ChildMarks {
            proxy_url,
            audit_id: self.audit_id,
            depth: self.depth,
            skip: self.skip,
            real_tool: self.real_tool,
            in_netns,
            pip_in_process: matches!(self.inv.policy.name, "pip" | "pip3")
                && sandbox::interpreter_prefix(self.real_path)
                    .is_some_and(|p| super::python::pip_builds_in_process(&p)),
        };
        let mut child_env = child_env::for_child(self.env, self.inv.policy, marks);
        self.phase.apply_env(&mut child_env);
        Prepared::new(self.real_path.as_os_str(), &argv, &child_env)
            .map_err(|e| spawn_failure(self.inv, self.real_path, &e))
    }
}

/// What the tool's process does before its first instruction (both paths):
/// take the terminal where the shim's group had it, restore the descriptor
/// limit, check that the shim is still its parent.
pub(super) fn steps(terminal: Option<&Terminal>, nofile: Option<(u64, u64)>) -> Steps<'_> {
    Steps {
        terminal: terminal.map(Terminal::handoff),
        nofile,
        parent: nix::unistd::getpid(),
    }
}

impl Launch {
    /// Behind the plain proxy: the gate's listener on 127.0.0.1 (fail
    /// closed: no listener, no tool), the tool to spawn at the go. `inside`:
    /// the shim runs in an enclosing strict invocation's namespace, which
    /// the tool's environment says.
    pub(super) fn plain(
        tool: &Tool<'_>,
        credential: &Credential,
        isolation: Isolation,
        inside: bool,
    ) -> Result<Launch, Failure> {
        let (listener, addr) = gate::bind_loopback()
            .context("cannot start the proxy on 127.0.0.1")
            .map_err(Failure::gate)?;
        let settings = Settings::from_env(Some(addr), credential, tool.env)
            .map_err(|e| Failure::gate(anyhow::anyhow!("{e}")))?;
        let prepared = tool.prepare(&credential.proxy_url(addr), inside)?;
        Ok(Launch {
            child: Child::Plain(prepared),
            sockets: Sockets::proxy_only(listener),
            settings,
            isolation,
            layers: None,
            init: None,
            relays: Relays::none(),
            writable: None,
        })
    }

    /// In strict mode: the tool's process made inside new namespaces
    /// holding the gate's sockets, with every layer the kernel allows,
    /// waiting for the go. A layer the kernel refuses is dropped under
    /// `auto`, with the reason in the start row, and fatal under
    /// `require` (but `inside` an enclosing strict invocation, whose layers
    /// hold). `Ok(Err(_))`: the kernel refused the network namespace
    /// itself (the caller may fall back to the plain proxy); `Err(_)`: the
    /// gate cannot be put in place at all.
    pub(super) fn isolated(
        tool: &Tool<'_>,
        credential: &Credential,
        steps: Steps<'_>,
        setting: strict::Setting,
        inside: bool,
    ) -> Result<Result<Launch, NamespaceError>, Failure> {
        let layout = strict::layout(tool.policy);
        let prepared = tool.prepare(&credential.proxy_url(strict::PROXY_IN_NAMESPACE), true)?;
        crate::sys::procfs::keep_inherited_descriptors_from_the_tool();
        let fatal = |what: String| Failure::gate(anyhow::anyhow!("{what}"));
        // Inside an enclosing strict invocation its layers hold whatever
        // this one's get.
        let require = |layer: Layer, why: &str| -> Result<(), Failure> {
            if setting == strict::Setting::Require && !inside {
                return Err(fatal(format!(
                    "strict mode is required (CLI_GUARD_STRICT=require) but its {} layer cannot be put in \
                     place: {why}; `cli-guard doctor` says why and how to fix it",
                    layer.name()
                )));
            }
            Ok(())
        };
        let wanted = strict::wanted_layers(tool.env.strict_layers()).map_err(fatal)?;
        let mut off: BTreeMap<Layer, String> = Layer::ALL
            .into_iter()
            .filter(|layer| !wanted.contains(layer))
            .map(|layer| (layer, format!("{STRICT_LAYERS_VAR} leaves it out")))
            .collect();
        let mut layers = Layers {
            pid: wanted.contains(&Layer::Pid),
            ..Layers::default()
        };
        let mut writable = Vec::new();
        if inside && wanted.contains(&Layer::Mounts) {
            // The enclosing invocation's places are this one's: its own
            // would narrow them to this tool's, and a nested build (pipx's
            // uv, from pipx's directory) could no longer write the project
            // the user ran the outer tool in.
            off.insert(
                Layer::Mounts,
                "inside an enclosing strict invocation, whose mounts hold".to_string(),
            );
        } else if wanted.contains(&Layer::Mounts) {
            match sandbox::write_layer(&tool.sandbox()) {
                Ok((mounts, plan)) => {
                    layers.mounts = Some(mounts);
                    writable = plan.writable;
                }
                Err(why) => {
                    require(Layer::Mounts, &why)?;
                    off.insert(Layer::Mounts, why);
                }
            }
        }
        if wanted.contains(&Layer::Seccomp) {
            match Filters::new(true) {
                Ok(filters) => layers.seccomp = Some(filters),
                Err(why) => {
                    require(Layer::Seccomp, &why)?;
                    off.insert(Layer::Seccomp, why);
                }
            }
        }
        let relayed = sandbox::stdio_sockets();
        let mut relays = Relays::new(relayed).map_err(|e| {
            fatal(format!(
                "strict mode: a socket on stdio cannot be relayed through a pipe: {e}"
            ))
        })?;
        layers.stdio = relays.tool_ends();
        let isolated = loop {
            match netns::spawn_isolated(&prepared, steps, &layout.specs(), &layers) {
                Ok(isolated) => break isolated,
                Err(refused) => {
                    let Some(layer) = refused.layer else {
                        return Ok(Err(refused));
                    };
                    require(layer, &refused.to_string())?;
                    // Without the layer that failed, the rest may hold.
                    layers.drop_layer(layer);
                    if off.insert(layer, refused.to_string()).is_some() {
                        return Ok(Err(refused));
                    }
                }
            }
        };
        // The tool holds its ends of the relayed pipes now.
        relays.close_tool_ends();
        // The tool runs as the same user: without this, it could ptrace
        // the shim (or take its sockets with pidfd_getfd) wherever Yama
        // does not forbid tracing a parent, and dial from the host's
        // namespace through it. Not dumpable, the shim is out of reach of
        // anything without CAP_SYS_PTRACE in the host's user namespace; the
        // tool execs and is dumpable again. Only now: the child wrote its
        // own uid_map, which a non-dumpable parent's fork could not.
        netns::not_dumpable().map_err(|e| {
            Failure::gate(anyhow::anyhow!(
                "strict mode: cannot keep the tool from tracing the shim: {e}"
            ))
        })?;
        // The gate dials from the host's namespace, where the in-namespace
        // listener cannot be reached: it has no own listener there to
        // avoid.
        let settings = Settings::from_env(None, credential, tool.env)
            .map_err(|e| Failure::gate(anyhow::anyhow!("{e}")))?;
        let mut sockets = layout
            .sockets(isolated.sockets)
            .map_err(|e| Failure::gate(anyhow::anyhow!(e)))?;
        sockets.unix = isolated.unix_listener;
        Ok(Ok(Launch {
            child: Child::Isolated(isolated.waiting),
            sockets,
            settings,
            isolation: Isolation::Netns,
            layers: Some(sandbox::layers_row(&off, &writable, relayed)),
            writable: layers.mounts.is_some().then_some(writable),
            init: isolated.init,
            relays,
        }))
    }
}

impl Child {
    /// Runs the tool: spawns it, or lets it exec in its namespace. Returns
    /// its pid and whether it took the terminal. From the main thread only
    /// (`sys::spawn`'s and `sys::netns`' rule: PR_SET_PDEATHSIG follows the
    /// thread).
    pub(super) fn start(
        self,
        steps: Steps<'_>,
        terminal: Option<&Terminal>,
    ) -> std::io::Result<(nix::unistd::Pid, bool)> {
        match self {
            Child::Plain(prepared) => {
                let spawned = spawn::spawn(&prepared, steps)?;
                Ok((spawned.pid, spawned.took_terminal))
            }
            Child::Isolated(waiting) => {
                let pid = waiting.pid();
                let took = waiting.start(steps.terminal).inspect_err(|_| {
                    // The tool may have had the terminal before its exec
                    // failed: the shell must get it back.
                    if let Some(terminal) = terminal {
                        terminal.take_back_from(pid);
                    }
                })?;
                Ok((pid, took))
            }
        }
    }
}
