//! What the gate decided about one attempt, and the one place that turns
//! it into an `egress` row ([`Gate::record`]): a CONNECT, refused
//! plaintext, strict mode's direct connections, QUIC and DNS queries all
//! come here, are counted (`tally`, which may cap them) and written.

use std::fmt;

use crate::audit::{self, Record};
use crate::gate::Gate;
use crate::policy::authority::{Authority, Host};
use crate::policy::Verdict;

/// How an attempt reached the gate: the row's `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// A CONNECT request to the proxy.
    Connect,
    /// Any other request to the proxy (refused 405): its method as sent,
    /// a token httparse has checked.
    Plaintext(String),
    /// Strict mode: a TCP connection that ignored the proxy.
    Transparent,
    /// Strict mode: a UDP datagram to port 443.
    Quic,
    /// Strict mode: a DNS query to the namespace's resolver.
    Dns,
    /// Strict mode: a unix socket the tool tried to make.
    Unix,
}

impl Method {
    /// The method of a request line as sent.
    pub fn of_request(method: &str) -> Method {
        match method {
            "CONNECT" => Method::Connect,
            other => Method::Plaintext(other.to_string()),
        }
    }

    /// As the row writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Connect => "CONNECT",
            Method::Plaintext(method) => method,
            Method::Transparent => "transparent",
            Method::Quic => "quic",
            Method::Dns => "dns",
            Method::Unix => "unix",
        }
    }

    /// Whether the attempt ignored the proxy (strict mode refused it where
    /// it did not go through the gate as asked).
    pub fn is_direct(&self) -> bool {
        matches!(
            self,
            Method::Transparent | Method::Quic | Method::Dns | Method::Unix
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an attempt was aimed at, as far as the gate could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aim<'a> {
    /// Nothing to name: no request line, or a target that did not parse.
    Unknown,
    /// A host and port.
    Endpoint(&'a Authority),
    /// A host without a port: the name a DNS query asked for.
    Name(&'a Host),
    /// A unix socket (no path: `socket()` names none).
    UnixSocket,
}

impl Aim<'_> {
    /// As a refusal is listed for the summary: `host:port`, or the name.
    pub(crate) fn shown(&self) -> Option<String> {
        match self {
            Aim::Unknown => None,
            Aim::Endpoint(target) => Some(target.to_string()),
            Aim::Name(host) => Some(host.logged()),
            Aim::UnixSocket => Some("a unix socket".to_string()),
        }
    }
}

/// One `egress` row's worth of what became of an attempt.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    /// `None` before there was a request line to name one.
    pub method: Option<Method>,
    pub aim: Aim<'a>,
    pub verdict: Verdict,
    pub status: u16,
    pub reason: String,
    /// A DNS query's type (`A`, `AAAA`, `TYPE65`), on DNS rows only.
    pub qtype: Option<String>,
    /// Who made the attempt (`who`), where the gate looked.
    pub process: Option<Box<audit::Process>>,
}

impl Gate {
    /// Counts one outcome and writes its `egress` row, unless it is past
    /// its row cap (a stranger's refusal, a DNS query or a refused direct
    /// connection past theirs: counted in the `end` row instead). `conn` is
    /// the connection's number; 0 for what opens no tunnel (DNS, QUIC).
    pub(crate) fn record(&self, conn: u64, outcome: Outcome<'_>) {
        if !self.tally.count(&outcome) {
            return;
        }
        let (host, port) = match outcome.aim {
            Aim::Unknown => (None, None),
            Aim::Endpoint(target) => (Some(target.host.logged()), Some(target.port)),
            Aim::Name(host) => (Some(host.logged()), None),
            Aim::UnixSocket => (None, None),
        };
        self.audit.write(&Record::Egress(audit::Egress {
            conn,
            tool: self.policy.name.to_string(),
            mode: Some(self.policy.mode),
            method: outcome.method.map(|m| m.as_str().to_string()),
            host,
            port,
            decision: Some(outcome.verdict),
            status: outcome.status,
            reason: outcome.reason,
            qtype: outcome.qtype,
            process: outcome.process,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_written_as_before() {
        assert_eq!(Method::of_request("CONNECT"), Method::Connect);
        assert_eq!(Method::of_request("GET").as_str(), "GET");
        // Methods are case-sensitive: a lowercase connect is not CONNECT.
        assert_eq!(Method::of_request("connect").as_str(), "connect");
        assert!(!Method::of_request("connect").is_direct());
        let direct: Vec<&str> = [Method::Transparent, Method::Quic, Method::Dns, Method::Unix]
            .iter()
            .filter(|m| m.is_direct())
            .map(Method::as_str)
            .collect();
        assert_eq!(direct, ["transparent", "quic", "dns", "unix"]);
    }
}
