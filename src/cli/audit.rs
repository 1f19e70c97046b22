//! `cli-guard audit`: its options, read into a [`ShowOptions`] for the
//! audit log's reader.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::audit::fold::{parse_since, Filter};
use crate::audit::show::{show, ShowOptions};
use crate::env::Env;
use crate::exit::{Exit, Failure, LOG_UNREADABLE};

pub const AUDIT_HELP: &str = "\
usage: cli-guard audit [OPTIONS]

Reads the audit log (and its rotated files, oldest first) and shows one folded
entry per invocation, newest last: time, tool, mode, exit status, duration,
allowed and denied counts, audit ID and command line, with its egress rows
under it and nested invocations beneath their parent.

options:
  --denied          only invocations with a denied request (in them or nested)
  --tool NAME       only invocations of NAME (or with NAME nested under them)
  --since WHEN      only invocations started since WHEN: 30m, 1h, 2d, or a UTC
                    time like 2026-11-23T10:00Z
  --id AUDIT_ID     that invocation and everything nested under it
  --last N          only the last N entries
  --json            one JSON object per invocation: its start and end fields,
                    egress: [...] with each tunnel's close merged in, children
  --follow          after the log, keep printing invocations as they finish
  --suggest TOOL    print the pinned policy entry for the hosts TOOL reached
  --file PATH       read this log instead of the default
  -h, --help        this help

The log is $CLI_GUARD_AUDIT_LOG, else $XDG_STATE_HOME/cli-guard/audit.jsonl,
else ~/.local/state/cli-guard/audit.jsonl. Lines that are not audit records
are reported on stderr with their line number and skipped.

exit: 0 shown, 1 the log can't be read, 2 usage error.
";

/// Parsed `cli-guard audit` options.
#[derive(Debug, Default)]
struct AuditArgs {
    filter: Filter,
    last: Option<usize>,
    json: bool,
    follow: bool,
    suggest: Option<String>,
    file: Option<PathBuf>,
}

fn parse_audit_args(args: &[String]) -> Result<Option<AuditArgs>, Failure> {
    let mut out = AuditArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| {
                Failure::usage(format!(
                    "audit: {name} needs a value (see cli-guard audit --help)"
                ))
            })
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--denied" => out.filter.denied = true,
            "--json" => out.json = true,
            "--follow" | "-f" => out.follow = true,
            "--tool" => out.filter.tool = Some(value("--tool")?),
            "--id" => out.filter.id = Some(value("--id")?),
            "--suggest" => out.suggest = Some(value("--suggest")?),
            "--file" => out.file = Some(PathBuf::from(value("--file")?)),
            "--since" => {
                let since = value("--since")?;
                out.filter.since = Some(
                    parse_since(&since, SystemTime::now())
                        .map_err(|e| Failure::usage(format!("audit: {e} (see cli-guard audit --help)")))?,
                );
            }
            "--last" => {
                let n = value("--last")?;
                let n = n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Failure::usage(format!("audit: --last {n:?}: expected a positive number"))
                })?;
                out.last = Some(n);
            }
            other => {
                return Err(Failure::usage(format!(
                    "audit: unknown option {other:?} (see cli-guard audit --help)"
                )))
            }
        }
    }
    Ok(Some(out))
}

/// `cli-guard audit …`.
pub fn audit(args: &[String], env: &Env) -> Result<Exit, Failure> {
    let Some(args) = parse_audit_args(args)? else {
        print!("{AUDIT_HELP}");
        return Ok(Exit::SUCCESS);
    };
    let path = args
        .file
        .clone()
        .or_else(|| env.audit_log_path())
        .ok_or_else(|| {
            Failure::new(
                LOG_UNREADABLE,
                anyhow::anyhow!("no audit log path: HOME is unset; pass --file or set CLI_GUARD_AUDIT_LOG"),
            )
        })?;
    let opts = ShowOptions {
        path,
        filter: args.filter,
        last: args.last,
        json: args.json,
        follow: args.follow,
        suggest: args.suggest,
        no_color: env.no_color(),
    };
    show(&opts).map_err(|e| Failure::new(LOG_UNREADABLE, e))?;
    Ok(Exit::SUCCESS)
}
