//! `cli-guard doctor`: whether strict mode works on this machine, and if
//! not, what blocks it and the exact remedy; then whether this shell meets
//! the gate for every guarded name (`coverage`).
//!
//! It makes the namespaces a strict invocation makes (`sys::netns::probe`:
//! user and network namespace, `lo` up, the local routes, the second user
//! namespace), then reads the kernel's knobs that are known to refuse them
//! ([`Knobs::read`], the only I/O here besides the probe) and names the
//! cause with pure functions over what it read ([`diagnose`], [`report`]),
//! which the unit tests drive with made-up values.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use nix::errno::Errno;

use super::args::{self, Parsed, Usage};
use super::{coverage, layout};
use crate::env::{Env, NETNS_VAR, STRICT_VAR};
use crate::exit::{Exit, Failure, STRICT_UNAVAILABLE, SUCCESS};
use crate::shim::{self, StrictSetting};
use crate::sys::netns::{Layer, NamespaceError};

const USAGE: Usage = Usage {
    command: "doctor",
    next_step: "see cli-guard doctor --help",
};

const HELP: &str = "\
usage: cli-guard doctor

Whether strict mode works here: makes the user and network namespace a
strict invocation makes (rootless; nothing runs in it), and reads the kernel
settings known to refuse it (kernel.unprivileged_userns_clone,
user.max_user_namespaces, user.max_net_namespaces,
kernel.apparmor_restrict_unprivileged_userns, signs of a container). When it
does not work, prints what refused, the cause and the command that fixes it.
Also shows CLI_GUARD_STRICT.

Then the shell integration: whether `cli-guard init` is loaded in the shell
that ran doctor, each guarded name that does not meet the gate there (typed,
or looked up on PATH by a program such as make), what comes before the
shims on PATH for it (an active virtualenv, nvm, volta, mise, asdf, pyenv,
conda, corepack, a project's node_modules/.bin), and the line that fixes it.

exit: 0 strict mode works, 1 it does not (or CLI_GUARD_STRICT is not a
setting), 2 usage error. The shell integration does not change it.
";

/// What a fix persists into, so that it survives a reboot.
const SYSCTL_FILE: &str = "/etc/sysctl.d/60-cli-guard.conf";
/// The namespace limit the fix sets (Debian's and Fedora's default order of
/// magnitude; any value well above the number of concurrent builds works).
const NAMESPACE_LIMIT: u64 = 15000;

/// Reads the arguments of `cli-guard doctor`: none but `--help`.
fn parse_doctor_args(args: &[OsString]) -> Result<Parsed<()>, Failure> {
    USAGE.no_arguments(args)
}

/// The kernel's settings and the signs of a container, as read (`None`: the
/// file is absent or unreadable, i.e. the knob does not exist here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Knobs {
    /// `kernel.unprivileged_userns_clone` (Debian's older kernels; 0 turns
    /// unprivileged user namespaces off).
    userns_clone: Option<u64>,
    /// `user.max_user_namespaces`.
    max_user: Option<u64>,
    /// `user.max_net_namespaces`.
    max_net: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 on).
    apparmor_restrict: Option<u64>,
    /// `kernel.yama.ptrace_scope`: 0 or absent lets a tool ptrace any other
    /// process of the same user, around the namespace.
    ptrace_scope: Option<u64>,
    /// Whether the kernel has user namespaces at all (`/proc/self/ns/user`).
    has_userns: bool,
    /// What says this runs in a container, if anything does.
    container: Option<String>,
    /// Whether this process runs as uid 0 (which the first and the
    /// AppArmor knob do not restrict).
    root: bool,
    /// Where `install.sh` put this binary (`PREFIX` of `PREFIX/bin/cli-guard`).
    prefix: Option<String>,
}

impl Knobs {
    /// Reads them from /proc and the filesystem.
    fn read() -> Knobs {
        let number = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let container = container_hint(
            Path::new("/.dockerenv").exists(),
            Path::new("/run/.containerenv").exists(),
            std::fs::read("/proc/1/environ").ok().as_deref(),
            std::fs::read_to_string("/proc/1/cgroup").ok().as_deref(),
        );
        Knobs {
            userns_clone: number("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user: number("/proc/sys/user/max_user_namespaces"),
            max_net: number("/proc/sys/user/max_net_namespaces"),
            apparmor_restrict: number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            ptrace_scope: number("/proc/sys/kernel/yama/ptrace_scope"),
            has_userns: Path::new("/proc/self/ns/user").exists(),
            container,
            root: nix::unistd::geteuid().is_root(),
            prefix: std::env::current_exe()
                .ok()
                .and_then(|exe| layout::install_prefix(&exe).map(|p| p.display().to_string())),
        }
    }

    /// One line per knob, for the report's `checked:` part.
    fn lines(&self) -> Vec<String> {
        let value = |v: Option<u64>| v.map_or_else(|| "absent".to_string(), |v| v.to_string());
        vec![
            format!("kernel.unprivileged_userns_clone = {}", value(self.userns_clone)),
            format!("user.max_user_namespaces = {}", value(self.max_user)),
            format!("user.max_net_namespaces = {}", value(self.max_net)),
            format!(
                "kernel.apparmor_restrict_unprivileged_userns = {}",
                value(self.apparmor_restrict)
            ),
            format!(
                "container: {}",
                self.container.as_deref().unwrap_or("none detected")
            ),
            match self.ptrace_scope {
                Some(scope) if scope > 0 => format!("kernel.yama.ptrace_scope = {scope}"),
                scope => format!(
                    "kernel.yama.ptrace_scope = {}: note: a tool outside strict mode (or a package's script, of \
                     the tool it runs under) may ptrace other processes of yours; strict mode's user namespace \
                     keeps everything outside it out of reach whatever this says. `sudo sysctl -w \
                     kernel.yama.ptrace_scope=1` closes the rest",
                    scope.map_or_else(|| "absent".to_string(), |s| s.to_string())
                ),
            },
        ]
    }
}

/// What says this process runs in a container: Docker's and Podman's marker
/// files, `container=` in init's environment (systemd-nspawn, LXC, Podman),
/// or init's cgroup path naming a container runtime.
fn container_hint(
    dockerenv: bool,
    containerenv: bool,
    init_environ: Option<&[u8]>,
    init_cgroup: Option<&str>,
) -> Option<String> {
    if dockerenv {
        return Some("/.dockerenv exists (Docker)".to_string());
    }
    if containerenv {
        return Some("/run/.containerenv exists (Podman)".to_string());
    }
    if let Some(value) = init_environ.and_then(|environ| {
        environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(b"container="))
    }) {
        return Some(format!(
            "container={} in /proc/1/environ",
            String::from_utf8_lossy(value)
        ));
    }
    let cgroup = init_cgroup?;
    ["docker", "kubepods", "containerd", "libpod", "lxc"]
        .into_iter()
        .find(|hint| cgroup.contains(hint))
        .map(|hint| format!("/proc/1/cgroup mentions {hint}"))
}

/// Why the namespace was refused, and what fixes it (each fix a line the
/// user can run or follow).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Diagnosis {
    cause: String,
    fixes: Vec<String>,
}

/// `sudo sysctl -w NAME=VALUE`, and the line that keeps it after a reboot.
fn sysctl_fixes(settings: &[(&str, u64)]) -> Vec<String> {
    let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    vec![
        format!("sudo sysctl -w {}", pairs.join(" ")),
        format!(
            "to keep it after a reboot: printf '{}\\n' | sudo tee {SYSCTL_FILE}",
            pairs.join("\\n")
        ),
    ]
}

/// The namespace limits that are 0, by name.
fn zero_limits(knobs: &Knobs) -> Vec<&'static str> {
    [
        ("user.max_user_namespaces", knobs.max_user),
        ("user.max_net_namespaces", knobs.max_net),
    ]
    .into_iter()
    .filter(|(_, value)| *value == Some(0))
    .map(|(name, _)| name)
    .collect()
}

/// Raising the namespace limits: each one below [`NAMESPACE_LIMIT`] to it,
/// or, when neither is, the user namespaces' to twice what it is.
fn limit_fixes(knobs: &Knobs) -> Vec<String> {
    let low: Vec<(&str, u64)> = [
        ("user.max_user_namespaces", knobs.max_user),
        ("user.max_net_namespaces", knobs.max_net),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_some_and(|v| v < NAMESPACE_LIMIT))
    .map(|(name, _)| (name, NAMESPACE_LIMIT))
    .collect();
    if low.is_empty() {
        let doubled = knobs.max_user.unwrap_or(NAMESPACE_LIMIT).saturating_mul(2);
        return sysctl_fixes(&[("user.max_user_namespaces", doubled)]);
    }
    sysctl_fixes(&low)
}

/// Names the cause of a refusal from the errno and the knobs.
fn diagnose(errno: Errno, knobs: &Knobs) -> Diagnosis {
    let zero = zero_limits(knobs);
    let limits = |cause: String| Diagnosis {
        cause,
        fixes: limit_fixes(knobs),
    };
    let refused = matches!(errno, Errno::EPERM | Errno::EACCES);
    if !knobs.has_userns {
        return Diagnosis {
            cause: "this kernel has no user namespaces (/proc/self/ns/user is absent: built without CONFIG_USER_NS)"
                .to_string(),
            fixes: vec!["use a kernel built with CONFIG_USER_NS and CONFIG_NET_NS (every major distribution's is)"
                .to_string()],
        };
    }
    if !zero.is_empty() && (errno == Errno::ENOSPC || refused) {
        return limits(format!(
            "{} is 0: the kernel allows no new namespaces of that kind",
            zero.join(" and ")
        ));
    }
    if errno == Errno::ENOSPC {
        return limits(format!(
            "a namespace limit is reached (user.max_user_namespaces = {}, user.max_net_namespaces = {}; \
             every process's namespaces count, per user)",
            knobs
                .max_user
                .map_or_else(|| "absent".to_string(), |v| v.to_string()),
            knobs
                .max_net
                .map_or_else(|| "absent".to_string(), |v| v.to_string()),
        ));
    }
    if refused && knobs.userns_clone == Some(0) {
        return Diagnosis {
            cause:
                "kernel.unprivileged_userns_clone is 0: this kernel (Debian's older sysctl) lets only root \
                    make user namespaces"
                    .to_string(),
            fixes: sysctl_fixes(&[("kernel.unprivileged_userns_clone", 1)]),
        };
    }
    if refused && knobs.apparmor_restrict == Some(1) {
        let prefix = knobs.prefix.as_deref().unwrap_or("PREFIX");
        return Diagnosis {
            cause:
                "kernel.apparmor_restrict_unprivileged_userns is 1: AppArmor (Ubuntu 23.10 and later) lets \
                    only programs with a profile that allows it make user namespaces"
                    .to_string(),
            fixes: vec![
                format!(
                    "from the cli-guard checkout: sudo ./install.sh --prefix {prefix} --apparmor \
                     (a profile that allows user namespaces for {prefix}/bin/cli-guard only)"
                ),
                "or, for every program: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
                    .to_string(),
            ],
        };
    }
    if refused {
        if let Some(container) = &knobs.container {
            return Diagnosis {
                cause: format!(
                    "this runs in a container ({container}) whose seccomp filter refuses unshare(CLONE_NEWUSER) \
                     (Docker's default profile does)"
                ),
                fixes: vec![
                    "run the tool outside the container, or start the container with a seccomp profile that \
                     allows unshare and clone with CLONE_NEWUSER"
                        .to_string(),
                    "bluntly: docker run --security-opt seccomp=unconfined ... (podman: the same option)".to_string(),
                ],
            };
        }
        return Diagnosis {
            cause: "something outside cli-guard refused it with none of the known settings set: a seccomp \
                    filter, a security module's policy (SELinux, AppArmor), or a sandbox this shell runs in"
                .to_string(),
            fixes: vec![
                "check with `unshare --user --map-root-user --net true`; strict mode works wherever that does"
                    .to_string(),
            ],
        };
    }
    if errno == Errno::EUSERS {
        return Diagnosis {
            cause: "user namespaces are nested as deep as the kernel allows (32 levels)".to_string(),
            fixes: vec!["run the tool from a less deeply nested sandbox".to_string()],
        };
    }
    if errno == Errno::EINVAL {
        return Diagnosis {
            cause: "the kernel refused the request as invalid: most likely it was built without network \
                    namespaces (CONFIG_NET_NS)"
                .to_string(),
            fixes: vec!["use a kernel built with CONFIG_USER_NS and CONFIG_NET_NS".to_string()],
        };
    }
    Diagnosis {
        cause: format!("an unexpected refusal ({})", errno.desc()),
        fixes: vec![
            "check with `unshare --user --map-root-user --net true`, and report it with this output at \
             cli-guard's issue tracker"
                .to_string(),
        ],
    }
}

/// Notes for a root shell where strict mode works: the knobs that do not
/// bind root but refuse every other user.
fn root_caveats(knobs: &Knobs) -> Vec<String> {
    if !knobs.root {
        return Vec::new();
    }
    if knobs.userns_clone != Some(0) && knobs.apparmor_restrict != Some(1) {
        return Vec::new();
    }
    let diagnosis = diagnose(Errno::EPERM, knobs);
    std::iter::once(format!(
        "note: this runs as root; other users are refused: {}",
        diagnosis.cause
    ))
    .chain(diagnosis.fixes.into_iter().map(|fix| format!("fix: {fix}")))
    .collect()
}

/// One line per layer of strict mode beyond the network namespace: on,
/// with what it closes, or off and why (under `auto` the tool then runs
/// without it; under `require` it does not run).
fn layer_lines(off: &BTreeMap<Layer, String>) -> Vec<String> {
    Layer::ALL
        .iter()
        .map(|layer| {
            let closes = match layer {
                Layer::Mounts => {
                    "everything read-only but the project, temp and the tool's caches; its own binary, \
                     shims, audit log, home directory and /etc never writable"
                }
                Layer::Pid => "a PID namespace: no signal outside, what the tool leaves behind ends with it",
                Layer::Seccomp => {
                    "no unix socket (each a row), no TIOCSTI into the terminal, no vsock, no io_uring"
                }
            };
            match off.get(layer) {
                None => format!("  layer {}: on ({closes})", layer.name()),
                Some(why) => format!("  layer {}: off: {why} (it would give: {closes})", layer.name()),
            }
        })
        .collect()
}

/// What `CLI_GUARD_STRICT` is, and whether it is a setting at all.
fn strict_line(value: Option<&str>) -> (String, bool) {
    let shown = match value {
        None => "CLI_GUARD_STRICT is not set".to_string(),
        Some(v) => format!("{STRICT_VAR}={v:?}"),
    };
    match StrictSetting::parse(value) {
        Ok(StrictSetting::Auto) => (
            format!(
                "{shown}: auto (the default): enforce-mode tools that fetch, install or build run in a namespace \
                 where the kernel allows it, else behind the plain proxy"
            ),
            true,
        ),
        Ok(StrictSetting::Require) => (
            format!("{shown}: require: where the namespace cannot be made, the tool is not run (exit 125)"),
            true,
        ),
        Ok(StrictSetting::Off) => (
            format!("{shown}: off: every tool runs behind the plain proxy only"),
            true,
        ),
        Err(e) => (format!("{shown}: {e}; until then every guarded tool fails (exit 125)"), false),
    }
}

/// The whole report and the exit code, from what the probe and the reads
/// found.
fn report(
    probe: &Result<(), NamespaceError>,
    layers_off: &BTreeMap<Layer, String>,
    knobs: &Knobs,
    strict: Option<&str>,
    in_netns: bool,
) -> (String, u8) {
    let mut lines = Vec::new();
    let works = probe.is_ok();
    match probe {
        Ok(()) => {
            lines.push("strict mode: works (user and network namespaces, rootless)".to_string());
            lines.push(
                "checked: a user and network namespace with lo up, local routes for 0.0.0.0/0 and ::/0, and a \
                 second user namespace without capabilities over it"
                    .to_string(),
            );
            lines.extend(layer_lines(layers_off));
        }
        Err(error) => {
            let diagnosis = diagnose(error.errno, knobs);
            lines.push(format!("strict mode: not available: {error}"));
            lines.push(format!("cause: {}", diagnosis.cause));
            lines.extend(diagnosis.fixes.into_iter().map(|fix| format!("fix: {fix}")));
            lines.push("checked:".to_string());
        }
    }
    lines.extend(knobs.lines().into_iter().map(|line| format!("  {line}")));
    if works {
        lines.extend(root_caveats(knobs));
    }
    if in_netns {
        lines.push(format!(
            "{NETNS_VAR}=1: this runs inside a strict invocation's namespace; tools guarded from here are held \
             by its gate either way"
        ));
    }
    let (strict_line, strict_ok) = strict_line(strict);
    lines.push(strict_line);
    if !works {
        let then = match StrictSetting::parse(strict) {
            Ok(StrictSetting::Require) => "until it is fixed, enforce-mode tools do not run (exit 125)",
            Ok(StrictSetting::Off) => "tools run behind the plain proxy as asked",
            _ => {
                "until it is fixed, enforce-mode tools run behind the plain proxy only (start row: isolation \
                 \"none\"), where a client that ignores the proxy variables is not stopped"
            }
        };
        lines.push(then.to_string());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    let code = if works && strict_ok {
        SUCCESS
    } else {
        STRICT_UNAVAILABLE
    };
    (text, code)
}

/// `cli-guard doctor`.
pub(super) fn doctor(args: &[OsString], env: &Env) -> Result<Exit, Failure> {
    let Some(()) = parse_doctor_args(args)?.or_print(HELP, args::VERSION) else {
        return Ok(Exit::SUCCESS);
    };
    let (probe, layers_off) = shim::probe_strict_mode();
    let (text, code) = report(&probe, &layers_off, &Knobs::read(), env.strict(), env.in_netns());
    print!("{text}");
    let shell = coverage::Context::read(env);
    print!("{}", coverage::doctor_section(&shell, &shell.look_up(env)));
    Ok(Exit::Code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::testing::{os, usage_text};

    /// A machine where nothing is set to refuse.
    fn open() -> Knobs {
        Knobs {
            userns_clone: None,
            max_user: Some(63000),
            max_net: Some(63000),
            apparmor_restrict: None,
            ptrace_scope: Some(1),
            has_userns: true,
            container: None,
            root: false,
            prefix: Some("/home/u/.local".to_string()),
        }
    }

    fn refused(step: &'static str, errno: Errno) -> Result<(), NamespaceError> {
        Err(NamespaceError {
            step,
            errno,
            socket: None,
            layer: None,
        })
    }

    const UNSHARE: &str = "unshare(CLONE_NEWUSER|CLONE_NEWNET)";

    #[test]
    fn only_help_is_taken() {
        assert_eq!(parse_doctor_args(&os(&[])).unwrap(), Parsed::Args(()));
        assert_eq!(parse_doctor_args(&os(&["-h"])).unwrap(), Parsed::Help);
        assert!(usage_text(parse_doctor_args(&os(&["x"]))).contains("unexpected argument \"x\""));
        assert!(usage_text(parse_doctor_args(&os(&["--bogus"]))).contains("see cli-guard doctor --help"));
    }

    #[test]
    fn debian_sysctl_at_zero() {
        let knobs = Knobs {
            userns_clone: Some(0),
            ..open()
        };
        let d = diagnose(Errno::EPERM, &knobs);
        assert!(d.cause.contains("kernel.unprivileged_userns_clone is 0"), "{d:?}");
        assert_eq!(d.fixes[0], "sudo sysctl -w kernel.unprivileged_userns_clone=1");
        assert!(d.fixes[1].contains("kernel.unprivileged_userns_clone=1"), "{d:?}");
        assert!(d.fixes[1].contains("/etc/sysctl.d/"), "{d:?}");
    }

    #[test]
    fn namespace_limit_at_zero_gives_enospc() {
        let knobs = Knobs {
            max_user: Some(0),
            ..open()
        };
        let d = diagnose(Errno::ENOSPC, &knobs);
        assert_eq!(
            d.cause,
            "user.max_user_namespaces is 0: the kernel allows no new namespaces of that kind"
        );
        assert_eq!(d.fixes[0], "sudo sysctl -w user.max_user_namespaces=15000");
        let knobs = Knobs {
            max_user: Some(0),
            max_net: Some(0),
            ..open()
        };
        let d = diagnose(Errno::ENOSPC, &knobs);
        assert!(d
            .cause
            .starts_with("user.max_user_namespaces and user.max_net_namespaces is 0"));
        assert_eq!(
            d.fixes[0],
            "sudo sysctl -w user.max_user_namespaces=15000 user.max_net_namespaces=15000"
        );
    }

    #[test]
    fn enospc_with_limits_left_is_the_limit_reached() {
        let d = diagnose(Errno::ENOSPC, &open());
        assert!(d.cause.starts_with("a namespace limit is reached"), "{d:?}");
        assert!(d.cause.contains("user.max_user_namespaces = 63000"), "{d:?}");
        assert_eq!(d.fixes[0], "sudo sysctl -w user.max_user_namespaces=126000");
        let low = Knobs {
            max_net: Some(10),
            ..open()
        };
        assert_eq!(
            diagnose(Errno::ENOSPC, &low).fixes[0],
            "sudo sysctl -w user.max_net_namespaces=15000"
        );
    }

    #[test]
    fn ubuntu_apparmor_restriction() {
        let knobs = Knobs {
            apparmor_restrict: Some(1),
            ptrace_scope: Some(1),
            ..open()
        };
        // AppArmor lets the unshare through and refuses what needs a
        // capability in the new namespace.
        for errno in [Errno::EPERM, Errno::EACCES] {
            let d = diagnose(errno, &knobs);
            assert!(
                d.cause.contains("apparmor_restrict_unprivileged_userns is 1"),
                "{d:?}"
            );
            assert!(
                d.fixes[0].contains("sudo ./install.sh --prefix /home/u/.local --apparmor"),
                "{d:?}"
            );
            assert!(
                d.fixes[1].contains("kernel.apparmor_restrict_unprivileged_userns=0"),
                "{d:?}"
            );
        }
        let unknown_prefix = Knobs {
            prefix: None,
            ..knobs
        };
        assert!(diagnose(Errno::EPERM, &unknown_prefix).fixes[0].contains("--prefix PREFIX --apparmor"));
    }

    #[test]
    fn apparmor_set_to_zero_is_not_blamed() {
        let knobs = Knobs {
            apparmor_restrict: Some(0),
            ptrace_scope: Some(1),
            ..open()
        };
        assert!(diagnose(Errno::EPERM, &knobs)
            .cause
            .contains("none of the known settings"));
    }

    #[test]
    fn container_with_seccomp() {
        let knobs = Knobs {
            container: Some("/.dockerenv exists (Docker)".to_string()),
            ..open()
        };
        let d = diagnose(Errno::EPERM, &knobs);
        assert!(
            d.cause.contains("container (/.dockerenv exists (Docker))"),
            "{d:?}"
        );
        assert!(d.cause.contains("seccomp"), "{d:?}");
        assert!(
            d.fixes
                .iter()
                .any(|f| f.contains("--security-opt seccomp=unconfined")),
            "{d:?}"
        );
    }

    #[test]
    fn a_known_knob_wins_over_the_container() {
        let knobs = Knobs {
            container: Some("x".to_string()),
            userns_clone: Some(0),
            ..open()
        };
        assert!(diagnose(Errno::EPERM, &knobs)
            .cause
            .contains("unprivileged_userns_clone"));
    }

    #[test]
    fn eperm_with_nothing_known_says_so() {
        let d = diagnose(Errno::EPERM, &open());
        assert!(d.cause.contains("none of the known settings"), "{d:?}");
        assert!(
            d.fixes[0].contains("unshare --user --map-root-user --net true"),
            "{d:?}"
        );
    }

    #[test]
    fn no_user_namespaces_in_the_kernel() {
        let knobs = Knobs {
            has_userns: false,
            ..open()
        };
        assert!(diagnose(Errno::EINVAL, &knobs).cause.contains("CONFIG_USER_NS"));
        assert!(diagnose(Errno::EINVAL, &open()).cause.contains("CONFIG_NET_NS"));
    }

    #[test]
    fn container_hints() {
        assert_eq!(container_hint(false, false, None, None), None);
        assert_eq!(
            container_hint(true, false, None, None).as_deref(),
            Some("/.dockerenv exists (Docker)")
        );
        assert_eq!(
            container_hint(false, true, None, None).as_deref(),
            Some("/run/.containerenv exists (Podman)")
        );
        assert_eq!(
            container_hint(false, false, Some(b"PATH=/bin\0container=lxc\0"), None).as_deref(),
            Some("container=lxc in /proc/1/environ")
        );
        assert_eq!(
            container_hint(
                false,
                false,
                Some(b"PATH=/bin\0"),
                Some("0::/kubepods/besteffort/pod1\n")
            )
            .as_deref(),
            Some("/proc/1/cgroup mentions kubepods")
        );
        assert_eq!(container_hint(false, false, None, Some("0::/\n")), None);
    }

    #[test]
    fn each_layer_is_reported_on_or_off_with_why() {
        let mut off = BTreeMap::new();
        off.insert(
            Layer::Seccomp,
            "seccomp (the refusing filter): Invalid argument (EINVAL)".to_string(),
        );
        let (text, code) = report(&Ok(()), &off, &open(), None, false);
        assert_eq!(code, SUCCESS, "{text}");
        assert!(text.contains("layer mounts: on ("), "{text}");
        assert!(text.contains("layer pid: on ("), "{text}");
        assert!(
            text.contains("layer seccomp: off: seccomp (the refusing filter): Invalid argument (EINVAL)"),
            "{text}"
        );
    }

    #[test]
    fn report_when_it_works() {
        let (text, code) = report(&Ok(()), &BTreeMap::new(), &open(), None, false);
        assert_eq!(code, SUCCESS);
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "strict mode: works (user and network namespaces, rootless)"
        );
        assert!(text.contains("  user.max_user_namespaces = 63000\n"), "{text}");
        assert!(
            text.contains("  kernel.unprivileged_userns_clone = absent\n"),
            "{text}"
        );
        assert!(text.contains("CLI_GUARD_STRICT is not set: auto"), "{text}");
        assert!(!text.contains("cause:"), "{text}");
    }

    #[test]
    fn report_when_refused() {
        let knobs = Knobs {
            max_user: Some(0),
            ..open()
        };
        let (text, code) = report(
            &refused(UNSHARE, Errno::ENOSPC),
            &BTreeMap::new(),
            &knobs,
            Some("require"),
            false,
        );
        assert_eq!(code, STRICT_UNAVAILABLE);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "strict mode: not available: unshare(CLONE_NEWUSER|CLONE_NEWNET): No space left on device (ENOSPC)"
        );
        assert!(
            lines[1].starts_with("cause: user.max_user_namespaces is 0"),
            "{text}"
        );
        assert_eq!(lines[2], "fix: sudo sysctl -w user.max_user_namespaces=15000");
        assert!(text.contains("CLI_GUARD_STRICT=\"require\": require"), "{text}");
        assert!(
            text.contains("enforce-mode tools do not run (exit 125)"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_strict_setting_fails_the_doctor() {
        let (text, code) = report(&Ok(()), &BTreeMap::new(), &open(), Some("yes"), false);
        assert_eq!(code, STRICT_UNAVAILABLE);
        assert!(
            text.contains("CLI_GUARD_STRICT=\"yes\": CLI_GUARD_STRICT=\"yes\" is not a setting"),
            "{text}"
        );
        assert!(text.contains("every guarded tool fails (exit 125)"), "{text}");
    }

    #[test]
    fn root_is_told_about_other_users() {
        let knobs = Knobs {
            root: true,
            apparmor_restrict: Some(1),
            ptrace_scope: Some(1),
            ..open()
        };
        let (text, code) = report(&Ok(()), &BTreeMap::new(), &knobs, None, false);
        assert_eq!(code, SUCCESS);
        assert!(
            text.contains("note: this runs as root; other users are refused"),
            "{text}"
        );
        assert!(
            text.contains("fix: from the cli-guard checkout: sudo ./install.sh"),
            "{text}"
        );
        let (text, _) = report(
            &Ok(()),
            &BTreeMap::new(),
            &Knobs { root: true, ..open() },
            None,
            false,
        );
        assert!(!text.contains("note:"), "{text}");
    }

    #[test]
    fn inside_a_strict_invocation_it_says_so() {
        let (text, _) = report(&Ok(()), &BTreeMap::new(), &open(), None, true);
        assert!(text.contains("CLI_GUARD_NETNS=1: this runs inside"), "{text}");
    }
}
