//! The pinned policy: which tools cli-guard guards, in which mode, and the
//! hosts each enforce-mode tool may reach; plus the pure decision function.
//!
//! An allowlist change is a code change: there is deliberately no flag,
//! variable or file that widens these lists at run time. Sources for every
//! host are in `docs/registries.md` of the shared docs (the tools' own code).

pub mod addr;
pub mod authority;

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
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
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
}

/// Tools whose own configuration can beat HTTPS_PROXY, grouped by how to
/// override it from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// npm, npx, pnpm, yarn: `npm_config_*`, `YARN_*`, `NODE_USE_ENV_PROXY`.
    Node,
    /// pip, pip3, uv: `PIP_PROXY`.
    Python,
    /// cargo: `CARGO_HTTP_PROXY`.
    Cargo,
    /// Tools that read only the standard variables.
    Plain,
}

const NPM_REGISTRY: &[Rule] = &[Rule::https("registry.npmjs.org")];
const PYPI: &[Rule] = &[Rule::https("pypi.org"), Rule::https("files.pythonhosted.org")];
const RUBYGEMS: &[Rule] = &[Rule::https("rubygems.org"), Rule::https("index.rubygems.org")];

/// Instance-metadata endpoints the AWS CLI reads over plaintext HTTP (EC2
/// IMDS on IPv4 and IPv6, ECS task credentials). They must bypass a
/// CONNECT-only proxy or credentials on EC2/ECS stop working.
const AWS_METADATA: &[&str] = &["169.254.169.254", "169.254.170.2", "fd00:ec2::254"];

const fn enforce(name: &'static str, family: Family, allow: &'static [Rule]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Enforce,
        allow,
        no_proxy: &[],
        family,
    }
}

const fn observe(name: &'static str, no_proxy: &'static [&'static str]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Observe,
        allow: &[],
        no_proxy,
        family: Family::Plain,
    }
}

/// The pinned table. One line per tool name, sorted by mode then name.
pub static TOOLS: &[ToolPolicy] = &[
    // Homebrew: the JSON API, bottles on GitHub Packages, and the blob host
    // ghcr.io redirects to. pkg-containers.githubusercontent.com is GitHub's
    // user-content storage: it serves any package anyone publishes, which is
    // broad, but every bottle download lands there.
    enforce(
        "brew",
        Family::Plain,
        &[
            Rule::https("formulae.brew.sh"),
            Rule::https("ghcr.io"),
            Rule::https("pkg-containers.githubusercontent.com"),
        ],
    ),
    enforce("bundle", Family::Plain, RUBYGEMS),
    enforce(
        "cargo",
        Family::Cargo,
        &[Rule::https("index.crates.io"), Rule::https("static.crates.io")],
    ),
    // Composer: Packagist metadata, plus GitHub's API and codeload for the
    // dist zips of GitHub-hosted packages (the default for most packages).
    // Both GitHub hosts serve arbitrary user content: allowing them allows a
    // lot, but without them `composer install` fails for most projects.
    enforce(
        "composer",
        Family::Plain,
        &[
            Rule::https("repo.packagist.org"),
            Rule::https("packagist.org"),
            Rule::https("api.github.com"),
            Rule::https("codeload.github.com"),
        ],
    ),
    enforce("gem", Family::Plain, RUBYGEMS),
    // Go: the module proxy, the checksum database, and storage.googleapis.com,
    // where proxy.golang.org redirects module zips. The latter is a shared
    // host for every Google Cloud Storage bucket; a CONNECT gate cannot narrow
    // it to a path.
    enforce(
        "go",
        Family::Plain,
        &[
            Rule::https("proxy.golang.org"),
            Rule::https("sum.golang.org"),
            Rule::https("storage.googleapis.com"),
        ],
    ),
    enforce("npm", Family::Node, NPM_REGISTRY),
    enforce("npx", Family::Node, NPM_REGISTRY),
    enforce("pip", Family::Python, PYPI),
    enforce("pip3", Family::Python, PYPI),
    enforce("pnpm", Family::Node, NPM_REGISTRY),
    enforce("uv", Family::Python, PYPI),
    // Yarn: its own registry front, plus registry.npmjs.org because lockfiles
    // written by npm (and many yarn.lock files) carry its URLs.
    enforce(
        "yarn",
        Family::Node,
        &[
            Rule::https("registry.yarnpkg.com"),
            Rule::https("registry.npmjs.org"),
        ],
    ),
    observe("aws", AWS_METADATA),
    observe("docker", &[]),
    observe("gh", &[]),
    observe("kubectl", &[]),
    observe("tailscale", &[]),
];

/// The policy for a tool name, if cli-guard guards it.
pub fn lookup(name: &str) -> Option<&'static ToolPolicy> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Every guarded tool name, in table order.
pub fn tool_names() -> impl Iterator<Item = &'static str> {
    TOOLS.iter().map(|t| t.name)
}

/// What became of a request, as the audit row records it: `allow` or `deny`.
/// The one yes-or-no of the whole gate; [`Decision`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
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
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        !matches!(self, Decision::NotAllowed)
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
        }
    }
}

impl ToolPolicy {
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
    fn table_has_the_required_tools() {
        for name in [
            "brew", "npm", "npx", "pnpm", "yarn", "pip", "pip3", "uv", "cargo", "gem", "bundle", "go",
            "composer",
        ] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Enforce), "{name}");
        }
        for name in ["aws", "gh", "kubectl", "docker", "tailscale"] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Observe), "{name}");
        }
        assert_eq!(lookup("cli-guard"), None);
        assert_eq!(lookup("egress-demo"), None);
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<&str> = tool_names().collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    /// Every pattern in the table must be a valid normalised name, or
    /// `*.` followed by one with at least two labels: no bare `*`, no `*.`,
    /// no mid-name globs, no uppercase, no trailing dot.
    #[test]
    fn table_patterns_are_well_formed() {
        for tool in TOOLS {
            assert_eq!(
                tool.mode == Mode::Enforce,
                !tool.allow.is_empty(),
                "{}",
                tool.name
            );
            for rule in tool.allow {
                let name = rule.pattern.strip_prefix("*.").unwrap_or(rule.pattern);
                assert!(!name.contains('*'), "{}: {}", tool.name, rule.pattern);
                assert!(name.contains('.'), "{}: {} is too broad", tool.name, rule.pattern);
                assert_eq!(
                    crate::policy::authority::parse_host(name),
                    Ok(Host::Name(name.to_string())),
                    "{}: {} is not a normalised name",
                    tool.name,
                    rule.pattern
                );
                assert!(!rule.ports.is_empty(), "{}: {}", tool.name, rule.pattern);
            }
        }
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
