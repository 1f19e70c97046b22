//! The child's environment: the proxy variables, each tool family's
//! override of its own config, the JVM's proxy properties for Maven and
//! Gradle (which read no proxy variable), git's proxy, and cli-guard's own
//! markers, on top of the inherited environment. Pure.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use crate::env::{Env, AUDIT_ID_VAR, DEPTH_VAR, NETNS_VAR, REAL_TOOL_VAR, SKIP_VAR};
use crate::policy::{Family, ToolPolicy};

/// Loopback, always bypassed: a CONNECT proxy cannot carry it anyway.
const LOOPBACK_NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// What the child's environment is made of, beyond the inherited one.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChildMarks<'a> {
    /// The gate's URL, credential included. Never logged.
    pub proxy_url: &'a str,
    pub audit_id: &'a str,
    /// This invocation's depth, for the child's own shims.
    pub depth: u32,
    /// `CLI_GUARD_SKIP`'s value: every cli-guard binary above the child.
    pub skip: &'a str,
    /// `CLI_GUARD_REAL_TOOL`'s value: the file the child is.
    pub real_tool: &'a str,
    /// The child runs in a strict invocation's namespace (this one's, or
    /// an enclosing one's).
    pub in_netns: bool,
    /// The child is a pip that can install build dependencies in its own
    /// process: it is asked to (`PIP_USE_FEATURE`), so that its only Python
    /// children are build backends, package code (`who`).
    pub pip_in_process: bool,
}

/// The child's whole environment: `inherited` with every override applied.
pub(super) fn for_child(
    inherited: &Env,
    policy: &ToolPolicy,
    marks: ChildMarks<'_>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = inherited.vars().collect();
    // Under an npm fetch phase or install (an install script's guarded
    // tool): not its script-shell hook, but this invocation's own.
    super::script_shell::undo_hook(&mut env);
    if let Ok(exe) = std::env::current_exe() {
        let hook = super::script_shell::script_hook_env(policy, exe.as_os_str(), &env);
        env.extend(hook);
    }
    // Maven 3.8's wagon transport (Debian's mvn) takes the proxy from the
    // JVM properties but never answers the 407 with their credential: in a
    // namespace, strict mode's transparent path carries Maven instead.
    if !(marks.in_netns && policy.family == Family::Maven) {
        let props = jvm_env(policy, marks.proxy_url, &|key| env.get(OsStr::new(key)).cloned());
        env.extend(props.into_iter().map(|(key, value)| (OsString::from(key), value)));
    }
    if marks.pip_in_process {
        let features = match env.get(OsStr::new("PIP_USE_FEATURE")).and_then(|v| v.to_str()) {
            Some(theirs) if !theirs.split_whitespace().any(|f| f == "inprocess-build-deps") => {
                format!("{theirs} inprocess-build-deps")
            }
            Some(theirs) => theirs.to_string(),
            None => "inprocess-build-deps".to_string(),
        };
        env.insert(OsString::from("PIP_USE_FEATURE"), OsString::from(features));
    }
    let mut put = |key: &str, value: String| {
        env.insert(OsString::from(key), OsString::from(value));
    };
    for (key, value) in child_env(policy, marks.proxy_url, marks.audit_id) {
        put(key, value);
    }
    for (key, value) in git_proxy_env(inherited.git_config_count(), marks.proxy_url) {
        put(&key, value);
    }

    put(DEPTH_VAR, marks.depth.to_string());
    put(SKIP_VAR, marks.skip.to_string());
    put(REAL_TOOL_VAR, marks.real_tool.to_string());
    match marks.in_netns {
        true => put(NETNS_VAR, "1".to_string()),
        false => {
            env.remove(OsStr::new(NETNS_VAR));
        }
    }
    env
}

/// The environment the child gets on top of the inherited one. Pure.
///
/// All four proxy variables are set alike (clients disagree on which case
/// wins), the user's NO_PROXY is replaced so it cannot open a silent hole,
/// and each tool family gets the override that beats its own config file.
pub(super) fn child_env(policy: &ToolPolicy, proxy_url: &str, audit_id: &str) -> Vec<(&'static str, String)> {
    let mut no_proxy = LOOPBACK_NO_PROXY.to_string();
    for extra in policy.no_proxy {
        no_proxy.push(',');
        no_proxy.push_str(extra);
    }
    let mut env = Vec::with_capacity(16);
    for key in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        env.push((key, proxy_url.to_string()));
    }
    env.push(("NO_PROXY", no_proxy.clone()));
    env.push(("no_proxy", no_proxy.clone()));
    match policy.family {
        Family::Node => {
            // pnpm 10 and npm read npm_config_*; pnpm 11 reads only
            // pnpm_config_* over its .npmrc and workspace file.
            env.push(("npm_config_https_proxy", proxy_url.to_string()));
            env.push(("npm_config_proxy", proxy_url.to_string()));
            env.push(("npm_config_noproxy", no_proxy.clone()));
            env.push(("pnpm_config_https_proxy", proxy_url.to_string()));
            env.push(("pnpm_config_proxy", proxy_url.to_string()));
            env.push(("pnpm_config_noproxy", no_proxy));
            env.push(("YARN_HTTPS_PROXY", proxy_url.to_string()));
            env.push(("YARN_HTTP_PROXY", proxy_url.to_string()));
            // Node itself ignores the proxy variables unless asked, so an
            // install script's own fetch() would go around the gate; so
            // does corepack >= 0.35.
            env.push(("NODE_USE_ENV_PROXY", "1".to_string()));
        }
        Family::Python => env.push(("PIP_PROXY", proxy_url.to_string())),
        Family::Cargo => env.push(("CARGO_HTTP_PROXY", proxy_url.to_string())),
        // JVM tools: see jvm_env, which appends to the user's options.
        Family::Maven | Family::Gradle | Family::Plain => {}
    }
    env.push((AUDIT_ID_VAR, audit_id.to_string()));
    env
}

/// The gate's address and secret, out of the proxy URL the credential
/// spells (`http://cli-guard:TOKEN@HOST:PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProxyParts<'a> {
    host: &'a str,
    port: &'a str,
    user: &'a str,
    password: &'a str,
}

fn proxy_parts(proxy_url: &str) -> Option<ProxyParts<'_>> {
    let rest = proxy_url.strip_prefix("http://")?;
    let (userinfo, authority) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(ProxyParts {
        host,
        port,
        user,
        password,
    })
}

/// For Maven and Gradle: no JVM reads a proxy variable, so the gate goes
/// into `JAVA_TOOL_OPTIONS` as system properties (read by every JVM the
/// tool starts: Gradle's daemon, Surefire's forks, the wrapper), appended
/// to the user's own options so that ours win. Basic is re-enabled for
/// CONNECT (the JDK disables it by default) and the credential goes into
/// `http(s).proxyUser`/`proxyPassword`, which Maven's and Gradle's clients
/// answer a 407 with. `MAVEN_OPTS` tells Maven 3.9's resolver to read the
/// system properties at all; `GRADLE_OPTS` turns the long-lived daemon off,
/// as a daemon started by an earlier invocation holds that one's gate.
/// `existing` reads the inherited value of a variable. Pure.
///
/// The JVM prints `Picked up JAVA_TOOL_OPTIONS: …` on stderr, secret
/// included; the secret is as visible in /proc/PID/environ as HTTPS_PROXY
/// is, and dies with the invocation's gate.
pub(super) fn jvm_env(
    policy: &ToolPolicy,
    proxy_url: &str,
    existing: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, OsString)> {
    if !matches!(policy.family, Family::Maven | Family::Gradle) {
        return Vec::new();
    }
    // The URL is the credential's own spelling; should it ever not parse,
    // point the JVM at a port nothing listens on: fail closed, not around.
    let parts = proxy_parts(proxy_url).unwrap_or(ProxyParts {
        host: "127.0.0.1",
        port: "9",
        user: "",
        password: "",
    });
    let mut non_proxy = "localhost|127.0.0.1|[::1]".to_string();
    for extra in policy.no_proxy {
        non_proxy.push('|');
        non_proxy.push_str(extra);
    }
    let mut properties = Vec::with_capacity(16);
    for scheme in ["https", "http"] {
        properties.push(format!("-D{scheme}.proxyHost={}", parts.host));
        properties.push(format!("-D{scheme}.proxyPort={}", parts.port));
        properties.push(format!("-D{scheme}.proxyUser={}", parts.user));
        properties.push(format!("-D{scheme}.proxyPassword={}", parts.password));
    }
    properties.push(format!("-Dhttp.nonProxyHosts={non_proxy}"));
    properties.push("-Djdk.http.auth.tunneling.disabledSchemes=".to_string());
    properties.push("-Djdk.http.auth.proxying.disabledSchemes=".to_string());
    let append = |key: &str, ours: &[String]| {
        let mut value = existing(key).unwrap_or_default();
        for option in ours {
            if !value.is_empty() {
                value.push(" ");
            }
            value.push(option);
        }
        value
    };
    let mut env = vec![("JAVA_TOOL_OPTIONS", append("JAVA_TOOL_OPTIONS", &properties))];
    match policy.family {
        Family::Maven => {
            let resolver = [
                // Maven 3.9 (resolver 1.9, Apache HttpClient transport).
                "-Daether.connector.http.useSystemProperties=true".to_string(),
                // Maven 4 (resolver 2) when its Apache transport is chosen.
                "-Daether.transport.apache.useSystemProperties=true".to_string(),
            ];
            env.push(("MAVEN_OPTS", append("MAVEN_OPTS", &resolver)));
        }
        Family::Gradle => {
            let daemon = ["-Dorg.gradle.daemon=false".to_string()];
            env.push(("GRADLE_OPTS", append("GRADLE_OPTS", &daemon)));
        }
        _ => {}
    }
    env
}

/// git's `http.proxy` beats the proxy variables, and git is what npm's git
/// dependencies, cargo's `git-fetch-with-cli`, go's direct mode, brew and
/// composer run: pin it to the gate through git's environment config,
/// appended after any entries the user already passes that way. Pure.
pub(super) fn git_proxy_env(existing_count: Option<&str>, proxy_url: &str) -> Vec<(String, String)> {
    // A count that cannot be one more is not a real one: git would fail on
    // it anyway. Start afresh rather than wrap (and lose the pin).
    let (n, count) = existing_count
        .and_then(|c| c.trim().parse::<u32>().ok())
        .and_then(|n| Some((n, n.checked_add(1)?)))
        .unwrap_or((0, 1));
    vec![
        ("GIT_CONFIG_COUNT".to_string(), count.to_string()),
        (format!("GIT_CONFIG_KEY_{n}"), "http.proxy".to_string()),
        (format!("GIT_CONFIG_VALUE_{n}"), proxy_url.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lookup;

    fn policy(name: &str) -> &'static ToolPolicy {
        lookup(name).unwrap_or_else(|| panic!("{name} is pinned"))
    }

    fn get<'a>(env: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn all_proxy_variables_are_set_alike() {
        let env = child_env(policy("npm"), "http://127.0.0.1:1", "id");
        for key in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "npm_config_https_proxy",
            "npm_config_proxy",
            "YARN_HTTPS_PROXY",
        ] {
            assert_eq!(get(&env, key), Some("http://127.0.0.1:1"), "{key}");
        }
        assert_eq!(get(&env, "NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(get(&env, "CLI_GUARD_AUDIT_ID"), Some("id"));
        assert_eq!(get(&env, "CARGO_HTTP_PROXY"), None);
    }

    #[test]
    fn no_proxy_is_loopback_plus_pinned_exceptions() {
        let npm = child_env(policy("npm"), "u", "id");
        assert_eq!(get(&npm, "NO_PROXY"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get(&npm, "npm_config_noproxy"), Some("localhost,127.0.0.1,::1"));
        let aws = child_env(policy("aws"), "u", "id");
        assert_eq!(
            get(&aws, "no_proxy"),
            Some("localhost,127.0.0.1,::1,169.254.169.254,169.254.170.2,fd00:ec2::254")
        );
    }

    #[test]
    fn tool_families_get_their_overrides() {
        assert_eq!(
            get(&child_env(policy("cargo"), "u", "i"), "CARGO_HTTP_PROXY"),
            Some("u")
        );
        assert_eq!(get(&child_env(policy("pip3"), "u", "i"), "PIP_PROXY"), Some("u"));
        assert_eq!(get(&child_env(policy("gh"), "u", "i"), "PIP_PROXY"), None);
    }

    #[test]
    fn pnpm_11_gets_its_own_override() {
        for name in ["pnpm", "pnpx", "pnx"] {
            let env = child_env(policy(name), "u", "i");
            assert_eq!(get(&env, "pnpm_config_https_proxy"), Some("u"), "{name}");
            assert_eq!(get(&env, "pnpm_config_proxy"), Some("u"), "{name}");
            assert_eq!(get(&env, "npm_config_https_proxy"), Some("u"), "{name}");
        }
        for name in ["corepack", "bun", "bunx"] {
            let env = child_env(policy(name), "u", "i");
            assert_eq!(get(&env, "NODE_USE_ENV_PROXY"), Some("1"), "{name}");
            assert_eq!(get(&env, "https_proxy"), Some("u"), "{name}");
            assert_eq!(get(&env, "HTTPS_PROXY"), Some("u"), "{name}");
        }
    }

    const URL: &str = "http://cli-guard:0123456789abcdef0123456789abcdef@127.0.0.1:4321";

    fn jvm(name: &str, inherited: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let existing = |key: &str| {
            inherited
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        };
        jvm_env(policy(name), URL, &existing)
            .into_iter()
            .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn the_credentials_proxy_url_parses() {
        let credential = crate::credential::Credential::from_token("abc".into());
        let url = credential.proxy_url("127.0.0.1:3128".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            proxy_parts(&url),
            Some(ProxyParts {
                host: "127.0.0.1",
                port: "3128",
                user: "cli-guard",
                password: "abc",
            })
        );
        let v6 = credential.proxy_url("[::1]:9".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(proxy_parts(&v6).map(|p| (p.host, p.port)), Some(("::1", "9")));
        assert_eq!(proxy_parts("http://127.0.0.1:1"), None);
        assert_eq!(proxy_parts("socks5://a:b@h:1"), None);
    }

    #[test]
    fn maven_and_gradle_get_the_proxy_as_jvm_properties() {
        for name in ["mvn", "gradle"] {
            let env = jvm(name, &[]);
            let opts = get(&env, "JAVA_TOOL_OPTIONS").unwrap_or_else(|| panic!("{name}"));
            for property in [
                "-Dhttps.proxyHost=127.0.0.1",
                "-Dhttps.proxyPort=4321",
                "-Dhttp.proxyHost=127.0.0.1",
                "-Dhttp.proxyPort=4321",
                "-Dhttps.proxyUser=cli-guard",
                "-Dhttps.proxyPassword=0123456789abcdef0123456789abcdef",
                "-Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]",
            ] {
                assert!(
                    opts.split(' ').any(|o| o == property),
                    "{name}: {property} in {opts}"
                );
            }
            // Basic over CONNECT, which the JDK disables by default.
            assert!(opts
                .split(' ')
                .any(|o| o == "-Djdk.http.auth.tunneling.disabledSchemes="));
        }
        let mvn = jvm("mvn", &[]);
        assert_eq!(
            get(&mvn, "MAVEN_OPTS").map(|o| o.contains("-Daether.connector.http.useSystemProperties=true")),
            Some(true)
        );
        assert_eq!(get(&mvn, "GRADLE_OPTS"), None);
        let gradle = jvm("gradle", &[]);
        assert_eq!(get(&gradle, "GRADLE_OPTS"), Some("-Dorg.gradle.daemon=false"));
        assert_eq!(get(&gradle, "MAVEN_OPTS"), None);
    }

    #[test]
    fn jvm_options_are_appended_to_the_users() {
        let env = jvm(
            "mvn",
            &[
                ("JAVA_TOOL_OPTIONS", "-Xmx2g -Dhttps.proxyHost=corp"),
                ("MAVEN_OPTS", "-Xss4m"),
            ],
        );
        let opts = get(&env, "JAVA_TOOL_OPTIONS").unwrap_or_default();
        assert!(opts.starts_with("-Xmx2g -Dhttps.proxyHost=corp -D"), "{opts}");
        // The last -D of a name wins: ours.
        let last_host = opts.split(' ').rfind(|o| o.starts_with("-Dhttps.proxyHost="));
        assert_eq!(last_host, Some("-Dhttps.proxyHost=127.0.0.1"));
        assert!(get(&env, "MAVEN_OPTS").is_some_and(|o| o.starts_with("-Xss4m -D")));
        let gradle = jvm("gradle", &[("GRADLE_OPTS", "-Xmx1g")]);
        assert_eq!(
            get(&gradle, "GRADLE_OPTS"),
            Some("-Xmx1g -Dorg.gradle.daemon=false")
        );
    }

    #[test]
    fn other_families_get_no_jvm_options() {
        for name in ["npm", "pip", "cargo", "dotnet", "aws"] {
            assert!(jvm(name, &[("JAVA_TOOL_OPTIONS", "-Xmx1g")]).is_empty(), "{name}");
        }
    }

    /// The marks of a first-level child outside a namespace.
    fn jvm_marks() -> ChildMarks<'static> {
        ChildMarks {
            proxy_url: URL,
            audit_id: "id",
            depth: 1,
            skip: "",
            real_tool: "3:4",
            in_netns: false,
            pip_in_process: false,
        }
    }

    #[test]
    fn the_childs_environment_carries_the_jvm_options() {
        let inherited = Env::from_pairs([("JAVA_TOOL_OPTIONS", "-Xmx1g")]);
        let marks = jvm_marks();
        let env = for_child(&inherited, policy("gradle"), marks);
        let get = |k: &str| env.get(&OsString::from(k)).and_then(|v| v.to_str());
        assert!(
            get("JAVA_TOOL_OPTIONS").is_some_and(|o| o.starts_with("-Xmx1g -Dhttps.proxyHost=127.0.0.1 "))
        );
        assert_eq!(get("GRADLE_OPTS"), Some("-Dorg.gradle.daemon=false"));
        let npm = for_child(&inherited, policy("npm"), marks);
        assert_eq!(
            npm.get(&OsString::from("JAVA_TOOL_OPTIONS"))
                .and_then(|v| v.to_str()),
            Some("-Xmx1g")
        );
    }

    #[test]
    fn maven_in_a_namespace_gets_no_jvm_options() {
        let inherited = Env::from_pairs([("JAVA_TOOL_OPTIONS", "-Xmx1g")]);
        let marks = ChildMarks {
            in_netns: true,
            pip_in_process: false,
            ..jvm_marks()
        };
        let get = |env: &BTreeMap<OsString, OsString>, k: &str| {
            env.get(&OsString::from(k))
                .and_then(|v| v.to_str())
                .map(str::to_string)
        };
        let mvn = for_child(&inherited, policy("mvn"), marks);
        assert_eq!(get(&mvn, "JAVA_TOOL_OPTIONS").as_deref(), Some("-Xmx1g"));
        assert_eq!(get(&mvn, "MAVEN_OPTS"), None);
        let gradle = for_child(&inherited, policy("gradle"), marks);
        assert!(get(&gradle, "JAVA_TOOL_OPTIONS").is_some_and(|o| o.contains("-Dhttps.proxyUser=")));
        let plain = for_child(
            &inherited,
            policy("mvn"),
            ChildMarks {
                in_netns: false,
                pip_in_process: false,
                ..marks
            },
        );
        assert!(get(&plain, "JAVA_TOOL_OPTIONS").is_some_and(|o| o.contains("-Dhttps.proxyHost=")));
    }

    #[test]
    fn git_proxy_is_appended_to_the_users_env_config() {
        let fresh = git_proxy_env(None, "u");
        assert_eq!(fresh[0], ("GIT_CONFIG_COUNT".to_string(), "1".to_string()));
        assert_eq!(
            fresh[1],
            ("GIT_CONFIG_KEY_0".to_string(), "http.proxy".to_string())
        );
        assert_eq!(fresh[2], ("GIT_CONFIG_VALUE_0".to_string(), "u".to_string()));
        let after_two = git_proxy_env(Some("2"), "u");
        assert_eq!(after_two[0].1, "3");
        assert_eq!(after_two[1].0, "GIT_CONFIG_KEY_2");
        assert_eq!(git_proxy_env(Some("bogus"), "u")[0].1, "1");
        let overflow = git_proxy_env(Some("4294967295"), "u");
        assert_eq!(overflow[0].1, "1", "no wrap: {overflow:?}");
        assert_eq!(overflow[1].0, "GIT_CONFIG_KEY_0");
    }

    #[test]
    fn the_childs_environment_is_the_inherited_one_with_the_gate_on_top() {
        let inherited = Env::from_pairs([
            ("PATH", "/bin"),
            ("HTTPS_PROXY", "http://elsewhere:1"),
            ("NO_PROXY", "*"),
            ("GIT_CONFIG_COUNT", "1"),
        ]);
        let marks = ChildMarks {
            proxy_url: "http://cli-guard:t@127.0.0.1:9",
            audit_id: "id",
            depth: 2,
            skip: "1:2",
            real_tool: "3:4",
            in_netns: false,
            pip_in_process: false,
        };
        let env = for_child(&inherited, policy("npm"), marks);
        let get = |k: &str| env.get(&OsString::from(k)).and_then(|v| v.to_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("HTTPS_PROXY"), Some("http://cli-guard:t@127.0.0.1:9"));
        assert_eq!(get("NO_PROXY"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get("GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(get("GIT_CONFIG_VALUE_1"), Some("http://cli-guard:t@127.0.0.1:9"));
        assert_eq!(get("CLI_GUARD_AUDIT_ID"), Some("id"));
        assert_eq!(get("CLI_GUARD_DEPTH"), Some("2"));
        assert_eq!(get("CLI_GUARD_SKIP"), Some("1:2"));
        assert_eq!(get("CLI_GUARD_REAL_TOOL"), Some("3:4"));
    }
}
