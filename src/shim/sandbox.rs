//! What strict mode's layers are made of for one invocation, beyond the
//! network namespace: the places its tool may write and the paths that
//! stay read-only whatever happens ([`plan_writes`], pure), gathered from
//! the environment and the filesystem ([`write_layer`]); which of stdin,
//! stdout and stderr are sockets, to be relayed through pipes
//! ([`stdio_sockets`]); and the [`Layers`] the namespace child makes, one
//! layer dropped at a time where the kernel refuses it under `auto`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::policy::writes::{self, Base, Facts};
use crate::policy::ToolPolicy;
use crate::sys::mounts::{self, Mounts};
use crate::sys::netns::{self, Layer, Layers, NamespaceError};
use crate::sys::seccomp::Filters;

/// The writable places and the pins that keep protected paths under them
/// read-only, both shallowest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct WritePlan {
    pub(super) writable: Vec<PathBuf>,
    pub(super) pins: Vec<PathBuf>,
    /// Places left read-only because they are themselves protected (the
    /// working directory is the home directory, say).
    pub(super) refused: Vec<PathBuf>,
}

/// Sorts `writable` places (canonical) against `protected` paths
/// (canonical): a place that is a protected path stays read-only; a place
/// above one is writable, and every directory from just below it down to
/// the protected path is pinned read-only, so that nothing on the way can
/// be renamed to walk around the protection (a rename of `~/.local` would
/// take a pinned `~/.local/bin` with it). Pure.
pub(super) fn plan_writes(writable: Vec<PathBuf>, protected: &[PathBuf]) -> WritePlan {
    let mut plan = WritePlan::default();
    for place in writable {
        if protected.contains(&place) {
            push_once(&mut plan.refused, place);
        } else {
            push_once(&mut plan.writable, place);
        }
    }
    for guarded in protected {
        for place in &plan.writable {
            if guarded == place || !guarded.starts_with(place) {
                continue;
            }
            // A writable place on the way stays writable: as a mount point
            // it cannot be renamed, and the pins below it keep the rest.
            for pin in guarded.ancestors().take_while(|a| a != place) {
                if !plan.writable.iter().any(|w| w == pin) {
                    push_once(&mut plan.pins, pin.to_path_buf());
                }
            }
        }
    }
    let depth = |p: &PathBuf| p.components().count();
    plan.writable.sort_by_key(depth);
    plan.pins.sort_by_key(depth);
    plan
}

fn push_once(list: &mut Vec<PathBuf>, path: PathBuf) {
    if !list.contains(&path) {
        list.push(path);
    }
}

/// What [`write_layer`] needs to know of the invocation.
#[derive(Debug)]
pub(super) struct Invocation<'a> {
    pub(super) policy: &'static ToolPolicy,
    pub(super) subcommand: Option<&'a str>,
    /// The tool's own arguments.
    pub(super) args: Vec<&'a str>,
    pub(super) real_path: &'a Path,
    pub(super) env: &'a Env,
    /// Directories holding cli-guard under the tool's name (its shims).
    pub(super) shim_dirs: &'a [PathBuf],
}

/// The write layer for `inv`: its places (made where missing and the tool
/// needs them), checked against what must stay read-only (the home
/// directory, cli-guard's binary, the directories of its shims, the
/// audit log's directory, /etc, whose files the gate resolves with).
pub(super) fn write_layer(inv: &Invocation<'_>) -> Result<(Mounts, WritePlan), String> {
    let env = inv.env;
    let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
    let home = env.var("HOME").filter(|h| h.starts_with('/')).map(PathBuf::from);
    let global = writes::installs_globally(inv.policy.name, inv.subcommand, &inv.args);
    let var = |name: &str| env.var(name).map(str::to_string);
    let facts = Facts {
        cwd: &cwd,
        home: home.as_deref(),
        var: &var,
        global,
        // A virtualenv's, or an interpreter of the user's own (pyenv's,
        // conda's under the home): never the system's, which a root `pip`
        // would otherwise open to a build's setup.py.
        interpreter: interpreter_prefix(inv.real_path).filter(|prefix| {
            prefix.join("pyvenv.cfg").is_file() || home.as_deref().is_some_and(|h| prefix.starts_with(h))
        }),
        node_prefix: global.then(|| node_prefix(env)).flatten(),
        args: &inv.args,
        account_home: inv
            .policy
            .writes
            .iter()
            .any(|p| p.base == Base::AccountHome)
            .then(account_home)
            .flatten(),
    };
    let mut writable = Vec::new();
    let places = writes::resolve(inv.policy.writes, inv.policy.name, &facts);
    let lexical: Vec<&Path> = places.iter().map(|p| p.path.as_path()).collect();
    for place in &places {
        // A symlink inside another writable place was made by whatever ran
        // there before (an earlier install's script): following it would
        // hand that script any directory it pointed it at.
        if planted_symlink(&place.path, &lexical).is_some() {
            continue;
        }
        if place.make && !place.path.exists() {
            // The tool could not make it in a read-only parent; made as
            // the user, where the tool would have made it.
            let _ = std::fs::create_dir_all(&place.path);
        }
        if !place.writable {
            continue;
        }
        if let Ok(real) = place.path.canonicalize() {
            if real.is_dir() && !kernel_or_root(&real) {
                writable.push(real);
            }
        }
    }
    // The binary itself, not its directory: a global install (`pipx
    // install`, `npm -g` with its prefix at ~/.local) writes beside it in
    // ~/.local/bin, and the file pinned there can be neither replaced nor
    // renamed.
    let exe = std::env::current_exe().ok();
    let log_dir = env
        .audit_log_path()
        .and_then(|log| log.parent().map(Path::to_path_buf));
    // Files a shell or a later build runs that sit directly in a place a
    // global install writes (`cargo install`: $CARGO_HOME/env, which
    // rustup's ~/.profile sources, and cargo's config): pinned as they are.
    let kept = writes::kept_files(inv.policy.name, global, &var, home.as_deref());
    // And the binary the shims run, whichever name started this one: run
    // as `python3`, a hard link among the shims, `exe` is that link, not
    // the binary in ~/.local/bin a global install may write beside. Each
    // shims directory was found by its shim of this tool's name, which is
    // cli-guard; canonical, it is the binary (one lookup a directory).
    let shims_run = inv.shim_dirs.iter().map(|dir| dir.join(inv.policy.name));
    let protected: Vec<PathBuf> = [home.clone(), exe, log_dir, Some(PathBuf::from("/etc"))]
        .into_iter()
        .flatten()
        .chain(inv.shim_dirs.iter().cloned())
        .chain(shims_run)
        .chain(kept)
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let plan = plan_writes(writable, &protected);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cwd = cwd.canonicalize().unwrap_or(cwd);
    let hidden = env
        .audit_log_path()
        .and_then(|log| hidden_log_dir(&log, &plan.writable, &cwd));
    let mounts = Mounts::new(
        &plan.writable,
        &plan.pins,
        hidden.as_deref(),
        &mounts::mount_points(&mountinfo),
        &cwd,
    )
    .map_err(|e| format!("cannot prepare the mounts: {e}"))?;
    Ok((mounts, plan))
}

/// The audit log's directory, to be hidden from the tool, if it holds
/// nothing but the log's own files (`audit.jsonl`, its rotations, lock
/// and spool) and no writable place or the working directory is in it.
/// I/O: reads the directory.
fn hidden_log_dir(log: &Path, writable: &[PathBuf], cwd: &Path) -> Option<PathBuf> {
    let dir = log.parent()?.canonicalize().ok()?;
    let name = log.file_name()?.to_str()?;
    if kernel_or_root(&dir) || cwd.starts_with(&dir) || writable.iter().any(|w| w.starts_with(&dir)) {
        return None;
    }
    let only_the_logs = std::fs::read_dir(&dir)
        .ok()?
        .take(64)
        .all(|e| e.is_ok_and(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(name))));
    only_the_logs.then_some(dir)
}

/// The first component of `path` (itself included) that is a symlink and
/// lies inside one of the writable `places` (not a place itself): made by
/// something that could write there. I/O: `lstat` each.
fn planted_symlink(path: &Path, places: &[&Path]) -> Option<PathBuf> {
    path.ancestors()
        .filter(|a| places.iter().any(|p| a.starts_with(p) && a != p))
        .find(|a| a.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
}

/// `/` or the kernel's filesystems: never a writable place. Pure.
fn kernel_or_root(path: &Path) -> bool {
    path == Path::new("/") || ["/proc", "/sys", "/dev"].iter().any(|k| path.starts_with(k))
}

/// The account's home directory, from the password database.
fn account_home() -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.dir)
}

/// The prefix of the Python interpreter the tool runs under: read from its
/// script's `#!` line, or the tool is the interpreter (`python -m pip`).
pub(super) fn interpreter_prefix(real_path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(real_path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let head = head.get(..n)?;
    if head.starts_with(b"#!") {
        let line = head.split(|&b| b == b'\n').next()?;
        return writes::interpreter_prefix(std::str::from_utf8(line).ok()?);
    }
    let real = real_path.canonicalize().ok()?;
    let name = real.file_name()?.to_str()?;
    let bin = real.parent()?;
    (name.starts_with("python") && bin.file_name()? == "bin")
        .then(|| bin.parent().map(Path::to_path_buf))
        .flatten()
}

/// npm's global prefix: the prefix of the node on PATH (its `bin/`'s
/// parent), unless `npm_config_prefix` says otherwise (a place of its own).
fn node_prefix(env: &Env) -> Option<PathBuf> {
    let path = env.var_os("PATH")?;
    let node = std::env::split_paths(path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())?
        .canonicalize()
        .ok()?;
    let bin = node.parent()?;
    (bin.file_name()? == "bin").then(|| bin.parent().map(Path::to_path_buf))?
}

/// Which of stdin, stdout and stderr are sockets: a socket there belongs
/// to the host's network (a connected TCP socket can be re-aimed anywhere
/// with `connect`), so the tool gets a pipe instead and the shim relays.
pub(super) fn stdio_sockets() -> [bool; 3] {
    use nix::sys::stat::{fstat, SFlag};
    let is_socket = |fd: std::os::fd::BorrowedFd<'_>| {
        fstat(fd).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
    };
    use std::os::fd::AsFd;
    [
        is_socket(std::io::stdin().as_fd()),
        is_socket(std::io::stdout().as_fd()),
        is_socket(std::io::stderr().as_fd()),
    ]
}

/// What `cli-guard doctor` reports: whether the network namespace can be
/// made, and each layer on top of it that cannot, with why. The probe's
/// tool goes as far as its go with every layer it can have, then is
/// killed.
pub(crate) fn probe() -> (Result<(), NamespaceError>, BTreeMap<Layer, String>) {
    let mut off = BTreeMap::new();
    let tmp = std::env::temp_dir();
    let cwd = std::env::current_dir().unwrap_or_else(|_| tmp.clone());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut layers = Layers {
        pid: true,
        ..Layers::default()
    };
    match Mounts::new(&[tmp], &[], None, &mounts::mount_points(&mountinfo), &cwd) {
        Ok(mounts) => layers.mounts = Some(mounts),
        Err(e) => {
            off.insert(Layer::Mounts, e.to_string());
        }
    }
    match Filters::new(true) {
        Ok(filters) => layers.seccomp = Some(filters),
        Err(why) => {
            off.insert(Layer::Seccomp, why);
        }
    }
    loop {
        match netns::probe(&layers) {
            Ok(()) => return (Ok(()), off),
            Err(refused) => match refused.layer {
                Some(layer) if !off.contains_key(&layer) => {
                    off.insert(layer, refused.to_string());
                    layers.drop_layer(layer);
                }
                _ => return (Err(refused), off),
            },
        }
    }
}

/// The start row's `layers`: each layer and whether it is on, or why not;
/// with the mounts layer on, the places the tool may write.
pub(super) fn layers_row(
    off: &BTreeMap<Layer, String>,
    writable: &[PathBuf],
    relayed: [bool; 3],
) -> BTreeMap<String, String> {
    let mut row: BTreeMap<String, String> = Layer::ALL
        .iter()
        .map(|layer| {
            let state = match (off.get(layer), layer) {
                (Some(why), _) => format!("off: {why}"),
                (None, Layer::Mounts) => format!("on: writable {}", shown(writable)),
                (None, _) => "on".to_string(),
            };
            (layer.name().to_string(), state)
        })
        .collect();
    let names = ["stdin", "stdout", "stderr"];
    let relayed: Vec<&str> = names
        .iter()
        .zip(relayed)
        .filter(|(_, relayed)| *relayed)
        .map(|(name, _)| *name)
        .collect();
    if !relayed.is_empty() {
        row.insert(
            "stdio".to_string(),
            format!(
                "{} relayed through a pipe (a socket there belongs to the host's network)",
                relayed.join(", ")
            ),
        );
    }
    row
}

/// Paths as one comma-separated list.
pub(super) fn shown(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn a_protected_place_stays_read_only_and_one_below_a_place_is_pinned_on_the_way() {
        let plan = plan_writes(
            paths(&["/tmp", "/home/u", "/home/u/proj", "/home/u/.npm"]),
            &paths(&["/home/u", "/tmp/t/home", "/etc"]),
        );
        assert_eq!(plan.refused, paths(&["/home/u"]));
        assert_eq!(plan.writable, paths(&["/tmp", "/home/u/proj", "/home/u/.npm"]));
        assert_eq!(plan.pins, paths(&["/tmp/t", "/tmp/t/home"]));
    }

    #[test]
    fn a_writable_place_inside_another_is_never_pinned_on_the_way_to_a_protected_path() {
        // TMPDIR is a directory under /tmp holding the home: the pins from
        // /tmp down to the home pass the TMPDIR, which stays writable.
        let plan = plan_writes(paths(&["/tmp", "/tmp/ci/t"]), &paths(&["/tmp/ci/t/home"]));
        assert_eq!(plan.writable, paths(&["/tmp", "/tmp/ci/t"]));
        assert_eq!(plan.pins, paths(&["/tmp/ci", "/tmp/ci/t/home"]));
    }

    #[test]
    fn places_inside_a_protected_path_need_no_pin() {
        let plan = plan_writes(paths(&["/home/u/proj"]), &paths(&["/home/u"]));
        assert!(plan.pins.is_empty(), "{plan:?}");
        assert_eq!(plan.writable, paths(&["/home/u/proj"]));
    }

    #[test]
    fn a_symlink_inside_a_writable_place_is_a_planted_one() {
        let tmp = std::env::temp_dir().join(format!("cli-guard-planted-{}", std::process::id()));
        let project = tmp.join("proj");
        std::fs::create_dir_all(project.join("real")).unwrap_or_else(|e| panic!("{e}"));
        let link = project.join(".npmc");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/usr/local/bin", &link).unwrap_or_else(|e| panic!("{e}"));
        let places = [project.as_path(), link.as_path()];
        assert_eq!(planted_symlink(&link, &places), Some(link.clone()));
        assert_eq!(
            planted_symlink(&project.join(".npmc/x"), &places),
            Some(link.clone())
        );
        assert_eq!(planted_symlink(&project.join("real"), &places), None);
        assert_eq!(
            planted_symlink(&project, &places),
            None,
            "a place itself is the user's"
        );
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(kernel_or_root(Path::new("/")) && kernel_or_root(Path::new("/proc/1")));
        assert!(!kernel_or_root(Path::new("/usr/local")));
    }

    #[test]
    fn the_layers_row_names_each_layer() {
        let mut off = BTreeMap::new();
        off.insert(Layer::Seccomp, "the kernel refused it (EINVAL)".to_string());
        let row = layers_row(&off, &paths(&["/p", "/tmp"]), [false, true, false]);
        assert_eq!(
            row.get("mounts").map(String::as_str),
            Some("on: writable /p, /tmp")
        );
        assert_eq!(row.get("pid").map(String::as_str), Some("on"));
        assert_eq!(
            row.get("seccomp").map(String::as_str),
            Some("off: the kernel refused it (EINVAL)")
        );
        assert!(
            row.get("stdio").is_some_and(|s| s.starts_with("stdout relayed")),
            "{row:?}"
        );
    }
}
