//! Everything the namespace child needs, prepared before the fork: the
//! one-line id maps, the rtnetlink message, each socket's family and
//! address. The child only reads it (see `child`), so it allocates
//! nothing; a failure it reports is read back against it.

use std::net::SocketAddr;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockaddrStorage};

use super::message::Step;
use super::{Layers, NamespaceError, Proto, SocketSpec, MAX_SOCKETS};
use crate::sys::netlink;

/// The step named when more sockets are asked for than one message holds.
pub(super) const TOO_MANY: &str = "too many sockets";

/// `ID ID 1`: the one-line map of an id onto itself, which a process may
/// write for its own namespace without privilege.
pub(super) fn map_line(id: u32) -> String {
    format!("{id} {id} 1\n")
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub(super) struct Plan {
    pub uid_map: String,
    pub gid_map: String,
    pub netlink: [u8; netlink::SETUP_LEN],
    pub sockets: Vec<Planned>,
    pub layers: Layers,
    /// The namespaces the first unshare makes.
    pub namespaces: CloneFlags,
}

/// One socket of the plan.
#[derive(Debug)]
pub(super) struct Planned {
    pub proto: Proto,
    pub requested: SocketAddr,
    pub family: AddressFamily,
    pub addr: SockaddrStorage,
}

impl Plan {
    /// The plan for `sockets` and `layers`, or [`TOO_MANY`] sockets.
    pub(super) fn new(sockets: &[SocketSpec], layers: &Layers) -> Result<Plan, NamespaceError> {
        if sockets.len() > MAX_SOCKETS {
            return Err(NamespaceError::parent(TOO_MANY, Errno::E2BIG));
        }
        // An IPC namespace too: System V shared memory, semaphores and
        // message queues of processes outside are not the tool's to read,
        // change or remove.
        let mut namespaces = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC;
        // A fresh /proc for the PID namespace needs a mount namespace too.
        if layers.mounts.is_some() || layers.pid {
            namespaces |= CloneFlags::CLONE_NEWNS;
        }
        if layers.pid {
            namespaces |= CloneFlags::CLONE_NEWPID;
        }
        let sockets = sockets
            .iter()
            .map(|spec| Planned {
                proto: spec.proto,
                requested: spec.addr,
                family: match spec.addr {
                    SocketAddr::V4(_) => AddressFamily::Inet,
                    SocketAddr::V6(_) => AddressFamily::Inet6,
                },
                addr: SockaddrStorage::from(spec.addr),
            })
            .collect();
        Ok(Plan {
            uid_map: map_line(nix::unistd::geteuid().as_raw()),
            gid_map: map_line(nix::unistd::getegid().as_raw()),
            netlink: netlink::setup(),
            sockets,
            layers: layers.clone(),
            namespaces,
        })
    }

    /// The error a child's failure report names: the step, the socket it
    /// was for (by its index in the plan), the errno. `None` for an index
    /// the plan does not have.
    pub(super) fn error(
        &self,
        (step, socket, errno): (Step, Option<usize>, Errno),
    ) -> Option<NamespaceError> {
        let socket = match socket {
            None => None,
            Some(i) => {
                let planned = self.sockets.get(i)?;
                Some((planned.proto, planned.requested))
            }
        };
        Some(NamespaceError {
            step: step.name(),
            errno,
            socket,
            layer: step.layer(),
        })
    }
}
