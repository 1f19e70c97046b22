//! Syslog collectors on loopback, for the shipping tests: [`Catcher`], a
//! small one of the tests' own that reads RFC 6587 octet-counted frames and
//! keeps each message (stopped and started again on its port at will),
//! and [`Rsyslog`], Debian's rsyslogd with a private configuration and work
//! directory, over TCP or over TLS with a CA the test makes with openssl,
//! writing what it receives to a file. Also the SHA-256 the chain uses,
//! computed here, and a message's RFC 5424 header fields.

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::command::{command, require};
use super::process::{lossy, wait_until};
use super::sandbox::TempDir;

/// How long a test waits for rows to reach a collector.
pub const ARRIVAL: Duration = Duration::from_secs(30);

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An RFC 5424 message's parts: PRI, VERSION, TIMESTAMP, HOSTNAME,
/// APP-NAME, PROCID, MSGID, STRUCTURED-DATA (each a word here), then MSG.
pub fn rfc5424_parts(message: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut words = Vec::new();
    let mut rest = message;
    for _ in 0..7 {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .unwrap_or_else(|| panic!("not RFC 5424: {}", lossy(message)));
        words.push(lossy(&rest[..space]));
        rest = &rest[space + 1..];
    }
    // `<PRI>VERSION` is one word on the wire.
    let first = words.remove(0);
    let (pri, version) = first
        .strip_prefix('<')
        .and_then(|p| p.split_once('>'))
        .unwrap_or_else(|| panic!("no PRI: {}", lossy(message)));
    words.insert(0, version.to_string());
    words.insert(0, pri.to_string());
    (words, rest.to_vec())
}

/// Our own collector: frames read by the tests' own octet-counting reader.
pub struct Catcher {
    pub port: u16,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Catcher {
    /// A collector on a free loopback port.
    pub fn start() -> Catcher {
        Catcher::on(0)
    }

    /// A collector on `port` (again, after [`Catcher::stop`]); the
    /// messages it keeps start empty.
    pub fn on(port: u16) -> Catcher {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (messages.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut readers = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (kept, stopping) = (kept.clone(), stopping.clone());
                        readers.push(thread::spawn(move || read_frames(stream, &kept, &stopping)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
            drop(listener);
            for reader in readers {
                let _ = reader.join();
            }
        });
        Catcher {
            port,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `done` says the messages so far are enough.
    pub fn wait(&self, limit: Duration, mut done: impl FnMut(&[Vec<u8>]) -> bool) -> bool {
        wait_until(limit, || done(&self.messages()))
    }

    /// Closes the listener and every connection (the shipper sees its
    /// end); returns what it received.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.halt();
        self.messages()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Reads `LEN SP MSG` frames until the peer closes or the catcher stops.
fn read_frames(mut stream: TcpStream, kept: &Mutex<Vec<Vec<u8>>>, stop: &AtomicBool) {
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut data: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while let Some(space) = data.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not an octet count: {}", lossy(&data[..space])));
            if data.len() < space + 1 + len {
                break;
            }
            let message = data[space + 1..space + 1 + len].to_vec();
            data.drain(..space + 1 + len);
            kept.lock().unwrap().push(message);
        }
    }
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let openssl = require("openssl");
        let run = |args: &[&str]| {
            let out = command(&openssl).args(args).current_dir(dir).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=cli-guard test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// Debian's rsyslogd as a collector on loopback: imtcp (with gtls when
/// `certs` are given), writing each message to `out` with `template`.
pub struct Rsyslog {
    pub dir: TempDir,
    pub port: u16,
    pub out: PathBuf,
    pub certs: Option<Certs>,
    template: Option<String>,
    child: Option<Child>,
}

impl Rsyslog {
    /// Over TCP, writing RFC 5424 lines (`RSYSLOG_SyslogProtocol23Format`).
    pub fn tcp() -> Rsyslog {
        Rsyslog::start(false, Some("RSYSLOG_SyslogProtocol23Format"))
    }

    /// Over TLS, with a CA made here, writing omfile's default format
    /// (`RSYSLOG_FileFormat`).
    pub fn tls() -> Rsyslog {
        Rsyslog::start(true, None)
    }

    fn start(tls: bool, template: Option<&str>) -> Rsyslog {
        let dir = TempDir::new();
        fs::create_dir_all(dir.path().join("work")).unwrap();
        let certs = tls.then(|| Certs::make(dir.path()));
        let mut me = Rsyslog {
            out: dir.path().join("collected.log"),
            port: 0,
            dir,
            certs,
            template: template.map(str::to_string),
            child: None,
        };
        me.launch();
        me
    }

    /// The collector's URL for `CLI_GUARD_SHIP`.
    pub fn url(&self) -> String {
        let scheme = if self.certs.is_some() { "tls" } else { "tcp" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> String {
        let dir = self.dir.path();
        let port_file = dir.join("port");
        let listen = if self.port == 0 {
            format!("port=\"0\" listenPortFileName=\"{}\"", port_file.display())
        } else {
            format!("port=\"{}\"", self.port)
        };
        let (global_tls, module_tls) = match &self.certs {
            Some(c) => (
                format!(
                    " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" \
                     DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                    c.ca.display(),
                    c.cert.display(),
                    c.key.display()
                ),
                " StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\""
                    .to_string(),
            ),
            None => (String::new(), String::new()),
        };
        let template = self
            .template
            .as_ref()
            .map_or(String::new(), |t| format!(" template=\"{t}\""));
        format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"256k\" \
             parser.escapeControlCharactersOnReceive=\"off\"{global_tls})\n\
             module(load=\"imtcp\"{module_tls})\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" {listen} ruleset=\"rows\")\n\
             ruleset(name=\"rows\") {{ action(type=\"omfile\" file=\"{out}\"{template}) }}\n",
            work = dir.join("work").display(),
            out = self.out.display(),
        )
    }

    fn launch(&mut self) {
        let rsyslogd = require("rsyslogd");
        let dir = self.dir.path().to_path_buf();
        let conf = dir.join("rsyslog.conf");
        let _ = fs::remove_file(dir.join("port"));
        fs::write(&conf, self.config()).unwrap();
        let child = command(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(dir.join("rsyslogd.err")).unwrap()))
            .spawn()
            .unwrap();
        self.child = Some(child);
        if self.port == 0 {
            let port_file = dir.join("port");
            assert!(
                wait_until(Duration::from_secs(10), || fs::read_to_string(&port_file)
                    .is_ok_and(|p| p.trim().parse::<u16>().is_ok())),
                "rsyslogd wrote no port: {}",
                self.stderr()
            );
            self.port = fs::read_to_string(&port_file).unwrap().trim().parse().unwrap();
        }
        // Listening: a connection is taken (and closed unused).
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                self.port
            ))
            .is_ok()),
            "rsyslogd does not listen on {}: {}",
            self.port,
            self.stderr()
        );
    }

    /// What rsyslogd said on stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("rsyslogd.err")).unwrap_or_default()
    }

    /// Stops it (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The lines it has written so far (whole lines only).
    pub fn lines(&self) -> Vec<Vec<u8>> {
        let data = fs::read(&self.out).unwrap_or_default();
        let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        data[..whole]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Waits until `done` says its lines so far are enough.
    pub fn wait(&self, limit: Duration, mut done: impl FnMut(&[Vec<u8>]) -> bool) -> bool {
        wait_until(limit, || done(&self.lines()))
    }

    /// What a failure needs to see: its configuration, stderr and file.
    pub fn report(&self) -> String {
        format!(
            "---- rsyslog.conf ----\n{}\n---- rsyslogd stderr ----\n{}\n---- {} ----\n{}",
            fs::read_to_string(self.dir.path().join("rsyslog.conf")).unwrap_or_default(),
            self.stderr(),
            self.out.display(),
            fs::read_to_string(&self.out).unwrap_or_default()
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
