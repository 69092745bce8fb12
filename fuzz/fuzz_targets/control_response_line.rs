//! `parse_response_line` must never panic, and an accepted response must serialize with `to_line` and parse
//! back to the same response.
#![no_main]

use interceptor_ebpf_core::contract::control::protocol::parse_response_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = parse_response_line(data) {
        let line = response.to_line();
        let again =
            parse_response_line(line.as_bytes()).expect("a serialized response parses again");
        assert_eq!(again, response, "round trip through {line}");
    }
});
