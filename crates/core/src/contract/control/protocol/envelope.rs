//! The control protocol's generic envelope (SPEC 3).
//!
//! The envelope is what the original package's exported schemas checked, and what the JavaScript exports that
//! kept their names still check: strict keys, a known command, a ControlProtocolError in failures, and
//! `payload`/`data` as any JSON value. The command level (the payload and data schemas of
//! docs/control-protocol.md) is [`super::parse_command_payload`] (`request.rs`) and
//! [`super::parse_command_data`] (`response.rs`), and the strict
//! whole-message parsers the agent uses ([`super::parse_request_line`], [`super::parse_response_line`]) apply
//! the same envelope rules before them.

use serde::Serialize;
use serde_json::Value;

use super::{
    read_command, read_line, Command, ControlProtocolError, ControlResponse, RequestRejection,
};
use crate::contract::json_reader::{object, Issues, ObjectReader};
use crate::contract::reason_codes::ControlAuthzCode;
use crate::contract::validation::{Issue, IssueCode, ValidationError};

/// A request envelope: `{command, payload?, id?}`, `payload` any JSON value (`null` included, kept as given).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestEnvelope {
    pub command: Command,
    pub payload: Option<Value>,
    pub id: Option<String>,
}

#[derive(Serialize)]
struct RequestEnvelopeWire<'a> {
    command: Command,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl RequestEnvelope {
    /// Reads an envelope already decoded from JSON. Every rejection is CTRL_REQUEST_MALFORMED, with the
    /// request's `id` and command when they could be read.
    pub fn from_json_value(v: &Value) -> Result<Self, RequestRejection> {
        let mut issues = Issues::new();
        let read = read_request_envelope(v, &mut issues);
        match read {
            Some((obj, id, Some(command))) if issues.is_empty() => Ok(RequestEnvelope {
                command,
                payload: obj.get("payload").cloned(),
                id,
            }),
            other => {
                let (id, command) = other.map_or((None, None), |(_, id, command)| (id, command));
                Err(RequestRejection::new(
                    ControlAuthzCode::RequestMalformed,
                    command,
                    id,
                    issues.into_vec(),
                ))
            }
        }
    }

    /// The envelope as JSON text, keys in protocol order (`command`, `payload`, `id`), no newline.
    pub fn to_json(&self) -> String {
        let wire = RequestEnvelopeWire {
            command: self.command,
            payload: self.payload.as_ref(),
            id: self.id.as_deref(),
        };
        // A Value and two strings always serialize; an empty object keeps the path panic-free regardless.
        serde_json::to_string(&wire).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Reads one request line (with or without its `\n`) as an envelope: the line rules of
/// [`super::parse_request_line`] (16 MiB, one line, strict UTF-8 JSON without duplicate keys), then
/// [`RequestEnvelope::from_json_value`].
pub fn parse_request_envelope_line(line: &[u8]) -> Result<RequestEnvelope, RequestRejection> {
    let v =
        read_line(line, "request").map_err(|issue| RequestRejection::from_issues(vec![issue]))?;
    RequestEnvelope::from_json_value(&v)
}

/// The envelope's rules, shared by [`RequestEnvelope`] and the strict request parser: an object with only
/// `command`, `payload` and `id`, a string `id`, a known command. Pushes every issue; returns the object (for
/// its payload), the id and the command when the value is an object at all.
pub(super) fn read_request_envelope<'v>(
    v: &'v Value,
    issues: &mut Issues,
) -> Option<(ObjectReader<'v>, Option<String>, Option<Command>)> {
    let obj = object(Some(v), &[], &["command", "payload", "id"], issues)?;
    let id = obj.opt_str("id", issues).flatten().map(str::to_owned);
    let command = read_command(obj.get("command"), &obj.path_of("command"), issues);
    Some((obj, id, command))
}

/// A response envelope: a success with any `data`, or a failure (whose `error` is checked in full: a failure
/// has no per-command part).
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseEnvelope {
    Success {
        command: Command,
        data: Option<Value>,
        id: Option<String>,
    },
    Failure {
        error: ControlProtocolError,
        id: Option<String>,
    },
}

#[derive(Serialize)]
struct SuccessEnvelopeWire<'a> {
    ok: bool,
    command: Command,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl ResponseEnvelope {
    /// Reads a response envelope already decoded from JSON.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let ok = match v {
            Value::Object(m) => m.get("ok"),
            _ => None,
        };
        if ok != Some(&Value::Bool(true)) {
            // Not an object, `ok` missing or not a boolean, or a failure: the strict reader's rules and
            // messages, which for these are the envelope's.
            return ControlResponse::from_json_value(v).and_then(|r| match r {
                ControlResponse::Failure { error, id } => {
                    Ok(ResponseEnvelope::Failure { error, id })
                }
                ControlResponse::Success { .. } => Err(ValidationError::single(Issue::at(
                    "ok",
                    IssueCode::InvalidValue,
                    "expected `ok` to be a boolean",
                ))),
            });
        }
        let mut issues = Issues::new();
        let envelope = object(Some(v), &[], &["ok", "command", "data", "id"], &mut issues)
            .and_then(|o| {
                let id = o.opt_str("id", &mut issues);
                let command = read_command(o.get("command"), &o.path_of("command"), &mut issues);
                Some(ResponseEnvelope::Success {
                    command: command?,
                    data: o.get("data").cloned(),
                    id: id?.map(str::to_owned),
                })
            });
        issues.finish(envelope)
    }

    /// The envelope as JSON text, keys in protocol order (`ok` first), no newline.
    pub fn to_json(&self) -> String {
        match self {
            ResponseEnvelope::Success { command, data, id } => {
                serde_json::to_string(&SuccessEnvelopeWire {
                    ok: true,
                    command: *command,
                    data: data.as_ref(),
                    id: id.as_deref(),
                })
                .unwrap_or_else(|_| String::from("{}"))
            }
            ResponseEnvelope::Failure { error, id } => ControlResponse::Failure {
                error: error.clone(),
                id: id.clone(),
            }
            .to_line()
            .trim_end()
            .to_owned(),
        }
    }
}

/// Reads one response line (with or without its `\n`) as an envelope, with the line rules of
/// [`super::parse_response_line`].
pub fn parse_response_envelope_line(line: &[u8]) -> Result<ResponseEnvelope, ValidationError> {
    let v = read_line(line, "response").map_err(ValidationError::single)?;
    ResponseEnvelope::from_json_value(&v)
}

/// A Command literal (`"GetHealth"`), or an issue naming the known ones.
pub fn parse_command(v: &Value) -> Result<Command, ValidationError> {
    let mut issues = Issues::new();
    let command = read_command(Some(v), &[], &mut issues);
    issues.finish(command)
}

#[cfg(test)]
mod tests {
    use super::super::{parse_command_data, parse_command_payload, CommandRequest};
    use super::*;
    use crate::contract::validation::PathSegment;
    use serde_json::json;

    fn request(v: Value) -> Result<RequestEnvelope, RequestRejection> {
        RequestEnvelope::from_json_value(&v)
    }

    #[test]
    fn request_envelope_takes_any_payload() {
        let r = request(json!({"command": "GetHealth"})).expect("valid");
        assert_eq!(
            (r.command, r.payload, r.id),
            (Command::GetHealth, None, None)
        );
        for payload in [
            json!(null),
            json!({}),
            json!({"x": [1, "y"]}),
            json!("s"),
            json!(7),
        ] {
            let r =
                request(json!({"id": "9", "payload": payload.clone(), "command": "SetGlobalMode"}))
                    .expect("valid");
            assert_eq!(r.payload, Some(payload.clone()));
            assert_eq!(
                r.to_json(),
                format!(r#"{{"command":"SetGlobalMode","payload":{payload},"id":"9"}}"#)
            );
        }
        assert_eq!(
            parse_request_envelope_line(b"{\"command\":\"Shutdown\",\"payload\":{\"a\":1}}\n")
                .expect("valid")
                .payload,
            Some(json!({"a": 1}))
        );
    }

    #[test]
    fn request_envelope_rejections_are_malformed() {
        for (v, id, command) in [
            (json!({"command": "Reboot", "id": "a"}), Some("a"), None),
            (
                json!({"command": "GetHealth", "extra": 1, "id": "b"}),
                Some("b"),
                Some(Command::GetHealth),
            ),
            (json!({"payload": {}}), None, None),
            (
                json!({"command": "GetHealth", "id": 5}),
                None,
                Some(Command::GetHealth),
            ),
            (json!([]), None, None),
        ] {
            let e = request(v.clone()).expect_err("malformed");
            assert_eq!(
                e.error.reason_code,
                ControlAuthzCode::RequestMalformed,
                "{v}"
            );
            assert_eq!(e.id.as_deref(), id, "{v}");
            assert_eq!(e.error.command, command, "{v}");
        }
        let dup = parse_request_envelope_line(br#"{"command":"GetHealth","command":"Shutdown"}"#);
        assert_eq!(
            dup.expect_err("duplicate keys").error.reason_code,
            ControlAuthzCode::RequestMalformed
        );
        assert!(parse_request_envelope_line(b"{\"command\":\"GetHealth\"}\n{}").is_err());
    }

    #[test]
    fn response_envelope_takes_any_data() {
        let r = ResponseEnvelope::from_json_value(
            &json!({"ok": true, "command": "GetHealth", "data": {"a": 1}}),
        )
        .expect("valid");
        assert_eq!(
            r.to_json(),
            r#"{"ok":true,"command":"GetHealth","data":{"a":1}}"#
        );
        let r = ResponseEnvelope::from_json_value(
            &json!({"id": "x", "command": "Shutdown", "ok": true}),
        )
        .expect("valid");
        assert_eq!(r.to_json(), r#"{"ok":true,"command":"Shutdown","id":"x"}"#);
        let failure = json!({"ok": false, "error": {"code_namespace": "control_authz",
            "reason_code": "CTRL_COMMAND_FAILED", "message": "m", "command": "Shutdown"}, "id": "7"});
        let r = ResponseEnvelope::from_json_value(&failure).expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&r.to_json()).ok(),
            Some(failure)
        );
        for bad in [
            json!({"ok": true}),
            json!({"ok": true, "command": "Reboot"}),
            json!({"ok": true, "command": "GetHealth", "error": {}}),
            json!({"ok": "yes", "command": "GetHealth"}),
            json!({"ok": false, "error": {"code_namespace": "control_authz", "reason_code": "DENY_DEFAULT", "message": "m"}}),
            json!({"ok": false, "error": {"code_namespace": "control_authz", "reason_code": "CTRL_COMMAND_FAILED", "message": "m", "command": "Reboot"}}),
            json!([]),
        ] {
            assert!(ResponseEnvelope::from_json_value(&bad).is_err(), "{bad}");
        }
        assert!(parse_response_envelope_line(br#"{"ok":true,"ok":false}"#).is_err());
    }

    #[test]
    fn per_command_payload_and_data() {
        assert_eq!(
            parse_command_payload(Command::GetHealth, None),
            Ok(CommandRequest::GetHealth)
        );
        assert_eq!(
            parse_command_payload(Command::GetHealth, Some(&json!(null))),
            Ok(CommandRequest::GetHealth)
        );
        let e = parse_command_payload(Command::SetGlobalMode, Some(&json!({"mode": "audit"})))
            .expect_err("invalid");
        assert_eq!(e.issues[0].path, vec![PathSegment::from("mode")]);
        let e =
            parse_command_payload(Command::GetHealth, Some(&json!({}))).expect_err("no payload");
        assert!(e.issues[0].path.is_empty());
        let data = parse_command_data(
            Command::GetHealth,
            Some(&json!({"status": "ok", "degradedReasons": []})),
        )
        .expect("valid");
        assert_eq!(
            data.to_json_value(),
            Some(json!({"status": "ok", "degradedReasons": []}))
        );
        assert_eq!(
            parse_command_data(Command::Shutdown, None).map(|d| d.to_json_value()),
            Ok(None)
        );
        assert!(parse_command_data(Command::Shutdown, Some(&json!({}))).is_err());
        let e = parse_command_data(Command::SetGlobalMode, Some(&json!({"globalMode": 1})))
            .expect_err("invalid");
        assert_eq!(e.issues[0].path, vec![PathSegment::from("globalMode")]);
    }
}
