//! Map commands through [`super::bpf`]: creating a hash map, reading and writing one element, and batched
//! writes (`BPF_MAP_UPDATE_BATCH`).
//!
//! A policy replacement writes one kernel entry per rule, prefix and rule id: 100,000 rules are several
//! hundred thousand single-element syscalls. The batch command moves the same entries in a few calls (the
//! kernel still applies them one by one, under the same rules as single updates; arrays and hash maps have
//! native batch support since Linux 5.6). This is what keeps a 100,000-rule replacement inside its budget.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use aya_obj::generated::{bpf_cmd, bpf_map_type};

use super::{bpf, owned, zeroed_attr};

/// Entries per batch syscall: bounds the kernel's per-call work so a huge snapshot cannot stall one syscall for
/// long.
const CHUNK: usize = 16_384;

/// Creates a hash map (BPF_MAP_CREATE) with these parameters; `name` is cut to the kernel's 15 bytes.
pub(crate) fn create_hash(
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &[u8],
) -> io::Result<OwnedFd> {
    create(
        bpf_map_type::BPF_MAP_TYPE_HASH,
        key_size,
        value_size,
        max_entries,
        map_flags,
        name,
    )
}

/// Creates an array map (u32 keys) of `max_entries` values of `value_size` bytes.
pub(crate) fn create_array(value_size: u32, max_entries: u32, name: &[u8]) -> io::Result<OwnedFd> {
    create(
        bpf_map_type::BPF_MAP_TYPE_ARRAY,
        4,
        value_size,
        max_entries,
        0,
        name,
    )
}

fn create(
    map_type: bpf_map_type,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &[u8],
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the members of a union's struct member; every member is a plain integer.
    let create = unsafe { &mut attr.__bindgen_anon_1 };
    create.map_type = map_type as u32;
    create.key_size = key_size;
    create.value_size = value_size;
    create.max_entries = max_entries;
    create.map_flags = map_flags;
    for (dst, src) in create.map_name.iter_mut().zip(name.iter().take(15)) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a BPF_MAP_CREATE attr without pointers.
    unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }.map(owned)
}

/// Reads the element at `key` into `value` (BPF_MAP_LOOKUP_ELEM).
///
/// # Safety
/// `key` must be exactly the map's key size and `value` exactly its value size: the kernel reads and writes
/// that many bytes through them.
pub(crate) unsafe fn lookup_elem(
    map: BorrowedFd<'_>,
    key: &[u8],
    value: &mut [u8],
) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    attr.__bindgen_anon_2.key = key.as_ptr() as u64;
    attr.__bindgen_anon_2.__bindgen_anon_1.value = value.as_mut_ptr() as u64;
    // SAFETY: key and value point to live buffers of the map's key and value sizes (the caller's contract).
    unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) }.map(|_| ())
}

/// Writes `value` at `key` (BPF_MAP_UPDATE_ELEM, BPF_ANY).
///
/// # Safety
/// `K` and `V` must be exactly the map's key and value types (sizes): the kernel reads that many bytes.
pub(crate) unsafe fn update_elem<K, V>(map: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    attr.__bindgen_anon_2.key = key as *const K as u64;
    attr.__bindgen_anon_2.__bindgen_anon_1.value = value as *const V as u64;
    // SAFETY: key and value point to live values of the map's key and value sizes (the caller's contract).
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

/// Writes `values[i * value_size..][..value_size]` at index `i` of an array map of that value size, for every
/// whole value in `values` (BPF_ANY), in chunks.
pub(crate) fn update_array_batch(
    map: BorrowedFd<'_>,
    value_size: usize,
    values: &[u8],
) -> io::Result<()> {
    if value_size == 0 || !values.len().is_multiple_of(value_size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "batch update needs whole values",
        ));
    }
    let n = values.len() / value_size;
    let keys: Vec<u32> = (0..n as u32).collect();
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK * value_size)) {
        let mut attr = zeroed_attr();
        attr.batch.keys = k.as_ptr() as u64;
        attr.batch.values = v.as_ptr() as u64;
        attr.batch.count = k.len() as u32;
        attr.batch.map_fd = map.as_raw_fd() as u32;
        // SAFETY: `count` u32 keys and `count * value_size` value bytes (the map's value size, the caller's
        // contract); both slices outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    }
    Ok(())
}

/// Writes `keys[i] -> values[i]` for every i (BPF_ANY), in chunks. `K` and `V` must be the map's exact key
/// and value types (`#[repr(C)]`, no padding the kernel would read as garbage).
pub(crate) fn update_batch<K: Copy, V: Copy>(
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
        let mut attr = zeroed_attr();
        attr.batch.keys = k.as_ptr() as u64;
        attr.batch.values = v.as_ptr() as u64;
        attr.batch.count = k.len() as u32;
        attr.batch.map_fd = map.as_raw_fd() as u32;
        // SAFETY: the key and value pointers point to `count` elements of the map's key and value sizes (the
        // callers pass the map's own types); both slices outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    }
    Ok(())
}
