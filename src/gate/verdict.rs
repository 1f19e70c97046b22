//! From a parsed request head to what the proxy does with it: dial, or
//! refuse with a status. Pure, so the whole decision is unit-tested and
//! fuzzed without a socket.
//!
//! Only the request line decides. Headers (`Host:` included) never change
//! the target.

use crate::gate::http::{absolute_form_authority, RequestHead};
use crate::policy::authority::{parse_authority, Authority, AuthorityError};
use crate::policy::{Decision, ToolPolicy};

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a tunnel to this authority (allowlisted, or observe mode).
    Dial(Authority),
    /// Answer with this status and close; nothing is dialled.
    Refuse(u16),
}

/// The judgement on one request, with what its audit row needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The normalised target, when there is one to name.
    pub target: Option<Authority>,
    /// The policy's decision on a well-formed CONNECT, for the dial's
    /// address checks (a pinned private-registry rule, say).
    pub decision: Option<Decision>,
    pub reason: String,
}

/// Longest slice of a raw, refused target quoted in a reason.
const QUOTE_LIMIT: usize = 200;

/// Judges one request head under `policy`.
pub fn judge(policy: &ToolPolicy, head: &RequestHead) -> Verdict {
    if head.method != "CONNECT" {
        return Verdict {
            action: Action::Refuse(405),
            target: absolute_form_authority(&head.target),
            decision: None,
            // httparse has checked the method is a token: safe to log as is.
            reason: format!(
                "plaintext {} refused: cli-guard carries only CONNECT tunnels and never downgrades",
                head.method
            ),
        };
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
            return Verdict {
                action: Action::Refuse(400),
                target: None,
                decision: None,
                reason: format!("invalid CONNECT target {shown}: {why}"),
            };
        }
    };
    let decision = policy.decide(&target);
    Verdict {
        action: if decision.is_allow() {
            Action::Dial(target.clone())
        } else {
            Action::Refuse(403)
        },
        reason: decision.reason(policy),
        target: Some(target),
        decision: Some(decision),
    }
}

/// A raw client string made safe to log: escaped and truncated.
pub fn quote(raw: &str) -> String {
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
    use crate::policy::lookup;

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

    #[test]
    fn allowed_connect_dials() {
        let v = judge(npm(), &head("CONNECT", "registry.npmjs.org:443"));
        assert!(matches!(v.action, Action::Dial(_)), "{v:?}");
        assert!(v.reason.contains("registry.npmjs.org:443"), "{}", v.reason);
    }

    #[test]
    fn unlisted_connect_is_403() {
        let v = judge(npm(), &head("CONNECT", "evil.example:443"));
        assert_eq!(v.action, Action::Refuse(403));
        assert_eq!(v.target.map(|t| t.host), Some(Host::Name("evil.example".into())));
        assert!(v.reason.contains("allowlist"), "{}", v.reason);
    }

    #[test]
    fn plaintext_is_405_with_its_host() {
        let v = judge(npm(), &head("GET", "http://registry.npmjs.org/is-number"));
        assert_eq!(v.action, Action::Refuse(405));
        assert_eq!(v.target.map(|t| t.port), Some(80));
    }

    #[test]
    fn lowercase_connect_is_not_connect() {
        assert_eq!(
            judge(npm(), &head("connect", "registry.npmjs.org:443")).action,
            Action::Refuse(405)
        );
    }

    #[test]
    fn invalid_target_is_400_and_quoted_safely() {
        let v = judge(npm(), &head("CONNECT", "evil\u{7}%.com:443"));
        assert_eq!(v.action, Action::Refuse(400));
        assert!(v.reason.contains("\\u{7}"), "{}", v.reason);
    }

    #[test]
    fn userinfo_in_a_target_is_never_quoted() {
        let v = judge(npm(), &head("CONNECT", "cli-guard:s3cret@registry.npmjs.org:443"));
        assert_eq!(v.action, Action::Refuse(400));
        assert!(!v.reason.contains("s3cret"), "{}", v.reason);
        assert!(v.reason.contains("@registry.npmjs.org:443"), "{}", v.reason);
    }

    #[test]
    fn observe_mode_dials_anything_valid() {
        let aws = lookup("aws").unwrap_or_else(|| panic!("aws is pinned"));
        assert!(matches!(
            judge(aws, &head("CONNECT", "1.2.3.4:8443")).action,
            Action::Dial(_)
        ));
        assert_eq!(
            judge(aws, &head("CONNECT", "a..b:443")).action,
            Action::Refuse(400)
        );
        assert_eq!(
            judge(aws, &head("GET", "http://a.com/")).action,
            Action::Refuse(405)
        );
    }

    #[test]
    fn quote_truncates_long_input() {
        let q = quote(&"a".repeat(1000));
        assert!(q.len() < 220 && q.ends_with("…\""), "{q}");
    }
}
