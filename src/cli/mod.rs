//! Dispatch on the basename of argv[0], and the table of `cli-guard`
//! subcommands (each in a file of its own, with its own parser).
//!
//! The pinned policy table is the one list of tool names: a name in it runs
//! as a shim, `egress-demo` runs the demo, `cli-guard` takes subcommands,
//! `python`, `python3` and `pythonX.Y` run `shim::python` (`-m pip`
//! guarded, anything else the interpreter itself), and anything else is
//! refused with the list of known names. A shim never
//! parses its arguments: they are all the real tool's.

mod args;
mod audit;
mod check;
mod coverage;
mod demo;
mod doctor;
mod init;
mod layout;
mod print_policy;
mod run;
mod shims;
mod ship;

use std::ffi::{OsStr, OsString};
use std::path::Path;

use args::{MissingCommand, Parsed};

use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy;
use crate::shim::{self, Invocation, Program};

const HELP: &str = "\
cli-guard: an egress gate for command-line tools

Installed under a tool's name (npm, pip, cargo, aws, ...) in a shims directory
early on PATH, cli-guard runs the real tool behind a CONNECT proxy of its own
for that one invocation. Package managers may reach only their pinned
registries (enforce mode: anything else gets 403); cloud CLIs are forwarded
and logged (observe mode). Plaintext HTTP through the proxy is refused (405).
Every decision is an egress row in the audit log.

CONNECT-only: no TLS interception, no CA. Strict mode (Linux, rootless): an
enforce-mode tool that fetches, installs or builds runs in a network namespace
of its own whose only way out is the gate, so a client that ignores the proxy
variables is refused too; where the kernel does not allow that, it runs
behind the proxy only (`cli-guard doctor` says why). Not a sandbox otherwise:
files, secrets and local unix sockets stay reachable.

USAGE:
    npm install ...                             (any pinned tool name, via its shim)
    cli-guard run --as NAME -- CMD [ARGS...]    run CMD under NAME's policy
    cli-guard policy [NAME]                     print the pinned policy
    cli-guard policy --names                    print the tool names, one a line
    cli-guard shims                             which shims PATH finds, and what they run
    cli-guard audit [--denied] [--tool NAME] [--since 1h] [--id ID] [--last N] [--json] [--follow]
                                                the audit log, one folded entry per invocation
    cli-guard audit --suggest TOOL              a pinned allowlist entry from what TOOL reached
    cli-guard audit --verify [--log FILE]       walk the rows' hash chain: what was changed,
                                                inserted or removed, and how far it is intact
    cli-guard ship                              deliver the rows waiting for the syslog collector
    cli-guard check --as TOOL HOST[:PORT]       the gate's decision, without dialling
    cli-guard doctor                            whether strict mode works here, and the fix if not;
                                                whether this shell meets the gate for every name
    cli-guard init bash|zsh|fish                the shell code that keeps the gate in front of every
                                                guarded name (eval \"$(cli-guard init bash)\")
    cli-guard egress-demo allowed|denied|observe|strict [HOST:PORT ...]
    cli-guard --help | --version

ENVIRONMENT:
    CLI_GUARD_AUDIT_LOG   audit log path (default $XDG_STATE_HOME/cli-guard/audit.jsonl,
                          else ~/.local/state/cli-guard/audit.jsonl)
    CLI_GUARD_RESOLVE     host:port=ip:port,... where an allowed name is dialled
                          (for tests; never changes a decision)
    CLI_GUARD_STRICT      auto (default): strict mode where the kernel allows it;
                          require: else do not run the tool (125); off: never
    CLI_GUARD_SHIP        collector=tls://HOST:PORT [required=yes] [ca=FILE] [machine=NAME]:
                          ship every row to a syslog collector as it is written
                          (/etc/cli-guard/ship.conf, root's, wins when it exists)

Every command takes --help.

EXIT CODES:
    the tool's own      passed through; a death by signal is passed on as one
    0, 1                for audit: shown / the log can't be read; for check: allow / deny;
                        for doctor: strict mode works / does not
    2                   usage error
    125                 the gate could not be put in place (or CLI_GUARD_STRICT=require
                        and strict mode is not available); the tool was not run
    126                 the real tool is not executable
    127                 the real tool was not found on PATH
";

/// The `cli-guard` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Policy,
    Shims,
    Audit,
    Check,
    Doctor,
    Init,
    Ship,
    EgressDemo,
}

impl Command {
    /// Whether the command only reads and prints: no gate of its own, no
    /// tool behind one.
    fn only_prints(self) -> bool {
        match self {
            Command::Policy
            | Command::Shims
            | Command::Audit
            | Command::Check
            | Command::Doctor
            | Command::Init => true,
            Command::Run | Command::Ship | Command::EgressDemo => false,
        }
    }
}

/// A subcommand and its own arguments, still unparsed.
#[derive(Debug, PartialEq, Eq)]
struct Subcommand {
    command: Command,
    args: Vec<OsString>,
}

/// Runs whatever argv asks for.
pub fn dispatch(args: Vec<OsString>) -> Result<Exit, Failure> {
    let mut args = args.into_iter();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("cli-guard"));
    let rest: Vec<OsString> = args.collect();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("")
        .to_string();
    let env = Env::from_process();
    match name.as_str() {
        // npm's script shell in a fetch-and-run phase (`cli-guard -c …`).
        "cli-guard" => shim::exec_hook(&rest, &env).unwrap_or_else(|| cli_guard(&rest, &env)),
        "egress-demo" => demo::main(&rest, &env),
        // `python -m pip` guarded as pip; any other python run is the
        // interpreter itself, exec'd in place.
        python if shim::python::is_python_name(python) => shim::python::run(python, argv0, rest, &env),
        // A shim: every argument is the real tool's, so none is parsed here.
        _ => match policy::lookup(&name) {
            Some(policy) => shim::run(
                Invocation {
                    policy,
                    argv0,
                    args: rest,
                    program: Program::Lookup(OsString::from(&name)),
                    as_shim: true,
                    tool_args_from: 0,
                    argv0_is_path: false,
                },
                &env,
            ),
            None => Err(Failure::usage(format!(
                "unknown name {name:?}: cli-guard runs as a shim only under a tool name from its pinned policy \
                 ({}), as egress-demo, or as cli-guard. Remove or rename this link.",
                args::known_names()
            ))),
        },
    }
}

/// Reads `cli-guard`'s first argument: a subcommand (whose arguments are left
/// to it, unparsed), `--help` or `--version`.
fn parse_command(args: &[OsString]) -> Result<Parsed<Subcommand>, Failure> {
    let unknown = |word: &OsStr| {
        Failure::usage(format!(
            "unknown command {word:?}: expected run, policy, shims, audit, check, doctor, init, ship, egress-demo, \
             --help or --version{}",
            python_hint(word)
        ))
    };
    let mut parser = args::parser(args);
    let word = match parser.next() {
        Ok(None) => return Err(MissingCommand::failure("missing command (see cli-guard --help)")),
        Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => return Ok(Parsed::Help),
        Ok(Some(lexopt::Arg::Short('V') | lexopt::Arg::Long("version"))) => return Ok(Parsed::Version),
        Ok(Some(lexopt::Arg::Value(word))) => word,
        // Any other option is named as typed; the first call cannot fail,
        // as nothing is pending yet.
        Ok(Some(_)) | Err(_) => {
            return Err(unknown(args.first().map_or(OsStr::new(""), OsString::as_os_str)))
        }
    };
    let command = match word.to_str() {
        Some("help") => return Ok(Parsed::Help),
        Some("run") => Command::Run,
        Some("policy") => Command::Policy,
        Some("shims") => Command::Shims,
        Some("audit") => Command::Audit,
        Some("check") => Command::Check,
        Some("doctor") => Command::Doctor,
        Some("init") => Command::Init,
        Some("ship") => Command::Ship,
        Some("egress-demo") => Command::EgressDemo,
        _ => return Err(unknown(&word)),
    };
    // After a command word nothing is pending, so this cannot fail.
    let args = parser
        .raw_args()
        .map_err(|e| Failure::usage(format!("{e} (see cli-guard --help)")))?;
    Ok(Parsed::Args(Subcommand {
        command,
        args: args.collect(),
    }))
}

/// What to add to the usage error for a first argument that a python
/// command line starts with (`-I`, `-c`, `-Es`, …, the interpreter options
/// tools run one with): maybe something resolved a python shim's symlink
/// to this binary and ran it under its own name.
/// cli-guard does not guess which interpreter was meant; the python shims
/// install.sh makes are hard links, which resolve to themselves.
fn python_hint(word: &OsStr) -> &'static str {
    let letters = word.to_str().and_then(|w| w.strip_prefix('-')).unwrap_or("");
    let python_only = !letters.is_empty()
        && !letters.starts_with('-')
        && letters.bytes().all(|b| b"BcEImOsSuWX".contains(&b));
    if python_only {
        ". If this is a python command line, a program resolved a python shim's symlink to cli-guard and \
         ran cli-guard under its own name: run the interpreter by its own path, or use the python shims \
         install.sh makes (hard links, which resolve to themselves)"
    } else {
        ""
    }
}

/// `cli-guard ARGS...`.
fn cli_guard(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let parsed = parse_command(args).inspect_err(|failure| {
        if MissingCommand::is(failure) {
            eprint!("{HELP}");
        }
    })?;
    let Some(Subcommand { command, args }) = parsed.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    if command.only_prints() {
        // main ignores SIGPIPE, which a gate needs; a command that only
        // prints dies of it quietly like any filter when its reader leaves
        // (`cli-guard policy | head`, `cli-guard audit --follow | grep -m1`)
        // instead of failing on every later line.
        let _ = crate::sys::signal::restore_default(nix::sys::signal::Signal::SIGPIPE);
    }
    match command {
        Command::Run => run::run(&args, env),
        Command::Policy => print_policy::print_policy(&args),
        Command::Shims => shims::print_shims(&args, env),
        Command::Audit => audit::audit(&args, env),
        Command::Check => check::check(&args),
        Command::Doctor => doctor::doctor(&args, env),
        Command::Init => init::init(&args),
        Command::Ship => ship::ship(&args, env),
        Command::EgressDemo => demo::main(&args, env),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;
    use crate::cli::args::testing::{os, usage_text};

    fn parse(args: &[&str]) -> Result<Parsed<Subcommand>, Failure> {
        parse_command(&os(args))
    }

    #[test]
    fn each_command_with_its_arguments_untouched() {
        for (word, command) in [
            ("run", Command::Run),
            ("policy", Command::Policy),
            ("shims", Command::Shims),
            ("audit", Command::Audit),
            ("check", Command::Check),
            ("doctor", Command::Doctor),
            ("init", Command::Init),
            ("ship", Command::Ship),
            ("egress-demo", Command::EgressDemo),
        ] {
            assert_eq!(
                parse(&[word, "--as=x", "--", "-h"]).unwrap(),
                Parsed::Args(Subcommand {
                    command,
                    args: os(&["--as=x", "--", "-h"]),
                })
            );
        }
    }

    #[test]
    fn subcommand_arguments_may_be_non_utf8() {
        let odd = OsString::from_vec(vec![0xff]);
        let Ok(Parsed::Args(sub)) = parse_command(&["run".into(), odd.clone()]) else {
            panic!("refused");
        };
        assert_eq!(sub.args, vec![odd]);
    }

    #[test]
    fn help_and_version_in_every_form() {
        for args in [&["--help"][..], &["-h"], &["help"], &["--help", "run"]] {
            assert_eq!(parse(args).unwrap(), Parsed::Help, "{args:?}");
        }
        for args in [&["--version"][..], &["-V"]] {
            assert_eq!(parse(args).unwrap(), Parsed::Version, "{args:?}");
        }
    }

    #[test]
    fn dashdash_before_the_command_is_dropped() {
        let Ok(Parsed::Args(sub)) = parse(&["--", "run", "x"]) else {
            panic!("refused");
        };
        assert_eq!((sub.command, sub.args), (Command::Run, os(&["x"])));
    }

    #[test]
    fn missing_command_brings_the_help() {
        for args in [&[][..], &["--"]] {
            assert!(MissingCommand::is(&parse(args).unwrap_err()), "{args:?}");
            assert!(usage_text(parse(args)).contains("see cli-guard --help"));
        }
    }

    #[test]
    fn unknown_command_or_option_lists_the_commands() {
        for (args, named) in [
            (&["frobnicate"][..], "\"frobnicate\""),
            (&["--bogus"], "\"--bogus\""),
            (&["-x"], "\"-x\""),
        ] {
            let text = usage_text(parse(args));
            assert!(text.contains(named), "{text}");
            assert!(
                text.contains("expected run, policy, shims, audit, check"),
                "{text}"
            );
            assert!(!text.contains("python command line"), "{text}");
        }
    }

    #[test]
    fn a_python_command_line_under_cli_guards_name_says_what_happened() {
        for args in [
            &["-I", "-c", "1"][..],
            &["-IBs", "x.py"],
            &["-c", "print(1)"],
            &["-m", "pip"],
        ] {
            let text = usage_text(parse(args));
            assert!(text.contains(&format!("unknown command {:?}", args[0])), "{text}");
            assert!(text.contains("If this is a python command line"), "{text}");
        }
        for word in ["-h", "--version", "-z", "-x", "-", "--", "-Iz"] {
            assert_eq!(python_hint(OsStr::new(word)), "", "{word}");
        }
    }
}
