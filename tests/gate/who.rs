//! Who acted, with fake tools: a fake npm runs its "lifecycle scripts" as
//! npm does (through the script shell it is given, from the package's
//! directory, with npm's `npm_package_*` variables) and makes its own
//! requests itself (`util::as_tool`). Each test walks from where package
//! code stands: a script reaching the tool's registry, forging another
//! package's name, clearing its environment, double-forking an orphan,
//! registering again, nesting a user namespace, running a helper's name;
//! and from outside the invocation with its credential. The rows, the
//! summary and `cli-guard audit`, `check` say who acted. Requests the
//! gate allows are dialled to loopback upstreams (`CLI_GUARD_RESOLVE`).

use std::fs;

use serde_json::Value;

use crate::util::*;

/// One lifecycle script the fake npm runs.
struct Script<'a> {
    name: &'a str,
    version: &'a str,
    event: &'a str,
    /// Its package's directory, below the project.
    dir: &'a str,
    /// `npm_package_resolved`, as npm sets it for a dependency.
    resolved: Option<&'a str>,
    /// The script (sh), with `$NET` and `$S` exported.
    body: &'a str,
}

/// A fake npm that runs `scripts` as npm does, then `tail` (sh) itself.
fn fake_npm(g: &Sandbox, scripts: &[Script<'_>], tail: &str) {
    let mut body = format!("export NET='{}' S\nW=\"$PWD\"\n", g.net());
    for s in scripts {
        let resolved = s
            .resolved
            .map(|r| format!("npm_package_resolved='{r}' "))
            .unwrap_or_default();
        body += &format!(
            "mkdir -p \"$W/{dir}\" && cd \"$W/{dir}\"\n\
             npm_package_name='{name}' npm_package_version='{version}' npm_lifecycle_event='{event}' {resolved}\
             \"$npm_config_script_shell\" -c '{script}'\ncd \"$W\"\n",
            dir = s.dir,
            name = s.name,
            version = s.version,
            event = s.event,
            script = s.body,
        );
    }
    body += tail;
    g.tool("npm", &body);
}

/// `npm install` through the shim under `strict`, with `resolve`d names.
fn install(g: &Sandbox, strict: &str, resolve: &[(&str, std::net::SocketAddr)]) -> Outcome {
    let mut cmd = g.shim_cmd("npm", ["install"]);
    Sandbox::strict(&mut cmd, strict);
    cmd.env("CLI_GUARD_RESOLVE", Sandbox::resolve(resolve));
    let out = g.run(cmd);
    out.expect_code(0);
    out
}

/// The one `egress` row to `host` whose process ran package `package`
/// (`None`: the tool's own).
fn row_of<'a>(out: &Outcome, log: &'a Log, host: &str, package: Option<&str>) -> &'a Row {
    let rows = log
        .rows()
        .kind("egress")
        .host(host)
        .filter("by the package", |r| r["process"]["package"].as_str() == package);
    check!(out, !rows.is_empty(), "no row for {host} by {package:?}:\n{log}");
    rows.first_or_fail()
}

const WORM: &str = "evil-worm";
const REGISTRY: &str = "registry.npmjs.org";
const REGISTRY_URL: &str = "https://registry.npmjs.org/puppeteer/-/puppeteer-24.43.1.tgz";

fn worm(body: &str) -> Script<'_> {
    Script {
        name: WORM,
        version: "1.0.0",
        event: "postinstall",
        dir: "node_modules/evil-worm",
        resolved: Some("file:../evil-worm-1.0.0.tgz"),
        body,
    }
}

/// A postinstall reaching the tool's registry is refused, named; the
/// tool's own request to it is allowed. `strict`: the setting.
fn a_worms_postinstall_is_refused(strict: &str, as_nobody: bool) {
    let up = Upstream::echo();
    let g = Sandbox::new();
    fake_npm(
        &g,
        &[worm("$NET proxy-echo registry.npmjs.org 443 16 > $S/worm")],
        &as_tool(&[("npm", "proxy-echo registry.npmjs.org 443 16")]),
    );
    let out = if as_nobody {
        for dir in [&g.state, &g.home, &g.work, g.audit.parent().unwrap()] {
            hand_to_nobody(dir);
        }
        let shim = g.shim("npm");
        let mut cmd = g.as_nobody(shim.to_str().unwrap(), &["install"]);
        Sandbox::strict(&mut cmd, strict);
        cmd.env("CLI_GUARD_RESOLVE", Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
        let out = g.run(cmd);
        out.expect_code(0);
        out
    } else {
        install(&g, strict, &[(NPM_REGISTRY, up.addr)])
    };
    check_eq!(out, g.step(&out, "worm")["status"], 403, "the worm is refused");
    check_eq!(out, g.step(&out, "npm")["status"], 200, "npm itself is not");
    let log = g.log();
    let start = log.rows().kind("start").tool("npm").one();
    check_eq!(out, start["attribution"], "on", "attribution is on");
    let refused = row_of(&out, &log, REGISTRY, Some(WORM));
    check_eq!(out, refused["decision"], "deny", "{refused}");
    check_eq!(out, refused["process"]["actor"], "package", "{refused}");
    check_eq!(out, refused["process"]["version"], "1.0.0", "{refused}");
    check_eq!(out, refused["process"]["script"], "postinstall", "{refused}");
    check_eq!(out, refused["process"]["verified"], false, "{refused}");
    check!(
        out,
        refused["process"]["how"]
            .as_str()
            .is_some_and(|h| h.contains("registered by cli-guard-sh")),
        "{refused}"
    );
    let own = row_of(&out, &log, REGISTRY, None);
    check_eq!(out, own["decision"], "allow", "{own}");
    check_eq!(out, own["process"]["actor"], "tool", "{own}");
    check!(
        out,
        out.guard_lines().iter().any(|l| l.starts_with(
            "cli-guard: evil-worm@1.0.0 (postinstall) was refused registry.npmjs.org:443 (403), under npm"
        )),
        "the summary names the package"
    );
}

#[test]
fn a_worms_postinstall_cannot_reach_the_registry_its_tool_may() {
    a_worms_postinstall_is_refused("off", false);
}

#[test]
fn in_strict_mode_a_worms_postinstall_cannot_reach_the_registry_its_tool_may() {
    a_worms_postinstall_is_refused("auto", false);
}

#[test]
fn as_an_unprivileged_user_a_worms_postinstall_cannot_reach_the_registry() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, as CI does, to drop to uid 65534"
    );
    a_worms_postinstall_is_refused("auto", true);
}

#[test]
fn a_forged_name_a_cleared_environment_an_orphan_and_a_nested_namespace_stay_the_worms() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    // The orphan connects after its script has returned: npm waits for its
    // mark (bounded), as a slow install would keep npm busy meanwhile.
    let body = format!(
        "npm_package_name=puppeteer npm_package_resolved={REGISTRY_URL} $NET proxy-echo storage.googleapis.com 443 16 > $S/forged\n\
         env -i NET=$NET $NET proxy-echo storage.googleapis.com 443 16 > $S/cleared 2>&1 || env -i HTTPS_PROXY=$HTTPS_PROXY $NET proxy-echo storage.googleapis.com 443 16 > $S/cleared\n\
         setsid sh -c \"sleep 0.2; $NET proxy-echo storage.googleapis.com 443 16 > $S/orphan.tmp; mv $S/orphan.tmp $S/orphan\" < /dev/null > /dev/null 2>&1 &\n\
         npm_package_name=puppeteer npm_package_resolved={REGISTRY_URL} \"$npm_config_script_shell\" -c \"$NET proxy-echo storage.googleapis.com 443 16 > $S/again\"\n\
         unshare -U -r $NET proxy-echo storage.googleapis.com 443 16 > $S/nested"
    );
    let mut script = worm(&body);
    script.dir = "node_modules/puppeteer";
    let wait =
        "n=0; while [ ! -e \"$S/orphan\" ] && [ $n -lt 200 ]; do n=$((n+1)); sleep 0.05; done\nexit 0\n";
    fake_npm(&g, &[script], wait);
    let out = install(&g, "off", &[("storage.googleapis.com:443", up.addr)]);
    for step in ["forged", "cleared", "orphan", "again", "nested"] {
        let s = g.step(&out, step);
        check_eq!(out, s["status"], 403, "{step}: refused: {s}");
    }
    check_eq!(out, up.accepted(), 0, "nothing reached storage.googleapis.com");
    let log = g.log();
    let rows = log.rows().kind("egress").host("storage.googleapis.com");
    check_eq!(out, rows.len(), 5, "one row each:\n{log}");
    for row in &rows {
        check_eq!(out, row["process"]["package"], WORM, "each the worm's: {row}");
        check_eq!(out, row["decision"], "deny", "{row}");
    }
    let again = log.rows().kind("egress").filter("a refused registration", |r| {
        r["reason"]
            .as_str()
            .is_some_and(|why| why.contains("asked to register as a script's wrapper"))
    });
    check!(
        out,
        again
            .first()
            .is_some_and(|r| r["decision"] == "deny" && r["process"]["package"] == WORM),
        "registering again from the script is refused with a row naming who asked:\n{log}"
    );
}

/// cargo runs no script through cli-guard's hook, so nothing below it may
/// register as a script's wrapper: a build script that runs cli-guard with
/// the hook's variable and puppeteer's name, from a directory named for
/// puppeteer, as its direct child, is refused and stays cargo's package
/// code, never verified as puppeteer (whose entry allows its host).
#[test]
fn below_a_tool_without_the_hook_a_forged_wrapper_cannot_register() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    // cli-guard's own binary, as a script finds it behind any shim.
    let wrapper = fs::canonicalize(g.shim("npm")).unwrap();
    let body = format!(
        "export S\nmkdir -p node_modules/puppeteer && cd node_modules/puppeteer\n\
         CLI_GUARD_EXEC_HOOK='{{\"phase\":\"script\",\"shell\":null}}' npm_package_name=puppeteer \
         npm_package_version=24.43.1 npm_lifecycle_event=postinstall npm_package_resolved={REGISTRY_URL} \
         '{wrapper}' -c '{net} proxy-echo storage.googleapis.com 443 16 > \"$S/forged\"'\nexit 0\n",
        wrapper = wrapper.display(),
        net = g.net(),
    );
    g.tool("cargo", &body);
    let mut cmd = g.shim_cmd("cargo", ["build"]);
    Sandbox::strict(&mut cmd, "off");
    cmd.env(
        "CLI_GUARD_RESOLVE",
        Sandbox::resolve(&[("storage.googleapis.com:443", up.addr)]),
    );
    let out = g.run(cmd);
    out.expect_code(0);
    check_eq!(out, g.step(&out, "forged")["status"], 403, "refused");
    check_eq!(out, up.accepted(), 0, "nothing reached storage.googleapis.com");
    let log = g.log();
    let refused = log.rows().kind("egress").filter("a refused registration", |r| {
        r["reason"]
            .as_str()
            .is_some_and(|why| why.contains("does not run its scripts through cli-guard's hook"))
    });
    check_eq!(out, refused.len(), 1, "the registration refused:\n{log}");
    let rows = log.rows().kind("egress").host("storage.googleapis.com");
    check!(
        out,
        rows.len() == 1 && rows[0]["decision"] == "deny" && rows[0]["process"]["verified"] != true,
        "named from its directory at most, never verified as puppeteer: {rows:?}"
    );
}

fn puppeteer(resolved: &str) -> Script<'_> {
    Script {
        name: "puppeteer",
        version: "24.43.1",
        event: "postinstall",
        dir: "node_modules/puppeteer",
        resolved: Some(resolved),
        body: "$NET proxy-echo storage.googleapis.com 443 16 > $S/browser",
    }
}

#[test]
fn a_pinned_entry_is_honoured_for_the_registrys_own_package_only() {
    for (resolved, allowed) in [(REGISTRY_URL, true), ("file:../puppeteer-24.43.1.tgz", false)] {
        let up = Upstream::echo();
        let g = Sandbox::new();
        fake_npm(&g, &[puppeteer(resolved)], "exit 0\n");
        let out = install(&g, "off", &[("storage.googleapis.com:443", up.addr)]);
        let browser = g.step(&out, "browser");
        let log = g.log();
        let row = row_of(&out, &log, "storage.googleapis.com", Some("puppeteer"));
        check_eq!(out, row["process"]["verified"], allowed, "{row}");
        if allowed {
            check_eq!(out, browser["status"], 200, "the registry's puppeteer: {browser}");
            check_eq!(out, row["decision"], "allow", "{row}");
            check!(
                out,
                row["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("puppeteer's pinned entry")),
                "{row}"
            );
        } else {
            check_eq!(
                out,
                browser["status"],
                403,
                "a tarball calling itself puppeteer: {browser}"
            );
            check!(
                out,
                row["process"]["how"]
                    .as_str()
                    .is_some_and(|h| h.contains("file:../puppeteer")),
                "the row says why its entry is not honoured: {row}"
            );
        }
    }
}

#[test]
fn the_projects_own_script_gets_its_dependencies_entries_never_the_registry() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    fs::write(
        g.work.join("package.json"),
        r#"{"name":"app","version":"1.0.0","dependencies":{"puppeteer":"^24"}}"#,
    )
    .unwrap();
    fake_npm(
        &g,
        &[Script {
            name: "app",
            version: "1.0.0",
            event: "postinstall",
            dir: ".",
            resolved: None,
            body: "$NET proxy-echo registry.npmjs.org 443 16 > $S/registry; $NET proxy-echo storage.googleapis.com 443 16 > $S/browser",
        }],
        "exit 0\n",
    );
    let out = install(
        &g,
        "off",
        &[(NPM_REGISTRY, up.addr), ("storage.googleapis.com:443", up.addr)],
    );
    check_eq!(out, g.step(&out, "registry")["status"], 403, "never the registry");
    check_eq!(
        out,
        g.step(&out, "browser")["status"],
        200,
        "its dependency's entry"
    );
    let log = g.log();
    let row = row_of(&out, &log, REGISTRY, Some("app"));
    check_eq!(out, row["process"]["actor"], "project", "{row}");
}

#[test]
fn a_helper_started_by_the_tool_fetches_as_the_tool_and_the_same_program_from_a_script_does_not() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    // The git PATH finds (in the fake tools' directory): a helper of npm's
    // when npm starts it.
    fs::copy(g.net(), g.real.join("git")).unwrap();
    // The same program, copied to a writable place under the same name, as
    // a build script would to pass for git.
    let copy = g.dir("copy").join("git");
    fs::copy(g.net(), &copy).unwrap();
    let copy = copy.to_str().unwrap();
    let script = "git proxy-echo registry.npmjs.org 443 16 > $S/by-script";
    let by_npm = format!(
        "git proxy-echo registry.npmjs.org 443 16 > \"$S/by-npm\"\n\
         {copy} proxy-echo registry.npmjs.org 443 16 > \"$S/copy-by-npm\"\nexit 0\n"
    );
    fake_npm(&g, &[worm(script)], &by_npm);
    let out = install(&g, "off", &[(NPM_REGISTRY, up.addr)]);
    check_eq!(out, g.step(&out, "by-npm")["status"], 200, "git run by npm");
    check_eq!(
        out,
        g.step(&out, "by-script")["status"],
        403,
        "git run by a script"
    );
    check_eq!(
        out,
        g.step(&out, "copy-by-npm")["status"],
        403,
        "a program named git that is not the git PATH finds, run by npm"
    );
    let log = g.log();
    let helper = log
        .rows()
        .kind("egress")
        .filter("a helper's", |r| r["process"]["actor"] == "helper");
    check_eq!(out, helper.len(), 1, "one helper row:\n{log}");
}

#[test]
fn a_process_outside_the_invocation_with_its_credential_is_refused_and_its_caller_is_not() {
    let up = Upstream::echo();
    let g = Sandbox::new();
    let (run, env) = g.session(
        "npm",
        &[("CLI_GUARD_RESOLVE", &Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]))],
    );
    // A sibling of the shim (not below it, not above it) holding the
    // credential, as a daemon the script handed it to would.
    let mut sibling = command(g.net());
    sibling
        .args(["proxy-echo", REGISTRY, "443", "16"])
        .env_clear()
        .env("HTTPS_PROXY", env.var("HTTPS_PROXY"));
    let said = sibling.output().unwrap();
    let said: Value = serde_json::from_slice(&said.stdout).unwrap_or_default();
    // This test process ran the shim: its caller.
    let proxy = env.proxy();
    let own = proxy.connect(&format!("{REGISTRY}:443"));
    let out = g.finish(run, 0);
    check_eq!(out, said["status"], 403, "the sibling is refused: {said}");
    check_eq!(out, own.status, 200, "the caller is not");
    let log = g.log();
    let rows = log.rows().kind("egress").host(REGISTRY);
    let actors: Vec<&Value> = rows.iter().map(|r| &r["process"]["actor"]).collect();
    check!(
        out,
        actors.contains(&&Value::from("unknown")) && actors.contains(&&Value::from("caller")),
        "an unknown process and the caller: {actors:?}"
    );
}

#[test]
fn in_strict_mode_a_scripts_direct_connection_and_dns_query_name_its_package() {
    // The worm's query for the tool's registry is refused (the tool's is
    // answered: its direct connection is relayed); its connection to an
    // address is refused and named too.
    let up = Upstream::echo();
    let g = Sandbox::new();
    fake_npm(
        &g,
        &[worm(
            "$NET dns udp 127.0.0.53 registry.npmjs.org A > $S/dns; $NET echo 203.0.113.7 443 16 > $S/direct",
        )],
        &as_tool(&[("npm", "echo registry.npmjs.org 443 16")]),
    );
    let out = install(&g, "auto", &[(NPM_REGISTRY, up.addr)]);
    check_eq!(
        out,
        g.step(&out, "npm")["same"],
        true,
        "npm's own direct connection is relayed"
    );
    let direct = g.step(&out, "direct");
    check!(out, direct["same"] != true, "the worm's is not: {direct}");
    let dns = g.step(&out, "dns");
    check_eq!(
        out,
        dns["rcode"],
        5,
        "the worm's query is refused (REFUSED): {dns}"
    );
    let log = g.log();
    for method in ["dns", "transparent"] {
        let rows = log
            .rows()
            .kind("egress")
            .method(method)
            .filter("the worm's", |r| r["process"]["package"] == WORM);
        check!(
            out,
            !rows.is_empty() && rows.iter().all(|r| r["decision"] == "deny"),
            "a {method} deny row naming the worm:\n{log}"
        );
    }
}

#[test]
fn check_and_audit_answer_for_a_packages_code() {
    let g = Sandbox::new();
    let ask = |args: &[&str]| g.run(g.cli_guard(args));
    let out = ask(&[
        "check",
        "--as",
        "npm",
        "--package",
        "puppeteer",
        "storage.googleapis.com",
    ]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("pinned entry puppeteer"),
        "allowed by its entry"
    );
    let out = ask(&["check", "--as", "npm", "--package", WORM, REGISTRY]);
    out.expect_code(1);
    check!(out, out.stdout().contains("may not reach it"), "denied");

    // A log with the worm's refusal, then audit's views of it.
    let up = Upstream::echo();
    fake_npm(
        &g,
        &[worm("$NET proxy-echo registry.npmjs.org 443 16 > $S/worm")],
        "exit 0\n",
    );
    install(&g, "off", &[(NPM_REGISTRY, up.addr)]);
    g.tool("pip", "exit 0\n");
    g.run(g.shim_cmd("pip", ["install", "six"])).expect_code(0);
    let out = ask(&["audit", "--package", WORM]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("npm install") && !out.stdout().contains("pip install"),
        "only the worm's invocation"
    );
    check!(
        out,
        out.stdout().contains("made by evil-worm@1.0.0 (postinstall)"),
        "its row names it"
    );
    let out = ask(&["audit", "--suggest", "npm"]);
    out.expect_code(0);
    check!(
        out,
        out.stdout()
            .contains("npm(\"evil-worm\", &[Rule::https(\"registry.npmjs.org\")]"),
        "a per-package entry proposed, to pin only after reading its code"
    );
    let out = ask(&["audit", "--json", "--package", WORM]);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("\"package\":\"evil-worm\""),
        "--json carries the process"
    );
}
