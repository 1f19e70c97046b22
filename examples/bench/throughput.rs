//! Section 2, one tunnel's throughput: 1 GiB (64 MiB with `--quick`) to
//! the sink, direct loopback TCP vs cli-guard vs squid vs tinyproxy.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::client::{open_std, rotated, write_all_then_shutdown, Target};
use crate::gate::Gate;
use crate::proxies::Competitor;
use crate::report::{human_bytes, Verdict};
use crate::sink::Sink;
use crate::stats::median_f64;
use crate::{Bench, Outcome};

/// Write size for the throughput section.
const CHUNK: usize = 256 * 1024;

pub(crate) fn throughput(b: &Bench, competitors: &[Competitor]) -> Result<Outcome> {
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
    write_all_then_shutdown(&mut stream, bytes, chunk)?;
    let (got, ended) = sink
        .reports
        .recv_timeout(Duration::from_secs(120))
        .context("the sink never saw the end of the stream")?;
    ensure!(got == bytes, "the sink got {got} bytes of {bytes}");
    let secs = ended.saturating_duration_since(started).as_secs_f64();
    Ok(bytes as f64 / secs.max(1e-9) / 1e6)
}
