//! A dataplane verdict as the agent's log line: the contract's DataplanePacketEvent, converted by
//! `VerdictEvent::to_packet_event` (crates/core/src/dataplane/events.rs), the same conversion the Node API's
//! `events()` uses (`src/event_batch.rs`), written by the contract's `write_log_json`.

use interceptor_ebpf_core::dataplane::VerdictEvent;

/// The event's log record as one line, `\n` included: what the agent writes to standard output and streams to
/// SubscribeEvents clients.
pub fn log_line(e: &VerdictEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    e.to_packet_event().write_log_json(&mut out);
    out.push(b'\n');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use interceptor_ebpf_core::contract::events::json::parse_json;
    use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
    use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn event() -> VerdictEvent {
        VerdictEvent {
            observed_at: UNIX_EPOCH + Duration::new(1_700_000_000, 42),
            monotonic_ns: 1,
            cgroup_id: 4242,
            pid: 7,
            uid: 1000,
            comm: "curl".into(),
            hook: Hook::Connect4,
            protocol: Protocol::Tcp,
            dst_ip: Some("192.0.2.1".parse().expect("ip")),
            dst_port: Some(443),
            reason: DataplaneReasonCode::DenyExplicit,
            rule_id: Some("block-all".into()),
            dns_name: None,
            policy_generation: 3,
            workload_id: Some("wl-a".into()),
            managed_cgroup_id: 4242,
        }
    }

    #[test]
    fn the_log_line_is_the_contract_record_and_parses_back() {
        let line = log_line(&event());
        assert_eq!(
            std::str::from_utf8(&line).expect("utf8"),
            "{\"code_namespace\":\"dataplane_verdict\",\"reason_code\":\"DENY_EXPLICIT\",\"verdict\":\"deny\",\
             \"hook\":\"connect4\",\"cgroup_id\":\"4242\",\"protocol\":\"tcp\",\"dst_ip\":\"192.0.2.1\",\
             \"dst_port\":443,\"pid\":7,\"uid\":1000,\"comm\":\"curl\",\"rule_id\":\"block-all\",\
             \"policy_generation\":3,\"workload_id\":\"wl-a\",\"observed_at\":\"2023-11-14T22:13:20.000000042Z\"}\n"
        );
        let parsed = parse_json(&line[..line.len() - 1]).expect("valid event");
        assert_eq!(parsed, event().to_packet_event());
    }

    #[test]
    fn observe_codes_keep_would_block_and_a_lossy_comm_is_kept() {
        let mut e = event();
        e.reason = DataplaneReasonCode::ObserveWouldAllow;
        // What the dataplane's decoder makes of a 15-byte non-UTF-8 name: cut to 16 bytes of UTF-8 there.
        e.comm = "\u{fffd}".repeat(5);
        let line = log_line(&e);
        let text = std::str::from_utf8(&line).expect("utf8");
        assert!(
            text.contains("\"verdict\":\"allow\",\"would_block\":false"),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"comm\":\"{}\"", "\u{fffd}".repeat(5))),
            "{text}"
        );
        assert!(parse_json(&line[..line.len() - 1]).is_ok());
    }
}
