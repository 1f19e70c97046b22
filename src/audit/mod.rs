//! The audit log: its schema (`record`), the append-only writer (`log`),
//! and `cli-guard audit`, which reads it back (`fold`, `render`, `suggest`,
//! `show`, `tail`).

pub mod fold;
mod log;
pub mod record;
pub mod render;
pub mod show;
pub mod suggest;
mod tail;

pub use log::{files_oldest_first, log_path, AuditLog};
pub use record::{new_audit_id, rfc3339_millis, Egress, EgressClose, End, Record, Start};
