use serde_json::json;

use super::*;
use crate::contract::hook::Hook;
use crate::contract::timestamp::Timestamp;

fn status() -> Status {
    Status {
        attached_hooks: vec![Hook::Connect4, Hook::Sendmsg6],
        managed_cgroups: vec![ManagedCgroup {
            cgroup_id: 4242,
            path: Some("/workloads/a".into()),
            mode: Some(Mode::Observe),
            workload_id: Some("wl".into()),
        }],
        global_mode: Mode::Enforce,
        fail_mode: FailMode::Closed,
        generation: 3,
        ipv4_rules: 10,
        ipv6_rules: 2,
        events_emitted: 100,
        dropped_in_kernel: 1,
        dropped_in_queue: 0,
        degraded: false,
    }
}

#[test]
fn responses_round_trip_for_every_command() {
    let summary = PolicySummary {
        generation: 2,
        ipv4_rules: 1,
        ipv6_rules: 0,
        broker_endpoints: 1,
        dns_endpoints: 1,
    };
    let entry = ManagedCgroup {
        cgroup_id: 9,
        path: None,
        mode: None,
        workload_id: None,
    };
    let datas = [
        ResponseData::GetHealth(Health::from_reasons(vec!["heartbeat stale".into()])),
        ResponseData::GetHealth(Health {
            degraded_since: Timestamp::parse("2026-01-02T03:04:05.000000006Z").ok(),
            started_at: Timestamp::parse("2026-01-02T03:04:00Z").ok(),
            adopted: Some(true),
            adopted_heartbeat_age_ms: Some(7000),
            heartbeat_age_ms: Some(12),
            heartbeat_grace_ms: Some(5000),
            ..Health::from_reasons(vec!["no policy loaded".into()])
        }),
        ResponseData::GetStatus(status()),
        ResponseData::GetPolicySummary(PolicySummary::default()),
        ResponseData::ReplacePolicySnapshot(summary),
        ResponseData::UpsertManagedCgroup(entry.clone()),
        ResponseData::DeleteManagedCgroup(entry.clone()),
        ResponseData::SetGlobalMode(GlobalModeData {
            global_mode: Mode::Observe,
        }),
        ResponseData::SetCgroupMode(entry),
        ResponseData::Shutdown,
        ResponseData::SubscribeEvents,
    ];
    for data in datas {
        let r = ControlResponse::Success {
            data,
            id: Some("i".into()),
        };
        assert_eq!(
            parse_response_line(r.to_line().as_bytes()),
            Ok(r.clone()),
            "{}",
            r.to_line()
        );
    }
    let f = ControlResponse::failure(
        ControlAuthzCode::CommandFailed,
        "no such cgroup",
        Some(Command::SetCgroupMode),
        None,
    );
    assert_eq!(
        f.to_line(),
        "{\"ok\":false,\"error\":{\"code_namespace\":\"control_authz\",\"reason_code\":\"CTRL_COMMAND_FAILED\",\"message\":\"no such cgroup\",\"command\":\"SetCgroupMode\"}}\n"
    );
    assert_eq!(parse_response_line(f.to_line().as_bytes()), Ok(f));
    let s = ControlResponse::Success {
        data: ResponseData::GetStatus(status()),
        id: None,
    }
    .to_line();
    assert!(s.starts_with("{\"ok\":true,\"command\":\"GetStatus\",\"data\":{\"attachedHooks\":[\"connect4\",\"sendmsg6\"],\"managedCgroups\":[{\"cgroupId\":\"4242\""), "{s}");
}

#[test]
fn response_schemas_are_strict() {
    let bad = [
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": ["x"]}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "degraded", "degradedReasons": []}}),
        json!({"ok": true, "command": "GetHealth"}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "degradedSince": "2026-01-02T03:04:05Z"}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "adopted": false, "adoptedHeartbeatAgeMs": 5}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "adoptedHeartbeatAgeMs": 5}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "startedAt": "yesterday"}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "adopted": "yes"}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "heartbeatAgeMs": -1}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "heartbeatGraceMs": 9007199254740992u64}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "uptimeMs": 1}}),
        json!({"ok": true, "command": "Shutdown", "data": {}}),
        json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 0, "ipv4Rules": 1, "ipv6Rules": 0, "brokerEndpoints": 0, "dnsEndpoints": 0}}),
        json!({"ok": true, "command": "SetGlobalMode", "data": {"globalMode": "off"}}),
        json!({"ok": true, "command": "SetCgroupMode", "data": {"cgroupId": 9}}),
        json!({"ok": true, "command": "Nope"}),
        json!({"ok": true, "command": "Shutdown", "error": {}}),
        json!({"ok": false, "command": "Shutdown", "error": {"code_namespace": "control_authz", "reason_code": "CTRL_COMMAND_FAILED", "message": "m"}}),
        json!({"ok": false, "error": {"code_namespace": "control_authz", "reason_code": "CTRL_COMMAND_FAILED", "message": "m", "command": "Reboot"}}),
        json!({"ok": false, "error": {"code_namespace": "control_authz", "reason_code": "DENY_DEFAULT", "message": "m"}}),
        json!({"ok": "true", "command": "Shutdown"}),
        json!({"command": "Shutdown"}),
    ];
    for v in bad {
        assert!(ControlResponse::from_json_value(&v).is_err(), "{v}");
    }
    let mut st = serde_json::to_value(status()).expect("json");
    st["attachedHooks"] = json!(["connect4", "connect4"]);
    assert!(ControlResponse::from_json_value(
        &json!({"ok": true, "command": "GetStatus", "data": st})
    )
    .is_err());
    st["attachedHooks"] = json!([]);
    st["eventsEmitted"] = json!(9007199254740992u64);
    let e =
        ControlResponse::from_json_value(&json!({"ok": true, "command": "GetStatus", "data": st}))
            .expect_err("too big");
    assert_eq!(e.issues[0].path_text(), "data.eventsEmitted");
}
