//! Where a strict invocation may write: its project (the working
//! directory), the temp directory, and the places its tool installs into
//! and caches in, pinned per tool beside its hosts (`table`) and printed by
//! `cli-guard policy`. Everything else is read-only to the tool (`sys::mounts`).
//!
//! Pure: [`resolve`] turns a tool's [`Place`]s into paths from the facts
//! the shim gathers (the environment, the home and working directories,
//! the tool's arguments, whether the invocation installs globally); a
//! directory the user named with one of the tool's own options (`npm
//! --cache DIR`, `pip --target DIR`, `cargo --target-dir DIR`) is
//! writable, since the user asked for it there. The shim checks them against
//! what must never be writable (its own binary, its shims, the audit log,
//! the home directory itself) and does the I/O.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a place's path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// The working directory: the project being installed or built.
    Project,
    /// `$TMPDIR`, /tmp and /var/tmp.
    Temp,
    /// The home directory.
    Home,
    /// `$XDG_CACHE_HOME`, else `~/.cache`.
    Cache,
    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    Data,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    Config,
    /// `$XDG_STATE_HOME`, else `~/.local/state`.
    State,
    /// The home directory of the user's account (the password database's,
    /// which the JVM takes for `user.home` whatever `$HOME` says).
    AccountHome,
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
    /// The directory an option of the tool's names on its command line
    /// (`--cache DIR` or `--cache=DIR`; relative to the working directory):
    /// the shim makes it when missing, as the tool would.
    Option(&'static [&'static str]),
    /// A source tree an option of the tool's names (`pip install -e DIR`,
    /// `uvx --from DIR`): writable when it is a directory (its build
    /// writes metadata in it), never made; a value that is not a
    /// directory (a package name, a URL) names none.
    Source(&'static [&'static str]),
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

    /// The place, writable only for a global install, and made when
    /// missing for these tools whatever they do (pipx makes its bin and man
    /// directories at every start, `pipx run` too, and fails in a
    /// read-only home).
    pub(crate) const fn global_made(
        base: Base,
        path: &'static str,
        made_for: &'static [&'static str],
    ) -> Place {
        Place {
            base,
            path,
            global_only: true,
            made_for,
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
            Base::State => f.write_str("~/.local/state")?,
            Base::AccountHome => f.write_str("the account's home")?,
            Base::Var(var) => write!(f, "${var}")?,
            Base::Environment => f.write_str("the active virtualenv")?,
            Base::Interpreter => f.write_str("the interpreter's prefix")?,
            Base::NodePrefix => f.write_str("node's prefix")?,
            Base::CargoHome => f.write_str("$CARGO_HOME")?,
            Base::Option(names) => write!(f, "{}", names.join("|"))?,
            Base::Source(names) => write!(f, "{} (a directory)", names.join("|"))?,
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
    /// The tool's own arguments.
    pub(crate) args: &'a [&'a str],
    /// The account's home directory (see [`Base::AccountHome`]).
    pub(crate) account_home: Option<PathBuf>,
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
            // /tmp too when TMPDIR is elsewhere: the JVM, and much else,
            // never reads TMPDIR.
            Base::Temp => {
                let mut temp: Vec<PathBuf> = self.dir("TMPDIR").into_iter().collect();
                temp.extend(["/tmp", "/var/tmp"].map(PathBuf::from));
                temp
            }
            Base::Home => self.home.map(Path::to_path_buf).into_iter().collect(),
            Base::Cache => self.xdg("XDG_CACHE_HOME", ".cache").into_iter().collect(),
            Base::Data => self.xdg("XDG_DATA_HOME", ".local/share").into_iter().collect(),
            Base::Config => self.xdg("XDG_CONFIG_HOME", ".config").into_iter().collect(),
            Base::State => self.xdg("XDG_STATE_HOME", ".local/state").into_iter().collect(),
            Base::AccountHome => self.account_home.clone().into_iter().collect(),
            Base::Var(var) => self.dir(var).into_iter().collect(),
            Base::Environment => ["VIRTUAL_ENV", "CONDA_PREFIX"]
                .iter()
                .filter_map(|var| self.dir(var))
                .collect(),
            Base::Interpreter => self.interpreter.clone().into_iter().collect(),
            Base::NodePrefix => self.node_prefix.clone().into_iter().collect(),
            Base::CargoHome => self.xdg("CARGO_HOME", ".cargo").into_iter().collect(),
            Base::Option(names) | Base::Source(names) => option_values(self.args, names)
                .into_iter()
                .filter(|v| !v.is_empty() && !v.contains("://"))
                .map(|v| self.cwd.join(v))
                .collect(),
        }
    }
}

/// The values `args` give the options `names`, as `NAME VALUE` or
/// `NAME=VALUE`, in order; a name ending in `=` (Maven's
/// `-Dmaven.repo.local=`) takes only the second form. A `--` ends the
/// options. Pure.
pub(crate) fn option_values<'a>(args: &[&'a str], names: &[&str]) -> Vec<&'a str> {
    let mut values = Vec::new();
    for (i, word) in args.iter().enumerate() {
        if *word == "--" {
            break;
        }
        for name in names {
            let joined = match name.strip_suffix('=') {
                Some(_) => word.strip_prefix(name),
                None => word.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')),
            };
            if let Some(value) = joined {
                values.push(value);
            } else if word == name && !name.ends_with('=') {
                values.extend(args.get(i + 1).copied());
            }
        }
    }
    values
}

/// One place resolved: its path, whether the shim makes it when it is
/// missing, and whether the tool may write it (a global install's place
/// outside a global install is only made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) path: PathBuf,
    pub(crate) make: bool,
    pub(crate) writable: bool,
}

/// The paths `places` name under `facts` for `tool`, in order, once each;
/// a place whose base is unknown (no such variable, no home) names none.
pub(crate) fn resolve(places: &[Place], tool: &str, facts: &Facts<'_>) -> Vec<Resolved> {
    let mut resolved: Vec<Resolved> = Vec::new();
    for place in places {
        let writable = facts.global || !place.global_only;
        let make = place.made_for.contains(&tool) || matches!(place.base, Base::Option(_));
        if !writable && !make {
            continue;
        }
        for base in facts.bases(place.base) {
            let path = match place.path {
                "" => base,
                below => base.join(below),
            };
            match resolved.iter_mut().find(|r| r.path == path) {
                Some(known) => {
                    known.make |= make;
                    known.writable |= writable;
                }
                None => resolved.push(Resolved { path, make, writable }),
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
/// pnpm's, yarn's and bun's `-g`/`--global`/`--location=global`, the
/// `install` subcommand of cargo and go, pipx's installs, `uv tool
/// install`, and `pip install --user` (whose scripts go to `~/.local/bin`).
pub(crate) fn installs_globally(tool: &str, subcommand: Option<&str>, args: &[&str]) -> bool {
    let first_word = |after: &str| {
        args.iter()
            .skip_while(|a| **a != after)
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .copied()
    };
    match tool {
        "cargo" | "go" => subcommand == Some("install"),
        "pipx" => subcommand.is_some_and(|s| {
            matches!(
                s,
                "install"
                    | "install-all"
                    | "upgrade"
                    | "upgrade-all"
                    | "reinstall"
                    | "reinstall-all"
                    | "inject"
            )
        }),
        "uv" => subcommand == Some("tool") && matches!(first_word("tool"), Some("install" | "upgrade")),
        "pip" | "pip3" => args.contains(&"--user"),
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
    Place::made(Base::Var("XDG_DATA_HOME"), "yarn/berry", &["yarn"]),
    Place::global(Base::NodePrefix, "lib/node_modules"),
    Place::global(Base::NodePrefix, "bin"),
    Place::global(Base::Var("npm_config_prefix"), ""),
    Place::global(Base::Var("PNPM_HOME"), ""),
    Place::at(
        Base::Option(&[
            "--cache",
            "--prefix",
            "--store-dir",
            "--cache-folder",
            "--cache-dir",
            "--modules-folder",
            "--virtual-store-dir",
        ]),
        "",
    ),
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
    Place::global(Base::Home, ".local/lib"),
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
    Place::made(Base::State, "pipx", &["pipx"]),
    Place::made(Base::Cache, "pipx", &["pipx"]),
    Place::made(Base::State, "pdm", &["pdm"]),
    Place::at(
        Base::Option(&[
            "--cache-dir",
            "--target",
            "-t",
            "--prefix",
            "--root",
            "--src",
            "--python-install-dir",
            "-d",
            "--dest",
            "-w",
            "--wheel-dir",
        ]),
        "",
    ),
    Place::at(
        Base::Source(&["-e", "--editable", "--from", "--with-editable", "--spec"]),
        "",
    ),
    Place::global_made(Base::Home, ".local/bin", &["pipx"]),
    Place::global(Base::Var("XDG_BIN_HOME"), ""),
    Place::global(Base::Var("PIPX_BIN_DIR"), ""),
    Place::global(Base::Var("PIPX_MAN_DIR"), ""),
    Place::global_made(Base::Data, "man", &["pipx"]),
    Place::global(Base::Var("UV_TOOL_BIN_DIR"), ""),
];

/// cargo: the project (and its target directory), temp, the registry and
/// git caches; CARGO_HOME for `cargo install`, but for the files
/// [`kept_files`] names.
pub(crate) const CARGO: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::CargoHome, "registry", &["cargo"]),
    Place::made(Base::CargoHome, "git", &["cargo"]),
    Place::at(Base::Var("CARGO_TARGET_DIR"), ""),
    Place::at(Base::Option(&["--target-dir"]), ""),
    Place::global(Base::CargoHome, ""),
    Place::global(Base::Option(&["--root"]), ""),
];

/// The files in `$CARGO_HOME` that `cargo install` (which may write the
/// rest of it) must leave as they are: rustup's `env` scripts, which the
/// user's start-up files source, and cargo's configuration and
/// credentials, which every later build reads.
const CARGO_HOME_KEPT: &[&str] = &[
    "env",
    "env.fish",
    "env.nu",
    "config",
    "config.toml",
    "credentials",
    "credentials.toml",
];

/// The files that stay read-only inside a place `tool` may write (for a
/// global install: `global`), where `var` reads the environment. Pure.
pub(crate) fn kept_files(
    tool: &str,
    global: bool,
    var: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    if tool != "cargo" || !global {
        return Vec::new();
    }
    let cargo_home = var("CARGO_HOME")
        .filter(|h| h.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cargo")));
    cargo_home
        .map(|dir| CARGO_HOME_KEPT.iter().map(|file| dir.join(file)).collect())
        .unwrap_or_default()
}

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
    Place::made(Base::Data, "gem", &["gem", "bundle"]),
    Place::at(Base::Var("GEM_HOME"), ""),
    Place::at(Base::Var("BUNDLE_PATH"), ""),
    Place::at(Base::Option(&["--install-dir", "-i", "--path"]), ""),
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
    Place::at(Base::Option(&["--working-dir", "-d"]), ""),
];

/// The JVM's build tools.
pub(crate) const JVM: &[Place] = &[
    Place::at(Base::Project, ""),
    Place::at(Base::Temp, ""),
    Place::made(Base::Home, ".m2", &["mvn"]),
    Place::made(Base::Home, ".gradle", &["gradle"]),
    Place::made(Base::AccountHome, ".m2", &["mvn"]),
    Place::made(Base::AccountHome, ".gradle", &["gradle"]),
    Place::at(Base::Var("GRADLE_USER_HOME"), ""),
    Place::at(
        Base::Option(&[
            "-Dmaven.repo.local=",
            "--gradle-user-home",
            "-g",
            "--project-cache-dir",
        ]),
        "",
    ),
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
            args: &[],
            account_home: None,
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
    fn pipx_makes_its_bin_directory_but_writes_it_only_when_installing() {
        let none = |_: &str| None;
        let bin = |global| {
            resolve(PYTHON, "pipx", &facts(&none, global))
                .into_iter()
                .find(|r| r.path == Path::new("/home/u/.local/bin"))
        };
        let run = bin(false).expect("made for pipx run");
        assert!(run.make && !run.writable, "{run:?}");
        let install = bin(true).expect("written by pipx install");
        assert!(install.make && install.writable, "{install:?}");
        let pip = resolve(PYTHON, "pip", &facts(&none, false));
        assert!(
            !pip.iter().any(|r| r.path == Path::new("/home/u/.local/bin")),
            "{pip:?}"
        );
    }

    #[test]
    fn option_values_take_both_forms_and_stop_at_a_double_dash() {
        let args = [
            "install",
            "--cache",
            "/c",
            "--cache=rel",
            "x",
            "--",
            "--cache",
            "/no",
        ];
        assert_eq!(option_values(&args, &["--cache"]), ["/c", "rel"]);
        assert_eq!(option_values(&["--cache"], &["--cache"]), Vec::<&str>::new());
        assert_eq!(option_values(&["--cachex=/a"], &["--cache"]), Vec::<&str>::new());
        let mvn = ["-Dmaven.repo.local=/m2", "-Dmaven.repo.local", "install"];
        assert_eq!(option_values(&mvn, &["-Dmaven.repo.local="]), ["/m2"]);
    }

    #[test]
    fn a_directory_named_by_the_tools_option_is_writable_and_made() {
        let none = |_: &str| None;
        let args = ["install", "--cache", "/ci/npm-cache", "--prefix=sub", "-g"];
        let facts = Facts {
            args: &args,
            ..facts(&none, false)
        };
        let resolved = resolve(NODE, "npm", &facts);
        for want in ["/ci/npm-cache", "/work/proj/sub"] {
            let place = resolved.iter().find(|r| r.path == Path::new(want));
            assert!(place.is_some_and(|p| p.make), "{want}: {resolved:?}");
        }
        let cached: Vec<_> = resolve(CARGO, "cargo", &facts)
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert!(!cached.contains(&PathBuf::from("/ci/npm-cache")), "{cached:?}");
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
    fn cargo_install_keeps_rustups_env_and_cargos_config() {
        let var = |name: &str| (name == "CARGO_HOME").then(|| "/opt/cargo".to_string());
        let kept = kept_files("cargo", true, &var, Some(Path::new("/home/u")));
        assert!(kept.contains(&PathBuf::from("/opt/cargo/env")));
        assert!(kept.contains(&PathBuf::from("/opt/cargo/config.toml")));
        let none = |_: &str| None;
        assert!(kept_files("cargo", true, &none, Some(Path::new("/home/u")))
            .contains(&PathBuf::from("/home/u/.cargo/env")));
        assert!(kept_files("cargo", false, &none, Some(Path::new("/home/u"))).is_empty());
        assert!(kept_files("npm", true, &none, Some(Path::new("/home/u"))).is_empty());
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
        assert!(installs_globally("pipx", Some("install"), &["install", "x"]));
        assert!(!installs_globally("pipx", Some("run"), &["run", "x"]));
        assert!(installs_globally(
            "uv",
            Some("tool"),
            &["tool", "install", "ruff"]
        ));
        assert!(!installs_globally("uv", Some("tool"), &["tool", "run", "ruff"]));
        assert!(installs_globally(
            "pip",
            Some("install"),
            &["install", "--user", "x"]
        ));
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
