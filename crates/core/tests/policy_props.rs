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

/// DNS names as a rule or broker entry might write them: canonical names and patterns, and every way the
/// canonical-form rules refuse one.
fn fqdn_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => ("[a-z0-9_]{1,6}", "[a-z]{1,4}").prop_map(|(a, b)| format!("{a}.{b}.com")),
        3 => "[a-z]{1,6}".prop_map(|a| format!("*.{a}.com")),
        1 => Just("x-1.example.com".to_owned()),
        1 => Just("api.github.com.".to_owned()),
        1 => Just("API.github.com".to_owned()),
        1 => Just("*.com".to_owned()),
        1 => Just("*".to_owned()),
        1 => Just("**.a.com".to_owned()),
        1 => Just("a.*.com".to_owned()),
        1 => Just("localhost".to_owned()),
        1 => Just("-a.com".to_owned()),
        1 => Just("a..com".to_owned()),
        1 => Just(String::new()),
        1 => Just(format!("{}.com", "a".repeat(64))),
        1 => Just(format!("{}.{}.{}.{}.com", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60))),
    ]
}

/// `"cidr":..`, `"fqdn":..`, both or neither (`key` is `cidr` for rules, `ip` for broker entries).
fn target_json(key: &'static str, address: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => address.clone().prop_map(move |a| format!("\"{key}\":\"{a}\"")),
        4 => fqdn_text().prop_map(|n| format!("\"fqdn\":\"{n}\"")),
        1 => (address, fqdn_text()).prop_map(move |(a, n)| format!("\"{key}\":\"{a}\",\"fqdn\":\"{n}\"")),
        1 => Just("\"fqdn\":null".to_owned()),
        1 => Just("\"fqdn\":7".to_owned()),
        1 => Just(String::new()),
    ]
}

/// A JSON object from its comma-separated members, some of which may be empty.
fn members(parts: &[&str]) -> String {
    let kept: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    format!("{{{}}}", kept.join(","))
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
    let target = target_json("cidr", cidr_text().boxed());
    (id, action, target, ports_json(), protocol, extra).prop_map(
        |(id, action, target, ports, protocol, extra)| {
            let ports = ports.map(|p| format!("\"ports\":{p}")).unwrap_or_default();
            let protocol = protocol
                .map(|p| format!("\"protocol\":{p}"))
                .unwrap_or_default();
            let extra = if extra { "\"priority\":1" } else { "" };
            members(&[
                &format!("\"id\":{id}"),
                &format!("\"action\":{action}"),
                &target,
                &ports,
                &protocol,
                extra,
            ])
        },
    )
}

fn snapshot_json() -> impl Strategy<Value = String> {
    let endpoint = (
        target_json("ip", ip_text().boxed()),
        prop_oneof![5 => Just("\"port\":8081"), 1 => Just("\"port\":0"), 1 => Just("\"port\":null"), 1 => Just("")],
    )
        .prop_map(|(target, port)| members(&[&target, port]));
    let dns_queries = prop_oneof![
        4 => Just(""),
        2 => Just(",\"dnsQueries\":\"any\""),
        2 => Just(",\"dnsQueries\":\"policy\""),
        1 => Just(",\"dnsQueries\":\"Policy\""),
        1 => Just(",\"dnsQueries\":null"),
        1 => Just(",\"dnsQueries\":1"),
    ];
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
        proptest::collection::vec(endpoint, 0..4),
        proptest::collection::vec(dns, 0..3),
        proptest::collection::vec(rule_json(), 0..8),
        sampling,
        prop_oneof![9 => Just(""), 1 => Just(",\"broker\":[]")],
        dns_queries,
    )
        .prop_map(|(broker, dns, rules, sampling, dup_key, dns_queries)| {
            format!(
                "{{\"broker\":[{}],\"dns\":[{}],\"rules\":[{}]{sampling}{dup_key}{dns_queries}}}",
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
                    prop_assert_eq!(&combined, &expected, "{}", json);
                }
            }
        }
        // Whatever is accepted has a normalised form that parses back to it, by either path.
        if let Ok(snapshot) = combined {
            let out = snapshot.to_json_value();
            prop_assert_eq!(PolicySnapshot::from_json_value(&out), Ok(snapshot.clone()));
            let text = serde_json::to_vec(&out).unwrap();
            prop_assert_eq!(PolicySnapshot::from_json_slice(&text), Ok(snapshot));
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

#[test]
fn valid_snapshots_by_name_agree() {
    let json = br#"{"broker":[{"fqdn":"broker.internal","port":8081},{"ip":"10.0.0.5","port":8081}],"dns":[],
        "rules":[{"id":"a","action":"allow","fqdn":"*.github.com","ports":[443]}],"dnsQueries":"policy"}"#;
    let s = PolicySnapshot::from_json_slice(json).expect("valid");
    assert_eq!((s.broker.len(), s.broker_names.len()), (1, 1));
    assert_eq!(Some(Ok(s)), slow(json));
}
