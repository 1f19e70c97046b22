//! Section 6, strict mode: the tool in a network namespace of its own
//! (`CLI_GUARD_STRICT=require`, so a kernel that refuses fails the run
//! instead of quietly measuring the plain proxy) against the plain proxy
//! (`CLI_GUARD_STRICT=off`), each measured the same way on both sides:
//! - start-up of `npm install` (a copy of /bin/true), direct vs the plain
//!   shim vs the strict shim, interleaved as in section 1; then that many
//!   strict start-ups in a row (500 in the full run), whose first and last
//!   blocks show whether tearing namespaces down makes later ones slower;
//! - one tunnel's throughput and the time from connect to 200, from the
//!   guarded client (`guarded.rs`: this executable run as the tool, so that
//!   under the strict gate it connects from inside the namespace): through
//!   the plain gate's host listener, through the in-namespace listener
//!   (127.0.0.1:3128 there), and, for throughput, through the transparent
//!   path (a plain connect to the pool address the namespace's DNS gave
//!   for registry.npmjs.org, mapped back and dialled by the gate). The
//!   same client's direct connection to the sink, from the host, is the
//!   reference row.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::client::rotated;
use crate::guarded::{isolation_counts, GuardedClient};
use crate::report::{human_bytes, ms, Verdict};
use crate::sink::Sink;
use crate::startup::{ShimDir, Spawner};
use crate::stats::{median_f64, Stats};
use crate::{Bench, Outcome, ALLOWED};

/// The targets for strict mode.
const STARTUP_OVER_DIRECT_MS: f64 = 2.5;
const TUNNEL_OF_PLAIN_PERCENT: f64 = 95.0;
/// Section 3's target, held to the in-namespace listener too.
const P99_TO_200_MS: f64 = 1.0;
/// How much slower the last block of strict start-ups in a row may be than
/// the first before it counts as growth.
const CHAIN_GROWTH_PERCENT: f64 = 10.0;

pub(crate) fn strict(b: &Bench) -> Result<Outcome> {
    let s = &b.sizes;
    let mut t = String::from(
        "6. Strict mode: the tool in a network namespace of its own (CLI_GUARD_STRICT=require)\n   \
         vs the plain proxy (CLI_GUARD_STRICT=off)\n",
    );
    let mut verdicts = Vec::new();
    let mut doc = serde_json::Map::new();

    // --- Start-up, interleaved, then a chain of strict ones.
    let shims = ShimDir::create(b, "strict-startup")?;
    let args: &[&str] = &["install"];
    // The strict rows differ only in the layers beyond the network
    // namespace (CLI_GUARD_STRICT_LAYERS), so each layer's share shows.
    let contenders: [(&str, &std::path::Path, &str, Option<&str>); 7] = [
        ("npm install, direct", &shims.real_tool, "off", None),
        ("through the shim, plain", &shims.shim, "off", None),
        (
            "strict, network namespace only",
            &shims.shim,
            "require",
            Some("none"),
        ),
        ("strict, + mounts", &shims.shim, "require", Some("mounts")),
        ("strict, + pid", &shims.shim, "require", Some("pid")),
        ("strict, + seccomp", &shims.shim, "require", Some("seccomp")),
        (
            "through the shim, strict (every layer)",
            &shims.shim,
            "require",
            None,
        ),
    ];
    const STRICT_ALL: usize = 6;
    let spawner = Spawner::new()?;
    let mut walls: [Vec<Duration>; 7] = Default::default();
    let warmup = s.startup_warmup;
    for round in 0..warmup + s.startup_runs {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, program, strict, layers) = contenders[i];
            let run = spawner.run(shims.command_with_layers(program, args, strict, layers))?;
            ensure!(run.status.success(), "{name} exited with {}", run.status);
            if round >= warmup {
                walls[i].push(run.wall);
            }
        }
    }
    let mut chain = Vec::with_capacity(s.strict_chain_runs);
    for _ in 0..s.strict_chain_runs {
        let run = spawner.run(shims.command(&shims.shim, args, "require"))?;
        ensure!(
            run.status.success(),
            "a strict start-up in a row exited with {}",
            run.status
        );
        chain.push(run.wall);
    }
    drop(spawner);
    let (netns, none) = isolation_counts(&shims.audit)?;
    let strict_runs = 5 * (warmup + s.startup_runs) + s.strict_chain_runs;
    ensure!(
        netns == strict_runs && none == warmup + s.startup_runs,
        "the start-up log has {netns} isolated and {none} plain invocations, \
         expected {strict_runs} and {}",
        warmup + s.startup_runs
    );

    let stats: Vec<Stats> = walls.iter().map(|w| Stats::of(w)).collect();
    let (direct, plain, strict) = (stats[0], stats[1], stats[STRICT_ALL]);
    let network_only = stats[2];
    let _ = writeln!(
        t,
        "  Start-up of `npm install` (a copy of /bin/true): {} runs each, interleaved (after {warmup} warm-up runs each)",
        s.startup_runs
    );
    let _ = writeln!(t, "  {:<38} {:>10} {:>10} {:>10}", "", "p50", "p95", "mean");
    for (i, (name, _, _, _)) in contenders.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {:<38} {:>10} {:>10} {:>10}",
            name,
            ms(stats[i].p50),
            ms(stats[i].p95),
            ms(stats[i].mean)
        );
    }
    let added = |t: &mut String, name: &str, a: Stats, b: Stats| {
        let _ = writeln!(
            t,
            "  {:<38} {:>10} {:>10}",
            name,
            format!("{:+.3} ms", (a.p50 - b.p50) / 1000.0),
            format!("{:+.3} ms", (a.p95 - b.p95) / 1000.0)
        );
    };
    added(&mut t, "added by the plain shim", plain, direct);
    added(&mut t, "network namespace (only) over plain", network_only, plain);
    for (i, layer) in [(3, "mounts"), (4, "pid"), (5, "seccomp")] {
        added(
            &mut t,
            &format!("layer {layer} (over the namespace only)"),
            stats[i],
            network_only,
        );
    }
    added(&mut t, "added by strict mode (strict - plain)", strict, plain);
    added(&mut t, "strict shim over direct (the target)", strict, direct);
    let over_direct_ms = (strict.p50 - direct.p50) / 1000.0;
    verdicts.push(Verdict::at_most(
        "strict start-up over direct, median",
        over_direct_ms,
        STARTUP_OVER_DIRECT_MS,
        "ms",
        3,
    ));

    let block = s.strict_chain_block.min(chain.len() / 2).max(1);
    let blocks: Vec<Stats> = chain.chunks(block).map(Stats::of).collect();
    let first = Stats::of(&chain[..block]);
    let last = Stats::of(&chain[chain.len() - block..]);
    let growth = 100.0 * (last.p50 / first.p50.max(1e-9) - 1.0);
    let _ = writeln!(
        t,
        "\n  {} strict start-ups in a row: median of each {block}, in order (ms)",
        chain.len()
    );
    let medians: Vec<String> = blocks.iter().map(|s| format!("{:.3}", s.p50 / 1000.0)).collect();
    let _ = writeln!(t, "    {}", medians.join(" "));
    let _ = writeln!(
        t,
        "  first {block}: p50 {}, p95 {}; last {block}: p50 {}, p95 {} ({growth:+.1}% at the median)",
        ms(first.p50),
        ms(first.p95),
        ms(last.p50),
        ms(last.p95)
    );
    verdicts.push(Verdict::at_most(
        format!("strict start-ups, last {block} of {} vs first", chain.len()),
        growth,
        CHAIN_GROWTH_PERCENT,
        "%",
        1,
    ));
    doc.insert(
        "startup".into(),
        json!({
            "runs": s.startup_runs,
            "args": args,
            "contenders": contenders.iter().enumerate().map(|(i, (name, _, strict, layers))| json!({
                "name": name, "cli_guard_strict": strict, "cli_guard_strict_layers": layers,
                "wall_ms": stats[i].json_ms(),
            })).collect::<Vec<_>>(),
            "plain_added_ms": {"p50": (plain.p50 - direct.p50) / 1000.0, "p95": (plain.p95 - direct.p95) / 1000.0},
            "strict_added_over_plain_ms": {"p50": (strict.p50 - plain.p50) / 1000.0, "p95": (strict.p95 - plain.p95) / 1000.0},
            "strict_over_direct_ms": {"p50": over_direct_ms, "p95": (strict.p95 - direct.p95) / 1000.0},
        }),
    );
    doc.insert(
        "in_a_row".into(),
        json!({
            "runs": chain.len(),
            "block": block,
            "block_p50_ms": blocks.iter().map(|s| s.p50 / 1000.0).collect::<Vec<_>>(),
            "first_ms": first.json_ms(),
            "last_ms": last.json_ms(),
            "growth_percent_p50": growth,
        }),
    );

    // --- Tunnels, from the guarded client.
    let sink = Sink::start(true)?;
    let host = ALLOWED;
    let mut clients = [
        GuardedClient::start(b, "plain", "off", sink.addr, None)?,
        GuardedClient::start(b, "strict", "require", sink.addr, Some(host))?,
    ];
    let pool = clients[1]
        .transparent
        .context("the strict client resolved no address")?;
    let direct_cmd = format!("direct {}", sink.addr);
    // (name, client, how)
    let paths: [(String, usize, &str); 4] = [
        ("direct loopback TCP (host)".into(), 0, direct_cmd.as_str()),
        ("plain gate, host listener".into(), 0, "proxy"),
        ("strict, in-namespace listener".into(), 1, "proxy"),
        (format!("strict, transparent ({pool})"), 1, "transparent"),
    ];
    let bytes = s.tunnel_bytes;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 0..s.tunnel_rounds {
        for i in rotated(paths.len(), round) {
            let (name, c, how) = &paths[i];
            while sink.reports.try_recv().is_ok() {}
            let mbps = clients[*c]
                .send(how, bytes)
                .with_context(|| format!("{} through {name}", human_bytes(bytes)))?;
            let (got, _) = sink
                .reports
                .recv_timeout(Duration::from_secs(10))
                .with_context(|| format!("the sink never saw the end of the stream through {name}"))?;
            ensure!(got == bytes, "the sink got {got} bytes of {bytes} through {name}");
            rates[i].push(mbps);
        }
    }
    let medians: Vec<f64> = rates.iter().map(|r| median_f64(r)).collect();
    let plain_rate = medians[1];
    let _ = writeln!(
        t,
        "\n  One tunnel, from the guarded client (this executable run as the tool): {} per run, {} runs each,\n  \
         interleaved; median MB/s (10^6 bytes/s), first byte written to the sink's close seen",
        human_bytes(bytes),
        s.tunnel_rounds
    );
    let _ = writeln!(
        t,
        "  {:<38} {:>8} {:>11} {:>11} {:>26}",
        "", "MB/s", "% of plain", "% of direct", "runs (MB/s)"
    );
    for (i, (name, _, _)) in paths.iter().enumerate() {
        let runs: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            t,
            "  {:<38} {:>8.0} {:>10.1}% {:>10.1}% {:>26}",
            name,
            medians[i],
            100.0 * medians[i] / plain_rate.max(1e-9),
            100.0 * medians[i] / medians[0].max(1e-9),
            runs.join(" ")
        );
    }
    verdicts.push(Verdict::at_least(
        "strict tunnel (namespace listener) vs plain",
        100.0 * medians[2] / plain_rate.max(1e-9),
        TUNNEL_OF_PLAIN_PERCENT,
        "%",
        1,
    ));
    doc.insert(
        "throughput".into(),
        json!({
            "bytes": bytes,
            "transparent_address": pool.to_string(),
            "paths": paths.iter().enumerate().map(|(i, (name, _, _))| json!({
                "name": name, "mb_per_s": medians[i], "runs_mb_per_s": rates[i],
                "percent_of_plain": 100.0 * medians[i] / plain_rate.max(1e-9),
            })).collect::<Vec<_>>(),
        }),
    );

    // --- Time to 200, sequential, in rounds.
    let mut latencies: [Vec<Duration>; 2] = Default::default();
    let rounds = s.latency_requests.div_ceil(s.latency_round);
    for round in 0..rounds {
        for i in rotated(2, round) {
            latencies[i].extend(clients[i].connects(s.latency_round)?);
        }
    }
    let lat: Vec<Stats> = latencies.iter().map(|l| Stats::of(l)).collect();
    let _ = writeln!(
        t,
        "\n  CONNECT: time from connect to 200 over {} sequential requests each, from the guarded client; interleaved",
        lat[0].n
    );
    let _ = writeln!(t, "  {:<38} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    let names = ["plain gate, host listener", "strict, in-namespace listener"];
    for (name, l) in names.iter().zip(&lat) {
        let _ = writeln!(
            t,
            "  {:<38} {:>10} {:>10} {:>10}",
            name,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    let _ = writeln!(
        t,
        "  {:<38} {:>10} {:>10}",
        "strict - plain",
        format!("{:+.3} ms", (lat[1].p50 - lat[0].p50) / 1000.0),
        format!("{:+.3} ms", (lat[1].p99 - lat[0].p99) / 1000.0)
    );
    verdicts.push(Verdict::at_most(
        "strict p99 time to 200 (namespace listener)",
        lat[1].p99 / 1000.0,
        P99_TO_200_MS,
        "ms",
        3,
    ));
    doc.insert(
        "connect".into(),
        json!({
            "requests": lat[0].n,
            "plain_ms": lat[0].json_ms(),
            "strict_ms": lat[1].json_ms(),
        }),
    );

    let [plain_client, strict_client] = clients;
    plain_client.stop()?;
    strict_client.stop()?;
    drop(sink);
    for (which, want) in [("off", (0, 1)), ("require", (1, 0))] {
        let got = isolation_counts(&GuardedClient::audit_log(b, which))?;
        ensure!(
            got == want,
            "the guarded client's gate (CLI_GUARD_STRICT={which}) logged {got:?} (netns, none) start rows, expected {want:?}"
        );
    }

    Ok(Outcome {
        key: "strict",
        table: t,
        json: Value::Object(doc),
        verdicts,
    })
}
