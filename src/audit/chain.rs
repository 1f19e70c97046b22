//! The hash chain that shows when a log was changed: each row's link to
//! the row before it, as the writer adds it, and the walk that checks it
//! (`cli-guard audit --verify`). Pure: bytes in, links and findings out.
//!
//! A chained row begins with its link, then the row as serialised:
//!
//! ```text
//! {"seq":12,"prev_sha256":"9f86d0…","ts":"2026-11-24T00:20:47.801Z","kind":"egress",…}
//! ```
//!
//! `seq` counts the log's rows from its first chained row (1) on, across
//! rotations; `prev_sha256` is the SHA-256, in lowercase hex, of the line
//! before it exactly as it is in the file (its bytes without the newline),
//! `null` only on the first line a log ever had. The chain is over the
//! bytes as written, never over fields read back and serialised again, so
//! a field added to a row later changes nothing here, and a collector's
//! copy of a row (the same bytes as the syslog message) checks the same.
//!
//! What it shows: a row changed, inserted or removed by anything that does
//! not also rewrite every row after it. It holds no secret (the writer is
//! the user's own process, and so is anything that could rewrite the
//! log), so a rewrite of the whole rest of the chain is consistent; what
//! catches that is the copy already shipped, which the rewrite cannot
//! reach (see `crate::ship`).

use std::collections::{HashMap, HashSet, VecDeque};

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

/// What a chained row begins with.
const SEQ_OPEN: &[u8] = b"{\"seq\":";
const PREV_KEY: &[u8] = b",\"prev_sha256\":";

/// A row's place in its log's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub seq: u64,
    /// The previous line's digest; `None` for the log's first line.
    pub prev: Option<Digest>,
}

/// The SHA-256 of `line` (without its newline).
pub(crate) fn sha256(line: &[u8]) -> Digest {
    let digest = ring::digest::digest(&ring::digest::SHA256, line);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `digest` in lowercase hex.
pub(crate) fn hex(digest: &Digest) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The row `row` (a JSON object, newline included) with `link` put first.
/// Anything that is not an object is returned as it is (the walk then
/// reports it as carrying no link).
pub(crate) fn chained(row: &[u8], link: Link) -> Vec<u8> {
    let Some(rest) = row.strip_prefix(b"{").filter(|r| r.first() != Some(&b'}')) else {
        return row.to_vec();
    };
    let prev = link
        .prev
        .map_or_else(|| "null".to_string(), |d| format!("\"{}\"", hex(&d)));
    let mut out = Vec::with_capacity(row.len() + 96);
    out.extend_from_slice(SEQ_OPEN);
    out.extend_from_slice(link.seq.to_string().as_bytes());
    out.extend_from_slice(PREV_KEY);
    out.extend_from_slice(prev.as_bytes());
    out.push(b',');
    out.extend_from_slice(rest);
    out
}

/// The link a line begins with, read from its first bytes alone (so a
/// torn row still gives it), if it has one.
pub(crate) fn link_of(line: &[u8]) -> Option<Link> {
    let rest = line.strip_prefix(SEQ_OPEN)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(PREV_KEY)?;
    let (prev, rest) = match rest.strip_prefix(b"null") {
        Some(rest) => (None, rest),
        None => {
            let quoted = rest.get(..66)?;
            let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
            (Some(unhex(inner)?), &rest[66..])
        }
    };
    (rest.first() == Some(&b',') && seq > 0).then_some(Link { seq, prev })
}

fn unhex(text: &[u8]) -> Option<Digest> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The log's end as the writer read it: the last line's digest and its
/// first bytes (where a link is), and the lines before it, newest last, as
/// far back as the writer looked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End<'a> {
    pub digest: Digest,
    pub head: &'a [u8],
    pub earlier: &'a [&'a [u8]],
}

/// How many of a line's first bytes hold its link.
pub(crate) const HEAD: usize = 128;

/// The link of the next row after `end` (`None`: an empty log). After a
/// last line without a link (a torn row, rows from before the chain), the
/// count goes on from the nearest earlier line with one, each line between
/// counting one; with none, a chain begins at 1, linked to whatever line
/// is last.
pub(crate) fn next_link(end: Option<End<'_>>) -> Link {
    let Some(end) = end else {
        return Link { seq: 1, prev: None };
    };
    let from_linked = link_of(end.head).map(|l| l.seq.saturating_add(1)).or_else(|| {
        end.earlier
            .iter()
            .rev()
            .enumerate()
            .find_map(|(back, line)| link_of(line).map(|l| l.seq.saturating_add(back as u64 + 2)))
    });
    Link {
        seq: from_linked.unwrap_or(1),
        prev: Some(end.digest),
    }
}

/// [`next_link`] after `lines` (newest last), all of them at hand.
#[cfg(test)]
fn next_link_after(lines: &[&[u8]]) -> Link {
    match lines.split_last() {
        None => next_link(None),
        Some((last, earlier)) => next_link(Some(End {
            digest: sha256(last),
            head: &last[..last.len().min(HEAD)],
            earlier,
        })),
    }
}

/// Where a line is: the index of its file in the caller's list, and its
/// line number there (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub file: usize,
    pub line: u64,
}

/// What the walk found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The row at `at` is not as written: the row after it recorded other
    /// bytes for it.
    Changed { at: Place, seq: u64 },
    /// The line at `at` was put there afterwards: the rows around it link
    /// to each other, or it carries no link amid chained rows.
    Inserted { at: Place },
    /// Rows `from..=to` are missing between `after` and `before`.
    Removed {
        after: Place,
        before: Place,
        from: u64,
        to: u64,
    },
    /// The chain starts over (seq 1) at `at`, amid a log: what was before
    /// it is another log's, or the log was cut there.
    Restarted { at: Place },
    /// The row at `at` does not follow the row before it, and the counts
    /// do not say how (both changed, say).
    Broken { at: Place, seq: u64 },
}

impl Finding {
    /// Where the finding is named.
    pub(crate) fn place(&self) -> Place {
        match self {
            Finding::Changed { at, .. }
            | Finding::Inserted { at }
            | Finding::Restarted { at }
            | Finding::Broken { at, .. } => *at,
            Finding::Removed { before, .. } => *before,
        }
    }

    /// The finding in words, with `name` turning a place into text.
    pub(crate) fn describe(&self, name: &dyn Fn(Place) -> String) -> String {
        match self {
            Finding::Changed { at, seq } => format!(
                "{} (seq {seq}) was changed: the row after it recorded other bytes for it",
                name(*at)
            ),
            Finding::Inserted { at } => format!(
                "{} was inserted: it is not in the chain (the rows around it link to each other, or it carries no link)",
                name(*at)
            ),
            Finding::Removed { after, before, from, to } => {
                let rows = if from == to {
                    format!("row seq {from} was")
                } else {
                    format!("rows seq {from} to {to} ({} rows) were", to - from + 1)
                };
                format!("{rows} removed between {} and {}", name(*after), name(*before))
            }
            Finding::Restarted { at } => format!(
                "{} starts the chain over (seq 1): the rows before it are another log's, or the log was cut there",
                name(*at)
            ),
            Finding::Broken { at, seq } => format!(
                "{} (seq {seq}) does not follow the row before it: changed, or rows around it were",
                name(*at)
            ),
        }
    }
}

/// Most findings kept; past this they are only counted.
const MAX_FINDINGS: usize = 1000;
/// How many recent rows a collector's copy is checked against for a row
/// delivered twice.
const RECENT: usize = 1024;

/// A row of the chain the walk has passed: its digest and link.
#[derive(Debug, Clone, Copy)]
struct Seen {
    place: Place,
    digest: Digest,
    link: Option<Link>,
}

/// A row whose link did not match the row before it, waiting for the next
/// chained row to tell which of them is at fault.
#[derive(Debug, Clone, Copy)]
struct Suspect {
    /// The row before it (the chain's tip then), and the one before that.
    tip: Seen,
    row: Seen,
}

/// The walk over one chain's lines, in order: a local log's files oldest
/// first, or one machine's rows in a collector's file.
#[derive(Debug)]
pub(crate) struct Walk {
    /// A collector's copy: an identical line seen again is a row delivered
    /// twice (counted once), not an insertion.
    redelivered_ok: bool,
    /// The last line, whatever it was.
    last: Option<Seen>,
    /// The last chained row the chain is known to continue from.
    tip: Option<Seen>,
    suspect: Option<Suspect>,
    /// Loose lines (no link) seen since the tip: inserted unless the next
    /// row links to the last of them (a torn row).
    loose: Vec<Seen>,
    recent: VecDeque<Digest>,
    recent_set: HashSet<Digest>,
    /// What `intact_through` was before the tip joined it: where it goes
    /// back to when the tip turns out changed or inserted.
    before_tip: Option<(Place, u64)>,
    pub(crate) report: Report,
}

/// What a walk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Rows with a link.
    pub chained: u64,
    /// Lines without a link before the first chained row (an older log).
    pub unchained_before: u64,
    /// The first chained row: where and its seq.
    pub first: Option<(Place, u64)>,
    /// The last row of the unbroken run from the first chained row on.
    pub intact_through: Option<(Place, u64)>,
    /// The last chained row.
    pub last: Option<(Place, u64)>,
    /// Lines delivered twice (a collector's copy), counted once.
    pub redelivered: u64,
    /// Torn rows the chain runs through (the next row links to them).
    pub torn: u64,
    pub findings: Vec<Finding>,
    /// Findings past `MAX_FINDINGS`.
    pub more_findings: u64,
}

impl Report {
    /// Whether the chain is whole: rows chained, nothing found.
    pub(crate) fn intact(&self) -> bool {
        self.chained > 0 && self.findings.is_empty() && self.more_findings == 0
    }
}

impl Walk {
    /// A walk over a local log (`redelivered_ok` false) or a collector's
    /// copy of one machine's rows (true).
    pub(crate) fn new(redelivered_ok: bool) -> Walk {
        Walk {
            redelivered_ok,
            last: None,
            tip: None,
            suspect: None,
            loose: Vec::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            before_tip: None,
            report: Report::default(),
        }
    }

    fn find(&mut self, finding: Finding) {
        if self.report.findings.len() < MAX_FINDINGS {
            self.report.findings.push(finding);
        } else {
            self.report.more_findings += 1;
        }
    }

    /// Takes the next line (without its newline).
    pub(crate) fn line(&mut self, place: Place, line: &[u8]) {
        let digest = sha256(line);
        if self.redelivered_ok && self.recent_set.contains(&digest) {
            self.report.redelivered += 1;
            return;
        }
        self.remember(digest);
        let link = link_of(line);
        let seen = Seen { place, digest, link };
        match link {
            None => self.loose_line(seen),
            Some(link) => self.chained_row(seen, link),
        }
        self.last = Some(seen);
    }

    fn remember(&mut self, digest: Digest) {
        if !self.redelivered_ok {
            return;
        }
        if self.recent.len() == RECENT {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        self.recent.push_back(digest);
        self.recent_set.insert(digest);
    }

    fn loose_line(&mut self, seen: Seen) {
        if self.tip.is_none() && self.suspect.is_none() {
            self.report.unchained_before += 1;
        } else {
            self.loose.push(seen);
        }
    }

    fn chained_row(&mut self, row: Seen, link: Link) {
        self.report.chained += 1;
        let loose = std::mem::take(&mut self.loose);
        if let Some(suspect) = self.suspect.take() {
            self.settle(suspect, row, link);
        } else if let Some(tip) = self.tip {
            self.follow(tip, row, link, &loose);
        } else {
            self.begin(row, link);
        }
        self.report.last = Some((row.place, link.seq));
    }

    /// The first chained row: the log's first line, or a chain that began
    /// after older rows, or one whose start was rotated away (or not
    /// shipped to this collector).
    fn begin(&mut self, row: Seen, link: Link) {
        self.report.first = Some((row.place, link.seq));
        self.report.intact_through = Some((row.place, link.seq));
        self.tip = Some(row);
    }

    /// `row` after the tip `tip`, with `loose` lines between them.
    fn follow(&mut self, tip: Seen, row: Seen, link: Link, loose: &[Seen]) {
        let tip_seq = tip.link.map_or(0, |l| l.seq);
        // Through a torn row: the last loose line is the one it links to.
        if loose.last().is_some_and(|t| link.prev == Some(t.digest)) {
            for inserted in &loose[..loose.len() - 1] {
                self.find(Finding::Inserted { at: inserted.place });
            }
            self.report.torn += 1;
            self.extend(row, link);
            return;
        }
        for inserted in loose {
            self.find(Finding::Inserted { at: inserted.place });
        }
        if link.prev == Some(tip.digest) && link.seq == tip_seq + 1 {
            self.extend(row, link);
            return;
        }
        if link.prev.is_none() && link.seq == 1 {
            if !self.redelivered_ok {
                self.find(Finding::Restarted { at: row.place });
            }
            self.extend(row, link);
            return;
        }
        // Not the tip's successor: which of them is at fault shows at the
        // next chained row (or the end).
        self.suspect = Some(Suspect { tip, row });
    }

    /// Decides a suspect once the next chained row `next` has come.
    fn settle(&mut self, suspect: Suspect, next: Seen, link: Link) {
        let Suspect { tip, row } = suspect;
        let row_link = row.link.unwrap_or(Link { seq: 0, prev: None });
        if link.prev == Some(tip.digest) {
            // The next row follows the tip: `row` was put in between.
            self.find(Finding::Inserted { at: row.place });
            self.tip = Some(tip);
            self.follow(tip, next, link, &[]);
            return;
        }
        let finding = judge(tip, row).unwrap_or(Finding::Broken {
            at: row.place,
            seq: row_link.seq,
        });
        self.found_at_tip(finding, tip);
        self.tip = Some(row);
        self.follow(row, next, link, &[]);
    }

    /// Records `finding`; if it names the tip itself, the unbroken run
    /// ends before the tip.
    fn found_at_tip(&mut self, finding: Finding, tip: Seen) {
        if self.report.findings.is_empty()
            && finding.place() == tip.place
            && !matches!(finding, Finding::Removed { .. })
        {
            self.report.intact_through = self.before_tip;
        }
        self.find(finding);
    }

    fn extend(&mut self, row: Seen, link: Link) {
        if self.report.findings.is_empty() && self.report.more_findings == 0 {
            self.before_tip = self.report.intact_through;
            self.report.intact_through = Some((row.place, link.seq));
        }
        self.tip = Some(row);
    }

    /// The walk's report, once every line is in.
    pub(crate) fn finish(mut self) -> Report {
        if let Some(Suspect { tip, row }) = self.suspect.take() {
            // The last row does not follow the one before it, and nothing
            // after it says which is at fault: judge by the counts.
            let finding = judge(tip, row).unwrap_or(Finding::Inserted { at: row.place });
            self.found_at_tip(finding, tip);
        }
        for inserted in std::mem::take(&mut self.loose) {
            self.find(Finding::Inserted { at: inserted.place });
        }
        self.report.findings.sort_by_key(Finding::place);
        self.report
    }
}

/// Which of `tip` and `row` (which does not follow it) is at fault, by
/// their links: `row` follows what the tip follows (the tip was inserted),
/// counts on from it (the tip was changed), or skips rows (removed).
fn judge(tip: Seen, row: Seen) -> Option<Finding> {
    let tip_link = tip.link?;
    let row_link = row.link?;
    if row_link.prev.is_some() && row_link.prev == tip_link.prev {
        Some(Finding::Inserted { at: tip.place })
    } else if row_link.seq == tip_link.seq + 1 {
        Some(Finding::Changed {
            at: tip.place,
            seq: tip_link.seq,
        })
    } else if row_link.seq > tip_link.seq + 1 {
        Some(Finding::Removed {
            after: tip.place,
            before: row.place,
            from: tip_link.seq + 1,
            to: row_link.seq - 1,
        })
    } else {
        None
    }
}

/// Walks for many chains at once, one per key (a collector's file: one
/// per machine).
#[derive(Debug, Default)]
pub(crate) struct Walks {
    walks: HashMap<String, Walk>,
}

impl Walks {
    pub(crate) fn line(&mut self, key: &str, place: Place, line: &[u8]) {
        self.walks
            .entry(key.to_string())
            .or_insert_with(|| Walk::new(true))
            .line(place, line);
    }

    /// Each key's report, by key.
    pub(crate) fn finish(self) -> Vec<(String, Report)> {
        let mut out: Vec<(String, Report)> = self.walks.into_iter().map(|(k, w)| (k, w.finish())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` chained rows as the writer makes them.
    fn log(n: u64) -> Vec<Vec<u8>> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for i in 1..=n {
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            let link = next_link_after(&refs);
            let row = format!("{{\"ts\":\"t{i}\",\"kind\":\"end\",\"audit_id\":\"a\"}}\n");
            let mut line = chained(row.as_bytes(), link);
            line.pop();
            lines.push(line);
        }
        lines
    }

    fn walk(lines: &[Vec<u8>]) -> Report {
        let mut walk = Walk::new(false);
        for (i, line) in lines.iter().enumerate() {
            walk.line(
                Place {
                    file: 0,
                    line: i as u64 + 1,
                },
                line,
            );
        }
        walk.finish()
    }

    fn at(line: u64) -> Place {
        Place { file: 0, line }
    }

    #[test]
    fn the_link_goes_first_and_reads_back() {
        let row = b"{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}\n";
        let first = chained(row, Link { seq: 1, prev: None });
        assert_eq!(
            first,
            b"{\"seq\":1,\"prev_sha256\":null,\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}\n"
        );
        let digest = sha256(b"abc");
        assert_eq!(
            hex(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let second = chained(
            row,
            Link {
                seq: 2,
                prev: Some(digest),
            },
        );
        assert!(second.starts_with(
            b"{\"seq\":2,\"prev_sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"ts\""
        ));
        assert_eq!(link_of(&first), Some(Link { seq: 1, prev: None }));
        assert_eq!(
            link_of(&second),
            Some(Link {
                seq: 2,
                prev: Some(digest)
            })
        );
        // A torn row keeps its link if its first bytes made it.
        assert_eq!(
            link_of(&second[..110]),
            Some(Link {
                seq: 2,
                prev: Some(digest)
            })
        );
        serde_json::from_slice::<serde_json::Value>(&second).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn lines_without_a_link_say_so() {
        for line in [
            &b"{\"ts\":\"t\",\"kind\":\"end\"}"[..],
            b"{\"seq\":0,\"prev_sha256\":null,\"ts\":1}",
            b"{\"seq\":01,\"prev_sha256\":null,\"ts\":1}",
            b"{\"seq\":1,\"prev_sha256\":\"ab\",\"ts\":1}",
            b"{\"seq\":1,\"prev_sha256\":null}",
            b"{\"seq\":99999999999999999999,\"prev_sha256\":null,\"ts\":1}",
            b"{\"seq\":",
            b"",
        ] {
            assert_eq!(link_of(line), None, "{}", String::from_utf8_lossy(line));
        }
        // Not an object: left as it is.
        assert_eq!(chained(b"[1]\n", Link { seq: 1, prev: None }), b"[1]\n");
        assert_eq!(chained(b"{}\n", Link { seq: 1, prev: None }), b"{}\n");
    }

    #[test]
    fn the_next_link_counts_on_from_the_last_linked_line() {
        assert_eq!(next_link_after(&[]), Link { seq: 1, prev: None });
        let lines = log(3);
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(
            next_link_after(&refs),
            Link {
                seq: 4,
                prev: Some(sha256(&lines[2]))
            }
        );
        // After a torn line without its link: it counts one.
        let torn: &[u8] = b"{\"se";
        let mut with_torn = refs.clone();
        with_torn.push(torn);
        assert_eq!(
            next_link_after(&with_torn),
            Link {
                seq: 5,
                prev: Some(sha256(torn))
            }
        );
        // Rows from before the chain: it begins at 1, linked to them.
        let old: &[u8] = b"{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}";
        assert_eq!(
            next_link_after(&[old]),
            Link {
                seq: 1,
                prev: Some(sha256(old))
            }
        );
    }

    #[test]
    fn an_untouched_log_is_intact() {
        let lines = log(5);
        let report = walk(&lines);
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.chained, 5);
        assert_eq!(report.first, Some((at(1), 1)));
        assert_eq!(report.intact_through, Some((at(5), 5)));
    }

    #[test]
    fn a_changed_row_is_named() {
        let mut lines = log(5);
        lines[2] = String::from_utf8_lossy(&lines[2])
            .replace("t3", "t9")
            .into_bytes();
        let report = walk(&lines);
        assert_eq!(report.findings, [Finding::Changed { at: at(3), seq: 3 }]);
        assert_eq!(report.intact_through, Some((at(2), 2)));
        // The last row changed: nothing after it to say so.
        let mut lines = log(5);
        lines[4] = String::from_utf8_lossy(&lines[4])
            .replace("t5", "t9")
            .into_bytes();
        assert!(walk(&lines).intact(), "undetectable from the file alone");
    }

    #[test]
    fn an_inserted_row_is_named_forged_link_or_none() {
        let lines = log(5);
        // A copy of row 2's link with other content, put after row 2.
        let forged = chained(
            b"{\"ts\":\"x\",\"kind\":\"end\",\"audit_id\":\"a\"}\n",
            Link {
                seq: 3,
                prev: Some(sha256(&lines[1])),
            },
        );
        let mut with = lines.clone();
        with.insert(2, forged[..forged.len() - 1].to_vec());
        assert_eq!(walk(&with).findings, [Finding::Inserted { at: at(3) }]);
        // A row with no link at all.
        let mut with = lines.clone();
        with.insert(2, b"{\"ts\":\"x\",\"kind\":\"end\",\"audit_id\":\"a\"}".to_vec());
        assert_eq!(walk(&with).findings, [Finding::Inserted { at: at(3) }]);
        // Appended at the end without a link.
        let mut with = lines.clone();
        with.push(b"{\"ts\":\"x\",\"kind\":\"end\",\"audit_id\":\"a\"}".to_vec());
        assert_eq!(walk(&with).findings, [Finding::Inserted { at: at(6) }]);
        // A forged row with a wrong link, before the tip's true successor.
        let mut with = lines.clone();
        let junk = chained(
            b"{\"ts\":\"x\",\"kind\":\"end\",\"audit_id\":\"a\"}\n",
            Link {
                seq: 3,
                prev: Some([7; 32]),
            },
        );
        with.insert(2, junk[..junk.len() - 1].to_vec());
        assert_eq!(walk(&with).findings, [Finding::Inserted { at: at(3) }]);
    }

    #[test]
    fn removed_rows_are_counted() {
        let mut lines = log(6);
        lines.remove(2);
        let report = walk(&lines);
        assert_eq!(
            report.findings,
            [Finding::Removed {
                after: at(2),
                before: at(3),
                from: 3,
                to: 3
            }]
        );
        let mut lines = log(6);
        lines.drain(1..4);
        assert_eq!(
            walk(&lines).findings,
            [Finding::Removed {
                after: at(1),
                before: at(2),
                from: 2,
                to: 4
            }]
        );
        // The first rows removed: the chain begins later (as after rotation).
        let lines = log(6);
        let report = walk(&lines[2..]);
        assert!(report.intact());
        assert_eq!(report.first, Some((at(1), 3)));
    }

    #[test]
    fn a_torn_row_is_walked_through_and_a_restart_is_found() {
        let mut lines = log(2);
        // What a full disk leaves: a fragment, ended by the writer.
        lines.push(b"{\"se".to_vec());
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let link = next_link_after(&refs);
        let mut next = chained(b"{\"ts\":\"t4\",\"kind\":\"end\",\"audit_id\":\"a\"}\n", link);
        next.pop();
        lines.push(next);
        let report = walk(&lines);
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.torn, 1);
        // A second first row amid the log.
        let mut lines = log(2);
        lines.extend(log(2));
        assert_eq!(walk(&lines).findings, [Finding::Restarted { at: at(3) }]);
    }

    #[test]
    fn older_rows_before_the_chain_are_counted_not_found() {
        let mut lines = vec![b"{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"a\"}".to_vec()];
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let mut row = chained(
            b"{\"ts\":\"t\",\"kind\":\"end\",\"audit_id\":\"b\"}\n",
            next_link_after(&refs),
        );
        row.pop();
        lines.push(row);
        let report = walk(&lines);
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.unchained_before, 1);
        assert!(!walk(&lines[..1]).intact(), "nothing chained: nothing verified");
    }

    #[test]
    fn a_collectors_copy_counts_a_row_delivered_twice_once() {
        let lines = log(4);
        let mut copy = lines.clone();
        copy.insert(3, lines[2].clone());
        let mut walks = Walks::default();
        for (i, line) in copy.iter().enumerate() {
            walks.line("m", at(i as u64 + 1), line);
        }
        let reports = walks.finish();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].1.intact(), "{reports:?}");
        assert_eq!(reports[0].1.redelivered, 1);
        // In a local log the same copy is an insertion.
        assert!(!walk(&copy).intact());
    }
}
