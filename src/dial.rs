//! Where an allowed target is dialled: `CLI_GUARD_RESOLVE` overrides, then
//! DNS, then a TCP connect, all under one timeout.
//!
//! `CLI_GUARD_RESOLVE="host:port=ip:port,…"` (like curl's `--resolve`) is read
//! once at start. It changes only *where* an allowed name is dialled, never
//! the decision, so it cannot widen an allowlist.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::authority::{parse_authority, Authority};

/// How long a dial (lookup and connect) may take before the answer is 504.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Dial overrides: normalised (host, port) → address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolve(HashMap<(String, u16), SocketAddr>);

impl Resolve {
    /// Parses `host:port=ip:port[,…]`. Host names are normalised as a CONNECT
    /// target would be, so `Registry.npmjs.org.:443` overrides the same
    /// target as `registry.npmjs.org:443`.
    pub fn parse(spec: &str) -> Result<Resolve, String> {
        let mut map = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (from, to) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected host:port=ip:port"))?;
            let from = parse_authority(from).map_err(|e| format!("{entry:?}: {e}"))?;
            let to: SocketAddr = to
                .parse()
                .map_err(|_| format!("{entry:?}: {to:?} is not an ip:port address"))?;
            map.insert((from.host_string(), from.port), to);
        }
        Ok(Resolve(map))
    }

    /// The override for a target, if any.
    pub fn get(&self, target: &Authority) -> Option<SocketAddr> {
        self.0.get(&(target.host_string(), target.port)).copied()
    }
}

/// Why a dial failed; maps to the status the child gets.
#[derive(Debug)]
pub enum DialError {
    /// 504: no answer within [`DIAL_TIMEOUT`].
    Timeout,
    /// 502: the name did not resolve, or every address refused.
    Failed(String),
}

impl DialError {
    pub fn status(&self) -> u16 {
        match self {
            DialError::Timeout => 504,
            DialError::Failed(_) => 502,
        }
    }
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Timeout => write!(f, "no answer within {} s", DIAL_TIMEOUT.as_secs()),
            DialError::Failed(why) => f.write_str(why),
        }
    }
}

/// Dials `target`, trying each resolved address in order.
pub async fn dial(target: &Authority, resolve: &Resolve) -> Result<TcpStream, DialError> {
    match tokio::time::timeout(DIAL_TIMEOUT, dial_inner(target, resolve)).await {
        Ok(result) => result,
        Err(_) => Err(DialError::Timeout),
    }
}

async fn dial_inner(target: &Authority, resolve: &Resolve) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match resolve.get(target) {
        Some(addr) => vec![addr],
        None => tokio::net::lookup_host((target.host_string(), target.port))
            .await
            .map_err(|e| DialError::Failed(format!("cannot resolve {}: {e}", target.host)))?
            .collect(),
    };
    let mut last = format!("{} resolved to no address", target.host);
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(DialError::Failed(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let r = Resolve::parse("Registry.NPMJS.org.:443=127.0.0.1:8443, pypi.org:443=[::1]:9000,")
            .unwrap_or_else(|e| panic!("{e}"));
        let npm = parse_authority("registry.npmjs.org:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.get(&npm),
            Some("127.0.0.1:8443".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        let pypi = parse_authority("pypi.org:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.get(&pypi),
            Some("[::1]:9000".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        let other = parse_authority("pypi.org:80").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.get(&other), None);
    }

    #[test]
    fn empty_spec_is_empty() {
        assert_eq!(Resolve::parse(""), Ok(Resolve::default()));
    }

    #[test]
    fn bad_entries_say_which() {
        let e = Resolve::parse("a.com:443").err().unwrap_or_default();
        assert!(e.contains("a.com:443"), "{e}");
        assert!(Resolve::parse("a.com=1.2.3.4:1").is_err());
        assert!(Resolve::parse("a.com:443=example.com:1").is_err());
        assert!(Resolve::parse("a.com:443=1.2.3.4").is_err());
    }
}
