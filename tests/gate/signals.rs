//! Signals: delivery to the child exactly once, with and without a terminal;
//! Ctrl-C, Ctrl-Z and `fg`, `kill %1`, `timeout` and a raw-mode reader
//! through a pseudo-terminal, with an interactive bash where a person would
//! have one.

use std::fs;

use nix::sys::signal::Signal;

use crate::util::*;

fn pid_directed(sig: Signal) {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut run = g.start(g.shim_cmd("npm", ["install"]));
    g.wait_env(&mut run);
    send(run.pid(), sig);
    let name = &sig.as_str()[3..];
    expect_once(&g, &run, run.pid(), name, Marker::kill(run.pid(), name));
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
    let g = Sandbox::new();
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
        let name = &sig.as_str()[3..];
        expect_once(&g, &run, pgid, name, Marker::kill(-pgid, name));
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
    let g = Sandbox::new();
    let body = TRAP_TOOL.replace(
        "rec \"$@\"\n",
        "rec \"$@\"\nkill -s USR1 $PPID\nsh -c 'kill -s USR2 \"$1\"; sleep 0.5' sh $PPID\nkill -s WINCH $PPID\n: > \"$S/sent\"\n",
    );
    g.tool("npm", &body);
    let mut run = g.start(g.shim_cmd("npm", ["install"]));
    g.wait_state(&mut run, "sent");
    // The shim has taken what the child sent, and dealt with it before it
    // reads the marker sent after it; the marker is forwarded.
    let shim = run.pid();
    let sent = [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH];
    let taken = wait_until(WAIT, || !sent.iter().any(|s| signal_pending(shim, *s)));
    check!(run, taken, "the shim never took the child's signals");
    marked(&g, &run, shim, Marker::new("HUP", || send(shim, Signal::SIGHUP)));
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
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let cmd = g.shim_cmd("npm", ["install"]);
    let (pty, mut run) = at_terminal(&g, cmd);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    check_eq!(
        run,
        pgrp_of(child),
        Some(child),
        "with a terminal the child leads a process group of its own"
    );
    check_eq!(
        run,
        tpgid_of(run.pid()),
        Some(child),
        "the child's group is the terminal's foreground group, in the shim's place"
    );
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, run.pid(), "INT", Marker::typed(&pty));
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
    let g = Sandbox::new();
    g.tool("npm", HOLD);
    let cmd = g.shim_cmd("npm", ["install"]);
    let (pty, mut run) = at_terminal(&g, cmd);
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
fn job_shell(g: &Sandbox, pty: &mut Pty) -> Running {
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
/// The fake tool's parent, the shim, as this test sees it (in strict
/// mode's PID namespace the tool's `$PPID` is 0: its parent is outside).
fn ppid_of(g: &Sandbox, run: &mut Running) -> i32 {
    let recorded: i32 = String::from_utf8_lossy(&g.wait_state(run, "ppid"))
        .trim()
        .parse()
        .unwrap();
    if recorded != 0 {
        return recorded;
    }
    let child = g.child_pid(run);
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: state, ppid.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .unwrap_or(recorded)
}

fn read_status(g: &Sandbox, run: &mut Running, name: &str) -> String {
    String::from_utf8_lossy(&g.wait_state(run, name))
        .trim()
        .to_owned()
}

#[test]
fn ctrl_c_under_a_job_control_shell_reaches_the_child_once() {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut pty = Pty::open();
    let mut run = job_shell(&g, &mut pty);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    let shim = ppid_of(&g, &mut run);
    check!(
        run,
        pgrp_of(child) == Some(child) && pgrp_of(shim) != Some(child),
        "the child leads a process group of its own: child's {:?}, shim's {:?}",
        pgrp_of(child),
        pgrp_of(shim)
    );
    check_eq!(
        run,
        tpgid_of(shim),
        Some(child),
        "the child's group is the terminal's foreground group, in the shim's place"
    );
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, shim, "INT", Marker::typed(&pty));
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
    let g = Sandbox::new();
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

/// An interactive bash (`bash -i`) leading a pty's session, as a person at
/// a terminal has it: prompts, job control, `fg`, `kill %1`.
struct Shell {
    pty: Pty,
    run: Running,
    /// How much of the transcript `expect` has looked at.
    seen: usize,
}

impl Shell {
    /// With `npm` on its PATH as the shim.
    fn start(g: &Sandbox) -> Shell {
        g.shim("npm");
        let mut cmd = g.command("/bin/bash");
        cmd.args(["--norc", "--noprofile", "-i"])
            .env("PS1", "$ ")
            .env("HISTFILE", "/dev/null")
            .env("TERM", "dumb");
        let (pty, run) = at_terminal(g, cmd);
        let mut shell = Shell { pty, run, seen: 0 };
        // Output, not the echo of what was typed: the echo shows `$((…))`.
        shell.line("echo ready-$((20 + 1))");
        shell.expect("ready-21");
        shell
    }

    fn pid(&self) -> i32 {
        self.run.pid()
    }

    /// Types `text` and Enter.
    fn line(&self, text: &str) {
        self.pty.type_bytes(format!("{text}\r").as_bytes());
    }

    /// Waits (bounded) until the terminal shows `needle` after what earlier
    /// calls saw.
    fn expect(&mut self, needle: &str) {
        let needle = needle.as_bytes();
        let mut end = None;
        let found = wait_until(WAIT, || {
            let t = self.pty.transcript.lock().unwrap();
            end = t[self.seen..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|i| self.seen + i + needle.len());
            end.is_some()
        });
        check!(
            self,
            found,
            "the terminal never showed {:?}",
            String::from_utf8_lossy(needle)
        );
        self.seen = end.unwrap_or(self.seen);
    }

    /// Leaves the shell, which must exit cleanly.
    fn exit(self) {
        self.line("exit");
        self.run.wait().expect_code(0);
    }

    fn report(&self) -> String {
        self.run.report()
    }
}

#[test]
fn ctrl_z_and_fg_at_an_interactive_bash_stop_and_resume_the_tool_in_the_foreground() {
    ctrl_z_and_fg_at_an_interactive_bash(false);
}

/// The same in strict mode: the tool in its network namespace is a job of
/// the shell's like any other.
#[test]
fn ctrl_z_and_fg_at_an_interactive_bash_work_in_strict_mode_too() {
    ctrl_z_and_fg_at_an_interactive_bash(true);
}

fn ctrl_z_and_fg_at_an_interactive_bash(strict: bool) {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut sh = Shell::start(&g);
    let bash = sh.pid();
    sh.line(if strict {
        "CLI_GUARD_STRICT=require npm install"
    } else {
        "npm install"
    });
    g.wait_env(&mut sh.run);
    let child = g.child_pid(&mut sh.run);
    let shim = ppid_of(&g, &mut sh.run);
    check!(
        sh,
        pgrp_of(child) == Some(child) && pgrp_of(shim) == Some(shim),
        "the job is the shim's group and the tool leads one of its own: shim's {:?}, tool's {:?}",
        pgrp_of(shim),
        pgrp_of(child)
    );
    check_eq!(
        sh,
        tpgid_of(bash),
        Some(child),
        "while the job runs in the foreground the terminal is the tool's group's"
    );

    sh.pty.type_bytes(b"\x1a");
    let stopped = wait_until(WAIT, || is_stopped(shim) && is_stopped(child));
    check!(
        sh,
        stopped,
        "Ctrl-Z must stop the tool and the shim: shim {:?}, tool {:?}",
        proc_state(shim),
        proc_state(child)
    );
    sh.expect("Stopped");
    check_eq!(
        sh,
        tpgid_of(bash),
        Some(bash),
        "with the job stopped the terminal is bash's"
    );

    sh.line("fg");
    let resumed = wait_until(WAIT, || !is_stopped(shim) && !is_stopped(child));
    check!(
        sh,
        resumed,
        "fg must resume both: shim {:?}, tool {:?}",
        proc_state(shim),
        proc_state(child)
    );
    let foreground = wait_until(WAIT, || tpgid_of(bash) == Some(child));
    check!(
        sh,
        foreground,
        "after fg the terminal is the tool's group's again, not {:?}",
        tpgid_of(bash)
    );
    pty_ctrl_c_once(&g, &sh, shim);

    g.release(7);
    sh.line("echo \"st-$?\"");
    sh.expect("st-7");
    check_eq!(
        sh,
        tpgid_of(bash),
        Some(bash),
        "after the job the terminal is bash's"
    );
    let isolation = g
        .log()
        .rows()
        .kind("start")
        .first()
        .map(|r| r["isolation"].clone());
    let want = if strict { "netns" } else { "none" };
    check!(
        sh,
        isolation.as_ref().is_some_and(|i| i == want),
        "the start row says isolation {want}: {isolation:?}"
    );
    sh.exit();
}

/// Ctrl-C at the terminal reaches the (trapping) tool exactly once.
fn pty_ctrl_c_once(g: &Sandbox, sh: &Shell, shim: i32) {
    sh.pty.type_bytes(b"\x03");
    expect_once(g, &sh.run, shim, "INT", Marker::typed(&sh.pty));
}

#[test]
fn kill_percent_one_at_an_interactive_bash_reaches_the_tool_exactly_once() {
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let mut sh = Shell::start(&g);
    let bash = sh.pid();
    sh.line("npm install &");
    g.wait_env(&mut sh.run);
    let child = g.child_pid(&mut sh.run);
    let shim = ppid_of(&g, &mut sh.run);
    check_eq!(
        sh,
        tpgid_of(bash),
        Some(bash),
        "a background job must not take the terminal"
    );
    check_eq!(
        sh,
        pgrp_of(child),
        Some(child),
        "the tool leads a process group of its own"
    );
    // `kill %1` signals the job's process group: the shim's.
    for sig in ["USR1", "TERM", "HUP"] {
        sh.line(&format!("kill -{sig} %1"));
        let marker = Marker::new("WINCH", || sh.line("kill -WINCH %1"));
        expect_once(&g, &sh.run, shim, sig, marker);
    }
    g.release(7);
    sh.line("wait $!; echo \"st-$?\"");
    sh.expect("st-7");
    sh.exit();
}

#[test]
fn a_group_kill_and_a_pid_kill_with_a_terminal_reach_the_child_exactly_once() {
    // The shim leads the pty's session: its group is the session's, the one
    // a hangup or a CI runner's group kill would hit.
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let cmd = g.shim_cmd("npm", ["install"]);
    let (_pty, mut run) = at_terminal(&g, cmd);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    check_eq!(
        run,
        tpgid_of(run.pid()),
        Some(child),
        "the tool's group has the terminal"
    );
    for sig in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGHUP] {
        send(-run.pid(), sig);
        let name = &sig.as_str()[3..];
        expect_once(&g, &run, run.pid(), name, Marker::kill(-run.pid(), name));
    }
    send(run.pid(), Signal::SIGUSR2);
    expect_once(&g, &run, run.pid(), "USR2", Marker::kill(run.pid(), "USR2"));
    g.finish(run, 0);
}

/// How many times SIGTERM from `timeout -s TERM` reaches the trapping tool,
/// run by timeout either directly or through its shim, and timeout's exit
/// code. Both of timeout's SIGTERMs (to its child, then to its process
/// group) arrive while that child is stopped, so two sends of one signal
/// coalesce as the kernel would coalesce them for a busy process, the same
/// way in both runs; timeout's SIGCONT then lets it go on. Timeout's timer is
/// fired by sending it SIGALRM, which it handles as its timer's expiry.
fn terms_from_timeout(through_shim: bool) -> (usize, Option<i32>, String) {
    let g = Sandbox::new();
    let tool = g.tool("npm", TRAP_TOOL);
    let mut cmd = g.command(require("timeout"));
    cmd.args(["-s", "TERM", "600"])
        .arg(if through_shim { g.shim("npm") } else { tool })
        .arg("install");
    let (_pty, mut run) = at_terminal(&g, cmd);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    let timed = if through_shim {
        let shim = ppid_of(&g, &mut run);
        // Counts alone could not tell: a SIGTERM that reached the tool
        // twice, directly and forwarded, may coalesce into one.
        check!(
            run,
            pgrp_of(child) != pgrp_of(run.pid()),
            "timeout's group kill must reach only the shim, not also the tool: both in group {:?}",
            pgrp_of(child)
        );
        shim
    } else {
        child
    };
    send(timed, Signal::SIGSTOP);
    let stopped = wait_until(WAIT, || is_stopped(timed));
    check!(run, stopped, "timeout's child did not stop");
    send(run.pid(), Signal::SIGALRM);
    let arrived = wait_until(WAIT, || count(&g, "TERM") >= 1);
    check!(run, arrived, "SIGTERM from timeout never reached the tool");
    // Whatever timeout's child forwards it forwards before a later signal.
    marked(&g, &run, timed, Marker::kill(timed, "TERM"));
    let terms = count(&g, "TERM");
    g.release(0);
    let out = run.wait();
    (terms, out.code(), out.report())
}

#[test]
fn timeout_s_term_reaches_the_tool_as_it_would_without_the_shim() {
    let (direct, direct_code, direct_report) = terms_from_timeout(false);
    assert_eq!(direct, 1, "the harness: directly, one SIGTERM\n\n{direct_report}");
    let (shimmed, shimmed_code, shimmed_report) = terms_from_timeout(true);
    assert_eq!(
        shimmed, direct,
        "through the shim SIGTERM must reach the tool as often as directly\n\n{shimmed_report}"
    );
    assert_eq!(
        shimmed_code, direct_code,
        "timeout must end the same either way\n\n{shimmed_report}"
    );
}

#[test]
fn a_raw_mode_reader_gets_the_terminal_and_leaves_it_usable() {
    // Only the foreground group may change the terminal's modes or read it:
    // from the background `stty` would stop on SIGTTOU and `dd` on SIGTTIN.
    let g = Sandbox::new();
    g.tool(
        "npm",
        r#"rec "$@"
read -r line < /proc/$$/stat; set -- $line; echo "$5 $8" > "$S/held.tmp" && mv "$S/held.tmp" "$S/held"
saved=$(stty -g)
printf '%s\n' "$saved" > "$S/modes.tmp" && mv "$S/modes.tmp" "$S/modes"
stty raw -echo
: > "$S/raw"
key=$(dd bs=1 count=1 2>/dev/null)
stty "$saved"
printf '%s' "$key" > "$S/key.tmp" && mv "$S/key.tmp" "$S/key"
exit 0
"#,
    );
    let mut sh = Shell::start(&g);
    sh.line("npm install");
    let child = g.child_pid(&mut sh.run);
    check_eq!(
        sh,
        String::from_utf8_lossy(&g.wait_state(&mut sh.run, "held")).trim(),
        format!("{child} {child}"),
        "from its start the tool leads the terminal's foreground group (pgrp, tpgid)"
    );
    g.wait_state(&mut sh.run, "raw");
    sh.pty.type_bytes(b"q");
    check_eq!(
        sh,
        g.wait_state(&mut sh.run, "key"),
        b"q".to_vec(),
        "the raw-mode reader read the key typed at the terminal"
    );
    sh.line("echo \"st-$?\"");
    sh.expect("st-0");
    let after = g.state_path("after");
    sh.line(&format!(
        "stty -g > '{}'; echo \"saved-$((1 + 1))\"",
        after.display()
    ));
    sh.expect("saved-2");
    check_eq!(
        sh,
        fs::read_to_string(&after).unwrap_or_default(),
        String::from_utf8_lossy(&g.wait_state(&mut sh.run, "modes")).into_owned(),
        "the terminal's modes after the job are those it started with"
    );
    sh.exit();
}

#[test]
fn the_terminal_is_the_shims_again_after_a_tool_that_died_holding_it() {
    // A session leader without job control (sh -c) runs the shim in its
    // own process group: the group the terminal must come back to.
    let g = Sandbox::new();
    let stat = r#"read -r line < /proc/$$/stat; set -- $line; echo "$5 $8""#;
    g.tool(
        "npm",
        &format!("rec \"$@\"\n{stat} > \"$S/held.tmp\" && mv \"$S/held.tmp\" \"$S/held\"\nkill -TERM $$\n"),
    );
    g.shim("npm");
    let s = g.state.display();
    let mut cmd = g.command("/bin/sh");
    cmd.arg("-c").arg(format!(
        "npm install\n{stat} > '{s}/after.tmp' && mv '{s}/after.tmp' '{s}/after'\n"
    ));
    let (_pty, mut run) = at_terminal(&g, cmd);
    let child = g.child_pid(&mut run);
    let pair = |data: Vec<u8>| -> Vec<i32> {
        String::from_utf8_lossy(&data)
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect()
    };
    let held = pair(g.wait_state(&mut run, "held"));
    check_eq!(
        run,
        held,
        vec![child, child],
        "the tool leads its group, which has the terminal (pgrp, tpgid)"
    );
    let after = pair(g.wait_state(&mut run, "after"));
    check_eq!(
        run,
        after,
        vec![run.pid(), run.pid()],
        "after the tool died the terminal is the shim's group's again (pgrp, tpgid)"
    );
    run.wait().expect_code(0);
}

#[test]
fn ctrl_z_where_no_shell_could_continue_the_job_leaves_the_tool_running() {
    // The shim leads the pty's session, so its group is orphaned: the kernel
    // discards a terminal stop for it, as it would for the tool in the
    // shim's place. The tool's own group is not orphaned and does stop; the
    // shim's relayed stop is discarded, and the shim must continue the tool
    // rather than leave it stopped with nobody to send SIGCONT. Ctrl-C
    // after Ctrl-Z shows it: a stopped tool would not run its trap.
    let g = Sandbox::new();
    g.tool("npm", TRAP_TOOL);
    let cmd = g.shim_cmd("npm", ["install"]);
    let (pty, mut run) = at_terminal(&g, cmd);
    g.wait_env(&mut run);
    let child = g.child_pid(&mut run);
    pty.type_bytes(b"\x1a");
    pty.type_bytes(b"\x03");
    expect_once(&g, &run, run.pid(), "INT", Marker::typed(&pty));
    let running = wait_until(WAIT, || !is_stopped(child) && !is_stopped(run.pid()));
    check!(
        run,
        running,
        "neither may stay stopped: shim {:?}, tool {:?}",
        proc_state(run.pid()),
        proc_state(child)
    );
    check_eq!(
        run,
        tpgid_of(run.pid()),
        Some(child),
        "the tool's group has the terminal again"
    );
    g.finish(run, 0);
}
