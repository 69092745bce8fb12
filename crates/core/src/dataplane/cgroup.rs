//! Cgroup v2 paths and ids. On cgroup v2 a cgroup's id (what `bpf_get_current_cgroup_id` returns) is the inode
//! number of its directory. Which paths and ids are acceptable is the contract's rule set
//! ([`crate::contract::cgroup`]); this file only resolves them on the file system.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::DataplaneError;
use super::mounts;
use crate::contract::cgroup::{directory_of, refuse_root};

/// A cgroup named by its directory (absolute, or relative to the dataplane's cgroup root) or by its id: the
/// contract's [`crate::contract::cgroup::CgroupRef`] holding a file-system path.
pub type CgroupRef = crate::contract::cgroup::CgroupRef<PathBuf>;

/// A managed-cgroup entry with its directory: the contract's [`crate::contract::cgroup::ManagedCgroup`]
/// holding a file-system path.
pub type ManagedCgroup = crate::contract::cgroup::ManagedCgroup<PathBuf>;

/// The id of the root cgroup of the cgroup2 hierarchy: kernfs numbers its root node 1.
const HIERARCHY_ROOT_ID: u64 = 1;

/// A resolved cgroup: its id and, when known, its directory.
pub(crate) struct ResolvedCgroup {
    pub id: u64,
    pub path: Option<PathBuf>,
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
            let path = directory_of(root, p);
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

/// True for the root cgroup of the hierarchy and for the root of every cgroup2 mount this process sees (in a
/// cgroup namespace or a container, the mount's root holds every process there, the agent's own included).
fn is_hierarchy_root(id: u64) -> bool {
    id == HIERARCHY_ROOT_ID
        || mounts::mount_points("cgroup2").is_ok_and(|mounts| {
            mounts
                .iter()
                .any(|m| std::fs::metadata(m).is_ok_and(|meta| meta.ino() == id))
        })
}

/// Applies the contract's root rule to a resolved cgroup.
pub(crate) fn refuse_hierarchy_root(
    target: &CgroupRef,
    resolved: &ResolvedCgroup,
    allow_root: bool,
) -> Result<(), DataplaneError> {
    refuse_root(is_hierarchy_root(resolved.id), allow_root).map_err(|(_, reason)| {
        DataplaneError::CgroupRootRefused {
            cgroup: target.to_string(),
            reason,
        }
    })
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
