//! The real clients' sandbox, for the `#[ignore]`d tests that run them
//! through install.sh's shims against the registries this machine reaches:
//! a client in a fresh HOME, as uid 65534, and the local npm packages the
//! tests make.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::command::{command, require};
use super::install;
use super::log::{Log, Row};
use super::process::{Outcome, Running};
use super::sandbox::{hand_to_nobody, TempDir};

/// Real network round trips, retries included.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// One client run's sandbox: a work dir, a private audit log, and a PATH
/// with install.sh's shims first, then the machine's own PATH.
pub struct Client {
    pub tmp: TempDir,
    pub audit: PathBuf,
    path: OsString,
}

impl Client {
    pub fn new() -> Client {
        let shims = install::plain().join("share/cli-guard/shims");
        let tmp = TempDir::new();
        let audit = tmp.path().join("audit.jsonl");
        let mut path = vec![shims];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Client {
            tmp,
            audit,
            path: std::env::join_paths(path).unwrap(),
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `program ARGS…` as a user types it, found on PATH (so through its
    /// shim), with no proxy settings of the machine's, and nothing of a gate
    /// this test process may run behind, leaking in (`util::hermetic`).
    /// Its temp directory is the sandbox's `tmp/`, writable in strict mode:
    /// where install scripts leave what the tests read.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = command(program);
        cmd.args(args)
            .env("PATH", &self.path)
            .env("TMPDIR", self.dir("tmp"))
            .env("CLI_GUARD_AUDIT_LOG", &self.audit)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn run(&self, cmd: Command) -> Outcome {
        Running::spawn(cmd, Some(self.audit.clone()), None).wait_for(CLIENT_TIMEOUT)
    }

    /// The audit log as it is now: every row.
    pub fn log(&self) -> Log {
        Log::read(&self.audit)
    }
}

/// Fails the test, naming `name`, unless the real client is on this
/// machine's PATH: a missing client fails its test, it never skips it.
pub fn need(name: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    assert!(
        std::env::split_paths(&path).any(|dir| dir.join(name).is_file()),
        "{name} is not on PATH: this test runs the real {name} (.ci/run checks that it is installed)"
    );
}

/// Variables of this machine that point clients at a local wheel cache, a
/// registry or a proxy of its own, or make them act as on a CI runner: a
/// test sets the ones it means.
pub const MACHINE_SETTINGS: &[&str] = &[
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_NO_INDEX",
    "PIP_PROXY",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "PDM_PYPI_URL",
    "NPM_CONFIG_REGISTRY",
    "npm_config_registry",
    "COREPACK_NPM_REGISTRY",
    "YARN_NPM_REGISTRY_SERVER",
    "GOPROXY",
    "GOFLAGS",
    "GOPATH",
    "GOMODCACHE",
    "GEM_HOME",
    "GEM_PATH",
    "BUNDLE_PATH",
    "COMPOSER_HOME",
    "GRADLE_USER_HOME",
    "MAVEN_OPTS",
    "JAVA_TOOL_OPTIONS",
    "GRADLE_OPTS",
    "DENO_DIR",
    "BUN_INSTALL_CACHE_DIR",
    "COREPACK_HOME",
    // A CI runner's: yarn 4 then refuses to write a lockfile
    // (enableImmutableInstalls), pnpm freezes one it finds.
    "CI",
];

/// `program ARGS…` through its shim, in `dir`, with a fresh HOME (and XDG
/// dirs under it) and none of the machine's own registry settings.
pub fn client_cmd(c: &Client, dir: &Path, program: &str, args: &[&str]) -> Command {
    let home = c.dir("home");
    let mut cmd = c.cmd(program, args);
    for var in MACHINE_SETTINGS {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir)
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"));
    cmd
}

/// `cmd` as uid and gid 65534 (nobody), with no groups (setpriv): the same
/// program, arguments, environment and directory. The client's sandbox
/// (`c`) is handed to nobody first, so that it owns its places as a user
/// owns theirs. Needs root, as CI has.
pub fn as_nobody(c: &Client, cmd: &Command) -> Command {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, as CI does, to drop to uid 65534"
    );
    hand_to_nobody(c.tmp.path());
    let mut nobody = command(require("setpriv"));
    nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => nobody.env(key, value),
            None => nobody.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        nobody.current_dir(dir);
    }
    nobody
}

/// A local npm package, `<tmp>/NAME-1.0.0.tgz`: `manifest` as its
/// package.json and `files` (name, contents) beside it.
pub fn npm_tarball(c: &Client, name: &str, manifest: &str, files: &[(&str, &str)]) -> PathBuf {
    let pkg = c.dir(&format!("{name}-src/package"));
    fs::write(pkg.join("package.json"), manifest).unwrap();
    for (file, text) in files {
        fs::write(pkg.join(file), text).unwrap();
    }
    let tarball = c.tmp.path().join(format!("{name}-1.0.0.tgz"));
    let tar = command(require("tar"))
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(c.tmp.path().join(format!("{name}-src")))
        .arg("package")
        .status()
        .unwrap();
    assert!(tar.success(), "tar czf {}", tarball.display());
    tarball
}

/// The one invocation of `tool` in the log: its start row.
pub fn only_start<'a>(log: &'a Log, tool: &str) -> &'a Row {
    let starts = log.rows().kind("start").tool(tool);
    assert_eq!(starts.len(), 1, "expected one {tool} invocation:\n{log}");
    starts[0]
}

/// The network egress rows, end row and audit ID of the one `tool` invocation.
pub fn invocation<'a>(log: &'a Log, tool: &str) -> (String, Vec<&'a Row>, &'a Row) {
    let id = only_start(log, tool).audit_id().to_string();
    let egress = log.rows().of(&id).network().to_vec();
    let ends = log.rows().of(&id).kind("end");
    assert_eq!(ends.len(), 1, "expected one end row:\n{log}");
    (id, egress, ends[0])
}
