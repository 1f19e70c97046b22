//! `cli-guard audit --verify`: walks a log's chain (its files oldest
//! first), or each machine's chain in a collector's file, and says what
//! was changed, inserted or removed, and how far it is intact.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::audit::chain::{Place, Report, Walk, Walks};
use crate::audit::files_oldest_first;
use crate::audit::show::ShowError;
use crate::ship::syslog;

/// What a file turned out to be, by its first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Undecided,
    /// A local log: every line is in the chain.
    Local,
    /// A collector's file: one chain per machine; other lines are
    /// someone else's.
    Collector,
}

/// Verifies the log at `path` (with its rotated files), or the collector's
/// file there; only `machine`'s rows when given. Prints the report on
/// stdout; `Ok(true)` when every chain is intact.
pub(crate) fn verify(path: &Path, machine: Option<&str>) -> Result<bool, ShowError> {
    let files = files_oldest_first(path);
    if !files.iter().any(|f| f.exists()) {
        return Err(ShowError::NoLog(path.to_path_buf()));
    }
    let mut kind = Kind::Undecided;
    let mut local = Walk::new(false);
    let mut fleet = Walks::default();
    let mut before = 0u64;
    for (index, file) in files.iter().enumerate() {
        let opened = match File::open(file) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ShowError::Read(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.display()),
                )))
            }
        };
        let mut reader = BufReader::with_capacity(64 * 1024, opened);
        let mut line = Vec::with_capacity(512);
        let mut number = 0u64;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(|e| {
                ShowError::Read(std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))
            })?;
            if read == 0 {
                break;
            }
            number += 1;
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            let place = Place {
                file: index,
                line: number,
            };
            if kind == Kind::Undecided {
                if content.starts_with(b"{") {
                    kind = Kind::Local;
                } else if syslog::unwrap(content).is_some() {
                    kind = Kind::Collector;
                } else {
                    before += 1;
                    continue;
                }
            }
            match kind {
                Kind::Collector => {
                    if let Some((from, row)) = syslog::unwrap(content) {
                        if machine.is_none_or(|m| m == from) {
                            fleet.line(from, place, row);
                        }
                    }
                }
                _ => local.line(place, content),
            }
        }
    }
    let name = |place: Place| {
        let file = files.get(place.file).map_or_else(PathBuf::new, Clone::clone);
        format!("{}:{}", file.display(), place.line)
    };
    let mut out = String::new();
    let intact = match kind {
        Kind::Collector => {
            let reports = fleet.finish();
            out.push_str(&format!(
                "{}: a collector's file: {} machine{}\n",
                path.display(),
                reports.len(),
                if reports.len() == 1 { "" } else { "s" }
            ));
            if reports.is_empty() {
                out.push_str(&format!(
                    "  no row of {} in it\n",
                    machine.unwrap_or("any machine")
                ));
            }
            for (machine, report) in &reports {
                out.push_str(&format!("  {machine}: {}", describe(report, &name, "    ")));
            }
            !reports.is_empty() && reports.iter().all(|(_, r)| r.intact())
        }
        _ => {
            let mut report = local.finish();
            report.unchained_before += before;
            out.push_str(&format!("{}: {}", path.display(), describe(&report, &name, "  ")));
            report.intact()
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
    Ok(intact)
}

/// One chain's report: a line saying whether it is intact, then the
/// findings, each on a line of its own under `indent`.
fn describe(report: &Report, name: &dyn Fn(Place) -> String, indent: &str) -> String {
    let mut out = String::new();
    let older = match report.unchained_before {
        0 => String::new(),
        n => format!(
            "; {n} line{} before the chain (written before cli-guard chained its rows, read as before, not verifiable)",
            if n == 1 { "" } else { "s" }
        ),
    };
    let redelivered = match report.redelivered {
        0 => String::new(),
        n => format!(
            "; {n} row{} delivered twice, counted once",
            if n == 1 { "" } else { "s" }
        ),
    };
    let torn = match report.torn {
        0 => String::new(),
        n => format!(
            "; {n} torn row{} (skipped when read) chained",
            if n == 1 { "" } else { "s" }
        ),
    };
    let (Some((first_at, first_seq)), Some((last_at, last_seq))) = (report.first, report.last) else {
        out.push_str(&format!(
            "unchained: no row carries the chain, nothing to verify{older}\n"
        ));
        return out;
    };
    let begins = if first_seq > 1 {
        format!(" (the rows before seq {first_seq} were rotated away, not shipped here, or removed)")
    } else {
        String::new()
    };
    if report.intact() {
        out.push_str(&format!(
            "intact: {} rows chained, seq {first_seq} at {} to seq {last_seq} at {}{begins}{older}{redelivered}{torn}\n",
            report.chained,
            name(first_at),
            name(last_at)
        ));
        return out;
    }
    let count = report.findings.len() as u64 + report.more_findings;
    out.push_str(&format!(
        "NOT intact: {count} finding{}{older}{redelivered}{torn}\n",
        if count == 1 { "" } else { "s" }
    ));
    match report.intact_through {
        Some((at, seq)) => out.push_str(&format!(
            "{indent}intact from seq {first_seq} at {} through seq {seq} at {}{begins}\n",
            name(first_at),
            name(at)
        )),
        None => out.push_str(&format!(
            "{indent}intact nowhere: the first chained row is not as written\n"
        )),
    }
    if let Some(first) = report.findings.first() {
        out.push_str(&format!("{indent}first: {}\n", first.describe(name)));
    }
    for finding in report.findings.iter().skip(1) {
        out.push_str(&format!("{indent}{}\n", finding.describe(name)));
    }
    if report.more_findings > 0 {
        out.push_str(&format!("{indent}and {} more\n", report.more_findings));
    }
    out
}
