//! Strict mode's write layer: in the tool's own mount namespace the whole
//! tree is read-only but the places its install writes (`policy::writes`),
//! bound back read-write, and the protected paths inside those places
//! pinned read-only, so they can be neither written nor renamed away.
//!
//! [`Mounts::new`] prepares everything as C strings before the fork;
//! [`apply`] runs in the namespace child (system calls only, nothing
//! allocated), after `unshare(CLONE_NEWNS)` and before the tool's own user
//! namespace, whose lack of capabilities then locks every mount (it can
//! neither remount nor unmount them):
//! 1. the tree becomes a slave of the host's, so nothing propagates back;
//! 2. each writable place is cloned (`open_tree`, recursive) while it is
//!    still read-write;
//! 3. `/` and every mount under it become read-only and lose their device
//!    nodes in one call (`mount_setattr`, Linux 5.12: `nodev`; a read-only
//!    mount does not stop a write to a device, `/dev/kmsg` or a loop
//!    device as root), and the few a tool needs are bound back with theirs
//!    ([`DEVICES`]);
//! 4. `/proc` stays writable where its own permissions allow, but for the
//!    parts that reach the host's kernel ([`PROC_READ_ONLY`]: `/proc/sys`,
//!    where root could set `core_pattern` and run a program as root
//!    outside), pinned read-only; `/dev/pts` is a devpts of its own (the
//!    user's other terminals are not there; the tool's own stays open) and
//!    `/dev/shm` a fresh tmpfs, both shared with nothing outside;
//! 5. the clones are moved back over their places, shallowest first;
//! 6. each pin is cloned and moved over itself read-only (its own mount
//!    only: the writable places under it stay writable);
//! 7. the audit log's directory, where it holds nothing but the log's
//!    files, is covered by an empty read-only tmpfs: what runs inside can
//!    neither read the log's history nor take its lock (a `flock` needs
//!    only a read-only descriptor, and a held one would stall every
//!    writer);
//! 8. the working directory is entered again, so that it is the new mount
//!    and not the read-only one it was opened on.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;

/// At most this many writable places and pins, each: clones wait in a
/// fixed array in the child.
pub(crate) const MAX_PLACES: usize = 64;

/// The device nodes a tool may open: everything else is `nodev`.
const DEVICES: [&CStr; 6] = [
    c"/dev/null",
    c"/dev/zero",
    c"/dev/full",
    c"/dev/random",
    c"/dev/urandom",
    c"/dev/tty",
];

/// The parts of `/proc` that reach the host's kernel rather than the
/// process's own state, read-only whatever the caller's uid (runc's
/// read-only paths): a root tool could otherwise write `core_pattern`.
pub(crate) const PROC_READ_ONLY: [&CStr; 5] = [
    c"/proc/sys",
    c"/proc/sysrq-trigger",
    c"/proc/irq",
    c"/proc/bus",
    c"/proc/fs",
];

/// Which step of [`apply`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountStep {
    Slave,
    Clone,
    ReadOnly,
    KernelFs,
    Shm,
    Move,
    Pin,
    Hide,
    Chdir,
}

/// The write layer, ready for the child.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mounts {
    /// Writable places, shallowest first.
    writable: Vec<CString>,
    /// Read-only pins, shallowest first.
    pins: Vec<CString>,
    /// Kernel filesystems (mount points) that stay writable.
    kernel_fs: Vec<CString>,
    /// Where a fresh tmpfs goes, if there is such a directory.
    shm: Option<CString>,
    /// A directory covered by an empty read-only tmpfs.
    hidden: Option<CString>,
    cwd: CString,
}

impl Mounts {
    /// The layer for `writable` places and `pins` (canonical paths, both
    /// sorted shallowest first), with `hidden` covered, entering `cwd` at
    /// the end. `mount_points` are the host's (from /proc/self/mountinfo).
    pub(crate) fn new(
        writable: &[PathBuf],
        pins: &[PathBuf],
        hidden: Option<&Path>,
        mount_points: &[PathBuf],
        cwd: &Path,
    ) -> io::Result<Mounts> {
        if writable.len() > MAX_PLACES || pins.len() > MAX_PLACES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many writable places",
            ));
        }
        let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other);
        // /proc stays writable where its own permissions allow: the tool
        // writes its user namespace's maps through it.
        let kernel_fs = ["/proc"]
            .iter()
            .map(Path::new)
            .filter(|p| mount_points.iter().any(|m| m == p))
            .map(c)
            .collect::<io::Result<_>>()?;
        let shm = Path::new("/dev/shm");
        Ok(Mounts {
            writable: writable.iter().map(|p| c(p)).collect::<io::Result<_>>()?,
            pins: pins.iter().map(|p| c(p)).collect::<io::Result<_>>()?,
            kernel_fs,
            shm: shm.is_dir().then(|| c(shm)).transpose()?,
            hidden: hidden.map(c).transpose()?,
            cwd: c(cwd)?,
        })
    }
}

/// The mount points of a `/proc/self/mountinfo` text (field 5, with the
/// kernel's octal escapes for space, tab, newline and backslash undone).
pub(crate) fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn syscall_result(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    Errno::result(rc)
}

/// `mount_setattr(dirfd, path, flags, {set, clr})`.
fn set_attr(dirfd: libc::c_int, path: &CStr, flags: libc::c_uint, set: u64, clr: u64) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a C string and `attr` a mount_attr of the size
    // passed, both alive for the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    syscall_result(rc).map(drop)
}

/// Why [`rebind`] failed: the path could not be cloned (it may be
/// missing), or the clone could not be changed or put back.
enum Rebind {
    Clone(Errno),
    Set(Errno),
}

impl Rebind {
    fn errno(self) -> Errno {
        match self {
            Rebind::Clone(errno) | Rebind::Set(errno) => errno,
        }
    }
}

/// Binds the tree at `path` over itself with the mount attributes `set`
/// set and `clr` cleared on its top mount. System calls only.
fn rebind(path: &CStr, set: u64, clr: u64) -> Result<(), Rebind> {
    let fd = clone_tree(path).map_err(Rebind::Clone)?;
    let done =
        set_attr(fd, c"", libc::AT_EMPTY_PATH as libc::c_uint, set, clr).and_then(|()| move_tree(fd, path));
    close(fd);
    done.map_err(Rebind::Set)
}

/// Pins [`PROC_READ_ONLY`] read-only in the `/proc` mounted now (each
/// bound over itself, then made read-only); what this kernel lacks is
/// skipped. Also called by the tool's process after it mounts its own
/// `/proc` (the PID layer).
pub(crate) fn protect_proc() -> Result<(), Errno> {
    for path in PROC_READ_ONLY {
        match rebind(path, libc::MOUNT_ATTR_RDONLY, 0) {
            Err(Rebind::Clone(_)) => continue,
            Err(Rebind::Set(errno)) => return Err(errno),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// A detached, recursive copy of the mount tree at `path`.
fn clone_tree(path: &CStr) -> Result<libc::c_int, Errno> {
    // SAFETY: `path` is a C string alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    syscall_result(rc).map(|fd| fd as libc::c_int)
}

/// Attaches the detached tree `fd` at `path`.
fn move_tree(fd: libc::c_int, path: &CStr) -> Result<(), Errno> {
    // SAFETY: "" and `path` are C strings alive for the call; `fd` is an
    // open_tree descriptor of this process's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    syscall_result(rc).map(drop)
}

fn close(fd: libc::c_int) {
    // SAFETY: `fd` is a descriptor this child opened and no one else uses.
    unsafe { libc::close(fd) };
}

/// Applies the layer (see the module doc). Runs in the namespace child:
/// system calls only, on what [`Mounts::new`] prepared; allocates nothing.
pub(crate) fn apply(mounts: &Mounts) -> Result<(), (MountStep, Errno)> {
    let at = |step| move |errno| (step, errno);
    // SAFETY: every pointer is a C string literal or NULL, as mount(2)
    // allows for a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    };
    Errno::result(rc).map_err(at(MountStep::Slave))?;
    let mut clones = [-1 as libc::c_int; MAX_PLACES];
    let close_all = |clones: &[libc::c_int]| clones.iter().filter(|&&fd| fd >= 0).for_each(|&fd| close(fd));
    for (slot, place) in clones.iter_mut().zip(&mounts.writable) {
        match clone_tree(place) {
            Ok(fd) => *slot = fd,
            Err(errno) => {
                close_all(&clones);
                return Err((MountStep::Clone, errno));
            }
        }
    }
    let result = (|| {
        set_attr(
            libc::AT_FDCWD,
            c"/",
            libc::AT_RECURSIVE as libc::c_uint,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV,
            0,
        )
        .map_err(at(MountStep::ReadOnly))?;
        for fs in &mounts.kernel_fs {
            set_attr(libc::AT_FDCWD, fs, 0, 0, libc::MOUNT_ATTR_RDONLY).map_err(at(MountStep::KernelFs))?;
        }
        protect_proc().map_err(at(MountStep::KernelFs))?;
        for device in DEVICES {
            // A missing node (a container's sparse /dev) is left missing.
            match rebind(device, 0, libc::MOUNT_ATTR_NODEV) {
                Err(Rebind::Clone(_)) => continue,
                Err(Rebind::Set(errno)) => return Err((MountStep::KernelFs, errno)),
                Ok(()) => {}
            }
        }
        // A devpts of the tool's own: the user's other terminals are not in
        // it. Where /dev/pts is no directory, there is none to replace.
        // SAFETY: C string literals; mount(2) reads them.
        let rc = unsafe {
            libc::mount(
                c"devpts".as_ptr(),
                c"/dev/pts".as_ptr(),
                c"devpts".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"newinstance,ptmxmode=0666,mode=0620".as_ptr().cast(),
            )
        };
        if rc == 0 {
            if let Ok(fd) = clone_tree(c"/dev/pts/ptmx") {
                let bound = move_tree(fd, c"/dev/ptmx");
                close(fd);
                bound.map_err(at(MountStep::KernelFs))?;
            }
        }
        if let Some(shm) = &mounts.shm {
            // SAFETY: C strings alive for the call.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    shm.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777".as_ptr().cast(),
                )
            };
            Errno::result(rc).map_err(at(MountStep::Shm))?;
        }
        for (&fd, place) in clones.iter().zip(&mounts.writable) {
            move_tree(fd, place).map_err(at(MountStep::Move))?;
        }
        for pin in &mounts.pins {
            rebind(pin, libc::MOUNT_ATTR_RDONLY, 0).map_err(|e| (MountStep::Pin, e.errno()))?;
        }
        if let Some(hidden) = &mounts.hidden {
            // SAFETY: C strings alive for the call.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    hidden.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"mode=0555,size=4k".as_ptr().cast(),
                )
            };
            Errno::result(rc).map_err(at(MountStep::Hide))?;
        }
        // SAFETY: `cwd` is a C string alive for the call.
        Errno::result(unsafe { libc::chdir(mounts.cwd.as_ptr()) })
            .map(drop)
            .map_err(at(MountStep::Chdir))
    })();
    close_all(&clones);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 22 0:5 / /dev/pts rw,nosuid - devpts devpts rw\n\
                    40 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\
                    41 22 0:41 / /odd\\134name rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(info),
            ["/", "/dev/pts", "/mnt/with space", "/odd\\name"].map(PathBuf::from)
        );
    }
}
