//! The guarded client, for section 6: this executable run as the tool
//! under a gate (`cli-guard run --as npm -- bench --guarded-client`), so that
//! its connections start where the tool's would: inside the namespace under
//! a strict gate, whose listeners the host cannot reach, or on the host
//! under a plain one. Both sides of every comparison use this same client.
//!
//! Inside, it reads the proxy and its credential from `HTTPS_PROXY`, resolves
//! `--transparent=HOST:PORT` once (in a strict namespace, the gate's DNS
//! answers with a pool address), prints `ready PROXY TRANSPARENT|-`, then
//! answers one command a line on stdin with one line on stdout, `ok ...` or
//! `err MESSAGE`:
//! - `send proxy BYTES`, `send transparent BYTES`, `send direct ADDR BYTES`:
//!   one connection (a CONNECT tunnel to the allowed host; a plain connect to
//!   the transparent address; a plain connect to ADDR), BYTES written, the
//!   write side shut, read to EOF (the sink closes once it has read it all);
//!   answers the seconds from the first byte written to that EOF.
//! - `connect proxy N`: N sequential CONNECTs, each closed once the 200 is
//!   read; answers each one's time from connect to 200, in µs.
//! - `quit`: answers `ok` and exits.
//!
//! The benchmark's side is [`GuardedClient`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::client::{open_std, write_all_then_shutdown, Target};
use crate::gate::{connect_target, guarded_command, parse_proxy_url};
use crate::procs::Proc;
use crate::{Bench, IO_LIMIT, PROC_LIMIT};

/// The hidden mode in which this executable is the guarded client.
pub(crate) const CLIENT_ARG: &str = "--guarded-client";
/// The client's option naming the host to connect to without the proxy.
const TRANSPARENT_OPT: &str = "--transparent=";
/// Write size for `send`.
const CHUNK: usize = 256 * 1024;
/// The bound on one command (a 1 GiB transfer, 100 sequential CONNECTs).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Inside: the client mode

/// `--guarded-client [--transparent=HOST:PORT]`: see the module comment.
pub(crate) fn client_mode(args: impl Iterator<Item = String>) -> Result<()> {
    let mut transparent_name = None;
    for arg in args {
        match arg.strip_prefix(TRANSPARENT_OPT) {
            Some(name) => transparent_name = Some(name.to_string()),
            None => bail!("unknown argument {arg:?}"),
        }
    }
    let url = std::env::var("HTTPS_PROXY").context("no HTTPS_PROXY: not run by cli-guard?")?;
    let (proxy, authorization) = parse_proxy_url(&url)?;
    let proxy = connect_target("the gate's proxy", proxy, &authorization);
    let transparent = match &transparent_name {
        Some(name) => Some(
            name.to_socket_addrs()
                .with_context(|| format!("cannot resolve {name}"))?
                .find(SocketAddr::is_ipv4)
                .with_context(|| format!("{name} has no IPv4 address"))?,
        ),
        None => None,
    };
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "ready {} {}",
        proxy.dial,
        transparent.map_or_else(|| "-".to_string(), |a| a.to_string())
    )?;
    out.flush()?;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.trim() == "quit" {
            writeln!(out, "ok")?;
            out.flush()?;
            return Ok(());
        }
        match answer(&line, &proxy, transparent, &chunk) {
            Ok(reply) => writeln!(out, "ok {reply}")?,
            Err(e) => writeln!(out, "err {}", format!("{e:#}").replace('\n', " "))?,
        }
        out.flush()?;
    }
    bail!("stdin closed without quit")
}

fn answer(line: &str, proxy: &Target, transparent: Option<SocketAddr>, chunk: &[u8]) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["send", "proxy", bytes] => {
            let (stream, _) = open_std(proxy)?;
            Ok(send(stream, bytes.parse()?, chunk)?.to_string())
        }
        ["send", "transparent", bytes] => {
            let addr = transparent.context("no --transparent host was given")?;
            Ok(send(dial(addr)?, bytes.parse()?, chunk)?.to_string())
        }
        ["send", "direct", addr, bytes] => Ok(send(dial(addr.parse()?)?, bytes.parse()?, chunk)?.to_string()),
        ["connect", "proxy", n] => {
            let mut times = Vec::new();
            for _ in 0..n.parse::<usize>()? {
                let (stream, took) = open_std(proxy)?;
                drop(stream);
                times.push(format!("{:.1}", took.as_secs_f64() * 1e6));
            }
            Ok(times.join(" "))
        }
        _ => bail!("unknown command {line:?}"),
    }
}

fn dial(addr: SocketAddr) -> Result<TcpStream> {
    let stream =
        TcpStream::connect_timeout(&addr, IO_LIMIT).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_LIMIT))?;
    stream.set_write_timeout(Some(IO_LIMIT))?;
    Ok(stream)
}

/// Writes `bytes`, shuts the write side and reads to EOF; the seconds from
/// the first byte written to that EOF.
fn send(mut stream: TcpStream, bytes: u64, chunk: &[u8]) -> Result<f64> {
    let started = Instant::now();
    write_all_then_shutdown(&mut stream, bytes, chunk)?;
    let mut buf = [0u8; 512];
    let n = stream
        .read(&mut buf)
        .context("waiting for the far end to close")?;
    ensure!(n == 0, "the far end sent bytes back");
    Ok(started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------
// The benchmark's side

/// The guarded client, started under a gate and waiting for commands.
pub(crate) struct GuardedClient {
    pub(crate) name: String,
    proc: Proc,
    stdin: ChildStdin,
    lines: mpsc::Receiver<io::Result<String>>,
    /// The address the client resolved the transparent host to.
    pub(crate) transparent: Option<SocketAddr>,
}

impl GuardedClient {
    /// `cli-guard run --as npm -- bench --guarded-client`, with
    /// `CLI_GUARD_STRICT` set to `strict`, the allowed host resolved (by
    /// the gate) to `sink`, and with `--transparent=` when `transparent`.
    pub(crate) fn start(
        b: &Bench,
        name: &str,
        strict: &str,
        sink: SocketAddr,
        transparent: Option<&str>,
    ) -> Result<GuardedClient> {
        let home = b.work.join(format!("guarded-{strict}"));
        std::fs::create_dir_all(&home)?;
        let audit = Self::audit_log(b, strict);
        let mut cmd = guarded_command(b, &home, &audit, sink, strict);
        cmd.arg(std::env::current_exe()?).arg(CLIENT_ARG);
        if let Some(host) = transparent {
            cmd.arg(format!("{TRANSPARENT_OPT}{host}"));
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut proc = Proc::spawn(cmd, &format!("the guarded client ({name})"), None)?;
        let (Some(stdin), Some(stdout)) = proc.take_pipes() else {
            bail!("no pipes to the guarded client");
        };
        let (tx, lines) = mpsc::channel();
        // Ends at the client's EOF (it exits, or is killed with its gate).
        thread::Builder::new()
            .name("guarded-client".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start a reader thread")?;
        let mut client = GuardedClient {
            name: name.to_string(),
            proc,
            stdin,
            lines,
            transparent: None,
        };
        let ready = client.line(PROC_LIMIT)?;
        let mut words = ready.split_whitespace();
        ensure!(
            words.next() == Some("ready"),
            "{} said {ready:?} instead of ready",
            client.name
        );
        let _proxy = words.next();
        client.transparent = match words.next() {
            Some("-") | None => None,
            Some(addr) => Some(
                addr.parse()
                    .with_context(|| format!("{} said {ready:?}", client.name))?,
            ),
        };
        Ok(client)
    }

    fn line(&mut self, limit: Duration) -> Result<String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(line?),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.proc.kill();
                bail!("{} did not answer within {limit:?}: killed it", self.name)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.proc.check_alive()?;
                bail!("{} closed its stdout", self.name)
            }
        }
    }

    /// Sends one command and returns the answer after `ok`.
    pub(crate) fn ask(&mut self, command: &str) -> Result<String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("cannot write to {}", self.name))?;
        let reply = self.line(COMMAND_LIMIT)?;
        if let Some(rest) = reply.strip_prefix("ok") {
            return Ok(rest.trim().to_string());
        }
        let why = reply.strip_prefix("err ").unwrap_or(&reply);
        bail!("{} failed `{command}`: {why}", self.name)
    }

    /// The MB/s of one `send` command.
    pub(crate) fn send(&mut self, how: &str, bytes: u64) -> Result<f64> {
        let secs: f64 = self.ask(&format!("send {how} {bytes}"))?.parse()?;
        Ok(bytes as f64 / secs.max(1e-9) / 1e6)
    }

    /// The times to 200 of `n` sequential CONNECTs.
    pub(crate) fn connects(&mut self, n: usize) -> Result<Vec<Duration>> {
        self.ask(&format!("connect proxy {n}"))?
            .split_whitespace()
            .map(|us| Ok(Duration::from_secs_f64(us.parse::<f64>()? / 1e6)))
            .collect()
    }

    /// Tells the client to exit and waits for its gate to finish.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.ask("quit")?;
        let status = self.proc.wait(PROC_LIMIT)?;
        ensure!(status.success(), "{} exited with {status}", self.proc.name);
        Ok(())
    }

    /// The audit log its gate writes.
    pub(crate) fn audit_log(b: &Bench, strict: &str) -> PathBuf {
        b.work.join(format!("audit-guarded-{strict}.jsonl"))
    }
}

/// How many start rows in `log` say `isolation: "netns"`, and how many
/// `"none"`.
pub(crate) fn isolation_counts(log: &Path) -> Result<(usize, usize)> {
    let text = std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let (mut netns, mut none) = (0, 0);
    for line in text.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON row in {}", log.display()))?;
        if row["kind"] == "start" {
            match row["isolation"].as_str() {
                Some("netns") => netns += 1,
                Some("none") => none += 1,
                _ => bail!("a start row without isolation in {}: {line}", log.display()),
            }
        }
    }
    Ok((netns, none))
}
