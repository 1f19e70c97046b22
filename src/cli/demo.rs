//! `egress-demo`: the gate in its three modes, in one process.
//!
//! It starts the same proxy a shim starts, under a small pinned demo policy,
//! dials through it with a plain CONNECT as a child would, prints the status
//! line the "child" saw on stdout, then stops the proxy and prints the egress
//! rows as JSON lines on stderr. It works offline: an unreachable upstream is
//! still an allow decision, answered 502.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::args::{self, MissingCommand, Parsed, Usage};
use crate::audit::{self, AuditLog};
use crate::credential::Credential;
use crate::env::Env;
use crate::exit::{Exit, Failure, DEMO_UNEXPECTED};
use crate::gate::DIAL_TIMEOUT;
use crate::gate::{self, bind_loopback, Gate, Settings};
use crate::policy::{Family, Mode, Rule, SubcommandRule, ToolPolicy};

/// The demo's enforce-mode policy: registries this machine class reaches.
static DEMO_ENFORCE: ToolPolicy = ToolPolicy {
    name: "egress-demo",
    mode: Mode::Enforce,
    allow: &[
        Rule::https("registry.npmjs.org"),
        Rule::https("pypi.org"),
        // A wildcard, to show subdomain matching: index.crates.io,
        // static.crates.io; never crates.io itself or evilcrates.io.
        Rule::https("*.crates.io"),
    ],
    no_proxy: &[],
    family: Family::Plain,
    runs_project_code: &[],
    subcommand_rule: SubcommandRule::PLAIN,
};

/// The demo's observe-mode policy: no allowlist, everything logged.
static DEMO_OBSERVE: ToolPolicy = ToolPolicy {
    name: "egress-demo",
    mode: Mode::Observe,
    allow: &[],
    no_proxy: &[],
    family: Family::Plain,
    runs_project_code: &[],
    subcommand_rule: SubcommandRule::PLAIN,
};

const HELP: &str = "\
NAME:
   egress-demo - show cli-guard's egress gate in its three modes

USAGE:
   egress-demo [global options] command [HOST:PORT ...]

   Starts the gate's CONNECT proxy on 127.0.0.1, dials through it as a guarded
   tool would, prints the status line the tool saw on stdout, then stops the
   proxy and prints its egress rows as JSON lines on stderr. Exits 0 when the
   gate behaved as the command says. Works offline: an allowed host that can't
   be reached is still decision allow, answered 502.

COMMANDS:
   allowed   dial a host on the demo allowlist (enforce mode): forwarded
             default: registry.npmjs.org:443
   denied    dial a host not on the demo allowlist: 403, before any dial
             default: exfil.example.net:443
   observe   dial several hosts in observe mode: all forwarded and logged
             default: registry.npmjs.org:443 pypi.org:443 unlisted.example.invalid:443
   help, h   show this help

   Demo allowlist: registry.npmjs.org:443, pypi.org:443, *.crates.io:443

GLOBAL OPTIONS:
   --help, -h     show help
   --version, -v  print the version
";

/// The three demonstrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Allowed,
    Denied,
    Observe,
}

impl Show {
    fn policy(self) -> &'static ToolPolicy {
        match self {
            Show::Allowed | Show::Denied => &DEMO_ENFORCE,
            Show::Observe => &DEMO_OBSERVE,
        }
    }

    fn default_targets(self) -> &'static [&'static str] {
        match self {
            Show::Allowed => &["registry.npmjs.org:443"],
            Show::Denied => &["exfil.example.net:443"],
            Show::Observe => &[
                "registry.npmjs.org:443",
                "pypi.org:443",
                "unlisted.example.invalid:443",
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Show::Allowed => "allowed",
            Show::Denied => "denied",
            Show::Observe => "observe",
        }
    }
}

const USAGE: Usage = Usage {
    command: "egress-demo",
    next_step: "see egress-demo --help",
};

/// `egress-demo --version`'s line.
const VERSION: &str = concat!("egress-demo (cli-guard) ", env!("CARGO_PKG_VERSION"));

/// Parsed `egress-demo` arguments.
#[derive(Debug, PartialEq, Eq)]
struct DemoArgs {
    show: Show,
    /// HOST:PORT to dial; empty for the command's defaults.
    targets: Vec<String>,
}

/// Reads `allowed|denied|observe [HOST:PORT ...]`; `help` or `h` anywhere is
/// `--help`, as in the help's own list of commands.
fn parse_demo_args(args: &[OsString]) -> Result<Parsed<DemoArgs>, Failure> {
    let mut parser = args::parser(args);
    let mut show = None;
    let mut targets = Vec::new();
    while let Some(arg) = USAGE.next(&mut parser)? {
        let word = match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Short('v') | lexopt::Arg::Long("version") => return Ok(Parsed::Version),
            lexopt::Arg::Value(word) => USAGE.utf8(word)?,
            other => return Err(USAGE.lexopt(other.unexpected())),
        };
        match (word.as_str(), show) {
            ("help" | "h", _) => return Ok(Parsed::Help),
            ("allowed", None) => show = Some(Show::Allowed),
            ("denied", None) => show = Some(Show::Denied),
            ("observe", None) => show = Some(Show::Observe),
            (_, Some(_)) => targets.push(word),
            (other, None) => {
                return Err(USAGE.error(format_args!(
                    "unknown command {other:?}: expected allowed, denied or observe"
                )))
            }
        }
    }
    let show = show.ok_or_else(|| {
        MissingCommand::failure(
            "egress-demo: missing command: allowed, denied or observe (see egress-demo --help)",
        )
    })?;
    Ok(Parsed::Args(DemoArgs { show, targets }))
}

/// `egress-demo ARGS…` (argv[0] already removed).
pub fn main(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let parsed = parse_demo_args(args).inspect_err(|failure| {
        if MissingCommand::is(failure) {
            eprint!("{HELP}");
        }
    })?;
    let Some(DemoArgs { show, mut targets }) = parsed.or_print(HELP, VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    if targets.is_empty() {
        targets = show.default_targets().iter().map(|t| t.to_string()).collect();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::gate)?;
    let exit = runtime.block_on(demonstrate(show, &targets, env));
    runtime.shutdown_background();
    exit
}

async fn demonstrate(show: Show, targets: &[String], env: &Env) -> Result<Exit, Failure> {
    let audit_id =
        audit::new_audit_id().map_err(|e| Failure::gate(anyhow::anyhow!("cannot draw an audit ID: {e}")))?;
    let log = Arc::new(AuditLog::in_memory(audit_id));
    let (listener, proxy_addr) = bind_loopback()
        .and_then(|(listener, addr)| Ok((TcpListener::from_std(listener)?, addr)))
        .context("cannot start the proxy on 127.0.0.1")
        .map_err(Failure::gate)?;
    // The same set-up a shim makes: the credential, CLI_GUARD_RESOLVE, and
    // the environment's upstream proxy, if any.
    let credential =
        Credential::mint().map_err(|e| Failure::gate(anyhow::anyhow!("cannot draw a credential: {e}")))?;
    let settings = Settings::from_env(Some(proxy_addr), &credential, env)
        .map_err(|e| Failure::gate(anyhow::anyhow!(e)))?;
    let credential = credential.header().to_string();
    let gate = Arc::new(Gate::new(show.policy(), Arc::clone(&log), settings));
    let (stop_tx, stop_rx) = oneshot::channel();
    let proxy = tokio::spawn(gate::serve(listener, Arc::clone(&gate), stop_rx));

    let mut statuses = Vec::with_capacity(targets.len());
    for target in targets {
        let seen = connect_through(proxy_addr, &credential, target)
            .await
            .unwrap_or_else(|e| format!("(no answer: {e:#})"));
        println!("{:<8} {target} -> {seen}", show.name());
        statuses.push(seen);
    }
    let _ = std::io::stdout().flush();
    let _ = stop_tx.send(());
    let _ = proxy.await;

    let mut stderr = std::io::stderr().lock();
    for line in log.take_lines() {
        let _ = stderr.write_all(&line);
    }
    let summary = gate.summary();
    let behaved = match show {
        Show::Allowed | Show::Observe => summary.denied == 0 && summary.allowed == targets.len() as u64,
        Show::Denied => statuses.iter().all(|s| s.starts_with("HTTP/1.1 403 ")),
    };
    Ok(if behaved {
        Exit::SUCCESS
    } else {
        Exit::Code(DEMO_UNEXPECTED)
    })
}

/// Sends one CONNECT and returns the status line the client saw.
async fn connect_through(proxy: SocketAddr, credential: &str, target: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(proxy).await?;
        stream
            .write_all(
                format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {credential}\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut reader = BufReader::new(&mut stream);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        // Close as a polite client does: half-close, then read to EOF (or
        // the reset a server may answer a bare close with: the gate counts
        // that as the close the client asked for, not as an error), so
        // nothing is left unread to turn our own close into a reset.
        reader.get_mut().shutdown().await?;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), reader.read_to_end(&mut rest)).await;
        anyhow::Ok(line.trim_end().to_string())
    };
    tokio::time::timeout(DIAL_TIMEOUT + Duration::from_secs(5), exchange)
        .await
        .context("timed out")?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};

    fn parse(args: &[&str]) -> Result<Parsed<DemoArgs>, Failure> {
        parse_demo_args(&os(args))
    }

    fn parsed(args: &[&str]) -> DemoArgs {
        args_of(parse(args))
    }

    /// The usage error's text, which must point at the help.
    fn error(args: &[&str]) -> String {
        let text = usage_text(parse(args));
        assert!(text.contains("see egress-demo --help"), "{text}");
        text
    }

    #[test]
    fn each_command_alone() {
        for (word, show) in [
            ("allowed", Show::Allowed),
            ("denied", Show::Denied),
            ("observe", Show::Observe),
        ] {
            assert_eq!(
                parsed(&[word]),
                DemoArgs {
                    show,
                    targets: vec![]
                }
            );
        }
    }

    #[test]
    fn targets_follow_the_command() {
        let demo = parsed(&["observe", "a.example:443", "allowed", "--", "-odd:1"]);
        assert_eq!(demo.show, Show::Observe);
        assert_eq!(demo.targets, ["a.example:443", "allowed", "-odd:1"]);
    }

    #[test]
    fn help_in_every_form_and_place() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["h"],
            &["denied", "--help"],
            &["observe", "x:1", "h"],
        ] {
            assert_eq!(parse(args).unwrap(), Parsed::Help, "{args:?}");
        }
    }

    #[test]
    fn version_in_either_form() {
        assert_eq!(parse(&["--version"]).unwrap(), Parsed::Version);
        assert_eq!(parse(&["-v"]).unwrap(), Parsed::Version);
    }

    #[test]
    fn unknown_option() {
        assert!(error(&["--bogus"])
            .to_string()
            .contains("unknown option \"--bogus\""));
        assert!(error(&["denied", "-x"])
            .to_string()
            .contains("unknown option \"-x\""));
    }

    #[test]
    fn unknown_command() {
        let text = error(&["sideways"]);
        assert!(
            text.contains("unknown command \"sideways\": expected allowed, denied or observe"),
            "{text}"
        );
    }

    #[test]
    fn missing_command_brings_the_help() {
        for args in [&[][..], &["--"]] {
            assert!(MissingCommand::is(&parse(args).unwrap_err()), "{args:?}");
            assert!(error(args).contains("missing command"), "{args:?}");
        }
    }
}
