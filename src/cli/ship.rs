//! `cli-guard ship`: delivers the rows waiting in the spool beside the
//! audit log to the collector, now; `--background` is what a shim starts
//! when it exits with rows still waiting (detached, quiet, one at a time).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::args::{self, Parsed, Usage};
use crate::env::Env;
use crate::exit::{Exit, Failure, STILL_SPOOLED};
use crate::ship::{self, Drained};

const USAGE: Usage = Usage {
    command: "ship",
    next_step: "see cli-guard ship --help",
};

/// How long `cli-guard ship` keeps trying a collector that does not answer.
const FOREGROUND_FOR: Duration = Duration::from_secs(30);
/// How long the drainer a shim starts keeps trying; after that the rows
/// wait for the next invocation's shipper.
const BACKGROUND_FOR: Duration = Duration::from_secs(15 * 60);

const HELP: &str = "\
usage: cli-guard ship [--log PATH] [--background]

Delivers the rows waiting in the spool beside the audit log (audit.jsonl.spool)
to the syslog collector shipping is configured with (/etc/cli-guard/ship.conf,
else CLI_GUARD_SHIP), in order, each once; retries a collector that does not
answer for 30 s.

A guarded invocation ships its rows as it writes them; one that ends while the
collector is away starts `cli-guard ship --background`, which keeps trying for
15 minutes (one at a time per log, detached, silent). After that, the next
invocation's shipper delivers what waits.

options:
  --log PATH, --file PATH   the audit log whose spool to deliver (default: the log
                            cli-guard writes, as `cli-guard audit` finds it)
  --background              detach from the terminal, say nothing, try for 15
                            minutes, and only if no other drainer is at work
  -h, --help                this help

exit: 0 nothing waits any more, 1 rows still wait (or shipping is not
configured), 2 usage error.
";

/// Parsed `cli-guard ship` options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ShipArgs {
    pub log: Option<PathBuf>,
    pub background: bool,
}

pub(super) fn parse_ship_args(args: &[OsString]) -> Result<Parsed<ShipArgs>, Failure> {
    let mut out = ShipArgs::default();
    let mut parser = args::parser(args);
    while let Some(arg) = USAGE.next(&mut parser)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Long("background") => out.background = true,
            lexopt::Arg::Long("log" | "file") => out.log = Some(PathBuf::from(USAGE.value(&mut parser)?)),
            lexopt::Arg::Value(arg) => {
                return Err(USAGE.error(format_args!(
                    "unexpected argument {arg:?}: ship takes only options"
                )))
            }
            other => return Err(USAGE.lexopt(other.unexpected())),
        }
    }
    Ok(Parsed::Args(out))
}

/// `cli-guard ship …`.
pub(super) fn ship(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let Some(args) = parse_ship_args(args)?.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    if args.background {
        // Off the terminal's session: a closing terminal does not end it.
        let _ = nix::unistd::setsid();
    }
    let still = |why: String| Failure::new(STILL_SPOOLED, anyhow::anyhow!("{why}"));
    let config = env.ship_config().map_err(&still)?.ok_or_else(|| {
        still(format!(
            "shipping is not configured: set {} (collector=tls://HOST:PORT) or write {}",
            crate::env::SHIP_VAR,
            ship::SYSTEM_FILE
        ))
    })?;
    let log = args
        .log
        .or_else(|| env.audit_log_path())
        .ok_or_else(|| still("no audit log path: HOME is unset; pass --log".to_string()))?;
    let within = if args.background {
        BACKGROUND_FOR
    } else {
        FOREGROUND_FOR
    };
    match ship::drain(&config, &log, Instant::now() + within, args.background) {
        Drained::Empty | Drained::Busy | Drained::Gone => Ok(Exit::SUCCESS),
        Drained::GaveUp { waiting, why } => Err(still(format!(
            "{waiting} bytes of rows still wait in {}: {why}. They are delivered by the next guarded invocation, \
             or run cli-guard ship again once the collector {} answers",
            ship::spool_path(&log).display(),
            config.collector
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};

    #[test]
    fn its_options() {
        assert_eq!(args_of(parse_ship_args(&os(&[]))), ShipArgs::default());
        assert_eq!(
            args_of(parse_ship_args(&os(&["--background", "--log", "/l/audit.jsonl"]))),
            ShipArgs {
                log: Some(PathBuf::from("/l/audit.jsonl")),
                background: true
            }
        );
        assert_eq!(
            args_of(parse_ship_args(&os(&["--file=/x"]))).log,
            Some(PathBuf::from("/x"))
        );
        let text = usage_text(parse_ship_args(&os(&["now"])));
        assert!(
            text.contains("unexpected argument") && text.contains("see cli-guard ship --help"),
            "{text}"
        );
    }
}
