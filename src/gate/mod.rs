//! The gate: a CONNECT proxy for one invocation.

pub mod dial;
pub mod http;
pub mod proxy;
pub mod relay;
pub mod upstream;
pub mod verdict;
