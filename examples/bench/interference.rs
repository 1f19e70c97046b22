//! Other work on the machine: how much CPU other processes (from /proc/stat,
//! less this benchmark's own process tree) and the hypervisor (steal) took
//! while a section ran.

use std::fs;
use std::thread;
use std::time::Instant;

use nix::libc;
use serde_json::{json, Value};

/// CPU time, in seconds, used by the whole machine and by this benchmark's
/// own process tree (itself, its reaped descendants, and its live ones).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    busy: f64,
    steal: f64,
    ours: f64,
}

/// What other processes (and the hypervisor) took while a section ran.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interference {
    pub(crate) seconds: f64,
    cores: f64,
    /// CPU-seconds used by processes outside this benchmark's tree.
    others: f64,
    /// CPU-seconds the hypervisor gave to other guests.
    steal: f64,
}

impl CpuSnapshot {
    pub(crate) fn take() -> CpuSnapshot {
        let ticks = clock_ticks();
        let (busy, steal) = machine_ticks();
        CpuSnapshot {
            at: Instant::now(),
            busy: busy / ticks,
            steal: steal / ticks,
            ours: own_tree_seconds(ticks),
        }
    }

    pub(crate) fn since(&self, before: &CpuSnapshot) -> Interference {
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

    pub(crate) fn describe(&self) -> String {
        format!(
            "other processes used {:.1}% of the machine's CPU over these {:.1} s; steal {:.1}%",
            self.percent(self.others),
            self.seconds,
            self.percent(self.steal)
        )
    }

    pub(crate) fn json(&self) -> Value {
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
