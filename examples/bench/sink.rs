//! The sink: the loopback "upstream" every tunnel ends at.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::PROC_LIMIT;

thread_local! {
    /// One read buffer for every connection of the sink's thread: tasks run
    /// one at a time there, so 10,000 idle connections cost no buffers.
    static SINK_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// Accepts on 127.0.0.1, reads and discards until EOF, then closes. Runs on
/// a thread (and a runtime) of its own. With `report`, each connection's
/// byte count and EOF time are sent on `reports`.
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    pub(crate) reports: mpsc::Receiver<(u64, Instant)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub(crate) fn start(report: bool) -> Result<Sink> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (report_tx, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(sink_loop(addr_tx, stop_rx, report.then_some(report_tx)));
            })
            .context("cannot start the sink thread")?;
        let mut sink = Sink {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reports,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        sink.addr = addr_rx
            .recv_timeout(PROC_LIMIT)
            .context("the sink did not start")?
            .context("the sink cannot listen")?;
        Ok(sink)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn sink_loop(
    addr_tx: mpsc::Sender<io::Result<SocketAddr>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    report: Option<mpsc::Sender<(u64, Instant)>>,
) {
    let bound = tokio::net::TcpSocket::new_v4().and_then(|socket| {
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.listen(4096)
    });
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    if addr_tx.send(listener.local_addr()).is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(drain(stream, report.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

async fn drain(stream: tokio::net::TcpStream, report: Option<mpsc::Sender<(u64, Instant)>>) {
    let mut total = 0u64;
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let read = SINK_BUF.with(|buf| stream.try_read(&mut buf.borrow_mut()[..]));
        match read {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    if let Some(report) = report {
        let _ = report.send((total, Instant::now()));
    }
}
