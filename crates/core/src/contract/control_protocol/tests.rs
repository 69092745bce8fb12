use super::*;
use serde_json::json;

fn reject(line: &str) -> RequestRejection {
    parse_request_line(line.as_bytes()).expect_err("must be rejected")
}

fn code(line: &str) -> ControlAuthzCode {
    reject(line).error.reason_code
}

#[test]
fn read_only_set_is_the_spec_one() {
    let ro: Vec<&str> = Command::ALL
        .iter()
        .filter(|c| c.is_read_only())
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        ro,
        [
            "GetHealth",
            "GetStatus",
            "GetPolicySummary",
            "SubscribeEvents"
        ]
    );
    for c in Command::ALL {
        assert_eq!(Command::from_wire(c.as_str()), Some(c));
    }
    assert_eq!(Command::from_wire("SetFailMode"), None);
    assert_eq!(Command::from_wire("gethealth"), None);
}

#[test]
fn every_command_round_trips() {
    let snapshot = PolicySnapshot::from_json_value(&json!({
        "broker": [{"ip": "10.0.0.5", "port": 8081}], "dns": [{"ip": "10.0.0.53"}],
        "rules": [{"id": "r", "action": "allow", "cidr": "10.1.0.0/16", "ports": [443]}]
    }))
    .expect("valid");
    let requests = [
        CommandRequest::GetHealth,
        CommandRequest::GetStatus,
        CommandRequest::GetPolicySummary,
        CommandRequest::ReplacePolicySnapshot(snapshot),
        CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
            cgroup: CgroupRef::Path("/workloads/a".into()),
            mode: Some(Mode::Observe),
            workload_id: Some("wl-a".into()),
        }),
        CommandRequest::DeleteManagedCgroup(CgroupRef::Id(u64::MAX)),
        CommandRequest::SetGlobalMode(Mode::Enforce),
        CommandRequest::SetCgroupMode {
            cgroup: CgroupRef::Id(7),
            mode: Mode::Observe,
        },
        CommandRequest::Shutdown(ShutdownOptions::default()),
        CommandRequest::Shutdown(ShutdownOptions { detach: true }),
        CommandRequest::SubscribeEvents,
    ];
    for (n, request) in requests.into_iter().enumerate() {
        let r = ControlRequest {
            request,
            id: (n % 2 == 0).then(|| format!("req-{n}")),
        };
        let line = r.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(parse_request_line(line.as_bytes()), Ok(r.clone()), "{line}");
        assert_eq!(parse_request_line(line.trim_end().as_bytes()), Ok(r));
    }
}

#[test]
fn envelope_problems_are_malformed() {
    for line in [
        "",
        "not json",
        "[]",
        "\"GetHealth\"",
        r#"{"command":"Nope"}"#,
        r#"{"command":"SetFailMode","payload":{"mode":"open"}}"#,
        r#"{"command":"GetHealth","extra":1}"#,
        r#"{"command":"GetHealth","id":7}"#,
        r#"{"payload":null}"#,
        r#"{"command":"GetHealth","command":"Shutdown"}"#,
        "{\"command\":\"GetHealth\"}\n{\"command\":\"Shutdown\"}",
        "{\"command\":\n\"GetHealth\"}",
        r#"{"command":"GetHealth","id":"\ud800"}"#,
    ] {
        assert_eq!(code(line), ControlAuthzCode::RequestMalformed, "{line}");
    }
    let bad_utf8 = b"{\"command\":\"GetHealth\",\"id\":\"\xff\"}";
    assert_eq!(
        parse_request_line(bad_utf8)
            .expect_err("utf8")
            .error
            .reason_code,
        ControlAuthzCode::RequestMalformed
    );
}

#[test]
fn payload_problems_are_payload_invalid_with_paths() {
    let r = reject(
        r#"{"command":"ReplacePolicySnapshot","id":"x1","payload":{"broker":[],"dns":[],"rules":[{"id":"a","action":"allow","cidr":"10.0.0.1/8"},{"id":"b","action":"nope","cidr":"10.0.0.0/8"}]}}"#,
    );
    assert_eq!(r.error.reason_code, ControlAuthzCode::RequestPayloadInvalid);
    assert_eq!(r.error.command, Some(Command::ReplacePolicySnapshot));
    assert_eq!(r.id.as_deref(), Some("x1"), "id is echoed on rejection");
    assert_eq!(
        r.error.message,
        "invalid ReplacePolicySnapshot payload: payload.rules[0].cidr: `10.0.0.1/8` has host bits set: write \
         `10.0.0.0/8`; payload.rules[1].action: expected one of `allow` | `deny`, received `nope`"
    );
    for line in [
        r#"{"command":"GetHealth","payload":{}}"#,
        r#"{"command":"Shutdown","payload":0}"#,
        r#"{"command":"Shutdown","payload":{"detach":"yes"}}"#,
        r#"{"command":"Shutdown","payload":{"force":true}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a","id":"5"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"id":"05"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"id":"0"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"id":"18446744073709551616"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"id":5}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"a/b"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a/../b"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a/"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a","mode":"audit"}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a","workloadId":""}}"#,
        r#"{"command":"UpsertManagedCgroup","payload":{"path":"/a","extra":true}}"#,
        r#"{"command":"DeleteManagedCgroup","payload":{"path":"/a","mode":"enforce"}}"#,
        r#"{"command":"SetGlobalMode","payload":{}}"#,
        r#"{"command":"SetGlobalMode"}"#,
        r#"{"command":"SetCgroupMode","payload":{"id":"3"}}"#,
        r#"{"command":"ReplacePolicySnapshot"}"#,
    ] {
        assert_eq!(
            code(line),
            ControlAuthzCode::RequestPayloadInvalid,
            "{line}"
        );
    }
    let long = format!(
        r#"{{"command":"UpsertManagedCgroup","payload":{{"path":"/a","workloadId":"{}"}}}}"#,
        "w".repeat(64)
    );
    assert_eq!(code(&long), ControlAuthzCode::RequestPayloadInvalid);
}

#[test]
fn the_line_limit_is_16_mib() {
    // A valid request padded with JSON whitespace to exactly the limit is accepted; one byte more is not.
    let head = br#"{"command":"GetHealth"}"#;
    let mut line = head.to_vec();
    line.resize(MAX_LINE_BYTES, b' ');
    assert!(parse_request_line(&line).is_ok());
    line.push(b'\n');
    assert!(
        parse_request_line(&line).is_ok(),
        "the newline does not count"
    );
    line.pop();
    line.push(b' ');
    let r = parse_request_line(&line).expect_err("too long");
    assert_eq!(r.error.reason_code, ControlAuthzCode::RequestMalformed);
    assert!(
        r.error.message.contains("the limit is 16777216"),
        "{}",
        r.error.message
    );
}

#[test]
fn huge_issue_lists_are_summarised() {
    let rules: Vec<Value> = (0..500)
        .map(|i| json!({"id": format!("r{i}"), "action": "allow", "cidr": "10.0.0.1/8"}))
        .collect();
    let line = json!({"command": "ReplacePolicySnapshot", "payload": {"broker": [], "dns": [], "rules": rules}}).to_string();
    let r = reject(&line);
    assert_eq!(r.issues.len(), 500);
    assert!(
        r.error.message.ends_with("; and 400 more issues"),
        "{}",
        &r.error.message[r.error.message.len() - 60..]
    );
}

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

#[test]
fn every_example_in_the_docs_parses() {
    let doc = include_str!("../../../../../docs/control-protocol.md");
    let lines: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("> ") || l.starts_with("< "))
        .collect();
    assert_eq!(lines.len(), 30, "15 exchanges");
    for pair in lines.chunks(2) {
        let (req, res) = (&pair[0][2..], &pair[1][2..]);
        let expected = parse_response_line(res.as_bytes()).unwrap_or_else(|e| panic!("{res}: {e}"));
        match parse_request_line(req.as_bytes()) {
            Ok(r) => {
                // A valid request gets a success for its command, or a refusal naming it (authorization, a
                // failure to apply).
                let command = match &expected {
                    ControlResponse::Success { data, .. } => data.command(),
                    ControlResponse::Failure { error, .. } => {
                        error.command.expect("a refusal names the command")
                    }
                };
                assert_eq!(command, r.command(), "{req}");
                let id = match &expected {
                    ControlResponse::Success { id, .. } | ControlResponse::Failure { id, .. } => id,
                };
                assert_eq!(id, &r.id, "{req}: the id is echoed");
            }
            Err(rej) => assert_eq!(rej.into_response().to_line().trim_end(), res, "{req}"),
        }
    }
}
