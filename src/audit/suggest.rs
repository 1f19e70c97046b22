//! From observing to pinning: `cli-guard audit --suggest TOOL` turns the
//! hosts a tool reached into the policy entry a developer would paste into
//! the pinned table, and the hosts a package's own code was refused under
//! it into the per-package entries an operator may pin, once they have
//! read the package's code.
//!
//! Wildcards are suggested only where several subdomains of one registrable
//! domain were seen, and always flagged for review. Without a full public
//! suffix list the registrable domain is approximated (the last two labels,
//! three under a two-letter country code's `co.`, `com.` and the like), and
//! hosts known to be shared by many unrelated owners are never wildcarded:
//! anyone can publish under them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::record::{Record, Row};
use crate::policy::Verdict;

/// This many distinct subdomains under one parent make a wildcard worth
/// suggesting.
const WILDCARD_AT: usize = 3;

/// Suffixes under which unrelated parties publish (buckets, pages, apps):
/// a wildcard under them allows anyone's content.
const SHARED_HOSTS: &[&str] = &[
    "amazonaws.com",
    "appspot.com",
    "azurewebsites.net",
    "blob.core.windows.net",
    "cloudfront.net",
    "fly.dev",
    "github.io",
    "githubusercontent.com",
    "herokuapp.com",
    "netlify.app",
    "pages.dev",
    "r2.dev",
    "storage.googleapis.com",
    "vercel.app",
    "workers.dev",
];

/// Second-level labels that are public suffixes under a country code.
const COUNTRY_SECOND_LEVELS: &[&str] = &["ac", "co", "com", "edu", "gov", "ne", "net", "or", "org"];

/// How often, and when, one host:port was reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub count: u64,
    pub first: String,
    pub last: String,
}

/// Everything `--suggest` gathers for one tool, in a bounded map.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    pub tool: String,
    /// (host, port) → seen, for tunnels that opened (status 200); names
    /// and IP literals alike.
    pub hosts: BTreeMap<(String, u16), Seen>,
    /// Allowed attempts that never reached their host (502, 504, or an
    /// upstream's refusal), by (host, port, status): reported, not suggested.
    pub unreached: BTreeMap<(String, u16, u64), u64>,
    /// Refused to a package's own code under the tool: package → (host,
    /// port) → count.
    pub packages: BTreeMap<String, BTreeMap<(String, u16), u64>>,
    invocations: std::collections::BTreeSet<String>,
}

impl Gathered {
    pub(super) fn new(tool: &str) -> Gathered {
        Gathered {
            tool: tool.to_string(),
            ..Gathered::default()
        }
    }

    /// Takes one audit row; only the tool's allowed egress rows count.
    pub(super) fn push(&mut self, row: &Row) {
        let Record::Egress(egress) = &row.record else {
            return;
        };
        if egress.tool != self.tool {
            return;
        }
        if let (Some(Verdict::Deny), Some(process), Some(host), Some(port)) = (
            egress.decision,
            egress.process.as_deref(),
            egress.host.as_deref(),
            egress.port,
        ) {
            if let (Some(package), "package", 403) = (&process.package, process.actor.as_str(), egress.status)
            {
                if self.packages.len() < 10_000 {
                    *self
                        .packages
                        .entry(package.clone())
                        .or_default()
                        .entry((host.to_string(), port))
                        .or_default() += 1;
                }
            }
        }
        if egress.decision != Some(Verdict::Allow) {
            return;
        }
        let (Some(host), Some(port)) = (egress.host.as_deref(), egress.port) else {
            return;
        };
        if egress.status != 200 {
            *self
                .unreached
                .entry((host.to_string(), port, u64::from(egress.status)))
                .or_default() += 1;
            return;
        }
        let ts = &row.ts;
        let seen = self.hosts.entry((host.to_string(), port)).or_default();
        seen.count += 1;
        if seen.first.is_empty() || *ts < seen.first {
            seen.first.clone_from(ts);
        }
        if *ts > seen.last {
            seen.last.clone_from(ts);
        }
        if self.invocations.len() < 1_000_000 {
            self.invocations.insert(row.audit_id.clone());
        }
    }
}

/// The registrable domain of a name, approximately (see the module doc).
pub(super) fn registrable(name: &str) -> &str {
    let labels: Vec<&str> = name.split('.').collect();
    let keep = match labels.as_slice() {
        [.., second, tld] if tld.len() == 2 && COUNTRY_SECOND_LEVELS.contains(second) => 3,
        _ => 2,
    };
    if labels.len() <= keep {
        return name;
    }
    let skip: usize = labels[..labels.len() - keep].iter().map(|l| l.len() + 1).sum();
    &name[skip..]
}

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// The shared-host suffix `name` sits under, if any.
fn shared_host(name: &str) -> Option<&'static str> {
    SHARED_HOSTS
        .iter()
        .copied()
        .find(|s| name == *s || name.strip_suffix(s).is_some_and(|h| h.ends_with('.')))
}

/// The longest dot-boundary suffix that all `names` share.
fn common_parent(names: &[&str]) -> String {
    let split: Vec<Vec<&str>> = names.iter().map(|n| n.rsplit('.').collect()).collect();
    let mut common = Vec::new();
    for i in 0.. {
        let Some(label) = split[0].get(i) else { break };
        if split.iter().all(|labels| labels.get(i) == Some(label)) {
            common.push(*label);
        } else {
            break;
        }
    }
    common.reverse();
    common.join(".")
}

/// One entry of the suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: String,
    ports: Vec<u16>,
    count: u64,
    first: String,
    last: String,
    review: Option<String>,
}

/// The suggestion as Rust to paste into `TOOLS` in src/policy/table.rs.
pub(super) fn render(g: &Gathered) -> String {
    let mut out = String::new();
    render_packages(g, &mut out);
    for ((host, port, status), count) in &g.unreached {
        let _ = writeln!(
            out,
            "// Tried but never reached (status {status}): {host}:{port}, {}: not suggested.",
            plural(*count, "time")
        );
    }
    if g.hosts.is_empty() {
        let _ = writeln!(
            out,
            "// No connection by {} reached a host in the audit log: nothing to suggest.",
            g.tool
        );
        return out;
    }
    let total: u64 = g.hosts.values().map(|s| s.count).sum();
    let first = g.hosts.values().map(|s| s.first.as_str()).min().unwrap_or("");
    let last = g.hosts.values().map(|s| s.last.as_str()).max().unwrap_or("");
    let _ = writeln!(
        out,
        "// Suggested pinned policy for {}: {}, {} in {}, {first} .. {last}.",
        g.tool,
        plural(g.hosts.len() as u64, "host"),
        plural(total, "connection"),
        plural(g.invocations.len() as u64, "invocation")
    );
    let _ = writeln!(
        out,
        "// Paste into TOOLS in src/policy/table.rs (replacing its observe line), and review every entry."
    );
    let _ = writeln!(out, "enforce(\n    \"{}\",\n    Family::Plain,\n    &[", g.tool);
    let mut ips = Vec::new();
    for entry in entries(g, &mut ips) {
        if let Some(review) = &entry.review {
            let _ = writeln!(out, "        // REVIEW: {review}");
        }
        let rule = if entry.ports == [443] {
            format!("Rule::https(\"{}\"),", entry.pattern)
        } else {
            let ports: Vec<String> = entry.ports.iter().map(u16::to_string).collect();
            format!(
                "Rule {{ pattern: \"{}\", ports: &[{}], private: false }},",
                entry.pattern,
                ports.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "        {rule} // {}, {} .. {}",
            plural(entry.count, "connection"),
            entry.first,
            entry.last
        );
    }
    let _ = writeln!(out, "    ],\n),");
    for (host, port, seen) in ips {
        let _ = writeln!(
            out,
            "// Not expressible: {host}:{port} ({}) is an IP literal, and IP literals never match a rule.",
            plural(seen.count, "connection")
        );
    }
    out
}

/// The per-package entries the refusals of package code would need: never
/// to be pinned without reading the package's code (a worm asks for its
/// tool's registry, and gets it here too).
fn render_packages(g: &Gathered, out: &mut String) {
    for (package, hosts) in &g.packages {
        let _ = writeln!(
            out,
            "// {package}'s own code (an install or build script) was refused under {}. Only if its code needs \
             them (read it: a worm asks for its tool's registry too), pin in PACKAGES in src/policy/packages.rs:",
            g.tool
        );
        let rules: Vec<String> = hosts
            .keys()
            .map(|(host, port)| match port {
                443 => format!("Rule::https(\"{host}\")"),
                _ => format!("Rule {{ pattern: \"{host}\", ports: &[{port}], private: false }}"),
            })
            .collect();
        let count: u64 = hosts.values().sum();
        let _ = writeln!(
            out,
            "// npm(\"{package}\", &[{}], \"SOURCE: the file and line of {package} that fetches it\"), // {}",
            rules.join(", "),
            plural(count, "refusal")
        );
    }
}

/// Groups the gathered hosts into entries: wildcards where several
/// subdomains of one registrable domain (not a shared host) were seen, exact
/// names otherwise; IP literals go to `ips`.
fn entries<'a>(g: &'a Gathered, ips: &mut Vec<(&'a str, u16, &'a Seen)>) -> Vec<Entry> {
    // (registrable domain, port) → names seen under it.
    let mut groups: BTreeMap<(&str, u16), Vec<(&str, &Seen)>> = BTreeMap::new();
    for ((host, port), seen) in &g.hosts {
        if is_ip(host) {
            ips.push((host, *port, seen));
        } else {
            groups
                .entry((registrable(host), *port))
                .or_default()
                .push((host, seen));
        }
    }
    let mut out: Vec<Entry> = Vec::new();
    for ((domain, port), names) in groups {
        let subdomains: Vec<&str> = names.iter().map(|(n, _)| *n).filter(|n| *n != domain).collect();
        let parent = if subdomains.len() >= WILDCARD_AT {
            common_parent(&subdomains)
        } else {
            String::new()
        };
        let shared = shared_host(&parent).or_else(|| shared_host(domain));
        if subdomains.len() >= WILDCARD_AT && shared.is_none() && !parent.is_empty() {
            let under: Vec<&(&str, &Seen)> = names
                .iter()
                .filter(|(n, _)| *n != parent && n.ends_with(&format!(".{parent}")))
                .collect();
            let mut listed: Vec<&str> = under.iter().map(|(n, _)| *n).collect();
            listed.truncate(6);
            out.push(Entry {
                pattern: format!("*.{parent}"),
                ports: vec![port],
                count: under.iter().map(|(_, s)| s.count).sum(),
                first: under.iter().map(|(_, s)| s.first.clone()).min().unwrap_or_default(),
                last: under.iter().map(|(_, s)| s.last.clone()).max().unwrap_or_default(),
                review: Some(format!(
                    "a wildcard for {} subdomains of {domain} seen ({}); it also allows every other subdomain",
                    under.len(),
                    listed.join(", ")
                )),
            });
            for (name, seen) in names
                .iter()
                .filter(|(n, _)| *n == parent || !n.ends_with(&format!(".{parent}")))
            {
                out.push(exact(name, port, seen, None));
            }
        } else {
            let review = match shared {
                Some(suffix) if subdomains.len() >= WILDCARD_AT => Some(format!(
                    "{suffix} is shared by unrelated owners: exact names only, never a wildcard"
                )),
                _ => None,
            };
            for (i, (name, seen)) in names.iter().enumerate() {
                out.push(exact(
                    name,
                    port,
                    seen,
                    if i == 0 { review.clone() } else { None },
                ));
            }
        }
    }
    merge_ports(out)
}

/// `1 connection`, `2 connections`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn exact(name: &str, port: u16, seen: &Seen, review: Option<String>) -> Entry {
    Entry {
        pattern: name.to_string(),
        ports: vec![port],
        count: seen.count,
        first: seen.first.clone(),
        last: seen.last.clone(),
        review,
    }
}

/// One entry per pattern, with every port it was seen on.
fn merge_ports(entries: Vec<Entry>) -> Vec<Entry> {
    let mut merged: Vec<Entry> = Vec::new();
    for entry in entries {
        match merged.iter_mut().find(|m| m.pattern == entry.pattern) {
            Some(m) => {
                m.ports.extend(entry.ports);
                m.ports.sort_unstable();
                m.count += entry.count;
                m.first = m.first.clone().min(entry.first);
                m.last = m.last.clone().max(entry.last);
                m.review = m.review.take().or(entry.review);
            }
            None => merged.push(entry),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::parse_line;

    fn row(tool: &str, host: &str, port: u16, decision: &str, ts: &str) -> Row {
        parse_line(
            format!(
                r#"{{"ts":"{ts}","kind":"egress","audit_id":"id-{ts}","conn":1,"tool":"{tool}","mode":"observe","host":"{host}","port":{port},"decision":"{decision}","status":200,"reason":"r"}}"#
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable("a.b.example.com"), "example.com");
        assert_eq!(registrable("example.com"), "example.com");
        assert_eq!(registrable("x.y.example.co.uk"), "example.co.uk");
        assert_eq!(registrable("localhost"), "localhost");
    }

    #[test]
    fn exact_names_wildcards_and_shared_hosts() {
        let mut g = Gathered::new("aws");
        for (i, host) in [
            "a.pkg.example.com",
            "b.pkg.example.com",
            "c.pkg.example.com",
            "api.other.org",
        ]
        .iter()
        .enumerate()
        {
            g.push(&row(
                "aws",
                host,
                443,
                "allow",
                &format!("2026-11-24T00:00:0{i}.000Z"),
            ));
        }
        for host in [
            "b1.s3.amazonaws.com",
            "b2.s3.amazonaws.com",
            "b3.s3.amazonaws.com",
        ] {
            g.push(&row("aws", host, 443, "allow", "2026-11-24T00:00:05.000Z"));
        }
        g.push(&row(
            "aws",
            "k8s.example.net",
            6443,
            "allow",
            "2026-11-24T00:00:06.000Z",
        ));
        g.push(&row("aws", "10.0.0.1", 6443, "allow", "2026-11-24T00:00:07.000Z"));
        g.push(&row(
            "aws",
            "evil.example",
            443,
            "deny",
            "2026-11-24T00:00:08.000Z",
        ));
        g.push(&row(
            "npm",
            "registry.npmjs.org",
            443,
            "allow",
            "2026-11-24T00:00:09.000Z",
        ));
        let mut unreached = row(
            "aws",
            "unreachable.example",
            443,
            "allow",
            "2026-11-24T00:00:08.500Z",
        );
        if let Record::Egress(egress) = &mut unreached.record {
            egress.status = 502;
        }
        g.push(&unreached);
        let text = render(&g);
        assert!(text.contains("Rule::https(\"*.pkg.example.com\"),"), "{text}");
        assert!(!text.contains("Rule::https(\"unreachable.example\")"), "{text}");
        assert!(
            text.contains("Tried but never reached (status 502): unreachable.example:443, 1 time"),
            "{text}"
        );
        assert!(
            text.contains("// REVIEW: a wildcard for 3 subdomains of example.com"),
            "{text}"
        );
        assert!(text.contains("Rule::https(\"api.other.org\"),"), "{text}");
        assert!(
            text.contains("Rule::https(\"b1.s3.amazonaws.com\"),"),
            "shared hosts stay exact: {text}"
        );
        assert!(!text.contains("*.s3.amazonaws.com"), "{text}");
        assert!(
            text.contains("amazonaws.com is shared by unrelated owners"),
            "{text}"
        );
        assert!(
            text.contains("Rule { pattern: \"k8s.example.net\", ports: &[6443], private: false },"),
            "{text}"
        );
        assert!(text.contains("10.0.0.1:6443"), "{text}");
        assert!(
            !text.contains("evil.example"),
            "denials are not suggested: {text}"
        );
        assert!(
            !text.contains("registry.npmjs.org"),
            "another tool's hosts: {text}"
        );
    }

    #[test]
    fn two_subdomains_are_not_a_wildcard() {
        let mut g = Gathered::new("gh");
        g.push(&row(
            "gh",
            "api.github.com",
            443,
            "allow",
            "2026-11-24T00:00:00.000Z",
        ));
        g.push(&row(
            "gh",
            "uploads.github.com",
            443,
            "allow",
            "2026-11-24T00:00:01.000Z",
        ));
        g.push(&row(
            "gh",
            "api.github.com",
            443,
            "allow",
            "2026-11-24T00:00:02.000Z",
        ));
        let text = render(&g);
        assert!(text.contains("Rule::https(\"api.github.com\"), // 2 connections, 2026-11-24T00:00:00.000Z .. 2026-11-24T00:00:02.000Z"), "{text}");
        assert!(!text.contains('*'), "{text}");
    }
}
