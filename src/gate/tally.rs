//! The gate's running tallies: allowed and denied counts for the `end` row,
//! the distinct refusals for the summary printed after the child exits, and
//! the caps on rows for callers without the credential and for strict
//! mode's DNS queries.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::gate::outcome::{Aim, Method, Outcome};
use crate::policy::Verdict;

/// Refusals of callers without the credential that get a row each; past
/// this, they are only counted (in the `end` row's `suppressed`), so another
/// local process cannot flood the log and push real history out of it.
const STRANGER_ROWS: u64 = 1000;
/// DNS queries (strict mode's resolver) that get a row each; past this,
/// they are only counted (in the `end` row's `suppressed`), so a tool that
/// asks for a million names cannot grow the log without bound.
const QUERY_ROWS: u64 = 1000;
/// Refused direct connections (strict mode's transparent path and QUIC)
/// that get a row each; past this, only counted, as for DNS queries: a
/// payload that loops on connect() cannot grow the log without bound.
const DIRECT_ROWS: u64 = 1000;
/// Distinct refusals kept for the summary printed after the child exits.
const LISTED_DENIALS: usize = 20;
/// Distinct refusals remembered, to list each once: past this, a new one is
/// counted as unlisted without being remembered, so a flood of random
/// names or addresses cannot grow the gate's memory without bound.
const SEEN_LIMIT: usize = 4096;

/// The counts so far; shared by every connection task.
#[derive(Debug, Default)]
pub(super) struct Tally {
    allowed: AtomicU64,
    denied: AtomicU64,
    denials: Mutex<Denials>,
    /// DNS queries answered so far, and those of them past [`QUERY_ROWS`].
    queries: AtomicU64,
    direct_suppressed: AtomicU64,
    /// Refused direct connections so far.
    direct_refusals: AtomicU64,
    /// Refused unix sockets so far.
    unix_sockets: AtomicU64,
}

/// Refusals for the summary, bounded whatever a flood of requests holds.
#[derive(Debug, Default)]
struct Denials {
    seen: HashSet<(String, u16, Option<String>)>,
    listed: Vec<Denial>,
    unlisted: u64,
    strangers: u64,
    suppressed: u64,
}

/// A refused request, for the summary printed after the child exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// `host:port`; for a refused DNS query, the name alone.
    pub target: String,
    pub status: u16,
    pub reason: String,
    /// Strict mode refused a connection (or a DNS query) that ignored the
    /// proxy, rather than the proxy refusing a request.
    pub direct: bool,
    /// A package's own code made it (`who`): `evil-worm@1.0.0
    /// (postinstall)`.
    pub by: Option<String>,
}

/// Totals after the proxy stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
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
    /// DNS queries and refused direct connections that got no row of their
    /// own (see [`QUERY_ROWS`], [`DIRECT_ROWS`]). The `end` row's
    /// `suppressed` is this plus `suppressed`.
    pub direct_suppressed: u64,
    /// Unix sockets strict mode refused (a row for each program's first,
    /// under the direct rows' cap; the rest counted in `direct_suppressed`).
    /// Not in `denied`: glibc looks for nscd's socket in most processes.
    pub unix_sockets: u64,
    /// Not the gate's: processes strict mode's PID layer found left behind
    /// by the tool, and ended (set by the shim).
    pub leftovers: Option<u64>,
}

impl Tally {
    /// Counts one outcome. `false` if it is to get no row of its own: a
    /// stranger's refusal past [`STRANGER_ROWS`], a DNS query past
    /// [`QUERY_ROWS`], a refused direct connection past [`DIRECT_ROWS`].
    pub(super) fn count(&self, outcome: &Outcome<'_>) -> bool {
        if outcome.method == Some(Method::Dns) {
            return self.count_query(outcome);
        }
        if outcome.method == Some(Method::Unix) {
            // Not listed by target: `socket()` names none. Most are glibc
            // probing for nscd (every bash started without $SHELL looks up
            // its user); the row says which program asked. Counted apart
            // from `denied`, which counts refused connections and queries.
            self.unix_sockets.fetch_add(1, Ordering::Relaxed);
            if self.direct_refusals.fetch_add(1, Ordering::Relaxed) >= DIRECT_ROWS {
                self.direct_suppressed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            return true;
        }
        if outcome.verdict == Verdict::Allow {
            self.allowed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        let mut denials = self.denials();
        match outcome.aim.shown() {
            // A refusal with no credential checked (407), or before there
            // was a request to check (503, 408, 431, junk), may come from
            // any local process: counted, not listed by target.
            _ if outcome.status == 407 => denials.count_stranger(),
            None => denials.count_stranger(),
            Some(target) => {
                let direct = outcome.method.as_ref().is_some_and(Method::is_direct);
                denials.list(
                    target,
                    outcome.status,
                    &outcome.reason,
                    direct,
                    package_code_of(outcome),
                );
                if direct && self.direct_refusals.fetch_add(1, Ordering::Relaxed) >= DIRECT_ROWS {
                    self.direct_suppressed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                true
            }
        }
    }

    /// Counts a refused unix socket that gets no row of its own: another
    /// from a program that already has one ([`super::unix`] writes one row
    /// per program, since glibc probes for nscd in nearly every process).
    pub(super) fn count_unix_repeat(&self) {
        self.unix_sockets.fetch_add(1, Ordering::Relaxed);
        self.direct_suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts something that got no row (a relayed row refused).
    pub(super) fn count_unrecorded(&self) {
        self.direct_suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one DNS query, allowed or denied like a request. A refusal of
    /// a name (not on the allowlist: 403; the pool full: 503) is listed for
    /// the summary under the name; other refusals (a type or class not
    /// answered, malformed) only counted. `false` past [`QUERY_ROWS`].
    fn count_query(&self, query: &Outcome<'_>) -> bool {
        match query.verdict {
            Verdict::Allow => {
                self.allowed.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Deny => {
                self.denied.fetch_add(1, Ordering::Relaxed);
                if let (Aim::Name(name), 403 | 503) = (query.aim, query.status) {
                    self.denials().list(
                        name.logged(),
                        query.status,
                        &query.reason,
                        true,
                        package_code_of(query),
                    );
                }
            }
        }
        if self.queries.fetch_add(1, Ordering::Relaxed) >= QUERY_ROWS {
            self.direct_suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The refusals so far. A panic elsewhere while holding the lock leaves
    /// counts at worst one short; it must never cost a row (an audit path
    /// fails towards writing).
    fn denials(&self) -> std::sync::MutexGuard<'_, Denials> {
        self.denials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tallies so far.
    pub(super) fn summary(&self) -> Summary {
        let denials = self.denials();
        Summary {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            denials: denials.listed.clone(),
            unlisted: denials.unlisted,
            strangers: denials.strangers,
            suppressed: denials.suppressed,
            direct_suppressed: self.direct_suppressed.load(Ordering::Relaxed),
            unix_sockets: self.unix_sockets.load(Ordering::Relaxed),
            leftovers: None,
        }
    }
}

impl Denials {
    /// Lists a refusal of `target` for the summary, once per status.
    fn list(&mut self, target: String, status: u16, reason: &str, direct: bool, by: Option<String>) {
        let key = (target, status, by);
        if self.seen.contains(&key) {
            return;
        }
        if self.listed.len() < LISTED_DENIALS {
            self.listed.push(Denial {
                target: key.0.clone(),
                status,
                reason: reason.to_string(),
                direct,
                by: key.2.clone(),
            });
        } else {
            self.unlisted += 1;
        }
        if self.seen.len() < SEEN_LIMIT {
            self.seen.insert(key);
        }
    }

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

/// Who made a refused attempt, when it was a package's own code rather
/// than the tool.
fn package_code_of(outcome: &Outcome<'_>) -> Option<String> {
    crate::who::package_code_label(outcome.process.as_deref()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::{parse_authority, Authority, Host};

    fn refusal(target: Option<&Authority>, status: u16) -> Outcome<'_> {
        Outcome {
            method: Some(Method::Connect),
            aim: target.map_or(Aim::Unknown, Aim::Endpoint),
            verdict: Verdict::Deny,
            status,
            reason: "why".into(),
            qtype: None,
            process: None,
        }
    }

    fn query<'a>(verdict: Verdict, name: Option<&'a Host>, status: u16, reason: &str) -> Outcome<'a> {
        Outcome {
            method: Some(Method::Dns),
            aim: name.map_or(Aim::Unknown, Aim::Name),
            verdict,
            status,
            reason: reason.into(),
            qtype: Some("A".into()),
            process: None,
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
    fn queries_get_rows_up_to_their_own_cap() {
        let tally = Tally::default();
        for i in 0..QUERY_ROWS + 3 {
            let (verdict, status) = match i % 2 {
                0 => (Verdict::Allow, 200),
                _ => (Verdict::Deny, 400),
            };
            assert_eq!(
                tally.count(&query(verdict, None, status, "why")),
                i < QUERY_ROWS,
                "{i}"
            );
        }
        let s = tally.summary();
        assert_eq!(s.direct_suppressed, 3);
        assert_eq!(s.allowed + s.denied, QUERY_ROWS + 3);
        // Not strangers: the tool's own queries.
        assert_eq!((s.strangers, s.suppressed), (0, 0));
        assert!(s.denials.is_empty());
    }

    #[test]
    fn refused_names_are_listed_once_and_other_query_refusals_not_at_all() {
        let tally = Tally::default();
        let evil = Host::Name("evil.example".into());
        let registry = Host::Name("registry.npmjs.org".into());
        for _ in 0..3 {
            tally.count(&query(Verdict::Deny, Some(&evil), 403, "not on the allowlist"));
        }
        tally.count(&query(Verdict::Deny, Some(&registry), 501, "TXT"));
        tally.count(&query(Verdict::Allow, Some(&registry), 200, "answered"));
        let s = tally.summary();
        assert_eq!(
            s.denials,
            vec![Denial {
                target: "evil.example".into(),
                status: 403,
                reason: "not on the allowlist".into(),
                direct: true,
                by: None,
            }]
        );
        assert_eq!((s.allowed, s.denied), (1, 4));
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
    fn refused_direct_connections_get_rows_up_to_their_cap() {
        let tally = Tally::default();
        let target = parse_authority("203.0.113.7:443").ok();
        let direct = |t| Outcome {
            method: Some(Method::Transparent),
            ..refusal(t, 403)
        };
        for i in 0..DIRECT_ROWS + 2 {
            assert_eq!(tally.count(&direct(target.as_ref())), i < DIRECT_ROWS, "{i}");
        }
        let s = tally.summary();
        assert_eq!((s.denied, s.direct_suppressed), (DIRECT_ROWS + 2, 2));
        assert_eq!(s.denials.len(), 1, "listed once: {s:?}");
        assert!(s.denials[0].direct);
    }

    #[test]
    fn a_flood_of_distinct_refusals_is_remembered_only_up_to_a_bound() {
        let tally = Tally::default();
        let targets: Vec<_> = (0..SEEN_LIMIT + 50)
            .filter_map(|i| parse_authority(&format!("h{i}.example:443")).ok())
            .collect();
        for target in &targets {
            tally.count(&refusal(Some(target), 403));
        }
        let seen = tally.denials.lock().map(|d| d.seen.len()).unwrap_or_default();
        assert_eq!(seen, SEEN_LIMIT);
        let s = tally.summary();
        assert_eq!(s.denials.len(), LISTED_DENIALS);
        assert_eq!(s.unlisted as usize, targets.len() - LISTED_DENIALS);
    }

    #[test]
    fn allows_are_counted_and_always_rowed() {
        let tally = Tally::default();
        let row = Outcome {
            verdict: Verdict::Allow,
            ..refusal(None, 200)
        };
        assert!(tally.count(&row));
        assert_eq!(tally.summary().allowed, 1);
    }
}
