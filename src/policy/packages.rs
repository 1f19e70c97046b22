//! What a package's own code may reach: its install and build scripts,
//! judged apart from its tool. By default nothing: a postinstall that
//! reaches npm's registry is how the worms of 2025 spread, and the tool's
//! allowlist is the tool's. The exceptions are pinned here, one line per
//! package (never per host), each with the package's own code as its
//! source, for the well-known installs that download what they need.
//! `cli-guard policy` prints them; an entry is honoured only for a package
//! whose name the gate read where package code cannot forge it, from a
//! package its client fetched from the registry itself (`who`).
//!
//! Shared hosts (a CDN, GitHub's release assets) are kept to the package
//! that needs them: the entry makes them a way out for that package's code
//! only. One host is for any package code of the Node family: nodejs.org,
//! where node-gyp (run as the package being built, by every native
//! package) fetches Node's headers; it serves only Node's own releases.
//! Pure: the gate asks, knowing who acted.

use crate::policy::{Family, Rule};

/// One package's pinned entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackageEntry {
    /// The package manager family whose packages it names.
    pub(crate) family: Family,
    /// The package's name as its registry knows it (`@scope/name`).
    pub(crate) name: &'static str,
    pub(crate) allow: &'static [Rule],
    /// Where in the package's own code the hosts come from.
    pub(crate) source: &'static str,
}

const GITHUB_RELEASES: &[Rule] = &[
    Rule::https("github.com"),
    Rule::https("release-assets.githubusercontent.com"),
];
const PLAYWRIGHT: &[Rule] = &[
    Rule::https("cdn.playwright.dev"),
    Rule::https("playwright.download.prss.microsoft.com"),
];

const fn npm(name: &'static str, allow: &'static [Rule], source: &'static str) -> PackageEntry {
    PackageEntry {
        family: Family::Node,
        name,
        allow,
        source,
    }
}

/// The pinned entries. Adding one is a code change, reviewed with its
/// source: there is no flag, variable or file that adds one at run time.
pub(crate) const PACKAGES: &[PackageEntry] = &[
    npm(
        "puppeteer",
        &[Rule::https("storage.googleapis.com")],
        "postinstall install.mjs -> @puppeteer/browsers: chrome and chrome-headless-shell from the \
         chrome-for-testing-public bucket (browser-data/chrome.js, chrome-headless-shell.js)",
    ),
    npm(
        "cypress",
        &[Rule::https("download.cypress.io"), Rule::https("cdn.cypress.io")],
        "postinstall dist/index.js --exec install: tasks/download.js (download.cypress.io, redirected \
         to cdn.cypress.io)",
    ),
    npm(
        "electron",
        GITHUB_RELEASES,
        "postinstall install.js -> @electron/get: github.com/electron/electron/releases/download, \
         redirected to release assets (electron <= 41; later versions download on first use)",
    ),
    npm(
        "@prisma/engines",
        &[Rule::https("binaries.prisma.sh")],
        "postinstall dist/scripts/postinstall.js -> @prisma/fetch-engine: binaries.prisma.sh",
    ),
    npm(
        "@playwright/browser-chromium",
        PLAYWRIGHT,
        "install install.js -> playwright-core's registry: cdn.playwright.dev, then its mirror",
    ),
    npm(
        "@playwright/browser-firefox",
        PLAYWRIGHT,
        "install install.js -> playwright-core's registry: cdn.playwright.dev, then its mirror",
    ),
    npm(
        "@playwright/browser-webkit",
        PLAYWRIGHT,
        "install install.js -> playwright-core's registry: cdn.playwright.dev, then its mirror",
    ),
    npm(
        "bcrypt",
        GITHUB_RELEASES,
        "install node-pre-gyp install: package.json binary.host, the package's GitHub releases",
    ),
    npm(
        "sqlite3",
        GITHUB_RELEASES,
        "install prebuild-install: the package's repository's GitHub releases",
    ),
    npm(
        "canvas",
        GITHUB_RELEASES,
        "install prebuild-install: the package's repository's GitHub releases",
    ),
    npm(
        "sharp",
        GITHUB_RELEASES,
        "install prebuild-install (sharp <= 0.32; later versions take binaries from the registry as \
         dependencies, fetched by the tool)",
    ),
];

/// What any package code of a family may reach, whoever it is.
pub(crate) const ANY_PACKAGE: &[PackageEntry] = &[npm(
    "(any package's native build)",
    &[Rule::https("nodejs.org")],
    "node-gyp, run by npm as the package being built: Node's headers from process.release.headersUrl \
     (lib/process-release.js), once per Node version",
)];

/// The entry of `name` in `family`, if one is pinned.
pub(crate) fn entry(family: Family, name: &str) -> Option<&'static PackageEntry> {
    PACKAGES.iter().find(|e| e.family == family && e.name == name)
}

/// What any package code of `family` may reach.
pub(crate) fn any_package(family: Family) -> impl Iterator<Item = &'static PackageEntry> {
    ANY_PACKAGE.iter().filter(move |e| e.family == family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_package_has_one_entry_with_hosts_and_a_source() {
        for (i, e) in PACKAGES.iter().enumerate() {
            assert!(!e.allow.is_empty() && !e.source.is_empty(), "{e:?}");
            assert!(
                !PACKAGES[..i]
                    .iter()
                    .any(|o| o.family == e.family && o.name == e.name),
                "{} twice",
                e.name
            );
        }
        assert!(entry(Family::Node, "puppeteer").is_some());
        assert!(entry(Family::Python, "puppeteer").is_none());
        assert!(entry(Family::Node, "evil-worm").is_none());
    }

    #[test]
    fn no_entry_names_a_registry() {
        let registries = [
            "registry.npmjs.org",
            "pypi.org",
            "files.pythonhosted.org",
            "index.crates.io",
        ];
        for e in PACKAGES.iter().chain(ANY_PACKAGE) {
            for rule in e.allow {
                assert!(
                    !registries.contains(&rule.pattern),
                    "{} names {}",
                    e.name,
                    rule.pattern
                );
            }
        }
    }
}
