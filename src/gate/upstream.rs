//! Chaining to an upstream proxy, and the credentials on both sides of it.
//!
//! When the shim's own environment already names a proxy (an outer
//! cli-guard, because a guarded tool ran another one, or a corporate proxy),
//! the gate dials through it with CONNECT instead of dialling directly: so a
//! nested gate can never escape the outer one's allowlist (the effective
//! policy is the intersection). The user's original NO_PROXY, which the
//! child no longer sees, decides which targets skip the upstream.
//!
//! Pure: parsing the URL and NO_PROXY. Basic credentials are
//! `crate::credential`'s; the dial itself is in `dial`.

use std::fmt;
use std::net::IpAddr;

use crate::credential::basic_authorization;
use crate::env::Env;
use crate::policy::authority::{parse_authority, parse_host, parse_port, Authority, Host};

/// An upstream HTTP proxy the gate dials through.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub proxy: Authority,
    /// `Basic …`, from the URL's userinfo. Never logged.
    pub authorization: Option<String>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("proxy", &self.proxy)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Display for Upstream {
    /// The proxy without its credentials: safe for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.proxy)
    }
}

/// Parses a proxy URL: `[http://][user[:pass]@]host[:port][/]`. Only plain
/// HTTP proxies can carry a CONNECT here; an `https://` or SOCKS proxy is an
/// error (the gate would rather not run than silently go around it).
pub(super) fn parse_proxy_url(url: &str) -> Result<Upstream, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "a {scheme}:// proxy is not supported: cli-guard chains only through http:// proxies"
            ))
        }
        None => url,
    };
    // Userinfo first, at the last `@`: a password may hold `/`, `?` or
    // `#` unencoded, and cutting at those first would split it.
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    let hostport = after.split(['/', '?', '#']).next().unwrap_or_default();
    let proxy = if hostport.starts_with('[') || hostport.contains(':') {
        parse_authority(hostport)
    } else {
        parse_host(hostport).map(|host| Authority { host, port: 80 })
    }
    .map_err(|e| match userinfo {
        // Never quote any part of a URL that holds credentials.
        Some(_) => format!("bad proxy address (not shown: the URL holds credentials): {e}"),
        None => format!("bad proxy address {hostport:?}: {e}"),
    })?;
    let authorization = match userinfo {
        Some(userinfo) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode(user).ok_or("bad percent-encoding in the proxy user name")?;
            let pass = percent_decode(pass).ok_or("bad percent-encoding in the proxy password")?;
            Some(basic_authorization(&user, &pass))
        }
        None => None,
    };
    Ok(Upstream { proxy, authorization })
}

/// The upstream named by the environment, if any.
pub(super) fn from_env(env: &Env) -> Result<Option<Upstream>, String> {
    match env.upstream_proxy() {
        Some((var, url)) => parse_proxy_url(url)
            .map(Some)
            .map_err(|e| format!("{var}: {e}; the gate cannot chain through this proxy")),
        None => Ok(None),
    }
}

/// The upstream proxy the environment names, as an address and its
/// `Proxy-Authorization`, when it is an IP literal with credentials: what
/// a nested strict invocation's enclosing gate looks like from inside.
pub(crate) fn upstream_of(env: &Env) -> Option<(std::net::SocketAddr, String)> {
    let upstream = from_env(env).ok()??;
    let crate::policy::authority::Host::Ip(ip) = upstream.proxy.host else {
        return None;
    };
    Some((
        std::net::SocketAddr::new(ip, upstream.proxy.port),
        upstream.authorization?,
    ))
}

/// Decodes `%XX` escapes; `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The user's NO_PROXY: which targets skip the upstream proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy(Vec<Bypass>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    /// `*`: every target.
    All,
    /// A name and its subdomains (`example.com`, `.example.com`,
    /// `*.example.com` all mean this), optionally on one port.
    Name { name: String, port: Option<u16> },
    /// An address or a CIDR block; matches IP-literal targets only.
    Net {
        ip: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// Parses a comma-separated NO_PROXY. Entries that make no sense are
    /// skipped, as clients do.
    pub(crate) fn parse(list: &str) -> NoProxy {
        NoProxy(list.split(',').filter_map(|e| parse_bypass(e.trim())).collect())
    }

    /// Whether `target` should be dialled directly rather than through the
    /// upstream proxy.
    pub(crate) fn bypasses(&self, target: &Authority) -> bool {
        self.0.iter().any(|entry| match (entry, &target.host) {
            (Bypass::All, _) => true,
            (Bypass::Name { name, port }, Host::Name(host)) => {
                port.is_none_or(|p| p == target.port)
                    && (host == name || host.strip_suffix(name.as_str()).is_some_and(|h| h.ends_with('.')))
            }
            (Bypass::Net { ip, prefix, port }, Host::Ip(host)) => {
                port.is_none_or(|p| p == target.port) && in_prefix(*host, *ip, *prefix)
            }
            _ => false,
        })
    }
}

fn parse_bypass(entry: &str) -> Option<Bypass> {
    if entry.is_empty() {
        return None;
    }
    if entry == "*" {
        return Some(Bypass::All);
    }
    if let Some((ip, prefix)) = entry.split_once('/') {
        let ip: IpAddr = ip.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max)?;
        return Some(Bypass::Net {
            ip,
            prefix,
            port: None,
        });
    }
    if let Ok(ip) = entry
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Some(Bypass::Net {
            ip,
            prefix,
            port: None,
        });
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(parse_port(port).ok()?)),
        _ => (entry, None),
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        let ip: IpAddr = bracketed.strip_suffix(']')?.parse().ok()?;
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Some(Bypass::Net { ip, prefix, port });
    }
    let bare = host.trim_start_matches("*.").trim_start_matches('.');
    match parse_host(bare).ok()? {
        Host::Name(name) => Some(Bypass::Name { name, port }),
        Host::Ip(ip) => Some(Bypass::Net {
            ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
            port,
        }),
    }
}

fn in_prefix(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Authority {
        parse_authority(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn proxy_url_with_credentials() {
        let u = parse_proxy_url("http://us%40er:p%3Ass@proxy.corp.example:3128/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.proxy, target("proxy.corp.example:3128"));
        assert_eq!(
            u.authorization.as_deref(),
            Some(basic_authorization(b"us@er", b"p:ss").as_str())
        );
        assert_eq!(u.to_string(), "http://proxy.corp.example:3128");
        assert!(!format!("{u:?}").contains("Basic"), "Debug must redact");
    }

    #[test]
    fn proxy_url_forms() {
        assert_eq!(
            parse_proxy_url("127.0.0.1:8080").map(|u| u.proxy),
            Ok(target("127.0.0.1:8080"))
        );
        assert_eq!(parse_proxy_url("http://proxy").map(|u| u.proxy.port), Ok(80));
        assert_eq!(
            parse_proxy_url("HTTP://[::1]:3128").map(|u| u.proxy),
            Ok(target("[::1]:3128"))
        );
        assert!(parse_proxy_url("https://proxy:443").is_err());
        assert!(parse_proxy_url("socks5://proxy:1080").is_err());
        assert!(parse_proxy_url("http://u:%zz@proxy:1").is_err());
        assert!(parse_proxy_url("http://").is_err());
    }

    #[test]
    fn a_password_with_url_delimiters_is_never_quoted() {
        let u = parse_proxy_url("http://alice:s3cr#t/pw@proxy.corp:3128").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.proxy, target("proxy.corp:3128"));
        assert_eq!(
            u.authorization.as_deref(),
            Some(basic_authorization(b"alice", b"s3cr#t/pw").as_str())
        );
        let e = parse_proxy_url("http://alice:s3cret@bad..host:1")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("s3cret") && !e.contains("alice"), "{e}");
    }

    #[test]
    fn env_order_prefers_lowercase_https() {
        let env = Env::from_pairs([
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]);
        assert_eq!(
            from_env(&env).map(|u| u.map(|u| u.proxy)),
            Ok(Some(target("lower:2")))
        );
        assert_eq!(from_env(&Env::default()), Ok(None));
        assert!(from_env(&Env::from_pairs([("ALL_PROXY", "socks5://x:1")])).is_err());
    }

    #[test]
    fn no_proxy_semantics() {
        let np = NoProxy::parse(
            " example.com, .internal.corp ,*.svc.local, 10.0.0.0/8, 192.168.1.7, [::1], host.one:8443 ",
        );
        assert!(np.bypasses(&target("example.com:443")));
        assert!(np.bypasses(&target("a.example.com:443")));
        assert!(!np.bypasses(&target("badexample.com:443")));
        assert!(np.bypasses(&target("x.internal.corp:443")));
        assert!(np.bypasses(&target("internal.corp:443")));
        assert!(np.bypasses(&target("a.svc.local:443")));
        assert!(np.bypasses(&target("10.2.3.4:443")));
        assert!(!np.bypasses(&target("11.2.3.4:443")));
        assert!(np.bypasses(&target("192.168.1.7:443")));
        assert!(np.bypasses(&target("[::1]:443")));
        assert!(np.bypasses(&target("host.one:8443")));
        assert!(!np.bypasses(&target("host.one:443")));
        assert!(!np.bypasses(&target("registry.npmjs.org:443")));
        assert!(NoProxy::parse("*").bypasses(&target("anything.example:1")));
        assert!(!NoProxy::parse("").bypasses(&target("anything.example:1")));
        assert!(NoProxy::parse("fd00::/8").bypasses(&target("[fd12::1]:443")));
    }
}
