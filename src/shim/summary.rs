//! The lines on stderr after the tool exits: one per distinct refusal,
//! worded so that neither a person nor an agent mistakes a block for a
//! network fault, and what to do next.

use crate::gate::{Denial, Summary};
use crate::policy::{Family, ToolPolicy};

/// One stderr line per distinct refusal, after the child exits, worded so
/// that neither a person nor an agent mistakes it for a network fault; at
/// most a screenful, however many requests were refused.
pub(super) fn print_denials(policy: &ToolPolicy, summary: &Summary, audit_id: &str, tool_failed: bool) {
    for denial in &summary.denials {
        eprintln!("{}", denial_line(policy, denial, audit_id));
    }
    let tool = policy.name;
    // Most are glibc probing for nscd, harmless and in every install: said
    // only when the tool failed, where one may be why.
    if summary.unix_sockets > 0 && tool_failed {
        eprintln!("{}", unix_line(tool, summary.unix_sockets, audit_id));
    }
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
            "{}",
            strangers_line(policy, summary.strangers, &unlogged, audit_id)
        );
    }
}

/// The line when a tool in strict mode's read-only tree failed: where it
/// may write. The kernel refuses a write elsewhere with EROFS ("Read-only
/// file system"), which the tool's own error names with its path.
pub(super) fn read_only_line(tool: &str, writable: &[std::path::PathBuf]) -> String {
    let places: Vec<String> = writable.iter().map(|p| p.display().to_string()).collect();
    format!(
        "cli-guard: {tool} failed in strict mode, where it may write only {}. If an error above says \
         \"Read-only file system\" (EROFS), it names a path outside them: run {tool} from the project's \
         directory; a place of the tool's own that is missing is a code change in its policy \
         (`cli-guard policy {tool}`).",
        places.join(", ")
    )
}

/// The line for refused unix sockets, when the tool failed.
fn unix_line(tool: &str, refused: u64, audit_id: &str) -> String {
    format!(
        "cli-guard: strict mode refused {tool} {refused} unix socket(s) (socket(AF_UNIX)): nothing in strict mode \
         may talk to a daemon outside (Docker, ssh-agent, the session bus); if {tool} failed for want of one, run \
         it with CLI_GUARD_STRICT=off where you trust what it installs. `cli-guard audit --id {audit_id}` names \
         each program that asked."
    )
}

/// The line for requests without the credential. From a JVM tool they are
/// most likely its own: the JDK sends the credential only after a 407, and
/// some transports (Maven 3.8's wagon) never do.
fn strangers_line(policy: &ToolPolicy, strangers: u64, unlogged: &str, audit_id: &str) -> String {
    let tool = policy.name;
    let why = match policy.family {
        Family::Maven | Family::Gradle => format!(
            "most likely {tool}'s own: its Java transport did not answer the 407 with the credential, so \
             it could reach nothing through the gate. Run it where strict mode works (`cli-guard doctor`): \
             there its connections are gated by name without a credential"
        ),
        _ => "another local process tried to use this gate".to_string(),
    };
    format!(
        "cli-guard: {strangers} requests without {tool}'s proxy credential were refused (407 or malformed): \
         {why}{unlogged} (audit id {audit_id})."
    )
}

/// The summary line for one refusal: what to do next depends on why.
fn denial_line(policy: &ToolPolicy, denial: &Denial, audit_id: &str) -> String {
    let tool = policy.name;
    let target = &denial.target;
    let status = denial.status;
    if let Some(by) = &denial.by {
        let reason = denial
            .reason
            .strip_prefix(&format!("made by {by}: "))
            .unwrap_or(&denial.reason);
        if denial.direct {
            return format!(
                "cli-guard: {by} tried to reach {target} directly, ignoring the proxy, under {tool}, and strict \
                 mode refused it ({status}): {reason}. A package's install or build script is judged apart from \
                 {tool}: this is policy, not a network fault (audit id {audit_id})."
            );
        }
        return format!(
            "cli-guard: {by} was refused {target} ({status}), under {tool}: {reason}. A package's install or \
             build script is judged apart from {tool}; a host it needs is a pinned package entry, a code change \
             for an operator (`cli-guard audit --id {audit_id} --suggest`)."
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lookup;

    #[test]
    fn requests_without_the_credential_from_a_jvm_tool_are_named_as_its_own() {
        let pinned = |name| lookup(name).unwrap_or_else(|| panic!("{name} is pinned"));
        let mvn = strangers_line(pinned("mvn"), 3, "", "id");
        assert!(
            mvn.contains("mvn's own") && mvn.contains("cli-guard doctor"),
            "{mvn}"
        );
        let npm = strangers_line(pinned("npm"), 3, "", "id");
        assert!(npm.contains("another local process"), "{npm}");
    }

    #[test]
    fn a_packages_refusal_names_the_package_first() {
        let npm = lookup("npm").unwrap_or_else(|| panic!("npm is pinned"));
        let denial = Denial {
            target: "registry.npmjs.org:443".into(),
            status: 403,
            reason: "made by evil-worm@1.0.0 (postinstall): a package's own code may not reach it".into(),
            direct: false,
            by: Some("evil-worm@1.0.0 (postinstall)".into()),
        };
        let line = denial_line(npm, &denial, "ID");
        assert!(
            line.starts_with("cli-guard: evil-worm@1.0.0 (postinstall) was refused registry.npmjs.org:443 (403), under npm: a package's own code"),
            "{line}"
        );
        assert!(line.contains("--suggest"), "{line}");
    }
}
