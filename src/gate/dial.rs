//! Where an allowed target is dialled: directly (with `CLI_GUARD_RESOLVE`
//! overrides, one DNS lookup and an address check) or through an upstream
//! proxy, all under one timeout.
//!
//! `CLI_GUARD_RESOLVE="host:port=ip:port[|ip:port…],…"` (like curl's
//! `--resolve`) is read once at start. It is a test seam: its targets must
//! be loopback, or the gate is not put in place. It changes only *where* an
//! allowed name is dialled, never the decision, and it applies only at the
//! hop that dials directly: through an upstream, the name is sent as asked.
//!
//! In enforce mode an allowed name is resolved once and every address is
//! checked (the policy's [`AddressCheck`]) before the dial; the addresses
//! dialled are ones that were checked, so a rebinding DNS gets no second
//! lookup to exploit.
//!
//! The checked addresses (a target's, or the upstream proxy's) are dialled
//! as Happy Eyeballs does (RFC 8305): families interleaved ([`eyeballs_order`]),
//! a new attempt every [`ATTEMPT_DELAY`] or as soon as the previous one
//! fails, the first to connect wins and the rest are closed
//! ([`connect_first`]). A black-holed first address costs 250 ms, not the
//! whole [`DIAL_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tokio::task::JoinSet;

use crate::env::RESOLVE_VAR;
use crate::gate::upstream::{NoProxy, Upstream};
use crate::policy::authority::{parse_authority, Authority, Host};
use crate::policy::AddressCheck;

/// How long a dial (lookup, connect, and an upstream's answer) may take
/// before the answer is 504.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// RFC 8305's Connection Attempt Delay: how long an attempt runs alone
/// before the next address is tried alongside it.
pub(super) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Largest response head accepted from an upstream proxy.
const MAX_UPSTREAM_HEAD: usize = 16 * 1024;

/// Dial overrides: normalised (host, port) → loopback addresses, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolve(HashMap<(String, u16), Vec<SocketAddr>>);

impl Resolve {
    /// Parses `host:port=ip:port[|ip:port…][,…]`. Host names are normalised
    /// as a CONNECT target would be, so `Registry.npmjs.org.:443` overrides
    /// the same target as `registry.npmjs.org:443`. Several addresses for
    /// one target are dialled like a DNS answer's, in the order given.
    ///
    /// Only loopback targets (127.0.0.0/8, `::1`, IPv4-mapped loopback) are
    /// accepted: the overrides skip the address check, and a seam for tests
    /// without internet must not be a way to point an allowed name at cloud
    /// metadata or the LAN.
    pub(crate) fn parse(spec: &str) -> Result<Resolve, String> {
        let mut map = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (from, to) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected host:port=ip:port"))?;
            let from = parse_authority(from).map_err(|e| format!("{entry:?}: {e}"))?;
            let to = to
                .split('|')
                .map(|one| parse_loopback(entry, one.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            map.insert((from.host_string(), from.port), to);
        }
        Ok(Resolve(map))
    }

    /// The override for a target, if any.
    pub(crate) fn get(&self, target: &Authority) -> Option<&[SocketAddr]> {
        self.0
            .get(&(target.host_string(), target.port))
            .map(Vec::as_slice)
    }
}

/// One `CLI_GUARD_RESOLVE` target: an `ip:port` on loopback.
fn parse_loopback(entry: &str, to: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = to
        .parse()
        .map_err(|_| format!("{entry:?}: {to:?} is not an ip:port address"))?;
    if !addr.ip().to_canonical().is_loopback() {
        return Err(format!(
            "{entry:?}: {} is not a loopback address; {RESOLVE_VAR} is a test seam that may only point at \
             loopback (127.0.0.0/8, ::1)",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// Everything that decides how a target is reached.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialer {
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
pub(crate) struct Dialled {
    pub stream: TcpStream,
    /// Bytes the upstream sent behind its `200`: the tunnel's first bytes.
    pub early_down: Vec<u8>,
    /// How it was reached, for the audit row.
    pub route: String,
}

/// Why a dial failed; maps to the status the child gets.
#[derive(Debug)]
pub(crate) enum DialError {
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
    pub(crate) fn status(&self) -> u16 {
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
    pub(crate) fn via_upstream(&self, target: &Authority) -> Option<&Upstream> {
        self.upstream.as_ref().filter(|_| !self.no_proxy.bypasses(target))
    }

    /// Dials `target` by its route, under [`DIAL_TIMEOUT`].
    pub(crate) async fn dial(&self, target: &Authority, check: AddressCheck) -> Result<Dialled, DialError> {
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
            (Some(addrs), _) => (addrs.to_vec(), AddressCheck::OVERRIDE),
            (None, Host::Ip(ip)) => (vec![SocketAddr::new(*ip, target.port)], check),
            (None, Host::Name(name)) => {
                let found = tokio::net::lookup_host((name.as_str(), target.port))
                    .await
                    .map_err(|e| DialError::Failed(format!("cannot resolve {name}: {e}")))?;
                (found.collect::<Vec<_>>(), check)
            }
        };
        let usable = self.screen(target, addrs, check)?;
        let (stream, addr) = connect_first(usable).await.map_err(DialError::Failed)?;
        Ok(Dialled {
            stream,
            early_down: Vec::new(),
            route: format!("direct to {addr}"),
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
        let (mut stream, addr) = connect_first(addrs)
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
                route: via_route(upstream, addr),
            });
        }
        Err(DialError::Upstream {
            status: if (400..600).contains(&status) { status } else { 502 },
            reason: format!("the upstream proxy {upstream} answered {status} {phrase}"),
        })
    }
}

/// The route of a tunnel through `upstream`, reached at `addr`: the
/// upstream as configured, and the address when the configured host was a
/// name (an IP would only be repeated).
fn via_route(upstream: &Upstream, addr: SocketAddr) -> String {
    match upstream.proxy.host {
        Host::Ip(_) => format!("through the upstream proxy {upstream}"),
        Host::Name(_) => format!("through the upstream proxy {upstream} at {addr}"),
    }
}

/// The order in which addresses are tried (RFC 8305 §4): families
/// interleaved, starting with the family of the first address, each
/// family's addresses in the order they came. Pure.
pub(super) fn eyeballs_order(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let lead_v6 = first.is_ipv6();
    let (lead, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == lead_v6);
    let mut order = Vec::with_capacity(addrs.len());
    let (mut lead, mut other) = (lead.into_iter(), other.into_iter());
    loop {
        match (lead.next(), other.next()) {
            (None, None) => return order,
            (a, b) => order.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to the first of `addrs` that answers, racing them as Happy
/// Eyeballs does: in [`eyeballs_order`], the next attempt starting
/// [`ATTEMPT_DELAY`] after the previous one or at once when it fails. The
/// first connection wins; the other attempts are aborted and their sockets
/// closed when this returns (or when the caller gives up on it). Returns
/// the connection and the address it reached.
pub(super) async fn connect_first(addrs: Vec<SocketAddr>) -> Result<(TcpStream, SocketAddr), String> {
    let mut pending = eyeballs_order(addrs).into_iter().peekable();
    let mut attempts = JoinSet::new();
    let mut failures: Vec<String> = Vec::new();
    loop {
        if let Some(addr) = pending.next() {
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
        if attempts.is_empty() {
            return Err(if failures.is_empty() {
                "no address to connect to".to_string()
            } else {
                format!("connect to {}", failures.join("; "))
            });
        }
        // Wait for an attempt to end or, with addresses left, for the delay;
        // either way (but a success) the next address starts now.
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok((addr, Ok(stream)))) => return Ok((stream, addr)),
                Some(Ok((addr, Err(e)))) => failures.push(format!("{addr}: {e}")),
                Some(Err(e)) => failures.push(format!("an attempt failed: {e}")),
                None => {}
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if pending.peek().is_some() => {}
        }
    }
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
        assert_eq!(r.get(&npm), Some(&addrs(&["127.0.0.1:8443"])[..]));
        let pypi = parse_authority("pypi.org:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.get(&pypi), Some(&addrs(&["[::1]:9000"])[..]));
        let other = parse_authority("pypi.org:80").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.get(&other), None);
    }

    #[test]
    fn one_target_may_have_several_addresses_in_order() {
        let r =
            Resolve::parse("a.test:443=127.0.0.2:1|[::1]:2 | 127.0.0.1:3").unwrap_or_else(|e| panic!("{e}"));
        let a = parse_authority("a.test:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.get(&a).map(<[SocketAddr]>::to_vec),
            Some(addrs(&["127.0.0.2:1", "[::1]:2", "127.0.0.1:3"]))
        );
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in ["127.0.0.1:1", "127.200.3.4:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(Resolve::parse(&format!("a.test:443={ok}")).is_ok(), "{ok}");
        }
        for bad in [
            "169.254.169.254:80",
            "10.0.0.1:443",
            "0.0.0.0:443",
            "[::]:443",
            "[::ffff:169.254.169.254]:80",
            "[::127.0.0.1]:443",
            "203.0.113.80:443",
        ] {
            let spec = format!("registry.npmjs.org:443=127.0.0.1:1|{bad}");
            let e = Resolve::parse(&spec).err().unwrap_or_default();
            assert!(e.contains(&spec), "names the entry: {e}");
            assert!(
                e.contains("not a loopback address") && e.contains("CLI_GUARD_RESOLVE is a test seam"),
                "says why: {e}"
            );
        }
    }

    #[test]
    fn eyeballs_order_interleaves_families_starting_with_the_first() {
        assert_eq!(
            eyeballs_order(addrs(&[
                "[::1]:1",
                "[::2]:1",
                "[::3]:1",
                "10.0.0.1:1",
                "10.0.0.2:1"
            ])),
            addrs(&["[::1]:1", "10.0.0.1:1", "[::2]:1", "10.0.0.2:1", "[::3]:1"])
        );
        assert_eq!(
            eyeballs_order(addrs(&["10.0.0.1:1", "10.0.0.2:1", "[::1]:1", "[::2]:1"])),
            addrs(&["10.0.0.1:1", "[::1]:1", "10.0.0.2:1", "[::2]:1"])
        );
        assert_eq!(
            eyeballs_order(addrs(&["10.0.0.1:1", "[::1]:1", "[::2]:1", "[::3]:1"])),
            addrs(&["10.0.0.1:1", "[::1]:1", "[::2]:1", "[::3]:1"])
        );
    }

    #[test]
    fn eyeballs_order_keeps_one_family_and_empty_lists_as_they_are() {
        let one = addrs(&["10.0.0.2:1", "10.0.0.1:1", "10.0.0.3:1"]);
        assert_eq!(eyeballs_order(one.clone()), one);
        assert_eq!(eyeballs_order(Vec::new()), Vec::<SocketAddr>::new());
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn connect_first_skips_a_refused_address_and_names_the_one_it_reached() {
        runtime().block_on(async {
            let live = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let live_addr = live.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            let dead_addr = dead.local_addr().unwrap_or_else(|e| panic!("{e}"));
            drop(dead);
            let (_, reached) = connect_first(vec![dead_addr, live_addr])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(reached, live_addr);
        });
    }

    #[test]
    fn connect_first_names_every_address_when_all_fail() {
        runtime().block_on(async {
            let mut dead = Vec::new();
            for _ in 0..2 {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
                dead.push(l.local_addr().unwrap_or_else(|e| panic!("{e}")));
            }
            // Both listeners are closed here: every connect is refused.
            let e = connect_first(dead.clone()).await.err().unwrap_or_default();
            for addr in &dead {
                assert!(e.contains(&addr.to_string()), "{e}");
            }
            let none = connect_first(Vec::new()).await.err().unwrap_or_default();
            assert_eq!(none, "no address to connect to");
        });
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
        assert!(Resolve::parse("a.com:443=127.0.0.1").is_err());
        assert!(Resolve::parse("a.com:443=127.0.0.1:1|").is_err());
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
        assert!(
            dialer
                .screen(&t, addrs(&["127.0.0.1:9"]), AddressCheck::OVERRIDE)
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
