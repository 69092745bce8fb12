//! ControlPlaneAuthzEvent (SPEC 3): why the control plane refused a connection or a request, in the
//! `control_authz` namespace. The agent logs these and sends them as the `error` of a failure response.

use serde::Serialize;
use serde_json::Value;

use crate::contract::json_reader::{object, Issues};
use crate::contract::reason_codes::{
    ControlAuthzCode, DataplaneReasonCode, CONTROL_AUTHZ_NAMESPACE, DATAPLANE_NAMESPACE,
};
use crate::contract::validation::{IssueCode, PathSegment, ValidationError};

/// The keys of a ControlPlaneAuthzEvent, in the order of the SPEC table (also the log record's key order).
pub const CONTROL_AUTHZ_EVENT_KEYS: [&str; 4] =
    ["code_namespace", "reason_code", "message", "command"];

/// A validated control-plane refusal. `code_namespace` is implied by the type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlaneAuthzEvent {
    pub reason_code: ControlAuthzCode,
    /// Human-readable; never empty.
    pub message: String,
    /// The command the refusal concerns, when one was read. Never empty when present.
    pub command: Option<String>,
}

/// The log record: the event with `code_namespace` first, keys in table order, an empty `command` dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlAuthzLogRecord<'a> {
    pub code_namespace: &'static str,
    pub reason_code: &'static str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a str>,
}

impl ControlPlaneAuthzEvent {
    pub fn new(reason_code: ControlAuthzCode, message: impl Into<String>) -> Self {
        ControlPlaneAuthzEvent {
            reason_code,
            message: message.into(),
            command: None,
        }
    }

    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// Parses a strict ControlPlaneAuthzEvent from JSON.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let mut issues = Issues::new();
        let event = read_event(Some(v), &[], &mut issues);
        issues.finish(event)
    }

    /// Parses the input of the log serializer: the same schema, except that an empty `command` is accepted
    /// and dropped, because a log record never carries empty optional strings.
    pub fn from_json_value_for_log(v: &Value) -> Result<Self, ValidationError> {
        match v {
            Value::Object(m) if m.get("command").is_some_and(|c| c.as_str() == Some("")) => {
                let mut m = m.clone();
                m.remove("command");
                Self::from_json_value(&Value::Object(m))
            }
            _ => Self::from_json_value(v),
        }
    }

    /// The log record view of this event.
    pub fn log_record(&self) -> ControlAuthzLogRecord<'_> {
        ControlAuthzLogRecord {
            code_namespace: CONTROL_AUTHZ_NAMESPACE,
            reason_code: self.reason_code.as_str(),
            message: &self.message,
            command: self.command.as_deref().filter(|c| !c.is_empty()),
        }
    }

    /// The log record as one JSON line without the trailing newline, as the agent writes it.
    pub fn to_log_line(&self) -> String {
        // Serializing a struct of strings cannot fail; the fallback keeps this path panic-free regardless.
        serde_json::to_string(&self.log_record()).unwrap_or_else(|_| String::from("{}"))
    }
}

impl std::fmt::Display for ControlPlaneAuthzEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason_code, self.message)
    }
}

impl std::error::Error for ControlPlaneAuthzEvent {}

/// Reads the event at `path`. Shared with the control protocol, whose error object is this event.
pub(crate) fn read_event(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<ControlPlaneAuthzEvent> {
    let Some(Value::Object(map)) = v else {
        issues.wrong_type(path, "object", v);
        return None;
    };
    // `verdict` and `would_block` are the dataplane's keys: say so instead of a bare "unrecognized key".
    let mut known: Vec<&str> = CONTROL_AUTHZ_EVENT_KEYS.to_vec();
    for key in ["verdict", "would_block"] {
        if map.contains_key(key) {
            issues.push(
                crate::contract::json_reader::join(path, key),
                IssueCode::UnrecognizedKeys,
                format!("`{key}` belongs to {DATAPLANE_NAMESPACE} events; a {CONTROL_AUTHZ_NAMESPACE} event has no `{key}`"),
            );
            known.push(key);
        }
    }
    let obj = object(v, path, &known, issues)?;
    let namespace = match obj.get("code_namespace") {
        Some(Value::String(s)) if s == CONTROL_AUTHZ_NAMESPACE => Some(()),
        Some(Value::String(s)) => {
            issues.push(
                obj.path_of("code_namespace"),
                IssueCode::InvalidValue,
                format!("expected `{CONTROL_AUTHZ_NAMESPACE}`, received `{s}`"),
            );
            None
        }
        other => {
            issues.wrong_type(
                &obj.path_of("code_namespace"),
                &format!("`{CONTROL_AUTHZ_NAMESPACE}`"),
                other,
            );
            None
        }
    };
    let reason_code = match obj.get("reason_code") {
        Some(Value::String(s)) => match ControlAuthzCode::from_wire(s) {
            Some(code) => Some(code),
            None if DataplaneReasonCode::from_wire(s).is_some() => {
                issues.push(
                    obj.path_of("reason_code"),
                    IssueCode::InvalidValue,
                    format!(
                        "`{s}` is a {DATAPLANE_NAMESPACE} reason code; a {CONTROL_AUTHZ_NAMESPACE} event needs a \
                         {CONTROL_AUTHZ_NAMESPACE} code"
                    ),
                );
                None
            }
            None => {
                issues.push(
                    obj.path_of("reason_code"),
                    IssueCode::InvalidValue,
                    format!("unknown {CONTROL_AUTHZ_NAMESPACE} code `{s}`"),
                );
                None
            }
        },
        other => {
            issues.wrong_type(
                &obj.path_of("reason_code"),
                "a control_authz code string",
                other,
            );
            None
        }
    };
    let message = obj.non_empty_str("message", issues);
    let command = obj.opt_non_empty_str("command", issues);
    namespace?;
    Some(ControlPlaneAuthzEvent {
        reason_code: reason_code?,
        message: message?.to_owned(),
        command: command?.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(v: Value) -> Vec<(String, String)> {
        ControlPlaneAuthzEvent::from_json_value(&v)
            .expect_err("must be rejected")
            .issues
            .into_iter()
            .map(|i| (i.path_text(), i.message))
            .collect()
    }

    #[test]
    fn accepts_a_minimal_and_a_full_event() {
        let e = ControlPlaneAuthzEvent::from_json_value(&json!({
            "code_namespace": "control_authz", "reason_code": "CTRL_AUTH_PEERCRED_UNAVAILABLE",
            "message": "SO_PEERCRED metadata is required"
        }))
        .expect("valid");
        assert_eq!(e.reason_code, ControlAuthzCode::PeercredUnavailable);
        assert_eq!(e.command, None);
        let e = ControlPlaneAuthzEvent::from_json_value(&json!({
            "code_namespace": "control_authz", "reason_code": "CTRL_COMMAND_FAILED",
            "message": "no such cgroup", "command": "UpsertManagedCgroup"
        }))
        .expect("valid");
        assert_eq!(e.command.as_deref(), Some("UpsertManagedCgroup"));
    }

    #[test]
    fn rejects_codes_of_the_other_namespace_and_unknown_codes_saying_which() {
        let base = |code: &str| json!({"code_namespace": "control_authz", "reason_code": code, "message": "m"});
        assert_eq!(
            messages(base("DENY_DEFAULT"))[0].1,
            "`DENY_DEFAULT` is a dataplane_verdict reason code; a control_authz event needs a control_authz code"
        );
        assert_eq!(
            messages(base("CTRL_NOPE"))[0].1,
            "unknown control_authz code `CTRL_NOPE`"
        );
        assert_eq!(
            messages(base("ctrl_request_malformed"))[0].1,
            "unknown control_authz code `ctrl_request_malformed`"
        );
    }

    #[test]
    fn lists_every_issue() {
        let got = messages(json!({
            "code_namespace": "dataplane_verdict", "reason_code": 6, "message": "", "command": "",
            "verdict": "deny", "would_block": true, "extra": 1
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "verdict",
                "would_block",
                "",
                "code_namespace",
                "reason_code",
                "message",
                "command"
            ]
        );
        assert_eq!(got[2].1, "unrecognized key: `extra`");
        assert!(got[0].1.contains("belongs to dataplane_verdict events"));
        let missing = messages(json!({}));
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert_eq!(messages(json!(null))[0].1, "expected object, received null");
    }

    #[test]
    fn log_record_keeps_table_order_and_drops_empty_command() {
        let e = ControlPlaneAuthzEvent::new(
            ControlAuthzCode::SocketModeInvalid,
            "mode 0666, expected 0660",
        )
        .with_command("Shutdown");
        assert_eq!(
            e.to_log_line(),
            r#"{"code_namespace":"control_authz","reason_code":"CTRL_AUTH_SOCKET_MODE_INVALID","message":"mode 0666, expected 0660","command":"Shutdown"}"#
        );
        let empty = ControlPlaneAuthzEvent {
            command: Some(String::new()),
            ..e.clone()
        };
        assert!(!empty.to_log_line().contains("command"));
        let from_input = ControlPlaneAuthzEvent::from_json_value_for_log(&json!({
            "code_namespace": "control_authz", "reason_code": "CTRL_AUTH_SOCKET_MODE_INVALID",
            "message": "m", "command": ""
        }))
        .expect("empty command is dropped for logs");
        assert_eq!(from_input.command, None);
        assert!(ControlPlaneAuthzEvent::from_json_value(&json!({
            "code_namespace": "control_authz", "reason_code": "CTRL_AUTH_SOCKET_MODE_INVALID",
            "message": "m", "command": ""
        }))
        .is_err());
    }
}
