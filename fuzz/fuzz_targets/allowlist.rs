//! The allowlist matcher: anything it allows is a name the allowlist names,
//! checked against an independent label-by-label oracle.
#![no_main]

use cli_guard::{parse_authority, Host};
use cli_guard::{Decision, Rule, TOOLS};
use libfuzzer_sys::fuzz_target;

/// Whether `rule` names `name`: the same labels, or (for `*.suffix`) one or
/// more labels followed by exactly the suffix's labels.
fn oracle(rule: &Rule, name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    match rule.pattern.strip_prefix("*.") {
        Some(suffix) => {
            let want: Vec<&str> = suffix.split('.').collect();
            labels.len() > want.len() && labels[labels.len() - want.len()..] == want[..]
        }
        None => labels == rule.pattern.split('.').collect::<Vec<_>>(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = parse_authority(text) else {
        return;
    };
    for policy in TOOLS {
        let decision = policy.decide(&target);
        let named = match &target.host {
            Host::Name(name) => policy
                .allow
                .iter()
                .any(|rule| rule.ports.contains(&target.port) && oracle(rule, name)),
            Host::Ip(_) => false,
        };
        match decision {
            Decision::Allowed(rule) => {
                let Host::Name(name) = &target.host else {
                    panic!("{} allowed an IP literal: {target}", policy.name);
                };
                assert!(rule.ports.contains(&target.port) && oracle(&rule, name), "{}: {rule} allowed {target}", policy.name);
            }
            Decision::NotAllowed => assert!(!named, "{} refused {target}, which its allowlist names", policy.name),
            Decision::Observed => assert!(policy.allow.is_empty()),
            // Package entries speak only for a package's code (`decide_as`).
            Decision::Entry(..) | Decision::PackageCode => {
                panic!("{}: the tool's own decision for {target} is a package's: {decision:?}", policy.name)
            }
        }
    }
});
