//! Which mode one invocation gets: a package manager both fetches packages
//! (enforced, and isolated where strict mode can) and runs the project's
//! own code (`npm test`, `cargo run`, `pnpm dev`: observed, not isolated,
//! so the app's own API calls through HTTPS_PROXY, a database on loopback
//! and a dev server behave as they do without the shim).
//!
//! Pure: the arguments and, only when needed, the script names of
//! ./package.json (read lazily by the caller) go in; the mode comes out.
//! Anything not positively a run is enforced, so an unknown, missing or
//! unreadable subcommand fails safe.

use std::ffi::OsString;

use crate::policy::{observe_twin, Mode, ToolPolicy};

/// How a tool's arguments name its subcommand: the first argument that is
/// not an option, skipping the values of the options listed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubcommandRule {
    /// Options before the subcommand that take the next argument as their
    /// value (`npm --prefix DIR run x`). `--opt=value` is one argument
    /// whatever the option.
    pub value_options: &'static [&'static str],
    /// Options known to stand alone (`--silent`, `--locked`). Any option in
    /// neither list may have taken the next argument as its value, so a
    /// run word after it is not trusted: the invocation stays enforced.
    pub flags: &'static [&'static str],
    /// A first argument `+toolchain` is skipped (rustup's `cargo +nightly`).
    pub toolchain: bool,
    /// A subcommand naming a script in ./package.json runs that script
    /// (yarn, pnpm) unless it is one of `builtins`.
    pub package_scripts: bool,
    /// The tool's own subcommands, which a same-named script never shadows
    /// (`pnpm install` installs even with an `install` script).
    pub builtins: &'static [&'static str],
}

impl SubcommandRule {
    /// Options never take a separate value; no scripts.
    pub const PLAIN: SubcommandRule = SubcommandRule {
        value_options: &[],
        flags: &[],
        toolchain: false,
        package_scripts: false,
        builtins: &[],
    };
}

/// The mode one invocation gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvocationPolicy {
    /// The subcommand as found (`test`, a script name, `install`), if any.
    pub subcommand: Option<String>,
    pub mode: Mode,
    /// Whether strict mode may isolate it: enforced invocations only.
    pub strict: bool,
    /// One line for the start row and messages.
    pub why: &'static str,
    /// The policy the gate decides by: the tool's own, or for a run its
    /// observe-mode twin (same name, family and NO_PROXY; no allowlist).
    pub policy: &'static ToolPolicy,
}

pub(super) const WHY_OBSERVE_TOOL: &str = "an observe-mode tool: forwarded and logged, never isolated";
pub(super) const WHY_RUNS_PROJECT_CODE: &str = "runs the project's own code: observed, not isolated";
pub(super) const WHY_PACKAGE_SCRIPT: &str = "names a script in ./package.json: observed, not isolated";
pub(super) const WHY_NO_SUBCOMMAND: &str = "no subcommand: enforced (fails safe)";
pub(super) const WHY_ENFORCED: &str =
    "fetches, installs, builds or is not a subcommand that runs the project's code: enforced";

/// What [`scan`] found.
pub(crate) struct Scan<'a> {
    /// The subcommand: the first argument that is not an option. `None`
    /// when there is none, when `--` comes first, or when an argument
    /// before it is not UTF-8.
    pub(crate) word: Option<&'a str>,
    /// Where the subcommand is in the arguments.
    pub(crate) at: usize,
    /// An option the rule does not know came before it: it may have taken
    /// the next argument as its value (`npm --user-agent test install`),
    /// so the word may be that value, not the subcommand.
    pub(crate) after_unknown_option: bool,
}

/// The subcommand in `args` (the tool's arguments, without argv[0]) by
/// `rule`, skipping the values of its value options.
pub(crate) fn scan<'a>(rule: &SubcommandRule, args: &'a [OsString]) -> Scan<'a> {
    let mut args = args.iter().map(|a| a.to_str()).enumerate();
    let mut first = true;
    let mut after_unknown_option = false;
    let none = |after_unknown_option| Scan {
        word: None,
        at: 0,
        after_unknown_option,
    };
    while let Some((at, arg)) = args.next() {
        let Some(arg) = arg else {
            return none(after_unknown_option);
        };
        if std::mem::take(&mut first) && rule.toolchain && arg.starts_with('+') {
            continue;
        }
        if arg == "--" {
            return none(after_unknown_option);
        }
        if arg.len() > 1 && arg.starts_with('-') {
            if rule.value_options.contains(&arg) {
                args.next();
            } else if !arg.contains('=') && !rule.flags.contains(&arg) {
                after_unknown_option = true;
            }
            continue;
        }
        return Scan {
            word: Some(arg),
            at,
            after_unknown_option,
        };
    }
    none(after_unknown_option)
}

/// The mode of `tool` run with `args`. Observe-mode tools are observed.
/// An enforce-mode tool is enforced (and strict) unless its subcommand is
/// one of `runs_project_code`, or, for yarn and pnpm, names a script that
/// `package_json_scripts` (called at most once, only then) lists.
pub(crate) fn invocation_policy(
    tool: &'static ToolPolicy,
    args: &[OsString],
    package_json_scripts: &dyn Fn() -> Option<Vec<String>>,
) -> InvocationPolicy {
    let scanned = scan(&tool.subcommand_rule, args);
    let found = scanned.word;
    let as_tool = |why| InvocationPolicy {
        subcommand: found.map(str::to_string),
        mode: tool.mode,
        strict: tool.mode == Mode::Enforce,
        why,
        policy: tool,
    };
    if tool.mode == Mode::Observe {
        return as_tool(WHY_OBSERVE_TOOL);
    }
    let Some(sub) = found else {
        return as_tool(WHY_NO_SUBCOMMAND);
    };
    // Observing instead of enforcing is the one way an argument can loosen
    // the policy, so it must be certain the word is the subcommand: after
    // an option whose arity the rule does not know, it is enforced.
    if scanned.after_unknown_option {
        return as_tool(WHY_ENFORCED);
    }
    let why = if tool.runs_project_code.contains(&sub) {
        WHY_RUNS_PROJECT_CODE
    } else if is_script(tool, sub, package_json_scripts) {
        WHY_PACKAGE_SCRIPT
    } else {
        return as_tool(WHY_ENFORCED);
    };
    match observe_twin(tool) {
        Some(twin) => InvocationPolicy {
            subcommand: Some(sub.to_string()),
            mode: Mode::Observe,
            strict: false,
            why,
            policy: twin,
        },
        // Not a pinned tool (no twin to decide by): enforced.
        None => as_tool(WHY_ENFORCED),
    }
}

/// Whether `sub` names one of ./package.json's scripts, for a tool that
/// runs scripts by name, and is not one of the tool's own subcommands.
fn is_script(tool: &ToolPolicy, sub: &str, package_json_scripts: &dyn Fn() -> Option<Vec<String>>) -> bool {
    let rule = &tool.subcommand_rule;
    rule.package_scripts
        && !rule.builtins.contains(&sub)
        && package_json_scripts().is_some_and(|names| names.iter().any(|n| n == sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lookup;
    use std::cell::Cell;

    fn tool(name: &str) -> &'static ToolPolicy {
        lookup(name).unwrap_or_else(|| panic!("{name} is pinned"))
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// The policy of `name args` in a directory whose package.json has
    /// `scripts` (None: no package.json).
    fn with_scripts(name: &str, args: &[&str], scripts: Option<&[&str]>) -> InvocationPolicy {
        let scripts = || scripts.map(|s| s.iter().map(|n| n.to_string()).collect());
        invocation_policy(tool(name), &os(args), &scripts)
    }

    fn of(name: &str, args: &[&str]) -> InvocationPolicy {
        with_scripts(name, args, None)
    }

    fn sub(name: &str, args: &[&str]) -> Option<String> {
        scan(&tool(name).subcommand_rule, &os(args))
            .word
            .map(str::to_string)
    }

    #[track_caller]
    fn assert_observed(p: &InvocationPolicy, subcommand: &str) {
        assert_eq!(p.mode, Mode::Observe, "{p:?}");
        assert!(!p.strict, "{p:?}");
        assert_eq!(p.policy.mode, Mode::Observe, "{p:?}");
        assert_eq!(p.subcommand.as_deref(), Some(subcommand), "{p:?}");
    }

    #[track_caller]
    fn assert_enforced(p: &InvocationPolicy) {
        assert_eq!(p.mode, Mode::Enforce, "{p:?}");
        assert!(p.strict, "{p:?}");
        assert_eq!(p.policy.mode, Mode::Enforce, "{p:?}");
        assert!(!p.policy.allow.is_empty(), "{p:?}");
    }

    #[test]
    fn npm_scripts_and_their_aliases_are_observed() {
        let scripts = ["run", "start", "test", "stop", "restart"];
        let aliases = ["run-script", "rum", "urn", "t", "tst"];
        for word in scripts.into_iter().chain(aliases) {
            let p = of("npm", &[word, "x"]);
            assert_observed(&p, word);
            assert_eq!(p.why, WHY_RUNS_PROJECT_CODE);
        }
    }

    #[test]
    fn npm_fetching_installing_and_exec_are_enforced() {
        for word in [
            "install",
            "i",
            "ci",
            "add",
            "update",
            "rebuild",
            "exec",
            "init",
            "create",
            "install-test",
            "it",
        ] {
            let p = of("npm", &[word]);
            assert_enforced(&p);
            assert_eq!(p.subcommand.as_deref(), Some(word));
            assert_eq!(p.why, WHY_ENFORCED);
        }
    }

    #[test]
    fn no_arguments_fails_safe() {
        for name in ["npm", "yarn", "pnpm", "cargo", "uv"] {
            let p = with_scripts(name, &[], Some(&["dev"]));
            assert_enforced(&p);
            assert_eq!(p.subcommand, None);
            assert_eq!(p.why, WHY_NO_SUBCOMMAND);
        }
    }

    #[test]
    fn only_options_fails_safe() {
        let p = of("npm", &["--silent", "--prefix", "run"]);
        assert_enforced(&p);
        assert_eq!(p.subcommand, None);
        assert_eq!(of("cargo", &["--version"]).subcommand, None);
        assert_enforced(&of("cargo", &["+nightly"]));
    }

    #[test]
    fn double_dash_first_fails_safe() {
        assert_enforced(&of("npm", &["--", "test"]));
        assert_enforced(&of("cargo", &["--", "run"]));
        assert_enforced(&with_scripts("yarn", &["--", "dev"], Some(&["dev"])));
        assert_eq!(sub("npm", &["--silent", "--", "run"]), None);
    }

    #[test]
    fn unknown_subcommand_is_enforced() {
        assert_enforced(&of("npm", &["frobnicate"]));
        assert_enforced(&of("cargo", &["xtask"]));
        assert_enforced(&of("uv", &["tool", "run", "x"]));
    }

    #[test]
    fn a_non_utf8_argument_before_the_subcommand_fails_safe() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![OsString::from_vec(vec![0xff]), OsString::from("test")];
        let p = invocation_policy(tool("npm"), &args, &|| None);
        assert_enforced(&p);
        assert_eq!(p.subcommand, None);
    }

    #[test]
    fn npm_options_before_the_subcommand_are_skipped() {
        assert_observed(&of("npm", &["--silent", "run", "x"]), "run");
        assert_observed(&of("npm", &["--prefix", "app", "test"]), "test");
        assert_observed(&of("npm", &["-C", "app", "start"]), "start");
        assert_observed(&of("npm", &["--prefix=app", "test"]), "test");
        assert_observed(&of("npm", &["-w", "pkg", "run", "build"]), "run");
        // The value of --prefix is not the subcommand.
        assert_enforced(&of("npm", &["--prefix", "test", "install"]));
        assert_eq!(sub("npm", &["--loglevel", "silly", "ci"]).as_deref(), Some("ci"));
    }

    #[test]
    fn a_run_word_after_an_option_of_unknown_arity_stays_enforced() {
        // Its value could be the word: `--user-agent test install` installs.
        assert_enforced(&of("npm", &["--user-agent", "test", "install"]));
        assert_enforced(&of("npm", &["--heading", "t", "install", "evil"]));
        assert_enforced(&with_scripts(
            "pnpm",
            &["--modules-dir", "dev", "add", "x"],
            Some(&["dev"]),
        ));
        // Known flags and `--opt=value` are fine.
        assert_observed(&of("npm", &["--silent", "test"]), "test");
        assert_observed(&of("npm", &["--user-agent=x", "test"]), "test");
    }

    #[test]
    fn npx_is_always_enforced() {
        for args in [&["test"][..], &["run"], &["-p", "cowsay", "cowsay"], &[]] {
            assert_enforced(&with_scripts("npx", args, Some(&["test", "run", "cowsay"])));
        }
        assert_eq!(
            sub("npx", &["-p", "cowsay", "cowsay", "hi"]).as_deref(),
            Some("cowsay")
        );
    }

    #[test]
    fn cargo_run_test_bench_and_aliases_are_observed() {
        for word in ["run", "r", "test", "t", "bench"] {
            assert_observed(&of("cargo", &[word]), word);
        }
    }

    #[test]
    fn cargo_build_and_fetching_are_enforced() {
        for word in [
            "build", "b", "check", "c", "fetch", "install", "update", "vendor", "doc",
        ] {
            assert_enforced(&of("cargo", &[word]));
        }
    }

    #[test]
    fn cargo_toolchain_and_global_options_are_skipped() {
        assert_observed(&of("cargo", &["+nightly", "test"]), "test");
        assert_observed(&of("cargo", &["--locked", "test"]), "test");
        assert_observed(
            &of("cargo", &["+stable", "-C", "crate", "--config", "k=v", "run"]),
            "run",
        );
        assert_enforced(&of("cargo", &["+nightly", "build"]));
        // Only a first argument is a toolchain.
        assert_eq!(
            sub("cargo", &["-q", "+nightly", "test"]).as_deref(),
            Some("+nightly")
        );
        assert_eq!(sub("npm", &["+x", "test"]).as_deref(), Some("+x"));
    }

    #[test]
    fn pip_is_always_enforced() {
        for name in ["pip", "pip3"] {
            for word in ["install", "download", "wheel", "list", "run", "test"] {
                assert_enforced(&of(name, &[word]));
            }
        }
        assert_eq!(
            sub("pip", &["--proxy", "http://p", "install", "x"]).as_deref(),
            Some("install")
        );
    }

    #[test]
    fn uv_run_is_observed_and_the_rest_enforced() {
        assert_observed(&of("uv", &["run", "pytest"]), "run");
        assert_observed(&of("uv", &["--directory", "app", "run", "x"]), "run");
        for word in ["sync", "pip", "add", "lock", "tool", "venv"] {
            assert_enforced(&of("uv", &[word]));
        }
    }

    #[test]
    fn the_new_tools_split_as_pinned() {
        assert_observed(&with_scripts("bun", &["dev"], Some(&["dev"])), "dev");
        assert_observed(&of("bun", &["--cwd", "app", "test"]), "test");
        assert_enforced(&with_scripts("bun", &["install"], Some(&["install"])));
        assert_enforced(&of("bun", &["index.ts"]));
        for (name, word) in [
            ("deno", "task"),
            ("poetry", "run"),
            ("pdm", "run"),
            ("hatch", "test"),
            ("dotnet", "run"),
            ("conda", "run"),
            ("pixi", "run"),
        ] {
            assert_observed(&of(name, &[word, "x"]), word);
        }
        for (name, args) in [
            ("mvn", &["test"][..]),
            ("gradle", &["run"]),
            ("gradle", &["test"]),
            ("dotnet", &["restore"]),
            ("deno", &["install"]),
            ("poetry", &["install"]),
            ("bunx", &["run"]),
            ("uvx", &["run"]),
            ("pipx", &["run", "x"]),
            ("pnpx", &["test"]),
        ] {
            assert_enforced(&with_scripts(name, args, Some(&["test", "run"])));
        }
    }

    #[test]
    fn yarn_and_pnpm_run_a_package_json_script_by_name() {
        for name in ["yarn", "pnpm"] {
            let p = with_scripts(name, &["dev"], Some(&["dev", "lint"]));
            assert_observed(&p, "dev");
            assert_eq!(p.why, WHY_PACKAGE_SCRIPT);
            assert_observed(&with_scripts(name, &["run", "dev"], Some(&["dev"])), "run");
            assert_observed(&with_scripts(name, &["test"], None), "test");
        }
        assert_observed(
            &with_scripts("pnpm", &["-C", "app", "--filter", "web", "dev"], Some(&["dev"])),
            "dev",
        );
        assert_observed(&with_scripts("pnpm", &["-r", "-w", "dev"], Some(&["dev"])), "dev");
        assert_observed(
            &with_scripts("yarn", &["--cwd", "app", "dev"], Some(&["dev"])),
            "dev",
        );
    }

    #[test]
    fn yarn_and_pnpm_words_that_are_no_script_are_enforced() {
        for name in ["yarn", "pnpm"] {
            assert_enforced(&with_scripts(name, &["dev"], Some(&["lint"])));
            assert_enforced(&with_scripts(name, &["dev"], None));
            assert_enforced(&with_scripts(name, &["dev"], Some(&[])));
        }
    }

    #[test]
    fn a_script_never_shadows_a_builtin() {
        let scripts: &[&str] = &["install", "add", "dlx", "exec", "create", "i", "up"];
        for word in ["install", "add", "dlx", "exec", "create"] {
            assert_enforced(&with_scripts("pnpm", &[word], Some(scripts)));
            assert_enforced(&with_scripts("yarn", &[word], Some(scripts)));
        }
        assert_enforced(&with_scripts("pnpm", &["i"], Some(scripts)));
        assert_enforced(&with_scripts("yarn", &["up"], Some(scripts)));
    }

    #[test]
    fn npm_and_cargo_never_read_scripts() {
        let read = Cell::new(false);
        let scripts = || {
            read.set(true);
            Some(vec!["dev".to_string()])
        };
        assert_enforced(&invocation_policy(tool("npm"), &os(&["dev"]), &scripts));
        assert_enforced(&invocation_policy(tool("cargo"), &os(&["dev"]), &scripts));
        assert!(!read.get(), "only yarn and pnpm run scripts by name");
    }

    #[test]
    fn package_json_is_read_only_for_an_unknown_word() {
        let reads = Cell::new(0);
        let scripts = || {
            reads.set(reads.get() + 1);
            Some(vec!["dev".to_string()])
        };
        for args in [&["run", "dev"][..], &["install"], &["test"], &[]] {
            invocation_policy(tool("pnpm"), &os(args), &scripts);
        }
        assert_eq!(reads.get(), 0);
        invocation_policy(tool("yarn"), &os(&["dev"]), &scripts);
        assert_eq!(reads.get(), 1);
    }

    #[test]
    fn observe_mode_tools_are_observed_and_never_strict() {
        for (name, args) in [
            ("aws", &["s3", "ls"][..]),
            ("kubectl", &["get", "pods"]),
            ("gh", &[]),
        ] {
            let p = of(name, args);
            assert_eq!(p.mode, Mode::Observe);
            assert!(!p.strict);
            assert!(std::ptr::eq(p.policy, tool(name)));
            assert_eq!(p.why, WHY_OBSERVE_TOOL);
        }
        assert_eq!(
            sub("aws", &["--region", "eu-west-1", "s3", "ls"]).as_deref(),
            Some("s3")
        );
    }

    #[test]
    fn enforced_invocations_use_the_pinned_policy_itself() {
        let p = of("npm", &["install"]);
        assert!(std::ptr::eq(p.policy, tool("npm")));
    }

    #[test]
    fn a_run_is_decided_by_the_tools_observe_twin() {
        let p = of("npm", &["test"]);
        let npm = tool("npm");
        assert_eq!(p.policy.name, "npm");
        assert_eq!(p.policy.family, npm.family);
        assert_eq!(p.policy.no_proxy, npm.no_proxy);
        assert!(p.policy.allow.is_empty());
        let target = crate::policy::authority::parse_authority("api.example.com:443")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.policy.decide(&target), crate::policy::Decision::Observed);
        assert_eq!(npm.decide(&target), crate::policy::Decision::NotAllowed);
    }
}
