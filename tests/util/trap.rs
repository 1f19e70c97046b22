//! A fake tool that logs each signal it gets, by name, so that a test can
//! count how often a signal reached it.

use std::fs;
use std::thread;

use super::process::{wait_until, Running, SETTLE, WAIT};
use super::sandbox::Sandbox;

/// A fake tool that logs each trapped signal by name to `$S/sig.log`, then
/// waits until released. It waits in a busy loop of shell builtins rather
/// than `sleep`: the shell runs a trap only between commands, so two copies
/// of a signal that arrive during one `sleep` would show up as one, hiding
/// exactly the double delivery these tests look for. The loop is bounded
/// (a few seconds of spinning) and ends when the sandbox is gone.
pub const TRAP_TOOL: &str = r#"for s in TERM HUP INT QUIT USR1 USR2 WINCH; do
  trap "echo $s >> '$S/sig.log'" "$s"
done
rec "$@"
n=0
while [ ! -e "$S/done" ] && [ -d "$S" ]; do
  n=$((n + 1))
  if [ "$n" -gt 3000000 ]; then exit 124; fi
done
exit "$(code)"
"#;

pub fn count(g: &Sandbox, name: &str) -> usize {
    fs::read_to_string(g.state_path("sig.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == name)
        .count()
}

/// Waits until the child logged `name`, keeps watching a little longer, and
/// asserts it arrived exactly once.
pub fn expect_once(g: &Sandbox, run: &Running, name: &str) {
    let arrived = wait_until(WAIT, || count(g, name) >= 1);
    check!(run, arrived, "SIG{name} never reached the child");
    thread::sleep(SETTLE);
    check_eq!(
        run,
        count(g, name),
        1,
        "SIG{name} must reach the child exactly once"
    );
}
