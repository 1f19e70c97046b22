//! Servers on loopback for the gate to dial: upstreams that count the
//! connections they accept, a black hole that never answers, a fake
//! upstream proxy that records what it was asked and answers as told, and
//! the real proxies (tinyproxy, squid) a test starts on a free port.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::command::{command, require};
use super::process::{wait_until, IO_TIMEOUT};
use super::proxy::read_retrying;
use super::sandbox::TempDir;

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A loopback address that never answers: a listener with a backlog of 0
/// that never accepts, its one queue slot already taken, so the kernel drops
/// further SYNs and a connect() to it hangs (with
/// `net.ipv4.tcp_abort_on_overflow` at 0, the default).
#[derive(Debug)]
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    /// A black hole on `addr` (port 0 for any); `None` if it cannot be bound
    /// (the port is taken). Panics if the queue cannot be filled.
    pub fn bind(addr: SocketAddr) -> Option<BlackHole> {
        let listener = TcpListener::bind(addr).ok()?;
        // SAFETY: listen(2) on a descriptor this listener owns and keeps open
        // for the call; it changes only the backlog of an already-listening socket.
        let rc = unsafe { nix::libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) };
        assert_eq!(rc, 0, "listen: {}", io::Error::last_os_error());
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        let full = (0..4).any(
            |_| match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => {
                    fillers.push(s);
                    false
                }
                Err(_) => true,
            },
        );
        assert!(
            full,
            "could not fill a backlog-0 accept queue on {addr} ({} connections went through); \
             this kernel completes handshakes the listener never accepts",
            fillers.len()
        );
        Some(BlackHole {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }

    /// A black hole on a free port of 127.0.0.1.
    pub fn new() -> BlackHole {
        BlackHole::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0")
    }
}

/// A server on 127.0.0.1:0 that runs `handler` on each connection in its
/// own thread and counts connections. Stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// How many times its accept loop found no connection waiting.
    idle: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start<F>(handler: F) -> Upstream
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (acc, empty, st) = (accepted.clone(), idle.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                        let h = handler.clone();
                        thread::spawn(move || h(s));
                    }
                    Err(e) => {
                        if e.kind() == io::ErrorKind::WouldBlock {
                            empty.fetch_add(1, Ordering::SeqCst);
                        }
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        });
        Upstream {
            addr,
            accepted,
            idle,
            stop,
        }
    }

    /// Echoes every byte back; at EOF, half-closes its side.
    pub fn echo() -> Upstream {
        Upstream::start(|mut s| {
            let mut buf = [0u8; 16384];
            loop {
                match read_retrying(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
        })
    }

    /// How many connections it has accepted, every connection made before
    /// the call included: it waits until its accept loop has twice found
    /// no connection waiting (the second time, certainly after the call),
    /// so one that was still waiting to be accepted is counted, however
    /// slowly the loop came round to it.
    pub fn accepted(&self) -> usize {
        let idle = self.idle.load(Ordering::SeqCst);
        let caught_up = wait_until(IO_TIMEOUT, || self.idle.load(Ordering::SeqCst) >= idle + 2);
        assert!(caught_up, "the upstream on {} stopped accepting", self.addr);
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// A fake upstream proxy

/// What the fake upstream proxy does with one request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `200 Connection established`, then the proxy's tunnel handler (by
    /// default an echo that half-closes at EOF).
    Tunnel,
    /// An answer with this status line (any code) and a short body; then close.
    Status(u16),
    /// Close at once without answering.
    Hangup,
    /// Never answer; hold the connection until the fake proxy is dropped.
    Stall,
    /// Bytes that are not an HTTP response; then close.
    Garbage,
}

/// An HTTP proxy on 127.0.0.1 that records every request head it gets and
/// answers as `decide` says. Stops accepting when dropped, and lets stalled
/// connections go.
pub struct FakeProxy {
    pub server: Upstream,
    heads: Arc<Mutex<Vec<String>>>,
    released: Arc<AtomicBool>,
}

impl FakeProxy {
    /// A fake proxy whose tunnels echo.
    pub fn start(decide: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeProxy {
        FakeProxy::with_tunnel(decide, echo_until_eof)
    }

    /// A fake proxy whose tunnels (after its `200`) are run by `tunnel`.
    pub fn with_tunnel(
        decide: impl Fn(&str) -> Reply + Send + Sync + 'static,
        tunnel: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> FakeProxy {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(AtomicBool::new(false));
        let (seen, gone) = (heads.clone(), released.clone());
        let server = Upstream::start(move |mut s| {
            let Some(head) = read_request_head(&mut s) else {
                return;
            };
            seen.lock().unwrap().push(head.clone());
            match decide(&head) {
                Reply::Tunnel => {
                    if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .is_ok()
                    {
                        tunnel(s);
                    }
                }
                Reply::Status(code) => {
                    let body = format!("the fake upstream proxy says {code}\n");
                    let extra = if code == 407 {
                        "Proxy-Authenticate: Basic realm=\"fake-upstream\"\r\n"
                    } else {
                        ""
                    };
                    let answer = format!(
                        "HTTP/1.1 {code} {}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        phrase(code),
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes());
                    let _ = s.shutdown(Shutdown::Write);
                    // Read until the gate closes, so our close is not a reset.
                    let _ = s.read_to_end(&mut Vec::new());
                }
                Reply::Hangup => {}
                Reply::Stall => hold_until(&gone, s),
                Reply::Garbage => {
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
                }
            }
        });
        FakeProxy {
            server,
            heads,
            released,
        }
    }

    /// Its URL, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Its URL with `userinfo@` (already percent-encoded as the test wants).
    pub fn url_with(&self, userinfo: &str) -> String {
        format!("http://{userinfo}@{}", self.server.addr)
    }

    /// Every request head received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The request lines received so far, in order.
    pub fn request_lines(&self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|h| h.lines().next().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

/// The reason phrase of `code`'s status line.
pub fn phrase(code: u16) -> &'static str {
    match code {
        200 => "Connection established",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}

/// Reads a request head byte by byte (bounded), as text; None if the peer
/// closed or stalled before a whole head.
pub fn read_request_head(s: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            // A socket with a timeout is not restarted after a signal or a
            // stop and continue of this process.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
        if raw.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// Echoes every byte back; at EOF (or after 5 s idle), half-closes.
pub fn echo_until_eof(mut s: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Keeps `s` open, unread, until `released` or a minute passes.
pub fn hold_until(released: &AtomicBool, s: TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !released.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    drop(s);
}

// ---------------------------------------------------------------------------
// Real proxies: tinyproxy and squid

/// A real proxy started by a test: on 127.0.0.1 only, in the foreground,
/// with its configuration, logs and pid file in a private directory.
/// Killed (and reaped) on drop.
pub struct RealProxy {
    name: &'static str,
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl RealProxy {
    /// `http://[userinfo@]127.0.0.1:PORT`.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Its configuration and every log it wrote, for failure messages.
    pub fn report(&self) -> String {
        let mut r = format!("---- {} on {} ----\n", self.name, self.addr);
        if let Ok(dir) = fs::read_dir(self.dir.path()) {
            let mut files: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
            files.sort();
            for f in files {
                let text = fs::read(&f).map(|d| String::from_utf8_lossy(&d).into_owned());
                r.push_str(&format!(
                    "-- {} --\n{}\n",
                    f.display(),
                    text.unwrap_or_else(|e| format!("<{e}>"))
                ));
            }
        }
        r
    }

    /// Starts `program` with `args(dir)` and the configuration `config(port,
    /// dir)` written to `dir/proxy.conf`; ready once `ready(dir)` holds and
    /// the port takes a connection. A port taken between picking it and the
    /// proxy binding it is retried with another.
    fn start(
        name: &'static str,
        program: &Path,
        args: impl Fn(&Path) -> Vec<String>,
        config: impl Fn(u16, &Path) -> String,
        ready: impl Fn(&Path) -> bool,
    ) -> RealProxy {
        let mut failures = String::new();
        for attempt in 1..=3 {
            let dir = TempDir::new();
            // squid started as root runs as its own user and writes its logs here.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
            let port = closed_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            fs::write(dir.path().join("proxy.conf"), config(port, dir.path())).unwrap();
            let out = fs::File::create(dir.path().join("output.txt")).unwrap();
            let child = command(program)
                .args(args(dir.path()))
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut proxy = RealProxy {
                name,
                child,
                addr,
                dir,
            };
            let up = wait_until(Duration::from_secs(20), || {
                matches!(proxy.child.try_wait(), Ok(None))
                    && ready(proxy.dir.path())
                    && TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok()
            });
            if up && matches!(proxy.child.try_wait(), Ok(None)) {
                return proxy;
            }
            failures.push_str(&format!("attempt {attempt}: not ready\n{}\n", proxy.report()));
        }
        panic!("{name} would not start\n{failures}");
    }
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tinyproxy on a free port, optionally requiring `BasicAuth user pass`
/// (tinyproxy accepts only `[-a-z0-9._]` in them).
pub fn tinyproxy(basic_auth: Option<(&str, &str)>) -> RealProxy {
    let auth = basic_auth
        .map(|(u, p)| format!("BasicAuth {u} {p}\n"))
        .unwrap_or_default();
    RealProxy::start(
        "tinyproxy",
        &require("tinyproxy"),
        |dir| {
            vec![
                "-d".into(),
                "-c".into(),
                dir.join("proxy.conf").display().to_string(),
            ]
        },
        move |port, _| {
            // No Allow lines: every client may use it. No ConnectPort lines:
            // CONNECT to any port.
            format!("Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nLogLevel Info\n{auth}")
        },
        |dir| {
            fs::read_to_string(dir.join("output.txt")).is_ok_and(|log| log.contains("Accepting connections"))
        },
    )
}

/// squid on a free port, without authentication, refusing CONNECT to
/// `*.blocked.example` (and allowing it to every port otherwise: the
/// default SSL_ports rule is left out).
pub fn squid() -> RealProxy {
    RealProxy::start(
        "squid",
        &require("squid"),
        |dir| {
            vec![
                "-N".into(),
                "-f".into(),
                dir.join("proxy.conf").display().to_string(),
            ]
        },
        |port, dir| {
            let d = dir.display();
            format!(
                "http_port 127.0.0.1:{port}\n\
                 acl blocked dstdomain .blocked.example\n\
                 http_access deny blocked\n\
                 http_access allow all\n\
                 cache deny all\n\
                 cache_mem 0 MB\n\
                 pid_filename {d}/squid.pid\n\
                 access_log stdio:{d}/access.log\n\
                 cache_log {d}/cache.log\n\
                 cache_store_log none\n\
                 coredump_dir {d}\n\
                 netdb_filename none\n\
                 pinger_enable off\n\
                 visible_hostname cli-guard-test\n\
                 shutdown_lifetime 0 seconds\n\
                 max_filedescriptors 1024\n"
            )
        },
        |dir| {
            fs::read_to_string(dir.join("cache.log"))
                .is_ok_and(|log| log.contains("Accepting HTTP Socket connections"))
        },
    )
}
