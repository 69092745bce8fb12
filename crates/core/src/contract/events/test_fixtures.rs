//! Events shared by the tests of the event modules.

use serde_json::json;

use super::parse_value;
use crate::contract::reason_codes::DataplaneReasonCode;
use crate::contract::validation::IssueCode;

pub(super) fn full() -> serde_json::Value {
    json!({
        "code_namespace": "dataplane_verdict",
        "reason_code": "DENY_EXPLICIT",
        "verdict": "deny",
        "hook": "connect4",
        "cgroup_id": "18446744073709551615",
        "message": "matched rule r-17",
        "protocol": "tcp",
        "dst_ip": "203.0.113.9",
        "dst_port": 443,
        "pid": 4242,
        "uid": 1000,
        "comm": "curl",
        "rule_id": "r-17",
        "dns_name": "api.github.com",
        "policy_generation": 9007199254740991u64,
        "workload_id": "wl-api",
        "observed_at": "2024-05-01T12:00:00.123456789Z"
    })
}

pub(super) fn with(mut v: serde_json::Value, k: &str, x: serde_json::Value) -> serde_json::Value {
    v[k] = x;
    v
}

pub(super) fn without(mut v: serde_json::Value, k: &str) -> serde_json::Value {
    v.as_object_mut().map(|m| m.remove(k));
    v
}

pub(super) fn issues(v: &serde_json::Value) -> Vec<(String, IssueCode)> {
    match parse_value(v) {
        Ok(e) => panic!("accepted {v}: {e:?}"),
        Err(e) => e.issues.iter().map(|i| (i.path_text(), i.code)).collect(),
    }
}

pub(super) fn minimal(code: &str) -> serde_json::Value {
    let c = DataplaneReasonCode::from_wire(code).unwrap();
    let mut v = json!({
        "code_namespace": "dataplane_verdict",
        "reason_code": code,
        "verdict": c.verdict().as_str(),
    });
    if let Some(wb) = c.would_block() {
        v["would_block"] = json!(wb);
    }
    v
}
