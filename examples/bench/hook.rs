//! Section 7, the prompt hook of `cli-guard init`: what one evaluation of
//! the hook costs in bash, zsh and fish, when the shims already lead PATH
//! (the fast path, every prompt but the rare one) and when a virtualenv's
//! `bin` was just put in front of them (the hook rebuilds PATH). Each
//! shell runs the code `cli-guard init SHELL` prints, then times, in rounds,
//! N calls of the hook against N calls of an empty function (the cost of a
//! call and a loop step in that shell), and N assignments of PATH with the
//! hook after each against the same without it, with the shell's own clock
//! (bash and zsh: `$EPOCHREALTIME`; fish has none, so `date +%s%N` at each
//! end, which the loop without the hook pays too). In fish the hook is the
//! handler of PATH's changes, so the fix is the assignment with the handler
//! against the assignment without it. A shell that is not installed is
//! left out of the table and said so.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::procs::Proc;
use crate::stats::median_f64;
use crate::{Bench, Outcome};

/// Rounds per shell: the median of their per-call costs is reported.
const ROUNDS: usize = 7;

/// A realistic PATH after the shims: the usual system directories and a
/// couple of the user's.
const REST_OF_PATH: &str =
    "/home/u/.local/bin:/home/u/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One shell's timing loop: prints, per round, the nanoseconds of four
/// loops: the hook with PATH right, the empty function, the hook with a
/// directory put in front, the empty function with the same assignment.
fn script(shell: &str, init: &Path, calls: usize) -> String {
    let init = init.display();
    match shell {
        // fish's hook runs on every change of PATH: the fix is timed as N
        // assignments with the handler, less N without it (erased, then
        // loaded again for the next round).
        "fish" => format!(
            "source '{init}'\n\
             set -g base $PATH\n\
             function noop; end\n\
             function now; date +%s%N; end\n\
             for r in (seq {ROUNDS})\n\
             set t0 (now)\n\
             for i in (seq {calls}); __cli_guard_front; end\n\
             set t1 (now)\n\
             for i in (seq {calls}); noop; end\n\
             set t2 (now)\n\
             for i in (seq {calls}); set -gx PATH /work/app/.venv/bin $base; end\n\
             set t3 (now)\n\
             functions -e __cli_guard_front\n\
             set t4 (now)\n\
             for i in (seq {calls}); set -gx PATH /work/app/.venv/bin $base; end\n\
             set t5 (now)\n\
             source '{init}'\n\
             echo (math $t1 - $t0) (math $t2 - $t1) (math $t3 - $t2) (math $t5 - $t4)\n\
             end\n"
        ),
        // bash and zsh: nanoseconds from the shell's own clock.
        _ => {
            let clock = if shell == "zsh" {
                "zmodload zsh/datetime\nnow() { REPLY=$(( epochtime[1] * 1000000000 + epochtime[2] )); }\n"
            } else {
                // EPOCHREALTIME has six decimals: microseconds.
                "now() { local t=${EPOCHREALTIME/[.,]/}; REPLY=$(( t * 1000 )); }\n"
            };
            format!(
                "{clock}source '{init}'\n\
                 base=$PATH\n\
                 noop() {{ :; }}\n\
                 for ((r = 0; r < {ROUNDS}; r++)); do\n\
                 now; t0=$REPLY\n\
                 for ((i = 0; i < {calls}; i++)); do __cli_guard_front; done\n\
                 now; t1=$REPLY\n\
                 for ((i = 0; i < {calls}; i++)); do noop; done\n\
                 now; t2=$REPLY\n\
                 for ((i = 0; i < {calls}; i++)); do PATH=/work/app/.venv/bin:$base; __cli_guard_front; done\n\
                 now; t3=$REPLY\n\
                 for ((i = 0; i < {calls}; i++)); do PATH=/work/app/.venv/bin:$base; noop; done\n\
                 now; t4=$REPLY\n\
                 echo $(( t1 - t0 )) $(( t2 - t1 )) $(( t3 - t2 )) $(( t4 - t3 ))\n\
                 done\n"
            )
        }
    }
}

/// Where `program` is on PATH, if anywhere.
fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One shell's per-call costs in microseconds: (PATH right, PATH to fix).
fn measure(b: &Bench, shell: &str, calls: usize) -> Result<Option<(f64, f64)>> {
    let Some(program) = which(shell) else {
        return Ok(None);
    };
    let dir = b.work.join(format!("hook-{shell}"));
    let shims = dir.join("my shims");
    fs::create_dir_all(&shims)?;
    let init = Command::new(&b.bin)
        .args(["init", shell, "--shims"])
        .arg(&shims)
        .output()
        .context("cannot run cli-guard init")?;
    ensure!(init.status.success(), "cli-guard init {shell}: {init:?}");
    let init_file = dir.join("init");
    fs::write(&init_file, &init.stdout)?;
    let script_file = dir.join("bench");
    fs::write(&script_file, script(shell, &init_file, calls))?;
    let out_file = dir.join("out");
    let mut cmd = Command::new(&program);
    if shell == "zsh" {
        // No start-up files: only the hook's code.
        cmd.arg("-f");
    } else if shell == "bash" {
        cmd.args(["--norc", "--noprofile"]);
    } else {
        cmd.arg("--no-config");
    }
    cmd.arg(&script_file)
        .env_clear()
        .env(
            "PATH",
            format!("{}:{REST_OF_PATH}:/usr/bin:/bin", shims.display()),
        )
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_file)?)
        .stderr(Stdio::inherit());
    let mut proc = Proc::spawn(cmd, shell, None)?;
    let status = proc.wait(Duration::from_secs(600))?;
    ensure!(status.success(), "{shell}'s timing loop failed ({status})");
    let text = fs::read_to_string(&out_file)?;
    let mut right = Vec::new();
    let mut fix = Vec::new();
    for line in text.lines() {
        let ns: Vec<f64> = line
            .split_whitespace()
            .map(str::parse::<f64>)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{shell}: not four numbers: {line:?}"))?;
        let [hook, empty, hook_fix, empty_fix] = ns[..] else {
            bail!("{shell}: not four numbers: {line:?}");
        };
        let per_call = |a: f64, b: f64| (a - b).max(0.0) / calls as f64 / 1000.0;
        right.push(per_call(hook, empty));
        fix.push(per_call(hook_fix, empty_fix));
    }
    ensure!(
        right.len() == ROUNDS,
        "{shell}: {} rounds of {ROUNDS}:\n{text}",
        right.len()
    );
    Ok(Some((median_f64(&right), median_f64(&fix))))
}

pub(crate) fn hook(b: &Bench) -> Result<Outcome> {
    let calls = b.sizes.hook_calls;
    let mut t = format!(
        "7. Prompt hook (cli-guard init): one evaluation, median of {ROUNDS} rounds of {calls} calls, \
         less an empty function's\n"
    );
    let _ = writeln!(
        t,
        "  {:<8} {:>22} {:>30}",
        "shell", "shims already first", "a virtualenv put in front"
    );
    let mut shells = Vec::new();
    for shell in ["bash", "zsh", "fish"] {
        match measure(b, shell, calls)? {
            Some((right, fix)) => {
                let _ = writeln!(
                    t,
                    "  {shell:<8} {:>22} {:>30}",
                    format!("{right:.2} us"),
                    format!("{fix:.2} us")
                );
                shells.push(json!({"shell": shell, "right_us": right, "fix_us": fix}));
            }
            None => {
                let _ = writeln!(t, "  {shell:<8} {:>22}", "not installed");
            }
        }
    }
    ensure!(
        !shells.is_empty(),
        "no shell to time the hook in (bash, zsh, fish)"
    );
    let _ = writeln!(
        t,
        "  (no process is started by the hook; the fix rebuilds PATH of 10 entries in the shell)"
    );
    Ok(Outcome {
        key: "hook",
        table: t,
        json: json!({"calls": calls, "rounds": ROUNDS, "shells": Value::Array(shells)}),
        verdicts: Vec::new(),
    })
}
