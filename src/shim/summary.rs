//! The lines on stderr after the tool exits: one per distinct refusal,
//! worded so that neither a person nor an agent mistakes a block for a
//! network fault, and what to do next.

use crate::gate::{Denial, Summary};
use crate::policy::ToolPolicy;

/// One stderr line per distinct refusal, after the child exits, worded so
/// that neither a person nor an agent mistakes it for a network fault; at
/// most a screenful, however many requests were refused.
pub fn print_denials(policy: &ToolPolicy, summary: &Summary, audit_id: &str) {
    for denial in &summary.denials {
        eprintln!("{}", denial_line(policy, denial, audit_id));
    }
    let tool = policy.name;
    if summary.unlisted > 0 {
        eprintln!(
            "cli-guard: {tool} was refused {} more hosts; `cli-guard audit --id {audit_id}` lists every row.",
            summary.unlisted
        );
    }
    if summary.strangers > 0 {
        let unlogged = match summary.suppressed {
            0 => String::new(),
            n => format!(
                "; {n} of them past the first {} are counted, not logged one by one",
                summary.strangers - n
            ),
        };
        eprintln!(
            "cli-guard: {} requests without {tool}'s proxy credential were refused (407 or malformed): \
             another local process tried to use this gate{unlogged} (audit id {audit_id}).",
            summary.strangers
        );
    }
}

/// The summary line for one refusal: what to do next depends on why.
fn denial_line(policy: &ToolPolicy, denial: &Denial, audit_id: &str) -> String {
    let tool = policy.name;
    let target = &denial.target;
    let status = denial.status;
    if denial.direct {
        return format!(
            "cli-guard: {tool} tried to reach {target} directly, ignoring the proxy, and strict mode refused it \
             ({status}): {}. This is policy, not a network fault: do not retry (audit id {audit_id}).",
            denial.reason
        );
    }
    let next = match status {
        // The reason says which: not on the allowlist, or resolved to an
        // address the gate will not dial.
        403 => format!(
            "{}. This is policy, not a network fault: do not retry; \
             an allowlist change is a code change for an operator",
            denial.reason
        ),
        405 => {
            "plaintext HTTP through the gate is refused, never downgraded: use an https:// URL".to_string()
        }
        _ => format!(
            "{}. Refused before any dial: the request is at fault, not the network",
            denial.reason
        ),
    };
    format!("cli-guard: {tool} was refused {target} ({status}): {next} (audit id {audit_id}).")
}
