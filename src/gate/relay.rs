//! Moving a tunnel's bytes both ways, with half-close and byte counts.
//!
//! Each direction moves its bytes with `splice(2)` through a pipe: socket →
//! pipe → socket, so the payload stays in kernel pages and never crosses
//! into user space (a copy loop costs two copies per byte more, and on
//! loopback those copies are most of a relay's CPU). Pipes come from a
//! small pool and are held only while data flows: a direction takes one
//! when its socket becomes readable and gives it back, empty, as soon as a
//! read would block, so 10,000 idle tunnels hold no pipes (each is two
//! descriptors). Where no pipe can be had (MAX_PIPES are lent, or
//! descriptors are exhausted), that stretch of the transfer is copied
//! through a buffer, held on the same terms; the tunnel never fails for
//! want of a pipe. A lent pipe is grown to 1 MiB once it fills, if few
//! others are: the kernel charges pipe capacity to a per-user quota.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::sys::pipe::Pipe;

/// Pipes in existence at once, lent or idle (two descriptors each): past
/// this, a direction copies through a buffer. The gate's connection cap
/// keeps descriptors in reserve for all of them.
pub(super) const MAX_PIPES: usize = 32;
/// Empty pipes kept for reuse; past this, a returned pipe is closed.
pub const IDLE_PIPES: usize = 8;
/// How many lent pipes may be grown to [`LARGE_PIPE`] at once. The kernel
/// charges a pipe's whole capacity, full or not, to a per-user quota
/// (`pipe-user-pages-soft`, 64 MiB by default); past it, every new pipe of
/// every process of that user gets 8 KiB. 8 MiB leaves that quota to them.
const LARGE_PIPES: usize = 8;
/// 1 MiB, the default `pipe-max-size` for unprivileged processes: one
/// tunnel moved 78-87% of direct loopback with it, 70% with 256 KiB and 60%
/// with the default 64 KiB (docs/benchmarks.md).
const LARGE_PIPE: usize = 1 << 20;
/// The copy buffer of a direction that could not get a pipe.
const COPY_BUF: usize = 64 * 1024;
/// Bytes each way and how the tunnel ended.
#[derive(Debug, Default)]
pub(super) struct RelayOutcome {
    pub up: u64,
    pub down: u64,
    pub error: Option<String>,
}

/// Pipes for the relay: at most [`MAX_PIPES`] in existence, idle ones kept
/// empty and at their default size, a few grown while lent.
#[derive(Debug)]
pub(super) struct PipePool {
    idle: Mutex<Vec<PooledPipe>>,
    /// Pipes in existence, lent or idle.
    live: AtomicUsize,
    /// Lent pipes grown to LARGE_PIPE.
    large: AtomicUsize,
    /// False only in tests of the copy fallback.
    enabled: bool,
}

impl Default for PipePool {
    fn default() -> PipePool {
        PipePool {
            idle: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            large: AtomicUsize::new(0),
            enabled: true,
        }
    }
}

/// A pipe with what the pool knows of it.
#[derive(Debug)]
struct PooledPipe {
    pipe: Pipe,
    /// What the pipe can hold now, so one splice fills it.
    capacity: usize,
    /// Its size as created, which it goes back to before it idles.
    default_capacity: usize,
    /// Growing it failed during this lend: do not ask again until it is
    /// back in the pool.
    grow_refused: bool,
}

impl PooledPipe {
    fn is_large(&self) -> bool {
        self.capacity > self.default_capacity
    }

    /// Sets the capacity; the kernel may round it up, or refuse.
    fn resize(&mut self, size: usize) -> io::Result<()> {
        self.capacity = self.pipe.set_capacity(size)?;
        Ok(())
    }
}

impl PipePool {
    /// A pool that never hands out a pipe, so every byte takes the copy
    /// path, as when descriptors run out.
    #[cfg(test)]
    pub(super) fn without_pipes() -> PipePool {
        PipePool {
            enabled: false,
            ..PipePool::default()
        }
    }

    /// An empty pipe at its default size, reused or new; `None` if there
    /// are MAX_PIPES already or none can be made.
    fn take(&self) -> Option<PooledPipe> {
        if !self.enabled {
            return None;
        }
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(pipe) => Some(pipe),
            None => self.create(),
        }
    }

    /// Grows a lent pipe to LARGE_PIPE if fewer than LARGE_PIPES are, and
    /// the kernel agrees. Called only once a pipe has been filled, so the
    /// short transfers of most tunnels never pay for the two resizes.
    fn grow(&self, pipe: &mut PooledPipe) {
        if pipe.is_large() || pipe.grow_refused {
            return;
        }
        if self.large.fetch_add(1, Ordering::Relaxed) < LARGE_PIPES
            && pipe.resize(LARGE_PIPE).is_ok()
            && pipe.is_large()
        {
            return;
        }
        self.large.fetch_sub(1, Ordering::Relaxed);
        pipe.grow_refused = true;
    }

    fn create(&self) -> Option<PooledPipe> {
        if self.live.fetch_add(1, Ordering::Relaxed) >= MAX_PIPES {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let made = Pipe::open().and_then(|pipe| {
            let capacity = pipe.capacity()?;
            Ok(PooledPipe {
                pipe,
                capacity,
                default_capacity: capacity,
                grow_refused: false,
            })
        });
        match made {
            Ok(pipe) if pipe.capacity > 0 => Some(pipe),
            _ => {
                self.live.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Takes back a pipe that holds no bytes: shrunk to its default size
    /// (so an idle pipe holds no more of the user's quota than any other),
    /// then kept if there is room.
    fn give_back(&self, mut pipe: PooledPipe) {
        pipe.grow_refused = false;
        if pipe.is_large() {
            if pipe.resize(pipe.default_capacity).is_err() || pipe.is_large() {
                // close() uncounts it as large.
                return self.close(pipe);
            }
            self.large.fetch_sub(1, Ordering::Relaxed);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_PIPES {
            idle.push(pipe);
        } else {
            drop(idle);
            self.close(pipe);
        }
    }

    /// Closes a pipe that is not coming back (bytes left in it, or no
    /// room to keep it).
    fn close(&self, pipe: PooledPipe) {
        if pipe.is_large() {
            self.large.fetch_sub(1, Ordering::Relaxed);
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        drop(pipe);
    }
}

/// A pipe lent to one direction, with the bytes it holds. Goes back to
/// the pool on drop if it is empty; a pipe dropped with bytes in it (an
/// error, or the tunnel closed by force mid-transfer) is closed instead, so
/// the pool only ever holds empty pipes.
struct Lease<'p> {
    pool: &'p PipePool,
    pipe: Option<PooledPipe>,
    in_pipe: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            match self.in_pipe {
                0 => self.pool.give_back(pipe),
                _ => self.pool.close(pipe),
            }
        }
    }
}

/// Why a direction stopped moving bytes for now.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Nothing left to read at the moment; all that was read is written.
    Idle,
    /// The reader reached EOF; all that was read is written.
    Eof,
}

/// Relays both ways until both directions are done, honouring half-close:
/// EOF from one side becomes a write shutdown towards the other. `early_up`
/// is what the client sent behind the CONNECT head and `early_down` what an
/// upstream proxy sent behind its 200; each goes first. If `stop` resolves
/// first, the tunnel ends with its output as the error.
///
/// Once the client has closed its side (its EOF, passed on as a FIN), the
/// tunnel is closing as the client asked, and a reset then is how it ends,
/// not a fault: many servers answer a FIN with a reset (a TLS server that
/// got no handshake does), and a client that has closed resets the bytes
/// still coming its way. A reset before the client's EOF is an error.
pub(super) async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    early_up: &[u8],
    early_down: &[u8],
    pipes: &PipePool,
    stop: impl Future<Output = String>,
) -> RelayOutcome {
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let client_closed = AtomicBool::new(false);
    let upstream_closed = AtomicBool::new(false);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    // A direction's end, as the tunnel's error if it is one.
    let ended = |moved: io::Result<()>, way: &str| match moved {
        Err(e) if client_closed.load(Ordering::Relaxed) && is_closing(&e) => Ok(()),
        moved => moved.map_err(|e| format!("{way}: {e}")),
    };
    let up_flow = (&up, &client_closed);
    let down_flow = (&down, &upstream_closed);
    let upward = async {
        let moved = move_counting(&mut client_read, &mut upstream_write, early_up, up_flow, pipes);
        ended(moved.await, "client→upstream")
    };
    let downward = async {
        let moved = move_counting(
            &mut upstream_read,
            &mut client_write,
            early_down,
            down_flow,
            pipes,
        );
        ended(moved.await, "upstream→client")
    };
    let error = tokio::select! {
        result = async { tokio::try_join!(upward, downward) } => result.err(),
        reason = stop => Some(reason),
    };
    RelayOutcome {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        error,
    }
}

/// How a connection being closed ends on the wire: a reset, a write to a
/// peer that is gone, a shutdown of a socket already reset.
fn is_closing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::NotConnected
    )
}

/// One direction: writes `first`, then moves bytes until EOF, then marks
/// `eof` and shuts down the writer (the half-close). Counts every byte
/// written. Between bursts it waits for readability holding neither pipe
/// nor buffer.
async fn move_counting(
    reader: &mut ReadHalf<'_>,
    writer: &mut WriteHalf<'_>,
    first: &[u8],
    (count, eof): (&AtomicU64, &AtomicBool),
    pipes: &PipePool,
) -> io::Result<()> {
    if !first.is_empty() {
        writer.write_all(first).await?;
        count.fetch_add(first.len() as u64, Ordering::Relaxed);
    }
    loop {
        reader.readable().await?;
        let flow = match pipes.take() {
            Some(pipe) => {
                let lease = Lease {
                    pool: pipes,
                    pipe: Some(pipe),
                    in_pipe: 0,
                };
                splice_while_ready(reader.as_ref(), writer.as_ref(), lease, count).await?
            }
            None => copy_while_ready(reader, writer, count).await?,
        };
        if flow == Flow::Eof {
            eof.store(true, Ordering::Relaxed);
            return writer.shutdown().await;
        }
    }
}

/// Moves bytes socket → pipe → socket until the reader has nothing more
/// for now (or ends), a pipeful at a time: fill the empty pipe, then empty
/// it into the writer.
///
/// The pipe is read into only while empty, and that is what makes a
/// WouldBlock from that splice mean "the socket has nothing": with bytes in
/// the pipe, a splice can also fail for want of free pipe slots (each holds
/// one packet's fragment, however small), and taking that for an empty
/// socket would clear its readiness and stall the tunnel with data waiting.
async fn splice_while_ready(
    from: &TcpStream,
    to: &TcpStream,
    mut lease: Lease<'_>,
    count: &AtomicU64,
) -> io::Result<Flow> {
    loop {
        let Some(pipe) = lease.pipe.as_ref() else {
            return Err(io::Error::other("relay: a lease without a pipe"));
        };
        let read = from.try_io(Interest::READABLE, || {
            pipe.pipe.fill_from(from.as_fd(), pipe.capacity)
        });
        lease.in_pipe = match read {
            Ok(0) => return Ok(Flow::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Idle),
            Err(e) => return Err(e),
        };
        // Half a pipeful or more in one splice: data is streaming (a pipe
        // slot holds one packet fragment, so a full pipe can hold less
        // than its capacity).
        let streaming = lease.in_pipe >= pipe.capacity / 2;
        while lease.in_pipe > 0 {
            let sent = to.try_io(Interest::WRITABLE, || {
                pipe.pipe.drain_into(to.as_fd(), lease.in_pipe)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    lease.in_pipe -= n;
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
        if streaming {
            if let Some(pipe) = lease.pipe.as_mut() {
                lease.pool.grow(pipe);
            }
        }
        // try_io and readiness that is already there never yield: without
        // this, a transfer that never blocks would hold the one runtime
        // thread (signals, other tunnels, the forced close) for as long as
        // it lasts. Each pipeful spends one unit of tokio's per-task budget
        // (128), so the task yields at least every 128 pipefuls.
        tokio::task::coop::consume_budget().await;
    }
}

/// The same through a buffer, for when no pipe can be had.
async fn copy_while_ready(
    reader: &ReadHalf<'_>,
    writer: &mut WriteHalf<'_>,
    count: &AtomicU64,
) -> io::Result<Flow> {
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        buf.clear();
        match reader.try_read_buf(&mut buf) {
            Ok(0) => return Ok(Flow::Eof),
            Ok(n) => {
                writer.write_all(&buf[..n]).await?;
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Idle),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = TcpStream::connect(listener.local_addr().unwrap());
        let (dialled, accepted) = tokio::join!(dial, listener.accept());
        (dialled.unwrap(), accepted.unwrap().0)
    }

    /// Sends `bytes` and half-closes while reading everything that comes
    /// back until EOF.
    async fn send_then_read_all(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
        let (mut r, mut w) = stream.split();
        let send = async {
            w.write_all(bytes).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(send, r.read_to_end(&mut got));
        read.unwrap();
        got
    }

    /// Sends `up` from the client side and `down` from the upstream side
    /// through a relay, each followed by a half-close, and returns what
    /// arrived at each end and the relay's outcome.
    async fn through_relay(pipes: &PipePool, up: &[u8], down: &[u8]) -> (Vec<u8>, Vec<u8>, RelayOutcome) {
        let (mut client_far, mut client_near) = pair().await;
        let (mut upstream_near, mut upstream_far) = pair().await;
        let relayed = relay(
            &mut client_near,
            &mut upstream_near,
            b"early-up:",
            b"early-down:",
            pipes,
            std::future::pending(),
        );
        let (outcome, at_client, at_upstream) = tokio::join!(
            relayed,
            send_then_read_all(&mut client_far, up),
            send_then_read_all(&mut upstream_far, down)
        );
        (at_client, at_upstream, outcome)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn check_both_paths(pipes: PipePool) {
        let pipes = &pipes;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let up = pattern(5 * 1024 * 1024 + 17, 1);
            let down = pattern(3 * 1024 * 1024 + 5, 2);
            let (at_client, at_upstream, outcome) = through_relay(pipes, &up, &down).await;
            assert_eq!(outcome.error, None);
            assert_eq!(at_upstream.len(), 9 + up.len());
            assert!(at_upstream.starts_with(b"early-up:") && at_upstream[9..] == up[..]);
            assert!(at_client.starts_with(b"early-down:") && at_client[11..] == down[..]);
            assert_eq!(outcome.up, 9 + up.len() as u64);
            assert_eq!(outcome.down, 11 + down.len() as u64);
        });
        // Every pipe lent out came back empty: a read finds nothing.
        let idle = pipes.idle.lock().unwrap();
        for pipe in idle.iter() {
            let mut byte = [0u8; 1];
            assert_eq!(
                nix::unistd::read(pipe.pipe.read_end(), &mut byte),
                Err(nix::errno::Errno::EAGAIN)
            );
        }
        assert_eq!(
            idle.is_empty(),
            !pipes.enabled,
            "pipes were used if and only if enabled"
        );
    }

    #[test]
    fn splices_both_ways_with_counts_and_half_close() {
        let pipes = PipePool::default();
        check_both_paths(pipes);
    }

    #[test]
    fn the_pool_bounds_pipes_large_pipes_and_idle_pipes() {
        let pool = PipePool::default();
        let mut lent: Vec<PooledPipe> = std::iter::from_fn(|| pool.take()).take(MAX_PIPES + 5).collect();
        assert_eq!(lent.len(), MAX_PIPES, "no more than MAX_PIPES exist at once");
        assert!(
            lent.iter().all(|p| !p.is_large()),
            "pipes start at their default size"
        );
        for pipe in &mut lent {
            pool.grow(pipe);
        }
        let large = lent.iter().filter(|p| p.is_large()).count();
        // Where the kernel refuses to grow a pipe (a user over the quota),
        // fewer are large; never more.
        assert!(large <= LARGE_PIPES, "{large} large pipes lent at once");
        assert!(lent
            .iter()
            .filter(|p| p.is_large())
            .all(|p| p.capacity >= LARGE_PIPE));
        for pipe in lent {
            pool.give_back(pipe);
        }
        let idle = pool.idle.lock().unwrap();
        assert_eq!(idle.len(), IDLE_PIPES, "idle pipes kept");
        assert!(idle.iter().all(|p| !p.is_large()), "idle pipes are shrunk back");
        assert_eq!(
            pool.live.load(Ordering::Relaxed),
            IDLE_PIPES,
            "the rest are closed"
        );
        assert_eq!(pool.large.load(Ordering::Relaxed), 0);
        drop(idle);
        // With the large ones back, a lent pipe may grow again.
        let mut again = pool.take().unwrap();
        pool.grow(&mut again);
        assert!(again.is_large() || large == 0);
    }

    /// A relay with nothing sent ahead and nothing to stop it.
    fn bare_relay<'a>(
        client: &'a mut TcpStream,
        upstream: &'a mut TcpStream,
        pipes: &'a PipePool,
    ) -> impl Future<Output = RelayOutcome> + 'a {
        relay(client, upstream, b"", b"", pipes, std::future::pending())
    }

    #[test]
    fn a_reset_after_the_clients_close_is_the_close_and_before_it_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pipes = PipePool::default();
        runtime.block_on(async {
            // The client closes; the upstream answers the FIN with a reset.
            let (mut client_far, mut client_near) = pair().await;
            let (mut upstream_near, mut upstream_far) = pair().await;
            let relayed = bare_relay(&mut client_near, &mut upstream_near, &pipes);
            let client = async {
                client_far.shutdown().await.unwrap();
            };
            let upstream = async {
                let mut got = Vec::new();
                upstream_far.read_to_end(&mut got).await.unwrap();
                upstream_far.set_zero_linger().unwrap();
                drop(upstream_far);
            };
            let (outcome, (), ()) = tokio::join!(relayed, client, upstream);
            assert_eq!(outcome.error, None, "the close the client asked for");

            // The upstream resets a tunnel the client still holds open.
            let (_client_far, mut client_near) = pair().await;
            let (mut upstream_near, upstream_far) = pair().await;
            upstream_far.set_zero_linger().unwrap();
            drop(upstream_far);
            let outcome = bare_relay(&mut client_near, &mut upstream_near, &pipes).await;
            assert!(
                outcome.error.as_deref().is_some_and(|e| e.contains("reset")),
                "{:?}",
                outcome.error
            );
        });
    }

    #[test]
    fn copies_both_ways_when_no_pipe_can_be_had() {
        check_both_paths(PipePool::without_pipes());
    }
}
