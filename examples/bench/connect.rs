//! Sections 3 and 5, CONNECT handling and what the audit log costs: time
//! to 200 of sequential requests, and CONNECT+close cycles per second with
//! many clients at once, for cli-guard vs squid vs tinyproxy (section 3) and
//! for cli-guard with its audit log on a file vs on /dev/null (section 5).
//! Both sections come out of one pass, so their cli-guard rows are the same
//! measurements.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::client::{open_async, rotated, times_to_200, Target};
use crate::gate::Gate;
use crate::proxies::Competitor;
use crate::report::{ms, Verdict};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::{Bench, Outcome, IO_LIMIT};

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

pub(crate) fn connect_section(
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
    let latencies = times_to_200(&targets, s.latency_requests, s.latency_round)?;

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
