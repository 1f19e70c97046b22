//! What this process reads of itself in /proc before it runs a tool: the
//! descriptors it inherited, and whether it runs in init's network
//! namespace; and, for a script's wrapper, a user namespace of its own and
//! nothing inherited past stdio.

use std::os::fd::RawFd;

/// Marks every descriptor above 2 this process inherited close-on-exec but
/// pipes (a jobserver's), so that the tool in the namespace does not get
/// them: a socket connected or bound in the host's namespace (an IDE's, a
/// CI agent's, systemd's `LISTEN_FDS`) would be a way out, and so would a
/// directory or a file opened on the host's writable tree (reopened through
/// `/proc/PID/fd`, or walked from with `..`). Returns how many it marked.
pub(crate) fn keep_inherited_descriptors_from_the_tool() -> usize {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::stat::{fstat, SFlag};
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut marked = 0;
    for fd in fds {
        // SAFETY: `fd` was listed as open in /proc/self/fd a moment ago and
        // this process is single-threaded here (before the runtime exists),
        // so nothing closes it meanwhile; the borrow ends in this loop.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let is_pipe =
            fstat(fd).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO);
        let flags = fcntl(fd, FcntlArg::F_GETFD).map(FdFlag::from_bits_truncate);
        if let (false, Ok(flags)) = (is_pipe, flags) {
            if !flags.contains(FdFlag::FD_CLOEXEC)
                && fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).is_ok()
            {
                marked += 1;
            }
        }
    }
    marked
}

/// Marks every descriptor above 2 close-on-exec, so that the program this
/// process execs starts with stdin, stdout and stderr alone: a script's
/// wrapper hands its script nothing of the package manager's.
pub(crate) fn close_on_exec_above_stdio() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: `fd` was listed as open a moment ago; this process is
        // single-threaded (the wrapper, before it execs), so nothing
        // closes it meanwhile; the borrow ends in this loop. The directory
        // listing's own descriptor is closed by now: fcntl on it fails.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFD).map(FdFlag::from_bits_truncate) {
            let _ = fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC));
        }
    }
}

/// Makes this process a user namespace of its own, its uid and gid mapped
/// onto themselves (`setgroups` denied first, as an unprivileged map
/// needs), as `unshare --user --map-user=$(id -u) --map-group=$(id -g)`.
pub(crate) fn enter_own_user_namespace() -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// Whether this process runs in a network namespace with nothing but
/// `lo`, as a strict invocation's is: what a claim to run inside one
/// (`CLI_GUARD_NETNS`, which any process can set) is checked against before
/// it labels a row. A process outside cannot take the host's interfaces
/// away to pass it. (Comparing with init's namespace no longer works once
/// the tool has a PID namespace: its PID 1 is in the same network.)
pub(crate) fn in_loopback_only_netns() -> bool {
    std::fs::read_to_string("/proc/self/net/dev").is_ok_and(|dev| only_loopback(&dev))
}

/// Whether a `/proc/net/dev` text lists `lo` and nothing else. Pure.
pub(crate) fn only_loopback(dev: &str) -> bool {
    let mut names = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim);
    names.next() == Some("lo") && names.next().is_none()
}

/// The processes left in a PID namespace whose init is `init` (host pid):
/// its children and theirs, all the way down, read from
/// `/proc/PID/task/PID/children`. At most `limit` are counted.
pub(crate) fn descendants(init: i32, limit: usize) -> usize {
    let mut pending = vec![init];
    let mut count = 0;
    while let Some(pid) = pending.pop() {
        let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
            continue;
        };
        for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            count += 1;
            if count >= limit {
                return count;
            }
            pending.push(child);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_lo_alone() {
        let header = "Inter-|   Receive |  Transmit\n face |bytes packets\n";
        assert!(only_loopback(&format!("{header}    lo: 0 0 0\n")));
        assert!(!only_loopback(&format!("{header}    lo: 0 0\n  eth0: 1 2\n")));
        assert!(!only_loopback(&format!("{header}  eth0: 1 2\n")));
        assert!(!only_loopback(header));
    }
}
