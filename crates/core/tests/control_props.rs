//! Property tests for the control protocol: generated valid requests and responses survive
//! serialize -> parse unchanged; mutations of a valid line are rejected with the right code.

use interceptor_ebpf_core::contract::control::protocol::{
    parse_request_line, parse_response_line, CgroupRef, CommandRequest, ControlRequest,
    ControlResponse, Mode, PolicySummary, ResponseData, ShutdownOptions, UpsertManagedCgroup,
};
use interceptor_ebpf_core::contract::policy::{
    IpNet, PolicySnapshot, Rule, RuleAction, RuleTarget,
};
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;
use proptest::prelude::*;

fn cgroup() -> impl Strategy<Value = CgroupRef> {
    prop_oneof![
        (1u64..=u64::MAX).prop_map(CgroupRef::Id),
        proptest::collection::vec("[a-z0-9_.-]{1,12}", 1..4)
            .prop_filter_map("no dot segments", |segs| {
                (!segs.iter().any(|s| s == "." || s == ".."))
                    .then(|| format!("/{}", segs.join("/")))
            })
            .prop_map(CgroupRef::Path),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Enforce), Just(Mode::Observe)]
}

fn request() -> impl Strategy<Value = ControlRequest> {
    let cmd = prop_oneof![
        Just(CommandRequest::GetHealth),
        Just(CommandRequest::GetStatus),
        Just(CommandRequest::GetPolicySummary),
        Just(CommandRequest::GetDnsStatus),
        Just(CommandRequest::GetPolicySnapshot),
        any::<bool>().prop_map(|detach| CommandRequest::Shutdown(ShutdownOptions { detach })),
        Just(CommandRequest::SubscribeEvents),
        (
            cgroup(),
            proptest::option::of(mode()),
            proptest::option::of("[ -~]{1,63}")
        )
            .prop_map(|(cgroup, mode, workload_id)| {
                CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
                    cgroup,
                    mode,
                    workload_id,
                })
            }),
        cgroup().prop_map(CommandRequest::DeleteManagedCgroup),
        mode().prop_map(CommandRequest::SetGlobalMode),
        (cgroup(), mode())
            .prop_map(|(cgroup, mode)| CommandRequest::SetCgroupMode { cgroup, mode }),
        // Snapshots take the typed fast path of the request parser: every property below holds for it too.
        proptest::collection::vec((any::<[u8; 4]>(), any::<bool>()), 0..6).prop_map(|rules| {
            CommandRequest::ReplacePolicySnapshot(PolicySnapshot {
                rules: rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ip, deny))| Rule {
                        id: format!("r{i}"),
                        action: if deny {
                            RuleAction::Deny
                        } else {
                            RuleAction::Allow
                        },
                        target: RuleTarget::Cidr(IpNet {
                            addr: std::net::Ipv4Addr::from(ip).into(),
                            prefix_len: 32,
                        }),
                        ports: vec![],
                        protocol: None,
                    })
                    .collect(),
                ..PolicySnapshot::default()
            })
        }),
    ];
    (cmd, proptest::option::of(".{0,20}")).prop_map(|(request, id)| ControlRequest { request, id })
}

proptest! {
    #[test]
    fn valid_requests_round_trip(r in request()) {
        let line = r.to_line();
        prop_assert_eq!(parse_request_line(line.as_bytes()), Ok(r));
    }

    #[test]
    fn an_unknown_top_level_key_is_malformed(r in request(), key in "[a-z]{1,8}") {
        prop_assume!(!["command", "payload", "id"].contains(&key.as_str()));
        let line = r.to_line();
        let mutated = format!("{{\"{key}\":1,{}", &line[1..]);
        let rej = parse_request_line(mutated.as_bytes()).expect_err("unknown key");
        prop_assert_eq!(rej.error.reason_code, ControlAuthzCode::RequestMalformed);
    }

    #[test]
    fn truncated_lines_are_malformed(r in request(), cut in 1usize..20) {
        let line = r.to_line();
        let body = line.trim_end();
        let end = body.len().saturating_sub(cut);
        prop_assume!(body.is_char_boundary(end));
        let rej = parse_request_line(&body.as_bytes()[..end]).expect_err("truncated");
        prop_assert_eq!(rej.error.reason_code, ControlAuthzCode::RequestMalformed);
    }

    #[test]
    fn an_extra_payload_key_is_payload_invalid(r in request()) {
        let line = r.to_line();
        prop_assume!(line.contains("\"payload\":{"));
        let mutated = line.replacen("\"payload\":{", "\"payload\":{\"bogus\":true,", 1);
        let rej = parse_request_line(mutated.as_bytes()).expect_err("extra payload key");
        prop_assert_eq!(rej.error.reason_code, ControlAuthzCode::RequestPayloadInvalid);
        prop_assert_eq!(rej.error.command, Some(r.command()));
        prop_assert_eq!(rej.id, r.id);
    }

    #[test]
    fn summaries_round_trip(g in 1u64..(1 << 53), a in 0u64..(1 << 53), b in 0u64..1025, f in 0u64..4097, id in proptest::option::of("[a-z]{1,8}")) {
        let s = PolicySummary { generation: g, ipv4_rules: a, ipv6_rules: a / 2, broker_endpoints: b, dns_endpoints: b, fqdn_rules: f, broker_names: b / 3 };
        let r = ControlResponse::Success { data: ResponseData::ReplacePolicySnapshot(s), id };
        prop_assert_eq!(parse_response_line(r.to_line().as_bytes()), Ok(r));
    }
}
