//! Rows from a guarded tool nested inside a strict invocation. Its audit
//! log is read-only in there, as everything outside the tool's places is,
//! so the nested shim sends its rows to the enclosing gate instead, over
//! the proxy listener it already chains through: `POST cli-guard:rows`,
//! with the proxy credential, then one row per line, from a process that
//! runs cli-guard (`who`; a script's own program is refused). The
//! enclosing gate appends a row only of an invocation nested under its
//! own (a `start` row naming it, or one already relayed, as parent), read
//! strictly and written back as cli-guard writes a row, under a cap in
//! rows' size and in bytes: nothing can be written under the enclosing
//! invocation's ID or another's, and a flood cannot rotate the log's
//! history away. A line that brings a hash-chain link of its own is
//! refused: this gate's log links the rows it appends.

use std::collections::HashSet;
use std::sync::Mutex;

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
const MAX_ROW: usize = 64 * 1024;
/// Bytes relayed per invocation, all nested invocations together: a
/// flood cannot rotate the log's history away (it rotates at 32 MiB).
const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Nested invocations whose rows are relayed, at most.
const MAX_NESTED: usize = 4096;

/// What has been relayed so far: the nested invocations (by audit ID) and
/// the bytes, for the caps.
#[derive(Debug, Default)]
pub(crate) struct Relayed(Mutex<Lineage>);

#[derive(Debug, Default)]
struct Lineage {
    nested: HashSet<String>,
    bytes: usize,
}

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
            gate.count_unrecorded();
        }
    }
}

/// Appends `line` if it is a row of an invocation nested under `own`: a
/// `start` row whose parent is `own` or an invocation already relayed, or
/// any other row of one, bringing no chain link of its own. Written back as
/// cli-guard writes a row (this gate's log links it); past the caps, or
/// anything else, dropped and counted in the end row's
/// `suppressed`.
fn append(gate: &Gate, own: &str, line: &[u8]) {
    let row = match line.len() <= MAX_ROW && audit::link_of(line).is_none() {
        true => audit::relayed_row(line.strip_suffix(b"\n").unwrap_or(line)),
        false => None,
    };
    let accepted = row.filter(|row| {
        let mut lineage = gate.relayed.0.lock().unwrap_or_else(|p| p.into_inner());
        let known = match &row.starts_under {
            Some(Some(parent)) if row.audit_id != own => {
                let under = parent == own || lineage.nested.contains(parent);
                if under && lineage.nested.len() < MAX_NESTED {
                    lineage.nested.insert(row.audit_id.clone());
                }
                under && lineage.nested.contains(&row.audit_id)
            }
            Some(_) => false,
            None => lineage.nested.contains(&row.audit_id),
        };
        if !known || lineage.bytes + row.line.len() > MAX_BYTES {
            return false;
        }
        lineage.bytes += row.line.len();
        true
    });
    match accepted {
        Some(row) => gate.audit.append_line(&row.line),
        None => gate.count_unrecorded(),
    }
}
