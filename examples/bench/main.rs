//! The cli-guard benchmark: what the gate costs, side by side with what a
//! user would otherwise have in its place, in one run on one machine.
//!
//! ```sh
//! cargo run --release --example bench                  # the full run (about 70 s)
//! cargo run --release --example bench -- --quick       # a smoke run with small sizes
//! cargo run --release --example bench -- --only scale  # one section
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
//!
//! It prints one table per section, each followed by how much CPU other
//! processes on the machine took meanwhile (from /proc/stat, less this
//! benchmark's own process tree), then a table of the targets (pass/fail),
//! and writes everything as JSON (`--json PATH`, default `target/bench.json`).
//! Every wait is bounded, and every process it starts is killed on the way
//! out (or by `PR_SET_PDEATHSIG` if the benchmark itself is killed).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// The name every gate runs as, and the host its allowlist lets through.
const TOOL: &str = "npm";
const ALLOWED: &str = "registry.npmjs.org:443";
/// The bound on any single network step (connect, a read, a write).
const IO_LIMIT: Duration = Duration::from_secs(10);
/// The bound on a process getting ready (a gate publishing its URL, squid
/// listening) or stopping.
const PROC_LIMIT: Duration = Duration::from_secs(15);
/// Descriptors for the scale section, for the benchmark and the gate alike.
const SCALE_NOFILE: u64 = 65_536;
/// How many new tunnels are being opened at once in the scale section.
const OPEN_PARALLEL: usize = 64;
/// The idle tunnels the RSS target speaks of; fewer held (`--quick`, or a
/// low descriptor limit) are extrapolated to it.
const TARGET_TUNNELS: usize = 10_000;
/// Write size for the throughput section.
const CHUNK: usize = 256 * 1024;
/// Extra start-up runs each, for peak RSS (see `startup`).
const RSS_RUNS: usize = 20;
const MIB: f64 = 1024.0 * 1024.0;
/// The hidden mode in which this executable measures one program's peak RSS.
const PEAK_RSS_ARG: &str = "--peak-rss";

const USAGE: &str = "\
usage: cargo run --release --example bench -- [--quick] [--json PATH] [--only SECTION] [--no-build]

  --quick         small sizes, for a smoke run (64 MiB, 50 start-up runs, 1,000 idle tunnels)
  --json PATH     where to write the results (default: target/bench.json)
  --only SECTION  run one section: startup, throughput, connect, scale or audit
  --no-build      measure target/release/cli-guard as it is (by default, when run
                  through cargo, it is rebuilt first so that a stale binary is never measured)
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(PEAK_RSS_ARG) {
        return match peak_rss_helper(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench {PEAK_RSS_ARG}: {e:#}");
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
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Startup,
        Section::Throughput,
        Section::Connect,
        Section::Scale,
        Section::Audit,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Startup => "startup",
            Section::Throughput => "throughput",
            Section::Connect => "connect",
            Section::Scale => "scale",
            Section::Audit => "audit",
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

// ---------------------------------------------------------------------------
// 1. Start-up

fn startup(b: &Bench) -> Result<Outcome> {
    let dir = b.work.join("startup");
    let real = dir.join("real");
    let shims = dir.join("shims");
    fs::create_dir_all(&real)?;
    fs::create_dir_all(&shims)?;
    let real_tool = real.join(TOOL);
    fs::copy("/bin/true", &real_tool).context("cannot copy /bin/true")?;
    fs::set_permissions(&real_tool, fs::Permissions::from_mode(0o755))?;
    let shim = shims.join(TOOL);
    std::os::unix::fs::symlink(&b.bin, &shim)?;
    let audit = dir.join("audit.jsonl");
    let path_var = format!("{}:{}:/usr/bin:/bin", shims.display(), real.display());
    let command = |program: &Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", &path_var)
            .env("HOME", &dir)
            .env("CLI_GUARD_AUDIT_LOG", &audit)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    };
    let contenders: [(&str, &Path, &[&str]); 3] = [
        ("npm, direct", &real_tool, &[]),
        ("cli-guard --version", &b.bin, &["--version"]),
        ("npm, through the shim", &shim, &[]),
    ];
    let spawner = Spawner::new()?;
    let mut walls: [Vec<Duration>; 3] = Default::default();
    let warmup = b.sizes.startup_warmup;
    for round in 0..warmup + b.sizes.startup_runs {
        // ABC, then CBA: neither goes first (or last) every time.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for i in order {
            let (name, program, args) = contenders[i];
            let run = spawner.run(command(program, args))?;
            ensure!(
                run.status.success(),
                "{name} ({}) exited with {}",
                program.display(),
                run.status
            );
            if round >= warmup {
                walls[i].push(run.wall);
            }
        }
    }
    // Peak RSS, from separate runs: Linux charges the peak of the address
    // space that calls execve(2) to the new program's ru_maxrss, and a
    // posix_spawn'd child execs from its parent's, so spawned from here every
    // child would read at least this benchmark's own peak. A fresh copy of
    // this executable in `--peak-rss` mode, still small, spawns instead; its
    // own peak (the floor of the column) is reported beside.
    let exe = std::env::current_exe()?;
    let mut rss: [Vec<u64>; 3] = Default::default();
    let mut floor = 0;
    for _ in 0..RSS_RUNS {
        for (i, (name, program, args)) in contenders.iter().enumerate() {
            let mut cmd = command(&exe, &[PEAK_RSS_ARG]);
            cmd.arg(program).args(*args);
            let (maxrss, helper) = peak_rss(cmd, &dir).with_context(|| format!("peak RSS of {name}"))?;
            rss[i].push(maxrss);
            floor = floor.max(helper);
        }
    }
    drop(spawner);

    let stats: Vec<Stats> = walls.iter().map(|w| Stats::of(w)).collect();
    let (direct, shim_stats) = (stats[0], stats[2]);
    let added_p50 = shim_stats.p50 - direct.p50;
    let added_p95 = shim_stats.p95 - direct.p95;
    let shim_rss_max = rss[2].iter().copied().max().unwrap_or(0);
    let shim_rss_median = median_u64(&rss[2]);

    let mut t = format!(
        "1. Start-up: {} runs each, interleaved (after {warmup} warm-up runs each)\n",
        b.sizes.startup_runs
    );
    let _ = writeln!(
        t,
        "  {:<24} {:>10} {:>10} {:>10} {:>14}",
        "", "p50", "p95", "mean", "peak RSS (max)"
    );
    for (i, (name, _, _)) in contenders.iter().enumerate() {
        let s = stats[i];
        let peak = rss[i].iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            t,
            "  {:<24} {:>10} {:>10} {:>10} {:>14}",
            name,
            ms(s.p50),
            ms(s.p95),
            ms(s.mean),
            mib(peak as f64 / 1024.0)
        );
    }
    let _ = writeln!(
        t,
        "  {:<24} {:>10} {:>10}",
        "added by the shim",
        format!("+{}", ms(added_p50)),
        format!("+{}", ms(added_p95))
    );
    let _ = writeln!(
        t,
        "  (peak RSS: the largest wait4 ru_maxrss of {RSS_RUNS} more runs each, spawned by a small\n   \
         helper whose own peak, {}, is the floor of that column)",
        mib(floor as f64 / 1024.0)
    );

    let verdicts = vec![
        Verdict::at_most("start-up overhead, median", added_p50 / 1000.0, 1.0, "ms", 3),
        Verdict::at_most("shim peak RSS", shim_rss_max as f64 / 1024.0, 8.0, "MiB", 1),
    ];
    let contender_json: Vec<Value> = contenders
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            json!({
                "name": name,
                "wall_ms": stats[i].json_ms(),
                "maxrss_kib_max": rss[i].iter().copied().max().unwrap_or(0),
                "maxrss_kib_median": median_u64(&rss[i]),
            })
        })
        .collect();
    Ok(Outcome {
        key: "startup",
        table: t,
        json: json!({
            "runs": b.sizes.startup_runs,
            "contenders": contender_json,
            "added_ms": {"p50": added_p50 / 1000.0, "p95": added_p95 / 1000.0},
            "shim_maxrss_kib": {"max": shim_rss_max, "median": shim_rss_median},
            "rss_runs": RSS_RUNS,
            "rss_floor_kib": floor,
        }),
        verdicts,
    })
}

/// One timed run: wall time from spawn to reap.
struct TimedRun {
    wall: Duration,
    status: ExitStatus,
}

/// Spawns and reaps start-up runs on a thread of its own, so the main thread
/// can give up on one that hangs (and kill it) without putting a poll loop
/// inside the timed window. Commands are spawned without `pre_exec`, so std
/// uses posix_spawn, as a shell would use fork+exec: the cheapest way in.
struct Spawner {
    jobs: Option<mpsc::Sender<Command>>,
    results: mpsc::Receiver<io::Result<TimedRun>>,
    current: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    fn new() -> Result<Spawner> {
        let (job_tx, job_rx) = mpsc::channel::<Command>();
        let (result_tx, result_rx) = mpsc::channel();
        let current = Arc::new(AtomicI32::new(0));
        let pid_slot = Arc::clone(&current);
        let thread = thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for mut cmd in job_rx {
                    if result_tx.send(run_timed(&mut cmd, &pid_slot)).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the spawner thread")?;
        Ok(Spawner {
            jobs: Some(job_tx),
            results: result_rx,
            current,
            thread: Some(thread),
        })
    }

    fn run(&self, cmd: Command) -> Result<TimedRun> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        self.jobs
            .as_ref()
            .context("the spawner is stopped")?
            .send(cmd)
            .map_err(|_| anyhow!("the spawner thread is gone"))?;
        match self.results.recv_timeout(PROC_LIMIT) {
            Ok(result) => result.with_context(|| format!("cannot run {program}")),
            Err(_) => {
                let pid = self.current.load(Ordering::SeqCst);
                if pid > 0 {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = self.results.recv_timeout(PROC_LIMIT);
                bail!("{program} did not exit within {PROC_LIMIT:?}: killed it")
            }
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_timed(cmd: &mut Command, current: &AtomicI32) -> io::Result<TimedRun> {
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    current.store(pid, Ordering::SeqCst);
    let waited = wait4(pid);
    let wall = started.elapsed();
    current.store(0, Ordering::SeqCst);
    let (status, _) = waited?;
    Ok(TimedRun {
        wall,
        status: ExitStatus::from_raw(status),
    })
}

/// Reaps `pid` and returns its wait status and resource usage (ru_maxrss is
/// the child's peak RSS, in KiB). std's `Child::wait` does not return
/// resource usage and nix has no wait4, so this is the one raw call.
fn wait4(pid: i32) -> io::Result<(i32, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers and timevals, for which
    // all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only through the two pointers, which point to
        // live locals of exactly the types it expects.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Runs `cmd` (this executable in `--peak-rss` mode) to the end, bounded,
/// and returns the measured program's peak RSS and the helper's own, in KiB.
fn peak_rss(mut cmd: Command, scratch: &Path) -> Result<(u64, u64)> {
    let path = scratch.join("peak-rss.out");
    cmd.stdout(fs::File::create(&path)?);
    let mut proc = Proc::spawn(cmd, "the peak RSS helper", None)?;
    let status = proc.wait(PROC_LIMIT);
    let out = fs::read_to_string(&path);
    let _ = fs::remove_file(&path);
    let status = status?;
    let out = out?;
    ensure!(
        status.success(),
        "the program or the helper failed ({status}): {out}"
    );
    let mut fields = out.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(maxrss)), Some(Ok(helper))) => Ok((maxrss, helper)),
        _ => bail!("unexpected output from the helper: {out:?}"),
    }
}

/// `--peak-rss PROGRAM ARGS...`: spawns the program (stdout to /dev/null),
/// reaps it, and prints its ru_maxrss and this helper's own peak, in KiB.
/// Fails if the program does.
fn peak_rss_helper(mut args: impl Iterator<Item = String>) -> Result<()> {
    let program = args.next().context("--peak-rss needs a program")?;
    let own = proc_status_kib("self", "VmHWM")?;
    let child = Command::new(&program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let (status, usage) = wait4(i32::try_from(child.id())?)?;
    let status = ExitStatus::from_raw(status);
    ensure!(status.success(), "{program} exited with {status}");
    println!("{} {own}", usage.ru_maxrss);
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. One tunnel's throughput

fn throughput(b: &Bench, competitors: &[Competitor]) -> Result<Outcome> {
    let bytes = b.sizes.tunnel_bytes;
    let sink = Sink::start(true)?;
    let gate = Gate::start(
        b,
        "throughput",
        &b.work.join("audit-throughput.jsonl"),
        sink.addr,
        None,
    )?;
    let mut targets = vec![Target::direct(sink.addr), gate.target("cli-guard")];
    targets.extend(competitors.iter().map(|c| c.target(sink.addr)));
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..b.sizes.tunnel_rounds {
        for i in rotated(targets.len(), round) {
            let mbps = transfer(&targets[i], &sink, bytes, &chunk)
                .with_context(|| format!("{} through {}", human_bytes(bytes), targets[i].name))?;
            rates[i].push(mbps);
        }
    }
    gate.stop()?;
    drop(sink);

    let medians: Vec<f64> = rates.iter().map(|r| median_f64(r)).collect();
    let direct = medians[0];
    let ours = medians[1];
    let mut t = format!(
        "2. One tunnel: {} per run, {} runs each, interleaved; median MB/s (10^6 bytes/s)\n",
        human_bytes(bytes),
        b.sizes.tunnel_rounds
    );
    let _ = writeln!(
        t,
        "  {:<24} {:>10} {:>12} {:>22}",
        "", "MB/s", "% of direct", "runs (MB/s)"
    );
    for (i, target) in targets.iter().enumerate() {
        let runs: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            t,
            "  {:<24} {:>10.0} {:>11.1}% {:>22}",
            target.name,
            medians[i],
            100.0 * medians[i] / direct,
            runs.join(" ")
        );
    }
    let mut verdicts = vec![Verdict::at_least(
        "one tunnel vs direct loopback",
        100.0 * ours / direct,
        90.0,
        "%",
        1,
    )];
    for (i, target) in targets.iter().enumerate().skip(2) {
        verdicts.push(Verdict::ratio_at_least(
            format!("one tunnel vs {}", target.name),
            ours,
            medians[i],
            1.0,
            "MB/s",
        ));
    }
    let contenders: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"name": t.name, "mb_per_s": medians[i], "runs_mb_per_s": rates[i]}))
        .collect();
    Ok(Outcome {
        key: "throughput",
        table: t,
        json: json!({
            "bytes": bytes,
            "contenders": contenders,
            "cli_guard_percent_of_direct": 100.0 * ours / direct,
        }),
        verdicts,
    })
}

/// Sends `bytes` through one tunnel (or straight to the sink) and returns
/// MB/s, from the first byte written to the sink's EOF.
fn transfer(target: &Target, sink: &Sink, bytes: u64, chunk: &[u8]) -> Result<f64> {
    while sink.reports.try_recv().is_ok() {}
    let (mut stream, _) = open_std(target)?;
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        stream.write_all(&chunk[..n]).context("writing")?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let (got, ended) = sink
        .reports
        .recv_timeout(Duration::from_secs(120))
        .context("the sink never saw the end of the stream")?;
    ensure!(got == bytes, "the sink got {got} bytes of {bytes}");
    let secs = ended.saturating_duration_since(started).as_secs_f64();
    Ok(bytes as f64 / secs.max(1e-9) / 1e6)
}

// ---------------------------------------------------------------------------
// 3 and 5. CONNECT handling, and what the audit log costs

/// One contender's measurements in the connect section.
struct ConnectResult {
    name: String,
    latency: Stats,
    cycles: u64,
    failed: u64,
    first_error: Option<String>,
    seconds: f64,
}

impl ConnectResult {
    fn rate(&self) -> f64 {
        self.cycles as f64 / self.seconds.max(1e-9)
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "time_to_200_ms": self.latency.json_ms(),
            "cycles_per_s": self.rate(),
            "cycles": self.cycles,
            "failed": self.failed,
            "first_error": self.first_error,
            "seconds": self.seconds,
        })
    }
}

fn connect_section(
    b: &Bench,
    competitors: &[Competitor],
    connect: bool,
    audit: bool,
) -> Result<(Option<Outcome>, Option<Outcome>)> {
    let sink = Sink::start(false)?;
    let mut gates = vec![Gate::start(
        b,
        "audit-file",
        &b.work.join("audit-connect.jsonl"),
        sink.addr,
        None,
    )?];
    let mut targets = vec![gates[0].target("cli-guard")];
    if audit {
        gates.push(Gate::start(
            b,
            "audit-null",
            Path::new("/dev/null"),
            sink.addr,
            None,
        )?);
        targets.push(gates[1].target("cli-guard, audit /dev/null"));
    }
    if connect {
        targets.extend(competitors.iter().map(|c| c.target(sink.addr)));
    }
    let s = &b.sizes;

    // Time to 200: sequential requests, in rounds.
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let rounds = s.latency_requests.div_ceil(s.latency_round);
    for round in 0..rounds {
        for i in rotated(targets.len(), round) {
            for _ in 0..s.latency_round {
                let (stream, took) = open_std(&targets[i])?;
                drop(stream);
                latencies[i].push(took);
            }
        }
    }

    // CONNECT+close cycles per second, 64 clients at once, in rounds.
    let mut rates: Vec<(u64, u64, f64, Option<String>)> = vec![(0, 0, 0.0, None); targets.len()];
    for round in 0..s.rate_rounds {
        for i in rotated(targets.len(), round) {
            let target = Arc::new(targets[i].clone());
            let r = b.rt.block_on(rate_round(target, s.rate_clients, s.rate_round))?;
            let acc = &mut rates[i];
            acc.0 += r.cycles;
            acc.1 += r.failed;
            acc.2 += r.seconds;
            if acc.3.is_none() {
                acc.3 = r.first_error;
            }
            // Let the closes of this round drain before the next contender.
            thread::sleep(Duration::from_millis(300));
        }
    }
    for gate in gates {
        gate.stop()?;
    }
    drop(sink);

    let results: Vec<ConnectResult> = targets
        .iter()
        .zip(latencies.iter().zip(rates))
        .map(
            |(t, (lat, (cycles, failed, seconds, first_error)))| ConnectResult {
                name: t.name.clone(),
                latency: Stats::of(lat),
                cycles,
                failed,
                first_error,
                seconds,
            },
        )
        .collect();
    let header = |title: String| {
        let mut t = title;
        let _ = writeln!(
            t,
            "  {:<28} {:>10} {:>10} {:>10} {:>12} {:>8}",
            "", "p50", "p99", "max", "cycles/s", "failed"
        );
        t
    };
    let row = |t: &mut String, r: &ConnectResult| {
        let _ = writeln!(
            t,
            "  {:<28} {:>10} {:>10} {:>10} {:>12.0} {:>8}",
            r.name,
            ms(r.latency.p50),
            ms(r.latency.p99),
            ms(r.latency.max),
            r.rate(),
            r.failed
        );
    };
    let rate_secs = s.rate_round.as_secs_f64() * s.rate_rounds as f64;
    let mut errors = String::new();
    for r in &results {
        if let Some(e) = &r.first_error {
            let _ = writeln!(errors, "  {} failed {} cycles; the first: {e}", r.name, r.failed);
        }
    }

    let ours = &results[0];
    let connect_out = connect.then(|| {
        let mut t = header(format!(
            "3. CONNECT handling: time from connect to 200 over {} sequential requests each; \
             CONNECT+close cycles/s with {} clients over {rate_secs:.0} s each; interleaved\n",
            s.latency_requests, s.rate_clients
        ));
        let shown: Vec<&ConnectResult> = results.iter().filter(|r| !r.name.contains("/dev/null")).collect();
        for r in &shown {
            row(&mut t, r);
        }
        t.push_str(&errors);
        let mut verdicts = vec![Verdict::at_most(
            "p99 time to 200",
            ours.latency.p99 / 1000.0,
            1.0,
            "ms",
            3,
        )];
        for r in shown.iter().skip(1) {
            verdicts.push(Verdict::ratio_at_least(
                format!("CONNECT rate vs {}", r.name),
                ours.rate(),
                r.rate(),
                2.0,
                "/s",
            ));
        }
        Outcome {
            key: "connect",
            table: t,
            json: json!({
                "clients": s.rate_clients,
                "contenders": shown.iter().map(|r| r.json()).collect::<Vec<_>>(),
            }),
            verdicts,
        }
    });
    let audit_out = audit.then(|| {
        let devnull = &results[1];
        let mut t = header(format!(
            "5. Audit cost: section 3 for cli-guard, audit log on a file vs on /dev/null ({} requests, {rate_secs:.0} s each)\n",
            s.latency_requests
        ));
        row(&mut t, ours);
        row(&mut t, devnull);
        let cost_p50 = ours.latency.p50 - devnull.latency.p50;
        let cost_rate = 100.0 * (1.0 - ours.rate() / devnull.rate().max(1e-9));
        let _ = writeln!(
            t,
            "  {:<28} {:>10}  and {cost_rate:.1}% of the CONNECT rate",
            "cost of the log file",
            format!("{:+.3} ms", cost_p50 / 1000.0),
        );
        Outcome {
            key: "audit",
            table: t,
            json: json!({
                "file": ours.json(),
                "dev_null": devnull.json(),
                "p50_cost_ms": cost_p50 / 1000.0,
                "p99_cost_ms": (ours.latency.p99 - devnull.latency.p99) / 1000.0,
                "rate_cost_percent": cost_rate,
            }),
            verdicts: Vec::new(),
        }
    });
    Ok((connect_out, audit_out))
}

struct RateRound {
    cycles: u64,
    failed: u64,
    seconds: f64,
    first_error: Option<String>,
}

/// `clients` tasks, each doing CONNECT, read the 200, close, until the time
/// is up. The round ends when every task has finished its last cycle.
async fn rate_round(target: Arc<Target>, clients: usize, duration: Duration) -> Result<RateRound> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let target = Arc::clone(&target);
        set.spawn(async move {
            let (mut ok, mut failed, mut first_error) = (0u64, 0u64, None);
            while tokio::time::Instant::now() < deadline {
                match tokio::time::timeout(IO_LIMIT, open_async(&target)).await {
                    Ok(Ok(stream)) => {
                        drop(stream);
                        ok += 1;
                    }
                    Ok(Err(e)) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| format!("no answer within {IO_LIMIT:?}"));
                    }
                }
            }
            (ok, failed, first_error)
        });
    }
    let mut round = RateRound {
        cycles: 0,
        failed: 0,
        seconds: 0.0,
        first_error: None,
    };
    while let Some(joined) = set.join_next().await {
        let (ok, failed, first_error) = joined.context("a client task failed")?;
        round.cycles += ok;
        round.failed += failed;
        if round.first_error.is_none() {
            round.first_error = first_error;
        }
    }
    round.seconds = started.elapsed().as_secs_f64();
    Ok(round)
}

// ---------------------------------------------------------------------------
// 4. Scale

fn scale(b: &Bench) -> Result<Outcome> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let nofile = raise_nofile(hard);
    let outcome = scale_inner(b, nofile);
    if let Ok((_, hard_now)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard_now);
    }
    outcome
}

/// Raises this process's descriptor limit to [`SCALE_NOFILE`] (the hard one
/// too, which takes CAP_SYS_RESOURCE), or failing that the soft one to the
/// hard one. Returns the soft limit now in force.
fn raise_nofile(hard: u64) -> u64 {
    if setrlimit(Resource::RLIMIT_NOFILE, SCALE_NOFILE, SCALE_NOFILE.max(hard)).is_ok() {
        return SCALE_NOFILE;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

fn scale_inner(b: &Bench, nofile: u64) -> Result<Outcome> {
    let wanted = TARGET_TUNNELS;
    let nofile_usize = usize::try_from(nofile).unwrap_or(usize::MAX);
    // The gate's own cap (src/proxy.rs: connection_cap_for). Keep a few
    // slots free for the new requests, whose slots are released only once
    // their teardown is done. The benchmark holds both ends of each tunnel
    // (the client and the sink side), so it needs two descriptors a tunnel too.
    let gate_cap = cli_guard::proxy::connection_cap_for(nofile);
    let n = b
        .sizes
        .idle_tunnels
        .min(gate_cap.saturating_sub(8))
        .min(nofile_usize.saturating_sub(128) / 2);
    ensure!(n > 0, "RLIMIT_NOFILE {nofile} leaves no room for idle tunnels");
    if n < b.sizes.idle_tunnels {
        eprintln!(
            "bench: scale: holding {n} tunnels, not {}: RLIMIT_NOFILE is {nofile} here \
             (the hard limit; raising it takes CAP_SYS_RESOURCE), so the gate's cap is {gate_cap}",
            b.sizes.idle_tunnels
        );
    }
    let sink = Sink::start(false)?;
    let gate = Gate::start(
        b,
        "scale",
        &b.work.join("audit-scale.jsonl"),
        sink.addr,
        Some(nofile),
    )?;
    let target = Arc::new(gate.target("cli-guard"));
    let idle_rss = proc_status_kib(gate.pid(), "VmRSS")?;
    let idle_fds = fd_count(gate.pid())?;

    let opening = Instant::now();
    let held = b.rt.block_on(open_many(Arc::clone(&target), n, OPEN_PARALLEL))?;
    let open_secs = opening.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(500));
    let rss = proc_status_kib(gate.pid(), "VmRSS")?;
    let hwm = proc_status_kib(gate.pid(), "VmHWM")?;
    let fds = fd_count(gate.pid())?;
    let mut probes = Vec::with_capacity(b.sizes.idle_probes);
    for _ in 0..b.sizes.idle_probes {
        let (stream, took) = open_std(&target)?;
        drop(stream);
        probes.push(took);
    }
    b.rt.block_on(async move { drop(held) });
    gate.stop()?;
    drop(sink);

    let probe = Stats::of(&probes);
    let per_tunnel = (rss.saturating_sub(idle_rss)) as f64 / n as f64;
    // What `wanted` tunnels would take, when fewer could be held here.
    let rss_wanted = idle_rss as f64 + per_tunnel * wanted as f64;
    let mut t = format!("4. Scale: {n} idle tunnels held open through one gate");
    if n < b.sizes.idle_tunnels {
        let _ = write!(
            t,
            " (not {}: RLIMIT_NOFILE is {nofile} here, so the gate's cap is {gate_cap})",
            b.sizes.idle_tunnels
        );
    }
    t.push('\n');
    let _ = writeln!(
        t,
        "  gate RSS          {} idle, {} with the tunnels open ({:.1} KiB per tunnel; peak {})",
        mib(idle_rss as f64 / 1024.0),
        mib(rss as f64 / 1024.0),
        per_tunnel,
        mib(hwm as f64 / 1024.0)
    );
    if n < wanted {
        let _ = writeln!(
            t,
            "  at {wanted} tunnels   {} (extrapolated: idle + {wanted} x per tunnel)",
            mib(rss_wanted / 1024.0)
        );
    }
    let _ = writeln!(
        t,
        "  gate descriptors  {idle_fds} idle, {fds} with the tunnels open"
    );
    let _ = writeln!(
        t,
        "  opening them      {open_secs:.2} s ({:.0} tunnels/s, {OPEN_PARALLEL} at a time)",
        n as f64 / open_secs.max(1e-9)
    );
    let _ = writeln!(
        t,
        "  new CONNECT meanwhile, time to 200 over {} requests: p50 {}, p99 {}, max {}",
        probe.n,
        ms(probe.p50),
        ms(probe.p99),
        ms(probe.max)
    );
    let rss_what = if n < wanted {
        format!("gate RSS, {wanted} idle tunnels (extrapolated)")
    } else {
        format!("gate RSS, {wanted} idle tunnels")
    };
    let verdicts = vec![
        Verdict::at_most(rss_what, rss_wanted / 1024.0, 100.0, "MiB", 1),
        Verdict::at_most(
            "new request while they are held, p99",
            probe.p99 / 1000.0,
            10.0,
            "ms",
            3,
        ),
    ];
    Ok(Outcome {
        key: "scale",
        table: t,
        json: json!({
            "tunnels_wanted": wanted,
            "tunnels_held": n,
            "rlimit_nofile": nofile,
            "gate_connection_cap": gate_cap,
            "rss_kib_idle": idle_rss,
            "rss_kib_held": rss,
            "rss_kib_at_wanted": rss_wanted,
            "hwm_kib": hwm,
            "kib_per_tunnel": per_tunnel,
            "fds_idle": idle_fds,
            "fds_held": fds,
            "open_seconds": open_secs,
            "new_connect_ms": probe.json_ms(),
        }),
        verdicts,
    })
}

/// Opens `n` tunnels, `parallel` at a time, and returns them, all open.
async fn open_many(target: Arc<Target>, n: usize, parallel: usize) -> Result<Vec<tokio::net::TcpStream>> {
    let mut held = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while held.len() < n {
        while started < n && set.len() < parallel {
            let target = Arc::clone(&target);
            set.spawn(async move { tokio::time::timeout(IO_LIMIT, open_async(&target)).await });
            started += 1;
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined.context("an opening task failed")? {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => return Err(e.context(format!("opening tunnel {} of {n}", held.len() + 1))),
            Err(_) => bail!(
                "opening tunnel {} of {n}: no answer within {IO_LIMIT:?}",
                held.len() + 1
            ),
        }
    }
    Ok(held)
}

/// A `kB` field of /proc/PID/status (`pid` may be `self`).
fn proc_status_kib(pid: impl std::fmt::Display, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn fd_count(pid: i32) -> Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

// ---------------------------------------------------------------------------
// Clients

/// Where a client connects and what it asks there (`None`: nothing, a
/// direct connection to the sink).
#[derive(Debug, Clone)]
struct Target {
    name: String,
    dial: SocketAddr,
    request: Option<Vec<u8>>,
}

impl Target {
    fn direct(sink: SocketAddr) -> Target {
        Target {
            name: "direct loopback TCP".into(),
            dial: sink,
            request: None,
        }
    }
}

/// Connects and, through a proxy, asks for the tunnel and reads the 200.
/// Returns the open stream and the time from connect to the 200.
fn open_std(target: &Target) -> Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target.dial, IO_LIMIT)
        .with_context(|| format!("connecting to {}", target.name))?;
    stream.set_read_timeout(Some(IO_LIMIT))?;
    stream.set_write_timeout(Some(IO_LIMIT))?;
    if let Some(request) = &target.request {
        stream.write_all(request)?;
        let mut head = Vec::with_capacity(128);
        let mut chunk = [0u8; 512];
        let status = loop {
            if let Some(status) = head_status(&head)? {
                break status;
            }
            let n = stream
                .read(&mut chunk)
                .with_context(|| format!("waiting for {}'s answer", target.name))?;
            ensure!(n > 0, "{} closed without answering", target.name);
            head.extend_from_slice(&chunk[..n]);
        };
        ensure!(status == 200, "{} answered {status}", target.name);
    }
    Ok((stream, started.elapsed()))
}

async fn open_async(target: &Target) -> Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(target.dial).await?;
    if let Some(request) = &target.request {
        stream.write_all(request).await?;
        let mut head = Vec::with_capacity(128);
        let mut chunk = [0u8; 512];
        let status = loop {
            if let Some(status) = head_status(&head)? {
                break status;
            }
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "{} closed without answering", target.name);
            head.extend_from_slice(&chunk[..n]);
        };
        ensure!(status == 200, "{} answered {status}", target.name);
    }
    Ok(stream)
}

/// The status of a complete response head, `None` while it is incomplete.
fn head_status(head: &[u8]) -> Result<Option<u16>> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        ensure!(head.len() < 16 * 1024, "a response head over 16 KiB");
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    Ok(Some(status))
}

/// The order of the contenders in round `round`: rotated, so that each goes
/// first as often as the others.
fn rotated(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n).collect()
}

// ---------------------------------------------------------------------------
// The sink: the loopback "upstream" every tunnel ends at

thread_local! {
    /// One read buffer for every connection of the sink's thread: tasks run
    /// one at a time there, so 10,000 idle connections cost no buffers.
    static SINK_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// Accepts on 127.0.0.1, reads and discards until EOF, then closes. Runs on
/// a thread (and a runtime) of its own. With `report`, each connection's
/// byte count and EOF time are sent on `reports`.
struct Sink {
    addr: SocketAddr,
    reports: mpsc::Receiver<(u64, Instant)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(report: bool) -> Result<Sink> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (report_tx, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(sink_loop(addr_tx, stop_rx, report.then_some(report_tx)));
            })
            .context("cannot start the sink thread")?;
        let mut sink = Sink {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reports,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        sink.addr = addr_rx
            .recv_timeout(PROC_LIMIT)
            .context("the sink did not start")?
            .context("the sink cannot listen")?;
        Ok(sink)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn sink_loop(
    addr_tx: mpsc::Sender<io::Result<SocketAddr>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    report: Option<mpsc::Sender<(u64, Instant)>>,
) {
    let bound = tokio::net::TcpSocket::new_v4().and_then(|socket| {
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.listen(4096)
    });
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    if addr_tx.send(listener.local_addr()).is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(drain(stream, report.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

async fn drain(stream: tokio::net::TcpStream, report: Option<mpsc::Sender<(u64, Instant)>>) {
    let mut total = 0u64;
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let read = SINK_BUF.with(|buf| stream.try_read(&mut buf.borrow_mut()[..]));
        match read {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    if let Some(report) = report {
        let _ = report.send((total, Instant::now()));
    }
}

// ---------------------------------------------------------------------------
// Processes: the gate, squid, tinyproxy

/// A child process that is killed (and reaped) when dropped, and killed by
/// the kernel if the benchmark dies first.
struct Proc {
    name: String,
    child: Child,
    done: Option<ExitStatus>,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str, nofile: Option<u64>) -> Result<Proc> {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: prctl(2), getppid(2) and
        // setrlimit(2) are plain system calls, and the errors are built from
        // a raw errno without allocating. std's pre_exec hook, the only place
        // to make them, is unsafe by signature.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // The benchmark may have died between fork and prctl.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from(nix::errno::Errno::ESRCH));
                }
                if let Some(n) = nofile {
                    setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            done: None,
        })
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Fails if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.done = Some(status);
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }

    /// Waits for the process to exit on its own, for at most `limit`; kills
    /// it after that.
    fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if self.done.is_none() {
                self.done = self.child.try_wait()?;
            }
            if let Some(status) = self.done {
                return Ok(status);
            }
            if Instant::now() >= until {
                self.kill();
                bail!("{} did not exit within {limit:?}: killed it", self.name);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if self.done.is_none() {
            let _ = self.child.kill();
            self.done = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.done.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// The guarded "tool": it publishes the proxy URL it was given ($1) and
/// waits for the stop file ($2) (an hour at most).
const HOLDER: &str = r#"#!/bin/sh
printf '%s\n' "$HTTPS_PROXY" > "$1.tmp" && mv "$1.tmp" "$1" || exit 1
i=0
while [ ! -e "$2" ] && [ "$i" -lt 72000 ]; do
    sleep 0.05
    i=$((i + 1))
done
"#;

fn write_holder(work: &Path) -> Result<PathBuf> {
    let path = work.join("holder.sh");
    fs::write(&path, HOLDER)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// One guarded invocation, `cli-guard run --as npm -- holder.sh`, held open
/// until `stop`.
struct Gate {
    proc: Proc,
    proxy: SocketAddr,
    authorization: String,
    stop_file: PathBuf,
}

impl Gate {
    fn start(
        b: &Bench,
        label: &str,
        audit_log: &Path,
        sink: SocketAddr,
        nofile: Option<u64>,
    ) -> Result<Gate> {
        let dir = b.work.join(format!("gate-{label}"));
        fs::create_dir_all(&dir)?;
        let url_file = dir.join("proxy-url");
        let stop_file = dir.join("stop");
        let mut cmd = Command::new(&b.bin);
        cmd.args(["run", "--as", TOOL, "--"])
            .arg(&b.holder)
            .arg(&url_file)
            .arg(&stop_file)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &dir)
            .env("CLI_GUARD_AUDIT_LOG", audit_log)
            .env("CLI_GUARD_RESOLVE", format!("{ALLOWED}={sink}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn(cmd, &format!("cli-guard ({label})"), nofile)?;
        let until = Instant::now() + PROC_LIMIT;
        let url = loop {
            if let Ok(url) = fs::read_to_string(&url_file) {
                break url;
            }
            proc.check_alive()?;
            ensure!(
                Instant::now() < until,
                "the guarded holder did not start within {PROC_LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        };
        let (userinfo, hostport) = url
            .trim()
            .strip_prefix("http://")
            .and_then(|rest| rest.rsplit_once('@'))
            .with_context(|| format!("unexpected proxy URL {url:?}"))?;
        Ok(Gate {
            proc,
            proxy: hostport
                .parse()
                .with_context(|| format!("unexpected proxy address in {url:?}"))?,
            authorization: format!("Basic {}", cli_guard::upstream::base64(userinfo.as_bytes())),
            stop_file,
        })
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    fn target(&self, name: &str) -> Target {
        Target {
            name: name.into(),
            dial: self.proxy,
            request: Some(
                format!(
                    "CONNECT {ALLOWED} HTTP/1.1\r\nHost: {ALLOWED}\r\nProxy-Authorization: {}\r\n\r\n",
                    self.authorization
                )
                .into_bytes(),
            ),
        }
    }

    /// Tells the holder to exit and waits for the gate to finish.
    fn stop(mut self) -> Result<()> {
        fs::write(&self.stop_file, b"")?;
        let status = self.proc.wait(PROC_LIMIT)?;
        ensure!(status.success(), "{} exited with {status}", self.proc.name);
        Ok(())
    }
}

/// squid or tinyproxy, started in the foreground on 127.0.0.1.
struct Competitor {
    name: &'static str,
    proc: Proc,
    addr: SocketAddr,
}

impl Competitor {
    /// squid: cache off, an access log line per request (as cli-guard writes
    /// an audit row), no CONNECT port restriction. It runs as the `proxy`
    /// user from the start (squid refuses to serve as root and would switch
    /// itself, which would clear the parent-death signal).
    fn squid(work: &Path) -> Result<Competitor> {
        let dir = work.join("squid");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        let port = free_port()?;
        let d = dir.display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             http_access allow all\n\
             cache deny all\n\
             cache_mem 0 MB\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             coredump_dir {d}\n\
             visible_hostname cli-guard-bench\n\
             dns_nameservers 127.0.0.1\n\
             pinger_enable off\n\
             icp_port 0\n\
             htcp_port 0\n\
             shutdown_lifetime 0 seconds\n"
        );
        let conf_path = dir.join("squid.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("/usr/sbin/squid");
        cmd.arg("-N").arg("-f").arg(&conf_path);
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("proxy")?
                .or(nix::unistd::User::from_name("nobody")?)
                .context("no unprivileged user to run squid as")?;
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        Competitor::start("squid", cmd, port, &dir.join("cache.log"))
    }

    /// tinyproxy: a log line per connection, no CONNECT port restriction.
    fn tinyproxy(work: &Path) -> Result<Competitor> {
        let dir = work.join("tinyproxy");
        fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let d = dir.display();
        let conf = format!(
            "Port {port}\n\
             Listen 127.0.0.1\n\
             Timeout 600\n\
             MaxClients 1024\n\
             LogFile \"{d}/tinyproxy.log\"\n\
             LogLevel Connect\n\
             PidFile \"{d}/tinyproxy.pid\"\n\
             Allow 127.0.0.1\n\
             DisableViaHeader Yes\n"
        );
        let conf_path = dir.join("tinyproxy.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("/usr/bin/tinyproxy");
        cmd.arg("-d").arg("-c").arg(&conf_path);
        Competitor::start("tinyproxy", cmd, port, &dir.join("tinyproxy.log"))
    }

    fn start(name: &'static str, mut cmd: Command, port: u16, log: &Path) -> Result<Competitor> {
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn(cmd, name, None)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + PROC_LIMIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                break;
            }
            let tail = || {
                let text = fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().rev().take(5).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            proc.check_alive()
                .with_context(|| format!("{}:\n{}", log.display(), tail()))?;
            if Instant::now() >= until {
                bail!(
                    "{name} is not listening on {addr} after {PROC_LIMIT:?}; {}:\n{}",
                    log.display(),
                    tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Competitor { name, proc, addr })
    }

    fn target(&self, sink: SocketAddr) -> Target {
        Target {
            name: self.name.into(),
            dial: self.addr,
            request: Some(format!("CONNECT {sink} HTTP/1.1\r\nHost: {sink}\r\n\r\n").into_bytes()),
        }
    }
}

impl Drop for Competitor {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

/// A port that was free a moment ago, for a server that must be told its
/// port in its config.
fn free_port() -> Result<u16> {
    Ok(StdListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
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

// ---------------------------------------------------------------------------
// Statistics and reporting

/// Summary of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let n = us.len();
        if n == 0 {
            return Stats::default();
        }
        // Nearest rank.
        let pct = |q: f64| us[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            n,
            p50: pct(0.50),
            p95: pct(0.95),
            p99: pct(0.99),
            max: us[n - 1],
            mean: us.iter().sum::<f64>() / n as f64,
        }
    }

    fn json_ms(&self) -> Value {
        json!({
            "n": self.n,
            "p50": self.p50 / 1000.0,
            "p95": self.p95 / 1000.0,
            "p99": self.p99 / 1000.0,
            "max": self.max / 1000.0,
            "mean": self.mean / 1000.0,
        })
    }
}

fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_u64(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Microseconds as milliseconds, for tables.
fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// One target from the issue, judged.
struct Verdict {
    what: String,
    target: String,
    measured: String,
    pass: bool,
    margin: String,
}

impl Verdict {
    fn at_most(what: impl Into<String>, value: f64, limit: f64, unit: &str, digits: usize) -> Verdict {
        let pass = value <= limit;
        let margin = if pass {
            format!("{:.digits$} {unit} to spare", limit - value)
        } else {
            format!("{:.digits$} {unit} over ({:.2}x)", value - limit, value / limit)
        };
        Verdict {
            what: what.into(),
            target: format!("<= {limit} {unit}"),
            measured: format!("{value:.digits$} {unit}"),
            pass,
            margin,
        }
    }

    fn at_least(what: impl Into<String>, value: f64, limit: f64, unit: &str, digits: usize) -> Verdict {
        let pass = value >= limit;
        let margin = if pass {
            format!("{:.digits$} {unit} to spare", value - limit)
        } else {
            format!("{:.digits$} {unit} short", limit - value)
        };
        Verdict {
            what: what.into(),
            target: format!(">= {limit} {unit}"),
            measured: format!("{value:.digits$} {unit}"),
            pass,
            margin,
        }
    }

    /// `ours` at least `factor` times `theirs`.
    fn ratio_at_least(what: impl Into<String>, ours: f64, theirs: f64, factor: f64, unit: &str) -> Verdict {
        let ratio = ours / theirs.max(1e-9);
        let pass = ratio >= factor;
        let margin = if pass {
            format!("{ratio:.2}x")
        } else {
            format!("{ratio:.2}x: needs {:.0}% more", 100.0 * (factor / ratio - 1.0))
        };
        Verdict {
            what: what.into(),
            target: if factor == 1.0 {
                "ahead".into()
            } else {
                format!(">= {factor}x")
            },
            measured: format!("{ours:.0} vs {theirs:.0} {unit}"),
            pass,
            margin,
        }
    }

    fn json(&self) -> Value {
        json!({
            "what": self.what,
            "target": self.target,
            "measured": self.measured,
            "pass": self.pass,
            "margin": self.margin,
        })
    }
}

fn targets_table(verdicts: &[&Verdict]) -> String {
    let mut t = String::from("Targets\n");
    let _ = writeln!(
        t,
        "  {:<46} {:>10} {:>26}  {:<6} margin",
        "", "target", "measured", "result"
    );
    for v in verdicts {
        let _ = writeln!(
            t,
            "  {:<46} {:>10} {:>26}  {:<6} {}",
            v.what,
            v.target,
            v.measured,
            if v.pass { "PASS" } else { "FAIL" },
            v.margin
        );
    }
    let passed = verdicts.iter().filter(|v| v.pass).count();
    let _ = writeln!(t, "  {passed} of {} targets met", verdicts.len());
    t
}

// ---------------------------------------------------------------------------
// Other work on the machine

/// CPU time, in seconds, used by the whole machine and by this benchmark's
/// own process tree (itself, its reaped descendants, and its live ones).
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    busy: f64,
    steal: f64,
    ours: f64,
}

/// What other processes (and the hypervisor) took while a section ran.
#[derive(Debug, Clone, Copy)]
struct Interference {
    seconds: f64,
    cores: f64,
    /// CPU-seconds used by processes outside this benchmark's tree.
    others: f64,
    /// CPU-seconds the hypervisor gave to other guests.
    steal: f64,
}

impl CpuSnapshot {
    fn take() -> CpuSnapshot {
        let ticks = clock_ticks();
        let (busy, steal) = machine_ticks();
        CpuSnapshot {
            at: Instant::now(),
            busy: busy / ticks,
            steal: steal / ticks,
            ours: own_tree_seconds(ticks),
        }
    }

    fn since(&self, before: &CpuSnapshot) -> Interference {
        Interference {
            seconds: self.at.duration_since(before.at).as_secs_f64(),
            cores: thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            others: ((self.busy - before.busy) - (self.ours - before.ours)).max(0.0),
            steal: (self.steal - before.steal).max(0.0),
        }
    }
}

impl Interference {
    fn percent(&self, cpu_seconds: f64) -> f64 {
        100.0 * cpu_seconds / (self.seconds * self.cores).max(1e-9)
    }

    fn describe(&self) -> String {
        format!(
            "other processes used {:.1}% of the machine's CPU over these {:.1} s; steal {:.1}%",
            self.percent(self.others),
            self.seconds,
            self.percent(self.steal)
        )
    }

    fn json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "others_cpu_percent": self.percent(self.others),
            "steal_percent": self.percent(self.steal),
        })
    }
}

/// USER_HZ, the unit of /proc/stat and /proc/PID/stat.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it has no
    // preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Busy (user, nice, system, irq, softirq) and steal ticks of all CPUs.
fn machine_ticks() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    (get(0) + get(1) + get(2) + get(5) + get(6), get(7))
}

/// CPU seconds of this process and every descendant, reaped or alive.
fn own_tree_seconds(ticks: f64) -> f64 {
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let mut total = 0.0;
    for who in [
        nix::sys::resource::UsageWho::RUSAGE_SELF,
        nix::sys::resource::UsageWho::RUSAGE_CHILDREN,
    ] {
        if let Ok(usage) = nix::sys::resource::getrusage(who) {
            total += tv(usage.user_time()) + tv(usage.system_time());
        }
    }
    // Live descendants: their own time and that of the children they reaped.
    let me = std::process::id();
    let mut procs: Vec<(u32, u32, f64)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which may hold spaces: state is
        // field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let ppid = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        procs.push((pid, ppid, (num(14) + num(15) + num(16) + num(17)) / ticks));
    }
    let mut tree = vec![me];
    let mut i = 0;
    while let Some(&parent) = tree.get(i) {
        for &(pid, ppid, cpu) in &procs {
            if ppid == parent && pid != me {
                tree.push(pid);
                total += cpu;
            }
        }
        i += 1;
    }
    total
}

// ---------------------------------------------------------------------------
// The machine

fn describe_machine(bin: &Path) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown")
        .to_string();
    let mem_kib = proc_meminfo_kib("MemTotal").unwrap_or(0);
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    // The checkout the binary was built from: cargo says, or else it is the
    // one holding target/release/cli-guard.
    let repo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| bin.ancestors().nth(3).map(Path::to_path_buf));
    let git = repo
        .as_deref()
        .map(|dir| {
            first_line(
                "git",
                &["-C", &dir.to_string_lossy(), "describe", "--always", "--dirty"],
            )
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpu": cpu,
        "cores": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": mem_kib as f64 / MIB,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": first_line("rustc", &["-V"]),
        "cli_guard": first_line(&bin.to_string_lossy(), &["--version"]),
        "commit": git,
        "squid": first_line("/usr/sbin/squid", &["-v"]),
        "tinyproxy": first_line("/usr/bin/tinyproxy", &["-v"]),
    })
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows
/// in every number here, interleaving or not.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn proc_meminfo_kib(field: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn machine_line(m: &Value) -> String {
    let s = |k: &str| m[k].as_str().unwrap_or("unknown").to_string();
    format!(
        "machine: {} x{}, {:.1} GiB, Linux {}; {}; {} at {}; {}; {}",
        s("cpu"),
        m["cores"],
        m["memory_gib"].as_f64().unwrap_or(0.0),
        s("kernel"),
        s("rustc"),
        s("cli_guard"),
        s("commit"),
        s("squid"),
        s("tinyproxy")
    )
}
