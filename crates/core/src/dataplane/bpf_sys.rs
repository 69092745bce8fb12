//! The raw `bpf()` syscall, for the commands aya 0.14 does not expose (batched map writes, link info, a
//! map-of-maps update that waits for an RCU grace period). Callers pass a `#[repr(C)]` prefix of `union bpf_attr`
//! for their command; the kernel zero-extends a shorter attr and requires a longer one to be zero past its end.

use std::io;

/// `enum bpf_cmd` values from the kernel's uapi `linux/bpf.h` (stable ABI).
pub(crate) const BPF_MAP_CREATE: libc::c_long = 0;
pub(crate) const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub(crate) const BPF_OBJ_GET: libc::c_long = 7;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub(crate) const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
pub(crate) const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

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
