//! The machine: CPU, memory, kernel, toolchain and versions, for the line at
//! the top of the output and the JSON; and the load average.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use serde_json::{json, Value};

const MIB: f64 = 1024.0 * 1024.0;

pub(crate) fn describe_machine(bin: &Path) -> Value {
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
pub(crate) fn load_average() -> String {
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

pub(crate) fn machine_line(m: &Value) -> String {
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
