//! Fetch and run with fake tools (sh scripts that behave as npx, uvx, pipx
//! and yarn do where it matters): the two phases each tool gets, with the
//! arguments each gets, the fetch's install script refused and the
//! program's request observed, the record (phases, link, package), the
//! program's environment, stdio, exit status and signals passed through,
//! a failed fetch that stops the run, and the fallbacks. No network: the
//! program's and the install script's requests go through the gate to a
//! loopback server (`CLI_GUARD_RESOLVE`). The real clients are in
//! `fetch_run_clients`.

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// The host the program and the install script both try to reach.
const API: &str = "api.example.com";
const API_PORT: u16 = 8080;

/// A loopback HTTP server standing in for `api.example.com:8080`.
fn api_server() -> Upstream {
    Upstream::start(|mut s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    })
}

/// A GET of the API through the gate (as `curl -p` makes it, by the tests'
/// network client), printing the CONNECT's status and the request's:
/// `403 000` refused, `200 200` through.
fn get_api(g: &Sandbox) -> String {
    format!("{} proxy-get {API} {API_PORT}", g.net())
}

/// A fake npx. A fetch (cli-guard as `--script-shell`, no `--offline`)
/// installs `netcli@1.2.3` into a cache under $S as npx does (a
/// package.json naming it, the package, its `.bin` link), runs its
/// postinstall through the script shell, then runs the program through the
/// script shell at the `npx` event with the install's `.bin` first on
/// PATH. A run (`--offline` first) exports the settings npm exports and
/// runs the program the same way. The program's body is `$S/program`. Each
/// phase's arguments go to `$S/args-fetch` and `$S/args-run`, one a line,
/// and its pid (which execs the script shell) to `$S/npx-pid`.
fn fake_npx(g: &Sandbox) {
    let body = format!(
        r#"shell=sh; phase=fetch
[ "$1" = --offline ] && phase=run
for a in "$@"; do
  case "$a" in --script-shell=*) shell=${{a#--script-shell=}};; esac
done
printf '%s\n' "$@" > "$S/args-$phase"
echo $$ > "$S/npx-pid"
# The program's arguments: everything after the first positional.
args=; seen=
for a in "$@"; do
  case "$seen$a" in -*) ;; *) if [ -n "$seen" ]; then args="$args '$a'"; fi; seen=1;; esac
done
root="$S/cache/_npx/0123456789abcdef"
if [ "$phase" = fetch ]; then
  [ -e "$S/fetch-fails" ] && exit "$(cat "$S/fetch-fails")"
  mkdir -p "$root/node_modules/netcli" "$root/node_modules/.bin"
  printf '{{"dependencies":{{"netcli":"^1.2.3"}}}}' > "$root/package.json"
  printf '{{"name":"netcli","version":"1.2.3","bin":{{"netcli":"cli.sh"}}}}' > "$root/node_modules/netcli/package.json"
  {{ echo '#!/bin/sh'; cat "$S/program"; }} > "$root/node_modules/netcli/cli.sh"
  chmod +x "$root/node_modules/netcli/cli.sh"
  ln -sf ../netcli/cli.sh "$root/node_modules/.bin/netcli"
  export npm_config_script_shell="$shell"
  npm_lifecycle_event=postinstall "$shell" -c "{get} > \"$S/postinstall\"; [ -e \"$S/nested\" ] && npm install nested; true" || exit 1
else
  export npm_config_offline=true npm_config_yes=true npm_config_ignore_scripts=true npm_config_script_shell="$shell"
fi
PATH="$root/node_modules/.bin:$PATH" npm_lifecycle_event=npx exec "$shell" -c "'netcli'$args"
"#,
        get = get_api(g)
    );
    g.tool("npx", &body);
}

/// The program: record its environment, reach the API, print the answer.
fn network_program(g: &Sandbox) {
    fs::write(
        g.state_path("program"),
        format!(
            "env > \"{state}/program-env\"\necho \"program $*\"\necho \"status $({get})\"\n",
            state = g.state.display(),
            get = get_api(g)
        ),
    )
    .unwrap();
}

/// A sandbox with the fake npx and a program of `body`.
fn npx_with_program(body: &str) -> Sandbox {
    let g = Sandbox::new();
    fake_npx(&g);
    fs::write(g.state_path("program"), body).unwrap();
    g
}

/// A sandbox with the fake npx, the network program, and the API.
fn npx_sandbox() -> (Sandbox, Upstream) {
    let g = Sandbox::new();
    fake_npx(&g);
    network_program(&g);
    (g, api_server())
}

/// `name ARGS…` through its shim, with the API on loopback.
fn with_api(g: &Sandbox, name: &str, args: &[&str], api: SocketAddr) -> std::process::Command {
    let mut cmd = g.shim_cmd(name, args);
    cmd.env(
        "CLI_GUARD_RESOLVE",
        Sandbox::resolve(&[(&format!("{API}:{API_PORT}"), api)]),
    );
    cmd
}

fn run_with_api(g: &Sandbox, name: &str, args: &[&str], api: SocketAddr) -> Outcome {
    g.run(with_api(g, name, args, api))
}

/// cli-guard said one line, and it says `what`.
#[track_caller]
fn said_once(out: &Outcome, what: &str) {
    let said = out.guard_lines();
    check!(
        out,
        said.len() == 1 && said[0].contains(what),
        "one line that says {what:?}: {said:?}"
    );
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The phase of the script-shell hook in a child's environment: `script`
/// (every npm and pnpm invocation's: its scripts are wrapped), `fetch` or
/// `run` (a fetch and run's), or none.
fn hook_phase(env: &ChildEnv) -> Option<String> {
    let hook: Value = serde_json::from_str(env.get("CLI_GUARD_EXEC_HOOK")?).ok()?;
    hook["phase"].as_str().map(str::to_string)
}

#[test]
fn npx_fetches_enforced_then_runs_the_program_observed() {
    let (g, api) = npx_sandbox();
    let out = run_with_api(&g, "npx", &["-y", "netcli@1.2.3", "a", "b"], api.addr);
    out.expect_code(0);
    check!(
        out,
        out.stdout() == "program a b\nstatus 200 200\n",
        "the program ran once, with its arguments, and reached the API"
    );
    let postinstall = fs::read_to_string(g.state_path("postinstall")).unwrap_or_default();
    check_eq!(out, postinstall, "403 000", "the install script was refused");

    let log = g.log();
    let (fetch, run) = fetch_and_run_phases(&out, &log, "npx");
    check_eq!(
        out,
        run["package"],
        serde_json::json!({"name": "netcli", "version": "1.2.3"}),
        "read from the installed package.json"
    );
    check_eq!(out, fetch["argv"], run["argv"], "both log argv as typed");
    let denied = log.rows().of(fetch.audit_id()).kind("egress").host(API);
    check!(
        out,
        denied.len() == 1 && denied[0]["decision"] == "deny" && denied[0]["status"] == 403,
        "the install script's request: one refusal under the fetch: {denied:?}"
    );
    let observed = log.rows().of(run.audit_id()).kind("egress").host(API);
    check!(
        out,
        observed.len() == 1
            && observed[0]["decision"] == "allow"
            && observed[0]["mode"] == "observe"
            && observed[0]["status"] == 200,
        "the program's request: one observed row under the run: {observed:?}"
    );
    check_eq!(out, api.accepted(), 1, "only the program reached the API");
    check!(
        out,
        out.guard_lines()
            .iter()
            .any(|l| l.contains(API) && l.contains(fetch.audit_id())),
        "the fetch's refusal is in the summary"
    );
}

#[test]
fn each_npx_phase_gets_the_flags_it_needs_and_nothing_else_changes() {
    let (g, api) = npx_sandbox();
    let out = run_with_api(&g, "npx", &["-y", "netcli@1.2.3", "--offline"], api.addr);
    out.expect_code(0);
    let bin = fs::canonicalize(BIN).unwrap();
    let shell = format!("--script-shell={}", bin.display());
    check_eq!(
        out,
        lines(&g.state_path("args-fetch")),
        [shell.as_str(), "-y", "netcli@1.2.3", "--offline"],
        "the fetch: cli-guard as npm's script shell, the typed arguments after"
    );
    check_eq!(
        out,
        lines(&g.state_path("args-run")),
        [
            "--offline",
            "--yes",
            "--ignore-scripts",
            shell.as_str(),
            "-y",
            "netcli@1.2.3",
            "--offline"
        ],
        "the run: offline, no scripts, no prompt"
    );
    check_eq!(
        out,
        out.stdout(),
        "program --offline\nstatus 200 200\n",
        "the program's own --offline is its own"
    );
}

#[test]
fn the_program_sees_npms_environment_as_without_cli_guard() {
    let (g, api) = npx_sandbox();
    let mut cmd = with_api(&g, "npx", &["--yes", "netcli"], api.addr);
    cmd.env("npm_config_script_shell", "/bin/sh")
        .env("npm_config_ignore_scripts", "true");
    let out = g.run(cmd);
    out.expect_code(0);
    let env = ChildEnv::parse(
        &fs::read_to_string(g.state_path("program-env"))
            .unwrap_or_default()
            .replace('\n', "\0")
            .into_bytes(),
    );
    for gone in ["npm_config_offline", "CLI_GUARD_EXEC_HOOK"] {
        check!(out, env.get(gone).is_none(), "{gone} reached the program");
    }
    check_eq!(
        out,
        env.get("npm_config_yes"),
        Some("true"),
        "the user's --yes stays"
    );
    check_eq!(
        out,
        env.get("npm_config_ignore_scripts"),
        Some("true"),
        "the user's own setting stays"
    );
    check_eq!(
        out,
        env.get("npm_config_script_shell"),
        Some("/bin/sh"),
        "the user's script shell is back"
    );
    check!(
        out,
        env.get("HTTPS_PROXY").is_some(),
        "the run is behind its gate"
    );
}

#[test]
fn a_guarded_tool_under_the_fetch_gets_neither_the_hook_nor_cli_guard_as_npms_shell() {
    let (g, api) = npx_sandbox();
    g.shim("npm");
    g.tool("npm", "rec \"$@\"\n");
    fs::write(g.state_path("nested"), "").unwrap();
    let out = run_with_api(&g, "npx", &["-y", "netcli"], api.addr);
    out.expect_code(0);
    let env = ChildEnv::parse(&fs::read(g.state_path("env")).unwrap_or_default());
    check!(
        out,
        env.get("CLI_GUARD_AUDIT_ID").is_some(),
        "the install script's npm ran through its shim"
    );
    check_eq!(
        out,
        hook_phase(&env),
        Some("script".to_string()),
        "below the fetch, the nested npm's own script hook, not the fetch's"
    );
    check_eq!(
        out,
        env.get("npm_config_script_shell"),
        Some(BIN),
        "its scripts are wrapped by cli-guard"
    );
    let log = g.log();
    let fetch = log.rows().kind("start").tool("npx")[0];
    let nested = log.rows().kind("start").tool("npm");
    check!(
        out,
        nested.len() == 1 && nested[0]["parent_audit_id"] == fetch["audit_id"],
        "nested under the fetch: {nested:?}"
    );
}

#[test]
fn stdin_and_stdout_pass_through_the_run_untouched() {
    let g = npx_with_program("exec cat\n");
    let request: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}\n\x00\xff binary too\n";
    let input = g.state_path("stdin");
    fs::write(&input, request).unwrap();
    let mut cmd = g.shim_cmd("npx", ["-y", "server"]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = g.run(cmd);
    out.expect_code(0);
    check_eq!(
        out,
        out.stdout,
        request,
        "the program's stdout is exactly what it echoed: nothing of the fetch's"
    );
}

#[test]
fn the_runs_exit_status_and_death_by_signal_are_the_programs() {
    let g = npx_with_program("exit 3\n");
    g.run(g.shim_cmd("npx", ["-y", "x"])).expect_code(3);
    // The program kills the shim's child (npx, now the script shell).
    fs::write(
        g.state_path("program"),
        format!("kill -TERM \"$(cat '{}/npx-pid')\"\n", g.state.display()),
    )
    .unwrap();
    let out = g.run(g.shim_cmd("npx", ["-y", "x"]));
    check_eq!(
        out,
        out.signal(),
        Some(15),
        "the program died by SIGTERM, so does the shim"
    );
    let log = g.log();
    let run = log.rows().kind("start").tool("npx")[3];
    let end = log.rows().of(run.audit_id()).kind("end");
    check_eq!(out, end[0]["signal"], "SIGTERM", "{}", end[0]);
}

#[test]
fn a_failed_fetch_passes_its_exit_on_and_the_program_never_runs() {
    let g = Sandbox::new();
    fake_npx(&g);
    network_program(&g);
    fs::write(g.state_path("fetch-fails"), "7").unwrap();
    let out = g.run(g.shim_cmd("npx", ["-y", "netcli"]));
    out.expect_code(7);
    check!(out, !g.state_path("args-run").exists(), "the run started");
    check!(out, !g.state_path("program-env").exists(), "the program ran");
    let log = g.log();
    let npx = log.rows().kind("start").tool("npx");
    check!(
        out,
        npx.len() == 1 && npx[0]["phase"] == "fetch",
        "only the fetch: {npx:?}"
    );
    let text = g.run(g.cli_guard(["audit"]));
    check!(
        text,
        text.stdout()
            .contains("fetch phase: it failed, so the run phase did not start"),
        "the audit says so"
    );
}

#[test]
fn npx_that_fetches_nothing_stays_enforced_whole() {
    let g = Sandbox::new();
    g.tool("npx", HOLD);
    let (run, env) = {
        let mut run = g.start(g.shim_cmd("npx", ["--script-shell=bash", "-y", "netcli"]));
        let env = g.wait_env(&mut run);
        (run, env)
    };
    check_eq!(
        run,
        hook_phase(&env),
        Some("script".to_string()),
        "no fetch-and-run hook"
    );
    let out = g.finish(run, 0);
    let log = g.log();
    let npx = log.rows().kind("start").tool("npx");
    check!(
        out,
        npx.len() == 1 && npx[0].get("phase").is_none() && npx[0]["mode"] == "enforce",
        "one enforced invocation, as before: {npx:?}"
    );
    check!(out, out.guard_lines().is_empty(), "nothing said");
}

#[test]
fn the_audit_shows_the_pair_as_one_entry_in_text_and_json() {
    let (g, api) = npx_sandbox();
    run_with_api(&g, "npx", &["-y", "netcli"], api.addr).expect_code(0);
    let log = g.log();
    let npx = log.rows().kind("start").tool("npx");
    let (fetch, run) = (npx[0].audit_id(), npx[1].audit_id());

    let text = g.run(g.cli_guard(["audit"]));
    text.expect_code(0);
    let shown: Vec<String> = text.stdout().lines().map(str::to_string).collect();
    check_eq!(
        text,
        shown.len(),
        5,
        "one line, the fetch and its row, the run and its row"
    );
    check!(
        text,
        shown[0].contains(run) && shown[0].contains("1 allowed") && shown[0].contains("1 denied"),
        "the entry: the run's ID, both phases' rows"
    );
    check!(
        text,
        shown[1].contains(&format!("fetched under {fetch}: enforce")),
        "{}",
        shown[1]
    );
    check!(
        text,
        shown[2].contains("deny  403") && shown[2].contains(API),
        "{}",
        shown[2]
    );
    check!(
        text,
        shown[3].contains("ran netcli@1.2.3: observe"),
        "{}",
        shown[3]
    );
    check!(
        text,
        shown[4].contains("allow 200") && shown[4].contains(API),
        "{}",
        shown[4]
    );

    let json = g.run(g.cli_guard(["audit", "--json"]));
    let objects = Log::parse(json.stdout().as_bytes(), "audit --json");
    check_eq!(json, objects.len(), 1, "one object for the pair");
    let pair = &objects[0];
    check_eq!(json, pair["audit_id"], run, "{pair}");
    check_eq!(json, pair["fetch"]["audit_id"], fetch, "{pair}");
    check_eq!(json, pair["package"]["name"], "netcli", "{pair}");
    check_eq!(json, pair["fetch"]["egress"][0]["status"], 403, "{pair}");
    check_eq!(json, pair["egress"][0]["status"], 200, "{pair}");
    for by in [fetch, run] {
        let one = g.run(g.cli_guard(["audit", "--json", "--id", by]));
        check_eq!(
            one,
            Log::parse(one.stdout().as_bytes(), "--id").len(),
            1,
            "by {by}"
        );
    }
}

#[test]
fn where_the_report_cannot_be_made_npx_runs_enforced_whole_and_says_so() {
    let g = Sandbox::new();
    g.tool("npx", HOLD);
    let mut cmd = g.shim_cmd("npx", ["-y", "netcli"]);
    cmd.env("TMPDIR", g.root().join("no-such-dir"));
    let mut run = g.start(cmd);
    let env = g.wait_env(&mut run);
    check_eq!(
        run,
        hook_phase(&env),
        Some("script".to_string()),
        "no fetch-and-run hook"
    );
    let out = g.finish(run, 0);
    said_once(&out, "runs enforced whole, as before");
    let log = g.log();
    let npx = log.rows().kind("start").tool("npx");
    check!(
        out,
        npx.len() == 1 && npx[0]["mode"] == "enforce" && npx[0].get("phase").is_none(),
        "{npx:?}"
    );
}

/// A fake uvx: the fetch (`--from`, no `--offline`) makes a Python
/// environment with `netcli 2.0.1` in it and runs the probe it was given in
/// place of the program, with the environment's `bin` first on PATH; the
/// run (`--offline`) runs the program from there.
fn fake_uvx(g: &Sandbox) {
    let env = g.dir("uv-env");
    let site = env.join("lib/python3.11/site-packages/netcli-2.0.1.dist-info");
    fs::create_dir_all(&site).unwrap();
    fs::create_dir_all(env.join("bin")).unwrap();
    fs::write(env.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    fs::write(
        site.join("METADATA"),
        "Metadata-Version: 2.1\nName: netcli\nVersion: 2.0.1\n\n",
    )
    .unwrap();
    fs::write(
        site.join("entry_points.txt"),
        "[console_scripts]\nnetcli = netcli:main\n",
    )
    .unwrap();
    let body = format!(
        r#"printf '%s\n' "$@" > "$S/args-$(case " $* " in *" --offline "*) echo run;; *) echo fetch;; esac)"
PATH="{env}/bin:$PATH"; export PATH
case " $* " in
  *" --offline "*) echo "program ran"; exit 0;;
esac
# The probe is the last five arguments: sh -c SCRIPT sh REPORT.
shift $(($# - 5)); exec "$@"
"#,
        env = env.display()
    );
    g.tool("uvx", &body);
}

#[test]
fn uvx_names_the_program_from_the_fetched_environments_dist_info() {
    let g = Sandbox::new();
    fake_uvx(&g);
    let out = g.run(g.shim_cmd("uvx", ["--python", "3.11", "netcli==2.0.1", "x"]));
    out.expect_code(0);
    check_eq!(out, out.stdout(), "program ran\n", "the program ran once");
    let fetch_args = lines(&g.state_path("args-fetch"));
    check_eq!(
        out,
        fetch_args[..3],
        ["--python", "3.11", "--from=netcli==2.0.1"],
        "the fetch: the package named by --from"
    );
    check_eq!(out, fetch_args[3..5], ["sh", "-c"], "then the probe");
    check_eq!(
        out,
        lines(&g.state_path("args-run")),
        ["--offline", "--python", "3.11", "netcli==2.0.1", "x"],
        "the run: offline, as typed"
    );
    let log = g.log();
    let uvx = log.rows().kind("start").tool("uvx");
    check_eq!(out, uvx.len(), 2, "{uvx:?}");
    check_eq!(
        out,
        uvx[1]["package"],
        serde_json::json!({"name": "netcli", "version": "2.0.1"}),
        "read from METADATA"
    );
}

#[test]
fn pipx_runs_enforced_whole_when_the_app_is_not_in_what_it_fetched() {
    let g = Sandbox::new();
    let venv = g.dir("pipx-venv");
    fs::create_dir_all(venv.join("bin")).unwrap();
    // The fetch runs the probe (python -c PROBE REPORT) as the venv's
    // python would: it writes the venv's directory. The venv has no app.
    g.tool(
        "pipx",
        &format!(
            "rec \"$@\"\nprintf '%s\\n' \"$*\" >> \"$S/calls\"\n\
             for last; do :; done\ncase \" $* \" in *\" python -c \"*) printf '%s' '{}' > \"$last\";; esac\nexit 0\n",
            venv.display()
        ),
    );
    let out = g.run(g.shim_cmd("pipx", ["run", "nosuchapp"]));
    out.expect_code(0);
    said_once(&out, "not among what the fetch left");
    let log = g.log();
    let pipx = log.rows().kind("start").tool("pipx");
    check_eq!(
        out,
        pipx.len(),
        2,
        "the fetch, then the whole, enforced: {pipx:?}"
    );
    check_eq!(out, pipx[0]["phase"], "fetch", "{}", pipx[0]);
    check!(
        out,
        pipx[1].get("phase").is_none() && pipx[1]["mode"] == "enforce",
        "{}",
        pipx[1]
    );
    let calls = lines(&g.state_path("calls"));
    check_eq!(
        out,
        calls.last().map(String::as_str),
        Some("run nosuchapp"),
        "{calls:?}"
    );
}

#[test]
fn yarn_dlx_is_observed_whole_and_says_so_in_one_line() {
    let g = Sandbox::new();
    g.tool("yarn", HOLD);
    let mut run = g.start(g.shim_cmd("yarn", ["dlx", "-p", "netcli", "netcli"]));
    let env = g.wait_env(&mut run);
    let argv = g.child_argv(&mut run);
    check_eq!(run, argv.len(), 5, "yarn got the typed arguments only");
    check!(run, env.get("HTTPS_PROXY").is_some(), "behind the gate");
    let out = g.finish(run, 0);
    said_once(&out, "yarn dlx runs observed");
    let log = g.log();
    let yarn = log.rows().kind("start").tool("yarn");
    check!(
        out,
        yarn.len() == 1
            && yarn[0]["phase"] == "fetch+run"
            && yarn[0]["mode"] == "observe"
            && yarn[0]["isolation"] == "none"
            && yarn[0]["isolation_reason"]
                .as_str()
                .is_some_and(|r| r.contains("temporary project")),
        "{yarn:?}"
    );
}

/// The fake npx through its shim in strict mode (`command`: the shim, or
/// setpriv running it): the fetch ran in a namespace, where the install
/// script was refused; the run did not, and the program reached the API.
fn fetch_isolated_run_not(g: &Sandbox, mut cmd: std::process::Command, api: &Upstream) -> Outcome {
    cmd.env(
        "CLI_GUARD_RESOLVE",
        Sandbox::resolve(&[(&format!("{API}:{API_PORT}"), api.addr)]),
    );
    Sandbox::strict(&mut cmd, "require");
    let out = g.run(cmd);
    out.expect_code(0);
    check_eq!(
        out,
        out.stdout(),
        "program \nstatus 200 200\n",
        "the program reached the API"
    );
    let log = g.log();
    let (fetch, run) = fetch_and_run_phases(&out, &log, "npx");
    check_eq!(out, fetch["isolation"], "netns", "the fetch: {fetch}");
    check_eq!(out, run["isolation"], "none", "the run: {run}");
    let denied = log.rows().of(fetch.audit_id()).kind("egress").host(API);
    check!(
        out,
        denied.len() == 1 && denied[0]["status"] == 403,
        "refused in the namespace: {denied:?}"
    );
    out
}

#[test]
fn the_fetch_is_isolated_and_the_run_is_not() {
    let (g, api) = npx_sandbox();
    let cmd = g.shim_cmd("npx", ["-y", "netcli"]);
    fetch_isolated_run_not(&g, cmd, &api);
}

#[test]
fn as_an_unprivileged_user_the_fetch_is_isolated_and_the_run_is_not() {
    let (g, api) = npx_sandbox();
    for dir in [
        &g.state,
        &g.home,
        &g.work,
        &g.audit.parent().unwrap().to_path_buf(),
    ] {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::write(
        g.state_path("program"),
        format!(
            "id -u > '{}/uid'\necho \"program $*\"\necho \"status $({})\"\n",
            g.state.display(),
            get_api(&g)
        ),
    )
    .unwrap();
    let shim = g.shim("npx");
    let cmd = g.as_nobody(shim.to_str().unwrap(), &["-y", "netcli"]);
    let out = fetch_isolated_run_not(&g, cmd, &api);
    let uid = fs::read_to_string(g.state_path("uid")).unwrap_or_default();
    check_eq!(out, uid.trim(), "65534", "the program ran as nobody");
}

/// At a terminal, the run's program holds the terminal's foreground, as a
/// guarded tool does, and reads what is typed there (a prompt works); the
/// fetch before it left the terminal as it found it.
#[test]
fn at_a_terminal_the_program_holds_the_foreground_and_reads_what_is_typed() {
    let g = Sandbox::new();
    fake_npx(&g);
    let state = g.state.display().to_string();
    fs::write(
        g.state_path("program"),
        format!(
            "cut -d' ' -f5,8 /proc/$$/stat > '{state}/fg.tmp' && mv '{state}/fg.tmp' '{state}/fg'\n\
             read -r line\necho \"$line\" > '{state}/typed'\n"
        ),
    )
    .unwrap();
    let mut cmd = g.shim_cmd("npx", ["-y", "prompt"]);
    let mut pty = Pty::open();
    pty.attach(&mut cmd);
    let mut run = Running::spawn(cmd, Some(g.audit.clone()), Some(pty.transcript.clone()));
    let fg = String::from_utf8_lossy(&g.wait_state(&mut run, "fg")).into_owned();
    let (pgrp, tpgid) = fg.trim().split_once(' ').unwrap_or_default();
    check_eq!(run, pgrp, tpgid, "the program's group holds the terminal: {fg}");
    pty.type_bytes(b"hello from the keyboard\n");
    let typed = g.wait_state(&mut run, "typed");
    check_eq!(
        run,
        String::from_utf8_lossy(&typed),
        "hello from the keyboard\n",
        "the program read the terminal"
    );
    let out = run.wait();
    out.expect_code(0);
}
