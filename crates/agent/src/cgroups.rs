//! Cgroup paths of the control protocol and the directories they name.
//!
//! A payload path is absolute below the cgroup2 mount, exactly as `/proc/<pid>/cgroup` prints it
//! (`/system.slice/docker-<id>.scope`). The agent serves one subtree, its cgroup root (where the programs are
//! attached; by default the whole mount): a path must lie strictly below that root, since the root itself is
//! every process the programs see, and anything outside it is never judged by them.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use interceptor_ebpf_core::dataplane;

/// The agent's cgroup root and the cgroup2 mount above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupScope {
    mount: PathBuf,
    root: PathBuf,
    /// The root as a payload path: `""` when the root is the mount, else `/a/b`.
    prefix: String,
}

impl CgroupScope {
    /// `root` must be a cgroup v2 directory at or below `mount` (both are canonicalised).
    pub fn new(mount: &Path, root: &Path) -> Result<CgroupScope, String> {
        let mount = std::fs::canonicalize(mount)
            .map_err(|e| format!("cannot resolve the cgroup2 mount {}: {e}", mount.display()))?;
        let root = std::fs::canonicalize(root).map_err(|e| format!("cannot resolve: {e}"))?;
        dataplane::cgroup_id(&root).map_err(|e| e.to_string())?;
        let rel = root.strip_prefix(&mount).map_err(|_| {
            format!(
                "is not below the cgroup2 mount {} (payload paths are relative to it)",
                mount.display()
            )
        })?;
        let mut prefix = String::new();
        for c in rel.components() {
            match c {
                Component::Normal(seg) => {
                    let seg = seg
                        .to_str()
                        .ok_or_else(|| "contains a segment that is not UTF-8".to_owned())?;
                    prefix.push('/');
                    prefix.push_str(seg);
                }
                _ => return Err("is not a normalised path".to_owned()),
            }
        }
        Ok(CgroupScope {
            mount,
            root,
            prefix,
        })
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Where the programs attach.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root as a payload path (`/` for the mount itself).
    pub fn root_path(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    /// The directory of a payload path already checked by the contract (absolute, normalised, not `/`);
    /// refused unless strictly below the root.
    pub fn directory(&self, payload_path: &str) -> Result<PathBuf, String> {
        let below = payload_path
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
        if !below && payload_path == self.prefix {
            // The root itself, not something outside it: say so (issue 17 found "/x is outside ... root /x").
            return Err(self.the_root_itself(&format!("cgroup path {payload_path}")));
        }
        if !below {
            return Err(format!(
                "cgroup path {payload_path} is outside the agent's cgroup root {} (BROKER_EBPF_CGROUP_ROOT): \
                 the programs attached there never see it",
                self.root_path()
            ));
        }
        Ok(self.mount.join(&payload_path[1..]))
    }

    /// Why the root itself cannot be managed; `what` names it as the request did.
    pub fn the_root_itself(&self, what: &str) -> String {
        format!(
            "{what} is the agent's cgroup root (BROKER_EBPF_CGROUP_ROOT) itself: it holds every process the \
             programs see, the agent's own included; name a workload's cgroup below it"
        )
    }

    /// The payload path of a directory below the mount (`None` outside it).
    pub fn payload_path(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount).ok()?;
        let mut out = String::new();
        for c in rel.components() {
            match c {
                Component::Normal(seg) => {
                    out.push('/');
                    out.push_str(seg.to_str()?);
                }
                _ => return None,
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The directory below the root whose cgroup id (inode) is `id`; a walk bounded by the subtree's size.
    pub fn find_id(&self, id: u64) -> Option<PathBuf> {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() {
                    continue;
                }
                if meta.ino() == id {
                    return Some(entry.path());
                }
                stack.push(entry.path());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(prefix: &str) -> CgroupScope {
        CgroupScope {
            mount: PathBuf::from("/sys/fs/cgroup"),
            root: PathBuf::from(format!("/sys/fs/cgroup{prefix}")),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn maps_paths_below_the_root_and_refuses_the_rest() {
        let all = scope("");
        assert_eq!(
            all.directory("/system.slice/docker-1.scope"),
            Ok(PathBuf::from("/sys/fs/cgroup/system.slice/docker-1.scope"))
        );
        assert_eq!(all.root_path(), "/");
        let sub = scope("/kubepods");
        assert_eq!(
            sub.directory("/kubepods/pod1"),
            Ok(PathBuf::from("/sys/fs/cgroup/kubepods/pod1"))
        );
        let e = sub.directory("/kubepods").expect_err("the root itself");
        assert!(
            e.starts_with(
                "cgroup path /kubepods is the agent's cgroup root (BROKER_EBPF_CGROUP_ROOT) itself"
            ),
            "{e}"
        );
        for outside in ["/kubepodsx/a", "/system.slice/a", "/kube"] {
            let e = sub.directory(outside).expect_err(outside);
            assert!(
                e.contains("outside the agent's cgroup root /kubepods"),
                "{e}"
            );
        }
        assert_eq!(
            sub.payload_path(Path::new("/sys/fs/cgroup/kubepods/pod1")),
            Some("/kubepods/pod1".into())
        );
        assert_eq!(sub.payload_path(Path::new("/sys/fs/cgroup")), None);
        assert_eq!(sub.payload_path(Path::new("/elsewhere")), None);
    }
}
