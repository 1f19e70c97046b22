//! What the gate reads in /proc of the invocation's processes, to say
//! which of them made a connection (`who`): a process's parent, start
//! time, executable and user namespace ([`facts`]), its children
//! ([`children`]), whether it holds a socket ([`holds_socket`]), the user
//! namespaces above its own ([`userns_chain`], `NS_GET_PARENT`), and, for a
//! process that registers as package code, its environment and working
//! directory. Nothing here decides; a process that is gone or unreadable
//! reads as `None` or an error, which `who` turns into "unknown".

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::libc;
use nix::sys::stat::{fstat, Mode};

/// What one process is, as far as the gate asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    /// Clock ticks since boot: with the pid, names the process (a pid is
    /// reused, the pair is not).
    pub(crate) start: u64,
    /// Its executable's path (`None`: unreadable or gone).
    pub(crate) exe: Option<PathBuf>,
    /// Its executable's device and inode, to compare with cli-guard's own.
    pub(crate) exe_id: Option<(u64, u64)>,
    /// Its user namespace's inode.
    pub(crate) userns: Option<u64>,
}

/// The ppid and start time in a `/proc/PID/stat` line. Pure.
pub(crate) fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// `pid`'s ppid and start time.
pub(crate) fn stat(pid: i32) -> Option<(i32, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The facts of `pid`; `None` if it is gone. The start time is read
/// before and after the rest, so that facts of a pid reused meanwhile are
/// never returned as one process's.
pub(crate) fn facts(pid: i32) -> Option<Facts> {
    let (ppid, start) = stat(pid)?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe_id = fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let userns = fs::metadata(format!("/proc/{pid}/ns/user")).ok().map(|m| m.ino());
    match stat(pid) {
        Some((_, again)) if again == start => Some(Facts {
            pid,
            ppid,
            start,
            exe,
            exe_id,
            userns,
        }),
        _ => None,
    }
}

/// `pid`'s children, from every thread's `children` list.
pub(crate) fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(list) = fs::read_to_string(path) {
            out.extend(list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    out
}

/// The link text `/proc/PID/fd/N` has for a socket of inode `inode`.
pub(crate) fn socket_link(inode: u64) -> String {
    format!("socket:[{inode}]")
}

/// Whether `pid` holds the socket of `inode`. An error: its descriptors
/// could not be read (gone, or not readable by this user: a process that
/// made itself non-dumpable).
///
/// The cost of attribution is here, a system call per descriptor, so:
/// each link is read relative to the open directory (`readlinkat`, not a
/// path walk through /proc for each), and the highest descriptors first,
/// since a socket a program just made usually sits above the descriptors
/// it opened at start.
pub(crate) fn holds_socket(pid: i32, inode: u64) -> io::Result<bool> {
    use nix::fcntl::{readlinkat, OFlag};
    use nix::sys::stat::Mode;
    let want = socket_link(inode);
    let path = format!("/proc/{pid}/fd");
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fds = nix::fcntl::open(path.as_str(), flags, Mode::empty())?;
    // Listed by std's reader, which closes its descriptor on every path
    // (nix's `Dir::from_fd` leaks it when `fdopendir` fails, as it does
    // for a process that exits in between).
    let mut numbers: Vec<u32> = fs::read_dir(&path)?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    Ok(numbers.into_iter().any(|n| {
        readlinkat(&fds, n.to_string().as_str()).is_ok_and(|link| link.as_os_str() == want.as_str())
    }))
}

/// `NS_GET_PARENT`: `_IO(0xb7, 0x2)`.
const NS_GET_PARENT: libc::c_ulong = 0xb702;

/// The inodes of `pid`'s user namespace and of those above it, nearest
/// first, up to and including `stop` (or as far as this process may look:
/// `NS_GET_PARENT` refuses past its own namespace), at most `limit`.
pub(crate) fn userns_chain(pid: i32, stop: u64, limit: usize) -> io::Result<Vec<u64>> {
    let mut ns = open_ns(pid)?;
    let mut chain = Vec::new();
    for _ in 0..limit {
        let inode = fstat(&ns)?.st_ino;
        chain.push(inode);
        if inode == stop {
            break;
        }
        // SAFETY: NS_GET_PARENT takes no argument and returns a new
        // descriptor (or -1); `ns` is an open namespace descriptor.
        let parent = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) };
        if parent < 0 {
            break;
        }
        // SAFETY: the ioctl returned a descriptor that nothing else owns.
        ns = unsafe { OwnedFd::from_raw_fd(parent) };
    }
    Ok(chain)
}

/// A descriptor of `pid`'s user namespace: holding it keeps the namespace
/// (and so its inode number) alive.
pub(crate) fn open_ns(pid: i32) -> io::Result<OwnedFd> {
    Ok(open(
        format!("/proc/{pid}/ns/user").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// `pid`'s environment, as NUL-separated `NAME=value` entries.
pub(crate) fn environ(pid: i32) -> io::Result<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ"))
}

/// `pid`'s working directory.
pub(crate) fn cwd(pid: i32) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd"))
}

/// The first `limit` bytes of the regular file `name` in `pid`'s working
/// directory. Package code chooses what is there: a symlink is not
/// followed and a FIFO or device is not read (opened without blocking,
/// then refused), so it can neither block the gate nor point it elsewhere.
pub(crate) fn read_in_cwd(pid: i32, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = open(
        format!("/proc/{pid}/cwd/{name}").as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if fstat(&fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::other(format!("{name} is not a regular file")));
    }
    let mut text = Vec::new();
    fs::File::from(fd).take(limit).read_to_end(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(line), Some((17, 987654)));
        assert_eq!(parse_stat("junk"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = std::process::id() as i32;
        let facts = facts(me).unwrap_or_else(|| panic!("no facts of this process"));
        assert_eq!(facts.ppid, nix::unistd::getppid().as_raw());
        let own = fs::metadata("/proc/self/exe").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(facts.exe_id, Some((own.dev(), own.ino())));
        let chain = userns_chain(me, facts.userns.unwrap_or(0), 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chain.first().copied(), facts.userns);
    }

    #[test]
    fn a_socket_is_found_where_it_is_held() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let inode = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap_or_else(|e| panic!("{e}"))
            .ino();
        let me = std::process::id() as i32;
        assert!(holds_socket(me, inode).unwrap_or(false));
        assert!(!holds_socket(me, inode + 1_000_000).unwrap_or(true));
    }
}
