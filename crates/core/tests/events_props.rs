//! Property tests for DataplanePacketEvent: generated valid events round-trip through every form
//! (parse output, log record, JSON bytes, NDJSON), the byte path and the `serde_json::Value` path agree on
//! arbitrary objects, and generated mutations that break a rule are always rejected at the right key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use interceptor_ebpf_core::contract::events::json::{parse_json, parse_ndjson};
use interceptor_ebpf_core::contract::events::{
    parse_value, Comm, DataplanePacketEvent, ObservedAt, PolicyGeneration, POLICY_GENERATION_MAX,
};
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode;
use interceptor_ebpf_core::contract::validation::{IssueCode, ValidationError};
use proptest::prelude::*;
use serde_json::{json, Value};

fn code() -> impl Strategy<Value = DataplaneReasonCode> {
    proptest::sample::select(DataplaneReasonCode::ALL.to_vec())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        // Sparse IPv6 (zero runs, compressed forms) and IPv4-mapped addresses.
        (any::<u16>(), any::<u16>(), 0usize..8).prop_map(|(a, b, at)| {
            let mut s = [0u16; 8];
            s[at] = a;
            s[7 - at] = b;
            IpAddr::V6(Ipv6Addr::from(s))
        }),
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
}

/// Any text, including characters JSON must escape and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 _.-]{0,24}",
        "\\PC{0,12}",
        proptest::collection::vec(any::<char>(), 0..8).prop_map(|v| v.into_iter().collect()),
    ]
}

fn comm() -> impl Strategy<Value = Comm> {
    "\\PC{0,16}".prop_map(|s| {
        let mut cut = s.len().min(16);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        Comm::new(&s[..cut]).expect("cut to 16 bytes")
    })
}

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn timestamp() -> impl Strategy<Value = ObservedAt> {
    (
        0u32..=9999,
        1u32..=12,
        1u32..=31,
        (0u32..24, 0u32..60, 0u32..=60),
        (0usize..=9, 0u32..1_000_000_000),
        prop_oneof![Just(None), (-1439i32..=1439).prop_map(Some)],
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(y, mo, d, (h, mi, s), (digits, frac), offset, (lower_t, lower_z))| {
                let d = d.min(days_in(y, mo));
                let mut t = format!(
                    "{y:04}-{mo:02}-{d:02}{}{h:02}:{mi:02}:{s:02}",
                    if lower_t { 't' } else { 'T' }
                );
                if digits > 0 {
                    let f = format!("{frac:09}");
                    t.push('.');
                    t.push_str(&f[..digits]);
                }
                match offset {
                    None => t.push(if lower_z { 'z' } else { 'Z' }),
                    Some(m) => t.push_str(&format!(
                        "{}{:02}:{:02}",
                        if m < 0 { '-' } else { '+' },
                        m.abs() / 60,
                        m.abs() % 60
                    )),
                }
                ObservedAt::parse(&t).expect("generated a valid timestamp")
            },
        )
}

fn event() -> impl Strategy<Value = DataplanePacketEvent> {
    (
        (
            code(),
            proptest::option::of(proptest::sample::select(Hook::ALL.to_vec())),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text()),
            proptest::option::of(proptest::sample::select(Protocol::ALL.to_vec())),
            proptest::option::of(ip()),
            proptest::option::of(any::<u16>()),
        ),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(comm()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(0..=POLICY_GENERATION_MAX),
            proptest::option::of(text()),
            proptest::option::of(timestamp()),
        ),
    )
        .prop_map(
            |(
                (reason_code, hook, cgroup_id, message, protocol, dst_ip, dst_port),
                (pid, uid, comm, rule_id, dns_name, generation, workload_id, observed_at),
            )| DataplanePacketEvent {
                reason_code,
                hook,
                cgroup_id,
                message,
                protocol,
                dst_ip,
                dst_port,
                pid,
                uid,
                comm,
                rule_id,
                dns_name,
                policy_generation: generation.and_then(PolicyGeneration::new),
                workload_id,
                observed_at,
            },
        )
}

/// What the log record keeps: empty optional strings become absent.
fn without_empty_strings(mut e: DataplanePacketEvent) -> DataplanePacketEvent {
    for s in [
        &mut e.message,
        &mut e.rule_id,
        &mut e.dns_name,
        &mut e.workload_id,
    ] {
        if s.as_deref() == Some("") {
            *s = None;
        }
    }
    if e.comm.as_ref().is_some_and(|c| c.as_str().is_empty()) {
        e.comm = None;
    }
    e
}

fn issue_keys(err: &ValidationError) -> Vec<(String, IssueCode)> {
    err.issues.iter().map(|i| (i.path_text(), i.code)).collect()
}

/// A mutation that breaks exactly one rule, and the (key, code) issue it must produce.
#[derive(Clone, Debug)]
enum Mutation {
    WrongVerdict,
    FlippedWouldBlock,
    UnknownKey(String),
    PortTooBig(u64),
    NegativePid(i64),
    UidTooBig(u64),
    GenerationTooBig(u64),
    FractionalPort,
    NonCanonicalIp(String),
    CommTooLong(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::WrongVerdict),
        Just(Mutation::FlippedWouldBlock),
        "[a-z_]{1,12}"
            .prop_filter("not a known key", |k| {
                interceptor_ebpf_core::contract::events::key_index(k).is_none()
            })
            .prop_map(Mutation::UnknownKey),
        (65536u64..=u64::from(u32::MAX)).prop_map(Mutation::PortTooBig),
        (i64::from(i32::MIN)..0).prop_map(Mutation::NegativePid),
        (u64::from(u32::MAX) + 1..=POLICY_GENERATION_MAX).prop_map(Mutation::UidTooBig),
        (POLICY_GENERATION_MAX + 2..=u64::MAX / 2).prop_map(Mutation::GenerationTooBig),
        Just(Mutation::FractionalPort),
        prop_oneof![
            // Leading zero in an IPv4 octet.
            (any::<[u8; 4]>()).prop_map(|o| format!("0{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
            // Upper-case hex digits.
            (0xa000u16..=0xffff, any::<u16>()).prop_map(|(a, b)| format!("{a:X}::{b:x}")),
            // Fully expanded IPv6 with a zero run that must be compressed.
            (1u16..=0xffff).prop_map(|a| format!("{a:x}:0:0:0:0:0:0:1")),
            // Upper-case IPv4-mapped prefix.
            any::<[u8; 4]>().prop_map(|o| format!("::FFFF:{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        ]
        .prop_map(Mutation::NonCanonicalIp),
        "[a-z]{17,40}".prop_map(Mutation::CommTooLong),
    ]
}

fn apply(m: &Mutation, e: &DataplanePacketEvent) -> (Value, (String, IssueCode)) {
    let mut v = e.to_value();
    let at = |k: &str, c| (k.to_owned(), c);
    let expected = match m {
        Mutation::WrongVerdict => {
            let other = if e.verdict().as_str() == "allow" {
                "deny"
            } else {
                "allow"
            };
            v["verdict"] = json!(other);
            at("verdict", IssueCode::Custom)
        }
        Mutation::FlippedWouldBlock => {
            match e.would_block() {
                Some(wb) => v["would_block"] = json!(!wb),
                None => v["would_block"] = json!(false),
            }
            at("would_block", IssueCode::Custom)
        }
        Mutation::UnknownKey(k) => {
            v[k.as_str()] = json!(1);
            at("", IssueCode::UnrecognizedKeys)
        }
        Mutation::PortTooBig(n) => {
            v["dst_port"] = json!(n);
            at("dst_port", IssueCode::TooBig)
        }
        Mutation::NegativePid(n) => {
            v["pid"] = json!(n);
            at("pid", IssueCode::TooSmall)
        }
        Mutation::UidTooBig(n) => {
            v["uid"] = json!(n);
            at("uid", IssueCode::TooBig)
        }
        Mutation::GenerationTooBig(n) => {
            v["policy_generation"] = json!(n);
            at("policy_generation", IssueCode::TooBig)
        }
        Mutation::FractionalPort => {
            v["dst_port"] = json!(80.5);
            at("dst_port", IssueCode::InvalidType)
        }
        Mutation::NonCanonicalIp(s) => {
            v["dst_ip"] = json!(s);
            at("dst_ip", IssueCode::InvalidFormat)
        }
        Mutation::CommTooLong(s) => {
            v["comm"] = json!(s);
            at("comm", IssueCode::TooBig)
        }
    };
    (v, expected)
}

/// Arbitrary JSON objects mixing known keys (with values of any type) and unknown keys.
fn any_object() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[A-Za-z0-9_:.+-]{0,24}".prop_map(Value::from),
        proptest::sample::select(vec![
            "dataplane_verdict",
            "control_authz",
            "DENY_DEFAULT",
            "OBSERVE_WOULD_ALLOW",
            "CTRL_COMMAND_FAILED",
            "allow",
            "deny",
            "connect4",
            "udp",
            "10.0.0.1",
            "::1",
            "2024-02-29T00:00:00Z",
            "18446744073709551616",
        ])
        .prop_map(Value::from),
    ];
    let value = prop_oneof![
        4 => scalar,
        1 => Just(json!([1, {"a": null}])),
        1 => Just(json!({"nested": [true]})),
    ];
    let key = prop_oneof![
        4 => proptest::sample::select(interceptor_ebpf_core::contract::events::EVENT_KEYS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
    ];
    proptest::collection::vec((key, value), 0..20)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn valid_events_round_trip_through_every_form(e in event()) {
        // Parse output form (keeps empty strings) through a Value and through bytes.
        prop_assert_eq!(&parse_value(&e.to_value()).unwrap(), &e);
        let text = serde_json::to_vec(&e).unwrap();
        prop_assert_eq!(&parse_json(&text).unwrap(), &e);
        // Log record: parse -> log -> parse gives the event minus empty strings, and is stable after that.
        let logged = parse_json(&e.to_log_json()).unwrap();
        prop_assert_eq!(&logged, &without_empty_strings(e.clone()));
        prop_assert_eq!(logged.to_log_json(), e.to_log_json());
        prop_assert_eq!(&parse_value(&e.to_log_value()).unwrap(), &logged);
        // The log record's first key is code_namespace and would_block is present exactly for observe codes.
        let log = e.to_log_value();
        let obj = log.as_object().unwrap();
        prop_assert_eq!(obj.keys().next().map(String::as_str), Some("code_namespace"));
        prop_assert_eq!(obj.get("would_block").and_then(Value::as_bool), e.would_block());
    }

    #[test]
    fn ndjson_batches_keep_order_and_line_numbers(
        events in proptest::collection::vec(event(), 0..20),
        bad_at in proptest::collection::vec(any::<bool>(), 20),
        crlf in any::<bool>(),
    ) {
        let mut text = Vec::new();
        let mut expected_bad = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if bad_at[i] {
                text.extend_from_slice(b"{\"not\":\"an event\"}");
                expected_bad.push(i + 1);
            } else {
                e.write_log_json(&mut text);
            }
            text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let batch = parse_ndjson(&text);
        let good: Vec<DataplanePacketEvent> = events
            .iter()
            .zip(&bad_at)
            .filter(|(_, bad)| !**bad)
            .map(|(e, _)| without_empty_strings(e.clone()))
            .collect();
        prop_assert_eq!(batch.records, good);
        prop_assert_eq!(batch.errors.iter().map(|e| e.line).collect::<Vec<_>>(), expected_bad);
    }

    #[test]
    fn byte_and_value_paths_agree_on_arbitrary_objects(v in any_object()) {
        let by_value = parse_value(&v);
        let by_bytes = parse_json(serde_json::to_string(&v).unwrap().as_bytes());
        match (by_value, by_bytes) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "paths disagree on {}: {:?} vs {:?}", v, a, b),
        }
    }

    #[test]
    fn mutations_are_rejected_at_their_key(e in event(), m in mutation()) {
        let (v, expected) = apply(&m, &e);
        let err = parse_value(&v).unwrap_err();
        prop_assert!(issue_keys(&err).contains(&expected), "{:?} on {} gave {:?}", m, v, err);
        let err = parse_json(serde_json::to_string(&v).unwrap().as_bytes()).unwrap_err();
        prop_assert!(issue_keys(&err).contains(&expected), "{:?} on {} gave {:?}", m, v, err);
    }

    #[test]
    fn std_ipv4_parser_accepts_only_canonical_text(s in "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}|[0-9.x+ -]{1,20}") {
        // The validator relies on this to skip printing IPv4 addresses back.
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            prop_assert_eq!(ip.to_string(), s);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = parse_json(&bytes) {
            prop_assert_eq!(parse_json(&serde_json::to_vec(&e).unwrap()).unwrap(), e);
        }
        let _ = parse_ndjson(&bytes);
    }
}
