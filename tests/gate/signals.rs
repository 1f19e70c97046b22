//! Signals: delivery to the child exactly once, with and without a terminal;
//! Ctrl-C and Ctrl-Z through a pseudo-terminal.

use std::fs;
use std::thread;

use nix::sys::signal::Signal;

use crate::util::*;

/// A fake tool that logs each trapped signal by name to `$S/sig.log`, then
/// waits until released. It waits in a busy loop of shell builtins rather
/// than `sleep`: the shell runs a trap only between commands, so two copies
/// of a signal that arrive during one `sleep` would show up as one, hiding
/// exactly the double delivery these tests look for. The loop is bounded
/// (a few seconds of spinning) and ends when the sandbox is gone.
const TRAP_TOOL: &str = r#"for s in TERM HUP INT QUIT USR1 USR2 WINCH; do
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

fn count(g: &Gate, name: &str) -> usize {
    fs::read_to_string(g.state_path("sig.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == name)
        .count()
}

/// Waits until the child logged `name`, keeps watching a little longer, and
/// asserts it arrived exactly once.
fn expect_once(g: &Gate, run: &Running, name: &str) {
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

fn pid_directed(sig: Signal) {
    let g = Gate::new();
    g.tool("npm", TRAP_TOOL);
    let mut run = g.start(g.shim_cmd("npm", ["install"]));
    g.wait_env(&mut run);
    send(run.pid(), sig);
    expect_once(&g, &run, &sig.as_str()[3..]);
    check!(
        run,
        run.poll().is_none(),
        "the shim must outlive a {sig} it forwarded"
    );
    g.finish(run, 0);
}

#[test]
fn sigterm_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGTERM);
}

#[test]
fn sighup_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGHUP);
}

#[test]
fn sigint_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGINT);
}

#[test]
fn sigquit_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGQUIT);
}

#[test]
fn sigusr1_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGUSR1);
}

#[test]
fn sigusr2_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGUSR2);
}

#[test]
fn sigwinch_at_the_shim_reaches_the_child_exactly_once() {
    pid_directed(Signal::SIGWINCH);
}

#[test]
fn a_signal_at_the_shims_group_without_a_terminal_reaches_the_child_exactly_once() {
    let g = Gate::new();
    g.tool("npm", TRAP_TOOL);
    let mut cmd = g.shim_cmd("npm", ["install"]);
    detach(&mut cmd); // new session, no controlling terminal, pgid = pid
    let mut run = g.start(cmd);
    g.wait_env(&mut run);
    let pgid = run.pid();
    assert!(pgid > 1);
    let child = g.child_pid(&mut run);
    check_eq!(
        run,
        pgrp_of(child),
        Some(child),
        "without a terminal the child gets a process group of its own"
    );
    for sig in [Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGHUP] {
        send(-pgid, sig);
        expect_once(&g, &run, &sig.as_str()[3..]);
    }
    check!(
        run,
        run.poll().is_none(),
        "the shim must outlive the signals it forwarded"
    );
    g.finish(run, 0);
}

#[test]
fn signals_the_child_or_its_descendants_send_the_shim_are_not_echoed_back() {
    // The grandchild lingers after its kill: a sender that has already
    // exited when the shim looks at it can't be traced to the child.
    let g = Gate::new();
    let body = TRAP_TOOL.replace(
        "rec \"$@\"\n",
        "rec \"$@\"\nkill -s USR1 $PPID\nsh -c 'kill -s USR2 \"$1\"; sleep 0.5' sh $PPID\nkill -s WINCH $PPID\n: > \"$S/sent\"\n",
    );
    g.tool("npm", &body);
    let mut run = g.start(g.shim_cmd("npm", ["install"]));
    g.wait_state(&mut run, "sent");
    thread::sleep(SETTLE * 2);
    for name in ["USR1", "USR2", "WINCH"] {
        check_eq!(
            run,
            count(&g, name),
            0,
            "SIG{name} sent by the child's side came back"
        );
    }
    check!(
        run,
        run.poll().is_none(),
        "the shim must survive signals from its own child"
    );
    g.finish(run, 0);
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_child_once_and_the_shim_survives() {
    // The shim is the session leader of a pty; Ctrl-C makes the terminal
    // signal its foreground process group.
    let g = Gate::new();
    g.tool("npm", TRAP_TOOL);
    let mut pty = Pty::open();
    let mut cmd = g.shim_cmd("npm", ["install"]);
    pty.attach(&mut cmd);
    let mut run = Running::spawn(cmd, Some(g.audit.clone()), Some(pty.transcript.clone()));
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    check_eq!(
        run,
        pgrp_of(child),
        Some(run.pid()),
        "with a terminal the child stays in the shim's (foreground) process group"
    );
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, "INT");
    check!(
        run,
        run.poll().is_none(),
        "Ctrl-C must not kill the shim before the child decides"
    );
    g.release(7);
    let out = run.wait();
    check_eq!(
        out,
        out.code(),
        Some(7),
        "the shim exits with the child's code after Ctrl-C"
    );
}

#[test]
fn ctrl_c_that_kills_the_child_kills_the_shim_by_sigint() {
    // A child that does not trap SIGINT dies of Ctrl-C; the shim then dies
    // by SIGINT too, so the calling shell sees an interrupted command.
    let g = Gate::new();
    g.tool("npm", HOLD);
    let mut pty = Pty::open();
    let mut cmd = g.shim_cmd("npm", ["install"]);
    pty.attach(&mut cmd);
    let mut run = Running::spawn(cmd, Some(g.audit.clone()), Some(pty.transcript.clone()));
    g.wait_env(&mut run);
    pty.type_bytes(b"\x03");
    let out = run.wait();
    check_eq!(
        out,
        out.signal(),
        Some(Signal::SIGINT as i32),
        "the shim dies by SIGINT, like its child"
    );
}

/// A bash with job control as the pty's session leader, running `npm
/// install` (the shim) as a foreground job in its own process group, as an
/// interactive shell would. Writes the job's status to `$S/first`; if the job
/// stopped (148), waits for `$S/cont`, runs `fg`, and writes the final status
/// to `$S/final`.
fn job_shell(g: &Gate, pty: &mut Pty) -> Running {
    let s = g.state.display();
    let script = format!(
        r#"set -m
"$@"
st=$?
echo "$st" > '{s}/first.tmp' && mv '{s}/first.tmp' '{s}/first'
if [ "$st" -eq 148 ]; then
  n=0
  while [ ! -e '{s}/cont' ]; do n=$((n+1)); [ $n -gt 200 ] && exit 124; sleep 0.05; done
  fg %1 > /dev/null
  st=$?
fi
echo "$st" > '{s}/final.tmp' && mv '{s}/final.tmp' '{s}/final'
"#
    );
    let mut cmd = g.command("/bin/bash");
    cmd.args(["--norc", "--noprofile", "-c", &script, "bash"])
        .arg(g.shim("npm"))
        .arg("install");
    pty.attach(&mut cmd);
    Running::spawn(cmd, Some(g.audit.clone()), Some(pty.transcript.clone()))
}

/// The fake tool's parent: the shim.
fn ppid_of(g: &Gate, run: &mut Running) -> i32 {
    String::from_utf8_lossy(&g.wait_state(run, "ppid"))
        .trim()
        .parse()
        .unwrap()
}

fn read_status(g: &Gate, run: &mut Running, name: &str) -> String {
    String::from_utf8_lossy(&g.wait_state(run, name))
        .trim()
        .to_owned()
}

#[test]
fn ctrl_c_under_a_job_control_shell_reaches_the_child_once() {
    let g = Gate::new();
    g.tool("npm", TRAP_TOOL);
    let mut pty = Pty::open();
    let mut run = job_shell(&g, &mut pty);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    let shim = ppid_of(&g, &mut run);
    check_eq!(
        run,
        pgrp_of(child),
        pgrp_of(shim),
        "with a terminal the child stays in the shim's (foreground) process group"
    );
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, "INT");
    g.release(7);
    let status = read_status(&g, &mut run, "final");
    check_eq!(
        run,
        status,
        "7",
        "the job (the shim) must exit with the child's code, not die of SIGINT"
    );
    run.wait().expect_code(0);
}

#[test]
fn ctrl_z_stops_shim_and_child_and_fg_resumes_both() {
    let g = Gate::new();
    g.tool("npm", TRAP_TOOL);
    let mut pty = Pty::open();
    let mut run = job_shell(&g, &mut pty);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    let shim = ppid_of(&g, &mut run);

    pty.type_bytes(b"\x1a");
    let stopped = wait_until(WAIT, || is_stopped(shim) && is_stopped(child));
    check!(
        run,
        stopped,
        "Ctrl-Z must stop both: shim {:?}, child {:?}",
        proc_state(shim),
        proc_state(child)
    );
    check_eq!(
        run,
        read_status(&g, &mut run, "first"),
        "148",
        "the shell saw its job stop"
    );

    write_atomic(&g.state_path("cont"), b"");
    let resumed = wait_until(WAIT, || !is_stopped(shim) && !is_stopped(child));
    check!(
        run,
        resumed,
        "fg must resume both: shim {:?}, child {:?}",
        proc_state(shim),
        proc_state(child)
    );
    g.release(7);
    let status = read_status(&g, &mut run, "final");
    check_eq!(
        run,
        status,
        "7",
        "after fg, the child's exit code comes back through the shim"
    );
    run.wait().expect_code(0);
}
