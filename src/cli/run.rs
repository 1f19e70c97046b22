//! `cli-guard run --as NAME [--] CMD [ARGS...]`: any command behind the gate,
//! under a pinned tool's policy, exactly as that tool's shim would run it.

use std::ffi::OsString;
use std::path::PathBuf;

use super::args::{self, AsOrValue, Parsed, Usage};
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy::ToolPolicy;
use crate::shim::{self, Invocation, Program};

const USAGE: Usage = Usage {
    command: "run",
    next_step: "usage: cli-guard run --as NAME -- CMD [ARGS...]",
};

const HELP: &str = "\
usage: cli-guard run --as NAME -- CMD [ARGS...]

Runs CMD behind the gate exactly as NAME's shim would run the real NAME.
Options end at `--` or at CMD; everything after is CMD's, passed on as given.
";

/// Parsed `cli-guard run` arguments.
#[derive(Debug)]
pub(super) struct RunArgs {
    /// The policy of `--as NAME`.
    pub policy: &'static ToolPolicy,
    /// CMD: a name looked up on PATH, or a path if it has a `/`.
    pub command: OsString,
    /// CMD's own arguments, verbatim (options and non-UTF-8 bytes too).
    pub args: Vec<OsString>,
}

/// Reads `--as NAME [--] CMD [ARGS...]`. Option parsing stops at `--` or at
/// the first argument that is not an option: that is CMD, and the rest are
/// its own.
pub(super) fn parse_run_args(args: &[OsString]) -> Result<Parsed<RunArgs>, Failure> {
    let mut parser = args::parser(args);
    let mut name = None;
    let mut command = None;
    while let Some(arg) = USAGE.next_as_or_value(&mut parser)? {
        match arg {
            AsOrValue::Help => return Ok(Parsed::Help),
            AsOrValue::As(tool) => name = Some(tool),
            AsOrValue::Value(cmd) => {
                command = Some(cmd);
                break;
            }
        }
    }
    let name = name.ok_or_else(|| USAGE.error("--as NAME is required"))?;
    let policy = USAGE.tool(&name)?;
    let command = command.ok_or_else(|| USAGE.error("no command given"))?;
    // After a positional argument lexopt holds nothing back: the rest are raw.
    let args = parser.raw_args().map_err(|e| USAGE.lexopt(e))?.collect();
    Ok(Parsed::Args(RunArgs {
        policy,
        command,
        args,
    }))
}

/// `cli-guard run ...`.
pub(super) fn run(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let Some(RunArgs {
        policy,
        command,
        args,
    }) = parse_run_args(args)?.or_print(HELP, args::VERSION)
    else {
        return Ok(Exit::SUCCESS);
    };
    let program = if command.to_string_lossy().contains('/') {
        Program::Path(PathBuf::from(&command))
    } else {
        Program::Lookup(command.clone())
    };
    shim::run(
        Invocation {
            policy,
            argv0: command,
            args,
            program,
            as_shim: false,
            tool_args_from: 0,
            argv0_is_path: false,
        },
        env,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};

    fn parsed(args: &[&str]) -> RunArgs {
        args_of(parse_run_args(&os(args)))
    }

    fn error(args: &[&str]) -> String {
        usage_text(parse_run_args(&os(args)))
    }

    #[test]
    fn as_with_a_separate_value_and_dashdash() {
        let run = parsed(&["--as", "npm", "--", "mytool", "a b", "--c"]);
        assert_eq!(run.policy.name, "npm");
        assert_eq!(run.command, "mytool");
        assert_eq!(run.args, os(&["a b", "--c"]));
    }

    #[test]
    fn as_with_equals() {
        let run = parsed(&["--as=pip", "pip", "install"]);
        assert_eq!(run.policy.name, "pip");
        assert_eq!(run.command, "pip");
        assert_eq!(run.args, os(&["install"]));
    }

    #[test]
    fn options_stop_at_the_command_and_the_rest_are_its_own() {
        let run = parsed(&["--as", "npm", "npm", "install", "--foo", "--", "-h", "--as=x"]);
        assert_eq!(run.command, "npm");
        assert_eq!(run.args, os(&["install", "--foo", "--", "-h", "--as=x"]));
    }

    #[test]
    fn dashdash_lets_the_command_look_like_an_option() {
        let run = parsed(&["--as", "npm", "--", "--version"]);
        assert_eq!(run.command, "--version");
        assert!(run.args.is_empty());
        let run = parsed(&["--as", "npm", "--", "npm", "--version"]);
        assert_eq!(run.command, "npm");
        assert_eq!(run.args, os(&["--version"]));
    }

    #[test]
    fn the_last_as_wins() {
        assert_eq!(parsed(&["--as", "npm", "--as", "aws", "x"]).policy.name, "aws");
    }

    #[test]
    fn non_utf8_command_and_arguments_are_kept_as_bytes() {
        let odd = OsString::from_vec(vec![b'a', 0xff, b'z']);
        let dashed = OsString::from_vec(vec![b'-', b'-', 0xfe]);
        let args = vec![
            "--as".into(),
            "npm".into(),
            odd.clone(),
            dashed.clone(),
            odd.clone(),
        ];
        let Ok(Parsed::Args(run)) = parse_run_args(&args) else {
            panic!("non-UTF-8 command refused");
        };
        assert_eq!(run.command, odd);
        assert_eq!(run.args, vec![dashed, odd]);
    }

    #[test]
    fn help_in_either_form() {
        for args in [&["--help"][..], &["-h"], &["--as", "npm", "--help"]] {
            assert!(matches!(parse_run_args(&os(args)), Ok(Parsed::Help)), "{args:?}");
        }
    }

    #[test]
    fn help_after_the_command_is_the_commands() {
        assert_eq!(parsed(&["--as", "npm", "npm", "--help"]).args, os(&["--help"]));
    }

    #[test]
    fn unknown_option_shows_the_usage() {
        let text = error(&["--bogus"]);
        assert!(text.contains("unknown option \"--bogus\""), "{text}");
        assert!(text.contains("usage: cli-guard run"), "{text}");
        assert!(error(&["-x", "npm"]).contains("unknown option \"-x\""));
    }

    #[test]
    fn as_is_required() {
        for args in [&["--", "mytool"][..], &["mytool"], &[]] {
            assert!(error(args).contains("--as NAME is required"), "{args:?}");
        }
    }

    #[test]
    fn as_without_a_value() {
        let text = error(&["--as"]);
        assert!(text.contains("--as needs a value"), "{text}");
        assert!(text.contains("usage: cli-guard run"), "{text}");
    }

    #[test]
    fn as_an_unknown_tool_lists_the_known_ones() {
        assert!(error(&["--as", "frobnicate", "--", "mytool"]).contains("known: "));
    }

    #[test]
    fn no_command_given() {
        for args in [&["--as", "npm"][..], &["--as", "npm", "--"]] {
            let text = error(args);
            assert!(text.contains("no command given"), "{text}");
            assert!(text.contains("usage: cli-guard run"), "{text}");
        }
    }
}
