//! Strict mode for one invocation: whether it is isolated, what its network
//! namespace holds, and what the start row says about it. Pure; the
//! namespace itself is `sys::netns`, and the gate's side of it is
//! `gate::transparent` and `gate::resolver`.
//!
//! An enforce-mode invocation that fetches, installs or builds runs in a
//! user and network namespace of its own whose only ways out are sockets
//! the gate holds: the proxy's listener at a fixed address (every port is
//! free in a new namespace, so the child's proxy URL is known before it
//! starts), DNS on port 53 of every address, and listeners on every port
//! the allowlist names, on 80 (answered 405) and on the usual escape ports
//! (refused, with a row). Any other port is refused by the kernel at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use crate::env::STRICT_LAYERS_VAR;
use crate::gate::Sockets;
use crate::policy::{InvocationPolicy, Mode, ToolPolicy, HTTP_PORT};
use crate::sys::netns::{Layer, NamespaceError, SocketSpec};

/// The proxy's listener inside the namespace: the child's `HTTPS_PROXY`.
pub(super) const PROXY_IN_NAMESPACE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3128);
/// DNS, on every address of the namespace.
pub(super) const DNS_PORT: u16 = 53;
/// Ports a payload tries when 443 is watched (ssh, DNS over TLS, the
/// alternative HTTP ports, git's own protocol): listened on so that an
/// attempt is a row, not a silent ECONNREFUSED.
pub(super) const WATCHED_PORTS: [u16; 5] = [22, 853, 8080, 8443, 9418];
/// QUIC: UDP on 443 is refused with a row (clients fall back to TCP).
pub(super) const QUIC_PORT: u16 = 443;

/// `CLI_GUARD_STRICT`: whether strict mode is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    /// The default: isolate where the kernel allows, else run behind the
    /// plain proxy and say so.
    Auto,
    /// Isolate or do not run the tool (exit 125).
    Require,
    /// Never isolate (recorded as such).
    Off,
}

impl Setting {
    /// Reads `CLI_GUARD_STRICT`'s value (unset or empty: [`Setting::Auto`]).
    pub(crate) fn parse(value: Option<&str>) -> Result<Setting, String> {
        match value.map(str::trim) {
            None | Some("" | "auto") => Ok(Setting::Auto),
            Some("require") => Ok(Setting::Require),
            Some("off") => Ok(Setting::Off),
            Some(other) => Err(format!(
                "CLI_GUARD_STRICT={other:?} is not a setting: use auto (the default), require or off"
            )),
        }
    }
}

/// The layers `CLI_GUARD_STRICT_LAYERS` asks for: every layer when unset
/// or empty, none for `none`, else the comma-separated names.
pub(crate) fn wanted_layers(value: Option<&str>) -> Result<Vec<Layer>, String> {
    let value = value.map(str::trim).unwrap_or("");
    match value {
        "" => return Ok(Layer::ALL.to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    value
        .split(',')
        .map(str::trim)
        .map(|name| {
            Layer::ALL.into_iter().find(|layer| layer.name() == name).ok_or_else(|| {
                format!(
                    "{STRICT_LAYERS_VAR}={value:?}: {name:?} is not a layer: use mounts, pid, seccomp, a list of \
                     them, or none"
                )
            })
        })
        .collect()
}

/// Where an invocation's tool runs, as the start row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Isolation {
    /// In a network namespace whose only way out is the gate: its own, or
    /// the enclosing invocation's.
    Netns,
    /// Behind the plain proxy, and why.
    None { reason: String },
}

impl Isolation {
    /// The start row's `isolation`.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Isolation::Netns => "netns",
            Isolation::None { .. } => "none",
        }
    }

    /// The start row's `isolation_reason`.
    pub(super) fn reason(&self) -> Option<&str> {
        match self {
            Isolation::Netns => None,
            Isolation::None { reason } => Some(reason),
        }
    }
}

/// What to try for an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Make the namespace.
    Isolate,
    /// Run behind the plain proxy.
    Plain(Isolation),
}

/// Whether to isolate: only a strict invocation (enforce mode, fetching or
/// building), and not when `CLI_GUARD_STRICT=off`.
pub(super) fn attempt(split: &InvocationPolicy, setting: Setting) -> Attempt {
    if !split.strict {
        let why = match (split.mode, &split.subcommand) {
            (Mode::Observe, Some(sub)) if split.policy.mode == Mode::Observe => {
                format!("{} {sub}: {}", split.policy.name, split.why)
            }
            (_, Some(sub)) => format!("`{} {sub}` {}", split.policy.name, split.why),
            (_, None) => format!("{}: {}", split.policy.name, split.why),
        };
        return Attempt::Plain(Isolation::None { reason: why });
    }
    match setting {
        Setting::Off => Attempt::Plain(Isolation::None {
            reason: "CLI_GUARD_STRICT=off: the plain proxy only".to_string(),
        }),
        Setting::Auto | Setting::Require => Attempt::Isolate,
    }
}

/// When the namespace could not be made: what the start row says, or the
/// failure if strict mode is required. `inside` says that this invocation
/// already runs in an enclosing invocation's namespace.
pub(super) fn fallback(error: &NamespaceError, setting: Setting, inside: bool) -> Result<Isolation, String> {
    if setting == Setting::Require && !inside {
        return Err(format!(
            "strict mode is required (CLI_GUARD_STRICT=require) but the kernel refused the namespace: {error}; \
             `cli-guard doctor` says why and how to fix it"
        ));
    }
    Ok(match inside {
        // The enclosing namespace still holds: its gate is this one's only
        // way out.
        true => Isolation::Netns,
        false => Isolation::None {
            reason: format!("the kernel refused the namespace: {error}"),
        },
    })
}

/// The one stderr line when strict mode falls back to the plain proxy.
pub(super) fn fallback_warning(tool: &str, error: &NamespaceError) -> String {
    format!(
        "cli-guard: strict mode is not available here ({error}); {tool} runs behind the proxy only, so a \
         client that ignores HTTPS_PROXY is not stopped. `cli-guard doctor` says why and how to fix it."
    )
}

/// What each socket of the namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The proxy's listener, at [`PROXY_IN_NAMESPACE`].
    Proxy,
    /// A listener for connections that ignore the proxy.
    Transparent,
    /// The resolver, over TCP.
    DnsTcp,
    /// The resolver, over UDP.
    DnsUdp,
    /// UDP 443, refused with a row.
    Quic,
    /// The lookup socket for who made a connection (`who`).
    SockDiag,
}

/// The sockets a strict invocation's namespace holds, each with what it is
/// for: what `sys::netns` is asked to make, and how [`Layout::sockets`]
/// hands what it made to the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    wanted: Vec<(Role, SocketSpec)>,
}

impl Layout {
    /// The sockets to ask the namespace for, in order.
    pub(super) fn specs(&self) -> Vec<SocketSpec> {
        self.wanted.iter().map(|&(_, spec)| spec).collect()
    }

    /// The sockets the namespace made (one per [`Layout::specs`], in the
    /// same order), sorted out for the gate by what each is for.
    pub(super) fn sockets(&self, made: Vec<OwnedFd>) -> Result<Sockets, String> {
        if made.len() != self.wanted.len() {
            return Err(format!(
                "strict mode: the namespace made {} sockets, {} were asked for",
                made.len(),
                self.wanted.len()
            ));
        }
        let (mut proxy, mut sock_diag) = (None, None);
        let (mut transparent, mut dns_tcp, mut dns_udp, mut quic) = (vec![], vec![], vec![], vec![]);
        for (&(role, _), fd) in self.wanted.iter().zip(made) {
            match role {
                Role::Proxy => proxy = Some(fd.into()),
                Role::Transparent => transparent.push(fd.into()),
                Role::DnsTcp => dns_tcp.push(fd.into()),
                Role::DnsUdp => dns_udp.push(fd.into()),
                Role::Quic => quic.push(fd.into()),
                Role::SockDiag => sock_diag = Some(fd),
            }
        }
        Ok(Sockets {
            proxy: proxy.ok_or("strict mode: the namespace's proxy listener is missing")?,
            transparent,
            dns_tcp,
            dns_udp,
            quic,
            unix: None,
            sock_diag,
        })
    }
}

/// The ports that get a transparent listener: 443, every port the
/// allowlist names, 80, and the watched escape ports. Sorted, once each.
pub(super) fn transparent_ports(policy: &ToolPolicy) -> Vec<u16> {
    let mut ports: Vec<u16> = std::iter::once(443)
        .chain(policy.allow.iter().flat_map(|rule| rule.ports.iter().copied()))
        .chain([HTTP_PORT])
        .chain(WATCHED_PORTS)
        .filter(|&p| p != DNS_PORT && p != PROXY_IN_NAMESPACE.port() && p != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Every address of both families, on `port`.
fn both(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    ]
}

/// The namespace's sockets for `policy`. Pure.
pub(super) fn layout(policy: &ToolPolicy) -> Layout {
    let tcp = |role| move |addr| (role, SocketSpec::tcp(addr));
    let udp = |role| move |addr| (role, SocketSpec::udp(addr));
    let wanted = std::iter::once((Role::Proxy, SocketSpec::tcp(PROXY_IN_NAMESPACE)))
        .chain(
            transparent_ports(policy)
                .into_iter()
                .flat_map(both)
                .map(tcp(Role::Transparent)),
        )
        .chain(both(DNS_PORT).map(tcp(Role::DnsTcp)))
        .chain(both(DNS_PORT).map(udp(Role::DnsUdp)))
        .chain(both(QUIC_PORT).map(udp(Role::Quic)))
        .chain(std::iter::once((Role::SockDiag, SocketSpec::sock_diag())))
        .collect();
    Layout { wanted }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::policy::{invocation_policy, lookup};
    use crate::sys::netns::Proto;

    fn split(tool: &str, args: &[&str]) -> InvocationPolicy {
        let policy = lookup(tool).unwrap_or_else(|| panic!("{tool} is pinned"));
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        invocation_policy(policy, &args, &|| None)
    }

    #[test]
    fn the_layers_asked_for_are_all_by_default_and_junk_is_refused() {
        assert_eq!(wanted_layers(None), Ok(Layer::ALL.to_vec()));
        assert_eq!(wanted_layers(Some("none")), Ok(Vec::new()));
        assert_eq!(
            wanted_layers(Some("pid, seccomp")),
            Ok(vec![Layer::Pid, Layer::Seccomp])
        );
        let err = wanted_layers(Some("mounts,landlock")).unwrap_err();
        assert!(err.contains("\"landlock\" is not a layer"), "{err}");
    }

    #[test]
    fn the_setting_defaults_to_auto_and_refuses_junk() {
        assert_eq!(Setting::parse(None), Ok(Setting::Auto));
        assert_eq!(Setting::parse(Some("")), Ok(Setting::Auto));
        assert_eq!(Setting::parse(Some("require")), Ok(Setting::Require));
        assert_eq!(Setting::parse(Some("off")), Ok(Setting::Off));
        let err = Setting::parse(Some("yes")).unwrap_err();
        assert!(
            err.contains("auto") && err.contains("require") && err.contains("off"),
            "{err}"
        );
    }

    #[test]
    fn only_fetching_enforce_mode_invocations_are_isolated() {
        assert_eq!(
            attempt(&split("npm", &["install"]), Setting::Auto),
            Attempt::Isolate
        );
        assert_eq!(attempt(&split("npm", &[]), Setting::Require), Attempt::Isolate);
        let Attempt::Plain(Isolation::None { reason }) = attempt(&split("npm", &["test"]), Setting::Auto)
        else {
            panic!("npm test is not isolated");
        };
        assert!(
            reason.contains("npm test") && reason.contains("project's own code"),
            "{reason}"
        );
        let Attempt::Plain(Isolation::None { reason }) =
            attempt(&split("aws", &["s3", "ls"]), Setting::Require)
        else {
            panic!("observe-mode tools are never isolated");
        };
        assert!(reason.contains("observe-mode"), "{reason}");
        let Attempt::Plain(Isolation::None { reason }) = attempt(&split("pip", &["install"]), Setting::Off)
        else {
            panic!("off means off");
        };
        assert!(reason.contains("CLI_GUARD_STRICT=off"), "{reason}");
    }

    #[test]
    fn a_refused_namespace_falls_back_unless_required() {
        let error = NamespaceError {
            step: "unshare(CLONE_NEWUSER|CLONE_NEWNET)",
            errno: nix::errno::Errno::ENOSPC,
            socket: None,
            layer: None,
        };
        let none = fallback(&error, Setting::Auto, false).unwrap();
        assert_eq!(none.label(), "none");
        assert!(none.reason().is_some_and(|r| r.contains("ENOSPC")), "{none:?}");
        let fatal = fallback(&error, Setting::Require, false).unwrap_err();
        assert!(
            fatal.contains("CLI_GUARD_STRICT=require") && fatal.contains("doctor"),
            "{fatal}"
        );
        // Inside an enclosing namespace, the outer gate still holds.
        assert_eq!(fallback(&error, Setting::Require, true), Ok(Isolation::Netns));
        assert!(fallback_warning("npm", &error).contains("doctor"));
    }

    #[test]
    fn the_namespace_listens_where_the_policy_and_the_escapes_need() {
        let npm = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        assert_eq!(transparent_ports(npm), vec![22, 80, 443, 853, 8080, 8443, 9418]);
        let layout = layout(npm);
        let of = |wanted: Role| -> Vec<SocketSpec> {
            layout
                .wanted
                .iter()
                .filter(|(role, _)| *role == wanted)
                .map(|&(_, spec)| spec)
                .collect()
        };
        assert_eq!(of(Role::Proxy), [SocketSpec::tcp(PROXY_IN_NAMESPACE)]);
        let transparent = of(Role::Transparent);
        assert_eq!(transparent.len(), 14, "each port on both families");
        assert!(transparent
            .iter()
            .any(|s| s.addr.port() == 443 && s.addr.is_ipv6()));
        assert!(of(Role::DnsTcp)
            .iter()
            .all(|s| s.addr.port() == 53 && s.proto == Proto::Tcp));
        assert!(of(Role::DnsUdp)
            .iter()
            .all(|s| s.addr.port() == 53 && s.proto == Proto::Udp));
        assert!(of(Role::Quic)
            .iter()
            .all(|s| s.addr.port() == 443 && s.proto == Proto::Udp));
        assert!(layout.specs().len() <= crate::sys::netns::MAX_SOCKETS);
    }

    #[test]
    fn the_sockets_made_reach_the_gate_by_what_each_is_for() {
        let npm = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        let layout = layout(npm);
        // Stand-ins on the host's loopback, one per socket asked for, each
        // told apart by its port.
        let made: Vec<(SocketSpec, OwnedFd, u16)> = layout
            .specs()
            .into_iter()
            .map(|spec| {
                let (fd, port): (OwnedFd, u16) = match spec.proto {
                    Proto::Tcp => {
                        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
                        let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
                        (l.into(), port)
                    }
                    Proto::Udp => {
                        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
                        let port = u.local_addr().map(|a| a.port()).unwrap_or_default();
                        (u.into(), port)
                    }
                    Proto::SockDiag => (
                        crate::sys::sock_diag::open_socket().unwrap_or_else(|e| panic!("{e}")),
                        0,
                    ),
                };
                (spec, fd, port)
            })
            .collect();
        let ports: Vec<(SocketSpec, u16)> = made.iter().map(|(spec, _, port)| (*spec, *port)).collect();
        let sockets = layout
            .sockets(made.into_iter().map(|(_, fd, _)| fd).collect())
            .unwrap_or_else(|e| panic!("{e}"));
        let port_of = |spec: SocketSpec| ports.iter().filter(move |(s, _)| *s == spec).map(|(_, p)| *p);
        let tcp_ports = |list: &[std::net::TcpListener]| -> Vec<u16> {
            list.iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.port())
                .collect()
        };
        let udp_ports = |list: &[std::net::UdpSocket]| -> Vec<u16> {
            list.iter()
                .filter_map(|u| u.local_addr().ok())
                .map(|a| a.port())
                .collect()
        };
        let expected = |role: Role| -> Vec<u16> {
            layout
                .wanted
                .iter()
                .filter(|(r, _)| *r == role)
                .flat_map(|&(_, spec)| port_of(spec))
                .collect()
        };
        assert_eq!(
            tcp_ports(std::slice::from_ref(&sockets.proxy)),
            expected(Role::Proxy)
        );
        assert_eq!(tcp_ports(&sockets.transparent), expected(Role::Transparent));
        assert_eq!(tcp_ports(&sockets.dns_tcp), expected(Role::DnsTcp));
        assert_eq!(udp_ports(&sockets.dns_udp), expected(Role::DnsUdp));
        assert_eq!(udp_ports(&sockets.quic), expected(Role::Quic));
        assert!(sockets.sock_diag.is_some(), "the lookup socket is the gate's");
        assert!(layout.sockets(Vec::new()).is_err(), "a count that does not match");
    }
}
