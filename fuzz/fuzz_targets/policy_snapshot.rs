//! `PolicySnapshot::from_json_slice` (typed fast path, issue-collecting slow path) must never panic, must give
//! the result of the slow path alone, and an accepted snapshot must re-parse from its normalised JSON form.
#![no_main]

use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let combined = PolicySnapshot::from_json_slice(data);
    if let Ok(snapshot) = &combined {
        let text = serde_json::to_vec(&snapshot.to_json_value()).expect("a Value serializes");
        let again =
            PolicySnapshot::from_json_slice(&text).expect("the normalised form parses again");
        assert_eq!(&again, snapshot);
    }
    // The slow path alone. A Value keeps the last of duplicate keys, which the strict reader refuses, so
    // only a disagreement in the other direction is a bug.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match (PolicySnapshot::from_json_value(&value), &combined) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b),
            (Err(_), Ok(_)) => panic!("fast path accepted what the slow path rejects"),
            _ => {}
        }
    } else {
        assert!(combined.is_err(), "accepted text serde_json cannot read");
    }
});
