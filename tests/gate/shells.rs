//! The gate in front of the tool wherever people type it: interactive bash,
//! zsh and fish on a pty, each in a fresh HOME holding exactly the line
//! `install.sh --rc` wrote for it, with cli-guard installed by install.sh
//! into a prefix whose path has a space in it.
//!
//! Each case types what a user (or a coding agent) types, at the prompt, in
//! one command line, or in a child shell, and asserts the rows: a `start`
//! row under the tool's name, and its registry's rows (or, offline, the row
//! of a host no allowlist has, which a fake tool asks for).
//!
//! - Offline, with fake tools (bash only, so that a plain `cargo test` needs
//!   nothing but Rust and the machine's bash): a fake virtualenv and a fake
//!   node directory put in front of PATH as `activate` and nvm do; the
//!   functions, the prompt hook, `set -u`, loading twice, the user's own
//!   PROMPT_COMMAND, `cli-guard doctor` and `cli-guard shims`.
//! - The same offline cases in zsh and fish, and everything with real
//!   clients and the registries (`python3 -m venv`, `uv venv`, pip, `python
//!   -m pip`, `uv pip`, npm behind an nvm-style node directory, a make
//!   recipe, Python's subprocess, uvx, `uv run`, `pipx run`, virtualenv),
//!   are `#[ignore]`d: `.ci/run` installs zsh, fish and the clients and runs
//!   them, and a missing one fails its test.
//!
//! The README's coverage table cites these tests cell by cell.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::install;
use crate::util::{command, require, Log, Outcome, Pty, Row, Running, TempDir};

/// A shell's start-up, or an offline command through the gate.
const LOCAL: Duration = Duration::from_secs(60);
/// A real install from a registry, retries included.
const NETWORK: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// The install, once per test binary

/// The shells, as the tests drive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sh {
    Bash,
    Zsh,
    Fish,
}

impl Sh {
    fn name(self) -> &'static str {
        match self {
            Sh::Bash => "bash",
            Sh::Zsh => "zsh",
            Sh::Fish => "fish",
        }
    }

    /// The shell's program (a missing one fails the test, naming it).
    fn program(self) -> PathBuf {
        require(self.name())
    }

    /// The exit status of the last command.
    fn status(self) -> &'static str {
        match self {
            Sh::Fish => "$status",
            _ => "$?",
        }
    }

    /// How this shell activates the virtualenv at `venv`.
    fn activate(self, venv: &str) -> String {
        match self {
            Sh::Fish => format!("source {venv}/bin/activate.fish"),
            _ => format!(". {venv}/bin/activate"),
        }
    }

    /// How this shell puts `dir` in front of PATH, as nvm does.
    fn prepend(self, dir: &str) -> String {
        match self {
            Sh::Fish => format!("set -gx PATH '{dir}' $PATH"),
            _ => format!("export PATH=\"{dir}:$PATH\""),
        }
    }

    /// `cmd`'s output as one word.
    fn output_of(self, cmd: &str) -> String {
        match self {
            Sh::Fish => format!("({cmd})"),
            _ => format!("\"$({cmd})\""),
        }
    }

    /// A child of this shell's kind running `line` (no single quotes in it).
    fn child(self, line: &str) -> String {
        assert!(!line.contains('\''), "{line}");
        format!("{} -c '{line}'", self.name())
    }
}

/// The machine's PATH without any directory of cli-guard shims (when the
/// tests themselves run in a guarded shell), with /usr/bin and /bin.
fn base_path() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| {
            let npm = dir.join("npm");
            !fs::canonicalize(&npm).is_ok_and(|real| real.file_name().is_some_and(|n| n == "cli-guard"))
        })
        .collect();
    for dir in ["/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    dirs
}

/// Variables of the machine, or of a shell the tests run in, that would
/// change what the shells under test do: shell start-up, an environment
/// already active, shell functions exported into the environment, and
/// settings that point clients at a local wheel cache or another index.
const UNSET: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "ZDOTDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "NVM_BIN",
    "NVM_DIR",
    "PYTHONHOME",
    "PYTHONPATH",
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_NO_INDEX",
    "PIP_REQUIRE_VIRTUALENV",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_FIND_LINKS",
    "NPM_CONFIG_REGISTRY",
    "npm_config_registry",
    "PIPX_HOME",
    "PIPX_BIN_DIR",
];

// ---------------------------------------------------------------------------
// A fresh HOME and an interactive shell in it

/// A fresh HOME holding the start-up file `install.sh --rc` wrote for one
/// shell (or none), a work directory, and a private audit log.
struct Home {
    tmp: TempDir,
    home: PathBuf,
    work: PathBuf,
    audit: PathBuf,
    /// How many bytes of the audit log earlier steps have looked at.
    read: usize,
}

impl Home {
    /// A HOME with `sh`'s start-up line.
    fn with_rc(sh: Sh) -> Home {
        let home = Home::bare();
        let (file, text) = install::with_rc().rc(sh.name());
        let rc = home.home.join(file);
        fs::create_dir_all(rc.parent().unwrap()).unwrap();
        fs::write(rc, text).unwrap();
        home
    }

    /// A HOME without any start-up file: cli-guard installed, its shell
    /// integration not loaded.
    fn bare() -> Home {
        let tmp = TempDir::new();
        let home = tmp.path().join("home");
        let work = tmp.path().join("work dir");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&work).unwrap();
        let audit = tmp.path().join("audit.jsonl");
        Home {
            tmp,
            home,
            work,
            audit,
            read: 0,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.work.join(rel)
    }

    /// The rows written since the last call.
    fn new_rows(&mut self) -> Log {
        let data = fs::read(&self.audit).unwrap_or_default();
        let fresh = data.get(self.read..).unwrap_or_default().to_vec();
        self.read = data.len();
        Log::parse(&fresh, &self.audit.display().to_string())
    }

    /// A command with this HOME's environment: the machine's, less what
    /// would steer it (`util::command`, [`UNSET`], exported functions),
    /// with the base PATH, this HOME, TERM=dumb, and the private audit log.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = command(program);
        for var in UNSET {
            cmd.env_remove(var);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("BASH_FUNC_")) {
                cmd.env_remove(&key);
            }
        }
        cmd.env("PATH", std::env::join_paths(base_path()).unwrap())
            .env("HOME", &self.home)
            .env("TERM", "dumb")
            .env("HISTFILE", self.tmp.path().join("history"))
            .env("CLI_GUARD_AUDIT_LOG", &self.audit)
            .current_dir(&self.work);
        cmd
    }
}

/// An interactive shell leading a pty's session, as a person at a terminal
/// has it.
struct Session {
    sh: Sh,
    pty: Pty,
    run: Running,
    /// How much of the transcript earlier steps have looked at.
    seen: usize,
    /// The number of the next command line.
    next: usize,
}

impl Session {
    /// `sh -i` in `home`.
    fn start(sh: Sh, home: &Home) -> Session {
        Session::spawn(sh, home, false)
    }

    /// `sh -i` in `home`, as uid 65534 (setpriv), `home` handed to it.
    fn start_as_nobody(sh: Sh, home: &Home) -> Session {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs as root, as CI does, to drop to uid 65534"
        );
        let out = command("chown")
            .args(["-R", "65534:65534"])
            .arg(home.tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "chown: {out:?}");
        Session::spawn(sh, home, true)
    }

    fn spawn(sh: Sh, home: &Home, as_nobody: bool) -> Session {
        let program = sh.program();
        if sh == Sh::Fish {
            // fish's first interactive start in a HOME generates completions
            // from the man pages with python, as a background job of about
            // 25 s that `exit` would then wait for: as if done before.
            fs::create_dir_all(home.home.join(".local/share/fish/generated_completions")).unwrap();
        }
        let mut cmd = if as_nobody {
            let mut cmd = home.command(&require("setpriv"));
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&program);
            cmd
        } else {
            home.command(&program)
        };
        cmd.arg("-i").env("SHELL", &program);
        let mut pty = Pty::open();
        pty.attach(&mut cmd);
        let run = Running::spawn(cmd, Some(home.audit.clone()), Some(pty.transcript.clone()));
        let mut session = Session {
            sh,
            pty,
            run,
            seen: 0,
            next: 0,
        };
        session.ok("true", LOCAL);
        session
    }

    /// Types `line` at the prompt and waits (up to `limit`) until it has
    /// run; returns its exit status.
    fn run(&mut self, line: &str, limit: Duration) -> i32 {
        self.next += 1;
        let n = self.next;
        // The marker as printed, `__done_N_STATUS`, never appears in the
        // echo of what was typed.
        let typed = format!("{line}; printf '%s_%s_%s\\n' __done {n} {}\r", self.sh.status());
        self.pty.type_bytes(typed.as_bytes());
        let needle = format!("__done_{n}_");
        let deadline = Instant::now() + limit;
        loop {
            {
                let t = self.pty.transcript.lock().unwrap();
                let fresh = &t[self.seen..];
                let found = fresh
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                    .map(|at| at + needle.len());
                if let Some(from) = found {
                    let digits: Vec<u8> = fresh[from..]
                        .iter()
                        .copied()
                        .take_while(u8::is_ascii_digit)
                        .collect();
                    // The status is complete once something follows it.
                    if !digits.is_empty() && fresh.len() > from + digits.len() {
                        self.seen += from + digits.len();
                        return String::from_utf8_lossy(&digits).parse().unwrap();
                    }
                }
            }
            if let Some(status) = self.run.poll() {
                panic!(
                    "the shell exited ({status}) while running {line:?}\n\n{}",
                    self.run.report()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{line:?} did not finish within {limit:?}\n\n{}",
                    self.run.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` as it is, and waits (up to `limit`) until the terminal
    /// shows its echo and then `needle` (a prompt).
    fn type_and_expect(&mut self, line: &str, needle: &str, limit: Duration) {
        self.pty.type_bytes(format!("{line}\r").as_bytes());
        let deadline = Instant::now() + limit;
        for wanted in [line, needle] {
            loop {
                {
                    let t = self.pty.transcript.lock().unwrap();
                    if let Some(at) = t[self.seen..]
                        .windows(wanted.len())
                        .position(|w| w == wanted.as_bytes())
                    {
                        self.seen += at + wanted.len();
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    panic!(
                        "the terminal never showed {wanted:?} after {line:?}\n\n{}",
                        self.run.report()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `run`, which must succeed.
    fn ok(&mut self, line: &str, limit: Duration) {
        let status = self.run(line, limit);
        check_eq!(self, status, 0, "{line:?} failed");
    }

    /// What `expr` (a shell word, e.g. `"$PATH"`) is at the prompt, read
    /// through a file rather than the terminal.
    fn value(&mut self, home: &Home, expr: &str) -> String {
        let file = home.tmp.path().join(format!("value-{}", self.next + 1));
        self.ok(&format!("printf '%s' {expr} > '{}'", file.display()), LOCAL);
        fs::read_to_string(&file).unwrap()
    }

    fn report(&self) -> String {
        self.run.report()
    }

    /// Leaves the shell, which must exit cleanly.
    fn exit(self) {
        self.pty.type_bytes(b"exit\r");
        let out = self.run.wait_for(LOCAL);
        check_eq!(out, out.code(), Some(0), "the shell did not exit cleanly");
    }
}

// ---------------------------------------------------------------------------
// Rows

/// The invocations a step left: `tool`'s start rows and every egress row
/// under them or under the guarded tools they ran.
struct Gated<'a> {
    starts: Vec<&'a Row>,
    egress: Vec<&'a Row>,
}

fn gated<'a>(log: &'a Log, tool: &str) -> Gated<'a> {
    let starts = log.rows().kind("start").tool(tool);
    let ids = log.nested(&starts.ids());
    let egress = log
        .rows()
        .network()
        .of_any(&ids)
        .filter("connections", |r| r["method"] != "dns")
        .to_vec();
    Gated {
        starts: starts.to_vec(),
        egress,
    }
}

/// Asserts the step met the gate: a start row under `tool`, and a row for
/// one of `hosts` answered `status` under it.
fn assert_gated(s: &Session, log: &Log, what: &str, tool: &str, hosts: &[&str], status: u64) -> String {
    let g = gated(log, tool);
    check!(
        s,
        !g.starts.is_empty(),
        "{what}: no start row under {tool}: it did not meet the gate\n{}",
        log
    );
    check!(
        s,
        g.egress
            .iter()
            .any(|r| hosts.contains(&r["host"].as_str().unwrap_or("")) && r["status"] == status),
        "{what}: no row for {hosts:?} answered {status} under {tool}\n{}",
        log
    );
    g.starts[0]["real_path"].as_str().unwrap_or("").to_string()
}

/// Offline cases, one test per shell: bash's in the plain `cargo test`,
/// zsh's and fish's `#[ignore]`d (the shells are not on a machine with only
/// Rust; `.ci/run` installs them).
macro_rules! offline_in_each_shell {
    ($($case:ident: $bash:ident, $zsh:ident, $fish:ident;)*) => {
        $(
            #[test]
            fn $bash() {
                $case(Sh::Bash);
            }

            #[test]
            #[ignore = "zsh: run by .ci/run (cargo test -- --ignored)"]
            fn $zsh() {
                $case(Sh::Zsh);
            }

            #[test]
            #[ignore = "fish: run by .ci/run (cargo test -- --ignored)"]
            fn $fish() {
                $case(Sh::Fish);
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Fake tools, for the offline cases

/// A fake tool: asks the gate it runs behind, if any, for a host no
/// allowlist has (bash's /dev/tcp, the proxy URL's credential), and says
/// what it got; without a gate it says so.
const FAKE_TOOL: &str = r#"#!/bin/bash
name=${0##*/}
proxy=${HTTPS_PROXY-}
if [ -z "$proxy" ]; then
    echo "FAKE-$name: no gate"
    exit 0
fi
p=${proxy#http://}
cred=${p%@*}
hp=${p##*@}
exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}" || exit 3
printf 'CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\nProxy-Authorization: Basic %s\r\n\r\n' \
    "$(printf %s "$cred" | base64 -w0)" >&3
IFS= read -r answer <&3
echo "FAKE-$name: ${answer%$'\r'}"
"#;

/// Writes an executable file.
fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, text).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A fake virtualenv at `dir`: `bin/activate` (and `activate.fish`) that do
/// what venv's do to PATH, and fake `pip` and `python` in `bin/`.
fn fake_venv(dir: &Path) {
    let bin = dir.join("bin");
    let d = dir.display();
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("activate"),
        format!(
            "# a fake venv's activate, as python3 -m venv writes it (for PATH)\n\
             deactivate() {{ PATH=\"$_OLD_VIRTUAL_PATH\"; export PATH; unset VIRTUAL_ENV _OLD_VIRTUAL_PATH; }}\n\
             VIRTUAL_ENV='{d}'\nexport VIRTUAL_ENV\n_OLD_VIRTUAL_PATH=\"$PATH\"\n\
             PATH=\"$VIRTUAL_ENV/bin:$PATH\"\nexport PATH\n"
        ),
    )
    .unwrap();
    fs::write(
        bin.join("activate.fish"),
        format!(
            "function deactivate; set -gx PATH $_OLD_VIRTUAL_PATH; set -e VIRTUAL_ENV _OLD_VIRTUAL_PATH; end\n\
             set -gx VIRTUAL_ENV '{d}'\nset -gx _OLD_VIRTUAL_PATH $PATH\n\
             set -gx PATH \"$VIRTUAL_ENV/bin\" $PATH\n"
        ),
    )
    .unwrap();
    executable(&bin.join("pip"), FAKE_TOOL);
}

/// A fake node directory, as nvm puts one in front of PATH: `node`, `npm`.
fn fake_node_dir(dir: &Path) {
    executable(&dir.join("npm"), FAKE_TOOL);
    executable(&dir.join("node"), "#!/bin/sh\necho fake node\n");
}

/// Offline, in `sh`: a fake virtualenv activated at one prompt, then `pip`
/// at the next, in the same command line as the activation, in a child
/// shell, and the activation and pip in one child command; a fake nvm
/// directory likewise; and a program that looks `pip` up on PATH (sh -c,
/// as make's recipes and Python's subprocess do) at the next prompt. Each
/// meets the gate: a start row under the tool, run from where PATH put it,
/// and the denied host's 403 row.
fn fake_tools_meet_the_gate(sh: Sh) {
    let mut home = Home::with_rc(sh);
    fake_venv(&home.path("venv"));
    fake_node_dir(&home.path("nvm/bin"));
    let mut s = Session::start(sh, &home);
    let venv_pip = home.path("venv/bin/pip");
    let activate = sh.activate("venv");
    let step = |s: &mut Session, home: &mut Home, what: &str, line: &str, tool: &str, real: &Path| {
        s.ok(line, LOCAL);
        let log = home.new_rows();
        let ran = assert_gated(s, &log, what, tool, &["denied.example"], 403);
        check_eq!(
            s,
            ran,
            real.to_str().unwrap(),
            "{what}: the shim ran what PATH gave"
        );
    };
    step(
        &mut s,
        &mut home,
        "activation and pip in one line",
        &format!("{activate} && pip install six"),
        "pip",
        &venv_pip,
    );
    s.ok("deactivate", LOCAL);
    let child = sh.child(&format!("{activate} && pip install six"));
    step(
        &mut s,
        &mut home,
        "activation and pip in one child command",
        &child,
        "pip",
        &venv_pip,
    );
    s.ok(&activate, LOCAL);
    step(
        &mut s,
        &mut home,
        "pip at the next prompt",
        "pip install six",
        "pip",
        &venv_pip,
    );
    step(
        &mut s,
        &mut home,
        "pip in a child shell",
        &sh.child("pip install six"),
        "pip",
        &venv_pip,
    );
    step(
        &mut s,
        &mut home,
        "pip in a child bash",
        "bash -c 'pip install six'",
        "pip",
        &venv_pip,
    );
    step(
        &mut s,
        &mut home,
        "pip looked up by sh -c (a make recipe, a subprocess)",
        "sh -c 'pip install six'",
        "pip",
        &venv_pip,
    );
    step(
        &mut s,
        &mut home,
        "pip looked up by sh -c in a child shell",
        &sh.child("sh -c \"pip install six\""),
        "pip",
        &venv_pip,
    );
    // A program that looks pip up in the same line as the activation: the
    // shims are first again only in fish, whose hook runs as PATH changes;
    // bash's and zsh's run before the next prompt, too late (the README's
    // table says so), and the fake pip says it ran without a gate.
    s.ok("deactivate", LOCAL);
    let said = home.path("same-line.out");
    s.ok(
        &format!("{activate} && sh -c 'pip install six' > '{}'", said.display()),
        LOCAL,
    );
    let log = home.new_rows();
    let out = fs::read_to_string(&said).unwrap_or_default();
    if sh == Sh::Fish {
        assert_gated(
            &s,
            &log,
            "sh -c in the same line",
            "pip",
            &["denied.example"],
            403,
        );
    } else {
        check!(
            s,
            out.trim() == "FAKE-pip: no gate" && gated(&log, "pip").starts.is_empty(),
            "{}: sh -c in the same line as the activation is not gated (README): {out:?}",
            sh.name()
        );
    }
    let nvm = home.path("nvm/bin");
    let npm = nvm.join("npm");
    let prepend = sh.prepend(nvm.to_str().unwrap());
    step(
        &mut s,
        &mut home,
        "nvm's node put first, npm in the same line",
        &format!("{prepend} && npm install"),
        "npm",
        &npm,
    );
    step(
        &mut s,
        &mut home,
        "npm at the next prompt",
        "npm install",
        "npm",
        &npm,
    );
    step(
        &mut s,
        &mut home,
        "npm in a child shell",
        &sh.child("npm install"),
        "npm",
        &npm,
    );
    s.exit();
}

offline_in_each_shell! {
    fake_tools_meet_the_gate: bash_fake_virtualenv_and_node_dir_meet_the_gate_every_way, zsh_fake_virtualenv_and_node_dir_meet_the_gate_every_way, fish_fake_virtualenv_and_node_dir_meet_the_gate_every_way;
}

/// In `sh`: a function for every name that gets a shim (`cli-guard policy
/// --names`; in fish, the shim first on PATH for each), the hook
/// registered once, CLI_GUARD_SHELL_INIT naming this shell, and the shims
/// first on PATH; after a directory is put in front,
/// the hook moves the shims back at the next prompt, keeping every other
/// entry in its order and dropping duplicates of the shims; a PATH already
/// right is left as it is.
fn integration_is_in_place(sh: Sh) {
    let inst = install::with_rc();
    let home = Home::with_rc(sh);
    let mut s = Session::start(sh, &home);
    let shims = inst.shims().display().to_string();
    let names = String::from_utf8(
        command(inst.bin())
            .args(["policy", "--names"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // bash and zsh: a function for each name; fish: each name is the shim
    // on PATH (fish gets no functions: it cannot run one in the background).
    let missing: Vec<&str> = names
        .lines()
        .filter(|name| {
            let probe = match sh {
                Sh::Fish => format!("test (command -s {name}) = '{shims}/{name}'"),
                Sh::Zsh => format!("(( $+functions[{name}] ))"),
                Sh::Bash => format!("declare -F {name} >/dev/null"),
            };
            s.run(&probe, LOCAL) != 0
        })
        .collect();
    check!(
        s,
        missing.is_empty(),
        "{}: not through the shim: {missing:?}",
        sh.name()
    );
    if sh == Sh::Fish {
        let functions = s.value(&home, "(functions -a | string join ' ')");
        check!(
            s,
            !functions.split(' ').any(|f| f == "npm"),
            "no function npm in fish"
        );
    }
    let path = s.value(&home, "\"$PATH\"");
    check!(
        s,
        path.starts_with(&format!("{shims}:")),
        "{}: the shims lead PATH: {path}",
        sh.name()
    );
    let init = s.value(&home, "\"$CLI_GUARD_SHELL_INIT\"");
    check!(
        s,
        init.starts_with(&format!("{} ", sh.name())),
        "CLI_GUARD_SHELL_INIT={init:?}"
    );
    // Loaded a second time (the start-up line again), under the strictest
    // options each shell has: the hook is still registered once per list.
    let (_, rc) = inst.rc(sh.name());
    let line = rc
        .lines()
        .last()
        .unwrap()
        .replace(" # added by cli-guard install.sh", "");
    match sh {
        Sh::Bash => s.ok("set -u", LOCAL),
        Sh::Zsh => s.ok("setopt nounset ksh_arrays sh_word_split glob_subst", LOCAL),
        Sh::Fish => {}
    }
    s.ok(&line, LOCAL);
    let (hooks, lists) = match sh {
        Sh::Bash => ("\"${PROMPT_COMMAND[*]}\"", 1),
        Sh::Zsh => ("\"${precmd_functions[*]} / ${preexec_functions[*]}\"", 2),
        Sh::Fish => ("(functions --handlers-type variable | string join ' ')", 1),
    };
    let hooks = s.value(&home, hooks);
    check_eq!(
        s,
        hooks.matches("__cli_guard_front").count(),
        lists,
        "the hook, registered once: {hooks}"
    );
    // Something prepends (twice the same dir, and the shims once more in
    // the middle); the next prompt puts the shims first, once.
    let before = s.value(&home, "\"$PATH\"");
    let rest = before
        .strip_prefix(&format!("{shims}:"))
        .unwrap_or(&before)
        .to_string();
    let extra = home.path("tools/bin");
    fs::create_dir_all(&extra).unwrap();
    let extra = extra.display().to_string();
    let put = match sh {
        Sh::Fish => format!("set -gx PATH '{extra}' '{shims}' '{extra}' $PATH"),
        _ => format!("export PATH='{extra}:{shims}:{extra}':\"$PATH\""),
    };
    s.ok(&put, LOCAL);
    let after = s.value(&home, "\"$PATH\"");
    let want = format!("{shims}:{extra}:{extra}:{rest}");
    check_eq!(s, after, want, "{}: the hook's PATH", sh.name());
    // Right already: the next prompts leave it alone.
    s.ok("true", LOCAL);
    let again = s.value(&home, "\"$PATH\"");
    check_eq!(
        s,
        again,
        want,
        "{}: a PATH already right is left alone",
        sh.name()
    );
    s.exit();
}

offline_in_each_shell! {
    integration_is_in_place: bash_integration_defines_every_function_and_the_hook_keeps_the_shims_first, zsh_integration_defines_every_function_and_the_hook_keeps_the_shims_first, fish_integration_defines_every_function_and_the_hook_keeps_the_shims_first;
}

/// bash: loaded twice under `set -u`, with the user's own PROMPT_COMMAND
/// (a string, then an array), the hook is there once, the user's hook
/// still runs, and the exit status the prompt shows is the command's.
#[test]
fn bash_integration_is_idempotent_under_set_u_and_keeps_the_users_prompt_command() {
    let inst = install::with_rc();
    let home = Home::with_rc(Sh::Bash);
    let mut s = Session::start(Sh::Bash, &home);
    let marker = home.path("user-hook-ran");
    let (_, rc) = inst.rc(Sh::Bash.name());
    let line = rc
        .lines()
        .last()
        .unwrap()
        .replace(" # added by cli-guard install.sh", "");
    s.ok("set -u", LOCAL);
    s.ok(
        &format!(
            "user_hook() {{ echo x >> '{}'; }}; PROMPT_COMMAND=user_hook",
            marker.display()
        ),
        LOCAL,
    );
    s.ok(&line, LOCAL);
    s.ok(&line, LOCAL);
    let pc = s.value(&home, "\"${PROMPT_COMMAND[*]}\"");
    check_eq!(s, pc.matches("__cli_guard_front").count(), 1, "once: {pc:?}");
    check!(s, pc.contains("user_hook"), "the user's hook stays: {pc:?}");
    let ran = fs::read_to_string(&marker).unwrap_or_default().lines().count();
    s.ok("true", LOCAL);
    check!(
        s,
        fs::read_to_string(&marker).unwrap_or_default().lines().count() > ran,
        "the user's hook still runs at each prompt"
    );
    // The hook keeps the exit status for what runs after it in the same
    // string (before bash 5.1, and a user's `PROMPT_COMMAND+="; …"` later).
    let seen = home.path("status-seen");
    s.ok(
        &format!(
            "status_hook() {{ echo $? > '{}'; }}; PROMPT_COMMAND='__cli_guard_front; status_hook'",
            seen.display()
        ),
        LOCAL,
    );
    s.ok("PS1='P> '", LOCAL);
    // The hook runs before the prompt after the command is printed.
    s.type_and_expect("(exit 7)", "P> ", LOCAL);
    let status = fs::read_to_string(&seen).unwrap_or_default();
    check_eq!(s, status.trim(), "7", "the status a later hook sees");
    // An array of hooks: ours joins it once more, after the user's.
    s.ok("PROMPT_COMMAND=(user_hook)", LOCAL);
    s.ok(&line, LOCAL);
    s.ok(&line, LOCAL);
    let pc = s.value(&home, "\"${PROMPT_COMMAND[*]}\"");
    check_eq!(s, pc, "user_hook __cli_guard_front", "the array");
    s.exit();
}

/// `cli-guard doctor` and `cli-guard shims` from a bash without the shell
/// integration, a (fake) virtualenv active: not loaded, pip shadowed by
/// the virtualenv, and the fix is exactly the line install.sh --rc writes;
/// from an interactive bash with it: loaded in this shell.
#[test]
fn doctor_and_shims_say_where_the_gate_is_not_and_the_line_that_fixes_it() {
    let inst = install::with_rc();
    let home = Home::bare();
    let venv = home.path("venv");
    fake_venv(&venv);
    let mut path = vec![venv.join("bin"), inst.shims()];
    path.extend(base_path());
    let run = |args: &[&str]| -> Outcome {
        let mut cmd = home.command(&require("bash"));
        cmd.arg("-c")
            .arg(format!("'{}' {}", inst.bin().display(), args.join(" ")))
            .env("PATH", std::env::join_paths(&path).unwrap())
            .env("VIRTUAL_ENV", &venv)
            .env("SHELL", require("bash"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running::spawn(cmd, None, None).wait_for(LOCAL)
    };
    let (_, rc) = inst.rc(Sh::Bash.name());
    let line = rc
        .trim_end()
        .strip_suffix(" # added by cli-guard install.sh")
        .unwrap();
    let out = run(&["doctor"]);
    let text = out.stdout();
    check!(
        out,
        text.contains("shell integration: not loaded in this shell"),
        "not loaded"
    );
    check!(
        out,
        text.contains(&format!(
            "  pip        runs {}: the active virtualenv {} (VIRTUAL_ENV) comes before the shims",
            venv.join("bin/pip").display(),
            venv.display()
        )),
        "pip and what shadows it"
    );
    check!(
        out,
        text.contains(&format!(
            "fix: add this line to {} and open a new shell (install.sh --rc adds it): {line}",
            home.home.join(".bashrc").display()
        )),
        "the fix is the line install.sh --rc writes"
    );
    let out = run(&["shims"]);
    let text = out.stdout();
    check!(
        out,
        text.contains(&format!(
            "before the shims: the active virtualenv {} (VIRTUAL_ENV)",
            venv.display()
        )) && text.contains("typed in this shell: NOT gated"),
        "cli-guard shims: what shadows pip"
    );
    // With the integration: loaded here, and every name typed is gated.
    let home = Home::with_rc(Sh::Bash);
    fake_venv(&home.path("venv"));
    let mut s = Session::start(Sh::Bash, &home);
    s.ok(". venv/bin/activate", LOCAL);
    let report = home.path("doctor.txt");
    s.run(
        &format!("'{}' doctor > '{}'", inst.bin().display(), report.display()),
        LOCAL,
    );
    let text = fs::read_to_string(&report).unwrap();
    check!(
        s,
        text.contains("shell integration: loaded in this shell, bash (pid"),
        "loaded here:\n{text}"
    );
    check!(
        s,
        text.contains("every one of the") && text.contains("meets the gate here"),
        "every name is gated here:\n{text}"
    );
    s.exit();
}

/// bash as uid 65534: the integration loads, and after a (fake)
/// virtualenv is activated, `pip` typed at the next prompt and in a child
/// bash meets the gate (strict mode where the kernel allows it, as for
/// any user).
#[test]
fn bash_as_an_unprivileged_user_meets_the_gate() {
    let mut home = Home::with_rc(Sh::Bash);
    fake_venv(&home.path("venv"));
    let mut s = Session::start_as_nobody(Sh::Bash, &home);
    let uid = s.value(&home, "\"$(id -u)\"");
    check_eq!(s, uid, "65534", "the shell runs as nobody");
    s.ok(". venv/bin/activate", LOCAL);
    for line in ["pip install six", "bash -c 'pip install six'"] {
        s.ok(line, LOCAL);
        let log = home.new_rows();
        assert_gated(&s, &log, line, "pip", &["denied.example"], 403);
    }
    s.exit();
}

// ---------------------------------------------------------------------------
// Real virtualenvs, node and clients, with the registries

/// `pip install` that always fetches (into whatever environment is active).
const PIP_INSTALL: &str = "pip install --force-reinstall --no-cache-dir --no-deps six";
const PYTHON_M_PIP_INSTALL: &str = "python -m pip install --force-reinstall --no-cache-dir --no-deps six";
const UV_PIP_INSTALL: &str = "uv pip install --reinstall --no-cache six";
const PYPI: &[&str] = &["pypi.org", "files.pythonhosted.org"];
const NPM: &[&str] = &["registry.npmjs.org"];

/// How a real virtualenv is made.
#[derive(Debug, Clone, Copy)]
enum VenvKind {
    PythonMVenv,
    UvVenv,
}

/// In `sh`: a real virtualenv (made through the shims, as a user's shell now
/// makes it), then pip, `python -m pip` and `uv pip` in the same line as
/// the activation, in one child command with the activation, at the next
/// prompt, and in a child shell: each a start row under the tool and PyPI's
/// rows. The virtualenv's python reports its own path.
fn real_virtualenv(sh: Sh, kind: VenvKind) {
    let mut home = Home::with_rc(sh);
    let mut s = Session::start(sh, &home);
    let make = match kind {
        VenvKind::PythonMVenv => "python3 -m venv .venv",
        VenvKind::UvVenv => "uv venv --seed .venv",
    };
    s.ok(make, NETWORK);
    let cfg = fs::read_to_string(home.path(".venv/pyvenv.cfg")).unwrap();
    check!(
        s,
        !cfg.contains("cli-guard"),
        "the virtualenv records no cli-guard path:\n{cfg}"
    );
    let _ = home.new_rows();
    let activate = sh.activate(".venv");
    let deactivate = "deactivate";
    for (tool, install) in [
        ("pip", PIP_INSTALL),
        ("pip", PYTHON_M_PIP_INSTALL),
        ("uv", UV_PIP_INSTALL),
    ] {
        for (what, line) in [
            ("same line as the activation", format!("{activate} && {install}")),
            ("one child command", sh.child(&format!("{activate} && {install}"))),
        ] {
            s.ok(line.as_str(), NETWORK);
            let log = home.new_rows();
            assert_gated(&s, &log, &format!("{install}: {what}"), tool, PYPI, 200);
            if what.starts_with("same") {
                s.ok(deactivate, LOCAL);
            }
        }
    }
    s.ok(&activate, LOCAL);
    let exe = s.value(
        &home,
        &sh.output_of("python -c 'import sys; print(sys.executable)'"),
    );
    let want = home.path(".venv/bin/python");
    check_eq!(
        s,
        exe.trim(),
        want.to_str().unwrap(),
        "the venv's python is its own"
    );
    for (tool, install) in [
        ("pip", PIP_INSTALL),
        ("pip", PYTHON_M_PIP_INSTALL),
        ("uv", UV_PIP_INSTALL),
    ] {
        let mut ways = vec![
            ("the next prompt", install.to_string()),
            ("a child shell", sh.child(install)),
        ];
        if sh != Sh::Bash {
            ways.push(("a child bash", Sh::Bash.child(install)));
        }
        for (what, line) in ways {
            s.ok(&line, NETWORK);
            let log = home.new_rows();
            assert_gated(&s, &log, &format!("{install}: {what}"), tool, PYPI, 200);
        }
    }
    s.exit();
}

macro_rules! per_shell {
    ($($name:ident => $body:expr;)*) => {
        $(
            #[test]
            #[ignore = "zsh, fish, real clients or the registries: run by .ci/run (cargo test -- --ignored)"]
            fn $name() {
                $body
            }
        )*
    };
}

per_shell! {
    bash_python3_m_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Bash, VenvKind::PythonMVenv);
    zsh_python3_m_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Zsh, VenvKind::PythonMVenv);
    fish_python3_m_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Fish, VenvKind::PythonMVenv);
    bash_uv_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Bash, VenvKind::UvVenv);
    zsh_uv_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Zsh, VenvKind::UvVenv);
    fish_uv_venv_then_pip_python_m_pip_uv_pip_meet_the_gate => real_virtualenv(Sh::Fish, VenvKind::UvVenv);
}

/// A directory holding the machine's real node and npm (links to them), as
/// nvm puts `~/.nvm/versions/node/vX/bin` in front of PATH.
fn real_node_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for tool in ["node", "npm"] {
        let real = fs::canonicalize(require(tool)).unwrap();
        symlink(real, dir.join(tool)).unwrap();
    }
}

/// In `sh`: a node directory put in front of PATH as nvm does, then
/// `npm install` in the same line, at the next prompt and in a child shell:
/// each a start row under npm, run from that directory, and the npm
/// registry's rows.
fn real_node_dir_first(sh: Sh) {
    let mut home = Home::with_rc(sh);
    let nvm = home.path("nvm/bin");
    real_node_dir(&nvm);
    fs::write(
        home.path("package.json"),
        r#"{"name":"proj","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    let mut s = Session::start(sh, &home);
    let mut n = 0;
    let mut install = || {
        n += 1;
        format!("npm install is-number --cache ./npm-cache-{n} --no-audit --no-fund --update-notifier=false")
    };
    let prepend = sh.prepend(nvm.to_str().unwrap());
    let mut ways = vec![("same line as the switch", format!("{prepend} && {}", install()))];
    ways.push(("the next prompt", install()));
    ways.push(("a child shell", sh.child(&install())));
    if sh != Sh::Bash {
        ways.push(("a child bash", Sh::Bash.child(&install())));
    }
    for (what, line) in ways {
        s.ok(&line, NETWORK);
        let log = home.new_rows();
        let ran = assert_gated(&s, &log, &format!("npm install: {what}"), "npm", NPM, 200);
        check_eq!(s, ran, nvm.join("npm").to_str().unwrap(), "{what}: nvm's npm ran");
    }
    s.exit();
}

per_shell! {
    bash_node_dir_first_as_nvm_puts_it_then_npm_install_meets_the_gate => real_node_dir_first(Sh::Bash);
    zsh_node_dir_first_as_nvm_puts_it_then_npm_install_meets_the_gate => real_node_dir_first(Sh::Zsh);
    fish_node_dir_first_as_nvm_puts_it_then_npm_install_meets_the_gate => real_node_dir_first(Sh::Fish);
}

/// In `sh`, a virtualenv activated at one prompt, then at the next a make
/// recipe and a Python subprocess that run `pip install` by name (through
/// /bin/sh and execvp, which look it up on PATH): the hook put the shims
/// first, so each meets the gate.
fn programs_that_look_names_up(sh: Sh) {
    let mut home = Home::with_rc(sh);
    fs::write(home.path("Makefile"), format!("install:\n\t{PIP_INSTALL}\n")).unwrap();
    let mut s = Session::start(sh, &home);
    s.ok("python3 -m venv .venv", NETWORK);
    s.ok(&sh.activate(".venv"), LOCAL);
    let _ = home.new_rows();
    s.ok(&format!("{} install", require("make").display()), NETWORK);
    let log = home.new_rows();
    assert_gated(&s, &log, "a make recipe", "pip", PYPI, 200);
    let args: Vec<String> = PIP_INSTALL.split(' ').map(|a| format!("\"{a}\"")).collect();
    s.ok(
        &format!(
            "python -c 'import subprocess; subprocess.run([{}], check=True)'",
            args.join(", ")
        ),
        NETWORK,
    );
    let log = home.new_rows();
    assert_gated(&s, &log, "a Python subprocess", "pip", PYPI, 200);
    s.exit();
}

per_shell! {
    bash_make_recipe_and_python_subprocess_after_activation_meet_the_gate => programs_that_look_names_up(Sh::Bash);
    zsh_make_recipe_and_python_subprocess_after_activation_meet_the_gate => programs_that_look_names_up(Sh::Zsh);
    fish_make_recipe_and_python_subprocess_after_activation_meet_the_gate => programs_that_look_names_up(Sh::Fish);
}

/// In `sh`, with the python shims first: uv installed in a virtualenv
/// (made through the shims), then `uvx` and `uv run` from it; `pipx run`;
/// and `virtualenv`, whose environment records no cli-guard path and whose
/// pip meets the gate.
fn python_tools_with_the_python_shims_first(sh: Sh) {
    let mut home = Home::with_rc(sh);
    let mut s = Session::start(sh, &home);
    s.ok("python3 -m venv uv-env", NETWORK);
    s.ok(&sh.activate("uv-env"), LOCAL);
    // uv in the virtualenv, as `pip install uv` puts it there (the version
    // .ci/run pins).
    s.ok("pip install --no-cache-dir uv==0.13.9 > /dev/null", NETWORK);
    let log = home.new_rows();
    assert_gated(&s, &log, "pip install uv", "pip", PYPI, 200);
    s.ok("uvx pycowsay hello-from-uvx > uvx.out", NETWORK);
    let log = home.new_rows();
    assert_gated(&s, &log, "uvx", "uvx", PYPI, 200);
    let said = fs::read_to_string(home.path("uvx.out")).unwrap();
    check!(s, said.contains("hello-from-uvx"), "uvx ran pycowsay: {said}");
    s.ok(
        "uv run --no-project --with six python -c 'import six; print(six.__name__)' > uvrun.out",
        NETWORK,
    );
    let log = home.new_rows();
    assert_gated(&s, &log, "uv run", "uv", PYPI, 200);
    let said = fs::read_to_string(home.path("uvrun.out")).unwrap();
    check_eq!(s, said.trim(), "six", "uv run ran python with six");
    s.ok("deactivate", LOCAL);
    s.ok("pipx run pycowsay hello-from-pipx > pipx.out", NETWORK);
    let log = home.new_rows();
    assert_gated(&s, &log, "pipx run", "pipx", PYPI, 200);
    let said = fs::read_to_string(home.path("pipx.out")).unwrap();
    check!(s, said.contains("hello-from-pipx"), "pipx ran pycowsay: {said}");
    s.ok(
        "virtualenv --no-periodic-update -p python3 venv2 > /dev/null",
        NETWORK,
    );
    let cfg = fs::read_to_string(home.path("venv2/pyvenv.cfg")).unwrap();
    check!(
        s,
        !cfg.contains("cli-guard"),
        "virtualenv records no cli-guard path:\n{cfg}"
    );
    let _ = home.new_rows();
    s.ok(&format!("{} && {PIP_INSTALL}", sh.activate("venv2")), NETWORK);
    let log = home.new_rows();
    assert_gated(&s, &log, "pip in virtualenv's environment", "pip", PYPI, 200);
    s.exit();
}

per_shell! {
    bash_uvx_uv_run_pipx_run_virtualenv_with_the_python_shims_first => python_tools_with_the_python_shims_first(Sh::Bash);
    zsh_uvx_uv_run_pipx_run_virtualenv_with_the_python_shims_first => python_tools_with_the_python_shims_first(Sh::Zsh);
    fish_uvx_uv_run_pipx_run_virtualenv_with_the_python_shims_first => python_tools_with_the_python_shims_first(Sh::Fish);
}

#[test]
#[ignore = "shellcheck: run by .ci/run (cargo test -- --ignored)"]
fn init_bash_is_shellcheck_clean() {
    let inst = install::with_rc();
    let out = command(inst.bin()).args(["init", "bash"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("'{}'", inst.shims().display())), "{text}");
    let mut check = command(require("shellcheck"))
        .args(["-s", "bash", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let res = check.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    for sh in ["zsh", "fish"] {
        let out = command(inst.bin()).args(["init", sh]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut parse = command(require(sh))
            .arg("-n")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut parse.stdin.take().unwrap(), &out.stdout).unwrap();
        let res = parse.wait_with_output().unwrap();
        assert!(
            res.status.success(),
            "{sh} -n: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
}

/// A shell that outlived its shims (cli-guard uninstalled under it): the
/// function says so and runs the name without the gate, rather than
/// failing with a missing file.
#[test]
fn bash_function_whose_shim_is_gone_says_so_and_runs_the_tool() {
    let inst = install::with_rc();
    let home = Home::bare();
    let gone = home.path("gone shims");
    fs::create_dir_all(&gone).unwrap();
    executable(&home.path("real/npm"), "#!/bin/sh\necho real-npm-ran \"$@\"\n");
    let mut cmd = home.command(&require("bash"));
    cmd.arg("-c")
        .arg(format!(
            "eval \"$('{}' init bash --shims '{}')\"; npm install",
            inst.bin().display(),
            gone.display()
        ))
        .env("PATH", format!("{}:/usr/bin:/bin", home.path("real").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = Running::spawn(cmd, None, None).wait_for(LOCAL);
    check_eq!(out, out.code(), Some(0), "the tool ran");
    check_eq!(
        out,
        out.stdout().trim(),
        "real-npm-ran install",
        "the real npm, unguarded"
    );
    check!(
        out,
        out.stderr().contains(&format!(
            "cli-guard: {}/npm is gone, so npm runs without the gate",
            gone.display()
        )),
        "it says so"
    );
}

#[test]
fn init_usage_errors_say_what_to_do() {
    let inst = install::with_rc();
    for (args, says) in [
        (&["init"][..], "which shell? bash, zsh or fish"),
        (&["init", "tcsh"], "unknown shell \"tcsh\""),
        (&["init", "bash", "--shims", "relative"], "give an absolute path"),
        (&["init", "bash", "--shims", "/a:b"], "cannot be put on PATH"),
    ] {
        let out = command(inst.bin()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("cli-guard: init: ") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}
