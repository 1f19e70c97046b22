//! Child processes (the gates, squid, tinyproxy, the helpers): each
//! killed when dropped, or by the kernel if the benchmark dies first; and
//! what /proc says about a process.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;

/// A child process that is killed (and reaped) when dropped, and killed by
/// the kernel if the benchmark dies first.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    done: Option<ExitStatus>,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, name: &str, nofile: Option<u64>) -> Result<Proc> {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: prctl(2), getppid(2) and
        // setrlimit(2) are plain system calls, and the errors are built from
        // a raw errno without allocating. std's pre_exec hook, the only place
        // to make them, is unsafe by signature.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // The benchmark may have died between fork and prctl.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from(nix::errno::Errno::ESRCH));
                }
                if let Some(n) = nofile {
                    setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            done: None,
        })
    }

    /// The pipes to the child's stdin and from its stdout, where the
    /// command asked for them.
    pub(crate) fn take_pipes(&mut self) -> (Option<ChildStdin>, Option<ChildStdout>) {
        (self.child.stdin.take(), self.child.stdout.take())
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Fails if the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.done = Some(status);
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }

    /// Waits for the process to exit on its own, for at most `limit`; kills
    /// it after that.
    pub(crate) fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if self.done.is_none() {
                self.done = self.child.try_wait()?;
            }
            if let Some(status) = self.done {
                return Ok(status);
            }
            if Instant::now() >= until {
                self.kill();
                bail!("{} did not exit within {limit:?}: killed it", self.name);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn kill(&mut self) {
        if self.done.is_none() {
            let _ = self.child.kill();
            self.done = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.done.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// A `kB` field of /proc/PID/status (`pid` may be `self`).
pub(crate) fn proc_status_kib(pid: impl std::fmt::Display, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

pub(crate) fn fd_count(pid: i32) -> Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}
