//! The pinned table: one line per guarded tool name, its mode, the hosts
//! an enforce-mode tool may reach, and which of its subcommands run the
//! project's own code (observed, not enforced). Sources for every host are
//! in `docs/registries.md` of the shared docs (the tools' own code). How
//! each tool's arguments name the subcommand is `grammar`'s; what the
//! table amounts to is `cli-guard policy`, whose output is kept under test
//! (`tests/golden/policy.txt`), so every allowlist change shows in review
//! as a plain-text diff.

use crate::policy::fetch_run::{FetchRun, Grammar};
use crate::policy::grammar::{
    AWS, BUN, BUNX, CARGO, COMPOSER, CONDA, DENO, DOCKER, DOTNET, HATCH, KUBECTL, NPM, NPX, PDM, PIP, PIXI,
    PNPM, POETRY, UV, YARN,
};
use crate::policy::writes::{self, Base, Place};
use crate::policy::{Family, Mode, Rule, SubcommandRule, ToolPolicy};

const NPM_REGISTRY: &[Rule] = &[Rule::https("registry.npmjs.org")];
/// Maven Central as Maven and Gradle name it (the super POM's `central`;
/// Gradle's `mavenCentral()`).
const MAVEN_CENTRAL: Rule = Rule::https("repo.maven.apache.org");
/// The conda channels of a default install: `defaults` (pkgs/main, pkgs/r)
/// on repo.anaconda.com, and named channels such as conda-forge through
/// the channel_alias conda.anaconda.org (conda/conda
/// `conda/base/constants.py`).
const CONDA_CHANNELS: &[Rule] = &[
    Rule::https("repo.anaconda.com"),
    Rule::https("conda.anaconda.org"),
];
const PYPI: &[Rule] = &[Rule::https("pypi.org"), Rule::https("files.pythonhosted.org")];
const RUBYGEMS: &[Rule] = &[Rule::https("rubygems.org"), Rule::https("index.rubygems.org")];

/// Instance-metadata endpoints the AWS CLI reads over plaintext HTTP (EC2
/// IMDS on IPv4 and IPv6, ECS task credentials). They must bypass a
/// CONNECT-only proxy or credentials on EC2/ECS stop working.
const AWS_METADATA: &[&str] = &["169.254.169.254", "169.254.170.2", "fd00:ec2::254"];

const fn enforce(name: &'static str, family: Family, allow: &'static [Rule]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Enforce,
        allow,
        no_proxy: &[],
        family,
        runs_project_code: &[],
        subcommand_rule: SubcommandRule::PLAIN,
        writes: match family {
            Family::Node => writes::NODE,
            Family::Python => writes::PYTHON,
            Family::Cargo => writes::CARGO,
            Family::Maven | Family::Gradle => writes::JVM,
            Family::Plain => PROJECT_AND_TEMP,
        },
    }
}

/// A tool with no places of its own pinned: its project and temp only.
const PROJECT_AND_TEMP: &[Place] = &[Place::at(Base::Project, ""), Place::at(Base::Temp, "")];

const fn observe(name: &'static str, no_proxy: &'static [&'static str]) -> ToolPolicy {
    ToolPolicy {
        name,
        mode: Mode::Observe,
        allow: &[],
        no_proxy,
        family: Family::Plain,
        runs_project_code: &[],
        subcommand_rule: SubcommandRule::PLAIN,
        // Never isolated: writes where the user can.
        writes: &[],
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

    /// A strict invocation may write these places.
    const fn writes(self, writes: &'static [Place]) -> ToolPolicy {
        ToolPolicy { writes, ..self }
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
pub(crate) fn observe_twin(tool: &'static ToolPolicy) -> Option<&'static ToolPolicy> {
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
    )
    .writes(writes::BREW),
    // bun's own client: the npm registry (bun docs `guides/install/
    // custom-registry`). `bun upgrade` and `bun create` from GitHub reach
    // api.github.com and GitHub's release hosts, which serve anyone's
    // content: left out, so they are denied and named. Node family: a
    // lifecycle script bun hands to node needs NODE_USE_ENV_PROXY.
    enforce("bun", Family::Node, NPM_REGISTRY)
        .runs_project_code(&["run", "test"])
        .subcommands(BUN),
    enforce("bundle", Family::Plain, RUBYGEMS).writes(writes::RUBY),
    // bunx (`bun x`) runs freshly fetched packages: always enforced.
    enforce("bunx", Family::Node, NPM_REGISTRY).subcommands(BUNX),
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
    .subcommands(COMPOSER)
    .writes(writes::COMPOSER),
    // conda: `defaults` and named channels (see CONDA_CHANNELS). `conda run`
    // runs the project's code in an environment. A .condarc
    // `proxy_servers` entry keyed `https://HOST` beats HTTPS_PROXY with no
    // variable to override it: strict mode still gates it; without strict
    // mode the shim warns (`shim::overrides`).
    enforce("conda", Family::Plain, CONDA_CHANNELS)
        .writes(writes::CONDA)
        .runs_project_code(&["run"])
        .subcommands(CONDA),
    // corepack fetches package managers: npm and pnpm tarballs and yarn 1
    // from the registries, yarn >= 2 from repo.yarnpkg.com (nodejs/corepack
    // `config.json`). It then runs the fetched manager: always enforced.
    enforce(
        "corepack",
        Family::Node,
        &[
            Rule::https("registry.npmjs.org"),
            Rule::https("registry.yarnpkg.com"),
            Rule::https("repo.yarnpkg.com"),
        ],
    ),
    // deno: `npm:` specifiers from the npm registry, `jsr:` from jsr.io
    // (denoland/deno `cli/args/mod.rs`, npm_registry_url and jsr_url).
    // Plain `https:` imports (deno.land, esm.sh) name hosts of their own:
    // left out. run, test, task, bench and serve run the project's code
    // (and fetch its imports, observed, as `cargo run` builds).
    enforce(
        "deno",
        Family::Plain,
        &[Rule::https("registry.npmjs.org"), Rule::https("jsr.io")],
    )
    .writes(writes::NODE)
    .runs_project_code(&["run", "test", "task", "bench", "serve"])
    .subcommands(DENO),
    // dotnet restore, tool and new: NuGet's service index and the resources
    // it lists, all on api.nuget.org (learn.microsoft.com `nuget/api/
    // service-index`); search hosts and telemetry are left out. run, test
    // and watch run the project's code (after an implicit restore, as
    // `cargo run` builds first). NuGet.Config `http_proxy` beats the
    // environment with no variable to override it: strict mode still gates
    // it; without strict mode the shim warns.
    enforce("dotnet", Family::Plain, &[Rule::https("api.nuget.org")])
        .writes(writes::DOTNET)
        .runs_project_code(&["run", "test", "watch"])
        .subcommands(DOTNET),
    enforce("gem", Family::Plain, RUBYGEMS).writes(writes::RUBY),
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
    )
    .writes(writes::GO),
    // Gradle: the plugin portal and where it redirects artifacts, and Maven
    // Central for `mavenCentral()` (docs.gradle.org `userguide/
    // networking.html`; gradle/gradle `ArtifactRepositoryContainer.java`).
    // services.gradle.org is left out: a `gradle` invocation never
    // downloads a distribution (`./gradlew` does, and no shim sees it), nor
    // is dl.google.com (`google()`, Android builds) in a default build.
    // Always enforced: the arguments are a list of tasks, any of which may
    // resolve and download dependencies.
    enforce(
        "gradle",
        Family::Gradle,
        &[
            Rule::https("plugins.gradle.org"),
            Rule::https("plugins-artifacts.gradle.org"),
            MAVEN_CENTRAL,
        ],
    ),
    // hatch installs through pip (or its bundled uv): PyPI. `hatch python
    // install` fetches python-build-standalone from GitHub release assets,
    // which serve anyone's content: left out. run, test and shell run the
    // project's code.
    enforce("hatch", Family::Python, PYPI)
        .runs_project_code(&["run", "test", "shell"])
        .subcommands(HATCH),
    // mamba reads .condarc as conda does: the same channels.
    enforce("mamba", Family::Plain, CONDA_CHANNELS)
        .writes(writes::CONDA)
        .runs_project_code(&["run"])
        .subcommands(CONDA),
    // micromamba has no default channels: named ones (`-c conda-forge`)
    // resolve through channel_alias conda.anaconda.org (mamba-org/mamba
    // `libmamba/src/api/configuration.cpp`). `defaults` (repo.anaconda.com)
    // is left out: it must be named, and it is then denied and named.
    enforce("micromamba", Family::Plain, &[Rule::https("conda.anaconda.org")])
        .writes(writes::CONDA)
        .runs_project_code(&["run"])
        .subcommands(CONDA),
    // Maven: central in the super POM (apache/maven `pom-4.0.0.xml`).
    // Always enforced: the arguments are a list of phases and goals, any of
    // which may resolve and download plugins and dependencies.
    enforce("mvn", Family::Maven, &[MAVEN_CENTRAL]),
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
    // pipx installs through pip or uv: PyPI. `pipx run` runs a freshly
    // fetched package: always enforced. `--fetch-missing-python` reaches
    // GitHub release assets (python-build-standalone): left out.
    enforce("pipx", Family::Python, PYPI),
    // pixi: the default channel conda-forge on conda.anaconda.org
    // (prefix-dev/pixi `docs/reference/pixi_configuration.md`). A manifest
    // with pypi-dependencies also needs PyPI and conda-mapping.prefix.dev:
    // left out of a default install, so denied and named. run and shell run
    // the project's tasks; `pixi exec` runs fetched packages: enforced.
    enforce("pixi", Family::Plain, &[Rule::https("conda.anaconda.org")])
        .writes(writes::CONDA)
        .runs_project_code(&["run", "shell"])
        .subcommands(PIXI),
    // pnpm: also any script of ./package.json by name (see PNPM).
    enforce("pnpm", Family::Node, NPM_REGISTRY)
        .runs_project_code(&["run", "run-script", "start", "test", "t", "tst", "restart"])
        .subcommands(PNPM),
    // pnpx and pnx (pnpm 11) are `pnpm dlx`: run freshly fetched
    // packages, always enforced (pnpm/pnpm `pnpm11/pnpm/package.json`).
    enforce("pnpx", Family::Node, NPM_REGISTRY),
    enforce("pnx", Family::Node, NPM_REGISTRY),
    // poetry: PyPI's simple and JSON APIs and its file host (python-poetry/
    // poetry `src/poetry/repositories/pypi_repository.py`).
    enforce("poetry", Family::Python, PYPI)
        .runs_project_code(&["run"])
        .subcommands(POETRY),
    // pdm: `pypi.url` https://pypi.org/simple (pdm-project/pdm
    // `src/pdm/project/config.py`). `pdm python install` reaches GitHub
    // release assets: left out.
    enforce("pdm", Family::Python, PYPI)
        .runs_project_code(&["run"])
        .subcommands(PDM),
    // uv: PyPI (astral-sh/uv `crates/uv-distribution-types/src/
    // index_url.rs`); releases.astral.sh and github.com (python installs,
    // self update) are left out. A uv.toml `https-proxy` drops the
    // environment's proxy with no variable to override it: strict mode
    // still gates it; without strict mode the shim warns.
    enforce("uv", Family::Python, PYPI)
        .runs_project_code(&["run"])
        .subcommands(UV),
    // uvx (`uv tool run`) runs a freshly fetched tool: always enforced.
    enforce("uvx", Family::Python, PYPI),
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
    // Azure CLI: management.azure.com, login.microsoftonline.com and every
    // service endpoint: too broad to enumerate.
    observe("az", &[]),
    observe("docker", &[]).subcommands(DOCKER),
    // gcloud: *.googleapis.com and accounts.google.com.
    observe("gcloud", &[]),
    observe("gh", &[]),
    // helm: whatever chart repos and OCI registries were added, and the
    // cluster through kubeconfig, as kubectl.
    observe("helm", &[]),
    observe("kubectl", &[]).subcommands(KUBECTL),
    observe("tailscale", &[]),
    // terraform: registry.terraform.io, provider zips wherever the
    // registry's download_url points, and every API its providers (child
    // processes with the same environment) call.
    observe("terraform", &[]),
];

/// The fetch-and-run forms (`policy::fetch_run`): each line splits that
/// form of its tool into a fetch, enforced and strict like `npm install`,
/// then a run of the program asked for, observed and not isolated like
/// `npm run`, from what the fetch left and without fetching again.
/// Deleting a line makes that tool's form enforced whole again, as every
/// invocation of it was before. yarn dlx cannot run from what it fetched
/// (a temporary project, deleted as the program exits): observed whole.
pub(crate) static FETCH_AND_RUN: &[FetchRun] = &[
    FetchRun::whole("npx", Grammar::NpmExec),
    FetchRun::after("npm", &[&["exec"], &["x"]], Grammar::NpmExec),
    FetchRun::after("pnpm", &[&["dlx"]], Grammar::PnpmDlx),
    FetchRun::whole("pnpx", Grammar::PnpmDlx),
    FetchRun::whole("pnx", Grammar::PnpmDlx),
    FetchRun::after("yarn", &[&["dlx"]], Grammar::YarnDlx),
    FetchRun::whole("bunx", Grammar::BunX),
    FetchRun::after("bun", &[&["x"]], Grammar::BunX),
    FetchRun::whole("uvx", Grammar::UvToolRun),
    FetchRun::after("uv", &[&["tool", "run"]], Grammar::UvToolRun),
    FetchRun::after("pipx", &[&["run"]], Grammar::PipxRun),
];

/// The policy for a tool name, if cli-guard guards it.
pub(crate) fn lookup(name: &str) -> Option<&'static ToolPolicy> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Every guarded tool name, in table order.
pub(crate) fn tool_names() -> impl Iterator<Item = &'static str> {
    TOOLS.iter().map(|t| t.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::Host;

    #[test]
    fn table_has_the_required_tools() {
        for name in [
            "brew",
            "npm",
            "npx",
            "pnpm",
            "yarn",
            "pip",
            "pip3",
            "uv",
            "cargo",
            "gem",
            "bundle",
            "go",
            "composer",
            "bun",
            "bunx",
            "pnpx",
            "pnx",
            "deno",
            "corepack",
            "uvx",
            "poetry",
            "pipx",
            "pdm",
            "hatch",
            "conda",
            "mamba",
            "micromamba",
            "pixi",
            "mvn",
            "gradle",
            "dotnet",
        ] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Enforce), "{name}");
        }
        for name in [
            "aws",
            "gh",
            "kubectl",
            "docker",
            "tailscale",
            "helm",
            "terraform",
            "gcloud",
            "az",
        ] {
            assert_eq!(lookup(name).map(|t| t.mode), Some(Mode::Observe), "{name}");
        }
        assert_eq!(lookup("cli-guard"), None);
        assert_eq!(lookup("egress-demo"), None);
        // The python names are shims, not tools: `-m pip` runs under pip's
        // policy, anything else is the interpreter itself.
        for name in ["python", "python3", "python3.12"] {
            assert_eq!(lookup(name), None, "{name}");
        }
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
        for name in [
            "npx", "pip", "pip3", "brew", "gem", "bundle", "go", "composer", "bunx", "pnpx", "pnx", "uvx",
            "pipx", "corepack", "mvn", "gradle",
        ] {
            assert_eq!(lookup(name).map(|t| t.runs_project_code.len()), Some(0), "{name}");
        }
    }
}
