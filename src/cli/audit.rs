//! `cli-guard audit`: its options, read into a [`ShowOptions`] for the
//! audit log's reader.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

use super::args::{self, Parsed, Usage};
use crate::audit::{parse_since, show, Filter, ShowOptions};
use crate::env::Env;
use crate::exit::{Exit, Failure, LOG_UNREADABLE, NOT_INTACT};

const USAGE: Usage = Usage {
    command: "audit",
    next_step: "see cli-guard audit --help",
};

const AUDIT_HELP: &str = "\
usage: cli-guard audit [OPTIONS]

Reads the audit log (and its rotated files, oldest first) and shows one folded
entry per invocation, newest last: time, tool, mode, exit status, duration,
allowed and denied counts, audit ID and command line, with its egress rows
under it and nested invocations beneath their parent.

options:
  --denied          only invocations with a denied request (in them or nested)
  --tool NAME       only invocations of NAME (or with NAME nested under them)
  --package NAME    only invocations where package NAME's own code (an
                    install or build script) made a request
  --since WHEN      only invocations started since WHEN: 30m, 1h, 2d, or a UTC
                    time like 2026-11-23T10:00Z
  --id AUDIT_ID     that invocation and everything nested under it
  --last N          only the last N entries
  --json            one flat JSON object per invocation, nested ones too (after
                    their parent, with parent_audit_id): its start and end
                    fields, egress: [...] with each tunnel's close merged in.
                    The filters then select invocations, not trees: --tool
                    and --denied look at each invocation itself, --id gives
                    it and its descendants as objects of their own, --last N
                    the last N objects
  --follow          after the log, keep printing invocations as they finish
  --suggest TOOL    print the pinned policy entry for the hosts TOOL reached,
                    and the per-package entries its packages' refused code
                    would need (to pin only after reading that code)
  --machine NAME    only invocations of machine NAME (a collector's file,
                    which holds rows of many machines)
  --verify          walk the hash chain the rows carry instead: name the
                    first row that was changed, inserted or removed and
                    say how far the log is intact (a collector's file:
                    each machine's chain)
  --file PATH, --log PATH
                    read this log (or a collector's file) instead of the default
  -h, --help        this help

The log is $CLI_GUARD_AUDIT_LOG, else $XDG_STATE_HOME/cli-guard/audit.jsonl,
else ~/.local/state/cli-guard/audit.jsonl. Lines that are not audit records
are reported on stderr with their line number and skipped. A collector's file
(rows shipped as RFC 5424 syslog messages, one a line) reads the same, each
invocation under the machine it came from.

exit: 0 shown (--verify: intact), 1 the log can't be read, 2 usage error,
3 --verify: not intact (or no row carries the chain).
";

/// Parsed `cli-guard audit` options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct AuditArgs {
    pub filter: Filter,
    pub last: Option<usize>,
    pub json: bool,
    pub follow: bool,
    pub suggest: Option<String>,
    pub file: Option<PathBuf>,
    pub verify: bool,
}

/// Reads `cli-guard audit`'s options (`--x value` or `--x=value`); `--since`
/// counts back from `now`.
pub(super) fn parse_audit_args(args: &[OsString], now: SystemTime) -> Result<Parsed<AuditArgs>, Failure> {
    let mut out = AuditArgs::default();
    let mut parser = args::parser(args);
    while let Some(arg) = USAGE.next(&mut parser)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Long("denied") => out.filter.denied = true,
            lexopt::Arg::Long("json") => out.json = true,
            lexopt::Arg::Short('f') | lexopt::Arg::Long("follow") => out.follow = true,
            lexopt::Arg::Long("tool") => out.filter.tool = Some(USAGE.string_value(&mut parser)?),
            lexopt::Arg::Long("package") => out.filter.package = Some(USAGE.string_value(&mut parser)?),
            lexopt::Arg::Long("id") => out.filter.id = Some(USAGE.string_value(&mut parser)?),
            lexopt::Arg::Long("suggest") => out.suggest = Some(USAGE.string_value(&mut parser)?),
            lexopt::Arg::Long("verify") => out.verify = true,
            lexopt::Arg::Long("machine") => out.filter.machine = Some(USAGE.string_value(&mut parser)?),
            lexopt::Arg::Long("file" | "log") => {
                out.file = Some(PathBuf::from(USAGE.value(&mut parser)?));
            }
            lexopt::Arg::Long("since") => {
                let since = USAGE.string_value(&mut parser)?;
                out.filter.since = Some(parse_since(&since, now).map_err(|e| USAGE.error(e))?);
            }
            lexopt::Arg::Long("last") => {
                let n = USAGE.string_value(&mut parser)?;
                let n =
                    n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        USAGE.error(format_args!("--last {n:?}: expected a positive number"))
                    })?;
                out.last = Some(n);
            }
            lexopt::Arg::Value(arg) => {
                return Err(USAGE.error(format_args!(
                    "unexpected argument {arg:?}: audit takes only options"
                )))
            }
            other => return Err(USAGE.lexopt(other.unexpected())),
        }
    }
    Ok(Parsed::Args(out))
}

/// `cli-guard audit …`.
pub(super) fn audit(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let Some(args) = parse_audit_args(args, SystemTime::now())?.or_print(AUDIT_HELP, args::VERSION) else {
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
    if args.verify {
        let intact = crate::audit::verify(&path, args.filter.machine.as_deref())
            .map_err(|e| Failure::new(LOG_UNREADABLE, e))?;
        return Ok(if intact {
            Exit::SUCCESS
        } else {
            Exit::Code(NOT_INTACT)
        });
    }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};

    /// 2001-09-09T01:46:40Z: a fixed `now` for `--since 1h`.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000_000)
    }

    fn parse(args: &[&str]) -> Result<Parsed<AuditArgs>, Failure> {
        parse_audit_args(&os(args), now())
    }

    fn parsed(args: &[&str]) -> AuditArgs {
        args_of(parse(args))
    }

    /// The usage error's text, which must point at the help.
    fn error(args: &[&str]) -> String {
        let text = usage_text(parse(args));
        assert!(text.contains("see cli-guard audit --help"), "{args:?}: {text}");
        text
    }

    #[test]
    fn no_options_is_everything() {
        assert_eq!(parsed(&[]), AuditArgs::default());
    }

    #[test]
    fn every_option_with_a_separate_value() {
        let audit = parsed(&[
            "--denied",
            "--tool",
            "npm",
            "--since",
            "1h",
            "--id",
            "abc",
            "--last",
            "5",
            "--json",
            "--follow",
            "--suggest",
            "pip",
            "--file",
            "/tmp/log",
        ]);
        assert_eq!(
            audit,
            AuditArgs {
                filter: Filter {
                    denied: true,
                    tool: Some("npm".into()),
                    since: Some("2001-09-09T00:46:40.000Z".into()),
                    id: Some("abc".into()),
                    package: None,
                    machine: None,
                },
                last: Some(5),
                json: true,
                follow: true,
                suggest: Some("pip".into()),
                file: Some(PathBuf::from("/tmp/log")),
                verify: false,
            }
        );
    }

    #[test]
    fn every_option_with_equals() {
        let separate = parsed(&[
            "--tool",
            "npm",
            "--since",
            "2d",
            "--id",
            "x=y",
            "--last",
            "2",
            "--suggest",
            "aws",
            "--file",
            "f",
        ]);
        let joined = parsed(&[
            "--tool=npm",
            "--since=2d",
            "--id=x=y",
            "--last=2",
            "--suggest=aws",
            "--file=f",
        ]);
        assert_eq!(joined, separate);
        assert_eq!(
            joined.filter.id.as_deref(),
            Some("x=y"),
            "only the first = splits"
        );
    }

    #[test]
    fn verify_machine_and_log() {
        let audit = parsed(&["--verify", "--machine", "build-7", "--log", "/c/fleet.log"]);
        assert!(audit.verify);
        assert_eq!(audit.filter.machine.as_deref(), Some("build-7"));
        assert_eq!(audit.file, Some(PathBuf::from("/c/fleet.log")));
        assert_eq!(parsed(&["--log=x"]).file, parsed(&["--file", "x"]).file);
        assert!(error(&["--machine"]).contains("--machine needs a value"));
    }

    #[test]
    fn a_value_may_look_like_an_option() {
        assert_eq!(
            parsed(&["--tool", "--json"]).filter.tool.as_deref(),
            Some("--json")
        );
    }

    #[test]
    fn short_follow() {
        assert!(parsed(&["-f"]).follow);
    }

    #[test]
    fn help_in_either_form() {
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(parse(&["--json", "-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn missing_values() {
        for option in ["--tool", "--id", "--since", "--suggest", "--last", "--file"] {
            let text = error(&["--json", option]);
            assert!(text.contains(&format!("{option} needs a value")), "{text}");
        }
    }

    #[test]
    fn unknown_options_and_arguments() {
        assert!(error(&["--bogus"]).contains("unknown option \"--bogus\""));
        assert!(error(&["-x"]).contains("unknown option \"-x\""));
        assert!(error(&["npm"]).contains("unexpected argument \"npm\""));
        assert!(error(&["--denied=yes"]).contains("--denied takes no value"));
    }

    #[test]
    fn last_must_be_a_positive_number() {
        for junk in ["0", "x", "-1", "1.5", ""] {
            let text = error(&["--last", junk]);
            assert!(text.contains("expected a positive number"), "{junk:?}: {text}");
        }
        assert!(error(&["--last=0"]).contains("expected a positive number"));
    }

    #[test]
    fn since_junk_says_what_it_takes() {
        for junk in ["yesterday", "1y", "2026-11", ""] {
            let text = error(&["--since", junk]);
            assert!(
                text.contains("expected a duration like 30m, 1h"),
                "{junk:?}: {text}"
            );
        }
    }

    #[test]
    fn since_a_utc_time() {
        assert_eq!(
            parsed(&["--since", "2026-11-23T10:00Z"]).filter.since.as_deref(),
            Some("2026-11-23T10:00:00.000Z")
        );
    }

    #[test]
    fn file_may_be_non_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let path = OsString::from_vec(vec![b'/', 0xff]);
        let Ok(Parsed::Args(audit)) = parse_audit_args(&["--file".into(), path.clone()], now()) else {
            panic!("non-UTF-8 --file refused");
        };
        assert_eq!(audit.file, Some(PathBuf::from(path)));
    }
}
