//! The python shims (`python`, `python3`, `pythonX.Y`): `python -m pip …`
//! runs under argv[0]'s name, so a `pip` shim never sees it. Here
//! `-m pip` (and `-m ensurepip`, `-m pipx`, `-m poetry`, `-m pdm`,
//! `-m uv`) runs guarded under that tool's policy, with the real
//! interpreter found later on PATH; every other invocation is handed
//! straight to the real interpreter, exec in place: no gate, no row, no
//! runtime, no argument parser, nothing but one stat and one exec.
//!
//! The python names are shims, not tools: they are not in the pinned
//! table, and an interpreter is never guarded as itself.
//!
//! Without side effects: the interpreter gets the path it was found at as
//! argv[0], so its `sys.executable` is its own (a virtualenv made through
//! the shim, and anything uv, virtualenv or pipx records, never names
//! cli-guard); and a version manager's shim that hands the command line
//! straight back to this one ([`Hops`]) is skipped rather than looped with.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::invocation::{Invocation, Program};
use super::locate::{find_on_path, own_file_id, skip_list, skip_var, FileId, LookupError};
use crate::env::{Env, PYTHON_HOPS_VAR, SKIP_VAR};
use crate::exit::{Exit, Failure, GATE_FAILED, NOT_EXECUTABLE, NOT_FOUND};
use crate::policy;

/// pip's first release that installs build dependencies in its own
/// process when asked (`--use-feature inprocess-build-deps`); an older pip
/// refuses to start at all when asked.
const PIP_IN_PROCESS_BUILD_DEPS: (u32, u32) = (26, 0);

/// Whether the pip under the Python prefix `prefix` can install build
/// dependencies in its own process: then its builds' backends are its only
/// Python children, and `who` can tell them (package code) from pip itself.
/// Read from its `pip-X.Y.dist-info` directory, without running Python.
pub(super) fn pip_builds_in_process(prefix: &std::path::Path) -> bool {
    let Ok(libs) = std::fs::read_dir(prefix.join("lib")) else {
        return false;
    };
    libs.flatten()
        .filter(|lib| lib.file_name().to_str().is_some_and(|n| n.starts_with("python")))
        .filter_map(|lib| std::fs::read_dir(lib.path().join("site-packages")).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(pip_version)
                .map(|v| v >= PIP_IN_PROCESS_BUILD_DEPS)
        })
        .any(|ok| ok)
}

/// The version in a `pip-X.Y[.Z].dist-info` directory name. Pure.
fn pip_version(dir: &str) -> Option<(u32, u32)> {
    let version = dir.strip_prefix("pip-")?.strip_suffix(".dist-info")?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The python names `cli-guard policy --names` (and so install.sh and
/// shims/) give a shim. Any `pythonX.Y` works as a link name too.
pub(crate) const PYTHON_SHIMS: &[&str] = &["python", "python3"];

/// Modules that fetch packages, and the pinned tool each runs under.
const GUARDED_MODULES: &[(&str, &str)] = &[
    ("pip", "pip"),
    ("ensurepip", "pip"),
    ("pipx", "pipx"),
    ("poetry", "poetry"),
    ("pdm", "pdm"),
    ("uv", "uv"),
];

/// Interpreter options that take no value (CPython's `-h` lists them);
/// they may come grouped (`-IBs`) and before `-m`.
const FLAGS: &[u8] = b"bBdEhiIOPqRsSuvVx";

/// Whether a basename is a python shim: `python`, `pythonN` or `pythonN.M`.
pub(crate) fn is_python_name(name: &str) -> bool {
    let Some(version) = name.strip_prefix("python") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match version.split_once('.') {
        None => version.is_empty() || digits(version),
        Some((major, minor)) => digits(major) && digits(minor),
    }
}

/// The module `-m` names in a python command line, and the index of the
/// first argument after it (the module's own arguments), read as CPython
/// reads its options: grouped flags, `-W`/`-X` and their values, `-mMOD`.
/// `None` for anything else: `-c`, a script, `-`, no arguments, or an
/// option CPython would refuse anyway. Pure.
pub(crate) fn module_of(args: &[OsString]) -> Option<(&OsStr, usize)> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let bytes = arg.as_bytes();
        i += 1;
        if bytes == b"--check-hash-based-pycs" {
            i += 1;
            continue;
        }
        if bytes.starts_with(b"--") {
            // `--` ends the options (a script follows); the long options
            // are --help, --version and the like, which exit.
            if bytes == b"--" {
                return None;
            }
            continue;
        }
        let Some(group) = bytes.strip_prefix(b"-").filter(|g| !g.is_empty()) else {
            // A script, or `-` (stdin).
            return None;
        };
        for (at, letter) in group.iter().enumerate() {
            let rest = &group[at + 1..];
            match letter {
                b'm' if rest.is_empty() => return args.get(i).map(|m| (m.as_os_str(), i + 1)),
                b'm' => return Some((OsStr::from_bytes(rest), i)),
                // The rest of the group, or else the next argument, is the value.
                b'W' | b'X' => {
                    if rest.is_empty() {
                        i += 1;
                    }
                    break;
                }
                flag if FLAGS.contains(flag) => {}
                // -c, or an option CPython refuses: not a module run.
                _ => return None,
            }
        }
    }
    None
}

/// The pinned tool a module runs under: `pip` and `pip.x` are pip's.
pub(crate) fn guarded_tool(module: &OsStr) -> Option<&'static str> {
    let module = module.to_str()?;
    GUARDED_MODULES.iter().find_map(|(name, tool)| {
        let sub = module.strip_prefix(name)?;
        (sub.is_empty() || sub.starts_with('.')).then_some(*tool)
    })
}

/// A python shim: `-m pip …` guarded under pip's policy, anything else
/// the real interpreter in this process's place.
pub(crate) fn run(name: &str, argv0: OsString, args: Vec<OsString>, env: &Env) -> Result<Exit, Failure> {
    let me = std::process::id();
    let hash = args_hash(&args);
    // A version manager's shim the interpreter was handed to brought the
    // command line straight back: skip what it was, run the next one in
    // place. For `-m pip`, the guarded parent's gate already holds.
    if let Some(hops) = env.var(PYTHON_HOPS_VAR).and_then(Hops::parse) {
        if hops.came_back(me, &argv0, hash, &parent_of) {
            return Err(exec_interpreter(name, &args, env, me, hash, &hops.tried));
        }
    }
    let guarded = module_of(&args).and_then(|(module, from)| Some((guarded_tool(module)?, from)));
    let Some((tool, tool_args_from)) = guarded else {
        return Err(exec_interpreter(name, &args, env, me, hash, &[]));
    };
    let policy = policy::lookup(tool).ok_or_else(|| {
        Failure::new(
            GATE_FAILED,
            anyhow::anyhow!("{name} -m: {tool} has no pinned policy"),
        )
    })?;
    // The interpreter the guarded run will find, so that the one it is
    // handed to can tell if that brings it back. A lookup that fails is
    // reported by the run itself.
    let skip = skip_list(env.skip(), own_file_id());
    let env = match find_on_path(OsStr::new(name), env.path(), &skip) {
        Ok(found) => {
            let hops = Hops {
                via: Via::Spawn,
                pid: me,
                args: hash,
                tried: vec![found.id],
            };
            env.with(PYTHON_HOPS_VAR, hops.to_string())
        }
        Err(_) => env.clone(),
    };
    super::run(
        Invocation {
            policy,
            argv0,
            args,
            program: Program::Lookup(OsString::from(name)),
            as_shim: true,
            tool_args_from,
            argv0_is_path: true,
        },
        &env,
    )
}

/// Replaces this process with the real interpreter: the first `name` on
/// PATH that is neither cli-guard nor one of `tried`, with the arguments as
/// given. Returns only on failure.
fn exec_interpreter(
    name: &str,
    args: &[OsString],
    env: &Env,
    me: u32,
    hash: u64,
    tried: &[FileId],
) -> Failure {
    let self_id = own_file_id();
    let mut skip = skip_list(env.skip(), self_id);
    skip.extend_from_slice(tried);
    let real = match find_on_path(OsStr::new(name), env.path(), &skip) {
        Ok(real) => real,
        Err(LookupError::NotFound) => {
            return Failure::new(
                NOT_FOUND,
                anyhow::anyhow!(
                    "{name}: the real {name} was not found on PATH (after skipping cli-guard's own shims{}). \
                     Install {name}, or put its directory on PATH after the shims directory.",
                    if tried.is_empty() {
                        ""
                    } else {
                        ", and the version manager's shims that handed it back to cli-guard"
                    }
                ),
            )
        }
        Err(LookupError::NotExecutable(path)) => {
            return Failure::new(
                NOT_EXECUTABLE,
                anyhow::anyhow!(
                    "{name}: {} is not an executable file (check its permissions)",
                    path.display()
                ),
            )
        }
    };
    // argv[0] is the path the interpreter was found at, not the name as
    // typed: CPython looks a bare argv[0] up on PATH to set sys.executable,
    // and would find this shim. With the path, the interpreter reports where
    // it really lives (a virtualenv's python its own bin/, so the venv stays
    // active), and a virtualenv, uv or pip that reads sys.executable never
    // records cli-guard.
    let mut command = Command::new(&real.path);
    command.arg0(&real.path).args(args);
    // A copy of cli-guard later on PATH must skip this one in turn, or two
    // copies would hand the call back and forth; a link needs nothing.
    let inherited = skip_list(env.skip(), None);
    if self_id.is_some_and(|id| !inherited.contains(&id)) {
        let skip = skip_list(env.skip(), self_id);
        command.env(SKIP_VAR, skip_var(&skip));
    }
    let hops = Hops {
        via: Via::Exec,
        pid: me,
        args: hash,
        tried: tried.iter().copied().chain([real.id]).collect(),
    };
    command.env(PYTHON_HOPS_VAR, hops.to_string());
    let e = command.exec();
    let code = match e.raw_os_error().map(nix::errno::Errno::from_raw) {
        Some(nix::errno::Errno::ENOENT) => NOT_FOUND,
        _ => NOT_EXECUTABLE,
    };
    Failure::new(
        code,
        anyhow::anyhow!("{name}: cannot run {}: {e}", real.path.display()),
    )
}

/// The parent of `pid`, from /proc (field 4 of its stat line).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `ancestor` is `pid`'s parent, grandparent, … within a few
/// generations (a version manager's wrapper may run the interpreter as a
/// child: pyenv's pip-rehash hook does, to rehash after it).
fn descends_from(pid: u32, ancestor: u32, parent_of: &dyn Fn(u32) -> Option<u32>) -> bool {
    let mut at = pid;
    for _ in 0..16 {
        match parent_of(at) {
            Some(parent) if parent == ancestor => return true,
            Some(parent) if parent > 1 => at = parent,
            _ => return false,
        }
    }
    false
}

/// How a python shim handed a command line to an interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// By exec, in place: the same pid runs what it found.
    Exec,
    /// As the guarded child of a `-m pip` gate: the shim is an ancestor of
    /// whatever that child runs.
    Spawn,
}

/// `CLI_GUARD_PYTHON_HOPS`: a python shim handed this command line to the
/// interpreters `tried` (the last one found on PATH, after those before it
/// that came back). A version manager's shim in front of the system python
/// (pyenv's with `system`, asdf's, mise's) looks python up on PATH without
/// its own shims, finds cli-guard's first and execs it with the same
/// arguments, in the same process: without this, the two would hand the
/// command line back and forth for ever.
///
/// It came back when this process is the one the shim exec'd (for `Spawn`:
/// a descendant of the guarding shim, whose gate then already holds it),
/// run by path as such a shim runs it (a program that execs `python3` by
/// name is not taken for one), with the same arguments. The variable stays
/// in the interpreter's environment; after an exec its children have pids
/// of their own, so it never applies to them, and under a gate the same
/// command line nested in itself would be a loop anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hops {
    via: Via,
    pid: u32,
    /// [`args_hash`] of the command line handed on.
    args: u64,
    tried: Vec<FileId>,
}

impl Hops {
    /// `exec|spawn PID HASH DEV:INO,…`; `None` for anything else.
    fn parse(text: &str) -> Option<Hops> {
        let mut words = text.split(' ');
        let via = match words.next()? {
            "exec" => Via::Exec,
            "spawn" => Via::Spawn,
            _ => return None,
        };
        let pid = words.next()?.parse().ok()?;
        let args = u64::from_str_radix(words.next()?, 16).ok()?;
        let tried = words
            .next()?
            .split(',')
            .map(FileId::from_var)
            .collect::<Option<Vec<_>>>()?;
        (words.next().is_none() && !tried.is_empty()).then_some(Hops {
            via,
            pid,
            args,
            tried,
        })
    }

    /// Whether process `pid`, run as `argv0` with arguments hashing to
    /// `hash`, is this command line come back from what it was handed to.
    /// Pure but for `parent_of`.
    fn came_back(&self, pid: u32, argv0: &OsStr, hash: u64, parent_of: &dyn Fn(u32) -> Option<u32>) -> bool {
        let same_process = match self.via {
            Via::Exec => pid == self.pid,
            Via::Spawn => descends_from(pid, self.pid, parent_of),
        };
        same_process && hash == self.args && argv0.as_bytes().contains(&b'/')
    }
}

impl std::fmt::Display for Hops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match self.via {
            Via::Exec => "exec",
            Via::Spawn => "spawn",
        };
        let tried: Vec<String> = self.tried.iter().map(|id| id.to_var()).collect();
        write!(f, "{via} {} {:016x} {}", self.pid, self.args, tried.join(","))
    }
}

/// FNV-1a over the arguments (not argv[0]), each ended by a byte no UTF-8
/// text holds. Pure.
fn args_hash(args: &[OsString]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in args
        .iter()
        .flat_map(|a| a.as_bytes().iter().copied().chain([0xff]))
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pips_version_is_read_from_its_dist_info_name() {
        assert_eq!(pip_version("pip-26.0.1.dist-info"), Some((26, 0)));
        assert_eq!(pip_version("pip-23.2.1.dist-info"), Some((23, 2)));
        assert_eq!(pip_version("pipx-1.7.dist-info"), None);
        assert_eq!(pip_version("pip-x.dist-info"), None);
        assert!(pip_version("pip-26.0.dist-info") >= Some(PIP_IN_PROCESS_BUILD_DEPS));
    }

    fn module(args: &[&str]) -> Option<(String, usize)> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        module_of(&args).map(|(m, from)| (m.to_string_lossy().into_owned(), from))
    }

    fn tool(args: &[&str]) -> Option<&'static str> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        module_of(&args).and_then(|(m, _)| guarded_tool(m))
    }

    #[test]
    fn python_names() {
        for name in [
            "python",
            "python3",
            "python2",
            "python3.11",
            "python3.13",
            "python10.1",
        ] {
            assert!(is_python_name(name), "{name}");
        }
        for name in [
            "pythonw",
            "python3-config",
            "python3.11-config",
            "python3.",
            "python.3",
            "python3.x",
            "ipython",
            "py",
            "pip",
        ] {
            assert!(!is_python_name(name), "{name}");
        }
    }

    #[test]
    fn dash_m_in_every_spelling() {
        assert_eq!(module(&["-m", "pip", "install", "x"]), Some(("pip".into(), 2)));
        assert_eq!(module(&["-mpip", "install"]), Some(("pip".into(), 1)));
        assert_eq!(module(&["-I", "-m", "pip"]), Some(("pip".into(), 3)));
        assert_eq!(module(&["-IBs", "-m", "uv", "sync"]), Some(("uv".into(), 3)));
        assert_eq!(module(&["-Im", "pip"]), Some(("pip".into(), 2)));
        assert_eq!(module(&["-Impdm", "add"]), Some(("pdm".into(), 1)));
        assert_eq!(
            module(&["-u", "-E", "-OO", "-m", "poetry"]),
            Some(("poetry".into(), 5))
        );
    }

    #[test]
    fn option_values_are_skipped() {
        assert_eq!(module(&["-W", "ignore", "-m", "pip"]), Some(("pip".into(), 4)));
        assert_eq!(module(&["-Wignore", "-m", "pip"]), Some(("pip".into(), 3)));
        assert_eq!(module(&["-X", "utf8", "-m", "pip"]), Some(("pip".into(), 4)));
        assert_eq!(module(&["-sXdev", "-m", "pip"]), Some(("pip".into(), 3)));
        assert_eq!(
            module(&["--check-hash-based-pycs", "never", "-m", "pip"]),
            Some(("pip".into(), 4))
        );
        // The value of -W is not -m.
        assert_eq!(module(&["-W", "-m", "pip"]), None);
    }

    #[test]
    fn anything_but_dash_m_is_no_module() {
        for args in [
            &[][..],
            &["-c", "import pip"],
            &["-Ic", "print(1)"],
            &["script.py", "-m", "pip"],
            &["-", "-m", "pip"],
            &["--", "-m", "pip"],
            &["-z", "-m", "pip"],
            &["-m"],
        ] {
            assert_eq!(module(args), None, "{args:?}");
        }
        assert_eq!(module(&["--version"]), None);
    }

    #[test]
    fn fetching_modules_run_under_their_tool() {
        assert_eq!(tool(&["-m", "pip", "download", "six"]), Some("pip"));
        assert_eq!(tool(&["-m", "ensurepip"]), Some("pip"));
        assert_eq!(tool(&["-m", "pip._internal", "install"]), Some("pip"));
        assert_eq!(tool(&["-m", "pipx", "run", "x"]), Some("pipx"));
        assert_eq!(tool(&["-m", "poetry", "lock"]), Some("poetry"));
        assert_eq!(tool(&["-m", "pdm", "sync"]), Some("pdm"));
        assert_eq!(tool(&["-m", "uv", "pip", "install"]), Some("uv"));
        for other in [
            "venv",
            "http.server",
            "pytest",
            "pipenv",
            "pipdeptree",
            "uvicorn",
            "json.tool",
        ] {
            assert_eq!(tool(&["-m", other]), None, "{other}");
        }
    }

    #[test]
    fn hops_round_trip_and_refuse_anything_else() {
        let hops = Hops {
            via: Via::Spawn,
            pid: 42,
            args: 0xabc,
            tried: vec![
                FileId::from_var("2049:77").unwrap(),
                FileId::from_var("1:2").unwrap(),
            ],
        };
        let text = hops.to_string();
        assert_eq!(text, "spawn 42 0000000000000abc 2049:77,1:2");
        assert_eq!(Hops::parse(&text), Some(hops));
        for bad in [
            "",
            "exec",
            "exec 1 2",
            "exec 1 2 ",
            "fork 1 2 3:4",
            "exec x 2 3:4",
            "exec 1 zz 3:4",
            "exec 1 2 3:4 extra",
            "exec 1 2 3:x",
        ] {
            assert_eq!(Hops::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_same_command_line_in_the_same_process_comes_back() {
        let args: Vec<OsString> = ["-m", "pip", "install", "six"]
            .iter()
            .map(OsString::from)
            .collect();
        let hash = args_hash(&args);
        let exec = Hops {
            via: Via::Exec,
            pid: 10,
            args: hash,
            tried: vec![FileId::from_var("1:2").unwrap()],
        };
        // 12 is a child of 11, a child of 10, a child of init.
        let tree = |pid: u32| match pid {
            12 => Some(11),
            11 => Some(10),
            10 => Some(1),
            _ => None,
        };
        let by_path = OsStr::new("/home/u/.local/share/cli-guard/shims/python3");
        assert!(exec.came_back(10, by_path, hash, &tree));
        // A child of the interpreter, another command line, or a program
        // that execs python3 by name: not a forwarder.
        assert!(!exec.came_back(11, by_path, hash, &tree));
        assert!(!exec.came_back(10, by_path, args_hash(&args[..2]), &tree));
        assert!(!exec.came_back(10, OsStr::new("python3"), hash, &tree));
        let spawn = Hops {
            via: Via::Spawn,
            ..exec
        };
        assert!(spawn.came_back(11, by_path, hash, &tree));
        assert!(spawn.came_back(12, by_path, hash, &tree));
        assert!(!spawn.came_back(10, by_path, hash, &tree));
        assert!(!spawn.came_back(99, by_path, hash, &tree));
    }

    #[test]
    fn ancestry_is_bounded() {
        // A parent chain that never reaches the ancestor (or loops).
        assert!(!descends_from(5, 1000, &|pid| Some(pid + 1)));
        assert!(!descends_from(5, 1000, &|_| Some(5)));
        assert!(descends_from(5, 7, &|pid| Some(pid + 1)));
    }

    #[test]
    fn the_hash_tells_argument_boundaries_apart() {
        let a: Vec<OsString> = ["ab", "c"].iter().map(OsString::from).collect();
        let b: Vec<OsString> = ["a", "bc"].iter().map(OsString::from).collect();
        assert_ne!(args_hash(&a), args_hash(&b));
        assert_eq!(args_hash(&a), args_hash(&a.clone()));
    }

    #[test]
    fn guarded_modules_are_pinned_tools() {
        for (_, tool) in GUARDED_MODULES {
            assert!(policy::lookup(tool).is_some(), "{tool}");
        }
        for name in PYTHON_SHIMS {
            assert!(is_python_name(name) && policy::lookup(name).is_none(), "{name}");
        }
    }
}
