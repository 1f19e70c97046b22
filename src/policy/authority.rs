//! Parsing and normalising a CONNECT authority (`host:port`, `[v6]:port`).
//!
//! Pure functions, no I/O: the proxy, the policy matcher and the fuzzers all
//! reach them directly. The rules are strict on purpose: anything that is not
//! a plain DNS name or an IP literal is rejected (and answered 400), because
//! every leniency here is a way to make a suffix match say yes to the wrong
//! host (percent-encoded zone ids, userinfo, `127.1`-style numeric names).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS name we accept, in bytes, without the trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// The host part of a normalised authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: ASCII lowercase, no trailing dot, every label non-empty.
    Name(String),
    /// An IPv4 or IPv6 literal. Never matches a name pattern.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A validated, normalised `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: Host,
    pub port: u16,
}

impl Host {
    /// As it is written in logs: names as-is, IPv6 without brackets.
    pub fn logged(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl Authority {
    /// The host as it is written in logs: names as-is, IPv6 without brackets.
    pub fn host_string(&self) -> String {
        self.host.logged()
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why an authority was rejected. Each variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityError {
    Empty,
    Userinfo,
    MissingPort,
    BadPort,
    BadIpv6,
    UnbracketedIpv6,
    BadChar(char),
    EmptyLabel,
    LabelTooLong,
    NameTooLong,
    BadHyphen,
    NumericName,
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorityError::Empty => f.write_str("empty target"),
            AuthorityError::Userinfo => f.write_str("userinfo (`@`) is not allowed in a CONNECT target"),
            AuthorityError::MissingPort => f.write_str("the target has no port (expected host:port)"),
            AuthorityError::BadPort => f.write_str("the port is not a number from 1 to 65535"),
            AuthorityError::BadIpv6 => {
                f.write_str("not a valid bracketed IPv6 literal (zone ids are refused)")
            }
            AuthorityError::UnbracketedIpv6 => {
                f.write_str("an IPv6 literal must be in brackets: [addr]:port")
            }
            AuthorityError::BadChar(c) => write!(f, "character {c:?} is not allowed in a host name"),
            AuthorityError::EmptyLabel => f.write_str("the host name has an empty label"),
            AuthorityError::LabelTooLong => f.write_str("a label of the host name is longer than 63 bytes"),
            AuthorityError::NameTooLong => f.write_str("the host name is longer than 253 bytes"),
            AuthorityError::BadHyphen => f.write_str("a label of the host name starts or ends with `-`"),
            AuthorityError::NumericName => {
                f.write_str("a numeric host that is not a dotted-quad IPv4 address (ambiguous)")
            }
        }
    }
}

impl std::error::Error for AuthorityError {}

/// Parses a CONNECT request target in authority form (RFC 9110 §9.3.6).
///
/// Normalisation: ASCII lowercase and one trailing dot dropped. IPv6 literals
/// must be bracketed and carry no zone id. Names must be LDH labels (plus `_`,
/// which real DNS names carry) of sane length, and a name whose last label is
/// numeric must be a strict dotted-quad: `127.1`, `0x7f.1` and `2130706433`
/// are what resolvers turn into loopback, so they never pass as names.
pub fn parse_authority(target: &str) -> Result<Authority, AuthorityError> {
    if target.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if target.contains('@') {
        return Err(AuthorityError::Userinfo);
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(AuthorityError::BadIpv6)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| AuthorityError::BadIpv6)?;
        let port = after.strip_prefix(':').ok_or(AuthorityError::MissingPort)?;
        return Ok(Authority {
            host: Host::Ip(IpAddr::V6(ip)),
            port: parse_port(port)?,
        });
    }
    let (host, port) = target.rsplit_once(':').ok_or(AuthorityError::MissingPort)?;
    if host.contains(':') {
        return Err(AuthorityError::UnbracketedIpv6);
    }
    let port = parse_port(port)?;
    Ok(Authority {
        host: parse_host(host)?,
        port,
    })
}

/// Parses a port: 1 to 5 ASCII digits, 1..=65535. No sign, no spaces.
pub(crate) fn parse_port(s: &str) -> Result<u16, AuthorityError> {
    if s.is_empty() {
        return Err(AuthorityError::MissingPort);
    }
    if s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::BadPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(AuthorityError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// Parses and normalises a bare host (no port, no brackets).
pub(crate) fn parse_host(host: &str) -> Result<Host, AuthorityError> {
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(AuthorityError::BadChar(c));
    }
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(AuthorityError::EmptyLabel);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(AuthorityError::NameTooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(AuthorityError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AuthorityError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AuthorityError::BadHyphen);
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let numeric_last = last.bytes().all(|b| b.is_ascii_digit());
    let hex_last = last.starts_with("0x");
    if numeric_last || hex_last {
        // Only a strict dotted quad is an address; std's parser refuses
        // leading zeros (octal), fewer than four parts and out-of-range parts.
        return name
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| AuthorityError::NumericName);
    }
    Ok(Host::Name(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str, port: u16) -> Authority {
        Authority {
            host: Host::Name(s.into()),
            port,
        }
    }

    #[test]
    fn plain_name() {
        assert_eq!(
            parse_authority("registry.npmjs.org:443"),
            Ok(name("registry.npmjs.org", 443))
        );
    }

    #[test]
    fn lowercases_and_drops_one_trailing_dot() {
        assert_eq!(
            parse_authority("Registry.NPMJS.org.:443"),
            Ok(name("registry.npmjs.org", 443))
        );
    }

    #[test]
    fn two_trailing_dots_are_an_empty_label() {
        assert_eq!(
            parse_authority("example.com..:443"),
            Err(AuthorityError::EmptyLabel)
        );
    }

    #[test]
    fn empty_labels() {
        for t in [".example.com:443", "a..b:443", ".:443", ":443"] {
            assert_eq!(parse_authority(t), Err(AuthorityError::EmptyLabel), "{t}");
        }
    }

    #[test]
    fn missing_port() {
        assert_eq!(parse_authority("example.com"), Err(AuthorityError::MissingPort));
        assert_eq!(parse_authority("example.com:"), Err(AuthorityError::MissingPort));
        assert_eq!(parse_authority("[::1]"), Err(AuthorityError::MissingPort));
    }

    #[test]
    fn port_out_of_range() {
        for t in [
            "a.com:0",
            "a.com:65536",
            "a.com:99999",
            "a.com:+443",
            "a.com:443 ",
            "a.com:0443x",
            "a.com:000443",
        ] {
            assert_eq!(parse_authority(t), Err(AuthorityError::BadPort), "{t}");
        }
        assert_eq!(parse_authority("a.com:65535").map(|a| a.port), Ok(65535));
        assert_eq!(parse_authority("a.com:00443").map(|a| a.port), Ok(443));
    }

    #[test]
    fn userinfo_is_refused() {
        assert_eq!(
            parse_authority("user:pw@registry.npmjs.org:443"),
            Err(AuthorityError::Userinfo)
        );
        assert_eq!(
            parse_authority("evil.com@registry.npmjs.org:443"),
            Err(AuthorityError::Userinfo)
        );
    }

    #[test]
    fn percent_nul_and_non_ascii_are_refused() {
        assert_eq!(
            parse_authority("registry%2enpmjs.org:443"),
            Err(AuthorityError::BadChar('%'))
        );
        assert_eq!(
            parse_authority("registry.npmjs.org\0.evil:443"),
            Err(AuthorityError::BadChar('\0'))
        );
        assert_eq!(
            parse_authority("regіstry.npmjs.org:443"),
            Err(AuthorityError::BadChar('і'))
        );
        assert_eq!(parse_authority("a b.com:443"), Err(AuthorityError::BadChar(' ')));
        assert_eq!(
            parse_authority("a.com\r\n:443"),
            Err(AuthorityError::BadChar('\r'))
        );
    }

    #[test]
    fn ipv6_literals() {
        let a = parse_authority("[::1]:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.host, Host::Ip("::1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert_eq!(a.to_string(), "[::1]:443");
        assert_eq!(
            parse_authority("[fe80::1%eth0]:443"),
            Err(AuthorityError::BadIpv6)
        );
        assert_eq!(
            parse_authority("[::ffff:1.2.3.4%25x.allowed.com]:443"),
            Err(AuthorityError::BadIpv6)
        );
        assert_eq!(parse_authority("::1:443"), Err(AuthorityError::UnbracketedIpv6));
        assert_eq!(parse_authority("[::1]x:443"), Err(AuthorityError::MissingPort));
    }

    #[test]
    fn dotted_quad_is_an_ip() {
        let a = parse_authority("127.0.0.1:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.host, Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let a = parse_authority("127.0.0.1.:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.host, Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn ambiguous_numeric_hosts_are_refused() {
        for t in [
            "127.1:443",
            "2130706433:443",
            "0x7f.1:443",
            "0177.0.0.1:443",
            "1.2.3.256:443",
            "a.0x10:443",
            "foo.123:443",
        ] {
            assert_eq!(parse_authority(t), Err(AuthorityError::NumericName), "{t}");
        }
    }

    #[test]
    fn numeric_labels_inside_a_name_are_fine() {
        assert_eq!(
            parse_authority("123.example.com:443"),
            Ok(name("123.example.com", 443))
        );
    }

    #[test]
    fn label_and_name_length() {
        let long_label = "a".repeat(64);
        assert_eq!(
            parse_authority(&format!("{long_label}.com:443")),
            Err(AuthorityError::LabelTooLong)
        );
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert_eq!(
            parse_authority(&format!("{long_name}:443")),
            Err(AuthorityError::NameTooLong)
        );
    }

    #[test]
    fn hyphens_at_label_edges() {
        assert_eq!(parse_authority("-a.com:443"), Err(AuthorityError::BadHyphen));
        assert_eq!(parse_authority("a-.com:443"), Err(AuthorityError::BadHyphen));
        assert_eq!(parse_authority("a-b.com:443"), Ok(name("a-b.com", 443)));
    }
}
