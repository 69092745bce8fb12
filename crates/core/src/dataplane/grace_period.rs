//! Waiting for every program run that may still read an old policy slot: one RCU grace period.
//!
//! The kernel runs cgroup sock_addr programs inside `rcu_read_lock()` (`bpf_prog_run_array_cg`), so a program run
//! is an RCU read-side critical section. After user space flips `dp_config.active_slot`, a run that began before
//! the flip may still read the old slot; once a full RCU grace period has passed since the flip, every such run
//! has returned, and every later run reads the new slot (`synchronize_rcu()` orders the caller's earlier stores,
//! the flip included, before any read-side section that starts after the grace period begins).
//!
//! User space has no `synchronize_rcu()`, but the kernel calls it on our behalf: updating an element of an
//! `ARRAY_OF_MAPS` from the `bpf()` syscall waits, before returning, for all running non-sleepable BPF programs
//! (`maybe_wait_bpf_programs()` in kernel/bpf/syscall.c, since Linux 5.0, there so that "userspace, when we return
//! to it, knows that all non-sleepable programs that could be running use the new map value"; the kernel's own
//! selftests use exactly this to trigger `synchronize_rcu()`). Each [`GracePeriod::wait`] updates element 0 of a
//! private one-element map-of-maps with the same inner map. `membarrier(MEMBARRIER_CMD_GLOBAL)` is not used: on
//! a single-CPU machine it returns without a grace period, which does not wait for a reader preempted inside its
//! read-side section under PREEMPT_RCU.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::bpf_sys::{bpf, BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM};

/// `enum bpf_map_type` values from the kernel's uapi `linux/bpf.h` (stable ABI).
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The leading members of `union bpf_attr` for BPF_MAP_CREATE; the rest stays zero, as the kernel requires.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    rest: [u32; 12],
}

/// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn create(map_type: u32, inner: Option<&OwnedFd>, name: &[u8]) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        inner_map_fd: inner.map_or(0, |fd| fd.as_raw_fd() as u32),
        ..MapCreateAttr::default()
    };
    let n = name.len().min(15);
    attr.map_name[..n].copy_from_slice(&name[..n]);
    // SAFETY: a zero-initialised BPF_MAP_CREATE attr without pointers.
    let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A private map-of-maps whose every update is a full RCU grace period.
pub(crate) struct GracePeriod {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl GracePeriod {
    pub(crate) fn new() -> io::Result<Self> {
        let inner = create(BPF_MAP_TYPE_ARRAY, None, b"dp_rcu_inner")?;
        let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner), b"dp_rcu_sync")?;
        Ok(GracePeriod { outer, inner })
    }

    /// Returns once every BPF program run that began before the call has finished.
    pub(crate) fn wait(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.outer.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapElemAttr::default()
        };
        // SAFETY: key and value point to live u32s, the sizes of the map's key and value.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_can_be_awaited_repeatedly() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED a_grace_period_can_be_awaited_repeatedly: creating BPF maps needs root"
            );
            return;
        }
        let gp = GracePeriod::new().expect("create the map-of-maps");
        let started = std::time::Instant::now();
        for _ in 0..3 {
            gp.wait().expect("update waits for a grace period");
        }
        eprintln!("3 grace periods in {:?}", started.elapsed());
    }
}
