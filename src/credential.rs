//! The per-invocation proxy credential: its one home.
//!
//! Any local process can dial the gate's 127.0.0.1 listener, so the child's
//! proxy URL carries a secret of this invocation's and every request must
//! present it in `Proxy-Authorization`. Here it is minted, spelled for the
//! child (a URL) and for the wire (a `Basic` header), compared in constant
//! time, and kept out of everything that is logged. Also here: Basic
//! credentials and base64, which upstream proxies' userinfo uses too.
//!
//! bun before mid-2026 (oven-sh/bun#31782) spells the Basic value in
//! base64url (`-`, `_` for `+`, `/`). A minted token never needs either
//! character (see [`Credential::mint`]), but a request carrying the
//! base64url spelling of the same bytes is accepted all the same.

use std::fmt;
use std::net::SocketAddr;

/// The user name in the child's proxy URL; the password is the secret.
pub(crate) const CREDENTIAL_USER: &str = "cli-guard";

/// What a scrubbed secret is replaced with.
const REDACTED: &str = "<redacted>";

/// This invocation's proxy credential. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// The password in the child's proxy URL.
    token: String,
    /// `Basic base64(cli-guard:token)`: the `Proxy-Authorization` value a
    /// request must carry.
    header: String,
    /// The same bytes in base64url, as bun spells them: also accepted.
    header_url: String,
}

impl Credential {
    /// A fresh credential: 128 random bits as 32 hex digits (no character
    /// that needs escaping in a URL). `cli-guard:` and hex digits never put
    /// five one-bits in a row where a base64 sextet starts, so the header
    /// has no `+` or `/` and reads the same in base64 and base64url.
    pub(crate) fn mint() -> Result<Credential, getrandom::Error> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)?;
        let token = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Credential::from_token(token))
    }

    /// The credential for a given token (tests, and a token minted elsewhere).
    pub(crate) fn from_token(token: String) -> Credential {
        let header = basic_authorization(CREDENTIAL_USER.as_bytes(), token.as_bytes());
        let header_url = header.replace('+', "-").replace('/', "_");
        Credential {
            token,
            header,
            header_url,
        }
    }

    /// The proxy URL the child gets: `http://cli-guard:TOKEN@ADDR`. Holds
    /// the secret: never log it.
    pub(crate) fn proxy_url(&self, addr: SocketAddr) -> String {
        format!("http://{CREDENTIAL_USER}:{}@{addr}", self.token)
    }

    /// The `Proxy-Authorization` value: `Basic base64(cli-guard:TOKEN)`.
    /// Holds the secret: never log it.
    pub(crate) fn header(&self) -> &str {
        &self.header
    }

    /// Whether a presented `Proxy-Authorization` value is this credential,
    /// in base64 or in base64url, in time that does not depend on where
    /// they first differ (both spellings are always compared).
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let standard = constant_time_eq(presented, self.header.as_bytes());
        let url = constant_time_eq(presented, self.header_url.as_bytes());
        standard | url
    }

    /// The forms of the secret a client could paste: the token and its
    /// base64 and base64url (the headers without `Basic `).
    fn forms(&self) -> [&str; 3] {
        fn encoded(header: &str) -> &str {
            header.strip_prefix("Basic ").unwrap_or(header)
        }
        [
            self.token.as_str(),
            encoded(&self.header),
            encoded(&self.header_url),
        ]
    }

    /// `text` with every form of the secret blanked out.
    pub(crate) fn scrub(&self, text: String) -> String {
        self.forms()
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .fold(text, |text, secret| text.replace(secret, REDACTED))
    }

    /// Whether a request line (its method or target) carries a form of the
    /// secret: a confused client pasting its proxy URL. Such a request is
    /// refused before it is judged, so the secret is never logged.
    pub(crate) fn in_request_line(&self, method: &str, target: &str) -> bool {
        self.forms()
            .into_iter()
            .any(|s| !s.is_empty() && (target.contains(s) || method.contains(s)))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// `Basic base64(user:pass)`.
pub(crate) fn basic_authorization(user: &[u8], pass: &[u8]) -> String {
    let mut raw = user.to_vec();
    raw.push(b':');
    raw.extend_from_slice(pass);
    format!("Basic {}", base64(&raw))
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential() -> Credential {
        Credential::from_token("0123456789abcdef0123456789abcdef".into())
    }

    #[test]
    fn base64_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert_eq!(
            basic_authorization(b"Aladdin", b"open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn minted_tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (Credential::mint(), Credential::mint());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("getrandom failed")
        };
        assert_eq!(a.token.len(), 32);
        assert!(a.token.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn url_and_header_forms() {
        let c = credential();
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.proxy_url(addr),
            "http://cli-guard:0123456789abcdef0123456789abcdef@127.0.0.1:4000"
        );
        assert_eq!(
            c.header(),
            basic_authorization(b"cli-guard", b"0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn credentials_compare_exactly() {
        let c = credential();
        assert!(c.matches(c.header().as_bytes()));
        let mut near = c.header().as_bytes().to_vec();
        if let Some(last) = near.last_mut() {
            *last ^= 1;
        }
        assert!(!c.matches(&near));
        assert!(!c.matches(&c.header().as_bytes()[1..]));
        assert!(!c.matches(b""));
        assert!(constant_time_eq(b"Basic abc", b"Basic abc"));
        assert!(!constant_time_eq(b"Basic abd", b"Basic abc"));
    }

    /// bun's base64url spelling of the same bytes passes; a different
    /// secret in either spelling does not.
    #[test]
    fn the_base64url_spelling_of_the_credential_is_accepted() {
        // `~` is 0x7e: its bytes encode with sextets 62 and 63.
        let c = Credential::from_token("~~~~~~".into());
        let standard = c.header().to_string();
        assert!(standard.contains('+') || standard.contains('/'), "{standard}");
        let url = standard.replace('+', "-").replace('/', "_");
        assert_ne!(url, standard);
        assert!(c.matches(standard.as_bytes()));
        assert!(c.matches(url.as_bytes()));
        let other = Credential::from_token("~~~~~}".into());
        let other_url = other.header().replace('+', "-").replace('/', "_");
        assert!(!c.matches(other.header().as_bytes()));
        assert!(!c.matches(other_url.as_bytes()));
        let [_, encoded, encoded_url] = c.forms();
        assert_eq!(
            c.scrub(format!("{encoded} {encoded_url}")),
            "<redacted> <redacted>"
        );
    }

    /// Every sextet of `base64(cli-guard:TOKEN)` lies within two adjacent
    /// bytes, each `:` or a hex digit past the fixed prefix: checking every
    /// such pair at every bit offset covers every 32-hex-digit token.
    #[test]
    fn minted_tokens_read_the_same_in_both_alphabets() {
        let prefix = format!("{CREDENTIAL_USER}:");
        assert!(!base64(prefix.as_bytes()).contains(['+', '/']));
        let bytes: Vec<u8> = b":0123456789abcdef".to_vec();
        for a in &bytes {
            for b in b"0123456789abcdef" {
                let pair = u16::from(*a) << 8 | u16::from(*b);
                for shift in 0..=10 {
                    let sextet = (pair >> shift) & 63;
                    assert!(sextet < 62, "{} {} at {shift}", char::from(*a), char::from(*b));
                }
            }
        }
        for _ in 0..64 {
            let c = Credential::mint().unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.header().contains(['+', '/']), "{}", c.header());
            assert_eq!(c.header, c.header_url);
        }
    }

    #[test]
    fn scrub_blanks_every_form() {
        let c = credential();
        let [token, encoded, _] = c.forms();
        let text = format!("a {token} b {encoded} c");
        assert_eq!(c.scrub(text), "a <redacted> b <redacted> c");
        assert!(c.in_request_line("CONNECT", &format!("cli-guard:{token}@a.com:443")));
        assert!(c.in_request_line(encoded, "a.com:443"));
        assert!(!c.in_request_line("CONNECT", "a.com:443"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = credential();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains(&c.token) && !shown.contains(c.forms()[1]),
            "{shown}"
        );
    }
}
