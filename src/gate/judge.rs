//! From a parsed request head to what the proxy does with it: dial (a
//! [`Judged`]), or refuse (a [`Refusal`]). Protocol first (only CONNECT,
//! only a plain `host:port`), then the policy's decision. Pure, so the whole
//! decision is unit-tested and fuzzed without a socket.
//!
//! Only the request line decides. Headers (`Host:` included) never change
//! the target.

use crate::gate::http::{absolute_form_authority, RequestHead};
use crate::gate::refusal::Refusal;
use crate::policy::authority::{parse_authority, Authority, AuthorityError};
use crate::policy::{Decision, ToolPolicy};

/// A request the policy lets through: where to dial, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The normalised CONNECT target.
    pub target: Authority,
    /// The policy's decision, for the dial's address checks (a pinned
    /// private-registry rule, say).
    pub decision: Decision,
    /// Why it is allowed, for the audit row.
    pub reason: String,
}

/// Longest slice of a raw, refused target quoted in a reason.
const QUOTE_LIMIT: usize = 200;

/// Judges one request head under `policy`: 405 for anything but CONNECT,
/// 400 for a target that is not a plain `host:port`, then the policy's
/// decision (403 for what it refuses).
pub fn judge(policy: &ToolPolicy, head: &RequestHead) -> Result<Judged, Refusal> {
    if head.method != "CONNECT" {
        return Err(Refusal {
            method: Some(head.method.clone()),
            target: absolute_form_authority(&head.target),
            // httparse has checked the method is a token: safe to log as is.
            ..Refusal::deny(
                405,
                format!(
                    "plaintext {} refused: cli-guard carries only CONNECT tunnels and never downgrades",
                    head.method
                ),
            )
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
            return Err(Refusal {
                method: Some(head.method.clone()),
                ..Refusal::deny(400, format!("invalid CONNECT target {shown}: {why}"))
            });
        }
    };
    let decision = policy.decide(&target);
    let reason = decision.reason(policy);
    if !decision.is_allow() {
        return Err(Refusal {
            method: Some(head.method.clone()),
            target: Some(target),
            ..Refusal::deny(403, reason)
        });
    }
    Ok(Judged {
        target,
        decision,
        reason,
    })
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
        let j = judge(npm(), &head("CONNECT", "registry.npmjs.org:443")).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(j.target.host, Host::Name("registry.npmjs.org".into()));
        assert!(j.reason.contains("registry.npmjs.org:443"), "{}", j.reason);
    }

    #[test]
    fn unlisted_connect_is_403() {
        let r = refused(judge(npm(), &head("CONNECT", "evil.example:443")));
        assert_eq!((r.status, r.verdict), (403, Verdict::Deny));
        assert_eq!(r.method.as_deref(), Some("CONNECT"));
        assert_eq!(r.target.map(|t| t.host), Some(Host::Name("evil.example".into())));
        assert!(r.reason.contains("allowlist"), "{}", r.reason);
    }

    #[test]
    fn plaintext_is_405_with_its_host() {
        let r = refused(judge(npm(), &head("GET", "http://registry.npmjs.org/is-number")));
        assert_eq!(r.status, 405);
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(r.target.map(|t| t.port), Some(80));
    }

    #[test]
    fn lowercase_connect_is_not_connect() {
        assert_eq!(
            refused(judge(npm(), &head("connect", "registry.npmjs.org:443"))).status,
            405
        );
    }

    #[test]
    fn invalid_target_is_400_and_quoted_safely() {
        let r = refused(judge(npm(), &head("CONNECT", "evil\u{7}%.com:443")));
        assert_eq!((r.status, r.target), (400, None));
        assert!(r.reason.contains("\\u{7}"), "{}", r.reason);
    }

    #[test]
    fn userinfo_in_a_target_is_never_quoted() {
        let r = refused(judge(
            npm(),
            &head("CONNECT", "cli-guard:s3cret@registry.npmjs.org:443"),
        ));
        assert_eq!(r.status, 400);
        assert!(!r.reason.contains("s3cret"), "{}", r.reason);
        assert!(r.reason.contains("@registry.npmjs.org:443"), "{}", r.reason);
    }

    #[test]
    fn observe_mode_dials_anything_valid() {
        let aws = lookup("aws").unwrap_or_else(|| panic!("aws is pinned"));
        assert!(judge(aws, &head("CONNECT", "1.2.3.4:8443")).is_ok());
        assert_eq!(refused(judge(aws, &head("CONNECT", "a..b:443"))).status, 400);
        assert_eq!(refused(judge(aws, &head("GET", "http://a.com/"))).status, 405);
    }

    #[test]
    fn quote_truncates_long_input() {
        let q = quote(&"a".repeat(1000));
        assert!(q.len() < 220 && q.ends_with("…\""), "{q}");
    }
}
