//! The pinned policy as an operator reviews it: `cli-guard policy`'s output
//! is kept in `tests/golden/policy.txt`, so every change to what a tool may
//! reach shows in review as a plain-text diff of that file, and the
//! README's table is checked against the same output.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::*;

/// Set to rewrite the golden copy from the binary (then review its diff).
const BLESS: &str = "CLI_GUARD_TEST_BLESS";

fn policy_output(g: &Sandbox, args: &[&str]) -> String {
    let out = g.run(g.cli_guard(std::iter::once("policy").chain(args.iter().copied())));
    out.expect_code(0);
    out.stdout()
}

#[test]
fn the_policy_is_the_golden_copy() {
    let g = Sandbox::new();
    let printed = policy_output(&g, &[]);
    let golden = Path::new(REPO).join("tests/golden/policy.txt");
    if std::env::var_os(BLESS).is_some() {
        std::fs::write(&golden, &printed).unwrap();
    }
    let kept = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        printed == kept,
        "`cli-guard policy` no longer matches tests/golden/policy.txt. If the policy change is \
         intended, rerun with {BLESS}=1 and commit the file's diff for review.\n--- golden\n{kept}\n--- printed\n{printed}"
    );
}

/// The README's "The pinned policy" table: each row's tool names, mode and
/// the host names it lists.
fn readme_table() -> Vec<(Vec<String>, String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let section = readme
        .split("## The pinned policy")
        .nth(1)
        .and_then(|s| s.split("| tool | mode | allowlist |").nth(1))
        .unwrap_or_else(|| panic!("README has no pinned policy table"));
    section
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let names = cells[0]
                .split('(')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            let hosts = cells[2]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                .filter(|w| w.contains('.') && w.chars().any(|c| c.is_ascii_alphabetic()))
                .filter(|w| w.split('.').count() >= 2 && !w.ends_with('.'))
                .map(str::to_string)
                .collect();
            (names, cells[1].to_string(), hosts)
        })
        .collect()
}

#[test]
fn the_readme_table_says_what_the_policy_says() {
    let g = Sandbox::new();
    let table = readme_table();
    let tools: Vec<String> = policy_output(&g, &["--names"])
        .lines()
        .filter(|name| !name.starts_with("python"))
        .map(str::to_string)
        .collect();
    assert!(tools.len() > 20, "{tools:?}");
    for tool in &tools {
        let Some((_, mode, hosts)) = table.iter().find(|(names, _, _)| names.contains(tool)) else {
            panic!("README's pinned policy table has no row for {tool}");
        };
        let first = policy_output(&g, &[tool]);
        let first = first.lines().nth(1).unwrap_or("");
        let fields: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(
            fields.get(1).copied(),
            Some(mode.as_str()),
            "{tool}'s mode: {first}"
        );
        if mode == "enforce" {
            let pinned: BTreeSet<String> = fields[2..]
                .iter()
                .map(|h| h.trim_end_matches(',').trim_end_matches(":443").to_string())
                .collect();
            assert_eq!(
                &pinned, hosts,
                "{tool}: the README's hosts against the pinned ones"
            );
        }
    }
}
