use serde_json::json;

use super::super::test_fixtures::{full, issues, minimal, with, without};
use super::super::PolicyGeneration;
use super::*;

#[test]
fn accepts_every_code_with_its_verdict() {
    for code in DataplaneReasonCode::ALL {
        let e = parse_value(&minimal(code.as_str())).unwrap();
        assert_eq!(e.reason_code, *code);
    }
}

#[test]
fn accepts_a_full_event_and_keeps_every_field() {
    let e = parse_value(&full()).unwrap();
    assert_eq!(e.cgroup_id, Some(u64::MAX));
    assert_eq!(e.dst_ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(
        e.policy_generation.map(PolicyGeneration::get),
        Some(POLICY_GENERATION_MAX)
    );
    assert_eq!(e.to_value(), full());
}

#[test]
fn rejects_unknown_and_control_codes_saying_which() {
    let e = parse_value(&with(full(), "reason_code", json!("CTRL_COMMAND_FAILED"))).unwrap_err();
    assert_eq!(e.issues.len(), 1, "{e}");
    assert!(
        e.issues[0].message.contains("control_authz error code"),
        "{e}"
    );
    let e = parse_value(&with(full(), "reason_code", json!("DENY_EVERYTHING"))).unwrap_err();
    assert!(
        e.issues[0]
            .message
            .contains("unknown dataplane_verdict reason code"),
        "{e}"
    );
    assert_eq!(e.issues.len(), 1, "cross-field checks are skipped: {e}");
    assert_eq!(
        issues(&with(full(), "reason_code", json!("UNSPECIFIED"))),
        [("reason_code".into(), IssueCode::InvalidValue)]
    );
}

#[test]
fn namespace_must_be_dataplane() {
    assert_eq!(
        issues(&with(full(), "code_namespace", json!("control_authz"))),
        [("code_namespace".into(), IssueCode::InvalidValue)]
    );
    assert_eq!(
        issues(&without(full(), "code_namespace")),
        [("code_namespace".into(), IssueCode::InvalidType)]
    );
}

#[test]
fn verdict_must_match_the_code() {
    assert_eq!(
        issues(&with(full(), "verdict", json!("allow"))),
        [("verdict".into(), IssueCode::Custom)]
    );
    assert_eq!(
        issues(&with(
            minimal("OBSERVE_WOULD_DENY_DEFAULT"),
            "verdict",
            json!("deny")
        )),
        [("verdict".into(), IssueCode::Custom)]
    );
    assert_eq!(
        issues(&with(full(), "verdict", json!("block"))),
        [("verdict".into(), IssueCode::InvalidValue)]
    );
}

#[test]
fn would_block_rules() {
    // Required for observe codes, with the exact value.
    assert_eq!(
        issues(&without(minimal("OBSERVE_WOULD_ALLOW"), "would_block")),
        [("would_block".into(), IssueCode::Custom)]
    );
    assert_eq!(
        issues(&with(
            minimal("OBSERVE_WOULD_ALLOW"),
            "would_block",
            json!(true)
        )),
        [("would_block".into(), IssueCode::Custom)]
    );
    assert_eq!(
        issues(&with(
            minimal("OBSERVE_WOULD_DENY_EXPLICIT"),
            "would_block",
            json!(false)
        )),
        [("would_block".into(), IssueCode::Custom)]
    );
    // Forbidden for the others, whatever its value.
    for wb in [true, false] {
        assert_eq!(
            issues(&with(full(), "would_block", json!(wb))),
            [("would_block".into(), IssueCode::Custom)]
        );
    }
    // Wrong type: a type issue, no cross-field issue.
    assert_eq!(
        issues(&with(
            minimal("OBSERVE_WOULD_ALLOW"),
            "would_block",
            json!("false")
        )),
        [("would_block".into(), IssueCode::InvalidType)]
    );
}

#[test]
fn every_issue_is_collected_in_table_order_and_unknown_keys_are_listed_once() {
    let mut v = with(full(), "verdict", json!("allow"));
    v["dst_port"] = json!(70000);
    v["comm"] = json!("a-very-long-process-name");
    v["zeta"] = json!(1);
    v["alpha"] = json!(null);
    let got = issues(&v);
    assert_eq!(
        got,
        [
            ("verdict".into(), IssueCode::Custom),
            ("dst_port".into(), IssueCode::TooBig),
            ("comm".into(), IssueCode::TooBig),
            ("".into(), IssueCode::UnrecognizedKeys),
        ]
    );
    let e = parse_value(&v).unwrap_err();
    let last = &e.issues[3].message;
    assert!(
        last.contains("\"zeta\"") && last.contains("\"alpha\""),
        "{last}"
    );
}

#[test]
fn null_is_not_absent() {
    for k in [
        "hook",
        "message",
        "dst_port",
        "observed_at",
        "would_block",
        "dns_name",
    ] {
        assert_eq!(
            issues(&with(full(), k, json!(null))),
            [(k.into(), IssueCode::InvalidType)],
            "{k}"
        );
    }
}

#[test]
fn cgroup_id_rules() {
    for ok in ["0", "1", "18446744073709551615"] {
        assert!(
            parse_value(&with(full(), "cgroup_id", json!(ok))).is_ok(),
            "{ok}"
        );
    }
    for (bad, code) in [
        ("", IssueCode::InvalidFormat),
        ("01", IssueCode::InvalidFormat),
        ("-1", IssueCode::InvalidFormat),
        ("+1", IssueCode::InvalidFormat),
        ("1 ", IssueCode::InvalidFormat),
        ("0x10", IssueCode::InvalidFormat),
        ("١٢", IssueCode::InvalidFormat),
        ("18446744073709551616", IssueCode::TooBig),
    ] {
        assert_eq!(
            issues(&with(full(), "cgroup_id", json!(bad))),
            [("cgroup_id".into(), code)],
            "{bad}"
        );
    }
    assert_eq!(
        issues(&with(full(), "cgroup_id", json!(42))),
        [("cgroup_id".into(), IssueCode::InvalidType)]
    );
}

#[test]
fn dst_ip_must_be_canonical() {
    for ok in [
        "10.0.0.1",
        "::1",
        "::",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "fe80::1",
    ] {
        assert!(
            parse_value(&with(full(), "dst_ip", json!(ok))).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "010.0.0.1",
        "10.0.0",
        "::FFFF:10.0.0.1",
        "0:0::1",
        "2001:DB8::1",
        "2001:db8:0:0:0:0:0:1",
        " 10.0.0.1",
        "fe80::1%eth0",
        "10.0.0.1/32",
        "localhost",
    ] {
        assert_eq!(
            issues(&with(full(), "dst_ip", json!(bad))),
            [("dst_ip".into(), IssueCode::InvalidFormat)],
            "{bad}"
        );
    }
}

#[test]
fn integer_bounds() {
    for (k, max) in [
        ("dst_port", 65535u64),
        ("pid", u64::from(u32::MAX)),
        ("uid", u64::from(u32::MAX)),
        ("policy_generation", POLICY_GENERATION_MAX),
    ] {
        assert!(parse_value(&with(full(), k, json!(0))).is_ok(), "{k}=0");
        assert!(parse_value(&with(full(), k, json!(max))).is_ok(), "{k}=max");
        assert!(parse_value(&with(full(), k, json!(1.0))).is_ok(), "{k}=1.0");
        assert_eq!(
            issues(&with(full(), k, json!(max + 1))),
            [(k.into(), IssueCode::TooBig)],
            "{k}"
        );
        assert_eq!(
            issues(&with(full(), k, json!(-1))),
            [(k.into(), IssueCode::TooSmall)],
            "{k}"
        );
        assert_eq!(
            issues(&with(full(), k, json!(1.5))),
            [(k.into(), IssueCode::InvalidType)],
            "{k}"
        );
        assert_eq!(
            issues(&with(full(), k, json!("1"))),
            [(k.into(), IssueCode::InvalidType)],
            "{k}"
        );
    }
}

#[test]
fn non_finite_numbers_from_javascript_are_rejected() {
    let v = full();
    for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut input = fields_from_value(&v).unwrap();
        input.fields[key::PID] = Field::Number(n);
        let e = validate_fields(&input).unwrap_err();
        assert_eq!(e.issues[0].code, IssueCode::InvalidType, "{n}");
    }
    let mut input = fields_from_value(&v).unwrap();
    input.fields[key::PID] = Field::Number(-0.0);
    assert_eq!(validate_fields(&input).unwrap().pid, Some(0));
}

#[test]
fn comm_is_limited_in_utf8_bytes() {
    assert!(parse_value(&with(full(), "comm", json!("0123456789abcdef"))).is_ok());
    assert!(parse_value(&with(full(), "comm", json!("ééééééé"))).is_ok()); // 14 bytes
    assert_eq!(
        issues(&with(full(), "comm", json!("ééééééééé"))), // 9 chars, 18 bytes
        [("comm".into(), IssueCode::TooBig)]
    );
}

#[test]
fn observed_at_is_rfc3339() {
    assert!(parse_value(&with(
        full(),
        "observed_at",
        json!("2024-02-29T23:59:60+05:30")
    ))
    .is_ok());
    for bad in [
        "2023-02-29T00:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01T12:00:00.0000000001Z",
    ] {
        assert_eq!(
            issues(&with(full(), "observed_at", json!(bad))),
            [("observed_at".into(), IssueCode::InvalidFormat)],
            "{bad}"
        );
    }
}

#[test]
fn ill_formed_strings_are_rejected() {
    let v = full();
    let mut input = fields_from_value(&v).unwrap();
    input.ill_formed = 1 << key::MESSAGE;
    let e = validate_fields(&input).unwrap_err();
    assert_eq!(e.issues.len(), 1);
    assert_eq!(e.issues[0].path_text(), "message");
    assert_eq!(e.issues[0].code, IssueCode::InvalidFormat);
}

#[test]
fn non_objects_are_rejected_at_the_root() {
    for v in [json!([]), json!("x"), json!(1), json!(null)] {
        let e = parse_value(&v).unwrap_err();
        assert_eq!(e.issues.len(), 1);
        assert!(e.issues[0].path.is_empty());
        assert_eq!(e.issues[0].code, IssueCode::InvalidType);
    }
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "x".repeat(10_000);
    let e = parse_value(&with(full(), "reason_code", json!(long))).unwrap_err();
    assert!(
        e.issues[0].message.len() < 600,
        "{}",
        e.issues[0].message.len()
    );
}

/// SPEC 4b: `dns_name` is an optional string, kept in table order right after `rule_id`; empty is accepted and
/// dropped by the log record like the other free-text strings.
#[test]
fn dns_name_is_an_optional_string_after_rule_id() {
    let e = parse_value(&full()).unwrap();
    assert_eq!(e.dns_name.as_deref(), Some("api.github.com"));
    let keys: Vec<String> = e.to_value().as_object().unwrap().keys().cloned().collect();
    let at = keys.iter().position(|k| k == "dns_name").unwrap();
    assert_eq!(keys[at - 1], "rule_id");
    assert_eq!(keys[at + 1], "policy_generation");
    assert_eq!(
        issues(&with(full(), "dns_name", json!(7))),
        [("dns_name".into(), IssueCode::InvalidType)]
    );
    let refused = json!({"code_namespace": "dataplane_verdict", "reason_code": "DENY_DNS_QUERY",
                         "verdict": "deny", "hook": "dns", "dns_name": "x.attacker.example"});
    let e = parse_value(&refused).unwrap();
    assert_eq!(e.hook, Some(crate::contract::hook::Hook::Dns));
    assert_eq!(e.to_log_value(), refused);
    let empty = with(refused, "dns_name", json!(""));
    let e = parse_value(&empty).unwrap();
    assert_eq!(e.dns_name.as_deref(), Some(""));
    assert!(e.to_log_value().get("dns_name").is_none());
}
