//! `cli-guard init bash|zsh|fish`: prints the shell code that puts the gate
//! in front of every guarded name in that shell, whatever comes first on
//! PATH (a virtualenv, nvm, a version manager): in bash and zsh a function
//! for each name that runs its shim, and a hook that moves the shims
//! directory back to the front of PATH (fish: that hook alone, run on every
//! change of PATH). The shell text lives in `init/init.{bash,zsh,fish}`
//! (shellcheck reads the bash one); this file fills in the shims directory,
//! quoted for the shell, and the names, from the pinned table.
//!
//! Loaded the way users load zoxide's or mise's, `eval "$(cli-guard init
//! bash)"` (fish: `cli-guard init fish | source`), so that an upgrade
//! changes it without touching the start-up file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::{self, Parsed, Usage};
use super::layout;
use crate::exit::{Exit, Failure};
use crate::shim;

const USAGE: Usage = Usage {
    command: "init",
    next_step: "usage: cli-guard init bash|zsh|fish [--shims DIR]",
};

const HELP: &str = "\
usage: cli-guard init bash|zsh|fish [--shims DIR]

Prints the shell code that keeps cli-guard in front of every guarded name in
that shell. Load it from the shell's start-up file (install.sh --rc adds the
line):

    bash, in ~/.bashrc:                 eval \"$(cli-guard init bash)\"
    zsh, in ~/.zshenv (every zsh):      eval \"$(cli-guard init zsh)\"
    fish, in ~/.config/fish/config.fish: cli-guard init fish | source

What it defines, in pure shell (nothing is started at a prompt):
  - bash and zsh: a function for each guarded name (npm, pip, python, ...)
    that runs its shim, which then runs what PATH would have given (an
    activated virtualenv's pip, nvm's npm). bash exports them (export -f), so
    a child `bash -c` has them; every zsh reads ~/.zshenv;
  - a hook (bash: PROMPT_COMMAND; zsh: precmd and preexec; fish: every change
    of PATH, the moment it happens) that moves the shims directory back to
    the front of PATH, so that programs which look names up themselves
    (make, Python's subprocess) meet the shims too. In fish that is all it
    needs: every fish reads config.fish, and the names meet the shims on PATH;
  - CLI_GUARD_SHELL_INIT, which `cli-guard doctor` reads.

options:
  --shims DIR   the shims directory (default: the one install.sh put beside
                this binary, PREFIX/share/cli-guard/shims)
";

const BASH: &str = include_str!("init/init.bash");
const ZSH: &str = include_str!("init/init.zsh");
const FISH: &str = include_str!("init/init.fish");

/// The shells `init` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub(super) const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    pub(super) fn name(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
        }
    }

    /// The shell a program name or path is (`bash`, `/usr/bin/zsh`, a login
    /// shell's `-bash`).
    pub(super) fn from_program(program: &str) -> Option<Shell> {
        let base = program.rsplit('/').next()?.trim_start_matches('-');
        Shell::ALL.into_iter().find(|shell| shell.name() == base)
    }

    fn template(self) -> &'static str {
        match self {
            Shell::Bash => BASH,
            Shell::Zsh => ZSH,
            Shell::Fish => FISH,
        }
    }

    /// `text` as one word of this shell: single-quoted.
    fn quote(self, text: &str) -> String {
        match self {
            // Inside '…' nothing is special; a ' ends the quotes, is
            // escaped, and they start again.
            Shell::Bash | Shell::Zsh => format!("'{}'", text.replace('\'', r"'\''")),
            // fish reads \\ and \' inside single quotes.
            Shell::Fish => format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'")),
        }
    }
}

/// Parsed `cli-guard init` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InitArgs {
    shell: Shell,
    shims: Option<PathBuf>,
}

/// Reads `SHELL [--shims DIR]`.
pub(super) fn parse_init_args(args: &[OsString]) -> Result<Parsed<InitArgs>, Failure> {
    let mut parser = args::parser(args);
    let mut shell = None;
    let mut shims = None;
    while let Some(arg) = USAGE.next(&mut parser)? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(Parsed::Help),
            lexopt::Arg::Long("shims") => shims = Some(PathBuf::from(USAGE.value(&mut parser)?)),
            lexopt::Arg::Value(name) if shell.is_none() => {
                let name = USAGE.utf8(name)?;
                shell =
                    Some(Shell::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
                        USAGE.error(format_args!("unknown shell {name:?}: bash, zsh or fish"))
                    })?);
            }
            lexopt::Arg::Value(extra) => {
                return Err(USAGE.error(format_args!("unexpected argument {extra:?}: one shell at a time")))
            }
            other => return Err(USAGE.lexopt(other.unexpected())),
        }
    }
    let shell = shell.ok_or_else(|| USAGE.error("which shell? bash, zsh or fish"))?;
    Ok(Parsed::Args(InitArgs { shell, shims }))
}

/// Why a shims directory cannot go into the shell code.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadDir {
    NotAbsolute,
    /// A colon would split it in two on PATH; a newline, NUL or non-UTF-8
    /// byte has no safe spelling in every shell.
    Unspeakable,
}

/// The shell code for `shell`, with `dir` as the shims directory and a
/// function for each of `names`. Pure.
pub(super) fn render<'n>(
    shell: Shell,
    dir: &Path,
    names: impl IntoIterator<Item = &'n str>,
) -> Result<String, BadDir> {
    if !dir.is_absolute() {
        return Err(BadDir::NotAbsolute);
    }
    let dir = dir
        .to_str()
        .filter(|d| !d.contains([':', '\n', '\0']))
        .ok_or(BadDir::Unspeakable)?;
    // A trailing slash would never equal the PATH entry the hook looks for.
    let dir = match dir.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    // The names are the pinned table's: plain words in every shell.
    let names: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        })
        .collect();
    Ok(shell
        .template()
        .replace("'@SHIMS@'", &shell.quote(dir))
        .replace("@NAMES@", &names.join(" ")))
}

/// `cli-guard init SHELL`.
pub(super) fn init(args: &[OsString]) -> Result<Exit, Failure> {
    let Some(InitArgs { shell, shims }) = parse_init_args(args)?.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    let dir = match shims {
        Some(dir) => dir,
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| layout::shims_dir_of(&exe, &|dir| dir.is_dir()))
            .ok_or_else(|| {
                USAGE.error(
                    "cannot tell where the shims are (this binary is not PREFIX/bin/cli-guard as install.sh \
                     puts it, nor in a checkout's target/): pass --shims DIR",
                )
            })?,
    };
    let text = render(shell, &dir, shim::shim_names()).map_err(|bad| {
        USAGE.error(match bad {
            BadDir::NotAbsolute => format!("--shims {}: give an absolute path", dir.display()),
            BadDir::Unspeakable => format!(
                "--shims {}: a directory with a colon, a newline or a byte that is not UTF-8 cannot be put on PATH",
                dir.display()
            ),
        })
    })?;
    print!("{text}");
    Ok(Exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{args_of, os, usage_text};
    use crate::env::SHELL_INIT_VAR;

    fn parse(args: &[&str]) -> Result<Parsed<InitArgs>, Failure> {
        parse_init_args(&os(args))
    }

    #[test]
    fn a_shell_and_an_optional_directory() {
        assert_eq!(
            args_of(parse(&["zsh"])),
            InitArgs {
                shell: Shell::Zsh,
                shims: None
            }
        );
        assert_eq!(
            args_of(parse(&["--shims", "/s", "fish"])),
            InitArgs {
                shell: Shell::Fish,
                shims: Some(PathBuf::from("/s"))
            }
        );
        assert_eq!(parse(&["-h"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn usage_errors_name_the_shells() {
        assert!(usage_text(parse(&[])).contains("which shell? bash, zsh or fish"));
        assert!(usage_text(parse(&["tcsh"])).contains("unknown shell \"tcsh\": bash, zsh or fish"));
        assert!(usage_text(parse(&["bash", "zsh"])).contains("one shell at a time"));
        assert!(usage_text(parse(&["bash", "--shims"])).contains("--shims needs a value"));
        assert!(usage_text(parse(&["--bogus"])).contains("usage: cli-guard init"));
    }

    #[test]
    fn shells_by_program_name() {
        assert_eq!(Shell::from_program("/usr/bin/bash"), Some(Shell::Bash));
        assert_eq!(Shell::from_program("-zsh"), Some(Shell::Zsh));
        assert_eq!(Shell::from_program("fish"), Some(Shell::Fish));
        assert_eq!(Shell::from_program("dash"), None);
        assert_eq!(Shell::from_program("bash5"), None);
    }

    #[test]
    fn the_directory_is_one_quoted_word_in_each_shell() {
        let dir = Path::new("/home/o'neil/my shims");
        let bash = render(Shell::Bash, dir, ["npm"]).unwrap();
        assert!(
            bash.contains(r"local dir='/home/o'\''neil/my shims' rest"),
            "{bash}"
        );
        assert!(!bash.contains("@SHIMS@") && !bash.contains("@NAMES@"));
        let fish = render(Shell::Fish, dir, ["npm"]).unwrap();
        assert!(
            fish.contains(r"set -gx PATH '/home/o\'neil/my shims' $rest"),
            "{fish}"
        );
        let fish = render(Shell::Fish, Path::new(r"/a\b"), ["npm"]).unwrap();
        assert!(fish.contains(r"set -gx PATH '/a\\b' $rest"), "{fish}");
    }

    #[test]
    fn every_name_gets_a_function_in_bash_and_zsh() {
        for shell in [Shell::Bash, Shell::Zsh] {
            let text = render(shell, Path::new("/s"), ["npm", "pip3", "python3"]).unwrap();
            assert!(text.contains(" in npm pip3 python3"), "{}: {text}", shell.name());
        }
        // fish: the PATH handler alone (a function cannot run in the background there).
        let fish = render(Shell::Fish, Path::new("/s"), ["npm"]).unwrap();
        assert!(
            fish.contains("--on-variable PATH") && !fish.contains("function npm"),
            "{fish}"
        );
    }

    #[test]
    fn a_directory_path_cannot_hold() {
        assert_eq!(
            render(Shell::Bash, Path::new("s"), ["npm"]),
            Err(BadDir::NotAbsolute)
        );
        assert_eq!(
            render(Shell::Bash, Path::new("/a:b"), ["npm"]),
            Err(BadDir::Unspeakable)
        );
        assert_eq!(
            render(Shell::Zsh, Path::new("/a\nb"), ["npm"]),
            Err(BadDir::Unspeakable)
        );
        let text = render(Shell::Bash, Path::new("/s/"), ["npm"]).unwrap();
        assert!(text.contains("'/s' | '/s':*) return ;;"), "{text}");
    }

    #[test]
    fn every_shell_says_it_loaded_the_integration() {
        for shell in Shell::ALL {
            let text = render(shell, Path::new("/s"), ["npm"]).unwrap();
            let said = text
                .lines()
                .any(|line| line.contains(SHELL_INIT_VAR) && line.contains(&format!("\"{} $", shell.name())));
            assert!(said, "{}: {text}", shell.name());
        }
    }

    #[test]
    fn names_that_are_not_plain_words_are_left_out() {
        let text = render(Shell::Bash, Path::new("/s"), ["npm", "a;b", "", "$(x)"]).unwrap();
        assert!(text.contains(" in npm; do"), "{text}");
    }
}
