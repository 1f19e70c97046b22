//! Where an allowed target is dialled: directly (with `CLI_GUARD_RESOLVE`
//! overrides, one DNS lookup and an address check) or through an upstream
//! proxy, all under one timeout.
//!
//! `CLI_GUARD_RESOLVE="host:port=ip:port,…"` (like curl's `--resolve`) is read
//! once at start. It changes only *where* an allowed name is dialled, never
//! the decision, so it cannot widen an allowlist, and it applies only at the
//! hop that dials directly: through an upstream, the name is sent as asked.
//!
//! In enforce mode an allowed name is resolved once and every address is
//! checked (the policy's [`AddressCheck`]) before the dial; the address dialled is one
//! that was checked, so a rebinding DNS gets no second lookup to exploit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gate::upstream::{NoProxy, Upstream};
use crate::policy::authority::{parse_authority, Authority, Host};
use crate::policy::AddressCheck;

/// How long a dial (lookup, connect, and an upstream's answer) may take
/// before the answer is 504.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted from an upstream proxy.
const MAX_UPSTREAM_HEAD: usize = 16 * 1024;

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

/// Everything that decides how a target is reached.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    pub resolve: Resolve,
    pub upstream: Option<Upstream>,
    /// The user's original NO_PROXY: targets dialled directly even when
    /// there is an upstream.
    pub no_proxy: NoProxy,
    /// The gate's own listener, which is never dialled.
    pub own: Option<SocketAddr>,
}

/// An open connection to the target (or to the upstream, tunnelled to it).
#[derive(Debug)]
pub struct Dialled {
    pub stream: TcpStream,
    /// Bytes the upstream sent behind its `200`: the tunnel's first bytes.
    pub early_down: Vec<u8>,
    /// How it was reached, for the audit row.
    pub route: String,
}

/// Why a dial failed; maps to the status the child gets.
#[derive(Debug)]
pub enum DialError {
    /// 504: no answer within [`DIAL_TIMEOUT`].
    Timeout,
    /// 502: the name did not resolve, or every address refused.
    Failed(String),
    /// 403 from this gate: the name resolved only to addresses it will not
    /// dial (or to itself).
    Forbidden(String),
    /// The upstream proxy refused; the child gets its status.
    Upstream { status: u16, reason: String },
    /// 503: the gate stopped (the tool had exited) before the dial finished.
    Stopped,
}

impl DialError {
    pub fn status(&self) -> u16 {
        match self {
            DialError::Timeout => 504,
            DialError::Failed(_) => 502,
            DialError::Forbidden(_) => 403,
            DialError::Upstream { status, .. } => *status,
            DialError::Stopped => 503,
        }
    }
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Timeout => write!(f, "no answer within {} s", DIAL_TIMEOUT.as_secs()),
            DialError::Failed(why) | DialError::Forbidden(why) => f.write_str(why),
            DialError::Upstream { reason, .. } => f.write_str(reason),
            DialError::Stopped => {
                f.write_str("cli-guard stopped before the dial finished (the tool had exited)")
            }
        }
    }
}

impl Dialer {
    /// Whether `target` goes through the upstream proxy.
    pub fn via_upstream(&self, target: &Authority) -> Option<&Upstream> {
        self.upstream.as_ref().filter(|_| !self.no_proxy.bypasses(target))
    }

    /// Dials `target` by its route, under [`DIAL_TIMEOUT`].
    pub async fn dial(&self, target: &Authority, check: AddressCheck) -> Result<Dialled, DialError> {
        let attempt = async {
            match self.via_upstream(target) {
                Some(upstream) => self.through(upstream, target).await,
                None => self.direct(target, check).await,
            }
        };
        tokio::time::timeout(DIAL_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(DialError::Timeout))
    }

    /// Whether `addr` is the gate's own listener (or would reach it).
    fn is_own(&self, addr: SocketAddr) -> bool {
        self.own.is_some_and(|own| {
            let ip = addr.ip().to_canonical();
            addr.port() == own.port() && (ip == own.ip() || ip.is_unspecified())
        })
    }

    async fn direct(&self, target: &Authority, check: AddressCheck) -> Result<Dialled, DialError> {
        let (addrs, check) = match (self.resolve.get(target), &target.host) {
            (Some(addr), _) => (vec![addr], check.for_override()),
            (None, Host::Ip(ip)) => (vec![SocketAddr::new(*ip, target.port)], check),
            (None, Host::Name(name)) => {
                let found = tokio::net::lookup_host((name.as_str(), target.port))
                    .await
                    .map_err(|e| DialError::Failed(format!("cannot resolve {name}: {e}")))?;
                (found.collect::<Vec<_>>(), check)
            }
        };
        let usable = self.screen(target, addrs, check)?;
        let stream = connect_first(&usable).await.map_err(DialError::Failed)?;
        let route = match stream.peer_addr() {
            Ok(addr) => format!("direct to {addr}"),
            Err(_) => "direct".to_string(),
        };
        Ok(Dialled {
            stream,
            early_down: Vec::new(),
            route,
        })
    }

    /// The addresses a direct dial may use, in order: never the gate's own
    /// listener, and none that `check` refuses. Pure.
    fn screen(
        &self,
        target: &Authority,
        addrs: Vec<SocketAddr>,
        check: AddressCheck,
    ) -> Result<Vec<SocketAddr>, DialError> {
        let mut refused = None;
        let mut usable = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if self.is_own(addr) {
                refused.get_or_insert(format!("{target} resolves to {addr}, cli-guard's own listener"));
                continue;
            }
            if let Err(why) = check.permits(addr.ip()) {
                refused.get_or_insert(format!("{target} resolves to {}, which is {why}", addr.ip()));
                continue;
            }
            usable.push(addr);
        }
        if usable.is_empty() {
            return Err(match refused {
                Some(why) => DialError::Forbidden(why),
                None => DialError::Failed(format!("{} resolved to no address", target.host)),
            });
        }
        Ok(usable)
    }

    /// Opens a tunnel to `target` through `upstream` with CONNECT, passing
    /// its credentials on. A refusal comes back with the upstream's status.
    async fn through(&self, upstream: &Upstream, target: &Authority) -> Result<Dialled, DialError> {
        let proxy = &upstream.proxy;
        let addrs: Vec<SocketAddr> = match &proxy.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, proxy.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), proxy.port))
                .await
                .map_err(|e| DialError::Failed(format!("cannot resolve the upstream proxy {upstream}: {e}")))?
                .collect(),
        };
        if addrs.iter().any(|a| self.is_own(*a)) {
            return Err(DialError::Forbidden(format!(
                "the upstream proxy {upstream} is cli-guard's own listener"
            )));
        }
        let mut stream = connect_first(&addrs)
            .await
            .map_err(|e| DialError::Failed(format!("cannot reach the upstream proxy {upstream}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &upstream.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| DialError::Failed(format!("writing to the upstream proxy {upstream}: {e}")))?;
        let (status, phrase, rest) = read_response_head(&mut stream)
            .await
            .map_err(|e| DialError::Failed(format!("the upstream proxy {upstream}: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(Dialled {
                stream,
                early_down: rest,
                route: format!("through the upstream proxy {upstream}"),
            });
        }
        Err(DialError::Upstream {
            status: if (400..600).contains(&status) { status } else { 502 },
            reason: format!("the upstream proxy {upstream} answered {status} {phrase}"),
        })
    }
}

/// Connects to the first address that answers.
async fn connect_first(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = "no address to connect to".to_string();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Reads an HTTP response head: its status, reason phrase, and whatever
/// followed it (tunnel bytes).
async fn read_response_head(stream: &mut TcpStream) -> Result<(u16, String, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(502);
                let phrase = response.reason.unwrap_or("").escape_debug().to_string();
                return Ok((status, phrase, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_UPSTREAM_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("response head too large".to_string()),
            Err(e) => return Err(format!("malformed response: {e}")),
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed the connection without an answer".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
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

    #[test]
    fn own_listener_is_recognised_in_every_spelling() {
        let dialer = Dialer {
            own: Some("127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}"))),
            ..Dialer::default()
        };
        for addr in [
            "127.0.0.1:4000",
            "0.0.0.0:4000",
            "[::ffff:127.0.0.1]:4000",
            "[::]:4000",
        ] {
            assert!(
                dialer.is_own(addr.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{addr}"
            );
        }
        for addr in ["127.0.0.1:4001", "10.0.0.1:4000"] {
            assert!(
                !dialer.is_own(addr.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{addr}"
            );
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
            .collect()
    }

    #[test]
    fn screening_drops_forbidden_addresses_and_keeps_checked_ones() {
        let dialer = Dialer::default();
        let t = parse_authority("registry.npmjs.org:443").unwrap_or_else(|e| panic!("{e}"));
        let strict = AddressCheck::Enforce { private_ok: false };
        let mixed = addrs(&[
            "127.0.0.1:443",
            "203.0.113.80:443",
            "[::ffff:169.254.169.254]:443",
        ]);
        let kept = dialer.screen(&t, mixed, strict).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            kept,
            addrs(&["203.0.113.80:443"]),
            "a rebinding answer keeps only the safe address"
        );
        match dialer.screen(&t, addrs(&["10.0.0.5:443"]), strict) {
            Err(DialError::Forbidden(why)) => {
                assert!(why.contains("10.0.0.5") && why.contains("private"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pinned_private_registry_may_resolve_to_private_ranges_only() {
        let dialer = Dialer::default();
        let t = parse_authority("npm.corp.example:443").unwrap_or_else(|e| panic!("{e}"));
        let pinned = AddressCheck::Enforce { private_ok: true };
        let kept = dialer.screen(&t, addrs(&["10.0.0.5:443", "[fd00::5]:443"]), pinned);
        assert_eq!(kept.ok(), Some(addrs(&["10.0.0.5:443", "[fd00::5]:443"])));
        for still_refused in ["127.0.0.1:443", "169.254.169.254:443", "[fe80::1]:443"] {
            let r = dialer.screen(&t, addrs(&[still_refused]), pinned);
            assert!(
                matches!(r, Err(DialError::Forbidden(_))),
                "{still_refused}: {r:?}"
            );
        }
    }

    #[test]
    fn overrides_and_observe_mode_are_not_range_checked_but_never_reach_the_gate() {
        let dialer = Dialer {
            own: Some("127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}"))),
            ..Dialer::default()
        };
        let t = parse_authority("registry.npmjs.org:443").unwrap_or_else(|e| panic!("{e}"));
        let strict = AddressCheck::Enforce { private_ok: false };
        assert!(
            dialer
                .screen(&t, addrs(&["127.0.0.1:9"]), strict.for_override())
                .is_ok(),
            "an override is unchecked"
        );
        assert!(
            dialer
                .screen(&t, addrs(&["10.0.0.1:443"]), AddressCheck::None)
                .is_ok(),
            "observe"
        );
        for own in ["127.0.0.1:4000", "0.0.0.0:4000"] {
            let r = dialer.screen(&t, addrs(&[own]), AddressCheck::None);
            assert!(
                matches!(r, Err(DialError::Forbidden(ref why)) if why.contains("own listener")),
                "{own}: {r:?}"
            );
        }
    }

    #[test]
    fn no_proxy_decides_the_route() {
        let upstream = crate::gate::upstream::parse_proxy_url("http://proxy.corp:3128").ok();
        let dialer = Dialer {
            upstream,
            no_proxy: NoProxy::parse("internal.corp,10.0.0.0/8"),
            ..Dialer::default()
        };
        let t = |s: &str| parse_authority(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(dialer.via_upstream(&t("registry.npmjs.org:443")).is_some());
        assert!(dialer.via_upstream(&t("pkgs.internal.corp:443")).is_none());
        assert!(dialer.via_upstream(&t("10.1.1.1:443")).is_none());
    }
}
