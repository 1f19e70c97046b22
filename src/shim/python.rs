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

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::invocation::{Invocation, Program};
use super::locate::{find_on_path, own_file_id, skip_list, skip_var, LookupError};
use crate::env::{Env, SKIP_VAR};
use crate::exit::{Exit, Failure, GATE_FAILED, NOT_EXECUTABLE, NOT_FOUND};
use crate::policy;

/// The python names `cli-guard policy --names` (and so install.sh and
/// shims/) give a shim. Any `pythonX.Y` works as a link name too.
pub const PYTHON_SHIMS: &[&str] = &["python", "python3"];

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
pub fn is_python_name(name: &str) -> bool {
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
pub fn module_of(args: &[OsString]) -> Option<(&OsStr, usize)> {
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
pub fn guarded_tool(module: &OsStr) -> Option<&'static str> {
    let module = module.to_str()?;
    GUARDED_MODULES.iter().find_map(|(name, tool)| {
        let sub = module.strip_prefix(name)?;
        (sub.is_empty() || sub.starts_with('.')).then_some(*tool)
    })
}

/// A python shim: `-m pip …` guarded under pip's policy, anything else
/// the real interpreter in this process's place.
pub fn run(name: &str, argv0: OsString, args: Vec<OsString>, env: &Env) -> Result<Exit, Failure> {
    let guarded = module_of(&args).and_then(|(module, from)| Some((guarded_tool(module)?, from)));
    let Some((tool, tool_args_from)) = guarded else {
        return Err(exec_interpreter(name, &argv0, &args, env));
    };
    let policy = policy::lookup(tool).ok_or_else(|| {
        Failure::new(
            GATE_FAILED,
            anyhow::anyhow!("{name} -m: {tool} has no pinned policy"),
        )
    })?;
    super::run(
        Invocation {
            policy,
            argv0,
            args,
            program: Program::Lookup(OsString::from(name)),
            as_shim: true,
            tool_args_from,
        },
        env,
    )
}

/// Replaces this process with the real interpreter: the first `name` on
/// PATH that is not cli-guard, with argv as given. Returns only on failure.
fn exec_interpreter(name: &str, argv0: &OsStr, args: &[OsString], env: &Env) -> Failure {
    let self_id = own_file_id();
    let skip = skip_list(env.skip(), self_id);
    let real = match find_on_path(OsStr::new(name), env.path(), &skip) {
        Ok(real) => real,
        Err(LookupError::NotFound) => {
            return Failure::new(
                NOT_FOUND,
                anyhow::anyhow!(
                    "{name}: the real {name} was not found on PATH (after skipping cli-guard's own shims). \
                     Install {name}, or put its directory on PATH after the shims directory."
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
    let mut command = Command::new(&real.path);
    command.arg0(argv0).args(args);
    // A copy of cli-guard later on PATH must skip this one in turn, or two
    // copies would hand the call back and forth; a link needs nothing.
    let inherited = skip_list(env.skip(), None);
    if self_id.is_some_and(|id| !inherited.contains(&id)) {
        command.env(SKIP_VAR, skip_var(&skip));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn guarded_modules_are_pinned_tools() {
        for (_, tool) in GUARDED_MODULES {
            assert!(policy::lookup(tool).is_some(), "{tool}");
        }
        for name in PYTHON_SHIMS {
            assert!(is_python_name(name) && policy::lookup(name).is_none(), "{name}");
        }
    }
}
