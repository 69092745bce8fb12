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

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::maps::{Array, MapData, MapInfo};

use super::abi::{self, c, Group, Key4, Key6, RuleEntry, SlotMeta};
use super::config_map::ConfigMapping;
use super::error::DataplaneError;
use super::group_maps::{Capacity, GroupMaps, SlotGroups};
use super::policy_compile::{CompiledPolicy, PrefixEntries};
use super::sys;

const ENTRIES_PER_FAMILY: u32 = c::DP_ENTRIES_PER_FAMILY as u32;

/// The pin of `slot`'s rule ids: an array of `max(rules, 1)` NUL-padded ids, each value as long as the
/// snapshot's longest id plus its NUL, rounded up to 8 bytes. Read by user space only (the programs carry a rule
/// index): for events of a generation this process did not write, i.e. one it adopted.
pub(crate) fn rule_ids_pin(pin_dir: &Path, slot: u32) -> PathBuf {
    pin_dir.join(format!("dp_rule_ids_{slot}"))
}

/// The pin of `slot`'s DNS names (rules by name, SPEC 4b): the slot's names as `fqdn::NamePolicy::to_blob`
/// writes them, prefixed with their length (u64, little-endian), in values of [`NAMES_CHUNK`] bytes. Absent when
/// the slot's policy names nothing by DNS name. Read by user space only: an adopting loader's names.
pub(crate) fn dns_names_pin(pin_dir: &Path, slot: u32) -> PathBuf {
    pin_dir.join(format!("dp_dns_names_{slot}"))
}

const NAMES_CHUNK: usize = 4096;

/// The value size a snapshot's rule ids are stored with.
fn id_value_size(ids: &[String]) -> usize {
    let longest = ids.iter().map(String::len).max().unwrap_or(0);
    (longest + 1).next_multiple_of(8).min(abi::ID_BYTES)
}

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
    /// Where each slot's rule ids are pinned ([`rule_ids_pin`]).
    pub pin_dir: PathBuf,
    pub groups: Arc<GroupMaps>,
    pub inactive: Inactive,
    /// The room the last few policies needed: a reclaimed slot gets room for the largest of them, so a policy
    /// about the size of a recent one never waits for its maps to grow (one RCU grace period in the replacement),
    /// and the room shrinks back [`RECENT_NEEDS`] smaller policies after a large one.
    pub recent_needs: VecDeque<Capacity>,
}

/// How many recent policies' needs the room of a reclaimed slot covers.
pub(crate) const RECENT_NEEDS: usize = 8;

impl PolicyMaps {
    pub(crate) fn meta(&self, slot: u32) -> Result<SlotMeta, DataplaneError> {
        self.slot_meta
            .get(&slot, 0)
            .map_err(|e| DataplaneError::map("dp_slot_meta", e))
    }

    /// Every rule id `slot` holds, by rule index, read from its pin (`None` when it has none).
    pub(crate) fn rule_ids(&self, slot: u32) -> Option<Vec<String>> {
        let pin = rule_ids_pin(&self.pin_dir, slot);
        let info = MapInfo::from_pin(&pin).ok()?;
        let fd = sys::obj_get(&pin).ok()?;
        let mut value = vec![0u8; info.value_size() as usize];
        (0..info.max_entries())
            .map(|i| {
                // SAFETY: a u32 key of an array and a buffer of its value size, read from its own info.
                unsafe { sys::map::lookup_elem(fd.as_fd(), &i.to_ne_bytes(), &mut value) }.ok()?;
                Some(decode_id(&value).unwrap_or_default())
            })
            .collect()
    }

    /// `slot`'s pinned DNS names ([`dns_names_pin`]), `None` when it has none.
    pub(crate) fn dns_names(&self, slot: u32) -> Option<Vec<u8>> {
        let pin = dns_names_pin(&self.pin_dir, slot);
        let info = MapInfo::from_pin(&pin).ok()?;
        let fd = sys::obj_get(&pin).ok()?;
        let mut all = Vec::with_capacity(info.max_entries() as usize * NAMES_CHUNK);
        let mut value = vec![0u8; info.value_size() as usize];
        for i in 0..info.max_entries() {
            // SAFETY: a u32 key of an array and a buffer of its value size, read from its own info.
            unsafe { sys::map::lookup_elem(fd.as_fd(), &i.to_ne_bytes(), &mut value) }.ok()?;
            all.extend_from_slice(&value);
        }
        let len = usize::try_from(u64::from_le_bytes(all.get(..8)?.try_into().ok()?)).ok()?;
        all.get(8..8 + len).map(<[u8]>::to_vec)
    }

    /// Stores `blob` as `slot`'s DNS names (the slot is inactive), or removes them when it is empty.
    fn write_dns_names(&self, slot: u32, blob: &[u8]) -> Result<(), DataplaneError> {
        let mut values = Vec::new();
        if !blob.is_empty() {
            values = (blob.len() as u64).to_le_bytes().to_vec();
            values.extend_from_slice(blob);
            values.resize(values.len().next_multiple_of(NAMES_CHUNK), 0);
        }
        repin_array(
            &dns_names_pin(&self.pin_dir, slot),
            "dp_dns_names",
            slot,
            NAMES_CHUNK,
            &values,
        )
    }

    /// Stores `ids` as `slot`'s rule ids: a fresh array sized to them replaces the slot's pin (the slot is
    /// inactive: nothing reads it before the flip).
    fn write_rule_ids(&self, slot: u32, ids: &[String]) -> Result<(), DataplaneError> {
        let value_size = id_value_size(ids);
        let mut values = vec![0u8; ids.len() * value_size];
        for (id, v) in ids.iter().zip(values.chunks_mut(value_size)) {
            v[..id.len()].copy_from_slice(id.as_bytes());
        }
        repin_array(
            &rule_ids_pin(&self.pin_dir, slot),
            "dp_rule_ids",
            slot,
            value_size,
            &values,
        )
    }

    /// Starts reclaiming `slot` (which must not be the active slot) in the background, with fresh maps of room
    /// `capacity`: that of the policy just applied, so that the next one, if about the same, fits them.
    pub(crate) fn start_reclaim(&mut self, slot: u32, capacity: Capacity) {
        let groups = self.groups.clone();
        self.inactive = match std::thread::Builder::new()
            .name("dp-reclaim-slot".into())
            .spawn(move || groups.reclaim(slot, capacity))
        {
            Ok(t) => Inactive::Reclaiming(t),
            Err(_) => Inactive::Dirty,
        };
    }

    /// The inactive slot's fresh maps, once no program run can still read that slot, with room for `need`: maps
    /// too small for it are replaced by larger ones here (one more RCU grace period), so the policy grows
    /// without a reload.
    fn take_ready(&mut self, slot: u32, need: Capacity) -> Result<SlotGroups, DataplaneError> {
        let ready = match std::mem::replace(&mut self.inactive, Inactive::Dirty) {
            // A failed background reclaim proves nothing: reclaim again, in place.
            Inactive::Reclaiming(t) => match t.join() {
                Ok(Ok(groups)) if groups.capacity.holds(&need) => Ok(groups),
                _ => self.groups.reclaim(slot, need),
            },
            Inactive::Dirty => self.groups.reclaim(slot, need),
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
        let base4 = 0;
        let base6 = ENTRIES_PER_FAMILY;
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
        sys::map::update_batch(fd(&groups.entries), &overflow_idx, &overflow)
            .map_err(|e| DataplaneError::map("dp_entries", format!("batch update: {e}")))?;
        self.write_rule_ids(slot, &p.rule_ids)?;
        self.write_dns_names(slot, &p.dns_names)?;
        sys::map::update_batch(fd(&groups.v4), &keys4, &groups4)
            .map_err(|e| DataplaneError::map("dp_groups4", format!("batch update: {e}")))?;
        sys::map::update_batch(fd(&groups.v6), &keys6, &groups6)
            .map_err(|e| DataplaneError::map("dp_groups6", format!("batch update: {e}")))?;
        let mut meta = SlotMeta {
            generation,
            allow_one_in: p.allow_one_in,
            unmanaged_one_in: p.unmanaged_one_in,
            steer_dns: u8::from(p.steer_dns),
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
        before_flip: impl FnOnce(u32) -> Result<(), DataplaneError>,
    ) -> Result<u64, DataplaneError> {
        let active = config.active_slot();
        let inactive = active ^ 1;
        let generation = self.meta(0)?.generation.max(self.meta(1)?.generation) + 1;
        let need = capacity_for(p);
        let groups = self.take_ready(inactive, need)?;
        if let Err(e) = self
            .write_slot(inactive, &groups, p, generation)
            .and_then(|()| before_flip(inactive))
        {
            // Half written: reclaim it before the next replacement uses it.
            self.start_reclaim(inactive, need);
            return Err(e);
        }
        config.set_active_slot(inactive);
        config.bump_epoch();
        if self.recent_needs.len() == RECENT_NEEDS {
            self.recent_needs.pop_front();
        }
        self.recent_needs.push_back(need);
        let room = self.recent_needs.iter().fold(need, |a, b| a.max(*b));
        self.start_reclaim(active, room);
        Ok(generation)
    }
}

/// Replaces the user-space array pinned at `pin` (one of an inactive slot's: nothing reads it before the flip)
/// with a fresh one holding `values` in values of `value_size` bytes; no values: no array, the pin is removed.
fn repin_array(
    pin: &Path,
    name: &'static str,
    slot: u32,
    value_size: usize,
    values: &[u8],
) -> Result<(), DataplaneError> {
    let err = |what: &str, e: std::io::Error| {
        DataplaneError::map(name, format!("{what} of slot {slot}: {e}"))
    };
    match std::fs::remove_file(pin) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("unpin the previous array", e)),
    }
    if values.is_empty() {
        return Ok(());
    }
    let entries = (values.len() / value_size) as u32;
    let map = sys::map::create_array(value_size as u32, entries, name.as_bytes())
        .map_err(|e| err("create", e))?;
    sys::map::update_array_batch(map.as_fd(), value_size, values).map_err(|e| err("write", e))?;
    sys::obj_pin(map.as_fd(), pin).map_err(|e| err("pin", e))
}

/// The room `p` needs in a slot's maps: its groups and the entries of its groups larger than the inline room.
fn capacity_for(p: &CompiledPolicy) -> Capacity {
    let overflow = |lens: &mut dyn Iterator<Item = usize>| -> usize {
        lens.filter(|n| *n > abi::GROUP_INLINE).sum()
    };
    let entries = overflow(&mut p.v4.iter().map(|g| g.entries.len()))
        + overflow(&mut p.v6.iter().map(|g| g.entries.len()));
    Capacity::for_counts(p.v4.len(), p.v6.len(), entries)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_take_the_longest_id_and_its_nul_rounded_to_8_bytes() {
        assert_eq!(id_value_size(&["a".into()]), 8);
        assert_eq!(id_value_size(&["1234567".into(), "x".into()]), 8);
        assert_eq!(id_value_size(&["12345678".into()]), 16);
        assert_eq!(id_value_size(&["x".repeat(63)]), abi::ID_BYTES);
        assert_eq!(id_value_size(&["x".repeat(64)]), abi::ID_BYTES);
    }
}
