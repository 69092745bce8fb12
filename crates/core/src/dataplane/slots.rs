//! The two policy slots and the atomic switch between them.
//!
//! A replacement writes the whole new generation (groups, overflow entries, rule ids, slot metadata) into the
//! inactive slot, then flips `dp_config.active_slot` with one store. A program reads `active_slot` once and
//! afterwards reads only that slot, so every verdict uses exactly one generation. The slot that just became
//! inactive may still be read by program runs that started before the flip; right after the flip a background
//! thread gives it fresh, empty group maps ([`GroupMaps::reclaim`]), which returns only after an RCU grace period,
//! so by the time the next replacement writes into that slot, no run that read it is left
//! (docs/dataplane.md, "Atomic replacement"). A replacement waits only when it follows the previous one within
//! those grace periods.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::maps::{Array, MapData};

use super::abi::{self, c, Group, IdSlot, Key4, Key6, RuleEntry, SlotMeta};
use super::config_map::ConfigMapping;
use super::error::DataplaneError;
use super::group_maps::{GroupMaps, SlotGroups};
use super::policy_compile::{CompiledPolicy, PrefixEntries};
use super::sys;

const ENTRY_SLOT_ENTRIES: u32 = c::DP_ENTRY_SLOT_ENTRIES as u32;
const ENTRIES_PER_FAMILY: u32 = c::DP_ENTRIES_PER_FAMILY as u32;
const RULE_IDS_PER_SLOT: u32 = c::DP_RULE_IDS_PER_SLOT as u32;

/// The state of the inactive slot.
pub(crate) enum Inactive {
    /// A background thread is reclaiming it (or has: joining it returns the fresh group maps).
    Reclaiming(JoinHandle<std::io::Result<SlotGroups>>),
    /// Not reclaimed (a reclaim or a write failed, or no thread could be started): the next replacement
    /// reclaims it in place.
    Dirty,
}

/// The maps a replacement writes.
pub(crate) struct PolicyMaps {
    pub slot_meta: Array<MapData, SlotMeta>,
    pub rule_ids: Array<MapData, IdSlot>,
    /// Second handles on the arrays written in bulk, for the batch syscalls aya does not expose.
    pub batch: BatchHandles,
    pub groups: Arc<GroupMaps>,
    pub inactive: Inactive,
}

impl PolicyMaps {
    pub(crate) fn meta(&self, slot: u32) -> Result<SlotMeta, DataplaneError> {
        self.slot_meta
            .get(&slot, 0)
            .map_err(|e| DataplaneError::map("dp_slot_meta", e))
    }

    /// The rule id of `rule_index` in `slot`, if set.
    pub(crate) fn rule_id(&self, slot: u32, rule_index: u32) -> Option<String> {
        if rule_index >= RULE_IDS_PER_SLOT {
            return None;
        }
        let id = self
            .rule_ids
            .get(&(slot * RULE_IDS_PER_SLOT + rule_index), 0)
            .ok()?;
        decode_id(&id.bytes)
    }

    /// Starts reclaiming `slot` (which must not be the active slot) in the background.
    pub(crate) fn start_reclaim(&mut self, slot: u32) {
        let groups = self.groups.clone();
        self.inactive = match std::thread::Builder::new()
            .name("dp-reclaim-slot".into())
            .spawn(move || groups.reclaim(slot))
        {
            Ok(t) => Inactive::Reclaiming(t),
            Err(_) => Inactive::Dirty,
        };
    }

    /// The inactive slot's fresh group maps, once no program run can still read that slot.
    fn take_ready(&mut self, slot: u32) -> Result<SlotGroups, DataplaneError> {
        let ready = match std::mem::replace(&mut self.inactive, Inactive::Dirty) {
            // A failed background reclaim proves nothing: reclaim again, in place.
            Inactive::Reclaiming(t) => match t.join() {
                Ok(Ok(groups)) => Ok(groups),
                _ => self.groups.reclaim(slot),
            },
            Inactive::Dirty => self.groups.reclaim(slot),
        };
        ready.map_err(|e| {
            DataplaneError::map("dp_groups", format!("reclaim the inactive slot: {e}"))
        })
    }

    fn write_slot(
        &mut self,
        slot: u32,
        groups: &SlotGroups,
        p: &CompiledPolicy,
        generation: u64,
    ) -> Result<(), DataplaneError> {
        let slot8 = slot as u8;
        let mut overflow_idx: Vec<u32> = Vec::new();
        let mut overflow: Vec<RuleEntry> = Vec::new();
        let base4 = slot * ENTRY_SLOT_ENTRIES;
        let base6 = base4 + ENTRIES_PER_FAMILY;
        let (keys4, groups4) =
            group_values(&p.v4, base4, &mut overflow_idx, &mut overflow, |g| Key4 {
                slot: slot8,
                prefix_len: g.prefix_len,
                pad: 0,
                addr: g.addr,
            });
        let (keys6, groups6) =
            group_values(&p.v6, base6, &mut overflow_idx, &mut overflow, |g| Key6 {
                slot: slot8,
                prefix_len: g.prefix_len,
                pad: 0,
                addr: g.addr,
            });
        // Overflow entries before the groups that point to them; all of it before the flip makes any of it
        // visible to a program.
        sys::map::update_batch(self.batch.entries.fd().as_fd(), &overflow_idx, &overflow)
            .map_err(|e| DataplaneError::map("dp_entries", format!("batch update: {e}")))?;
        let id_idx: Vec<u32> = (0..p.rule_ids.len() as u32)
            .map(|i| slot * RULE_IDS_PER_SLOT + i)
            .collect();
        let id_vals: Vec<IdSlot> = p
            .rule_ids
            .iter()
            .map(|id| {
                let mut slot_bytes = IdSlot {
                    bytes: [0; abi::ID_BYTES],
                };
                slot_bytes.bytes[..id.len()].copy_from_slice(id.as_bytes());
                slot_bytes
            })
            .collect();
        sys::map::update_batch(self.batch.rule_ids.fd().as_fd(), &id_idx, &id_vals)
            .map_err(|e| DataplaneError::map("dp_rule_ids", format!("batch update: {e}")))?;
        sys::map::update_batch(fd(&groups.v4), &keys4, &groups4)
            .map_err(|e| DataplaneError::map("dp_groups4", format!("batch update: {e}")))?;
        sys::map::update_batch(fd(&groups.v6), &keys6, &groups6)
            .map_err(|e| DataplaneError::map("dp_groups6", format!("batch update: {e}")))?;
        let mut meta = SlotMeta {
            generation,
            allow_one_in: p.allow_one_in,
            unmanaged_one_in: p.unmanaged_one_in,
            ipv4_rules: p.ipv4_rules,
            ipv6_rules: p.ipv6_rules,
            broker_endpoints: p.broker_endpoints,
            dns_endpoints: p.dns_endpoints,
            n_len4: p.len4.len() as u8,
            n_len6: p.len6.len() as u8,
            ..SlotMeta::default()
        };
        meta.len4[..p.len4.len()].copy_from_slice(&p.len4);
        meta.len6[..p.len6.len()].copy_from_slice(&p.len6);
        self.slot_meta
            .set(slot, meta, 0)
            .map_err(|e| DataplaneError::map("dp_slot_meta", e))
    }

    /// Writes `p` as the next generation into the inactive slot and flips to it. Returns the new generation.
    /// On error the active slot (and so the enforced policy) is unchanged.
    pub(crate) fn replace(
        &mut self,
        config: &ConfigMapping,
        p: &CompiledPolicy,
    ) -> Result<u64, DataplaneError> {
        let active = config.active_slot();
        let inactive = active ^ 1;
        let generation = self.meta(0)?.generation.max(self.meta(1)?.generation) + 1;
        let groups = self.take_ready(inactive)?;
        if let Err(e) = self.write_slot(inactive, &groups, p, generation) {
            // Half written: reclaim it before the next replacement uses it.
            self.start_reclaim(inactive);
            return Err(e);
        }
        config.set_active_slot(inactive);
        config.bump_epoch();
        self.start_reclaim(active);
        Ok(generation)
    }
}

fn fd(owned: &std::os::fd::OwnedFd) -> BorrowedFd<'_> {
    owned.as_fd()
}

/// The group values of one family and their keys; groups larger than the inline room go to the overflow array.
fn group_values<const N: usize, K>(
    family: &[PrefixEntries<N>],
    base: u32,
    overflow_idx: &mut Vec<u32>,
    overflow: &mut Vec<RuleEntry>,
    key: impl Fn(&PrefixEntries<N>) -> K,
) -> (Vec<K>, Vec<Group>) {
    let mut keys = Vec::with_capacity(family.len());
    let mut values = Vec::with_capacity(family.len());
    let mut next = 0u32;
    for g in family {
        let mut value = Group {
            count: g.entries.len() as u32,
            ..Group::default()
        };
        if g.entries.len() <= abi::GROUP_INLINE {
            value.entries[..g.entries.len()].copy_from_slice(&g.entries);
        } else {
            value.first = next;
            for e in &g.entries {
                overflow_idx.push(base + next);
                overflow.push(*e);
                next += 1;
            }
        }
        keys.push(key(g));
        values.push(value);
    }
    (keys, values)
}

/// Second file descriptors on the arrays a replacement writes in bulk (opened from their pins).
pub(crate) struct BatchHandles {
    pub entries: MapData,
    pub rule_ids: MapData,
}

impl BatchHandles {
    pub(crate) fn open(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let open = |name: &'static str| {
            MapData::from_pin(pin_dir.join(name))
                .map_err(|e| DataplaneError::map(name, format!("open pin: {e}")))
        };
        Ok(BatchHandles {
            entries: open("dp_entries")?,
            rule_ids: open("dp_rule_ids")?,
        })
    }
}

/// A NUL-padded id slot as a string (`None` when empty).
pub(crate) fn decode_id(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    if end == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Encodes an id into a fixed slot; `None` when longer than the slot or containing NUL.
pub(crate) fn encode_id(id: &str) -> Option<[u8; abi::ID_BYTES]> {
    if id.len() > abi::ID_BYTES || id.as_bytes().contains(&0) {
        return None;
    }
    let mut out = [0u8; abi::ID_BYTES];
    out[..id.len()].copy_from_slice(id.as_bytes());
    Some(out)
}
