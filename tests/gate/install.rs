//! install.sh and the repository's shims/ folder: what a user's first
//! minutes go through. Every test runs the real install.sh (which runs the
//! real `cargo build --release --locked`) into a private prefix, but for
//! the checks of the script itself (shellcheck and dash's `#[ignore]`d).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::install::{install_cmd, run_install};
use crate::util::{command, require, Outcome, TempDir, BIN, REPO};

/// A fresh prefix and HOME for one install test.
struct Setup {
    tmp: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup { tmp: TempDir::new() };
        fs::create_dir_all(s.home()).unwrap();
        s
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn prefix(&self) -> PathBuf {
        self.tmp.path().join("prefix")
    }

    fn shims(&self) -> PathBuf {
        self.prefix().join("share/cli-guard/shims")
    }

    fn install(&self, shell: &str, extra: &[&str]) -> Outcome {
        let prefix = self.prefix();
        let mut args = vec!["--prefix", prefix.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_install(install_cmd(&self.home(), shell, &args))
    }
}

fn policy_names() -> Vec<String> {
    let out = command(BIN).args(["policy", "--names"]).output().unwrap();
    assert!(out.status.success(), "cli-guard policy --names failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A file's device and inode.
fn file_id(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.dev(), meta.ino())
}

/// Every entry of a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn shims_folder_matches_the_policy_table() {
    let shims = Path::new(REPO).join("shims");
    let mut expected = policy_names();
    expected.sort();
    assert_eq!(
        entries(&shims),
        expected,
        "shims/ and `cli-guard policy --names` disagree"
    );
    for name in &expected {
        let link = shims.join(name);
        let target = fs::read_link(&link).unwrap_or_else(|e| panic!("shims/{name} is not a symlink: {e}"));
        assert_eq!(target, Path::new("../target/release/cli-guard"), "shims/{name}");
    }
}

#[test]
#[ignore = "shellcheck and dash: run by .ci/run (cargo test -- --ignored)"]
fn install_sh_is_posix_sh_and_shellcheck_clean() {
    let script = Path::new(REPO).join("install.sh");
    let out = command(require("shellcheck"))
        .args(["-s", "sh"])
        .arg(&script)
        .output();
    let out = out.unwrap_or_else(|e| panic!("shellcheck is needed for this test (.ci/run installs it): {e}"));
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let parse = command(require("dash")).arg("-n").arg(&script).output();
    let parse = parse.unwrap_or_else(|e| panic!("dash is needed for this test (.ci/run installs it): {e}"));
    assert!(
        parse.status.success(),
        "dash -n: {}",
        String::from_utf8_lossy(&parse.stderr)
    );
}

/// What needs no shellcheck: the script's shape.
#[test]
fn install_sh_is_a_sh_script_that_sets_eu_and_ends_by_calling_main() {
    let script = Path::new(REPO).join("install.sh");
    let text = fs::read_to_string(&script).unwrap();
    assert!(
        text.starts_with("#!/bin/sh\n"),
        "install.sh must be a POSIX sh script"
    );
    assert!(text.contains("\nset -eu\n"), "install.sh must set -eu");
    assert_eq!(
        text.trim_end().lines().last(),
        Some("main \"$@\""),
        "main \"$@\" must be the last line"
    );
}

#[test]
fn install_puts_the_binary_the_demo_and_every_shim_in_place() {
    let s = Setup::new();
    let out = s.install("/bin/bash", &[]);
    check_eq!(out, out.code(), Some(0), "install failed");
    let bin = s.prefix().join("bin/cli-guard");
    let version = command(&bin).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("cli-guard "),
        "{version:?}"
    );
    assert_eq!(
        fs::read_link(s.prefix().join("bin/egress-demo")).unwrap(),
        Path::new("cli-guard")
    );
    let mut names = policy_names();
    names.sort();
    assert_eq!(entries(&s.shims()), names);
    let bin_id = file_id(&bin);
    for name in &names {
        let shim = s.shims().join(name);
        if name.starts_with("python") {
            // A hard link: a program that resolves an interpreter's links
            // and runs what it finds still runs the shim as `python3`.
            assert!(!shim.is_symlink(), "shim {name} is a hard link");
            assert_eq!(file_id(&shim), bin_id, "shim {name} is the binary");
        } else {
            assert_eq!(fs::read_link(&shim).unwrap(), bin, "shim {name}");
        }
    }
    let init = format!("eval \"$('{}' init bash)\"", bin.display());
    check!(
        out,
        out.stdout().contains(&init),
        "install must print the line that loads the shell integration {init:?}"
    );
    let line = format!("export PATH=\"{}:$PATH\"", s.shims().display());
    check!(
        out,
        out.stdout().contains(&line),
        "and the PATH line for this shell only {line:?}"
    );
    // Installed again (an upgrade replaces the binary by a new file): the
    // python shims are linked to the new one.
    s.install("/bin/bash", &[]).expect_code(0);
    let bin_id = file_id(&bin);
    for name in names.iter().filter(|n| n.starts_with("python")) {
        assert_eq!(
            file_id(&s.shims().join(name)),
            bin_id,
            "shim {name} after a reinstall"
        );
    }
}

#[test]
fn reinstall_is_idempotent_and_repairs_broken_and_stale_links() {
    let s = Setup::new();
    s.install("/bin/bash", &[]).expect_code(0);
    let manifest = s.prefix().join("share/cli-guard/manifest");
    let before = fs::read_to_string(&manifest).unwrap();
    let npm = s.shims().join("npm");
    fs::remove_file(&npm).unwrap();
    symlink("/nonexistent/cli-guard", &npm).unwrap();
    fs::remove_file(s.shims().join("pip")).unwrap();
    let out = s.install("/bin/bash", &[]);
    check_eq!(out, out.code(), Some(0), "reinstall failed");
    let bin = s.prefix().join("bin/cli-guard");
    assert_eq!(fs::read_link(&npm).unwrap(), bin, "broken link not repaired");
    assert_eq!(
        fs::read_link(s.shims().join("pip")).unwrap(),
        bin,
        "missing link not restored"
    );
    assert_eq!(
        fs::read_to_string(&manifest).unwrap(),
        before,
        "the manifest changed on reinstall"
    );
}

#[test]
fn install_never_overwrites_a_file_it_did_not_create() {
    let s = Setup::new();
    let bin = s.prefix().join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("cli-guard"), "someone else's\n").unwrap();
    let out = s.install("/bin/bash", &[]);
    check!(out, out.code() != Some(0), "install overwrote a foreign file");
    check!(
        out,
        out.stderr().contains("was not installed by install.sh"),
        "the error must say why"
    );
    assert_eq!(
        fs::read_to_string(bin.join("cli-guard")).unwrap(),
        "someone else's\n"
    );

    let s = Setup::new();
    fs::create_dir_all(s.shims()).unwrap();
    fs::write(s.shims().join("npm"), "mine\n").unwrap();
    let out = s.install("/bin/bash", &[]);
    check!(out, out.code() != Some(0), "install overwrote a foreign shim");
    check!(
        out,
        out.stderr()
            .contains("npm exists and was not created by install.sh"),
        "unclear error"
    );
    assert_eq!(fs::read_to_string(s.shims().join("npm")).unwrap(), "mine\n");
}

#[test]
fn rc_line_is_added_once_and_uninstall_restores_the_file() {
    for (shell, rc) in [
        ("bash", ".bashrc"),
        ("zsh", ".zshenv"),
        ("fish", ".config/fish/config.fish"),
    ] {
        let s = Setup::new();
        let rc = s.home().join(rc);
        fs::create_dir_all(rc.parent().unwrap()).unwrap();
        let original = format!("# my {shell} settings\nalias ll='ls -l'\n");
        fs::write(&rc, &original).unwrap();
        let shell_path = format!("/bin/{shell}");
        s.install(&shell_path, &["--rc"]).expect_code(0);
        let out = s.install(&shell_path, &["--rc"]);
        check_eq!(out, out.code(), Some(0), "second --rc install failed");
        let text = fs::read_to_string(&rc).unwrap();
        let bin = s.prefix().join("bin/cli-guard").display().to_string();
        let line = if shell == "fish" {
            format!("'{bin}' init fish | source # added by cli-guard install.sh\n")
        } else {
            format!("eval \"$('{bin}' init {shell})\" # added by cli-guard install.sh\n")
        };
        assert_eq!(
            text,
            format!("{original}{line}"),
            "{shell}: the line, added once after the user's lines"
        );
        let out = s.install(&shell_path, &["--uninstall"]);
        check_eq!(out, out.code(), Some(0), "uninstall failed");
        assert_eq!(
            fs::read_to_string(&rc).unwrap(),
            original,
            "{shell}: uninstall must restore the rc file"
        );
    }
}

/// A start-up file --rc created is gone again after --uninstall; the PATH
/// line an earlier install.sh --rc wrote (zsh: in ~/.zshrc) gives way to
/// the shell integration's line, and --uninstall removes either.
#[test]
fn rc_files_install_made_go_and_an_earlier_path_line_is_replaced() {
    let s = Setup::new();
    s.install("/bin/zsh", &["--rc"]).expect_code(0);
    let zshenv = s.home().join(".zshenv");
    assert!(zshenv.is_file());
    s.install("/bin/zsh", &["--uninstall"]).expect_code(0);
    assert!(!zshenv.exists(), "the .zshenv install created is removed");

    let s = Setup::new();
    let zshrc = s.home().join(".zshrc");
    let old = format!(
        "export PATH=\"{}:$PATH\" # added by cli-guard install.sh\n",
        s.shims().display()
    );
    fs::write(&zshrc, format!("setopt autocd\n{old}")).unwrap();
    let out = s.install("/bin/zsh", &["--rc"]);
    check_eq!(out, out.code(), Some(0), "--rc failed");
    assert_eq!(fs::read_to_string(&zshrc).unwrap(), "setopt autocd\n");
    let text = fs::read_to_string(s.home().join(".zshenv")).unwrap();
    assert!(
        text.contains(" init zsh)\" # added by cli-guard install.sh"),
        "{text}"
    );
    fs::write(&zshrc, format!("setopt autocd\n{old}")).unwrap();
    s.install("/bin/zsh", &["--uninstall"]).expect_code(0);
    assert_eq!(fs::read_to_string(&zshrc).unwrap(), "setopt autocd\n");
    assert!(!s.home().join(".zshenv").exists());
}

#[test]
fn uninstall_removes_exactly_what_install_put_there() {
    let s = Setup::new();
    s.install("/bin/bash", &[]).expect_code(0);
    let bin = s.prefix().join("bin");
    fs::write(bin.join("other-tool"), "not ours\n").unwrap();
    fs::write(s.shims().join("my-note"), "not ours either\n").unwrap();
    let out = s.install("/bin/bash", &["--uninstall"]);
    check_eq!(out, out.code(), Some(0), "uninstall failed");
    assert_eq!(entries(&bin), vec!["other-tool"]);
    assert_eq!(entries(&s.shims()), vec!["my-note"]);
    let out = s.install("/bin/bash", &["--uninstall"]);
    check!(
        out,
        out.code() != Some(0),
        "a second uninstall has nothing to remove"
    );
    check!(
        out,
        out.stderr().contains("nothing to uninstall"),
        "unclear error"
    );
}

#[test]
fn install_without_cargo_says_how_to_get_it() {
    let s = Setup::new();
    // A PATH with the utilities install.sh uses, and no cargo.
    let tools = s.tmp.path().join("tools");
    fs::create_dir_all(&tools).unwrap();
    for tool in [
        "sh", "dirname", "grep", "sed", "mkdir", "cat", "rm", "ln", "readlink", "cp", "mv", "chmod",
    ] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists());
        symlink(
            found.unwrap_or_else(|| panic!("{tool} not found")),
            tools.join(tool),
        )
        .unwrap();
    }
    let mut cmd = install_cmd(
        &s.home(),
        "/bin/bash",
        &["--prefix", s.prefix().to_str().unwrap()],
    );
    cmd.env("PATH", &tools);
    let out = run_install(cmd);
    check!(out, out.code() != Some(0), "install without cargo must fail");
    check!(
        out,
        out.stderr().contains("cargo not found"),
        "the error must name cargo"
    );
    check!(
        out,
        out.stderr().contains("rustup"),
        "the error must say how to get it"
    );
}

#[test]
fn install_into_an_unwritable_prefix_says_so_before_building() {
    let s = Setup::new();
    let file = s.tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    let prefix = file.join("prefix");
    let out = run_install(install_cmd(
        &s.home(),
        "/bin/bash",
        &["--prefix", prefix.to_str().unwrap()],
    ));
    check!(
        out,
        out.code() != Some(0),
        "install into an unwritable prefix must fail"
    );
    check!(
        out,
        out.stderr().contains("cannot write to"),
        "the error must say what is wrong"
    );
    check!(
        out,
        !out.stdout().contains("building"),
        "it must fail before the build"
    );
}

#[test]
fn install_warns_when_a_real_tool_comes_before_the_shims() {
    let s = Setup::new();
    let early = s.tmp.path().join("early");
    fs::create_dir_all(&early).unwrap();
    fs::write(early.join("npm"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        early.join("npm"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut path = vec![early.clone(), s.shims()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut cmd = install_cmd(
        &s.home(),
        "/bin/bash",
        &["--prefix", s.prefix().to_str().unwrap()],
    );
    cmd.env("PATH", std::env::join_paths(&path).unwrap());
    let out = run_install(cmd);
    check_eq!(out, out.code(), Some(0), "install failed");
    let npm = early.join("npm").display().to_string();
    check!(
        out,
        out.stderr().contains("bypass the gate") && out.stderr().contains(&npm),
        "no PATH-order warning"
    );
    check!(
        out,
        out.stderr().contains("export PATH="),
        "the warning must say how to fix it"
    );
}

#[test]
fn cli_guard_shims_reports_what_path_finds_for_each_tool() {
    let s = Setup::new();
    s.install("/bin/bash", &[]).expect_code(0);
    let early = s.tmp.path().join("early");
    let late = s.tmp.path().join("late");
    for (dir, tool) in [(&early, "gh"), (&late, "npm"), (&late, "gh")] {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(tool), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            dir.join(tool),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let path: OsString = std::env::join_paths([&early, &s.shims(), &late]).unwrap();
    let out = command(s.prefix().join("bin/cli-guard"))
        .arg("shims")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |tool: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(tool))
            .unwrap_or_else(|| panic!("no line for {tool}:\n{text}"))
            .to_string()
    };
    let npm = line("npm");
    assert!(npm.contains("enforce") && npm.contains("yes"), "{npm}");
    assert!(npm.ends_with(&late.join("npm").display().to_string()), "{npm}");
    let gh = line("gh");
    assert!(
        gh.contains("observe") && gh.contains(&format!("no: {} comes first", early.join("gh").display())),
        "{gh}"
    );
    let brew = line("brew");
    assert!(brew.ends_with("not installed"), "{brew}");
}

/// A stand-in for apparmor_parser (the real one needs AppArmor in the
/// kernel): it records each call's arguments in `calls` beside itself.
/// With `CLI_GUARD_INSTALL_APPARMOR_DIR` (install.sh's directory for the
/// tests), `--apparmor` writes into a directory of the test's.
struct AppArmor {
    dir: PathBuf,
    bin: PathBuf,
}

impl AppArmor {
    fn new(s: &Setup) -> AppArmor {
        let dir = s.tmp.path().join("apparmor.d");
        let bin = s.tmp.path().join("fakebin");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&bin).unwrap();
        let parser = bin.join("apparmor_parser");
        fs::write(
            &parser,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >>\"$(dirname \"$0\")/calls\"\n",
        )
        .unwrap();
        fs::set_permissions(&parser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        AppArmor { dir, bin }
    }

    fn profile(&self) -> PathBuf {
        self.dir.join("cli-guard")
    }

    fn calls(&self) -> String {
        fs::read_to_string(self.bin.join("calls")).unwrap_or_default()
    }

    /// `cmd` with the stand-in first on PATH and the test's directory.
    fn apply(&self, cmd: &mut Command) {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.bin.display()))
            .env("CLI_GUARD_INSTALL_APPARMOR_DIR", &self.dir);
    }

    /// `install.sh --prefix PREFIX ARGS...` with the stand-in, as root or
    /// (through setpriv) as uid 65534.
    fn run(&self, s: &Setup, args: &[&str], as_nobody: bool) -> Outcome {
        let prefix = s.prefix();
        let mut all = vec!["--prefix", prefix.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut cmd = if as_nobody {
            let mut cmd = command(require("setpriv"));
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"])
                .arg(Path::new(REPO).join("install.sh"))
                .args(&all)
                .env("HOME", s.home())
                .current_dir(REPO)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd
        } else {
            install_cmd(&s.home(), "/bin/bash", &all)
        };
        self.apply(&mut cmd);
        run_install(cmd)
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn apparmor_without_apparmor_says_it_is_not_needed() {
    let s = Setup::new();
    let prefix = s.prefix();
    let mut cmd = install_cmd(
        &s.home(),
        "/bin/bash",
        &["--prefix", prefix.to_str().unwrap(), "--apparmor"],
    );
    cmd.env(
        "CLI_GUARD_INSTALL_APPARMOR_DIR",
        s.tmp.path().join("no-apparmor.d"),
    );
    let out = run_install(cmd);
    check_eq!(out, out.code(), Some(0), "not needed is no failure");
    check!(
        out,
        out.stdout().contains("AppArmor is not installed here")
            && out.stdout().contains("no profile is needed"),
        "it says so"
    );
    check!(out, !prefix.exists(), "it builds and installs nothing");
}

#[test]
fn apparmor_profile_is_written_loaded_and_removed_by_uninstall() {
    assert!(is_root(), "this test writes as root, as CI runs it");
    let s = Setup::new();
    let aa = AppArmor::new(&s);
    // Before an install there is no binary to write a profile for.
    let out = aa.run(&s, &["--apparmor"], false);
    check_eq!(out, out.code(), Some(1), "nothing installed yet");
    check!(out, out.stderr().contains("install first"), "it says what to do");
    s.install("/bin/bash", &[]).expect_code(0);
    let out = aa.run(&s, &["--apparmor"], false);
    check_eq!(out, out.code(), Some(0), "--apparmor failed");
    let bin = fs::canonicalize(s.prefix().join("bin/cli-guard")).unwrap();
    let text = fs::read_to_string(aa.profile()).unwrap();
    for line in [
        "abi <abi/4.0>,".to_string(),
        "include <tunables/global>".to_string(),
        format!("profile cli-guard \"{}\" flags=(unconfined) {{", bin.display()),
        "  userns,".to_string(),
        "  include if exists <local/cli-guard>".to_string(),
        "}".to_string(),
    ] {
        check!(
            out,
            text.lines().any(|l| l == line),
            "the profile must have {line:?}:\n{text}"
        );
    }
    check_eq!(
        out,
        aa.calls(),
        format!("-r {}\n", aa.profile().display()),
        "loaded with apparmor_parser -r"
    );
    let manifest = s.prefix().join("share/cli-guard/manifest");
    let listed = fs::read_to_string(&manifest).unwrap();
    check!(
        out,
        listed
            .lines()
            .any(|l| l == format!("apparmor:{}", aa.profile().display())),
        "the manifest lists it:\n{listed}"
    );
    // Again: the same file, replaced, listed once.
    aa.run(&s, &["--apparmor"], false).expect_code(0);
    assert_eq!(fs::read_to_string(&manifest).unwrap(), listed);
    let out = aa.run(&s, &["--uninstall"], false);
    check_eq!(out, out.code(), Some(0), "uninstall failed");
    check!(out, !aa.profile().exists(), "the profile is removed");
    check!(
        out,
        aa.calls().ends_with(&format!("-R {}\n", aa.profile().display())),
        "and unloaded first: {}",
        aa.calls()
    );
    check!(out, !manifest.exists(), "nothing is left listed");
}

#[test]
fn apparmor_without_root_says_what_to_run_and_uninstall_keeps_it_listed() {
    assert!(
        is_root(),
        "this test installs as root and then drops to uid 65534"
    );
    let s = Setup::new();
    let aa = AppArmor::new(&s);
    s.install("/bin/bash", &[]).expect_code(0);
    // The user's own install, as the user's.
    let out = command("chown")
        .args(["-R", "65534:65534"])
        .arg(s.prefix())
        .arg(s.home())
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {out:?}");
    let out = aa.run(&s, &["--apparmor"], true);
    check_eq!(out, out.code(), Some(1), "without root it cannot write");
    let install_sh = Path::new(REPO).join("install.sh");
    let sudo = format!(
        "sudo {} --prefix {} --apparmor",
        install_sh.display(),
        s.prefix().display()
    );
    check!(
        out,
        out.stdout().contains(&sudo),
        "it says exactly what to run: {sudo}"
    );
    check!(out, !aa.profile().exists(), "and writes nothing");
    aa.run(&s, &["--apparmor"], false).expect_code(0);

    let out = aa.run(&s, &["--uninstall"], true);
    check_eq!(out, out.code(), Some(0), "the user's uninstall");
    check!(
        out,
        !s.prefix().join("bin/cli-guard").exists(),
        "the user's files are removed"
    );
    check!(out, aa.profile().exists(), "the profile needs root to remove");
    check!(
        out,
        out.stderr().contains(&format!(
            "sudo {} --prefix {} --uninstall",
            install_sh.display(),
            s.prefix().display()
        )),
        "and it says how"
    );
    let manifest = s.prefix().join("share/cli-guard/manifest");
    let listed = fs::read_to_string(&manifest).unwrap_or_default();
    check!(
        out,
        listed
            .lines()
            .any(|l| l == format!("apparmor:{}", aa.profile().display())),
        "it stays listed:\n{listed}"
    );
    let out = aa.run(&s, &["--uninstall"], false);
    check_eq!(out, out.code(), Some(0), "root's uninstall");
    check!(out, !aa.profile().exists(), "the profile is removed");
    check!(out, !manifest.exists(), "nothing is left listed");
}
