//! The competitors: squid and tinyproxy, each with a config written to the
//! run's directory, started in the foreground on 127.0.0.1.

use std::fs;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::Target;
use crate::procs::Proc;
use crate::PROC_LIMIT;

/// squid or tinyproxy, started in the foreground on 127.0.0.1.
pub(crate) struct Competitor {
    name: &'static str,
    proc: Proc,
    addr: SocketAddr,
}

impl Competitor {
    /// squid: cache off, an access log line per request (as cli-guard writes
    /// an audit row), no CONNECT port restriction. It runs as the `proxy`
    /// user from the start (squid refuses to serve as root and would switch
    /// itself, which would clear the parent-death signal).
    pub(crate) fn squid(work: &Path) -> Result<Competitor> {
        let dir = work.join("squid");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        let port = free_port()?;
        let d = dir.display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             http_access allow all\n\
             cache deny all\n\
             cache_mem 0 MB\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             coredump_dir {d}\n\
             visible_hostname cli-guard-bench\n\
             dns_nameservers 127.0.0.1\n\
             pinger_enable off\n\
             icp_port 0\n\
             htcp_port 0\n\
             shutdown_lifetime 0 seconds\n"
        );
        let conf_path = dir.join("squid.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("/usr/sbin/squid");
        cmd.arg("-N").arg("-f").arg(&conf_path);
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("proxy")?
                .or(nix::unistd::User::from_name("nobody")?)
                .context("no unprivileged user to run squid as")?;
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        Competitor::start("squid", cmd, port, &dir.join("cache.log"))
    }

    /// tinyproxy: a log line per connection, no CONNECT port restriction.
    pub(crate) fn tinyproxy(work: &Path) -> Result<Competitor> {
        let dir = work.join("tinyproxy");
        fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let d = dir.display();
        let conf = format!(
            "Port {port}\n\
             Listen 127.0.0.1\n\
             Timeout 600\n\
             MaxClients 1024\n\
             LogFile \"{d}/tinyproxy.log\"\n\
             LogLevel Connect\n\
             PidFile \"{d}/tinyproxy.pid\"\n\
             Allow 127.0.0.1\n\
             DisableViaHeader Yes\n"
        );
        let conf_path = dir.join("tinyproxy.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("/usr/bin/tinyproxy");
        cmd.arg("-d").arg("-c").arg(&conf_path);
        Competitor::start("tinyproxy", cmd, port, &dir.join("tinyproxy.log"))
    }

    fn start(name: &'static str, mut cmd: Command, port: u16, log: &Path) -> Result<Competitor> {
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn(cmd, name, None)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + PROC_LIMIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                break;
            }
            let tail = || {
                let text = fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().rev().take(5).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            proc.check_alive()
                .with_context(|| format!("{}:\n{}", log.display(), tail()))?;
            if Instant::now() >= until {
                bail!(
                    "{name} is not listening on {addr} after {PROC_LIMIT:?}; {}:\n{}",
                    log.display(),
                    tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Competitor { name, proc, addr })
    }

    pub(crate) fn target(&self, sink: SocketAddr) -> Target {
        Target {
            name: self.name.into(),
            dial: self.addr,
            request: Some(format!("CONNECT {sink} HTTP/1.1\r\nHost: {sink}\r\n\r\n").into_bytes()),
        }
    }
}

impl Drop for Competitor {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

/// A port that was free a moment ago, for a server that must be told its
/// port in its config.
fn free_port() -> Result<u16> {
    Ok(StdListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
