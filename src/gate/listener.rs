//! The accept loop: the bound listener, the connection cap, and the stop.
//!
//! The loop takes an already-bound listener (see `serve`), so the shim
//! binds before the child exists (and fails closed if it can't), and tests
//! and the demo bind 127.0.0.1:0 and decide when to stop. Each connection
//! under the cap gets a task of its own (a [`Handler`], or the transparent
//! path's); one over it is answered 503 at once. On stop: no new
//! connections; tunnels still open get [`GRACE`] to finish, then the
//! shutdown is forced and ends them with their `egress_close` rows
//! written. Every loop that accepts or receives backs off the same way
//! after a failure ([`next_connection`], [`back_off`]).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::gate::handler::Handler;
use crate::gate::refusal::{Closing, Refusal};
use crate::gate::shutdown::Shutdown;
use crate::gate::transparent;
use crate::gate::Gate;

/// How long open tunnels may outlive the stop (the child's exit).
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// Binds the gate's listener on 127.0.0.1 at a port of the kernel's
/// choosing, non-blocking and close-on-exec, with the largest accept queue
/// the system allows (`net.core.somaxconn`). std's `bind` asks for 128: a
/// tool that opens more connections than that at once would overflow it,
/// and an overflowing queue means SYN cookies, retransmits a second apart,
/// or resets.
pub fn bind_loopback() -> std::io::Result<(std::net::TcpListener, SocketAddr)> {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))?;
    listen(&fd, Backlog::MAXALLOWABLE)?;
    let listener = std::net::TcpListener::from(fd);
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// The connection cap under this process's descriptor soft limit.
pub(super) fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    connection_cap_for(soft)
}

/// The connection cap under a descriptor soft limit: half of what is left
/// (each tunnel holds two sockets) after a reserve of 64 for the log, the
/// runtime and the child's pipes, and two for each of the relay's pipes
/// (at most MAX_PIPES); at least 8.
pub fn connection_cap_for(soft_limit: u64) -> usize {
    let reserve = 64 + 2 * crate::gate::relay::MAX_PIPES as u64;
    let usable = usize::try_from(soft_limit.saturating_sub(reserve) / 2).unwrap_or(usize::MAX);
    usable.clamp(8, 1 << 20)
}

/// Accepts on the proxy's listener and the transparent ones until the
/// gate stops, then drains (see the module doc). Each transparent
/// listener's accepts reach the one loop through a channel, so the proxy's
/// own accept stays a direct poll.
pub(super) async fn accept_and_drain(
    listener: TcpListener,
    transparent: Vec<TcpListener>,
    gate: Arc<Gate>,
    shutdown: Shutdown,
) {
    let (direct_tx, direct_rx) = mpsc::channel(64);
    let mut feeders = JoinSet::new();
    for extra in transparent {
        feeders.spawn(feed(extra, direct_tx.clone(), shutdown.clone()));
    }
    drop(direct_tx);
    let mut listener = Listener::new(listener, gate, shutdown);
    listener.accept_until_stopped(direct_rx).await;
    while feeders.join_next().await.is_some() {}
    listener.drain().await;
}

/// Accepts on one transparent listener until the gate stops, handing each
/// connection on.
async fn feed(listener: TcpListener, to: mpsc::Sender<TcpStream>, mut shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.stopping() => return,
            accepted = next_connection(&listener) => accepted,
        };
        if let Some(stream) = stream {
            if to.send(stream).await.is_err() {
                return;
            }
        }
    }
}

/// How long a loop waits after a failed accept or receive before it tries
/// again.
const BACK_OFF: Duration = Duration::from_millis(20);

/// Waits [`BACK_OFF`]: after a failed accept or receive (out of
/// descriptors, a connection reset before it was accepted, an ICMP error
/// queued on a UDP socket), so that a loop around it never spins and the
/// socket stays up.
pub(super) async fn back_off() {
    tokio::time::sleep(BACK_OFF).await;
}

/// The next connection on `listener`; `None` after a failed accept, once
/// the [`back_off`] has passed. Cancel-safe, like `accept`.
pub(super) async fn next_connection(listener: &TcpListener) -> Option<TcpStream> {
    match listener.accept().await {
        Ok((stream, _)) => Some(stream),
        Err(_) => {
            back_off().await;
            None
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The proxy's: a CONNECT request comes first.
    Proxy,
    /// Strict mode's: a direct connection that ignored the proxy.
    Transparent,
}

/// The accept loop's state: the listener, the cap, the stop and the
/// connection tasks.
#[derive(Debug)]
struct Listener {
    listener: TcpListener,
    gate: Arc<Gate>,
    /// One permit per connection handled at once.
    slots: Arc<Semaphore>,
    /// Says when to stop accepting; forced by [`Listener::drain`] when the
    /// grace after the stop runs out, which ends every connection task.
    shutdown: Shutdown,
    tasks: JoinSet<()>,
    /// The last connection number given (they start at 1).
    next_conn: u64,
}

impl Listener {
    fn new(listener: TcpListener, gate: Arc<Gate>, shutdown: Shutdown) -> Listener {
        Listener {
            listener,
            slots: Arc::new(Semaphore::new(gate.settings.max_connections)),
            gate,
            shutdown,
            tasks: JoinSet::new(),
            next_conn: 0,
        }
    }

    /// Accepts until the gate stops, reaping finished tasks as it goes.
    async fn accept_until_stopped(&mut self, mut direct: mpsc::Receiver<TcpStream>) {
        let mut stop = self.shutdown.clone();
        let mut direct_open = true;
        loop {
            tokio::select! {
                biased;
                _ = stop.stopping() => return,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                stream = direct.recv(), if direct_open => match stream {
                    Some(stream) => self.admit(stream, Kind::Transparent),
                    None => direct_open = false,
                },
                accepted = next_connection(&self.listener) => {
                    if let Some(stream) = accepted {
                        self.admit(stream, Kind::Proxy);
                    }
                }
            }
        }
    }

    /// Gives a new connection its task: a handler under the cap, or a 503.
    fn admit(&mut self, stream: TcpStream, kind: Kind) {
        self.next_conn += 1;
        let gate = Arc::clone(&self.gate);
        let (conn, shutdown) = (self.next_conn, self.shutdown.clone());
        match (Arc::clone(&self.slots).try_acquire_owned(), kind) {
            (Ok(slot), Kind::Proxy) => {
                let handler = Handler::new(gate, stream, conn, shutdown);
                self.tasks.spawn(async move {
                    handler.serve().await;
                    // The place under the cap is free once the task ends.
                    drop(slot);
                });
            }
            (Ok(slot), Kind::Transparent) => {
                self.tasks.spawn(async move {
                    transparent::serve(gate, stream, conn, shutdown).await;
                    drop(slot);
                });
            }
            (Err(_), _) => {
                self.tasks.spawn(overloaded(gate, stream, conn));
            }
        }
    }

    /// Stops listening, gives open connections [`GRACE`], then forces them
    /// closed and waits for their close rows.
    async fn drain(self) {
        let Listener {
            listener,
            shutdown,
            mut tasks,
            ..
        } = self;
        drop(listener);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(GRACE, drain).await.is_err() {
            shutdown.force();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Answers a connection over the cap with 503, at once.
async fn overloaded(gate: Arc<Gate>, client: TcpStream, conn: u64) {
    let reason = format!(
        "too many connections at once (the cap is {}): try again shortly",
        gate.settings.max_connections
    );
    gate.refuse(client, conn, Refusal::deny(503, reason), Closing::AtOnce)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_halves_what_the_reserve_leaves() {
        let reserve = 64 + 2 * crate::gate::relay::MAX_PIPES as u64;
        assert_eq!(connection_cap_for(reserve + 200), 100);
        assert_eq!(connection_cap_for(0), 8);
        assert_eq!(connection_cap_for(u64::MAX), 1 << 20);
    }
}
