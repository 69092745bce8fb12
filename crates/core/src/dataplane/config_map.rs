//! The global configuration map (`dp_config`), written through a shared memory mapping. Each field is stored with
//! one aligned atomic store, so a program reading it concurrently never sees a torn heartbeat, mode or slot
//! (a `bpf_map_update_elem` would copy the whole value with memcpy, which gives no such guarantee).

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use rustix::time::{clock_gettime, ClockId};

use super::abi::{self, Config};
use super::error::DataplaneError;
use crate::contract::load_options::page_size;

pub(crate) struct ConfigMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics; it stays valid until Drop unmaps it.
unsafe impl Send for ConfigMapping {}
// SAFETY: see above; concurrent access goes through AtomicU32/AtomicU64 only.
unsafe impl Sync for ConfigMapping {}

impl ConfigMapping {
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Result<Self, DataplaneError> {
        let len = usize::try_from(page_size())
            .unwrap_or(4096)
            .max(std::mem::size_of::<Config>());
        // SAFETY: a fresh shared mapping of a BPF_F_MMAPABLE array fd at no fixed address: nothing else is mapped
        // over; the kernel checks the length and flags.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| DataplaneError::map("dp_config", format!("mmap: {e}")))?;
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| DataplaneError::map("dp_config", "mmap returned NULL"))?;
        Ok(ConfigMapping { base, len })
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: `off` is a field offset of Config (8-aligned, checked by offset_of! in abi.rs) inside the
        // page-aligned mapping, which lives as long as `self`.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: as in u64_at, for a 4-aligned u32 field.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Where the sock_addr programs steer DNS traffic (SPEC 4b): the addresses first, then the port, whose
    /// non-zero value turns steering on; port 0 turns it off.
    pub(crate) fn set_dns_proxy(
        &self,
        ip4: std::net::Ipv4Addr,
        ip6: std::net::Ipv6Addr,
        port: u16,
    ) {
        self.u32_at(abi::CONFIG_OFF_DNS_PROXY_IP4)
            .store(u32::from_ne_bytes(ip4.octets()), Ordering::Release);
        let o = ip6.octets();
        for i in 0..4 {
            let word = u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
            self.u32_at(abi::CONFIG_OFF_DNS_PROXY_IP6 + 4 * i)
                .store(word, Ordering::Release);
        }
        // The port in network order in the u16 field; the padding half of the word stays 0.
        let bytes = port.to_be_bytes();
        self.u32_at(abi::CONFIG_OFF_DNS_PROXY_PORT).store(
            u32::from_ne_bytes([bytes[0], bytes[1], 0, 0]),
            Ordering::Release,
        );
    }

    /// The proxy's port (host order), 0 when none is set.
    pub(crate) fn dns_proxy_port(&self) -> u16 {
        let b = self
            .u32_at(abi::CONFIG_OFF_DNS_PROXY_PORT)
            .load(Ordering::Acquire)
            .to_ne_bytes();
        u16::from_be_bytes([b[0], b[1]])
    }

    pub(crate) fn heartbeat_ns(&self) -> u64 {
        self.u64_at(abi::CONFIG_OFF_HEARTBEAT)
            .load(Ordering::Acquire)
    }
    pub(crate) fn set_heartbeat_ns(&self, v: u64) {
        self.u64_at(abi::CONFIG_OFF_HEARTBEAT)
            .store(v, Ordering::Release)
    }
    pub(crate) fn grace_ns(&self) -> u64 {
        self.u64_at(abi::CONFIG_OFF_GRACE).load(Ordering::Acquire)
    }
    pub(crate) fn set_grace_ns(&self, v: u64) {
        self.u64_at(abi::CONFIG_OFF_GRACE)
            .store(v, Ordering::Release)
    }
    pub(crate) fn active_slot(&self) -> u32 {
        self.u32_at(abi::CONFIG_OFF_ACTIVE_SLOT)
            .load(Ordering::Acquire)
            & 1
    }
    /// The flip: one store of 0 or 1. SeqCst so the slot contents written before it are visible first.
    pub(crate) fn set_active_slot(&self, v: u32) {
        self.u32_at(abi::CONFIG_OFF_ACTIVE_SLOT)
            .store(v & 1, Ordering::SeqCst)
    }
    pub(crate) fn global_mode(&self) -> u32 {
        self.u32_at(abi::CONFIG_OFF_GLOBAL_MODE)
            .load(Ordering::Acquire)
    }
    pub(crate) fn set_global_mode(&self, v: u32) {
        self.u32_at(abi::CONFIG_OFF_GLOBAL_MODE)
            .store(v, Ordering::Release)
    }
    /// Invalidates every verdict a UDP socket cached (bpf/dataplane.bpf.c, `run`). Called after each change a
    /// verdict depends on has reached the maps: a program that reads the new epoch then sees the change.
    pub(crate) fn bump_epoch(&self) {
        self.u64_at(abi::CONFIG_OFF_EPOCH)
            .fetch_add(1, Ordering::SeqCst);
    }
    /// The layout fingerprint of the build that created the maps (checked before adoption, written at creation).
    pub(crate) fn set_abi_fingerprint(&self, v: u64) {
        self.u64_at(abi::CONFIG_OFF_ABI_FINGERPRINT)
            .store(v, Ordering::Release)
    }
    /// The managed subtree's root (the options' cgroup root): the programs walk no ancestor above it.
    pub(crate) fn set_subtree_id(&self, v: u64) {
        self.u64_at(abi::CONFIG_OFF_SUBTREE_ID)
            .store(v, Ordering::Release)
    }
    pub(crate) fn fail_mode(&self) -> u32 {
        self.u32_at(abi::CONFIG_OFF_FAIL_MODE)
            .load(Ordering::Acquire)
    }
    pub(crate) fn set_fail_mode(&self, v: u32) {
        self.u32_at(abi::CONFIG_OFF_FAIL_MODE)
            .store(v, Ordering::Release)
    }
}

impl Drop for ConfigMapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; no reference into the mapping outlives `self`.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(ClockId::Monotonic)
}

pub(crate) fn clock_ns(clock: ClockId) -> u64 {
    let ts = clock_gettime(clock);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
