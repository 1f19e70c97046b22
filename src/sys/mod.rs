//! The Linux-only primitives, behind one boundary so that a port to another
//! system has one place to fill: the pipes the relay splices through, the
//! signalfd the shim reads signals from, and the vfork-style spawn that
//! arms the death signal before exec.

pub mod pipe;
pub mod signal;
pub mod spawn;
