//! Helpers shared by the integration tests, one file per concern; a test
//! file imports from here only, never from another test file.
//!
//! - `check!`/`check_eq!` (here): assertions that, on failure, print the
//!   full report of the process under test (command, status, stdout,
//!   stderr, audit log).
//! - `collector`: syslog collectors on loopback for the shipping tests:
//!   the tests' own octet-counting one, and Debian's rsyslogd (TCP, or TLS
//!   with a CA made by openssl); the chain's SHA-256 computed here.
//! - `command`: hermetic commands (no inherited proxy or `CLI_GUARD_*`
//!   variable), the programs a test needs, the built binary.
//! - `process`: `Running`/`Outcome`, a spawned process with captured output
//!   and a hard timeout, so a broken implementation fails instead of
//!   hanging; what /proc says about a process; signals.
//! - `sandbox`: `Sandbox`, one per test: `shims/` (symlinks to the built
//!   binary), `real/` (fake "real tools", POSIX sh scripts, later on PATH),
//!   `state/` (what the fake tools record), `work/` (the cwd) and a private
//!   audit log; the fake tools' prelude; sessions under another
//!   /etc/hosts, as nobody, without namespaces.
//! - `log`: the audit log (and any JSON Lines output) as typed rows, and
//!   the one query that picks rows out of it.
//! - `proxy`: the raw CONNECT client the tests play the tool with.
//! - `servers`: loopback upstreams that count connections, a black hole,
//!   a fake upstream proxy, and the real ones (tinyproxy, squid).
//! - `net`: the fake tools' network client, a small Rust program built
//!   once per test run (`net_client.rs`): escapes from strict mode, DNS,
//!   requests through the proxy, with nothing on the machine but Rust.
//! - `pty`: a pseudo-terminal, and sessions without one.
//! - `trap`: a fake tool that logs every signal it gets, and how a test
//!   proves one reached it exactly once without sleeping on it.
//! - `install`: install.sh into private prefixes.
//! - `real_clients`: the real clients' sandbox, for the `#[ignore]`d tests.
//! - `policy`: the policy and contract as the issues fix them, written out
//!   here rather than imported, so the tests stay an independent check.

/// `assert!` that appends the full report of `$ctx` (anything with a
/// `report() -> String`) to the failure message.
macro_rules! check {
    ($ctx:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("{}\n\n{}", format_args!($($arg)+), $ctx.report());
        }
    };
}

/// `assert_eq!` that appends the full report of `$ctx` to the failure message.
macro_rules! check_eq {
    ($ctx:expr, $left:expr, $right:expr, $($arg:tt)+) => {
        // `match` keeps temporaries alive, as std's assert_eq! does.
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    panic!(
                        "{}\n  left: {:?}\n right: {:?}\n\n{}",
                        format_args!($($arg)+),
                        left,
                        right,
                        $ctx.report()
                    );
                }
            }
        }
    };
}

pub mod collector;
pub mod command;
pub mod install;
pub mod log;
pub mod net;
pub mod policy;
pub mod process;
pub mod proxy;
pub mod pty;
pub mod real_clients;
pub mod sandbox;
pub mod servers;
pub mod trap;

pub use command::*;
pub use log::*;
pub use net::base64;
pub use policy::*;
pub use process::*;
pub use proxy::*;
pub use pty::*;
pub use sandbox::*;
pub use servers::*;
pub use trap::*;
