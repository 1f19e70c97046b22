//! The audit log: its schema (`record`), the append-only writer (`log`),
//! the hash chain its rows carry (`chain`), what of argv may be logged
//! (`redact`), and `cli-guard audit`, which reads it back (`fold`,
//! `render`, `suggest`, `show`, `tail`) and checks its chain (`verify`).

mod chain;
mod fold;
mod log;
mod record;
mod redact;
mod render;
mod show;
mod suggest;
mod tail;
mod verify;

pub(crate) use chain::link_of;
pub(crate) use fold::{parse_since, Filter};
pub(crate) use log::{files_oldest_first, lock_path, log_path, open_append, open_lock, AuditLog, RelayTo};
pub(crate) use record::{
    head_of, new_audit_id, relayed_row, rfc3339_millis, Egress, EgressClose, End, Package, Process, Record,
    RowHead, Start,
};
pub(crate) use redact::redact_argv;
pub(crate) use show::{show, ShowOptions};
pub(crate) use verify::verify;
