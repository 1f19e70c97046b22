//! The rest of the ecosystem's real clients end to end, each pinned and
//! installed by `.ci/run`, each run through the shim install.sh sets up,
//! with a private audit log and a fresh HOME (so fresh caches and no user
//! config), in strict mode as a user gets it (enforce mode, a fetching
//! subcommand: the tool runs in its own network namespace).
//!
//! - Clients of the registries this machine reaches (the npm registry:
//!   pnpm, pnpx, bun, bunx, deno, corepack, yarn 4; PyPI: uv, uvx, poetry,
//!   pipx, pdm, hatch, `python -m pip`): a real install or fetch of one
//!   small package succeeds, with allow rows for that registry only.
//! - Clients whose registry does not resolve here (go, gem, bundle,
//!   composer, mvn, gradle): their traffic reaches the gate for their
//!   registry and is allowed; the dial then fails, so the row says 502.
//! - Every client: pointed at an unlisted host, it gets 403, the rows sit
//!   under its audit ID, and the shim's summary names the host.
//!
//! Each test also says how the client reached the gate (`Via`): through
//! the proxy URL with its credential (`CONNECT` rows), or only through
//! strict mode's transparent path (`transparent` rows), and whether a JVM
//! client needed the 407 challenge first. The README's "Real clients
//! tested" table says the same, client by client.
//!
//! All are `#[ignore]`d: `.ci/run` installs the clients and runs them with
//! `cargo test -- --ignored`, and a missing client fails its test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::install;
use crate::util::real_clients::{client_cmd, invocation, need, only_start, Client};
use crate::util::{command, fetch_and_run_phases, Log, Outcome, Row};

/// How a client's connections reached the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// Through the proxy URL, with the credential: `CONNECT` rows.
    Proxy,
    /// Through the proxy URL after the gate's 407 challenge (the JDK sends
    /// the credential only when asked): a 407 row, then `CONNECT` rows.
    ProxyAfter407,
    /// Only through strict mode's transparent path: the client resolved the
    /// name itself (a `dns` row) and connected directly (`transparent`).
    Transparent,
}

impl Via {
    fn challenged(self) -> bool {
        self == Via::ProxyAfter407
    }

    /// The `method` of its connection rows.
    fn method(self) -> &'static str {
        match self {
            Via::Proxy | Via::ProxyAfter407 => "CONNECT",
            Via::Transparent => "transparent",
        }
    }
}

/// The test's unlisted hosts: none is on any tool's allowlist.
const UNLISTED_NPM: &str = "npm.example.net";
const UNLISTED_PYPI: &str = "pypi.example.net";

/// A project dir holding `files` (name, contents).
fn project(c: &Client, files: &[(&str, &str)]) -> PathBuf {
    let dir = c.dir("proj");
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    dir
}

const PACKAGE_JSON: (&str, &str) = (
    "package.json",
    r#"{"name":"proj","version":"1.0.0","private":true}"#,
);

/// This machine's Python interpreter, for the clients that make
/// environments (found once; the clients would otherwise look for or try
/// to download one).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = command("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "python3: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// The rows that are connections (not strict mode's DNS answers).
fn tunnels<'a>(egress: &[&'a Row]) -> Vec<&'a Row> {
    egress.iter().copied().filter(|r| r["method"] != "dns").collect()
}

/// The one invocation of `tool` and the guarded tools it ran: pipx runs
/// uv when uv is on PATH, and the shims put uv's shim there, so pipx's
/// installs are nested uv invocations (rows under uv's own audit ID, whose
/// `parent_audit_id` is pipx's).
struct Invocations<'a> {
    /// The audit IDs: `tool`'s first, then its descendants'.
    ids: Vec<String>,
    /// The egress rows of all of them, in log order.
    egress: Vec<&'a Row>,
    /// `tool`'s end row.
    end: &'a Row,
    /// The `denied` counts of all their end rows, added up.
    denied: u64,
}

/// `tool`'s invocation and its descendants; `tool` ran in strict mode.
fn invocations<'a>(log: &'a Log, tool: &str) -> Invocations<'a> {
    let (id, _, _) = invocation(log, tool);
    let start = only_start(log, tool);
    assert_eq!(start["isolation"], "netns", "{start}\n{}", log);
    assert_eq!(start["mode"], "enforce", "{start}");
    descendants(log, id)
}

/// The invocation `id` and its descendants.
fn descendants(log: &Log, id: String) -> Invocations<'_> {
    let end = log.rows().of(&id).kind("end").first_or_fail();
    let ids = log.nested(&[&id]);
    let egress = log.rows().network().of_any(&ids).to_vec();
    let denied = log
        .rows()
        .kind("end")
        .of_any(&ids)
        .iter()
        .map(|r| r["denied"].as_u64().unwrap_or(0))
        .sum();
    Invocations {
        ids,
        egress,
        end,
        denied,
    }
}

/// A successful fetch: `tool` exited 0, in strict mode; every row of its
/// invocation (and of the guarded tools it ran) is allowed and names one of
/// `hosts`; every connection is a tunnel on 443 answered 200, made through
/// the proxy URL with the credential (`CONNECT`), and there is at least one.
fn assert_fetched(c: &Client, out: &Outcome, tool: &str, hosts: &[&str]) {
    check_eq!(out, out.code(), Some(0), "{tool} failed");
    let log = c.log();
    let run = invocations(&log, tool);
    let conns = tunnels(&run.egress);
    check!(
        out,
        !conns.is_empty(),
        "{tool} made no connection through the gate"
    );
    for row in &run.egress {
        let host = row["host"].as_str().unwrap_or("");
        check!(out, hosts.contains(&host), "unexpected host {host}: {row}");
        check_eq!(out, row["decision"], "allow", "{row}");
    }
    for row in &conns {
        check_eq!(out, row["method"], "CONNECT", "not through the proxy URL: {row}");
        check_eq!(out, row["port"], 443, "{row}");
        check_eq!(out, row["status"], 200, "{row}");
    }
    check_eq!(out, run.end["exit_code"], 0, "{}", run.end);
    check_eq!(out, run.denied, 0, "denials");
}

/// A fetch and run (issue 18): `tool`'s fetch phase fetched from `hosts`
/// only, in strict mode, exactly as `assert_fetched` says of an install;
/// then its run phase, observed and not isolated, named its fetch and the
/// package `package`, and made no connection at all: it ran offline from
/// what the fetch left.
fn assert_fetched_then_ran_offline(c: &Client, out: &Outcome, tool: &str, hosts: &[&str], package: &str) {
    check_eq!(out, out.code(), Some(0), "{tool} failed");
    let log = c.log();
    let (fetch, run) = phases(out, &log, tool);
    let fetch_run = invocations_from(&log, fetch);
    check!(
        out,
        !tunnels(&fetch_run.egress).is_empty(),
        "the fetch made no connection"
    );
    for row in &fetch_run.egress {
        let host = row["host"].as_str().unwrap_or("");
        check!(out, hosts.contains(&host), "unexpected host {host}: {row}");
        check_eq!(out, row["decision"], "allow", "{row}");
    }
    check_eq!(out, run["package"]["name"], package, "{run}");
    let ran = invocations_from(&log, run);
    check!(
        out,
        ran.egress.is_empty(),
        "the run went online: {:?}",
        ran.egress
    );
}

/// The top-level fetch and run phases of `tool`, in that order, checked
/// (`fetch_and_run_phases`), the fetch in strict mode, both ended well.
fn phases<'a>(out: &Outcome, log: &'a Log, tool: &str) -> (&'a Row, &'a Row) {
    let (fetch, run) = fetch_and_run_phases(out, log, tool);
    check_eq!(
        out,
        fetch["isolation"],
        "netns",
        "the fetch ran isolated: {fetch}"
    );
    let ends = log.rows().kind("end").filter("of either phase", |r| {
        r.audit_id() == fetch.audit_id() || r.audit_id() == run.audit_id()
    });
    check!(
        out,
        ends.len() == 2 && ends.iter().all(|e| e["exit_code"] == 0),
        "both phases ended well: {ends:?}"
    );
    (fetch, run)
}

/// The invocation that `start` opens and those nested under it.
fn invocations_from<'a>(log: &'a Log, start: &Row) -> Invocations<'a> {
    let id = start.audit_id().to_string();
    descendants(log, id)
}

/// A client whose registry does not resolve here: its connections reach
/// the gate `via` the proxy URL for one of `hosts` (on 443) and are
/// allowed; the dial fails, so each is answered 502 or 504. A JVM client
/// that waits for a challenge shows a 407 row first, for the same hosts.
fn assert_gated_unreachable(c: &Client, out: &Outcome, tool: &str, hosts: &[&str], via: Via) {
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "{tool} cannot succeed against a registry that does not resolve here"
    );
    let log = c.log();
    let run = invocations(&log, tool);
    let conns = tunnels(&run.egress);
    let (challenges, allowed): (Vec<&Row>, Vec<&Row>) =
        conns.iter().copied().partition(|r| r["status"] == 407);
    check!(out, !allowed.is_empty(), "{tool} made no allowed connection");
    for row in &run.egress {
        let host = row["host"].as_str().unwrap_or("");
        check!(out, hosts.contains(&host), "unexpected host {host}: {row}");
    }
    for row in &allowed {
        check_eq!(out, row["method"], via.method(), "not {via:?}: {row}");
        check_eq!(out, row["port"], 443, "{row}");
        check_eq!(out, row["decision"], "allow", "{row}");
        let status = row["status"].as_u64().unwrap_or(0);
        check!(
            out,
            [502, 504].contains(&status),
            "not an unreachable dial: {row}"
        );
    }
    assert_challenges(out, tool, &challenges, via);
    check_eq!(
        out,
        run.end["exit_code"].as_i64(),
        out.code().map(i64::from),
        "the shim's exit is {tool}'s"
    );
}

/// The 407 rows are there exactly when `via` says the client waits for
/// the challenge, and are the gate's own refusals of a CONNECT.
fn assert_challenges(out: &Outcome, tool: &str, challenges: &[&Row], via: Via) {
    check_eq!(
        out,
        !challenges.is_empty(),
        via.challenged(),
        "whether {tool} waited for the 407 challenge"
    );
    for row in challenges {
        check_eq!(out, row["method"], "CONNECT", "{row}");
        check_eq!(out, row["decision"], "deny", "{row}");
    }
}

/// A denial: `tool`, pointed at `host`, failed; the rows naming `host` sit
/// under its audit ID (or a guarded child's) and are refusals, 403 (after
/// the 407 challenge for a JVM client, `via`), on 443 for connections; a
/// `cli-guard:` line names the host and that audit ID.
fn assert_denied(c: &Client, out: &Outcome, tool: &str, host: &str, via: Via) {
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "{tool} must fail when its registry is denied"
    );
    let log = c.log();
    let run = invocations(&log, tool);
    let rows: Vec<&Row> = run.egress.iter().copied().filter(|r| r["host"] == host).collect();
    let (challenges, denied): (Vec<&Row>, Vec<&Row>) = rows.iter().copied().partition(|r| r["status"] == 407);
    check!(
        out,
        !denied.is_empty(),
        "no row for {host} under {tool}'s audit id"
    );
    for row in &denied {
        check_eq!(out, row["decision"], "deny", "{row}");
        check_eq!(out, row["status"], 403, "{row}");
        if row["method"] != "dns" {
            check_eq!(out, row["port"], 443, "{row}");
        }
    }
    assert_challenges(out, tool, &challenges, via);
    check!(out, run.denied >= 1, "no denial counted: {}", run.end);
    let ids: Vec<&String> = denied
        .iter()
        .filter_map(|r| run.ids.iter().find(|i| r["audit_id"] == i.as_str()))
        .collect();
    check!(
        out,
        out.stderr().lines().any(|l| l.contains("cli-guard:")
            && l.contains(host)
            && ids.iter().any(|id| l.contains(id.as_str()))),
        "no cli-guard: line names {host} and the audit id of its rows"
    );
}

// ---------------------------------------------------------------------------
// The npm registry: pnpm, pnpx, bun, bunx, deno, corepack, yarn 4

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pnpm_add_reaches_only_the_npm_registry() {
    need("pnpm");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let out = c.run(client_cmd(&c, &proj, "pnpm", &["add", "is-number"]));
    assert_fetched(&c, &out, "pnpm", &["registry.npmjs.org"]);
    assert!(proj.join("node_modules/is-number/package.json").exists());
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pnpm_pointed_at_an_unlisted_registry_is_denied() {
    need("pnpm");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let registry = format!("https://{UNLISTED_NPM}/");
    let args = [
        "add",
        "is-number",
        "--registry",
        &registry,
        "--config.fetch-retries=0",
    ];
    let out = c.run(client_cmd(&c, &proj, "pnpm", &args));
    assert_denied(&c, &out, "pnpm", UNLISTED_NPM, Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pnpx_runs_a_package_from_the_npm_registry() {
    need("pnpx");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let out = c.run(client_cmd(&c, &proj, "pnpx", &["cowsay@1.6.0", "moo"]));
    assert_fetched_then_ran_offline(&c, &out, "pnpx", &["registry.npmjs.org"], "cowsay");
    check!(out, out.stdout().contains("moo"), "cowsay did not run");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bun_add_reaches_only_the_npm_registry() {
    need("bun");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let out = c.run(client_cmd(&c, &proj, "bun", &["add", "is-number"]));
    assert_fetched(&c, &out, "bun", &["registry.npmjs.org"]);
    assert!(proj.join("node_modules/is-number/package.json").exists());
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bun_pointed_at_an_unlisted_registry_is_denied() {
    need("bun");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let registry = format!("https://{UNLISTED_NPM}/");
    let out = c.run(client_cmd(
        &c,
        &proj,
        "bun",
        &["add", "is-number", "--registry", &registry],
    ));
    assert_denied(&c, &out, "bun", UNLISTED_NPM, Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bunx_runs_a_package_from_the_npm_registry() {
    need("bunx");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let out = c.run(client_cmd(&c, &proj, "bunx", &["cowsay@1.6.0", "moo"]));
    assert_fetched_then_ran_offline(&c, &out, "bunx", &["registry.npmjs.org"], "cowsay");
    check!(out, out.stdout().contains("moo"), "cowsay did not run");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn deno_add_of_an_npm_package_reaches_only_the_npm_registry() {
    need("deno");
    let c = Client::new();
    let proj = project(&c, &[("deno.json", "{}")]);
    let out = c.run(client_cmd(&c, &proj, "deno", &["add", "npm:is-number@7.0.0"]));
    assert_fetched(&c, &out, "deno", &["registry.npmjs.org"]);
    let manifest = fs::read_to_string(proj.join("deno.json")).unwrap();
    assert!(manifest.contains("npm:is-number"), "{manifest}");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn deno_pointed_at_an_unlisted_registry_is_denied() {
    need("deno");
    let c = Client::new();
    let proj = project(&c, &[("deno.json", "{}")]);
    let mut cmd = client_cmd(&c, &proj, "deno", &["add", "npm:is-number@7.0.0"]);
    cmd.env("NPM_CONFIG_REGISTRY", format!("https://{UNLISTED_NPM}/"));
    let out = c.run(cmd);
    assert_denied(&c, &out, "deno", UNLISTED_NPM, Via::Proxy);
}

/// The yarn that corepack fetches: yarn 4, the project's packageManager.
const YARN_4: &str = "4.18.1";

/// corepack with yarn ≥ 2 taken from the npm registry
/// (`@yarnpkg/cli-dist`) rather than repo.yarnpkg.com, which this machine
/// does not reach; no download prompt.
fn corepack_env(cmd: &mut Command, registry: &str) {
    cmd.env("COREPACK_NPM_REGISTRY", registry)
        .env("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn corepack_fetches_yarn_4_from_the_npm_registry() {
    need("corepack");
    let c = Client::new();
    let proj = project(&c, &[]);
    let spec = format!("yarn@{YARN_4}");
    let mut cmd = client_cmd(&c, &proj, "corepack", &[&spec, "--version"]);
    corepack_env(&mut cmd, "https://registry.npmjs.org");
    let out = c.run(cmd);
    assert_fetched(&c, &out, "corepack", &["registry.npmjs.org"]);
    check_eq!(out, out.stdout().trim(), YARN_4, "the fetched yarn runs");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn corepack_default_source_of_yarn_4_goes_through_the_gate() {
    need("corepack");
    let c = Client::new();
    let proj = project(&c, &[]);
    let spec = format!("yarn@{YARN_4}");
    let mut cmd = client_cmd(&c, &proj, "corepack", &[&spec, "--version"]);
    cmd.env("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0");
    let out = c.run(cmd);
    assert_gated_unreachable(&c, &out, "corepack", &["repo.yarnpkg.com"], Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn corepack_pointed_at_an_unlisted_registry_is_denied() {
    need("corepack");
    let c = Client::new();
    let proj = project(&c, &[]);
    let spec = format!("yarn@{YARN_4}");
    let mut cmd = client_cmd(&c, &proj, "corepack", &[&spec, "--version"]);
    corepack_env(&mut cmd, &format!("https://{UNLISTED_NPM}"));
    let out = c.run(cmd);
    assert_denied(&c, &out, "corepack", UNLISTED_NPM, Via::Proxy);
}

/// A yarn 4 project: corepack's `yarn` runs the packageManager's yarn,
/// fetched (under yarn's shim) from the npm registry; yarn's own registry
/// is `registry` (registry.yarnpkg.com does not serve this machine).
fn yarn_4_cmd(c: &Client, registry: &str) -> Command {
    let manifest =
        format!(r#"{{"name":"proj","version":"1.0.0","private":true,"packageManager":"yarn@{YARN_4}"}}"#);
    let proj = project(c, &[("package.json", &manifest), ("yarn.lock", "")]);
    let mut cmd = client_cmd(c, &proj, "yarn", &["add", "is-number"]);
    corepack_env(&mut cmd, "https://registry.npmjs.org");
    cmd.env("YARN_NPM_REGISTRY_SERVER", registry)
        .env("YARN_ENABLE_TELEMETRY", "0")
        .env("YARN_ENABLE_GLOBAL_CACHE", "0")
        .env("YARN_HTTP_RETRY", "0");
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn yarn_4_through_corepack_reaches_only_the_npm_registry() {
    need("yarn");
    let c = Client::new();
    let out = c.run(yarn_4_cmd(&c, "https://registry.npmjs.org"));
    assert_fetched(&c, &out, "yarn", &["registry.npmjs.org"]);
    let lock = fs::read_to_string(c.tmp.path().join("proj/yarn.lock")).unwrap();
    check!(out, lock.contains("is-number@npm:"), "not in yarn.lock:\n{lock}");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn yarn_4_pointed_at_an_unlisted_registry_is_denied() {
    need("yarn");
    let c = Client::new();
    let out = c.run(yarn_4_cmd(&c, &format!("https://{UNLISTED_NPM}")));
    assert_denied(&c, &out, "yarn", UNLISTED_NPM, Via::Proxy);
}

// ---------------------------------------------------------------------------
// PyPI: uv, uvx, poetry, pipx, pdm, hatch, python -m pip

const PYPI: &[&str] = &["pypi.org", "files.pythonhosted.org"];

fn unlisted_index() -> String {
    format!("https://{UNLISTED_PYPI}/simple")
}

/// `uv pip install ARGS…` into a fresh virtualenv of this machine's Python.
fn uv_pip_install(c: &Client, args: &[&str]) -> Command {
    let proj = project(c, &[]);
    let venv = proj.join(".venv");
    let made = command("python3")
        .arg("-m")
        .arg("venv")
        .arg("--without-pip")
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv failed");
    let mut all = vec!["pip", "install", "--python", venv.to_str().unwrap()];
    all.extend(args);
    client_cmd(c, &proj, "uv", &all)
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn uv_pip_install_reaches_only_pypi() {
    need("uv");
    let c = Client::new();
    let out = c.run(uv_pip_install(&c, &["six"]));
    assert_fetched(&c, &out, "uv", PYPI);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn uv_pointed_at_an_unlisted_index_is_denied() {
    need("uv");
    let c = Client::new();
    let index = unlisted_index();
    let mut cmd = uv_pip_install(&c, &["--index-url", &index, "six"]);
    cmd.env("UV_HTTP_RETRIES", "0");
    let out = c.run(cmd);
    assert_denied(&c, &out, "uv", UNLISTED_PYPI, Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn uvx_runs_a_tool_from_pypi() {
    need("uvx");
    let c = Client::new();
    let proj = project(&c, &[]);
    let out = c.run(client_cmd(
        &c,
        &proj,
        "uvx",
        &["--python", python(), "pycowsay==0.0.0.2", "moo"],
    ));
    assert_fetched_then_ran_offline(&c, &out, "uvx", PYPI, "pycowsay");
    check!(out, out.stdout().contains("moo"), "pycowsay did not run");
}

const PYPROJECT: &str =
    "[project]\nname = \"proj\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n";

fn poetry_cmd(c: &Client, extra: &str) -> Command {
    let pyproject = format!("{PYPROJECT}\n[tool.poetry]\npackage-mode = false\n{extra}");
    let proj = project(c, &[("pyproject.toml", &pyproject)]);
    let mut cmd = client_cmd(c, &proj, "poetry", &["add", "six"]);
    cmd.env("POETRY_VIRTUALENVS_IN_PROJECT", "true")
        .env("POETRY_VIRTUALENVS_PREFER_ACTIVE_PYTHON", "true");
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn poetry_add_reaches_only_pypi() {
    need("poetry");
    let c = Client::new();
    let out = c.run(poetry_cmd(&c, ""));
    assert_fetched(&c, &out, "poetry", PYPI);
    assert!(c.tmp.path().join("proj/poetry.lock").exists(), "no poetry.lock");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn poetry_pointed_at_an_unlisted_source_is_denied() {
    need("poetry");
    let c = Client::new();
    let source = format!(
        "\n[[tool.poetry.source]]\nname = \"unlisted\"\nurl = \"{}\"\npriority = \"primary\"\n",
        unlisted_index()
    );
    let out = c.run(poetry_cmd(&c, &source));
    assert_denied(&c, &out, "poetry", UNLISTED_PYPI, Via::Proxy);
}

fn pipx_cmd(c: &Client, args: &[&str]) -> Command {
    let proj = project(c, &[]);
    let mut all = vec!["install"];
    all.extend(args);
    all.push("pycowsay==0.0.0.2");
    let mut cmd = client_cmd(c, &proj, "pipx", &all);
    cmd.env("PIPX_HOME", c.dir("pipx-home"))
        .env("PIPX_BIN_DIR", c.dir("pipx-bin"))
        .env("PIPX_MAN_DIR", c.dir("pipx-man"))
        .env("PIPX_DEFAULT_PYTHON", python());
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pipx_install_reaches_only_pypi() {
    need("pipx");
    let c = Client::new();
    let out = c.run(pipx_cmd(&c, &[]));
    assert_fetched(&c, &out, "pipx", PYPI);
    assert!(
        c.tmp.path().join("pipx-bin/pycowsay").exists(),
        "pycowsay not installed"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pipx_pointed_at_an_unlisted_index_is_denied() {
    need("pipx");
    let c = Client::new();
    let index = unlisted_index();
    let out = c.run(pipx_cmd(&c, &["--index-url", &index]));
    assert_denied(&c, &out, "pipx", UNLISTED_PYPI, Via::Proxy);
}

fn pdm_cmd(c: &Client) -> Command {
    let proj = project(c, &[("pyproject.toml", PYPROJECT)]);
    let mut cmd = client_cmd(c, &proj, "pdm", &["add", "six"]);
    cmd.env("PDM_CHECK_UPDATE", "false").env("PDM_PYTHON", python());
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pdm_add_reaches_only_pypi() {
    need("pdm");
    let c = Client::new();
    let out = c.run(pdm_cmd(&c));
    assert_fetched(&c, &out, "pdm", PYPI);
    assert!(c.tmp.path().join("proj/pdm.lock").exists(), "no pdm.lock");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pdm_pointed_at_an_unlisted_index_is_denied() {
    need("pdm");
    let c = Client::new();
    let mut cmd = pdm_cmd(&c);
    cmd.env("PDM_PYPI_URL", unlisted_index());
    let out = c.run(cmd);
    assert_denied(&c, &out, "pdm", UNLISTED_PYPI, Via::Proxy);
}

/// `hatch env create`: the default environment with six in it, the
/// project itself not installed (that would fetch its build backend too).
fn hatch_cmd(c: &Client) -> Command {
    let pyproject = "[project]\nname = \"proj\"\nversion = \"0.1.0\"\n\n[tool.hatch.envs.default]\nskip-install = true\ndependencies = [\"six\"]\n";
    let proj = project(c, &[("pyproject.toml", pyproject), ("hatch.toml", "")]);
    let mut cmd = client_cmd(c, &proj, "hatch", &["env", "create"]);
    cmd.env("HATCH_CONFIG", proj.join("hatch.toml"))
        .env("HATCH_PYTHON", python());
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn hatch_env_create_reaches_only_pypi() {
    need("hatch");
    let c = Client::new();
    let out = c.run(hatch_cmd(&c));
    assert_fetched(&c, &out, "hatch", PYPI);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn hatch_pointed_at_an_unlisted_index_is_denied() {
    need("hatch");
    let c = Client::new();
    let mut cmd = hatch_cmd(&c);
    // Whichever installer hatch picks for the environment, pip or uv.
    cmd.env("PIP_INDEX_URL", unlisted_index())
        .env("UV_DEFAULT_INDEX", unlisted_index())
        .env("PIP_RETRIES", "0")
        .env("UV_HTTP_RETRIES", "0");
    let out = c.run(cmd);
    assert_denied(&c, &out, "hatch", UNLISTED_PYPI, Via::Proxy);
}

/// install.sh gave python a shim (a hard link to the binary): the runs
/// below go through it.
fn assert_python_is_shimmed() {
    use std::os::unix::fs::MetadataExt;
    let shim = install::plain().join("share/cli-guard/shims/python");
    let id = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    assert!(
        id(&shim).is_some() && id(&shim) == id(&install::plain().join("bin/cli-guard")),
        "{} is not a shim",
        shim.display()
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn python_m_pip_download_runs_under_pips_policy() {
    need("python");
    assert_python_is_shimmed();
    let c = Client::new();
    let dl = c.dir("dl");
    let proj = project(&c, &[]);
    let into = dl.to_str().unwrap();
    let args = [
        "-m",
        "pip",
        "download",
        "six",
        "--no-deps",
        "--no-cache-dir",
        "-d",
        into,
    ];
    let out = c.run(client_cmd(&c, &proj, "python", &args));
    assert_fetched(&c, &out, "pip", PYPI);
    let got: Vec<String> = fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    check!(
        out,
        got.iter().any(|f| f.starts_with("six-")),
        "no six in {got:?}"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn python_c_runs_with_no_gate_and_no_row() {
    need("python");
    assert_python_is_shimmed();
    let c = Client::new();
    let proj = project(&c, &[]);
    let code = "import os; print(1, os.environ.get('HTTPS_PROXY'), os.environ.get('CLI_GUARD_AUDIT_ID'))";
    let out = c.run(client_cmd(&c, &proj, "python", &["-c", code]));
    check_eq!(out, out.code(), Some(0), "python -c failed");
    check_eq!(
        out,
        out.stdout().trim(),
        "1 None None",
        "no gate in the interpreter's environment"
    );
    check!(out, out.guard_lines().is_empty(), "cli-guard said something");
    let text = fs::read_to_string(&c.audit).unwrap_or_default();
    check!(out, text.is_empty(), "python -c wrote rows:\n{text}");
}

// ---------------------------------------------------------------------------
// Registries this machine does not reach: go, gem, bundle, composer, mvn,
// gradle

fn go_cmd(c: &Client) -> Command {
    let proj = project(c, &[("go.mod", "module example.com/probe\n\ngo 1.19\n")]);
    let mut cmd = client_cmd(c, &proj, "go", &["mod", "download", "golang.org/x/text@v0.3.8"]);
    // Module files are read-only by default; the test's dir must be removable.
    cmd.env("GOFLAGS", "-modcacherw");
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn go_mod_download_goes_through_the_gate() {
    need("go");
    let c = Client::new();
    let out = c.run(go_cmd(&c));
    assert_gated_unreachable(&c, &out, "go", &["proxy.golang.org"], Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn go_pointed_at_an_unlisted_proxy_is_denied() {
    need("go");
    let c = Client::new();
    let mut cmd = go_cmd(&c);
    cmd.env("GOPROXY", "https://goproxy.example.net");
    let out = c.run(cmd);
    assert_denied(&c, &out, "go", "goproxy.example.net", Via::Proxy);
}

const RUBYGEMS: &[&str] = &["rubygems.org", "index.rubygems.org"];

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn gem_fetch_goes_through_the_gate() {
    need("gem");
    let c = Client::new();
    let proj = project(&c, &[]);
    let out = c.run(client_cmd(&c, &proj, "gem", &["fetch", "rake"]));
    assert_gated_unreachable(&c, &out, "gem", RUBYGEMS, Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn gem_pointed_at_an_unlisted_source_is_denied() {
    need("gem");
    let c = Client::new();
    let proj = project(&c, &[]);
    let args = [
        "fetch",
        "rake",
        "--clear-sources",
        "--source",
        "https://gems.example.net/",
    ];
    let out = c.run(client_cmd(&c, &proj, "gem", &args));
    assert_denied(&c, &out, "gem", "gems.example.net", Via::Proxy);
}

fn bundle_cmd(c: &Client, source: &str) -> Command {
    let gemfile = format!("source \"{source}\"\ngem \"rake\"\n");
    let proj = project(c, &[("Gemfile", &gemfile)]);
    let mut cmd = client_cmd(c, &proj, "bundle", &["install", "--retry", "0"]);
    cmd.env("BUNDLE_PATH", c.dir("bundle"));
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bundle_install_goes_through_the_gate() {
    need("bundle");
    let c = Client::new();
    let out = c.run(bundle_cmd(&c, "https://rubygems.org"));
    assert_gated_unreachable(&c, &out, "bundle", RUBYGEMS, Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bundle_pointed_at_an_unlisted_source_is_denied() {
    need("bundle");
    let c = Client::new();
    let out = c.run(bundle_cmd(&c, "https://gems.example.net"));
    assert_denied(&c, &out, "bundle", "gems.example.net", Via::Proxy);
}

fn composer_cmd(c: &Client, manifest: &str) -> Command {
    let proj = project(c, &[("composer.json", manifest)]);
    client_cmd(
        c,
        &proj,
        "composer",
        &["install", "--no-interaction", "--no-progress"],
    )
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn composer_install_goes_through_the_gate() {
    need("composer");
    let c = Client::new();
    let out = c.run(composer_cmd(&c, r#"{"require":{"psr/log":"^3.0"}}"#));
    assert_gated_unreachable(&c, &out, "composer", &["repo.packagist.org"], Via::Proxy);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn composer_pointed_at_an_unlisted_repository_is_denied() {
    need("composer");
    let c = Client::new();
    let manifest = r#"{"repositories":[{"type":"composer","url":"https://packages.example.net"},{"packagist.org":false}],
        "require":{"psr/log":"^3.0"}}"#;
    let out = c.run(composer_cmd(&c, manifest));
    assert_denied(&c, &out, "composer", "packages.example.net", Via::Proxy);
}

const MAVEN_CENTRAL: &str = "repo.maven.apache.org";

/// `mvn dependency:resolve` on a one-dependency POM; `repositories` goes
/// inside `<project>` (an override of central, say).
fn mvn_cmd(c: &Client, repositories: &str) -> Command {
    let pom = format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>probe</groupId><artifactId>probe</artifactId><version>1</version>
  <dependencies><dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13.2</version></dependency></dependencies>
  {repositories}
</project>
"#
    );
    let proj = project(c, &[("pom.xml", &pom)]);
    let repo = c.dir("m2");
    let local = format!("-Dmaven.repo.local={}", repo.display());
    client_cmd(c, &proj, "mvn", &["-B", "-ntp", &local, "dependency:resolve"])
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn mvn_resolve_goes_through_the_gate() {
    need("mvn");
    let c = Client::new();
    let out = c.run(mvn_cmd(&c, ""));
    assert_gated_unreachable(&c, &out, "mvn", &[MAVEN_CENTRAL], Via::Transparent);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn mvn_pointed_at_an_unlisted_repository_is_denied() {
    need("mvn");
    let c = Client::new();
    // The same id replaces central, for plugins too.
    let central =
        |kind: &str| format!("<{kind}><id>central</id><url>https://maven.example.net/maven2</url></{kind}>");
    let repositories = format!(
        "<repositories>{}</repositories><pluginRepositories>{}</pluginRepositories>",
        central("repository"),
        central("pluginRepository")
    );
    let out = c.run(mvn_cmd(&c, &repositories));
    assert_denied(&c, &out, "mvn", "maven.example.net", Via::Transparent);
}

/// `gradle resolve`: a task that resolves one dependency from
/// `repositories` (Gradle 4's `compile` configuration).
fn gradle_cmd(c: &Client, repositories: &str) -> Command {
    let build = format!(
        "apply plugin: 'java'\nrepositories {{ {repositories} }}\ndependencies {{ compile 'junit:junit:4.13.2' }}\ntask resolve {{ doLast {{ configurations.compile.resolve() }} }}\n"
    );
    let proj = project(
        c,
        &[
            ("build.gradle", &build),
            ("settings.gradle", "rootProject.name = 'probe'\n"),
        ],
    );
    client_cmd(c, &proj, "gradle", &["--no-daemon", "-q", "resolve"])
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn gradle_resolve_goes_through_the_gate() {
    need("gradle");
    let c = Client::new();
    let out = c.run(gradle_cmd(&c, "mavenCentral()"));
    assert_gated_unreachable(&c, &out, "gradle", &[MAVEN_CENTRAL], Via::ProxyAfter407);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn gradle_pointed_at_an_unlisted_repository_is_denied() {
    need("gradle");
    let c = Client::new();
    let out = c.run(gradle_cmd(&c, "maven { url 'https://maven.example.net/maven2' }"));
    assert_denied(&c, &out, "gradle", "maven.example.net", Via::ProxyAfter407);
}

// ---------------------------------------------------------------------------
// Fetch and run: npx, npm exec, pnpm dlx, yarn dlx, bunx, uvx, pipx run
//
// Each fetches a local package made here whose program reaches a host that
// its tool's allowlist does not name, and whose install script (or build
// script) tries the same host. The fetch phase runs in strict mode and the
// install script is refused with a row; the run phase runs the program
// observed, and it gets its 200 with an observe row. The host is
// pypi.org for the npm registry's clients and registry.npmjs.org for
// PyPI's: both reachable here and in CI.

/// What the npm registry's clients may not reach, and their programs do.
const NODE_TARGET: &str = "pypi.org";
/// What PyPI's clients may not reach, and their programs do.
const PYTHON_TARGET: &str = "registry.npmjs.org";

/// A shell command that tries `https://HOST/` through the proxy and
/// writes `CONNECT-STATUS HTTP-STATUS` (`403 000` refused, `200 200`
/// through) to `mark`.
fn curl_mark(host: &str, mark: &Path) -> String {
    format!(
        "curl -s -o /dev/null -w '%{{http_connect}} %{{http_code}}' https://{host}/simple/six/ > '{}'; true",
        mark.display()
    )
}

/// `netcli-1.0.0.tgz`: a bin `netcli` (Node, which every client can run)
/// that reaches NODE_TARGET with curl and prints the statuses, a
/// postinstall that tries the same (`netcli.mark`), and a dependency,
/// `netdep-1.0.0.tgz`, whose postinstall does too (`netdep.mark`).
/// pnpm 12 and bun 1.4 run no tarball dependency's scripts even when told
/// to trust them, so for them the fetched package's own postinstall is the
/// install script under test (the tool's temporary project depends on it).
fn node_packages(c: &Client) -> PathBuf {
    let marks = c.dir("tmp/marks");
    let pack = |name: &str, manifest: String, files: &[(&str, &str)]| -> PathBuf {
        let dir = c.dir(&format!("{name}-src/package"));
        fs::write(dir.join("package.json"), manifest).unwrap();
        for (file, text) in files {
            fs::write(dir.join(file), text).unwrap();
        }
        let tarball = c.tmp.path().join(format!("{name}-1.0.0.tgz"));
        let tar = command("tar")
            .arg("czf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.parent().unwrap())
            .arg("package")
            .status()
            .unwrap();
        assert!(tar.success(), "tar");
        tarball
    };
    let postinstall = |name: &str| {
        serde_json::to_string(&curl_mark(NODE_TARGET, &marks.join(format!("{name}.mark")))).unwrap()
    };
    let netdep = pack(
        "netdep",
        format!(
            r#"{{"name":"netdep","version":"1.0.0","scripts":{{"postinstall":{}}}}}"#,
            postinstall("netdep")
        ),
        &[],
    );
    let cli = format!(
        "#!/usr/bin/env node\n\
         const {{ execFileSync }} = require('child_process');\n\
         const got = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{{http_connect}} %{{http_code}}', 'https://{NODE_TARGET}/simple/six/'], {{ encoding: 'utf8' }});\n\
         console.log('status ' + got);\n"
    );
    pack(
        "netcli",
        format!(
            r#"{{"name":"netcli","version":"1.0.0","bin":{{"netcli":"cli.js"}},"scripts":{{"postinstall":{}}},"dependencies":{{"netdep":"file:{}"}}}}"#,
            postinstall("netcli"),
            netdep.display()
        ),
        &[("cli.js", &cli)],
    )
}

/// What an install script wrote, if it ran.
fn mark(c: &Client, name: &str) -> String {
    fs::read_to_string(c.tmp.path().join("tmp/marks").join(format!("{name}.mark"))).unwrap_or_default()
}

/// A fetch and run of the local package: the program got its 200 through
/// the gate, observed, under the run phase; the install script `script`
/// (`netdep` or `netcli`) was refused in the fetch phase, with a row; the
/// run names the fetched package, read from its files.
fn assert_program_observed_install_refused(
    c: &Client,
    out: &Outcome,
    tool: &str,
    target: &str,
    script: &str,
) {
    check_eq!(out, out.code(), Some(0), "{tool} failed");
    check!(
        out,
        out.stdout()
            .lines()
            .any(|l| l.trim() == "status 200 200" || l.trim() == "status 200"),
        "the program did not get its 200"
    );
    let log = c.log();
    let (fetch, run) = phases(out, &log, tool);
    check_eq!(
        out,
        run["package"],
        serde_json::json!({"name": "netcli", "version": "1.0.0"}),
        "the run names what it ran"
    );
    let ran = invocations_from(&log, run);
    let observed: Vec<&&Row> = ran.egress.iter().filter(|r| r["host"] == target).collect();
    check!(
        out,
        !observed.is_empty()
            && observed
                .iter()
                .all(|r| r["decision"] == "allow" && r["mode"] == "observe" && r["status"] == 200),
        "the program's request: observe rows under the run: {observed:?}"
    );
    let fetched = invocations_from(&log, fetch);
    let refused: Vec<&&Row> = fetched.egress.iter().filter(|r| r["host"] == target).collect();
    check!(
        out,
        !refused.is_empty()
            && refused
                .iter()
                .all(|r| r["decision"] == "deny" && r["status"] == 403),
        "the install script's request: refused under the fetch: {refused:?}"
    );
    let wrote = mark(c, script);
    check!(
        out,
        wrote.contains("403") && !wrote.contains("200"),
        "{script}'s install script was not refused: {wrote:?}"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npx_y_runs_a_fetched_program_observed_and_refuses_its_dependencys_postinstall() {
    need("npx");
    let c = Client::new();
    let tarball = node_packages(&c);
    let proj = project(&c, &[PACKAGE_JSON]);
    let package = format!("--package={}", tarball.display());
    let out = c.run(client_cmd(&c, &proj, "npx", &["-y", &package, "netcli"]));
    assert_program_observed_install_refused(&c, &out, "npx", NODE_TARGET, "netdep");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_exec_runs_a_fetched_program_observed_and_refuses_its_dependencys_postinstall() {
    need("npm");
    let c = Client::new();
    let tarball = node_packages(&c);
    let proj = project(&c, &[PACKAGE_JSON]);
    let package = format!("--package={}", tarball.display());
    let out = c.run(client_cmd(
        &c,
        &proj,
        "npm",
        &["exec", "--yes", &package, "--", "netcli"],
    ));
    assert_program_observed_install_refused(&c, &out, "npm", NODE_TARGET, "netdep");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pnpm_dlx_runs_a_fetched_program_observed_and_refuses_its_postinstall() {
    need("pnpm");
    let c = Client::new();
    let tarball = node_packages(&c);
    let proj = project(&c, &[PACKAGE_JSON]);
    let package = format!("--package={}", tarball.display());
    let args = ["dlx", "--allow-build=netcli", &package, "netcli"];
    let out = c.run(client_cmd(&c, &proj, "pnpm", &args));
    assert_program_observed_install_refused(&c, &out, "pnpm", NODE_TARGET, "netcli");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bunx_runs_a_fetched_program_observed_and_refuses_its_postinstall() {
    need("bunx");
    let c = Client::new();
    let tarball = node_packages(&c);
    let proj = project(&c, &[PACKAGE_JSON]);
    let tarball = tarball.display().to_string();
    let out = c.run(client_cmd(
        &c,
        &proj,
        "bunx",
        &["--trust", "-p", &tarball, "netcli"],
    ));
    assert_program_observed_install_refused(&c, &out, "bunx", NODE_TARGET, "netcli");
}

/// yarn dlx installs into a temporary project it deletes as the program
/// exits, so it cannot run from what it fetched: it runs observed whole,
/// says so in one line, and its start row says why. With scripts enabled
/// (yarn 4 runs none by default), the dependency's postinstall then
/// reaches the host too: the trade-off the README states.
#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn yarn_dlx_runs_observed_whole_and_says_so() {
    need("yarn");
    let c = Client::new();
    let tarball = node_packages(&c);
    let manifest =
        format!(r#"{{"name":"proj","version":"1.0.0","private":true,"packageManager":"yarn@{YARN_4}"}}"#);
    let proj = project(&c, &[("package.json", &manifest)]);
    let tarball = tarball.display().to_string();
    let mut cmd = client_cmd(&c, &proj, "yarn", &["dlx", "-q", "-p", &tarball, "netcli"]);
    corepack_env(&mut cmd, "https://registry.npmjs.org");
    cmd.env("YARN_NPM_REGISTRY_SERVER", "https://registry.npmjs.org")
        .env("YARN_ENABLE_TELEMETRY", "0")
        .env("YARN_ENABLE_SCRIPTS", "1");
    let out = c.run(cmd);
    check_eq!(out, out.code(), Some(0), "yarn dlx failed");
    check!(
        out,
        out.stdout().lines().any(|l| l.trim() == "status 200 200"),
        "the program did not get its 200"
    );
    let said: Vec<String> = out
        .guard_lines()
        .into_iter()
        .filter(|l| l.contains("yarn dlx"))
        .collect();
    check!(
        out,
        said.len() == 1 && said[0].contains("observed"),
        "one line says it: {said:?}"
    );
    let log = c.log();
    let start = only_start(&log, "yarn");
    check_eq!(out, start["phase"], "fetch+run", "{start}");
    check_eq!(out, start["mode"], "observe", "{start}");
    check!(
        out,
        start["isolation_reason"]
            .as_str()
            .is_some_and(|r| r.contains("temporary project")),
        "{start}"
    );
    let rows = invocations_from(&log, start);
    check!(
        out,
        rows.egress
            .iter()
            .any(|r| r["host"] == NODE_TARGET && r["mode"] == "observe" && r["status"] == 200),
        "observe rows for the program"
    );
    check_eq!(
        out,
        mark(&c, "netdep"),
        "200 200",
        "observed whole: the postinstall got through too"
    );
}

/// `netcli`, a Python project whose console script reaches PYTHON_TARGET
/// and prints `status 200`, depending on `netdep`, an sdist whose setup.py
/// tries the same host when it is built (`netdep.mark`).
fn python_packages(c: &Client) -> PathBuf {
    let marks = c.dir("tmp/marks");
    let fetch = |what: &str, on_error: &str| {
        format!(
            "import urllib.request\n\
             try:\n    with urllib.request.urlopen('https://{PYTHON_TARGET}/', timeout=30) as r:\n        got = str(r.status)\n\
             except Exception as e:\n    got = {on_error}\n{what}"
        )
    };
    // Vendored in the project, which strict mode lets its build write
    // (setuptools' egg-info); the program's own tree is named by `--from`
    // or `--spec`, which does too.
    let netdep = c.dir("proj/vendor/netdep");
    let mark = marks.join("netdep.mark");
    fs::write(
        netdep.join("setup.py"),
        format!(
            "{}\nfrom setuptools import setup\nsetup(name='netdep', version='1.0.0', py_modules=[])\n",
            fetch(
                &format!(
                    "with open('{}', 'a') as m:\n    m.write(got + '\\n')",
                    mark.display()
                ),
                "'refused ' + str(e)"
            )
        ),
    )
    .unwrap();
    let netcli = c.dir("netcli");
    fs::write(
        netcli.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [project]\nname = \"netcli\"\nversion = \"1.0.0\"\ndependencies = [\"netdep @ file://{}\"]\n\n\
             [project.scripts]\nnetcli = \"netcli:main\"\n",
            netdep.display()
        ),
    )
    .unwrap();
    fs::create_dir_all(netcli.join("netcli")).unwrap();
    fs::write(
        netcli.join("netcli/__init__.py"),
        format!(
            "def main():\n    {}\n",
            fetch("print('status ' + got)", "'blocked ' + str(e)").replace('\n', "\n    ")
        ),
    )
    .unwrap();
    netcli
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn uvx_runs_a_fetched_program_observed_and_refuses_its_dependencys_build_script() {
    need("uvx");
    let c = Client::new();
    let netcli = python_packages(&c);
    let proj = project(&c, &[]);
    let from = netcli.display().to_string();
    let args = ["--python", python(), "--from", &from, "netcli"];
    let out = c.run(client_cmd(&c, &proj, "uvx", &args));
    assert_program_observed_install_refused(&c, &out, "uvx", PYTHON_TARGET, "netdep");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pipx_run_runs_a_fetched_program_observed_and_refuses_its_dependencys_build_script() {
    need("pipx");
    let c = Client::new();
    let netcli = python_packages(&c);
    let proj = project(&c, &[]);
    let spec = netcli.display().to_string();
    let mut cmd = client_cmd(&c, &proj, "pipx", &["run", "--spec", &spec, "netcli"]);
    cmd.env("PIPX_HOME", c.dir("pipx-home"))
        .env("PIPX_BIN_DIR", c.dir("pipx-bin"))
        .env("PIPX_MAN_DIR", c.dir("pipx-man"))
        .env("PIPX_DEFAULT_PYTHON", python());
    let out = c.run(cmd);
    assert_program_observed_install_refused(&c, &out, "pipx", PYTHON_TARGET, "netdep");
}

/// The MCP filesystem server, pinned, from the npm registry.
const MCP_SERVER: &str = "@modelcontextprotocol/server-filesystem";
const MCP_SERVER_VERSION: &str = "2026.8.31";

/// A real MCP server started as agents start it, `npx -y SERVER`, through
/// the shim: it answers `initialize` over stdio, and nothing of the fetch
/// reaches its stdout.
#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn an_mcp_server_started_with_npx_y_answers_initialize_over_stdio() {
    need("npx");
    let c = Client::new();
    let proj = project(&c, &[PACKAGE_JSON]);
    let shared = c.dir("shared");
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"cli-guard-test","version":"1.0.0"}}}"#;
    let input = c.tmp.path().join("initialize.jsonl");
    fs::write(&input, format!("{request}\n")).unwrap();
    let server = format!("{MCP_SERVER}@{MCP_SERVER_VERSION}");
    let shared_arg = shared.display().to_string();
    let mut cmd = client_cmd(&c, &proj, "npx", &["-y", &server, &shared_arg]);
    cmd.stdin(fs::File::open(&input).unwrap());
    let out = c.run(cmd);
    check_eq!(
        out,
        out.code(),
        Some(0),
        "the server did not exit when stdin closed"
    );
    let stdout = out.stdout();
    let first = stdout.lines().next().unwrap_or_default();
    let answer: Value = serde_json::from_str(first).unwrap_or(Value::Null);
    check_eq!(
        out,
        answer["jsonrpc"],
        "2.0",
        "stdout's first line is not the answer: {first:?}"
    );
    check_eq!(out, answer["id"], 1, "{answer}");
    check!(
        out,
        answer["result"]["serverInfo"]["name"].is_string() && answer["result"]["protocolVersion"].is_string(),
        "not an initialize result: {answer}"
    );
    let log = c.log();
    let (_, run) = phases(&out, &log, "npx");
    check_eq!(
        out,
        run["package"],
        serde_json::json!({"name": MCP_SERVER, "version": MCP_SERVER_VERSION}),
        "the run names the server"
    );
}
