//! The audit log: its schema (`record`), the append-only writer (`log`),
//! what of argv may be logged (`redact`),
//! and `cli-guard audit`, which reads it back (`fold`, `render`, `suggest`,
//! `show`, `tail`).

mod fold;
mod log;
mod record;
mod redact;
mod render;
mod show;
mod suggest;
mod tail;

pub(crate) use fold::{parse_since, Filter};
pub(crate) use log::{files_oldest_first, log_path, AuditLog, RelayTo};
pub(crate) use record::{
    new_audit_id, relayed_row, rfc3339_millis, Egress, EgressClose, End, Package, Process, Record, Start,
};
pub(crate) use redact::redact_argv;
pub(crate) use show::{show, ShowOptions};
