//! The gate's running tallies: allowed and denied counts for the `end` row,
//! the distinct refusals for the summary printed after the child exits, and
//! the cap on rows for callers without the credential.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::policy::authority::Authority;
use crate::policy::Verdict;

/// Refusals of callers without the credential that get a row each; past
/// this, they are only counted (in the `end` row's `suppressed`), so another
/// local process cannot flood the log and push real history out of it.
const STRANGER_ROWS: u64 = 1000;
/// Distinct refusals kept for the summary printed after the child exits.
const LISTED_DENIALS: usize = 20;

/// One `egress` row's worth of outcome.
#[derive(Debug)]
pub struct Row<'a> {
    pub method: Option<&'a str>,
    pub target: Option<&'a Authority>,
    pub verdict: Verdict,
    pub status: u16,
    pub reason: String,
}

/// The counts so far; shared by every connection task.
#[derive(Debug, Default)]
pub struct Tally {
    allowed: AtomicU64,
    denied: AtomicU64,
    denials: Mutex<Denials>,
}

/// Refusals for the summary, bounded whatever a flood of requests holds.
#[derive(Debug, Default)]
struct Denials {
    seen: HashSet<(String, u16)>,
    listed: Vec<Denial>,
    unlisted: u64,
    strangers: u64,
    suppressed: u64,
}

/// A refused request, for the summary printed after the child exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `host:port`.
    pub target: String,
    pub status: u16,
    pub reason: String,
    /// Strict mode refused a connection (or a DNS query) that ignored the
    /// proxy, rather than the proxy refusing a request.
    pub direct: bool,
}

/// Whether a row's method is one of strict mode's direct paths.
pub fn is_direct(method: &str) -> bool {
    matches!(method, "transparent" | "dns" | "quic")
}

/// Totals after the proxy stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub allowed: u64,
    pub denied: u64,
    /// Distinct refusals of the credential holder, in the order first seen,
    /// at most [`LISTED_DENIALS`].
    pub denials: Vec<Denial>,
    /// Distinct refusals past that.
    pub unlisted: u64,
    /// Requests refused for want of the credential (another local process).
    pub strangers: u64,
    /// Of those, how many got no row of their own (see [`STRANGER_ROWS`]).
    pub suppressed: u64,
}

impl Tally {
    /// Counts one answered request. `false` if it is to get no row of its
    /// own (a stranger's refusal past [`STRANGER_ROWS`]).
    pub fn count(&self, row: &Row<'_>) -> bool {
        if row.verdict == Verdict::Allow {
            self.allowed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        // A panic elsewhere while holding the lock leaves counts at worst
        // one short; it must never cost the row (an audit path fails
        // towards writing).
        let mut denials = self
            .denials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match row.target {
            // A refusal with no credential checked (407), or before there
            // was a request to check (503, 408, 431, junk), may come from
            // any local process: counted, not listed by target.
            _ if row.status == 407 => denials.count_stranger(),
            None => denials.count_stranger(),
            Some(target) => {
                let key = (target.to_string(), row.status);
                if denials.seen.insert(key.clone()) {
                    if denials.listed.len() < LISTED_DENIALS {
                        denials.listed.push(Denial {
                            target: key.0,
                            status: row.status,
                            reason: row.reason.clone(),
                            direct: row.method.is_some_and(is_direct),
                        });
                    } else {
                        denials.unlisted += 1;
                    }
                }
                true
            }
        }
    }

    /// The tallies so far.
    pub fn summary(&self) -> Summary {
        let denials = self
            .denials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Summary {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            denials: denials.listed.clone(),
            unlisted: denials.unlisted,
            strangers: denials.strangers,
            suppressed: denials.suppressed,
        }
    }
}

impl Denials {
    /// Counts a stranger's refusal; `false` once past the row cap.
    fn count_stranger(&mut self) -> bool {
        self.strangers += 1;
        if self.strangers > STRANGER_ROWS {
            self.suppressed += 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::parse_authority;

    fn refusal<'a>(target: Option<&'a Authority>, status: u16) -> Row<'a> {
        Row {
            method: Some("CONNECT"),
            target,
            verdict: Verdict::Deny,
            status,
            reason: "why".into(),
        }
    }

    #[test]
    fn distinct_refusals_are_listed_once_then_only_counted() {
        let tally = Tally::default();
        let targets: Vec<Authority> = (0..LISTED_DENIALS + 3)
            .filter_map(|i| parse_authority(&format!("h{i}.example:443")).ok())
            .collect();
        for target in targets.iter().chain(targets.iter()) {
            assert!(tally.count(&refusal(Some(target), 403)));
        }
        let s = tally.summary();
        assert_eq!(s.denied, 2 * targets.len() as u64);
        assert_eq!(s.denials.len(), LISTED_DENIALS);
        assert_eq!(s.denials[0].target, "h0.example:443");
        assert_eq!(s.unlisted, 3);
        assert_eq!(s.strangers, 0);
    }

    #[test]
    fn strangers_get_rows_up_to_the_cap() {
        let tally = Tally::default();
        let target = parse_authority("a.example:443").ok();
        for i in 0..STRANGER_ROWS + 5 {
            let row = match i % 2 {
                0 => refusal(target.as_ref(), 407),
                _ => refusal(None, 408),
            };
            assert_eq!(tally.count(&row), i < STRANGER_ROWS, "{i}");
        }
        let s = tally.summary();
        assert_eq!((s.strangers, s.suppressed), (STRANGER_ROWS + 5, 5));
        assert!(s.denials.is_empty());
    }

    #[test]
    fn a_poisoned_lock_still_gets_the_row_written() {
        let tally = Tally::default();
        let poisoner = std::panic::catch_unwind(|| {
            let _held = tally.denials.lock();
            panic!("a task panics while counting");
        });
        assert!(poisoner.is_err());
        assert!(tally.denials.is_poisoned());
        let target = parse_authority("evil.example:443").ok();
        assert!(
            tally.count(&refusal(target.as_ref(), 403)),
            "the refusal gets its row"
        );
        let s = tally.summary();
        assert_eq!(s.denied, 1);
        assert_eq!(s.denials.len(), 1, "and is listed: {s:?}");
    }

    #[test]
    fn allows_are_counted_and_always_rowed() {
        let tally = Tally::default();
        let row = Row {
            verdict: Verdict::Allow,
            ..refusal(None, 200)
        };
        assert!(tally.count(&row));
        assert_eq!(tally.summary().allowed, 1);
    }
}
