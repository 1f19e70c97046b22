//! Section 8, shipping: what sending every row to a syslog collector as it
//! is written costs the tool. The collector is a loopback sink (it reads
//! and discards, acknowledging at TCP as any collector does):
//! - start-up of a trivial `npm` (a copy of /bin/true) through the shim:
//!   not shipped, vs shipped to the loopback collector, vs shipped while
//!   the collector is down (a closed port: the rows go to the spool and a
//!   drainer is started), vs shipped over TLS to a collector that never
//!   answers the handshake (the shim waits out the bound, 100 ms, then
//!   leaves the rows in the spool); interleaved as in section 1, each with
//!   a log and spool of its own;
//! - the time from connect to 200 of sequential CONNECTs through a gate
//!   that ships its rows vs one that does not, interleaved in rounds.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};

use crate::client::{rotated, times_to_200};
use crate::gate::Gate;
use crate::report::{ms, Verdict};
use crate::sink::Sink;
use crate::startup::{ShimDir, Spawner};
use crate::stats::Stats;
use crate::{Bench, Outcome};

/// The bound src/ship/shipper.rs states: the most shipping adds to a
/// tool's exit.
const BOUND_MS: f64 = 100.0;
/// What shipping to a collector that answers may add to start-up.
const SHIPPED_STARTUP_MS: f64 = 1.0;
/// What it may add while the collector is down: the rows go to the spool
/// and the shim starts a drainer (a process) on its way out.
const DOWN_STARTUP_MS: f64 = 2.0;
/// Section 3's target, held with shipping on.
const P99_TO_200_MS: f64 = 1.0;

pub(crate) fn ship(b: &Bench) -> Result<Outcome> {
    let s = &b.sizes;
    let collector = Sink::start(false)?;
    let silent = Sink::start(false)?;
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let contenders: [(&str, Option<String>); 4] = [
        ("not shipped", None),
        ("shipped, collector up", Some(format!("tcp://{}", collector.addr))),
        ("shipped, collector down", Some(format!("tcp://127.0.0.1:{down}"))),
        (
            "shipped, collector silent (TLS)",
            Some(format!("tls://{}", silent.addr)),
        ),
    ];
    let dirs = contenders
        .iter()
        .enumerate()
        .map(|(i, _)| ShimDir::create(b, &format!("ship-{i}")))
        .collect::<Result<Vec<_>>>()?;
    let spawner = Spawner::new()?;
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    let warmup = s.startup_warmup;
    // Fewer runs than section 1: the silent collector's take 100 ms each.
    let runs = (s.startup_runs / 3).max(20);
    for round in 0..warmup + runs {
        for i in rotated(contenders.len(), round) {
            let (name, ship) = &contenders[i];
            let mut cmd = dirs[i].command(&dirs[i].shim, &[], "off");
            if let Some(ship) = ship {
                cmd.env("CLI_GUARD_SHIP", ship);
            }
            let run = spawner.run(cmd)?;
            ensure!(
                run.status.success(),
                "{name}: the shim exited with {}",
                run.status
            );
            if round >= warmup {
                walls[i].push(run.wall);
            }
        }
    }
    drop(spawner);
    let stats: Vec<Stats> = walls.iter().map(|w| Stats::of(w)).collect();
    let spooled: Vec<u64> = dirs.iter().map(|d| spooled_rows(&d.audit)).collect();

    let mut t = format!(
        "8. Shipping rows to a syslog collector (RFC 5424 over TCP, octet-counted): start-up of\n   \
         `npm` through the shim, {runs} runs each, interleaved (after {warmup} warm-up runs each)\n"
    );
    let _ = writeln!(
        t,
        "  {:<34} {:>10} {:>10} {:>10} {:>12} {:>18}",
        "", "p50", "p95", "max", "added p50", "rows left spooled"
    );
    for (i, (name, _)) in contenders.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {:<34} {:>10} {:>10} {:>10} {:>12} {:>18}",
            name,
            ms(stats[i].p50),
            ms(stats[i].p95),
            ms(stats[i].max),
            format!("+{}", ms(stats[i].p50 - stats[0].p50)),
            spooled[i]
        );
    }

    // CONNECT rows: a gate that ships them vs one that does not.
    let sink = Sink::start(false)?;
    let plain = Gate::start(b, "ship-off", &b.work.join("ship-off.jsonl"), sink.addr, None)?;
    let shipped = Gate::start_with(
        b,
        "ship-on",
        &b.work.join("ship-on.jsonl"),
        sink.addr,
        &[("CLI_GUARD_SHIP", format!("tcp://{}", collector.addr))],
    )?;
    let targets = [
        plain.target("not shipped"),
        shipped.target("shipped, collector up"),
    ];
    let latencies = times_to_200(&targets, s.latency_requests, s.latency_round)?;
    plain.stop()?;
    shipped.stop()?;
    let connect: Vec<Stats> = latencies.iter().map(|l| Stats::of(l)).collect();
    let _ = writeln!(
        t,
        "  time from connect to 200, {} sequential CONNECTs each (a row each), interleaved:",
        s.latency_requests
    );
    let _ = writeln!(t, "  {:<34} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    for (target, st) in targets.iter().zip(&connect) {
        let _ = writeln!(
            t,
            "  {:<34} {:>10} {:>10} {:>10}",
            target.name,
            ms(st.p50),
            ms(st.p99),
            ms(st.max)
        );
    }

    let added = |i: usize| (stats[i].p50 - stats[0].p50) / 1000.0;
    let verdicts = vec![
        Verdict::at_most(
            "shipping's start-up cost, collector up, median",
            added(1),
            SHIPPED_STARTUP_MS,
            "ms",
            3,
        ),
        Verdict::at_most(
            "shipping's start-up cost, collector down, median",
            added(2),
            DOWN_STARTUP_MS,
            "ms",
            3,
        ),
        Verdict::at_most(
            "exit delay, collector that never answers, max",
            (stats[3].max - stats[0].p50) / 1000.0,
            BOUND_MS + 20.0,
            "ms",
            1,
        ),
        Verdict::at_most(
            "p99 time to 200, rows shipped",
            connect[1].p99 / 1000.0,
            P99_TO_200_MS,
            "ms",
            3,
        ),
    ];
    let contender_json: Vec<Value> = contenders
        .iter()
        .enumerate()
        .map(|(i, (name, _))| json!({"name": name, "wall_ms": stats[i].json_ms(), "rows_left_spooled": spooled[i]}))
        .collect();
    Ok(Outcome {
        key: "ship",
        table: t,
        json: json!({
            "runs": runs,
            "bound_ms": BOUND_MS,
            "startup": contender_json,
            "time_to_200_ms": {
                "not_shipped": connect[0].json_ms(),
                "shipped": connect[1].json_ms(),
            },
        }),
        verdicts,
    })
}

/// How many rows wait in the spool beside `log` (lines after the header's
/// `delivered` offset).
fn spooled_rows(log: &Path) -> u64 {
    let mut name = log.as_os_str().to_owned();
    name.push(".spool");
    let Ok(data) = std::fs::read(&name) else {
        return 0;
    };
    let delivered = std::str::from_utf8(data.get(..74).unwrap_or_default())
        .ok()
        .and_then(|h| h.split("delivered=").nth(1))
        .and_then(|rest| rest.get(..20))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(74);
    data.get(delivered..)
        .map_or(0, |rest| rest.iter().filter(|b| **b == b'\n').count() as u64)
}
