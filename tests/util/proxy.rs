//! The raw CONNECT client the tests play the tool with: the proxy's URL
//! parsed as the child got it, requests sent byte for byte, answers read
//! without consuming a tunnel byte, and round trips through tunnels.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::net::base64;
use super::process::{lossy, Running, IO_TIMEOUT};

/// Where the proxy listens, parsed from its URL as a URL (scheme, optional
/// `user:pass@`, host, port), so credentials added later keep working.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub url: String,
    pub host: String,
    pub addr: SocketAddr,
    pub auth: Option<String>,
}

impl Proxy {
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let rest = url.strip_prefix("http://").ok_or("scheme is not http://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => (Some(format!("Basic {}", base64(userinfo.as_bytes()))), hp),
            None => (None, authority),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or("no port")?;
        let port: u16 = port.parse().map_err(|e| format!("port: {e}"))?;
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        let addr = SocketAddr::new(ip.parse().map_err(|e| format!("host {host}: {e}"))?, port);
        Ok(Proxy {
            url: url.to_owned(),
            host: host.to_owned(),
            addr,
            auth,
        })
    }

    /// A new connection to the proxy, with read/write timeouts.
    pub fn dial(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot reach the proxy at {}: {e}", self.addr));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// A well-formed CONNECT head for `authority`.
    pub fn connect_head(&self, authority: &str) -> Vec<u8> {
        self.head_with(authority, &format!("Host: {authority}\r\n"))
    }

    /// A CONNECT head for `authority` with `headers` (each ending CRLF).
    pub fn head_with(&self, authority: &str, headers: &str) -> Vec<u8> {
        let mut h = format!("CONNECT {authority} HTTP/1.1\r\n{headers}");
        if let Some(a) = &self.auth {
            h.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    /// Sends `raw` on a new connection and reads the whole answer.
    pub fn ask(&self, raw: &[u8]) -> Answer {
        let mut s = self.dial();
        if let Err(e) = s.write_all(raw) {
            return Answer::failed(format!("write failed: {e}"));
        }
        read_answer(&mut s, true)
    }

    /// `ask` for `raw` with this invocation's credential added after the
    /// request line, as a real client sends it.
    pub fn ask_authed(&self, raw: &[u8]) -> Answer {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(raw.len(), |i| i + 2);
        let mut req = raw[..line_end].to_vec();
        if let Some(a) = &self.auth {
            req.extend_from_slice(format!("Proxy-Authorization: {a}\r\n").as_bytes());
        }
        req.extend_from_slice(&raw[line_end..]);
        self.ask(&req)
    }

    /// `ask` for a well-formed CONNECT to `authority`.
    pub fn connect(&self, authority: &str) -> Answer {
        self.ask(&self.connect_head(authority))
    }

    /// Through an allowed tunnel to an echo upstream: `early` behind the
    /// head, then `more`, each checked as it comes back, then a half-close
    /// answered by EOF. Failures report `ctx`.
    pub fn echo_tunnel_and_close(&self, ctx: &Running, authority: &str, early: &[u8], more: &[u8]) {
        let (a, mut s) = self.tunnel(authority, early);
        check_eq!(ctx, a.status, 200, "{}", a.report());
        let mut echoed = vec![0u8; early.len()];
        check!(
            ctx,
            s.read_exact(&mut echoed).is_ok() && echoed == early,
            "early bytes echoed"
        );
        check!(ctx, echo_roundtrip(&mut s, more).is_ok(), "relay");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        check!(ctx, at_eof(&mut s), "the tunnel closes");
    }

    /// Sends a CONNECT head and `early` bytes in one write; reads only the
    /// answer head, leaving the stream positioned at the tunnel's first byte.
    pub fn tunnel(&self, authority: &str, early: &[u8]) -> (Answer, TcpStream) {
        let mut s = self.dial();
        let mut packet = self.connect_head(authority);
        packet.extend_from_slice(early);
        s.write_all(&packet).unwrap();
        let a = read_answer(&mut s, false);
        (a, s)
    }
}

/// A proxy's answer.
#[derive(Debug)]
pub struct Answer {
    /// 0 when no status line arrived.
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the proxy closed the connection after the answer.
    pub closed: bool,
    pub raw: Vec<u8>,
}

impl Answer {
    fn failed(why: String) -> Answer {
        Answer {
            status: 0,
            status_line: format!("<no answer: {why}>"),
            headers: Vec::new(),
            body: Vec::new(),
            closed: false,
            raw: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        lossy(&self.body)
    }

    pub fn report(&self) -> String {
        format!(
            "---- proxy answer ----\n{}{}",
            lossy(&self.raw),
            lossy(&self.body)
        )
    }
}

/// Sends `data` on `s` from a second thread, then half-closes, while this
/// thread reads everything that comes back until EOF: a transfer in both
/// directions at once, as a real client makes it.
pub fn send_and_read_back(mut s: TcpStream, data: &[u8]) -> (io::Result<usize>, Vec<u8>) {
    let mut w = s.try_clone().unwrap();
    let d = data.to_vec();
    let writer = thread::spawn(move || {
        w.write_all(&d).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let read = s.read_to_end(&mut back);
    writer.join().unwrap();
    (read, back)
}

/// `read`, retried when a stop/continue of this test process interrupts it
/// (a socket read with a timeout then fails with EINTR).
pub fn read_retrying(s: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads an answer head byte by byte (so no tunnel byte is consumed); for
/// non-200 answers with `body`, reads the body (Content-Length, else to EOF).
pub fn read_answer(s: &mut TcpStream, body: bool) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match read_retrying(s, &mut byte) {
            Ok(0) if raw.is_empty() => return Answer::failed("connection closed".into()),
            Ok(0) => break,
            Ok(_) => raw.push(byte[0]),
            Err(e) if raw.is_empty() => return Answer::failed(format!("read failed: {e}")),
            Err(_) => break,
        }
        if raw.len() > 64 * 1024 {
            break;
        }
    }
    let text = lossy(&raw);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut a = Answer {
        status,
        status_line,
        headers,
        body: Vec::new(),
        closed: false,
        raw,
    };
    if body && status != 200 {
        match a.header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                let mut b = vec![0u8; n];
                if s.read_exact(&mut b).is_ok() {
                    a.body = b;
                }
                a.closed = at_eof(s);
            }
            None => {
                let mut b = Vec::new();
                a.closed = s.read_to_end(&mut b).is_ok();
                a.body = b;
            }
        }
    }
    a
}

/// Whether the peer closes `s` (EOF or reset) within IO_TIMEOUT with no more data.
pub fn at_eof(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match read_retrying(s, &mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

/// Round-trips `data` through an echo tunnel and checks it comes back.
pub fn echo_roundtrip(s: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    s.write_all(data).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back == data {
        Ok(())
    } else {
        Err(format!("echoed {:?}, sent {:?}", lossy(&back), lossy(data)))
    }
}

/// Deterministic pseudo-random bytes (xorshift), for relay payloads.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends a CONNECT and reads the answer's head, allowing `limit` for it
/// (EINTR retried: a socket with a receive timeout is never restarted
/// after a signal, nor after this process is stopped and continued).
/// Returns the status (0 if none), what was read, and how long the answer
/// took.
pub fn ask_slowly(proxy: &Proxy, target: &str, limit: Duration) -> (u16, String, Duration) {
    let mut s = proxy.dial();
    s.write_all(&proxy.connect_head(target)).unwrap();
    let asked = Instant::now();
    let deadline = asked + limit;
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    let mut why = String::new();
    while !raw.ends_with(b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            why = format!("<no answer within {limit:?}>");
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            Ok(_) => {
                why = "<closed>".into();
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                why = format!("<read failed: {e}>");
                break;
            }
        }
    }
    let text = format!("{}{why}", String::from_utf8_lossy(&raw));
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text, asked.elapsed())
}
