//! Dispatch on argv[0] and the `cli-guard` command itself.

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;

use crate::util::*;

#[test]
fn unknown_name_is_named_with_the_known_ones_and_exits_2() {
    let g = Sandbox::new();
    let link = g.shims.join("frobnicate");
    symlink(BIN, &link).unwrap();
    let out = g.run(g.command(&link));
    out.expect_code(2);
    let err = out.stderr();
    check!(
        out,
        err.contains("frobnicate"),
        "the error must name the unknown name"
    );
    for known in ["npm", "cargo", "aws", "egress-demo"] {
        check!(
            out,
            err.contains(known),
            "the error must list the known names ({known} missing)"
        );
    }
}

#[test]
fn unknown_name_as_typed_argv0_is_rejected_too() {
    // A symlink with a known name but argv[0] typed as something else:
    // dispatch follows argv[0], not the link's name.
    let g = Sandbox::new();
    let mut cmd = g.command(g.shim("npm"));
    cmd.arg0("not-a-tool");
    let out = g.run(cmd);
    out.expect_code(2);
    check!(
        out,
        out.stderr().contains("not-a-tool"),
        "the error must name argv[0]"
    );
}

#[test]
fn help_prints_usage_and_exits_0() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["--help"]));
    out.expect_code(0);
    let text = out.stdout();
    for word in ["cli-guard", "run", "--as", "policy", "egress-demo", "--version"] {
        check!(out, text.contains(word), "--help must mention {word}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["--version"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains(env!("CARGO_PKG_VERSION")),
        "--version must print {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn policy_lists_every_pinned_tool_with_its_mode() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["policy"]));
    out.expect_code(0);
    let text = out.stdout();
    for tool in ENFORCED.iter().chain(OBSERVED) {
        let found = text
            .lines()
            .any(|l| l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == *tool));
        check!(out, found, "`cli-guard policy` must list {tool}");
    }
    check!(
        out,
        text.contains("enforce") && text.contains("observe"),
        "modes must be shown"
    );
    check!(
        out,
        text.contains("registry.npmjs.org"),
        "allowlists must be shown"
    );
}

#[test]
fn policy_for_one_tool_shows_its_mode_and_allowlist_only() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["policy", "npm"]));
    out.expect_code(0);
    let text = out.stdout();
    check!(
        out,
        text.contains("registry.npmjs.org"),
        "npm's allowlist has its registry"
    );
    check!(out, text.contains("enforce"), "npm is enforced");
    check!(out, !text.contains("pypi.org"), "only npm's policy is printed");
    let (tool, packages) = text.split_once("\nPACKAGE CODE").unwrap_or((&text, ""));
    check!(
        out,
        tool.lines()
            .skip(1)
            .all(|l| l.starts_with(' ') || l.starts_with("npm ") || l.is_empty()),
        "only npm's policy is printed"
    );
    check!(
        out,
        packages
            .lines()
            .any(|l| l.starts_with("puppeteer ") && l.contains("storage.googleapis.com")),
        "and the pinned entries of npm's packages"
    );
    check!(
        out,
        text.lines()
            .any(|l| l.starts_with("npm ") && l.contains("observe") && l.contains("run, ")),
        "the subcommands that run the project's code are shown observed"
    );

    let out = g.run(g.cli_guard(["policy", "aws"]));
    out.expect_code(0);
    check!(out, out.stdout().contains("observe"), "aws is observed");
}

#[test]
fn policy_for_an_unknown_tool_is_a_usage_error() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["policy", "frobnicate"]));
    out.expect_code(2);
    check!(out, out.stderr().contains("frobnicate"), "the error must name it");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["frobnicate"]));
    out.expect_code(2);
    check!(out, out.stderr().contains("frobnicate"), "the error must name it");
}

#[test]
fn run_without_a_valid_as_or_command_is_a_usage_error() {
    let g = Sandbox::new();
    g.tool("mytool", "rec \"$@\"\nexit 0\n");
    for args in [
        &["run", "--", "mytool"][..],
        &["run", "--as", "frobnicate", "--", "mytool"],
        &["run", "--as", "npm", "--"],
        &["run", "--as"],
    ] {
        let out = g.run(g.cli_guard(args));
        out.expect_code(2);
        check!(
            out,
            !g.state_path("argv").exists(),
            "nothing may run for {args:?}"
        );
    }
}

#[test]
fn run_as_npm_runs_the_command_under_npms_policy() {
    let g = Sandbox::new();
    g.tool("mytool", HOLD);
    let up = Upstream::echo();
    let mut cmd = g.cli_guard(["run", "--as", "npm", "--", "mytool", "a b", "--c"]);
    cmd.env("CLI_GUARD_RESOLVE", Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]));
    let mut run = g.start(cmd);
    let env = g.wait_env(&mut run);
    let argv = g.child_argv(&mut run);
    check_eq!(
        run,
        argv[1..].to_vec(),
        vec![b"a b".to_vec(), b"--c".to_vec()],
        "the command's arguments"
    );
    check_eq!(
        run,
        argv[0],
        g.real.join("mytool").into_os_string().into_encoded_bytes(),
        "$0 of CMD found on PATH"
    );
    let proxy = env.proxy();
    check_eq!(
        run,
        env.var("npm_config_https_proxy"),
        proxy.url.as_str(),
        "npm's overrides"
    );
    check_eq!(run, env.var("NODE_USE_ENV_PROXY"), "1", "npm's overrides");

    let denied = proxy.connect("evil.example:443");
    check_eq!(
        run,
        denied.status,
        403,
        "not on npm's allowlist: {}",
        denied.report()
    );
    check!(
        run,
        denied.body_text().contains("npm"),
        "403 body names the tool npm: {}",
        denied.report()
    );
    let (ok, mut s) = proxy.tunnel(NPM_REGISTRY, b"");
    check_eq!(run, ok.status, 200, "npm's registry is allowed: {}", ok.report());
    check!(run, echo_roundtrip(&mut s, b"hello").is_ok(), "relay works");
    drop(s);

    g.release(3);
    let out = run.wait();
    out.expect_code(3);
    let log = g.log();
    let start = log.rows().of(env.audit_id()).kind("start");
    check_eq!(out, start.len(), 1, "one start record");
    check_eq!(out, start[0]["tool"], "npm", "start.tool");
    check_eq!(out, start[0]["mode"], "enforce", "start.mode");
}

#[test]
fn run_as_reports_a_missing_command_with_127() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["run", "--as", "npm", "--", "no-such-command-here"]));
    out.expect_code(127);
    check!(
        out,
        out.stderr().contains("no-such-command-here"),
        "the error names the command"
    );
}

#[test]
fn shim_dispatch_uses_the_basename_of_a_full_path() {
    // A shell that finds `npm` via an absolute path passes that path as argv[0].
    let g = Sandbox::new();
    g.tool("npm", "rec \"$@\"\nexit 0\n");
    let shim = g.shim("npm");
    let out = g.run(g.command(&shim));
    out.expect_code(0);
    check!(out, g.state_path("env").exists(), "the real npm ran");
}

#[test]
fn help_lists_doctor() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["--help"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("cli-guard doctor"),
        "--help must list doctor"
    );
}

#[test]
fn doctor_says_strict_mode_works_here_and_what_it_checked() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["doctor"]));
    out.expect_code(0);
    let text = out.stdout();
    check_eq!(
        out,
        text.lines().next().unwrap_or_default(),
        "strict mode: works (user and network namespaces, rootless)",
        "the verdict comes first"
    );
    for knob in [
        "kernel.unprivileged_userns_clone = ",
        "user.max_user_namespaces = ",
        "user.max_net_namespaces = ",
        "kernel.apparmor_restrict_unprivileged_userns = ",
        "container: ",
    ] {
        check!(out, text.contains(knob), "doctor must show {knob}");
    }
    check!(out, !text.contains("cause:"), "no cause when it works");
    // Sandbox::command sets CLI_GUARD_STRICT=off.
    check!(
        out,
        text.contains("CLI_GUARD_STRICT=\"off\": off"),
        "doctor must show CLI_GUARD_STRICT"
    );
}

#[test]
fn doctor_works_for_an_unprivileged_user() {
    let g = Sandbox::new();
    let out = g.run(g.as_nobody(BIN, &["doctor"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout()
            .starts_with("strict mode: works (user and network namespaces, rootless)\n"),
        "strict mode is rootless"
    );
}

#[test]
fn doctor_names_a_namespace_limit_of_zero_and_its_fix() {
    let g = Sandbox::new();
    let out = g.run(g.with_no_namespaces_left(&["doctor"]));
    out.expect_code(1);
    let text = out.stdout();
    let lines: Vec<&str> = text.lines().collect();
    check_eq!(
        out,
        lines.first().copied().unwrap_or_default(),
        "strict mode: not available: unshare(CLONE_NEWUSER|CLONE_NEWNET): No space left on device (ENOSPC)",
        "what refused, and the errno"
    );
    check!(
        out,
        lines
            .iter()
            .any(|l| l.starts_with("cause: user.max_user_namespaces is 0")),
        "the cause names the limit"
    );
    check!(
        out,
        lines.contains(&"fix: sudo sysctl -w user.max_user_namespaces=15000"),
        "the fix is the exact command"
    );
    check!(
        out,
        lines
            .iter()
            .any(|l| l.starts_with("fix: ") && l.contains("/etc/sysctl.d/")),
        "and how to keep it"
    );
    check!(
        out,
        lines.contains(&"  user.max_user_namespaces = 0"),
        "what it read"
    );
}

#[test]
fn doctor_shows_the_strict_setting_and_refuses_a_bad_one() {
    let g = Sandbox::new();
    let mut cmd = g.cli_guard(["doctor"]);
    cmd.env("CLI_GUARD_STRICT", "require");
    let out = g.run(cmd);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("CLI_GUARD_STRICT=\"require\": require"),
        "require is shown"
    );
    let mut cmd = g.cli_guard(["doctor"]);
    cmd.env("CLI_GUARD_STRICT", "yes");
    let out = g.run(cmd);
    out.expect_code(1);
    check!(
        out,
        out.stdout().contains("is not a setting") && out.stdout().contains("(exit 125)"),
        "a value that is not a setting fails every guarded tool, and doctor says so"
    );
    let mut cmd = g.cli_guard(["doctor"]);
    cmd.env_remove("CLI_GUARD_STRICT");
    let out = g.run(cmd);
    out.expect_code(0);
    check!(
        out,
        out.stdout().contains("CLI_GUARD_STRICT is not set: auto"),
        "unset is auto"
    );
}

#[test]
fn doctor_help_and_bad_arguments() {
    let g = Sandbox::new();
    let out = g.run(g.cli_guard(["doctor", "--help"]));
    out.expect_code(0);
    check!(
        out,
        out.stdout().starts_with("usage: cli-guard doctor\n"),
        "doctor --help"
    );
    let out = g.run(g.cli_guard(["doctor", "now"]));
    out.expect_code(2);
    check!(
        out,
        out.stderr().contains("see cli-guard doctor --help"),
        "the usage error points at the help"
    );
}

#[test]
fn a_reader_that_leaves_early_is_no_panic() {
    // stdout is a pipe whose reader is already gone: every write fails
    // with EPIPE (or raises SIGPIPE, for the commands that only print).
    let g = Sandbox::new();
    let cases: [&[&str]; 5] = [
        &["policy"],
        &["--help"],
        &["--version"],
        &["audit", "--help"],
        &["egress-demo", "--help"],
    ];
    for args in cases {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let mut cmd = g.cli_guard(args);
        cmd.stdout(std::process::Stdio::from(write));
        let out = g.run(cmd);
        check!(
            out,
            !out.stderr().contains("panicked"),
            "cli-guard {args:?} must not panic on a closed stdout"
        );
        let code = out.status.code();
        let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
        check!(
            out,
            code == Some(0) || signal == Some(nix::libc::SIGPIPE),
            "cli-guard {args:?}: exit 0 or death by SIGPIPE, not an abort"
        );
    }
}
