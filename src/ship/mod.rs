//! Shipping the record off the machine: every row the log gets is also
//! sent to a syslog collector as it is written (`shipper`), as RFC 5424
//! over TCP with octet counting, or over TLS (`syslog`, `tls`), waiting in
//! a spool beside the log while the collector is away (`spool`), as the
//! configuration says (`config`: the operator's file, else
//! `CLI_GUARD_SHIP`). Nothing here runs, and no TLS is loaded, unless
//! shipping is configured.

pub(crate) mod config;
mod shipper;
mod spool;
pub(crate) mod syslog;
mod tls;

pub(crate) use config::{load, ShipConfig, SYSTEM_FILE};
pub(crate) use shipper::{drain, Drained, Shipping, Waiter, BOUND};
pub(crate) use spool::path_of as spool_path;
