//! What one guarded invocation is: the policy it runs under, its argv, and
//! how to find the program; and the messages for a tool that cannot be
//! found or run (127, 126, or 125 when the fault is cli-guard's).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::locate::LookupError;
use crate::exit::{Failure, GATE_FAILED, NOT_EXECUTABLE, NOT_FOUND};
use crate::policy::ToolPolicy;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) enum Program {
    /// A name to look up on PATH, skipping this binary.
    Lookup(OsString),
    /// An explicit path (`cli-guard run --as npm -- ./bin/tool`).
    Path(PathBuf),
}

/// One guarded invocation.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub policy: &'static ToolPolicy,
    /// argv[0] as the user typed it; the child gets it unchanged.
    pub argv0: OsString,
    pub args: Vec<OsString>,
    pub program: Program,
    /// True when dispatched by argv[0] (not `cli-guard run`): only then can
    /// finding cli-guard itself as the "real" tool mean a copied shim.
    pub as_shim: bool,
    /// Where the tool's own arguments start in `args`, for finding its
    /// subcommand: 0, or past `-m pip` for `python -m pip install`.
    pub tool_args_from: usize,
    /// True for an interpreter (`python -m pip`): the child gets the path it
    /// was found at as argv[0], not the name as typed, because CPython
    /// derives `sys.executable` from argv[0] (a bare name is looked up on
    /// PATH, where it would find the shim). The start row still logs argv[0]
    /// as typed.
    pub argv0_is_path: bool,
}

impl Invocation {
    /// The child's argv[0]: as typed, or the path the tool was found at.
    pub(crate) fn child_argv0<'a>(&'a self, real_path: &'a Path) -> &'a OsStr {
        if self.argv0_is_path {
            real_path.as_os_str()
        } else {
            &self.argv0
        }
    }
}

/// The failure for a tool that was not found, or is not executable.
pub(super) fn lookup_failure(inv: &Invocation, e: LookupError) -> Failure {
    let name = match &inv.program {
        Program::Lookup(name) => name.to_string_lossy().into_owned(),
        Program::Path(path) => path.display().to_string(),
    };
    match e {
        LookupError::NotFound => Failure::new(
            NOT_FOUND,
            anyhow::anyhow!(
                "{name}: the real {name} was not found on PATH (after skipping cli-guard's own shims). \
                 Install {name}, or put its directory on PATH after the shims directory."
            ),
        ),
        LookupError::NotExecutable(path) => Failure::new(
            NOT_EXECUTABLE,
            anyhow::anyhow!(
                "{name}: {} is not an executable file (check its permissions)",
                path.display()
            ),
        ),
    }
}

/// The failure for a spawn that did not reach the tool.
pub(super) fn spawn_failure(inv: &Invocation, path: &Path, e: &io::Error) -> Failure {
    let name = inv.policy.name;
    // 126 and 127 speak of the tool; anything else (out of descriptors or
    // memory, say) is cli-guard failing to run it, and fails closed as 125.
    let errno = e.raw_os_error().map(Errno::from_raw);
    let (code, hint) = match errno {
        Some(Errno::ENOENT) => (NOT_FOUND, " (a script whose #! interpreter is missing?)"),
        Some(Errno::ENOEXEC) => (
            NOT_EXECUTABLE,
            " (not a program the kernel can run, nor a script /bin/sh can)",
        ),
        Some(Errno::EACCES | Errno::EISDIR | Errno::ETXTBSY | Errno::EPERM) => (NOT_EXECUTABLE, ""),
        _ => (GATE_FAILED, ""),
    };
    Failure::new(
        code,
        anyhow::anyhow!("{name}: cannot run {}: {e}{hint}", path.display()),
    )
}
