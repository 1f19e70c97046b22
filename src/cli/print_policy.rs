//! `cli-guard policy [NAME | --names]`: prints the pinned policy table
//! (which lives in `crate::policy`), every tool or one.

use std::ffi::OsString;

use super::args::{self, Parsed, Usage};
use crate::exit::{Exit, Failure};
use crate::policy::{self, Mode, ToolPolicy};

const USAGE: Usage = Usage {
    command: "policy",
    next_step: "see cli-guard policy --help",
};

const HELP: &str = "\
usage: cli-guard policy [NAME | --names]

Prints the pinned policy: every tool, or one. --names prints only the tool
names, one a line.
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
            for name in policy::tool_names() {
                println!("{name}");
            }
            return Ok(Exit::SUCCESS);
        }
        PolicyArgs::One(tool) => vec![tool],
        PolicyArgs::All => policy::TOOLS.iter().collect(),
    };
    println!("{:<10} {:<8} ALLOWLIST", "TOOL", "MODE");
    for tool in tools {
        let allow = match tool.mode {
            Mode::Enforce => tool.allowlist_summary(),
            Mode::Observe => "(none: every CONNECT is forwarded and logged)".to_string(),
        };
        println!("{:<10} {:<8} {allow}", tool.name, tool.mode.to_string());
        if !tool.no_proxy.is_empty() {
            println!("{:<10} {:<8} NO_PROXY also: {}", "", "", tool.no_proxy.join(","));
        }
    }
    Ok(Exit::SUCCESS)
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
    fn one_name_at_a_time() {
        assert!(error(&["npm", "pip"]).contains("unexpected argument \"pip\""));
        assert!(error(&["--names", "npm"]).contains("not both"));
    }
}
