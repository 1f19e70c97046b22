//! Strict mode's answer to a unix socket: none. The tool's seccomp filter
//! hands every `socket(AF_UNIX, …)` to the gate (`sys::seccomp`), which
//! refuses it (EAFNOSUPPORT, as a kernel without unix sockets would) and
//! writes a row naming the process that asked. A pathname socket outside
//! (a Docker daemon's, an ssh-agent's, the session bus) would otherwise be
//! a way out of the namespace. `socket()` names no path, so the row can
//! name none; reading one from a later `connect` would mean letting the
//! socket be made and trusting memory the tool can change meanwhile.

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

/// The thread: receive, write the row (until `stopped`), refuse.
fn answer(listener: &OwnedFd, gate: &Gate, stopped: &AtomicBool) {
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
            record(gate, notification.pid);
        }
        let _ = seccomp::refuse(listener.as_fd(), notification, Errno::EAFNOSUPPORT);
    }
}

fn record(gate: &Gate, pid: u32) {
    let caller = caller_of(pid);
    gate.record(
        0,
        Outcome {
            method: Some(Method::Unix),
            aim: Aim::UnixSocket,
            verdict: Verdict::Deny,
            status: 403,
            reason: format!(
                "a unix socket (socket(AF_UNIX)) from {caller}: refused; strict mode lets nothing through a \
                 unix socket, where a daemon outside (Docker, ssh-agent, the session bus) could reach anything"
            ),
            qtype: None,
        },
    );
}

/// The process as the row names it: its pid and program.
fn caller_of(pid: u32) -> String {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|c| c.trim_end().to_string())
        });
    match exe {
        Some(exe) => format!("pid {pid} ({exe})"),
        None => format!("pid {pid}"),
    }
}
