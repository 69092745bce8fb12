//! Batched map writes (`BPF_MAP_UPDATE_BATCH`), which aya 0.14 does not expose.
//!
//! A policy replacement writes one kernel entry per rule, prefix and rule id: 100,000 rules are several
//! hundred thousand single-element syscalls. The batch commands move the same entries in a few calls
//! (the kernel still applies them one by one, under the same rules as single updates; arrays and hash maps
//! have native batch support since Linux 5.6). This is what keeps a 100,000-rule replacement inside its
//! budget.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::bpf_sys::{self, BPF_MAP_UPDATE_BATCH};

/// Entries per syscall: bounds the kernel's per-call work so a huge snapshot cannot stall one syscall for long.
const CHUNK: usize = 16_384;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const _: () = assert!(std::mem::size_of::<BatchAttr>() == 56);

fn bpf_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a properly initialised `bpf_attr.batch`; the key and value pointers in it point to
    // `count` elements of the map's key and value sizes (checked by the callers).
    unsafe { bpf_sys::bpf(cmd, attr) }.map(|_| ())
}

/// Writes `keys[i] -> values[i]` for every i (BPF_ANY), in chunks. `K` and `V` must be the map's exact key
/// and value types (`#[repr(C)]`, no padding the kernel would read as garbage).
pub(crate) fn update<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    if keys.len() != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "batch update needs one value per key",
        ));
    }
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}
