//! N-API glue for the control-plane contract: policy snapshots, ControlPlaneAuthzEvent, the control protocol,
//! the config and the peer/socket checks. Inputs arrive as JavaScript values converted to `serde_json::Value`
//! (not a hot path); outputs leave as JSON text that `js/control.js` hands to `JSON.parse`, which keeps the
//! key order the Rust serializers chose (a `serde_json::Map` would sort it). No rule lives here.

use napi::bindgen_prelude::{Uint8Array, Unknown};
use napi::ValueType;
use napi_derive::napi;
use serde_json::Value;

use crate::issues::{to_js_issues, JsIssue};
use interceptor_ebpf_core::contract::config::EbpfInterceptorConfig;
use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;
use interceptor_ebpf_core::contract::control::peer_auth::{
    authorize_controller_peer as authorize, authz_result_json,
    validate_socket_security_metadata as validate_socket, ControllerAuthorizationPolicy,
    PeerCredentials, SocketSecurityExpectations, SocketSecurityMetadata,
};
use interceptor_ebpf_core::contract::control::protocol::{
    parse_command, parse_command_data, parse_command_payload, parse_request_envelope_line,
    parse_request_line, parse_response_envelope_line, parse_response_line, ControlRequest,
    ControlResponse, RequestEnvelope, RequestRejection, ResponseEnvelope,
};
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::validation::{Issue, IssueCode, ValidationError};

/// The result of a Rust parse: `json` (normalised output as JSON text) or `issues`; for control requests
/// also `rejection`, the failure response line (with the CTRL_REQUEST_* code) the agent would send.
#[napi(object)]
pub struct ParseOutcome {
    pub json: Option<String>,
    pub issues: Option<Vec<JsIssue>>,
    pub rejection: Option<String>,
}

impl ParseOutcome {
    fn ok(json: String) -> Self {
        ParseOutcome {
            json: Some(json),
            issues: None,
            rejection: None,
        }
    }
    fn invalid(err: &ValidationError) -> Self {
        ParseOutcome {
            json: None,
            issues: Some(to_js_issues(err)),
            rejection: None,
        }
    }
    fn from_result(r: Result<String, ValidationError>) -> Self {
        match r {
            Ok(json) => ParseOutcome::ok(json),
            Err(e) => ParseOutcome::invalid(&e),
        }
    }
    fn from_request(r: Result<ControlRequest, RequestRejection>) -> Self {
        Self::from_rejectable(r.map(|req| req.to_line().trim_end().to_owned()))
    }
    fn from_rejectable(r: Result<String, RequestRejection>) -> Self {
        match r {
            Ok(json) => ParseOutcome::ok(json),
            Err(rej) => ParseOutcome {
                json: None,
                issues: Some(rej.issues.iter().map(JsIssue::from).collect()),
                rejection: Some(rej.into_response().to_line().trim_end().to_owned()),
            },
        }
    }
}

/// Converts a JavaScript value to JSON. `undefined` becomes `None`; values JSON cannot hold (functions,
/// symbols, NaN, array holes) become a validation issue instead of a thrown napi error.
fn to_json(input: Unknown) -> Result<Option<Value>, ValidationError> {
    let not_json = |why: String| {
        ValidationError::single(Issue::new(
            vec![],
            IssueCode::InvalidType,
            format!("input is not a JSON value: {why}"),
        ))
    };
    match input.get_type() {
        Ok(ValueType::Undefined) => Ok(None),
        Ok(_) => {
            // SAFETY: `Value`'s FromNapiValue accepts any JavaScript value and reports unsupported ones as an
            // error; the value belongs to the current call's scope.
            unsafe { input.cast::<Value>() }
                .map(Some)
                .map_err(|e| not_json(e.reason.clone()))
        }
        Err(e) => Err(not_json(e.reason.clone())),
    }
}

fn required(input: Unknown) -> Result<Value, ValidationError> {
    to_json(input)?.ok_or_else(|| {
        ValidationError::single(Issue::new(
            vec![],
            IssueCode::InvalidType,
            "expected object, received undefined",
        ))
    })
}

fn outcome(
    input: Unknown,
    f: impl FnOnce(&Value) -> Result<String, ValidationError>,
) -> ParseOutcome {
    ParseOutcome::from_result(required(input).and_then(|v| f(&v)))
}

#[napi]
pub fn parse_policy_snapshot_json(input: Unknown) -> ParseOutcome {
    outcome(input, |v| {
        PolicySnapshot::from_json_value(v).map(|s| s.to_json_value().to_string())
    })
}

#[napi]
pub fn parse_control_plane_authz_event_json(input: Unknown) -> ParseOutcome {
    outcome(input, |v| {
        ControlPlaneAuthzEvent::from_json_value(v).map(|e| e.to_log_line())
    })
}

#[napi]
pub fn serialize_control_plane_authz_error_to_log_json(input: Unknown) -> ParseOutcome {
    outcome(input, |v| {
        ControlPlaneAuthzEvent::from_json_value_for_log(v).map(|e| e.to_log_line())
    })
}

/// A Command literal.
#[napi]
pub fn parse_control_protocol_command_json(input: Unknown) -> ParseOutcome {
    outcome(input, |v| {
        parse_command(v).map(|c| Value::from(c.as_str()).to_string())
    })
}

#[napi]
pub fn parse_control_protocol_request_json(input: Unknown) -> ParseOutcome {
    match required(input) {
        Ok(v) => ParseOutcome::from_request(ControlRequest::from_json_value(&v)),
        Err(e) => ParseOutcome::from_request(Err(RequestRejection::from_issues(e.issues))),
    }
}

#[napi]
pub fn parse_control_protocol_request_line_bytes(line: Uint8Array) -> ParseOutcome {
    ParseOutcome::from_request(parse_request_line(&line))
}

/// `kind`: 0 any response, 1 success only, 2 failure only.
#[napi]
pub fn parse_control_protocol_response_json(input: Unknown, kind: u32) -> ParseOutcome {
    outcome(input, |v| {
        ControlResponse::from_json_value(v).and_then(|r| response_json(r, kind))
    })
}

#[napi]
pub fn parse_control_protocol_response_line_bytes(line: Uint8Array) -> ParseOutcome {
    ParseOutcome::from_result(parse_response_line(&line).and_then(|r| response_json(r, 0)))
}

/// The `error` object of a failure response: a ControlPlaneAuthzEvent whose command is a Command.
#[napi]
pub fn parse_control_protocol_error_json(input: Unknown) -> ParseOutcome {
    outcome(input, |v| {
        let wrapped = serde_json::json!({"ok": false, "error": v});
        match ControlResponse::from_json_value(&wrapped) {
            Ok(ControlResponse::Failure { error, .. }) => Ok(error.to_event().to_log_line()),
            Ok(ControlResponse::Success { .. }) => Err(ValidationError::single(Issue::new(
                vec![],
                IssueCode::Custom,
                "not a control protocol error",
            ))),
            Err(e) => Err(strip_error_prefix(e)),
        }
    })
}

/// Issues found inside the `{ok:false, error}` wrapper, with the wrapper's `error` segment removed.
fn strip_error_prefix(mut e: ValidationError) -> ValidationError {
    for issue in &mut e.issues {
        if issue.path.first() == Some(&"error".into()) {
            issue.path.remove(0);
        }
    }
    e
}

fn response_json(r: ControlResponse, kind: u32) -> Result<String, ValidationError> {
    let success = matches!(r, ControlResponse::Success { .. });
    wrong_kind(success, kind).map_or_else(|| Ok(r.to_line().trim_end().to_owned()), Err)
}

/// `kind` 1 wants a success, 2 a failure (the variant schemas), 0 either.
fn wrong_kind(success: bool, kind: u32) -> Option<ValidationError> {
    let msg = match (success, kind) {
        (false, 1) => "expected a success response (`ok: true`)",
        (true, 2) => "expected a failure response (`ok: false`)",
        _ => return None,
    };
    Some(ValidationError::single(Issue::at(
        "ok",
        IssueCode::InvalidValue,
        msg,
    )))
}

// ---- The generic envelope: what the original package's exports checked (payload and data any JSON). ----------

#[napi]
pub fn parse_control_envelope_request_json(input: Unknown) -> ParseOutcome {
    let envelope = required(input)
        .map_err(|e| RequestRejection::from_issues(e.issues))
        .and_then(|v| RequestEnvelope::from_json_value(&v));
    ParseOutcome::from_rejectable(envelope.map(|e| e.to_json()))
}

#[napi]
pub fn parse_control_envelope_request_line_bytes(line: Uint8Array) -> ParseOutcome {
    ParseOutcome::from_rejectable(parse_request_envelope_line(&line).map(|e| e.to_json()))
}

/// `kind`: 0 any response, 1 success only, 2 failure only.
#[napi]
pub fn parse_control_envelope_response_json(input: Unknown, kind: u32) -> ParseOutcome {
    outcome(input, |v| {
        ResponseEnvelope::from_json_value(v).and_then(|r| envelope_json(&r, kind))
    })
}

#[napi]
pub fn parse_control_envelope_response_line_bytes(line: Uint8Array) -> ParseOutcome {
    ParseOutcome::from_result(
        parse_response_envelope_line(&line).and_then(|r| envelope_json(&r, 0)),
    )
}

fn envelope_json(r: &ResponseEnvelope, kind: u32) -> Result<String, ValidationError> {
    let success = matches!(r, ResponseEnvelope::Success { .. });
    wrong_kind(success, kind).map_or_else(|| Ok(r.to_json()), Err)
}

// ---- Each command's strict payload and data. ------------------------------------------------------------------

/// The payload's normalised JSON (`null` for commands without one); issue paths from the payload's root.
#[napi]
pub fn parse_control_command_payload_json(command: Unknown, payload: Unknown) -> ParseOutcome {
    let command = required(command).and_then(|c| parse_command(&c));
    ParseOutcome::from_result(command.and_then(|c| {
        let payload = to_json(payload)?;
        parse_command_payload(c, payload.as_ref())
            .map(|r| r.payload_json().unwrap_or(Value::Null).to_string())
    }))
}

/// The data's JSON (`null` for commands without any); issue paths from the data's root.
#[napi]
pub fn parse_control_command_data_json(command: Unknown, data: Unknown) -> ParseOutcome {
    let command = required(command).and_then(|c| parse_command(&c));
    ParseOutcome::from_result(command.and_then(|c| {
        let data = to_json(data)?;
        parse_command_data(c, data.as_ref())
            .map(|d| d.to_json_value().unwrap_or(Value::Null).to_string())
    }))
}

#[napi]
pub fn parse_ebpf_interceptor_config_json(input: Unknown) -> ParseOutcome {
    // `undefined` is the all-defaults config, like `{}`.
    let v = to_json(input).map(|v| v.unwrap_or_else(|| Value::Object(Default::default())));
    ParseOutcome::from_result(
        v.and_then(|v| EbpfInterceptorConfig::from_json_value(&v))
            .map(|c| serde_json::to_string(&c).unwrap_or_default()),
    )
}

#[napi]
pub fn should_fail_closed_on_unknown_reason_code_json(config: Unknown) -> ParseOutcome {
    let v = to_json(config).map(|v| v.unwrap_or_else(|| Value::Object(Default::default())));
    ParseOutcome::from_result(
        v.and_then(|v| EbpfInterceptorConfig::from_json_value(&v))
            .map(|c| c.should_fail_closed_on_unknown_reason_code().to_string()),
    )
}

/// `peer` null/undefined means the credentials could not be read. Issues are prefixed `peer`/`policy`.
#[napi]
pub fn authorize_controller_peer_json(peer: Unknown, policy: Unknown) -> ParseOutcome {
    let peer = to_json(peer).and_then(|p| match p {
        None => Ok(None),
        Some(v) => PeerCredentials::from_json_value(&v),
    });
    let policy = required(policy).and_then(|v| ControllerAuthorizationPolicy::from_json_value(&v));
    match (peer, policy) {
        (Ok(peer), Ok(policy)) => {
            ParseOutcome::ok(authz_result_json(&authorize(peer.as_ref(), &policy)))
        }
        (peer, policy) => {
            ParseOutcome::invalid(&prefixed([("peer", peer.err()), ("policy", policy.err())]))
        }
    }
}

#[napi]
pub fn validate_socket_security_metadata_json(meta: Unknown, expected: Unknown) -> ParseOutcome {
    let meta = required(meta).and_then(|v| SocketSecurityMetadata::from_json_value(&v));
    let expected = required(expected).and_then(|v| SocketSecurityExpectations::from_json_value(&v));
    match (meta, expected) {
        (Ok(m), Ok(e)) => ParseOutcome::ok(authz_result_json(&validate_socket(&m, &e))),
        (m, e) => ParseOutcome::invalid(&prefixed([("meta", m.err()), ("expected", e.err())])),
    }
}

fn prefixed<const N: usize>(errors: [(&str, Option<ValidationError>); N]) -> ValidationError {
    let mut issues = Vec::new();
    for (arg, err) in errors {
        if let Some(err) = err {
            issues.extend(err.issues.into_iter().map(|i| i.under(&[arg.into()])));
        }
    }
    ValidationError::new(issues)
}
