//! `egress-demo`: the gate in its three modes, in one process, and strict
//! mode with a real child.
//!
//! `allowed`, `denied` and `observe` start the same proxy a shim starts,
//! under a small pinned demo policy, dial through it with a plain CONNECT as
//! a child would, print the status line the "child" saw on stdout, then stop
//! the proxy and print the egress rows as JSON lines on stderr. They work
//! offline: an unreachable upstream is still an allow decision, answered 502.
//!
//! `strict` needs a real child in a real namespace, so it runs one: this
//! executable, as `egress-demo direct-connect HOST:PORT...`, guarded exactly
//! as a shim guards a tool (`shim::run` under the demo's enforce-mode
//! policy, with `CLI_GUARD_STRICT=require` and an audit log of its own in a
//! temporary directory). `direct-connect` is a hidden helper, not in the
//! help: it ignores every proxy variable, resolves each target with the
//! system resolver, opens a plain TCP connection, half-closes it and prints
//! what came back, as a payload that walks past HTTPS_PROXY would. The demo
//! then prints the invocation's audit rows on stderr and, on stdout, the
//! gate's verdict for each target. Where the kernel refuses the namespace it
//! says so, points at `cli-guard doctor`, and exits `STRICT_UNAVAILABLE`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::args::{self, MissingCommand, Parsed, Usage};
use crate::audit::{self, AuditLog};
use crate::credential::Credential;
use crate::env::{Env, AUDIT_LOG_VAR, STRICT_VAR};
use crate::exit::{Exit, Failure, DEMO_UNEXPECTED, STRICT_UNAVAILABLE};
use crate::gate::DIAL_TIMEOUT;
use crate::gate::{self, bind_loopback, Gate, Settings, Sockets};
use crate::policy::authority::parse_authority;
use crate::policy::writes::{Base, Place};
use crate::policy::{Family, Mode, Rule, SubcommandRule, ToolPolicy};
use crate::shim::{self, Invocation, Program};
use crate::sys::netns;

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
    writes: &[Place::at(Base::Project, ""), Place::at(Base::Temp, "")],
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
    writes: &[],
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
   strict    strict mode (Linux): run a child in the gate's network namespace
             that connects directly, ignoring the proxy; an address it did
             not look up by an allowed name is refused, with a row
             default: 203.0.113.7:443
   help, h   show this help

   Demo allowlist: registry.npmjs.org:443, pypi.org:443, *.crates.io:443

GLOBAL OPTIONS:
   --help, -h     show help
   --version, -v  print the version
";

/// The four demonstrations, and strict's hidden helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Allowed,
    Denied,
    Observe,
    Strict,
    /// `direct-connect`: the child `strict` runs (see the module doc).
    DirectConnect,
}

impl Show {
    fn policy(self) -> &'static ToolPolicy {
        match self {
            Show::Allowed | Show::Denied | Show::Strict | Show::DirectConnect => &DEMO_ENFORCE,
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
            // TEST-NET-3: nothing answers there, and no name maps to it.
            Show::Strict | Show::DirectConnect => &["203.0.113.7:443"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Show::Allowed => "allowed",
            Show::Denied => "denied",
            Show::Observe => "observe",
            Show::Strict => "strict",
            Show::DirectConnect => "direct",
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
            ("strict", None) => show = Some(Show::Strict),
            ("direct-connect", None) => show = Some(Show::DirectConnect),
            (_, Some(_)) => targets.push(word),
            (other, None) => {
                return Err(USAGE.error(format_args!(
                    "unknown command {other:?}: expected allowed, denied or observe (or strict, on Linux)"
                )))
            }
        }
    }
    let show = show.ok_or_else(|| {
        MissingCommand::failure(
            "egress-demo: missing command: allowed, denied, observe or strict (see egress-demo --help)",
        )
    })?;
    Ok(Parsed::Args(DemoArgs { show, targets }))
}

/// `egress-demo ARGS…` (argv[0] already removed).
pub(super) fn main(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
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
    match show {
        // Not in a runtime: the guarded run makes its own, on this thread.
        Show::Strict => return strict(&targets, env),
        Show::DirectConnect => {
            for target in &targets {
                say(format_args!(
                    "{:<8} {target} -> {}",
                    show.name(),
                    connect_directly(target)
                ));
            }
            return Ok(Exit::SUCCESS);
        }
        Show::Allowed | Show::Denied | Show::Observe => {}
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
    let shutdown = gate::Shutdown::new();
    let serving = gate::start(Sockets::proxy_only(listener), &gate, &shutdown)
        .context("cannot start the proxy on 127.0.0.1")
        .map_err(Failure::gate)?;

    let mut statuses = Vec::with_capacity(targets.len());
    for target in targets {
        let seen = connect_through(proxy_addr, &credential, target)
            .await
            .unwrap_or_else(|e| format!("(no answer: {e:#})"));
        say(format_args!("{:<8} {target} -> {seen}", show.name()));
        statuses.push(seen);
    }
    let _ = std::io::stdout().flush();
    shutdown.stop();
    serving.finished().await;

    let mut stderr = std::io::stderr().lock();
    for line in log.take_lines() {
        let _ = stderr.write_all(&line);
    }
    let summary = gate.summary();
    let behaved = match show {
        Show::Allowed | Show::Observe => summary.denied == 0 && summary.allowed == targets.len() as u64,
        Show::Denied => statuses.iter().all(|s| s.starts_with("HTTP/1.1 403 ")),
        Show::Strict | Show::DirectConnect => false,
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

/// `egress-demo strict`: runs `egress-demo direct-connect TARGETS` guarded,
/// in strict mode, then prints its rows and the gate's verdicts.
fn strict(targets: &[String], env: &Env) -> Result<Exit, Failure> {
    if let Err(refused) = netns::probe(&netns::Layers::default()) {
        eprintln!(
            "egress-demo: strict mode is not available here ({refused}), so there is nothing to show; \
             `cli-guard doctor` says why and how to fix it"
        );
        return Ok(Exit::Code(STRICT_UNAVAILABLE));
    }
    let exe = std::env::current_exe()
        .context("cannot find this executable to run it as the demo's child")
        .map_err(Failure::gate)?;
    let scratch = Scratch::create(env).map_err(Failure::gate)?;
    let log_path = scratch.path.join("audit.jsonl");
    // The shim reads its settings from the Env it is given, never from the
    // process: the child's run gets this one.
    let inner = Env::from_pairs(
        env.vars()
            .filter(|(k, _)| k != AUDIT_LOG_VAR && k != STRICT_VAR)
            .chain([
                (OsString::from(AUDIT_LOG_VAR), log_path.clone().into_os_string()),
                (OsString::from(STRICT_VAR), OsString::from("require")),
            ]),
    );
    let args = std::iter::once("direct-connect")
        .chain(targets.iter().map(String::as_str))
        .map(OsString::from)
        .collect();
    let ran = shim::run(
        Invocation {
            policy: &DEMO_ENFORCE,
            argv0: OsString::from("egress-demo"),
            args,
            program: Program::Path(exe),
            as_shim: false,
            tool_args_from: 0,
            argv0_is_path: false,
        },
        &inner,
    );
    let log = std::fs::read(&log_path).unwrap_or_default();
    {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&log);
    }
    let exit = ran?;
    let rows: Vec<Value> = log
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|row| row["kind"] == "egress")
        .collect();
    let mut behaved = exit == Exit::SUCCESS;
    for target in targets {
        let (line, as_expected) = verdict(target, &rows);
        say(format_args!("{:<8} {target} -> {line}", Show::Strict.name()));
        behaved &= as_expected;
    }
    Ok(if behaved {
        Exit::SUCCESS
    } else {
        Exit::Code(DEMO_UNEXPECTED)
    })
}

/// What the gate decided for a direct connection to `target`, by its rows
/// (the transparent one for the address and port, else the DNS one for the
/// name), and whether that is what the demo policy says.
fn verdict(target: &str, rows: &[Value]) -> (String, bool) {
    let Some((host, port)) = target.rsplit_once(':') else {
        return ("not HOST:PORT".to_string(), false);
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().ok();
    let for_host = |method: &str| {
        rows.iter().find(|row| {
            row["method"] == method
                && row["host"] == host
                && (method == "dns" || port.is_some_and(|p| row["port"] == p))
        })
    };
    let Some(row) = for_host("transparent").or_else(|| for_host("dns")) else {
        return ("no row: the gate never saw it".to_string(), false);
    };
    let decision = row["decision"].as_str().unwrap_or("?");
    let line = format!(
        "{decision} {} ({}): {}",
        row["status"],
        row["method"].as_str().unwrap_or("?"),
        row["reason"].as_str().unwrap_or("")
    );
    // A bare address is never in the pool; a name is judged by the policy.
    let expected = match host.parse::<std::net::IpAddr>() {
        Ok(_) => "deny",
        Err(_) => match parse_authority(target) {
            Ok(authority) if DEMO_ENFORCE.decide(&authority).is_allow() => "allow",
            _ => "deny",
        },
    };
    (line, decision == expected)
}

/// `direct-connect`'s dial: the system resolver, a plain TCP connection, a
/// half-close, and what came back. Never through a proxy.
fn connect_directly(target: &str) -> String {
    let addr = match target.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => return "lookup: no address".to_string(),
        Err(e) => return format!("lookup refused: {e}"),
    };
    let mut stream = match std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => return format!("connect to {addr} failed: {e}"),
    };
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DIAL_TIMEOUT));
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => format!("connected to {addr}, then closed with nothing received"),
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            format!(
                "connected to {addr}, received: {}",
                text.lines().next().unwrap_or_default()
            )
        }
        Err(e) => format!("connected to {addr}, then: {e}"),
    }
}

/// A private directory for the strict demo's audit log, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// `$TMPDIR/egress-demo-RANDOM` (or under /tmp), mode 0700.
    fn create(env: &Env) -> anyhow::Result<Scratch> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("cannot draw a random name: {e}"))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let base = env
            .var_os("TMPDIR")
            .filter(|dir| Path::new(dir).is_absolute())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let path = base.join(format!("egress-demo-{name}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One line of what the demo saw, on stdout. The demo runs a gate, so it
/// keeps SIGPIPE ignored: a reader that left early is no error.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
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
            ("strict", Show::Strict),
            ("direct-connect", Show::DirectConnect),
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

    fn row(method: &str, host: &str, port: Option<u16>, decision: &str) -> Value {
        serde_json::json!({
            "kind": "egress", "method": method, "host": host, "port": port,
            "decision": decision, "status": if decision == "deny" { 403 } else { 200 }, "reason": "r",
        })
    }

    #[test]
    fn verdict_of_a_bare_address_is_its_transparent_row() {
        let rows = [row("transparent", "203.0.113.7", Some(443), "deny")];
        let (line, expected) = verdict("203.0.113.7:443", &rows);
        assert_eq!(line, "deny 403 (transparent): r");
        assert!(expected);
        // The same address on another port has no row of its own.
        assert!(!verdict("203.0.113.7:8443", &rows).1);
        // An address let through would be a broken gate.
        assert!(
            !verdict(
                "203.0.113.7:443",
                &[row("transparent", "203.0.113.7", Some(443), "allow")]
            )
            .1
        );
    }

    #[test]
    fn verdict_of_a_name_follows_the_demo_policy() {
        let refused = [row("dns", "exfil.example.net", None, "deny")];
        assert!(verdict("exfil.example.net:443", &refused).1);
        let allowed = [
            row("dns", "pypi.org", None, "allow"),
            row("transparent", "pypi.org", Some(443), "allow"),
        ];
        let (line, expected) = verdict("pypi.org:443", &allowed);
        assert!(line.starts_with("allow 200 (transparent)"), "{line}");
        assert!(expected);
        assert!(!verdict("pypi.org:443", &[]).1);
    }
}
