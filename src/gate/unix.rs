//! Strict mode's answer to a unix socket: none. The tool's seccomp filter
//! hands every `socket(AF_UNIX, …)` to the gate (`sys::seccomp`), which
//! refuses it (EAFNOSUPPORT, as a kernel without unix sockets would) and
//! writes a row naming the process that asked: one per program, since
//! glibc looks for nscd's socket in nearly every process that resolves a
//! name or a user, and the rest are counted in the `end` row's
//! `suppressed`. A pathname socket outside
//! (a Docker daemon's, an ssh-agent's, the session bus) would otherwise be
//! a way out of the namespace. `socket()` names no path, so the row can
//! name none; reading one from a later `connect` would mean letting the
//! socket be made and trusting memory the tool can change meanwhile.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::libc;

use crate::gate::outcome::{Aim, Method, Outcome};
use crate::gate::shutdown::Shutdown;
use crate::gate::Gate;
use crate::policy::Verdict;
use crate::sys::seccomp;

/// Answers the filter's notifications on `listener` on a thread of its
/// own: the kernel's receive blocks whatever the descriptor's flags (a
/// notification that was ready can be withdrawn when its caller dies
/// before it is read), so it must not run on the gate's one runtime
/// thread. The thread ends when every process under the filter is gone
/// (the receive then fails), or with the shim, whose exit closes the
/// listener: from then on the kernel refuses the call itself (ENOSYS), so a
/// unix socket is never made, whatever becomes of the gate. Rows stop with
/// the gate (`shutdown`); answers do not.
pub(super) async fn refuse(listener: OwnedFd, gate: Arc<Gate>, mut shutdown: Shutdown) {
    let stopped = Arc::new(AtomicBool::new(false));
    let rows = Arc::clone(&stopped);
    let spawned = std::thread::Builder::new()
        .name("unix-sockets".to_string())
        .spawn(move || answer(&listener, &gate, &rows));
    if spawned.is_err() {
        // No thread, no answers: the listener closes with `listener`, and
        // the kernel refuses every call (ENOSYS). Refused still, unrecorded.
        return;
    }
    shutdown.stopping().await;
    stopped.store(true, Ordering::Relaxed);
}

/// Programs remembered as having a row; past this, every refusal gets a
/// row again (under the direct rows' cap), so memory stays bounded.
const PROGRAMS_REMEMBERED: usize = 256;

/// The thread: receive, write the row (until `stopped`), refuse.
fn answer(listener: &OwnedFd, gate: &Gate, stopped: &AtomicBool) {
    let mut recorded: HashSet<String> = HashSet::new();
    loop {
        let notification = match seccomp::receive(listener.as_fd()) {
            Ok(notification) => notification,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // ENOENT: the caller died before it was read, or no process is
            // left under the filter (the listener then says so by a hang-up).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !seccomp::orphaned(listener.as_fd()) => {
                continue
            }
            Err(_) => return,
        };
        if !stopped.load(Ordering::Relaxed) {
            // The row first, as for every refusal: then the answer.
            let program = program_of(notification.pid);
            let known = program.as_ref().is_some_and(|p| recorded.contains(p));
            if known {
                gate.tally.count_unix_repeat();
            } else {
                record(gate, notification.pid, program.as_deref());
                if let Some(program) = program.filter(|_| recorded.len() < PROGRAMS_REMEMBERED) {
                    recorded.insert(program);
                }
            }
        }
        let _ = seccomp::refuse(listener.as_fd(), notification, Errno::EAFNOSUPPORT);
    }
}

fn record(gate: &Gate, pid: u32, program: Option<&str>) {
    let caller = match program {
        Some(program) => format!("pid {pid} ({program})"),
        None => format!("pid {pid}"),
    };
    gate.record(
        0,
        Outcome {
            method: Some(Method::Unix),
            aim: Aim::UnixSocket,
            verdict: Verdict::Deny,
            status: 403,
            reason: format!(
                "a unix socket (socket(AF_UNIX)) from {caller}: refused; strict mode lets nothing through a \
                 unix socket, where a daemon outside (Docker, ssh-agent, the session bus) could reach anything; \
                 this program's next ones are counted in the end row's suppressed"
            ),
            qtype: None,
            process: None,
        },
    );
}

/// The program a process runs, as the row names it: its executable, else
/// its command name.
fn program_of(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|c| c.trim_end().to_string())
        })
}
