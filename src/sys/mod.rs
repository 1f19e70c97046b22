//! The Linux-only primitives behind one boundary.

pub mod spawn;
