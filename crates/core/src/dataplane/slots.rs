//! The two policy slots and the atomic switch between them.
//!
//! A replacement writes the whole new generation (groups, overflow entries, rule ids, slot metadata) into the
//! inactive slot, then flips `dp_config.active_slot` with one store. A program reads `active_slot` once and
//! afterwards reads only that slot, so every verdict uses exactly one generation. The slot that just became
//! inactive may still be read by program runs that started before the flip: it is cleared and rewritten only
//! by the *next* replacement, and only after an RCU grace period has passed since the flip ([`GracePeriod`]),
//! which no such run outlives (docs/dataplane.md, "Atomic replacement"). The grace period is awaited in the
//! background right after the flip, so a replacement does not wait for its own grace period, only a
//! replacement that follows within one grace period of the previous one does.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::maps::{Array, HashMap, MapData};

use super::abi::{self, c, Group, IdSlot, Key4, Key6, RuleEntry, SlotMeta};
use super::config_map::ConfigMapping;
use super::error::DataplaneError;
use super::grace_period::GracePeriod;
use super::map_batch;
use super::policy_compile::{CompiledPolicy, PrefixEntries};

const ENTRY_SLOT_ENTRIES: u32 = c::DP_ENTRY_SLOT_ENTRIES as u32;
const ENTRIES_PER_FAMILY: u32 = c::DP_ENTRIES_PER_FAMILY as u32;
const RULE_IDS_PER_SLOT: u32 = c::DP_RULE_IDS_PER_SLOT as u32;

/// The maps a replacement writes.
pub(crate) struct PolicyMaps {
    pub slot_meta: Array<MapData, SlotMeta>,
    pub groups4: HashMap<MapData, Key4, Group>,
    pub groups6: HashMap<MapData, Key6, Group>,
    pub rule_ids: Array<MapData, IdSlot>,
    /// Second handles on the maps written in bulk, for the batch syscalls aya does not expose.
    pub batch: BatchHandles,
    /// The group keys this process wrote into each slot, so clearing a slot deletes exactly them in a few batch
    /// calls (`None` after adoption or a failed write: the next clear walks the map once instead).
    pub written: [Option<SlotKeys>; 2],
    pub grace: Arc<GracePeriod>,
    /// The grace period that started after the last flip (or at load: a previous loader may just have flipped).
    pub pending_grace: PendingGrace,
}

/// Whether the inactive slot may still have readers.
pub(crate) enum PendingGrace {
    /// A grace period has passed since the last flip.
    Done,
    /// A background thread is waiting for it.
    Waiting(JoinHandle<std::io::Result<()>>),
    /// Nobody is waiting for it yet (the thread could not be started).
    Needed,
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

    /// Starts waiting, in the background, for the grace period that ends every program run begun before now.
    pub(crate) fn start_grace_period(&mut self) {
        let grace = self.grace.clone();
        // A thread that cannot be spawned leaves the wait to the next replacement, in place.
        self.pending_grace = match std::thread::Builder::new()
            .name("dp-grace-period".into())
            .spawn(move || grace.wait())
        {
            Ok(t) => PendingGrace::Waiting(t),
            Err(_) => PendingGrace::Needed,
        };
    }

    /// Returns once no program run can still read the inactive slot.
    fn finish_grace_period(&mut self) -> Result<(), DataplaneError> {
        let waited = match std::mem::replace(&mut self.pending_grace, PendingGrace::Needed) {
            PendingGrace::Done => Ok(()),
            // A failed background wait proves nothing: wait again, in place, before touching the slot.
            PendingGrace::Waiting(t) => match t.join() {
                Ok(Ok(())) => Ok(()),
                _ => self.grace.wait(),
            },
            PendingGrace::Needed => self.grace.wait(),
        };
        waited.map_err(|e| DataplaneError::map("dp_rcu_sync", format!("RCU grace period: {e}")))?;
        self.pending_grace = PendingGrace::Done;
        Ok(())
    }

    fn clear_slot(&mut self, slot: u32) -> Result<(), DataplaneError> {
        let slot8 = slot as u8;
        let keys = match self.written[slot as usize].take() {
            Some(keys) => keys,
            None => SlotKeys {
                v4: self
                    .groups4
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| k.slot == slot8)
                    .collect(),
                v6: self
                    .groups6
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| k.slot == slot8)
                    .collect(),
            },
        };
        map_batch::delete(self.batch.groups4.fd().as_fd(), &keys.v4)
            .map_err(|e| DataplaneError::map("dp_groups4", format!("batch delete: {e}")))?;
        map_batch::delete(self.batch.groups6.fd().as_fd(), &keys.v6)
            .map_err(|e| DataplaneError::map("dp_groups6", format!("batch delete: {e}")))?;
        // Overflow entries and rule ids live in arrays indexed from each group's `first` / rule index: the next
        // write overwrites what it uses, and nothing reaches an entry no group points to.
        self.slot_meta
            .set(slot, SlotMeta::default(), 0)
            .map_err(|e| DataplaneError::map("dp_slot_meta", e))
    }

    fn write_slot(
        &mut self,
        slot: u32,
        p: &CompiledPolicy,
        generation: u64,
    ) -> Result<(), DataplaneError> {
        let slot8 = slot as u8;
        let mut overflow_idx: Vec<u32> = Vec::new();
        let mut overflow: Vec<RuleEntry> = Vec::new();
        let base4 = slot * ENTRY_SLOT_ENTRIES;
        let base6 = base4 + ENTRIES_PER_FAMILY;
        let (keys4, groups4) = groups(&p.v4, base4, &mut overflow_idx, &mut overflow, |g| Key4 {
            slot: slot8,
            prefix_len: g.prefix_len,
            pad: 0,
            addr: g.addr,
        });
        let (keys6, groups6) = groups(&p.v6, base6, &mut overflow_idx, &mut overflow, |g| Key6 {
            slot: slot8,
            prefix_len: g.prefix_len,
            pad: 0,
            addr: g.addr,
        });
        // Overflow entries before the groups that point to them; all of it before the flip makes any of it
        // visible to a program.
        map_batch::update(self.batch.entries.fd().as_fd(), &overflow_idx, &overflow)
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
        map_batch::update(self.batch.rule_ids.fd().as_fd(), &id_idx, &id_vals)
            .map_err(|e| DataplaneError::map("dp_rule_ids", format!("batch update: {e}")))?;
        map_batch::update(self.batch.groups4.fd().as_fd(), &keys4, &groups4)
            .map_err(|e| DataplaneError::map("dp_groups4", format!("batch update: {e}")))?;
        map_batch::update(self.batch.groups6.fd().as_fd(), &keys6, &groups6)
            .map_err(|e| DataplaneError::map("dp_groups6", format!("batch update: {e}")))?;
        self.written[slot as usize] = Some(SlotKeys {
            v4: keys4,
            v6: keys6,
        });
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
        self.finish_grace_period()?;
        self.clear_slot(inactive)?;
        self.write_slot(inactive, p, generation)?;
        config.set_active_slot(inactive);
        config.bump_epoch();
        self.start_grace_period();
        Ok(generation)
    }
}

/// The group values of one family and their keys; groups larger than the inline room go to the overflow array.
fn groups<const N: usize, K>(
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

/// Second file descriptors on the maps a replacement writes in bulk (opened from their pins).
pub(crate) struct BatchHandles {
    pub groups4: MapData,
    pub groups6: MapData,
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
            groups4: open("dp_groups4")?,
            groups6: open("dp_groups6")?,
            entries: open("dp_entries")?,
            rule_ids: open("dp_rule_ids")?,
        })
    }
}

/// The group keys of one slot.
pub(crate) struct SlotKeys {
    v4: Vec<Key4>,
    v6: Vec<Key6>,
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
