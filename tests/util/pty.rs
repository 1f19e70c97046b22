//! Terminals: a pseudo-terminal whose master side the test holds (for
//! Ctrl-C, Ctrl-Z and raw-mode readers), a process run as the leader of a
//! session on one, and sessions without a terminal.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use super::process::Running;
use super::sandbox::Sandbox;

/// A pseudo-terminal whose master side the test holds; everything the
/// session writes is kept in a transcript.
#[derive(Debug)]
pub struct Pty {
    master: fs::File,
    pub transcript: Arc<Mutex<Vec<u8>>>,
    slave: Option<OwnedFd>,
}

impl Pty {
    pub fn open() -> Pty {
        let pty = nix::pty::openpty(None, None).unwrap();
        for fd in [&pty.master, &pty.slave] {
            // Keep other tests' children from inheriting the terminal.
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
        }
        let master = fs::File::from(pty.master);
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let t = transcript.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once every holder of the slave side is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            transcript,
            slave: Some(pty.slave),
        }
    }

    /// Makes `cmd` a session leader whose stdin/stdout/stderr and controlling
    /// terminal are this pty's slave side.
    pub fn attach(&mut self, cmd: &mut Command) {
        let slave = self.slave.take().expect("attach once");
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (setsid, ioctl); it touches no
        // locks or allocations of the parent. std has already made the pty
        // slave the child's fd 0 when pre_exec closures run.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Types `bytes` at the terminal.
    pub fn type_bytes(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).unwrap();
    }
}

/// Runs `cmd` in a new session with no controlling terminal (so its
/// process group is its own, with pgid = pid).
pub fn detach(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; setsid is
    // async-signal-safe and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
}

/// Runs `cmd` as the leader of a new session whose controlling terminal,
/// and stdin, stdout and stderr, are a fresh pty.
pub fn at_terminal(g: &Sandbox, mut cmd: Command) -> (Pty, Running) {
    let mut pty = Pty::open();
    pty.attach(&mut cmd);
    let run = Running::spawn(cmd, Some(g.audit.clone()), Some(pty.transcript.clone()));
    (pty, run)
}
