//! The one place that says deny or not: which tools cli-guard guards, in
//! which mode, the hosts each enforce-mode tool may reach (the pinned table,
//! `table`), how a target is matched against it ([`ToolPolicy::decide`]),
//! strict mode's rules for a name asked over DNS and a connection that
//! ignored the proxy (`direct`: [`ToolPolicy::decide_name`],
//! [`ToolPolicy::decide_direct`]),
//! which addresses an allowed name may land on (`addr`:
//! [`ToolPolicy::address_check`] and [`AddressCheck::permits`]), and whether
//! a dial that failed was this gate's refusal ([`Verdict::of_failed_dial`]),
//! and which subcommands run the project's own code and so are observed,
//! not enforced or isolated (`split`: [`invocation_policy`], reading
//! ./package.json's script names with `scripts`: [`script_names`]), and
//! how a fetch-and-run form (`npx X`, `uvx X`) splits into a fetch,
//! enforced, and a run, observed (`fetch_run`: [`fetch_and_run`]), and
//! what a package's own code may reach, judged apart from its tool
//! (`packages`: [`ToolPolicy::decide_as`] with who acted, an [`Acting`]).
//! All pure: the gate asks, and does the I/O.
//!
//! An allowlist change is a code change: there is deliberately no flag,
//! variable or file that widens these lists at run time.

mod addr;
pub(crate) mod authority;
mod direct;
pub(crate) mod fetch_run;
mod grammar;
mod helpers;
pub(crate) mod packages;
mod scripts;
mod split;
mod table;
pub(crate) mod writes;

pub(crate) use addr::AddressCheck;
pub(crate) use direct::HTTP_PORT;
pub(crate) use helpers::Helpers;
pub(crate) use scripts::{dependency_names, script_names};
pub(crate) use split::{invocation_policy, InvocationPolicy, SubcommandRule};
pub use table::TOOLS;
pub(crate) use table::{lookup, observe_twin, tool_names, FETCH_AND_RUN};

/// The fetch-and-run plan for `tool` run with `args` (its own from
/// `from`), if they are one of the pinned forms ([`FETCH_AND_RUN`]).
pub(crate) fn fetch_and_run(
    tool: &ToolPolicy,
    args: &[std::ffi::OsString],
    from: usize,
    ctx: &fetch_run::Context<'_>,
) -> Option<fetch_run::Plan> {
    fetch_run::plan_in(FETCH_AND_RUN, tool, args, from, ctx)
}

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::authority::{Authority, Host};

/// How a tool's CONNECT requests are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Package managers: only the allowlist is forwarded; the rest gets 403.
    Enforce,
    /// Cloud CLIs: everything is forwarded and logged.
    Observe,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        })
    }
}

/// One allowlist entry: a host pattern and the ports it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// An exact lowercase DNS name, or `*.suffix` for subdomains of suffix
    /// (at a dot boundary; the bare suffix is not included).
    pub pattern: &'static str,
    pub ports: &'static [u16],
    /// A pinned exception for a private registry: the name may resolve to a
    /// private range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    /// Loopback and link-local stay refused regardless.
    pub private: bool,
}

impl Rule {
    /// A rule for HTTPS on port 443, the default.
    pub const fn https(pattern: &'static str) -> Rule {
        Rule {
            pattern,
            ports: &[443],
            private: false,
        }
    }

    /// A registry on a private network, on the given ports. Say in a
    /// comment next to it whose registry it is.
    pub const fn private_registry(pattern: &'static str, ports: &'static [u16]) -> Rule {
        Rule {
            pattern,
            ports,
            private: true,
        }
    }

    /// Whether this rule covers the host and port.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        match host {
            Host::Name(name) => self.ports.contains(&port) && pattern_matches(self.pattern, name),
            // IP literals never match a name.
            Host::Ip(_) => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.pattern)?;
        for (i, port) in self.ports.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            write!(f, "{port}")?;
        }
        Ok(())
    }
}

/// Whether `name` (already normalised) matches `pattern`.
///
/// `*.suffix` matches `a.suffix` and `a.b.suffix`, never `suffix` itself and
/// never `evilsuffix`: the character before the suffix must be a dot.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|sub| !sub.is_empty()),
        None => pattern == name,
    }
}

/// One tool's entry in the pinned table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolPolicy {
    pub name: &'static str,
    pub mode: Mode,
    /// Hosts an enforce-mode tool may reach. Empty for observe mode.
    pub allow: &'static [Rule],
    /// Extra NO_PROXY entries beyond loopback: plaintext link-local services
    /// a tool must reach directly because a CONNECT-only gate can't carry them.
    pub no_proxy: &'static [&'static str],
    /// Which family of proxy overrides the tool needs (see `shim::child_env`).
    pub family: Family,
    /// Subcommands (with their aliases) that run the project's own code:
    /// observed, not enforced, not isolated. Everything else, an unknown or
    /// a missing subcommand included, is enforced. Moving a subcommand to
    /// enforce is deleting it from this list in `table.rs`.
    pub runs_project_code: &'static [&'static str],
    /// How to find the subcommand in the tool's arguments.
    pub subcommand_rule: SubcommandRule,
    /// Where a strict invocation of the tool may write (`writes`); the
    /// rest of the filesystem is read-only to it.
    pub(crate) writes: &'static [writes::Place],
}

/// Tools whose own configuration can beat HTTPS_PROXY, grouped by how to
/// override it from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// npm, npx, pnpm, pnpx, yarn, bun, corepack: `npm_config_*` (pnpm 10),
    /// `pnpm_config_*` (pnpm 11), `YARN_*`, `NODE_USE_ENV_PROXY` (node, and
    /// corepack >= 0.35).
    Node,
    /// pip, pip3, pipx, poetry, pdm, hatch, uv, uvx: `PIP_PROXY` (for pip,
    /// and pip children of the others).
    Python,
    /// cargo: `CARGO_HTTP_PROXY`.
    Cargo,
    /// mvn: no proxy variable at all; the JVM's system properties through
    /// `JAVA_TOOL_OPTIONS`, and `MAVEN_OPTS` telling Maven 3.9's resolver
    /// to read them.
    Maven,
    /// gradle: the JVM's system properties through `JAVA_TOOL_OPTIONS`, and
    /// `GRADLE_OPTS` turning the long-lived daemon off so that the JVM
    /// that downloads is one that read them.
    Gradle,
    /// Tools that read only the standard variables.
    Plain,
}

/// What became of a request, as the audit row records it: `allow` or `deny`.
/// The one yes-or-no of the whole gate; [`Decision`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    /// The verdict on a request whose dial failed. Refused by this gate's
    /// own address screen (`forbidden`): a deny. Any other failure (no
    /// answer, a refused connection, an upstream's refusal, the gate
    /// stopping) is a request this gate allowed and the network refused.
    pub fn of_failed_dial(forbidden: bool) -> Verdict {
        match forbidden {
            true => Verdict::Deny,
            false => Verdict::Allow,
        }
    }
}

/// The outcome of deciding one well-formed CONNECT target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enforce mode, and this rule allows it.
    Allowed(Rule),
    /// Observe mode: forwarded whatever the host.
    Observed,
    /// Enforce mode, and no rule covers it.
    NotAllowed,
    /// A package's own code, and this rule of the named entry allows it.
    Entry(Rule, &'static str),
    /// A package's own code (or code the gate could not name), and no
    /// entry of its allows it.
    PackageCode,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        !matches!(self, Decision::NotAllowed | Decision::PackageCode)
    }

    /// The reason recorded in the audit row.
    pub fn reason(&self, policy: &ToolPolicy) -> String {
        match self {
            Decision::Allowed(rule) => format!("allowlist rule {rule}"),
            Decision::Observed => "observe mode: forwarded and logged, not enforced".to_string(),
            Decision::NotAllowed => format!(
                "not on {}'s allowlist ({}): an allowlist block",
                policy.name,
                policy.allowlist_summary()
            ),
            Decision::Entry(rule, package) => format!("{package}'s pinned entry {rule}"),
            Decision::PackageCode => format!(
                "a package's own code may not reach it: {}'s allowlist is for {} itself, and no pinned \
                 package entry allows it",
                policy.name, policy.name
            ),
        }
    }
}

/// Who made a request, as the policy judges it (`who` finds out, from
/// the process that holds the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acting<'a> {
    /// The tool, or a program it runs for its own fetching (git, a nested
    /// guarded tool it started): the tool's allowlist.
    Tool,
    /// A package's own code: its pinned entry when `verified` (its name
    /// read where package code cannot forge it, from the registry's own
    /// package), and what any package code of the family may reach.
    Package { name: &'a str, verified: bool },
    /// The project's own scripts: the entries of the project's direct
    /// dependencies (they run their binaries: `prisma generate`), never
    /// the tool's registry.
    Project { dependencies: &'a [String] },
    /// Nothing the gate could name: nothing.
    Unknown,
}

impl ToolPolicy {
    /// Decides a normalised CONNECT target made by `acting`: the tool by
    /// its allowlist, package code by its entries. Observe mode forwards
    /// whoever asks. Pure.
    pub(crate) fn decide_as(&self, acting: &Acting<'_>, target: &Authority) -> Decision {
        if self.mode == Mode::Observe || *acting == Acting::Tool {
            return self.decide(target);
        }
        self.package_entries(acting)
            .into_iter()
            .find_map(|entry| {
                entry
                    .allow
                    .iter()
                    .find(|rule| rule.matches(&target.host, target.port))
                    .map(|rule| Decision::Entry(*rule, entry.name))
            })
            .unwrap_or(Decision::PackageCode)
    }

    /// The pinned package entries that speak for `acting` (none for the
    /// tool, whose allowlist does).
    pub(crate) fn package_entries(&self, acting: &Acting<'_>) -> Vec<&'static packages::PackageEntry> {
        let own: Vec<&'static packages::PackageEntry> = match acting {
            Acting::Tool | Acting::Unknown => return Vec::new(),
            Acting::Package { name, verified: true } => {
                packages::entry(self.family, name).into_iter().collect()
            }
            Acting::Package { verified: false, .. } => Vec::new(),
            Acting::Project { dependencies } => dependencies
                .iter()
                .filter_map(|name| packages::entry(self.family, name))
                .collect(),
        };
        own.into_iter()
            .chain(packages::any_package(self.family))
            .collect()
    }

    /// Decides a normalised CONNECT target. Pure: no lookup, no dial.
    pub fn decide(&self, target: &Authority) -> Decision {
        match self.mode {
            Mode::Observe => Decision::Observed,
            Mode::Enforce => self
                .allow
                .iter()
                .find(|rule| rule.matches(&target.host, target.port))
                .map_or(Decision::NotAllowed, |rule| Decision::Allowed(*rule)),
        }
    }

    /// Which addresses a direct dial to a target with this decision may
    /// land on: in enforce mode none in a forbidden range, unless the rule
    /// that allowed it pins a private registry; in observe mode any.
    pub fn address_check(&self, decision: &Decision) -> AddressCheck {
        match (self.mode, decision) {
            (Mode::Enforce, Decision::Allowed(rule)) => AddressCheck::Enforce {
                private_ok: rule.private,
            },
            (Mode::Enforce, _) => AddressCheck::Enforce { private_ok: false },
            (Mode::Observe, _) => AddressCheck::None,
        }
    }

    /// The allowlist as one short line, for messages.
    pub fn allowlist_summary(&self) -> String {
        if self.mode == Mode::Observe {
            return "observe mode, no allowlist".to_string();
        }
        let rules: Vec<String> = self.allow.iter().map(Rule::to_string).collect();
        rules.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::parse_authority;

    fn decide(tool: &str, target: &str) -> Decision {
        let policy = lookup(tool).unwrap_or_else(|| panic!("no policy for {tool}"));
        let target = parse_authority(target).unwrap_or_else(|e| panic!("{target}: {e}"));
        policy.decide(&target)
    }

    #[test]
    fn suffix_pattern_matches_subdomains_only() {
        assert!(pattern_matches("*.crates.io", "index.crates.io"));
        assert!(pattern_matches("*.crates.io", "a.b.crates.io"));
        assert!(!pattern_matches("*.crates.io", "crates.io"));
        assert!(!pattern_matches("*.crates.io", "evilcrates.io"));
        assert!(!pattern_matches("*.crates.io", ".crates.io"));
        assert!(!pattern_matches("*.crates.io", "crates.io.evil.com"));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        assert!(pattern_matches("registry.npmjs.org", "registry.npmjs.org"));
        assert!(!pattern_matches("registry.npmjs.org", "x.registry.npmjs.org"));
        assert!(!pattern_matches(
            "registry.npmjs.org",
            "registry.npmjs.org.evil.com"
        ));
        assert!(!pattern_matches("registry.npmjs.org", "evilregistry.npmjs.org"));
    }

    #[test]
    fn npm_registry_is_allowed_on_443_only() {
        assert_eq!(
            decide("npm", "registry.npmjs.org:443"),
            Decision::Allowed(Rule::https("registry.npmjs.org"))
        );
        assert_eq!(
            decide("npm", "REGISTRY.npmjs.org.:443"),
            Decision::Allowed(Rule::https("registry.npmjs.org"))
        );
        assert_eq!(decide("npm", "registry.npmjs.org:80"), Decision::NotAllowed);
        assert_eq!(decide("npm", "registry.npmjs.org:8443"), Decision::NotAllowed);
    }

    #[test]
    fn other_hosts_are_denied_in_enforce_mode() {
        assert_eq!(decide("npm", "evil.example:443"), Decision::NotAllowed);
        assert_eq!(decide("npm", "pypi.org:443"), Decision::NotAllowed);
        assert_eq!(decide("pip", "registry.npmjs.org:443"), Decision::NotAllowed);
    }

    #[test]
    fn ip_literals_never_match_a_name() {
        assert_eq!(decide("npm", "104.16.0.35:443"), Decision::NotAllowed);
        assert_eq!(decide("npm", "[::1]:443"), Decision::NotAllowed);
    }

    #[test]
    fn observe_mode_forwards_anything() {
        assert_eq!(decide("aws", "s3.amazonaws.com:443"), Decision::Observed);
        assert_eq!(decide("kubectl", "10.0.0.1:6443"), Decision::Observed);
        assert!(Decision::Observed.is_allow());
    }

    #[test]
    fn address_checks_follow_the_mode_and_the_rule() {
        let npm = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        let aws = lookup("aws").unwrap_or_else(|| panic!("aws is pinned"));
        let private = Rule::private_registry("npm.corp.example", &[443]);
        assert_eq!(
            npm.address_check(&Decision::Allowed(Rule::https("registry.npmjs.org"))),
            AddressCheck::Enforce { private_ok: false }
        );
        assert_eq!(
            npm.address_check(&Decision::Allowed(private)),
            AddressCheck::Enforce { private_ok: true }
        );
        assert_eq!(
            npm.address_check(&Decision::NotAllowed),
            AddressCheck::Enforce { private_ok: false }
        );
        assert_eq!(aws.address_check(&Decision::Observed), AddressCheck::None);
    }

    #[test]
    fn only_the_gates_own_screen_makes_a_failed_dial_a_deny() {
        assert_eq!(Verdict::of_failed_dial(true), Verdict::Deny);
        assert_eq!(Verdict::of_failed_dial(false), Verdict::Allow);
    }

    #[test]
    fn rule_display_lists_ports() {
        assert_eq!(Rule::https("a.b").to_string(), "a.b:443");
        let rule = Rule {
            pattern: "*.a.b",
            ports: &[443, 8443],
            private: false,
        };
        assert_eq!(rule.to_string(), "*.a.b:443,8443");
    }
}
