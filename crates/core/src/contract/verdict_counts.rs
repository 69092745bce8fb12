//! The kernel's verdict counters: how many verdicts each program made, by (hook, reason code). The programs count
//! every verdict as they make it (bpf/dataplane_maps.h, `count_verdict`), whether or not its event was sampled,
//! emitted or dropped, so these counts are exact where the event stream is best-effort. Read by
//! `Interceptor.status().verdicts`, GetStatus `verdicts` and the agent's `interceptor_ebpf_verdicts_total`.

use crate::contract::hook::Hook;
use crate::contract::reason_codes::DataplaneReasonCode;

/// The number of verdicts one hook made with one reason code, summed over CPUs since the counters map was
/// created (it is pinned: an adopted state keeps counting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictCount {
    pub hook: Hook,
    pub reason: DataplaneReasonCode,
    pub count: u64,
}

/// Every (hook, reason code) pair the counters can hold, in the order a status lists them: by hook, then by
/// reason code, each in its declaration order.
pub fn all_pairs() -> impl Iterator<Item = (Hook, DataplaneReasonCode)> {
    Hook::ALL
        .into_iter()
        .flat_map(|h| DataplaneReasonCode::ALL.iter().map(move |r| (h, *r)))
}

/// The count of `(hook, reason)` in `counts` (0 when absent: a status lists only the pairs that counted).
pub fn count_of(counts: &[VerdictCount], hook: Hook, reason: DataplaneReasonCode) -> u64 {
    counts
        .iter()
        .filter(|c| c.hook == hook && c.reason == reason)
        .map(|c| c.count)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_once_in_status_order() {
        let pairs: Vec<_> = all_pairs().collect();
        assert_eq!(
            pairs.len(),
            Hook::ALL.len() * DataplaneReasonCode::ALL.len()
        );
        let keys: Vec<_> = pairs.iter().map(|(h, r)| (*h as u8, r.value())).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            keys, sorted,
            "ordered by hook, then reason, without repeats"
        );
    }

    #[test]
    fn count_of_reads_a_listed_pair_and_zero_otherwise() {
        let c = [VerdictCount {
            hook: Hook::Sendmsg4,
            reason: DataplaneReasonCode::DenyDefault,
            count: 7,
        }];
        assert_eq!(
            count_of(&c, Hook::Sendmsg4, DataplaneReasonCode::DenyDefault),
            7
        );
        assert_eq!(
            count_of(&c, Hook::Sendmsg6, DataplaneReasonCode::DenyDefault),
            0
        );
        assert_eq!(
            count_of(&c, Hook::Sendmsg4, DataplaneReasonCode::DenyExplicit),
            0
        );
    }
}
