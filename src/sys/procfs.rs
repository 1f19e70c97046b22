//! What this process reads of itself in /proc before it runs a tool: the
//! descriptors it inherited, and whether it runs in init's network
//! namespace.

use std::os::fd::RawFd;

/// Marks every socket this process inherited close-on-exec, so that the
/// tool in the namespace does not get them: a socket connected or bound in
/// the host's namespace (an IDE's, a CI agent's, systemd's `LISTEN_FDS`)
/// would be a way out. Pipes, files and terminals are left as inherited.
/// Returns how many it marked.
pub(crate) fn keep_inherited_sockets_from_the_tool() -> usize {
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
        let is_socket = fstat(fd)
            .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK);
        let flags = fcntl(fd, FcntlArg::F_GETFD).map(FdFlag::from_bits_truncate);
        if let (true, Ok(flags)) = (is_socket, flags) {
            if !flags.contains(FdFlag::FD_CLOEXEC)
                && fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).is_ok()
            {
                marked += 1;
            }
        }
    }
    marked
}

/// Whether this process's network namespace is not init's: what a claim
/// to run inside a strict invocation's namespace (`CLI_GUARD_NETNS`, which
/// any process can set) is checked against before it labels a row. `false`
/// when init's cannot be read (another user's init, as an unprivileged
/// user in most containers): then the claim is not taken.
pub(crate) fn outside_init_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    match (id("/proc/self/ns/net"), id("/proc/1/ns/net")) {
        (Some(ours), Some(init)) => ours != init,
        _ => false,
    }
}
