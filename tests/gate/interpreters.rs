//! The python shims without side effects: the interpreter gets the path it
//! was found at as argv[0] (CPython sets sys.executable from it), a
//! version manager's shim that hands the command line straight back to
//! cli-guard (pyenv's with the system python) is skipped rather than
//! looped with, the hard-linked shim that a tool resolving links runs by
//! its own path still works, and a virtualenv made with the shims first
//! survives `install.sh --uninstall`.
//!
//! The fake interpreters are sh scripts, or links to bash, so these run
//! offline with nothing but the machine's shell; the ones with the real
//! python3 are `#[ignore]`d (`.ci/run` runs them).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use crate::util::install::{self, install_cmd, run_install};
use crate::util::*;

/// A version manager's shim for python3 in `dir`, as pyenv's is with the
/// system python: it looks python3 up on PATH without its own directory
/// and runs what it finds, by path, with the same arguments. `exec`: in
/// place (pyenv's exec); otherwise as a child, then its own exit (pyenv's
/// pip-rehash hook, which rehashes after pip).
fn forwarder(g: &Sandbox, dir: &Path, exec: bool) {
    fs::create_dir_all(dir).unwrap();
    let run = if exec {
        "exec \"$found\" \"$@\""
    } else {
        "\"$found\" \"$@\"\nexit $?"
    };
    g.script(
        &dir.join("python3"),
        &format!(
            "mine=$(cd \"$(dirname \"$0\")\" && pwd)\n\
             rest=\n\
             IFS=:\n\
             for d in $PATH; do [ \"$d\" = \"$mine\" ] || rest=\"$rest${{rest:+:}}$d\"; done\n\
             unset IFS\n\
             echo x >> \"$S/forwarded\"\n\
             found=$(PATH=$rest command -v python3)\n\
             {run}\n"
        ),
    );
}

/// The number of times the forwarder ran.
fn forwarded(g: &Sandbox) -> usize {
    fs::read_to_string(g.state_path("forwarded"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// shims/python3, then a forwarder, then the real (fake) python3: `python3
/// -c …` comes back through the forwarder once, then runs the real one,
/// unguarded, in the same process.
#[test]
fn a_forwarder_that_hands_python_back_is_skipped_not_looped_with() {
    let mut g = Sandbox::new();
    g.shim("python3");
    let fwd = g.dir("fwd");
    forwarder(&g, &fwd, true);
    let real = g.tool("python3", "rec \"$@\"\nexit 0\n");
    g.path = vec![
        g.shims.clone(),
        fwd,
        g.real.clone(),
        "/usr/bin".into(),
        "/bin".into(),
    ];
    let out = g.run(g.shim_cmd("python3", ["-c", "print(1)"]));
    out.expect_code(0);
    check_eq!(out, forwarded(&g), 1, "the forwarder ran once");
    let argv = split_nul(&fs::read(g.state_path("argv")).unwrap_or_default());
    check_eq!(
        out,
        argv,
        vec![
            real.to_str().unwrap().as_bytes().to_vec(),
            b"-c".to_vec(),
            b"print(1)".to_vec()
        ],
        "the real interpreter ran, by its path"
    );
    check!(out, !g.audit.exists(), "no row for an unguarded run");
}

/// The same with `python3 -m pip`, the forwarder running its find as a
/// child (as pyenv's pip-rehash hook does): one guarded invocation, whose
/// tool is the real interpreter behind the gate, not a gate in a gate.
#[test]
fn a_forwarder_that_hands_python_m_pip_back_stays_behind_one_gate() {
    let mut g = Sandbox::new();
    g.shim("python3");
    let fwd = g.dir("fwd");
    forwarder(&g, &fwd, false);
    g.tool("python3", "rec \"$@\"\nexit 0\n");
    g.path = vec![
        g.shims.clone(),
        fwd.clone(),
        g.real.clone(),
        "/usr/bin".into(),
        "/bin".into(),
    ];
    let out = g.run(g.shim_cmd("python3", ["-m", "pip", "download", "six"]));
    out.expect_code(0);
    check_eq!(out, forwarded(&g), 1, "the forwarder ran once");
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap_or_default());
    check!(
        out,
        env.get("HTTPS_PROXY")
            .is_some_and(|p| p.starts_with("http://cli-guard:")),
        "the real interpreter runs behind the gate"
    );
    let log = g.log();
    let starts = log.rows().kind("start");
    check_eq!(out, starts.len(), 1, "one guarded invocation:\n{}", log);
    check_eq!(out, starts[0]["tool"], "pip", "under pip's policy");
    check_eq!(
        out,
        starts[0]["real_path"].as_str(),
        fwd.join("python3").to_str(),
        "its tool is what PATH gave"
    );
}

/// A program that execs `python3` by name again in the same process (not a
/// forwarder: the name, not the shim's path) gets the same interpreter.
#[test]
fn an_interpreter_that_execs_python_by_name_again_is_not_taken_for_a_forwarder() {
    let g = Sandbox::new();
    g.shim("python3");
    g.tool(
        "python3",
        "echo x >> \"$S/runs\"\n\
         if [ \"$(wc -l < \"$S/runs\")\" -lt 2 ]; then exec python3 \"$@\"; fi\n\
         rec \"$@\"\nexit 0\n",
    );
    let out = g.run(g.shim_cmd("python3", ["-c", "1"]));
    out.expect_code(0);
    let runs = fs::read_to_string(g.state_path("runs")).unwrap_or_default();
    check_eq!(out, runs.lines().count(), 2, "the same interpreter ran twice");
}

/// A tool that resolves a python shim's links (uv, virtualenv, pdm's
/// findpython) runs what it finds by its own path: install.sh's python
/// shims are hard links, so that is still `python3`, which runs the
/// interpreter, and `-m pip` still meets the gate.
#[test]
fn the_hard_linked_python_shim_run_by_its_own_path_is_python() {
    let inst = install::with_rc();
    let shim = inst.shims().join("python3");
    assert_eq!(
        fs::canonicalize(&shim).ok(),
        Some(shim.clone()),
        "the shim resolves to itself"
    );
    let g = Sandbox::new();
    let real = g.tool("python3", "rec \"$@\"\nexit 0\n");
    let mut cmd = g.command(&shim);
    cmd.arg0(&shim).args(["-I", "-c", "print(1)"]);
    let out = g.run(cmd);
    out.expect_code(0);
    let argv = split_nul(&fs::read(g.state_path("argv")).unwrap_or_default());
    check_eq!(
        out,
        argv[0],
        real.to_str().unwrap().as_bytes(),
        "the interpreter ran"
    );
    let mut cmd = g.command(&shim);
    cmd.arg0(&shim).args(["-I", "-m", "pip", "download", "six"]);
    let out = g.run(cmd);
    out.expect_code(0);
    let log = g.log();
    check!(
        out,
        !log.rows().kind("start").tool("pip").is_empty(),
        "-m pip is guarded"
    );
}

/// The real python3 through the shim reports its own path, and a
/// virtualenv made with the shims first records no cli-guard path and
/// still runs after `install.sh --uninstall`.
#[test]
#[ignore = "the real python3: run by .ci/run (cargo test -- --ignored)"]
fn a_virtualenv_made_with_the_shims_first_survives_uninstall() {
    let tmp = TempDir::new();
    let home = tmp.path().join("home");
    let prefix = tmp.path().join("prefix");
    fs::create_dir_all(&home).unwrap();
    let args = ["--prefix", prefix.to_str().unwrap()];
    let out = run_install(install_cmd(&home, "/bin/bash", &args));
    check_eq!(out, out.code(), Some(0), "install");
    let shims = prefix.join("share/cli-guard/shims");
    let mut path = vec![shims.clone()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).unwrap();
    let python = |args: &[&str]| {
        let mut cmd = command("python3");
        cmd.args(args)
            .env("PATH", &path)
            .env("HOME", &home)
            .env("CLI_GUARD_AUDIT_LOG", tmp.path().join("audit.jsonl"))
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running::spawn(cmd, None, None).wait_for(std::time::Duration::from_secs(120))
    };
    let out = python(&["-c", "import sys; print(sys.executable)"]);
    check_eq!(out, out.code(), Some(0), "python3 through the shim");
    let exe = out.stdout().trim().to_string();
    check!(
        out,
        !exe.starts_with(shims.to_str().unwrap()) && !exe.contains("cli-guard"),
        "sys.executable is the interpreter's own path: {exe}"
    );
    let out = python(&["-m", "venv", "venv"]);
    check_eq!(out, out.code(), Some(0), "python3 -m venv through the shim");
    let venv = tmp.path().join("venv");
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    check!(out, !cfg.contains(prefix.to_str().unwrap()), "pyvenv.cfg:\n{cfg}");
    let out = run_install(install_cmd(
        &home,
        "/bin/bash",
        &["--prefix", prefix.to_str().unwrap(), "--uninstall"],
    ));
    check_eq!(out, out.code(), Some(0), "uninstall");
    assert!(!shims.exists(), "the shims are gone");
    for name in ["python", "python3"] {
        let out = command(venv.join("bin").join(name))
            .args(["-c", "import sys; print(sys.prefix)"])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} in the venv after uninstall: {out:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            venv.to_str().unwrap(),
            "{name} runs in its venv"
        );
    }
}
