//! cli-guard: an `argv[0]`-dispatched shim that runs each command-line tool
//! behind a CONNECT-only egress gate of its own.
//!
//! # Layout
//! - `cli/`: dispatch on `argv[0]`; one file per `cli-guard` subcommand, one parser.
//! - `env`: every environment variable cli-guard reads, read once.
//! - `policy/`: the pinned table, name and port matching, address ranges: deny or not.
//! - `gate/`: the CONNECT proxy (accept loop, one handler per connection, dial, relay)
//!   and strict mode's DNS responder and transparent path.
//! - `credential`: the per-invocation proxy credential: mint, forms, compare, scrub.
//! - `audit/`: the records (written and read by one schema), the writer and its hash chain, the reader.
//! - `ship/`: shipping rows to a syslog collector as they are written: configuration, spool, framing, TLS.
//! - `shim/`: one guarded invocation: find the tool, isolate it (strict mode), run it behind the gate.
//! - `who/`: which process made each connection, and whose package's code it runs.
//! - `sys/`: the Linux-only primitives: pipes and splice, signalfd, the spawn, the namespaces.
//! - `exit`: exit codes and passing a child's death by signal on.
//!
//! The items re-exported below are the surface that `main`, the fuzz
//! targets, the integration tests and the benchmark use; everything else is
//! `pub(crate)` at most, and `unreachable_pub` keeps it so.
//!
//! `unsafe` lives in `sys/` alone (and in `main`, a crate of its own), where
//! nix cannot make a call safe; everywhere else the compiler refuses it.

#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod audit;
mod cli;
mod credential;
mod env;
mod exit;
mod gate;
mod policy;
mod shim;
mod ship;
mod sys;
mod who;

pub use cli::dispatch;
pub use credential::base64;
pub use exit::{die_by, Exit, Failure, GATE_FAILED};
pub use gate::{answer_query, answered_address, dns, Pool};
pub use gate::{bind_loopback, connection_cap_for, judge, parse_head, Judged, Refusal, IDLE_PIPES};
pub use policy::authority::{parse_authority, Host};
pub use policy::{Decision, Rule, TOOLS};
