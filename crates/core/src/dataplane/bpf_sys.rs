//! The raw `bpf()` syscall, for the commands aya 0.14 does not expose (batched map writes, link info, group
//! maps created and installed in a map-of-maps). Callers pass a `#[repr(C)]` prefix of `union bpf_attr`
//! for their command; the kernel zero-extends a shorter attr and requires a longer one to be zero past its end.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `enum bpf_cmd` values from the kernel's uapi `linux/bpf.h` (stable ABI).
pub(crate) const BPF_MAP_CREATE: libc::c_long = 0;
pub(crate) const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub(crate) const BPF_OBJ_GET: libc::c_long = 7;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub(crate) const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Issues `bpf(cmd, attr, size_of::<T>())`; returns the syscall's non-negative result.
///
/// # Safety
/// `T` must be a `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, and every pointer stored in `attr` must point
/// to live memory of the size the kernel reads or writes for `cmd`.
pub(crate) unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: upheld by the caller (see above); `attr` outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ElemAttr {
    pub map_fd: u32,
    pub pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// The `BPF_OBJ_GET` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// Takes ownership of a descriptor a bpf() command just returned.
pub(crate) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf() command returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Opens the BPF object pinned at `path` (BPF_OBJ_GET).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut attr = ObjGetAttr {
        pathname: path_c.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: `pathname` points to a NUL-terminated string that outlives the call.
    unsafe { bpf(BPF_OBJ_GET, &mut attr) }.map(owned)
}
