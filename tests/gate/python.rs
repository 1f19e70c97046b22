//! The python shims: `python3 -m pip …` runs guarded under pip's policy
//! with the interpreter found later on PATH; any other python invocation
//! is the real interpreter exec'd in the shim's place, with no gate and no
//! audit row.

use std::fs;
use std::os::unix::fs::symlink;

use crate::util::*;

/// `python3 -c SCRIPT ARGS` with bash as the "interpreter": the same
/// process (exec in place), the same arguments after argv[0], which is the
/// path the interpreter was found at (CPython sets sys.executable from it),
/// no proxy, no audit log.
#[test]
fn any_other_python_run_is_the_interpreter_itself_exec_in_place() {
    let g = Sandbox::new();
    symlink(bash(), g.real.join("python3")).unwrap();
    let dump = g.state_path("cmdline");
    let script = format!(
        "cat /proc/$$/cmdline > '{d}.tmp'; echo $$ > '{d}.pid'; env -0 > '{d}.env'; mv '{d}.tmp' '{d}'; exit 3",
        d = dump.display()
    );
    let mut cmd = g.shim_cmd("python3", ["-c", script.as_str(), "x y", "-m", "pip"]);
    cmd.env("HTTPS_PROXY", "http://user.proxy:1");
    let run = g.start(cmd);
    let pid = run.pid();
    let out = run.wait();
    out.expect_code(3);
    let got = split_nul(&fs::read(&dump).unwrap_or_default());
    let real = g.real.join("python3");
    let want: Vec<Vec<u8>> = [real.to_str().unwrap(), "-c", script.as_str(), "x y", "-m", "pip"]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    check_eq!(out, got, want, "the interpreter's argv");
    let child_pid = fs::read_to_string(format!("{}.pid", dump.display())).unwrap_or_default();
    check_eq!(
        out,
        child_pid.trim(),
        pid.to_string(),
        "exec in place: the same process"
    );
    let env = ChildEnv::parse(&fs::read(format!("{}.env", dump.display())).unwrap_or_default());
    check_eq!(
        out,
        env.get("HTTPS_PROXY"),
        Some("http://user.proxy:1"),
        "no gate"
    );
    check!(out, env.get("CLI_GUARD_AUDIT_ID").is_none(), "no audit id");
    check!(out, !g.audit.exists(), "no audit row");
}

#[test]
fn python_dash_m_venv_and_a_script_are_not_guarded() {
    let g = Sandbox::new();
    g.tool("python3", "rec \"$@\"\nexit 0\n");
    for args in [
        &["-m", "venv", "env"][..],
        &["app.py", "-m", "pip"],
        &["-I", "-c", "1"],
    ] {
        let out = g.run(g.shim_cmd("python3", args));
        out.expect_code(0);
        let argv = split_nul(&fs::read(g.state_path("argv")).unwrap_or_default());
        check_eq!(out, argv.len(), args.len() + 1, "{args:?}");
    }
    assert!(!g.audit.exists(), "no audit row for an unguarded python run");
}

/// `python3 -m pip download six`: a start row under pip's policy, the fake
/// interpreter as the real path, the gate in the child's environment.
#[test]
fn python_dash_m_pip_runs_under_pips_policy() {
    let g = Sandbox::new();
    let real = g.tool("python3", "rec \"$@\"\nexit 0\n");
    let out = g.run(g.shim_cmd("python3", ["-m", "pip", "download", "six"]));
    out.expect_code(0);
    let argv = split_nul(&fs::read(g.state_path("argv")).unwrap_or_default());
    let tail: Vec<&[u8]> = argv.iter().skip(1).map(Vec::as_slice).collect();
    check_eq!(out, tail, vec![&b"-m"[..], b"pip", b"download", b"six"], "argv");
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap_or_default());
    check!(
        out,
        env.var("HTTPS_PROXY").starts_with("http://cli-guard:"),
        "the gate is in place"
    );
    check_eq!(out, env.get("PIP_PROXY"), env.get("HTTPS_PROXY"), "PIP_PROXY");
    let log = g.log();
    let start = log.rows().kind("start");
    check_eq!(out, start.len(), 1, "one start row");
    check_eq!(out, start[0]["tool"], "pip", "start.tool");
    check_eq!(out, start[0]["mode"], "enforce", "start.mode");
    check_eq!(out, start[0]["subcommand"], "download", "start.subcommand");
    check_eq!(
        out,
        start[0]["real_path"].as_str(),
        real.to_str(),
        "start.real_path is the interpreter"
    );
    check_eq!(out, start[0]["argv"][0], "python3", "start.argv[0]");
}

/// The tool's subcommand is read after `-m MODULE`: `python3 -m poetry run`
/// runs the project's code, observed; `-Im pdm add` is enforced.
#[test]
fn the_modules_subcommand_decides_the_mode() {
    let g = Sandbox::new();
    g.tool("python3", "rec \"$@\"\nexit 0\n");
    g.run(g.shim_cmd("python3", ["-m", "poetry", "run", "pytest"]))
        .expect_code(0);
    g.run(g.shim_cmd("python3", ["-Im", "pdm", "add", "x"]))
        .expect_code(0);
    let log = g.log();
    let start = log.rows().kind("start");
    assert_eq!(start.len(), 2, "{log:?}");
    assert_eq!(
        (&start[0]["tool"], &start[0]["mode"], &start[0]["subcommand"]),
        (&"poetry".into(), &"observe".into(), &"run".into())
    );
    assert_eq!(
        (&start[1]["tool"], &start[1]["mode"], &start[1]["subcommand"]),
        (&"pdm".into(), &"enforce".into(), &"add".into())
    );
}

#[test]
fn a_missing_interpreter_is_127_either_way() {
    let g = Sandbox::new();
    for args in [&["-c", "1"][..], &["-m", "pip", "install"]] {
        let out = g.run(g.shim_cmd("python3.99", args));
        out.expect_code(127);
        check!(out, out.stderr().contains("python3.99"), "names the interpreter");
    }
}
