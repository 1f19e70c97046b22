//! Who acted: the process behind each connection the gate judges, and
//! whose code it runs, so that a package's own code is judged apart from
//! its tool.
//!
//! For an accepted loopback connection (or a datagram), [`Who::find`]
//! asks the kernel which socket is the other end (`sys::sock_diag`, in the
//! client's network namespace), looks for it in the tool's descriptors
//! first, then in every process below the gate (the shim is their
//! subreaper, so an orphan stays below it), and hands what /proc says of
//! the holder to `classify`. A script's wrapper (`cli-guard-sh`, the
//! script shell npm and pnpm are given) makes a user namespace of its own
//! before any package code runs and registers it ([`Who::register`]):
//! from then on every process of that script is in it or below it, which
//! package code cannot leave, and the namespace is also the barrier that
//! keeps it from tracing the tool or reading its memory.
//!
//! - `actor`: the answer, what the policy makes of it, the row's form.
//! - `classify`: pure: facts to an actor.
//! - `identity`: pure: a registering wrapper's environment to a package.

pub(crate) mod actor;
pub(crate) mod classify;
pub(crate) mod identity;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::policy::Helpers;
use crate::sys::process::{self, Facts};
use crate::sys::sock_diag::{SockDiag, Transport};
pub(crate) use actor::{package_code_label, Actor};
pub(crate) use classify::version_manager_shim;
pub(crate) use classify::HelperFiles;
use classify::{classify, label_from, label_from_pkg_info, FileId, Holder, Known, Registered, ToolId};

/// Processes looked through for a socket, at most: a bound on the walk a
/// fork bomb could otherwise make the gate do for each connection.
const MAX_CANDIDATES: usize = 4096;
/// Ancestors followed up from the holder, at most.
const MAX_ANCESTORS: usize = 64;
/// User namespaces followed up from the holder's, at most (the kernel
/// nests 32).
const MAX_NAMESPACES: usize = 33;
/// Bytes of an sdist's `PKG-INFO` read for its backend's name, at most:
/// its header comes first.
const MAX_PKG_INFO: u64 = 16 * 1024;
/// Registrations kept, at most: each pins a namespace with a descriptor.
const MAX_REGISTERED: usize = 4096;

/// What a script's wrapper CONNECTs to, to register its user namespace:
/// a reserved name (`.invalid`), answered by the gate itself, never
/// dialled.
pub(crate) const REGISTER_TARGET: &str = "register.cli-guard.invalid:1";

/// One invocation's attribution: what the gate asks for every connection.
#[derive(Debug)]
pub(crate) struct Who {
    diag: SockDiag,
    sealed: bool,
    launcher: bool,
    hooked: bool,
    /// The gate's own pid: everything the invocation started is below it.
    gate: i32,
    tool: Mutex<Option<ToolId>>,
    own_exe: Option<(u64, u64)>,
    /// The project (the invocation's working directory), and its direct
    /// dependencies.
    project: PathBuf,
    dependencies: Vec<String>,
    /// A fetch and run's run phase: the program's package.
    program: Option<String>,
    registered: Mutex<Ledger>,
    seq: AtomicU32,
    helpers: HelperFiles,
}

/// The registered namespaces, each pinned by a descriptor (an inode number
/// is reused once its namespace is gone; a pinned one is not).
#[derive(Debug, Default)]
struct Ledger {
    by_ns: HashMap<u64, Registered>,
    pins: Vec<OwnedFd>,
}

/// The files `helpers` names, as the tool would find them on `path`
/// (the first of each name; git's transports in the `git-core` directory
/// beside the git found), before the tool or anything it starts runs.
pub(crate) fn resolve_helpers(helpers: Helpers, path: &std::ffi::OsStr) -> HelperFiles {
    let dirs: Vec<PathBuf> = std::env::split_paths(path).filter(|d| d.is_absolute()).collect();
    let git_core: Vec<PathBuf> = first_on(&dirs, "git")
        .and_then(|git| git.canonicalize().ok())
        .and_then(|git| Some(git.parent()?.parent()?.to_path_buf()))
        .map(|prefix| vec![prefix.join("lib/git-core"), prefix.join("libexec/git-core")])
        .unwrap_or_default();
    let files = |names: &[&str]| -> Vec<FileId> {
        names
            .iter()
            .flat_map(|name| {
                let mut found: Vec<PathBuf> = first_on(&dirs, name).into_iter().collect();
                if name.starts_with("git-") {
                    found.extend(git_core.iter().map(|dir| dir.join(name)));
                }
                found
            })
            .filter_map(|file| file_id(&file))
            .collect()
    };
    HelperFiles {
        anywhere: files(helpers.anywhere),
        direct: files(helpers.direct),
        itself: helpers.itself,
    }
}

/// The first executable regular file `name` in `dirs`.
fn first_on(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|dir| dir.join(name)).find(|file| {
        std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn file_id(file: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| (m.dev(), m.ino()))
}

/// What the gate learns when it sets up.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The lookup socket: made in the tool's network namespace (strict
    /// mode), or here.
    pub(crate) diag: SockDiag,
    /// `diag` is in the tool's own network namespace (strict mode): every
    /// socket it finds is one of the invocation's processes'.
    pub(crate) sealed: bool,
    /// The real tool is a version manager's shim script, which may run the
    /// tool as its child ([`version_manager_shim`]).
    pub(crate) launcher: bool,
    /// The tool runs its scripts through cli-guard's hook (npm, pnpm):
    /// only then may a script's wrapper register.
    pub(crate) hooked: bool,
    pub(crate) project: PathBuf,
    pub(crate) dependencies: Vec<String>,
    pub(crate) program: Option<String>,
    pub(crate) helpers: HelperFiles,
}

impl Who {
    pub(crate) fn new(setup: Setup) -> Who {
        let own_exe = std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .zip(
                std::fs::metadata("/proc/self/exe")
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m)),
            );
        Who {
            diag: setup.diag,
            sealed: setup.sealed,
            launcher: setup.launcher,
            hooked: setup.hooked,
            gate: std::process::id() as i32,
            tool: Mutex::new(None),
            own_exe,
            project: setup.project,
            dependencies: setup.dependencies,
            program: setup.program,
            registered: Mutex::new(Ledger::default()),
            seq: AtomicU32::new(1),
            helpers: setup.helpers,
        }
    }

    /// The tool is `pid`: called as it is spawned, before it runs (the
    /// gate's one thread is busy spawning it, so no connection is judged
    /// before this).
    pub(crate) fn set_tool(&self, pid: i32) {
        let tool = process::facts(pid).map(|facts| ToolId {
            pid,
            start: facts.start,
            userns: facts.userns,
            launcher: self.launcher,
        });
        *lock(&self.tool) = tool;
    }

    fn tool(&self) -> Option<ToolId> {
        *lock(&self.tool)
    }

    /// Who made the connection from `client` to the gate's `server`
    /// (TCP), or sent a datagram from `client` to `server` (UDP).
    pub(crate) fn find(&self, transport: Transport, client: SocketAddr, server: SocketAddr) -> Actor {
        match self.holder(transport, client, server) {
            Ok(holder) => self.classify(&holder),
            Err(why) => Actor::Unknown {
                pid: None,
                exe: None,
                why,
            },
        }
    }

    fn classify(&self, holder: &Holder) -> Actor {
        let ledger = lock(&self.registered);
        let known = Known {
            tool: self.tool(),
            registered: &ledger.by_ns,
            dependencies: &self.dependencies,
            program: self.program.as_deref(),
            helpers: &self.helpers,
            own_exe: self.own_exe,
            hooked: self.hooked,
        };
        classify(holder, &known)
    }

    /// The process holding the other end, with what /proc says of it.
    fn holder(&self, transport: Transport, client: SocketAddr, server: SocketAddr) -> Result<Holder, String> {
        let unknown = |why: String| why;
        let inode = self.inode_of(transport, client, server)?;
        let (pid, above) = match self.find_holder(inode) {
            Ok(pid) => (pid, false),
            Err(hidden) => match self.find_above(inode) {
                Some(pid) => (pid, true),
                None => (self.hidden_cli_guard(&hidden).ok_or_else(|| {
                    unknown(match hidden.is_empty() {
                        true => "its socket is held by no process of this invocation".to_string(),
                        false => format!(
                            "its socket is held by no process of this invocation whose descriptors the gate may read \
                             ({} hide theirs)",
                            hidden.len()
                        ),
                    })
                })?, false),
            },
        };
        let facts = process::facts(pid)
            .ok_or_else(|| unknown(format!("pid {pid} was gone before the gate could look")))?;
        // Above the gate: the caller, whatever its ancestry or directory say
        // (`classify`), so neither is read.
        let ancestors = match above {
            true => Vec::new(),
            false => self.ancestors(&facts),
        };
        let tool_ns = self.tool().and_then(|t| t.userns).unwrap_or(0);
        let userns_chain = process::userns_chain(pid, tool_ns, MAX_NAMESPACES).unwrap_or_default();
        let label = std::iter::once(&facts)
            .chain(&ancestors)
            .filter(|_| !above)
            .find_map(|f| {
                let cwd = process::cwd(f.pid).ok();
                label_from(
                    f.exe.as_deref().and_then(Path::to_str),
                    cwd.as_deref().and_then(Path::to_str),
                )
                .or_else(|| {
                    let text = process::read_in_cwd(f.pid, "PKG-INFO", MAX_PKG_INFO).ok()?;
                    label_from_pkg_info(&String::from_utf8_lossy(&text))
                })
            });
        Ok(Holder {
            facts,
            ancestors,
            userns_chain,
            label,
            above,
        })
    }

    /// The pid holding the socket of `inode`: the tool's table first (its
    /// own connections are most of them), then every process below the
    /// gate, breadth first.
    ///
    /// If none does: the processes whose descriptors this user may not
    /// read (a nested strict cli-guard makes itself non-dumpable, which
    /// hides them from a gate without CAP_DAC_OVERRIDE).
    fn find_holder(&self, inode: u64) -> Result<i32, Vec<i32>> {
        let mut hidden = Vec::new();
        let mut holds = |pid: i32| match process::holds_socket(pid, inode) {
            Ok(held) => held,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    hidden.push(pid);
                }
                false
            }
        };
        let tool = self.tool().map(|t| t.pid);
        if let Some(tool) = tool {
            if holds(tool) {
                return Ok(tool);
            }
        }
        let mut queue = std::collections::VecDeque::from(process::children(self.gate));
        let mut seen = 0;
        while let Some(pid) = queue.pop_front() {
            seen += 1;
            if seen > MAX_CANDIDATES {
                return Err(Vec::new());
            }
            if Some(pid) != tool && holds(pid) {
                return Ok(pid);
            }
            queue.extend(process::children(pid));
        }
        Err(hidden)
    }

    /// The holder of a socket no readable process holds, in strict mode,
    /// where every socket the lookup finds is one of the invocation's: the
    /// one process that hides its descriptors, if it runs cli-guard (a
    /// nested guarded tool's gate, non-dumpable to stay out of the reach of
    /// what runs beside it). It is then judged by its ancestry as any
    /// process is. Any other hidden process (a script can make itself
    /// non-dumpable too) leaves the connection unknown.
    fn hidden_cli_guard(&self, hidden: &[i32]) -> Option<i32> {
        let [pid] = hidden else { return None };
        let facts = process::facts(*pid)?;
        (self.sealed && facts.exe_id.is_some() && facts.exe_id == self.own_exe).then_some(*pid)
    }

    /// The inode of the socket at the other end of `client` → `server`.
    fn inode_of(&self, transport: Transport, client: SocketAddr, server: SocketAddr) -> Result<u64, String> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (src, dst) = match transport {
            Transport::Tcp => (client, server),
            // UDP sockets are looked up from the receiving side.
            Transport::Udp => (server, client),
        };
        match self.diag.owner(transport, src, dst, seq) {
            Ok(Some(owner)) => Ok(owner.inode),
            Ok(None) => Err("its socket was gone before the gate could look".to_string()),
            Err(e) => Err(format!("the kernel did not say whose socket it is: {e}")),
        }
    }

    /// Whether the connection `client` → `server` is held by processes
    /// running cli-guard itself and nothing else (a nested guarded tool
    /// relaying its rows): every process of the invocation holding the
    /// socket, not the first found, since a script could share a socket
    /// with a cli-guard it started (a descriptor it inherits); a process
    /// whose descriptors are hidden counts as a holder unless it runs
    /// cli-guard.
    pub(crate) fn runs_cli_guard(&self, client: SocketAddr, server: SocketAddr) -> bool {
        let Ok(inode) = self.inode_of(Transport::Tcp, client, server) else {
            return false;
        };
        let own =
            |pid: i32| process::facts(pid).is_some_and(|f| f.exe_id.is_some() && f.exe_id == self.own_exe);
        let mut held = false;
        let mut queue = std::collections::VecDeque::from(process::children(self.gate));
        let mut seen = 0;
        while let Some(pid) = queue.pop_front() {
            seen += 1;
            if seen > MAX_CANDIDATES {
                return false;
            }
            let holds = match process::holds_socket(pid, inode) {
                Ok(holds) => holds,
                Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
            };
            if holds {
                if !own(pid) {
                    return false;
                }
                held = true;
            }
            queue.extend(process::children(pid));
        }
        held
    }

    /// The gate's ancestor (parent first) holding the socket of `inode`:
    /// the shell or program that ran the tool.
    fn find_above(&self, inode: u64) -> Option<i32> {
        let mut pid = process::stat(self.gate)?.0;
        for _ in 0..MAX_ANCESTORS {
            if pid <= 1 {
                return None;
            }
            if process::holds_socket(pid, inode).unwrap_or(false) {
                return Some(pid);
            }
            pid = process::stat(pid)?.0;
        }
        None
    }

    /// `facts`' ancestors, parent first, up to (not including) the gate.
    fn ancestors(&self, facts: &Facts) -> Vec<Facts> {
        let mut out = Vec::new();
        let mut ppid = facts.ppid;
        while ppid > 1 && ppid != self.gate && out.len() < MAX_ANCESTORS {
            let Some(parent) = process::facts(ppid) else { break };
            ppid = parent.ppid;
            out.push(parent);
        }
        out
    }

    /// A script's wrapper registering its fresh user namespace, from its
    /// connection `client` → `server`: it must run cli-guard itself, in a
    /// namespace nobody registered, made directly under the tool's, and be
    /// started by the tool itself, one that runs its scripts through the
    /// hook (npm, pnpm).
    /// Then its environment and directory, as its package manager set
    /// them, say whose script it runs. Returns that package, or why not.
    pub(crate) fn register(&self, client: SocketAddr, server: SocketAddr) -> Result<Registered, String> {
        if !self.hooked {
            return Err("this tool does not run its scripts through cli-guard's hook".to_string());
        }
        let holder = self.holder(Transport::Tcp, client, server)?;
        let facts = &holder.facts;
        if facts.exe_id.is_none() || facts.exe_id != self.own_exe {
            return Err(format!("pid {} does not run cli-guard", facts.pid));
        }
        let tool = self.tool().ok_or("the tool has not started")?;
        let (own_ns, parent_ns) = match holder.userns_chain[..] {
            [own, parent, ..] => (own, parent),
            _ => return Err("its user namespace's parent could not be read".to_string()),
        };
        if Some(parent_ns) != tool.userns {
            return Err("its user namespace was not made directly under the tool's".to_string());
        }
        let parent = holder.ancestors.first().ok_or("its parent has gone")?;
        let parent_holder = Holder {
            facts: parent.clone(),
            ancestors: holder.ancestors[1..].to_vec(),
            userns_chain: parent.userns.into_iter().collect(),
            label: None,
            above: false,
        };
        // npm and pnpm start a script's shell themselves: anything else
        // (a helper, package code) that runs cli-guard as a wrapper is
        // forging one.
        if !matches!(self.classify(&parent_holder), Actor::Tool { .. }) {
            return Err("it was not started by the tool itself".to_string());
        }
        let env = process::environ(facts.pid).map_err(|e| format!("its environment cannot be read: {e}"))?;
        let cwd = process::cwd(facts.pid).map_err(|e| format!("its directory cannot be read: {e}"))?;
        let registered = identity::identify(&identity::parse_environ(&env), &cwd, &self.project)?;
        let pin = process::open_ns(facts.pid).map_err(|e| format!("its namespace cannot be held: {e}"))?;
        let mut ledger = lock(&self.registered);
        if ledger.by_ns.contains_key(&own_ns) || own_ns == tool.userns.unwrap_or(0) {
            return Err("its user namespace is already registered".to_string());
        }
        if ledger.pins.len() >= MAX_REGISTERED {
            return Err("too many scripts registered".to_string());
        }
        ledger.pins.push(pin);
        ledger.by_ns.insert(own_ns, registered.clone());
        Ok(registered)
    }
}

/// A lock that a panic elsewhere does not poison for the gate.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
