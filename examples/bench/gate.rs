//! The gate: one guarded invocation, `cli-guard run --as npm -- holder.sh`,
//! where the holder publishes the proxy URL it was given and waits for a
//! stop file. It runs the plain proxy (`CLI_GUARD_STRICT=off`), whose
//! listener the benchmark's clients reach from the host. Also the command
//! line and proxy URL helpers that section 6's guarded client shares.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::client::Target;
use crate::procs::Proc;
use crate::{Bench, ALLOWED, PROC_LIMIT, TOOL};

/// The guarded "tool": it publishes the proxy URL it was given ($1) and
/// waits for the stop file ($2) (an hour at most).
const HOLDER: &str = r#"#!/bin/sh
printf '%s\n' "$HTTPS_PROXY" > "$1.tmp" && mv "$1.tmp" "$1" || exit 1
i=0
while [ ! -e "$2" ] && [ "$i" -lt 72000 ]; do
    sleep 0.05
    i=$((i + 1))
done
"#;

pub(crate) fn write_holder(work: &Path) -> Result<PathBuf> {
    let path = work.join("holder.sh");
    fs::write(&path, HOLDER)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// `cli-guard run --as npm --`, to be followed by the tool and its
/// arguments: a clean environment, the audit log at `audit_log`, the
/// allowed host resolved to `sink`, and `CLI_GUARD_STRICT` set to `strict`.
pub(crate) fn guarded_command(
    b: &Bench,
    home: &Path,
    audit_log: &Path,
    sink: SocketAddr,
    strict: &str,
) -> Command {
    let mut cmd = Command::new(&b.bin);
    cmd.args(["run", "--as", TOOL, "--"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("CLI_GUARD_AUDIT_LOG", audit_log)
        .env("CLI_GUARD_RESOLVE", format!("{ALLOWED}={sink}"))
        .env("CLI_GUARD_STRICT", strict)
        .stderr(Stdio::inherit());
    cmd
}

/// The proxy address and the `Proxy-Authorization` value in a gate's
/// `HTTPS_PROXY` (`http://cli-guard:TOKEN@HOST:PORT`).
pub(crate) fn parse_proxy_url(url: &str) -> Result<(SocketAddr, String)> {
    let (userinfo, hostport) = url
        .trim()
        .strip_prefix("http://")
        .and_then(|rest| rest.rsplit_once('@'))
        .with_context(|| format!("unexpected proxy URL {url:?}"))?;
    let proxy = hostport
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("unexpected proxy address in {url:?}"))?;
    Ok((proxy, format!("Basic {}", cli_guard::base64(userinfo.as_bytes()))))
}

/// `CONNECT registry.npmjs.org:443` through the proxy at `proxy`.
pub(crate) fn connect_target(name: &str, proxy: SocketAddr, authorization: &str) -> Target {
    Target {
        name: name.into(),
        dial: proxy,
        request: Some(
            format!(
                "CONNECT {ALLOWED} HTTP/1.1\r\nHost: {ALLOWED}\r\nProxy-Authorization: {authorization}\r\n\r\n"
            )
            .into_bytes(),
        ),
    }
}

/// One guarded invocation, `cli-guard run --as npm -- holder.sh`, held open
/// until `stop`.
pub(crate) struct Gate {
    proc: Proc,
    proxy: SocketAddr,
    authorization: String,
    stop_file: PathBuf,
}

impl Gate {
    pub(crate) fn start(
        b: &Bench,
        label: &str,
        audit_log: &Path,
        sink: SocketAddr,
        nofile: Option<u64>,
    ) -> Result<Gate> {
        Gate::launch(b, label, audit_log, sink, nofile, &[])
    }

    /// [`Gate::start`] with `env` added to the gate's environment.
    pub(crate) fn start_with(
        b: &Bench,
        label: &str,
        audit_log: &Path,
        sink: SocketAddr,
        env: &[(&str, String)],
    ) -> Result<Gate> {
        Gate::launch(b, label, audit_log, sink, None, env)
    }

    fn launch(
        b: &Bench,
        label: &str,
        audit_log: &Path,
        sink: SocketAddr,
        nofile: Option<u64>,
        env: &[(&str, String)],
    ) -> Result<Gate> {
        let dir = b.work.join(format!("gate-{label}"));
        fs::create_dir_all(&dir)?;
        let url_file = dir.join("proxy-url");
        let stop_file = dir.join("stop");
        // The plain proxy: these sections drive its listener from the host,
        // which a strict invocation's listener (in the tool's namespace)
        // cannot be reached from. Section 6 measures strict mode.
        let mut cmd = guarded_command(b, &dir, audit_log, sink, "off");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.arg(&b.holder)
            .arg(&url_file)
            .arg(&stop_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut proc = Proc::spawn(cmd, &format!("cli-guard ({label})"), nofile)?;
        let until = Instant::now() + PROC_LIMIT;
        let url = loop {
            if let Ok(url) = fs::read_to_string(&url_file) {
                break url;
            }
            proc.check_alive()?;
            ensure!(
                Instant::now() < until,
                "the guarded holder did not start within {PROC_LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        };
        let (proxy, authorization) = parse_proxy_url(&url)?;
        Ok(Gate {
            proc,
            proxy,
            authorization,
            stop_file,
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub(crate) fn target(&self, name: &str) -> Target {
        connect_target(name, self.proxy, &self.authorization)
    }

    /// Tells the holder to exit and waits for the gate to finish.
    pub(crate) fn stop(mut self) -> Result<()> {
        fs::write(&self.stop_file, b"")?;
        let status = self.proc.wait(PROC_LIMIT)?;
        ensure!(status.success(), "{} exited with {status}", self.proc.name);
        Ok(())
    }
}
