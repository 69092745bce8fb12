//! `parse_ndjson` must never panic; every accepted record must re-serialize and re-parse to the same event,
//! every line must be accounted for exactly once (record or error), and error line numbers must be 1-based,
//! increasing and inside the input.
#![no_main]

use interceptor_ebpf_core::contract::events::json::{for_each_ndjson_line, parse_json, parse_ndjson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let batch = parse_ndjson(data);

    let mut again = Vec::new();
    for r in &batch.records {
        serde_json::to_writer(&mut again, r).expect("an event always serializes");
        again.push(b'\n');
    }
    let reparsed = parse_ndjson(&again);
    assert!(
        reparsed.errors.is_empty(),
        "re-serialized records were rejected: {:?}",
        reparsed.errors
    );
    assert_eq!(reparsed.records, batch.records);

    let line_count = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut non_blank = 0;
    for_each_ndjson_line(data, |line, bytes| {
        non_blank += 1;
        // Each line on its own gives the same verdict as inside the batch.
        let in_batch = batch.errors.iter().find(|e| e.line == line);
        match (parse_json(bytes), in_batch) {
            (Ok(_), None) | (Err(_), Some(_)) => {}
            (alone, batch_error) => {
                panic!("line {line}: alone {alone:?}, in batch {batch_error:?}")
            }
        }
    });
    assert_eq!(batch.records.len() + batch.errors.len(), non_blank);
    for w in batch.errors.windows(2) {
        assert!(w[0].line < w[1].line);
    }
    for e in &batch.errors {
        assert!(e.line >= 1 && e.line <= line_count);
    }
});
