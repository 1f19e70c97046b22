//! The real clients' sandbox, for the `#[ignore]`d tests that run them
//! through install.sh's shims against the registries this machine reaches.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::command::command;
use super::install;
use super::log::{Log, Row};
use super::process::{Outcome, Running};
use super::sandbox::TempDir;

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
