//! Integration tests for cli-guard: the built binary, run through symlinks in
//! a temp dir, with fake "real tools" (POSIX sh scripts) later on PATH and
//! upstream servers on 127.0.0.1. Everything is a real process and a real
//! socket, and nothing leaves loopback, but for `clients`' ignored tests
//! (the real clients against their registries, run by `.ci/run`).
//! Assertions follow docs/contract.md.
//!
//! Layout (after ripgrep's): one test crate, `tests/gate/`, one file per
//! area below, and the helpers they share in `tests/util/` (its `mod.rs`
//! lists them: processes, the sandbox, the audit log's rows, the proxy
//! client, servers, the pty, the fake tools' network client). A test file
//! imports from `util` only, never from another test file.
//!
//! - `dispatch`: argv[0] dispatch, `cli-guard --help/--version/policy/run`.
//! - `proxy`: every proxy answer, the relay (early bytes, half-close),
//!   matching, observe mode.
//! - `python`: the python shims: `-m pip` guarded, anything else exec'd.
//! - `interpreters`: the python shims without side effects: argv[0] the
//!   interpreter's path, a version manager's shim that hands python back,
//!   the hard-linked shim run by its own path, a virtualenv that survives
//!   an uninstall.
//! - `shim`: the child's environment and argv, PATH lookup, exit codes.
//! - `signals`: signal forwarding, Ctrl-C and Ctrl-Z through a pty.
//! - `audit`: the four record kinds, ordering, permissions, a SIGKILLed
//!   shim, concurrent writers, an unwritable log, the denial summary.
//! - `demo`: egress-demo.
//! - `hostile`: tricks against a CONNECT allowlist (case, trailing dots,
//!   lookalikes, oversized and endless heads...), and the credential.
//! - `load`: many tunnels at once, leaks, the connection cap, slow clients.
//! - `chain`: upstream proxies: an outer cli-guard, a fake one, NO_PROXY;
//!   tinyproxy and squid `#[ignore]`d.
//! - `faults`: upstreams and clients that fail mid-way.
//! - `addresses`: where an allowed name's dial may land.
//! - `dial`: dials that survive a dead address (Happy Eyeballs), and
//!   `CLI_GUARD_RESOLVE` held to loopback.
//! - `operator`: `cli-guard audit` and `check`, and log rotation.
//! - `record`: the rows' hash chain (concurrent writers, relayed rows, a
//!   rotation) and `--verify`; shipping to a syslog collector (the tests'
//!   own, and Debian's rsyslog over TCP and TLS `#[ignore]`d), the spool,
//!   `required`, and the fleet view of a collector's file.
//! - `install`: install.sh and the shims/ folder.
//! - `fetch_run`: fetch and run (`npx X`, `uvx X`) with fake tools: the
//!   fetch enforced and the run observed, each phase's arguments, the
//!   record and `cli-guard audit`'s one entry, the program's environment,
//!   stdio, exit and signals, a failed fetch, the fallbacks.
//! - `doors`: strict mode's other doors, walked by an install script: the
//!   home, the shims, unix sockets, vsock, io_uring, the terminal, other
//!   processes, an inherited socket, /etc, the audit log, a leftover
//!   process; each open with strict mode off, shut under it, and all of
//!   them as nobody (the real npm's postinstall `#[ignore]`d).
//! - `strict`: strict mode from inside the tool's namespace: every escape
//!   past the proxy refused with a row, the transparent relay, DNS, the
//!   subcommand split, the fallback, nesting, signals, as nobody (the fake
//!   tools' network client is `util::net`'s; node and curl escaping their
//!   own way are `#[ignore]`d).
//! - `who`: who acted, with a fake npm whose lifecycle scripts run as
//!   npm's do: a worm's postinstall refused and named, forged names, a
//!   cleared environment, an orphan, a nested namespace, a pinned entry
//!   for the registry's own package only, the project's own script, a
//!   helper, a process outside the invocation; `check` and `audit`.
//! - `who_clients`: who acted, with the real npm, pnpm, yarn 4, bun,
//!   cargo, pip 26, uv and poetry: a worm's install script refused and
//!   named (through the proxy, directly, through a nested npm), the
//!   forging attempts, puppeteer's entry for the registry's puppeteer
//!   only, the project's own postinstall, a build script, a build backend;
//!   plain and strict, npm as nobody too (`#[ignore]`d).
//! - `clients`: the real npm, pip, cargo, curl, aws and kubectl through
//!   install.sh's shims, against the registries this machine reaches
//!   (`#[ignore]`d: `.ci/run` runs them with `cargo test -- --ignored`).
//! - `shells`: interactive bash, zsh and fish with `cli-guard init`'s line
//!   as install.sh --rc writes it: the functions, the prompt hook, doctor;
//!   virtualenvs, nvm-style node directories, child shells, make, Python's
//!   subprocess, uvx, pipx, virtualenv (offline with fake tools in bash;
//!   zsh, fish and the real clients `#[ignore]`d).
//! - `ecosystem`: the other pinned real clients (pnpm, bun, deno, corepack
//!   and yarn 4, uv, poetry, pipx, pdm, hatch, `python -m pip`, go, gem,
//!   bundle, composer, mvn, gradle) in strict mode: a fetch, a denial, and
//!   how each reaches the gate (`#[ignore]`d, installed by `.ci/run`).
//!
//! Every process a test starts is made by `util::command`, which removes
//! the proxy and gate variables this test process may have inherited (when
//! `cargo test` itself runs behind cli-guard's cargo shim, say).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "../util/mod.rs"]
mod util;

mod addresses;
mod audit;
mod chain;
mod clients;
mod demo;
mod dial;
mod dispatch;
mod doors;
mod ecosystem;
mod faults;
mod fetch_run;
mod hostile;
mod install;
mod interpreters;
mod load;
mod operator;
mod policy;
mod proxy;
mod python;
mod record;
mod shells;
mod shim;
mod signals;
mod strict;
mod who;
mod who_clients;
