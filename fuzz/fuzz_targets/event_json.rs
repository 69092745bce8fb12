//! `parse_json` (one DataplanePacketEvent from JSON bytes) must never panic, and whatever it accepts must
//! re-serialize and re-parse to the same event, through the parse-output form, the log record and the
//! `serde_json::Value` path.
#![no_main]

use interceptor_ebpf_core::contract::events::json::parse_json;
use interceptor_ebpf_core::contract::events::parse_value;
use interceptor_ebpf_core::contract::validation::IssueCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let by_bytes = parse_json(data);
    if let Ok(event) = &by_bytes {
        let text = serde_json::to_vec(event).expect("an event always serializes");
        assert_eq!(&parse_json(&text).expect("parse output re-parses"), event);
        let log = event.to_log_json();
        let relogged = parse_json(&log).expect("log record re-parses");
        assert_eq!(relogged.to_log_json(), log, "log record is stable");
        assert_eq!(relogged.reason_code, event.reason_code);
    }
    // The byte path and the Value path agree, except that the byte path also refuses duplicate keys
    // (a Value keeps only the last one).
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match (parse_value(&value), &by_bytes) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b),
            (Err(a), Err(b)) if a == *b => {}
            (_, Err(b)) => assert!(
                b.issues
                    .iter()
                    .any(|i| i.code == IssueCode::Custom && i.message.starts_with("duplicate key")),
                "paths disagree without a duplicate key: {b}"
            ),
            (Err(a), Ok(_)) => panic!("Value path rejects what the byte path accepts: {a}"),
        }
    } else {
        assert!(
            by_bytes.is_err(),
            "accepted text serde_json cannot parse as a Value"
        );
    }
});
