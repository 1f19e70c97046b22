//! Config files that beat the gate's proxy variables with no variable to
//! override them: a uv.toml `https-proxy` (uv then ignores the environment
//! entirely), .condarc `proxy_servers`, NuGet.Config `http_proxy`, Maven's
//! settings.xml `<proxies>`, and `systemProp.http(s).proxyHost` in
//! gradle.properties. Strict mode's transparent path gates such a tool
//! anyway (its dial to the configured proxy is refused); without strict
//! mode the shim finds them here and says so on stderr. Pure: the caller
//! reads the files (`files` answers a path's text, or `None`).
//!
//! pnpm 11's .npmrc and workspace `https-proxy` need no warning:
//! `pnpm_config_https_proxy`, which the child gets, beats them.

use std::path::{Path, PathBuf};

/// Where config files are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Places {
    /// The invocation's working directory; project files are looked for in
    /// it and every directory above it.
    pub cwd: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$GRADLE_USER_HOME`, else `~/.gradle`.
    pub gradle_user_home: Option<PathBuf>,
}

/// One line per config file that would send `tool` around the gate: the
/// file, the setting, and what to do. Empty when none does.
pub(super) fn config_overrides(
    tool: &str,
    places: &Places,
    files: &dyn Fn(&Path) -> Option<String>,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |path: PathBuf, setting: Option<String>, what: &str| {
        if let Some(setting) = setting {
            found.push(format!(
                "cli-guard: {tool}: {} sets {setting}, which {what}; remove it, or run with \
                 CLI_GUARD_STRICT=require so that strict mode gates the tool anyway",
                path.display()
            ));
        }
    };
    match tool {
        // pipx and hatch install through uv when they use it.
        "uv" | "uvx" | "pipx" | "hatch" => {
            let mut paths = Vec::new();
            for dir in places.cwd.ancestors() {
                paths.push((dir.join("uv.toml"), false));
                paths.push((dir.join("pyproject.toml"), true));
            }
            if let Some(config) = &places.xdg_config_home {
                paths.push((config.join("uv/uv.toml"), false));
            }
            paths.push((PathBuf::from("/etc/uv/uv.toml"), false));
            for (path, pyproject) in paths {
                let setting = files(&path).and_then(|text| uv_proxy(&text, pyproject));
                check(
                    path,
                    setting,
                    "makes uv drop the environment's proxy (the gate) and use that proxy instead \
                     (no UV_ variable overrides it; UV_NO_CONFIG=1 drops every uv config file)",
                );
            }
        }
        "conda" | "mamba" | "micromamba" => {
            let mut paths = vec![
                PathBuf::from("/etc/conda/.condarc"),
                PathBuf::from("/etc/conda/condarc"),
            ];
            if let Some(config) = &places.xdg_config_home {
                paths.push(config.join("conda/.condarc"));
                paths.push(config.join("conda/condarc"));
            }
            if let Some(home) = &places.home {
                paths.push(home.join(".condarc"));
                paths.push(home.join(".conda/.condarc"));
                paths.push(home.join(".conda/condarc"));
                if tool != "conda" {
                    paths.push(home.join(".mambarc"));
                }
            }
            // conda (requests) lets HTTPS_PROXY beat a plain `https` key,
            // not a `scheme://host` one; for libmamba it is unverified.
            let any_key = tool != "conda";
            for path in paths {
                let setting = files(&path).and_then(|text| conda_proxy(&text, any_key));
                check(path, setting, "beats HTTPS_PROXY with no variable to override it");
            }
        }
        "dotnet" => {
            let mut paths = Vec::new();
            for dir in places.cwd.ancestors() {
                for name in ["NuGet.Config", "nuget.config", "NuGet.config"] {
                    paths.push(dir.join(name));
                }
            }
            if let Some(home) = &places.home {
                paths.push(home.join(".nuget/NuGet/NuGet.Config"));
            }
            if let Some(config) = &places.xdg_config_home {
                paths.push(config.join("NuGet/NuGet.Config"));
            }
            for path in paths {
                let setting = files(&path).and_then(|text| nuget_proxy(&text));
                check(
                    path,
                    setting,
                    "NuGet uses ahead of HTTPS_PROXY, with no variable to override it",
                );
            }
        }
        "mvn" => {
            if let Some(home) = &places.home {
                let path = home.join(".m2/settings.xml");
                let setting = files(&path).and_then(|text| maven_proxy(&text));
                check(path, setting, "Maven uses ahead of the gate's system properties");
            }
        }
        "gradle" => {
            let mut paths: Vec<PathBuf> = places
                .cwd
                .ancestors()
                .map(|d| d.join("gradle.properties"))
                .collect();
            if let Some(home) = &places.gradle_user_home {
                paths.push(home.join("gradle.properties"));
            }
            for path in paths {
                let setting = files(&path).and_then(|text| gradle_proxy(&text));
                check(path, setting, "Gradle sets over the gate's system properties");
            }
        }
        _ => {}
    }
    found
}

/// The key of a `key = value` line (TOML or properties), comments and
/// blank lines giving none.
fn key_of(line: &str, separator: char) -> Option<&str> {
    let line = line.trim();
    if line.starts_with('#') || line.starts_with('!') {
        return None;
    }
    let (key, _) = line.split_once(separator)?;
    Some(key.trim().trim_matches('"'))
}

/// uv's `http-proxy`/`https-proxy`, at the top of a uv.toml or in a
/// pyproject's `[tool.uv]` table.
fn uv_proxy(text: &str, pyproject: bool) -> Option<String> {
    let mut in_table = !pyproject;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_table = if pyproject {
                trimmed.trim_start_matches('[').trim_end_matches(']').trim() == "tool.uv"
            } else {
                false
            };
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(key @ ("https-proxy" | "http-proxy")) = key_of(line, '=') {
            return Some(format!(
                "`{key}`{}",
                if pyproject { " under [tool.uv]" } else { "" }
            ));
        }
    }
    None
}

/// A .condarc `proxy_servers` entry that beats HTTPS_PROXY: a
/// `scheme://host` key (any key with `any_key`).
fn conda_proxy(text: &str, any_key: bool) -> Option<String> {
    let mut in_block = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if !indented {
            in_block = key_of(line, ':') == Some("proxy_servers");
            continue;
        }
        if !in_block {
            continue;
        }
        let Some(key) = line
            .trim()
            .split_once(": ")
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        else {
            continue;
        };
        if any_key || key.contains("://") {
            return Some(format!("proxy_servers `{key}`"));
        }
    }
    None
}

/// NuGet.Config's `<add key="http_proxy" …/>`.
fn nuget_proxy(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    ["key=\"http_proxy\"", "key='http_proxy'"]
        .iter()
        .any(|needle| compact.contains(needle))
        .then(|| "`http_proxy`".to_string())
}

/// settings.xml's `<proxies><proxy>`, unless every one is
/// `<active>false</active>`.
fn maven_proxy(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let proxies = compact.split("<proxy>").skip(1);
    proxies
        .map(|p| p.split("</proxy>").next().unwrap_or(""))
        .any(|p| !p.contains("<active>false</active>"))
        .then(|| "an active <proxy>".to_string())
}

/// gradle.properties' `systemProp.http(s).proxyHost`.
fn gradle_proxy(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let key = key_of(line, '=').or_else(|| key_of(line, ':'))?;
        matches!(key, "systemProp.https.proxyHost" | "systemProp.http.proxyHost").then(|| format!("`{key}`"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn places() -> Places {
        Places {
            cwd: PathBuf::from("/work/app"),
            home: Some(PathBuf::from("/home/u")),
            xdg_config_home: Some(PathBuf::from("/home/u/.config")),
            gradle_user_home: Some(PathBuf::from("/home/u/.gradle")),
        }
    }

    fn overrides(tool: &str, files: &[(&str, &str)]) -> Vec<String> {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_string()))
            .collect();
        config_overrides(tool, &places(), &|p| files.get(p).cloned())
    }

    #[test]
    fn a_uv_toml_https_proxy_is_named() {
        for path in [
            "/work/app/uv.toml",
            "/work/uv.toml",
            "/home/u/.config/uv/uv.toml",
            "/etc/uv/uv.toml",
        ] {
            let found = overrides(
                "uv",
                &[(path, "index-url = \"x\"\nhttps-proxy = \"http://corp:3128\"\n")],
            );
            assert_eq!(found.len(), 1, "{path}: {found:?}");
            assert!(
                found[0].contains(path) && found[0].contains("`https-proxy`"),
                "{}",
                found[0]
            );
            assert!(found[0].contains("CLI_GUARD_STRICT=require"), "{}", found[0]);
        }
        assert_eq!(
            overrides("uvx", &[("/work/app/uv.toml", "http-proxy = \"x\"")]).len(),
            1
        );
        assert_eq!(
            overrides("pipx", &[("/work/app/uv.toml", "http-proxy = \"x\"")]).len(),
            1
        );
    }

    #[test]
    fn a_pyproject_counts_only_under_tool_uv() {
        let ours = "[project]\nname = \"a\"\n[tool.uv]\nhttps-proxy = \"http://corp:1\"\n";
        let found = overrides("uv", &[("/work/app/pyproject.toml", ours)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("under [tool.uv]"), "{}", found[0]);
        let elsewhere = "[tool.other]\nhttps-proxy = \"x\"\n[tool.uv]\nindex-url = \"y\"\n";
        assert!(overrides("uv", &[("/work/app/pyproject.toml", elsewhere)]).is_empty());
    }

    #[test]
    fn comments_and_other_keys_are_no_override() {
        assert!(overrides(
            "uv",
            &[("/work/app/uv.toml", "# https-proxy = \"x\"\nno-proxy = [\"a\"]\n")]
        )
        .is_empty());
        assert!(overrides("uv", &[]).is_empty());
        assert!(overrides("npm", &[("/work/app/uv.toml", "https-proxy = \"x\"")]).is_empty());
    }

    #[test]
    fn condarc_scheme_host_keys_beat_the_environment() {
        let rc = "channels:\n  - conda-forge\nproxy_servers:\n  https://repo.anaconda.com: http://corp:1\n";
        let found = overrides("conda", &[("/home/u/.condarc", rc)]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("proxy_servers `https://repo.anaconda.com`"),
            "{}",
            found[0]
        );
        // A plain `https` key loses to HTTPS_PROXY in conda.
        let plain = "proxy_servers:\n  https: http://corp:1\n  http: http://corp:1\n";
        assert!(overrides("conda", &[("/home/u/.condarc", plain)]).is_empty());
        // libmamba: which wins is unverified, so any key is named.
        assert_eq!(overrides("micromamba", &[("/home/u/.mambarc", plain)]).len(), 1);
        assert_eq!(overrides("mamba", &[("/etc/conda/.condarc", plain)]).len(), 1);
    }

    #[test]
    fn nuget_config_http_proxy_is_named() {
        let config = "<configuration>\n  <config>\n    <add key=\"http_proxy\" value=\"http://corp:1\" />\n  </config>\n</configuration>";
        let found = overrides("dotnet", &[("/work/NuGet.Config", config)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("/work/NuGet.Config") && found[0].contains("`http_proxy`"));
        let other =
            "<configuration><config><add key=\"globalPackagesFolder\" value=\"x\"/></config></configuration>";
        assert!(overrides("dotnet", &[("/work/app/nuget.config", other)]).is_empty());
    }

    #[test]
    fn maven_settings_proxies_are_named_unless_inactive() {
        let active = "<settings><proxies><proxy><id>c</id><host>corp</host></proxy></proxies></settings>";
        assert_eq!(overrides("mvn", &[("/home/u/.m2/settings.xml", active)]).len(), 1);
        let inactive = "<settings><proxies><proxy>\n<active> false </active><host>corp</host></proxy></proxies></settings>";
        assert!(overrides("mvn", &[("/home/u/.m2/settings.xml", inactive)]).is_empty());
    }

    #[test]
    fn gradle_properties_proxy_host_is_named() {
        let props = "org.gradle.jvmargs=-Xmx2g\nsystemProp.https.proxyHost=corp\n";
        assert_eq!(
            overrides("gradle", &[("/work/app/gradle.properties", props)]).len(),
            1
        );
        assert_eq!(
            overrides("gradle", &[("/home/u/.gradle/gradle.properties", props)]).len(),
            1
        );
        assert!(overrides(
            "gradle",
            &[("/work/app/gradle.properties", "#systemProp.https.proxyHost=x\n")]
        )
        .is_empty());
    }
}
