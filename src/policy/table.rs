//! The pinned table: one line per guarded tool name, its mode, the hosts
//! an enforce-mode tool may reach, and which of its subcommands run the
//! project's own code (observed, not enforced). Sources for every host are
//! in `docs/registries.md` of the shared docs (the tools' own code).

use crate::policy::{Family, Mode, Rule, SubcommandRule, ToolPolicy};

const NPM_REGISTRY: &[Rule] = &[Rule::https("registry.npmjs.org")];
const PYPI: &[Rule] = &[Rule::https("pypi.org"), Rule::https("files.pythonhosted.org")];
const RUBYGEMS: &[Rule] = &[Rule::https("rubygems.org"), Rule::https("index.rubygems.org")];

/// Instance-metadata endpoints the AWS CLI reads over plaintext HTTP (EC2
/// IMDS on IPv4 and IPv6, ECS task credentials). They must bypass a
/// CONNECT-only proxy or credentials on EC2/ECS stop working.
const AWS_METADATA: &[&str] = &["169.254.169.254", "169.254.170.2", "fd00:ec2::254"];

// How each tool names its subcommand: the options before it that take a
// separate value (`npm --prefix DIR run x`, `cargo -C DIR test`). An option
// missing here makes its value look like the subcommand: enforced, unless
// the value is itself a run word.
const NPM_OPTIONS: &[&str] = &[
    "--prefix",
    "-C",
    "--workspace",
    "-w",
    "--registry",
    "--cache",
    "--userconfig",
    "--globalconfig",
    "--loglevel",
    "--tag",
    "--otp",
    "--scope",
    "--before",
    "--omit",
    "--include",
    "--location",
    "-L",
    "--script-shell",
    "--node-options",
    "--install-strategy",
];
const NPM: SubcommandRule = SubcommandRule {
    value_options: NPM_OPTIONS,
    ..SubcommandRule::PLAIN
};
// npx's -p is --package (npm's is --parseable).
const NPX: SubcommandRule = SubcommandRule {
    value_options: &[
        "--package",
        "-p",
        "--call",
        "-c",
        "--prefix",
        "-C",
        "--registry",
        "--cache",
        "--userconfig",
        "--loglevel",
    ],
    ..SubcommandRule::PLAIN
};
// pnpm runs a script by name when the name is none of its own commands
// (pnpm/src/cmd/index.ts, with aliases; the not-implemented ones too, which
// fail safe). pnpm's -w is --workspace-root and takes no value.
const PNPM: SubcommandRule = SubcommandRule {
    value_options: &[
        "-C",
        "--dir",
        "--prefix",
        "--filter",
        "-F",
        "--filter-prod",
        "--test-pattern",
        "--changed-files-ignore-pattern",
        "--reporter",
        "--loglevel",
        "--color",
        "--store-dir",
        "--registry",
    ],
    toolchain: false,
    package_scripts: true,
    builtins: &[
        "add",
        "approve-builds",
        "audit",
        "bin",
        "cache",
        "ci",
        "clean-install",
        "ic",
        "install-clean",
        "clean",
        "purge",
        "config",
        "c",
        "get",
        "set",
        "create",
        "dedupe",
        "deploy",
        "dlx",
        "doctor",
        "env",
        "exec",
        "runtime",
        "rt",
        "fetch",
        "completion",
        "completion-server",
        "ignored-builds",
        "import",
        "self-update",
        "setup",
        "init",
        "install",
        "i",
        "install-test",
        "it",
        "link",
        "ln",
        "list",
        "ls",
        "ll",
        "la",
        "licenses",
        "outdated",
        "pack",
        "patch",
        "patch-commit",
        "patch-remove",
        "peers",
        "prune",
        "publish",
        "rebuild",
        "rb",
        "recursive",
        "m",
        "multi",
        "remove",
        "rm",
        "uninstall",
        "un",
        "uni",
        "root",
        "sbom",
        "store",
        "cat-file",
        "cat-index",
        "find-hash",
        "unlink",
        "dislink",
        "update",
        "up",
        "upgrade",
        "version",
        "why",
        "help",
        "access",
        "adduser",
        "bugs",
        "deprecate",
        "dist-tag",
        "docs",
        "edit",
        "find",
        "home",
        "info",
        "issues",
        "login",
        "logout",
        "owner",
        "ping",
        "profile",
        "pkg",
        "repo",
        "s",
        "se",
        "search",
        "set-script",
        "show",
        "star",
        "stars",
        "team",
        "token",
        "unpublish",
        "unstar",
        "v",
        "view",
        "whoami",
        "xmas",
    ],
};
// yarn (1 and berry) runs a script by name when the name is none of its
// own commands.
const YARN: SubcommandRule = SubcommandRule {
    value_options: &[
        "--cwd",
        "--modules-folder",
        "--cache-folder",
        "--global-folder",
        "--link-folder",
        "--mutex",
        "--network-timeout",
        "--network-concurrency",
        "--child-concurrency",
        "--registry",
        "--otp",
        "--preferred-cache-folder",
        "--use-yarnrc",
    ],
    toolchain: false,
    package_scripts: true,
    builtins: &[
        "access",
        "add",
        "audit",
        "autoclean",
        "bin",
        "cache",
        "check",
        "config",
        "constraints",
        "create",
        "dedupe",
        "dlx",
        "exec",
        "explain",
        "generate-lock-entry",
        "global",
        "help",
        "import",
        "info",
        "init",
        "install",
        "licenses",
        "link",
        "list",
        "login",
        "logout",
        "node",
        "npm",
        "outdated",
        "owner",
        "pack",
        "patch",
        "patch-commit",
        "plugin",
        "policies",
        "publish",
        "rebuild",
        "remove",
        "sdks",
        "search",
        "set",
        "stage",
        "tag",
        "team",
        "unlink",
        "unplug",
        "up",
        "upgrade",
        "upgrade-interactive",
        "version",
        "versions",
        "why",
        "workspace",
        "workspaces",
    ],
};
// rustup's proxy takes `+toolchain` first; -C, --config, -Z, --color and
// --explain take a value before the subcommand.
const CARGO: SubcommandRule = SubcommandRule {
    value_options: &["-C", "--config", "-Z", "--color", "--explain"],
    toolchain: true,
    ..SubcommandRule::PLAIN
};
const PIP: SubcommandRule = SubcommandRule {
    value_options: &[
        "--proxy",
        "--log",
        "--log-file",
        "--cache-dir",
        "--timeout",
        "--retries",
        "--python",
        "--cert",
        "--client-cert",
        "--exists-action",
        "--trusted-host",
        "--keyring-provider",
        "--use-feature",
        "--use-deprecated",
    ],
    ..SubcommandRule::PLAIN
};
const UV: SubcommandRule = SubcommandRule {
    value_options: &[
        "--directory",
        "--project",
        "--config-file",
        "--cache-dir",
        "--color",
        "--python-preference",
        "--allow-insecure-host",
    ],
    ..SubcommandRule::PLAIN
};
const COMPOSER: SubcommandRule = SubcommandRule {
    value_options: &["-d", "--working-dir"],
    ..SubcommandRule::PLAIN
};
const AWS: SubcommandRule = SubcommandRule {
    value_options: &[
        "--region",
        "--profile",
        "--output",
        "--endpoint-url",
        "--query",
        "--ca-bundle",
        "--color",
        "--cli-read-timeout",
        "--cli-connect-timeout",
    ],
    ..SubcommandRule::PLAIN
};
const DOCKER: SubcommandRule = SubcommandRule {
    value_options: &[
        "-H",
        "--host",
        "--context",
        "-c",
        "--config",
        "-l",
        "--log-level",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
    ],
    ..SubcommandRule::PLAIN
};
const KUBECTL: SubcommandRule = SubcommandRule {
    value_options: &[
        "-n",
        "--namespace",
        "--context",
        "--kubeconfig",
        "-s",
        "--server",
        "--cluster",
        "--user",
        "--token",
    ],
    ..SubcommandRule::PLAIN
};

const fn enforce(name: &'static str, family: Family, allow: &'static [Rule]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Enforce,
        allow,
        no_proxy: &[],
        family,
        runs_project_code: &[],
        subcommand_rule: SubcommandRule::PLAIN,
    }
}

const fn observe(name: &'static str, no_proxy: &'static [&'static str]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Observe,
        allow: &[],
        no_proxy,
        family: Family::Plain,
        runs_project_code: &[],
        subcommand_rule: SubcommandRule::PLAIN,
    }
}

impl ToolPolicy {
    /// These subcommands (aliases included) run the project's own code:
    /// observed, not isolated.
    const fn runs_project_code(self, runs_project_code: &'static [&'static str]) -> ToolPolicy {
        ToolPolicy {
            runs_project_code,
            ..self
        }
    }

    /// The subcommand is found by this rule.
    const fn subcommands(self, subcommand_rule: SubcommandRule) -> ToolPolicy {
        ToolPolicy {
            subcommand_rule,
            ..self
        }
    }

    /// The same tool in observe mode, for its runs: no allowlist.
    const fn observed(self) -> ToolPolicy {
        ToolPolicy {
            mode: Mode::Observe,
            allow: &[],
            ..self
        }
    }
}

/// The pinned table. One line per tool name, sorted by mode then name.
pub static TOOLS: &[ToolPolicy] = TABLE;

/// Each tool of [`TOOLS`] in observe mode, at the same index: what the gate
/// decides by when an invocation runs the project's own code.
static OBSERVE_TWINS: [ToolPolicy; TABLE.len()] = observe_twins(TABLE);

const fn observe_twins<const N: usize>(tools: &[ToolPolicy]) -> [ToolPolicy; N] {
    let mut twins = [observe("", &[]); N];
    let mut i = 0;
    while i < N {
        twins[i] = tools[i].observed();
        i += 1;
    }
    twins
}

/// The observe-mode twin of a tool of [`TOOLS`] (the tool itself if it is
/// in observe mode); `None` for a policy that is not in the table.
pub fn observe_twin(tool: &'static ToolPolicy) -> Option<&'static ToolPolicy> {
    let i = TOOLS.iter().position(|t| t.name == tool.name)?;
    match tool.mode {
        Mode::Observe => Some(tool),
        Mode::Enforce => OBSERVE_TWINS.get(i),
    }
}

const TABLE: &[ToolPolicy] = &[
    // Homebrew: the JSON API, bottles on GitHub Packages, and the blob host
    // ghcr.io redirects to. pkg-containers.githubusercontent.com is GitHub's
    // user-content storage: it serves any package anyone publishes, which is
    // broad, but every bottle download lands there.
    enforce(
        "brew",
        Family::Plain,
        &[
            Rule::https("formulae.brew.sh"),
            Rule::https("ghcr.io"),
            Rule::https("pkg-containers.githubusercontent.com"),
        ],
    ),
    enforce("bundle", Family::Plain, RUBYGEMS),
    enforce(
        "cargo",
        Family::Cargo,
        &[Rule::https("index.crates.io"), Rule::https("static.crates.io")],
    )
    .runs_project_code(&["run", "r", "test", "t", "bench"])
    .subcommands(CARGO),
    // Composer: Packagist metadata, plus GitHub's API and codeload for the
    // dist zips of GitHub-hosted packages (the default for most packages).
    // Both GitHub hosts serve arbitrary user content: allowing them allows a
    // lot, but without them `composer install` fails for most projects.
    enforce(
        "composer",
        Family::Plain,
        &[
            Rule::https("repo.packagist.org"),
            Rule::https("packagist.org"),
            Rule::https("api.github.com"),
            Rule::https("codeload.github.com"),
        ],
    )
    .subcommands(COMPOSER),
    enforce("gem", Family::Plain, RUBYGEMS),
    // Go: the module proxy, the checksum database, and storage.googleapis.com,
    // where proxy.golang.org redirects module zips. The latter is a shared
    // host for every Google Cloud Storage bucket; a CONNECT gate cannot narrow
    // it to a path.
    enforce(
        "go",
        Family::Plain,
        &[
            Rule::https("proxy.golang.org"),
            Rule::https("sum.golang.org"),
            Rule::https("storage.googleapis.com"),
        ],
    ),
    // npm's run-script (aliases run, rum, urn), test (t, tst), start, stop
    // and restart run package.json scripts; exec, install-test and the rest
    // fetch or run fetched packages.
    enforce("npm", Family::Node, NPM_REGISTRY)
        .runs_project_code(&[
            "run",
            "run-script",
            "rum",
            "urn",
            "start",
            "test",
            "t",
            "tst",
            "stop",
            "restart",
        ])
        .subcommands(NPM),
    // npx runs freshly fetched packages: always enforced.
    enforce("npx", Family::Node, NPM_REGISTRY).subcommands(NPX),
    enforce("pip", Family::Python, PYPI).subcommands(PIP),
    enforce("pip3", Family::Python, PYPI).subcommands(PIP),
    // pnpm: also any script of ./package.json by name (see PNPM).
    enforce("pnpm", Family::Node, NPM_REGISTRY)
        .runs_project_code(&["run", "run-script", "start", "test", "t", "tst", "restart"])
        .subcommands(PNPM),
    enforce("uv", Family::Python, PYPI)
        .runs_project_code(&["run"])
        .subcommands(UV),
    // Yarn: its own registry front, plus registry.npmjs.org because lockfiles
    // written by npm (and many yarn.lock files) carry its URLs.
    enforce(
        "yarn",
        Family::Node,
        &[
            Rule::https("registry.yarnpkg.com"),
            Rule::https("registry.npmjs.org"),
        ],
    )
    // yarn: also any script of ./package.json by name (see YARN).
    .runs_project_code(&["run", "start", "test"])
    .subcommands(YARN),
    observe("aws", AWS_METADATA).subcommands(AWS),
    observe("docker", &[]).subcommands(DOCKER),
    observe("gh", &[]),
    observe("kubectl", &[]).subcommands(KUBECTL),
    observe("tailscale", &[]),
];

/// The policy for a tool name, if cli-guard guards it.
pub fn lookup(name: &str) -> Option<&'static ToolPolicy> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Every guarded tool name, in table order.
pub fn tool_names() -> impl Iterator<Item = &'static str> {
    TOOLS.iter().map(|t| t.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::Host;

    #[test]
    fn table_has_the_required_tools() {
        for name in [
            "brew", "npm", "npx", "pnpm", "yarn", "pip", "pip3", "uv", "cargo", "gem", "bundle", "go",
            "composer",
        ] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Enforce), "{name}");
        }
        for name in ["aws", "gh", "kubectl", "docker", "tailscale"] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Observe), "{name}");
        }
        assert_eq!(lookup("cli-guard"), None);
        assert_eq!(lookup("egress-demo"), None);
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<&str> = tool_names().collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    /// Every pattern in the table must be a valid normalised name, or
    /// `*.` followed by one with at least two labels: no bare `*`, no `*.`,
    /// no mid-name globs, no uppercase, no trailing dot.
    #[test]
    fn table_patterns_are_well_formed() {
        for tool in TOOLS {
            assert_eq!(
                tool.mode == Mode::Enforce,
                !tool.allow.is_empty(),
                "{}",
                tool.name
            );
            for rule in tool.allow {
                let name = rule.pattern.strip_prefix("*.").unwrap_or(rule.pattern);
                assert!(!name.contains('*'), "{}: {}", tool.name, rule.pattern);
                assert!(name.contains('.'), "{}: {} is too broad", tool.name, rule.pattern);
                assert_eq!(
                    crate::policy::authority::parse_host(name),
                    Ok(Host::Name(name.to_string())),
                    "{}: {} is not a normalised name",
                    tool.name,
                    rule.pattern
                );
                assert!(!rule.ports.is_empty(), "{}: {}", tool.name, rule.pattern);
            }
        }
    }

    #[test]
    fn every_tool_has_an_observe_twin_of_the_same_name() {
        for tool in TOOLS {
            let twin = observe_twin(tool).unwrap_or_else(|| panic!("{} has no twin", tool.name));
            assert_eq!(twin.name, tool.name);
            assert_eq!(twin.mode, Mode::Observe);
            assert_eq!(twin.family, tool.family);
            assert_eq!(twin.no_proxy, tool.no_proxy);
            assert!(twin.allow.is_empty(), "{}", tool.name);
            if tool.mode == Mode::Observe {
                assert!(std::ptr::eq(twin, tool), "{}", tool.name);
            }
        }
    }

    #[test]
    fn a_policy_outside_the_table_has_no_twin() {
        static OUTSIDE: ToolPolicy = enforce("egress-demo", Family::Plain, NPM_REGISTRY);
        assert_eq!(observe_twin(&OUTSIDE), None);
    }

    /// Only enforce-mode tools split; no run word is an option or one of
    /// the tool's own builtins; npx and pip always fetch.
    #[test]
    fn run_lists_are_well_formed() {
        for tool in TOOLS {
            if tool.mode == Mode::Observe {
                assert!(tool.runs_project_code.is_empty(), "{}", tool.name);
            }
            for word in tool.runs_project_code {
                assert!(
                    !word.is_empty() && !word.starts_with('-'),
                    "{}: {word}",
                    tool.name
                );
                assert!(
                    !tool.subcommand_rule.builtins.contains(word),
                    "{}: {word}",
                    tool.name
                );
            }
            for option in tool.subcommand_rule.value_options {
                assert!(
                    option.starts_with('-') && !option.contains('='),
                    "{}: {option}",
                    tool.name
                );
            }
        }
        for name in ["npx", "pip", "pip3", "brew", "gem", "bundle", "go", "composer"] {
            assert_eq!(lookup(name).map(|t| t.runs_project_code.len()), Some(0), "{name}");
        }
    }
}
