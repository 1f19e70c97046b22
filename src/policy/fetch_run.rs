//! Fetch and run: `npx X`, `npm exec`, `pnpm dlx`, `yarn dlx`, `bunx X`,
//! `uvx X`, `uv tool run` and `pipx run` fetch a package (running its
//! tree's install scripts) and then run a program from it. Such an
//! invocation is two, each judged as what it is: the fetch, enforced and
//! strict as `npm install` is, then the run, observed and not isolated as
//! `npm run` is, from what the fetch left behind and without fetching again
//! (each tool's own offline mode). Which tools and forms split is the table
//! `FETCH_AND_RUN` (`table.rs`): deleting a line makes that form enforced
//! whole again.
//!
//! Pure: the typed arguments go in, each phase's arguments come out, with
//! how the fetch says where it put what it fetched (a probe run in place of
//! the program) and what to look for there. Anything not positively
//! recognised (an option the grammar does not know, which may take the next
//! argument as its value; a non-UTF-8 argument before the program; no
//! package; a setting the split itself needs, such as npm's script shell)
//! is no fetch-and-run form: the invocation stays enforced whole.

use std::ffi::OsString;

use crate::policy::split::scan;
use crate::policy::ToolPolicy;

/// Which tool's grammar reads a fetch-and-run form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grammar {
    /// `npx`, `npm exec`, `npm x` (npm/cli `lib/commands/exec.js`, libnpmexec).
    NpmExec,
    /// `pnpm dlx`, `pnpx`, `pnx`.
    PnpmDlx,
    /// `yarn dlx` (berry).
    YarnDlx,
    /// `bunx`, `bun x`.
    BunX,
    /// `uvx`, `uv tool run`.
    UvToolRun,
    /// `pipx run`.
    PipxRun,
}

/// One line of the table: a tool's fetch-and-run form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchRun {
    pub tool: &'static str,
    /// The subcommand words that make the form, each alternative in turn
    /// (npm's `exec` or `x`; uv's `tool run`); none for a tool that is
    /// nothing else (npx, bunx, uvx, pnpx, pnx).
    pub words: &'static [&'static [&'static str]],
    pub grammar: Grammar,
}

impl FetchRun {
    /// Every invocation of `tool` is the form.
    pub(crate) const fn whole(tool: &'static str, grammar: Grammar) -> FetchRun {
        FetchRun {
            tool,
            words: &[],
            grammar,
        }
    }

    /// The form is `tool`'s subcommand `words` (one alternative each).
    pub(crate) const fn after(
        tool: &'static str,
        words: &'static [&'static [&'static str]],
        grammar: Grammar,
    ) -> FetchRun {
        FetchRun { tool, words, grammar }
    }
}

/// What a recognised invocation becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A fetch (`phases.fetch`), then the run; or the run alone when there
    /// is nothing to fetch (`phases.fetch` is `None`).
    Split(Phases),
    /// The tool cannot run offline from what it fetched: the invocation is
    /// observed whole, and `why` says so (one line on stderr, and the start
    /// row's reason).
    Whole { why: &'static str },
}

/// The two phases of a split invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phases {
    /// The fetch's arguments (after argv[0]); `None`: nothing to fetch (a
    /// program the project already has, or the user's own no-install).
    pub fetch: Option<Vec<OsString>>,
    /// The run's arguments (after argv[0]).
    pub run: Vec<OsString>,
    /// How the fetch says where it put what it fetched.
    pub probe: Probe,
    /// What the user asked for, to find it among what was fetched.
    pub wanted: Wanted,
    /// The run may start only when the program is among what the fetch
    /// left: the tool has no offline mode that would keep a run of
    /// anything else from fetching and building it, observed (pipx).
    pub run_needs_program: bool,
    /// npm settings the run adds (`offline`, `yes`, `ignore-scripts`) that
    /// the user did not set: the script-shell hook takes them back out of
    /// the program's environment, where npm exports them.
    pub added_settings: Vec<&'static str>,
    /// Why the run phase is observed, for its start row.
    pub why: &'static str,
}

/// How the fetch phase reports where the tool put what it fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// npm: cli-guard is npm's script shell; at the `npx` event it writes
    /// the PATH npm made and the command, and runs nothing.
    ScriptShell,
    /// The fetch runs [`PATH_PROBE`] in place of the program: the tool puts
    /// what it fetched first on PATH.
    Path,
    /// pipx: the fetch runs the environment's python with [`PREFIX_PROBE`],
    /// which writes `sys.prefix`.
    Prefix,
    /// Nothing was fetched: the program is the project's own
    /// `node_modules/.bin/NAME`, or was installed before.
    Installed,
}

/// What the user asked to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The program's name when the form names it apart from the package
    /// (`npx -p pkg cmd`, `uvx --from pkg cmd`), or the package's own name
    /// part when the tool runs the program named like the package.
    pub command: Option<String>,
    /// The package as typed (`cowsay@1.6.0`, `./x.tgz`, `ruff==0.5`).
    pub package: Option<String>,
}

/// What the pure planner needs from outside.
pub(crate) struct Context<'a> {
    /// Where the fetch phase's probe writes its report.
    pub report: &'a str,
    /// cli-guard's own executable: npm's script shell in both phases.
    pub hook: &'a str,
    /// Whether the project already has `node_modules/.bin/NAME` (bunx
    /// runs that without fetching).
    pub local_bin: &'a dyn Fn(&str) -> bool,
    /// Whether the environment sets npm's setting KEY (`npm_config_KEY`).
    pub npm_env: &'a dyn Fn(&str) -> bool,
}

/// The probe the fetch runs in place of the program (`sh -c PATH_PROBE sh
/// REPORT`): the tool put what it fetched first on PATH.
pub(crate) const PATH_PROBE: &str = r#"printf '%s' "$PATH" > "$1""#;
/// pipx's probe, run by the fetched environment's python (`python -c
/// PREFIX_PROBE REPORT`): that environment's directory.
pub(crate) const PREFIX_PROBE: &str = "import sys; open(sys.argv[1], 'w').write(sys.prefix)";

pub(crate) const WHY_RUNS_FETCHED: &str =
    "runs the program the fetch phase fetched (enforced, under fetch_audit_id): observed, not isolated";
pub(crate) const WHY_RUNS_UNNAMED: &str =
    "runs the program the fetch phase fetched (enforced, under fetch_audit_id); \
     its package could not be named from the files the fetch left: observed, not isolated";
pub(crate) const WHY_RUNS_INSTALLED: &str =
    "runs a program already installed (nothing to fetch): observed, not isolated";
pub(crate) const WHY_FETCHES_FOR_RUN: &str =
    "fetches a package for a program to run, and runs its install scripts: enforced";
pub(crate) const WHY_YARN_DLX: &str =
    "yarn dlx runs observed as a whole, its fetch included: yarn installs into \
     a temporary project it deletes when the program exits, so nothing it fetched can be run offline";

/// The fetch-and-run plan for `tool` run with `args` (the tool's own
/// arguments start at `from`: after `-m pipx` for `python -m pipx`), if the
/// arguments are one of `table`'s forms.
pub(crate) fn plan_in(
    table: &[FetchRun],
    tool: &ToolPolicy,
    args: &[OsString],
    from: usize,
    ctx: &Context<'_>,
) -> Option<Plan> {
    let form = table.iter().find(|f| f.tool == tool.name)?;
    let tool_args = args.get(from..)?;
    // Where the form's own arguments start, in `tool_args`.
    let tail = if form.words.is_empty() {
        0
    } else {
        let scanned = scan(&tool.subcommand_rule, tool_args);
        if scanned.after_unknown_option {
            return None;
        }
        let word = scanned.word?;
        form.words
            .iter()
            .filter(|words| words.first() == Some(&word))
            .find_map(|words| {
                let rest = tool_args.get(scanned.at + 1..scanned.at + words.len())?;
                let follows = rest.iter().zip(&words[1..]).all(|(a, w)| a.to_str() == Some(w));
                follows.then_some(scanned.at + words.len())
            })?
    };
    let parsed = Parsed {
        args,
        from,
        tail: from + tail,
        whole_tool: form.words.is_empty(),
    };
    match form.grammar {
        Grammar::NpmExec => npm_exec(&parsed, ctx),
        Grammar::PnpmDlx => pnpm_dlx(&parsed, ctx),
        Grammar::YarnDlx => yarn_dlx(&parsed),
        Grammar::BunX => bun_x(&parsed, ctx),
        Grammar::UvToolRun => uv_tool_run(&parsed, ctx),
        Grammar::PipxRun => pipx_run(&parsed, ctx),
    }
}

/// The invocation's arguments and where its parts start.
struct Parsed<'a> {
    args: &'a [OsString],
    /// Where the tool's own arguments start.
    from: usize,
    /// Where the form's own arguments (after its subcommand words) start.
    tail: usize,
    /// The tool is nothing but the form (npx, not `npm exec`).
    whole_tool: bool,
}

impl Parsed<'_> {
    /// The arguments before the form's own: argv's prefix, the tool's
    /// global options and the subcommand words, as typed.
    fn head(&self) -> Vec<OsString> {
        self.args.get(..self.tail).unwrap_or_default().to_vec()
    }

    /// `args` with `added` inserted where the tool's own arguments start.
    fn with_at_start(&self, added: &[&str]) -> Vec<OsString> {
        self.with_at(self.from, added)
    }

    /// `args` with `added` inserted at `at`.
    fn with_at(&self, at: usize, added: &[&str]) -> Vec<OsString> {
        let mut out = self.args.to_vec();
        let at = at.min(out.len());
        out.splice(at..at, added.iter().map(OsString::from));
        out
    }
}

/// A grammar's options after its subcommand.
struct Options {
    /// Options taking a value, as the next argument or after `=`.
    values: &'static [&'static str],
    /// Of those, the ones naming a package to fetch.
    packages: &'static [&'static str],
    /// Options taking no value.
    flags: &'static [&'static str],
}

/// One option as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Given {
    name: String,
    value: Option<String>,
    /// Where it starts and how many arguments it spans (2 with a separate value).
    at: usize,
    len: usize,
}

/// What [`scan_tail`] found.
#[derive(Debug, Default)]
struct Tail {
    options: Vec<Given>,
    /// Where the program (the first argument that is not an option) is.
    command: Option<usize>,
}

impl Tail {
    fn has(&self, names: &[&str]) -> bool {
        self.options.iter().any(|o| names.contains(&o.name.as_str()))
    }

    /// The packages the options name, in order.
    fn packages(&self, opts: &Options) -> Vec<String> {
        self.options
            .iter()
            .filter(|o| opts.packages.contains(&o.name.as_str()))
            .filter_map(|o| o.value.clone())
            .collect()
    }

    /// The options' arguments in `args`, without those named in `dropped`.
    fn options_without(&self, args: &[OsString], dropped: &[&str]) -> Vec<OsString> {
        self.options
            .iter()
            .filter(|o| !dropped.contains(&o.name.as_str()))
            .flat_map(|o| args.get(o.at..o.at + o.len).unwrap_or_default().to_vec())
            .collect()
    }
}

/// Reads the options from `from` up to the program; `None` when an
/// argument is not UTF-8, an option is unknown (it may take the next
/// argument as its value) or a value is missing. `--` ends the options.
fn scan_tail(args: &[OsString], from: usize, opts: &Options) -> Option<Tail> {
    let mut tail = Tail::default();
    let mut i = from;
    while let Some(arg) = args.get(i) {
        let arg = arg.to_str()?;
        if arg == "--" {
            tail.command = args.get(i + 1).map(|_| i + 1);
            return Some(tail);
        }
        if !(arg.len() > 1 && arg.starts_with('-')) {
            tail.command = Some(i);
            return Some(tail);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg, None),
        };
        if opts.values.contains(&name) {
            let (value, len) = match inline {
                Some(value) => (value, 1),
                None => (args.get(i + 1)?.to_str()?.to_string(), 2),
            };
            tail.options.push(Given {
                name: name.to_string(),
                value: Some(value),
                at: i,
                len,
            });
            i += len;
        } else if opts.flags.contains(&name) && inline.is_none() {
            tail.options.push(Given {
                name: name.to_string(),
                value: None,
                at: i,
                len: 1,
            });
            i += 1;
        } else {
            return None;
        }
    }
    Some(tail)
}

/// A form's options and its program (which must be there), and the
/// packages the options name.
fn scan_form<'a>(p: &Parsed<'a>, opts: &Options) -> Option<(Tail, &'a str, Vec<String>)> {
    let tail = scan_tail(p.args, p.tail, opts)?;
    let command = p.args.get(tail.command?)?.to_str()?;
    let packages = tail.packages(opts);
    Some((tail, command, packages))
}

/// A package spec's name: `cowsay@1.6.0` → `cowsay`, `@scope/x@1` →
/// `@scope/x`, `ruff==0.5` → `ruff`, `pkg[extra]` → `pkg`. A path or URL
/// names no package by itself: `None`.
pub(crate) fn spec_name(spec: &str) -> Option<&str> {
    if spec.contains('/') && !spec.starts_with('@') || spec.contains(':') || spec.starts_with('.') {
        return None;
    }
    let scoped = spec.strip_prefix('@');
    let body = scoped.unwrap_or(spec);
    let end = body
        .find(['@', '=', '<', '>', '!', '~', '[', ';', ' ', '^'])
        .unwrap_or(body.len());
    let name = &spec[..end + usize::from(scoped.is_some())];
    (!name.is_empty() && name != "@").then_some(name)
}

// ---------------------------------------------------------------------------
// npm: npx, npm exec, npm x

/// npx's options (npm/cli `bin/npx-cli.js` and the exec command's params);
/// npx turns `-p` into `--package` and `--shell` into `--script-shell`.
const NPM_EXEC: Options = Options {
    values: &[
        "--package",
        "-p",
        "--call",
        "-c",
        "--cache",
        "--userconfig",
        "--registry",
        "--loglevel",
        "--node-options",
        "--before",
        "--tag",
    ],
    packages: &["--package", "-p"],
    flags: &[
        "--yes",
        "-y",
        "--no",
        "--no-yes",
        "--no-install",
        "--quiet",
        "-q",
        "--silent",
        "-s",
        "--offline",
        "--prefer-offline",
        "--prefer-online",
        "--ignore-scripts",
        "--foreground-scripts",
        "--verbose",
        "-d",
        "--no-color",
        "--color",
    ],
};

/// npm's settings the run adds, each with the options that set it.
const NPM_RUN_SETTINGS: [(&str, &[&str]); 3] = [
    ("offline", &["--offline"]),
    ("yes", &["--yes", "-y", "--no", "--no-yes", "--no-install"]),
    ("ignore-scripts", &["--ignore-scripts"]),
];

fn npm_exec(p: &Parsed<'_>, ctx: &Context<'_>) -> Option<Plan> {
    let tail = scan_tail(p.args, p.tail, &NPM_EXEC)?;
    // The split rests on being npm's script shell: a shell of the user's
    // own, on the command line, would run the program in the fetch. npm
    // reads options up to `--`; npx's stop at the program, whose own
    // arguments follow.
    let end = match (p.whole_tool, tail.command) {
        (true, Some(command)) => command,
        _ => p.args.len(),
    };
    let sets_shell = p
        .args
        .get(p.from..end)
        .unwrap_or_default()
        .iter()
        .take_while(|a| a.to_str() != Some("--"))
        .any(|a| {
            a.to_str().is_none_or(|a| {
                ["--script-shell", "--shell"]
                    .iter()
                    .any(|o| a == *o || a.starts_with(&format!("{o}=")))
            })
        });
    if sets_shell {
        return None;
    }
    let packages = tail.packages(&NPM_EXEC);
    let command = tail.command.and_then(|i| p.args.get(i)?.to_str());
    let call = tail.has(&["--call", "-c"]);
    // Something to fetch and something to run: not npx's interactive shell.
    let runs_fetched = command.is_some() || (call && !packages.is_empty());
    if !runs_fetched {
        return None;
    }
    let shell = format!("--script-shell={}", ctx.hook);
    let fetch = p.with_at_start(&[&shell]);
    let run = p.with_at_start(&["--offline", "--yes", "--ignore-scripts", &shell]);
    let added_settings = NPM_RUN_SETTINGS
        .iter()
        .filter(|(key, options)| !tail.has(options) && !(ctx.npm_env)(key))
        .map(|(key, _)| *key)
        .collect();
    let wanted = Wanted {
        command: None,
        package: packages.first().cloned().or(command.map(str::to_string)),
    };
    Some(Plan::Split(Phases {
        added_settings,
        ..Phases::fetched(fetch, run, Probe::ScriptShell, wanted)
    }))
}

// ---------------------------------------------------------------------------
// pnpm dlx, pnpx, pnx

/// `pnpm dlx --help` (pnpm 12): its own options and the rc-options every
/// command takes.
const PNPM_DLX: Options = Options {
    values: &[
        "--package",
        "--allow-build",
        "--cpu",
        "--os",
        "--libc",
        "--env-file",
        "-C",
        "--dir",
        "--store-dir",
        "--state-dir",
        "--npmrc-auth-file",
        "--userconfig",
        "--registry",
        "--https-proxy",
        "--http-proxy",
        "--no-proxy",
        "--reporter",
        "--loglevel",
        "--workspace-packages",
    ],
    packages: &["--package"],
    flags: &[
        "-c",
        "--shell-mode",
        "-y",
        "--yes",
        "--ignore-workspace",
        "--offline",
        "--prefer-offline",
        "--ignore-scripts",
        "--no-progress",
        "--use-stderr",
        "--silent",
        "-s",
        "--color",
        "--no-color",
    ],
};

fn pnpm_dlx(p: &Parsed<'_>, ctx: &Context<'_>) -> Option<Plan> {
    let (tail, command, packages) = scan_form(p, &PNPM_DLX)?;
    // In shell mode the command is a shell line, not a package.
    if packages.is_empty() && tail.has(&["-c", "--shell-mode"]) {
        return None;
    }
    // The dlx cache is keyed by the packages and the install's settings,
    // not by the command or shell mode: the probe finds the same one.
    let naming = packages
        .is_empty()
        .then(|| vec![format!("--package={command}").into()]);
    let fetch = fetch_args(p, &tail, &["-c", "--shell-mode"], naming, path_probe(ctx));
    Some(Plan::Split(Phases::fetched(
        fetch,
        p.with_at_start(&["--offline"]),
        Probe::Path,
        wanted(&packages, command),
    )))
}

// ---------------------------------------------------------------------------
// yarn dlx

const YARN_DLX: Options = Options {
    values: &["--package", "-p"],
    packages: &["--package", "-p"],
    flags: &["--quiet", "-q"],
};

fn yarn_dlx(p: &Parsed<'_>) -> Option<Plan> {
    scan_form(p, &YARN_DLX)?;
    Some(Plan::Whole { why: WHY_YARN_DLX })
}

// ---------------------------------------------------------------------------
// bunx, bun x

/// `bunx --help` (bun 1.4). `--cwd` moves where bun looks for the
/// project's own bins: left out, so it stays enforced.
const BUN_X: Options = Options {
    values: &[
        "--package",
        "-p",
        "--env-file",
        "--minimum-release-age",
        "--registry",
        "--ca",
        "--cafile",
    ],
    packages: &["--package", "-p"],
    flags: &[
        "--bun",
        "--no-install",
        "--trust",
        "--ignore-scripts",
        "--verbose",
        "--silent",
    ],
};

fn bun_x(p: &Parsed<'_>, ctx: &Context<'_>) -> Option<Plan> {
    let (tail, command, packages) = scan_form(p, &BUN_X)?;
    // bunx runs the project's own `node_modules/.bin/NAME` without
    // fetching, and `--no-install` fetches nothing by the user's choice.
    let installed = tail.has(&["--no-install"])
        || (packages.is_empty() && spec_name(command) == Some(command) && (ctx.local_bin)(command));
    let run = match tail.has(&["--no-install"]) {
        true => p.args.to_vec(),
        false => p.with_at(p.tail, &["--no-install"]),
    };
    if installed {
        return Some(Plan::Split(Phases {
            fetch: None,
            probe: Probe::Installed,
            why: WHY_RUNS_INSTALLED,
            ..Phases::fetched(Vec::new(), run, Probe::Installed, wanted(&packages, command))
        }));
    }
    let naming = packages.is_empty().then(|| vec!["-p".into(), command.into()]);
    let fetch = fetch_args(p, &tail, &[], naming, path_probe(ctx));
    Some(Plan::Split(Phases::fetched(
        fetch,
        run,
        Probe::Path,
        wanted(&packages, command),
    )))
}

// ---------------------------------------------------------------------------
// uvx, uv tool run

/// `uvx --help` (uv 0.13). `--no-cache` runs from a temporary cache that is
/// gone when the fetch ends: left out, so it stays enforced.
const UV_TOOL_RUN: Options = Options {
    values: &[
        "--from",
        "--with",
        "-w",
        "--with-editable",
        "--with-requirements",
        "--constraints",
        "-c",
        "--build-constraints",
        "-b",
        "--overrides",
        "--env-file",
        "--python-platform",
        "--torch-backend",
        "--index",
        "--default-index",
        "--index-url",
        "-i",
        "--extra-index-url",
        "--find-links",
        "-f",
        "--index-strategy",
        "--keyring-provider",
        "--upgrade-package",
        "-P",
        "--upgrade-group",
        "--resolution",
        "--prerelease",
        "--prerelease-package",
        "--fork-strategy",
        "--exclude-newer",
        "--exclude-newer-package",
        "--no-sources-package",
        "--reinstall-package",
        "--link-mode",
        "--config-setting",
        "-C",
        "--config-settings-package",
        "--no-build-isolation-package",
        "--no-build-package",
        "--no-binary-package",
        "--cache-dir",
        "--refresh-package",
        "--python",
        "-p",
        "--color",
        "--allow-insecure-host",
        "--directory",
        "--project",
        "--config-file",
    ],
    packages: &["--from", "--with", "-w"],
    flags: &[
        "--isolated",
        "--no-env-file",
        "--lfs",
        "--no-index",
        "--upgrade",
        "-U",
        "--no-sources",
        "--reinstall",
        "--compile-bytecode",
        "--no-build-isolation",
        "--no-build",
        "--no-binary",
        "--require-build-hashes",
        "--no-require-build-hashes",
        "--refresh",
        "--managed-python",
        "--no-managed-python",
        "--no-python-downloads",
        "--quiet",
        "-q",
        "--verbose",
        "-v",
        "--system-certs",
        "--offline",
        "--no-progress",
        "--no-config",
    ],
};

/// uv options that fetch or build again: the fetch has done it, and the
/// offline run must not try.
const UV_FETCH_AGAIN: &[&str] = &[
    "--upgrade",
    "-U",
    "--upgrade-package",
    "-P",
    "--upgrade-group",
    "--reinstall",
    "--reinstall-package",
    "--refresh",
    "--refresh-package",
];

fn uv_tool_run(p: &Parsed<'_>, ctx: &Context<'_>) -> Option<Plan> {
    let (tail, command, _) = scan_form(p, &UV_TOOL_RUN)?;
    let at = tail.command?;
    let from = tail
        .options
        .iter()
        .find(|o| o.name == "--from")
        .and_then(|o| o.value.clone());
    // `uvx ruff@0.5`: the package `ruff@0.5`, the program `ruff`.
    let program = match from {
        Some(_) => command,
        None => spec_name(command)?,
    };
    let naming = from.is_none().then(|| vec![format!("--from={command}").into()]);
    let fetch = fetch_args(p, &tail, &[], naming, path_probe(ctx));
    let mut run: Vec<OsString> = p.args.get(..p.tail).unwrap_or_default().to_vec();
    run.splice(p.from..p.from, [OsString::from("--offline")]);
    run.extend(tail.options_without(p.args, UV_FETCH_AGAIN));
    run.extend(p.args.get(at..).unwrap_or_default().iter().cloned());
    let wanted = Wanted {
        command: Some(program.to_string()),
        package: Some(from.unwrap_or_else(|| command.to_string())),
    };
    Some(Plan::Split(Phases::fetched(fetch, run, Probe::Path, wanted)))
}

// ---------------------------------------------------------------------------
// pipx run

/// `pipx run --help` (pipx 1.18). Left out, so they stay enforced:
/// `--path` and script apps (a `.py` file or URL run with its inline
/// dependencies), `--python-args` (passed to an entry point, not to the
/// probe), and `--no-cache` (its environment is thrown away after).
const PIPX_RUN: Options = Options {
    values: &[
        "--spec",
        "--with",
        "--python",
        "--fetch-python",
        "--index-url",
        "--pip-args",
        "--cooldown",
        "--backend",
    ],
    packages: &["--spec", "--with"],
    flags: &[
        "--quiet",
        "-q",
        "--verbose",
        "-v",
        "--skip-maintenance",
        "--global",
        "--refresh",
        "--no-path-check",
        "--system-site-packages",
        "--editable",
        "--fetch-missing-python",
    ],
};

fn pipx_run(p: &Parsed<'_>, ctx: &Context<'_>) -> Option<Plan> {
    let (tail, app, _) = scan_form(p, &PIPX_RUN)?;
    let at = tail.command?;
    if app.contains('/') || app.ends_with(".py") || app.contains(':') {
        return None;
    }
    let spec = tail
        .options
        .iter()
        .find(|o| o.name == "--spec")
        .and_then(|o| o.value.clone());
    let naming = spec.is_none().then(|| vec!["--spec".into(), app.into()]);
    let probe = ["python", "-c", PREFIX_PROBE, ctx.report]
        .map(OsString::from)
        .to_vec();
    let fetch = fetch_args(p, &tail, &[], naming, probe);
    let mut run = p.head();
    run.extend(tail.options_without(p.args, &["--refresh"]));
    run.extend(p.args.get(at..).unwrap_or_default().iter().cloned());
    // `pipx run pycowsay==0.2`: the app is the package's name part.
    let program = match spec {
        Some(_) => app,
        None => spec_name(app)?,
    };
    let wanted = Wanted {
        command: Some(program.to_string()),
        package: Some(spec.unwrap_or_else(|| app.to_string())),
    };
    Some(Plan::Split(Phases {
        run_needs_program: true,
        ..Phases::fetched(fetch, run, Probe::Prefix, wanted)
    }))
}

/// The probe the fetch runs in place of the program.
fn path_probe(ctx: &Context<'_>) -> Vec<OsString> {
    ["sh", "-c", PATH_PROBE, "sh", ctx.report]
        .map(OsString::from)
        .to_vec()
}

/// The fetch's arguments: the form's head and options (less `dropped`),
/// `naming` (the package option for the program's package) when no option
/// names a package, then the probe in place of the program.
fn fetch_args(
    p: &Parsed<'_>,
    tail: &Tail,
    dropped: &[&str],
    naming: Option<Vec<OsString>>,
    probe: Vec<OsString>,
) -> Vec<OsString> {
    let mut fetch = p.head();
    fetch.extend(tail.options_without(p.args, dropped));
    fetch.extend(naming.unwrap_or_default());
    fetch.extend(probe);
    fetch
}

impl Phases {
    /// A fetch, then a run of what it fetched.
    fn fetched(fetch: Vec<OsString>, run: Vec<OsString>, probe: Probe, wanted: Wanted) -> Phases {
        Phases {
            fetch: Some(fetch),
            run,
            probe,
            wanted,
            run_needs_program: false,
            added_settings: Vec::new(),
            why: WHY_RUNS_FETCHED,
        }
    }
}

/// The program asked for: the command when the packages are named apart
/// (`-p pkg cmd`), else the package is the command.
fn wanted(packages: &[String], command: &str) -> Wanted {
    match packages.first() {
        Some(package) => Wanted {
            command: Some(command.to_string()),
            package: Some(package.clone()),
        },
        None => Wanted {
            command: None,
            package: Some(command.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{lookup, FETCH_AND_RUN};

    const REPORT: &str = "/tmp/r/report";
    const HOOK: &str = "/opt/cli-guard";

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn strs(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap_or("?")).collect()
    }

    /// The plan for `tool args`, with the given local bins and npm env.
    fn plan_with(tool: &str, args: &[&str], local: &[&str], npm_env: &[&str]) -> Option<Plan> {
        let policy = lookup(tool).unwrap_or_else(|| panic!("{tool} is pinned"));
        let local_bin = |name: &str| local.contains(&name);
        let env = |key: &str| npm_env.contains(&key);
        let ctx = Context {
            report: REPORT,
            hook: HOOK,
            local_bin: &local_bin,
            npm_env: &env,
        };
        plan_in(FETCH_AND_RUN, policy, &os(args), 0, &ctx)
    }

    fn plan(tool: &str, args: &[&str]) -> Option<Plan> {
        plan_with(tool, args, &[], &[])
    }

    #[track_caller]
    fn split(tool: &str, args: &[&str]) -> Phases {
        match plan(tool, args) {
            Some(Plan::Split(phases)) => phases,
            other => panic!("{tool} {args:?}: not split: {other:?}"),
        }
    }

    #[track_caller]
    fn fetch_of(phases: &Phases) -> Vec<&str> {
        strs(
            phases
                .fetch
                .as_deref()
                .unwrap_or_else(|| panic!("no fetch: {phases:?}")),
        )
    }

    const SHELL: &str = "--script-shell=/opt/cli-guard";
    const PROBE: [&str; 5] = ["sh", "-c", PATH_PROBE, "sh", REPORT];

    #[test]
    fn npx_fetches_with_cli_guard_as_its_script_shell_and_runs_offline() {
        let p = split("npx", &["-y", "cowsay@1.6.0", "hi", "--offline"]);
        assert_eq!(fetch_of(&p), [SHELL, "-y", "cowsay@1.6.0", "hi", "--offline"]);
        assert_eq!(
            strs(&p.run),
            [
                "--offline",
                "--yes",
                "--ignore-scripts",
                SHELL,
                "-y",
                "cowsay@1.6.0",
                "hi",
                "--offline"
            ]
        );
        assert_eq!(p.probe, Probe::ScriptShell);
        assert_eq!(p.wanted.package.as_deref(), Some("cowsay@1.6.0"));
        // `-y` was the user's; the program's own `--offline` is not npx's.
        assert_eq!(p.added_settings, ["offline", "ignore-scripts"]);
        assert_eq!(p.why, WHY_RUNS_FETCHED);
    }

    #[test]
    fn every_npm_exec_spelling_splits() {
        for (tool, args) in [
            ("npx", &["--package=./netcli-1.0.0.tgz", "netcli"][..]),
            ("npx", &["-p", "cowsay", "-c", "cowsay hi"]),
            ("npx", &["--yes", "--", "cowsay"]),
            ("npm", &["exec", "cowsay"]),
            ("npm", &["x", "-y", "cowsay"]),
            ("npm", &["--prefix", "app", "exec", "--", "cowsay", "--x"]),
            ("npm", &["exec", "--package", "a", "--package", "b", "--", "b"]),
        ] {
            let p = split(tool, args);
            assert_eq!(fetch_of(&p)[0], SHELL, "{tool} {args:?}");
            assert_eq!(
                strs(&p.run)[..4],
                ["--offline", "--yes", "--ignore-scripts", SHELL]
            );
        }
        let p = split("npm", &["exec", "--package", "a", "--package", "b", "--", "b"]);
        assert_eq!(p.wanted.package.as_deref(), Some("a"));
    }

    #[test]
    fn npm_exec_that_fetches_nothing_or_sets_its_own_shell_is_not_split() {
        for (tool, args) in [
            ("npx", &[][..]),
            ("npx", &["-y"]),
            ("npx", &["-c", "ls"]),
            ("npx", &["--script-shell=bash", "cowsay"]),
            ("npx", &["--shell", "bash", "cowsay"]),
            ("npm", &["exec", "cowsay", "--script-shell=bash"]),
            ("npx", &["--workspace", "a", "cowsay"]),
            ("npx", &["--frobnicate", "cowsay"]),
            ("npx", &["-yq", "cowsay"]),
            ("npm", &["install", "cowsay"]),
            ("npm", &["--user-agent", "x", "exec", "cowsay"]),
            ("npm", &["execute", "cowsay"]),
        ] {
            assert_eq!(plan(tool, args), None, "{tool} {args:?}");
        }
    }

    #[test]
    fn a_non_utf8_argument_before_the_program_is_not_split() {
        use std::os::unix::ffi::OsStringExt;
        let policy = lookup("npx").unwrap_or_else(|| panic!("npx"));
        let args = vec![OsString::from_vec(vec![b'-', 0xff]), OsString::from("cowsay")];
        let ctx = Context {
            report: REPORT,
            hook: HOOK,
            local_bin: &|_| false,
            npm_env: &|_| false,
        };
        assert_eq!(plan_in(FETCH_AND_RUN, policy, &args, 0, &ctx), None);
        // After it, the program's own arguments are the program's.
        let args = vec![OsString::from("cowsay"), OsString::from_vec(vec![0xff])];
        assert!(plan_in(FETCH_AND_RUN, policy, &args, 0, &ctx).is_some());
    }

    #[test]
    fn npm_settings_the_user_set_are_left_in_the_programs_environment() {
        let p = match plan_with("npx", &["--ignore-scripts", "x"], &[], &["offline"]) {
            Some(Plan::Split(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.added_settings, ["yes"]);
        assert_eq!(
            split("npx", &["--no", "x"]).added_settings,
            ["offline", "ignore-scripts"]
        );
    }

    #[test]
    fn pnpm_dlx_fetches_by_package_and_runs_offline() {
        let p = split("pnpm", &["dlx", "cowsay@1.6.0", "hi"]);
        let mut want = vec!["dlx", "--package=cowsay@1.6.0"];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want);
        assert_eq!(strs(&p.run), ["--offline", "dlx", "cowsay@1.6.0", "hi"]);
        assert_eq!(p.wanted.package.as_deref(), Some("cowsay@1.6.0"));
        assert_eq!(p.wanted.command, None);

        let p = split(
            "pnpx",
            &[
                "--allow-build=netdep",
                "-c",
                "--package",
                "./x.tgz",
                "netcli a | cat",
            ],
        );
        let mut want = vec!["--allow-build=netdep", "--package", "./x.tgz"];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want, "shell mode is not the fetch's");
        assert_eq!(p.wanted.command.as_deref(), Some("netcli a | cat"));
        assert_eq!(strs(&split("pnx", &["x"]).run), ["--offline", "x"]);
        assert_eq!(
            strs(&split("pnpm", &["-C", "app", "dlx", "x"]).run),
            ["--offline", "-C", "app", "dlx", "x"]
        );
        assert_eq!(plan("pnpm", &["dlx", "-c", "cowsay hi"]), None);
        assert_eq!(plan("pnpm", &["dlx", "--mystery", "x"]), None);
        assert_eq!(plan("pnpm", &["add", "x"]), None);
    }

    #[test]
    fn yarn_dlx_is_observed_whole() {
        assert_eq!(
            plan("yarn", &["dlx", "-p", "x", "cmd"]),
            Some(Plan::Whole { why: WHY_YARN_DLX })
        );
        assert_eq!(plan("yarn", &["dlx"]), None);
        assert_eq!(plan("yarn", &["dlx", "--cwd", "x", "cmd"]), None);
        assert_eq!(plan("yarn", &["add", "x"]), None);
    }

    #[test]
    fn bunx_fetches_by_package_and_runs_without_installing() {
        let p = split("bunx", &["--trust", "cowsay@1.6.0", "hi"]);
        let mut want = vec!["--trust", "-p", "cowsay@1.6.0"];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want);
        assert_eq!(strs(&p.run), ["--no-install", "--trust", "cowsay@1.6.0", "hi"]);
        let p = split("bun", &["x", "-p", "./x.tgz", "netcli"]);
        let mut want = vec!["x", "-p", "./x.tgz"];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want);
        assert_eq!(strs(&p.run), ["x", "--no-install", "-p", "./x.tgz", "netcli"]);
        assert_eq!(plan("bunx", &["--cwd", "app", "x"]), None);
        assert_eq!(plan("bun", &["install"]), None);
    }

    #[test]
    fn bunx_of_a_bin_the_project_has_only_runs() {
        let Some(Plan::Split(p)) = plan_with("bunx", &["tsc", "-v"], &["tsc"], &[]) else {
            panic!("not split");
        };
        assert_eq!(p.fetch, None);
        assert_eq!(p.probe, Probe::Installed);
        assert_eq!(strs(&p.run), ["--no-install", "tsc", "-v"]);
        assert_eq!(p.why, WHY_RUNS_INSTALLED);
        // A version asks for the registry's, and --no-install is the user's own.
        assert!(split("bunx", &["tsc@5", "-v"]).fetch.is_some());
        let p = split("bunx", &["--no-install", "x"]);
        assert_eq!((p.fetch, strs(&p.run)), (None, vec!["--no-install", "x"]));
    }

    #[test]
    fn uvx_fetches_from_the_package_and_runs_offline() {
        let p = split("uvx", &["--python", "3.11", "pycowsay==0.0.0.2", "moo"]);
        let mut want = vec!["--python", "3.11", "--from=pycowsay==0.0.0.2"];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want);
        assert_eq!(
            strs(&p.run),
            ["--offline", "--python", "3.11", "pycowsay==0.0.0.2", "moo"]
        );
        assert_eq!(p.wanted.command.as_deref(), Some("pycowsay"));
        let p = split(
            "uv",
            &[
                "--directory",
                "d",
                "tool",
                "run",
                "--refresh",
                "--from",
                "a[b]",
                "--with",
                "c",
                "cmd",
                "x",
            ],
        );
        let mut want = vec![
            "--directory",
            "d",
            "tool",
            "run",
            "--refresh",
            "--from",
            "a[b]",
            "--with",
            "c",
        ];
        want.extend(PROBE);
        assert_eq!(fetch_of(&p), want);
        assert_eq!(
            strs(&p.run),
            [
                "--offline",
                "--directory",
                "d",
                "tool",
                "run",
                "--from",
                "a[b]",
                "--with",
                "c",
                "cmd",
                "x"
            ],
            "the offline run does not refresh"
        );
        assert_eq!(p.wanted.command.as_deref(), Some("cmd"));
        assert_eq!(p.wanted.package.as_deref(), Some("a[b]"));
        for args in [
            &["tool", "install", "x"][..],
            &["tool"],
            &["run", "x"],
            &["tool", "run", "--no-cache", "x"],
        ] {
            assert_eq!(plan("uv", args), None, "{args:?}");
        }
        assert_eq!(plan("uvx", &["./local/path"]), None);
    }

    #[test]
    fn pipx_run_fetches_into_its_cached_environment() {
        let p = split("pipx", &["run", "--refresh", "pycowsay", "moo"]);
        assert_eq!(
            fetch_of(&p),
            [
                "run",
                "--refresh",
                "--spec",
                "pycowsay",
                "python",
                "-c",
                PREFIX_PROBE,
                REPORT
            ]
        );
        assert_eq!(strs(&p.run), ["run", "pycowsay", "moo"]);
        assert!(p.run_needs_program);
        assert_eq!(p.probe, Probe::Prefix);
        assert_eq!(
            split("pipx", &["run", "pycowsay==0.0.0.2"])
                .wanted
                .command
                .as_deref(),
            Some("pycowsay")
        );
        let p = split("pipx", &["run", "--spec", "./netcli", "netcli", "a"]);
        assert_eq!(p.wanted.command.as_deref(), Some("netcli"));
        assert_eq!(p.wanted.package.as_deref(), Some("./netcli"));
        for args in [
            &["run", "./script.py"][..],
            &["run", "https://x/y.py"],
            &["run", "--path", "x"],
            &["run", "--no-cache", "x"],
            &["run", "--python-args", "-X", "x"],
            &["install", "x"],
        ] {
            assert_eq!(plan("pipx", args), None, "{args:?}");
        }
    }

    #[test]
    fn python_m_pipx_keeps_the_interpreter_arguments_in_front() {
        let policy = lookup("pipx").unwrap_or_else(|| panic!("pipx"));
        let ctx = Context {
            report: REPORT,
            hook: HOOK,
            local_bin: &|_| false,
            npm_env: &|_| false,
        };
        let args = os(&["-m", "pipx", "run", "x"]);
        let Some(Plan::Split(p)) = plan_in(FETCH_AND_RUN, policy, &args, 2, &ctx) else {
            panic!("not split");
        };
        assert_eq!(strs(&p.run), ["-m", "pipx", "run", "x"]);
        assert_eq!(fetch_of(&p)[..5], ["-m", "pipx", "run", "--spec", "x"]);
    }

    #[test]
    fn tools_without_a_line_are_not_split() {
        for (tool, args) in [
            ("npm", &["install"][..]),
            ("pip", &["install", "x"]),
            ("corepack", &["yarn@4", "--version"]),
            ("cargo", &["run"]),
        ] {
            assert_eq!(plan(tool, args), None, "{tool}");
        }
    }

    /// How an operator makes a fetch-and-run tool enforced whole again:
    /// deleting its line from `FETCH_AND_RUN`.
    #[test]
    fn deleting_a_tools_line_makes_it_enforced_whole_again() {
        let without_npx: Vec<FetchRun> = FETCH_AND_RUN
            .iter()
            .filter(|f| f.tool != "npx")
            .copied()
            .collect();
        let npx = lookup("npx").unwrap_or_else(|| panic!("npx"));
        let ctx = Context {
            report: REPORT,
            hook: HOOK,
            local_bin: &|_| false,
            npm_env: &|_| false,
        };
        let args = os(&["-y", "cowsay"]);
        assert!(plan_in(FETCH_AND_RUN, npx, &args, 0, &ctx).is_some());
        assert_eq!(plan_in(&without_npx, npx, &args, 0, &ctx), None);
        // And with no plan, the invocation is what split.rs says: enforced.
        let whole = crate::policy::invocation_policy(npx, &args, &|| None);
        assert_eq!(whole.mode, crate::policy::Mode::Enforce);
        assert!(whole.strict);
    }

    #[test]
    fn every_line_names_a_pinned_enforce_mode_tool_once() {
        for (i, form) in FETCH_AND_RUN.iter().enumerate() {
            let tool = lookup(form.tool).unwrap_or_else(|| panic!("{} is not pinned", form.tool));
            assert_eq!(tool.mode, crate::policy::Mode::Enforce, "{}", form.tool);
            assert!(
                FETCH_AND_RUN[..i].iter().all(|f| f.tool != form.tool),
                "{} twice",
                form.tool
            );
            for words in form.words {
                assert!(!words.is_empty(), "{}", form.tool);
                assert!(!tool.runs_project_code.contains(&words[0]), "{}", form.tool);
            }
        }
    }

    #[test]
    fn spec_names() {
        assert_eq!(spec_name("cowsay"), Some("cowsay"));
        assert_eq!(spec_name("cowsay@1.6.0"), Some("cowsay"));
        assert_eq!(spec_name("@scope/pkg@2"), Some("@scope/pkg"));
        assert_eq!(
            spec_name("@modelcontextprotocol/server-everything"),
            Some("@modelcontextprotocol/server-everything")
        );
        assert_eq!(spec_name("ruff==0.5"), Some("ruff"));
        assert_eq!(spec_name("pkg[extra]>=1"), Some("pkg"));
        assert_eq!(spec_name("./x.tgz"), None);
        assert_eq!(spec_name("/abs/dir"), None);
        assert_eq!(spec_name("git+https://x/y"), None);
        assert_eq!(spec_name("file:x"), None);
        assert_eq!(spec_name("@"), None);
        assert_eq!(spec_name(""), None);
    }
}
