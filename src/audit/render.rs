//! Human output for `cli-guard audit`: one line per invocation, its egress
//! rows under it, nested invocations indented beneath their parent. A
//! fetch-and-run is one entry: its line, then the fetch phase and the run
//! phase, each with its own rows.
//!
//! Columns have fixed widths so that output streams (and `--follow`s)
//! aligned without a second pass. Colour only on a terminal, and never when
//! NO_COLOR is set (https://no-color.org).

use std::fmt::Write as _;

use crate::audit::fold::{Invocation, Tunnel};

/// Longest command line shown before it is shortened.
const CMD_WIDTH: usize = 60;
/// Longest reason shown on an egress line.
const REASON_WIDTH: usize = 100;

/// `text` safe for a terminal: control characters (escape sequences,
/// carriage returns) are shown escaped, so a logged argv or reason cannot
/// move the cursor or erase the lines around it.
pub(super) fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether to colour, decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Style {
    pub colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and NO_COLOR is unset or empty.
    pub(super) fn detect(no_color: bool) -> Style {
        use std::io::IsTerminal;
        Style {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Renders one folded invocation (and its children) as text lines.
pub(super) fn render(inv: &Invocation, style: Style) -> String {
    let mut out = String::new();
    render_at(inv, 0, style, &mut out);
    out
}

fn render_at(inv: &Invocation, depth: usize, style: Style, out: &mut String) {
    let indent = "    ".repeat(depth);
    let branch = if depth > 0 { "└ " } else { "" };
    let (allowed, denied) = inv.counts();
    let outcome = outcome(inv);
    let outcome_cell = format!("{outcome:<9}");
    let outcome_cell = if outcome == "exit 0" {
        outcome_cell
    } else {
        style.paint("31", &outcome_cell)
    };
    let denied_cell = format!("{denied:>3} denied");
    let denied_cell = if denied > 0 {
        style.paint("31;1", &denied_cell)
    } else {
        denied_cell
    };
    // A collector's file: each entry names its machine, after the time.
    let machine = inv
        .machine
        .as_deref()
        .map_or(String::new(), |m| format!("{:<12} ", clean(m)));
    let _ = writeln!(
        out,
        "{indent}{branch}{}  {machine}{:<9} {:<7} {outcome_cell} {:>8}  {allowed:>3} allowed {denied_cell}  {}  {}",
        display_time(inv.entry_ts()),
        clean(inv.tool()),
        mode(inv),
        entry_duration(inv).map_or("-".to_string(), duration),
        clean(&inv.audit_id),
        command_line(inv),
    );
    let row_indent = format!("{indent}{}", if depth > 0 { "      " } else { "    " });
    match &inv.fetch {
        Some(fetch) => {
            // The pair: the fetch, then the run, each line with its rows.
            let phase_rows = format!("{row_indent}    ");
            let _ = writeln!(
                out,
                "{row_indent}fetched under {}: {}",
                clean(&fetch.audit_id),
                phase_summary(fetch)
            );
            for row in &fetch.egress {
                out.push_str(&egress_line(row, &phase_rows, style));
            }
            for child in &fetch.children {
                render_at(child, depth + 1, style, out);
            }
            let _ = writeln!(out, "{row_indent}ran {}: {}", program(inv), phase_summary(inv));
            for row in &inv.egress {
                out.push_str(&egress_line(row, &phase_rows, style));
            }
        }
        None => {
            if let Some(note) = phase_note(inv) {
                let _ = writeln!(out, "{row_indent}{note}");
            }
            for row in &inv.egress {
                out.push_str(&egress_line(row, &row_indent, style));
            }
        }
    }
    for child in &inv.children {
        render_at(child, depth + 1, style, out);
    }
}

fn mode(inv: &Invocation) -> String {
    inv.start
        .as_ref()
        .and_then(|s| s.mode)
        .map_or("?".to_string(), |m| m.to_string())
}

/// The entry's time: its fetch phase's and its own, added.
fn entry_duration(inv: &Invocation) -> Option<u64> {
    let own = |inv: &Invocation| inv.end.as_ref().and_then(|e| e.record.duration_ms);
    match &inv.fetch {
        Some(fetch) => Some(own(fetch)?.saturating_add(own(inv)?)),
        None => own(inv),
    }
}

/// One phase in a word each: its mode, isolation, outcome, time and rows.
fn phase_summary(inv: &Invocation) -> String {
    let isolation = inv
        .start
        .as_ref()
        .and_then(|s| s.isolation.as_deref())
        .map_or("?".to_string(), clean);
    let time = inv
        .end
        .as_ref()
        .and_then(|e| e.record.duration_ms)
        .map_or("-".to_string(), duration);
    let (allowed, denied) = (
        inv.egress.len() - inv.egress.iter().filter(|e| e.denied()).count(),
        inv.egress.iter().filter(|e| e.denied()).count(),
    );
    format!(
        "{}, isolation {isolation}, {}, {time}, {allowed} allowed, {denied} denied",
        mode(inv),
        outcome(inv)
    )
}

/// The package a run phase ran, as its start row names it.
fn program(inv: &Invocation) -> String {
    match inv.start.as_ref().and_then(|s| s.package.as_ref()) {
        Some(package) => clean(&package.to_string()),
        None => "the program (its package was not named)".to_string(),
    }
}

/// What a fetch-and-run phase that is not in a pair says about itself.
fn phase_note(inv: &Invocation) -> Option<String> {
    let start = inv.start.as_ref()?;
    let note = match start.phase.as_deref()? {
        "fetch" if outcome(inv) == "exit 0" || outcome(inv) == "running?" => {
            "fetch phase (its run phase did not start, or is not in this log)".to_string()
        }
        "fetch" => "fetch phase: it failed, so the run phase did not start".to_string(),
        "run" => match &start.fetch_audit_id {
            Some(fetch) => format!(
                "ran {} (its fetch phase {} is not in this log)",
                program(inv),
                clean(fetch)
            ),
            None => format!("ran {}, already installed: nothing was fetched", program(inv)),
        },
        other => format!(
            "{}: {}",
            clean(other),
            clean(start.isolation_reason.as_deref().unwrap_or(""))
        ),
    };
    Some(note)
}

fn egress_line(tunnel: &Tunnel, indent: &str, style: Style) -> String {
    let request = tunnel.request();
    let close = tunnel.close();
    let deny = tunnel.denied();
    let decision = if deny {
        style.paint("31", "deny ")
    } else {
        style.paint("32", "allow")
    };
    let status = request.map_or(0, |r| r.status);
    let target = match (
        request.and_then(|r| r.host.as_deref()),
        request.and_then(|r| r.port),
    ) {
        (Some(host), Some(port)) if host.contains(':') => format!("[{}]:{port}", clean(host)),
        (Some(host), Some(port)) => format!("{}:{port}", clean(host)),
        // A DNS query names a host and no port: the name it asked for.
        (Some(host), None) => clean(host),
        (None, _) => match request.and_then(|r| r.method.as_deref()) {
            Some("unix") => "(a unix socket)".to_string(),
            _ => "(no target)".to_string(),
        },
    };
    // Only a tunnel that opened has bytes and a duration to show.
    let traffic = match close {
        Some(close) => format!(
            "{:>9} up {:>9} down {:>8}",
            size(close.bytes_up),
            size(close.bytes_down),
            close.duration_ms.map_or("-".to_string(), duration)
        ),
        None => " ".repeat(36),
    };
    // What needs saying: why it was refused or failed, or how a tunnel ended badly.
    let by = request
        .and_then(|r| r.process.as_deref())
        .and_then(crate::who::package_code_label);
    let note = if deny || status != 200 {
        request.map_or(String::new(), |r| r.reason.clone())
    } else {
        let error = close.and_then(|c| c.error.as_deref()).unwrap_or("");
        match &by {
            // An allowed row of a package's own code (its pinned entry).
            Some(by) if error.is_empty() => format!("by {by}"),
            Some(by) => format!("by {by}: {error}"),
            None => error.to_string(),
        }
    };
    let line = format!(
        "{indent}{decision} {status:>3}  {target:<40} {traffic}  {}",
        shorten(&clean(&note), REASON_WIDTH)
    );
    format!("{}\n", line.trim_end())
}

/// `exit N`, the signal's name, or `running?` when there is no end row.
fn outcome(inv: &Invocation) -> String {
    let end = inv.end.as_ref().map(|e| &e.record);
    match (
        end.and_then(|e| e.exit_code),
        end.and_then(|e| e.signal.as_deref()),
    ) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => clean(sig),
        (None, None) if inv.end.is_some() => "ended".to_string(),
        (None, None) => "running?".to_string(),
    }
}

/// `2026-11-24T00:20:47.123Z` → `2026-11-24 00:20:47Z`.
fn display_time(ts: &str) -> String {
    match ts.get(..19) {
        Some(head) => format!("{}Z", head.replacen('T', " ", 1)),
        None => format!("{ts:<20}"),
    }
}

/// The command as typed, shortened.
fn command_line(inv: &Invocation) -> String {
    let words: Vec<String> = inv
        .start
        .iter()
        .flat_map(|s| &s.argv)
        .map(|word| shell_word(word))
        .collect();
    if words.is_empty() {
        return "(no start row: rotated away?)".to_string();
    }
    shorten(&words.join(" "), CMD_WIDTH)
}

fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", clean(&word.replace('\'', "'\\''")))
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Bytes as B, KiB, MiB or GiB.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds as `135 ms`, `1.2 s` or `3.5 min`.
pub(super) fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(duration(135), "135 ms");
        assert_eq!(duration(1234), "1.2 s");
        assert_eq!(duration(90_000), "1.5 min");
    }

    #[test]
    fn shell_words_and_shortening() {
        assert_eq!(shell_word("install"), "install");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(display_time("2026-11-24T00:20:47.123Z"), "2026-11-24 00:20:47Z");
    }

    #[test]
    fn a_dns_row_shows_the_name_it_asked_for_and_a_unix_row_says_so() {
        use crate::audit::fold::Stamped;
        use crate::audit::record::Egress;
        let line = |method: &str, host: Option<&str>| {
            let tunnel = Tunnel::Request {
                request: Stamped {
                    ts: "2026-12-07T00:00:00.000Z".into(),
                    record: Egress {
                        method: Some(method.into()),
                        host: host.map(str::to_string),
                        port: None,
                        status: 403,
                        decision: Some(crate::policy::Verdict::Deny),
                        ..Egress::default()
                    },
                },
                close: None,
            };
            egress_line(&tunnel, "", Style { colour: false })
        };
        let dns = line("dns", Some("evil.example"));
        assert!(
            dns.contains("evil.example") && !dns.contains("no target"),
            "{dns}"
        );
        let unix = line("unix", None);
        assert!(unix.contains("(a unix socket)"), "{unix}");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("\u{1b}[1A\u{1b}[2K\rgone"), "\\u{1b}[1A\\u{1b}[2K\\rgone");
        assert!(!shell_word("\u{1b}[2Kx").contains('\u{1b}'));
    }

    #[test]
    fn a_fetch_and_run_pair_shows_both_phases_under_one_line() {
        use crate::audit::fold::Folder;
        let rows = [
            r#"{"ts":"2026-11-24T00:00:00.000Z","kind":"start","audit_id":"f","tool":"npx","mode":"enforce","argv":["npx","-y","netcli"],"isolation":"netns","phase":"fetch"}"#,
            r#"{"ts":"2026-11-24T00:00:00.500Z","kind":"egress","audit_id":"f","conn":1,"tool":"npx","mode":"enforce","method":"CONNECT","host":"pypi.org","port":443,"decision":"deny","status":403,"reason":"not on npx's allowlist"}"#,
            r#"{"ts":"2026-11-24T00:00:01.000Z","kind":"end","audit_id":"f","exit_code":0,"duration_ms":1000}"#,
            r#"{"ts":"2026-11-24T00:00:01.100Z","kind":"start","audit_id":"r","tool":"npx","mode":"observe","argv":["npx","-y","netcli"],"isolation":"none","phase":"run","fetch_audit_id":"f","package":{"name":"netcli","version":"1.0.0"}}"#,
            r#"{"ts":"2026-11-24T00:00:01.500Z","kind":"egress","audit_id":"r","conn":1,"tool":"npx","mode":"observe","method":"CONNECT","host":"pypi.org","port":443,"decision":"allow","status":200,"reason":"observe mode"}"#,
            r#"{"ts":"2026-11-24T00:00:02.000Z","kind":"end","audit_id":"r","exit_code":0,"duration_ms":900}"#,
        ];
        let mut folder = Folder::default();
        let mut done = Vec::new();
        for row in rows {
            done.extend(
                folder
                    .push(crate::audit::record::parse_line(row.as_bytes()).unwrap_or_else(|e| panic!("{e}"))),
            );
        }
        let text = render(&done[0], Style { colour: false });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("2026-11-24 00:00:00Z  npx       observe exit 0       1.9 s    1 allowed   1 denied  r  npx -y netcli"), "{text}");
        assert_eq!(
            lines[1],
            "    fetched under f: enforce, isolation netns, exit 0, 1.0 s, 0 allowed, 1 denied"
        );
        assert!(
            lines[2].starts_with("        deny  403  pypi.org:443")
                && lines[2].ends_with("not on npx's allowlist"),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "    ran netcli@1.0.0: observe, isolation none, exit 0, 900 ms, 1 allowed, 0 denied"
        );
        assert!(lines[4].starts_with("        allow 200  pypi.org:443"), "{text}");
    }

    #[test]
    fn no_colour_means_no_escape_codes() {
        let plain = Style { colour: false };
        assert_eq!(plain.paint("31", "deny"), "deny");
        let coloured = Style { colour: true };
        assert_eq!(coloured.paint("31", "deny"), "\x1b[31mdeny\x1b[0m");
    }
}
