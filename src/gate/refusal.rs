//! Every way a request ends without a tunnel, as one value, and the one
//! place that records and answers it.
//!
//! A head that cannot be read (400, 408, 431), the credential in the request
//! line (400), no or a wrong credential (407, 400), the policy's refusals
//! (403, 405, 400), a failed dial (403, 502, 504, 503), an upstream's
//! refusal (its status) and overload (503) all become a [`Refusal`];
//! [`Gate::refuse`] scrubs it, writes its `egress` row, and answers it with a
//! body that says what happened and what to do next.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::gate::http;
use crate::gate::outcome::{Aim, Method, Outcome};
use crate::gate::Gate;
use crate::policy::authority::Authority;
use crate::policy::{ToolPolicy, Verdict};

/// After an error answer, how long we keep reading (and discarding) what the
/// client already sent, so that closing does not reset the connection and
/// destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_millis(500);

/// A request answered with an error status instead of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// [`Verdict::Deny`] for this gate's own refusals. [`Verdict::Allow`] for
    /// a request this gate allowed and something further on refused (the
    /// network, an upstream proxy): the answer then carries no policy text.
    pub verdict: Verdict,
    /// How the attempt came in, once there is a request line (or a
    /// direct connection) to name.
    pub method: Option<Method>,
    /// The normalised target, when there is one to name.
    pub target: Option<Authority>,
    /// Why, for the row and the answer. Scrubbed of the secret before either.
    pub reason: String,
    /// Who made the request (`who`), where the gate looked.
    pub(crate) process: Option<Box<crate::audit::Process>>,
}

impl Refusal {
    /// This gate's refusal of a request it cannot name (no method, no target).
    pub fn deny(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            verdict: Verdict::Deny,
            method: None,
            target: None,
            reason: reason.into(),
            process: None,
        }
    }

    /// This refusal, of a request `process` made.
    pub(crate) fn of(self, process: Option<Box<crate::audit::Process>>) -> Refusal {
        Refusal { process, ..self }
    }

    /// This refusal, of an attempt that came in by `method`.
    pub fn by(self, method: Method) -> Refusal {
        Refusal {
            method: Some(method),
            ..self
        }
    }

    /// The answer's body: what happened and what to do next.
    fn body(&self, policy: &ToolPolicy, audit_id: &str) -> String {
        let tool = policy.name;
        let reason = &self.reason;
        let target = self.target.as_ref().map(|t| t.to_string()).unwrap_or_default();
        match self.status {
            // A refusal from further on: only this gate's own refusals
            // carry its policy text.
            _ if self.verdict == Verdict::Allow => format!("cli-guard: {reason}. audit id {audit_id}"),
            403 => format!(
                "cli-guard: {tool} may not reach {target}: {reason}.\n\
                 This is a block by policy, not a network fault: do not retry.\n\
                 Changing the allowlist ({}) is a code change for an operator. audit id {audit_id}",
                policy.allowlist_summary()
            ),
            405 => format!(
                "cli-guard: plaintext {} to {target} refused: only CONNECT tunnels (HTTPS) pass the gate, \
                 and it never downgrades. Use an https:// URL. audit id {audit_id}",
                self.method.as_ref().map_or("request", Method::as_str)
            ),
            407 => format!(
                "cli-guard: {reason}. This proxy serves only the {tool} invocation that started it. audit id {audit_id}"
            ),
            _ => format!("cli-guard: {reason}. audit id {audit_id}"),
        }
    }

    /// The complete response: status line, headers, body.
    pub fn response(&self, policy: &ToolPolicy, audit_id: &str) -> Vec<u8> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if self.status == 405 {
            headers.push(("Allow", "CONNECT"));
        }
        // Our own 407 is a deny; an upstream's 407 passed back is this gate's
        // allow, and its challenge is not ours to make.
        if self.status == 407 && self.verdict == Verdict::Deny {
            headers.push(("Proxy-Authenticate", "Basic realm=\"cli-guard\""));
        }
        http::error_response(self.status, &headers, &self.body(policy, audit_id))
    }
}

/// How the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Read and discard what the client sent for up to [`LINGER`], so the
    /// close does not reset the answer away.
    Linger,
    /// At once: under overload, the descriptor matters more.
    AtOnce,
    /// Recorded, not answered: the client does not speak HTTP (strict
    /// mode's direct TLS or SSH connections); it sees the connection close.
    WithoutAnswer,
}

impl Gate {
    /// Records a refusal and answers it.
    pub(crate) async fn refuse(&self, mut client: TcpStream, conn: u64, refusal: Refusal, closing: Closing) {
        let refusal = Refusal {
            reason: self.settings.credential.scrub(refusal.reason),
            ..refusal
        };
        let response = refusal.response(self.policy, self.audit.audit_id());
        let Refusal {
            status,
            verdict,
            method,
            target,
            reason,
            process,
        } = refusal;
        self.record(
            conn,
            Outcome {
                method,
                aim: target.as_ref().map_or(Aim::Unknown, Aim::Endpoint),
                verdict,
                status,
                reason,
                qtype: None,
                process,
            },
        );
        if closing == Closing::WithoutAnswer {
            return;
        }
        if client.write_all(&response).await.is_err() {
            return;
        }
        let _ = client.shutdown().await;
        if closing == Closing::AtOnce {
            return;
        }
        let mut sink = [0u8; 1024];
        let until = tokio::time::Instant::now() + LINGER;
        while let Ok(Ok(n)) = timeout_at(until, client.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::parse_authority;
    use crate::policy::lookup;

    fn npm() -> &'static ToolPolicy {
        lookup("npm").unwrap_or_else(|| panic!("npm is pinned"))
    }

    fn text(refusal: &Refusal) -> String {
        String::from_utf8(refusal.response(npm(), "ID")).unwrap_or_default()
    }

    #[test]
    fn a_policy_block_says_not_to_retry() {
        let r = Refusal {
            target: parse_authority("evil.example:443").ok(),
            ..Refusal::deny(403, "not on the allowlist")
        };
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{t}");
        assert!(
            t.contains("npm may not reach evil.example:443: not on the allowlist."),
            "{t}"
        );
        assert!(t.contains("do not retry") && t.contains("audit id ID"), "{t}");
    }

    #[test]
    fn an_upstreams_407_is_passed_back_without_our_challenge() {
        let ours = text(&Refusal::deny(407, "no valid proxy credential"));
        assert!(
            ours.contains("\r\nProxy-Authenticate: Basic realm=\"cli-guard\"\r\n"),
            "{ours}"
        );
        assert!(ours.contains("serves only the npm invocation"), "{ours}");
        let theirs = text(&Refusal {
            verdict: Verdict::Allow,
            ..Refusal::deny(407, "the upstream proxy answered 407")
        });
        assert!(!theirs.contains("Proxy-Authenticate"), "{theirs}");
        assert!(
            theirs.contains("cli-guard: the upstream proxy answered 407. audit id ID"),
            "{theirs}"
        );
    }

    #[test]
    fn plaintext_gets_allow_connect() {
        let t = text(&Refusal::deny(405, "plaintext").by(Method::Plaintext("GET".into())));
        assert!(t.contains("\r\nAllow: CONNECT\r\n"), "{t}");
        assert!(t.contains("plaintext GET to  refused"), "{t}");
    }
}
