//! The programs a tool runs for its own fetching, judged as the tool
//! (`who`): everything else it starts runs a package's code, judged by the
//! package's entries. Pinned per tool, like its hosts, and kept short: a
//! helper is a program that fetches for the tool and runs no package's
//! code itself.
//!
//! A helper is known by its executable, never by its name alone: each
//! name is resolved on the tool's PATH before the tool runs (git's
//! transports in git's own directory), and the gate compares the file a
//! process runs (device and inode) with those. A copy of `curl` named
//! `git` in a writable place is nobody's helper.
//!
//! `anywhere`: helpers when the tool or another helper started them (git
//! and its transports for a git dependency). `direct`: helpers only when
//! the tool itself started them. `itself`: the tool's own executable,
//! started by the tool: pipx's, hatch's and pdm's interpreter running pip
//! in the environment they make (which then runs build backends as its
//! children: package code), gradle's JVM (its single-use daemon),
//! dotnet's build nodes, bunx's bun (which it runs to install the program
//! into its cache). Not poetry's: poetry 2 installs build dependencies in
//! its own process, and the interpreter it starts is the build backend
//! itself. Not cli-guard: a nested guarded tool is judged as whatever
//! started it.

use crate::policy::{Family, ToolPolicy};

/// A tool's helper programs, by executable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Helpers {
    pub(crate) anywhere: &'static [&'static str],
    pub(crate) direct: &'static [&'static str],
    /// The tool's own executable, started by the tool, is a helper.
    pub(crate) itself: bool,
}

const GIT: &[&str] = &["git", "git-remote-https", "git-remote-http"];
const GO_VCS: &[&str] = &[
    "git",
    "git-remote-https",
    "git-remote-http",
    "hg",
    "svn",
    "bzr",
    "fossil",
];
const BREW: &[&str] = &["git", "git-remote-https", "git-remote-http", "curl"];

impl ToolPolicy {
    /// The helper programs of this tool. Pure.
    pub(crate) fn helpers(&self) -> Helpers {
        let (direct, itself): (&'static [&'static str], bool) = match (self.family, self.name) {
            (Family::Python, "pipx" | "hatch" | "pdm") => (&["uv"], true),
            (Family::Gradle, _) => (&["java"], true),
            (_, "dotnet") => (&[], true),
            (_, "bunx") => (&["bun"], true),
            _ => (&[], false),
        };
        let anywhere = match self.name {
            "go" => GO_VCS,
            "brew" => BREW,
            _ => GIT,
        };
        Helpers {
            anywhere,
            direct,
            itself,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::lookup;

    #[test]
    fn pip_and_uv_have_no_interpreter_helper_but_pipx_does() {
        let helpers = |tool: &str| {
            lookup(tool)
                .unwrap_or_else(|| panic!("{tool} is pinned"))
                .helpers()
        };
        assert!(
            helpers("pip").direct.is_empty(),
            "pip's python children are build backends"
        );
        assert!(helpers("uv").direct.is_empty());
        assert_eq!(helpers("pipx").direct, ["uv"]);
        assert!(helpers("pipx").itself, "pipx's own interpreter");
        assert!(!helpers("pip").itself && !helpers("npm").itself);
        assert!(
            helpers("poetry").direct.is_empty(),
            "poetry's python children are build backends"
        );
        assert_eq!(
            helpers("bunx").direct,
            ["bun"],
            "bun.exe, as npm installs it, too"
        );
        assert!(helpers("bun").direct.is_empty());
        assert!(helpers("npm").anywhere.contains(&"git"));
        assert!(helpers("brew").anywhere.contains(&"curl"));
        assert!(!helpers("npm").anywhere.contains(&"curl"));
    }
}
