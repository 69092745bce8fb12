use serde_json::json;

use super::*;
use crate::contract::hook::Hook;
use crate::contract::layer::{Layer, LayerCounters, LayerState, LayerStatus};
use crate::contract::timestamp::Timestamp;
use crate::contract::verdict_counts::VerdictCount;

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
        layers: vec![
            LayerStatus {
                layer: Layer::SockCreate,
                state: LayerState::Active,
            },
            LayerStatus {
                layer: Layer::SocketCreateLsm,
                state: LayerState::Unavailable("the BPF LSM is not active".into()),
            },
            LayerStatus {
                layer: Layer::Egress,
                state: LayerState::Disabled,
            },
        ],
        active_layers: vec![Layer::SockCreate],
        layer_counters: LayerCounters::from_values([1, 2, 3, 4, 5, 6]),
        verdicts: vec![
            VerdictCount {
                hook: Hook::Sendmsg4,
                reason: DataplaneReasonCode::DenyDefault,
                count: 2_000_000,
            },
            VerdictCount {
                hook: Hook::Egress,
                reason: DataplaneReasonCode::DenyPacketEgress,
                count: 3,
            },
        ],
        learned_addresses: None,
    }
}

fn dns_status() -> DnsStatus {
    DnsStatus {
        serving: true,
        listen: vec!["127.0.0.1:5353".into(), "[::1]:5353".into()],
        reason: None,
        dns_queries: crate::contract::policy::DnsQueries::Policy,
        learned: vec![
            LearnedAddress {
                name: "api.github.com".into(),
                address: "140.82.112.5".parse().expect("ip"),
                ttl_remaining_ms: 59_000,
                rule_ids: vec!["gh".into(), "gh-deny-80".into()],
                broker: false,
                cgroup_id: 4242,
                workload_id: Some("wl".into()),
            },
            LearnedAddress {
                name: "broker.internal".into(),
                address: "2001:db8::5".parse().expect("ip"),
                ttl_remaining_ms: 0,
                rule_ids: vec![],
                broker: true,
                cgroup_id: 7,
                workload_id: None,
            },
        ],
        counters: DnsCounters {
            queries: 10,
            refused: 2,
            would_refuse: 1,
            learned_addresses: 5,
            upstream_failures: 0,
        },
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
        fqdn_rules: 3,
        broker_names: 1,
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
            active_layers: Some(vec![Layer::SockCreate, Layer::Egress]),
            version: Some("0.1.0-rc.1+g7279137".into()),
            ..Health::from_reasons(vec!["no policy loaded".into()])
        }),
        ResponseData::GetStatus(status()),
        ResponseData::GetPolicySummary(PolicySummary::default()),
        ResponseData::GetPolicySnapshot(PolicySnapshotData {
            generation: 0,
            snapshot: None,
        }),
        ResponseData::GetPolicySnapshot(PolicySnapshotData {
            generation: 4,
            snapshot: None,
        }),
        ResponseData::GetPolicySnapshot(PolicySnapshotData {
            generation: 5,
            snapshot: Some(
                crate::contract::policy::PolicySnapshot::from_json_value(&json!({
                    "broker": [{"ip": "10.0.0.5", "port": 8081}], "dns": [{"ip": "fd00::53", "port": 5353}],
                    "rules": [{"id": "r", "action": "deny", "cidr": "10.1.0.0/16", "ports": [443, 8443], "protocol": "tcp"}],
                    "sampling": {"allowOneIn": 10, "unmanagedOneIn": 100}
                }))
                .expect("snapshot"),
            ),
        }),
        ResponseData::ValidatePolicySnapshot(summary),
        ResponseData::ReplacePolicySnapshot(summary),
        ResponseData::UpsertManagedCgroup(entry.clone()),
        ResponseData::DeleteManagedCgroup(entry.clone()),
        ResponseData::SetGlobalMode(GlobalModeData {
            global_mode: Mode::Observe,
        }),
        ResponseData::SetCgroupMode(entry),
        ResponseData::Shutdown,
        ResponseData::SubscribeEvents,
        ResponseData::GetStatus(Status {
            learned_addresses: Some(12),
            ..status()
        }),
        ResponseData::GetDnsStatus(dns_status()),
        ResponseData::GetDnsStatus(DnsStatus {
            serving: false,
            listen: vec![],
            reason: Some("no fqdn rule in the policy".into()),
            learned: vec![],
            ..dns_status()
        }),
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
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "activeLayers": ["egress", "egress"]}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "activeLayers": ["firewall"]}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "activeLayers": "egress"}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "version": ""}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "version": "0.1.0 beta"}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "version": "x".repeat(65)}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "version": 1}}),
        json!({"ok": true, "command": "GetHealth", "data": {"status": "ok", "degradedReasons": [], "version": null}}),
        json!({"ok": true, "command": "Shutdown", "data": {}}),
        json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 0, "ipv4Rules": 1, "ipv6Rules": 0, "brokerEndpoints": 0, "dnsEndpoints": 0}}),
        json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 0, "ipv4Rules": 0, "ipv6Rules": 0, "brokerEndpoints": 0, "dnsEndpoints": 0, "fqdnRules": 1}}),
        json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 1, "ipv4Rules": 0, "ipv6Rules": 0, "brokerEndpoints": 0, "dnsEndpoints": 0, "brokerNames": -1}}),
        json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 1, "ipv4Rules": 0, "ipv6Rules": 0, "brokerEndpoints": 0, "dnsEndpoints": 0, "fqdnRules": null}}),
        json!({"ok": true, "command": "SetGlobalMode", "data": {"globalMode": "off"}}),
        json!({"ok": true, "command": "GetPolicySnapshot", "data": {"generation": 0, "snapshot": {"broker": [], "dns": [], "rules": []}}}),
        json!({"ok": true, "command": "GetPolicySnapshot", "data": {"generation": 2, "snapshot": null}}),
        json!({"ok": true, "command": "GetPolicySnapshot", "data": {"generation": 2, "snapshot": {"broker": [], "dns": [], "rules": [{"id": "x", "action": "allow", "cidr": "10.0.0.1/8"}]}}}),
        json!({"ok": true, "command": "GetPolicySnapshot", "data": {"snapshot": {"broker": [], "dns": [], "rules": []}}}),
        json!({"ok": true, "command": "GetPolicySnapshot", "data": {"generation": 1, "known": false}}),
        json!({"ok": true, "command": "GetPolicySnapshot"}),
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

#[test]
fn status_layers_are_strict_and_agree_with_active_layers() {
    let line = ControlResponse::Success {
        data: ResponseData::GetStatus(status()),
        id: None,
    }
    .to_line();
    assert!(
        line.contains(
            "\"layers\":[{\"layer\":\"sock_create\",\"state\":\"active\"},\
             {\"layer\":\"socket_create_lsm\",\"state\":\"unavailable\",\"reason\":\"the BPF LSM is not active\"},\
             {\"layer\":\"egress\",\"state\":\"disabled\"}],\"activeLayers\":[\"sock_create\"],\
             \"layerCounters\":{\"socketsRefused\":1,\"socketsWouldRefuse\":2,\"packetsDropped\":3,\
             \"packetsWouldDrop\":4,\"packetsJudged\":5,\"marksWritten\":6},"
        ),
        "{line}"
    );
    let base = serde_json::to_value(status()).expect("json");
    let refused = |edit: &dyn Fn(&mut Value), path: &str| {
        let mut st = base.clone();
        edit(&mut st);
        let e = ControlResponse::from_json_value(
            &json!({"ok": true, "command": "GetStatus", "data": st}),
        )
        .expect_err(path);
        let paths: Vec<String> = e.issues.iter().map(|i| i.path_text()).collect();
        assert!(paths.iter().any(|p| p == path), "{path}: {paths:?}");
    };
    refused(&|st| st["activeLayers"] = json!([]), "data.activeLayers");
    refused(
        &|st| st["activeLayers"] = json!(["sock_create", "egress"]),
        "data.activeLayers",
    );
    refused(
        &|st| st["layers"][1] = json!({"layer": "socket_create_lsm", "state": "unavailable"}),
        "data.layers[1].reason",
    );
    refused(
        &|st| {
            st["layers"][1] =
                json!({"layer": "socket_create_lsm", "state": "unavailable", "reason": ""})
        },
        "data.layers[1].reason",
    );
    refused(
        &|st| st["layers"][2] = json!({"layer": "egress", "state": "disabled", "reason": "x"}),
        "data.layers[2].reason",
    );
    refused(
        &|st| st["layers"][2] = json!({"layer": "sock_create", "state": "disabled"}),
        "data.layers[2]",
    );
    refused(
        &|st| st["layers"][2] = json!({"layer": "egress", "state": "off"}),
        "data.layers[2].state",
    );
    refused(
        &|st| st["layerCounters"]["packetsDropped"] = json!(-1),
        "data.layerCounters.packetsDropped",
    );
    refused(
        &|st| st["layerCounters"]["extra"] = json!(1),
        "data.layerCounters",
    );
    refused(
        &|st| {
            if let Some(o) = st.as_object_mut() {
                o.remove("layers");
            }
        },
        "data.layers",
    );
}

#[test]
fn status_verdicts_are_strict() {
    let line = ControlResponse::Success {
        data: ResponseData::GetStatus(status()),
        id: None,
    }
    .to_line();
    assert!(
        line.contains(
            "\"verdicts\":[{\"hook\":\"sendmsg4\",\"reasonCode\":\"DENY_DEFAULT\",\"count\":2000000},\
             {\"hook\":\"egress\",\"reasonCode\":\"DENY_PACKET_EGRESS\",\"count\":3}]}"
        ),
        "{line}"
    );
    let base = serde_json::to_value(status()).expect("json");
    let parsed = ControlResponse::from_json_value(
        &json!({"ok": true, "command": "GetStatus", "data": base.clone()}),
    )
    .expect("round trip");
    assert!(
        matches!(&parsed, ControlResponse::Success { data: ResponseData::GetStatus(st), .. } if st.verdicts == status().verdicts),
        "{parsed:?}"
    );
    let refused = |edit: &dyn Fn(&mut Value), path: &str| {
        let mut st = base.clone();
        edit(&mut st);
        let e = ControlResponse::from_json_value(
            &json!({"ok": true, "command": "GetStatus", "data": st}),
        )
        .expect_err(path);
        let paths: Vec<String> = e.issues.iter().map(|i| i.path_text()).collect();
        assert!(paths.iter().any(|p| p == path), "{path}: {paths:?}");
    };
    refused(
        &|st| {
            if let Some(o) = st.as_object_mut() {
                o.remove("verdicts");
            }
        },
        "data.verdicts",
    );
    refused(&|st| st["verdicts"] = json!({}), "data.verdicts");
    refused(
        &|st| st["verdicts"][0]["count"] = json!(0),
        "data.verdicts[0].count",
    );
    refused(
        &|st| st["verdicts"][0]["count"] = json!(1.5),
        "data.verdicts[0].count",
    );
    refused(
        &|st| st["verdicts"][0]["hook"] = json!("bind4"),
        "data.verdicts[0].hook",
    );
    refused(
        &|st| st["verdicts"][0]["reasonCode"] = json!("CTRL_COMMAND_FAILED"),
        "data.verdicts[0].reasonCode",
    );
    refused(
        &|st| st["verdicts"][0]["extra"] = json!(1),
        "data.verdicts[0]",
    );
    refused(
        &|st| st["verdicts"][1] = st["verdicts"][0].clone(),
        "data.verdicts[1]",
    );
}

/// An agent from before SPEC 4b sends summaries without `fqdnRules` and `brokerNames`: they read as 0.
#[test]
fn summaries_without_fqdn_counts_still_read() {
    let v = json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 2, "ipv4Rules": 1, "ipv6Rules": 0, "brokerEndpoints": 1, "dnsEndpoints": 1}});
    let Ok(ControlResponse::Success {
        data: ResponseData::GetPolicySummary(s),
        ..
    }) = ControlResponse::from_json_value(&v)
    else {
        panic!("an old summary must read");
    };
    assert_eq!((s.generation, s.fqdn_rules, s.broker_names), (2, 0, 0));
    let v = json!({"ok": true, "command": "GetPolicySummary", "data": {"generation": 2, "ipv4Rules": 1, "ipv6Rules": 0, "brokerEndpoints": 1, "dnsEndpoints": 1, "fqdnRules": 4, "brokerNames": 2}});
    let Ok(ControlResponse::Success {
        data: ResponseData::GetPolicySummary(s),
        ..
    }) = ControlResponse::from_json_value(&v)
    else {
        panic!("a new summary must read");
    };
    assert_eq!((s.fqdn_rules, s.broker_names), (4, 2));
}

#[test]
fn dns_status_wire_form_and_strict_reader() {
    let v = ResponseData::GetDnsStatus(dns_status())
        .to_json_value()
        .expect("data");
    assert_eq!(
        v,
        json!({
            "serving": true, "listen": ["127.0.0.1:5353", "[::1]:5353"], "dnsQueries": "policy",
            "learned": [
                {"name": "api.github.com", "address": "140.82.112.5", "ttlRemainingMs": 59000,
                 "ruleIds": ["gh", "gh-deny-80"], "broker": false, "cgroupId": "4242", "workloadId": "wl"},
                {"name": "broker.internal", "address": "2001:db8::5", "ttlRemainingMs": 0, "ruleIds": [],
                 "broker": true, "cgroupId": "7"}
            ],
            "counters": {"queries": 10, "refused": 2, "wouldRefuse": 1, "learnedAddresses": 5, "upstreamFailures": 0}
        })
    );
    let bad = |path: &str, f: &dyn Fn(&mut Value)| {
        let mut d = v.clone();
        f(&mut d);
        let e = parse_command_data(Command::GetDnsStatus, Some(&d)).expect_err(path);
        let paths: Vec<String> = e.issues.iter().map(|i| i.path_text()).collect();
        assert_eq!(paths, [path], "{e}");
    };
    bad("reason", &|d| d["reason"] = json!("serving anyway"));
    bad("reason", &|d| {
        d["serving"] = json!(false);
        d["reason"] = json!("");
    });
    bad("listen[0]", &|d| d["listen"][0] = json!(""));
    bad("dnsQueries", &|d| d["dnsQueries"] = json!("all"));
    bad("learned[0].name", &|d| {
        d["learned"][0]["name"] = json!("API.github.com")
    });
    bad("learned[0].name", &|d| {
        d["learned"][0]["name"] = json!("api.github.com.")
    });
    bad("learned[0].address", &|d| {
        d["learned"][0]["address"] = json!("2001:DB8::5")
    });
    bad("learned[1].cgroupId", &|d| {
        d["learned"][1]["cgroupId"] = json!(7)
    });
    bad("learned[0].ruleIds[1]", &|d| {
        d["learned"][0]["ruleIds"][1] = json!("")
    });
    bad("learned[0].ttlRemainingMs", &|d| {
        d["learned"][0]["ttlRemainingMs"] = json!(-1)
    });
    bad("learned[0]", &|d| d["learned"][0]["ttl"] = json!(1));
    bad("counters.wouldRefuse", &|d| {
        d["counters"]["wouldRefuse"] = json!(1.5)
    });
    bad("counters", &|d| d["counters"]["extra"] = json!(0));
    bad("counters.queries", &|d| {
        d["counters"].as_object_mut().map(|c| c.remove("queries"));
    });
    bad("", &|d| d["extra"] = json!(1));
    // A single-label name is a valid query name.
    let mut d = v.clone();
    d["learned"][0]["name"] = json!("localhost");
    assert!(parse_command_data(Command::GetDnsStatus, Some(&d)).is_ok());
    assert!(parse_command_data(Command::GetDnsStatus, None).is_err());
}

#[test]
fn status_learned_addresses_is_optional() {
    let mut st = serde_json::to_value(status()).expect("json");
    assert!(st.get("learnedAddresses").is_none());
    let parsed = parse_command_data(Command::GetStatus, Some(&st)).expect("old status");
    assert_eq!(parsed, ResponseData::GetStatus(status()));
    st["learnedAddresses"] = json!(3);
    let ResponseData::GetStatus(s) =
        parse_command_data(Command::GetStatus, Some(&st)).expect("new status")
    else {
        panic!("a status");
    };
    assert_eq!(s.learned_addresses, Some(3));
    st["learnedAddresses"] = json!(-3);
    assert!(parse_command_data(Command::GetStatus, Some(&st)).is_err());
}
