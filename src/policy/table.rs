//! The pinned table: one line per guarded tool name, its mode, and the
//! hosts an enforce-mode tool may reach. Sources for every host are in
//! `docs/registries.md` of the shared docs (the tools' own code).

use crate::policy::{Family, Mode, Rule, ToolPolicy};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::Host;

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
}
