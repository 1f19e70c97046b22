//! Section 4, scale: many idle tunnels held open through one gate, its RSS
//! and descriptors meanwhile, and the time to 200 of new requests; what
//! cannot be held under this machine's descriptor limit is extrapolated.

use std::fmt::Write as _;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::json;
use tokio::task::JoinSet;

use crate::client::{open_async, open_std, Target};
use crate::gate::Gate;
use crate::procs::{fd_count, proc_status_kib};
use crate::report::{mib, ms, Verdict};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::{Bench, Outcome, IO_LIMIT};

/// Descriptors for the scale section, for the benchmark and the gate alike.
const SCALE_NOFILE: u64 = 65_536;
/// How many new tunnels are being opened at once in the scale section.
const OPEN_PARALLEL: usize = 64;
/// The idle tunnels the RSS target speaks of; fewer held (`--quick`, or a
/// low descriptor limit) are extrapolated to it.
const TARGET_TUNNELS: usize = 10_000;

pub(crate) fn scale(b: &Bench) -> Result<Outcome> {
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
    // The gate's own cap (src/gate/listener.rs: connection_cap_for). Keep a few
    // slots free for the new requests, whose slots are released only once
    // their teardown is done. The benchmark holds both ends of each tunnel
    // (the client and the sink side), so it needs two descriptors a tunnel too.
    let gate_cap = cli_guard::connection_cap_for(nofile);
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
