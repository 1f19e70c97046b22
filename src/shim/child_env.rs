//! The child's environment: the proxy variables, each tool family's
//! override of its own config, git's proxy, and cli-guard's own markers, on
//! top of the inherited environment. Pure.

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::env::{Env, AUDIT_ID_VAR, DEPTH_VAR, NETNS_VAR, REAL_TOOL_VAR, SKIP_VAR};
use crate::policy::{Family, ToolPolicy};

/// Loopback, always bypassed: a CONNECT proxy cannot carry it anyway.
const LOOPBACK_NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// What the child's environment is made of, beyond the inherited one.
#[derive(Debug, Clone, Copy)]
pub struct ChildMarks<'a> {
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
}

/// The child's whole environment: `inherited` with every override applied.
pub fn for_child(
    inherited: &Env,
    policy: &ToolPolicy,
    marks: ChildMarks<'_>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = inherited.vars().collect();
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
    if marks.in_netns {
        put(NETNS_VAR, "1".to_string());
    }
    if !marks.in_netns {
        env.remove(&OsString::from(NETNS_VAR));
    }
    env
}

/// The environment the child gets on top of the inherited one. Pure.
///
/// All four proxy variables are set alike (clients disagree on which case
/// wins), the user's NO_PROXY is replaced so it cannot open a silent hole,
/// and each tool family gets the override that beats its own config file.
pub fn child_env(policy: &ToolPolicy, proxy_url: &str, audit_id: &str) -> Vec<(&'static str, String)> {
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
            env.push(("npm_config_https_proxy", proxy_url.to_string()));
            env.push(("npm_config_proxy", proxy_url.to_string()));
            env.push(("npm_config_noproxy", no_proxy));
            env.push(("YARN_HTTPS_PROXY", proxy_url.to_string()));
            env.push(("YARN_HTTP_PROXY", proxy_url.to_string()));
            // Node itself ignores the proxy variables unless asked, so an
            // install script's own fetch() would go around the gate.
            env.push(("NODE_USE_ENV_PROXY", "1".to_string()));
        }
        Family::Python => env.push(("PIP_PROXY", proxy_url.to_string())),
        Family::Cargo => env.push(("CARGO_HTTP_PROXY", proxy_url.to_string())),
        Family::Maven | Family::Gradle | Family::Plain => {}
    }
    env.push((AUDIT_ID_VAR, audit_id.to_string()));
    env
}

/// git's `http.proxy` beats the proxy variables, and git is what npm's git
/// dependencies, cargo's `git-fetch-with-cli`, go's direct mode, brew and
/// composer run: pin it to the gate through git's environment config,
/// appended after any entries the user already passes that way. Pure.
pub fn git_proxy_env(existing_count: Option<&str>, proxy_url: &str) -> Vec<(String, String)> {
    let n = existing_count
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0);
    vec![
        ("GIT_CONFIG_COUNT".to_string(), (n + 1).to_string()),
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
