//! Finding the cgroup v2 and bpf file systems at run time (never hard-coded: hosts mount cgroup2 at
//! /sys/fs/cgroup or, in the hybrid layout, /sys/fs/cgroup/unified).

use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::error::DataplaneError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// Mount points of file systems of type `fstype`, in mountinfo order.
pub(crate) fn mount_points(fstype: &str) -> Result<Vec<PathBuf>, DataplaneError> {
    let text =
        std::fs::read_to_string(MOUNTINFO).map_err(|e| DataplaneError::io("read", MOUNTINFO, e))?;
    Ok(parse_mountinfo(&text, fstype))
}

/// mountinfo line: `id parent maj:min root mount_point options [optional...] - fstype source super_options`.
fn parse_mountinfo(text: &str, fstype: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != fstype {
                return None;
            }
            Some(PathBuf::from(unescape(left.split_whitespace().nth(4)?)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first cgroup2 mount of this mount namespace.
pub fn cgroup2_root() -> Result<PathBuf, DataplaneError> {
    mount_points("cgroup2")?
        .into_iter()
        .next()
        .ok_or(DataplaneError::CgroupRootNotFound)
}

/// The first bpffs mount; mounts one at /sys/fs/bpf when there is none.
pub fn bpffs_root() -> Result<PathBuf, DataplaneError> {
    if let Some(p) = mount_points("bpf")?.into_iter().next() {
        return Ok(p);
    }
    let target = Path::new(DEFAULT_BPFFS);
    std::fs::create_dir_all(target).map_err(|e| DataplaneError::BpffsUnavailable {
        reason: format!("mkdir {DEFAULT_BPFFS}: {e}"),
    })?;
    mount_fs("bpf", target, MountFlags::empty()).map_err(|e| DataplaneError::BpffsUnavailable {
        reason: e.to_string(),
    })?;
    Ok(target.to_path_buf())
}

/// Mounts a pseudo file system of type `fstype` (bpf, securityfs) at `target`.
pub(crate) fn mount_fs(
    fstype: &str,
    target: &Path,
    flags: MountFlags,
) -> Result<(), std::io::Error> {
    // The source of a pseudo file system is only a label; these take no mount data.
    rustix::mount::mount(fstype, target, fstype, flags, None).map_err(std::io::Error::from)
}

/// Detaches the mount at `target` (best effort: used to undo a private, temporary mount).
pub(crate) fn unmount(target: &Path) {
    let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
}

/// True when `path` is on a file system of the given magic number (`statfs(2)`'s `f_type`).
// `f_type` and the magic constants have per-target integer types (signed on x86_64 glibc, unsigned elsewhere):
// compared as the same 64 bits.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn is_fs(path: &Path, magic: u64) -> bool {
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type as u64 == magic)
}

pub(crate) fn is_cgroup2(path: &Path) -> bool {
    is_fs(path, libc::CGROUP2_SUPER_MAGIC as u64)
}

/// The top of the cgroup2 mount that holds `cgroup` (a cgroup2 directory): its highest ancestor still on cgroup2.
/// The programs are attached there, so they run for every socket of every cgroup that mount shows (the whole
/// hierarchy, unless the mount shows only a subtree or a cgroup namespace's root).
pub(crate) fn cgroup2_mount_top(cgroup: &Path) -> PathBuf {
    let mut top = cgroup.to_path_buf();
    while let Some(parent) = top.parent() {
        if parent.as_os_str().is_empty() || !is_cgroup2(parent) {
            break;
        }
        top = parent.to_path_buf();
    }
    top
}

pub(crate) fn is_bpffs(path: &Path) -> bool {
    is_fs(path, libc::BPF_FS_MAGIC as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_and_unescapes_spaces() {
        let info = "25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                    30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n\
                    31 25 0:27 / /sys/fs/cgroup/sys\\040tem rw - cgroup cgroup rw,name=systemd\n\
                    40 1 0:30 / /mnt/my\\040bpf rw - bpf bpf rw\n";
        assert_eq!(
            parse_mountinfo(info, "cgroup2"),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert_eq!(
            parse_mountinfo(info, "bpf"),
            vec![PathBuf::from("/mnt/my bpf")]
        );
        assert!(parse_mountinfo(info, "xfs").is_empty());
    }
}
