//! Every environment variable cli-guard reads, read once at start into one
//! [`Env`] that is passed down (rustup's `process().var()` idea): no other
//! module calls `std::env::var`, and tests build an `Env` from pairs.
//!
//! The names of cli-guard's own variables live here too, so that the gate
//! and the shim share them without importing each other.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Carries the audit ID to the child; set, it also marks a nested
/// invocation (the gate then routes everything through the outer one).
pub(crate) const AUDIT_ID_VAR: &str = "CLI_GUARD_AUDIT_ID";
/// How many guarded invocations deep this one is.
pub(crate) const DEPTH_VAR: &str = "CLI_GUARD_DEPTH";
/// `dev:ino` of the file a shim is about to run as the real tool: if that
/// file turns out to be cli-guard itself (a copied shim), hand through.
pub(crate) const REAL_TOOL_VAR: &str = "CLI_GUARD_REAL_TOOL";
/// `dev:ino,…` of every cli-guard binary above this one: never taken for a
/// real tool, whichever copy of cli-guard finds it.
pub(crate) const SKIP_VAR: &str = "CLI_GUARD_SKIP";
/// `exec|spawn PID HASH DEV:INO,…`: the interpreters a python shim handed a
/// command line to, for the one that finds it coming back unchanged
/// (`src/shim/python.rs`: a version manager's shim in front of the system
/// python finds the python shim again); never taken again for it.
pub(crate) const PYTHON_HOPS_VAR: &str = "CLI_GUARD_PYTHON_HOPS";
/// `SHELL PID`, exported by the code `cli-guard init` prints: the shell
/// that loaded it. Read by `doctor` and `shims` only.
pub(crate) const SHELL_INIT_VAR: &str = "CLI_GUARD_SHELL_INIT";
/// The audit log's path.
pub(crate) const AUDIT_LOG_VAR: &str = "CLI_GUARD_AUDIT_LOG";
/// Where rows are shipped (`crate::ship::config`), when the operator's
/// file does not say.
pub(crate) const SHIP_VAR: &str = "CLI_GUARD_SHIP";
/// `host:port=ip:port,…`: where an allowed name is dialled (for tests).
pub(crate) const RESOLVE_VAR: &str = "CLI_GUARD_RESOLVE";

/// `auto` (the default), `require` or `off`: whether an enforce-mode
/// invocation runs in a network namespace whose only way out is the gate.
pub(crate) const STRICT_VAR: &str = "CLI_GUARD_STRICT";
/// Which of strict mode's layers beyond the network namespace to make
/// (`mounts,pid,seccomp`, `none`; unset: all), for measuring each one's
/// cost and for finding which one a tool trips over. It can only take
/// layers away, as `CLI_GUARD_STRICT=off` takes strict mode away; the
/// start row says which are off and that this said so.
pub(crate) const STRICT_LAYERS_VAR: &str = "CLI_GUARD_STRICT_LAYERS";
/// Set for a tool that runs in a strict invocation's namespace, so that a
/// guarded tool it starts knows its gate is already the only way out.
pub(crate) const NETNS_VAR: &str = "CLI_GUARD_NETNS";
/// Set by a fetch-and-run phase of npm's for cli-guard run as npm's script
/// shell (`shim::fetch_run`): what to do at the program (report where npm
/// put it; or clean the environment and run it). Removed for every guarded
/// tool started below it.
pub(crate) const EXEC_HOOK_VAR: &str = "CLI_GUARD_EXEC_HOOK";

/// PATH when the environment has none (glibc's default for execvp). The
/// shim and `cli-guard shims` both use it, so they agree on what runs.
pub(crate) const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The proxy variables that apply to a CONNECT (HTTPS) request, in the order
/// clients consult them (lowercase first, as curl, pip and botocore do).
pub(crate) const PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// NO_PROXY, lowercase first, as for [`PROXY_VARS`].
pub(crate) const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// The process's environment as cli-guard uses it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// Every variable, as inherited: the base of the child's environment.
    vars: Vec<(OsString, OsString)>,
}

impl Env {
    /// Reads this process's environment, once.
    pub(crate) fn from_process() -> Env {
        Env::from_pairs(std::env::vars_os())
    }

    /// An environment made of these pairs (tests; the demo's own).
    pub(crate) fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Env
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        Env {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// This environment with `key` set to `value` (replacing it if set).
    pub(crate) fn with(&self, key: &str, value: impl Into<OsString>) -> Env {
        let mut vars: Vec<(OsString, OsString)> =
            self.vars.iter().filter(|(k, _)| k != key).cloned().collect();
        vars.push((OsString::from(key), value.into()));
        Env { vars }
    }

    /// A variable's raw value (the first, as getenv returns, if a variable
    /// appears twice).
    pub(crate) fn var_os(&self, key: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    /// A variable as UTF-8; `None` if unset or not UTF-8.
    pub(crate) fn var(&self, key: &str) -> Option<&str> {
        self.var_os(key).and_then(OsStr::to_str)
    }

    /// A variable that is set and not empty.
    fn non_empty(&self, key: &str) -> Option<&str> {
        self.var(key).filter(|v| !v.is_empty())
    }

    /// Every variable, for the child's environment.
    pub(crate) fn vars(&self) -> impl Iterator<Item = (OsString, OsString)> + '_ {
        self.vars.iter().cloned()
    }

    /// PATH, or [`DEFAULT_PATH`] when unset.
    pub(crate) fn path(&self) -> &OsStr {
        self.var_os("PATH").unwrap_or(OsStr::new(DEFAULT_PATH))
    }

    /// The enclosing invocation's audit ID, if this one is nested.
    pub(crate) fn parent_audit_id(&self) -> Option<&str> {
        self.non_empty(AUDIT_ID_VAR)
    }

    /// How deep the enclosing invocations go (0 at the top).
    pub(crate) fn depth(&self) -> u32 {
        self.var(DEPTH_VAR)
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(0)
    }

    /// `CLI_GUARD_SKIP`, empty when unset.
    pub(crate) fn skip(&self) -> &str {
        self.var(SKIP_VAR).unwrap_or_default()
    }

    /// `CLI_GUARD_REAL_TOOL`.
    pub(crate) fn real_tool(&self) -> Option<&str> {
        self.var(REAL_TOOL_VAR)
    }

    /// `CLI_GUARD_RESOLVE`, empty when unset.
    pub(crate) fn resolve(&self) -> &str {
        self.var(RESOLVE_VAR).unwrap_or_default()
    }

    /// `CLI_GUARD_SHIP`, if set.
    pub(crate) fn ship(&self) -> Option<&str> {
        self.var(SHIP_VAR)
    }

    /// The shipping configuration: the operator's file, else
    /// `CLI_GUARD_SHIP`; `None` when neither says anything.
    pub(crate) fn ship_config(&self) -> Result<Option<crate::ship::ShipConfig>, String> {
        crate::ship::load(std::path::Path::new(crate::ship::SYSTEM_FILE), self.ship())
    }

    /// `CLI_GUARD_STRICT`, if set.
    pub(crate) fn strict(&self) -> Option<&str> {
        self.var(STRICT_VAR)
    }

    /// `CLI_GUARD_STRICT_LAYERS`, if set.
    pub(crate) fn strict_layers(&self) -> Option<&str> {
        self.var(STRICT_LAYERS_VAR)
    }

    /// Whether this process runs inside an enclosing strict invocation's
    /// network namespace (`CLI_GUARD_NETNS`, set by that invocation's shim).
    /// It only labels the start row: the enclosing gate holds either way.
    pub(crate) fn in_netns(&self) -> bool {
        self.var(NETNS_VAR) == Some("1") && self.parent_audit_id().is_some()
    }

    /// `GIT_CONFIG_COUNT`: how many config entries the user already passes
    /// to git through the environment.
    pub(crate) fn git_config_count(&self) -> Option<&str> {
        self.var("GIT_CONFIG_COUNT")
    }

    /// The first proxy variable that is set and not blank, with its name.
    pub(crate) fn upstream_proxy(&self) -> Option<(&'static str, &str)> {
        PROXY_VARS
            .iter()
            .find_map(|&k| self.var(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
    }

    /// NO_PROXY (lowercase first), if set.
    pub(crate) fn no_proxy(&self) -> Option<&str> {
        NO_PROXY_VARS.iter().find_map(|&k| self.var(k))
    }

    /// Whether colour is turned off (https://no-color.org: set and not empty).
    pub(crate) fn no_color(&self) -> bool {
        self.var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    }

    /// The audit log path: `$CLI_GUARD_AUDIT_LOG`, else
    /// `$XDG_STATE_HOME/cli-guard/audit.jsonl`, else
    /// `~/.local/state/cli-guard/audit.jsonl` (HOME, else the password
    /// database's home). Empty or relative state dirs are ignored, as the
    /// XDG spec says.
    pub(crate) fn audit_log_path(&self) -> Option<PathBuf> {
        let home = self.var_os("HOME").map(OsStr::to_os_string).or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir.into_os_string())
        });
        crate::audit::log_path(
            self.var_os(AUDIT_LOG_VAR).map(OsStr::to_os_string),
            self.var_os("XDG_STATE_HOME").map(OsStr::to_os_string),
            home,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_defaults_when_unset_and_is_kept_when_empty() {
        assert_eq!(Env::default().path(), OsStr::new(DEFAULT_PATH));
        assert_eq!(Env::from_pairs([("PATH", "")]).path(), OsStr::new(""));
    }

    #[test]
    fn an_empty_audit_id_is_not_nesting() {
        assert_eq!(Env::from_pairs([(AUDIT_ID_VAR, "")]).parent_audit_id(), None);
        assert_eq!(
            Env::from_pairs([(AUDIT_ID_VAR, "x")]).parent_audit_id(),
            Some("x")
        );
    }

    #[test]
    fn the_first_duplicate_wins_as_with_getenv() {
        let env = Env::from_pairs([("A", "1"), ("A", "2")]);
        assert_eq!(env.var("A"), Some("1"));
    }

    #[test]
    fn upstream_proxy_is_lowercase_first_and_skips_blanks() {
        let env = Env::from_pairs([("HTTPS_PROXY", "http://b:1"), ("https_proxy", " ")]);
        assert_eq!(env.upstream_proxy(), Some(("HTTPS_PROXY", "http://b:1")));
        let env = Env::from_pairs([("HTTPS_PROXY", "http://b:1"), ("https_proxy", "http://a:1")]);
        assert_eq!(env.upstream_proxy(), Some(("https_proxy", "http://a:1")));
    }

    #[test]
    fn depth_ignores_junk() {
        assert_eq!(Env::from_pairs([(DEPTH_VAR, "x")]).depth(), 0);
        assert_eq!(Env::from_pairs([(DEPTH_VAR, "3")]).depth(), 3);
    }
}
