//! npm's and pnpm's script shell is cli-guard itself (`cli-guard -c
//! SCRIPT`, with `CLI_GUARD_EXEC_HOOK` saying what for): the one place
//! where the package manager, trusted, starts a package's code, before any
//! of that code runs.
//!
//! Every lifecycle script is wrapped ([`wrap`]): the wrapper makes a user
//! namespace of its own and registers it with the invocation's gate
//! (`who`), which reads the package's name from the environment and
//! directory the package manager gave it; then it hands the script nothing
//! but stdio and becomes the user's script shell (`sh`). From then on the
//! script's every process is in that namespace or below it, which it
//! cannot leave: its connections are its package's, however it forks or
//! renames itself, and the namespace keeps it from tracing the tool.
//! Where the namespace or the registration fails, the script runs all the
//! same, as unnamed package code (judged as such).
//!
//! A fetch and run (`shim::fetch_run`) uses the same hook to stop at the
//! program in its fetch (reporting where npm put it) and to run it, in its
//! run phase, with the settings it added taken back out.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::{Env, EXEC_HOOK_VAR};
use crate::exit::{Exit, Failure, NOT_FOUND};
use crate::policy::{Family, ToolPolicy};

/// How long a wrapper waits for the gate's answer to its registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// The tools whose scripts run through the hook: npm's and pnpm's.
const HOOKED: &[&str] = &["npm", "npx", "pnpm", "pnpx", "pnx"];

/// Whether the tool of `policy` runs its scripts through the hook, so
/// that its scripts' wrappers may register with its gate.
pub(super) fn hooked(policy: &ToolPolicy) -> bool {
    policy.family == Family::Node && HOOKED.contains(&policy.name)
}

/// The variables that make cli-guard (`exe`) the script shell of a tool of
/// `policy`, remembering the user's own; none for a tool without the hook.
pub(super) fn script_hook_env(
    policy: &ToolPolicy,
    exe: &OsStr,
    env: &BTreeMap<OsString, OsString>,
) -> Vec<(OsString, OsString)> {
    if !hooked(policy) {
        return Vec::new();
    }
    // Never cli-guard itself: that would be a loop.
    let user_shell = ["pnpm_config_script_shell", "npm_config_script_shell"]
        .iter()
        .find_map(|k| env.get(OsStr::new(k)))
        .filter(|s| s.as_os_str() != exe)
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let (key, value) = Hook::Script { shell: user_shell }.var();
    let mut out = vec![
        (OsString::from("npm_config_script_shell"), exe.to_os_string()),
        (OsString::from("pnpm_config_script_shell"), exe.to_os_string()),
    ];
    out.extend(value.map(|v| (key, v)));
    out
}

/// Wraps this process, about to become a script's shell: a user namespace
/// of its own, registered with the gate, and nothing inherited past stdio.
/// Never fails the script: what could not be done leaves it unnamed.
pub(crate) fn wrap(env: &Env) {
    if crate::sys::procfs::enter_own_user_namespace().is_ok() {
        register(env);
    }
    crate::sys::procfs::close_on_exec_above_stdio();
}

/// Asks the gate (the proxy in this environment, with its credential) to
/// register this process's user namespace; the gate reads the rest from
/// /proc. The answer does not matter here: refused, the script is unnamed.
fn register(env: &Env) {
    let Some((proxy, authorization)) = crate::gate::upstream_of(env) else {
        return;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&proxy, REGISTER_TIMEOUT) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(REGISTER_TIMEOUT));
    let target = crate::who::REGISTER_TARGET;
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {authorization}\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = [0u8; 64];
        let _ = stream.read(&mut answer);
    }
}

/// What `CLI_GUARD_EXEC_HOOK` tells cli-guard run as npm's script shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub(super) enum Hook {
    /// At the `npx` event, write the report and run nothing.
    Fetch { report: String, shell: Option<String> },
    /// At the `npx` event, remove `unset` and the hook from the
    /// environment (and give the user's script shell back), then run it.
    Run {
        unset: Vec<String>,
        shell: Option<String>,
    },
    /// An invocation's lifecycle scripts: each becomes `shell` (the user's
    /// script shell, else `sh`) once it is wrapped.
    Script { shell: Option<String> },
}

impl Hook {
    pub(super) fn var(&self) -> (OsString, Option<OsString>) {
        // Plain strings always serialise.
        let value = serde_json::to_string(self).unwrap_or_default();
        (OsString::from(EXEC_HOOK_VAR), Some(OsString::from(value)))
    }

    fn shell(&self) -> Option<&str> {
        match self {
            Hook::Fetch { shell, .. } | Hook::Run { shell, .. } | Hook::Script { shell } => shell.as_deref(),
        }
    }
}

/// What the fetch's hook reports at the `npx` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct NpmReport {
    /// The PATH npm made for the program: what it installed comes first.
    pub(super) path: String,
    /// The command line npm was about to run.
    pub(super) script: String,
}

/// cli-guard run by npm as its script shell (`cli-guard -c SCRIPT`, with
/// `CLI_GUARD_EXEC_HOOK` set by a fetch-and-run phase): `None` when this is
/// not that, so the caller goes on as `cli-guard`. Otherwise it becomes the
/// shell (returning only if that fails); in the fetch, at the program, it
/// reports where npm put it and exits 0 instead.
pub(crate) fn exec_hook(args: &[OsString], env: &Env) -> Option<Result<Exit, Failure>> {
    let marker = env.var(EXEC_HOOK_VAR)?;
    if args.first().map(OsString::as_os_str) != Some(OsStr::new("-c")) {
        return None;
    }
    // An unreadable marker: be the plain shell, as npm would have run.
    let hook: Option<Hook> = serde_json::from_str(marker).ok();
    let program = env.var("npm_lifecycle_event") == Some("npx");
    let shell = hook.as_ref().and_then(Hook::shell).unwrap_or("sh").to_string();
    // Every script but the program a fetch and run asked for is package
    // code (or the project's): wrapped before any of it runs.
    if !program {
        wrap(env);
    }
    let mut sh = std::process::Command::new(&shell);
    sh.args(args);
    match hook {
        Some(Hook::Fetch { report, .. }) if program => {
            let report_of = NpmReport {
                path: env.var("PATH").unwrap_or_default().to_string(),
                script: args
                    .get(1)
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            // Unwritten, the run phase cannot name the package: its row
            // says so. Never the program here, whatever happens.
            let _ = write_new(Path::new(&report), &report_of);
            return Some(Ok(Exit::SUCCESS));
        }
        Some(Hook::Run { unset, shell }) if program => {
            for key in unset {
                sh.env_remove(key);
            }
            sh.env_remove(EXEC_HOOK_VAR);
            match shell {
                Some(shell) => sh.env("npm_config_script_shell", shell),
                None => sh.env_remove("npm_config_script_shell"),
            };
        }
        _ => {}
    }
    let e = sh.exec();
    Some(Err(Failure::new(
        NOT_FOUND,
        anyhow::anyhow!("cannot run npm's script shell {shell}: {e}"),
    )))
}

/// A guarded tool started under a fetch phase (by an install script) gets
/// neither the hook nor cli-guard as npm's script shell: the user's own
/// script shell, if any, is back. Pure.
pub(super) fn undo_hook(env: &mut BTreeMap<OsString, OsString>) {
    let Some(marker) = env.remove(OsStr::new(EXEC_HOOK_VAR)) else {
        return;
    };
    let hook: Option<Hook> = marker.to_str().and_then(|m| serde_json::from_str(m).ok());
    for key in ["npm_config_script_shell", "pnpm_config_script_shell"] {
        match hook.as_ref().and_then(Hook::shell) {
            Some(shell) => env.insert(key.into(), shell.into()),
            None => env.remove(OsStr::new(key)),
        };
    }
}

/// Writes `report` as JSON to a file that must not exist yet.
fn write_new(path: &Path, report: &NpmReport) -> std::io::Result<()> {
    use std::io::Write;
    let json = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_marker_round_trips_and_is_undone_for_nested_tools() {
        let hook = Hook::Run {
            unset: vec!["npm_config_offline".into()],
            shell: Some("/bin/bash".into()),
        };
        let (key, value) = hook.var();
        let value = value.unwrap();
        assert_eq!(
            serde_json::from_str::<Hook>(value.to_str().unwrap()).unwrap(),
            hook
        );
        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        env.insert(key.clone(), value);
        env.insert("npm_config_script_shell".into(), "/opt/cli-guard".into());
        undo_hook(&mut env);
        assert_eq!(env.get(OsStr::new(EXEC_HOOK_VAR)), None);
        assert_eq!(
            env.get(OsStr::new("npm_config_script_shell"))
                .map(OsString::as_os_str),
            Some(OsStr::new("/bin/bash"))
        );
        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        env.insert(key, r#"{"phase":"fetch","report":"/r","shell":null}"#.into());
        env.insert("npm_config_script_shell".into(), "/opt/cli-guard".into());
        undo_hook(&mut env);
        assert!(env.is_empty(), "{env:?}");
        // Without a marker, nothing is touched.
        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        env.insert("npm_config_script_shell".into(), "/bin/zsh".into());
        undo_hook(&mut env);
        assert_eq!(env.len(), 1);
    }

    #[test]
    fn npm_and_pnpm_get_the_hook_with_the_users_shell_remembered() {
        let npm = crate::policy::lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        env.insert("npm_config_script_shell".into(), "/bin/bash".into());
        let vars: BTreeMap<OsString, OsString> = script_hook_env(npm, OsStr::new("/opt/cli-guard"), &env)
            .into_iter()
            .collect();
        assert_eq!(
            vars.get(OsStr::new("npm_config_script_shell")),
            Some(&OsString::from("/opt/cli-guard"))
        );
        assert_eq!(
            vars.get(OsStr::new("pnpm_config_script_shell")),
            Some(&OsString::from("/opt/cli-guard"))
        );
        let hook = vars
            .get(OsStr::new(EXEC_HOOK_VAR))
            .and_then(|v| v.to_str())
            .unwrap_or("");
        assert_eq!(
            serde_json::from_str::<Hook>(hook).ok(),
            Some(Hook::Script {
                shell: Some("/bin/bash".into())
            })
        );
        for other in ["pip", "cargo", "yarn", "aws"] {
            let policy = crate::policy::lookup(other).unwrap_or_else(|| panic!("{other} is pinned"));
            assert!(
                script_hook_env(policy, OsStr::new("/x"), &env).is_empty(),
                "{other}"
            );
        }
    }
}
