//! install.sh into private prefixes: the command, and the two installs a
//! test binary makes once and shares (one with `--rc` for each shell, one
//! plain for the real clients).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::command::{command, REPO};
use super::process::{Outcome, Running};

/// A cold release build on a 2-core machine takes a minute or two.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// The shells `install.sh --rc` writes a line for, and the start-up file
/// (relative to HOME) it writes it to.
pub const RC_FILES: [(&str, &str); 3] = [
    ("bash", ".bashrc"),
    ("zsh", ".zshenv"),
    ("fish", ".config/fish/config.fish"),
];

/// The machine's own HOME-derived toolchain locations, so a test that fakes
/// HOME can still build with rustup's cargo.
fn toolchain_env(cmd: &mut Command) {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()));
    let rustup = std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| home.join(".rustup").into());
    let cargo = std::env::var_os("CARGO_HOME").unwrap_or_else(|| home.join(".cargo").into());
    cmd.env("RUSTUP_HOME", rustup).env("CARGO_HOME", cargo);
}

/// `sh install.sh ARGS…` with the machine's environment (cargo must be on
/// PATH) less any proxy or gate settings (`util::hermetic`), HOME and SHELL
/// set by the test.
///
/// install.sh's `cargo build` is the test's build step, not what it tests.
/// Run from a shell with cli-guard's integration loaded, it meets cargo's
/// shim, and strict mode would pin `target/` read-only on the way to the
/// test's HOME under it (README, "What it does not close yet"): so the
/// build runs behind the plain proxy.
pub fn install_cmd(home: &Path, shell: &str, args: &[&str]) -> Command {
    let mut cmd = command("sh");
    cmd.arg(Path::new(REPO).join("install.sh"))
        .args(args)
        .env("HOME", home)
        .env("SHELL", shell)
        .env("CLI_GUARD_STRICT", "off")
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(REPO)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    toolchain_env(&mut cmd);
    cmd
}

pub fn run_install(cmd: Command) -> Outcome {
    Running::spawn(cmd, None, None).wait_for(INSTALL_TIMEOUT)
}

/// cli-guard as install.sh put it, and the line `--rc` wrote for each shell.
pub struct Installed {
    pub prefix: PathBuf,
    /// Each shell's name, its start-up file relative to HOME, and its text.
    rc: Vec<(&'static str, PathBuf, String)>,
}

impl Installed {
    pub fn bin(&self) -> PathBuf {
        self.prefix.join("bin/cli-guard")
    }

    pub fn shims(&self) -> PathBuf {
        self.prefix.join("share/cli-guard/shims")
    }

    /// The start-up file `--rc` wrote for `shell` (relative to HOME), and
    /// its text.
    pub fn rc(&self, shell: &str) -> (&Path, &str) {
        let (_, path, text) = self.rc.iter().find(|(s, _, _)| *s == shell).unwrap();
        (path, text)
    }
}

/// install.sh into `<tmp>/my prefix` (a space in the path on purpose), then
/// `--rc` once for each shell, each in a HOME of its own; once per test
/// binary.
pub fn with_rc() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shells-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let prefix = root.join("my prefix");
        let mut rc = Vec::new();
        for (shell, file) in RC_FILES {
            let home = root.join(format!("home-{shell}"));
            fs::create_dir_all(&home).unwrap();
            let out = run_install(install_cmd(
                &home,
                &format!("/bin/{shell}"),
                &["--prefix", prefix.to_str().unwrap(), "--rc"],
            ));
            check_eq!(out, out.code(), Some(0), "install.sh --rc for {shell}");
            let text = fs::read_to_string(home.join(file))
                .unwrap_or_else(|e| panic!("install.sh --rc wrote no {file} for {shell}: {e}"));
            rc.push((shell, PathBuf::from(file), text));
        }
        Installed { prefix, rc }
    })
}

/// The prefix install.sh installed into, without `--rc`, once per test
/// binary: the real clients' shims.
pub fn plain() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("clients-prefix-{}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        let out = run_install(install_cmd(
            Path::new(&home),
            "/bin/bash",
            &["--prefix", prefix.to_str().unwrap()],
        ));
        check_eq!(out, out.code(), Some(0), "install.sh failed");
        prefix
    })
}
