//! The accept loop: the bound listener, the connection cap, and the stop.
//!
//! [`serve`] takes an already-bound listener, so the shim binds before the
//! child exists (and fails closed if it can't), and tests and the demo bind
//! 127.0.0.1:0 and decide when to stop. Each connection under the cap gets a
//! task of its own (a [`Handler`]); one over it is answered 503 at once. On
//! stop: no new connections; tunnels still open get [`GRACE`] to finish,
//! then the force-close signal ends them with their `egress_close` rows
//! written.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::gate::handler::Handler;
use crate::gate::refusal::{Closing, Refusal};
use crate::gate::transparent;
use crate::gate::Gate;

/// How long open tunnels may outlive the stop (the child's exit).
pub const GRACE: Duration = Duration::from_secs(2);

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
pub fn connection_cap() -> usize {
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

/// Runs the accept loop until `stop` fires, then drains (see module docs).
pub async fn serve(listener: TcpListener, gate: Arc<Gate>, stop: oneshot::Receiver<()>) {
    serve_with_transparent(listener, Vec::new(), gate, stop).await;
}

/// [`serve`], and strict mode's transparent listeners beside the proxy's:
/// their connections share the cap, the connection numbers and the stop.
pub async fn serve_with_transparent(
    listener: TcpListener,
    transparent: Vec<TcpListener>,
    gate: Arc<Gate>,
    stop: oneshot::Receiver<()>,
) {
    let mut listener = Listener::new(listener, gate);
    // Each transparent listener's accepts reach the one loop through a
    // channel, so the proxy's own accept stays a direct poll.
    let (direct_tx, direct_rx) = mpsc::channel(64);
    let mut feeders = JoinSet::new();
    for extra in transparent {
        feeders.spawn(feed(extra, direct_tx.clone()));
    }
    drop(direct_tx);
    listener.accept_until(stop, direct_rx).await;
    feeders.abort_all();
    listener.drain().await;
}

/// Accepts on one transparent listener for ever, handing each connection on.
async fn feed(listener: TcpListener, to: mpsc::Sender<TcpStream>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if to.send(stream).await.is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
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

/// The accept loop's state: the listener, the cap, the force-close signal
/// and the connection tasks.
#[derive(Debug)]
struct Listener {
    listener: TcpListener,
    gate: Arc<Gate>,
    /// One permit per connection handled at once.
    slots: Arc<Semaphore>,
    /// Raised when the grace after the stop runs out.
    force_tx: watch::Sender<bool>,
    force_rx: watch::Receiver<bool>,
    tasks: JoinSet<()>,
    /// The last connection number given (they start at 1).
    next_conn: u64,
}

impl Listener {
    fn new(listener: TcpListener, gate: Arc<Gate>) -> Listener {
        let (force_tx, force_rx) = watch::channel(false);
        Listener {
            listener,
            slots: Arc::new(Semaphore::new(gate.settings.max_connections)),
            gate,
            force_tx,
            force_rx,
            tasks: JoinSet::new(),
            next_conn: 0,
        }
    }

    /// Accepts until `stop` fires, reaping finished tasks as it goes.
    async fn accept_until(&mut self, mut stop: oneshot::Receiver<()>, mut direct: mpsc::Receiver<TcpStream>) {
        let mut direct_open = true;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                stream = direct.recv(), if direct_open => match stream {
                    Some(stream) => self.admit(stream, Kind::Transparent),
                    None => direct_open = false,
                },
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => self.admit(stream, Kind::Proxy),
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly rather than spin; the listener stays up.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
            }
        }
    }

    /// Gives a new connection its task: a handler under the cap, or a 503.
    fn admit(&mut self, stream: TcpStream, kind: Kind) {
        self.next_conn += 1;
        let gate = Arc::clone(&self.gate);
        let (conn, force) = (self.next_conn, self.force_rx.clone());
        match (Arc::clone(&self.slots).try_acquire_owned(), kind) {
            (Ok(slot), Kind::Proxy) => {
                let handler = Handler::new(gate, stream, conn, force);
                self.tasks.spawn(async move {
                    handler.serve().await;
                    // The place under the cap is free once the task ends.
                    drop(slot);
                });
            }
            (Ok(slot), Kind::Transparent) => {
                self.tasks.spawn(async move {
                    transparent::serve(gate, stream, conn, force).await;
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
            force_tx,
            mut tasks,
            ..
        } = self;
        drop(listener);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(GRACE, drain).await.is_err() {
            let _ = force_tx.send(true);
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
