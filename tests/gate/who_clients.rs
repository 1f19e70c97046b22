//! Who acted, with the real clients: npm, pnpm, yarn 4 and bun install a
//! project that depends on a registry package (is-number) and on local
//! packages whose lifecycle scripts try to get out (through the proxy,
//! directly, through a nested guarded npm) or to pass for someone else (a
//! forged `npm_package_name`, a cleared environment, a double-forked
//! orphan, the script shell run again, a nested user namespace); the
//! registry's real puppeteer beside a local package calling itself so; the
//! project's own postinstall; cargo's build script; the build backends of
//! pip 26, uv and poetry. Each attempt is refused with a row that names
//! its package (or the project), while the tool's own fetches go on, and
//! `cli-guard audit --package` finds it. In strict mode (the default) and
//! plain, as root and, for npm, as uid 65534 (where the nested npm's gate,
//! non-dumpable by design, hides its descriptors: refused as unknown code).
//! A build backend is named from its sdist's PKG-INFO.
//!
//! Each script writes what it got into a mark file in the sandbox's temp
//! directory (`403 000`: curl's CONNECT answered 403, no HTTP status), so
//! that a test sees both sides: the attempt failed where the attacker
//! stands, and the gate's row says who made it.
//!
//! All are `#[ignore]`d: `.ci/run` installs the clients (pip 26 in a
//! virtualenv of its own) and runs them with `cargo test -- --ignored`; a
//! missing client fails its test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::install;
use crate::util::real_clients::{as_nobody, client_cmd, need, npm_tarball, only_start, Client};
use crate::util::{command, Log, Outcome, Row};

const REGISTRY: &str = "registry.npmjs.org";
/// The host puppeteer's pinned entry allows, and nobody else.
const STORAGE: &str = "storage.googleapis.com";
const WORM: &str = "evil-worm";
/// The puppeteer whose install runs on Node 20 (25 wants Node 22).
const PUPPETEER: &str = "24.43.1";
const PUPPETEER_URL: &str = "https://registry.npmjs.org/puppeteer/-/puppeteer-24.43.1.tgz";
/// A registry.npmjs.org address, dialled by number: strict mode refuses a
/// bare address that no allowed name was resolved to.
const REGISTRY_ADDRESS: &str = "104.16.0.35";
/// curl's `-w`: the proxy's answer to CONNECT, then the HTTP status
/// (`403 000`: refused by the gate, no request made).
const STATUSES: &str = "%{http_connect} %{http_code}";
/// What curl writes when the gate refused its CONNECT.
const REFUSED: &str = "403 000";
/// The yarn that corepack fetches for the project.
const YARN_4: &str = "4.18.1";
/// The virtualenv `.ci/run` makes with a pip that installs build
/// dependencies in its own process (26.0 and later).
const PIP_26: &str = "/opt/cli-guard-ci/pip26";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strict {
    /// The default: strict where the kernel allows (it does here).
    Auto,
    /// The plain proxy only.
    Off,
}

impl Strict {
    fn var(self) -> &'static str {
        match self {
            Strict::Auto => "auto",
            Strict::Off => "off",
        }
    }

    /// The start row's `isolation`.
    fn isolation(self) -> &'static str {
        match self {
            Strict::Auto => "netns",
            Strict::Off => "none",
        }
    }
}

const BOTH: [Strict; 2] = [Strict::Auto, Strict::Off];

/// `program ARGS…` through its shim in `dir`, in a fresh HOME, under
/// `strict`.
fn client(c: &Client, dir: &Path, program: &str, args: &[&str], strict: Strict) -> Command {
    let mut cmd = client_cmd(c, dir, program, args);
    cmd.env("CLI_GUARD_STRICT", strict.var());
    cmd
}

/// Where the scripts leave their marks: the sandbox's temp directory,
/// writable in strict mode.
fn marks(c: &Client) -> PathBuf {
    c.dir("tmp/marks")
}

/// What the script wrote to the mark `name` (empty if it never did).
fn mark(c: &Client, name: &str) -> String {
    fs::read_to_string(marks(c).join(name))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// sh: curl `https://HOST/` through the proxy in its environment, its
/// statuses into the mark `name`; the script goes on whatever curl got.
fn curl(c: &Client, host: &str, name: &str) -> String {
    format!(
        "curl -s -o /dev/null -w '{STATUSES}' https://{host}/ > '{}' 2>&1 || true\n",
        marks(c).join(name).display()
    )
}

/// A package.json: `name`, version 1.0.0 unless `version`, `scripts`.
fn manifest(name: &str, version: &str, scripts: &[(&str, &str)]) -> String {
    let scripts: serde_json::Map<String, Value> = scripts
        .iter()
        .map(|(event, script)| ((*event).to_string(), json!(script)))
        .collect();
    json!({"name": name, "version": version, "scripts": scripts}).to_string()
}

/// The project `proj/` with `manifest` (extended with a name, a version
/// and `private`) and `files`.
fn project(c: &Client, manifest: Value, files: &[(&str, &str)]) -> PathBuf {
    let dir = c.dir("proj");
    let mut all = json!({"name": "proj", "version": "1.0.0", "private": true});
    if let (Some(all), Value::Object(extra)) = (all.as_object_mut(), manifest) {
        all.extend(extra);
    }
    fs::write(dir.join("package.json"), all.to_string()).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// `npm install` in `proj`, with no audit or fund requests.
fn npm_install(c: &Client, proj: &Path, strict: Strict) -> Command {
    let args = ["install", "--no-audit", "--no-fund", "--update-notifier=false"];
    client(c, proj, "npm", &args, strict)
}

/// The one top-level invocation of `tool` (under `strict`): its audit ID,
/// after checking its isolation.
fn top<'a>(out: &Outcome, log: &'a Log, tool: &str, strict: Strict) -> &'a str {
    let start = log.rows().kind("start").tool(tool).top_level().one();
    check_eq!(out, start["isolation"], strict.isolation(), "{start}");
    start.audit_id()
}

/// The network rows of the invocation `id`.
fn rows_of<'a>(log: &'a Log, id: &str) -> Vec<&'a Row> {
    log.rows().of(id).network().to_vec()
}

/// The rows whose process ran package `name`'s code.
fn by_package<'a>(rows: &[&'a Row], name: &str) -> Vec<&'a Row> {
    rows.iter()
        .copied()
        .filter(|r| r["process"]["package"] == name)
        .collect()
}

/// Every row in `rows` is a refusal (403) of `package`'s own code, with
/// `version` and `script` where given, not verified; and there is one.
fn assert_refused_as(
    out: &Outcome,
    rows: &[&Row],
    package: &str,
    version: Option<&str>,
    script: Option<&str>,
) {
    check!(out, !rows.is_empty(), "no row names {package}");
    for row in rows {
        let p = &row["process"];
        check_eq!(out, row["decision"], "deny", "{row}");
        check_eq!(out, row["status"], 403, "{row}");
        check_eq!(out, p["actor"], "package", "{row}");
        check_eq!(out, p["package"], package, "{row}");
        check_eq!(out, p["verified"], false, "{row}");
        if let Some(version) = version {
            check_eq!(out, p["version"], version, "{row}");
        }
        if let Some(script) = script {
            check_eq!(out, p["script"], script, "{row}");
        }
        check!(
            out,
            row.reason().starts_with("made by ") || row.reason().contains("asked to register"),
            "{row}"
        );
    }
}

/// The tool fetched: some rows allowed, every allowed row the tool's own
/// (the pid the shim spawned), for one of `hosts`; and no package code
/// was allowed anything.
fn assert_tool_fetched(out: &Outcome, rows: &[&Row], hosts: &[&str]) {
    let allowed: Vec<&&Row> = rows.iter().filter(|r| r["decision"] == "allow").collect();
    check!(out, !allowed.is_empty(), "the tool fetched nothing");
    for row in allowed {
        check_eq!(out, row["process"]["actor"], "tool", "{row}");
        let host = row.host().unwrap_or_default();
        check!(out, hosts.contains(&host), "{row}");
    }
}

/// The stderr summary has a line saying that `who` was refused `target`.
fn assert_said(out: &Outcome, who: &str, target: &str) {
    let said = format!("cli-guard: {who} was refused {target}");
    check!(
        out,
        out.guard_lines().iter().any(|l| l.starts_with(&said)),
        "no summary line {said:?}"
    );
}

// ---------------------------------------------------------------------------
// npm: a worm's postinstall, three ways out

/// Node reaching the registry ignoring the proxy: by name (its own DNS
/// lookup) and by address; each outcome appended to the file in argv[2].
const DIRECT_JS: &str = r#"const https = require('https'), tls = require('tls'), fs = require('fs');
const say = (line) => fs.appendFileSync(process.argv[2], line + '\n');
let left = 2;
const done = () => { if (--left === 0) process.exit(0); };
https.get({ host: 'registry.npmjs.org', path: '/', agent: false }, (res) => { say('name ' + res.statusCode); done(); })
  .on('error', (e) => { say('name ' + e.code); done(); });
const s = tls.connect({ host: process.argv[3], port: 443, servername: 'registry.npmjs.org' }, () => { say('address connected'); s.destroy(); done(); });
s.on('error', (e) => { say('address ' + e.code); done(); });
"#;

/// `evil-worm`, whose postinstall reaches the registry with curl through
/// the proxy, with Node directly (strict mode only: in plain mode nothing
/// stands in the way of a client that ignores the proxy), and with a
/// nested `npm view` (through npm's shim).
fn worm(c: &Client, strict: Strict) -> PathBuf {
    let m = marks(c);
    let mut sh = curl(c, REGISTRY, "curl");
    if strict == Strict::Auto {
        sh += &format!(
            "node ./direct.js '{}' {REGISTRY_ADDRESS}\n",
            m.join("node").display()
        );
    }
    sh += &format!(
        "npm view is-number version --no-update-notifier > '{0}' 2>&1; echo \"exit $?\" >> '{0}'\n",
        m.join("npm-view").display()
    );
    let manifest = manifest(WORM, "1.0.0", &[("postinstall", "sh ./worm.sh")]);
    npm_tarball(c, WORM, &manifest, &[("worm.sh", &sh), ("direct.js", DIRECT_JS)])
}

/// `npm install` of a project depending on is-number and on `evil-worm`
/// (its tarball), under `strict`, as root or (`nobody`) as uid 65534.
fn install_worm(c: &Client, strict: Strict, nobody: bool) -> Outcome {
    worm(c, strict);
    let deps = json!({"dependencies": {"is-number": "7.0.0", WORM: "file:../evil-worm-1.0.0.tgz"}});
    let proj = project(c, deps, &[]);
    let cmd = npm_install(c, &proj, strict);
    match nobody {
        true => c.run(as_nobody(c, &cmd)),
        false => c.run(cmd),
    }
}

/// The worm got nowhere and every row of it names it; is-number still
/// installed, fetched by npm itself; the nested npm is an invocation of
/// its own under npm's; the summary names the worm.
fn assert_worm_refused(c: &Client, out: &Outcome, strict: Strict) {
    check_eq!(out, out.code(), Some(0), "npm install failed");
    let proj = c.tmp.path().join("proj");
    check!(
        out,
        proj.join("node_modules/is-number/package.json").exists(),
        "is-number was not installed"
    );
    check_eq!(out, mark(c, "curl"), REFUSED, "curl through the proxy");
    let view = mark(c, "npm-view");
    check!(
        out,
        view.contains("exit ") && !view.contains("exit 0"),
        "the nested npm view got through: {view}"
    );
    let log = c.log();
    let id = top(out, &log, "npm", strict);
    let rows = rows_of(&log, id);
    assert_tool_fetched(out, &rows, &[REGISTRY]);
    let worm = by_package(&rows, WORM);
    assert_refused_as(out, &worm, WORM, Some("1.0.0"), Some("postinstall"));
    let connects = |exe_ends: &str| {
        worm.iter()
            .filter(|r| {
                r["method"] == "CONNECT"
                    && r.host() == Some(REGISTRY)
                    && r["process"]["exe"]
                        .as_str()
                        .is_some_and(|e| e.ends_with(exe_ends))
            })
            .count()
    };
    check!(out, connects("/curl") >= 1, "no row for the worm's curl");
    // As uid 65534 too: the nested strict shim is non-dumpable (out of the
    // worm's reach), which hides its descriptors from an unprivileged
    // gate; in strict mode the one hidden process running cli-guard holds
    // the socket, and is judged by its ancestry, the worm's.
    check!(
        out,
        connects("/bin/cli-guard") >= 1,
        "no row for the nested npm's gate, dialling out for the worm"
    );
    // Every row by package code is the worm's: nothing else ran a script.
    for row in &rows {
        if row["process"]["actor"] == "package" {
            check_eq!(out, row["process"]["package"], WORM, "{row}");
        }
    }
    let nested = log.rows().kind("start").under(id);
    check!(
        out,
        nested.len() == 1 && nested[0]["subcommand"] == "view",
        "the nested npm view is an invocation under npm's: {nested:?}"
    );
    if strict == Strict::Auto {
        let node = mark(c, "node");
        check!(
            out,
            !node.is_empty() && !node.contains("name 200") && !node.contains("connected"),
            "node got out directly: {node}"
        );
        let dns = worm
            .iter()
            .filter(|r| r["method"] == "dns" && r.host() == Some(REGISTRY));
        check!(out, dns.count() >= 1, "no DNS row for the worm's node");
        let bare = worm
            .iter()
            .filter(|r| r["method"] == "transparent" && r.host() == Some(REGISTRY_ADDRESS));
        check!(out, bare.count() == 1, "no row for the worm's direct connection");
    }
    assert_said(out, "evil-worm@1.0.0 (postinstall)", "registry.npmjs.org:443");
}

/// The worm's install under `strict`, as root or (`nobody`) uid 65534,
/// and what it got.
fn worm_refused(strict: Strict, nobody: bool) {
    need("npm");
    need("curl");
    let c = Client::new();
    let out = install_worm(&c, strict, nobody);
    assert_worm_refused(&c, &out, strict);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_a_postinstall_reaching_the_registry_three_ways_is_refused_and_named() {
    worm_refused(Strict::Auto, false);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_plain_a_postinstall_reaching_the_registry_is_refused_and_named() {
    worm_refused(Strict::Off, false);
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_as_nobody_a_postinstall_reaching_the_registry_three_ways_is_refused_and_named() {
    worm_refused(Strict::Auto, true);
}

/// `cli-guard audit --package evil-worm` on the worm's log shows npm's
/// invocation (and only when the package acted in it), and `--json`
/// carries each row's process.
#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn audit_package_finds_the_worms_invocation_and_json_carries_the_process() {
    need("npm");
    need("curl");
    let c = Client::new();
    let out = install_worm(&c, Strict::Auto, false);
    check_eq!(out, out.code(), Some(0), "npm install failed");
    let log = c.log();
    let id = top(&out, &log, "npm", Strict::Auto).to_string();
    let bin = install::plain().join("bin/cli-guard");
    let audit = |args: &[&str]| {
        let got = command(&bin)
            .arg("audit")
            .arg("--file")
            .arg(&c.audit)
            .args(args)
            .output()
            .unwrap();
        assert!(got.status.success(), "cli-guard audit {args:?}: {got:?}");
        String::from_utf8(got.stdout).unwrap()
    };
    let shown = audit(&["--package", WORM]);
    let first = shown.lines().next().unwrap_or_default();
    check!(
        out,
        first.contains(&id) && first.contains("npm install"),
        "audit --package {WORM} does not show npm's invocation:\n{shown}"
    );
    check!(
        out,
        shown.contains("made by evil-worm@1.0.0 (postinstall)"),
        "the worm is not named beside its rows:\n{shown}"
    );
    check!(
        out,
        audit(&["--package", "is-number"]).trim().is_empty(),
        "is-number ran no code, yet audit --package finds it"
    );
    let json = audit(&["--package", WORM, "--json"]);
    let objects = Log::parse(json.as_bytes(), "audit --json");
    let npm = objects.rows().filter("npm's", |o| o.audit_id() == id).one();
    let egress = npm["egress"].as_array().cloned().unwrap_or_default();
    let worm = egress.iter().filter(|e| e["process"]["package"] == WORM);
    check!(
        out,
        worm.clone().count() >= 1 && worm.clone().all(|e| e["process"]["script"] == "postinstall"),
        "no row of the worm's in --json: {npm}"
    );
    check!(
        out,
        egress
            .iter()
            .any(|e| e["process"]["actor"] == "tool" && e["decision"] == "allow"),
        "npm's own rows are not the tool's in --json: {npm}"
    );
}

// ---------------------------------------------------------------------------
// npm: forging attempts, each from a package of its own

/// The packages of the forging attempts, each named for what it tries in
/// its `install` script, and the host it tries.
const FORGER: &str = "forger";
const ENV_CLEARER: &str = "env-clearer";
const SHELL_FORGER: &str = "shell-forger";
const NS_NESTER: &str = "ns-nester";
const ORPHAN_MAKER: &str = "orphan-maker";

/// sh: puppeteer's name, version and registry tarball, forged into the
/// environment of what follows.
const AS_PUPPETEER: &str = "npm_package_name=puppeteer npm_package_version=24.43.1 \
     npm_package_resolved=https://registry.npmjs.org/puppeteer/-/puppeteer-24.43.1.tgz";

/// The forging packages' tarballs (`NAME-1.0.0.tgz`).
fn forgers(c: &Client) -> Vec<&'static str> {
    let m = marks(c);
    let mark = |name: &str| m.join(name).display().to_string();
    let forged_curl = format!("{AS_PUPPETEER} {}", curl(c, STORAGE, "forged"));
    let env_i = format!(
        "env -i \"$(command -v curl)\" --proxy \"$HTTPS_PROXY\" -s -o /dev/null -w '{STATUSES}' \
         https://{REGISTRY}/ > '{}' 2>&1 || true\n",
        mark("env-i")
    );
    // cli-guard as the script shell again, as npm runs it, with the
    // forged name: its registration must be refused.
    let shell = format!(
        "{AS_PUPPETEER} \"$npm_config_script_shell\" -c \"curl -s -o /dev/null -w '{STATUSES}' \
         https://{STORAGE}/\" > '{}' 2>&1 || true\n",
        mark("script-shell")
    );
    let unshare = format!(
        "unshare -U -r curl -s -o /dev/null -w '{STATUSES}' https://{REGISTRY}/ > '{}' 2>&1 || true\n",
        mark("unshare")
    );
    // Double-forked, in a session of its own, its environment cleared:
    // it connects once npm has moved on to postinstall, so after its
    // install script returned, and writes its mark, which the
    // postinstall waits for (at most two minutes, then it fails).
    let orphan = format!(
        "( setsid env -i \"$(command -v sh)\" -c 'while [ ! -e \"$0/returned\" ]; do sleep 0.1; done; \
         \"$1\" --proxy \"$2\" -s -o /dev/null -w \"$3\" https://{REGISTRY}/ > \"$0/orphan.tmp\" 2>&1; \
         mv \"$0/orphan.tmp\" \"$0/orphan\"' '{m}' \"$(command -v curl)\" \"$HTTPS_PROXY\" '{STATUSES}' \
         </dev/null >/dev/null 2>&1 & )\n",
        m = m.display()
    );
    let wait = format!(
        ": > '{m}/returned'\ni=0\nwhile [ ! -e '{m}/orphan' ]; do\n  i=$((i + 1)); [ $i -gt 1200 ] && exit 1\n  sleep 0.1\ndone\n",
        m = m.display()
    );
    let packages = [
        (FORGER, forged_curl, None),
        (ENV_CLEARER, env_i, None),
        (SHELL_FORGER, shell, None),
        (NS_NESTER, unshare, None),
        (ORPHAN_MAKER, orphan, Some(wait)),
    ];
    for (name, install, postinstall) in &packages {
        let mut scripts = vec![("install", "sh ./install.sh")];
        let mut files = vec![("install.sh", install.as_str())];
        if let Some(postinstall) = postinstall {
            scripts.push(("postinstall", "sh ./postinstall.sh"));
            files.push(("postinstall.sh", postinstall.as_str()));
        }
        npm_tarball(c, name, &manifest(name, "1.0.0", &scripts), &files);
    }
    packages.iter().map(|(name, _, _)| *name).collect()
}

fn assert_forgers_refused(c: &Client, out: &Outcome, strict: Strict) {
    check_eq!(out, out.code(), Some(0), "npm install failed");
    for name in ["forged", "env-i", "script-shell", "unshare", "orphan"] {
        check_eq!(out, mark(c, name), REFUSED, "{name}");
    }
    let log = c.log();
    let id = top(out, &log, "npm", strict);
    let rows = rows_of(&log, id);
    let tried = |package: &str, host: &str| -> Vec<&Row> {
        by_package(&rows, package)
            .into_iter()
            .filter(|r| r.host() == Some(host))
            .collect()
    };
    assert_refused_as(
        out,
        &tried(FORGER, STORAGE),
        FORGER,
        Some("1.0.0"),
        Some("install"),
    );
    assert_refused_as(
        out,
        &tried(ENV_CLEARER, REGISTRY),
        ENV_CLEARER,
        None,
        Some("install"),
    );
    assert_refused_as(
        out,
        &tried(SHELL_FORGER, STORAGE),
        SHELL_FORGER,
        None,
        Some("install"),
    );
    assert_refused_as(out, &tried(NS_NESTER, REGISTRY), NS_NESTER, None, Some("install"));
    // The orphan connected after its script had returned, from the
    // namespace that script registered.
    assert_refused_as(
        out,
        &tried(ORPHAN_MAKER, REGISTRY),
        ORPHAN_MAKER,
        None,
        Some("install"),
    );
    // The script shell run again asked to register, as puppeteer, from
    // inside shell-forger's namespace: refused, with a row that is
    // shell-forger's.
    let registrations: Vec<&Row> = by_package(&rows, SHELL_FORGER)
        .into_iter()
        .filter(|r| r.reason().contains("asked to register"))
        .collect();
    assert_refused_as(out, &registrations, SHELL_FORGER, None, Some("install"));
    for row in &registrations {
        check_eq!(out, row.host(), Some("register.cli-guard.invalid"), "{row}");
    }
    check!(
        out,
        !rows.iter().any(|r| r["process"]["package"] == "puppeteer"),
        "a forger passed for puppeteer"
    );
    // It carried the credential: nothing says a stranger used the gate.
    check!(
        out,
        !out.guard_lines()
            .iter()
            .any(|l| l.contains("without npm's proxy credential")),
        "a refused registration reads as a request without the credential"
    );
    assert_said(out, "forger@1.0.0 (install)", "storage.googleapis.com:443");
}

fn install_forgers(strict: Strict) -> (Client, Outcome) {
    let c = Client::new();
    let deps: serde_json::Map<String, Value> = forgers(&c)
        .into_iter()
        .map(|name| (name.to_string(), json!(format!("file:../{name}-1.0.0.tgz"))))
        .collect();
    let proj = project(&c, json!({ "dependencies": deps }), &[]);
    let out = c.run(npm_install(&c, &proj, strict));
    (c, out)
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_forged_names_a_cleared_environment_an_orphan_a_second_wrapper_and_a_nested_namespace_are_each_their_own_package(
) {
    need("npm");
    need("curl");
    need("unshare");
    need("setsid");
    for strict in BOTH {
        let (c, out) = install_forgers(strict);
        assert_forgers_refused(&c, &out, strict);
    }
}

// ---------------------------------------------------------------------------
// npm: puppeteer's entry, for the registry's puppeteer only

/// The registry's puppeteer and a local tarball calling itself puppeteer
/// (installed as `pptr-fake`), both reaching storage.googleapis.com from
/// their postinstall: the registry's is allowed it by its pinned entry
/// (the dial then fails here, no route: 502 or 504), the local one is
/// refused. Puppeteer's cache is put in temp (strict mode keeps the home
/// read-only) and only chrome is fetched.
#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_puppeteers_entry_is_honoured_for_the_registrys_puppeteer_only() {
    need("npm");
    need("curl");
    for strict in BOTH {
        let c = Client::new();
        let fake = manifest("puppeteer", PUPPETEER, &[("postinstall", "sh ./fetch.sh")]);
        npm_tarball(
            &c,
            "puppeteer",
            &fake,
            &[("fetch.sh", &curl(&c, STORAGE, "fake"))],
        );
        let deps =
            json!({"dependencies": {"puppeteer": PUPPETEER, "pptr-fake": "file:../puppeteer-1.0.0.tgz"}});
        let proj = project(&c, deps, &[]);
        let mut cmd = npm_install(&c, &proj, strict);
        cmd.env("PUPPETEER_CACHE_DIR", c.dir("tmp/puppeteer"))
            .env("PUPPETEER_CHROME_HEADLESS_SHELL_SKIP_DOWNLOAD", "true");
        let out = c.run(cmd);
        check_eq!(out, mark(&c, "fake"), REFUSED, "the fake puppeteer got through");
        let log = c.log();
        let id = top(&out, &log, "npm", strict);
        let rows = rows_of(&log, id);
        let storage: Vec<&Row> = by_package(&rows, "puppeteer")
            .into_iter()
            .filter(|r| r.host() == Some(STORAGE))
            .collect();
        let (real, fake): (Vec<&Row>, Vec<&Row>) =
            storage.iter().partition(|r| r["process"]["verified"] == true);
        check!(out, !real.is_empty(), "the registry's puppeteer made no request");
        for row in &real {
            let p = &row["process"];
            check_eq!(out, row["decision"], "allow", "{row}");
            check!(
                out,
                [502, 504].contains(&row["status"].as_u64().unwrap_or(0)),
                "{row}"
            );
            check_eq!(out, p["actor"], "package", "{row}");
            check_eq!(out, p["version"], PUPPETEER, "{row}");
            check_eq!(out, p["script"], "postinstall", "{row}");
            check!(out, row.reason().contains("puppeteer's pinned entry"), "{row}");
            check!(
                out,
                p["how"].as_str().is_some_and(|h| h.contains(PUPPETEER_URL)),
                "{row}"
            );
        }
        assert_refused_as(&out, &fake, "puppeteer", Some(PUPPETEER), Some("postinstall"));
        for row in &fake {
            check!(
                out,
                row["process"]["how"]
                    .as_str()
                    .is_some_and(|h| h.contains("pptr-fake")),
                "the refusal says where the fake ran: {row}"
            );
        }
        assert_tool_fetched(&out, &rows_without_package_code(&rows), &[REGISTRY]);
        assert_said(
            &out,
            "puppeteer@24.43.1 (postinstall)",
            "storage.googleapis.com:443",
        );
    }
}

/// The rows of the tool and its helpers only.
fn rows_without_package_code<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    rows.iter()
        .copied()
        .filter(|r| matches!(r["process"]["actor"].as_str(), Some("tool" | "helper")))
        .collect()
}

// ---------------------------------------------------------------------------
// npm: the project's own postinstall

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn npm_the_projects_own_postinstall_is_refused_the_registry_as_the_project() {
    need("npm");
    need("curl");
    for strict in BOTH {
        let c = Client::new();
        let post = curl(&c, REGISTRY, "project");
        let manifest = json!({
            "dependencies": {"is-number": "7.0.0"},
            "scripts": {"postinstall": "sh ./post.sh"},
        });
        let proj = project(&c, manifest, &[("post.sh", &post)]);
        let out = c.run(npm_install(&c, &proj, strict));
        check_eq!(out, out.code(), Some(0), "npm install failed");
        check!(
            out,
            proj.join("node_modules/is-number/package.json").exists(),
            "is-number was not installed"
        );
        check_eq!(
            out,
            mark(&c, "project"),
            REFUSED,
            "the project's postinstall got through"
        );
        let log = c.log();
        let id = top(&out, &log, "npm", strict);
        let rows = rows_of(&log, id);
        assert_tool_fetched(&out, &rows, &[REGISTRY]);
        let project: Vec<&&Row> = rows
            .iter()
            .filter(|r| r["process"]["actor"] == "project")
            .collect();
        check!(out, !project.is_empty(), "no row is the project's");
        for row in project {
            let p = &row["process"];
            check_eq!(out, row["decision"], "deny", "{row}");
            check_eq!(out, row["status"], 403, "{row}");
            check_eq!(out, row.host(), Some(REGISTRY), "{row}");
            check_eq!(out, p["package"], "proj", "{row}");
            check_eq!(out, p["script"], "postinstall", "{row}");
        }
        assert_said(
            &out,
            "the project's own proj@1.0.0 (postinstall)",
            "registry.npmjs.org:443",
        );
    }
}

// ---------------------------------------------------------------------------
// pnpm, yarn 4, bun: the worm as a dependency whose scripts they run

/// The simple worm: its postinstall curls the registry through the proxy.
fn curling_worm(c: &Client) {
    let post = curl(c, REGISTRY, "curl");
    let manifest = manifest(WORM, "1.0.0", &[("postinstall", "sh ./worm.sh")]);
    npm_tarball(c, WORM, &manifest, &[("worm.sh", &post)]);
}

/// The worm's postinstall was refused and named (`verified`: how the name
/// came, never verified for a local tarball), the tool fetched is-number.
fn assert_worm_named(c: &Client, out: &Outcome, tool: &str, strict: Strict, script: Option<&str>) {
    check_eq!(out, out.code(), Some(0), "{tool} install failed");
    check_eq!(out, mark(c, "curl"), REFUSED, "the worm got through");
    let log = c.log();
    let id = top(out, &log, tool, strict);
    let rows = rows_of(&log, id);
    assert_tool_fetched(out, &rows, &[REGISTRY]);
    let worm = by_package(&rows, WORM);
    assert_refused_as(out, &worm, WORM, None, script);
    let label = match script {
        Some(script) => format!("evil-worm@1.0.0 ({script})"),
        None => WORM.to_string(),
    };
    assert_said(out, &label, "registry.npmjs.org:443");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pnpm_with_the_worm_allowed_to_build_refuses_it_and_installs_the_rest() {
    need("pnpm");
    need("curl");
    for strict in BOTH {
        let c = Client::new();
        curling_worm(&c);
        let spec = "file:../evil-worm-1.0.0.tgz";
        let deps = json!({"dependencies": {"is-number": "7.0.0", WORM: spec}});
        // pnpm runs a dependency's scripts only when its build is allowed.
        let workspace = format!("allowBuilds:\n  \"{WORM}@{spec}\": true\n");
        let proj = project(&c, deps, &[("pnpm-workspace.yaml", &workspace)]);
        let out = c.run(client(&c, &proj, "pnpm", &["install"], strict));
        check!(
            out,
            proj.join("node_modules/is-number/package.json").exists(),
            "is-number was not installed"
        );
        // Through the wrapper: named by pnpm, with its version and event.
        assert_worm_named(&c, &out, "pnpm", strict, Some("postinstall"));
    }
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn yarn_4_with_scripts_enabled_refuses_the_worm_as_package_code_named_by_its_directory() {
    need("yarn");
    need("curl");
    for strict in BOTH {
        let c = Client::new();
        curling_worm(&c);
        let deps = json!({
            "packageManager": format!("yarn@{YARN_4}"),
            "dependencies": {"is-number": "7.0.0", WORM: "file:../evil-worm-1.0.0.tgz"},
        });
        let proj = project(
            &c,
            deps,
            &[("yarn.lock", ""), (".yarnrc.yml", "enableScripts: true\n")],
        );
        let mut cmd = client(&c, &proj, "yarn", &["install"], strict);
        cmd.env("COREPACK_NPM_REGISTRY", "https://registry.npmjs.org")
            .env("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0")
            .env("YARN_NPM_REGISTRY_SERVER", "https://registry.npmjs.org")
            .env("YARN_ENABLE_TELEMETRY", "0")
            .env("YARN_ENABLE_GLOBAL_CACHE", "0")
            // The lockfile is written, as on a developer's machine, also
            // under another CI variable than `CI` (which is removed).
            .env("YARN_ENABLE_IMMUTABLE_INSTALLS", "false");
        let out = c.run(cmd);
        let lock = fs::read_to_string(proj.join("yarn.lock")).unwrap_or_default();
        check!(
            out,
            lock.contains("is-number@npm:7.0.0"),
            "not in yarn.lock:\n{lock}"
        );
        // No hook: yarn runs scripts itself; the name is its directory's.
        assert_worm_named(&c, &out, "yarn", strict, None);
        assert_named_by_directory(&c, &out, WORM);
    }
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn bun_with_the_worm_trusted_refuses_it_as_package_code_named_by_its_directory() {
    need("bun");
    need("curl");
    for strict in BOTH {
        let c = Client::new();
        curling_worm(&c);
        let deps = json!({
            "dependencies": {"is-number": "7.0.0", WORM: "file:../evil-worm-1.0.0.tgz"},
            "trustedDependencies": [WORM],
        });
        let proj = project(&c, deps, &[]);
        let out = c.run(client(&c, &proj, "bun", &["install"], strict));
        check!(
            out,
            proj.join("node_modules/is-number/package.json").exists(),
            "is-number was not installed"
        );
        assert_worm_named(&c, &out, "bun", strict, None);
        assert_named_by_directory(&c, &out, WORM);
    }
}

/// The rows of `package` say its name came from where it ran.
fn assert_named_by_directory(c: &Client, out: &Outcome, package: &str) {
    let log = c.log();
    for row in log
        .rows()
        .network()
        .filter("by the package", |r| r["process"]["package"] == package)
    {
        check!(
            out,
            row["process"]["how"]
                .as_str()
                .is_some_and(|h| h.contains("working directory")),
            "{row}"
        );
    }
}

// ---------------------------------------------------------------------------
// cargo: a build script

/// A crate `evil-build` depending on itoa from crates.io, whose build
/// script dials index.crates.io through the proxy it is given (both
/// variables cargo passes on: `CARGO_HTTP_PROXY` and `https_proxy`, with
/// the credential in them) and, when `direct`, by name, ignoring the
/// proxy. Each outcome is a line of the mark `build`.
fn evil_crate(c: &Client, direct: bool) -> PathBuf {
    let dir = c.dir("crate");
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"evil-build\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nitoa = \"=1.0.11\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/lib.rs"),
        "pub fn f() -> usize { itoa::Buffer::new().format(1u8).len() }\n",
    )
    .unwrap();
    let build = BUILD_RS
        .replace("MARK", &marks(c).join("build").display().to_string())
        .replace("DIRECT", if direct { "true" } else { "false" });
    fs::write(dir.join("build.rs"), build).unwrap();
    dir
}

/// The build script: std only, as a worm's would be.
const BUILD_RS: &str = r#"use std::io::{Read, Write};
use std::net::TcpStream;

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { T[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn through(var: &str) -> String {
    let Ok(url) = std::env::var(var) else { return format!("{var}: unset") };
    let rest = url.trim_start_matches("http://").trim_end_matches('/');
    let (auth, addr) = match rest.rsplit_once('@') { Some((a, h)) => (Some(a), h), None => (None, rest) };
    let Ok(mut s) = TcpStream::connect(addr) else { return format!("{var}: no proxy") };
    let mut head = "CONNECT index.crates.io:443 HTTP/1.1\r\nHost: index.crates.io:443\r\n".to_string();
    if let Some(a) = auth {
        head += &format!("Proxy-Authorization: Basic {}\r\n", base64(a.as_bytes()));
    }
    head += "\r\n";
    let _ = s.write_all(head.as_bytes());
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    format!("{var}: {}", String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or(""))
}

fn main() {
    let mut got = vec![through("CARGO_HTTP_PROXY"), through("https_proxy")];
    if DIRECT {
        got.push(match TcpStream::connect(("index.crates.io", 443)) {
            Ok(_) => "direct: connected".to_string(),
            Err(e) => format!("direct: {e}"),
        });
    }
    std::fs::write("MARK", got.join("\n")).unwrap();
}
"#;

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn cargo_a_build_script_dialling_the_index_is_refused_and_named_by_its_path() {
    need("cargo");
    for strict in BOTH {
        let c = Client::new();
        let dir = evil_crate(&c, strict == Strict::Auto);
        let mut cmd = client(&c, &dir, "cargo", &["build", "--quiet"], strict);
        // A fresh cargo home (so cargo fetches the index itself); the
        // toolchain stays the machine's.
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        let rustup =
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| Path::new(&home).join(".rustup").into());
        cmd.env("CARGO_HOME", c.dir("home/.cargo"))
            .env("RUSTUP_HOME", rustup)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR");
        let out = c.run(cmd);
        check_eq!(out, out.code(), Some(0), "cargo build failed");
        let got = mark(&c, "build");
        check!(
            out,
            got.contains("CARGO_HTTP_PROXY: HTTP/1.1 403") && got.contains("https_proxy: HTTP/1.1 403"),
            "the build script got through the proxy: {got}"
        );
        let log = c.log();
        let id = top(&out, &log, "cargo", strict);
        let rows = rows_of(&log, id);
        assert_tool_fetched(&out, &rows, &["index.crates.io", "static.crates.io"]);
        let build = by_package(&rows, "evil-build");
        assert_refused_as(&out, &build, "evil-build", None, Some("build.rs"));
        let connects = build
            .iter()
            .filter(|r| r["method"] == "CONNECT" && r.host() == Some("index.crates.io"));
        check_eq!(out, connects.count(), 2, "one refusal per proxy variable");
        for row in &build {
            let exe = row["process"]["exe"].as_str().unwrap_or_default();
            check!(
                out,
                exe.contains("/build/evil-build-") && exe.ends_with("/build-script-build"),
                "{row}"
            );
        }
        if strict == Strict::Auto {
            check!(
                out,
                !got.contains("direct: connected"),
                "the build script got out: {got}"
            );
            let dns = build.iter().filter(|r| r["method"] == "dns");
            check!(
                out,
                dns.count() >= 1,
                "no DNS row for the build script's own lookup"
            );
        }
        assert_said(&out, "evil-build (build.rs)", "index.crates.io:443");
    }
}

// ---------------------------------------------------------------------------
// pip 26, uv, poetry: an sdist whose setup.py fetches from PyPI

/// `evil_setup-1.0.0.tar.gz`, an sdist (PKG-INFO, pyproject.toml asking
/// for setuptools, setup.py) whose setup.py fetches from pypi.org each
/// time the backend runs it, appending the outcome to the mark `setup.py`.
fn evil_sdist(c: &Client) -> PathBuf {
    let src = c.dir("sdist/evil_setup-1.0.0");
    let mark = marks(c).join("setup.py");
    fs::write(
        src.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n",
    )
    .unwrap();
    fs::write(
        src.join("PKG-INFO"),
        "Metadata-Version: 2.1\nName: evil-setup\nVersion: 1.0.0\n",
    )
    .unwrap();
    fs::write(
        src.join("setup.py"),
        format!(
            "import urllib.request\n\
             try:\n    with urllib.request.urlopen('https://pypi.org/simple/six/', timeout=30) as r:\n        got = str(r.status)\n\
             except Exception as e:\n    got = 'refused ' + str(e)\n\
             with open('{}', 'a') as m:\n    m.write(got + '\\n')\n\
             from setuptools import setup\nsetup(name='evil-setup', version='1.0.0', py_modules=[])\n",
            mark.display()
        ),
    )
    .unwrap();
    let sdist = c.tmp.path().join("evil_setup-1.0.0.tar.gz");
    let tar = command("tar")
        .arg("czf")
        .arg(&sdist)
        .arg("-C")
        .arg(c.tmp.path().join("sdist"))
        .arg("evil_setup-1.0.0")
        .status()
        .unwrap();
    assert!(tar.success(), "tar");
    sdist
}

/// The backend ran (at least once) and every time its fetch was refused
/// by the gate; its rows are package code, named from its metadata; the
/// tool fetched setuptools itself; the install went on.
fn assert_backend_refused(c: &Client, out: &Outcome, tool: &str, strict: Strict) {
    check_eq!(out, out.code(), Some(0), "{tool} failed");
    let got = mark(c, "setup.py");
    check!(
        out,
        !got.is_empty() && got.lines().all(|l| l.contains("403")),
        "setup.py got through: {got:?}"
    );
    let log = c.log();
    let id = top(out, &log, tool, strict);
    let rows = rows_of(&log, id);
    assert_tool_fetched(out, &rows, &["pypi.org", "files.pythonhosted.org"]);
    check!(
        out,
        rows.iter()
            .any(|r| r.host() == Some("files.pythonhosted.org") && r["decision"] == "allow"),
        "{tool} fetched no build dependency"
    );
    let refused: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.host() == Some("pypi.org") && r["decision"] == "deny")
        .collect();
    check_eq!(
        out,
        refused.len(),
        got.lines().count(),
        "one refusal per run of setup.py"
    );
    assert_refused_as(out, &refused, "evil-setup", Some("1.0.0"), None);
    for row in &refused {
        let how = row["process"]["how"].as_str().unwrap_or_default();
        check!(out, how.contains("PKG-INFO"), "not named from its sdist: {row}");
    }
    assert_said(out, "evil-setup@1.0.0", "pypi.org:443");
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn pip_26_a_setup_py_fetching_from_pypi_is_refused_while_pip_fetches_setuptools() {
    let pip = Path::new(PIP_26).join("bin/pip");
    assert!(
        pip.is_file(),
        "{} is missing: this test runs pip 26 from the virtualenv .ci/run makes",
        pip.display()
    );
    for strict in BOTH {
        let c = Client::new();
        let sdist = evil_sdist(&c);
        let proj = c.dir("proj");
        let target = proj.join("site");
        let args = [
            "install",
            "--no-cache-dir",
            "--target",
            target.to_str().unwrap(),
            sdist.to_str().unwrap(),
        ];
        let mut cmd = client(&c, &proj, "pip", &args, strict);
        // pip's shim, then pip 26's virtualenv, then the machine's PATH.
        let shims = install::plain().join("share/cli-guard/shims");
        let machine = std::env::var_os("PATH").unwrap_or_default();
        let path = [shims, Path::new(PIP_26).join("bin")]
            .into_iter()
            .chain(std::env::split_paths(&machine));
        cmd.env("PATH", std::env::join_paths(path).unwrap())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        let out = c.run(cmd);
        let log = c.log();
        let start = only_start(&log, "pip");
        check_eq!(
            out,
            start["real_path"],
            pip.display().to_string(),
            "not pip 26's: {start}"
        );
        assert_backend_refused(&c, &out, "pip", strict);
        check!(
            out,
            target.join("evil_setup-1.0.0.dist-info").exists(),
            "not installed"
        );
    }
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn uv_a_setup_py_fetching_from_pypi_is_refused_while_uv_fetches_setuptools() {
    need("uv");
    for strict in BOTH {
        let c = Client::new();
        let sdist = evil_sdist(&c);
        let proj = c.dir("proj");
        let venv = proj.join(".venv");
        let made = command("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let args = [
            "pip",
            "install",
            "--python",
            venv.to_str().unwrap(),
            sdist.to_str().unwrap(),
        ];
        let out = c.run(client(&c, &proj, "uv", &args, strict));
        assert_backend_refused(&c, &out, "uv", strict);
    }
}

#[test]
#[ignore = "real clients and the registries: run by .ci/run (cargo test -- --ignored)"]
fn poetry_a_setup_py_fetching_from_pypi_is_refused_while_poetry_fetches_setuptools() {
    need("poetry");
    for strict in BOTH {
        let c = Client::new();
        let sdist = evil_sdist(&c);
        let pyproject = "[project]\nname = \"proj\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
                         dependencies = []\n\n[tool.poetry]\npackage-mode = false\n";
        let proj = c.dir("proj");
        fs::write(proj.join("pyproject.toml"), pyproject).unwrap();
        let mut cmd = client(&c, &proj, "poetry", &["add", sdist.to_str().unwrap()], strict);
        cmd.env("POETRY_VIRTUALENVS_IN_PROJECT", "true")
            .env("POETRY_VIRTUALENVS_PREFER_ACTIVE_PYTHON", "true");
        let out = c.run(cmd);
        assert_backend_refused(&c, &out, "poetry", strict);
    }
}
