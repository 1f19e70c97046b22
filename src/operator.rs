//! The operator's commands: `cli-guard audit` (read, fold, filter, follow,
//! suggest) and `cli-guard check` (what the gate would decide, without
//! dialling). The I/O edge over `report`, `render` and `suggest`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::audit;
use crate::authority::parse_authority;
use crate::exit::{Exit, Failure};
use crate::policy::{self, Decision};
use crate::render::{render, Style};
use crate::report::{parse_since, read_files, read_stream, BadLine, Fields, Filter, Folder, Invocation};
use crate::suggest::{self, Gathered};

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

pub const CHECK_HELP: &str = "\
usage: cli-guard check --as TOOL HOST[:PORT]

Prints the decision the gate would make for a CONNECT to HOST:PORT (port 443
if not given) under TOOL's pinned policy, and the rule that makes it, without
dialling. A real dial also checks where the name resolves (loopback, private
and link-local addresses are refused in enforce mode).

exit: 0 allow, 1 deny, 2 usage error.
";

/// Most skipped-line reports printed before they are only counted.
const BAD_LINE_REPORTS: u64 = 20;
/// How often `--follow` looks for new rows.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

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
pub fn audit(args: &[String]) -> Result<Exit, Failure> {
    let Some(args) = parse_audit_args(args)? else {
        print!("{AUDIT_HELP}");
        return Ok(Exit::Code(0));
    };
    let path = args
        .file
        .clone()
        .or_else(audit::default_log_path)
        .ok_or_else(|| {
            Failure::new(
                1,
                anyhow::anyhow!("no audit log path: HOME is unset; pass --file or set CLI_GUARD_AUDIT_LOG"),
            )
        })?;
    let files = audit::files_oldest_first(&path);
    if !files.iter().any(|f| f.exists()) {
        return Err(Failure::new(
            1,
            anyhow::anyhow!(
                "no audit log at {} yet (nothing guarded has run, or it logs elsewhere: set CLI_GUARD_AUDIT_LOG or pass --file)",
                path.display()
            ),
        ));
    }
    let mut bad = BadLines::default();
    if let Some(tool) = &args.suggest {
        let mut gathered = Gathered::new(tool);
        read_files(&files, |r| gathered.push(&r), |b| bad.report(b)).map_err(|e| Failure::new(1, e))?;
        bad.finish();
        print!("{}", suggest::render(&gathered));
        return Ok(Exit::Code(0));
    }
    let mut out = Output::new(&args);
    let mut folder = Folder::default();
    if args.follow {
        // The rotated files, then the live one from its first byte on, by
        // the same reader that then waits for more: no row falls between.
        let rotated = &files[..files.len() - 1];
        read_files(rotated, |r| out.take(folder.push(r)), |b| bad.report(b))
            .map_err(|e| Failure::new(1, e))?;
        return follow(&path, folder, out, bad);
    }
    read_files(&files, |r| out.take(folder.push(r)), |b| bad.report(b)).map_err(|e| Failure::new(1, e))?;
    out.take(folder.finish());
    out.flush_last();
    bad.finish();
    Ok(Exit::Code(0))
}

/// Filters and prints folded invocations (holding the last N if asked).
struct Output {
    filter: Filter,
    json: bool,
    style: Style,
    last: Option<usize>,
    held: VecDeque<Invocation>,
}

impl Output {
    fn new(args: &AuditArgs) -> Output {
        Output {
            filter: args.filter.clone(),
            json: args.json,
            style: Style::detect(),
            last: args.last,
            held: VecDeque::new(),
        }
    }

    fn take(&mut self, done: Vec<Invocation>) {
        for inv in done.into_iter().filter_map(|inv| self.filter.apply(inv)) {
            match self.last {
                Some(n) => {
                    if self.held.len() == n {
                        self.held.pop_front();
                    }
                    self.held.push_back(inv);
                }
                None => self.print(&inv),
            }
        }
    }

    /// Prints what `--last` held back; from then on, prints as it comes.
    fn flush_last(&mut self) {
        for inv in std::mem::take(&mut self.held) {
            self.print(&inv);
        }
        self.last = None;
    }

    fn print(&self, inv: &Invocation) {
        let text = if self.json {
            format!("{}\n", inv.to_json())
        } else {
            render(inv, self.style)
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) ends the output; nothing to report.
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }
}

/// Reports skipped lines on stderr, the first few in full.
#[derive(Debug, Default)]
struct BadLines {
    count: u64,
}

impl BadLines {
    fn report(&mut self, bad: BadLine) {
        self.count += 1;
        if self.count <= BAD_LINE_REPORTS {
            eprintln!("cli-guard: {bad}");
        }
    }

    fn finish(&self) {
        if self.count > BAD_LINE_REPORTS {
            eprintln!(
                "cli-guard: {} more lines skipped ({} in all)",
                self.count - BAD_LINE_REPORTS,
                self.count
            );
        }
    }
}

/// `--follow`: reads the live log from its start, then keeps reading as it
/// grows, across rotations, until interrupted. What `--last` held back is
/// printed once the live file has been read to its end.
fn follow(
    path: &std::path::Path,
    mut folder: Folder,
    mut out: Output,
    mut bad: BadLines,
) -> Result<Exit, Failure> {
    let mut tail = Tail::open(path);
    let mut caught_up = false;
    loop {
        tail.read(path, &mut |r: Fields| out.take(folder.push(r)), &mut |b| {
            bad.report(b)
        });
        if !caught_up {
            out.flush_last();
            caught_up = true;
        }
        if tail.rotated(path) {
            // Rows written to the old file just before the rename.
            tail.read(path, &mut |r: Fields| out.take(folder.push(r)), &mut |b| {
                bad.report(b)
            });
            tail = Tail::open(path);
            continue;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// The live log as `--follow` reads it: whole lines only, a row still being
/// written stays in `partial` until its newline arrives.
struct Tail {
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    line_no: u64,
}

impl Tail {
    fn open(path: &std::path::Path) -> Tail {
        let file = File::open(path).ok().and_then(|f| {
            let ino = f.metadata().ok()?.ino();
            Some((f, ino))
        });
        Tail {
            file,
            partial: Vec::new(),
            line_no: 0,
        }
    }

    /// Reads what has been appended, in bounded chunks, folding whole lines
    /// as it goes; a row still being written waits in `partial`.
    fn read(
        &mut self,
        path: &std::path::Path,
        record: &mut impl FnMut(Fields),
        bad: &mut impl FnMut(BadLine),
    ) {
        let Some((file, _)) = self.file.as_mut() else {
            *self = Tail::open(path);
            return;
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match std::io::Read::read(file, &mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Only the new bytes can hold the line end: a long line must not
            // be rescanned on every chunk.
            let newline = chunk[..n].iter().rposition(|b| *b == b'\n');
            self.partial.extend_from_slice(&chunk[..n]);
            if let Some(at) = newline {
                let end = self.partial.len() - n + at;
                let whole: Vec<u8> = self.partial.drain(..=end).collect();
                self.line_no += read_stream(path, &mut &whole[..], self.line_no, record, bad).unwrap_or(0);
            }
        }
    }

    /// Whether the path now names another file than the one being read.
    fn rotated(&self, path: &std::path::Path) -> bool {
        match &self.file {
            Some((_, ino)) => std::fs::metadata(path).is_ok_and(|m| m.ino() != *ino),
            None => false,
        }
    }
}

/// `cli-guard check --as TOOL HOST[:PORT]`.
pub fn check(args: &[String]) -> Result<Exit, Failure> {
    let mut tool = None;
    let mut target = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{CHECK_HELP}");
                return Ok(Exit::Code(0));
            }
            "--as" => tool = it.next().cloned(),
            a if a.starts_with("--as=") => tool = Some(a["--as=".len()..].to_string()),
            a if a.starts_with('-') => {
                return Err(Failure::usage(format!(
                    "check: unknown option {a:?} (see cli-guard check --help)"
                )))
            }
            a if target.is_none() => target = Some(a.to_string()),
            a => {
                return Err(Failure::usage(format!(
                    "check: unexpected argument {a:?}: one HOST[:PORT] at a time (see cli-guard check --help)"
                )))
            }
        }
    }
    let (Some(tool), Some(target)) = (tool, target) else {
        return Err(Failure::usage(
            "check: usage: cli-guard check --as TOOL HOST[:PORT]",
        ));
    };
    let policy = policy::lookup(&tool).ok_or_else(|| {
        let known: Vec<&str> = policy::tool_names().collect();
        Failure::usage(format!(
            "check: unknown tool {tool:?}; known: {}",
            known.join(", ")
        ))
    })?;
    let with_port = if target.starts_with('[') && target.ends_with(']') || !target.contains(':') {
        format!("{target}:443")
    } else {
        target.clone()
    };
    let authority = match parse_authority(&with_port) {
        Ok(authority) => authority,
        Err(e) => {
            println!("deny  {target}: not a valid target ({e}); the gate would answer 400");
            return Ok(Exit::Code(1));
        }
    };
    let decision = policy.decide(&authority);
    let line = match &decision {
        Decision::Allowed(rule) => format!("allow {authority}: {tool}'s rule {rule} (enforce mode)"),
        Decision::Observed => format!("allow {authority}: {tool} is in observe mode: forwarded and logged"),
        Decision::NotAllowed => format!(
            "deny  {authority}: not on {tool}'s allowlist ({}); the gate would answer 403",
            policy.allowlist_summary()
        ),
    };
    println!("{line}");
    Ok(Exit::Code(if decision.is_allow() { 0 } else { 1 }))
}
