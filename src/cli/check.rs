//! `cli-guard check`: the gate's decision for one target, without dialling.

use crate::exit::{Exit, Failure, CHECK_DENIED};
use crate::policy::authority::parse_authority;
use crate::policy::{self, Decision};

pub const CHECK_HELP: &str = "\
usage: cli-guard check --as TOOL HOST[:PORT]

Prints the decision the gate would make for a CONNECT to HOST:PORT (port 443
if not given) under TOOL's pinned policy, and the rule that makes it, without
dialling. A real dial also checks where the name resolves (loopback, private
and link-local addresses are refused in enforce mode).

exit: 0 allow, 1 deny, 2 usage error.
";

/// `cli-guard check --as TOOL HOST[:PORT]`.
pub fn check(args: &[String]) -> Result<Exit, Failure> {
    let mut tool = None;
    let mut target = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{CHECK_HELP}");
                return Ok(Exit::SUCCESS);
            }
            "--as" => tool = it.next().cloned(),
            a if a.starts_with("--as=") => tool = Some(a["--as=".len()..].to_string()),
            a if a.starts_with('-') => {
                return Err(Failure::usage(format!(
                    "check: unknown option {a:?} (see cli-guard check --help)"
                )))
            }
            a if target.is_none() => target = Some(a.to_string()),
            a => {
                return Err(Failure::usage(format!(
                    "check: unexpected argument {a:?}: one HOST[:PORT] at a time (see cli-guard check --help)"
                )))
            }
        }
    }
    let (Some(tool), Some(target)) = (tool, target) else {
        return Err(Failure::usage(
            "check: usage: cli-guard check --as TOOL HOST[:PORT]",
        ));
    };
    let policy = policy::lookup(&tool).ok_or_else(|| {
        let known: Vec<&str> = policy::tool_names().collect();
        Failure::usage(format!(
            "check: unknown tool {tool:?}; known: {}",
            known.join(", ")
        ))
    })?;
    let with_port = if target.starts_with('[') && target.ends_with(']') || !target.contains(':') {
        format!("{target}:443")
    } else {
        target.clone()
    };
    let authority = match parse_authority(&with_port) {
        Ok(authority) => authority,
        Err(e) => {
            println!("deny  {target}: not a valid target ({e}); the gate would answer 400");
            return Ok(Exit::Code(CHECK_DENIED));
        }
    };
    let decision = policy.decide(&authority);
    let line = match &decision {
        Decision::Allowed(rule) => format!("allow {authority}: {tool}'s rule {rule} (enforce mode)"),
        Decision::Observed => format!("allow {authority}: {tool} is in observe mode: forwarded and logged"),
        Decision::NotAllowed => format!(
            "deny  {authority}: not on {tool}'s allowlist ({}); the gate would answer 403",
            policy.allowlist_summary()
        ),
    };
    println!("{line}");
    Ok(if decision.is_allow() {
        Exit::SUCCESS
    } else {
        Exit::Code(CHECK_DENIED)
    })
}
