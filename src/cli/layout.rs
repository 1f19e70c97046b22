//! What the binary knows of where install.sh puts things: the prefix it was
//! installed under (`PREFIX/bin/cli-guard`), the shims directory beside it
//! (`PREFIX/share/cli-guard/shims`), and the one line `install.sh --rc`
//! adds to each shell's start-up file. Pure: the callers read the
//! filesystem and the environment.
//!
//! install.sh writes the line itself (it must remove exactly that line again
//! when the binary may be gone); `tests/gate/shells.rs` checks that the two
//! agree.

use std::path::{Path, PathBuf};

use super::init::Shell;

/// `PREFIX` when `exe` is `PREFIX/bin/cli-guard`, as install.sh lays it out.
pub(super) fn install_prefix(exe: &Path) -> Option<&Path> {
    let bin = exe.parent()?;
    (exe.file_name()? == "cli-guard" && bin.file_name()? == "bin")
        .then(|| bin.parent())
        .flatten()
}

/// The shims directory that belongs with the binary at `exe`, among the
/// places install.sh and a checkout put it: `PREFIX/share/cli-guard/shims`
/// for an installed `PREFIX/bin/cli-guard`, or the checkout's `shims/` for
/// `CHECKOUT/target/PROFILE/cli-guard`. `is_dir` says which exist.
pub(super) fn shims_dir_of(exe: &Path, is_dir: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let installed = install_prefix(exe).map(|prefix| prefix.join("share/cli-guard/shims"));
    let checkout = exe
        .parent()
        .and_then(Path::parent)
        .filter(|target| target.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent)
        .map(|checkout| checkout.join("shims"));
    [installed, checkout]
        .into_iter()
        .flatten()
        .find(|dir| is_dir(dir))
}

/// Where the line goes: bash's ~/.bashrc (interactive shells), zsh's
/// ~/.zshenv (every zsh, `zsh -c` included), fish's config.fish (every
/// fish).
pub(super) fn rc_file(
    shell: Shell,
    home: &Path,
    zdotdir: Option<&Path>,
    xdg_config: Option<&Path>,
) -> PathBuf {
    match shell {
        Shell::Bash => home.join(".bashrc"),
        Shell::Zsh => zdotdir.unwrap_or(home).join(".zshenv"),
        Shell::Fish => xdg_config
            .map_or_else(|| home.join(".config"), Path::to_path_buf)
            .join("fish/config.fish"),
    }
}

/// The line that loads the shell integration of the binary at `exe`, as
/// install.sh writes it (without its marker). `exe` is single-quoted;
/// install.sh refuses a prefix with a quote or a backslash, and so does
/// this (`None`).
pub(super) fn rc_line(shell: Shell, exe: &Path) -> Option<String> {
    let exe = exe.to_str().filter(|e| !e.contains(['\'', '\\', '\n']))?;
    Some(match shell {
        Shell::Bash | Shell::Zsh => format!("eval \"$('{exe}' init {})\"", shell.name()),
        Shell::Fish => format!("'{exe}' init fish | source"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_prefix_of_the_binary() {
        assert_eq!(
            install_prefix(Path::new("/home/u/.local/bin/cli-guard")),
            Some(Path::new("/home/u/.local"))
        );
        assert_eq!(install_prefix(Path::new("/work/target/debug/cli-guard")), None);
        assert_eq!(install_prefix(Path::new("/usr/bin/npm")), None);
    }

    #[test]
    fn the_shims_beside_an_install_or_a_checkout() {
        let all = |_: &Path| true;
        let none = |_: &Path| false;
        assert_eq!(
            shims_dir_of(Path::new("/p/bin/cli-guard"), &all),
            Some(PathBuf::from("/p/share/cli-guard/shims"))
        );
        assert_eq!(
            shims_dir_of(Path::new("/src/cli-guard/target/release/cli-guard"), &all),
            Some(PathBuf::from("/src/cli-guard/shims"))
        );
        assert_eq!(shims_dir_of(Path::new("/p/bin/cli-guard"), &none), None);
        assert_eq!(shims_dir_of(Path::new("/opt/cli-guard"), &all), None);
    }

    #[test]
    fn the_start_up_file_of_each_shell() {
        let home = Path::new("/home/u");
        assert_eq!(rc_file(Shell::Bash, home, None, None), home.join(".bashrc"));
        assert_eq!(rc_file(Shell::Zsh, home, None, None), home.join(".zshenv"));
        assert_eq!(
            rc_file(Shell::Zsh, home, Some(Path::new("/z")), None),
            Path::new("/z/.zshenv")
        );
        assert_eq!(
            rc_file(Shell::Fish, home, None, None),
            home.join(".config/fish/config.fish")
        );
        assert_eq!(
            rc_file(Shell::Fish, home, None, Some(Path::new("/x"))),
            Path::new("/x/fish/config.fish")
        );
    }

    #[test]
    fn the_line_each_shell_evaluates() {
        let exe = Path::new("/home/u/my tools/bin/cli-guard");
        assert_eq!(
            rc_line(Shell::Bash, exe).as_deref(),
            Some("eval \"$('/home/u/my tools/bin/cli-guard' init bash)\"")
        );
        assert_eq!(
            rc_line(Shell::Zsh, exe).as_deref(),
            Some("eval \"$('/home/u/my tools/bin/cli-guard' init zsh)\"")
        );
        assert_eq!(
            rc_line(Shell::Fish, exe).as_deref(),
            Some("'/home/u/my tools/bin/cli-guard' init fish | source")
        );
        assert_eq!(rc_line(Shell::Bash, Path::new("/it's/cli-guard")), None);
    }
}
