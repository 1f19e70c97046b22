//! Delivery: a thread of the gate's that sends the spool to the collector
//! as rows are written, and the same rounds for `cli-guard ship`.
//!
//! The tool never waits on it. A row costs the writer one more `write(2)`
//! (to the spool) and a wake-up; connecting, the TLS handshake and the
//! sending happen on this thread. Only at the end does the shim wait, and
//! at most [`BOUND`], for the collector to acknowledge the invocation's
//! rows (not at all while it is known to be down); what is left waits in
//! the spool for the next invocation's shipper, or for the drainer the
//! shim then starts (`cli-guard ship --background`), whichever comes
//! first.
//!
//! A row counts as delivered once the collector's TCP has acknowledged
//! its last byte (`SIOCOUTQ`); plain syslog has no acknowledgement of its
//! own, so a collector that crashes with acknowledged rows still unread
//! loses them (its copy of the chain then shows the gap).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::ship::config::{Collector, ShipConfig};
use crate::ship::spool::{self, Header};
use crate::ship::syslog;
use crate::sys::flock;

/// The most shipping adds to a tool's exit: the wait for the collector to
/// acknowledge the invocation's rows.
pub(crate) const BOUND: Duration = Duration::from_millis(100);
/// How long a connection (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may block, and how long acknowledgements may take,
/// before the connection counts as broken (its unacknowledged rows are
/// sent again on the next).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows read from the spool per round.
const BATCH: usize = 1024 * 1024;
/// A delivered spool is cut back to its header once it is this long (and
/// at the end of an invocation or a drain): cutting takes the log's lock,
/// which every row's writer needs, so it is not done after every round.
const CUT_AT: u64 = 256 * 1024;
/// Retrying a collector that is down: the first wait, doubled up to the
/// last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Where rows go: the collector, how to reach it, the machine's name, and
/// the spool.
#[derive(Debug)]
pub(crate) struct Destination {
    pub collector: Collector,
    pub ca: Option<PathBuf>,
    pub machine: String,
    pub spool: PathBuf,
    /// The log's lock, under which the spool is cut back.
    pub log_lock: PathBuf,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Destination {
    pub(crate) fn new(config: &ShipConfig, log: &Path) -> Destination {
        let machine = config.machine.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Destination {
            collector: config.collector.clone(),
            ca: config.ca.clone(),
            machine: syslog::machine_name(&machine),
            spool: spool::path_of(log),
            log_lock: crate::audit::lock_path(log),
            tls: OnceLock::new(),
        }
    }

    /// The TLS settings, made once (the CA store is read only when a TLS
    /// collector is configured, and on this thread).
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| crate::ship::tls::client_config(self.ca.as_deref()))
            .clone()
    }
}

/// Why a round delivered nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    pub why: String,
    /// Something to fix (a certificate, a CA file, the spool), not a
    /// collector that is away: the shim says so on stderr.
    pub to_fix: bool,
}

impl Failed {
    /// The collector is away (or slow): rows wait, as they should.
    fn away(why: String) -> Failed {
        Failed { why, to_fix: false }
    }

    /// Something is wrong here: rows will wait until it is fixed.
    fn to_fix(why: String) -> Failed {
        Failed { why, to_fix: true }
    }
}

/// One connection to the collector.
pub(super) struct Connection {
    stream: Stream,
}

enum Stream {
    Plain(Counted),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Counted>>),
}

/// A socket that counts the bytes written to it.
struct Counted {
    socket: TcpStream,
    written: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.socket.read(buf)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.socket.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.socket.flush()
    }
}

impl Connection {
    fn open(dest: &Destination) -> Result<Connection, Failed> {
        let Collector { tls, host, port } = &dest.collector;
        let addrs: Vec<_> = (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| Failed::away(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last = format!("{host} has no address");
        let socket = addrs.iter().find_map(|addr| {
            TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
                .map_err(|e| last = format!("{addr}: {e}"))
                .ok()
        });
        let socket = socket.ok_or(Failed::away(last))?;
        let _ = socket.set_nodelay(true);
        socket
            .set_write_timeout(Some(IO_TIMEOUT))
            .and_then(|()| socket.set_read_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| Failed::away(e.to_string()))?;
        let counted = Counted { socket, written: 0 };
        if !tls {
            return Ok(Connection {
                stream: Stream::Plain(counted),
            });
        }
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Failed::to_fix(format!("{host} is not a TLS server name: {e}")))?;
        let client = rustls::ClientConnection::new(dest.tls().map_err(Failed::to_fix)?, name)
            .map_err(|e| Failed::to_fix(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(client, counted);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| {
                let why = format!("TLS handshake with {}: {e}", dest.collector);
                // A certificate the CA store does not vouch for is to fix;
                // a connection that broke mid-way is a collector away.
                match e.kind() {
                    std::io::ErrorKind::InvalidData => Failed::to_fix(why),
                    _ => Failed::away(why),
                }
            })?;
        }
        Ok(Connection {
            stream: Stream::Tls(Box::new(stream)),
        })
    }

    fn counted(&self) -> &Counted {
        match &self.stream {
            Stream::Plain(c) => c,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Whether the collector still holds the connection open: it never
    /// sends rows back, so a readable socket means its end (or TLS
    /// messages, which are read).
    fn alive(&mut self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let flags = {
            let socket = self.counted().socket.as_fd();
            let mut fds = [PollFd::new(socket, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => return true,
                Ok(_) => fds[0].revents().unwrap_or(PollFlags::POLLERR),
                Err(_) => return false,
            }
        };
        if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return false;
        }
        match &mut self.stream {
            Stream::Plain(c) => {
                let mut junk = [0u8; 4096];
                matches!(c.socket.read(&mut junk), Ok(n) if n > 0)
            }
            Stream::Tls(s) => match s.conn.read_tls(&mut s.sock) {
                Ok(0) | Err(_) => false,
                Ok(_) => s.conn.process_new_packets().is_ok_and(|st| !st.peer_has_closed()),
            },
        }
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(c) => c.write_all(frame),
            Stream::Tls(s) => s.write_all(frame).and_then(|()| s.flush()),
        }
    }

    /// Waits until the collector's TCP has acknowledged every byte
    /// written, or `IO_TIMEOUT`; returns how many bytes it has.
    fn acknowledged(&self) -> u64 {
        let counted = self.counted();
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut pause = Duration::from_micros(20);
        loop {
            let waiting = crate::sys::tcp::unacknowledged(&counted.socket).unwrap_or(u64::MAX);
            if waiting == 0 || Instant::now() >= deadline {
                return counted.written.saturating_sub(waiting);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// What one round of delivery left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Round {
    /// The link of the last row delivered.
    pub seq: u64,
    /// Bytes still waiting in the spool.
    pub waiting: u64,
    /// Whether rows were delivered.
    pub progressed: bool,
}

/// Delivers what waits in the spool (one batch), over `link` (made, or
/// made again, as needed). Holds the spool's lock, so one shipper at a
/// time sends, in the spool's order.
pub(super) fn deliver(dest: &Destination, link: &mut Option<Connection>) -> Result<Round, Failed> {
    let io = |e: std::io::Error| Failed::to_fix(format!("the spool {}: {e}", dest.spool.display()));
    let Some(file) = spool::open_for_delivery(&dest.spool).map_err(io)? else {
        return Ok(Round::default());
    };
    let _one_shipper = flock::exclusive(&file).map_err(io)?;
    let mut header = spool::read_header(&file).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if header.delivered >= size {
        if size >= CUT_AT {
            cut_back(dest, &file, header).map_err(io)?;
        }
        return Ok(Round {
            seq: header.seq,
            ..Round::default()
        });
    }
    let data = spool::read_from(&file, header.delivered, BATCH).map_err(io)?;
    let rows = spool::rows(&data, header.delivered);
    if rows.is_empty() {
        return Ok(Round {
            seq: header.seq,
            waiting: size - header.delivered,
            progressed: false,
        });
    }
    let connection = match link.take() {
        Some(mut c) => match c.alive() {
            true => c,
            false => Connection::open(dest)?,
        },
        None => Connection::open(dest)?,
    };
    let connection = link.insert(connection);
    let mut ends = Vec::with_capacity(rows.len());
    for row in &rows {
        let head = crate::audit::head_of(row.line);
        let frame = syslog::frame(row.line, &dest.machine, head.as_ref());
        if let Err(e) = connection.send(&frame) {
            *link = None;
            return Err(Failed::away(format!("{}: {e}", dest.collector)));
        }
        ends.push((connection.counted().written, row.end, row.seq));
    }
    let acknowledged = connection.acknowledged();
    let confirmed = ends
        .iter()
        .take_while(|(sent, _, _)| *sent <= acknowledged)
        .last();
    if let Some((_, end, seq)) = confirmed {
        header = Header {
            delivered: *end,
            seq: seq.unwrap_or(header.seq),
        };
        spool::write_header(&file, header).map_err(io)?;
    }
    if confirmed.map(|c| c.1) != ends.last().map(|e| e.1) {
        // Not acknowledged in time: a broken or stuck connection. What it
        // did not acknowledge goes again on the next.
        *link = None;
        return Err(Failed::away(format!(
            "{} did not acknowledge rows within {IO_TIMEOUT:?}",
            dest.collector
        )));
    }
    let size = file.metadata().map_err(io)?.len();
    if header.delivered >= size && size >= CUT_AT {
        cut_back(dest, &file, header).map_err(io)?;
    }
    Ok(Round {
        seq: header.seq,
        waiting: size.saturating_sub(header.delivered),
        progressed: true,
    })
}

/// Cuts the spool at `dest` back to its header if everything in it was
/// delivered and no shipper is at work: at the end of an invocation, and
/// of a drain.
fn tidy(dest: &Destination) {
    let Ok(Some(file)) = spool::open_for_delivery(&dest.spool) else {
        return;
    };
    let held = flock::try_exclusive(&file);
    if let (Ok(Some(_one_shipper)), Ok(header)) = (&held, spool::read_header(&file)) {
        let _ = cut_back(dest, &file, header);
    }
}

/// Cuts a fully delivered spool back to its header, under the log's lock
/// (so no writer is appending).
fn cut_back(dest: &Destination, file: &std::fs::File, header: Header) -> std::io::Result<()> {
    if file.metadata()?.len() <= spool::HEADER_LEN {
        return Ok(());
    }
    let lock = crate::audit::open_lock(&dest.log_lock)?;
    let _writers = flock::exclusive(&lock)?;
    if file.metadata()?.len() == header.delivered {
        file.set_len(spool::HEADER_LEN)?;
        spool::write_header(
            file,
            Header {
                delivered: spool::HEADER_LEN,
                seq: header.seq,
            },
        )?;
    }
    Ok(())
}

/// What the gate's thread and the writer share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Rows were spooled since the last round.
    poked: bool,
    /// The shim is done: end after this round.
    stop: bool,
    /// The last round's outcome.
    delivered_seq: u64,
    waiting: u64,
    failing: Option<Failed>,
    rounds: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shipping for one writer (an invocation's gate): its spool, the rows it
/// spooled, and the thread that delivers them.
#[derive(Debug)]
pub(crate) struct Shipping {
    dest: Arc<Destination>,
    appender: spool::Appender,
    shared: Arc<Shared>,
    started: bool,
    /// The links of the rows this writer spooled, in order.
    mine: Vec<u64>,
    /// Rows the spool had no room for.
    pub(crate) not_spooled: u64,
}

impl Shipping {
    /// Shipping as `config` says for the log at `log`: its spool opened
    /// (made if need be). Refused where the spool cannot be opened, or,
    /// when shipping is required, is full.
    pub(crate) fn open(config: &ShipConfig, log: &Path) -> Result<Shipping, String> {
        let dest = Destination::new(config, log);
        let appender = spool::Appender::open(&dest.spool)?;
        let size = appender.size().map_err(|e| e.to_string())?;
        if config.required && size >= spool::CAP {
            return Err(format!(
                "the spool {} is full ({} MiB of rows the collector {} has not taken)",
                dest.spool.display(),
                size >> 20,
                dest.collector
            ));
        }
        Ok(Shipping {
            dest: Arc::new(dest),
            appender,
            shared: Arc::default(),
            started: false,
            mine: Vec::new(),
            not_spooled: 0,
        })
    }

    /// Spools one row (with its link), under the log's lock, and wakes
    /// the thread. `Err` with the warning to print once, when the row did
    /// not fit.
    pub(crate) fn spool(&mut self, line: &[u8], seq: u64) -> Result<(), String> {
        match self.appender.append(line) {
            Ok(()) => {
                self.mine.push(seq);
                self.wake();
                Ok(())
            }
            Err(why) => {
                self.not_spooled += 1;
                Err(match why {
                    spool::NotSpooled::Full(size) => format!(
                        "the spool {} is full ({} MiB the collector {} has not taken): rows stay in the audit log \
                         only and the collector's copy will show them missing; bring the collector back, then run \
                         `cli-guard ship`",
                        self.dest.spool.display(),
                        size >> 20,
                        self.dest.collector
                    ),
                    spool::NotSpooled::Io(e) => {
                        format!("cannot spool a row in {}: {e}", self.dest.spool.display())
                    }
                })
            }
        }
    }

    fn wake(&mut self) {
        if !self.started {
            self.started = true;
            let (dest, shared) = (Arc::clone(&self.dest), Arc::clone(&self.shared));
            let spawned = std::thread::Builder::new()
                .name("cli-guard-ship".into())
                .spawn(move || run(&dest, &shared));
            if spawned.is_err() {
                // The rows wait in the spool for the next shipper.
                return;
            }
        }
        self.shared.lock().poked = true;
        self.shared.changed.notify_all();
    }

    /// A handle that waits for delivery without the writer's lock.
    pub(crate) fn waiter(&self) -> Waiter {
        Waiter {
            shared: Arc::clone(&self.shared),
            dest: Arc::clone(&self.dest),
            mine: self.mine.clone(),
            started: self.started,
        }
    }
}

/// Waits for this writer's rows to be delivered, at most until a
/// deadline.
#[derive(Debug)]
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    dest: Arc<Destination>,
    mine: Vec<u64>,
    started: bool,
}

impl Waiter {
    /// Waits until the collector has this writer's rows, it is known to
    /// be down, or `deadline`; returns how many of them still wait in the
    /// spool.
    pub(crate) fn settle(&self, deadline: Instant) -> u64 {
        let waiting = |delivered: u64| self.mine.iter().filter(|seq| **seq > delivered).count() as u64;
        if !self.started {
            return waiting(0);
        }
        let mut state = self.shared.lock();
        state.poked = true;
        let asked = state.rounds;
        self.shared.changed.notify_all();
        loop {
            let answered = state.rounds > asked;
            if answered && (waiting(state.delivered_seq) == 0 || state.failing.is_some()) {
                return waiting(state.delivered_seq);
            }
            let now = Instant::now();
            if now >= deadline {
                return waiting(state.delivered_seq);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Ends the thread; if rows still wait in the spool, starts the
    /// drainer that delivers them once the collector answers. Returns what
    /// to say when they wait on something to fix (a certificate, a CA
    /// file), not on a collector that is away.
    pub(crate) fn finish(&self, log: &Path) -> Option<String> {
        let failing = {
            let mut state = self.shared.lock();
            state.stop = true;
            self.shared.changed.notify_all();
            state.failing.clone()
        };
        if waiting_in(&self.dest.spool) == 0 {
            tidy(&self.dest);
            return None;
        }
        start_drainer(log);
        failing.filter(|f| f.to_fix).map(|f| {
            format!(
                "cli-guard: rows are not reaching the collector {}: {}; they wait in {} until that is fixed",
                self.dest.collector,
                f.why,
                self.dest.spool.display()
            )
        })
    }
}

/// Bytes that wait in the spool at `path` (0 when there is none).
pub(crate) fn waiting_in(path: &Path) -> u64 {
    let Ok(Some(file)) = spool::open_for_delivery(path) else {
        return 0;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let header = spool::read_header(&file).unwrap_or_default();
    size.saturating_sub(header.delivered.max(spool::HEADER_LEN))
}

/// The gate's shipping thread: a round whenever rows are spooled, and
/// again after a backoff while the collector is down.
fn run(dest: &Destination, shared: &Shared) {
    let mut link = None;
    let mut backoff = BACKOFF.0;
    let mut retry_at: Option<Instant> = None;
    loop {
        {
            let mut state = shared.lock();
            loop {
                if state.poked {
                    state.poked = false;
                    break;
                }
                if state.stop {
                    return;
                }
                let now = Instant::now();
                match retry_at {
                    Some(at) if now >= at => break,
                    Some(at) => {
                        state = shared
                            .changed
                            .wait_timeout(state, at - now)
                            .map(|(s, _)| s)
                            .unwrap_or_else(|p| p.into_inner().0)
                    }
                    None => state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                }
            }
        }
        let round = deliver(dest, &mut link);
        let mut state = shared.lock();
        state.rounds += 1;
        match round {
            Ok(round) => {
                state.delivered_seq = round.seq;
                state.waiting = round.waiting;
                state.failing = None;
                backoff = BACKOFF.0;
                // More than one batch, or rows another writer appended
                // (a row still being written: a moment later).
                retry_at = (round.waiting > 0).then(|| match round.progressed {
                    true => Instant::now(),
                    false => Instant::now() + BACKOFF.0,
                });
            }
            Err(why) => {
                state.failing = Some(why);
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
        shared.changed.notify_all();
    }
}

/// Starts `cli-guard ship --background` for the log at `log`, detached,
/// unless one is already at work (it holds the drainer's lock).
fn start_drainer(log: &Path) {
    let lock_path = drainer_lock(log);
    if let Ok(lock) = crate::audit::open_lock(&lock_path) {
        if !matches!(flock::try_exclusive(&lock), Ok(Some(_))) {
            return;
        }
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let _ = std::process::Command::new(exe)
        .arg0("cli-guard")
        .args(["ship", "--background", "--log"])
        .arg(log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// The lock a drainer holds while it works.
pub(crate) fn drainer_lock(log: &Path) -> PathBuf {
    let mut name = spool::path_of(log).into_os_string();
    name.push(".drain");
    PathBuf::from(name)
}

/// What `cli-guard ship` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Nothing waits in the spool.
    Empty,
    /// Rows still wait: the collector did not answer by the deadline.
    GaveUp { waiting: u64, why: String },
    /// Another drainer is at work.
    Busy,
    /// The spool is gone (its log with it).
    Gone,
}

/// Delivers the spool until it is empty, retrying with a backoff, until
/// `deadline`. With `single`, only while no other drainer works.
pub(crate) fn drain(config: &ShipConfig, log: &Path, deadline: Instant, single: bool) -> Drained {
    let dest = Destination::new(config, log);
    let lock = crate::audit::open_lock(&drainer_lock(log)).ok();
    let _held = match (&lock, single) {
        (Some(lock), true) => match flock::try_exclusive(lock) {
            Ok(Some(held)) => Some(held),
            _ => return Drained::Busy,
        },
        _ => None,
    };
    let mut link = None;
    let mut backoff = BACKOFF.0;
    loop {
        if !dest.spool.exists() {
            return Drained::Gone;
        }
        let why = match deliver(&dest, &mut link) {
            Ok(round) if round.waiting == 0 => {
                tidy(&dest);
                return Drained::Empty;
            }
            Ok(round) if round.progressed => {
                backoff = BACKOFF.0;
                continue;
            }
            Ok(_) => "a row is still being written".to_string(),
            Err(failed) => failed.why,
        };
        if Instant::now() + backoff >= deadline {
            return Drained::GaveUp {
                waiting: waiting_in(&dest.spool),
                why,
            };
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}
