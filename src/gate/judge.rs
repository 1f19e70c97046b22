//! The gate's one judge: from what arrived to what the gate does with it,
//! dial (a [`Judged`]) or refuse (a [`Refusal`]). A proxy request
//! ([`judge`]): protocol first (only CONNECT, only a plain `host:port`),
//! then the policy's decision. A connection that ignored the proxy
//! ([`judge_direct`], strict mode): the address it dialled, mapped back to
//! the name it was given for, then the policy's rule for direct
//! connections. Pure but for reading the pool, so the whole decision is
//! unit-tested and fuzzed without a socket; the policy itself (`policy`)
//! says allow or not.
//!
//! Only the request line decides. Headers (`Host:` included) never change
//! the target.

use std::net::SocketAddr;

use crate::gate::http::{absolute_form_authority, RequestHead};
use crate::gate::outcome::Method;
use crate::gate::pool::Pool;
use crate::gate::refusal::Refusal;
use crate::policy::authority::{parse_authority, Authority, AuthorityError, Host};
use crate::policy::{Acting, Decision, ToolPolicy};
use crate::who::Actor;

/// A request the policy lets through: where to dial, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The normalised target.
    pub target: Authority,
    /// The policy's decision, for the dial's address checks (a pinned
    /// private-registry rule, say).
    pub decision: Decision,
    /// Why it is allowed, for the audit row.
    pub reason: String,
}

impl Judged {
    /// This allowed request, made by `actor`: a package's own code is named
    /// in the reason (its entry allowed it).
    pub(crate) fn by(self, actor: Option<&Actor>) -> Judged {
        match actor.and_then(|a| crate::who::package_code_label(&a.row())) {
            Some(by) => Judged {
                reason: format!("made by {by}: {}", self.reason),
                ..self
            },
            None => self,
        }
    }
}

impl Refusal {
    /// This refusal, of a request `actor` made: its row names who, and a
    /// package's own code is named in the reason.
    pub(crate) fn of_actor(self, actor: Option<&Actor>) -> Refusal {
        let process = actor.map(Actor::row);
        match process.as_deref().and_then(crate::who::package_code_label) {
            Some(by) => Refusal {
                reason: format!("made by {by}: {}", self.reason),
                ..self.of(process)
            },
            None => self.of(process),
        }
    }
}

/// Longest slice of a raw, refused target quoted in a reason.
const QUOTE_LIMIT: usize = 200;

/// Judges one request head under `policy`: 405 for anything but CONNECT,
/// 400 for a target that is not a plain `host:port`, then the policy's
/// decision (403 for what it refuses). In strict mode (`names`, the
/// invocation's pool), a CONNECT to an address the pool gave is judged by
/// its name, as a direct connection to it would be.
pub fn judge(policy: &ToolPolicy, head: &RequestHead, names: Option<&Pool>) -> Result<Judged, Refusal> {
    judge_as(policy, &Acting::Tool, head, names)
}

/// [`judge`] for a request `acting` made: the tool by its allowlist, a
/// package's own code by its entries (`policy::packages`).
pub(crate) fn judge_as(
    policy: &ToolPolicy,
    acting: &Acting<'_>,
    head: &RequestHead,
    names: Option<&Pool>,
) -> Result<Judged, Refusal> {
    let method = Method::of_request(&head.method);
    if method != Method::Connect {
        return Err(Refusal {
            target: absolute_form_authority(&head.target),
            // httparse has checked the method is a token: safe to log as is.
            ..Refusal::deny(
                405,
                format!(
                    "plaintext {method} refused: cli-guard carries only CONNECT tunnels and never downgrades"
                ),
            )
            .by(method)
        });
    }
    let target = match parse_authority(&head.target) {
        Ok(target) => target,
        Err(why) => {
            // Userinfo may be a credential a confused client copied from its
            // proxy URL: name only what follows the last `@`.
            let shown = match why {
                AuthorityError::Userinfo => {
                    let host = head.target.rsplit('@').next().unwrap_or("");
                    format!("\"(userinfo not logged)@{}\"", quote(host).trim_matches('"'))
                }
                _ => quote(&head.target),
            };
            return Err(Refusal::deny(400, format!("invalid CONNECT target {shown}: {why}")).by(method));
        }
    };
    let target = match names {
        Some(pool) => pool.named(target),
        None => target,
    };
    let decision = policy.decide_as(acting, &target);
    let reason = decision.reason(policy);
    if !decision.is_allow() {
        return Err(Refusal {
            target: Some(target),
            ..Refusal::deny(403, reason).by(method)
        });
    }
    Ok(Judged {
        target,
        decision,
        reason,
    })
}

/// Judges a connection that ignored the proxy by the address it dialled
/// (the accepted socket's own): mapped back to its name where the pool
/// gave it, then the policy's rule for direct connections (405 on port
/// 80, 403 for a bare address or a name off the allowlist).
pub(super) fn judge_direct(
    policy: &ToolPolicy,
    acting: &Acting<'_>,
    pool: &Pool,
    dialled: SocketAddr,
) -> Result<Judged, Refusal> {
    let target = pool.named(Authority {
        host: Host::Ip(dialled.ip()),
        port: dialled.port(),
    });
    match policy.decide_direct_as(acting, &target) {
        Ok(decision) => Ok(Judged {
            reason: format!(
                "{}; a direct connection, ignoring the proxy, mapped back to its name",
                decision.reason(policy)
            ),
            target,
            decision,
        }),
        Err(refused) => Err(Refusal {
            target: Some(target),
            ..Refusal::deny(refused.status, refused.reason).by(Method::Transparent)
        }),
    }
}

/// A raw client string made safe to log: escaped and truncated.
pub(super) fn quote(raw: &str) -> String {
    let escaped: String = raw.escape_debug().take(QUOTE_LIMIT).collect();
    if escaped.len() < raw.escape_debug().count() {
        format!("\"{escaped}…\"")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::Host;
    use crate::policy::{lookup, Verdict};

    fn head(method: &str, target: &str) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            minor_version: 1,
            head_len: 0,
            proxy_authorization: Vec::new(),
        }
    }

    fn npm() -> &'static ToolPolicy {
        lookup("npm").unwrap_or_else(|| panic!("npm is pinned"))
    }

    fn refused(judged: Result<Judged, Refusal>) -> Refusal {
        judged.err().unwrap_or_else(|| panic!("allowed"))
    }

    #[test]
    fn allowed_connect_dials() {
        let j = judge(npm(), &head("CONNECT", "registry.npmjs.org:443"), None)
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(j.target.host, Host::Name("registry.npmjs.org".into()));
        assert!(j.reason.contains("registry.npmjs.org:443"), "{}", j.reason);
    }

    #[test]
    fn unlisted_connect_is_403() {
        let r = refused(judge(npm(), &head("CONNECT", "evil.example:443"), None));
        assert_eq!((r.status, r.verdict), (403, Verdict::Deny));
        assert_eq!(r.method, Some(Method::Connect));
        assert_eq!(r.target.map(|t| t.host), Some(Host::Name("evil.example".into())));
        assert!(r.reason.contains("allowlist"), "{}", r.reason);
    }

    #[test]
    fn plaintext_is_405_with_its_host() {
        let r = refused(judge(
            npm(),
            &head("GET", "http://registry.npmjs.org/is-number"),
            None,
        ));
        assert_eq!(r.status, 405);
        assert_eq!(r.method, Some(Method::Plaintext("GET".into())));
        assert_eq!(r.target.map(|t| t.port), Some(80));
    }

    #[test]
    fn lowercase_connect_is_not_connect() {
        assert_eq!(
            refused(judge(npm(), &head("connect", "registry.npmjs.org:443"), None)).status,
            405
        );
    }

    #[test]
    fn invalid_target_is_400_and_quoted_safely() {
        let r = refused(judge(npm(), &head("CONNECT", "evil\u{7}%.com:443"), None));
        assert_eq!((r.status, r.target), (400, None));
        assert!(r.reason.contains("\\u{7}"), "{}", r.reason);
    }

    #[test]
    fn userinfo_in_a_target_is_never_quoted() {
        let r = refused(judge(
            npm(),
            &head("CONNECT", "cli-guard:s3cret@registry.npmjs.org:443"),
            None,
        ));
        assert_eq!(r.status, 400);
        assert!(!r.reason.contains("s3cret"), "{}", r.reason);
        assert!(r.reason.contains("@registry.npmjs.org:443"), "{}", r.reason);
    }

    #[test]
    fn observe_mode_dials_anything_valid() {
        let aws = lookup("aws").unwrap_or_else(|| panic!("aws is pinned"));
        assert!(judge(aws, &head("CONNECT", "1.2.3.4:8443"), None).is_ok());
        assert_eq!(
            refused(judge(aws, &head("CONNECT", "a..b:443"), None)).status,
            400
        );
        assert_eq!(
            refused(judge(aws, &head("GET", "http://a.com/"), None)).status,
            405
        );
    }

    #[test]
    fn a_connect_to_a_pool_address_is_judged_by_its_name() {
        let pool = Pool::new();
        let pooled = pool
            .assign("registry.npmjs.org")
            .unwrap_or_else(|_| panic!("pool"));
        let j = judge(npm(), &head("CONNECT", &format!("{pooled}:443")), Some(&pool))
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(j.target.to_string(), "registry.npmjs.org:443");
        // Without the pool (the plain proxy), an address is only an address.
        let r = refused(judge(npm(), &head("CONNECT", &format!("{pooled}:443")), None));
        assert_eq!(r.status, 403);
        // An address the pool never gave is judged as sent.
        let r = refused(judge(npm(), &head("CONNECT", "198.51.100.1:443"), Some(&pool)));
        assert_eq!(
            r.target.map(|t| t.to_string()).as_deref(),
            Some("198.51.100.1:443")
        );
    }

    #[test]
    fn a_direct_connection_is_judged_by_the_name_its_address_was_given() {
        use std::net::{IpAddr, Ipv4Addr};
        let pool = Pool::new();
        let pooled = IpAddr::V4(
            pool.assign("registry.npmjs.org")
                .unwrap_or_else(|_| panic!("pool")),
        );
        let at = |ip: IpAddr, port| judge_direct(npm(), &Acting::Tool, &pool, SocketAddr::new(ip, port));
        let j = at(pooled, 443).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(j.target.to_string(), "registry.npmjs.org:443");
        assert!(j.reason.contains("direct connection"), "{}", j.reason);
        // IPv4-mapped, as it reaches a dual-stack socket.
        let IpAddr::V4(v4) = pooled else { panic!("v4") };
        assert!(at(IpAddr::V6(v4.to_ipv6_mapped()), 443).is_ok());
        let bare = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        for (ip, port, status) in [(pooled, 80, 405), (bare, 80, 405), (bare, 443, 403)] {
            let r = refused(at(ip, port));
            assert_eq!(
                (r.status, r.method),
                (status, Some(Method::Transparent)),
                "{ip}:{port}"
            );
        }
    }

    #[test]
    fn quote_truncates_long_input() {
        let q = quote(&"a".repeat(1000));
        assert!(q.len() < 220 && q.ends_with("…\""), "{q}");
    }
}
