//! Reporting: number formats for the tables, the targets (each judged into
//! a `Verdict`), and the table of them that ends the run.

use std::fmt::Write as _;

use serde_json::{json, Value};

/// Microseconds as milliseconds, for tables.
pub(crate) fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

pub(crate) fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// One target from the issue, judged.
pub(crate) struct Verdict {
    what: String,
    target: String,
    measured: String,
    pass: bool,
    margin: String,
}

impl Verdict {
    pub(crate) fn at_most(
        what: impl Into<String>,
        value: f64,
        limit: f64,
        unit: &str,
        digits: usize,
    ) -> Verdict {
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

    pub(crate) fn at_least(
        what: impl Into<String>,
        value: f64,
        limit: f64,
        unit: &str,
        digits: usize,
    ) -> Verdict {
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
    pub(crate) fn ratio_at_least(
        what: impl Into<String>,
        ours: f64,
        theirs: f64,
        factor: f64,
        unit: &str,
    ) -> Verdict {
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

    pub(crate) fn json(&self) -> Value {
        json!({
            "what": self.what,
            "target": self.target,
            "measured": self.measured,
            "pass": self.pass,
            "margin": self.margin,
        })
    }
}

pub(crate) fn targets_table(verdicts: &[&Verdict]) -> String {
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
