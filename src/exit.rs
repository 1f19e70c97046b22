//! Exit codes, cli-guard's own failures, and passing a child's death by
//! signal on as a death by signal.

use std::fmt;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{raise, SigSet, Signal};

/// Done: help or output shown; `check`: the gate would allow.
pub(crate) const SUCCESS: u8 = 0;
/// `cli-guard audit`: the audit log cannot be found or read.
pub(crate) const LOG_UNREADABLE: u8 = 1;
/// `cli-guard check`: the gate would refuse.
pub(crate) const CHECK_DENIED: u8 = 1;
/// `egress-demo`: the gate did not answer as the demo expects.
pub(crate) const DEMO_UNEXPECTED: u8 = 1;
/// `cli-guard doctor`: strict mode does not work here (or
/// `CLI_GUARD_STRICT` is not a setting); `egress-demo strict`: strict mode
/// is not available, so there is nothing to show.
pub(crate) const STRICT_UNAVAILABLE: u8 = 1;
/// `cli-guard audit --verify`: the chain is broken (a row changed,
/// inserted or removed), or no row carries it.
pub(crate) const NOT_INTACT: u8 = 3;
/// `cli-guard ship`: rows still wait in the spool.
pub(crate) const STILL_SPOOLED: u8 = 1;
/// Bad arguments or an unknown name: nothing was run.
pub(crate) const USAGE: u8 = 2;
/// The gate could not be put in place (proxy, signals, recursion, bad
/// configuration): the tool was not run. The gate fails closed.
pub const GATE_FAILED: u8 = 125;
/// The real tool was found but could not be executed.
pub(crate) const NOT_EXECUTABLE: u8 = 126;
/// The real tool was not found on PATH.
pub(crate) const NOT_FOUND: u8 = 127;

/// How a guarded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit with this code (the child's own, passed through).
    Code(u8),
    /// The child died by this signal: die by it too.
    Signal(Signal),
}

/// cli-guard's own failure: what to print and which code to exit with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Exit {
    /// A plain success.
    pub const SUCCESS: Exit = Exit::Code(SUCCESS);
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }

    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure::new(USAGE, anyhow::anyhow!("{message}"))
    }

    pub fn gate(error: impl Into<anyhow::Error>) -> Failure {
        Failure::new(GATE_FAILED, error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Dies by `sig` the way the child did, so the calling shell sees a death by
/// signal (shells treat "killed by SIGINT" differently from "exit 130").
/// Returns 128+N only if the process survives its own signal.
pub fn die_by(sig: Signal) -> u8 {
    // The shim's own core is of no use to anyone; the child's is the one
    // that matters and has already been written.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // This undoes the SIGPIPE ignore that main sets and any other
    // inherited disposition.
    let _ = crate::sys::signal::restore_default(sig);
    let _ = SigSet::from(sig).thread_unblock();
    let _ = raise(sig);
    128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0))
}
