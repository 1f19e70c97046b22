//! Load (issue 4, "Limits, timeouts, fair service" and "Proof: load"):
//! 1,000 concurrent tunnels with every byte checked and every row present;
//! no descriptor or thread leak after 10,000 connections of every kind; the
//! connection cap answering 503; and slow-drip clients that neither delay a
//! well-behaved request nor extend their own head deadline.
//!
//! The many-connection tests drive their clients from a tokio current-thread
//! runtime in the test (tokio is already a dependency): one thread, thousands
//! of sockets. The 1,000 tunnels' upstream runs on that runtime too; the leak
//! test's echo server runs on threads of its own, so it keeps serving while
//! the test only watches the gate settle. Every wait is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

/// Sets the RLIMIT_NOFILE of the process `cmd` starts to `limit`.
fn nofile(cmd: &mut Command, limit: u64) {
    // Soft and hard alike: the gate raises its soft limit to the hard
    // one at start, so only the hard limit bounds its cap.
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit(2), which is async-signal-safe; it allocates
    // nothing and takes no lock of the parent's.
    unsafe {
        cmd.pre_exec(move || setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(io::Error::from));
    }
}

/// Raises this test process's RLIMIT_NOFILE soft limit to the hard limit
/// (shims it starts inherit it), and requires at least `need`.
fn raise_nofile(need: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    assert!(
        hard >= need,
        "this test needs RLIMIT_NOFILE of at least {need}; the hard limit is {hard}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How many of `fds` (as `fds_of` lists them) point at `kind`, such as
/// `pipe:[` or `socket:[`.
fn count_of(kind: &str, fds: &[String]) -> usize {
    fds.iter().filter(|fd| fd.contains(kind)).count()
}

/// How many descriptors `pid` holds, and what they are.
fn fds_of(pid: i32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let target = fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}

/// The `Threads:` line of /proc/PID/status.
fn threads_of(pid: i32) -> usize {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits (up to `limit`) until `pid`'s descriptor and thread counts have not
/// changed for `quiet`, and returns them.
fn settled(pid: i32, quiet: Duration, limit: Duration) -> (Vec<String>, usize) {
    let deadline = Instant::now() + limit;
    let mut last = (fds_of(pid), threads_of(pid));
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = (fds_of(pid), threads_of(pid));
        if now.0.len() != last.0.len() || now.1 != last.1 {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
    }
    last
}

/// Reads until the end of a response head; returns the status and
/// whatever arrived after the head (the tunnel's first bytes).
async fn read_status(s: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = String::from_utf8_lossy(&got[..end])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let status = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((status, got[end + 4..].to_vec()));
        }
        if got.len() > 64 * 1024 {
            return Err("answer head too long".into());
        }
        match s.read(&mut chunk).await {
            Ok(0) => return Err(format!("EOF after {:?}", String::from_utf8_lossy(&got))),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e} after {:?}", String::from_utf8_lossy(&got))),
        }
    }
}

// ---------------------------------------------------------------------------
// 1,000 tunnels at once

const TUNNELS: usize = 1000;
/// Random bytes the payloads are cut from: each tunnel and direction takes
/// its own window, so crossed or shifted streams cannot compare equal.
const BLOCK: usize = 4 << 20;

/// (bytes up, bytes down) for tunnel `id`: 32 to 64 KiB each, deterministic.
fn sizes(id: u32) -> (usize, usize) {
    let r = pattern(4, u64::from(id) + 1);
    let span = 32 * 1024 + 1;
    let up = 32 * 1024 + (usize::from(r[0]) << 8 | usize::from(r[1])) % span;
    let down = 32 * 1024 + (usize::from(r[2]) << 8 | usize::from(r[3])) % span;
    (up, down)
}

/// Where tunnel `id`'s payload in `dir` (0 up, 1 down) starts in the block.
fn offset(id: u32, dir: u32) -> usize {
    (id as usize * 2 + dir as usize) * 1999 % (BLOCK - 64 * 1024 - 1)
}

/// The 16 bytes each tunnel sends first: id, up, down, and a magic word.
fn preamble(id: u32) -> [u8; 16] {
    let (up, down) = sizes(id);
    let mut p = [0u8; 16];
    p[..4].copy_from_slice(&id.to_le_bytes());
    p[4..8].copy_from_slice(&(up as u32).to_le_bytes());
    p[8..12].copy_from_slice(&(down as u32).to_le_bytes());
    p[12..].copy_from_slice(b"lode");
    p
}

/// The upstream of the 1,000 tunnels: reads the preamble, then at once
/// checks every byte that comes up and sends its own bytes down.
struct Verifier {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    results: Arc<Mutex<Vec<Result<u32, String>>>>,
}

async fn verifier(block: Arc<Vec<u8>>) -> Verifier {
    // The gate dials all 1,000 at once: tokio's default accept queue of
    // 1,024 overflows under that burst on a busy machine (SYN cookies,
    // then resets), so take the system's largest, as the gate does.
    let (listener, _) = cli_guard::bind_loopback().unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let v = Verifier {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::new(AtomicUsize::new(0)),
        peak: Arc::new(AtomicUsize::new(0)),
        results: Arc::new(Mutex::new(Vec::new())),
    };
    let (accepted, peak, results) = (v.accepted.clone(), v.peak.clone(), v.results.clone());
    let live = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let (block, results, live) = (block.clone(), results.clone(), live.clone());
            tokio::spawn(async move {
                let r = verify_one(s, &block).await;
                live.fetch_sub(1, Ordering::SeqCst);
                results.lock().unwrap().push(r);
            });
        }
    });
    v
}

async fn verify_one(mut s: TcpStream, block: &[u8]) -> Result<u32, String> {
    let mut p = [0u8; 16];
    s.read_exact(&mut p).await.map_err(|e| format!("preamble: {e}"))?;
    let id = u32::from_le_bytes(p[..4].try_into().unwrap());
    if p != preamble(id) {
        return Err(format!("bad preamble {p:?}"));
    }
    let (up, down) = sizes(id);
    let want_up = &block[offset(id, 0)..][..up];
    let send_down = &block[offset(id, 1)..][..down];
    let (mut r, mut w) = s.split();
    let reading = async {
        let mut got = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .await
                .map_err(|e| format!("tunnel {id} up: {e}"))?;
            if n == 0 {
                break;
            }
            if got + n > up || buf[..n] != want_up[got..got + n] {
                return Err(format!("tunnel {id}: wrong bytes up at offset {got}"));
            }
            got += n;
        }
        if got == up {
            Ok(())
        } else {
            Err(format!("tunnel {id}: {got} of {up} bytes up"))
        }
    };
    let writing = async {
        w.write_all(send_down)
            .await
            .map_err(|e| format!("tunnel {id} down: {e}"))?;
        w.shutdown()
            .await
            .map_err(|e| format!("tunnel {id} shutdown: {e}"))
    };
    let (a, b) = tokio::join!(reading, writing);
    a.and(b).map(|()| id)
}

/// One client: CONNECT with the preamble behind the head, wait for all
/// tunnels to be open, then send its bytes and check every byte that comes
/// back, both at once.
async fn tunnel_client(
    id: u32,
    proxy: SocketAddr,
    head: Arc<Vec<u8>>,
    block: Arc<Vec<u8>>,
    all_open: Arc<tokio::sync::Barrier>,
) -> Result<(), String> {
    let setup = async {
        let mut s = TcpStream::connect(proxy)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut packet = head.to_vec();
        packet.extend_from_slice(&preamble(id));
        s.write_all(&packet)
            .await
            .map_err(|e| format!("write head: {e}"))?;
        let (status, early) = read_status(&mut s).await?;
        if status != 200 {
            return Err(format!("status {status}"));
        }
        Ok((s, early))
    };
    let setup = setup.await;
    // Everyone waits here, failed or not, so the barrier always opens.
    all_open.wait().await;
    let (mut s, early) = setup.map_err(|e| format!("tunnel {id}: {e}"))?;
    let (up, down) = sizes(id);
    let send_up = &block[offset(id, 0)..][..up];
    let want_down = &block[offset(id, 1)..][..down];
    let (mut r, mut w) = s.split();
    let writing = async {
        w.write_all(send_up)
            .await
            .map_err(|e| format!("tunnel {id} up: {e}"))?;
        w.shutdown()
            .await
            .map_err(|e| format!("tunnel {id} shutdown: {e}"))
    };
    let reading = async {
        let mut got = early.len();
        if got > down || early[..] != want_down[..got] {
            return Err(format!("tunnel {id}: wrong early bytes down"));
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .await
                .map_err(|e| format!("tunnel {id} down: {e}"))?;
            if n == 0 {
                break;
            }
            if got + n > down || buf[..n] != want_down[got..got + n] {
                return Err(format!("tunnel {id}: wrong bytes down at offset {got}"));
            }
            got += n;
        }
        if got == down {
            Ok(())
        } else {
            Err(format!("tunnel {id}: {got} of {down} bytes down"))
        }
    };
    let (a, b) = tokio::join!(writing, reading);
    a.and(b)
}

#[test]
fn a_thousand_concurrent_tunnels_carry_every_byte_and_leave_every_row() {
    // Each tunnel holds two descriptors in the shim and two here; the
    // shim's cap, (soft limit - 128) / 2, must be over 1,000.
    raise_nofile(2 * TUNNELS as u64 + 1024);
    let block = Arc::new(pattern(BLOCK, 0x1000));
    let rt = runtime();
    let v = rt.block_on(verifier(block.clone()));
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, v.addr)]);
    let (run, env) = g.long_session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let proxy = env.proxy();
    let head = Arc::new(proxy.connect_head(NPM_REGISTRY));
    let started = Instant::now();
    let outcome = rt.block_on(async {
        let all_open = Arc::new(tokio::sync::Barrier::new(TUNNELS));
        let clients: Vec<_> = (0..TUNNELS as u32)
            .map(|id| {
                tokio::spawn(tunnel_client(
                    id,
                    proxy.addr,
                    head.clone(),
                    block.clone(),
                    all_open.clone(),
                ))
            })
            .collect();
        let all = async {
            let mut errors = Vec::new();
            for c in clients {
                match c.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(format!("task: {e}")),
                }
            }
            // The upstream's side of each tunnel ends just after the client's.
            let deadline = Instant::now() + WAIT;
            while v.results.lock().unwrap().len() < TUNNELS && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        };
        tokio::time::timeout(Duration::from_secs(90), all).await
    });
    let elapsed = started.elapsed();
    let Ok(errors) = outcome else {
        panic!(
            "1,000 tunnels not done within 90 s (upstream saw {})\n{}",
            v.accepted.load(Ordering::SeqCst),
            run.report()
        );
    };
    eprintln!("{TUNNELS} tunnels in {elapsed:?}");
    check!(
        run,
        errors.is_empty(),
        "{} of {TUNNELS} tunnels failed; first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let results = v.results.lock().unwrap().clone();
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    check!(
        run,
        bad.is_empty(),
        "upstream saw wrong bytes: {:?}",
        &bad[..bad.len().min(5)]
    );
    check_eq!(run, results.len(), TUNNELS, "the upstream finished every tunnel");
    check_eq!(
        run,
        v.accepted.load(Ordering::SeqCst),
        TUNNELS,
        "one upstream connection per tunnel"
    );
    check_eq!(
        run,
        v.peak.load(Ordering::SeqCst),
        TUNNELS,
        "all tunnels must have been open at once"
    );
    drop(rt);

    let out = g.finish(run, 0);
    let log = g.log();
    let id = env.audit_id();
    let egress = log.rows().of(id).kind("egress").by_conn();
    let closes = log.rows().of(id).kind("egress_close").by_conn();
    check_eq!(out, egress.len(), TUNNELS, "one egress row per tunnel");
    for r in &egress {
        check!(out, r["decision"] == "allow" && r["status"] == 200, "row {r}");
        check!(
            out,
            r["host"] == "registry.npmjs.org" && r["port"] == 443,
            "row {r}"
        );
    }
    check_eq!(out, closes.len(), TUNNELS, "one egress_close row per tunnel");
    let conns = |rows: &[&Row]| rows.iter().map(|r| r["conn"].as_u64()).collect::<Vec<_>>();
    check_eq!(
        out,
        conns(&closes),
        conns(&egress),
        "every tunnel's close pairs with its egress row"
    );
    // Exact byte counts: the multiset of (up, down) pairs must be the one
    // sent (up includes the 16-byte preamble sent behind the CONNECT head).
    let mut want: Vec<(u64, u64)> = (0..TUNNELS as u32)
        .map(|i| {
            let (u, d) = sizes(i);
            (u as u64 + 16, d as u64)
        })
        .collect();
    let mut got: Vec<(u64, u64)> = closes
        .iter()
        .map(|c| {
            (
                c["bytes_up"].as_u64().unwrap_or(0),
                c["bytes_down"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    check!(
        out,
        got == want,
        "egress_close byte counts differ from what was sent"
    );
    for c in &closes {
        check!(
            out,
            c["error"].is_null(),
            "a clean tunnel closes without error: {c}"
        );
    }
}

// ---------------------------------------------------------------------------
// No leaks

/// Every kind of connection a gate meets, and the status of its row
/// (`None`: no row, because no request head ever arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// An allowed tunnel, opened, used and closed by both sides.
    Tunnel,
    Denied,
    BadTarget,
    Plaintext,
    NoCredential,
    Conflict,
    TooManyHeaders,
    /// A TLS ClientHello sent to the proxy itself.
    Garbage,
    /// Half a head, then gone.
    VanishMidHead,
    /// A whole (denied) head, then gone before the answer.
    VanishAfterHead,
    /// A tunnel the client leaves (FIN) with data in flight.
    VanishMidTunnel,
    /// A tunnel the client resets (RST).
    ResetMidTunnel,
    /// Connects and closes without a byte.
    Silent,
}

const KINDS: [Kind; 13] = [
    Kind::Tunnel,
    Kind::Denied,
    Kind::BadTarget,
    Kind::Plaintext,
    Kind::NoCredential,
    Kind::Conflict,
    Kind::TooManyHeaders,
    Kind::Garbage,
    Kind::VanishMidHead,
    Kind::VanishAfterHead,
    Kind::VanishMidTunnel,
    Kind::ResetMidTunnel,
    Kind::Silent,
];

impl Kind {
    fn row(self) -> Option<u16> {
        match self {
            Kind::Tunnel | Kind::VanishMidTunnel | Kind::ResetMidTunnel => Some(200),
            Kind::Denied | Kind::VanishAfterHead => Some(403),
            Kind::BadTarget | Kind::Conflict | Kind::Garbage => Some(400),
            Kind::Plaintext => Some(405),
            Kind::NoCredential => Some(407),
            Kind::TooManyHeaders => Some(431),
            Kind::VanishMidHead | Kind::Silent => None,
        }
    }

    /// Refused before any credential was checked or any target named: the
    /// gate logs the first 1,000 of these per invocation and counts the rest.
    fn is_a_strangers(self) -> bool {
        matches!(
            self,
            Kind::NoCredential | Kind::BadTarget | Kind::Garbage | Kind::TooManyHeaders
        )
    }
}

/// The gate's per-invocation row cap for refusals of callers without the
/// credential (src/gate/tally.rs `STRANGER_ROWS`).
const STRANGER_ROWS: usize = 1000;

/// Sends `raw` and reads the whole answer, which must have status `want`.
async fn refused(mut s: TcpStream, raw: Vec<u8>, want: u16) -> Result<(), String> {
    s.write_all(&raw).await.map_err(|e| format!("write: {e}"))?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.map_err(|e| format!("read: {e}"))?;
    let prefix = format!("HTTP/1.1 {want} ");
    if all.starts_with(prefix.as_bytes()) {
        Ok(())
    } else {
        Err(format!("want {want}, got {:?}", String::from_utf8_lossy(&all)))
    }
}

/// One connection of `kind`; checks the answer where there is one.
async fn one(kind: Kind, proxy: SocketAddr, auth: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let cred = format!("Proxy-Authorization: {auth}\r\n");
    let request = |line: &str, extra: &str| format!("{line}\r\n{cred}{extra}\r\n").into_bytes();
    match kind {
        Kind::Tunnel | Kind::VanishMidTunnel | Kind::ResetMidTunnel => {
            let mut raw = request("CONNECT registry.npmjs.org:443 HTTP/1.1", "");
            raw.extend_from_slice(b"early|");
            s.write_all(&raw).await.map_err(|e| format!("write: {e}"))?;
            let (status, mut echoed) = read_status(&mut s).await?;
            if status != 200 {
                return Err(format!("tunnel: status {status}"));
            }
            match kind {
                Kind::Tunnel => {
                    s.write_all(b"and more")
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
                    s.read_to_end(&mut echoed)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if echoed != b"early|and more" {
                        return Err(format!("echo: {:?}", String::from_utf8_lossy(&echoed)));
                    }
                }
                Kind::ResetMidTunnel => {
                    s.write_all(&[7u8; 5000])
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    s.set_zero_linger().map_err(|e| format!("linger: {e}"))?;
                    drop(s);
                }
                _ => {
                    s.write_all(&[9u8; 5000])
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    drop(s);
                }
            }
            Ok(())
        }
        Kind::Denied => refused(s, request("CONNECT evil.example:443 HTTP/1.1", ""), 403).await,
        Kind::BadTarget => refused(s, request("CONNECT registry%2enpmjs.org:443 HTTP/1.1", ""), 400).await,
        Kind::Plaintext => refused(s, request("GET http://registry.npmjs.org/ HTTP/1.1", ""), 405).await,
        Kind::NoCredential => {
            refused(
                s,
                b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\n\r\n".to_vec(),
                407,
            )
            .await
        }
        Kind::Conflict => refused(s, request("CONNECT registry.npmjs.org:443 HTTP/1.1", &cred), 400).await,
        Kind::TooManyHeaders => {
            let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
            refused(s, request("CONNECT registry.npmjs.org:443 HTTP/1.1", &many), 431).await
        }
        Kind::Garbage => {
            let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
            hello.extend(pattern(32, 3));
            refused(s, hello, 400).await
        }
        Kind::VanishMidHead => {
            s.write_all(b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: regi")
                .await
                .map_err(|e| format!("write: {e}"))?;
            drop(s);
            Ok(())
        }
        Kind::VanishAfterHead => {
            s.write_all(&request("CONNECT evil.example:443 HTTP/1.1", ""))
                .await
                .map_err(|e| format!("write: {e}"))?;
            drop(s);
            Ok(())
        }
        Kind::Silent => {
            drop(s);
            Ok(())
        }
    }
}

/// Runs `total` connections, kinds in turn, `parallel` at a time. Returns
/// the failures and how many of each kind ran.
async fn storm(
    proxy: SocketAddr,
    auth: Arc<String>,
    total: usize,
    parallel: usize,
) -> (Vec<String>, BTreeMap<Kind, usize>) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, auth) = (next.clone(), auth.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut ran = BTreeMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let kind = KINDS[i % KINDS.len()];
                    *ran.entry(kind).or_insert(0) += 1;
                    match tokio::time::timeout(IO_TIMEOUT, one(kind, proxy, &auth)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => errors.push(format!("#{i} {kind:?}: {e}")),
                        Err(_) => errors.push(format!("#{i} {kind:?}: timed out")),
                    }
                }
                (errors, ran)
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut ran = BTreeMap::new();
    for w in workers {
        let (e, r) = w.await.unwrap();
        errors.extend(e);
        for (k, n) in r {
            *ran.entry(k).or_insert(0) += n;
        }
    }
    (errors, ran)
}

#[test]
fn ten_thousand_connections_of_every_kind_leak_no_descriptor_or_thread() {
    raise_nofile(2048);
    let rt = runtime();
    // The echo server runs on threads of its own: it must keep answering
    // while this thread only watches the gate settle.
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr), ("evil.example:443", up.addr)]);
    let (run, env) = g.long_session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let pid = run.pid();
    let proxy = env.proxy();
    let auth = Arc::new(proxy.auth.clone().unwrap());

    // Warm-up: every kind a few times, so whatever the gate sets up once
    // (buffers, the log's descriptor, runtime internals) exists already.
    let (errors, warm) = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            storm(proxy.addr, auth.clone(), 3 * KINDS.len(), 4),
        )
        .await
        .unwrap_or_else(|_| (vec!["warm-up timed out".into()], BTreeMap::new()))
    });
    check!(run, errors.is_empty(), "warm-up: {errors:?}");
    let (fds_before, threads_before) = settled(pid, Duration::from_secs(1), Duration::from_secs(10));
    check!(run, !fds_before.is_empty(), "cannot read /proc/{pid}/fd");

    let total = 10_000;
    let started = Instant::now();
    let (errors, ran) = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(120),
            storm(proxy.addr, auth.clone(), total, 32),
        )
        .await
        .unwrap_or_else(|_| (vec!["the storm timed out after 120 s".into()], BTreeMap::new()))
    });
    eprintln!("{total} connections in {:?}", started.elapsed());
    check!(
        run,
        errors.is_empty(),
        "{} connections failed; first: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );

    // Closed connections may linger briefly in the gate (it drains a
    // refused client for up to 500 ms); then it holds what it held before.
    // The relay's pool may keep (or have closed) up to IDLE_PIPES empty
    // pipes, so pipes are bounded by that; every other descriptor must be
    // exactly as before.
    let pool_bound = 2 * cli_guard::IDLE_PIPES;
    let back = wait_until(Duration::from_secs(20), || {
        let fds = fds_of(pid);
        fds.len() - count_of("pipe:[", &fds) == fds_before.len() - count_of("pipe:[", &fds_before)
            && count_of("pipe:[", &fds) <= count_of("pipe:[", &fds_before) + pool_bound
            && threads_of(pid) == threads_before
    });
    let (fds_after, threads_after) = (fds_of(pid), threads_of(pid));
    check!(
        run,
        back,
        "after {total} connections the shim holds {} descriptors ({} pipes) and {threads_after} threads; \
         before: {} ({} pipes) and {threads_before}; the pipe pool may hold {pool_bound}\n\
         ---- before ----\n{}\n---- after ----\n{}",
        fds_after.len(),
        count_of("pipe:[", &fds_after),
        fds_before.len(),
        count_of("pipe:[", &fds_before),
        fds_before.join("\n"),
        fds_after.join("\n")
    );
    drop(rt);

    // Every answered request left exactly its row; every tunnel its close.
    let out = g.finish(run, 0);
    let log = g.log();
    let egress = log.rows().of(env.audit_id()).kind("egress").by_conn();
    let closes = log.rows().of(env.audit_id()).kind("egress_close").by_conn();
    // Exact counts for what the credential holder caused; refusals of
    // strangers: the first STRANGER_ROWS logged, the rest counted in `end`.
    let mut want: BTreeMap<u16, usize> = BTreeMap::new();
    let mut strangers = 0usize;
    for (kind, n) in warm.iter().chain(&ran) {
        match kind.row() {
            Some(_) if kind.is_a_strangers() => strangers += n,
            Some(status) => *want.entry(status).or_insert(0) += n,
            None => {}
        }
    }
    let mut got: BTreeMap<u16, usize> = BTreeMap::new();
    let mut stranger_rows = 0usize;
    for r in &egress {
        let status = r["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        if status == 407 || r["host"].is_null() {
            stranger_rows += 1;
        } else {
            *got.entry(status).or_insert(0) += 1;
        }
    }
    check_eq!(
        out,
        got,
        want,
        "egress rows by status (kinds run: {warm:?} + {ran:?})"
    );
    check_eq!(
        out,
        stranger_rows,
        strangers.min(STRANGER_ROWS),
        "rows for strangers' refusals"
    );
    let ends = log.rows().of(env.audit_id()).kind("end").by_conn();
    check_eq!(
        out,
        ends[0]["suppressed"].as_u64(),
        Some((strangers - strangers.min(STRANGER_ROWS)) as u64),
        "the rest counted in end.suppressed"
    );
    check_eq!(out, closes.len(), want[&200], "one egress_close per tunnel");
    let tunnels: usize = [Kind::Tunnel, Kind::VanishMidTunnel, Kind::ResetMidTunnel]
        .iter()
        .map(|k| warm.get(k).unwrap_or(&0) + ran.get(k).unwrap_or(&0))
        .sum();
    check_eq!(out, up.accepted(), tunnels, "upstream connections");
}

// ---------------------------------------------------------------------------
// The connection cap

#[test]
fn over_the_connection_cap_the_gate_answers_503_at_once_and_recovers() {
    // A soft limit of 160 gives a cap of 16 (asserted here, so the test
    // follows the formula).
    const CAP: usize = 16;
    assert_eq!(cli_guard::connection_cap_for(160), CAP);
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
    let (run, env) = g.long_session_with("npm", &[("CLI_GUARD_RESOLVE", &resolve)], |cmd| nofile(cmd, 160));
    let proxy = env.proxy();
    let mut open: Vec<_> = (0..CAP)
        .map(|i| {
            let (a, mut s) = proxy.tunnel(NPM_REGISTRY, b"");
            check_eq!(run, a.status, 200, "tunnel {i} of {CAP}\n{}", a.report());
            check!(run, echo_roundtrip(&mut s, b"held").is_ok(), "tunnel {i}: relay");
            s
        })
        .collect();

    // The next connection is answered 503 at once, before it sends a byte.
    let t = Instant::now();
    let mut s = proxy.dial();
    let a = read_answer(&mut s, true);
    check_eq!(
        run,
        a.status,
        503,
        "connection {} over a cap of {CAP}\n{}",
        CAP + 1,
        a.report()
    );
    check!(
        run,
        t.elapsed() < Duration::from_secs(3),
        "the 503 comes at once, not after {:?}",
        t.elapsed()
    );
    check!(run, a.closed, "the gate closes after its 503\n{}", a.report());
    drop(s);
    // And so is a full, allowed request: nothing is dialled for it.
    let a = proxy.connect(NPM_REGISTRY);
    check_eq!(
        run,
        a.status,
        503,
        "an allowed CONNECT over the cap\n{}",
        a.report()
    );
    check_eq!(run, up.accepted(), CAP, "nothing was dialled over the cap");
    // The held tunnels still work.
    for (i, s) in open.iter_mut().enumerate() {
        check!(
            run,
            echo_roundtrip(s, b"still").is_ok(),
            "tunnel {i} after the 503s"
        );
    }

    // Close one tunnel cleanly; once its close is logged, its place is free.
    let mut first = open.remove(0);
    first.shutdown(Shutdown::Write).unwrap();
    check!(run, at_eof(&mut first), "the closed tunnel ends");
    drop(first);
    let closed = wait_until(WAIT, || {
        !Log::read_so_far(&g.audit).rows().kind("egress_close").is_empty()
    });
    check!(run, closed, "the closed tunnel's egress_close row");
    // The slot is released as the connection's task ends, just after its
    // row: allow that moment, bounded, and count any 503 it costs.
    let mut retries = 0;
    let (a, mut s) = loop {
        let (a, s) = proxy.tunnel(NPM_REGISTRY, b"");
        if a.status != 503 || retries >= 50 {
            break (a, s);
        }
        retries += 1;
        thread::sleep(Duration::from_millis(20));
    };
    check_eq!(
        run,
        a.status,
        200,
        "a request after a tunnel closed ({retries} retries)\n{}",
        a.report()
    );
    check!(
        run,
        echo_roundtrip(&mut s, b"served").is_ok(),
        "the new tunnel relays"
    );
    open.push(s);
    // At the cap again.
    let a = proxy.connect(NPM_REGISTRY);
    check_eq!(run, a.status, 503, "back at the cap\n{}", a.report());

    for mut s in open {
        let _ = s.shutdown(Shutdown::Write);
        let _ = at_eof(&mut s);
    }
    let out = g.finish(run, 0);
    let log = g.log();
    let egress = log.rows().of(env.audit_id()).kind("egress").by_conn();
    let over: Vec<&&Row> = egress.iter().filter(|r| r["status"] == 503).collect();
    check_eq!(out, over.len(), 3 + retries, "one row per 503");
    for r in over {
        check!(out, r["decision"] == "deny", "{r}");
        check!(
            out,
            r["method"].is_null() && r["host"].is_null() && r["port"].is_null(),
            "{r}"
        );
        check!(
            out,
            !r["reason"].as_str().unwrap_or_default().is_empty(),
            "a 503 row says why: {r}"
        );
    }
    let allowed = egress.iter().filter(|r| r["status"] == 200).count();
    check_eq!(out, allowed, CAP + 1, "the tunnels opened");
}

// ---------------------------------------------------------------------------
// Slow clients

#[test]
fn slow_drip_clients_delay_no_one_and_get_408_at_their_deadline() {
    const SLOW: usize = 50;
    const DRIP: Duration = Duration::from_millis(200);
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
    let (run, env) = g.long_session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let proxy = env.proxy();

    struct Slow {
        s: std::net::TcpStream,
        opened: Instant,
        sent: usize,
        got: Vec<u8>,
        answered: Option<Duration>,
    }
    // A head that never ends: a request line, then one header value,
    // one byte at a time.
    let drip = |n: usize| -> u8 {
        let prefix = b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nX-Slow: ";
        prefix.get(n).copied().unwrap_or(b'a')
    };
    let mut slow: Vec<Slow> = (0..SLOW)
        .map(|_| {
            let s = proxy.dial();
            s.set_nonblocking(true).unwrap();
            Slow {
                s,
                opened: Instant::now(),
                sent: 0,
                got: Vec::new(),
                answered: None,
            }
        })
        .collect();

    // A well-behaved client, started once every slow one has dripped a few
    // bytes; it reports how long its answer took and when it came.
    let (tx, rx) = mpsc::channel();
    let good_proxy = proxy.clone();
    let mut good = Some(move || {
        let t = Instant::now();
        let (a, mut s) = good_proxy.tunnel(NPM_REGISTRY, b"");
        let relayed = echo_roundtrip(&mut s, b"not delayed").is_ok();
        let denied = good_proxy.connect("evil.example:443");
        let _ = tx.send((a.status, relayed, denied.status, t.elapsed(), Instant::now()));
    });
    let mut good_thread = None;

    let start = Instant::now();
    let limit = Duration::from_secs(25);
    while slow.iter().any(|c| c.answered.is_none()) && start.elapsed() < limit {
        for c in slow.iter_mut().filter(|c| c.answered.is_none()) {
            let mut buf = [0u8; 1024];
            match c.s.read(&mut buf) {
                Ok(0) => c.answered = Some(c.opened.elapsed()),
                Ok(n) => c.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => c.answered = Some(c.opened.elapsed()),
            }
            if c.got.windows(4).any(|w| w == b"\r\n\r\n") && c.answered.is_none() {
                c.answered = Some(c.opened.elapsed());
            }
            if c.answered.is_none() && c.s.write(&[drip(c.sent)]).is_ok() {
                c.sent += 1;
            }
        }
        if start.elapsed() >= Duration::from_secs(1) {
            if let Some(f) = good.take() {
                good_thread = Some(thread::spawn(f));
            }
        }
        thread::sleep(DRIP);
    }
    if let Some(t) = good_thread {
        t.join().unwrap();
    }

    let Ok((status, relayed, denied, took, at)) = rx.recv_timeout(WAIT) else {
        panic!("the well-behaved client never finished\n{}", run.report());
    };
    check_eq!(
        run,
        status,
        200,
        "the well-behaved CONNECT among {SLOW} slow clients"
    );
    check!(run, relayed, "the well-behaved tunnel relays");
    check_eq!(run, denied, 403, "a well-behaved denied CONNECT is answered too");
    check!(
        run,
        took < Duration::from_secs(3),
        "the well-behaved client waited {took:?} behind {SLOW} slow ones"
    );
    let first_slow_answer = slow.iter().filter_map(|c| c.answered.map(|d| c.opened + d)).min();
    check!(
        run,
        first_slow_answer.is_none_or(|first| at < first),
        "the well-behaved client must be served while every slow one is still open"
    );
    for (i, c) in slow.iter().enumerate() {
        let text = String::from_utf8_lossy(&c.got);
        let Some(after) = c.answered else {
            panic!(
                "slow client {i} (sent {} bytes) got no answer within {limit:?}: its deadline was reset or never enforced\n{}",
                c.sent,
                run.report()
            );
        };
        check!(
            run,
            text.starts_with("HTTP/1.1 408 "),
            "slow client {i} after {after:?} ({} bytes dripped): {text:?}",
            c.sent
        );
        check!(
            run,
            after >= Duration::from_millis(9500),
            "slow client {i} was cut off after {after:?}, before its 10 s deadline"
        );
        // Generous, but it pins the deadline: one that each byte reset (or
        // a much longer one) would not have expired by now.
        check!(
            run,
            after < Duration::from_secs(15),
            "slow client {i} was answered only after {after:?} ({} bytes dripped): its 10 s deadline was extended",
            c.sent
        );
    }
    drop(slow);

    let out = g.finish(run, 0);
    let log = g.log();
    let egress = log.rows().of(env.audit_id()).kind("egress").by_conn();
    let timed_out: Vec<&&Row> = egress.iter().filter(|r| r["status"] == 408).collect();
    check_eq!(out, timed_out.len(), SLOW, "one 408 row per slow client");
    for r in timed_out {
        check!(out, r["decision"] == "deny" && r["host"].is_null(), "{r}");
    }
    check_eq!(
        out,
        egress.len(),
        SLOW + 2,
        "plus the well-behaved client's two rows"
    );
}

#[test]
fn a_flood_from_another_process_cannot_flood_the_log_or_the_terminal() {
    let g = Sandbox::new();
    let (run, env) = g.session("npm", &[]);
    let proxy = env.proxy();
    // Another local process, without the credential, asking for 1,200
    // distinct hosts; and the tool itself refused 25 distinct hosts.
    for i in 0..1200 {
        let raw = format!("CONNECT flood{i}.example:443 HTTP/1.1\r\nHost: flood{i}.example:443\r\n\r\n");
        let a = proxy.ask(raw.as_bytes());
        check_eq!(run, a.status, 407, "request {i}: {}", a.report());
    }
    for i in 0..25 {
        let a = proxy.connect(&format!("denied{i}.example:443"));
        check_eq!(run, a.status, 403, "{}", a.report());
    }
    let out = g.finish(run, 0);
    let lines = out.guard_lines();
    check!(
        out,
        lines.len() <= 22,
        "a screenful at most, got {} lines",
        lines.len()
    );
    check_eq!(
        out,
        lines.iter().filter(|l| l.contains("was refused denied")).count(),
        20,
        "the first 20 refused hosts are listed"
    );
    check!(
        out,
        lines.iter().any(|l| l.contains("5 more hosts")),
        "and the rest counted"
    );
    check!(
        out,
        lines
            .iter()
            .any(|l| l.contains("1200 requests without npm's proxy credential")),
        "one line for the stranger's requests"
    );
    check!(
        out,
        !lines.iter().any(|l| l.contains("flood")),
        "no stranger's target is listed"
    );
    let log = g.log();
    let rows = log.rows().of(env.audit_id()).kind("egress").by_conn();
    check_eq!(
        out,
        rows.len(),
        STRANGER_ROWS + 25,
        "the first 1,000 stranger rows, and the tool's own"
    );
    let ends = log.rows().of(env.audit_id()).kind("end").by_conn();
    check_eq!(
        out,
        ends[0]["suppressed"].as_u64(),
        Some(200),
        "the rest counted in end"
    );
}

#[test]
fn idle_tunnels_hold_no_pipes_once_their_data_has_moved() {
    // Each direction of a tunnel takes a pipe only while data flows: after a
    // round trip through every tunnel, the gate holds two sockets a tunnel
    // and no more pipes than its pool keeps, not two pipes a tunnel.
    const TUNNELS: usize = 100;
    let up = Upstream::echo();
    let g = Sandbox::new();
    let resolve = Sandbox::resolve(&[(NPM_REGISTRY, up.addr)]);
    let (run, env) = g.long_session("npm", &[("CLI_GUARD_RESOLVE", &resolve)]);
    let pid = run.pid();
    let proxy = env.proxy();
    let before = fds_of(pid);
    let held: Vec<std::net::TcpStream> = (0..TUNNELS)
        .map(|i| {
            let (a, mut s) = proxy.tunnel(NPM_REGISTRY, b"");
            check_eq!(run, a.status, 200, "tunnel {i}\n{}", a.report());
            check!(
                run,
                echo_roundtrip(&mut s, &[7u8; 4096]).is_ok(),
                "tunnel {i}: relay"
            );
            s
        })
        .collect();
    let pool_bound = 2 * cli_guard::IDLE_PIPES;
    let now = fds_of(pid);
    check!(
        run,
        count_of("socket:[", &now) >= count_of("socket:[", &before) + 2 * TUNNELS,
        "two sockets a tunnel: {} before, {} now",
        count_of("socket:[", &before),
        count_of("socket:[", &now)
    );
    check!(
        run,
        count_of("pipe:[", &now) <= count_of("pipe:[", &before) + pool_bound,
        "{} pipe descriptors with {TUNNELS} idle tunnels (before: {}); the pool keeps at most {pool_bound}",
        count_of("pipe:[", &now),
        count_of("pipe:[", &before)
    );
    drop(held);
    g.finish(run, 0);
}
