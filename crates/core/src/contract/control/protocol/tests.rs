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
fn every_example_in_the_docs_parses() {
    let doc = include_str!("../../../../../../docs/control-protocol.md");
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
