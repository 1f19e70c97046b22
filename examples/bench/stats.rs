//! Statistics: percentiles (nearest rank) of durations, and medians.

use std::time::Duration;

use serde_json::{json, Value};

/// Summary of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl Stats {
    pub(crate) fn of(samples: &[Duration]) -> Stats {
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

    pub(crate) fn json_ms(&self) -> Value {
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

pub(crate) fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn median_u64(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}
