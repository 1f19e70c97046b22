//! Shim mode from the child's side: its environment and argv, how the real
//! tool is found on PATH, and exit codes.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::util::PROXY_VARS;
use crate::util::*;

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const AWS_METADATA: [&str; 3] = ["169.254.169.254", "169.254.170.2", "fd00:ec2::254"];
const HOSTILE: &str = "http://evil.invalid:1";

fn list(s: &str) -> BTreeSet<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every proxy-related variable a user or a machine might have set, hostile.
fn hostile_env() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = PROXY_VARS.iter().map(|k| (*k, HOSTILE)).collect();
    v.extend([
        ("NO_PROXY", "*"),
        ("no_proxy", "*"),
        ("npm_config_https_proxy", HOSTILE),
        ("npm_config_proxy", HOSTILE),
        ("npm_config_noproxy", "*"),
        ("YARN_HTTPS_PROXY", HOSTILE),
        ("YARN_HTTP_PROXY", HOSTILE),
        ("CARGO_HTTP_PROXY", HOSTILE),
        ("PIP_PROXY", HOSTILE),
        ("NODE_USE_ENV_PROXY", "0"),
    ]);
    v
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// Arguments that a careless shim would mangle.
fn awkward_args() -> Vec<Vec<u8>> {
    vec![
        b"install".to_vec(),
        b"\xff\xfe not utf-8".to_vec(),
        b"caf\xe9".to_vec(),
        Vec::new(),
        b"two words".to_vec(),
        b"line\nbreak".to_vec(),
        b"--flag=x y".to_vec(),
        b"*".to_vec(),
        b"$HOME".to_vec(),
        b"-".to_vec(),
        b"\x01\x7f".to_vec(),
        "ünïcödé ✓".as_bytes().to_vec(),
    ]
}

// ----- environment ---------------------------------------------------------

#[test]
fn every_proxy_variable_is_the_same_loopback_url() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let url = env.var("HTTPS_PROXY").to_owned();
    for var in PROXY_VARS {
        check_eq!(run, env.var(var), url.as_str(), "{var} must equal HTTPS_PROXY");
    }
    let proxy = env.proxy();
    check_eq!(
        run,
        proxy.host.as_str(),
        "127.0.0.1",
        "the proxy listens on loopback ({url})"
    );
    check!(run, proxy.addr.port() != 0, "a real port ({url})");
    let a = proxy.connect("evil.example:443");
    check_eq!(run, a.status, 403, "the proxy at {url} answers\n{}", a.report());
    g.finish(run, 0);
}

#[test]
fn hostile_proxy_settings_from_the_parent_are_replaced() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &hostile_env());
    let url = env.proxy().url;
    let overrides = [
        "npm_config_https_proxy",
        "npm_config_proxy",
        "YARN_HTTPS_PROXY",
        "YARN_HTTP_PROXY",
    ];
    for var in PROXY_VARS.iter().chain(&overrides) {
        check_eq!(run, env.var(var), url.as_str(), "{var} must be replaced");
    }
    for var in ["NO_PROXY", "no_proxy"] {
        check_eq!(
            run,
            list(env.var(var)),
            set_of(&LOOPBACK),
            "{var}=* must not open a hole"
        );
    }
    check_eq!(run, env.var("NODE_USE_ENV_PROXY"), "1", "NODE_USE_ENV_PROXY");
    g.finish(run, 0);
}

#[test]
fn no_proxy_is_loopback_only_for_enforced_tools() {
    for tool in ["npm", "cargo", "pip", "brew", "go"] {
        let g = Sandbox::new();
        let (run, env) = g.session(tool, &[("NO_PROXY", "*"), ("no_proxy", ".example.com")]);
        for var in ["NO_PROXY", "no_proxy"] {
            check_eq!(run, list(env.var(var)), set_of(&LOOPBACK), "{tool}: {var}");
        }
        g.finish(run, 0);
    }
}

#[test]
fn aws_no_proxy_also_lets_instance_metadata_bypass_the_proxy() {
    let g = Sandbox::new();
    let (run, env) = g.session("aws", &[("NO_PROXY", "*"), ("no_proxy", "*")]);
    let mut want = set_of(&LOOPBACK);
    want.extend(set_of(&AWS_METADATA));
    for var in ["NO_PROXY", "no_proxy"] {
        check_eq!(run, list(env.var(var)), want, "aws: {var}");
    }
    g.finish(run, 0);
}

#[test]
fn node_tools_get_npm_and_yarn_overrides_and_node_use_env_proxy() {
    for tool in ["npm", "npx", "pnpm", "yarn"] {
        let g = Sandbox::new();
        let (run, env) = g.session(tool, &[]);
        let url = env.proxy().url;
        for var in [
            "npm_config_https_proxy",
            "npm_config_proxy",
            "YARN_HTTPS_PROXY",
            "YARN_HTTP_PROXY",
        ] {
            check_eq!(run, env.var(var), url.as_str(), "{tool}: {var}");
        }
        check_eq!(
            run,
            list(env.var("npm_config_noproxy")),
            list(env.var("NO_PROXY")),
            "{tool}: npm_config_noproxy"
        );
        check_eq!(
            run,
            env.var("NODE_USE_ENV_PROXY"),
            "1",
            "{tool}: NODE_USE_ENV_PROXY"
        );
        g.finish(run, 0);
    }
}

#[test]
fn cargo_gets_cargo_http_proxy() {
    let g = Sandbox::new();
    let (run, env) = g.session("cargo", &[("CARGO_HTTP_PROXY", HOSTILE)]);
    check_eq!(
        run,
        env.var("CARGO_HTTP_PROXY"),
        env.proxy().url.as_str(),
        "CARGO_HTTP_PROXY"
    );
    g.finish(run, 0);
}

#[test]
fn pip_tools_get_pip_proxy() {
    for tool in ["pip", "pip3", "uv"] {
        let g = Sandbox::new();
        let (run, env) = g.session(tool, &[("PIP_PROXY", HOSTILE)]);
        check_eq!(
            run,
            env.var("PIP_PROXY"),
            env.proxy().url.as_str(),
            "{tool}: PIP_PROXY"
        );
        g.finish(run, 0);
    }
}

#[test]
fn the_rest_of_the_environment_is_inherited_unchanged() {
    let g = Sandbox::new();
    let odd = "a=b c\tdé;$(x)";
    let (run, env) = g.session("npm", &[("FOO", "bar"), ("ODD_VALUE", odd)]);
    check_eq!(run, env.var("FOO"), "bar", "FOO");
    check_eq!(run, env.var("ODD_VALUE"), odd, "ODD_VALUE");
    check_eq!(run, env.var("PATH"), g.path_var().to_str().unwrap(), "PATH");
    check_eq!(run, env.var("HOME"), g.home.to_str().unwrap(), "HOME");
    check_eq!(
        run,
        env.var("CLI_GUARD_AUDIT_LOG"),
        g.audit.to_str().unwrap(),
        "CLI_GUARD_AUDIT_LOG"
    );
    g.finish(run, 0);
}

#[test]
fn the_audit_id_in_the_env_is_the_one_in_the_audit_log() {
    let g = Sandbox::new();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let (run, env) = g.session("npm", &[]);
    let pid = run.pid();
    let id = env.audit_id().to_owned();
    let out = g.finish(run, 0);
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    check!(
        out,
        is_audit_id(&id),
        "CLI_GUARD_AUDIT_ID={id:?} is not <12 hex>-<32 hex>"
    );
    let ms = u128::from_str_radix(&id[..12], 16).unwrap();
    check!(
        out,
        before <= ms && ms <= after,
        "the ID's time part {ms} is not the start time ({before}..{after})"
    );
    let log = g.log();
    let start = log.rows().of(&id).kind("start");
    check_eq!(out, start.len(), 1, "one start record with the child's ID");
    check_eq!(out, start[0]["pid"], pid, "start.pid is the shim's pid");
    check_eq!(
        out,
        log.rows().of(&id).kind("end").len(),
        1,
        "one end record with the child's ID"
    );
}

#[test]
fn an_audit_id_in_the_parent_env_becomes_parent_audit_id() {
    let g = Sandbox::new();
    let parent = "019ab1c2d3e4-0123456789abcdef0123456789abcdef";
    let (run, env) = g.session("npm", &[("CLI_GUARD_AUDIT_ID", parent)]);
    let id = env.audit_id().to_owned();
    let out = g.finish(run, 0);
    check!(
        out,
        is_audit_id(&id) && id != parent,
        "the child gets a new ID, got {id}"
    );
    let log = g.log();
    let start = log.rows().of(&id).kind("start");
    check_eq!(out, start.len(), 1, "start record");
    check_eq!(out, start[0]["parent_audit_id"], parent, "parent_audit_id");
}

#[test]
fn a_guarded_tool_running_another_records_the_outer_id_as_parent() {
    let g = Sandbox::new();
    g.shim("npx");
    g.tool("npm", "rec \"$@\"\nnpx inner\nexit $?\n");
    g.tool(
        "npx",
        "env -0 > \"$S/inner.tmp\" && mv \"$S/inner.tmp\" \"$S/inner-env\"\nexit 5\n",
    );
    let out = g.run(g.shim_cmd("npm", ["outer"]));
    out.expect_code(5);
    let outer = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    let inner = ChildEnv::parse(&fs::read(g.state_path("inner-env")).unwrap());
    let (oid, iid) = (outer.audit_id(), inner.audit_id());
    check!(out, oid != iid, "the nested invocation has its own ID");
    check!(out, outer.proxy().addr != inner.proxy().addr, "and its own proxy");
    let log = g.log();
    let istart = log.rows().of(iid).kind("start");
    check_eq!(out, istart.len(), 1, "inner start");
    check_eq!(out, istart[0]["tool"], "npx", "inner tool");
    check_eq!(out, istart[0]["parent_audit_id"], oid, "inner parent_audit_id");
    check_eq!(
        out,
        log.rows().of(oid).kind("start")[0]["parent_audit_id"],
        serde_json::Value::Null,
        "outer has no parent"
    );
}

#[test]
fn a_guarded_tool_may_run_itself_again() {
    // `npm run x` whose script calls npm: legitimate nesting, not recursion.
    let g = Sandbox::new();
    g.tool(
        "npm",
        "if [ -z \"${INNER:-}\" ]; then rec \"$@\"; INNER=1 npm inner; exit $?; fi\nenv -0 > \"$S/inner.tmp\" && mv \"$S/inner.tmp\" \"$S/inner-env\"\nexit 6\n",
    );
    let out = g.run(g.shim_cmd("npm", ["outer"]));
    out.expect_code(6);
    check!(
        out,
        out.guard_lines().is_empty(),
        "no cli-guard complaint for legitimate nesting"
    );
    let outer = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap());
    let inner = ChildEnv::parse(&fs::read(g.state_path("inner-env")).unwrap());
    let log = g.log();
    let istart = log.rows().of(inner.audit_id()).kind("start");
    check_eq!(out, istart.len(), 1, "inner start");
    check_eq!(
        out,
        istart[0]["parent_audit_id"],
        outer.audit_id(),
        "inner parent_audit_id"
    );
}

// ----- argv -----------------------------------------------------------------

/// Runs the shim with `real/npm` -> bash, which copies its own
/// /proc/self/cmdline: the exact argv the real tool got, argv[0] included
/// (a `#!` script can't see its argv[0]).
fn exec_argv(g: &Sandbox, typed: Option<&str>, args: &[Vec<u8>]) -> (Outcome, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    symlink(bash(), g.real.join("npm")).unwrap();
    let dump = g.state_path("cmdline");
    let script = format!("cat /proc/$$/cmdline > '{}'; exit 0", dump.display());
    let mut cmd = g.command(g.shim("npm"));
    if let Some(t) = typed {
        cmd.arg0(t);
    }
    cmd.arg("-c").arg(&script).args(args.iter().map(|a| os(a)));
    let out = g.run(cmd);
    out.expect_code(0);
    let got = split_nul(&fs::read(&dump).unwrap_or_default());
    let mut want = vec![b"-c".to_vec(), script.into_bytes()];
    want.extend(args.iter().cloned());
    (out, got, want)
}

#[test]
fn argv0_as_typed_and_every_argument_reach_the_tool_byte_for_byte() {
    let g = Sandbox::new();
    let args = awkward_args();
    let (out, got, mut want) = exec_argv(&g, Some("npm"), &args);
    want.insert(0, b"npm".to_vec());
    check_eq!(out, got, want, "the real tool's argv");

    // The audit log keeps the argv too, non-UTF-8 bytes replaced lossily.
    let log = g.log();
    let start = log.rows().kind("start");
    check_eq!(out, start.len(), 1, "one start record");
    let logged: Vec<String> = start[0]["argv"]
        .as_array()
        .unwrap_or_else(|| panic!("start.argv is not an array\n{}", out.report()))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    let lossy: Vec<String> = want
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    check_eq!(out, logged, lossy, "start.argv (argv[0] first, lossy UTF-8)");
}

#[test]
fn argv0_typed_as_a_full_path_reaches_the_tool_unchanged() {
    let g = Sandbox::new();
    let (out, got, mut want) = exec_argv(&g, None, &[b"x".to_vec()]);
    want.insert(0, bytes(&g.shims.join("npm")));
    check_eq!(out, got, want, "the real tool's argv");
}

#[test]
fn a_script_tool_sees_every_argument_byte_for_byte() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let args = awkward_args();
    let out = g.run(g.shim_cmd("npm", args.iter().map(|a| os(a))));
    out.expect_code(0);
    let got = split_nul(&fs::read(g.state_path("argv")).unwrap());
    check_eq!(out, got[0], bytes(&g.real.join("npm")), "$0 is the PATH entry");
    check_eq!(out, got[1..].to_vec(), args, "\"$@\"");
}

// ----- PATH lookup -----------------------------------------------------------

/// Runs `npm` and returns the outcome and the $0 the real tool saw.
fn run_npm(g: &Sandbox, program: &Path) -> (Outcome, Option<Vec<u8>>) {
    let mut cmd = g.command(program);
    cmd.arg0("npm").arg("install");
    let out = g.run(cmd);
    let argv0 = fs::read(g.state_path("argv"))
        .ok()
        .map(|a| split_nul(&a).remove(0));
    (out, argv0)
}

fn real_path_logged(g: &Sandbox) -> serde_json::Value {
    let log = g.log();
    log.rows()
        .kind("start")
        .first()
        .map(|r| r["real_path"].clone())
        .unwrap_or_default()
}

#[test]
fn the_shim_skips_itself_through_a_symlink() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let (out, argv0) = run_npm(&g, &g.shim("npm"));
    out.expect_code(0);
    let real = g.real.join("npm");
    check_eq!(out, argv0, Some(bytes(&real)), "the fake npm ran");
    check_eq!(
        out,
        real_path_logged(&g),
        real.to_str().unwrap(),
        "start.real_path"
    );
}

fn hard_link_or_copy(src: &Path, dst: &Path) {
    if fs::hard_link(src, dst).is_err() {
        install_executable(src, dst);
    }
}

#[test]
fn the_shim_skips_hard_links_of_itself() {
    let mut g = Sandbox::new();
    let (a, b) = (g.dir("a"), g.dir("b"));
    hard_link_or_copy(Path::new(BIN), &a.join("npm"));
    fs::hard_link(a.join("npm"), b.join("npm")).unwrap();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    g.path = vec![a.clone(), b, g.real.clone(), "/usr/bin".into(), "/bin".into()];
    let (out, argv0) = run_npm(&g, &a.join("npm"));
    out.expect_code(0);
    check_eq!(out, argv0, Some(bytes(&g.real.join("npm"))), "the fake npm ran");
}

#[test]
fn repeated_path_entries_are_skipped() {
    let mut g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let s = g.shims.clone();
    g.path = vec![
        s.clone(),
        s.clone(),
        s.join("."),
        s.join("../shims"),
        g.real.clone(),
        "/usr/bin".into(),
    ];
    let (out, argv0) = run_npm(&g, &g.shim("npm"));
    out.expect_code(0);
    check_eq!(out, argv0, Some(bytes(&g.real.join("npm"))), "the fake npm ran");
}

#[test]
fn the_path_entry_is_run_as_found_not_its_canonical_target() {
    // Like pyenv's or rustup's shims, the real tool may dispatch on how it
    // was invoked: real/npm -> ../elsewhere/dispatcher must run as real/npm.
    let g = Sandbox::new();
    let elsewhere = g.dir("elsewhere");
    let target = g.script(&elsewhere.join("dispatcher"), "rec \"$@\"\nexit 0\n");
    symlink(&target, g.real.join("npm")).unwrap();
    let (out, argv0) = run_npm(&g, &g.shim("npm"));
    out.expect_code(0);
    let real = g.real.join("npm");
    check_eq!(
        out,
        argv0,
        Some(bytes(&real)),
        "$0 must be the PATH entry, not {}",
        target.display()
    );
    check_eq!(
        out,
        real_path_logged(&g),
        real.to_str().unwrap(),
        "start.real_path"
    );
}

#[test]
fn a_missing_tool_exits_127_naming_it() {
    let mut g = Sandbox::new();
    g.path = vec![g.shims.clone()];
    let (out, _) = run_npm(&g, &g.shim("npm"));
    out.expect_code(127);
    check!(
        out,
        out.stderr().contains("npm"),
        "the message must name the tool"
    );
    check!(out, !out.guard_lines().is_empty(), "a cli-guard: message");
}

#[test]
fn a_tool_that_is_not_executable_exits_126() {
    let mut g = Sandbox::new();
    let p = g.tool("npm", "rec \"$@\"\nexit 0\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    g.path = vec![g.shims.clone(), g.real.clone()];
    let (out, argv0) = run_npm(&g, &g.shim("npm"));
    out.expect_code(126);
    check!(out, argv0.is_none(), "nothing ran");
    check!(
        out,
        out.stderr().contains("npm"),
        "the message must name the tool"
    );
}

#[test]
fn a_tool_that_cannot_be_run_is_recorded_with_the_reason() {
    let mut g = Sandbox::new();
    let p = g.tool("npm", "exit 0\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    g.path = vec![g.shims.clone(), g.real.clone()];
    let (out, _) = run_npm(&g, &g.shim("npm"));
    out.expect_code(126);
    let log = g.log();
    let end = log.rows().kind("end");
    check_eq!(out, end.len(), 1, "an end record");
    check!(
        out,
        end[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "end.error says why the tool could not be run"
    );
}

#[test]
fn non_executable_files_and_directories_are_skipped_for_a_later_real_tool() {
    let mut g = Sandbox::new();
    let (noexec, dirs) = (g.dir("noexec"), g.dir("dirs"));
    g.script(&noexec.join("npm"), "rec \"$@\"\nexit 9\n");
    fs::set_permissions(noexec.join("npm"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(dirs.join("npm")).unwrap();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    g.path = vec![g.shims.clone(), noexec, dirs, g.real.clone(), "/usr/bin".into()];
    let (out, argv0) = run_npm(&g, &g.shim("npm"));
    out.expect_code(0);
    check_eq!(
        out,
        argv0,
        Some(bytes(&g.real.join("npm"))),
        "the first executable regular file ran"
    );
}

#[test]
fn a_second_copy_of_the_binary_on_path_hands_through_to_the_real_tool() {
    // An installed cli-guard and a checkout's shims both on PATH: the first
    // shim takes the second copy for the real npm. The copy must hand
    // straight through to the real one, behind the first gate only.
    let g = Sandbox::new();
    let copies = g.dir("copies");
    install_executable(Path::new(BIN), &copies.join("npm"));
    let real = g.dir("later");
    g.script(&real.join("npm"), "rec \"$@\"\nexit 7\n");
    let mut path = vec![g.shims.clone(), copies.clone(), real.clone()];
    path.extend(["/usr/bin", "/bin"].map(std::path::PathBuf::from));
    let mut cmd = g.command(g.shim("npm"));
    cmd.arg0("npm")
        .arg("install")
        .env("PATH", std::env::join_paths(&path).unwrap());
    let out = g.run(cmd);
    out.expect_code(7);
    let argv = fs::read(g.state_path("argv")).expect("the real npm ran");
    // A #! script sees its own path as $0; the arguments are what count.
    check_eq!(
        out,
        split_nul(&argv)[1..].to_vec(),
        vec![b"install".to_vec()],
        "arguments as typed"
    );
    let log = g.log();
    let starts = log.rows().kind("start");
    check_eq!(out, starts.len(), 1, "one gate, not two");
    check_eq!(
        out,
        starts[0]["real_path"],
        copies.join("npm").to_str().unwrap(),
        "the copy was what PATH gave"
    );
    check!(
        out,
        out.guard_lines().is_empty(),
        "no error: {:?}",
        out.guard_lines()
    );
}

#[test]
fn a_copy_of_the_binary_with_no_real_tool_after_it_is_127_not_a_loop() {
    let g = Sandbox::new();
    let copy = g.real.join("npm");
    install_executable(Path::new(BIN), &copy);
    // Only the sandbox on PATH: this machine's own npm must not be found.
    let mut cmd = g.command(g.shim("npm"));
    cmd.arg0("npm")
        .arg("install")
        .env("PATH", std::env::join_paths([&g.shims, &g.real]).unwrap());
    let out = g.run(cmd);
    out.expect_code(127);
    let lines = out.guard_lines().join("\n");
    check!(
        out,
        lines.contains("not found"),
        "the error must say the real npm is missing: {lines}"
    );
}

// ----- exit codes --------------------------------------------------------------

#[test]
fn the_childs_exit_code_passes_through() {
    let g = Sandbox::new();
    g.tool("npm", "exit \"$1\"\n");
    for code in [0, 1, 3, 42, 255] {
        let out = g.run(g.shim_cmd("npm", [code.to_string()]));
        out.expect_code(code);
    }
}

#[test]
fn a_child_killed_by_a_signal_kills_the_shim_by_the_same_signal() {
    let g = Sandbox::new();
    g.tool("npm", "kill -s \"$1\" $$\nsleep 2\nexit 99\n");
    for sig in [
        Signal::SIGTERM,
        Signal::SIGKILL,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        let name = &sig.as_str()[3..];
        let out = g.run(g.shim_cmd("npm", [name]));
        check_eq!(
            out,
            out.signal(),
            Some(sig as i32),
            "the shim must die by {sig}, like its child"
        );
        check!(out, !out.status.core_dumped(), "no core dump");
    }
}

#[test]
fn a_malformed_resolve_setting_exits_125_without_running_the_tool() {
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    for bad in [
        "garbage",
        "registry.npmjs.org:443",
        "registry.npmjs.org:443=",
        "registry.npmjs.org:443=nowhere",
        "registry.npmjs.org:443=127.0.0.1",
        "registry.npmjs.org:443=127.0.0.1:99999",
    ] {
        let mut cmd = g.shim_cmd("npm", ["install"]);
        cmd.env("CLI_GUARD_RESOLVE", bad);
        let out = g.run(cmd);
        out.expect_code(125);
        check!(
            out,
            !g.state_path("argv").exists(),
            "the tool must not run with CLI_GUARD_RESOLVE={bad:?}"
        );
        check!(
            out,
            !out.guard_lines().is_empty(),
            "a cli-guard: line says why ({bad:?})"
        );
    }
}

#[test]
fn a_gate_that_cannot_be_set_up_exits_125_without_running_the_tool() {
    // With almost no file descriptors left (RLIMIT_NOFILE = 4: the dynamic
    // loader still fits), the gate cannot put its proxy in place (today the
    // listening socket is what fails); it must fail closed, not run the tool
    // unguarded.
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let mut cmd = g.shim_cmd("npm", ["install"]);
    // SAFETY: runs in the forked child before exec; setrlimit is a plain
    // system call, async-signal-safe, and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 4, 4)
                .map_err(std::io::Error::from)
        });
    }
    let out = g.run(cmd);
    out.expect_code(125);
    check!(
        out,
        !g.state_path("argv").exists(),
        "the tool must not run without its gate"
    );
    check!(out, !out.guard_lines().is_empty(), "a cli-guard: line says why");
}

#[test]
fn the_child_keeps_the_descriptor_limit_the_gate_raised_for_itself() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let g = Sandbox::new();
    g.tool("npm", "ulimit -Sn > \"$S/soft\"\nexit 0\n");
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(hard > 512, "this test needs a hard limit above 512");
    let mut cmd = g.shim_cmd("npm", ["install"]);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit(2), which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            setrlimit(Resource::RLIMIT_NOFILE, 512, hard).map_err(std::io::Error::from)
        });
    }
    let out = g.run(cmd);
    out.expect_code(0);
    let soft = fs::read_to_string(g.state_path("soft")).unwrap();
    check_eq!(
        out,
        soft.trim(),
        "512",
        "the tool sees the limit it was started with"
    );
}

#[test]
fn a_wrapper_that_runs_the_shim_again_is_stopped_as_runaway_recursion() {
    // The "real" npm is a wrapper that runs `npm` from PATH again, which is
    // the shim: without the depth guard this would nest forever.
    let g = Sandbox::new();
    g.tool("npm", "exec npm \"$@\"\n");
    let out = g.run(g.shim_cmd("npm", ["install"]));
    check!(
        out,
        out.code() == Some(125),
        "a loop must end with 125, not run on"
    );
    let lines = out.guard_lines().join("\n");
    check!(
        out,
        lines.contains("nested 32") && lines.contains("loop"),
        "the error must say it is a loop: {lines}"
    );
    let starts = g.log().rows().kind("start").len();
    check_eq!(
        out,
        starts,
        32,
        "32 nested gates, then the 33rd refuses before starting"
    );
}

/// The `SigBlk` or `SigIgn` mask in a /proc/PID/status text.
fn signal_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line[field.len()..].trim_start_matches(':').trim(), 16).unwrap()
}

#[test]
fn the_tool_starts_with_no_signal_blocked_and_sigpipe_not_ignored() {
    // The shim blocks the forwarded signals for its signalfd and ignores
    // SIGPIPE for itself; neither may leak into the tool, which is started
    // by cli-guard's own clone, not by std's Command. The tool is a copy of
    // cat, not a script: a shell resets its signal mask as it starts.
    let g = Sandbox::new();
    install_executable(Path::new("/bin/cat"), &g.real.join("npm"));
    let out = g.run(g.shim_cmd("npm", ["/proc/self/status"]));
    out.expect_code(0);
    let status = out.stdout();
    check_eq!(
        out,
        signal_mask(&status, "SigBlk"),
        0,
        "blocked signals in the tool\n{status}"
    );
    let sigpipe = 1u64 << (Signal::SIGPIPE as u32 - 1);
    check_eq!(
        out,
        signal_mask(&status, "SigIgn") & sigpipe,
        0,
        "SIGPIPE ignored in the tool\n{status}"
    );
}

#[test]
fn with_stdin_stdout_and_stderr_closed_the_log_stays_clean_and_the_tool_gets_dev_null() {
    // Started with descriptors 0-2 closed, the shim must not let its log or
    // listener take those numbers: its stderr summary of the denial would
    // then be written into the log (or the socket).
    let g = Sandbox::new();
    g.tool(
        "npm",
        &format!(
            "printf '%s\\n' \"$(readlink /proc/$$/fd/0)\" \"$(readlink /proc/$$/fd/1)\" \"$(readlink /proc/$$/fd/2)\" > \"$S/fds\"\n\
             {} proxy-echo denied.example 443 0 > /dev/null\nexit 0\n",
            g.net()
        ),
    );
    let mut cmd = g.shim_cmd("npm", ["install"]);
    // SAFETY: runs in the forked child before exec and only calls close(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 0..3 {
                nix::libc::close(fd);
            }
            Ok(())
        });
    }
    let out = g.run(cmd);
    out.expect_code(0);
    let fds = fs::read_to_string(g.state_path("fds")).unwrap();
    check_eq!(
        out,
        fds,
        "/dev/null\n/dev/null\n/dev/null\n",
        "the tool's descriptors 0-2"
    );
    // Every line of the log is a row (`Log::read` fails on any other),
    // and the denial the summary spoke of is one of them.
    let log = g.log();
    let denied = log
        .rows()
        .kind("egress")
        .host("denied.example")
        .filter("denied", |r| r["decision"] == "deny")
        .len();
    check_eq!(out, denied, 1, "one egress deny row for denied.example");
    check!(out, !log.rows().kind("end").is_empty(), "an end row");
}

/// `real/npm` with exactly `text` (no `#!/bin/sh` line added), installed
/// without a write descriptor open (see install_executable).
fn raw_tool(g: &Sandbox, text: &str) {
    let src = g.state_path("raw-tool-source");
    fs::write(&src, text).unwrap();
    install_executable(&src, &g.real.join("npm"));
}

#[test]
fn a_script_whose_interpreter_is_missing_exits_127_with_a_hint_and_a_row() {
    // The exec itself fails (ENOENT from the #! line), in the spawned child:
    // its errno must come back to the shim, which reaps the child and says so.
    let g = Sandbox::new();
    raw_tool(&g, "#!/nonexistent/interpreter\nexit 0\n");
    let out = g.run(g.shim_cmd("npm", ["install"]));
    out.expect_code(127);
    let said = out.guard_lines().join("\n");
    check!(
        out,
        said.contains("interpreter is missing"),
        "the hint, in: {said}"
    );
    let log = g.log();
    let end = log.rows().kind("end").first().copied();
    check!(
        out,
        end.is_some_and(|e| e["exit_code"] == 127 && e["error"].is_string()),
        "an end row with the exit code and the error: {end:?}"
    );
}

#[test]
fn a_script_without_a_shebang_line_runs_under_sh() {
    // execve refuses it (ENOEXEC); execvp (which the shim used through
    // std's Command while it forked) and shells run it with /bin/sh, and so
    // does the shim.
    let g = Sandbox::new();
    let ran = g.state_path("ran");
    raw_tool(
        &g,
        &format!(
            "echo \"ran with $# arguments: $1\" > '{}'\nexit 4\n",
            ran.display()
        ),
    );
    let out = g.run(g.shim_cmd("npm", ["install"]));
    out.expect_code(4);
    let ran = fs::read_to_string(ran).unwrap();
    check_eq!(out, ran, "ran with 1 arguments: install\n", "what the script saw");
}
