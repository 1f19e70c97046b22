//! Where the gate is, and where it is not, for the shell that asks:
//! `cli-guard doctor` and `cli-guard shims` both say, for each guarded name,
//! what runs when it is typed, whether that meets the gate, what comes
//! before the shims on PATH when not (an active virtualenv, nvm, volta,
//! mise, asdf, pyenv, conda, corepack, a project's node_modules/.bin) and the
//! line that fixes it.
//!
//! [`Context::read`] and [`Context::look_up`] are the I/O (the environment,
//! /proc for the parent shell, PATH lookups, one readlink); everything else
//! here is pure and driven by the unit tests with made-up values.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::init::Shell;
use super::layout;
use crate::env::{Env, SHELL_INIT_VAR};
use crate::shim::{self, ShimStatus};

/// Whether the shell integration (`cli-guard init`) is loaded in the shell
/// that ran this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Loaded {
    /// This process's shell loaded it (its pid is this process's, as after
    /// `bash -c 'cli-guard doctor'` exec'd the command, or its parent's).
    Here { shell: String },
    /// This bash did not load it, but imported the functions a bash above
    /// it exported: names typed here meet the gate; PATH was not fixed.
    Exported { from: String },
    /// A shell above loaded it, not this one (a bash started from a zsh
    /// that loaded it, a program such as make in between): names typed here
    /// meet the gate only while the shims lead PATH.
    Elsewhere { by: String },
    /// Not loaded above this process at all.
    No,
}

impl Loaded {
    /// Reads `CLI_GUARD_SHELL_INIT` against this process's pid and its
    /// parent's, and whether bash functions for the guarded names came in
    /// the environment (`BASH_FUNC_npm%%`). A value that is not `SHELL PID`
    /// counts as not loaded. Pure.
    pub(super) fn judge(var: Option<&str>, pid: u32, ppid: u32, exported_functions: bool) -> Loaded {
        let Some((shell, at)) = var.and_then(|v| v.split_once(' ')) else {
            return Loaded::No;
        };
        let Ok(at) = at.parse::<u32>() else {
            return Loaded::No;
        };
        let by = format!("{shell} (pid {at})");
        if at == pid || at == ppid {
            Loaded::Here { shell: by }
        } else if exported_functions {
            Loaded::Exported { from: by }
        } else {
            Loaded::Elsewhere { by }
        }
    }

    /// Whether a name typed in this shell meets the gate whatever PATH said
    /// before: bash's and zsh's functions, fish's handler on PATH.
    fn covers_typed_names(&self) -> bool {
        matches!(self, Loaded::Here { .. } | Loaded::Exported { .. })
    }
}

/// What comes before the shims on PATH for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shadow {
    Virtualenv(PathBuf),
    Conda(PathBuf),
    Nvm(PathBuf),
    Fnm(PathBuf),
    Volta(PathBuf),
    Mise(PathBuf),
    Asdf(PathBuf),
    Pyenv(PathBuf),
    /// A link `corepack enable` made (its target names corepack).
    Corepack(PathBuf),
    NodeModulesBin(PathBuf),
    Other(PathBuf),
}

impl fmt::Display for Shadow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shadow::Virtualenv(env) => write!(f, "the active virtualenv {} (VIRTUAL_ENV)", env.display()),
            Shadow::Conda(env) => write!(f, "the active conda environment {} (CONDA_PREFIX)", env.display()),
            Shadow::Nvm(dir) => write!(f, "nvm's node in {}", dir.display()),
            Shadow::Fnm(dir) => write!(f, "fnm's node in {}", dir.display()),
            Shadow::Volta(dir) => write!(f, "volta's shims in {}", dir.display()),
            Shadow::Mise(dir) => write!(f, "mise, in {}", dir.display()),
            Shadow::Asdf(dir) => write!(f, "asdf, in {}", dir.display()),
            Shadow::Pyenv(dir) => write!(f, "pyenv, in {}", dir.display()),
            Shadow::Corepack(dir) => write!(f, "corepack's link (corepack enable) in {}", dir.display()),
            Shadow::NodeModulesBin(dir) => write!(f, "a project's {}", dir.display()),
            Shadow::Other(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Where the version managers and environments keep their directories, from
/// their variables or their defaults under HOME.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Managers {
    pub virtual_env: Option<PathBuf>,
    pub conda_prefix: Option<PathBuf>,
    pub nvm_bin: Option<PathBuf>,
    pub nvm_dir: Option<PathBuf>,
    pub fnm_multishell: Option<PathBuf>,
    pub volta_home: Option<PathBuf>,
    pub mise_data: Option<PathBuf>,
    pub asdf_data: Option<PathBuf>,
    pub pyenv_root: Option<PathBuf>,
}

impl Managers {
    fn from_env(env: &Env) -> Managers {
        let var = |key: &str| env.var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = var("HOME");
        let under_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        Managers {
            virtual_env: var("VIRTUAL_ENV"),
            conda_prefix: var("CONDA_PREFIX"),
            nvm_bin: var("NVM_BIN"),
            nvm_dir: var("NVM_DIR").or_else(|| under_home(".nvm")),
            fnm_multishell: var("FNM_MULTISHELL_PATH"),
            volta_home: var("VOLTA_HOME").or_else(|| under_home(".volta")),
            mise_data: var("MISE_DATA_DIR")
                .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("mise")))
                .or_else(|| under_home(".local/share/mise")),
            asdf_data: var("ASDF_DATA_DIR").or_else(|| under_home(".asdf")),
            pyenv_root: var("PYENV_ROOT").or_else(|| under_home(".pyenv")),
        }
    }

    /// What put `dir` (the directory of the first `name` on PATH) there;
    /// `target` is where that file links to, if it is a link. Pure.
    pub(super) fn shadow_of(&self, dir: &Path, target: Option<&Path>) -> Shadow {
        let is = |root: &Option<PathBuf>, sub: &str| root.as_ref().is_some_and(|r| dir == r.join(sub));
        let under = |root: &Option<PathBuf>| root.as_ref().is_some_and(|r| dir.starts_with(r));
        if target.is_some_and(|t| t.components().any(|c| c.as_os_str() == "corepack")) {
            return Shadow::Corepack(dir.to_path_buf());
        }
        let dir_buf = dir.to_path_buf();
        if is(&self.virtual_env, "bin") {
            Shadow::Virtualenv(self.virtual_env.clone().unwrap_or(dir_buf))
        } else if is(&self.conda_prefix, "bin") {
            Shadow::Conda(self.conda_prefix.clone().unwrap_or(dir_buf))
        } else if self.nvm_bin.as_deref() == Some(dir) || under(&self.nvm_dir) {
            Shadow::Nvm(dir_buf)
        } else if self.fnm_multishell.as_ref().is_some_and(|m| dir.starts_with(m))
            || dir.components().any(|c| c.as_os_str() == "fnm_multishells")
        {
            Shadow::Fnm(dir_buf)
        } else if under(&self.volta_home) {
            Shadow::Volta(dir_buf)
        } else if under(&self.mise_data) {
            Shadow::Mise(dir_buf)
        } else if under(&self.asdf_data) {
            Shadow::Asdf(dir_buf)
        } else if under(&self.pyenv_root) {
            Shadow::Pyenv(dir_buf)
        } else if dir.ends_with("node_modules/.bin") {
            Shadow::NodeModulesBin(dir_buf)
        } else {
            Shadow::Other(dir_buf)
        }
    }
}

/// One guarded name, as this shell sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NameReport {
    pub name: &'static str,
    pub status: ShimStatus,
    /// What comes before the shim on PATH, when something does.
    pub shadow: Option<Shadow>,
}

impl NameReport {
    /// Whether the name typed in a shell in state `loaded` meets the gate:
    /// through cli-guard's function, or its shim first on PATH (or nothing
    /// at all to run).
    pub(super) fn typed_is_gated(&self, loaded: &Loaded) -> bool {
        loaded.covers_typed_names() || self.status.first_is_shim || self.status.first.is_none()
    }

    /// Whether a program that looks the name up on PATH (make, subprocess)
    /// meets the gate.
    pub(super) fn path_is_gated(&self) -> bool {
        self.status.first_is_shim || self.status.first.is_none()
    }
}

/// Everything the report needs from outside.
#[derive(Debug, Clone)]
pub(super) struct Context {
    pub loaded: Loaded,
    /// The shell that ran this process, else `$SHELL`'s, if one of the three.
    pub shell: Option<Shell>,
    /// This binary, for the line that loads its shell integration.
    pub exe: Option<PathBuf>,
    /// The shims directory beside this binary, if install.sh put one there.
    pub shims: Option<PathBuf>,
    /// The start-up file `shell` reads.
    pub rc_file: Option<PathBuf>,
    pub managers: Managers,
    /// An active virtualenv made through cli-guard's python shim by an
    /// older version: its pyvenv.cfg `home`.
    pub venv_bound_to: Option<PathBuf>,
}

impl Context {
    /// Reads the environment, the parent process and the install layout.
    pub(super) fn read(env: &Env) -> Context {
        let pid = std::process::id();
        let ppid = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0);
        let names_exported =
            shim::shim_names().all(|name| env.var_os(&format!("BASH_FUNC_{name}%%")).is_some());
        let loaded = Loaded::judge(env.var(SHELL_INIT_VAR), pid, ppid, names_exported);
        let parent = fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
        let shell =
            Shell::from_program(parent.trim()).or_else(|| env.var("SHELL").and_then(Shell::from_program));
        let exe = std::env::current_exe().ok();
        let shims = exe
            .as_deref()
            .and_then(|exe| layout::shims_dir_of(exe, &|dir| dir.is_dir()));
        let home = env.var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let rc_file = shell.zip(home).map(|(shell, home)| {
            let var = |k: &str| env.var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
            layout::rc_file(
                shell,
                &home,
                var("ZDOTDIR").as_deref(),
                var("XDG_CONFIG_HOME").as_deref(),
            )
        });
        let managers = Managers::from_env(env);
        let venv_bound_to = managers.virtual_env.as_ref().and_then(|venv| {
            let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
            venv_home_is_a_shim(&cfg, &|home| {
                shim::shim_status(std::ffi::OsStr::new("python3"), home.as_os_str()).first_is_shim
            })
        });
        Context {
            loaded,
            shell,
            exe,
            shims,
            rc_file,
            managers,
            venv_bound_to,
        }
    }

    /// What PATH gives for each guarded name, and what shadows it.
    pub(super) fn look_up(&self, env: &Env) -> Vec<NameReport> {
        shim::shim_names()
            .map(|name| {
                let status = shim::shim_status(std::ffi::OsStr::new(name), env.path());
                let shadow = match &status.first {
                    Some(first) if !status.first_is_shim => {
                        let target = fs::read_link(first).ok();
                        let dir = first.parent().unwrap_or(Path::new("/"));
                        Some(self.managers.shadow_of(dir, target.as_deref()))
                    }
                    _ => None,
                };
                NameReport { name, status, shadow }
            })
            .collect()
    }

    /// The one line that puts the gate in front of every name in this
    /// shell, and where it goes.
    pub(super) fn fix(&self) -> String {
        let shims = self
            .shims
            .as_ref()
            .map_or_else(|| "SHIMS".to_string(), |s| s.display().to_string());
        let export = format!("export PATH=\"{shims}:$PATH\"");
        match &self.loaded {
            Loaded::Here { .. } => format!(
                "the next prompt puts the shims first on PATH again (cli-guard init's hook); in a script: {export}"
            ),
            Loaded::Exported { .. } => format!("put the shims first on PATH where this runs: {export}"),
            Loaded::Elsewhere { .. } | Loaded::No => {
                let line = self
                    .shell
                    .zip(self.exe.as_deref())
                    .and_then(|(shell, exe)| layout::rc_line(shell, exe));
                match (line, &self.rc_file) {
                    (Some(line), Some(rc)) => format!(
                        "add this line to {} and open a new shell (install.sh --rc adds it): {line}",
                        rc.display()
                    ),
                    (Some(line), None) => format!("load the shell integration: {line}"),
                    (None, _) => format!(
                        "load cli-guard's shell integration (cli-guard init bash|zsh|fish), or put the shims \
                         first on PATH: {export}"
                    ),
                }
            }
        }
    }
}

/// When pyvenv.cfg's `home` is a directory whose `python3` is cli-guard (a
/// virtualenv made through the python shim before it ran the interpreter by
/// its real path), that directory. Pure but for `is_shims`.
pub(super) fn venv_home_is_a_shim(pyvenv_cfg: &str, is_shims: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let home = pyvenv_cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })?;
    is_shims(&home).then_some(home)
}

/// The shell integration's part of `cli-guard doctor`: whether it is loaded
/// here, and each name that does not meet the gate, with why and the fix.
pub(super) fn doctor_section(ctx: &Context, names: &[NameReport]) -> String {
    let mut lines = vec![String::new()];
    let loaded_line = match &ctx.loaded {
        Loaded::Here { shell } => format!(
            "shell integration: loaded in this shell, {shell}: every guarded name typed here meets the gate"
        ),
        Loaded::Exported { from } => format!(
            "shell integration: this bash has the functions {from} exported: every guarded name typed here \
             meets the gate"
        ),
        Loaded::Elsewhere { by } => format!(
            "shell integration: loaded by {by}, not in the shell that ran this: a name typed here meets the \
             gate only while its shim comes first on PATH"
        ),
        Loaded::No => {
            "shell integration: not loaded in this shell: a name typed here meets the gate only while \
                       its shim comes first on PATH"
                .to_string()
        }
    };
    lines.push(loaded_line);
    let typed: Vec<&NameReport> = names.iter().filter(|n| !n.typed_is_gated(&ctx.loaded)).collect();
    let by_path: Vec<&NameReport> = names.iter().filter(|n| !n.path_is_gated()).collect();
    if typed.is_empty() && by_path.is_empty() {
        lines.push(format!(
            "every one of the {} guarded names meets the gate here, typed or looked up on PATH",
            names.len()
        ));
    } else if typed.is_empty() {
        lines.push(format!(
            "looked up on PATH by a program (make, Python's subprocess, a script), {} of {} names do not meet \
             the gate:",
            by_path.len(),
            names.len()
        ));
        lines.extend(by_path.iter().map(|n| name_line(n)));
    } else {
        lines.push(format!(
            "{} of {} names do not meet the gate here, typed or looked up:",
            typed.len(),
            names.len()
        ));
        lines.extend(typed.iter().map(|n| name_line(n)));
    }
    if !(typed.is_empty() && by_path.is_empty() && ctx.loaded.covers_typed_names()) {
        lines.push(format!("fix: {}", ctx.fix()));
    }
    if let Some(home) = &ctx.venv_bound_to {
        lines.push(format!(
            "note: the active virtualenv was made through cli-guard's python shim by an older cli-guard \
             (pyvenv.cfg: home = {}): it stops working when cli-guard is uninstalled; recreate it",
            home.display()
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `  pip      runs /w/.venv/bin/pip: the active virtualenv …`
fn name_line(n: &NameReport) -> String {
    let first = n
        .status
        .first
        .as_ref()
        .map_or_else(String::new, |f| f.display().to_string());
    match &n.shadow {
        Some(shadow) => format!("  {:<10} runs {first}: {shadow} comes before the shims", n.name),
        None => format!("  {:<10} runs {first}, not through cli-guard", n.name),
    }
}

/// The lines `cli-guard shims` prints under a name whose shim is not first
/// on PATH: what shadows it, whether it is gated typed here, and the fix.
pub(super) fn shims_detail(ctx: &Context, n: &NameReport) -> Vec<String> {
    let Some(shadow) = &n.shadow else {
        return Vec::new();
    };
    let typed = if n.typed_is_gated(&ctx.loaded) {
        "typed in this shell: gated (cli-guard's function runs the shim, which runs it)"
    } else {
        "typed in this shell: NOT gated"
    };
    vec![
        format!("{:<20}before the shims: {shadow}", ""),
        format!("{:<20}{typed}; looked up on PATH by a program: NOT gated", ""),
        format!("{:<20}fix: {}", "", ctx.fix()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managers() -> Managers {
        Managers {
            virtual_env: Some(PathBuf::from("/w/.venv")),
            conda_prefix: Some(PathBuf::from("/c/envs/x")),
            nvm_bin: Some(PathBuf::from("/h/.nvm/versions/node/v22.1.0/bin")),
            nvm_dir: Some(PathBuf::from("/h/.nvm")),
            fnm_multishell: None,
            volta_home: Some(PathBuf::from("/h/.volta")),
            mise_data: Some(PathBuf::from("/h/.local/share/mise")),
            asdf_data: Some(PathBuf::from("/h/.asdf")),
            pyenv_root: Some(PathBuf::from("/h/.pyenv")),
        }
    }

    fn shadow(dir: &str) -> Shadow {
        managers().shadow_of(Path::new(dir), None)
    }

    #[test]
    fn each_manager_by_its_directory() {
        assert_eq!(shadow("/w/.venv/bin"), Shadow::Virtualenv("/w/.venv".into()));
        assert_eq!(shadow("/c/envs/x/bin"), Shadow::Conda("/c/envs/x".into()));
        assert_eq!(
            shadow("/h/.nvm/versions/node/v22.1.0/bin"),
            Shadow::Nvm("/h/.nvm/versions/node/v22.1.0/bin".into())
        );
        assert_eq!(
            shadow("/h/.nvm/versions/node/v18.0.0/bin"),
            Shadow::Nvm("/h/.nvm/versions/node/v18.0.0/bin".into())
        );
        assert_eq!(shadow("/h/.volta/bin"), Shadow::Volta("/h/.volta/bin".into()));
        assert_eq!(
            shadow("/h/.local/share/mise/installs/node/22/bin"),
            Shadow::Mise("/h/.local/share/mise/installs/node/22/bin".into())
        );
        assert_eq!(shadow("/h/.asdf/shims"), Shadow::Asdf("/h/.asdf/shims".into()));
        assert_eq!(shadow("/h/.pyenv/shims"), Shadow::Pyenv("/h/.pyenv/shims".into()));
        assert_eq!(
            shadow("/run/user/1000/fnm_multishells/123_456/bin"),
            Shadow::Fnm("/run/user/1000/fnm_multishells/123_456/bin".into())
        );
        assert_eq!(
            shadow("/p/app/node_modules/.bin"),
            Shadow::NodeModulesBin("/p/app/node_modules/.bin".into())
        );
        assert_eq!(shadow("/opt/tools/bin"), Shadow::Other("/opt/tools/bin".into()));
        // Not a virtualenv's bin just because it is under it.
        assert_eq!(shadow("/w/.venv/lib"), Shadow::Other("/w/.venv/lib".into()));
    }

    #[test]
    fn corepack_by_its_link() {
        let m = managers();
        assert_eq!(
            m.shadow_of(
                Path::new("/usr/local/bin"),
                Some(Path::new("../lib/node_modules/corepack/dist/pnpm.js"))
            ),
            Shadow::Corepack("/usr/local/bin".into())
        );
        assert_eq!(
            m.shadow_of(Path::new("/usr/local/bin"), Some(Path::new("pnpm.js"))),
            Shadow::Other("/usr/local/bin".into())
        );
    }

    #[test]
    fn nothing_set_means_nothing_known() {
        let m = Managers::default();
        assert_eq!(
            m.shadow_of(Path::new("/w/.venv/bin"), None),
            Shadow::Other("/w/.venv/bin".into())
        );
    }

    #[test]
    fn shadows_say_what_they_are() {
        assert_eq!(
            shadow("/w/.venv/bin").to_string(),
            "the active virtualenv /w/.venv (VIRTUAL_ENV)"
        );
        assert_eq!(
            shadow("/p/node_modules/.bin").to_string(),
            "a project's /p/node_modules/.bin"
        );
    }

    #[test]
    fn loaded_by_this_shell_or_above_it() {
        assert_eq!(Loaded::judge(None, 10, 9, false), Loaded::No);
        assert_eq!(Loaded::judge(Some("garbage"), 10, 9, false), Loaded::No);
        assert_eq!(Loaded::judge(Some("bash x"), 10, 9, false), Loaded::No);
        assert_eq!(
            Loaded::judge(Some("bash 9"), 10, 9, false),
            Loaded::Here {
                shell: "bash (pid 9)".into()
            }
        );
        // `bash -c 'cli-guard doctor'` execs the command in the shell's place.
        assert_eq!(
            Loaded::judge(Some("zsh 10"), 10, 9, false),
            Loaded::Here {
                shell: "zsh (pid 10)".into()
            }
        );
        assert_eq!(
            Loaded::judge(Some("bash 3"), 10, 9, true),
            Loaded::Exported {
                from: "bash (pid 3)".into()
            }
        );
        assert_eq!(
            Loaded::judge(Some("zsh 3"), 10, 9, false),
            Loaded::Elsewhere {
                by: "zsh (pid 3)".into()
            }
        );
    }

    fn report(
        name: &'static str,
        first: Option<&str>,
        first_is_shim: bool,
        shadow: Option<Shadow>,
    ) -> NameReport {
        NameReport {
            name,
            status: ShimStatus {
                first: first.map(PathBuf::from),
                first_is_shim,
                real: first.map(PathBuf::from),
            },
            shadow,
        }
    }

    fn context(loaded: Loaded) -> Context {
        Context {
            loaded,
            shell: Some(Shell::Bash),
            exe: Some(PathBuf::from("/p/bin/cli-guard")),
            shims: Some(PathBuf::from("/p/share/cli-guard/shims")),
            rc_file: Some(PathBuf::from("/h/.bashrc")),
            managers: managers(),
            venv_bound_to: None,
        }
    }

    #[test]
    fn gated_typed_and_on_path() {
        let shadowed = report(
            "pip",
            Some("/w/.venv/bin/pip"),
            false,
            Some(Shadow::Virtualenv("/w/.venv".into())),
        );
        let first = report("npm", Some("/p/share/cli-guard/shims/npm"), true, None);
        let absent = report("gh", None, false, None);
        for loaded in [
            Loaded::No,
            Loaded::Elsewhere {
                by: "zsh (pid 1)".into(),
            },
        ] {
            assert!(!shadowed.typed_is_gated(&loaded));
            assert!(first.typed_is_gated(&loaded) && absent.typed_is_gated(&loaded));
        }
        for loaded in [
            Loaded::Here {
                shell: "bash (pid 1)".into(),
            },
            Loaded::Exported {
                from: "bash (pid 1)".into(),
            },
        ] {
            assert!(shadowed.typed_is_gated(&loaded));
        }
        assert!(!shadowed.path_is_gated() && first.path_is_gated() && absent.path_is_gated());
    }

    #[test]
    fn doctor_without_the_integration_names_each_shadow_and_the_line() {
        let names = [
            report("npm", Some("/p/share/cli-guard/shims/npm"), true, None),
            report(
                "pip",
                Some("/w/.venv/bin/pip"),
                false,
                Some(Shadow::Virtualenv("/w/.venv".into())),
            ),
        ];
        let text = doctor_section(&context(Loaded::No), &names);
        assert!(
            text.contains("shell integration: not loaded in this shell"),
            "{text}"
        );
        assert!(text.contains("1 of 2 names do not meet the gate here"), "{text}");
        assert!(
            text.contains("  pip        runs /w/.venv/bin/pip: the active virtualenv /w/.venv (VIRTUAL_ENV) comes before the shims"),
            "{text}"
        );
        assert!(
            text.contains(
                "fix: add this line to /h/.bashrc and open a new shell (install.sh --rc adds it): \
                 eval \"$('/p/bin/cli-guard' init bash)\""
            ),
            "{text}"
        );
    }

    #[test]
    fn doctor_with_the_integration_loaded() {
        let names = [report("npm", Some("/s/npm"), true, None)];
        let text = doctor_section(
            &context(Loaded::Here {
                shell: "bash (pid 7)".into(),
            }),
            &names,
        );
        assert!(text.contains("loaded in this shell, bash (pid 7)"), "{text}");
        assert!(
            text.contains("every one of the 1 guarded names meets the gate"),
            "{text}"
        );
        assert!(!text.contains("fix:"), "{text}");
        let names = [report(
            "npm",
            Some("/h/.nvm/versions/node/v22.1.0/bin/npm"),
            false,
            Some(Shadow::Nvm("/h/.nvm/versions/node/v22.1.0/bin".into())),
        )];
        let text = doctor_section(
            &context(Loaded::Here {
                shell: "bash (pid 7)".into(),
            }),
            &names,
        );
        assert!(text.contains("looked up on PATH by a program"), "{text}");
        assert!(
            text.contains("nvm's node in /h/.nvm/versions/node/v22.1.0/bin"),
            "{text}"
        );
        assert!(
            text.contains("fix: the next prompt puts the shims first"),
            "{text}"
        );
    }

    #[test]
    fn loaded_above_but_not_here_says_so() {
        let names = [report("npm", Some("/s/npm"), true, None)];
        let text = doctor_section(
            &context(Loaded::Elsewhere {
                by: "zsh (pid 3)".into(),
            }),
            &names,
        );
        assert!(
            text.contains("loaded by zsh (pid 3), not in the shell that ran this"),
            "{text}"
        );
        assert!(text.contains("fix: add this line to /h/.bashrc"), "{text}");
    }

    #[test]
    fn an_old_virtualenv_bound_to_the_shim() {
        let shims = |home: &Path| home == Path::new("/p/share/cli-guard/shims");
        assert_eq!(
            venv_home_is_a_shim("home = /p/share/cli-guard/shims\nversion = 3.11\n", &shims),
            Some(PathBuf::from("/p/share/cli-guard/shims"))
        );
        assert_eq!(venv_home_is_a_shim("home = /usr/bin\n", &shims), None);
        assert_eq!(venv_home_is_a_shim("version = 3.11\n", &shims), None);
    }

    #[test]
    fn shims_detail_only_under_a_shadowed_name() {
        let ctx = context(Loaded::No);
        assert!(shims_detail(&ctx, &report("npm", Some("/s/npm"), true, None)).is_empty());
        let lines = shims_detail(
            &ctx,
            &report(
                "pip",
                Some("/w/.venv/bin/pip"),
                false,
                Some(Shadow::Virtualenv("/w/.venv".into())),
            ),
        );
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].ends_with("before the shims: the active virtualenv /w/.venv (VIRTUAL_ENV)"));
        assert!(lines[1].contains("typed in this shell: NOT gated"));
        assert!(lines[2].contains("fix: add this line to /h/.bashrc"));
    }
}
