//! Hermetic commands: every process a test starts is made by [`command`],
//! which removes the proxy and gate variables this test process may have
//! inherited (when `cargo test` itself runs behind cli-guard's cargo shim,
//! say). Also the built binary, the programs a test needs, and executables
//! written safely from a multi-threaded process.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::policy::PROXY_VARS;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cli-guard");
/// The checkout: install.sh, shims/, README.md, the golden files.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Variables, by exact name, that route a process through a proxy or tell
/// cli-guard it already runs behind a gate, beside the six proxy variables
/// (`PROXY_VARS`). A test process started under a gate (say, `cargo test`
/// through cli-guard's own cargo shim) has them all, and a child that
/// inherited them would chain through that gate.
pub const STEERING_VARS: [&str; 6] = [
    "NO_PROXY",
    "no_proxy",
    "PIP_PROXY",
    "CARGO_HTTP_PROXY",
    "NODE_USE_ENV_PROXY",
    "GIT_CONFIG_COUNT",
];

/// Whether the variable `name` steers a child: one of `PROXY_VARS` or
/// `STEERING_VARS`,
/// any `CLI_GUARD_*` or `GIT_CONFIG_*`, npm's `npm_config_*proxy*` (npm
/// reads them in any case) and yarn's `YARN_*PROXY*`.
pub fn is_steering(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    PROXY_VARS.contains(&name)
        || STEERING_VARS.contains(&name)
        || name.starts_with("CLI_GUARD_")
        || name.starts_with("GIT_CONFIG_")
        || (lower.starts_with("npm_config_") && lower.contains("proxy"))
        || (name.starts_with("YARN_") && name.contains("PROXY"))
}

/// Removes from `cmd` every steering variable (`is_steering`) this test
/// process has, and those of `PROXY_VARS` and `STEERING_VARS` in any
/// case, so nothing a test runs inherits a proxy or a gate. Call it first:
/// a variable the test sets on `cmd` afterwards stays.
pub fn hermetic(cmd: &mut Command) -> &mut Command {
    for var in PROXY_VARS.iter().chain(&STEERING_VARS) {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_steering) {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `Command::new(program)`, made `hermetic`. Every process the tests start
/// is made here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    hermetic(&mut cmd);
    cmd
}

/// Where the local program `name` is installed: on PATH, or in a usual bin
/// or sbin directory. A test that needs it fails, naming it, when it is
/// missing; it is never skipped.
pub fn require(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is needed by this test and is not installed (.ci/run installs it with apt)")
        })
}

/// The machine's bash, where the tests' fake interpreters and shells run.
pub fn bash() -> &'static str {
    if Path::new("/usr/bin/bash").exists() {
        "/usr/bin/bash"
    } else {
        "/bin/bash"
    }
}

/// Copies `src` to a new executable file `dst` in a separate process.
///
/// A file this (multi-threaded) test process holds open for writing leaks,
/// for a moment, into every child another test thread forks, and exec'ing
/// it then fails with ETXTBSY ("Text file busy"). `cp` writes the file
/// instead, and has exited before anything runs it.
pub fn install_executable(src: &Path, dst: &Path) {
    let st = command("/bin/cp")
        .arg(src)
        .arg(dst)
        .env_clear()
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "cp {} {}: {st}", src.display(), dst.display());
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
}

/// OsStr from raw bytes, for non-UTF-8 arguments.
pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The largest file `cmd`'s process may write (`RLIMIT_FSIZE`) under
/// [`with_a_full_log`]: room for a fake tool's reports, none for a log
/// already this size.
const FULL_AT: u64 = 64 * 1024;

/// Makes `log` a regular file that cannot grow for `cmd`'s process: it is
/// filled to the file-size limit `cmd` then runs under, with SIGXFSZ
/// ignored, so every append fails (EFBIG) as on a full disk. A device such
/// as /dev/full is no longer a log cli-guard accepts.
pub fn with_a_full_log(cmd: &mut Command, log: &Path) {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(log, vec![b'\n'; FULL_AT as usize]).unwrap();
    cmd.env("CLI_GUARD_AUDIT_LOG", log);
    // SAFETY: the hook runs in the forked child before exec and makes two
    // system calls that allocate nothing (setrlimit, signal with SIG_IGN).
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, FULL_AT, FULL_AT)?;
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGXFSZ,
                nix::sys::signal::SigHandler::SigIgn,
            )?;
            Ok(())
        });
    }
}
