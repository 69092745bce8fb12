//! Cgroup v2 paths and ids. On cgroup v2 a cgroup's id (what `bpf_get_current_cgroup_id` returns) is the inode
//! number of its directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::DataplaneError;
use super::mounts;

/// A cgroup named by path (absolute, or relative to the cgroup root) or by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupRef {
    Path(PathBuf),
    Id(u64),
}

impl std::fmt::Display for CgroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupRef::Path(p) => write!(f, "{}", p.display()),
            CgroupRef::Id(id) => write!(f, "id {id}"),
        }
    }
}

/// A resolved cgroup: its id and, when known, its directory.
pub(crate) struct ResolvedCgroup {
    pub id: u64,
    pub path: Option<PathBuf>,
}

/// The absolute directory of a path reference.
pub(crate) fn absolute(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// The id of the cgroup directory at `path`, which must be on cgroup v2.
pub fn cgroup_id(path: &Path) -> Result<u64, DataplaneError> {
    let meta = std::fs::metadata(path).map_err(|e| DataplaneError::io("stat", path, e))?;
    if !meta.is_dir() || !mounts::is_cgroup2(path) {
        return Err(DataplaneError::NotCgroup2 {
            path: path.to_path_buf(),
        });
    }
    Ok(meta.ino())
}

pub(crate) fn resolve(root: &Path, target: &CgroupRef) -> Result<ResolvedCgroup, DataplaneError> {
    match target {
        CgroupRef::Path(p) => {
            let path = absolute(root, p);
            Ok(ResolvedCgroup {
                id: cgroup_id(&path)?,
                path: Some(path),
            })
        }
        CgroupRef::Id(id) => Ok(ResolvedCgroup {
            id: *id,
            path: find_by_id(root, *id),
        }),
    }
}

/// Walks the hierarchy under `root` for the directory whose inode is `id` (bounded by the tree's size).
pub(crate) fn find_by_id(root: &Path, id: u64) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if std::fs::metadata(&dir).map(|m| m.ino()).ok() == Some(id) {
            return Some(dir);
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(entry.path());
                }
            }
        }
    }
    None
}
