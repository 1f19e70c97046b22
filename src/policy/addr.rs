//! Where a dial may land: the address ranges an enforce-mode gate refuses
//! to dial even for an allowed name (a rebinding DNS answer, a registry name
//! pointed at cloud metadata or a LAN host), and the [`AddressCheck`] that
//! applies them.
//!
//! Pure. Embedded IPv4 addresses are unwrapped first (IPv4-mapped,
//! IPv4-compatible, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, and 6to4
//! `2002::/16`; Teredo `2001::/32` is refused outright), so the same
//! ranges cannot be reached through an IPv6 spelling. Documentation ranges
//! (192.0.2/24, 198.51.100/24, 203.0.113/24) are deliberately *not* refused:
//! some networks route registries through them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses a direct dial may land on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressCheck {
    /// Enforce mode: refuse the ranges in [`forbidden`]; with `private_ok`
    /// (a pinned private registry), private ranges are allowed.
    Enforce { private_ok: bool },
    /// Observe mode, or an operator's override: no range is refused (the
    /// gate still never dials its own listener).
    None,
}

impl AddressCheck {
    /// Whether a dial may land on `ip`; `Err` names the range it is in.
    pub fn permits(&self, ip: IpAddr) -> Result<(), &'static str> {
        match (self, forbidden(ip)) {
            (AddressCheck::Enforce { private_ok }, Some(why)) if !(*private_ok && is_private(ip)) => Err(why),
            _ => Ok(()),
        }
    }

    /// The check for an address pinned with `CLI_GUARD_RESOLVE`, whatever
    /// the mode: none, because the seam already accepts only loopback
    /// targets (a test registry on 127.0.0.1, which the enforce check would
    /// refuse), and it changes only where an allowed name is dialled, never
    /// whether.
    pub const OVERRIDE: AddressCheck = AddressCheck::None;
}

/// Why an address is refused, or `None` if it may be dialled.
pub(super) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some((v4, how)) => forbidden_v4(v4).map(|_| how),
            None => forbidden_v6(v6),
        },
    }
}

/// Whether `ip` is in a private range (RFC 1918, fc00::/7, CGNAT), the only
/// ranges a policy entry's pinned private-registry exception opens. Loopback,
/// link-local (cloud metadata) and the rest stay refused even then.
pub(super) fn is_private(ip: IpAddr) -> bool {
    let v4_private = |v4: Ipv4Addr| {
        let [a, b, ..] = v4.octets();
        v4.is_private() || (a == 100 && (64..128).contains(&b))
    };
    match ip {
        IpAddr::V4(v4) => v4_private(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some((v4, _)) => v4_private(v4),
            None => v6.segments()[0] & 0xfe00 == 0xfc00,
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT (100.64.0.0/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local, private (fc00::/7)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local (fec0::/10, deprecated)")
    } else if ip.segments()[..2] == [0x2001, 0] {
        // Teredo tunnels to an obfuscated IPv4 address: never a registry.
        Some("a Teredo tunnel address (2001::/32)")
    } else {
        None
    }
}

/// An IPv4 address hidden inside an IPv6 one, and how it was hidden.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some((low, "a forbidden IPv4 address inside an IPv4-mapped IPv6 address"));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some((
            low,
            "a forbidden IPv4 address inside an IPv4-compatible IPv6 address",
        ));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((
            low,
            "a forbidden IPv4 address inside a NAT64 (64:ff9b::/96) address",
        ));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some((
            low,
            "a forbidden IPv4 address inside a local-use NAT64 (64:ff9b:1::/48) address",
        ));
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return Some((v4, "a forbidden IPv4 address inside a 6to4 (2002::/16) address"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden(s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))).is_some()
    }

    #[test]
    fn refuses_the_named_v4_ranges() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.170.2",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(refused(ip), "{ip}");
        }
    }

    #[test]
    fn allows_public_and_documentation_v4() {
        for ip in [
            "104.16.0.35",
            "151.101.0.223",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
        ] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn refuses_the_named_v6_ranges() {
        for ip in [
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "fec0::1",
        ] {
            assert!(refused(ip), "{ip}");
        }
        assert!(!refused("2606:4700::6810:22"), "public v6");
    }

    #[test]
    fn refuses_v4_ranges_hidden_in_v6() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::",
            "::10.0.0.1",
        ] {
            assert!(refused(ip), "{ip}");
        }
        for ip in ["::ffff:104.16.0.35", "64:ff9b::6810:23", "2002:6810:0023::1"] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn private_ranges_for_pinned_exceptions() {
        for ip in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.0.10",
            "100.64.1.1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap_or_else(|e| panic!("{e}"))), "{ip}");
        }
        for ip in ["127.0.0.1", "169.254.169.254", "fe80::1", "104.16.0.35"] {
            assert!(!is_private(ip.parse().unwrap_or_else(|e| panic!("{e}"))), "{ip}");
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn checks_permit_by_mode_and_private_exception() {
        let strict = AddressCheck::Enforce { private_ok: false };
        let pinned = AddressCheck::Enforce { private_ok: true };
        assert_eq!(strict.permits(ip("104.16.0.35")), Ok(()));
        assert_eq!(strict.permits(ip("10.0.0.5")), Err("private"));
        assert_eq!(pinned.permits(ip("10.0.0.5")), Ok(()));
        assert_eq!(pinned.permits(ip("fd00::5")), Ok(()));
        assert!(pinned.permits(ip("127.0.0.1")).is_err());
        assert!(pinned.permits(ip("169.254.169.254")).is_err());
        assert_eq!(AddressCheck::None.permits(ip("127.0.0.1")), Ok(()));
        assert_eq!(AddressCheck::OVERRIDE.permits(ip("127.0.0.1")), Ok(()));
    }

    #[test]
    fn reason_names_the_wrapping() {
        let why = forbidden("64:ff9b::a9fe:a9fe".parse().unwrap_or_else(|e| panic!("{e}")));
        assert!(why.is_some_and(|w| w.contains("NAT64")), "{why:?}");
    }
}
