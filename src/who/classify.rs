//! From what /proc says of the process holding a connection's socket to
//! an [`Actor`]. Pure: `find` gathers the facts, this decides, and a
//! failure to name anything can only make the gate refuse.
//!
//! In order: the pid the shim spawned (with its start time) is the tool; a
//! process in a user namespace registered by a script's wrapper, or one
//! nested under it, is that package's (or the project's) code, however it
//! forked, renamed itself or cleared its environment, since it cannot
//! leave the namespace; a process below the tool in the tool's own
//! namespace is a helper when it and every process between it and the
//! tool run one of the tool's helper programs (git, a nested cli-guard,
//! and per tool: pipx's pip, gradle's JVM, brew's curl; some only when the
//! tool itself started them); anything else below the tool is package
//! code, named at best from where it runs. A process that holds the
//! socket above the gate (the shell or program that ran the tool) is the
//! caller, judged as the tool: package code cannot become the gate's
//! ancestor. What is neither below nor above is unknown.

use std::collections::HashMap;
use std::path::Path;

use crate::sys::process::Facts;
use crate::who::actor::{Actor, Package};

/// The tool: the pid the shim spawned, its start time and user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToolId {
    pub(crate) pid: i32,
    pub(crate) start: u64,
    pub(crate) userns: Option<u64>,
    /// It runs a version manager's shim script, which may start the real
    /// tool as its child rather than exec it ([`version_manager_shim`]).
    pub(crate) launcher: bool,
}

/// Version managers whose shims are scripts in `ROOT/shims` run by
/// `ROOT/libexec/NAME`. pyenv's runs pip as its child (its pip-rehash hook
/// waits for pip, then makes shims for what pip installed).
const VERSION_MANAGERS: &[&str] = &["pyenv", "rbenv", "nodenv", "goenv", "plenv", "jenv"];

/// Whether `real_path` is a version manager's shim: `ROOT/shims/NAME`
/// where `ROOT/libexec/MANAGER` `exists`. Pure but for `exists`.
pub(crate) fn version_manager_shim(real_path: &Path, exists: impl Fn(&Path) -> bool) -> bool {
    let Some(shims) = real_path.parent() else {
        return false;
    };
    let Some(root) = shims
        .parent()
        .filter(|_| shims.file_name() == Some("shims".as_ref()))
    else {
        return false;
    };
    VERSION_MANAGERS
        .iter()
        .any(|manager| exists(&root.join("libexec").join(manager)))
}

/// Shells, which a version manager's shim script runs as (and starts for
/// its own look-ups): never the real tool.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh"];

fn is_shell(facts: &Facts) -> bool {
    let name = facts
        .exe
        .as_ref()
        .and_then(|exe| exe.file_name())
        .and_then(|n| n.to_str());
    name.is_some_and(|name| SHELLS.contains(&name))
}

/// A user namespace a script's wrapper registered: whose code runs in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub(crate) package: Package,
    /// The project's own script, not a dependency's.
    pub(crate) project: bool,
}

/// A file's identity: device and inode.
pub(crate) type FileId = (u64, u64);

/// A tool's helpers as the files they run, resolved before the tool runs
/// (`policy::Helpers` names them; `who::resolve_helpers` finds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HelperFiles {
    pub(crate) anywhere: Vec<FileId>,
    pub(crate) direct: Vec<FileId>,
    /// The tool's own executable, started by the tool, is a helper.
    pub(crate) itself: bool,
}

/// What the gate knows of its invocation.
#[derive(Debug)]
pub(crate) struct Known<'a> {
    pub(crate) tool: Option<ToolId>,
    pub(crate) registered: &'a HashMap<u64, Registered>,
    /// The project's direct dependencies, whose entries speak for its
    /// own scripts.
    pub(crate) dependencies: &'a [String],
    /// A fetch and run's run phase: the program's package.
    pub(crate) program: Option<&'a str>,
    /// The tool's helper programs, as files.
    pub(crate) helpers: &'a HelperFiles,
    /// cli-guard's own executable: a nested guarded tool.
    pub(crate) own_exe: Option<FileId>,
    /// The tool runs its scripts through cli-guard's hook (npm, pnpm), so
    /// that none of them is its direct child: a nested guarded tool it
    /// starts itself is its own doing. Below any other tool (yarn 4 and
    /// bun run scripts from their own process) it may be a script's.
    pub(crate) hooked: bool,
}

/// The process that holds the socket.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub(crate) facts: Facts,
    /// Its parent, its parent's parent, …, up to (not including) the gate.
    pub(crate) ancestors: Vec<Facts>,
    /// Its user namespace's inode and those above it, nearest first.
    pub(crate) userns_chain: Vec<u64>,
    /// A name for it read from where it runs (its working directory, a
    /// build script's path): never verified.
    pub(crate) label: Option<Package>,
    /// It is above the gate: the shell or program that ran the tool.
    pub(crate) above: bool,
}

impl Known<'_> {
    /// The process the shim spawned.
    fn is_spawned(&self, facts: &Facts) -> bool {
        self.tool
            .is_some_and(|tool| tool.pid == facts.pid && tool.start == facts.start)
    }

    /// Whether `facts`, whose parent is `parent`, is the tool: the process
    /// the shim spawned, or, where that runs a version manager's shim
    /// script and still is that script (a shell: it did not exec the
    /// tool), a program other than a shell the script started itself.
    fn is_tool(&self, facts: &Facts, parent: Option<&Facts>) -> bool {
        self.is_spawned(facts)
            || (self.tool.is_some_and(|tool| tool.launcher)
                && parent.is_some_and(|p| self.is_spawned(p) && is_shell(p))
                && !is_shell(facts))
    }

    /// Whether `facts` runs a helper program (by the file it runs, never
    /// its name); `direct`: started by the tool itself (whose executable
    /// is `tool_exe`), where the tool's direct helpers count too.
    fn is_helper(&self, facts: &Facts, direct: bool, tool_exe: Option<FileId>) -> bool {
        let Some(exe) = facts.exe_id else { return false };
        let nested_by_hooked_tool = self.hooked && self.own_exe == Some(exe);
        self.helpers.anywhere.contains(&exe)
            || (direct
                && (self.helpers.direct.contains(&exe)
                    || (self.helpers.itself && tool_exe == Some(exe))
                    || nested_by_hooked_tool))
    }
}

fn exe_of(facts: &Facts) -> Option<String> {
    facts.exe.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// Who `holder` is. Pure.
pub(crate) fn classify(holder: &Holder, known: &Known<'_>) -> Actor {
    let facts = &holder.facts;
    let (pid, exe) = (facts.pid, exe_of(facts));
    if known.is_tool(facts, holder.ancestors.first()) {
        return Actor::Tool {
            pid,
            exe,
            program: known.program.map(str::to_string),
        };
    }
    for ns in &holder.userns_chain {
        if let Some(registered) = known.registered.get(ns) {
            let how = format!("in user namespace {ns}, registered by cli-guard-sh as the script started");
            return match registered.project {
                true => Actor::Project {
                    pid,
                    exe,
                    package: registered.package.clone(),
                    dependencies: known.dependencies.to_vec(),
                    how,
                },
                false => Actor::Package {
                    pid,
                    exe,
                    package: Some(registered.package.clone()),
                    how,
                },
            };
        }
    }
    if holder.above {
        return Actor::Caller { pid, exe };
    }
    let Some(below) = (0..holder.ancestors.len())
        .position(|i| known.is_tool(&holder.ancestors[i], holder.ancestors.get(i + 1)))
    else {
        return Actor::Unknown {
            pid: Some(pid),
            exe,
            why: "not below the tool: an orphan whose parent has gone, or a process the tool did not start"
                .to_string(),
        };
    };
    let tool_ns = known.tool.and_then(|t| t.userns);
    let in_tool_ns = tool_ns.is_some() && holder.userns_chain.first().copied() == tool_ns;
    // The chain from the holder up to the tool: each a helper, the one the
    // tool started directly by its direct helpers too.
    let chain: Vec<&Facts> = std::iter::once(facts).chain(&holder.ancestors[..below]).collect();
    let helpers = chain
        .iter()
        .enumerate()
        .all(|(i, f)| known.is_helper(f, i + 1 == chain.len(), holder.ancestors[below].exe_id));
    if in_tool_ns && helpers {
        return Actor::Helper { pid, exe };
    }
    Actor::Package {
        pid,
        exe,
        package: holder.label.clone(),
        how: "started below the tool, and neither the tool nor a program it runs for its own fetching"
            .to_string(),
    }
}

/// A name for unregistered package code, from its executable's path or its
/// working directory (or an ancestor's): a cargo build script's
/// `build/CRATE-HASH/build-script-build`, or a directory under
/// `node_modules/`. Never verified: package code chooses both. Pure.
pub(crate) fn label_from(exe: Option<&str>, cwd: Option<&str>) -> Option<Package> {
    let unverified = |name: &str, from: &str| Package {
        name: name.to_string(),
        version: None,
        script: None,
        verified: false,
        provenance: format!("named by {from} (unverified: package code chooses it)"),
    };
    if let Some(exe) = exe {
        let mut parts = exe.rsplit('/');
        let file = parts.next().unwrap_or("");
        let dir = parts.next().unwrap_or("");
        if file.starts_with("build-script-") && parts.next() == Some("build") {
            let name = dir.rsplit_once('-').map_or(dir, |(name, _hash)| name);
            let mut package = unverified(name, "its build script's path");
            package.script = Some("build.rs".to_string());
            return Some(package);
        }
    }
    let cwd = cwd?;
    let (_, below) = cwd.rsplit_once("/node_modules/")?;
    let mut parts = below.split('/');
    let first = parts
        .next()
        .filter(|p| !p.is_empty() && *p != ".pnpm" && *p != ".bin")?;
    let name = match first.starts_with('@') {
        true => format!("{first}/{}", parts.next().filter(|p| !p.is_empty())?),
        false => first.to_string(),
    };
    Some(unverified(&name, "its working directory"))
}

/// A name for a Python build backend, from the core metadata of the sdist
/// it builds (`PKG-INFO` in its source tree, where every sdist carries it
/// and the backend runs): its `Name` and `Version`. Never verified: the
/// package wrote it. Pure.
pub(crate) fn label_from_pkg_info(text: &str) -> Option<Package> {
    let field = |key: &str| {
        text.lines()
            .take_while(|line| !line.trim().is_empty())
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                let v = v.trim();
                (k.eq_ignore_ascii_case(key) && !v.is_empty()).then(|| v.to_string())
            })
    };
    Some(Package {
        name: field("Name")?,
        version: field("Version"),
        script: None,
        verified: false,
        provenance: "named by the PKG-INFO of the sdist it builds (unverified: package code chooses it)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file's identity in these tests: one per path.
    fn file(path: &str) -> FileId {
        (
            1,
            path.bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        )
    }

    fn facts(pid: i32, ppid: i32, exe: &str, userns: u64) -> Facts {
        Facts {
            pid,
            ppid,
            start: u64::try_from(pid).unwrap_or(0) * 10,
            exe: Some(PathBuf::from(exe)),
            exe_id: Some(file(exe)),
            userns: Some(userns),
        }
    }

    /// npm's helpers as found on PATH: git and its https transport.
    fn npm_helpers() -> &'static HelperFiles {
        Box::leak(Box::new(HelperFiles {
            anywhere: vec![file("/usr/bin/git"), file("/usr/lib/git-core/git-remote-https")],
            direct: vec![],
            itself: false,
        }))
    }

    const TOOL_NS: u64 = 100;

    fn known(registered: &HashMap<u64, Registered>) -> Known<'_> {
        Known {
            tool: Some(ToolId {
                pid: 10,
                start: 100,
                userns: Some(TOOL_NS),
                launcher: false,
            }),
            registered,
            dependencies: &[],
            program: None,
            helpers: npm_helpers(),
            own_exe: Some(file("/opt/cli-guard")),
            hooked: true,
        }
    }

    fn tool() -> Facts {
        facts(10, 1, "/usr/bin/node", TOOL_NS)
    }

    fn holder(facts: Facts, ancestors: Vec<Facts>, chain: Vec<u64>) -> Holder {
        Holder {
            facts,
            ancestors,
            userns_chain: chain,
            label: None,
            above: false,
        }
    }

    #[test]
    fn the_spawned_pid_is_the_tool_only_with_its_start_time() {
        let none = HashMap::new();
        assert!(matches!(
            classify(&holder(tool(), vec![], vec![TOOL_NS]), &known(&none)),
            Actor::Tool { pid: 10, .. }
        ));
        let mut reused = tool();
        reused.start = 5;
        assert!(matches!(
            classify(&holder(reused, vec![], vec![TOOL_NS]), &known(&none)),
            Actor::Unknown { .. }
        ));
    }

    #[test]
    fn behind_a_version_managers_shim_the_program_it_starts_is_the_tool_and_its_children_are_not() {
        let none = HashMap::new();
        let mut known = known(&none);
        known.tool = known.tool.map(|t| ToolId { launcher: true, ..t });
        // pyenv's shim runs as bash (the spawned pid), then pip as its child.
        let shim = facts(10, 1, "/usr/bin/bash", TOOL_NS);
        let pip = facts(11, 10, "/root/.pyenv/versions/3.12/bin/python3.12", TOOL_NS);
        let lookup = facts(12, 10, "/usr/bin/bash", TOOL_NS);
        let backend = facts(13, 11, "/root/.pyenv/versions/3.12/bin/python3.12", TOOL_NS);
        assert!(matches!(
            classify(&holder(pip.clone(), vec![shim.clone()], vec![TOOL_NS]), &known),
            Actor::Tool { pid: 11, .. }
        ));
        assert!(matches!(
            classify(&holder(lookup, vec![shim.clone()], vec![TOOL_NS]), &known),
            Actor::Package { pid: 12, .. }
        ));
        assert!(matches!(
            classify(
                &holder(backend.clone(), vec![pip.clone(), shim.clone()], vec![TOOL_NS]),
                &known
            ),
            Actor::Package { pid: 13, .. }
        ));
        // Where the shim exec'd the tool (uv behind pyenv's shim), the
        // tool's children are not the tool: a build backend uv started.
        let uv = facts(10, 1, "/root/.pyenv/versions/3.12/bin/uv", TOOL_NS);
        let uv_backend = facts(14, 10, "/root/.pyenv/versions/3.12/bin/python3.12", TOOL_NS);
        assert!(matches!(
            classify(&holder(uv_backend, vec![uv], vec![TOOL_NS]), &known),
            Actor::Package { pid: 14, .. }
        ));
        // Without the shim, the child is not the tool.
        known.tool = known.tool.map(|t| ToolId { launcher: false, ..t });
        assert!(matches!(
            classify(&holder(pip, vec![shim], vec![TOOL_NS]), &known),
            Actor::Package { pid: 11, .. }
        ));
    }

    #[test]
    fn a_version_managers_shim_is_found_by_its_root() {
        let pyenv = |p: &Path| p == Path::new("/home/u/.pyenv/libexec/pyenv");
        assert!(version_manager_shim(Path::new("/home/u/.pyenv/shims/pip"), pyenv));
        assert!(!version_manager_shim(Path::new("/home/u/.pyenv/bin/pip"), pyenv));
        assert!(!version_manager_shim(Path::new("/usr/bin/pip"), pyenv));
        assert!(!version_manager_shim(
            Path::new("/home/u/.local/share/mise/shims/pip"),
            pyenv
        ));
        assert!(!version_manager_shim(Path::new("pip"), pyenv));
    }

    #[test]
    fn git_started_by_the_tool_is_a_helper_but_not_when_a_script_started_it() {
        let none = HashMap::new();
        let git = facts(11, 10, "/usr/bin/git", TOOL_NS);
        let remote = facts(12, 11, "/usr/lib/git-core/git-remote-https", TOOL_NS);
        let by_tool = holder(remote.clone(), vec![git.clone(), tool()], vec![TOOL_NS]);
        assert!(matches!(
            classify(&by_tool, &known(&none)),
            Actor::Helper { pid: 12, .. }
        ));
        let script = facts(20, 10, "/bin/sh", TOOL_NS);
        let git_of_script = facts(21, 20, "/usr/bin/git", TOOL_NS);
        let by_script = holder(git_of_script, vec![script, tool()], vec![TOOL_NS]);
        assert!(matches!(
            classify(&by_script, &known(&none)),
            Actor::Package { package: None, .. }
        ));
        // A nested cli-guard npm itself started is its own doing (its
        // scripts run in registered namespaces, never as its children);
        // below a tool without the hook (yarn 4, bun: scripts run from
        // their own process), or started by a script, it is package code.
        let nested = facts(13, 10, "/opt/cli-guard", TOOL_NS);
        let nested_holder = holder(nested, vec![tool()], vec![TOOL_NS]);
        assert!(matches!(
            classify(&nested_holder, &known(&none)),
            Actor::Helper { .. }
        ));
        let unhooked = Known {
            hooked: false,
            ..known(&none)
        };
        assert!(matches!(
            classify(&nested_holder, &unhooked),
            Actor::Package { .. }
        ));
        let by_script = facts(14, 20, "/opt/cli-guard", TOOL_NS);
        let script = facts(20, 10, "/bin/sh", TOOL_NS);
        assert!(matches!(
            classify(
                &holder(by_script, vec![script, tool()], vec![TOOL_NS]),
                &known(&none)
            ),
            Actor::Package { .. }
        ));
    }

    #[test]
    fn a_helper_is_the_file_found_on_path_not_a_program_named_like_it() {
        let none = HashMap::new();
        // A build script's copy of curl named git, started by the tool.
        let copy = facts(11, 10, "/tmp/x/git", TOOL_NS);
        assert!(matches!(
            classify(&holder(copy, vec![tool()], vec![TOOL_NS]), &known(&none)),
            Actor::Package { pid: 11, .. }
        ));
    }

    #[test]
    fn the_tools_own_executable_started_by_it_is_a_helper_only_where_pinned() {
        let none = HashMap::new();
        let pipx = facts(10, 1, "/usr/bin/python3.12", TOOL_NS);
        let pip = facts(11, 10, "/usr/bin/python3.12", TOOL_NS);
        let backend = facts(12, 11, "/usr/bin/python3.12", TOOL_NS);
        let other = facts(13, 10, "/usr/bin/python3.11", TOOL_NS);
        let mut known = known(&none);
        known.helpers = Box::leak(Box::new(HelperFiles {
            itself: true,
            ..HelperFiles::default()
        }));
        assert!(matches!(
            classify(&holder(pip.clone(), vec![pipx.clone()], vec![TOOL_NS]), &known),
            Actor::Helper { pid: 11, .. }
        ));
        assert!(matches!(
            classify(
                &holder(backend, vec![pip.clone(), pipx.clone()], vec![TOOL_NS]),
                &known
            ),
            Actor::Package { pid: 12, .. }
        ));
        assert!(matches!(
            classify(&holder(other, vec![pipx.clone()], vec![TOOL_NS]), &known),
            Actor::Package { pid: 13, .. }
        ));
        known.helpers = npm_helpers();
        assert!(matches!(
            classify(&holder(pip, vec![pipx], vec![TOOL_NS]), &known),
            Actor::Package { pid: 11, .. }
        ));
    }

    #[test]
    fn a_registered_namespace_names_its_package_however_deep_and_orphaned() {
        let mut registered = HashMap::new();
        registered.insert(
            200,
            Registered {
                package: Package {
                    name: "evil-worm".into(),
                    version: Some("1.0.0".into()),
                    script: Some("postinstall".into()),
                    verified: false,
                    provenance: "npm's script environment".into(),
                },
                project: false,
            },
        );
        // Double-forked, reparented to the gate, in a namespace of its own
        // nested under the registered one.
        let orphan = facts(30, 1, "/usr/bin/curl", 300);
        let actor = classify(
            &holder(orphan, vec![], vec![300, 200, TOOL_NS]),
            &known(&registered),
        );
        match actor {
            Actor::Package { package: Some(p), .. } => assert_eq!(p.name, "evil-worm"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anything_else_below_the_tool_is_package_code_and_outside_it_unknown() {
        let none = HashMap::new();
        let build = facts(
            40,
            10,
            "/p/target/debug/build/evil-1a2b/build-script-build",
            TOOL_NS,
        );
        let actor = classify(&holder(build, vec![tool()], vec![TOOL_NS]), &known(&none));
        assert!(actor.is_package_code(), "{actor:?}");
        let stranger = facts(50, 1, "/usr/bin/curl", TOOL_NS);
        assert!(matches!(
            classify(&holder(stranger, vec![], vec![TOOL_NS]), &known(&none)),
            Actor::Unknown { .. }
        ));
    }

    #[test]
    fn the_program_that_ran_the_tool_is_its_caller() {
        let none = HashMap::new();
        let shell = facts(5, 1, "/bin/bash", TOOL_NS);
        let mut caller = holder(shell, vec![], vec![TOOL_NS]);
        caller.above = true;
        let actor = classify(&caller, &known(&none));
        assert!(
            matches!(actor, Actor::Caller { pid: 5, .. }) && !actor.is_package_code(),
            "{actor:?}"
        );
    }

    #[test]
    fn labels_come_from_a_build_scripts_path_or_node_modules() {
        let cargo = label_from(
            Some("/p/target/debug/build/evil-crate-1a2b3c/build-script-build"),
            None,
        );
        assert_eq!(cargo.map(|p| p.name), Some("evil-crate".to_string()));
        let npm = label_from(Some("/usr/bin/sh"), Some("/p/node_modules/@scope/pkg/lib"));
        assert_eq!(npm.map(|p| p.name), Some("@scope/pkg".to_string()));
        let pnpm = label_from(None, Some("/p/node_modules/.pnpm/a@1.0.0/node_modules/a"));
        assert_eq!(pnpm.as_ref().map(|p| p.name.as_str()), Some("a"));
        assert!(pnpm.is_some_and(|p| !p.verified));
        assert_eq!(label_from(None, Some("/p/src")), None);
        assert_eq!(label_from(None, Some("/p/node_modules/")), None);
    }

    #[test]
    fn a_build_backend_is_named_by_its_sdists_metadata_header_only() {
        let backend =
            label_from_pkg_info("Metadata-Version: 2.1\nName: evil-setup\nVersion: 1.0.0\n\nName: x\n");
        assert_eq!(
            backend.as_ref().map(|p| (p.name.as_str(), p.version.as_deref())),
            Some(("evil-setup", Some("1.0.0")))
        );
        assert!(backend.is_some_and(|p| !p.verified));
        assert_eq!(label_from_pkg_info("Metadata-Version: 2.1\n\nName: body\n"), None);
        assert_eq!(label_from_pkg_info("Name:   \n"), None);
    }
}
