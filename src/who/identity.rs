//! Whose script a wrapper runs, read from the environment and working
//! directory the package manager gave it (npm's, pnpm's and bun's
//! `npm_package_*` variables), as the gate reads them from /proc once, at
//! registration, before any of the script's code has run. Pure.
//!
//! The name is verified (and a pinned entry honoured) only for the
//! registry's own package of that name: npm says where it fetched it
//! (`npm_package_resolved`, the registry's tarball URL for exactly that
//! name and version); pnpm's store directory encodes `NAME@VERSION` for a
//! registry package and the source for anything else. An alias, a git or
//! tarball dependency, a directory: named, not verified.

use std::collections::HashMap;
use std::path::Path;

use crate::who::actor::Package;
use crate::who::classify::Registered;

/// The registry npm's entries are honoured for.
const NPM_REGISTRY: &str = "https://registry.npmjs.org/";

/// The `NAME=value` entries of a NUL-separated environment block.
pub(crate) fn parse_environ(block: &[u8]) -> HashMap<String, String> {
    block
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a registering wrapper runs: the package its environment and
/// working directory name, and whether it is the project's own script
/// (run in the project, `project`, or a workspace member below it but not
/// in `node_modules`).
pub(crate) fn identify(
    env: &HashMap<String, String>,
    cwd: &Path,
    project: &Path,
) -> Result<Registered, String> {
    let name = match env.get("npm_package_name") {
        None => return Ok(unnamed(cwd, project)),
        Some(name) if valid_name(name) => name,
        Some(_) => {
            return Err(
                "its environment names a package by a name no registry gives (npm_package_name)".into(),
            )
        }
    };
    let version = env.get("npm_package_version").filter(|v| !v.is_empty()).cloned();
    let script = env.get("npm_lifecycle_event").filter(|e| !e.is_empty()).cloned();
    let cwd_text = cwd.to_string_lossy();
    let in_node_modules = cwd_text.contains("/node_modules/");
    let project_script = !in_node_modules && cwd.starts_with(project);
    let (verified, provenance) = if project_script {
        (
            false,
            "the project's own script (it runs in the project)".to_string(),
        )
    } else {
        provenance(name, version.as_deref(), env, &cwd_text)
    };
    Ok(Registered {
        package: Package {
            name: name.clone(),
            version,
            script,
            verified,
            provenance,
        },
        project: project_script,
    })
}

/// A script whose package manager named no package (an `npm exec`
/// without a package.json): the project's when it runs there, else
/// unnamed package code.
fn unnamed(cwd: &Path, project: &Path) -> Registered {
    let project_script = cwd.starts_with(project) && !cwd.to_string_lossy().contains("/node_modules/");
    Registered {
        package: Package {
            name: "(unnamed)".to_string(),
            version: None,
            script: None,
            verified: false,
            provenance: "its package manager named no package".to_string(),
        },
        project: project_script,
    }
}

/// Whether the registry's own `name@version` is what runs in `cwd`, and
/// how the gate knows or why it does not.
fn provenance(name: &str, version: Option<&str>, env: &HashMap<String, String>, cwd: &str) -> (bool, String) {
    let Some(version) = version else {
        return (
            false,
            "named by its package manager, with no version: unverified".to_string(),
        );
    };
    if !cwd.ends_with(&format!("/node_modules/{name}")) {
        return (
            false,
            format!("named {name} by its package manager, but it runs in {cwd}, not node_modules/{name}: unverified"),
        );
    }
    if let Some(resolved) = env.get("npm_package_resolved") {
        let base = name.rsplit('/').next().unwrap_or(name);
        let registry = format!("{NPM_REGISTRY}{name}/-/{base}-{version}.tgz");
        return match *resolved == registry {
            true => (true, format!("npm fetched it from the registry ({resolved})")),
            false => (
                false,
                format!(
                    "npm fetched it from {resolved}, not the registry's {name}: its entry is not honoured"
                ),
            ),
        };
    }
    let store = format!("/node_modules/.pnpm/{}@{version}", name.replace('/', "+"));
    match cwd.find(&store) {
        Some(at) => {
            let rest = &cwd[at + store.len()..];
            let peers_then_package = rest
                .strip_prefix('_')
                .map_or(Some(rest), |r| r.find('/').map(|i| &r[i..]));
            match peers_then_package == Some(&format!("/node_modules/{name}")[..]) {
                true => (
                    true,
                    format!("pnpm's store holds the registry's {name}@{version}"),
                ),
                false => (
                    false,
                    format!("pnpm's store directory {cwd} is not the registry's: unverified"),
                ),
            }
        }
        None => (
            false,
            "its package manager does not say where it fetched it (bun, or a local package): unverified"
                .to_string(),
        ),
    }
}

/// An npm package name: lowercase-ish, no path tricks.
fn valid_name(name: &str) -> bool {
    let body = match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, rest)) if !scope.is_empty() && !rest.contains('/') => rest,
            _ => return false,
        },
        None => name,
    };
    !body.is_empty()
        && name.len() <= 214
        && !body.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@/._-~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const PROJECT: &str = "/work/app";

    #[test]
    fn npm_names_the_registrys_package_verified() {
        let e = env(&[
            ("npm_package_name", "puppeteer"),
            ("npm_package_version", "24.43.1"),
            ("npm_lifecycle_event", "postinstall"),
            (
                "npm_package_resolved",
                "https://registry.npmjs.org/puppeteer/-/puppeteer-24.43.1.tgz",
            ),
        ]);
        let cwd = Path::new("/work/app/node_modules/puppeteer");
        let r = identify(&e, cwd, Path::new(PROJECT)).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.package.verified && !r.project, "{r:?}");
        assert_eq!(r.package.label(), "puppeteer@24.43.1 (postinstall)");
        let scoped = env(&[
            ("npm_package_name", "@prisma/engines"),
            ("npm_package_version", "7.10.1"),
            (
                "npm_package_resolved",
                "https://registry.npmjs.org/@prisma/engines/-/engines-7.10.1.tgz",
            ),
        ]);
        let cwd = Path::new("/work/app/node_modules/@prisma/engines");
        assert!(identify(&scoped, cwd, Path::new(PROJECT)).is_ok_and(|r| r.package.verified));
    }

    #[test]
    fn a_local_tarball_or_an_alias_calling_itself_puppeteer_is_not_verified() {
        let tarball = env(&[
            ("npm_package_name", "puppeteer"),
            ("npm_package_version", "24.43.1"),
            ("npm_package_resolved", "file:../evil.tgz"),
        ]);
        let cwd = Path::new("/work/app/node_modules/puppeteer");
        let r = identify(&tarball, cwd, Path::new(PROJECT)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!r.package.verified);
        assert!(
            r.package.provenance.contains("file:../evil.tgz"),
            "{}",
            r.package.provenance
        );
        let alias_dir = Path::new("/work/app/node_modules/pptr-fake");
        assert!(identify(&tarball, alias_dir, Path::new(PROJECT)).is_ok_and(|r| !r.package.verified));
    }

    #[test]
    fn pnpms_store_directory_vouches_for_a_registry_package() {
        let e = env(&[("npm_package_name", "@scope/a"), ("npm_package_version", "1.0.0")]);
        let ok = Path::new("/w/node_modules/.pnpm/@scope+a@1.0.0_peer@2.0.0/node_modules/@scope/a");
        assert!(identify(&e, ok, Path::new(PROJECT)).is_ok_and(|r| r.package.verified));
        let plain = Path::new("/w/node_modules/.pnpm/@scope+a@1.0.0/node_modules/@scope/a");
        assert!(identify(&e, plain, Path::new(PROJECT)).is_ok_and(|r| r.package.verified));
        let tarball = Path::new("/w/node_modules/.pnpm/@scope+a@file+..+a.tgz/node_modules/@scope/a");
        assert!(identify(&e, tarball, Path::new(PROJECT)).is_ok_and(|r| !r.package.verified));
    }

    #[test]
    fn the_projects_own_scripts_are_the_projects() {
        let e = env(&[
            ("npm_package_name", "app"),
            ("npm_lifecycle_event", "postinstall"),
        ]);
        let root = identify(&e, Path::new(PROJECT), Path::new(PROJECT)).unwrap_or_else(|e| panic!("{e}"));
        assert!(root.project && !root.package.verified);
        let member = identify(&e, Path::new("/work/app/packages/ui"), Path::new(PROJECT));
        assert!(member.is_ok_and(|r| r.project));
    }

    #[test]
    fn no_name_is_unnamed_and_a_bad_one_no_registration() {
        let p = Path::new(PROJECT);
        let unnamed = identify(&env(&[]), Path::new("/tmp/x"), p).unwrap_or_else(|e| panic!("{e}"));
        assert!(!unnamed.project && !unnamed.package.verified);
        assert!(identify(&env(&[]), p, p).is_ok_and(|r| r.project));
        for bad in ["", "../x", "a b", "@/x", "@s/a/b", ".hidden"] {
            assert!(
                identify(&env(&[("npm_package_name", bad)]), p, p).is_err(),
                "{bad}"
            );
        }
        let parsed = parse_environ(b"A=1\0B=x=y\0junk\0\xff=1\0");
        assert_eq!(parsed.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(parsed.len(), 2);
    }
}
