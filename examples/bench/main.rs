//! The cli-guard benchmark: what the gate costs, side by side with what a
//! user would otherwise have in its place, in one run on one machine.
//!
//! ```sh
//! cargo run --release --example bench                  # the full run (about 100 s)
//! cargo run --release --example bench -- --quick       # a smoke run with small sizes
//! cargo run --release --example bench -- --only scale  # one section
//! cargo run --release --example bench -- --only strict # strict mode beside the plain proxy
//! ```
//!
//! It drives the real release binary, `target/release/cli-guard` (found next
//! to this example's own directory, and rebuilt first when run through
//! cargo), the way a user would: through a shim symlink for start-up, and
//! for everything else through `cli-guard run --as npm -- holder.sh`, where
//! the holder is a small sh script that publishes the proxy URL it was given
//! and waits for a stop file. Requests carry that invocation's credential and
//! ask for `registry.npmjs.org:443`, which `CLI_GUARD_RESOLVE` points at a
//! loopback sink (a thread here that reads and discards). squid and tinyproxy
//! are started with configs written to a temp dir, listening on 127.0.0.1
//! only, and get `CONNECT 127.0.0.1:SINK`. Everything stays on loopback.
//! Sections 1 to 5 run the plain proxy (`CLI_GUARD_STRICT=off`: their clients
//! are on the host, and a strict gate's listener is inside the tool's
//! network namespace); section 6 sets strict mode beside it.
//!
//! Sections (`--only NAME`), each interleaving its contenders round by round
//! so that machine drift falls on all of them alike:
//! 1. `startup`: a trivial real `npm` (a copy of /bin/true) run directly, vs
//!    through the shim, vs `cli-guard --version` (the cost of exec'ing the
//!    binary at all): wall time from spawn to reap; peak RSS from wait4's
//!    ru_maxrss in separate runs, spawned by a small helper process (Linux
//!    charges the exec'ing address space's peak to the new program).
//! 2. `throughput`: one tunnel carrying 1 GiB to the sink: direct loopback
//!    TCP vs cli-guard vs squid vs tinyproxy.
//! 3. `connect`: time from TCP connect to `200 Connection established`
//!    (sequential requests), and CONNECT+close cycles per second with 64
//!    concurrent clients over a fixed time: cli-guard vs squid vs tinyproxy.
//! 4. `scale`: 10,000 idle tunnels held open through one gate: its RSS and
//!    descriptors, and the time to 200 of new requests meanwhile. The gate
//!    caps connections at (RLIMIT_NOFILE - 128) / 2; where the hard limit
//!    cannot be raised that far, it holds what fits and extrapolates.
//! 5. `audit`: section 3's measurements for cli-guard with its audit log on a
//!    real file vs on /dev/null (rows still built, never stored).
//! 6. `strict`: strict mode (`CLI_GUARD_STRICT=require`) vs the plain proxy
//!    (`off`): start-up of `npm install`, direct vs plain shim vs strict
//!    shim, then 500 strict start-ups in a row (first vs last 50); one
//!    tunnel's throughput and the time to 200 from a client run as the tool
//!    (this executable in its hidden `--guarded-client` mode, so that under
//!    the strict gate it connects from inside the namespace): the plain
//!    gate's host listener vs the in-namespace listener vs, for throughput,
//!    the transparent path (a plain connect to the pool address the
//!    namespace's DNS gave for registry.npmjs.org).
//! 7. `hook`: the prompt hook `cli-guard init` installs, in bash, zsh and
//!    fish (those installed): one evaluation when the shims already lead
//!    PATH, and when a virtualenv's `bin` was put in front of them.
//! 8. `ship`: rows shipped to a loopback syslog collector (a sink) vs not:
//!    start-up through the shim with the collector up, down, and silent
//!    (a TLS collector that never answers: the bound on the exit's wait),
//!    and the time to 200 of CONNECTs whose rows are shipped.
//!
//! It prints one table per section, each followed by how much CPU other
//! processes on the machine took meanwhile (from /proc/stat, less this
//! benchmark's own process tree), then a table of the targets (pass/fail),
//! and writes everything as JSON (`--json PATH`, default `target/bench.json`).
//! Every wait is bounded, and every process it starts is killed on the way
//! out (or by `PR_SET_PDEATHSIG` if the benchmark itself is killed).
//!
//! Layout (each file's top comment says more):
//! - `main.rs`: this comment, the arguments and sizes, and the driver that
//!   runs the sections in turn, prints their tables and writes the JSON.
//! - `startup.rs`: section 1, and the hidden `--peak-rss` helper mode; the
//!   shim directory and the start-up spawner, which section 6 uses too.
//! - `throughput.rs`: section 2.
//! - `connect.rs`: sections 3 and 5, which share one pass of measurements.
//! - `scale.rs`: section 4.
//! - `strict.rs`: section 6.
//! - `hook.rs`: section 7.
//! - `ship.rs`: section 8.
//! - `guarded.rs`: the hidden `--guarded-client` mode (the client run as the
//!   tool under a gate, answering commands on stdin) and the benchmark's
//!   handle on it.
//! - `client.rs`: what a client dials and asks (`Target`), opening a tunnel
//!   (blocking and async), and the order of the contenders in each round.
//! - `sink.rs`: the loopback "upstream" every tunnel ends at.
//! - `gate.rs`: one guarded invocation of cli-guard, held open by the holder.
//! - `proxies.rs`: squid and tinyproxy, configured and started.
//! - `procs.rs`: child processes that die with the benchmark, and /proc/PID.
//! - `stats.rs`: percentiles and medians.
//! - `report.rs`: number formats for the tables, the targets and their table.
//! - `interference.rs`: the CPU other processes (and the hypervisor) took.
//! - `machine.rs`: the machine line at the top and its JSON.

mod client;
mod connect;
mod gate;
mod guarded;
mod hook;
mod interference;
mod machine;
mod procs;
mod proxies;
mod report;
mod scale;
mod ship;
mod sink;
mod startup;
mod stats;
mod strict;
mod throughput;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use connect::connect_section;
use gate::write_holder;
use guarded::{client_mode, CLIENT_ARG};
use hook::hook;
use interference::{CpuSnapshot, Interference};
use machine::{describe_machine, load_average, machine_line};
use proxies::Competitor;
use report::{targets_table, Verdict};
use scale::scale;
use ship::ship;
use startup::{peak_rss_helper, startup, PEAK_RSS_ARG};
use strict::strict;
use throughput::throughput;

/// The name every gate runs as, and the host its allowlist lets through.
const TOOL: &str = "npm";
const ALLOWED: &str = "registry.npmjs.org:443";
/// The bound on any single network step (connect, a read, a write).
const IO_LIMIT: Duration = Duration::from_secs(10);
/// The bound on a process getting ready (a gate publishing its URL, squid
/// listening) or stopping.
const PROC_LIMIT: Duration = Duration::from_secs(15);

const USAGE: &str = "\
usage: cargo run --release --example bench -- [--quick] [--json PATH] [--only SECTION] [--no-build]

  --quick         small sizes, for a smoke run (64 MiB, 50 start-up runs, 1,000 idle tunnels,
                  100 strict start-ups in a row, 1,000 hook calls)
  --json PATH     where to write the results (default: target/bench.json)
  --only SECTION  run one section: startup, throughput, connect, scale, audit, strict, hook or ship
  --no-build      measure target/release/cli-guard as it is (by default, when run
                  through cargo, it is rebuilt first so that a stale binary is never measured)
";

/// A hidden mode of this executable, given the arguments after its flag.
type HelperMode = fn(std::iter::Skip<std::env::Args>) -> Result<()>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let helper: Option<(&str, HelperMode)> = match args.next().as_deref() {
        Some(PEAK_RSS_ARG) => Some((PEAK_RSS_ARG, peak_rss_helper)),
        Some(CLIENT_ARG) => Some((CLIENT_ARG, client_mode)),
        _ => None,
    };
    if let Some((mode, helper)) = helper {
        return match helper(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench {mode}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Options and sizes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Startup,
    Throughput,
    Connect,
    Scale,
    Audit,
    Strict,
    Hook,
    Ship,
}

impl Section {
    const ALL: [Section; 8] = [
        Section::Startup,
        Section::Throughput,
        Section::Connect,
        Section::Scale,
        Section::Audit,
        Section::Strict,
        Section::Hook,
        Section::Ship,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Startup => "startup",
            Section::Throughput => "throughput",
            Section::Connect => "connect",
            Section::Scale => "scale",
            Section::Audit => "audit",
            Section::Strict => "strict",
            Section::Hook => "hook",
            Section::Ship => "ship",
        }
    }
}

struct Options {
    quick: bool,
    json: Option<PathBuf>,
    only: Option<Section>,
    build: bool,
}

impl Options {
    /// `None` when only help was asked for.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>> {
        let mut opts = Options {
            quick: false,
            json: None,
            only: None,
            build: true,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--no-build" => opts.build = false,
                "--json" => {
                    let path = args.next().context("--json needs a path")?;
                    opts.json = Some(PathBuf::from(path));
                }
                "--only" => {
                    let name = args.next().context("--only needs a section name")?;
                    let section = Section::ALL
                        .into_iter()
                        .find(|s| s.name() == name)
                        .with_context(|| format!("unknown section {name:?}\n{USAGE}"))?;
                    opts.only = Some(section);
                }
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(Some(opts))
    }

    fn wants(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

#[derive(Debug, Clone)]
struct Sizes {
    startup_runs: usize,
    startup_warmup: usize,
    tunnel_bytes: u64,
    tunnel_rounds: usize,
    latency_requests: usize,
    latency_round: usize,
    rate_clients: usize,
    rate_rounds: usize,
    rate_round: Duration,
    idle_tunnels: usize,
    idle_probes: usize,
    strict_chain_runs: usize,
    strict_chain_block: usize,
    hook_calls: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                startup_runs: 50,
                startup_warmup: 5,
                tunnel_bytes: 64 << 20,
                tunnel_rounds: 3,
                latency_requests: 200,
                latency_round: 50,
                rate_clients: 64,
                rate_rounds: 2,
                rate_round: Duration::from_millis(500),
                idle_tunnels: 1_000,
                idle_probes: 50,
                strict_chain_runs: 100,
                strict_chain_block: 20,
                hook_calls: 1_000,
            }
        } else {
            Sizes {
                startup_runs: 300,
                startup_warmup: 20,
                tunnel_bytes: 1 << 30,
                tunnel_rounds: 5,
                latency_requests: 2_000,
                latency_round: 100,
                rate_clients: 64,
                rate_rounds: 5,
                rate_round: Duration::from_secs(1),
                idle_tunnels: 10_000,
                idle_probes: 200,
                strict_chain_runs: 500,
                strict_chain_block: 50,
                hook_calls: 10_000,
            }
        }
    }

    fn json(&self) -> Value {
        json!({
            "startup_runs": self.startup_runs,
            "startup_warmup": self.startup_warmup,
            "tunnel_bytes": self.tunnel_bytes,
            "tunnel_rounds": self.tunnel_rounds,
            "latency_requests": self.latency_requests,
            "rate_clients": self.rate_clients,
            "rate_seconds": self.rate_round.as_secs_f64() * self.rate_rounds as f64,
            "idle_tunnels": self.idle_tunnels,
            "idle_probes": self.idle_probes,
            "strict_in_a_row": self.strict_chain_runs,
            "strict_in_a_row_block": self.strict_chain_block,
            "hook_calls": self.hook_calls,
        })
    }
}

// ---------------------------------------------------------------------------
// The run

/// What every section needs.
struct Bench {
    bin: PathBuf,
    work: PathBuf,
    holder: PathBuf,
    sizes: Sizes,
    rt: tokio::runtime::Runtime,
}

/// One section's outcome: its table, its JSON, and its targets.
struct Outcome {
    key: &'static str,
    table: String,
    json: Value,
    verdicts: Vec<Verdict>,
}

fn run() -> Result<()> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        print!("{USAGE}");
        return Ok(());
    };
    if cfg!(debug_assertions) {
        bail!("build the benchmark in release mode: cargo run --release --example bench");
    }
    let exe = std::env::current_exe().context("where is this benchmark's executable?")?;
    // target/release/examples/bench: the binary is target/release/cli-guard.
    let release_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the benchmark is not in a cargo target directory")?
        .to_path_buf();
    let bin = release_dir.join("cli-guard");
    if opts.build {
        build_gate()?;
    }
    ensure!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    let json_path = match &opts.json {
        Some(path) => path.clone(),
        None => release_dir
            .parent()
            .context("the benchmark is not in a cargo target directory")?
            .join("bench.json"),
    };

    // Declared before everything that runs inside it, so dropped last.
    let work = Workdir::create()?;
    let bench = Bench {
        bin,
        holder: write_holder(work.path())?,
        work: work.path().to_path_buf(),
        sizes: Sizes::new(opts.quick),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the benchmark's runtime")?,
    };
    let machine = describe_machine(&bench.bin);
    let load_start = load_average();
    println!(
        "cli-guard benchmark{}",
        if opts.quick { " (--quick)" } else { "" }
    );
    println!("{}", machine_line(&machine));
    println!("load average at the start: {load_start}\n");

    let whole_run = CpuSnapshot::take();
    let mut others = Vec::new();
    let mut outcomes = Vec::new();
    if opts.wants(Section::Startup) {
        outcomes.push(timed("startup", &mut others, || startup(&bench))?);
    }
    let competitors = if opts.wants(Section::Throughput) || opts.wants(Section::Connect) {
        vec![
            Competitor::squid(&bench.work).context("cannot start squid")?,
            Competitor::tinyproxy(&bench.work).context("cannot start tinyproxy")?,
        ]
    } else {
        Vec::new()
    };
    if opts.wants(Section::Throughput) {
        outcomes.push(timed("throughput", &mut others, || {
            throughput(&bench, &competitors)
        })?);
    }
    if opts.wants(Section::Connect) || opts.wants(Section::Audit) {
        let (connect, audit) = timed("connect", &mut others, || {
            connect_section(
                &bench,
                &competitors,
                opts.wants(Section::Connect),
                opts.wants(Section::Audit),
            )
        })?;
        outcomes.extend(connect);
        outcomes.extend(audit);
    }
    drop(competitors);
    if opts.wants(Section::Scale) {
        outcomes.push(timed("scale", &mut others, || scale(&bench))?);
    }
    if opts.wants(Section::Strict) {
        outcomes.push(timed("strict", &mut others, || strict(&bench))?);
    }
    if opts.wants(Section::Hook) {
        outcomes.push(timed("hook", &mut others, || hook(&bench))?);
    }
    if opts.wants(Section::Ship) {
        outcomes.push(timed("ship", &mut others, || ship(&bench))?);
    }

    let verdicts: Vec<&Verdict> = outcomes.iter().flat_map(|o| &o.verdicts).collect();
    println!("{}", targets_table(&verdicts));
    let interference = CpuSnapshot::take().since(&whole_run);
    println!("Over the whole run, {}", interference.describe());
    let mut doc = json!({
        "machine": machine,
        "load_average_at_start": load_start,
        "other_processes": {
            "whole_run": interference.json(),
            "sections": others.iter().map(|(name, i)| json!({"section": name, "cpu": i.json()})).collect::<Vec<_>>(),
        },
        "quick": opts.quick,
        "sizes": bench.sizes.json(),
        "targets": verdicts.iter().map(|v| v.json()).collect::<Vec<_>>(),
    });
    for outcome in &outcomes {
        doc[outcome.key] = outcome.json.clone();
    }
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

/// Runs one section, printing its table as soon as it is done, followed by
/// how much of the machine other processes took meanwhile.
fn timed<T: Tables>(
    name: &'static str,
    others: &mut Vec<(&'static str, Interference)>,
    section: impl FnOnce() -> Result<T>,
) -> Result<T> {
    eprintln!("bench: {name} ...");
    let before = CpuSnapshot::take();
    let out = section().with_context(|| format!("section {name}"))?;
    let interference = CpuSnapshot::take().since(&before);
    for table in out.tables() {
        println!("{table}");
    }
    println!("  ({})\n", interference.describe());
    eprintln!("bench: {name} took {:.1} s", interference.seconds);
    others.push((name, interference));
    Ok(out)
}

trait Tables {
    fn tables(&self) -> Vec<&str>;
}

impl Tables for Outcome {
    fn tables(&self) -> Vec<&str> {
        vec![self.table.as_str()]
    }
}

impl Tables for (Option<Outcome>, Option<Outcome>) {
    fn tables(&self) -> Vec<&str> {
        [&self.0, &self.1]
            .into_iter()
            .flatten()
            .map(|o| o.table.as_str())
            .collect()
    }
}

/// Rebuilds the gate when run through cargo, so a stale binary is never
/// measured (`cargo run --example` builds the example, not the binary).
fn build_gate() -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "--bin", "cli-guard"]);
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        cmd.current_dir(dir);
    }
    let status = cmd.status().context("cannot run cargo build")?;
    ensure!(status.success(), "cargo build --release failed ({status})");
    Ok(())
}

/// A private directory for one run, removed at the end.
struct Workdir(PathBuf);

impl Workdir {
    fn create() -> Result<Workdir> {
        // A run that was killed leaves its folder behind: remove those whose
        // process is gone.
        if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let stale = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("cli-guard-bench-"))
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if stale {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let path = std::env::temp_dir().join(format!("cli-guard-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        // 0755: squid runs as another user and must reach its own folder.
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Workdir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
