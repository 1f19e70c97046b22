//! What every command's argument parser shares: the outcome of a parse,
//! usage errors that say what to do next, and the `--as NAME` lookup.
//!
//! Each command parses its arguments with `lexopt` into a typed struct, as a
//! pure function the unit tests call without printing. Only the `cli-guard`
//! and `egress-demo` paths come here: a shim's arguments belong to the real
//! tool and are never parsed.

use std::ffi::OsString;
use std::fmt;

use crate::exit::{Failure, USAGE};
use crate::policy::{self, ToolPolicy};

/// `cli-guard --version`'s line.
pub(super) const VERSION: &str = concat!("cli-guard ", env!("CARGO_PKG_VERSION"));

/// What a command's arguments asked for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<T> {
    /// Do the command's work with these.
    Args(T),
    /// `--help` (or `-h`): print the command's help and succeed.
    Help,
    /// `--version`: print the version and succeed (only the commands that
    /// take it: `cli-guard` itself and `egress-demo`).
    Version,
}

impl<T> Parsed<T> {
    /// The arguments to act on, or `None` once the help or version line that
    /// was asked for instead is printed on stdout (a reader that left early,
    /// `cli-guard --help | head -1`, is no error).
    pub(super) fn or_print(self, help: &str, version: &str) -> Option<T> {
        use std::io::Write;
        let text = match self {
            Parsed::Args(args) => return Some(args),
            Parsed::Help => help.to_string(),
            Parsed::Version => format!("{version}\n"),
        };
        let _ = std::io::stdout().write_all(text.as_bytes());
        None
    }
}

/// Where a usage error is reported from, and what it tells the user to do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Usage {
    /// The prefix of each message: `audit`, `egress-demo`, ...
    pub command: &'static str,
    /// The next step, in parentheses after each message: `see cli-guard
    /// audit --help`, or the usage line itself.
    pub next_step: &'static str,
}

impl Usage {
    /// A usage error (exit 2): `COMMAND: MESSAGE (NEXT STEP)`.
    pub(super) fn error(self, message: impl fmt::Display) -> Failure {
        Failure::usage(format!("{}: {message} ({})", self.command, self.next_step))
    }

    /// A lexopt error in the words the integration tests and the help use.
    pub(super) fn lexopt(self, error: lexopt::Error) -> Failure {
        match error {
            lexopt::Error::MissingValue { option: Some(option) } => {
                self.error(format_args!("{option} needs a value"))
            }
            lexopt::Error::MissingValue { option: None } => self.error("a value is missing"),
            lexopt::Error::UnexpectedOption(option) => self.error(format_args!("unknown option {option:?}")),
            lexopt::Error::UnexpectedArgument(arg) => self.error(format_args!("unexpected argument {arg:?}")),
            lexopt::Error::UnexpectedValue { option, value } => {
                self.error(format_args!("{option} takes no value, but was given {value:?}"))
            }
            lexopt::Error::NonUnicodeValue(value) => {
                self.error(format_args!("argument {value:?} is not UTF-8"))
            }
            other @ (lexopt::Error::ParsingFailed { .. } | lexopt::Error::Custom(_)) => self.error(other),
        }
    }

    /// The next option or argument, as `lexopt` reads it.
    pub(super) fn next(self, parser: &mut lexopt::Parser) -> Result<Option<lexopt::Arg<'_>>, Failure> {
        parser.next().map_err(|e| self.lexopt(e))
    }

    /// The value of the option just seen (`--file PATH`, `--file=PATH`).
    pub(super) fn value(self, parser: &mut lexopt::Parser) -> Result<OsString, Failure> {
        parser.value().map_err(|e| self.lexopt(e))
    }

    /// The value of the option just seen, as UTF-8 (`--tool NAME`, `--as=NAME`).
    pub(super) fn string_value(self, parser: &mut lexopt::Parser) -> Result<String, Failure> {
        self.utf8(self.value(parser)?)
    }

    /// `arg` as UTF-8, or a usage error.
    pub(super) fn utf8(self, arg: OsString) -> Result<String, Failure> {
        arg.into_string()
            .map_err(|arg| self.lexopt(lexopt::Error::NonUnicodeValue(arg)))
    }

    /// The arguments of a command that takes none but `--help` (`shims`,
    /// `doctor`).
    pub(super) fn no_arguments(self, args: &[OsString]) -> Result<Parsed<()>, Failure> {
        let mut parser = parser(args);
        match self.next(&mut parser)? {
            None => Ok(Parsed::Args(())),
            Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help")) => Ok(Parsed::Help),
            Some(lexopt::Arg::Value(arg)) => {
                Err(self.error(format_args!("unexpected argument {arg:?}: it takes none")))
            }
            Some(other) => Err(self.lexopt(other.unexpected())),
        }
    }

    /// The next of the arguments `run` and `check` share: `--help`, `--as
    /// NAME`, and the first positional argument.
    pub(super) fn next_as_or_value(self, parser: &mut lexopt::Parser) -> Result<Option<AsOrValue>, Failure> {
        Ok(Some(match self.next(parser)? {
            None => return Ok(None),
            Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help")) => AsOrValue::Help,
            Some(lexopt::Arg::Long("as")) => AsOrValue::As(self.string_value(parser)?),
            Some(lexopt::Arg::Value(value)) => AsOrValue::Value(value),
            Some(other) => return Err(self.lexopt(other.unexpected())),
        }))
    }

    /// The pinned policy of the tool named by `--as NAME`, or a usage error
    /// listing the known names.
    pub(super) fn tool(self, name: &str) -> Result<&'static ToolPolicy, Failure> {
        policy::lookup(name)
            .ok_or_else(|| self.error(format_args!("unknown tool {name:?}; known: {}", known_names())))
    }
}

/// One of the arguments `run` and `check` share.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AsOrValue {
    /// `-h`, `--help`.
    Help,
    /// `--as NAME`, `--as=NAME`.
    As(String),
    /// A positional argument (or anything after `--`).
    Value(OsString),
}

/// No command was given: besides the error, the caller shows its whole help
/// on stderr, since the user has not yet seen what there is to ask for.
#[derive(Debug)]
pub(super) struct MissingCommand(pub String);

impl fmt::Display for MissingCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MissingCommand {}

impl MissingCommand {
    /// The usage error (exit 2) saying so.
    pub(super) fn failure(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, MissingCommand(message.into()))
    }

    /// Whether `failure` is this one, so the help goes with it.
    pub(super) fn is(failure: &Failure) -> bool {
        failure.code == USAGE && failure.error.is::<MissingCommand>()
    }
}

/// Every pinned tool name, comma-separated.
pub(super) fn known_names() -> String {
    policy::tool_names().collect::<Vec<_>>().join(", ")
}

/// A parser over `args`, which start after the command's own name.
pub(super) fn parser(args: &[OsString]) -> lexopt::Parser {
    lexopt::Parser::from_args(args.iter().cloned())
}

/// Helpers for the parsers' unit tests.
#[cfg(test)]
pub(super) mod testing {
    use std::ffi::OsString;
    use std::fmt::Debug;

    use super::Parsed;
    use crate::exit::{Failure, USAGE};

    /// `args` as a command line.
    pub(crate) fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// The arguments parsed, or a panic naming what came instead.
    pub(crate) fn args_of<T: Debug>(parsed: Result<Parsed<T>, Failure>) -> T {
        match parsed {
            Ok(Parsed::Args(args)) => args,
            other => panic!("not arguments: {other:?}"),
        }
    }

    /// The usage error's text, or a panic if it is no usage error.
    pub(crate) fn usage_text<T: Debug>(parsed: Result<Parsed<T>, Failure>) -> String {
        match parsed {
            Err(failure) if failure.code == USAGE => failure.to_string(),
            other => panic!("not a usage error: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT: Usage = Usage {
        command: "audit",
        next_step: "see cli-guard audit --help",
    };

    fn message(failure: Failure) -> String {
        testing::usage_text::<()>(Err(failure))
    }

    #[test]
    fn usage_error_names_the_command_and_the_next_step() {
        assert_eq!(
            message(AUDIT.error("nope")),
            "audit: nope (see cli-guard audit --help)"
        );
    }

    #[test]
    fn missing_value_names_the_option() {
        let mut p = parser(&["--tool".into()]);
        let _ = p.next();
        assert_eq!(
            message(AUDIT.string_value(&mut p).unwrap_err()),
            "audit: --tool needs a value (see cli-guard audit --help)"
        );
    }

    #[test]
    fn unknown_option_is_quoted() {
        let e = lexopt::Error::UnexpectedOption("--bogus".into());
        assert_eq!(
            message(AUDIT.lexopt(e)),
            "audit: unknown option \"--bogus\" (see cli-guard audit --help)"
        );
    }

    #[test]
    fn value_given_to_a_flag_is_refused() {
        let mut p = parser(&["--json=yes".into()]);
        assert!(matches!(p.next(), Ok(Some(lexopt::Arg::Long("json")))));
        assert!(message(AUDIT.next(&mut p).unwrap_err()).contains("--json takes no value"));
    }

    #[test]
    fn non_utf8_value_is_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let mut p = parser(&["--tool".into(), OsString::from_vec(vec![0xff])]);
        let _ = p.next();
        assert!(message(AUDIT.string_value(&mut p).unwrap_err()).contains("is not UTF-8"));
    }

    #[test]
    fn as_or_value_reads_what_run_and_check_share() {
        let mut p = parser(&testing::os(&["--as", "npm", "-h", "--as=pip", "x", "--as"]));
        let mut next = || AUDIT.next_as_or_value(&mut p);
        assert_eq!(next().unwrap(), Some(AsOrValue::As("npm".into())));
        assert_eq!(next().unwrap(), Some(AsOrValue::Help));
        assert_eq!(next().unwrap(), Some(AsOrValue::As("pip".into())));
        assert_eq!(next().unwrap(), Some(AsOrValue::Value("x".into())));
        assert!(message(next().unwrap_err()).contains("--as needs a value"));
        assert_eq!(next().unwrap(), None);
        let mut p = parser(&testing::os(&["--bogus"]));
        assert!(message(AUDIT.next_as_or_value(&mut p).unwrap_err()).contains("unknown option \"--bogus\""));
    }

    #[test]
    fn tool_lookup_lists_the_known_names() {
        assert_eq!(AUDIT.tool("npm").unwrap().name, "npm");
        let text = message(AUDIT.tool("nosuch").unwrap_err());
        assert!(text.contains("unknown tool \"nosuch\"; known: "), "{text}");
        assert!(text.contains("npm") && text.contains("aws"), "{text}");
    }

    #[test]
    fn missing_command_is_recognised() {
        assert!(MissingCommand::is(&MissingCommand::failure("missing command")));
        assert!(!MissingCommand::is(&AUDIT.error("other")));
    }
}
