//! The group maps of each policy slot, and reclaiming a slot after a flip.
//!
//! `dp_groups4` / `dp_groups6` / `dp_entries` are map-of-maps (`ARRAY_OF_MAPS[2]`): element `slot` is the hash
//! map of that slot's IPv4 groups, IPv6 groups, and the overflow entries of its large groups (bpf/policy_lookup.h).
//! All three allocate their elements as they are written (`BPF_F_NO_PREALLOC`), and each is created with room
//! ([`Capacity`]) for the policy it is meant for, not for the largest policy a slot can hold: a hash map's bucket
//! array (16 bytes per slot of `max_entries`, rounded up to a power of two) is allocated whole at creation, and for
//! the largest room that alone was 4 MiB per group map and 8 MiB per entry map. (The kernel compares an inner
//! hash map with the map-of-maps' template by type, key and value size and flags, not by `max_entries`.) Before a
//! policy is written into a slot, the slot gets a fresh, empty set of maps, and its previous set is dropped
//! whole: the kernel frees it (and the up to 139,264 groups in it) in the background, so clearing a slot costs the
//! same whatever it held.
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

use super::abi::{c, Group, Key4, Key6, RuleEntry};
use super::pins;
use super::sys;

/// How many elements each of a slot's three maps can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub v4: u32,
    pub v6: u32,
    pub entries: u32,
}

impl Capacity {
    /// The least room a map is created with: 1,024 elements, a 16 KiB bucket array.
    const MIN: u32 = 1024;

    /// Room for `v4` / `v6` groups and `entries` overflow entries and a quarter more, each rounded up to the
    /// power of two the kernel sizes its bucket array to anyway, within the C definitions' limits.
    pub(crate) fn for_counts(v4: usize, v6: usize, entries: usize) -> Capacity {
        let room = |n: usize, max: u64| -> u32 {
            let want = (n + n / 4).max(Self::MIN as usize).next_power_of_two() as u64;
            want.min(max) as u32
        };
        Capacity {
            v4: room(v4, c::DP_GROUPS_PER_FAMILY),
            v6: room(v6, c::DP_GROUPS_PER_FAMILY),
            entries: room(entries, c::DP_ENTRY_SLOT_ENTRIES),
        }
    }

    /// The least room there is: for an empty policy.
    pub(crate) fn least() -> Capacity {
        Capacity::for_counts(0, 0, 0)
    }

    /// Room for both.
    pub(crate) fn max(self, other: Capacity) -> Capacity {
        Capacity {
            v4: self.v4.max(other.v4),
            v6: self.v6.max(other.v6),
            entries: self.entries.max(other.entries),
        }
    }

    /// Whether maps of this room take a policy that needs `need`.
    pub(crate) fn holds(&self, need: &Capacity) -> bool {
        self.v4 >= need.v4 && self.v6 >= need.v6 && self.entries >= need.entries
    }
}

/// A group map of one slot, created as `dp_groups4_slot` / `dp_groups6_slot` are defined in C (the kernel
/// refuses to install a map of another type, key or value size, or flags) with room for `max_entries` groups.
fn create_group_map(key_size: usize, max_entries: u32, name: &[u8]) -> io::Result<OwnedFd> {
    sys::map::create_hash(
        key_size as u32,
        std::mem::size_of::<Group>() as u32,
        max_entries,
        BPF_F_NO_PREALLOC,
        name,
    )
}

/// A slot's overflow-entry map, created as `dp_entries_slot` is defined in C, with room for `max_entries`.
fn create_entries_map(max_entries: u32) -> io::Result<OwnedFd> {
    sys::map::create_hash(
        std::mem::size_of::<u32>() as u32,
        std::mem::size_of::<RuleEntry>() as u32,
        max_entries,
        BPF_F_NO_PREALLOC,
        b"dp_entries_slot",
    )
}

/// `outer[slot] = inner`: returns after an RCU grace period (see the module documentation).
fn install(outer: &OwnedFd, slot: u32, inner: &OwnedFd) -> io::Result<()> {
    let value: u32 = inner.as_raw_fd() as u32;
    // SAFETY: an array-of-maps takes a u32 key and a u32 value (the inner map's fd).
    unsafe { sys::map::update_elem(outer.as_fd(), &slot, &value) }
}

/// The group and overflow-entry maps of one slot, ready to be written: empty when just installed.
pub(crate) struct SlotGroups {
    pub v4: OwnedFd,
    pub v6: OwnedFd,
    pub entries: OwnedFd,
    pub capacity: Capacity,
}

/// The three map-of-maps, opened from their pins.
pub(crate) struct GroupMaps {
    outer4: OwnedFd,
    outer6: OwnedFd,
    outer_entries: OwnedFd,
}

impl GroupMaps {
    pub(crate) fn open(pin_dir: &Path) -> io::Result<Self> {
        Ok(GroupMaps {
            outer4: sys::obj_get(&pins::map_pin(pin_dir, "dp_groups4"))?,
            outer6: sys::obj_get(&pins::map_pin(pin_dir, "dp_groups6"))?,
            outer_entries: sys::obj_get(&pins::map_pin(pin_dir, "dp_entries"))?,
        })
    }

    /// Gives `slot` a fresh, empty set of maps and drops its previous set. Returns once no program run that
    /// began before the call can still read anything of `slot`, provided `slot` was not the active slot when the
    /// call began. The three installations (each one RCU grace period) run side by side.
    pub(crate) fn reclaim(&self, slot: u32, capacity: Capacity) -> io::Result<SlotGroups> {
        let groups = SlotGroups {
            v4: create_group_map(std::mem::size_of::<Key4>(), capacity.v4, b"dp_groups4_slot")?,
            v6: create_group_map(std::mem::size_of::<Key6>(), capacity.v6, b"dp_groups6_slot")?,
            entries: create_entries_map(capacity.entries)?,
            capacity,
        };
        let joined = |h: std::thread::ScopedJoinHandle<'_, io::Result<()>>| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("the installing thread panicked")))
        };
        std::thread::scope(|s| {
            let v6 = s.spawn(|| install(&self.outer6, slot, &groups.v6));
            let entries = s.spawn(|| install(&self.outer_entries, slot, &groups.entries));
            let v4 = install(&self.outer4, slot, &groups.v4);
            v4.and(joined(v6)).and(joined(entries))
        })?;
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_a_power_of_two_with_a_quarter_spare_within_the_c_limits() {
        assert_eq!(Capacity::least(), Capacity::for_counts(0, 0, 0));
        assert_eq!(Capacity::least().v4, Capacity::MIN);
        let c = Capacity::for_counts(1_000, 10_000, 100_000);
        assert_eq!((c.v4, c.v6, c.entries), (2_048, 16_384, 131_072));
        // 100,000 groups and a quarter more fit 131,072; the C definition's room (139,264) caps larger needs.
        assert_eq!(Capacity::for_counts(100_000, 0, 0).v4, 131_072);
        assert_eq!(
            Capacity::for_counts(131_072, 131_072, 400_000),
            Capacity {
                v4: c::DP_GROUPS_PER_FAMILY as u32,
                v6: c::DP_GROUPS_PER_FAMILY as u32,
                entries: c::DP_ENTRY_SLOT_ENTRIES as u32,
            }
        );
        assert!(c.holds(&Capacity::for_counts(1_600, 10_000, 0)));
        assert!(!c.holds(&Capacity::for_counts(1_700, 10_000, 0)));
        assert_eq!(c.max(Capacity::least()), c);
    }
}
