use super::*;

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
            "GetPolicySnapshot",
            "SubscribeEvents",
            "GetDnsStatus"
        ]
    );
    for c in Command::ALL {
        assert_eq!(Command::from_wire(c.as_str()), Some(c));
    }
    assert_eq!(Command::from_wire("SetFailMode"), None);
    assert_eq!(Command::from_wire("gethealth"), None);
}

#[test]
fn every_example_in_the_docs_parses() {
    let doc = include_str!("../../../../../../docs/control-protocol.md");
    let lines: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("> ") || l.starts_with("< "))
        .collect();
    assert_eq!(lines.len(), 36, "18 exchanges");
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

/// Issue 17: a port whose text is a fraction rounding to an integer is PAYLOAD_INVALID at its path, with the
/// request's id; the same request with the integer is accepted.
#[test]
fn a_payload_number_whose_text_is_a_fraction_is_refused() {
    let line = |port: &str| {
        format!(
            r#"{{"command":"ReplacePolicySnapshot","id":"9","payload":{{"broker":[{{"ip":"10.0.0.5","port":{port}}}],"dns":[],"rules":[]}}}}"#
        )
    };
    let err = parse_request_line(line("42001.0000000000001").as_bytes()).expect_err("a fraction");
    assert_eq!(
        err.error.reason_code,
        ControlAuthzCode::RequestPayloadInvalid
    );
    assert_eq!(err.id.as_deref(), Some("9"));
    assert_eq!(err.issues[0].path_text(), "payload.broker[0].port");
    assert!(
        err.error
            .message
            .contains("payload.broker[0].port: expected integer, received 42001.0000000000001"),
        "{}",
        err.error.message
    );
    assert!(parse_request_line(line("42001").as_bytes()).is_ok());
    assert!(parse_request_line(line("42001.000").as_bytes()).is_ok());
}
