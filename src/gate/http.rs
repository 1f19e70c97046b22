//! The HTTP/1.x request-head parser and the proxy's responses.
//!
//! Pure functions over byte slices: no sockets here. Parsing is httparse's
//! (a well-fuzzed parser) with our caps on head size and header count on top;
//! what the request *means* is decided in `judge`.

use crate::policy::authority::{parse_authority, parse_host, Authority};

/// Largest request head we read, request line and headers included.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers we accept in one request head.
pub(super) const MAX_HEADERS: usize = 64;

/// A complete, syntactically valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request target exactly as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Length of the head in bytes, blank line included. Bytes after it
    /// belong to the tunnel (a TLS ClientHello sent in the same packet).
    pub head_len: usize,
    /// Every `Proxy-Authorization` value, in order (more than one is a
    /// conflict the proxy refuses). Holds a secret: never logged.
    pub proxy_authorization: Vec<Vec<u8>>,
}

/// Why a request head could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP: answered 400 as soon as the first bad byte is seen.
    Malformed(String),
    /// The head is larger than [`MAX_HEAD_BYTES`] (431).
    TooLarge,
    /// More than [`MAX_HEADERS`] headers (431).
    TooManyHeaders,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed request head: {why}"),
            HeadError::TooLarge => write!(f, "request head larger than {MAX_HEAD_BYTES} bytes"),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} request headers"),
        }
    }
}

/// Parses the start of `buf` as a request head.
///
/// `Ok(None)` means "valid so far, read more". httparse checks every byte as
/// it goes, so junk (a TLS ClientHello, say) is an error on its first byte
/// rather than after a timeout.
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            let (Some(method), Some(target), Some(minor_version)) =
                (request.method, request.path, request.version)
            else {
                return Err(HeadError::Malformed("incomplete request line".into()));
            };
            let proxy_authorization = request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
                .map(|h| h.value.to_vec())
                .collect();
            Ok(Some(RequestHead {
                method: method.to_string(),
                target: target.to_string(),
                minor_version,
                head_len,
                proxy_authorization,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// The authority named by an absolute-form target (`http://host[:port]/…`),
/// for the audit row of a refused plaintext request. `None` if it has none
/// we can name.
pub(super) fn absolute_form_authority(target: &str) -> Option<Authority> {
    let (scheme, rest) = target.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') || authority.contains(':') {
        return parse_authority(authority).ok();
    }
    Some(Authority {
        host: parse_host(authority).ok()?,
        port: default_port,
    })
}

/// The reason phrase for each status the proxy sends.
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "Connection established",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        status if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// The response that opens a tunnel.
pub(super) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
/// The answer to a script's wrapper whose namespace is registered (`who`).
pub(super) const REGISTERED: &[u8] = b"HTTP/1.1 200 Registered\r\nContent-Length: 0\r\n\r\n";

/// A complete error response with a plain-text body and any `headers`;
/// the connection closes after it.
pub(super) fn error_response(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len() + 1
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authority::Host;

    fn complete(buf: &[u8]) -> RequestHead {
        match parse_head(buf) {
            Ok(Some(head)) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_head_with_early_bytes() {
        let buf =
            b"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n\r\n\x16\x03\x01";
        let head = complete(buf);
        assert_eq!(head.method, "CONNECT");
        assert_eq!(head.target, "registry.npmjs.org:443");
        assert_eq!(head.minor_version, 1);
        assert_eq!(&buf[head.head_len..], b"\x16\x03\x01");
    }

    #[test]
    fn http_1_0_is_parsed() {
        assert_eq!(complete(b"CONNECT a.com:443 HTTP/1.0\r\n\r\n").minor_version, 0);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(parse_head(b"CONNECT a.com:443 HT"), Ok(None));
        assert_eq!(parse_head(b"CONN"), Ok(None));
        assert_eq!(parse_head(b""), Ok(None));
    }

    #[test]
    fn tls_client_hello_is_junk_at_once() {
        assert!(matches!(
            parse_head(b"\x16\x03\x01\x02\x00\x01"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn http_2_preface_and_bad_versions_are_malformed() {
        assert!(matches!(
            parse_head(b"PRI * HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"CONNECT a.com:443 HTTP/1.2\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"CONNECT a.com:443\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn nul_and_bare_lf_in_request_line() {
        assert!(matches!(
            parse_head(b"CONNECT a.com\0:443 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut buf = b"CONNECT a.com:443 HTTP/1.1\r\nX: ".to_vec();
        buf.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&buf), Err(HeadError::TooLarge));
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"CONNECT a.com:443 HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&buf), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn absolute_form_names_its_authority() {
        let a = absolute_form_authority("http://Evil.Example/x?y").unwrap_or_else(|| panic!("none"));
        assert_eq!((a.host, a.port), (Host::Name("evil.example".into()), 80));
        let a = absolute_form_authority("http://evil.example:8080/").unwrap_or_else(|| panic!("none"));
        assert_eq!(a.port, 8080);
        assert_eq!(absolute_form_authority("/relative"), None);
        assert_eq!(absolute_form_authority("ftp://x.com/"), None);
    }

    #[test]
    fn proxy_authorization_values_are_kept_in_order() {
        let head = complete(b"CONNECT a.com:443 HTTP/1.1\r\nproxy-authorization: Basic a\r\nX: y\r\nProxy-Authorization: Basic b\r\n\r\n");
        assert_eq!(
            head.proxy_authorization,
            vec![b"Basic a".to_vec(), b"Basic b".to_vec()]
        );
    }

    #[test]
    fn error_response_shape() {
        let r = String::from_utf8(error_response(405, &[("Allow", "CONNECT")], "no")).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: CONNECT\r\n"), "{r}");
        assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Length: 3\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nno\n"), "{r}");
    }
}
