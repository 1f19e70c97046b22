//! A copied shim: when the "real" tool an outer cli-guard found is itself
//! cli-guard (a copy rather than a link, so PATH lookup by identity could
//! not skip it), the gate is already in place; this one replaces itself with
//! the next real tool on PATH, skipping every cli-guard.

use std::os::unix::process::CommandExt;
use std::process::Command;

use super::invocation::{lookup_failure, spawn_failure, Invocation, Program};
use super::locate::{find_on_path, skip_var, FileId};
use crate::env::{Env, REAL_TOOL_VAR, SKIP_VAR};
use crate::exit::Failure;
use std::ffi::OsStr;

/// Replaces this process with the next real tool on PATH, skipping every
/// cli-guard: the outer gate stays in front of it. Returns only on failure.
pub(super) fn hand_through(inv: &Invocation, skip: &[FileId], env: &Env) -> Failure {
    // The name looked up: a tool's, or the interpreter of `python -m pip`.
    let name = match &inv.program {
        Program::Lookup(name) => name.as_os_str(),
        Program::Path(_) => OsStr::new(inv.policy.name),
    };
    let real = match find_on_path(name, env.path(), skip) {
        Ok(real) => real,
        Err(e) => return lookup_failure(inv, e),
    };
    // If it is yet another copy, it hands through in turn.
    let e = Command::new(&real.path)
        .arg0(inv.child_argv0(&real.path))
        .args(&inv.args)
        .env(SKIP_VAR, skip_var(skip))
        .env(REAL_TOOL_VAR, real.id.to_var())
        .exec();
    spawn_failure(inv, &real.path, &e)
}
