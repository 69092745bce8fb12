//! The group maps of each policy slot, and reclaiming a slot after a flip.
//!
//! `dp_groups4` / `dp_groups6` are map-of-maps (`ARRAY_OF_MAPS[2]`): element `slot` is the hash map of that
//! slot's groups (bpf/policy_lookup.h). Before a policy is written into a slot, the slot gets a fresh, empty pair
//! of group maps, and its previous pair is dropped whole: the kernel frees it (and the up to 139,264 groups in
//! it) in the background, so clearing a slot costs the same whatever it held.
//!
//! Installing a map is also what makes reusing a slot safe. The kernel runs cgroup sock_addr programs inside
//! `rcu_read_lock()` (`bpf_prog_run_array_cg`), so a program run is an RCU read-side critical section, and
//! updating an element of an `ARRAY_OF_MAPS` from the `bpf()` syscall calls `synchronize_rcu()` before it
//! returns (`maybe_wait_bpf_programs()` in kernel/bpf/syscall.c, since Linux 5.0, there so that "userspace, when
//! we return to it, knows that all non-sleepable programs that could be running use the new map value"; the
//! kernel's selftests use the same update to wait for a grace period). The loader installs a slot's fresh maps
//! only after it flipped `dp_config.active_slot` away from that slot, so when the installation returns, every
//! program run that could have read the old `active_slot` -- and so anything of that slot: its metadata, its
//! groups, its overflow entries -- has finished, and every later run reads the new `active_slot`
//! (`synchronize_rcu()` orders the caller's earlier stores, the flip included, before every read-side section
//! that begins after the grace period starts). `membarrier(MEMBARRIER_CMD_GLOBAL)` would not do: on a
//! single-CPU machine it returns without a grace period, so it does not wait for a reader preempted inside its
//! section under PREEMPT_RCU.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use aya_obj::generated::BPF_F_NO_PREALLOC;

use super::abi::{c, Group, Key4, Key6};
use super::pins;
use super::sys;

/// A group map of one slot, created exactly as `dp_groups4_slot` / `dp_groups6_slot` are defined in C (the
/// kernel refuses to install a map of other parameters).
fn create_group_map(key_size: usize, name: &[u8]) -> io::Result<OwnedFd> {
    sys::map::create_hash(
        key_size as u32,
        std::mem::size_of::<Group>() as u32,
        c::DP_GROUPS_PER_FAMILY as u32,
        BPF_F_NO_PREALLOC,
        name,
    )
}

/// `outer[slot] = inner`: returns after an RCU grace period (see the module documentation).
fn install(outer: &OwnedFd, slot: u32, inner: &OwnedFd) -> io::Result<()> {
    let value: u32 = inner.as_raw_fd() as u32;
    // SAFETY: an array-of-maps takes a u32 key and a u32 value (the inner map's fd).
    unsafe { sys::map::update_elem(outer.as_fd(), &slot, &value) }
}

/// The group maps of one slot, ready to be written: empty when just installed.
pub(crate) struct SlotGroups {
    pub v4: OwnedFd,
    pub v6: OwnedFd,
}

/// The two map-of-maps, opened from their pins.
pub(crate) struct GroupMaps {
    outer4: OwnedFd,
    outer6: OwnedFd,
}

impl GroupMaps {
    pub(crate) fn open(pin_dir: &Path) -> io::Result<Self> {
        Ok(GroupMaps {
            outer4: sys::obj_get(&pins::map_pin(pin_dir, "dp_groups4"))?,
            outer6: sys::obj_get(&pins::map_pin(pin_dir, "dp_groups6"))?,
        })
    }

    /// Gives `slot` a fresh, empty pair of group maps and drops its previous pair. Returns once no program run
    /// that began before the call can still read anything of `slot`, provided `slot` was not the active slot
    /// when the call began. The two installations (each one RCU grace period) run side by side.
    pub(crate) fn reclaim(&self, slot: u32) -> io::Result<SlotGroups> {
        let groups = SlotGroups {
            v4: create_group_map(std::mem::size_of::<Key4>(), b"dp_groups4_slot")?,
            v6: create_group_map(std::mem::size_of::<Key6>(), b"dp_groups6_slot")?,
        };
        std::thread::scope(|s| {
            let v6 = s.spawn(|| install(&self.outer6, slot, &groups.v6));
            let v4 = install(&self.outer4, slot, &groups.v4);
            let v6 = v6
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the installing thread panicked")));
            v4.and(v6)
        })?;
        Ok(groups)
    }
}
