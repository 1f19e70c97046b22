//! Dispatch on the basename of argv[0], and the `cli-guard` subcommands.
//!
//! The pinned policy table is the one list of tool names: a name in it runs
//! as a shim, `egress-demo` runs the demo, `cli-guard` takes subcommands, and
//! anything else is refused with the list of known names.

mod audit;
mod check;
mod demo;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy::{self, Mode, ToolPolicy};
use crate::shim::{self, Invocation, Program};

const HELP: &str = "\
cli-guard: an egress gate for command-line tools

Installed under a tool's name (npm, pip, cargo, aws, ...) in a shims directory
early on PATH, cli-guard runs the real tool behind a CONNECT proxy of its own
for that one invocation. Package managers may reach only their pinned
registries (enforce mode: anything else gets 403); cloud CLIs are forwarded
and logged (observe mode). Plaintext HTTP through the proxy is refused (405).
Every decision is an egress row in the audit log.

CONNECT-only: no TLS interception, no CA. Not a sandbox: a process that ignores
the proxy variables is not stopped, only not helped.

USAGE:
    npm install ...                             (any pinned tool name, via its shim)
    cli-guard run --as NAME -- CMD [ARGS...]    run CMD under NAME's policy
    cli-guard policy [NAME]                     print the pinned policy
    cli-guard policy --names                    print the tool names, one a line
    cli-guard shims                             which shims PATH finds, and what they run
    cli-guard audit [--denied] [--tool NAME] [--since 1h] [--id ID] [--last N] [--json] [--follow]
                                                the audit log, one folded entry per invocation
    cli-guard audit --suggest TOOL              a pinned allowlist entry from what TOOL reached
    cli-guard check --as TOOL HOST[:PORT]       the gate's decision, without dialling
    cli-guard egress-demo allowed|denied|observe [HOST:PORT ...]
    cli-guard --help | --version

ENVIRONMENT:
    CLI_GUARD_AUDIT_LOG   audit log path (default $XDG_STATE_HOME/cli-guard/audit.jsonl,
                          else ~/.local/state/cli-guard/audit.jsonl)
    CLI_GUARD_RESOLVE     host:port=ip:port,... where an allowed name is dialled
                          (for tests; never changes a decision)

Every command takes --help.

EXIT CODES:
    the tool's own      passed through; a death by signal is passed on as one
    0, 1                for audit: shown / the log can't be read; for check: allow / deny
    2                   usage error
    125                 the gate could not be put in place; the tool was not run
    126                 the real tool is not executable
    127                 the real tool was not found on PATH
";

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
        "cli-guard" => cli_guard(rest, &env),
        "egress-demo" => demo::main(&utf8_args(&rest)?, &env),
        _ => match policy::lookup(&name) {
            Some(policy) => shim::run(Invocation {
                policy,
                argv0,
                args: rest,
                program: Program::Lookup(OsString::from(&name)),
                as_shim: true,
            }, &env),
            None => Err(Failure::usage(format!(
                "unknown name {name:?}: cli-guard runs as a shim only under a tool name from its pinned policy \
                 ({}), as egress-demo, or as cli-guard. Remove or rename this link.",
                known_names()
            ))),
        },
    }
}

fn known_names() -> String {
    policy::tool_names().collect::<Vec<_>>().join(", ")
}

fn utf8_args(args: &[OsString]) -> Result<Vec<String>, Failure> {
    args.iter()
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect()
}

fn cli_guard(args: Vec<OsString>, env: &Env) -> Result<Exit, Failure> {
    let Some(command) = args.first().and_then(|a| a.to_str()) else {
        eprint!("{HELP}");
        return Err(Failure::usage("missing command (see cli-guard --help)"));
    };
    match command {
        "--help" | "-h" | "help" => {
            print!("{HELP}");
            Ok(Exit::SUCCESS)
        }
        "--version" | "-V" => {
            println!("cli-guard {}", env!("CARGO_PKG_VERSION"));
            Ok(Exit::SUCCESS)
        }
        "run" => run(&args[1..], env),
        "policy" => print_policy(&utf8_args(&args[1..])?),
        "shims" => print_shims(&utf8_args(&args[1..])?, env),
        "audit" => audit::audit(&utf8_args(&args[1..])?, env),
        "check" => check::check(&utf8_args(&args[1..])?),
        "egress-demo" => demo::main(&utf8_args(&args[1..])?, env),
        other => Err(Failure::usage(format!(
            "unknown command {other:?}: expected run, policy, shims, audit, check, egress-demo, --help or --version"
        ))),
    }
}

const RUN_USAGE: &str = "usage: cli-guard run --as NAME -- CMD [ARGS...]";

/// `cli-guard run --as NAME [--] CMD [ARGS…]`.
fn run(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let mut rest = args;
    let mut name = None;
    while let Some(arg) = rest.first().and_then(|a| a.to_str()) {
        if arg == "--help" || arg == "-h" {
            println!(
                "{RUN_USAGE}\n\nRuns CMD behind the gate exactly as NAME's shim would run the real NAME."
            );
            return Ok(Exit::SUCCESS);
        } else if arg == "--as" {
            name = rest.get(1).and_then(|n| n.to_str());
            rest = rest.get(2..).unwrap_or_default();
        } else if let Some(value) = arg.strip_prefix("--as=") {
            name = Some(value);
            rest = &rest[1..];
        } else if arg == "--" {
            rest = &rest[1..];
            break;
        } else if arg.starts_with('-') {
            return Err(Failure::usage(format!(
                "run: unknown option {arg:?}; {RUN_USAGE}"
            )));
        } else {
            break;
        }
    }
    let name = name.ok_or_else(|| Failure::usage(format!("run: --as NAME is required; {RUN_USAGE}")))?;
    let policy = lookup_or_usage(name)?;
    let (command, command_args) = rest
        .split_first()
        .ok_or_else(|| Failure::usage(format!("run: no command given; {RUN_USAGE}")))?;
    let program = if command.to_string_lossy().contains('/') {
        Program::Path(PathBuf::from(command))
    } else {
        Program::Lookup(command.clone())
    };
    shim::run(
        Invocation {
            policy,
            argv0: command.clone(),
            args: command_args.to_vec(),
            program,
            as_shim: false,
        },
        env,
    )
}

fn lookup_or_usage(name: &str) -> Result<&'static ToolPolicy, Failure> {
    policy::lookup(name)
        .ok_or_else(|| Failure::usage(format!("unknown tool {name:?}; known: {}", known_names())))
}

/// `cli-guard policy [NAME]`: the pinned table, one tool a line.
fn print_policy(args: &[String]) -> Result<Exit, Failure> {
    let tools: Vec<&ToolPolicy> = match args.first().map(String::as_str) {
        Some("--names") => {
            for name in policy::tool_names() {
                println!("{name}");
            }
            return Ok(Exit::SUCCESS);
        }
        Some("--help" | "-h") => {
            println!(
                "usage: cli-guard policy [NAME | --names]\n\nPrints the pinned policy: every tool, or one."
            );
            return Ok(Exit::SUCCESS);
        }
        Some(option) if option.starts_with('-') => {
            return Err(Failure::usage(format!(
                "policy: unknown option {option:?} (see cli-guard policy --help)"
            )))
        }
        Some(name) => vec![lookup_or_usage(name)?],
        None => policy::TOOLS.iter().collect(),
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

/// `cli-guard shims`: for each tool, whether PATH finds its shim first, and
/// the real binary the shim would run.
fn print_shims(args: &[String], env: &Env) -> Result<Exit, Failure> {
    if let Some(arg) = args.first() {
        if arg == "--help" || arg == "-h" {
            println!(
                "usage: cli-guard shims\n\nFor each pinned tool: its mode, whether the first `NAME` on PATH is \
                 cli-guard's shim, and the real binary the shim would run."
            );
            return Ok(Exit::SUCCESS);
        }
        return Err(Failure::usage(format!(
            "shims: unexpected argument {arg:?}: it takes none (see cli-guard shims --help)"
        )));
    }
    let path_var = env.path();
    println!("{:<10} {:<8} {:<40} REAL", "TOOL", "MODE", "SHIM FIRST ON PATH");
    for tool in policy::TOOLS {
        let status = shim::shim_status(OsStr::new(tool.name), path_var);
        let first = match &status.first {
            None => "no (nothing on PATH)".to_string(),
            Some(path) if status.first_is_shim => format!("yes ({})", path.display()),
            Some(path) => format!("no: {} comes first", path.display()),
        };
        let real = status
            .real
            .map_or_else(|| "not installed".to_string(), |p| p.display().to_string());
        println!(
            "{:<10} {:<8} {first:<40} {real}",
            tool.name,
            tool.mode.to_string()
        );
    }
    Ok(Exit::SUCCESS)
}
