//! What one gate serves, started as one piece and finished as one: the
//! proxy's listener (on the host's loopback, or inside strict mode's
//! namespace), and in strict mode the namespace's transparent listeners,
//! DNS sockets and QUIC sockets. Every task gets the same [`Shutdown`].

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::gate::shutdown::Shutdown;
use crate::gate::{listener, quic, resolver, unix, Gate};

/// The sockets a gate serves. Bound before the tool runs, so that a gate
/// that cannot be put in place means a tool that is not run.
#[derive(Debug)]
pub(crate) struct Sockets {
    /// The proxy's listener: the child's `HTTPS_PROXY`.
    pub proxy: std::net::TcpListener,
    /// Strict mode: listeners for connections that ignored the proxy.
    pub transparent: Vec<std::net::TcpListener>,
    /// Strict mode: the namespace's resolver, over TCP and UDP.
    pub dns_tcp: Vec<std::net::TcpListener>,
    pub dns_udp: Vec<std::net::UdpSocket>,
    /// Strict mode: UDP 443, refused with a row.
    pub quic: Vec<std::net::UdpSocket>,
    /// Strict mode: the seccomp listener for the tool's unix sockets.
    pub unix: Option<std::os::fd::OwnedFd>,
    /// Strict mode: the namespace's `NETLINK_SOCK_DIAG` socket, for `who`
    /// (taken by the shim before the gate starts).
    pub sock_diag: Option<std::os::fd::OwnedFd>,
}

impl Sockets {
    /// The plain proxy's: its listener alone.
    pub(crate) fn proxy_only(proxy: std::net::TcpListener) -> Sockets {
        Sockets {
            proxy,
            transparent: Vec::new(),
            dns_tcp: Vec::new(),
            dns_udp: Vec::new(),
            quic: Vec::new(),
            unix: None,
            sock_diag: None,
        }
    }
}

/// A gate being served: its tasks, which end after its [`Shutdown`] stops.
#[derive(Debug)]
pub(crate) struct Serving {
    tasks: JoinSet<()>,
}

/// Starts serving `sockets` on the current runtime, every task stopping with
/// `shutdown`. Fails (with nothing started) if a socket cannot join the
/// runtime.
pub(crate) fn start(sockets: Sockets, gate: &Arc<Gate>, shutdown: &Shutdown) -> std::io::Result<Serving> {
    use tokio::net::{TcpListener, UdpSocket};
    let tcp = |list: Vec<std::net::TcpListener>| -> std::io::Result<Vec<TcpListener>> {
        list.into_iter().map(TcpListener::from_std).collect()
    };
    let udp = |list: Vec<std::net::UdpSocket>| -> std::io::Result<Vec<UdpSocket>> {
        list.into_iter().map(UdpSocket::from_std).collect()
    };
    let proxy = TcpListener::from_std(sockets.proxy)?;
    let transparent = tcp(sockets.transparent)?;
    let dns_tcp = tcp(sockets.dns_tcp)?;
    let dns_udp = udp(sockets.dns_udp)?;
    let quic = udp(sockets.quic)?;

    let mut tasks = JoinSet::new();
    let with = |gate: &Arc<Gate>| (Arc::clone(gate), shutdown.clone());
    let (g, s) = with(gate);
    tasks.spawn(listener::accept_and_drain(proxy, transparent, g, s));
    for socket in dns_udp {
        let (g, s) = with(gate);
        tasks.spawn(resolver::serve_udp(socket, g, s));
    }
    for listener in dns_tcp {
        let (g, s) = with(gate);
        tasks.spawn(resolver::serve_tcp(listener, g, s));
    }
    for socket in quic {
        let (g, s) = with(gate);
        tasks.spawn(quic::refuse(socket, g, s));
    }
    if let Some(listener) = sockets.unix {
        let (g, s) = with(gate);
        tasks.spawn(unix::refuse(listener, g, s));
    }
    Ok(Serving { tasks })
}

impl Serving {
    /// Resolves once every task has ended: after the stop, the accept
    /// loops' drain (open tunnels' grace, then their forced close).
    pub(crate) async fn finished(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
