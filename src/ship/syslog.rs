//! Rows as syslog messages, and back: RFC 5424 with RFC 6587's octet
//! counting for the wire, and the lines a collector writes to its files
//! (rsyslog's RFC 5424 template, and its file formats) read back into the
//! machine they came from and the row. Pure.
//!
//! A row is shipped as
//!
//! ```text
//! LEN <PRI>1 TIMESTAMP HOSTNAME cli-guard AUDIT_ID KIND - ROW
//! ```
//!
//! with PRI facility 13 (log audit), severity 4 (warning) for a refusal and
//! 6 (informational) otherwise; TIMESTAMP the row's `ts`; HOSTNAME the
//! machine's name; PROCID the audit ID (what identifies an invocation, as
//! a process ID would); MSGID the row's kind; no structured data; and the
//! message the row's bytes exactly as the log has them, link included, so
//! that the collector's copy verifies like the log.

/// The APP-NAME rows are shipped under.
pub(crate) const APP_NAME: &str = "cli-guard";
/// RFC 5424's facility 13: log audit.
const FACILITY: u8 = 13;

use crate::audit::RowHead as Head;

/// A header field as RFC 5424 allows it: 1 to `max` printable ASCII
/// characters, else the NILVALUE `-`.
fn field(value: &str, max: usize) -> &str {
    if (1..=max).contains(&value.len()) && value.bytes().all(|b| (33..=126).contains(&b)) {
        value
    } else {
        "-"
    }
}

/// Whether `ts` is the log's timestamp form (RFC 3339 UTC), which is also
/// an RFC 5424 TIMESTAMP.
fn is_timestamp(ts: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    ts.len() == shape.len()
        && ts
            .bytes()
            .zip(shape.bytes())
            .all(|(c, s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
}

/// One row (without its newline) as an octet-counted RFC 5424 frame.
pub(crate) fn frame(row: &[u8], machine: &str, head: Option<&Head>) -> Vec<u8> {
    let severity = if head.is_some_and(|h| h.denied) { 4 } else { 6 };
    let ts = head
        .map(|h| h.ts.as_str())
        .filter(|ts| is_timestamp(ts))
        .unwrap_or("-");
    let procid = head.map_or("-", |h| field(&h.audit_id, 128));
    let msgid = head.map_or("-", |h| field(h.kind, 32));
    let mut message = format!(
        "<{}>1 {ts} {} {APP_NAME} {procid} {msgid} - ",
        FACILITY * 8 + severity,
        field(machine, 255)
    )
    .into_bytes();
    message.extend_from_slice(row);
    let mut out = format!("{} ", message.len()).into_bytes();
    out.append(&mut message);
    out
}

/// A machine's name as HOSTNAME takes it: printable ASCII, at most 255
/// characters (anything else becomes `-`).
pub(crate) fn machine_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .take(255)
        .map(|c| if (33..=126).contains(&(c as u32)) { c } else { '-' })
        .collect();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name
    }
}

/// The word at the start of `line` and what follows its space.
fn word(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = line.iter().position(|b| *b == b' ')?;
    Some((&line[..end], &line[end + 1..]))
}

/// Skips RFC 5424 STRUCTURED-DATA: `-`, or `[...]` elements (quoted
/// values may hold `]` escaped).
fn skip_structured_data(line: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = line.strip_prefix(b"- ") {
        return Some(rest);
    }
    let mut i = 0;
    while line.get(i) == Some(&b'[') {
        let mut quoted = false;
        let mut escaped = false;
        i += 1;
        loop {
            let b = *line.get(i)?;
            i += 1;
            match (b, quoted, escaped) {
                (_, _, true) => escaped = false,
                (b'\\', true, false) => escaped = true,
                (b'"', _, false) => quoted = !quoted,
                (b']', false, false) => break,
                _ => {}
            }
        }
    }
    (i > 0 && line.get(i) == Some(&b' ')).then(|| &line[i + 1..])
}

/// A line of a collector's file read back: the machine it came from and
/// the row, if it is a cli-guard row a collector wrote. `None` for
/// anything else (a bare row of a local log among them).
///
/// Read: RFC 5424 lines (`<PRI>1 TIMESTAMP HOSTNAME cli-guard …`, rsyslog's
/// `RSYSLOG_SyslogProtocol23Format`), and the file formats that put the tag
/// after the host (`TIMESTAMP HOSTNAME cli-guard[AUDIT_ID]: MSG`:
/// rsyslog's `RSYSLOG_FileFormat` and `RSYSLOG_TraditionalFileFormat`).
pub(crate) fn unwrap(line: &[u8]) -> Option<(&str, &[u8])> {
    let (machine, row) = match line.first() {
        Some(b'<') => rfc5424(line)?,
        Some(b'{') | None => return None,
        Some(_) => file_format(line)?,
    };
    let machine = std::str::from_utf8(machine).ok().filter(|m| !m.is_empty())?;
    row.starts_with(b"{").then_some((machine, row))
}

fn rfc5424(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = line.iter().position(|b| *b == b'>')?;
    let rest = line[close + 1..].strip_prefix(b"1 ")?;
    let (_ts, rest) = word(rest)?;
    let (host, rest) = word(rest)?;
    let (app, rest) = word(rest)?;
    let (_procid, rest) = word(rest)?;
    let (_msgid, rest) = word(rest)?;
    let msg = skip_structured_data(rest)?;
    // An optional BOM before a UTF-8 message (RFC 5424 §6.4).
    let msg = msg.strip_prefix("\u{feff}".as_bytes()).unwrap_or(msg);
    (app == APP_NAME.as_bytes()).then_some((host, msg))
}

fn file_format(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let tag = format!(" {APP_NAME}[");
    let at = line.windows(tag.len()).position(|w| w == tag.as_bytes())?;
    let host_start = line[..at].iter().rposition(|b| *b == b' ').map_or(0, |i| i + 1);
    let host = &line[host_start..at];
    let after = &line[at + tag.len()..];
    let close = after.iter().position(|b| *b == b']')?;
    let rest = &after[close + 1..];
    let rest = rest.strip_prefix(b":").unwrap_or(rest);
    Some((host, rest.strip_prefix(b" ")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &[u8] = br#"{"seq":3,"prev_sha256":null,"ts":"2026-11-24T00:20:47.801Z","kind":"egress","audit_id":"01a20aed3530-b308c99cf602b65a8cfcbb5e62f1eb46","decision":"deny"}"#;

    fn head(denied: bool) -> Head {
        Head {
            ts: "2026-11-24T00:20:47.801Z".into(),
            audit_id: "01a20aed3530-b308c99cf602b65a8cfcbb5e62f1eb46".into(),
            kind: "egress",
            denied,
        }
    }

    /// RFC 6587's octet counting, read back: the length, a space, that
    /// many bytes.
    fn deframe(frame: &[u8]) -> &[u8] {
        let space = frame.iter().position(|b| *b == b' ').unwrap_or(0);
        let len: usize = std::str::from_utf8(&frame[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert_eq!(frame.len() - space - 1, len, "the count is the message's length");
        &frame[space + 1..]
    }

    #[test]
    fn a_row_is_one_octet_counted_rfc5424_message() {
        let frame = frame(ROW, "laptop-1", Some(&head(true)));
        let message = deframe(&frame);
        let want = [
            &b"<108>1 2026-11-24T00:20:47.801Z laptop-1 cli-guard 01a20aed3530-b308c99cf602b65a8cfcbb5e62f1eb46 egress - "[..],
            ROW,
        ]
        .concat();
        assert_eq!(String::from_utf8_lossy(message), String::from_utf8_lossy(&want));
        // Informational when not a refusal.
        assert!(deframe(&super::frame(ROW, "m", Some(&head(false)))).starts_with(b"<110>1 "));
    }

    #[test]
    fn header_fields_that_rfc5424_would_refuse_are_nil() {
        let odd = Head {
            ts: "yesterday".into(),
            audit_id: "has space".into(),
            kind: "end",
            denied: false,
        };
        let message = deframe(&frame(b"{}", "m", Some(&odd))).to_vec();
        assert_eq!(message, b"<110>1 - m cli-guard - end - {}");
        assert_eq!(
            deframe(&frame(b"{}", "m", None)),
            b"<110>1 - m cli-guard - - - {}"
        );
        assert_eq!(machine_name("a b\u{e9}c"), "a-b-c");
        assert_eq!(machine_name(""), "unknown-host");
        assert_eq!(machine_name(&"x".repeat(300)).len(), 255);
    }

    #[test]
    fn a_collectors_lines_read_back_to_machine_and_row() {
        let id = "01a20aed3530-b308c99cf602b65a8cfcbb5e62f1eb46";
        let row = std::str::from_utf8(ROW).unwrap_or_default();
        for line in [
            // RSYSLOG_SyslogProtocol23Format
            format!("<108>1 2026-11-24T00:20:47.801Z laptop-1 cli-guard {id} egress - {row}"),
            // Structured data a relay added.
            format!(
                "<108>1 2026-11-24T00:20:47.801Z laptop-1 cli-guard {id} egress [x@1 a=\"]\\\"\"][y@2] {row}"
            ),
            // RSYSLOG_FileFormat
            format!("2026-11-24T00:20:47.801+00:00 laptop-1 cli-guard[{id}] {row}"),
            format!("2026-11-24T00:20:47.801+00:00 laptop-1 cli-guard[{id}]: {row}"),
            // RSYSLOG_TraditionalFileFormat
            format!("Nov  4 00:20:47 laptop-1 cli-guard[{id}]: {row}"),
        ] {
            assert_eq!(unwrap(line.as_bytes()), Some(("laptop-1", ROW)), "{line}");
        }
        for line in [
            ROW,
            b"",
            b"<13>1 2026-11-24T00:20:47.801Z laptop-1 sshd 77 - - {\"x\":1}",
            b"<13>1 2026-11-24T00:20:47.801Z laptop-1 cli-guard 77 - - not json",
            b"Nov  4 00:20:47 laptop-1 sudo: {\"x\":1}",
            b"<108>1 truncated",
        ] {
            assert_eq!(unwrap(line), None, "{}", String::from_utf8_lossy(line));
        }
    }
}
