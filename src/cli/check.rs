//! `cli-guard check`: the gate's decision for one target, without dialling.

use std::ffi::OsString;

use super::args::{self, AsOrValue, Parsed, Usage};
use crate::exit::{Exit, Failure, CHECK_DENIED};
use crate::policy::authority::parse_authority;
use crate::policy::{Acting, Decision, ToolPolicy};

const USAGE: Usage = Usage {
    command: "check",
    next_step: "usage: cli-guard check --as TOOL [--package NAME] HOST[:PORT]; see cli-guard check --help",
};

pub(super) const CHECK_HELP: &str = "\
usage: cli-guard check --as TOOL [--package NAME] HOST[:PORT]

Prints the decision the gate would make for a CONNECT to HOST:PORT (port 443
if not given) under TOOL's pinned policy, and the rule that makes it, without
dialling. A real dial also checks where the name resolves (loopback, private
and link-local addresses are refused in enforce mode).

--package NAME answers for the code of the registry's own package NAME (its
install or build script) rather than for TOOL itself: its pinned entry, if it
has one (cli-guard policy lists them), else nothing.

exit: 0 allow, 1 deny, 2 usage error.
";

/// Parsed `cli-guard check` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CheckArgs {
    /// The policy of `--as TOOL`.
    pub policy: &'static ToolPolicy,
    /// HOST[:PORT] as given; not yet parsed, since a bad one is a deny.
    pub target: String,
    /// `--package NAME`: judge as that package's own code.
    pub package: Option<String>,
}

/// Reads `--as TOOL HOST[:PORT]`: exactly one target.
pub(super) fn parse_check_args(args: &[OsString]) -> Result<Parsed<CheckArgs>, Failure> {
    let mut parser = args::parser(args);
    let mut tool = None;
    let mut target = None;
    let mut package = None;
    loop {
        let arg = match USAGE.next(&mut parser)? {
            None => break,
            Some(lexopt::Arg::Long("package")) => {
                package = Some(USAGE.string_value(&mut parser)?);
                continue;
            }
            Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help")) => AsOrValue::Help,
            Some(lexopt::Arg::Long("as")) => AsOrValue::As(USAGE.string_value(&mut parser)?),
            Some(lexopt::Arg::Value(value)) => AsOrValue::Value(value),
            Some(other) => return Err(USAGE.lexopt(other.unexpected())),
        };
        match arg {
            AsOrValue::Help => return Ok(Parsed::Help),
            AsOrValue::As(name) => tool = Some(name),
            AsOrValue::Value(value) if target.is_none() => target = Some(USAGE.utf8(value)?),
            AsOrValue::Value(extra) => {
                return Err(USAGE.error(format_args!(
                    "unexpected argument {extra:?}: one HOST[:PORT] at a time"
                )))
            }
        }
    }
    let tool = tool.ok_or_else(|| USAGE.error("--as TOOL is required"))?;
    let policy = USAGE.tool(&tool)?;
    let target = target.ok_or_else(|| USAGE.error("no HOST[:PORT] given"))?;
    Ok(Parsed::Args(CheckArgs {
        policy,
        target,
        package,
    }))
}

/// `cli-guard check --as TOOL HOST[:PORT]`.
pub(super) fn check(args: &[OsString]) -> Result<Exit, Failure> {
    let Some(CheckArgs {
        policy,
        target,
        package,
    }) = parse_check_args(args)?.or_print(CHECK_HELP, args::VERSION)
    else {
        return Ok(Exit::SUCCESS);
    };
    let tool = policy.name;
    let with_port = if target.starts_with('[') && target.ends_with(']') || !target.contains(':') {
        format!("{target}:443")
    } else {
        target.clone()
    };
    let authority = match parse_authority(&with_port) {
        Ok(authority) => authority,
        Err(e) => {
            println!("deny  {target}: not a valid target ({e}); the gate would answer 400");
            return Ok(Exit::Code(CHECK_DENIED));
        }
    };
    let acting = match &package {
        Some(name) => Acting::Package { name, verified: true },
        None => Acting::Tool,
    };
    let decision = policy.decide_as(&acting, &authority);
    let line = match &decision {
        Decision::Allowed(rule) => format!("allow {authority}: {tool}'s rule {rule} (enforce mode)"),
        Decision::Observed => format!("allow {authority}: {tool} is in observe mode: forwarded and logged"),
        Decision::NotAllowed => format!(
            "deny  {authority}: not on {tool}'s allowlist ({}); the gate would answer 403",
            policy.allowlist_summary()
        ),
        Decision::Entry(rule, entry) => format!(
            "allow {authority}: {}'s code, by the pinned entry {entry} ({rule}); honoured only for the registry's own package",
            package.as_deref().unwrap_or(entry)
        ),
        Decision::PackageCode => format!(
            "deny  {authority}: the code of package {} may not reach it: {tool}'s allowlist is for {tool} itself, \
             and no pinned package entry allows it; the gate would answer 403",
            package.as_deref().unwrap_or("?")
        ),
    };
    println!("{line}");
    Ok(if decision.is_allow() {
        Exit::SUCCESS
    } else {
        Exit::Code(CHECK_DENIED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};

    fn parse(args: &[&str]) -> Result<Parsed<CheckArgs>, Failure> {
        parse_check_args(&os(args))
    }

    fn parsed(args: &[&str]) -> CheckArgs {
        args_of(parse(args))
    }

    fn error(args: &[&str]) -> String {
        usage_text(parse(args))
    }

    #[test]
    fn as_with_a_separate_value() {
        let check = parsed(&["--as", "npm", "registry.npmjs.org"]);
        assert_eq!(check.policy.name, "npm");
        assert_eq!(check.target, "registry.npmjs.org");
    }

    #[test]
    fn as_with_equals_after_the_target() {
        let check = parsed(&["[::1]:443", "--as=aws"]);
        assert_eq!(check.policy.name, "aws");
        assert_eq!(check.target, "[::1]:443");
    }

    #[test]
    fn dashdash_ends_the_options() {
        assert_eq!(parsed(&["--as", "npm", "--", "-odd"]).target, "-odd");
    }

    #[test]
    fn help_in_either_form() {
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(parse(&["--as", "npm", "-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn exactly_one_target() {
        let text = error(&["--as", "npm", "a.example", "b.example"]);
        assert!(text.contains("unexpected argument \"b.example\""), "{text}");
        assert!(text.contains("see cli-guard check --help"), "{text}");
        assert!(
            error(&["--as", "npm"]).contains("usage: cli-guard check --as TOOL [--package NAME] HOST[:PORT]")
        );
    }

    #[test]
    fn every_error_shows_the_usage() {
        for args in [&[][..], &["--as"], &["--as", "npm"], &["x.example"], &["--bogus"]] {
            assert!(
                error(args).contains("usage: cli-guard check --as TOOL [--package NAME] HOST[:PORT]"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn as_is_required_and_needs_a_value() {
        assert!(error(&["a.example"]).contains("--as TOOL is required"));
        assert!(error(&["a.example", "--as"]).contains("--as needs a value"));
    }

    #[test]
    fn package_names_whose_code_is_asked_for() {
        let check = parsed(&["--as", "npm", "--package", "puppeteer", "storage.googleapis.com"]);
        assert_eq!(check.package.as_deref(), Some("puppeteer"));
        assert_eq!(
            parsed(&["--package=x", "--as", "npm", "h"]).package.as_deref(),
            Some("x")
        );
        assert!(error(&["--as", "npm", "h", "--package"]).contains("--package needs a value"));
    }

    #[test]
    fn unknown_option() {
        let text = error(&["--bogus"]);
        assert!(text.contains("unknown option \"--bogus\""), "{text}");
        assert!(text.contains("see cli-guard check --help"), "{text}");
    }

    #[test]
    fn unknown_tool_lists_the_known_ones() {
        assert!(error(&["--as", "nosuch", "x.example"]).contains("known: "));
    }
}
