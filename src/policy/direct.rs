//! Strict mode's rules for what reaches the gate without a CONNECT: a name
//! asked over DNS ([`ToolPolicy::decide_name`]) and a connection that
//! ignored the proxy ([`ToolPolicy::decide_direct`]). Pure, like the rest
//! of `policy`: the gate maps the address a connection landed on back to
//! the name it was given for (`gate::Pool`), and asks here.

use crate::policy::authority::{Authority, Host};
use crate::policy::{Acting, Decision, Mode, ToolPolicy};

/// Plaintext HTTP, answered 405 on every path (the proxy's and strict
/// mode's direct one alike): cli-guard carries only TLS.
pub(crate) const HTTP_PORT: u16 = 80;

/// A direct connection strict mode refuses: the row's status, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectRefusal {
    pub status: u16,
    pub reason: String,
}

impl ToolPolicy {
    /// Whether a DNS name is one the tool may reach: allowed on any port of
    /// the rule that names it (a DNS query names no port; the connection
    /// that follows is judged on its own port). In observe mode, every name.
    pub fn decide_name(&self, host: &Host) -> Decision {
        self.decide_name_as(&Acting::Tool, host)
    }

    /// [`ToolPolicy::decide_name`] for a query `acting` made: package code
    /// gets the names of its entries' rules.
    pub(crate) fn decide_name_as(&self, acting: &Acting<'_>, host: &Host) -> Decision {
        if self.mode == Mode::Observe {
            return Decision::Observed;
        }
        let entries = self.package_entries(acting);
        let rules: Vec<&crate::policy::Rule> = match acting {
            Acting::Tool => self.allow.iter().collect(),
            _ => entries.iter().flat_map(|e| e.allow.iter()).collect(),
        };
        rules
            .iter()
            .flat_map(|rule| rule.ports.iter())
            .map(|&port| {
                self.decide_as(
                    acting,
                    &Authority {
                        host: host.clone(),
                        port,
                    },
                )
            })
            .find(Decision::is_allow)
            .unwrap_or(match acting {
                Acting::Tool => Decision::NotAllowed,
                _ => Decision::PackageCode,
            })
    }

    /// Decides a connection that ignored the proxy. `target` is what it
    /// dialled, its address already mapped back to a name where the
    /// invocation looked one up (a [`Host::Name`]); a bare address
    /// ([`Host::Ip`]) is one it never asked for by name. Port 80 is
    /// refused 405 whatever the address, as the proxy answers plaintext; a
    /// bare address 403; a name as [`ToolPolicy::decide`] says.
    pub fn decide_direct(&self, target: &Authority) -> Result<Decision, DirectRefusal> {
        self.decide_direct_as(&Acting::Tool, target)
    }

    /// [`ToolPolicy::decide_direct`] for a connection `acting` made.
    pub(crate) fn decide_direct_as(
        &self,
        acting: &Acting<'_>,
        target: &Authority,
    ) -> Result<Decision, DirectRefusal> {
        if target.port == HTTP_PORT {
            return Err(DirectRefusal {
                status: 405,
                reason: format!(
                    "plaintext HTTP to {target}, directly, ignoring the proxy: refused; cli-guard carries only \
                     TLS and never downgrades"
                ),
            });
        }
        if let Host::Ip(_) = target.host {
            return Err(DirectRefusal {
                status: 403,
                reason: format!(
                    "a direct connection to {target}, ignoring the proxy: not an address this invocation \
                     looked up by name, so strict mode refused it"
                ),
            });
        }
        match self.decide_as(acting, target) {
            refused @ (Decision::NotAllowed | Decision::PackageCode) => Err(DirectRefusal {
                status: 403,
                reason: format!(
                    "a direct connection to {target}, ignoring the proxy: {}; strict mode refused it",
                    refused.reason(self)
                ),
            }),
            allowed => Ok(allowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::policy::{lookup, Rule};

    fn npm() -> &'static ToolPolicy {
        lookup("npm").unwrap_or_else(|| panic!("npm is pinned"))
    }

    fn named(name: &str, port: u16) -> Authority {
        Authority {
            host: Host::Name(name.into()),
            port,
        }
    }

    #[test]
    fn a_name_is_allowed_on_any_of_its_rules_ports() {
        static RULES: [Rule; 1] = [Rule {
            pattern: "registry.example",
            ports: &[8443],
            private: false,
        }];
        let policy = ToolPolicy {
            allow: &RULES,
            ..*npm()
        };
        assert!(policy
            .decide_name(&Host::Name("registry.example".into()))
            .is_allow());
        assert_eq!(
            policy.decide_name(&Host::Name("other.example".into())),
            Decision::NotAllowed
        );
        let aws = lookup("aws").unwrap_or_else(|| panic!("aws is pinned"));
        assert_eq!(
            aws.decide_name(&Host::Name("anything.example".into())),
            Decision::Observed
        );
    }

    #[test]
    fn port_80_is_405_for_a_name_and_a_bare_address_alike() {
        let bare = Authority {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
            port: 80,
        };
        assert_eq!(npm().decide_direct(&bare).map_err(|r| r.status), Err(405));
        assert_eq!(
            npm()
                .decide_direct(&named("registry.npmjs.org", 80))
                .map_err(|r| r.status),
            Err(405)
        );
    }

    #[test]
    fn a_bare_address_is_refused_and_a_name_is_judged() {
        let bare = Authority {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
            port: 443,
        };
        let refused = npm().decide_direct(&bare).err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|r| r.status == 403 && r.reason.contains("looked up by name")),
            "{refused:?}"
        );
        assert!(npm().decide_direct(&named("registry.npmjs.org", 443)).is_ok());
        let off_list = npm().decide_direct(&named("evil.example", 443)).err();
        assert!(
            off_list
                .as_ref()
                .is_some_and(|r| r.status == 403 && r.reason.contains("allowlist")),
            "{off_list:?}"
        );
    }
}
