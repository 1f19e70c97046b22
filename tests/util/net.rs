//! The fake tools' network client ([`client`]): `net_client.rs`, built
//! once per test binary with the rustc of the toolchain that runs the
//! tests, so that a fake tool can open connections, send DNS queries and
//! datagrams, and go through the proxy with nothing on the machine but
//! Rust (no Python, curl or node). Its commands are in its own doc.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use super::command::{command, REPO};

// The client is a program of its own; compiled here too, so that clippy
// and rustfmt see it with the tests (only its base64 is used here).
#[allow(dead_code)]
#[path = "net_client.rs"]
mod source;

pub use source::base64;

/// The built client: an executable anyone may run (the tests run it as
/// nobody too), reused while its source is unchanged.
pub fn client() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> PathBuf {
    let src = Path::new(REPO).join("tests/util/net_client.rs");
    let text = fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut hash = DefaultHasher::new();
    text.hash(&mut hash);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let exe = dir.join(format!("net-client-{:016x}", hash.finish()));
    if exe.is_file() {
        return exe;
    }
    // Built under a name of this process's, then renamed into place: a
    // concurrent test binary never runs a half-written file.
    let partial = dir.join(format!("net-client-{}.partial", std::process::id()));
    let rustc = rustc();
    let out = command(&rustc)
        .args([
            "--edition=2021",
            "--crate-name=net_client",
            "-C",
            "debuginfo=0",
            "-o",
        ])
        .arg(&partial)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.display()));
    assert!(
        out.status.success(),
        "{} could not build {}:\n{}",
        rustc.display(),
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&partial, &exe).unwrap();
    exe
}

/// The rustc beside the cargo running the tests (`$CARGO`: the same
/// toolchain), else the one on PATH.
fn rustc() -> PathBuf {
    std::env::var_os("CARGO")
        .map(|cargo| PathBuf::from(cargo).with_file_name("rustc"))
        .filter(|rustc| rustc.is_file())
        .unwrap_or_else(|| PathBuf::from("rustc"))
}
