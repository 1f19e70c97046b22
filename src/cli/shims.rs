//! `cli-guard shims`: for each guarded name, whether PATH finds its shim
//! first and the real binary the shim would run; under a name whose shim
//! does not come first, what comes before it, whether it is gated when
//! typed in this shell, and the fix (`coverage`).

use std::ffi::OsString;

use super::args::{self, Parsed, Usage};
use super::coverage;
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy;

const USAGE: Usage = Usage {
    command: "shims",
    next_step: "see cli-guard shims --help",
};

const HELP: &str = "\
usage: cli-guard shims

For each pinned tool, and python and python3 (mode -m only: `-m pip` and
the like are guarded, anything else goes to the interpreter): its mode,
whether the first `NAME` on PATH is cli-guard's shim, and the real binary
the shim would run. Under a name whose shim is not first: what comes before
it (an active virtualenv, nvm, volta, mise, asdf, pyenv, conda, corepack, a
project's node_modules/.bin), whether the name typed in this shell still
meets the gate (it does where `cli-guard init` is loaded), and the fix.
";

/// Reads the arguments of `cli-guard shims`: none but `--help`.
pub(super) fn parse_shims_args(args: &[OsString]) -> Result<Parsed<()>, Failure> {
    USAGE.no_arguments(args)
}

/// `cli-guard shims`.
pub(super) fn print_shims(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let Some(()) = parse_shims_args(args)?.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    let shell = coverage::Context::read(env);
    println!("{:<10} {:<8} {:<40} REAL", "TOOL", "MODE", "SHIM FIRST ON PATH");
    for report in shell.look_up(env) {
        // The python names: only their `-m pip` (pipx, poetry, pdm, uv) is
        // guarded; anything else is handed to the interpreter.
        let mode = policy::lookup(report.name).map_or_else(|| "-m only".to_string(), |t| t.mode.to_string());
        let status = &report.status;
        let first = match &status.first {
            None => "no (nothing on PATH)".to_string(),
            Some(path) if status.first_is_shim => format!("yes ({})", path.display()),
            Some(path) => format!("no: {} comes first", path.display()),
        };
        let real = status
            .real
            .as_ref()
            .map_or_else(|| "not installed".to_string(), |p| p.display().to_string());
        println!("{:<10} {mode:<8} {first:<40} {real}", report.name);
        for line in coverage::shims_detail(&shell, &report) {
            println!("{line}");
        }
    }
    Ok(Exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{os, usage_text};

    fn parse(args: &[&str]) -> Result<Parsed<()>, Failure> {
        parse_shims_args(&os(args))
    }

    /// The usage error's text, which must point at the help.
    fn error(args: &[&str]) -> String {
        let text = usage_text(parse(args));
        assert!(text.contains("see cli-guard shims --help"), "{text}");
        text
    }

    #[test]
    fn no_arguments() {
        assert_eq!(parse(&[]).unwrap(), Parsed::Args(()));
    }

    #[test]
    fn help_in_either_form() {
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(parse(&["-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn unknown_option() {
        assert!(error(&["--bogus"]).contains("unknown option \"--bogus\""));
        assert!(error(&["-x"]).contains("unknown option \"-x\""));
    }

    #[test]
    fn any_argument_is_one_too_many() {
        assert!(error(&["npm"]).contains("it takes none"));
    }
}
