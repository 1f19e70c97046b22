//! A fake tool that logs each signal it gets, by name, and the way a test
//! proves that a signal reached it exactly once without sleeping on it:
//! after the signal arrived, a marker signal goes the same way, and the
//! counting waits until the shim has taken the marker, the tool has logged
//! it, and the tool has gone once more round its loop. The shim reads its
//! signals one at a time, in order, so a second copy of the first that it
//! forwards is sent before it reads the marker; the tool runs the traps
//! of every signal that reached it before its next command. A second copy,
//! however slow the shim is to send it, is counted.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;

use super::process::{send, signal_pending, wait_until, Running, WAIT};
use super::pty::Pty;
use super::sandbox::{write_atomic, Sandbox};

/// A fake tool that logs each trapped signal by name to `$S/sig.log`, then
/// waits until released. It waits in a busy loop of shell builtins rather
/// than `sleep`: the shell runs a trap only between commands, so two copies
/// of a signal that arrive during one `sleep` would show up as one, hiding
/// exactly the double delivery these tests look for. Each time round, it
/// answers a `$S/ping` by moving it to `$S/pong` ([`settled`]). The loop is
/// bounded (some seconds of spinning) and ends when the sandbox is gone.
pub const TRAP_TOOL: &str = r#"for s in TERM HUP INT QUIT USR1 USR2 WINCH; do
  trap "echo $s >> '$S/sig.log'" "$s"
done
rec "$@"
n=0
while [ ! -e "$S/done" ] && [ -d "$S" ]; do
  n=$((n + 1))
  if [ "$n" -gt 3000000 ]; then exit 124; fi
  if [ -e "$S/ping" ]; then mv "$S/ping" "$S/pong"; fi
done
exit "$(code)"
"#;

/// How many times the trapping tool logged the signal `name` (TERM, INT...).
pub fn count(g: &Sandbox, name: &str) -> usize {
    fs::read_to_string(g.state_path("sig.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == name)
        .count()
}

/// Waits until the trapping tool logged the signal `name` at least once.
pub fn arrived(g: &Sandbox, run: &Running, name: &str) {
    let arrived = wait_until(WAIT, || count(g, name) >= 1);
    check!(run, arrived, "SIG{name} never reached the child");
}

/// A second signal, sent after the one under test and the same way.
pub struct Marker<'a> {
    name: &'static str,
    send: Box<dyn FnOnce() + 'a>,
}

impl<'a> Marker<'a> {
    /// The signal `name` (as the tool logs it), sent by `send`.
    pub fn new(name: &'static str, send: impl FnOnce() + 'a) -> Marker<'a> {
        Marker {
            name,
            send: Box::new(send),
        }
    }

    /// A signal other than `name`, sent to `pid` (negative: a group).
    pub fn kill(pid: i32, name: &str) -> Marker<'static> {
        let sig = if name == "WINCH" {
            Signal::SIGUSR2
        } else {
            Signal::SIGWINCH
        };
        Marker::new(&sig.as_str()[3..], move || send(pid, sig))
    }

    /// Ctrl-\ typed at the terminal `pty`: SIGQUIT to its foreground group.
    pub fn typed(pty: &'a Pty) -> Marker<'a> {
        Marker::new("QUIT", move || pty.type_bytes(b"\x1c"))
    }
}

/// Sends `marker`, then waits until the shim `shim` holds none of it
/// pending (it has read it, or never got it), the tool logged it, and the
/// tool has gone round its loop once more ([`settled`]): whatever the shim
/// forwarded before reading the marker has been logged.
pub fn marked(g: &Sandbox, run: &Running, shim: i32, marker: Marker<'_>) {
    let name = marker.name;
    let sig = Signal::iterator()
        .find(|s| &s.as_str()[3..] == name)
        .expect("a signal's name");
    let before = count(g, name);
    (marker.send)();
    let taken = wait_until(WAIT, || !signal_pending(shim, sig));
    check!(run, taken, "the shim (pid {shim}) never took SIG{name}");
    let logged = wait_until(WAIT, || count(g, name) > before);
    check!(run, logged, "the marker SIG{name} never reached the child");
    settled(g, run);
}

/// Asserts that the signal `name`, just sent to the trapping tool, reached
/// it exactly once: it arrived, then the `marker` sent after it the same
/// way has been through (`marked`), and only then is it counted.
pub fn expect_once(g: &Sandbox, run: &Running, shim: i32, name: &str, marker: Marker<'_>) {
    arrived(g, run, name);
    marked(g, run, shim, marker);
    check_eq!(
        run,
        count(g, name),
        1,
        "SIG{name} must reach the child exactly once"
    );
}

/// Waits until the trapping tool has gone once round its loop after this
/// call: the trap of every signal that had reached it has run by then.
pub fn settled(g: &Sandbox, run: &Running) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let ping = NEXT.fetch_add(1, Ordering::SeqCst).to_string();
    write_atomic(&g.state_path("ping"), ping.as_bytes());
    let pong = g.state_path("pong");
    let answered = wait_until(WAIT, || fs::read_to_string(&pong).is_ok_and(|p| p == ping));
    check!(run, answered, "the trapping tool never answered ping {ping}");
}
