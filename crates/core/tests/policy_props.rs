//! `PolicySnapshot::from_json_slice` has a typed fast path and an issue-collecting slow path. They must accept
//! exactly the same snapshots and produce the same result: generated snapshots, valid and broken in every way
//! the parser knows about, go through both and must agree.

// Integration tests may unwrap: a panic here is a test failure with its location, which is what we want.
#![allow(clippy::unwrap_used)]

use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use proptest::prelude::*;

/// The slow path alone: JSON text -> Value -> issue-collecting parser.
fn slow(bytes: &[u8]) -> Option<Result<PolicySnapshot, Vec<String>>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(PolicySnapshot::from_json_value(&v).map_err(|e| {
        e.issues
            .iter()
            .map(|i| format!("{}: {}", i.path_text(), i.message))
            .collect()
    }))
}

fn ip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
        1 => Just("010.0.0.1".to_owned()),
        1 => Just("2001:db8::1".to_owned()),
        1 => Just("2001:DB8::1".to_owned()),
        1 => Just("::ffff:10.0.0.1".to_owned()),
        1 => Just("not-an-ip".to_owned()),
    ]
}

fn cidr_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u8..=255, 0u8..=255, 8u8..=24).prop_map(|(a, b, len)| {
            let addr = u32::from_be_bytes([10, a, b, 0]) & (u32::MAX << (32 - len));
            format!("{}/{len}", std::net::Ipv4Addr::from(addr))
        }),
        1 => Just("10.0.0.1/8".to_owned()),
        1 => Just("10.0.0.0/33".to_owned()),
        1 => Just("2001:db8::/32".to_owned()),
        1 => Just("::ffff:0:0/96".to_owned()),
        1 => Just("10.0.0.0".to_owned()),
    ]
}

fn ports_json() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => proptest::collection::vec(1u16..=65535, 1..4).prop_map(|p| Some(serde_json::to_string(&p).unwrap())),
        1 => Just(Some("[]".to_owned())),
        1 => Just(Some("[0]".to_owned())),
        1 => Just(Some("[443,443]".to_owned())),
        1 => Just(Some("[443.0]".to_owned())),
        1 => Just(Some("[70000]".to_owned())),
        1 => Just(Some("null".to_owned())),
    ]
}

fn rule_json() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        6 => "[a-z]{1,8}".prop_map(|s| format!("\"{s}\"")),
        1 => Just("\"\"".to_owned()),
        1 => Just(format!("\"{}\"", "x".repeat(64))),
        1 => Just("\"a\\u0000b\"".to_owned()),
        1 => Just("7".to_owned()),
    ];
    let action = prop_oneof![4 => Just("\"allow\""), 4 => Just("\"deny\""), 1 => Just("\"Allow\"")];
    let protocol = prop_oneof![
        3 => Just(None),
        2 => Just(Some("\"tcp\"")),
        2 => Just(Some("\"udp\"")),
        1 => Just(Some("\"TCP\"")),
        1 => Just(Some("null")),
    ];
    let extra = prop_oneof![8 => Just(false), 1 => Just(true)];
    (id, action, cidr_text(), ports_json(), protocol, extra).prop_map(
        |(id, action, cidr, ports, protocol, extra)| {
            let mut s = format!("{{\"id\":{id},\"action\":{action},\"cidr\":\"{cidr}\"");
            if let Some(p) = ports {
                s.push_str(&format!(",\"ports\":{p}"));
            }
            if let Some(p) = protocol {
                s.push_str(&format!(",\"protocol\":{p}"));
            }
            if extra {
                s.push_str(",\"priority\":1");
            }
            s.push('}');
            s
        },
    )
}

fn snapshot_json() -> impl Strategy<Value = String> {
    let endpoint = (
        ip_text(),
        prop_oneof![5 => Just("8081"), 1 => Just("0"), 1 => Just("null")],
    )
        .prop_map(|(ip, port)| format!("{{\"ip\":\"{ip}\",\"port\":{port}}}"));
    let dns = (
        ip_text(),
        prop_oneof![3 => Just(None), 2 => Just(Some("53")), 1 => Just(Some("null"))],
    )
        .prop_map(|(ip, port)| match port {
            None => format!("{{\"ip\":\"{ip}\"}}"),
            Some(p) => format!("{{\"ip\":\"{ip}\",\"port\":{p}}}"),
        });
    let sampling = prop_oneof![
        3 => Just(String::new()),
        1 => Just(",\"sampling\":{}".to_owned()),
        1 => Just(",\"sampling\":{\"allowOneIn\":10,\"unmanagedOneIn\":0}".to_owned()),
        1 => Just(",\"sampling\":{\"allowOneIn\":-1}".to_owned()),
        1 => Just(",\"sampling\":null".to_owned()),
        1 => Just(",\"sampling\":{\"every\":2}".to_owned()),
    ];
    (
        proptest::collection::vec(endpoint, 0..3),
        proptest::collection::vec(dns, 0..3),
        proptest::collection::vec(rule_json(), 0..8),
        sampling,
        prop_oneof![9 => Just(""), 1 => Just(",\"broker\":[]")],
    )
        .prop_map(|(broker, dns, rules, sampling, dup_key)| {
            format!(
                "{{\"broker\":[{}],\"dns\":[{}],\"rules\":[{}]{sampling}{dup_key}}}",
                broker.join(","),
                dns.join(","),
                rules.join(",")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fast_and_slow_paths_agree(json in snapshot_json()) {
        let combined = PolicySnapshot::from_json_slice(json.as_bytes())
            .map_err(|e| e.issues.iter().map(|i| format!("{}: {}", i.path_text(), i.message)).collect::<Vec<_>>());
        match slow(json.as_bytes()) {
            // Text serde_json cannot read (duplicate keys are fine for a Value; the strict reader refuses them).
            None => prop_assert!(combined.is_err()),
            Some(expected) => {
                if json.contains(",\"broker\":[]") {
                    // A duplicate key: serde_json's Value keeps the last one, the strict parser refuses it.
                    prop_assert!(combined.is_err());
                } else {
                    prop_assert_eq!(combined, expected, "{}", json);
                }
            }
        }
    }
}

#[test]
fn valid_snapshots_take_the_fast_path_result() {
    let json = br#"{"broker":[{"ip":"10.0.0.5","port":8081}],"dns":[{"ip":"10.0.0.53"}],
        "rules":[{"id":"a","action":"allow","cidr":"10.1.0.0/16","ports":[443],"protocol":"tcp"}]}"#;
    let s = PolicySnapshot::from_json_slice(json).expect("valid");
    assert_eq!(s.dns[0].port, 53);
    assert_eq!(s.sampling.allow_one_in, 1);
    assert_eq!(Some(Ok(s)), slow(json));
}
