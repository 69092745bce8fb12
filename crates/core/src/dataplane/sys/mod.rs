//! The one place that calls `bpf()` directly, for the commands aya 0.14 does not expose: opening a pinned
//! object, reading a link's info, creating group maps and installing them in a map-of-maps, single and batched
//! element writes. The attr is the kernel's `union bpf_attr` and the command its `enum bpf_cmd`, both as aya-obj
//! generates them from the uapi headers (`aya_obj::generated`, the aya-obj of the pinned aya), so no member
//! layout or command number is written by hand. The rest of the dataplane calls the typed wrappers here and in
//! [`map`].

pub(crate) mod map;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_link_info};

/// A zeroed `union bpf_attr`: every command's members start at zero, and the kernel requires the bytes past the
/// members of a command to be zero.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a union of `#[repr(C)]` structs of integers and integer arrays, for which all-zero
    // bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Issues `bpf(cmd, attr, size_of::<bpf_attr>())`; returns the syscall's non-negative result.
///
/// # Safety
/// The members of `attr` for `cmd` must be set, and every pointer stored in them must point to live memory of
/// the size the kernel reads or writes for `cmd`.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: upheld by the caller (see above); `attr` outlives the call and is `size_of::<bpf_attr>()` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Takes ownership of a descriptor a bpf() command just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf() command returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Opens the BPF object pinned at `path` (BPF_OBJ_GET).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = path_c.as_ptr() as u64;
    // SAFETY: `pathname` points to a NUL-terminated string that outlives the call.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET, &mut attr) }.map(owned)
}

/// Pins the BPF object `fd` at `path` (BPF_OBJ_PIN); fails with EEXIST when something is pinned there.
pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = path_c.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
    // SAFETY: `pathname` points to a NUL-terminated string that outlives the call.
    unsafe { bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr) }.map(|_| ())
}

/// What the adoption check reads of a cgroup link (BPF_OBJ_GET_INFO_BY_FD on a bpf_link).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    /// `enum bpf_link_type`.
    pub link_type: u32,
    pub prog_id: u32,
    /// The cgroup the link is attached to (`bpf_link_info.cgroup.cgroup_id`; 0 when that cgroup is gone).
    pub cgroup_id: u64,
    /// `enum bpf_attach_type` (`bpf_link_info.cgroup.attach_type`).
    pub attach_type: u32,
}

/// Reads the info of the bpf_link `fd` (BPF_OBJ_GET_INFO_BY_FD). The cgroup members read as zero for a link of
/// another type, whose union member this kernel fills in differently: the caller checks `link_type` first.
pub(crate) fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    // SAFETY: `bpf_link_info` is a `#[repr(C)]` struct of integers and unions of integer structs: all-zero bytes
    // are a valid value.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_link_info>() as u32;
    attr.info.info = &mut info as *mut bpf_link_info as u64;
    // SAFETY: `info` is a writable, zeroed buffer of `info_len` bytes that outlives the call; the kernel writes at
    // most `info_len` bytes into it.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    // SAFETY: the union's members are plain integers, so reading `cgroup` is valid whatever the kernel wrote.
    let cgroup = unsafe { info.__bindgen_anon_1.cgroup };
    Ok(LinkInfo {
        link_type: info.type_,
        prog_id: info.prog_id,
        cgroup_id: cgroup.cgroup_id,
        attach_type: cgroup.attach_type,
    })
}
