//! How the gate stops: one small value handed to every task, as
//! mini-redis does. The shim says [`Shutdown::stop`] when the tool has
//! exited: every accept loop and every DNS or QUIC socket stops at once
//! ([`Shutdown::stopping`]), while tunnels already open get the grace
//! (`listener::GRACE`) to finish; then the listener says
//! [`Shutdown::force`], and what is still open ends
//! ([`Shutdown::forced`]) with its `egress_close` row written.

use std::sync::Arc;

use tokio::sync::watch;

/// Where the gate is in stopping. Only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// No new connections, queries or datagrams; open tunnels go on.
    Stopping,
    /// Open tunnels end now.
    Forced,
}

/// A handle on the gate's stop, cloned into every task.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    tx: Arc<watch::Sender<Phase>>,
    rx: watch::Receiver<Phase>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A gate that is running.
    pub(crate) fn new() -> Shutdown {
        let (tx, rx) = watch::channel(Phase::Running);
        Shutdown { tx: Arc::new(tx), rx }
    }

    /// Stops taking new work.
    pub(crate) fn stop(&self) {
        self.advance(Phase::Stopping);
    }

    /// Ends what is still open.
    pub(crate) fn force(&self) {
        self.advance(Phase::Forced);
    }

    fn advance(&self, to: Phase) {
        self.tx.send_if_modified(|phase| {
            let later = to > *phase;
            if later {
                *phase = to;
            }
            later
        });
    }

    /// Resolves once the gate is stopping (or forced).
    pub(crate) async fn stopping(&mut self) {
        self.reached(Phase::Stopping).await;
    }

    /// Resolves once open connections must end.
    pub(crate) async fn forced(&mut self) {
        self.reached(Phase::Forced).await;
    }

    async fn reached(&mut self, phase: Phase) {
        // The sender lives as long as any handle, this one included: the
        // wait ends only by reaching the phase.
        let _ = self.rx.wait_for(|now| *now >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward_and_every_handle_sees_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            let shutdown = Shutdown::new();
            let mut task = shutdown.clone();
            shutdown.force();
            // A later stop does not take the force back.
            shutdown.stop();
            task.stopping().await;
            task.forced().await;
            assert_eq!(*shutdown.rx.borrow(), Phase::Forced);
        });
    }
}
