use serde_json::json;

use super::*;
use crate::contract::control::protocol::MAX_LINE_BYTES;
use crate::contract::policy::PolicySnapshot;

fn reject(line: &str) -> RequestRejection {
    parse_request_line(line.as_bytes()).expect_err("must be rejected")
}

fn code(line: &str) -> ControlAuthzCode {
    reject(line).error.reason_code
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
        CommandRequest::GetPolicySnapshot,
        CommandRequest::ValidatePolicySnapshot(snapshot.clone()),
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
        r#"{"command":"Shutdown","payload":[]}"#,
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

#[test]
fn shutdown_payload_forms() {
    let plain = CommandRequest::Shutdown(ShutdownOptions::default());
    let detach = CommandRequest::Shutdown(ShutdownOptions { detach: true });
    for (line, expected) in [
        (r#"{"command":"Shutdown"}"#, &plain),
        (r#"{"command":"Shutdown","payload":null}"#, &plain),
        (r#"{"command":"Shutdown","payload":{}}"#, &plain),
        (
            r#"{"command":"Shutdown","payload":{"detach":false}}"#,
            &plain,
        ),
        (
            r#"{"command":"Shutdown","payload":{"detach":true}}"#,
            &detach,
        ),
    ] {
        let r = parse_request_line(line.as_bytes()).expect("valid");
        assert_eq!(&r.request, expected, "{line}");
    }
    // The canonical line of a plain shutdown carries no payload; a detaching one says so.
    assert_eq!(plain.payload_json(), None);
    assert_eq!(detach.payload_json(), Some(json!({"detach": true})));
    // The per-command export takes the same payloads, with paths from the payload's root.
    assert_eq!(
        super::super::parse_command_payload(Command::Shutdown, Some(&json!({"detach": true}))),
        Ok(detach)
    );
    let e = super::super::parse_command_payload(Command::Shutdown, Some(&json!({"detach": 1})))
        .expect_err("not a boolean");
    assert_eq!(e.issues[0].path, vec![PathSegment::from("detach")]);
}
