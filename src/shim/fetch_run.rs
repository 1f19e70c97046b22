//! Fetch and run (`npx X`, `npm exec`, `pnpm dlx`, `bunx X`, `uvx X`,
//! `uv tool run`, `pipx run`): two guarded invocations, each with its own
//! audit ID and rows. The fetch phase is enforced and strict as `npm
//! install` is; a probe runs in place of the program and reports where the
//! tool put what it fetched. The program is named from the files found
//! there (a package.json, a dist-info), and the run phase, observed and not
//! isolated as `npm run` is, runs it from there with the tool's offline
//! mode; its start row names the package and the fetch's audit ID. If the
//! fetch fails, the run does not start and the fetch's exit is passed on.
//! `yarn dlx`, which cannot run from what it fetched, is observed whole.
//! The forms and the argument lists are `policy::fetch_run`'s.
//!
//! npm needs cli-guard as its script shell (`script_shell`): in the fetch,
//! at the `npx` event (the program), the hook reports and runs nothing;
//! lifecycle scripts run in `sh` as usual. In the run, it takes the
//! settings the run phase added (`--offline`, `--yes`, `--ignore-scripts`,
//! the script shell itself) back out of the environment npm exports to the
//! program, then becomes `sh`: the program sees what it would see without
//! cli-guard.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::script_shell::{Hook, NpmReport};
use super::{guarded, Invocation};
use crate::audit::Package;
use crate::env::Env;
use crate::exit::{Exit, Failure};
use crate::policy::fetch_run::{
    spec_name, Context, Phases, Plan, Probe, Wanted, WHY_FETCHES_FOR_RUN, WHY_RUNS_FETCHED, WHY_RUNS_UNNAMED,
};
use crate::policy::{self, observe_twin, InvocationPolicy, Mode};

/// The most of any one metadata file read to name the program.
const MAX_METADATA: u64 = 1 << 20;

/// One guarded invocation's part in a fetch-and-run: the tool's arguments
/// and environment, its policy, and what its start row says. The default
/// is an ordinary invocation.
#[derive(Debug, Default)]
pub(super) struct Phase {
    /// The tool's arguments, when not the typed ones.
    pub(super) args: Option<Vec<OsString>>,
    /// The policy, when not the one the typed arguments get.
    pub(super) split: Option<InvocationPolicy>,
    /// Variables set (`Some`) or removed (`None`) in the child's environment.
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) mark: Mark,
}

/// What a phase's start row says it is.
#[derive(Debug, Clone, Default)]
pub(super) struct Mark {
    pub(super) phase: Option<&'static str>,
    pub(super) fetch_audit_id: Option<String>,
    pub(super) package: Option<Package>,
}

impl Phase {
    /// Applies this phase's variables to the child's environment.
    pub(super) fn apply_env(&self, env: &mut BTreeMap<OsString, OsString>) {
        for (key, value) in &self.env {
            match value {
                Some(value) => env.insert(key.clone(), value.clone()),
                None => env.remove(key),
            };
        }
    }
}

/// A recognised form, with where its fetch's probe reports.
pub(super) struct Planned {
    plan: Plan,
    report_dir: PathBuf,
}

/// The fetch-and-run plan for `inv`, if it is one of the pinned forms.
/// `None` (the invocation runs as one, enforced) also when what the split
/// needs is missing: randomness for the report's name, this executable's
/// path, an observe-mode twin of the tool.
pub(super) fn plan(inv: &Invocation, env: &Env) -> Option<Planned> {
    // Every other invocation's start-up pays a parse of its arguments for
    // this, no system call: the paths are made once the form is known.
    if !policy::FETCH_AND_RUN.iter().any(|f| f.tool == inv.policy.name) {
        return None;
    }
    observe_twin(inv.policy)?;
    let local_bin = |bin: &str| {
        std::env::current_dir()
            .ok()
            .is_some_and(|dir| local_bin(&dir, bin).is_some())
    };
    let npm_env = |key: &str| {
        let wanted = format!("npm_config_{}", key.replace('-', "_"));
        env.vars()
            .any(|(k, _)| k.to_str().is_some_and(|k| k.eq_ignore_ascii_case(&wanted)))
    };
    let planned = |report: &str, hook: &str| {
        let ctx = Context {
            report,
            hook,
            local_bin: &local_bin,
            npm_env: &npm_env,
        };
        policy::fetch_and_run(inv.policy, &inv.args, inv.tool_args_from, &ctx)
    };
    planned("", "")?;
    let hook = std::env::current_exe().ok()?;
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).ok()?;
    let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let report_dir = std::env::temp_dir().join(format!("cli-guard-fetch-{name}"));
    let plan = planned(report_dir.join("report").to_str()?, hook.to_str()?)?;
    Some(Planned { plan, report_dir })
}

/// Runs a recognised form: observed whole, or its two phases.
pub(super) fn run(inv: &Invocation, env: &Env, planned: Planned) -> Result<Exit, Failure> {
    let Planned { plan, report_dir } = planned;
    match plan {
        Plan::Whole { why } => {
            eprintln!("cli-guard: {why} (README, \"Fetch and run\")");
            let phase = Phase {
                split: Some(observed(inv, why)),
                mark: Mark {
                    phase: Some("fetch+run"),
                    ..Mark::default()
                },
                ..Phase::default()
            };
            guarded(inv, env, &phase).outcome
        }
        Plan::Split(phases) => two_phases(inv, env, phases, &report_dir),
    }
}

fn two_phases(inv: &Invocation, env: &Env, phases: Phases, report_dir: &Path) -> Result<Exit, Failure> {
    let user_shell = env.var_os("npm_config_script_shell").map(OsStr::to_os_string);
    let npm = phases.probe == Probe::ScriptShell;
    let (fetch_audit_id, found) = match &phases.fetch {
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            (None, named_installed(&cwd, &phases.wanted))
        }
        Some(args) => {
            let report = match ReportDir::create(report_dir) {
                Ok(report) => report,
                Err(e) => {
                    eprintln!(
                        "cli-guard: cannot make {} for the fetch's report ({e}): {} runs enforced whole, as before",
                        report_dir.display(),
                        form_name(inv)
                    );
                    return guarded(inv, env, &Phase::default()).outcome;
                }
            };
            let mut fetch = Phase {
                args: Some(args.clone()),
                split: Some(enforced(inv)),
                mark: Mark {
                    phase: Some("fetch"),
                    ..Mark::default()
                },
                ..Phase::default()
            };
            if npm {
                let marker = Hook::Fetch {
                    report: report.file().to_string_lossy().into_owned(),
                    shell: user_shell.as_ref().map(|s| s.to_string_lossy().into_owned()),
                };
                fetch.env.push(marker.var());
            }
            let ran = guarded(inv, env, &fetch);
            if !matches!(ran.outcome, Ok(Exit::Code(0))) {
                return ran.outcome;
            }
            let found = read_report(report.file(), phases.probe, &phases.wanted);
            (Some(ran.audit_id), found)
        }
    };
    if phases.run_needs_program && !found.has_program {
        eprintln!(
            "cli-guard: {}: the program asked for is not among what the fetch left, and the tool has no offline run \
             that would keep it from fetching: it runs enforced whole, as before",
            form_name(inv)
        );
        return guarded(inv, env, &Phase::default()).outcome;
    }
    // The row says so when the program could not be named from the files.
    let why = match found.package.is_none() && phases.why == WHY_RUNS_FETCHED {
        true => WHY_RUNS_UNNAMED,
        false => phases.why,
    };
    let mut run = Phase {
        args: Some(phases.run),
        split: Some(observed(inv, why)),
        mark: Mark {
            phase: Some("run"),
            fetch_audit_id,
            package: found.package,
        },
        ..Phase::default()
    };
    if npm {
        let marker = Hook::Run {
            unset: phases
                .added_settings
                .iter()
                .map(|key| format!("npm_config_{}", key.replace('-', "_")))
                .collect(),
            shell: user_shell.as_ref().map(|s| s.to_string_lossy().into_owned()),
        };
        run.env.push(marker.var());
    }
    guarded(inv, env, &run).outcome
}

/// `npx`, `pnpm dlx`, `uv tool run`: how the form was typed, for messages.
fn form_name(inv: &Invocation) -> String {
    let sub = typed(inv).subcommand;
    match (inv.policy.name, sub.as_deref()) {
        ("npm" | "pnpm" | "yarn" | "bun" | "pipx", Some(sub)) => format!("{} {sub}", inv.policy.name),
        ("uv", _) => "uv tool run".to_string(),
        (name, _) => name.to_string(),
    }
}

/// What the typed arguments get on their own (their subcommand, for the
/// row), never reading ./package.json: no fetch-and-run form runs a script.
fn typed(inv: &Invocation) -> InvocationPolicy {
    let tool_args = inv.args.get(inv.tool_args_from..).unwrap_or_default();
    policy::invocation_policy(inv.policy, tool_args, &|| None)
}

/// The fetch phase's policy: the tool's own, enforced and strict.
fn enforced(inv: &Invocation) -> InvocationPolicy {
    InvocationPolicy {
        mode: Mode::Enforce,
        strict: true,
        why: WHY_FETCHES_FOR_RUN,
        policy: inv.policy,
        ..typed(inv)
    }
}

/// The run phase's (or the whole's) policy: the tool's observe-mode twin
/// (which [`plan`] made sure there is).
fn observed(inv: &Invocation, why: &'static str) -> InvocationPolicy {
    InvocationPolicy {
        mode: Mode::Observe,
        strict: false,
        why,
        policy: observe_twin(inv.policy).unwrap_or(inv.policy),
        ..typed(inv)
    }
}

/// A private directory for the fetch's report, removed when dropped.
struct ReportDir {
    dir: PathBuf,
    file: PathBuf,
}

impl ReportDir {
    fn create(dir: &Path) -> std::io::Result<ReportDir> {
        fs::DirBuilder::new().mode(0o700).create(dir)?;
        Ok(ReportDir {
            dir: dir.to_path_buf(),
            file: dir.join("report"),
        })
    }

    fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Naming the program from what the fetch left

/// What the fetch left, as far as the run needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Found {
    /// The package the program comes from.
    package: Option<Package>,
    /// The program is in the fetched environment (pipx: `bin/APP`).
    has_program: bool,
}

/// Reads the probe's report and names the program from the files it
/// points at.
fn read_report(report: &Path, probe: Probe, wanted: &Wanted) -> Found {
    let Some(text) = read_small(report) else {
        return Found::default();
    };
    match probe {
        Probe::ScriptShell => {
            let npm: NpmReport = serde_json::from_str(&text).unwrap_or_default();
            let command = first_word(&npm.script);
            let wanted = Wanted {
                command: command.or(wanted.command.clone()),
                package: wanted.package.clone(),
            };
            named_on_path(&npm.path, &wanted)
        }
        Probe::Path => named_on_path(&text, wanted),
        Probe::Prefix => named_in_python_env(Path::new(text.trim_end()), wanted),
        Probe::Installed => Found::default(),
    }
}

/// The program from the PATH the tool made for it: the first
/// `node_modules/.bin` (npm, pnpm, bun) or Python environment's `bin` (uv)
/// on it.
fn named_on_path(path: &str, wanted: &Wanted) -> Found {
    for dir in path.split(':').map(Path::new) {
        if dir.ends_with("node_modules/.bin") {
            // Where npm found the program, when it names one there.
            if let Some(command) = &wanted.command {
                if !dir.join(command).is_file() {
                    continue;
                }
            }
            return named_in_node_modules(dir, wanted);
        }
        if let Some(env_dir) = dir.parent().filter(|d| d.join("pyvenv.cfg").is_file()) {
            return named_in_python_env(env_dir, wanted);
        }
    }
    Found::default()
}

/// The program a project already has: `node_modules/.bin/NAME` in the
/// working directory or above it, as bunx looks.
fn named_installed(cwd: &Path, wanted: &Wanted) -> Found {
    let command = wanted.command.as_deref().or(wanted.package.as_deref());
    match command.and_then(|c| local_bin(cwd, c)) {
        Some(bin_dir) => named_in_node_modules(&bin_dir, wanted),
        None => Found::default(),
    }
}

/// `DIR/node_modules/.bin/NAME` in `cwd` or the nearest directory above
/// it that has one: that `.bin` directory.
fn local_bin(cwd: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    cwd.ancestors()
        .map(|dir| dir.join("node_modules/.bin"))
        .find(|bin| bin.join(name).is_file())
}

/// The package in a `node_modules` tree that provides the program:
/// the one its `.bin` link points into, else among the packages the tree's
/// package.json names, the one with the program among its bins, the only
/// one, or the one named like the package asked for.
fn named_in_node_modules(bin_dir: &Path, wanted: &Wanted) -> Found {
    let command = wanted.command.as_deref();
    // A link into the package (npm, bun): walk up to its package.json.
    if let Some(target) = command.and_then(|c| fs::canonicalize(bin_dir.join(c)).ok()) {
        if let Some(package) = target.ancestors().skip(1).find_map(package_in_node_modules) {
            return found(package.package);
        }
    }
    let Some(root) = bin_dir.parent().and_then(Path::parent) else {
        return Found::default();
    };
    let candidates: Vec<NodePackage> = dependency_names(root)
        .iter()
        .filter_map(|name| read_node_package(&root.join("node_modules").join(name)))
        .collect();
    let by_bin = command.and_then(|c| candidates.iter().find(|p| p.bins.iter().any(|b| b == c)));
    let only = (candidates.len() == 1).then(|| &candidates[0]);
    let wanted_name = wanted.package.as_deref().and_then(spec_name);
    let by_name = wanted_name.and_then(|n| candidates.iter().find(|p| p.package.name == n));
    match by_bin.or(only).or(by_name) {
        Some(p) => found(p.package.clone()),
        None => Found::default(),
    }
}

fn found(package: Package) -> Found {
    Found {
        package: Some(package),
        has_program: true,
    }
}

/// A package.json's name, version and bins.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodePackage {
    package: Package,
    bins: Vec<String>,
}

/// The package whose directory is `dir`, if `dir` is a package in a
/// `node_modules` (`node_modules/NAME` or `node_modules/@scope/NAME`).
fn package_in_node_modules(dir: &Path) -> Option<NodePackage> {
    let parent = dir.parent()?;
    let in_node_modules = parent.ends_with("node_modules")
        || (parent.file_name()?.to_str()?.starts_with('@') && parent.parent()?.ends_with("node_modules"));
    in_node_modules.then(|| read_node_package(dir)).flatten()
}

fn read_node_package(dir: &Path) -> Option<NodePackage> {
    parse_node_package(&read_small(&dir.join("package.json"))?)
}

/// A package.json's name, version and bin names. Pure.
fn parse_node_package(json: &str) -> Option<NodePackage> {
    let Value::Object(pkg) =
        serde_json::from_str::<Value>(json.strip_prefix('\u{feff}').unwrap_or(json)).ok()?
    else {
        return None;
    };
    let name = pkg.get("name")?.as_str()?.to_string();
    let version = pkg.get("version").and_then(Value::as_str).map(str::to_string);
    let bins = match pkg.get("bin") {
        Some(Value::String(_)) => vec![name.rsplit('/').next().unwrap_or(&name).to_string()],
        Some(Value::Object(bins)) => bins.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Some(NodePackage {
        package: Package { name, version },
        bins,
    })
}

/// The dependency names a project's package.json lists, of every kind.
fn dependency_names(root: &Path) -> Vec<String> {
    let Some(json) = read_small(&root.join("package.json")) else {
        return Vec::new();
    };
    let Ok(Value::Object(pkg)) = serde_json::from_str::<Value>(&json) else {
        return Vec::new();
    };
    ["dependencies", "devDependencies", "optionalDependencies"]
        .iter()
        .filter_map(|kind| pkg.get(*kind)?.as_object())
        .flat_map(|deps| deps.keys().cloned())
        .collect()
}

/// The distribution in a Python environment that provides the program (an
/// entry point of that name), else the one named like the package asked
/// for; and whether the environment's `bin` has the program.
fn named_in_python_env(env_dir: &Path, wanted: &Wanted) -> Found {
    let command = wanted.command.as_deref();
    let has_program = command.is_some_and(|c| env_dir.join("bin").join(c).is_file());
    let dists = dist_infos(env_dir);
    let by_command = command.and_then(|c| dists.iter().find(|d| d.scripts.iter().any(|s| s == c)));
    let wanted_name = wanted
        .package
        .as_deref()
        .and_then(spec_name)
        .map(normalize_python);
    let by_name = wanted_name.and_then(|n| dists.iter().find(|d| normalize_python(&d.package.name) == n));
    Found {
        package: by_command.or(by_name).map(|d| d.package.clone()),
        has_program,
    }
}

/// One installed distribution: its name, version and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dist {
    package: Package,
    scripts: Vec<String>,
}

/// The distributions under `env/lib/python*/site-packages`.
fn dist_infos(env_dir: &Path) -> Vec<Dist> {
    let Ok(lib) = fs::read_dir(env_dir.join("lib")) else {
        return Vec::new();
    };
    lib.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("python")))
        .filter_map(|e| fs::read_dir(e.path().join("site-packages")).ok())
        .flat_map(|site| site.flatten())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".dist-info")))
        .filter_map(|e| {
            let dir = e.path();
            let package = parse_metadata(&read_small(&dir.join("METADATA"))?)?;
            let scripts = read_small(&dir.join("entry_points.txt"))
                .map(|text| script_names(&text))
                .unwrap_or_default();
            Some(Dist { package, scripts })
        })
        .collect()
}

/// A dist-info METADATA's `Name` and `Version`. Pure.
fn parse_metadata(text: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    // The headers end at the first blank line; the description follows.
    for line in text.lines().take_while(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("Name:") {
            name.get_or_insert(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version.get_or_insert(v.trim().to_string());
        }
    }
    Some(Package {
        name: name.filter(|n| !n.is_empty())?,
        version,
    })
}

/// The console and GUI scripts an entry_points.txt declares. Pure.
fn script_names(text: &str) -> Vec<String> {
    let mut section = "";
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if matches!(section, "console_scripts" | "gui_scripts") {
            if let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

/// PEP 503's normalised name: lowercase, runs of `-`, `_`, `.` as one `-`.
fn normalize_python(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The command a shell line starts with, as npm quotes it (`'netcli' a`).
fn first_word(script: &str) -> Option<String> {
    let script = script.trim_start();
    let word = match script.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next()?,
        None => script
            .split(|c: char| c.is_whitespace() || c == ';' || c == '|' || c == '&')
            .next()?,
    };
    (!word.is_empty()).then(|| word.to_string())
}

/// A small file's text: at most [`MAX_METADATA`] bytes, UTF-8.
fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_METADATA)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_json_names_its_bins() {
        let p = parse_node_package(r#"{"name":"@s/netcli","version":"1.0.0","bin":"cli.js"}"#).unwrap();
        assert_eq!(p.package.to_string(), "@s/netcli@1.0.0");
        assert_eq!(p.bins, ["netcli"]);
        let p = parse_node_package(r#"{"name":"cowsay","bin":{"cowsay":"a","cowthink":"b"}}"#).unwrap();
        assert_eq!(
            (p.package.version, p.bins),
            (None, vec!["cowsay".into(), "cowthink".into()])
        );
        assert_eq!(parse_node_package(r#"{"version":"1"}"#), None);
        assert_eq!(parse_node_package("[1]"), None);
        assert_eq!(parse_node_package("not json"), None);
    }

    #[test]
    fn metadata_and_entry_points() {
        let meta = "Metadata-Version: 2.1\nName: netcli\nVersion: 1.0.0\n\nName: not a header\n";
        assert_eq!(
            parse_metadata(meta),
            Some(Package {
                name: "netcli".into(),
                version: Some("1.0.0".into())
            })
        );
        assert_eq!(parse_metadata("Version: 1\n"), None);
        let eps =
            "[console_scripts]\nnetcli = netcli:main\n\n[gui_scripts]\nnetgui=netcli:gui\n[other]\nx = y\n";
        assert_eq!(script_names(eps), ["netcli", "netgui"]);
        assert_eq!(normalize_python("Foo__Bar.baz"), "foo-bar-baz");
    }

    #[test]
    fn the_command_npm_was_about_to_run() {
        assert_eq!(first_word("'netcli' a b").as_deref(), Some("netcli"));
        assert_eq!(first_word("  cowsay hi | lolcat").as_deref(), Some("cowsay"));
        assert_eq!(first_word("x;y").as_deref(), Some("x"));
        assert_eq!(first_word(""), None);
        assert_eq!(first_word("''"), None);
    }

    /// A directory for one test, removed after.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("cli-guard-unit-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, path: &str, text: &str) -> PathBuf {
            let path = self.0.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn wanted(command: Option<&str>, package: Option<&str>) -> Wanted {
        Wanted {
            command: command.map(str::to_string),
            package: package.map(str::to_string),
        }
    }

    #[test]
    fn an_npm_bin_link_names_its_package_even_a_scoped_one() {
        let t = Scratch::new("npm-link");
        t.write("_npx/a/package.json", r#"{"dependencies":{"@s/server":"^2"}}"#);
        t.write(
            "_npx/a/node_modules/@s/server/package.json",
            r#"{"name":"@s/server","version":"2.1.0","bin":{"mcp-server":"dist/index.js"}}"#,
        );
        t.write("_npx/a/node_modules/@s/server/dist/index.js", "");
        fs::create_dir_all(t.0.join("_npx/a/node_modules/.bin")).unwrap();
        std::os::unix::fs::symlink(
            "../@s/server/dist/index.js",
            t.0.join("_npx/a/node_modules/.bin/mcp-server"),
        )
        .unwrap();
        let path = format!("{}:/usr/bin", t.0.join("_npx/a/node_modules/.bin").display());
        let found = named_on_path(&path, &wanted(Some("mcp-server"), Some("@s/server")));
        assert_eq!(
            found.package.map(|p| p.to_string()).as_deref(),
            Some("@s/server@2.1.0")
        );
    }

    #[test]
    fn a_bin_shim_script_is_named_by_the_install_s_package_json() {
        // pnpm's .bin entries are scripts, not links.
        let t = Scratch::new("pnpm-shim");
        t.write(
            "dlx/pkg/package.json",
            r#"{"dependencies":{"cowsay":"1.6.0","other":"1"}}"#,
        );
        t.write(
            "dlx/pkg/node_modules/cowsay/package.json",
            r#"{"name":"cowsay","version":"1.6.0","bin":{"cowsay":"cli.js","cowthink":"cli.js"}}"#,
        );
        t.write(
            "dlx/pkg/node_modules/other/package.json",
            r#"{"name":"other","version":"1"}"#,
        );
        t.write("dlx/pkg/node_modules/.bin/cowthink", "#!/bin/sh\nexec node ...\n");
        let bin = t.0.join("dlx/pkg/node_modules/.bin");
        let by_bin = named_on_path(&bin.display().to_string(), &wanted(Some("cowthink"), None));
        assert_eq!(by_bin.package.map(|p| p.name).as_deref(), Some("cowsay"));
        let by_name = named_in_node_modules(&bin, &wanted(None, Some("cowsay@1.6.0")));
        assert_eq!(by_name.package.map(|p| p.name).as_deref(), Some("cowsay"));
        // Two packages, neither asked for by name nor providing the command.
        assert_eq!(
            named_in_node_modules(&bin, &wanted(Some("nope"), Some("./x.tgz"))).package,
            None
        );
    }

    #[test]
    fn a_python_environment_names_the_distribution_that_provides_the_program() {
        let t = Scratch::new("venv");
        t.write("env/pyvenv.cfg", "home = /usr/bin\n");
        t.write("env/bin/netcli", "");
        let site = "env/lib/python3.11/site-packages";
        t.write(
            &format!("{site}/netcli-1.0.0.dist-info/METADATA"),
            "Name: netcli\nVersion: 1.0.0\n\n",
        );
        t.write(
            &format!("{site}/netcli-1.0.0.dist-info/entry_points.txt"),
            "[console_scripts]\nnetcli = netcli:main\n",
        );
        t.write(
            &format!("{site}/Net_Dep-2.dist-info/METADATA"),
            "Name: Net_Dep\nVersion: 2\n\n",
        );
        let path = format!("{}:/usr/bin", t.0.join("env/bin").display());
        let found = named_on_path(&path, &wanted(Some("netcli"), Some("./netcli")));
        assert_eq!(
            found.package.map(|p| p.to_string()).as_deref(),
            Some("netcli@1.0.0")
        );
        assert!(found.has_program);
        let by_name = named_in_python_env(&t.0.join("env"), &wanted(Some("x"), Some("net-dep==2")));
        assert_eq!(by_name.package.map(|p| p.name).as_deref(), Some("Net_Dep"));
        assert!(!by_name.has_program);
        // A report that points nowhere names nothing.
        assert_eq!(
            named_on_path("/nonexistent/bin:/usr/bin", &wanted(Some("netcli"), None)),
            Found::default()
        );
    }
}
