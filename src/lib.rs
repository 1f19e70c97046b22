//! cli-guard: an argv[0]-dispatched shim that runs each command-line tool
//! behind a CONNECT-only egress gate of its own.

mod audit;
mod cli;
mod credential;
mod env;
mod exit;
mod gate;
mod policy;
mod shim;
mod sys;

pub use cli::dispatch;
pub use credential::base64;
pub use exit::{die_by, Exit, Failure, GATE_FAILED};
pub use gate::http::parse_head;
pub use gate::judge::{judge, Judged};
pub use gate::refusal::Refusal;
pub use gate::relay::IDLE_PIPES;
pub use gate::{bind_loopback, connection_cap_for};
pub use policy::authority::{parse_authority, Host};
pub use policy::{Decision, Rule, TOOLS};
