//! The fake tools' network client: what an install script does with the
//! network, as a small program with nothing but std, so that the tests that
//! need a client inside strict mode's namespace need no Python, curl or
//! node. `util::net` builds it once per test run with the toolchain that
//! built the tests (it is also compiled into the test crate, unused, so
//! that clippy and rustfmt see it).
//!
//! `steps DIR NAME=COMMAND…` runs commands in turn in this one process,
//! each one's line written to `DIR/NAME` (`exit=N` ends with status N):
//! what a fake tool `exec`s, so that its connections are the tool's own.
//!
//! Each command prints one JSON object on stdout:
//! - `echo HOST PORT N`: connect, send N bytes, half-close, read to EOF;
//! - `proxy-echo HOST PORT N`: the same through a CONNECT to `$HTTPS_PROXY`,
//!   with its credential;
//! - `http HOST PORT`: one GET, the answer's status line;
//! - `dns udp|tcp SERVER NAME TYPE`, `dns-junk udp|tcp SERVER`: a raw query
//!   (a malformed one), the answer's rcode and addresses;
//! - `quic HOST PORT N`: N datagrams shaped like a QUIC Initial, and
//!   whether anything answered;
//! - `flood HOST PORT N`: N connections, as a payload looping on connect.
//!
//! - `unix PATH`: connect to a pathname unix socket and send a line;
//! - `unix-dgram-pair PATH`: a datagram socket pair, one end `connect`ed
//!   to a pathname socket outside, and a datagram sent through it;
//! - `socket FAMILY TYPE`: whether `socket(2)` makes one (vsock: 40 1);
//! - `io-uring`: whether `io_uring_setup(2)` makes a ring;
//! - `tiocsti TEXT`: push TEXT into the terminal on stdin (`ioctl TIOCSTI`,
//!   a byte at a time), also as the high-bit form `TIOCSTI | 1 << 32`;
//! - `pair TYPE`: whether `socketpair(AF_UNIX, TYPE)` makes a pair;
//! - `keyring`: whether the session keyring can be named (`keyctl`);
//! - `shm create|open|remove KEY`: a System V shared memory segment;
//! - `post-rows ROW`: `POST cli-guard:rows` to `$HTTPS_PROXY` with its
//!   credential, one row: the answer's status;
//! - `reaim FD PORT`: disconnect descriptor FD (`connect(AF_UNSPEC)`) and
//!   connect it to 127.0.0.1:PORT, as a script does with a socket it
//!   inherited;
//!
//! and one prints what `curl -s -p -o /dev/null -w '%{http_connect}
//! %{http_code}'` prints:
//! - `proxy-get HOST PORT`: `GET http://HOST:PORT/` through a CONNECT to
//!   `$http_proxy` (or `$all_proxy`), direct without one: the CONNECT's
//!   status and the GET's, `000` for none.
//!
//! A failure is a field of the object (`connect`, `sent`, `end`: `ok`,
//! `eof`, `timeout`, `gaierror` or the errno's name); the exit status is 0
//! but for a malformed command or a reply it cannot read (2, nothing
//! printed).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::exit;
use std::time::Duration;

/// How long a connect, and each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["steps", dir, steps @ ..] = &args[..] {
        return run_steps(dir, steps);
    }
    if run(&args).is_none() {
        eprintln!("net_client: cannot do {args:?}");
        exit(2);
    }
}

/// `steps DIR NAME=COMMAND…`: each command in turn, in this one process,
/// its JSON line written to `DIR/NAME`. A fake tool `exec`s this, so that
/// every connection is made by the tool's own process, as a real package
/// manager's are (cli-guard judges any other process below the tool as a
/// package's code).
fn run_steps(dir: &str, steps: &[&str]) {
    for step in steps {
        let Some((name, command)) = step.split_once('=') else {
            eprintln!("net_client: a step is NAME=COMMAND, not {step:?}");
            exit(2);
        };
        // `exit=N`: the tool's exit status.
        if name == "exit" {
            exit(command.trim().parse().unwrap_or(2));
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        let path = format!("{dir}/{name}");
        let Ok(file) = std::fs::File::create(&path) else {
            eprintln!("net_client: cannot write {path}");
            exit(2);
        };
        let _ = io::stdout().flush();
        // SAFETY: dup2 onto stdout of a descriptor this process holds.
        unsafe { dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 1) };
        if run(&words).is_none() {
            eprintln!("net_client: cannot do {words:?}");
            exit(2);
        }
        let _ = io::stdout().flush();
    }
}

/// One command; `None` if it is malformed.
fn run(args: &[&str]) -> Option<()> {
    match args[..] {
        ["echo", host, port, n] => echo(host, port, n),
        ["proxy-echo", host, port, n] => proxy_echo(host, port, n),
        ["proxy-echo-address", name, port, n] => proxy_echo_address(name, port, n),
        ["http", host, port] => http(host, port),
        ["dns", proto, server, name, qtype] => dns(proto, server, name, qtype),
        ["dns-junk", proto, server] => dns_junk(proto, server),
        ["quic", host, port, n] => quic(host, port, n),
        ["flood", host, port, n] => flood(host, port, n),
        ["proxy-get", host, port] => proxy_get(host, port),
        ["unix", path] => unix(path),
        ["unix-dgram-pair", path] => unix_dgram_pair(path),
        ["socket", family, kind] => make_socket(family, kind),
        ["io-uring"] => io_uring(),
        ["tiocsti", text] => tiocsti(text),
        ["reaim", fd, port] => reaim(fd, port),
        ["pair", kind] => pair(kind),
        ["keyring"] => keyring(),
        ["shm", op, key] => shm(op, key),
        ["post-rows", row] => post_rows(row),
        _ => None,
    }
}

/// A JSON value, as much of JSON as the output needs.
enum Json {
    Str(String),
    Num(u64),
    Bool(bool),
    Null,
    List(Vec<String>),
}

/// A JSON string.
fn txt(text: &str) -> Json {
    Json::Str(text.to_owned())
}

/// Prints one JSON object with `fields`, in order.
fn out(fields: &[(&str, Json)]) -> Option<()> {
    let quote = |t: &str| {
        let mut q = String::from("\"");
        for c in t.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if u32::from(c) < 0x20 => q.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Json::Str(t) => quote(t),
                Json::Num(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                Json::Null => "null".to_owned(),
                Json::List(items) => {
                    format!(
                        "[{}]",
                        items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", ")
                    )
                }
            };
            format!("{}: {v}", quote(k))
        })
        .collect();
    println!("{{{}}}", body.join(", "));
    Some(())
}

// ---------------------------------------------------------------------------
// The other doors out of strict mode: what an install script tries beyond
// the network. Each reports `ok` or the errno's name.

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
    fn syscall(number: i64, ...) -> i64;
    fn connect(fd: i32, addr: *const u8, len: u32) -> i32;
    fn close(fd: i32) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
    fn socketpair(domain: i32, kind: i32, protocol: i32, fds: *mut i32) -> i32;
    fn shmget(key: i32, size: usize, flags: i32) -> i32;
    fn shmctl(id: i32, cmd: i32, buf: *mut u8) -> i32;
}

const TIOCSTI: u64 = 0x5412;
const SYS_IO_URING_SETUP: i64 = 425;

/// `ok` for a call that returned `rc >= 0`, else the errno's name.
fn outcome(rc: i64) -> String {
    if rc >= 0 {
        "ok".to_owned()
    } else {
        err(&io::Error::last_os_error())
    }
}

fn unix(path: &str) -> Option<()> {
    use std::os::unix::net::UnixStream;
    let result = UnixStream::connect(path).and_then(|mut s| s.write_all(b"hello from inside\n"));
    match result {
        Ok(()) => out(&[("connect", txt("ok")), ("sent", txt("ok"))]),
        Err(e) => out(&[("connect", txt(&err(&e)))]),
    }
}

fn unix_dgram_pair(path: &str) -> Option<()> {
    use std::os::unix::net::UnixDatagram;
    let (one, _other) = match UnixDatagram::pair() {
        Ok(pair) => pair,
        Err(e) => return out(&[("pair", txt(&err(&e)))]),
    };
    let sent = one.connect(path).and_then(|()| one.send(b"hello from inside"));
    match sent {
        Ok(_) => out(&[("pair", txt("ok")), ("sent", txt("ok"))]),
        Err(e) => out(&[("pair", txt("ok")), ("sent", txt(&err(&e)))]),
    }
}

fn make_socket(family: &str, kind: &str) -> Option<()> {
    let (family, kind) = (family.parse().ok()?, kind.parse().ok()?);
    // SAFETY: socket(2) takes integers only; the descriptor is closed.
    let fd = unsafe { socket(family, kind, 0) };
    let result = outcome(i64::from(fd));
    if fd >= 0 {
        // SAFETY: the descriptor just made.
        unsafe { close(fd) };
    }
    out(&[("socket", txt(&result))])
}

fn io_uring() -> Option<()> {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) writes at most the 120-byte
    // io_uring_params the buffer is.
    let fd = unsafe { syscall(SYS_IO_URING_SETUP, 4i64, params.as_mut_ptr()) };
    let result = outcome(fd);
    if fd >= 0 {
        // SAFETY: the ring just made.
        unsafe { close(fd as i32) };
    }
    out(&[("io_uring", txt(&result))])
}

fn tiocsti(text: &str) -> Option<()> {
    let push = |request: u64| {
        let mut result = "ok".to_owned();
        for byte in text.bytes() {
            // SAFETY: TIOCSTI reads one byte from the pointer it is given.
            let rc = unsafe { ioctl(0, request, &byte as *const u8) };
            if rc < 0 {
                result = outcome(i64::from(rc));
                break;
            }
        }
        result
    };
    let plain = push(TIOCSTI);
    let high = push(TIOCSTI | 1 << 32);
    out(&[("tiocsti", txt(&plain)), ("tiocsti_high_bit", txt(&high))])
}

fn pair(kind: &str) -> Option<()> {
    let kind: i32 = kind.parse().ok()?;
    let mut fds = [-1i32; 2];
    // SAFETY: socketpair writes two descriptors into the array given.
    let rc = unsafe { socketpair(1, kind, 0, fds.as_mut_ptr()) };
    let result = outcome(i64::from(rc));
    for fd in fds.into_iter().filter(|&fd| fd >= 0) {
        // SAFETY: a descriptor just made.
        unsafe { close(fd) };
    }
    out(&[("pair", txt(&result))])
}

fn keyring() -> Option<()> {
    #[cfg(target_arch = "aarch64")]
    const SYS_KEYCTL: i64 = 219;
    #[cfg(not(target_arch = "aarch64"))]
    const SYS_KEYCTL: i64 = 250;
    const KEYCTL_GET_KEYRING_ID: i64 = 0;
    const KEY_SPEC_SESSION_KEYRING: i64 = -3;
    // SAFETY: keyctl(GET_KEYRING_ID, the session keyring, do not create)
    // takes integers only.
    let rc = unsafe { syscall(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0i64) };
    out(&[("keyring", txt(&outcome(rc)))])
}

fn shm(op: &str, key: &str) -> Option<()> {
    const IPC_CREAT: i32 = 0o1000;
    const IPC_RMID: i32 = 0;
    let key: i32 = key.parse().ok()?;
    // SAFETY: System V calls on integers; IPC_RMID takes no buffer.
    let rc = unsafe {
        match op {
            "create" => shmget(key, 4096, IPC_CREAT | 0o600),
            "open" => shmget(key, 0, 0o600),
            "remove" => match shmget(key, 0, 0o600) {
                id if id >= 0 => shmctl(id, IPC_RMID, std::ptr::null_mut()),
                failed => failed,
            },
            _ => return None,
        }
    };
    out(&[("shm", txt(&outcome(i64::from(rc))))])
}

fn post_rows(row: &str) -> Option<()> {
    let url = std::env::var("HTTPS_PROXY").unwrap_or_default();
    let proxy = ProxyUrl::parse(&url)?;
    let mut s = match dial(&proxy.host, &proxy.port) {
        Ok(s) => s,
        Err(e) => return out(&[("connect", Json::Str(e))]),
    };
    let auth = proxy
        .auth
        .as_ref()
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("POST cli-guard:rows HTTP/1.1\r\n{auth}\r\n{row}\n");
    let _ = s.write_all(request.as_bytes());
    let _ = s.shutdown(Shutdown::Write);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    let back = String::from_utf8_lossy(&back);
    let status = status_of(back.split("\r\n").next().unwrap_or_default());
    out(&[("connect", txt("ok")), ("status", Json::Num(status))])
}

fn reaim(fd: &str, port: &str) -> Option<()> {
    let fd: i32 = fd.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    // struct sockaddr with sa_family AF_UNSPEC: a disconnect.
    let unspec = [0u8; 16];
    // SAFETY: connect reads `len` bytes of the address given.
    let disconnect = outcome(i64::from(unsafe { connect(fd, unspec.as_ptr(), 16) }));
    // struct sockaddr_in for 127.0.0.1:PORT, in network byte order.
    let mut sin = [0u8; 16];
    sin[0..2].copy_from_slice(&2u16.to_ne_bytes());
    sin[2..4].copy_from_slice(&port.to_be_bytes());
    sin[4..8].copy_from_slice(&[127, 0, 0, 1]);
    // SAFETY: as above.
    let reconnect = outcome(i64::from(unsafe { connect(fd, sin.as_ptr(), 16) }));
    out(&[("disconnect", txt(&disconnect)), ("connect", txt(&reconnect))])
}

/// How an error is reported: `timeout`, or the errno's name.
fn err(e: &io::Error) -> String {
    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        return "timeout".to_owned();
    }
    let name = match e.raw_os_error() {
        Some(1) => "EPERM",
        Some(2) => "ENOENT",
        Some(3) => "ESRCH",
        Some(9) => "EBADF",
        Some(30) => "EROFS",
        Some(38) => "ENOSYS",
        Some(88) => "ENOTSOCK",
        Some(13) => "EACCES",
        Some(22) => "EINVAL",
        Some(32) => "EPIPE",
        Some(97) => "EAFNOSUPPORT",
        Some(98) => "EADDRINUSE",
        Some(99) => "EADDRNOTAVAIL",
        Some(100) => "ENETDOWN",
        Some(101) => "ENETUNREACH",
        Some(103) => "ECONNABORTED",
        Some(104) => "ECONNRESET",
        Some(107) => "ENOTCONN",
        Some(111) => "ECONNREFUSED",
        Some(112) => "EHOSTDOWN",
        Some(113) => "EHOSTUNREACH",
        _ => return e.to_string(),
    };
    name.to_owned()
}

/// The N bytes every command sends: a pattern with no short period.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 251 + 3) % 256) as u8).collect()
}

fn number(text: &str) -> Option<usize> {
    text.parse().ok()
}

/// Resolves `host` (the system's resolver, as any client) and connects to
/// its first address that takes the connection; the error is the first
/// address's, or `gaierror` when the name does not resolve.
fn dial(host: &str, port: &str) -> Result<TcpStream, String> {
    let port: u16 = port.parse().map_err(|_| "bad port".to_owned())?;
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) => return Err("gaierror".to_owned()),
    };
    let mut first = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, TIMEOUT) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(TIMEOUT));
                let _ = s.set_write_timeout(Some(TIMEOUT));
                return Ok(s);
            }
            Err(e) => {
                first.get_or_insert(err(&e));
            }
        }
    }
    Err(first.unwrap_or_else(|| "gaierror".to_owned()))
}

/// Sends `data`, half-closes, reads to EOF: how the send went, the bytes
/// back, how the reading ended.
fn exchange(s: &mut TcpStream, data: &[u8]) -> (String, Vec<u8>, String) {
    let sent = match s.write_all(data).and_then(|()| s.shutdown(Shutdown::Write)) {
        Ok(()) => "ok".to_owned(),
        Err(e) => err(&e),
    };
    let mut back = Vec::new();
    let mut buf = [0u8; 65536];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "eof".to_owned(),
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break err(&e),
        }
    };
    (sent, back, end)
}

fn echo(host: &str, port: &str, n: &str) -> Option<()> {
    let n = number(n)?;
    let mut s = match dial(host, port) {
        Ok(s) => s,
        Err(e) => return out(&[("connect", Json::Str(e))]),
    };
    let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let data = payload(n);
    let (sent, back, end) = exchange(&mut s, &data);
    out(&[
        ("connect", txt("ok")),
        ("peer", Json::Str(peer)),
        ("sent", Json::Str(sent)),
        ("back", Json::Num(back.len() as u64)),
        ("same", Json::Bool(back == data)),
        ("end", Json::Str(end)),
    ])
}

/// A proxy URL's host, port and `Proxy-Authorization` value (from its
/// percent-decoded `user:password@`).
struct ProxyUrl {
    host: String,
    port: String,
    auth: Option<String>,
}

impl ProxyUrl {
    fn parse(url: &str) -> Option<ProxyUrl> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split('/').next()?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = hostport.rsplit_once(':')?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let auth = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let cred = format!("{}:{}", unquote(user), unquote(pass));
            format!("Basic {}", base64(cred.as_bytes()))
        });
        Some(ProxyUrl {
            host,
            port: port.to_owned(),
            auth,
        })
    }
}

/// Percent-decoding, as a URL's userinfo is written.
fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                decoded.push(b);
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Standard base64 with padding (RFC 4648), written here rather than taken
/// from a crate (there is none here) or from cli-guard, so the tests check
/// the gate's credentials independently; `util::proxy` uses it too.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// The status of an HTTP answer's first line (0 if none can be read).
fn status_of(line: &str) -> u64 {
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Reads an answer's head byte by byte, so that no tunnel byte is taken.
fn read_head(s: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Connects to `proxy` and asks it for a tunnel to `host:port`: the stream
/// and the answer's status, or how it failed (the `connect` field, or a
/// status 0 and the read's error).
fn tunnel(proxy: &ProxyUrl, host: &str, port: &str) -> Result<(TcpStream, u64), Vec<(&'static str, Json)>> {
    let mut s = dial(&proxy.host, &proxy.port).map_err(|e| vec![("connect", Json::Str(e))])?;
    let auth = proxy
        .auth
        .as_ref()
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n");
    let answer = s.write_all(head.as_bytes()).and_then(|()| read_head(&mut s));
    match answer {
        Ok(head) => {
            let status = status_of(head.split("\r\n").next().unwrap_or_default());
            Ok((s, status))
        }
        Err(e) => Err(vec![
            ("connect", txt("ok")),
            ("status", Json::Num(0)),
            ("error", Json::Str(err(&e))),
        ]),
    }
}

fn proxy_echo(host: &str, port: &str, n: &str) -> Option<()> {
    let n = number(n)?;
    let url = std::env::var("HTTPS_PROXY").unwrap_or_default();
    let proxy = ProxyUrl::parse(&url)?;
    let (mut s, status) = match tunnel(&proxy, host, port) {
        Ok(t) => t,
        Err(fields) => return out(&fields),
    };
    if status != 200 {
        return out(&[("connect", txt("ok")), ("status", Json::Num(status))]);
    }
    let data = payload(n);
    let (sent, back, end) = exchange(&mut s, &data);
    out(&[
        ("connect", txt("ok")),
        ("status", Json::Num(status)),
        ("sent", Json::Str(sent)),
        ("back", Json::Num(back.len() as u64)),
        ("same", Json::Bool(back == data)),
        ("end", Json::Str(end)),
    ])
}

/// Resolves `name` with the system's resolver (in this process, as a tool
/// does) and runs `proxy-echo` to its first address; the line also says
/// the address (`ip`), or `connect: gaierror` when the name does not
/// resolve.
fn proxy_echo_address(name: &str, port: &str, n: &str) -> Option<()> {
    let Some(ip) = (name, 0).to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return out(&[("connect", txt("gaierror"))]);
    };
    let ip = ip.ip().to_string();
    println!("{{\"ip\":\"{ip}\"}}");
    proxy_echo(&ip, port, n)
}

fn http(host: &str, port: &str) -> Option<()> {
    let mut s = match dial(host, port) {
        Ok(s) => s,
        Err(e) => return out(&[("connect", Json::Str(e))]),
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let (_, back, end) = exchange(&mut s, request.as_bytes());
    let back = String::from_utf8_lossy(&back).into_owned();
    let line = back.split("\r\n").next().unwrap_or_default().to_owned();
    out(&[
        ("connect", txt("ok")),
        ("line", Json::Str(line)),
        ("end", Json::Str(end)),
    ])
}

/// `GET http://HOST:PORT/` as `curl -p` makes it; prints the CONNECT's
/// status and the GET's, three digits each, `000` for none.
fn proxy_get(host: &str, port: &str) -> Option<()> {
    let proxy = ["http_proxy", "all_proxy", "ALL_PROXY"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
    let (s, connect) = match proxy {
        Some(url) => match tunnel(&ProxyUrl::parse(&url)?, host, port) {
            Ok((s, 200)) => (Some(s), 200),
            Ok((_, status)) => (None, status),
            Err(_) => (None, 0),
        },
        None => (dial(host, port).ok(), 0),
    };
    let code = s.map_or(0, |mut s| {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n");
        match s.write_all(request.as_bytes()).and_then(|()| read_head(&mut s)) {
            Ok(head) => status_of(head.split("\r\n").next().unwrap_or_default()),
            Err(_) => 0,
        }
    });
    print!("{connect:03} {code:03}");
    io::stdout().flush().ok()
}

/// A DNS question for `name` and `qtype`, as it follows the header.
fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// A DNS header with `id`, recursion desired, one question.
fn header(id: u16) -> Vec<u8> {
    [id, 0x0100, 1, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

/// Sends `msg` to `server` port 53 over `proto`; the reply, or None when
/// none came (UDP: within 2 s; TCP: before EOF or the timeout).
fn ask(proto: &str, server: &str, msg: &[u8]) -> Option<Option<Vec<u8>>> {
    if proto == "udp" {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.send_to(msg, (server, 53)).ok()?;
        let mut buf = vec![0u8; 65535];
        return match s.recv(&mut buf) {
            Ok(n) => Some(Some(buf[..n].to_vec())),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Some(None),
            Err(_) => None,
        };
    }
    let mut s = dial(server, "53").ok()?;
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    if let Err(e) = s.read_exact(&mut len) {
        return matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
        .then_some(None);
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    match s.read_exact(&mut body) {
        Ok(()) => Some(Some(body)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Some(None)
        }
        Err(_) => None,
    }
}

/// Prints the reply's id, QR, rcode, answer count and the A records'
/// addresses (`answer: null` when no reply came).
fn parse(reply: Option<Vec<u8>>, qlen: usize) -> Option<()> {
    let Some(reply) = reply else {
        return out(&[("answer", Json::Null)]);
    };
    if reply.len() < 12 {
        return None;
    }
    let word = |at: usize| reply.get(at..at + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let (id, flags, qd, an) = (word(0)?, word(2)?, word(4)?, word(6)?);
    let mut addrs = Vec::new();
    let mut pos = if qd > 0 { 12 + qlen } else { 12 };
    for _ in 0..an {
        // A name: a pointer (2 bytes) or labels to a zero.
        if *reply.get(pos)? & 0xC0 == 0xC0 {
            pos += 2;
        } else {
            while *reply.get(pos)? != 0 {
                pos += usize::from(reply[pos]) + 1;
            }
            pos += 1;
        }
        let rtype = word(pos)?;
        let rdlen = usize::from(word(pos + 8)?);
        pos += 10;
        if rtype == 1 && rdlen == 4 {
            let a = reply.get(pos..pos + 4)?;
            addrs.push(format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]));
        }
        pos += rdlen;
    }
    out(&[
        ("answer", Json::Bool(true)),
        ("id", Json::Num(u64::from(id))),
        ("qr", Json::Bool(flags & 0x8000 != 0)),
        ("rcode", Json::Num(u64::from(flags & 0xF))),
        ("ancount", Json::Num(u64::from(an))),
        ("addrs", Json::List(addrs)),
    ])
}

fn dns(proto: &str, server: &str, name: &str, qtype: &str) -> Option<()> {
    let qtype = match qtype {
        "A" => 1,
        "AAAA" => 28,
        "TXT" => 16,
        "MX" => 15,
        _ => return None,
    };
    let q = question(name, qtype);
    let mut msg = header(0x1234);
    msg.extend_from_slice(&q);
    parse(ask(proto, server, &msg)?, q.len())
}

/// A header announcing one question, then a label that runs past the end.
fn dns_junk(proto: &str, server: &str) -> Option<()> {
    let mut msg = header(0x4321);
    msg.extend_from_slice(b"\x3fabc");
    parse(ask(proto, server, &msg)?, 0)
}

/// Sends `n` datagrams to `host:port` (a QUIC Initial's first byte, 0xC0);
/// waits 1 s for any answer.
fn quic(host: &str, port: &str, n: &str) -> Option<()> {
    let n = number(n)?;
    let port: u16 = port.parse().ok()?;
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut datagram = vec![0xC0];
    datagram.extend_from_slice(&payload(1199));
    for _ in 0..n {
        s.send_to(&datagram, (host, port)).ok()?;
    }
    let mut buf = [0u8; 2048];
    let answer = match s.recv(&mut buf) {
        Ok(_) => Json::Bool(true),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Json::Bool(false)
        }
        Err(e) => Json::Str(err(&e)),
    };
    out(&[("sent", Json::Num(n as u64)), ("answer", answer)])
}

/// Connects `n` times, reading a byte each time, as a payload looping on
/// connect() would; counts the tries that failed.
fn flood(host: &str, port: &str, n: &str) -> Option<()> {
    let n = number(n)?;
    let mut refused = 0u64;
    for _ in 0..n {
        match dial(host, port) {
            Ok(mut s) => {
                if s.read(&mut [0u8; 1]).is_err() {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    out(&[("tried", Json::Num(n as u64)), ("refused", Json::Num(refused))])
}
