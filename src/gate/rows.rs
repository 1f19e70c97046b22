//! Rows from a guarded tool nested inside a strict invocation. Its audit
//! log is read-only in there, as everything outside the tool's places is,
//! so the nested shim sends its rows to the enclosing gate instead, over
//! the proxy listener it already chains through: `POST cli-guard:rows`,
//! with the proxy credential, then one row per line. The enclosing gate
//! appends each line that reads back as a row of another invocation than
//! its own (linking it into its log's chain; a line that brings a link of
//! its own is refused), and nothing else: a process in the namespace can add rows this
//! way (as it could write the log itself before strict mode had a
//! read-only log), never change or remove one, nor write under the
//! enclosing invocation's audit ID.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

use crate::audit;
use crate::gate::shutdown::Shutdown;
use crate::gate::Gate;

/// The pseudo-target a nested shim sends its rows to.
pub(crate) const ROWS_TARGET: &str = "cli-guard:rows";
/// The method it sends them with.
pub(crate) const ROWS_METHOD: &str = "POST";
/// The longest row accepted; a longer line is dropped.
const MAX_ROW: usize = 256 * 1024;
/// Rows relayed per invocation, all nested invocations together; past
/// this they are dropped, so a flood cannot grow the log without bound.
const MAX_ROWS: u64 = 100_000;

/// Rows relayed so far, for [`MAX_ROWS`].
#[derive(Debug, Default)]
pub(crate) struct Relayed(AtomicU64);

/// Appends the rows `client` sends after its head (`early`: what came with
/// it) until it closes or the gate is forced closed.
pub(super) async fn relay(gate: &Gate, client: TcpStream, early: &[u8], mut shutdown: Shutdown) {
    let own = gate.audit.audit_id().to_string();
    let mut pending = early.to_vec();
    let mut reader = BufReader::new(client);
    loop {
        // Whole lines only: what came with the head first.
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            append(gate, &own, &line);
        }
        let mut chunk = Vec::new();
        let read = tokio::select! {
            read = reader.read_until(b'\n', &mut chunk) => read,
            _ = shutdown.forced() => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => pending.extend_from_slice(&chunk),
        }
        if pending.len() > MAX_ROW && !pending.contains(&b'\n') {
            // A line past the bound: drop it to its end.
            pending.clear();
        }
    }
}

/// Appends `line` if it is a row of another invocation than `own`, and
/// carries no link of its own (this gate's log links it: a link from in
/// there would claim a place in the chain).
fn append(gate: &Gate, own: &str, line: &[u8]) {
    if line.len() > MAX_ROW || audit::link_of(line).is_some() {
        return;
    }
    let Some(audit_id) = audit::audit_id_of(line.strip_suffix(b"\n").unwrap_or(line)) else {
        return;
    };
    if audit_id == own || gate.relayed.0.fetch_add(1, Ordering::Relaxed) >= MAX_ROWS {
        return;
    }
    gate.audit.append_line(line);
}
