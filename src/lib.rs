//! cli-guard: an argv[0]-dispatched shim that runs each command-line tool
//! behind a CONNECT-only egress gate of its own.
//!
//! # Layout
//! - [`cli`]: dispatch on argv[0]; the `cli-guard` subcommands.
//! - [`policy`]: the pinned table (tool → mode, allowlist) and matching. Pure.
//! - [`authority`]: parsing and normalising `host:port`. Pure.
//! - [`connect`]: the request-head parser and the proxy's responses. Pure.
//! - [`verdict`]: from a request head to dial-or-refuse. Pure.
//! - [`dial`]: `CLI_GUARD_RESOLVE`, DNS and connect with a timeout.
//! - [`addr`]: the address ranges an enforce-mode dial refuses. Pure.
//! - [`upstream`]: chaining to an upstream proxy; NO_PROXY; credentials.
//! - [`proxy`]: the accept loop, one task per connection.
//! - [`relay`]: a tunnel's bytes both ways, by splice(2) through pooled pipes.
//! - [`audit`]: audit IDs, record types, the append-only JSONL writer, rotation.
//! - [`report`]: reading the log back: folding rows into invocations, filters.
//! - [`render`]: the human view of folded invocations.
//! - [`suggest`]: from observed hosts to a pinned allowlist entry.
//! - [`shim`]: find the real tool, spawn it, forward signals, exit status.
//! - [`spawn`]: a vfork-style spawn that arms the death signal before exec.
//! - [`exit`]: exit codes and re-raising a child's fatal signal.
//! - [`operator`]: `cli-guard audit` and `cli-guard check`: the I/O edge.
//! - [`demo`]: the `egress-demo` command.

pub mod addr;
pub mod audit;
pub mod authority;
pub mod cli;
pub mod connect;
pub mod demo;
pub mod dial;
pub mod exit;
pub mod operator;
pub mod policy;
pub mod proxy;
pub mod relay;
pub mod render;
pub mod report;
pub mod shim;
pub mod spawn;
pub mod suggest;
pub mod upstream;
pub mod verdict;
