//! `parse_request_line` (one control request as the agent reads it off the socket) must never panic; an
//! accepted request must serialize with `to_line` and parse back to the same request; a rejection must carry
//! one of the two request error codes and say what is wrong.
#![no_main]

use interceptor_ebpf_core::contract::control::protocol::parse_request_line;
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request_line(data) {
        Ok(request) => {
            let line = request.to_line();
            let again =
                parse_request_line(line.as_bytes()).expect("a serialized request parses again");
            assert_eq!(again, request, "round trip through {line}");
        }
        Err(rejection) => {
            assert!(matches!(
                rejection.error.reason_code,
                ControlAuthzCode::RequestMalformed | ControlAuthzCode::RequestPayloadInvalid
            ));
            assert!(!rejection.error.message.is_empty());
            assert!(!rejection.issues.is_empty());
        }
    }
});
