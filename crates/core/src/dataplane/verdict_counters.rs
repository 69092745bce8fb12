//! Reads dp_verdicts (bpf/dataplane_maps.h): the per-CPU count of every verdict by (hook, reason code), summed
//! over CPUs at the moment of the call. Nothing is accumulated in user space, so a reader never drifts from the
//! kernel's counts, and a loader that adopts a pinned state reads on from where the previous one stopped.

use aya::maps::{MapData, PerCpuArray};

use super::abi::verdict_index;
use super::error::DataplaneError;
use crate::contract::verdict_counts::{all_pairs, VerdictCount};

pub(crate) const MAP: &str = "dp_verdicts";

/// Every (hook, reason code) pair with a count above zero, in [`all_pairs`] order.
pub(crate) fn read(map: &PerCpuArray<MapData, u64>) -> Result<Vec<VerdictCount>, DataplaneError> {
    let mut out = Vec::new();
    for (hook, reason) in all_pairs() {
        let values = map
            .get(&verdict_index(hook, reason), 0)
            .map_err(|e| DataplaneError::map(MAP, e))?;
        let count = values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v));
        if count > 0 {
            out.push(VerdictCount {
                hook,
                reason,
                count,
            });
        }
    }
    Ok(out)
}
