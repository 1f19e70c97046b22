//! Where a strict invocation may write: its project (the working
//! directory), the temp directory, and the places its tool installs into
//! and caches in, pinned per tool beside its hosts (`table`) and printed by
//! `cli-guard policy`. Everything else is read-only to the tool (`sys::mounts`).
//!
//! Pure: [`resolve`] turns a tool's [`Place`]s into paths from the facts
//! the shim gathers (the environment, the home and working directories,
//! whether the invocation installs globally); the shim checks them against
//! what must never be writable (its own binary, its shims, the audit log,
//! the home directory itself) and does the I/O.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a place's path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// The working directory: the project being installed or built.
    Project,
    /// `$TMPDIR` (else /tmp), and /var/tmp.
    Temp,
    /// The home directory.
    Home,
    /// `$XDG_CACHE_HOME`, else `~/.cache`.
    Cache,
    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    Data,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    Config,
    /// The value of an environment variable, when it is set and absolute.
    Var(&'static str),
    /// The active virtualenv (`$VIRTUAL_ENV`) or conda environment
    /// (`$CONDA_PREFIX`).
    Environment,
    /// The prefix of the Python interpreter the tool runs under (read from
    /// its script's `#!` line): where a `pip install` outside a virtualenv
    /// writes its packages and scripts.
    Interpreter,
    /// The prefix of the node the tool runs under: npm's global prefix.
    NodePrefix,
    /// `$CARGO_HOME`, else `~/.cargo`.
    CargoHome,
}

/// One place a tool may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) base: Base,
    /// Below the base; empty for the base itself.
    pub(crate) path: &'static str,
    /// Only for a global install (`npm install -g`, `cargo install`,
    /// `go install`): where it puts programs. Anything left there runs
    /// later, so it is writable only when the user asked for exactly that.
    pub(crate) global_only: bool,
    /// The tools that need the place to exist (their cache or store): the
    /// shim makes it, when missing, before an invocation of one of them,
    /// since the tool cannot make it in a read-only parent. Other tools of
    /// the family write it only when it is there.
    pub(crate) made_for: &'static [&'static str],
}

impl Place {
    pub(crate) const fn at(base: Base, path: &'static str) -> Place {
        Place {
            base,
            path,
            global_only: false,
            made_for: &[],
        }
    }

    /// The place, made when missing for these tools.
    pub(crate) const fn made(base: Base, path: &'static str, made_for: &'static [&'static str]) -> Place {
        Place {
            base,
            path,
            global_only: false,
            made_for,
        }
    }

    /// The place, writable only for a global install.
    pub(crate) const fn global(base: Base, path: &'static str) -> Place {
        Place {
            base,
            path,
            global_only: true,
            made_for: &[],
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base {
            Base::Project => f.write_str("the project")?,
            Base::Temp => f.write_str("temp")?,
            Base::Home => f.write_str("~")?,
            Base::Cache => f.write_str("~/.cache")?,
            Base::Data => f.write_str("~/.local/share")?,
            Base::Config => f.write_str("~/.config")?,
            Base::Var(var) => write!(f, "${var}")?,
            Base::Environment => f.write_str("the active virtualenv")?,
            Base::Interpreter => f.write_str("the interpreter's prefix")?,
            Base::NodePrefix => f.write_str("node's prefix")?,
            Base::CargoHome => f.write_str("$CARGO_HOME")?,
        }
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if self.global_only {
            f.write_str(" (global installs)")?;
        }
        Ok(())
    }
}

/// What [`resolve`] reads: the environment and what the shim found out.
pub(crate) struct Facts<'a> {
    pub(crate) cwd: &'a Path,
    pub(crate) home: Option<&'a Path>,
    pub(crate) var: &'a dyn Fn(&str) -> Option<String>,
    /// The invocation installs globally (`-g`, `cargo install`, …).
    pub(crate) global: bool,
    /// The prefix of the Python interpreter the tool runs under.
    pub(crate) interpreter: Option<PathBuf>,
    /// The prefix of the node the tool runs under.
    pub(crate) node_prefix: Option<PathBuf>,
}

impl Facts<'_> {
    /// A variable's value as a directory: set, not empty, absolute.
    fn dir(&self, var: &str) -> Option<PathBuf> {
        (self.var)(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    }

    fn xdg(&self, var: &str, default: &str) -> Option<PathBuf> {
        self.dir(var).or_else(|| self.home.map(|home| home.join(default)))
    }

    /// The base directories of `base` (Temp has two).
    fn bases(&self, base: Base) -> Vec<PathBuf> {
        match base {
            Base::Project => vec![self.cwd.to_path_buf()],
            Base::Temp => {
                let tmp = self.dir("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
                vec![tmp, PathBuf::from("/var/tmp")]
            }
            Base::Home => self.home.map(Path::to_path_buf).into_iter().collect(),
            Base::Cache => self.xdg("XDG_CACHE_HOME", ".cache").into_iter().collect(),
            Base::Data => self.xdg("XDG_DATA_HOME", ".local/share").into_iter().collect(),
            Base::Config => self.xdg("XDG_CONFIG_HOME", ".config").into_iter().collect(),
            Base::Var(var) => self.dir(var).into_iter().collect(),
            Base::Environment => ["VIRTUAL_ENV", "CONDA_PREFIX"]
                .iter()
                .filter_map(|var| self.dir(var))
                .collect(),
            Base::Interpreter => self.interpreter.clone().into_iter().collect(),
            Base::NodePrefix => self.node_prefix.clone().into_iter().collect(),
            Base::CargoHome => self.xdg("CARGO_HOME", ".cargo").into_iter().collect(),
        }
    }
}

/// One place resolved: its path, and whether the shim makes it when it is
/// missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) path: PathBuf,
    pub(crate) make: bool,
}

/// The paths `places` name under `facts` for `tool`, in order, once each;
/// a place whose base is unknown (no such variable, no home) names none.
pub(crate) fn resolve(places: &[Place], tool: &str, facts: &Facts<'_>) -> Vec<Resolved> {
    let mut resolved: Vec<Resolved> = Vec::new();
    for place in places.iter().filter(|p| facts.global || !p.global_only) {
        for base in facts.bases(place.base) {
            let path = match place.path {
                "" => base,
                below => base.join(below),
            };
            let make = place.made_for.contains(&tool);
            match resolved.iter_mut().find(|r| r.path == path) {
                Some(known) => known.make |= make,
                None => resolved.push(Resolved { path, make }),
            }
        }
    }
    resolved
}

/// The prefix of the Python interpreter a `#!` line names
/// (`#!/opt/py/bin/python3.11` → `/opt/py`); `None` for `env` lines and
/// anything else. Pure.
pub(crate) fn interpreter_prefix(first_line: &str) -> Option<PathBuf> {
    let interpreter = first_line.strip_prefix("#!")?.split_whitespace().next()?;
    let path = Path::new(interpreter);
    let name = path.file_name()?.to_str()?;
    if !name.starts_with("python") {
        return None;
    }
    let bin = path.parent()?;
    (bin.file_name()? == "bin").then(|| bin.parent().map(Path::to_path_buf))?
}

/// Whether `args` (a tool's own arguments) ask for a global install: npm's,
/// pnpm's, yarn's and bun's `-g`/`--global`/`--location=global`, and the
/// `install` subcommand of cargo and go.
pub(crate) fn installs_globally(tool: &str, subcommand: Option<&str>, args: &[&str]) -> bool {
    match tool {
        "cargo" | "go" => subcommand == Some("install"),
        _ => args
            .iter()
            .any(|a| matches!(*a, "-g" | "--global" | "--location=global")),
    }
}

/// Node's package managers: the project, temp, and their caches and stores.
pub(crate) const NODE: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, ".npm", &["npm", "npx"]),
    Place::at(Base::Var("npm_config_cache"), ""),
    Place::at(Base::Cache, "node-gyp"),
    Place::at(Base::Home, ".node-gyp"),
    Place::made(Base::Cache, "pnpm", &["pnpm", "pnpx", "pnx"]),
    Place::made(Base::Data, "pnpm/store", &["pnpm", "pnpx", "pnx"]),
    Place::at(Base::Var("npm_config_store_dir"), ""),
    Place::made(Base::Home, ".yarn/berry", &["yarn"]),
    Place::at(Base::Cache, "yarn"),
    Place::at(Base::Var("YARN_CACHE_FOLDER"), ""),
    Place::made(Base::Home, ".bun/install/cache", &["bun", "bunx"]),
    Place::at(Base::Var("BUN_INSTALL_CACHE_DIR"), ""),
    Place::made(Base::Cache, "deno", &["deno"]),
    Place::at(Base::Var("DENO_DIR"), ""),
    Place::made(Base::Cache, "node/corepack", &["corepack", "yarn", "pnpm"]),
    Place::at(Base::Var("COREPACK_HOME"), ""),
    Place::global(Base::NodePrefix, "lib/node_modules"),
    Place::global(Base::NodePrefix, "bin"),
    Place::global(Base::Var("npm_config_prefix"), ""),
    Place::global(Base::Var("PNPM_HOME"), ""),
    Place::global(Base::Home, ".bun/install/global"),
    Place::global(Base::Home, ".bun/bin"),
];

/// Python's package managers: the project, temp, the active environment,
/// the interpreter's own (outside one), the `--user` site-packages and
/// each tool's cache and data.
pub(crate) const PYTHON: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::at(Base::Environment, ""),
    Place::at(Base::Interpreter, "lib"),
    Place::at(Base::Interpreter, "bin"),
    Place::at(Base::Home, ".local/lib"),
    Place::made(Base::Cache, "pip", &["pip", "pip3", "pipx", "hatch"]),
    Place::at(Base::Var("PIP_CACHE_DIR"), ""),
    Place::made(Base::Cache, "uv", &["uv", "uvx", "pipx", "hatch"]),
    Place::at(Base::Var("UV_CACHE_DIR"), ""),
    Place::made(Base::Data, "uv", &["uv", "uvx"]),
    Place::at(Base::Var("UV_TOOL_DIR"), ""),
    Place::at(Base::Var("UV_PYTHON_INSTALL_DIR"), ""),
    Place::made(Base::Data, "pipx", &["pipx"]),
    Place::at(Base::Home, ".local/pipx"),
    Place::at(Base::Var("PIPX_HOME"), ""),
    Place::made(Base::Cache, "pypoetry", &["poetry"]),
    Place::at(Base::Var("POETRY_CACHE_DIR"), ""),
    Place::made(Base::Cache, "pdm", &["pdm"]),
    Place::made(Base::Data, "pdm", &["pdm"]),
    Place::made(Base::Cache, "hatch", &["hatch"]),
    Place::made(Base::Data, "hatch", &["hatch"]),
];

/// cargo: the project (and its target directory), temp, the registry and
/// git caches; all of CARGO_HOME for `cargo install`.
pub(crate) const CARGO: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::CargoHome, "registry", &["cargo"]),
    Place::made(Base::CargoHome, "git", &["cargo"]),
    Place::at(Base::Var("CARGO_TARGET_DIR"), ""),
    Place::global(Base::CargoHome, ""),
];

/// go: the project, temp, the module and build caches; GOBIN for
/// `go install`.
pub(crate) const GO: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, "go/pkg/mod", &["go"]),
    Place::at(Base::Var("GOMODCACHE"), ""),
    Place::made(Base::Cache, "go-build", &["go"]),
    Place::at(Base::Var("GOCACHE"), ""),
    Place::global(Base::Home, "go/bin"),
    Place::global(Base::Var("GOBIN"), ""),
];

/// Ruby's gem and bundle.
pub(crate) const RUBY: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, ".gem", &["gem", "bundle"]),
    Place::made(Base::Home, ".bundle", &["bundle"]),
    Place::at(Base::Data, "gem"),
    Place::at(Base::Var("GEM_HOME"), ""),
];

/// composer.
pub(crate) const COMPOSER: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::at(Base::Home, ".composer"),
    Place::made(Base::Cache, "composer", &["composer"]),
    Place::at(Base::Config, "composer"),
    Place::at(Base::Var("COMPOSER_HOME"), ""),
    Place::at(Base::Var("COMPOSER_CACHE_DIR"), ""),
];

/// The JVM's build tools.
pub(crate) const JVM: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, ".m2", &["mvn"]),
    Place::made(Base::Home, ".gradle", &["gradle"]),
    Place::at(Base::Var("GRADLE_USER_HOME"), ""),
];

/// conda and its relatives.
pub(crate) const CONDA: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::at(Base::Environment, ""),
    Place::made(Base::Home, ".conda", &["conda", "mamba"]),
    Place::at(Base::Var("CONDA_PKGS_DIRS"), ""),
    Place::at(Base::Var("MAMBA_ROOT_PREFIX"), ""),
    Place::at(Base::Home, "micromamba"),
    Place::at(Base::Cache, "rattler"),
    Place::at(Base::Home, ".pixi"),
    Place::at(Base::Var("PIXI_HOME"), ""),
];

/// dotnet.
pub(crate) const DOTNET: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, ".nuget", &["dotnet"]),
    Place::at(Base::Home, ".dotnet"),
    Place::at(Base::Var("NUGET_PACKAGES"), ""),
];

/// Homebrew.
pub(crate) const BREW: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::at(Base::Var("HOMEBREW_PREFIX"), ""),
    Place::at(Base::Var("HOMEBREW_CACHE"), ""),
    Place::at(Base::Cache, "Homebrew"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(var: &'a dyn Fn(&str) -> Option<String>, global: bool) -> Facts<'a> {
        Facts {
            cwd: Path::new("/work/proj"),
            home: Some(Path::new("/home/u")),
            var,
            global,
            interpreter: Some(PathBuf::from("/opt/py")),
            node_prefix: Some(PathBuf::from("/usr")),
        }
    }

    #[test]
    fn node_writes_its_caches_and_its_prefix_only_when_global() {
        let none = |_: &str| None;
        let paths = |global| -> Vec<PathBuf> {
            resolve(NODE, "npm", &facts(&none, global))
                .into_iter()
                .map(|r| r.path)
                .collect()
        };
        let local = paths(false);
        for want in [
            "/work/proj",
            "/tmp",
            "/var/tmp",
            "/home/u/.npm",
            "/home/u/.cache/node-gyp",
        ] {
            assert!(local.contains(&PathBuf::from(want)), "{want}: {local:?}");
        }
        assert!(!local.contains(&PathBuf::from("/usr/bin")), "{local:?}");
        let global = paths(true);
        assert!(global.contains(&PathBuf::from("/usr/bin")), "{global:?}");
        assert!(
            global.contains(&PathBuf::from("/usr/lib/node_modules")),
            "{global:?}"
        );
    }

    #[test]
    fn variables_move_a_place_and_relative_values_are_ignored() {
        let var = |name: &str| match name {
            "TMPDIR" => Some("/scratch/tmp".to_string()),
            "XDG_CACHE_HOME" => Some("/c".to_string()),
            "npm_config_cache" => Some("relative/cache".to_string()),
            _ => None,
        };
        let paths: Vec<PathBuf> = resolve(NODE, "npm", &facts(&var, false))
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert!(paths.contains(&PathBuf::from("/scratch/tmp")), "{paths:?}");
        assert!(paths.contains(&PathBuf::from("/c/node-gyp")), "{paths:?}");
        assert!(!paths.iter().any(|p| p.ends_with("relative/cache")), "{paths:?}");
    }

    #[test]
    fn a_tool_makes_its_own_cache_only() {
        let none = |_: &str| None;
        let made = |tool: &str| -> Vec<PathBuf> {
            resolve(NODE, tool, &facts(&none, false))
                .into_iter()
                .filter(|r| r.make)
                .map(|r| r.path)
                .collect()
        };
        assert_eq!(made("npm"), [PathBuf::from("/home/u/.npm")]);
        assert!(made("pnpm").contains(&PathBuf::from("/home/u/.local/share/pnpm/store")));
        assert!(!made("pnpm").contains(&PathBuf::from("/home/u/.npm")));
    }

    #[test]
    fn the_interpreter_prefix_comes_from_a_python_shebang() {
        assert_eq!(
            interpreter_prefix("#!/root/.pyenv/versions/3.11.7/bin/python3.11"),
            Some(PathBuf::from("/root/.pyenv/versions/3.11.7"))
        );
        assert_eq!(
            interpreter_prefix("#!/usr/bin/python3 -I"),
            Some(PathBuf::from("/usr"))
        );
        assert_eq!(interpreter_prefix("#!/usr/bin/env python3"), None);
        assert_eq!(interpreter_prefix("#!/bin/sh"), None);
        assert_eq!(interpreter_prefix("\u{7f}ELF"), None);
    }

    #[test]
    fn global_installs_are_read_from_the_arguments() {
        assert!(installs_globally("npm", Some("install"), &["install", "-g", "x"]));
        assert!(installs_globally(
            "npm",
            Some("i"),
            &["--location=global", "i", "x"]
        ));
        assert!(!installs_globally("npm", Some("install"), &["install", "x"]));
        assert!(installs_globally(
            "cargo",
            Some("install"),
            &["install", "ripgrep"]
        ));
        assert!(!installs_globally("cargo", Some("build"), &["build"]));
    }

    #[test]
    fn places_print_as_an_operator_reads_them() {
        assert_eq!(Place::at(Base::Home, ".npm").to_string(), "~/.npm");
        assert_eq!(Place::at(Base::Var("DENO_DIR"), "").to_string(), "$DENO_DIR");
        assert_eq!(
            Place::global(Base::NodePrefix, "bin").to_string(),
            "node's prefix/bin (global installs)"
        );
        assert_eq!(Place::at(Base::Project, "").to_string(), "the project");
    }
}
