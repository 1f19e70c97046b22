//! Finding the real tool: PATH lookup that skips every cli-guard binary by
//! file identity, the check of an explicit path, and what `cli-guard shims`
//! reports (every name that gets a shim, and what PATH finds for it).

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

/// A file's identity: same device and inode means the same file, whatever
/// path (symlink, hardlink, repeated PATH entry) leads to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    pub(super) fn to_var(self) -> String {
        format!("{}:{}", self.dev, self.ino)
    }

    pub(super) fn from_var(s: &str) -> Option<FileId> {
        let (dev, ino) = s.split_once(':')?;
        Some(FileId {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
        })
    }
}

/// The directories on `path_var` whose `name` is one of `ours` (cli-guard
/// itself): the shims a strict invocation must never be able to replace.
pub(super) fn shim_dirs(name: &OsStr, path_var: &OsStr, ours: &[FileId]) -> Vec<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .filter(|dir| FileId::of(&dir.join(name)).is_ok_and(|id| ours.contains(&id)))
        .collect()
}

/// Why the real tool could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LookupError {
    /// Nothing of that name on PATH but this binary (exit 127).
    NotFound,
    /// Found, but not an executable regular file (exit 126).
    NotExecutable(PathBuf),
}

/// Finds the first executable regular file called `name` on `path_var` that
/// is not in `skip` (cli-guard itself). The path is returned as found on PATH, not
/// canonicalised: the real tool may itself dispatch on argv[0] (rustup's
/// proxies, pyenv's shims). Empty PATH entries mean the current directory,
/// as in the shell.
pub(super) fn find_on_path(name: &OsStr, path_var: &OsStr, skip: &[FileId]) -> Result<Found, LookupError> {
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if skip.contains(&id) || !meta.is_file() {
            continue;
        }
        if access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(Found { path: candidate, id });
        }
        not_executable.get_or_insert(candidate);
    }
    Err(not_executable.map_or(LookupError::NotFound, LookupError::NotExecutable))
}

/// A real tool found on PATH (or given as a path): where, and which file,
/// as read by the one stat that checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub path: PathBuf,
    pub id: FileId,
}

/// What PATH makes of one tool name, for `cli-guard shims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShimStatus {
    /// The first executable `name` on PATH, shim or not.
    pub first: Option<PathBuf>,
    /// Whether that first one is this binary.
    pub first_is_shim: bool,
    /// The real tool a shim would run.
    pub real: Option<PathBuf>,
}

/// Looks `name` up on `path_var` both ways: as the shell would, and as the
/// shim would (skipping this binary).
pub(crate) fn shim_status(name: &OsStr, path_var: &OsStr) -> ShimStatus {
    let self_id = own_file_id();
    let first = find_on_path(name, path_var, &[]).ok();
    ShimStatus {
        first_is_shim: first.as_ref().is_some_and(|f| Some(f.id) == self_id),
        first: first.map(|f| f.path),
        real: find_on_path(name, path_var, &self_id.into_iter().collect::<Vec<_>>())
            .ok()
            .map(|f| f.path),
    }
}

/// Every name that gets a shim: the pinned tools, then the python names
/// (not tools themselves: `-m pip` runs under pip's policy). install.sh,
/// `shims/`, `cli-guard init`'s functions and `cli-guard shims` all take
/// this list.
pub(crate) fn shim_names() -> impl Iterator<Item = &'static str> {
    crate::policy::tool_names().chain(super::python::PYTHON_SHIMS.iter().copied())
}

/// This binary's identity, to recognise it behind any link.
pub(super) fn own_file_id() -> Option<FileId> {
    FileId::of(Path::new("/proc/self/exe"))
        .or_else(|_| std::env::current_exe().and_then(|p| FileId::of(&p)))
        .ok()
}

/// Checks an explicit path the way `find_on_path` checks a candidate.
pub(super) fn check_path(path: &Path) -> Result<Found, LookupError> {
    match std::fs::metadata(path) {
        Err(_) => Err(LookupError::NotFound),
        Ok(meta) if meta.is_file() && access(path, AccessFlags::X_OK).is_ok() => Ok(Found {
            path: path.to_path_buf(),
            id: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        }),
        Ok(_) => Err(LookupError::NotExecutable(path.to_path_buf())),
    }
}

/// The cli-guard binaries to skip on PATH: this one and every one above it.
pub(super) fn skip_list(inherited: &str, self_id: Option<FileId>) -> Vec<FileId> {
    let mut skip: Vec<FileId> = inherited.split(',').filter_map(FileId::from_var).collect();
    skip.extend(self_id);
    skip
}

pub(super) fn skip_var(skip: &[FileId]) -> String {
    skip.iter().map(|id| id.to_var()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_round_trips() {
        let id = FileId { dev: 2049, ino: 77 };
        assert_eq!(FileId::from_var(&id.to_var()), Some(id));
        assert_eq!(FileId::from_var("x:1"), None);
    }

    #[test]
    fn path_lookup_skips_self_and_reports_non_executables() {
        let dir = std::env::temp_dir().join(format!("cli-guard-unit-{}", std::process::id()));
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::create_dir_all(&a).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&b).unwrap_or_else(|e| panic!("{e}"));
        let plain = a.join("tool");
        std::fs::write(&plain, "x").unwrap_or_else(|e| panic!("{e}"));
        let path_var = std::env::join_paths([&a, &b]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_on_path(OsStr::new("tool"), &path_var, &[]).map(|f| f.path),
            Err(LookupError::NotExecutable(plain.clone()))
        );
        let exe = b.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_on_path(OsStr::new("tool"), &path_var, &[]).map(|f| f.path),
            Ok(exe.clone())
        );
        let exe_id = FileId::of(&exe).ok();
        assert_eq!(
            find_on_path(
                OsStr::new("tool"),
                &path_var,
                &exe_id.into_iter().collect::<Vec<_>>()
            )
            .map(|f| f.path),
            Err(LookupError::NotExecutable(plain))
        );
        assert_eq!(
            find_on_path(OsStr::new("nope"), &path_var, &[]).map(|f| f.path),
            Err(LookupError::NotFound)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
