//! The two policy slots and the atomic switch between them.
//!
//! A replacement writes the whole new generation (rule entries, LPM groups, endpoints, rule ids, slot metadata)
//! into the inactive slot, then flips `dp_config.active_slot` with one store. A program reads `active_slot`
//! once and afterwards reads only that slot, so every verdict uses exactly one generation. The slot that just
//! became inactive may still be read by programs that started before the flip; it is only cleared and rewritten
//! by the *next* replacement, after [`SLOT_QUIESCE_INTERVAL`] has passed since the flip and once the per-CPU
//! reader count of that slot (`dp_readers`, maintained by every program run) is zero (docs/dataplane.md).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};

use super::abi::{
    self, c, EndpointKey, IdSlot, Lpm4Data, Lpm6Data, PrefixGroup, RuleEntry, SlotMeta,
};
use super::config_map::ConfigMapping;
use super::error::DataplaneError;
use super::map_batch;
use super::policy_compile::CompiledPolicy;

/// How long after a flip the now-inactive slot is left untouched. A sock_addr program runs to completion in
/// microseconds (its loops are bounded: at most 129 prefixes x 1024 entries), so this leaves a margin of several
/// orders of magnitude, including preemption of the program under PREEMPT_RCU.
pub const SLOT_QUIESCE_INTERVAL: Duration = Duration::from_millis(100);

/// A program registered on the inactive slot finishes in microseconds; not draining within this is a bug, and
/// the replacement fails without touching the active policy.
const READER_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const RULE_SLOT_ENTRIES: u32 = c::DP_RULE_SLOT_ENTRIES as u32;
const RULE_ENTRIES_PER_FAMILY: u32 = c::DP_RULE_ENTRIES_PER_FAMILY as u32;
const RULE_IDS_PER_SLOT: u32 = c::DP_RULE_IDS_PER_SLOT as u32;

/// The maps a replacement writes.
pub(crate) struct PolicyMaps {
    pub slot_meta: Array<MapData, SlotMeta>,
    pub lpm4: LpmTrie<MapData, Lpm4Data, PrefixGroup>,
    pub lpm6: LpmTrie<MapData, Lpm6Data, PrefixGroup>,
    pub rule_ids: Array<MapData, IdSlot>,
    pub endpoints: HashMap<MapData, EndpointKey, u32>,
    /// Second handles on the maps written in bulk, for the batch syscalls aya does not expose.
    pub batch: BatchHandles,
    /// The LPM keys this process wrote into each slot, so clearing a slot deletes exactly them in a few batch
    /// calls instead of walking the whole trie (`None` after adoption: the first clear walks the trie once).
    pub written: [Option<SlotKeys>; 2],
    /// Per-CPU count of programs reading each slot (`dp_readers`).
    pub readers: PerCpuArray<MapData, u64>,
    /// When the active slot last changed (at load: the load time, since a previous loader may just have flipped).
    pub last_flip: Instant,
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

    /// Programs currently registered as readers of `slot` (sum over CPUs; the counts wrap, so sum wrapping).
    fn readers_of(&self, slot: u32) -> Result<i64, DataplaneError> {
        let values = self
            .readers
            .get(&slot, 0)
            .map_err(|e| DataplaneError::map("dp_readers", e))?;
        Ok(values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v)) as i64)
    }

    /// Waits until no program reads `slot` any more (see `slot_acquire` in bpf/dataplane.bpf.c).
    fn wait_for_readers(&self, slot: u32) -> Result<(), DataplaneError> {
        let deadline = Instant::now() + READER_DRAIN_TIMEOUT;
        loop {
            let n = self.readers_of(slot)?;
            if n == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DataplaneError::map(
                    "dp_readers",
                    format!(
                        "{n} program runs still read slot {slot} after {READER_DRAIN_TIMEOUT:?}"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn clear_slot(&mut self, slot: u32) -> Result<(), DataplaneError> {
        let slot8 = slot as u8;
        let keys = match self.written[slot as usize].take() {
            Some(keys) => keys,
            None => SlotKeys {
                v4: self
                    .lpm4
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| k.data().slot == slot8)
                    .collect(),
                v6: self
                    .lpm6
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| k.data().slot == slot8)
                    .collect(),
            },
        };
        map_batch::delete(self.batch.lpm4.fd().as_fd(), &keys.v4)
            .map_err(|e| DataplaneError::map("dp_lpm4", format!("batch delete: {e}")))?;
        map_batch::delete(self.batch.lpm6.fd().as_fd(), &keys.v6)
            .map_err(|e| DataplaneError::map("dp_lpm6", format!("batch delete: {e}")))?;
        // Rules and rule ids live in arrays indexed from each group's `first`: the next write overwrites what
        // it uses, and nothing reaches an entry no prefix group points to.
        let eps: Vec<EndpointKey> = self
            .endpoints
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.slot == slot8)
            .collect();
        for k in eps {
            self.endpoints
                .remove(&k)
                .map_err(|e| DataplaneError::map("dp_endpoints", e))?;
        }
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
        let rules_base = slot * RULE_SLOT_ENTRIES;
        let mut rule_idx: Vec<u32> = Vec::with_capacity(p.v4.len() + p.v6.len());
        let mut rule_vals: Vec<RuleEntry> = Vec::with_capacity(rule_idx.capacity());
        let mut keys = SlotKeys {
            v4: Vec::with_capacity(p.v4.len()),
            v6: Vec::with_capacity(p.v6.len()),
        };
        let mut groups4 = Vec::with_capacity(p.v4.len());
        let mut next = 0u32;
        for group in &p.v4 {
            groups4.push(group_entry(next, group.entries.len(), group.prefix_len));
            for e in &group.entries {
                rule_idx.push(rules_base + next);
                rule_vals.push(*e);
                next += 1;
            }
            keys.v4.push(Key::new(
                abi::LPM_SLOT_BITS + u32::from(group.prefix_len),
                Lpm4Data {
                    slot: slot8,
                    addr: group.addr,
                    pad: [0; 3],
                },
            ));
        }
        let mut groups6 = Vec::with_capacity(p.v6.len());
        let mut next = 0u32;
        for group in &p.v6 {
            groups6.push(group_entry(next, group.entries.len(), group.prefix_len));
            for e in &group.entries {
                rule_idx.push(rules_base + RULE_ENTRIES_PER_FAMILY + next);
                rule_vals.push(*e);
                next += 1;
            }
            keys.v6.push(Key::new(
                abi::LPM_SLOT_BITS + u32::from(group.prefix_len),
                Lpm6Data {
                    slot: slot8,
                    addr: group.addr,
                    pad: [0; 3],
                },
            ));
        }
        // Rule entries before the prefixes that point to them; all of it before the flip makes any of it
        // visible to a program.
        map_batch::update(self.batch.rules.fd().as_fd(), &rule_idx, &rule_vals)
            .map_err(|e| DataplaneError::map("dp_rules", format!("batch update: {e}")))?;
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
        map_batch::update(self.batch.lpm4.fd().as_fd(), &keys.v4, &groups4)
            .map_err(|e| DataplaneError::map("dp_lpm4", format!("batch update: {e}")))?;
        map_batch::update(self.batch.lpm6.fd().as_fd(), &keys.v6, &groups6)
            .map_err(|e| DataplaneError::map("dp_lpm6", format!("batch update: {e}")))?;
        self.written[slot as usize] = Some(keys);
        for (key, kind) in &p.endpoints {
            let key = EndpointKey {
                slot: slot8,
                ..*key
            };
            self.endpoints
                .insert(key, kind, 0)
                .map_err(|e| DataplaneError::map("dp_endpoints", e))?;
        }
        let meta = SlotMeta {
            generation,
            allow_one_in: p.allow_one_in,
            unmanaged_one_in: p.unmanaged_one_in,
            ipv4_rules: p.ipv4_rules,
            ipv6_rules: p.ipv6_rules,
            broker_endpoints: p.broker_endpoints,
            dns_endpoints: p.dns_endpoints,
        };
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
        let since = self.last_flip.elapsed();
        if since < SLOT_QUIESCE_INTERVAL {
            std::thread::sleep(SLOT_QUIESCE_INTERVAL - since);
        }
        self.wait_for_readers(inactive)?;
        self.clear_slot(inactive)?;
        self.write_slot(inactive, p, generation)?;
        config.set_active_slot(inactive);
        self.last_flip = Instant::now();
        Ok(generation)
    }
}

/// Second file descriptors on the maps a replacement writes in bulk (opened from their pins).
pub(crate) struct BatchHandles {
    pub lpm4: MapData,
    pub lpm6: MapData,
    pub rules: MapData,
    pub rule_ids: MapData,
}

impl BatchHandles {
    pub(crate) fn open(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let open = |name: &'static str| {
            MapData::from_pin(pin_dir.join(name))
                .map_err(|e| DataplaneError::map(name, format!("open pin: {e}")))
        };
        Ok(BatchHandles {
            lpm4: open("dp_lpm4")?,
            lpm6: open("dp_lpm6")?,
            rules: open("dp_rules")?,
            rule_ids: open("dp_rule_ids")?,
        })
    }
}

/// The LPM keys of one slot's prefixes.
pub(crate) struct SlotKeys {
    v4: Vec<Key<Lpm4Data>>,
    v6: Vec<Key<Lpm6Data>>,
}

fn group_entry(first: u32, count: usize, prefix_len: u8) -> PrefixGroup {
    PrefixGroup {
        first,
        count: count as u32,
        prefix_len: u32::from(prefix_len),
        reserved: 0,
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
