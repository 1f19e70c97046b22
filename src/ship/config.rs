//! Where shipping is configured and what it says: the system-wide file an
//! operator owns (`/etc/cli-guard/ship.conf`), else `CLI_GUARD_SHIP`.
//!
//! The file wins whole when it exists: a process of the user can set any
//! variable, so the environment must not turn an operator's shipping off,
//! point it elsewhere or make it optional. For the same reason the file
//! must be root's and writable by no one else; otherwise nothing runs
//! (exit 125) until it is fixed. The variable serves a user or a CI job
//! without root.
//!
//! Both say the same things, as `key=value` words separated by white space
//! (the file may also have `#` comments and newlines):
//!
//! ```text
//! collector=tls://logs.example.internal:6514   # or tcp://HOST:PORT; a bare URL is the collector too
//! required=yes                                 # the tool does not run while rows cannot be shipped or spooled
//! ca=/etc/cli-guard/collector-ca.pem           # trust only this CA (default: the system's CA store)
//! machine=build-7                              # the HOSTNAME rows are shipped under (default: the host name)
//! ```
//!
//! Parsing is pure; only [`load`] reads the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// The operator's file.
pub(crate) const SYSTEM_FILE: &str = "/etc/cli-guard/ship.conf";

/// Where rows go, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShipConfig {
    pub collector: Collector,
    /// Fail closed: the tool does not run while rows can be neither
    /// shipped nor spooled.
    pub required: bool,
    /// Trust this CA file only, instead of the system's store.
    pub ca: Option<PathBuf>,
    /// The machine name rows are shipped under.
    pub machine: Option<String>,
    /// Where this came from, for messages: the file or the variable.
    pub source: String,
}

/// A syslog collector: RFC 5424 over TCP (RFC 6587 octet counting), or
/// over TLS (RFC 5425).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collector {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Reads `tcp://HOST:PORT` or `tls://HOST:PORT` (an IPv6 address in
/// brackets; no port: 514 for tcp, 6514 for tls, as RFC 5425 assigns).
fn parse_collector(url: &str) -> Result<Collector, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("tls://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("tcp://") {
        (false, rest)
    } else {
        return Err(format!(
            "collector {url:?}: expected tcp://HOST:PORT or tls://HOST:PORT"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 6514 } else { 514 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("collector {url:?}: an IPv6 address needs its closing ]"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("collector {url:?}: junk after the address")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("collector {url:?}: port {port:?} is not a port number"))?,
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !host_ok {
        return Err(format!(
            "collector {url:?}: {host:?} is not a host name or address"
        ));
    }
    Ok(Collector { tls, host, port })
}

/// Reads a configuration's words (see the module's docs); `source` names
/// it in errors.
pub(crate) fn parse(text: &str, source: &str) -> Result<ShipConfig, String> {
    let fail = |what: String| format!("{source}: {what}");
    let mut collector = None;
    let mut required = false;
    let mut ca = None;
    let mut machine = None;
    let words = text
        .lines()
        .map(|line| line.split_once('#').map_or(line, |(before, _)| before))
        .flat_map(str::split_whitespace);
    for word in words {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) if !key.contains("://") => (key, value),
            _ if word.contains("://") => ("collector", word),
            _ => return Err(fail(format!("{word:?}: expected key=value"))),
        };
        match key {
            "collector" => collector = Some(parse_collector(value).map_err(&fail)?),
            "required" => {
                required = match value {
                    "yes" | "true" | "1" => true,
                    "no" | "false" | "0" => false,
                    _ => return Err(fail(format!("required={value:?}: expected yes or no"))),
                }
            }
            "ca" if value.starts_with('/') => ca = Some(PathBuf::from(value)),
            "ca" => return Err(fail(format!("ca={value:?}: expected an absolute path"))),
            "machine" if valid_machine(value) => machine = Some(value.to_string()),
            "machine" => {
                return Err(fail(format!(
                    "machine={value:?}: expected 1 to 255 printable ASCII characters, no spaces"
                )))
            }
            _ => {
                return Err(fail(format!(
                    "unknown setting {key:?}: expected collector, required, ca or machine"
                )))
            }
        }
    }
    let collector = collector.ok_or_else(|| fail("no collector (collector=tls://HOST:PORT)".to_string()))?;
    if ca.is_some() && !collector.tls {
        return Err(fail("ca= is for a tls:// collector".to_string()));
    }
    Ok(ShipConfig {
        collector,
        required,
        ca,
        machine,
        source: source.to_string(),
    })
}

/// Whether `name` can be an RFC 5424 HOSTNAME: 1 to 255 printable ASCII
/// characters (33 to 126).
pub(crate) fn valid_machine(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b))
}

/// Whether a file owned by `uid` with permission bits `mode` may configure
/// shipping for everyone: root's, and writable by no one else.
fn owner_ok(path: &Path, uid: u32, mode: u32) -> Result<(), String> {
    if uid != 0 {
        return Err(format!(
            "{} belongs to uid {uid}, not root: any process of that user could turn shipping off. \
             Fix: sudo chown root: {}",
            path.display(),
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}): any of them could turn shipping off. \
             Fix: sudo chmod go-w {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// The shipping configuration: `file` (the system-wide one) if it exists,
/// else the variable's value; `None` when neither says anything.
pub(crate) fn load(file: &Path, variable: Option<&str>) -> Result<Option<ShipConfig>, String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(file) {
        Ok(meta) => {
            if !meta.is_file() {
                return Err(format!("{} is not a regular file", file.display()));
            }
            owner_ok(file, meta.uid(), meta.mode())?;
            let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            parse(&text, &file.display().to_string()).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match variable.filter(|v| !v.trim().is_empty())
        {
            Some(value) => parse(value, crate::env::SHIP_VAR).map(Some),
            None => Ok(None),
        },
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ShipConfig {
        parse(text, "test").unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text, "test")
            .err()
            .unwrap_or_else(|| panic!("{text:?} was taken"))
    }

    #[test]
    fn a_bare_url_is_the_collector_with_its_default_port() {
        let c = ok("tls://logs.example");
        assert_eq!(
            c.collector,
            Collector {
                tls: true,
                host: "logs.example".into(),
                port: 6514
            }
        );
        assert!(!c.required);
        assert_eq!(ok("tcp://10.0.0.1").collector.port, 514);
        assert_eq!(
            ok("collector=tcp://[::1]:1514").collector.to_string(),
            "tcp://[::1]:1514"
        );
        assert_eq!(
            ok("tcp://127.0.0.1:1514/").collector.to_string(),
            "tcp://127.0.0.1:1514"
        );
    }

    #[test]
    fn every_setting_in_a_file_with_comments() {
        let c = ok(
            "# shipping\ncollector=tls://logs.example:6514  # the SIEM\nrequired=yes\n\
                    ca=/etc/cli-guard/ca.pem machine=build-7\n",
        );
        assert!(c.required);
        assert_eq!(c.ca, Some(PathBuf::from("/etc/cli-guard/ca.pem")));
        assert_eq!(c.machine.as_deref(), Some("build-7"));
        assert_eq!(c.source, "test");
    }

    #[test]
    fn junk_is_refused_saying_what_was_expected() {
        for (text, says) in [
            ("", "no collector"),
            ("required=yes", "no collector"),
            ("http://x:1", "expected tcp://HOST:PORT or tls://HOST:PORT"),
            ("tcp://x:0", "is not a port number"),
            ("tcp://x:70000", "is not a port number"),
            ("tcp://:1", "is not a host name"),
            ("tcp://a b", "expected key=value"),
            ("tcp://[::1", "closing ]"),
            ("tcp://x required=maybe", "expected yes or no"),
            ("tls://x ca=relative.pem", "absolute path"),
            ("tcp://x ca=/ca.pem", "for a tls:// collector"),
            ("tcp://x machine=a\u{e9}", "printable ASCII"),
            ("tcp://x colour=blue", "unknown setting \"colour\""),
            ("tcp://x bare", "expected key=value"),
        ] {
            let e = err(text);
            assert!(e.starts_with("test: ") && e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_file_must_be_roots_and_writable_by_no_one_else() {
        let path = Path::new("/etc/cli-guard/ship.conf");
        assert!(owner_ok(path, 0, 0o100644).is_ok());
        assert!(owner_ok(path, 0, 0o100600).is_ok());
        let e = owner_ok(path, 1000, 0o100644).unwrap_err();
        assert!(e.contains("uid 1000") && e.contains("sudo chown root:"), "{e}");
        let e = owner_ok(path, 0, 0o100664).unwrap_err();
        assert!(e.contains("mode 664") && e.contains("sudo chmod go-w"), "{e}");
        assert!(owner_ok(path, 0, 0o100646).is_err());
    }

    #[test]
    fn the_file_wins_over_the_variable_and_is_read_only_when_there() {
        let dir = std::env::temp_dir().join(format!("cli-guard-shipconf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("ship.conf");
        // No file: the variable, if set.
        assert_eq!(load(&file, None), Ok(None));
        assert_eq!(load(&file, Some("  ")), Ok(None));
        let from_var = load(&file, Some("tcp://127.0.0.1:9")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_var.map(|c| c.source), Some(crate::env::SHIP_VAR.to_string()));
        // A file: it, whatever the variable says (if it is root's).
        std::fs::write(&file, "collector=tls://logs.example\nrequired=yes\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let got = load(&file, Some("tcp://127.0.0.1:9"));
        if nix::unistd::geteuid().is_root() {
            let got = got
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no config"));
            assert!(got.required && got.collector.tls, "{got:?}");
        } else {
            assert!(got.is_err_and(|e| e.contains("not root")));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
