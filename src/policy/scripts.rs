//! What cli-guard reads in a package.json: the script names, for yarn's
//! and pnpm's `yarn NAME` (a script run by name), and the project's direct
//! dependencies, whose pinned entries speak for the project's own scripts.
//! Pure: the caller reads the file.

/// The names under `"scripts"` whose value is a command string, in
/// name order. Anything else (not JSON, no `scripts`, not an object, a value
/// that is not a string) gives no names for it: never an error.
pub(crate) fn script_names(json: &str) -> Vec<String> {
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let Ok(serde_json::Value::Object(package)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let Some(serde_json::Value::Object(scripts)) = package.get("scripts") else {
        return Vec::new();
    };
    scripts
        .iter()
        .filter(|(_, command)| command.is_string())
        .map(|(name, _)| name.clone())
        .collect()
}

/// The names of the direct dependencies (`dependencies`,
/// `devDependencies`, `optionalDependencies`), once each, in that order.
/// Anything that is not such an object gives no names.
pub(crate) fn dependency_names(json: &str) -> Vec<String> {
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let Ok(serde_json::Value::Object(package)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for field in ["dependencies", "devDependencies", "optionalDependencies"] {
        if let Some(serde_json::Value::Object(deps)) = package.get(field) {
            for name in deps.keys() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_dependencies_of_every_kind_once() {
        let json = r#"{"dependencies": {"prisma": "^7", "a": "1"}, "devDependencies": {"puppeteer": "24", "a": "1"},
                       "optionalDependencies": {"fsevents": "*"}, "peerDependencies": {"react": "*"}}"#;
        assert_eq!(dependency_names(json), ["a", "prisma", "puppeteer", "fsevents"]);
        assert!(dependency_names("junk").is_empty());
        assert!(dependency_names(r#"{"dependencies": ["x"]}"#).is_empty());
    }

    #[test]
    fn names_of_string_scripts() {
        let json = r#"{"name": "app", "scripts": {"dev": "vite", "test": "vitest", "build": "tsc"}}"#;
        let mut names = script_names(json);
        names.sort();
        assert_eq!(names, ["build", "dev", "test"]);
    }

    #[test]
    fn a_byte_order_mark_is_tolerated() {
        assert_eq!(
            script_names("\u{feff}{\"scripts\": {\"dev\": \"vite\"}}"),
            ["dev"]
        );
    }

    #[test]
    fn values_that_are_not_commands_are_no_scripts() {
        let json = r#"{"scripts": {"dev": "vite", "odd": 1, "nested": {"a": "b"}, "none": null}}"#;
        assert_eq!(script_names(json), ["dev"]);
    }

    #[test]
    fn junk_gives_no_names() {
        for junk in [
            "",
            "not json",
            "{",
            "[]",
            "\"scripts\"",
            "null",
            r#"{"name": "app"}"#,
            r#"{"scripts": ["dev"]}"#,
            r#"{"scripts": "dev"}"#,
            r#"{"scripts": {"dev": "vite"}} trailing"#,
        ] {
            assert!(script_names(junk).is_empty(), "{junk:?}");
        }
    }
}
