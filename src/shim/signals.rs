//! Signal forwarding: which signals reach the child through the shim, where
//! each came from (the terminal, the child's own tree, anyone else), and the
//! loop that forwards them until the child exits.
//!
//! Every forwarded signal and SIGCHLD are blocked and read from a signalfd
//! (`sys::signal`), which tells where each came from. With a controlling
//! terminal the child shares the shim's process group, so the terminal's
//! Ctrl-C, Ctrl-Z and SIGWINCH reach it directly; those arrive with
//! `SI_KERNEL` and are not forwarded again. Without one, the child gets a
//! group of its own so a kill aimed at the shim's group is forwarded exactly
//! once. Signals from the child's own process tree are never echoed back.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use crate::exit::Exit;

/// Signals another process may send the shim, forwarded to the child.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Where a signal came from, as far as the decision to forward it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Sent by the kernel: for our signals, the terminal driver (Ctrl-C,
    /// Ctrl-\, window resize), which signals the whole foreground group.
    Kernel,
    /// Sent by the child or by a process in its tree.
    ChildTree,
    /// Sent by some other process.
    Other,
}

/// Whether a signal should be forwarded to the child. Pure.
pub fn should_forward(origin: Origin, child_shares_group: bool) -> bool {
    match origin {
        // The terminal already signalled the group the child is in.
        Origin::Kernel => !child_shares_group,
        // Echoing the child's own signal back would loop.
        Origin::ChildTree => false,
        Origin::Other => true,
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

/// Whether this process has a controlling terminal.
pub fn has_controlling_terminal() -> bool {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open("/dev/tty")
        .is_ok()
}

/// Reads signals until the child exits, forwarding what should reach it.
pub async fn wait_forwarding(
    signals: &AsyncFd<SignalFd>,
    child: Pid,
    shares_group: bool,
) -> io::Result<Exit> {
    loop {
        let mut ready = signals.readable().await?;
        while let Some(info) = ready.get_inner().read_signal().map_err(io::Error::from)? {
            let Ok(sig) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                if let Some(exit) = reap(child)? {
                    return Ok(exit);
                }
                continue;
            }
            if should_forward(origin_of(&info, child), shares_group) {
                // ESRCH: the child is already gone; its SIGCHLD is queued.
                let _ = kill(child, sig);
            }
        }
        ready.clear_ready();
    }
}

/// The child's exit, if it has exited (stops and continues are not exits).
fn reap(child: Pid) -> io::Result<Option<Exit>> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(Exit::Code(u8::try_from(code & 0xff).unwrap_or(u8::MAX)))),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(Exit::Signal(sig))),
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_rules() {
        assert!(!should_forward(Origin::Kernel, true));
        assert!(should_forward(Origin::Kernel, false));
        assert!(!should_forward(Origin::ChildTree, true));
        assert!(!should_forward(Origin::ChildTree, false));
        assert!(should_forward(Origin::Other, true));
        assert!(should_forward(Origin::Other, false));
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
