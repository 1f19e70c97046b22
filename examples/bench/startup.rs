//! Section 1, start-up: a trivial real `npm` (a copy of /bin/true) run
//! directly, vs through the shim, vs `cli-guard --version`: wall time from
//! spawn to reap, and peak RSS from separate runs spawned by this executable
//! in its `--peak-rss` mode (see `startup` for why). The shim runs the plain
//! proxy (`CLI_GUARD_STRICT=off`; section 6 measures strict mode), and
//! section 6 starts its own trivial `npm` through the same [`ShimDir`] and
//! [`Spawner`].

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::procs::{proc_status_kib, Proc};
use crate::report::{mib, ms, Verdict};
use crate::stats::{median_u64, Stats};
use crate::{Bench, Outcome, PROC_LIMIT, TOOL};

/// Extra start-up runs each, for peak RSS (see `startup`).
const RSS_RUNS: usize = 20;

/// The hidden mode in which this executable measures one program's peak RSS.
pub(crate) const PEAK_RSS_ARG: &str = "--peak-rss";

/// A trivial real `npm` (a copy of /bin/true) and a shim symlink
/// `npm -> cli-guard` in front of it on PATH, with an audit log of their own.
pub(crate) struct ShimDir {
    dir: PathBuf,
    pub(crate) real_tool: PathBuf,
    pub(crate) shim: PathBuf,
    pub(crate) audit: PathBuf,
    path_var: String,
}

impl ShimDir {
    pub(crate) fn create(b: &Bench, name: &str) -> Result<ShimDir> {
        let dir = b.work.join(name);
        let real = dir.join("real");
        let shims = dir.join("shims");
        fs::create_dir_all(&real)?;
        fs::create_dir_all(&shims)?;
        let real_tool = real.join(TOOL);
        fs::copy("/bin/true", &real_tool).context("cannot copy /bin/true")?;
        fs::set_permissions(&real_tool, fs::Permissions::from_mode(0o755))?;
        let shim = shims.join(TOOL);
        std::os::unix::fs::symlink(&b.bin, &shim)?;
        Ok(ShimDir {
            audit: dir.join("audit.jsonl"),
            path_var: format!("{}:{}:/usr/bin:/bin", shims.display(), real.display()),
            dir,
            real_tool,
            shim,
        })
    }

    /// `program args` in a clean environment with the shims first on PATH
    /// and `CLI_GUARD_STRICT` set to `strict`.
    pub(crate) fn command(&self, program: &Path, args: &[&str], strict: &str) -> Command {
        self.command_with_layers(program, args, strict, None)
    }

    /// [`ShimDir::command`], with strict mode's layers limited to `layers`
    /// (`CLI_GUARD_STRICT_LAYERS`; `None`: every layer).
    pub(crate) fn command_with_layers(
        &self,
        program: &Path,
        args: &[&str],
        strict: &str,
        layers: Option<&str>,
    ) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path_var)
            .env("HOME", &self.dir)
            .env("CLI_GUARD_AUDIT_LOG", &self.audit)
            .env("CLI_GUARD_STRICT", strict)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(layers) = layers {
            cmd.env("CLI_GUARD_STRICT_LAYERS", layers);
        }
        cmd
    }
}

pub(crate) fn startup(b: &Bench) -> Result<Outcome> {
    let shims = ShimDir::create(b, "startup")?;
    let dir = &shims.dir;
    let (real_tool, shim) = (&shims.real_tool, &shims.shim);
    // The plain shim: bare `npm` names no subcommand, which strict mode
    // would isolate (enforced, failing safe); section 6 measures that.
    let command = |program: &Path, args: &[&str]| shims.command(program, args, "off");
    let contenders: [(&str, &Path, &[&str]); 3] = [
        ("npm, direct", real_tool, &[]),
        ("cli-guard --version", &b.bin, &["--version"]),
        ("npm, through the shim", shim, &[]),
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
            let (maxrss, helper) = peak_rss(cmd, dir).with_context(|| format!("peak RSS of {name}"))?;
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
pub(crate) struct TimedRun {
    pub(crate) wall: Duration,
    pub(crate) status: ExitStatus,
}

/// Spawns and reaps start-up runs on a thread of its own, so the main thread
/// can give up on one that hangs (and kill it) without putting a poll loop
/// inside the timed window. Commands are spawned without `pre_exec`, so std
/// uses posix_spawn, as a shell would use fork+exec: the cheapest way in.
pub(crate) struct Spawner {
    jobs: Option<mpsc::Sender<Command>>,
    results: mpsc::Receiver<io::Result<TimedRun>>,
    current: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    pub(crate) fn new() -> Result<Spawner> {
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

    pub(crate) fn run(&self, cmd: Command) -> Result<TimedRun> {
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
pub(crate) fn peak_rss_helper(mut args: impl Iterator<Item = String>) -> Result<()> {
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
