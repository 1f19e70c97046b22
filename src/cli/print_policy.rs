//! `cli-guard policy [NAME | --names]`: prints the pinned policy table
//! (which lives in `crate::policy`), every tool or one.

use std::ffi::OsString;

use super::args::{self, Parsed, Usage};
use crate::exit::{Exit, Failure};
use crate::policy::{self, Mode, ToolPolicy};
use crate::shim;

const USAGE: Usage = Usage {
    command: "policy",
    next_step: "see cli-guard policy --help",
};

const HELP: &str = "\
usage: cli-guard policy [NAME | --names]

Prints the pinned policy: every tool, or one. --names prints only the names
that get a shim, one a line: the tools, then python and python3 (whose
`-m pip`, `-m pipx`, `-m poetry`, `-m pdm` and `-m uv` run under that tool's
policy).
";

/// What `cli-guard policy` prints.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PolicyArgs {
    /// Every tool's mode and allowlist.
    All,
    /// This one tool's.
    One(&'static ToolPolicy),
    /// `--names`: the names alone, one a line.
    Names,
}

/// Reads `[NAME | --names]`.
pub(super) fn parse_policy_args(args: &[OsString]) -> Result<Parsed<PolicyArgs>, Failure> {
    let mut parser = args::parser(args);
    let mut names = false;
    let mut tool = None;
    while let Some(arg) = USAGE.next(&mut parser)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Long("names") => names = true,
            lexopt::Arg::Value(name) if tool.is_none() => {
                let name = USAGE.utf8(name)?;
                tool = Some(USAGE.tool(&name)?);
            }
            lexopt::Arg::Value(extra) => {
                return Err(USAGE.error(format_args!("unexpected argument {extra:?}: one NAME at a time")))
            }
            other => return Err(USAGE.lexopt(other.unexpected())),
        }
    }
    Ok(Parsed::Args(match (names, tool) {
        (false, None) => PolicyArgs::All,
        (false, Some(tool)) => PolicyArgs::One(tool),
        (true, None) => PolicyArgs::Names,
        (true, Some(_)) => return Err(USAGE.error("give NAME or --names, not both")),
    }))
}

/// `cli-guard policy ...`: the pinned table, one tool a line.
pub(super) fn print_policy(args: &[OsString]) -> Result<Exit, Failure> {
    let Some(what) = parse_policy_args(args)?.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    let tools: Vec<&ToolPolicy> = match what {
        PolicyArgs::Names => {
            for name in shim::shim_names() {
                println!("{name}");
            }
            return Ok(Exit::SUCCESS);
        }
        PolicyArgs::One(tool) => vec![tool],
        PolicyArgs::All => policy::TOOLS.iter().collect(),
    };
    println!("{:<10} {:<8} ALLOWLIST", "TOOL", "MODE");
    for tool in &tools {
        for line in tool_lines(tool) {
            println!("{line}");
        }
    }
    for line in package_lines(&tools) {
        println!("{line}");
    }
    Ok(Exit::SUCCESS)
}

/// The pinned per-package entries (`policy::packages`) of the families of
/// `tools`: what a package's own code may reach, with the source of each.
fn package_lines(tools: &[&ToolPolicy]) -> Vec<String> {
    let families: Vec<policy::Family> = tools
        .iter()
        .filter(|t| t.mode == Mode::Enforce)
        .map(|t| t.family)
        .collect();
    let entries: Vec<&policy::packages::PackageEntry> = policy::packages::PACKAGES
        .iter()
        .chain(policy::packages::ANY_PACKAGE)
        .filter(|e| families.contains(&e.family))
        .collect();
    if entries.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        String::new(),
        "PACKAGE CODE: an install or build script is judged apart from its tool: nothing, but for these \
         entries, honoured for the registry's own package"
            .to_string(),
    ];
    for entry in entries {
        let rules: Vec<String> = entry.allow.iter().map(ToString::to_string).collect();
        lines.push(format!("{:<30} {}", entry.name, rules.join(", ")));
        lines.push(format!("{:<30} source: {}", "", entry.source));
    }
    lines
}

/// One tool's lines under the header: its mode and allowlist, its NO_PROXY
/// exceptions, whether it is isolated, and the subcommands that run the
/// project's own code (observed, not isolated).
fn tool_lines(tool: &ToolPolicy) -> Vec<String> {
    let row =
        |name: &str, mode: &str, text: &str| format!("{name:<10} {mode:<8} {text}").trim_end().to_string();
    let mut lines = Vec::new();
    let mode = tool.mode.to_string();
    match tool.mode {
        Mode::Enforce => lines.push(row(tool.name, &mode, &tool.allowlist_summary())),
        Mode::Observe => lines.push(row(
            tool.name,
            &mode,
            "(none: every CONNECT is forwarded and logged; never isolated)",
        )),
    }
    if !tool.no_proxy.is_empty() {
        lines.push(row(
            "",
            "",
            &format!("NO_PROXY also: {}", tool.no_proxy.join(",")),
        ));
    }
    if tool.mode == Mode::Enforce {
        lines.push(row(
            "",
            "",
            "strict (isolated in a network namespace where the kernel allows)",
        ));
        let helpers = tool.helpers();
        let mut run_by = helpers.anywhere.join(", ");
        let mut direct: Vec<&str> = helpers.direct.to_vec();
        if helpers.itself {
            direct.insert(0, "its own executable");
        }
        if !direct.is_empty() {
            run_by.push_str(&format!(
                " (and, started by {} itself: {})",
                tool.name,
                direct.join(", ")
            ));
        }
        lines.push(row(
            "",
            "",
            &format!(
                "the allowlist is {}'s own and its helpers' (the files PATH finds for {run_by}); anything else it starts is package code",
                tool.name
            ),
        ));
        let places: Vec<String> = tool.writes.iter().map(ToString::to_string).collect();
        lines.push(row(
            "",
            "",
            &format!("strict writes only: {}; the rest is read-only", places.join(", ")),
        ));
        let mut runs = tool.runs_project_code.join(", ");
        if tool.subcommand_rule.package_scripts {
            runs.push_str(", or a script of ./package.json by name");
        }
        if !runs.is_empty() {
            let observe = Mode::Observe.to_string();
            lines.push(row(
                tool.name,
                &observe,
                &format!("when running the project's code: {runs} (not isolated)"),
            ));
        }
        if let Some(line) = fetch_run_line(tool) {
            lines.push(row(tool.name, &Mode::Observe.to_string(), &line));
        }
    }
    lines
}

/// How a tool's fetch-and-run form splits (`policy::FETCH_AND_RUN`).
fn fetch_run_line(tool: &ToolPolicy) -> Option<String> {
    let form = policy::FETCH_AND_RUN.iter().find(|f| f.tool == tool.name)?;
    let words: Vec<String> = form.words.iter().map(|w| format!("`{}`", w.join(" "))).collect();
    let which = match words.is_empty() {
        true => String::new(),
        false => format!("{}: ", words.join(", ")),
    };
    Some(match form.grammar {
        policy::fetch_run::Grammar::YarnDlx => {
            format!("{which}observed whole, fetch included (yarn cannot run from what it fetched)")
        }
        _ => format!(
            "{which}when running the program it fetched (not isolated; the fetch stays enforced and strict)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{os, usage_text};

    fn parse(args: &[&str]) -> Result<Parsed<PolicyArgs>, Failure> {
        parse_policy_args(&os(args))
    }

    /// The usage error's text, which must point at the help.
    fn error(args: &[&str]) -> String {
        let text = usage_text(parse(args));
        assert!(text.contains("see cli-guard policy --help"), "{text}");
        text
    }

    #[test]
    fn no_arguments_is_every_tool() {
        assert_eq!(parse(&[]).unwrap(), Parsed::Args(PolicyArgs::All));
    }

    #[test]
    fn one_name_is_that_tool() {
        let Parsed::Args(PolicyArgs::One(tool)) = parse(&["npm"]).unwrap() else {
            panic!("not one tool");
        };
        assert_eq!(tool.name, "npm");
    }

    #[test]
    fn names_flag() {
        assert_eq!(parse(&["--names"]).unwrap(), Parsed::Args(PolicyArgs::Names));
    }

    #[test]
    fn help_in_either_form() {
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(parse(&["-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn unknown_tool_lists_the_known_ones() {
        let text = error(&["nosuch"]);
        assert!(text.contains("nosuch") && text.contains("known: "), "{text}");
    }

    #[test]
    fn unknown_option() {
        assert!(error(&["--bogus"]).contains("unknown option \"--bogus\""));
        assert!(error(&["--names=yes"]).contains("--names takes no value"));
    }

    #[test]
    fn npm_shows_the_split() {
        let npm = policy::lookup("npm").unwrap();
        let mut lines = tool_lines(npm);
        let writes = lines.remove(3);
        assert!(
            writes.starts_with("                    strict writes only: the project, temp, ~/.npm, ")
                && writes.ends_with("; the rest is read-only"),
            "{writes}"
        );
        assert_eq!(
            lines,
            [
                "npm        enforce  registry.npmjs.org:443",
                "                    strict (isolated in a network namespace where the kernel allows)",
                "                    the allowlist is npm's own and its helpers' (the files PATH finds for git, git-remote-https, git-remote-http); \
                 anything else it starts is package code",
                "npm        observe  when running the project's code: \
                 run, run-script, rum, urn, start, test, t, tst, stop, restart (not isolated)",
                "npm        observe  `exec`, `x`: when running the program it fetched (not isolated; the fetch stays enforced and strict)",
            ]
        );
    }

    #[test]
    fn yarn_and_pnpm_also_run_scripts_by_name() {
        for name in ["yarn", "pnpm"] {
            let lines = tool_lines(policy::lookup(name).unwrap());
            let last = &lines[lines.len() - 2];
            assert!(last.starts_with(&format!("{name:<10} observe  ")), "{last}");
            assert!(
                last.ends_with("or a script of ./package.json by name (not isolated)"),
                "{last}"
            );
        }
    }

    #[test]
    fn a_tool_without_runs_is_only_enforced() {
        let lines = tool_lines(policy::lookup("corepack").unwrap());
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("observe")), "{lines:?}");
    }

    #[test]
    fn fetch_and_run_tools_show_which_runs_are_observed() {
        assert_eq!(
            tool_lines(policy::lookup("npx").unwrap())[4],
            "npx        observe  when running the program it fetched (not isolated; the fetch stays enforced and strict)"
        );
        assert_eq!(
            tool_lines(policy::lookup("uv").unwrap())[5],
            "uv         observe  `tool run`: when running the program it fetched (not isolated; the fetch stays enforced and strict)"
        );
        let yarn = tool_lines(policy::lookup("yarn").unwrap());
        assert!(yarn.last().unwrap().contains("`dlx`: observed whole"), "{yarn:?}");
    }

    #[test]
    fn observe_mode_tools_are_never_isolated() {
        let lines = tool_lines(policy::lookup("aws").unwrap());
        assert_eq!(
            lines,
            [
                "aws        observe  (none: every CONNECT is forwarded and logged; never isolated)",
                "                    NO_PROXY also: 169.254.169.254,169.254.170.2,fd00:ec2::254",
            ]
        );
    }

    #[test]
    fn one_name_at_a_time() {
        assert!(error(&["npm", "pip"]).contains("unexpected argument \"pip\""));
        assert!(error(&["--names", "npm"]).contains("not both"));
    }
}
