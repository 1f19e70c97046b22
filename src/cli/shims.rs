//! `cli-guard shims`: for each pinned tool, whether PATH finds its shim
//! first, and the real binary the shim would run.

use std::ffi::{OsStr, OsString};

use super::args::{self, Parsed, Usage};
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy;
use crate::shim;

const USAGE: Usage = Usage {
    command: "shims",
    next_step: "see cli-guard shims --help",
};

const HELP: &str = "\
usage: cli-guard shims

For each pinned tool, and python and python3 (mode -m only: `-m pip` and
the like are guarded, anything else goes to the interpreter): its mode,
whether the first `NAME` on PATH is cli-guard's shim, and the real binary
the shim would run.
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
    let path_var = env.path();
    println!("{:<10} {:<8} {:<40} REAL", "TOOL", "MODE", "SHIM FIRST ON PATH");
    let tools = policy::TOOLS.iter().map(|t| (t.name, t.mode.to_string()));
    // The python names: only their `-m pip` (pipx, poetry, pdm, uv) is
    // guarded; anything else is handed to the interpreter.
    let pythons = shim::python::PYTHON_SHIMS
        .iter()
        .map(|n| (*n, "-m only".to_string()));
    for (name, mode) in tools.chain(pythons) {
        let status = shim::shim_status(OsStr::new(name), path_var);
        let first = match &status.first {
            None => "no (nothing on PATH)".to_string(),
            Some(path) if status.first_is_shim => format!("yes ({})", path.display()),
            Some(path) => format!("no: {} comes first", path.display()),
        };
        let real = status
            .real
            .map_or_else(|| "not installed".to_string(), |p| p.display().to_string());
        println!("{name:<10} {mode:<8} {first:<40} {real}");
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
