//! The Linux-only primitives, behind one boundary so that a port to another
//! system has one place to fill: the pipes the relay splices through, the
//! signalfd the shim reads signals from, the vfork-style spawn that
//! arms the death signal before exec, and strict mode's spawn into a user
//! and network namespace of the tool's own (with the rtnetlink bytes it
//! sends), what the process reads of itself in /proc before it
//! runs a tool (`procfs`), for saying which process made a connection,
//! the kernel's answer to whose socket it is (`sock_diag`) and what /proc
//! says of the invocation's processes (`process`), the audit log's lock
//! (`flock`) and what a collector's TCP has acknowledged (`tcp`).
//!
//! The one module allowed `unsafe` (the crate denies it elsewhere); every
//! block says why it is sound in a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub(crate) mod asyncfd;
pub(crate) mod flock;
pub(crate) mod mounts;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod pipe;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod seccomp;
pub(crate) mod signal;
pub(crate) mod sock_diag;
pub(crate) mod spawn;
pub(crate) mod tcp;
