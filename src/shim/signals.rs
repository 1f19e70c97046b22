//! Signal forwarding and job control: which signals reach the child
//! through the shim, where each came from (the terminal, the child's own
//! tree, anyone else), the terminal's foreground, and the loop that forwards
//! signals and relays stops until the child exits.
//!
//! The rule: the tool receives each signal as many times as it would with
//! no shim in between. So the tool always runs in a process group of its
//! own, and when the shim's group is the terminal's foreground group the
//! tool's group takes its place there while it runs (as sudo does): the
//! terminal's Ctrl-C, Ctrl-\, Ctrl-Z and resizes reach the tool directly,
//! and the shim, no longer in the foreground group, does not see them. A
//! kill aimed at the shim (its pid, or its group: `kill %1`, `timeout`, a CI
//! runner) reaches only the shim, which forwards it once.
//!
//! Every watched signal and SIGCHLD are blocked and read from a signalfd
//! (`sys::signal`), which tells where each came from. Signals from the
//! child's own process tree are never echoed back. Blocking SIGTTOU also
//! lets the shim move the terminal's foreground from outside it.
//!
//! Job control is relayed: when the tool stops, the shim takes the terminal
//! back for its group and stops itself with the same signal, so the shell
//! sees a stopped job; when the shim is continued (`fg`, `bg`), the tool's
//! group gets the terminal again if the shell gave it to the shim, and is
//! continued. When the tool exits, the terminal is the shim's group's again
//! if the tool's group held it in its place, whatever the tool did with it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, tcgetpgrp, tcsetpgrp, Pid};
use tokio::io::unix::AsyncFd;

use crate::exit::Exit;

/// Signals another process may send the shim, forwarded to the child. The
/// stop signals among them, forwarded, stop the tool, and the stop is then
/// relayed to the shim.
pub(super) const FORWARDED: [Signal; 10] = [
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// Every signal the shim reads from its signalfd (SIGCHLD aside): the
/// forwarded ones, and SIGCONT, which resumes the tool.
pub(super) const WATCHED: [Signal; FORWARDED.len() + 1] = {
    let mut all = [Signal::SIGCONT; FORWARDED.len() + 1];
    let mut i = 0;
    while i < FORWARDED.len() {
        all[i] = FORWARDED[i];
        i += 1;
    }
    all
};

/// Where a signal came from, as far as the decision to forward it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Sent by the kernel: the terminal driver (Ctrl-C, Ctrl-\\, Ctrl-Z,
    /// a resize) when the shim's group is the foreground group, which the
    /// tool's then is not, or a hangup to a shim that leads its session.
    Kernel,
    /// Sent by the child or by a process in its tree.
    ChildTree,
    /// Sent by some other process.
    Other,
}

/// Whether a signal should be forwarded to the child. Pure. The child is
/// never in the shim's process group, so whatever reached the shim did not
/// also reach the child: the terminal signals the foreground group, and a
/// group kill aimed at the shim's group misses the child's.
pub(super) fn should_forward(origin: Origin) -> bool {
    match origin {
        Origin::Kernel | Origin::Other => true,
        // Echoing the child's own signal back would loop.
        Origin::ChildTree => false,
    }
}

/// `si_code` for signals the kernel sends itself (the tty driver's).
const SI_KERNEL: i32 = 0x80;

fn origin_of(info: &nix::sys::signalfd::siginfo, child: Pid) -> Origin {
    if info.ssi_code == SI_KERNEL {
        return Origin::Kernel;
    }
    // si_code <= 0 means a process sent it (kill, sigqueue, tgkill).
    if info.ssi_code <= 0 {
        let sender = i32::try_from(info.ssi_pid).unwrap_or(0);
        if sender > 0 && is_in_tree(Pid::from_raw(sender), child) {
            return Origin::ChildTree;
        }
    }
    Origin::Other
}

/// Whether `pid` is `root` or one of its descendants, by walking parent
/// links in /proc (bounded, so a racing pid reuse cannot loop).
fn is_in_tree(mut pid: Pid, root: Pid) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match parent_of(pid) {
            Some(parent) if parent.as_raw() > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

/// The parent pid from a `/proc/PID/stat` line. The command name in
/// parentheses may itself hold spaces and parentheses, so parse after the
/// last `)`.
fn parse_stat_ppid(stat: &[u8]) -> Option<Pid> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok().map(Pid::from_raw)
}

/// The shim's controlling terminal, and the process group the shim was in
/// when it started, whose place in the foreground the tool's group takes.
#[derive(Debug)]
pub(super) struct Terminal {
    tty: File,
    shim_group: Pid,
}

impl Terminal {
    /// The controlling terminal, if the shim has one (`/dev/tty` is it,
    /// whatever the standard descriptors are redirected to). Close-on-exec:
    /// the tool does not inherit this descriptor.
    pub(super) fn open() -> Option<Terminal> {
        let tty = OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open("/dev/tty")
            .ok()?;
        Some(Terminal {
            tty,
            shim_group: getpgrp(),
        })
    }

    /// What the spawn needs to hand the foreground to the tool's group.
    pub(super) fn handoff(&self) -> (std::os::fd::BorrowedFd<'_>, Pid) {
        use std::os::fd::AsFd;
        (self.tty.as_fd(), self.shim_group)
    }

    /// The terminal's foreground process group.
    pub(super) fn foreground(&self) -> Option<Pid> {
        tcgetpgrp(&self.tty).ok()
    }

    /// Makes `group` the foreground group. SIGTTOU is blocked (it is
    /// watched), so this works from outside the foreground group too;
    /// callers only move the terminal between the shim's and the tool's
    /// groups, never take it from anyone else.
    /// Gives the terminal back to the shim's group if `group` holds it (a
    /// tool that took it and then failed to exec).
    pub(super) fn take_back_from(&self, group: Pid) {
        if self.foreground() == Some(group) {
            self.give_to(self.shim_group);
        }
    }

    fn give_to(&self, group: Pid) {
        // EIO, ENOTTY: the terminal hung up; nothing left to hand over.
        let _ = tcsetpgrp(&self.tty, group);
    }
}

/// The tool as a job: its pid (also its process group) and who holds the
/// terminal. Dropping it gives the terminal back to the shim's group if the
/// tool's group held it, on every path out, the tool's death included.
#[derive(Debug)]
pub(super) struct Job<'t> {
    child: Pid,
    terminal: Option<&'t Terminal>,
    /// The tool's group holds the terminal in the shim's group's place.
    holds_terminal: bool,
}

impl<'t> Job<'t> {
    pub(super) fn new(child: Pid, terminal: Option<&'t Terminal>, took_terminal: bool) -> Job<'t> {
        Job {
            child,
            terminal,
            holds_terminal: took_terminal && terminal.is_some(),
        }
    }

    /// The tool stopped by `sig`: relay the stop to the shim, as sudo does,
    /// so the shell sees a stopped job; once the shim is continued, continue
    /// the tool.
    fn stopped(&mut self, sig: Signal) {
        if let Some(tty) = self.terminal {
            // The tool touched the terminal from the background while the
            // shim's group has it (the shell's `fg` reached the shim first):
            // it only needed the terminal.
            if matches!(sig, Signal::SIGTTIN | Signal::SIGTTOU) && tty.foreground() == Some(tty.shim_group) {
                tty.give_to(self.child);
                self.holds_terminal = true;
                let _ = killpg(self.child, Signal::SIGCONT);
                return;
            }
        }
        // The shell expects the stopped job's group in the foreground.
        self.give_terminal_back();
        stop_self(sig);
        // Continued: by a SIGCONT, now waiting in the signalfd, which
        // resumes the tool when it is read; or the stop was discarded (an
        // orphaned process group ignores the terminal's stop signals), and
        // the tool, stopped where it would not have been, goes on now.
        if !crate::sys::signal::is_pending(Signal::SIGCONT) {
            self.resume();
        }
    }

    /// The shim was continued: if the shell gave the shim's group the
    /// terminal (`fg`), the tool's group gets it; then the tool's group is
    /// continued, whichever way.
    fn resume(&mut self) {
        if let Some(tty) = self.terminal {
            match tty.foreground() {
                Some(group) if group == tty.shim_group => {
                    tty.give_to(self.child);
                    self.holds_terminal = true;
                }
                // Still the tool's (the shim alone was stopped and
                // continued, by SIGSTOP and SIGCONT, say).
                Some(group) if group == self.child => {}
                // The shell's (`bg`): the tool runs in the background.
                _ => self.holds_terminal = false,
            }
        }
        // ESRCH: the tool is gone; its SIGCHLD is queued.
        let _ = killpg(self.child, Signal::SIGCONT);
    }

    fn give_terminal_back(&mut self) {
        if std::mem::take(&mut self.holds_terminal) {
            if let Some(tty) = self.terminal {
                if tty.foreground() != Some(tty.shim_group) {
                    tty.give_to(tty.shim_group);
                }
            }
        }
    }
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        self.give_terminal_back();
    }
}

/// Stops the shim with `sig`, the signal the tool stopped by, so that its
/// parent sees the same stop. Returns once the shim is continued (or at
/// once, if the kernel discarded the stop).
fn stop_self(sig: Signal) {
    // From the main thread (the runtime is current-thread), which the
    // kernel picks to take a signal sent to the process while it runs: the
    // stop happens before kill returns, or at the unblock below.
    let _ = kill(getpid(), sig);
    if sig != Signal::SIGSTOP {
        // The stop signals are blocked for the signalfd: let this one
        // through, which stops the shim, then block it again.
        let one = SigSet::from(sig);
        let _ = one.thread_unblock();
        let _ = one.thread_block();
    }
}

/// Reads signals until the child exits, forwarding what should reach it and
/// relaying its stops.
pub(super) async fn wait_forwarding(signals: &AsyncFd<SignalFd>, job: &mut Job<'_>) -> io::Result<Exit> {
    loop {
        let mut ready = signals.readable().await?;
        while let Some(info) = ready.get_inner().read_signal().map_err(io::Error::from)? {
            let Ok(sig) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                // One SIGCHLD may stand for a stop and then the exit.
                loop {
                    match reap(job.child)? {
                        Reaped::Exited(exit) => return Ok(exit),
                        Reaped::Stopped(stop) => job.stopped(stop),
                        Reaped::Running => break,
                    }
                }
                continue;
            }
            if !should_forward(origin_of(&info, job.child)) {
                continue;
            }
            if sig == Signal::SIGCONT {
                job.resume();
            } else if FORWARDED.contains(&sig) {
                // ESRCH: the child is already gone; its SIGCHLD is queued.
                let _ = kill(job.child, sig);
            }
        }
        ready.clear_ready();
    }
}

/// What waitpid says of the child.
enum Reaped {
    Exited(Exit),
    Stopped(Signal),
    /// Running, or continued: nothing new.
    Running,
}

fn reap(child: Pid) -> io::Result<Reaped> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Reaped::Exited(Exit::Code(
            u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        ))),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Reaped::Exited(Exit::Signal(sig))),
        Ok(WaitStatus::Stopped(_, sig)) => Ok(Reaped::Stopped(sig)),
        Ok(_) => Ok(Reaped::Running),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_rules() {
        // The child is in a group of its own: what the terminal sent the
        // shim's group did not reach it.
        assert!(should_forward(Origin::Kernel));
        assert!(!should_forward(Origin::ChildTree));
        assert!(should_forward(Origin::Other));
    }

    #[test]
    fn every_forwarded_signal_is_watched() {
        assert!(FORWARDED.iter().all(|sig| WATCHED.contains(sig)));
        assert_eq!(
            WATCHED
                .iter()
                .filter(|sig| !FORWARDED.contains(sig))
                .collect::<Vec<_>>(),
            [&Signal::SIGCONT]
        );
    }

    #[test]
    fn stat_ppid_survives_odd_command_names() {
        assert_eq!(
            parse_stat_ppid(b"123 (a) b) c) S 77 123 123 0"),
            Some(Pid::from_raw(77))
        );
        assert_eq!(parse_stat_ppid(b"123 (sh) S 1 1 1"), Some(Pid::from_raw(1)));
        assert_eq!(parse_stat_ppid(b"garbage"), None);
    }
}
