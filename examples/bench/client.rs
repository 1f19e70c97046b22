//! Clients: where a client connects and what it asks there, opening a
//! tunnel (blocking, for timed sequential requests; async, for many at
//! once), and the order of the contenders in each round.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::IO_LIMIT;

/// Writes `bytes` to `stream` in `chunk`-sized writes, then shuts the
/// write side: one side of a measured transfer.
pub(crate) fn write_all_then_shutdown(stream: &mut TcpStream, bytes: u64, chunk: &[u8]) -> Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        stream.write_all(&chunk[..n]).context("writing")?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// Where a client connects and what it asks there (`None`: nothing, a
/// direct connection to the sink).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) dial: SocketAddr,
    pub(crate) request: Option<Vec<u8>>,
}

impl Target {
    pub(crate) fn direct(sink: SocketAddr) -> Target {
        Target {
            name: "direct loopback TCP".into(),
            dial: sink,
            request: None,
        }
    }
}

/// Connects and, through a proxy, asks for the tunnel and reads the 200.
/// Returns the open stream and the time from connect to the 200.
pub(crate) fn open_std(target: &Target) -> Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target.dial, IO_LIMIT)
        .with_context(|| format!("connecting to {}", target.name))?;
    stream.set_read_timeout(Some(IO_LIMIT))?;
    stream.set_write_timeout(Some(IO_LIMIT))?;
    if let Some(request) = &target.request {
        stream.write_all(request)?;
        let mut head = Vec::with_capacity(128);
        let mut chunk = [0u8; 512];
        let status = loop {
            if let Some(status) = head_status(&head)? {
                break status;
            }
            let n = stream
                .read(&mut chunk)
                .with_context(|| format!("waiting for {}'s answer", target.name))?;
            ensure!(n > 0, "{} closed without answering", target.name);
            head.extend_from_slice(&chunk[..n]);
        };
        ensure!(status == 200, "{} answered {status}", target.name);
    }
    Ok((stream, started.elapsed()))
}

pub(crate) async fn open_async(target: &Target) -> Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(target.dial).await?;
    if let Some(request) = &target.request {
        stream.write_all(request).await?;
        let mut head = Vec::with_capacity(128);
        let mut chunk = [0u8; 512];
        let status = loop {
            if let Some(status) = head_status(&head)? {
                break status;
            }
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "{} closed without answering", target.name);
            head.extend_from_slice(&chunk[..n]);
        };
        ensure!(status == 200, "{} answered {status}", target.name);
    }
    Ok(stream)
}

/// The status of a complete response head, `None` while it is incomplete.
fn head_status(head: &[u8]) -> Result<Option<u16>> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        ensure!(head.len() < 16 * 1024, "a response head over 16 KiB");
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    Ok(Some(status))
}

/// The order of the contenders in round `round`: rotated, so that each goes
/// first as often as the others.
pub(crate) fn rotated(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n).collect()
}

/// Time to 200 of `requests` sequential CONNECTs to each target, opened
/// and closed in rounds of `round` per target, the order rotated each
/// round; the times, per target.
pub(crate) fn times_to_200(targets: &[Target], requests: usize, round: usize) -> Result<Vec<Vec<Duration>>> {
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for r in 0..requests.div_ceil(round) {
        for i in rotated(targets.len(), r) {
            for _ in 0..round {
                let (stream, took) = open_std(&targets[i])?;
                drop(stream);
                latencies[i].push(took);
            }
        }
    }
    Ok(latencies)
}
