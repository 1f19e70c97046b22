//! The Linux-only primitives behind one boundary.

pub mod pipe;
pub mod spawn;
