//! Who made a connection, as the gate judges and records it: an [`Actor`],
//! what the policy makes of it ([`Actor::acting`]) and what the row says
//! ([`Actor::row`]).

use crate::audit::Process;
use crate::policy::Acting;

/// A package whose code ran, as far as the gate could name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    /// The lifecycle script (`postinstall`), when the package manager said.
    pub(crate) script: Option<String>,
    /// The name was read where package code cannot forge it, and the
    /// package is the registry's own: only then is its entry honoured.
    pub(crate) verified: bool,
    /// How the gate knows the name, or why it is not verified.
    pub(crate) provenance: String,
}

impl Package {
    /// `evil-worm@1.0.0 (postinstall)`, for messages.
    pub(crate) fn label(&self) -> String {
        let mut out = self.name.clone();
        if let Some(version) = &self.version {
            out.push('@');
            out.push_str(version);
        }
        if let Some(script) = &self.script {
            out.push_str(&format!(" ({script})"));
        }
        out
    }
}

/// The process that made a connection, and whose code it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Actor {
    /// The tool itself: the pid the shim spawned. In a fetch and run's run
    /// phase, the program the user asked for (`program`).
    Tool {
        pid: i32,
        exe: Option<String>,
        program: Option<String>,
    },
    /// A program the tool runs for its own fetching (git, a nested
    /// guarded tool), started by the tool or another helper.
    Helper { pid: i32, exe: Option<String> },
    /// Above the gate: the shell or program that ran the tool (package
    /// code cannot become one), judged as the tool.
    Caller { pid: i32, exe: Option<String> },
    /// A package's own code: in a user namespace its script's wrapper
    /// registered (`how`), or below the tool and not the tool's.
    Package {
        pid: i32,
        exe: Option<String>,
        package: Option<Package>,
        how: String,
    },
    /// The project's own scripts (its `postinstall`, a workspace member's).
    Project {
        pid: i32,
        exe: Option<String>,
        package: Package,
        dependencies: Vec<String>,
        how: String,
    },
    /// Nothing the gate could name: gone, unreadable, or not the
    /// invocation's.
    Unknown {
        pid: Option<i32>,
        exe: Option<String>,
        why: String,
    },
}

impl Actor {
    /// What the policy judges it as.
    pub(crate) fn acting(&self) -> Acting<'_> {
        match self {
            Actor::Tool { .. } | Actor::Helper { .. } | Actor::Caller { .. } => Acting::Tool,
            Actor::Package { package, .. } => match package {
                Some(p) => Acting::Package {
                    name: &p.name,
                    verified: p.verified,
                },
                None => Acting::Package {
                    name: "",
                    verified: false,
                },
            },
            Actor::Project { dependencies, .. } => Acting::Project { dependencies },
            Actor::Unknown { .. } => Acting::Unknown,
        }
    }

    /// Whether the policy judges it as package code rather than the tool.
    pub(crate) fn is_package_code(&self) -> bool {
        self.acting() != Acting::Tool
    }

    /// The row's `process`.
    pub(crate) fn row(&self) -> Box<Process> {
        let package_fields = |p: &Package| {
            (
                Some(p.name.clone()),
                p.version.clone(),
                p.script.clone(),
                Some(p.verified),
            )
        };
        let none = (None, None, None, None);
        let (pid, exe, actor, (package, version, script, verified), how) = match self {
            Actor::Tool { pid, exe, program } => (
                Some(*pid),
                exe.clone(),
                if program.is_some() { "program" } else { "tool" },
                (program.clone(), None, None, None),
                match program {
                    Some(_) => "the pid the shim spawned: the program this fetch and run ran".to_string(),
                    None => "the pid the shim spawned".to_string(),
                },
            ),
            Actor::Helper { pid, exe } => (
                Some(*pid),
                exe.clone(),
                "helper",
                none,
                "a program the tool runs for its own fetching, started by the tool".to_string(),
            ),
            Actor::Caller { pid, exe } => (
                Some(*pid),
                exe.clone(),
                "caller",
                none,
                "above the shim: the shell or program that ran the tool".to_string(),
            ),
            Actor::Package {
                pid,
                exe,
                package,
                how,
            } => (
                Some(*pid),
                exe.clone(),
                "package",
                package.as_ref().map_or(none, package_fields),
                match package {
                    Some(p) => format!("{how}; {}", p.provenance),
                    None => how.clone(),
                },
            ),
            Actor::Project {
                pid,
                exe,
                package,
                how,
                ..
            } => (
                Some(*pid),
                exe.clone(),
                "project",
                package_fields(package),
                format!("{how}; {}", package.provenance),
            ),
            Actor::Unknown { pid, exe, why } => (*pid, exe.clone(), "unknown", none, why.clone()),
        };
        Box::new(Process {
            pid,
            exe,
            actor: actor.to_string(),
            package,
            version,
            script,
            verified,
            how,
        })
    }
}

/// Who a row's process was, in a few words, when it ran a package's code
/// (or the gate could not name it): `evil-worm@1.0.0 (postinstall)`, or
/// `the project's own app@1.0.0 (postinstall)` for the project's script.
/// `None` for the tool, its helpers and its caller.
pub(crate) fn package_code_label(process: &Process) -> Option<String> {
    let own = match process.actor.as_str() {
        "project" => "the project's own ",
        _ => "",
    };
    match process.actor.as_str() {
        "package" | "project" => Some(match &process.package {
            Some(name) => {
                let package = Package {
                    name: name.clone(),
                    version: process.version.clone(),
                    script: process.script.clone(),
                    verified: false,
                    provenance: String::new(),
                };
                format!("{own}{}", package.label())
            }
            None => "package code whose package could not be named".to_string(),
        }),
        "unknown" => Some("a process the gate could not name".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worm(verified: bool) -> Package {
        Package {
            name: "evil-worm".into(),
            version: Some("1.0.0".into()),
            script: Some("postinstall".into()),
            verified,
            provenance: "npm's script environment".into(),
        }
    }

    #[test]
    fn a_package_reads_as_its_name_version_and_script() {
        let actor = Actor::Package {
            pid: 7,
            exe: Some("/usr/bin/curl".into()),
            package: Some(worm(false)),
            how: "user namespace 4026532243 registered by cli-guard-sh".into(),
        };
        let row = actor.row();
        assert_eq!(
            package_code_label(&row).as_deref(),
            Some("evil-worm@1.0.0 (postinstall)")
        );
        assert_eq!(row.actor, "package");
        assert_eq!(row.package.as_deref(), Some("evil-worm"));
        assert_eq!(row.script.as_deref(), Some("postinstall"));
        assert_eq!(row.verified, Some(false));
        assert!(row.how.contains("registered by cli-guard-sh"), "{}", row.how);
        assert!(actor.is_package_code());
        assert_eq!(
            actor.acting(),
            Acting::Package {
                name: "evil-worm",
                verified: false
            }
        );
    }

    #[test]
    fn the_projects_own_script_reads_as_the_projects() {
        let project = Actor::Project {
            pid: 8,
            exe: None,
            package: Package {
                name: "app".into(),
                ..worm(false)
            },
            dependencies: vec![],
            how: "registered".into(),
        };
        assert_eq!(
            package_code_label(&project.row()).as_deref(),
            Some("the project's own app@1.0.0 (postinstall)")
        );
        let nameless = Actor::Package {
            pid: 7,
            exe: None,
            package: None,
            how: "below the tool".into(),
        };
        assert_eq!(
            package_code_label(&nameless.row()).as_deref(),
            Some("package code whose package could not be named")
        );
    }

    #[test]
    fn the_tool_and_its_helpers_act_as_the_tool() {
        let tool = Actor::Tool {
            pid: 42,
            exe: Some("/usr/bin/node".into()),
            program: None,
        };
        assert_eq!(tool.acting(), Acting::Tool);
        assert_eq!(tool.row().actor, "tool");
        assert_eq!(package_code_label(&tool.row()), None);
        let helper = Actor::Helper {
            pid: 43,
            exe: Some("/usr/bin/git".into()),
        };
        assert!(!helper.is_package_code());
        let unknown = Actor::Unknown {
            pid: None,
            exe: None,
            why: "the client had gone".into(),
        };
        assert_eq!(unknown.acting(), Acting::Unknown);
        assert_eq!(unknown.row().pid, None);
    }
}
