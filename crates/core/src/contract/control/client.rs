//! The client side of the control protocol: what a controller accepts as the reply to one of its requests.
//! Shared by the agent's `ctl` client and the Node API's `ControlClient`, so both read replies alike.
//!
//! A reply is valid when it parses with the strict per-command schemas ([`parse_response_line`]) and answers
//! the request: a success names the request's command and echoes its `id`; a failure echoes the `id`, or
//! carries none when the agent could not read the request's frame at all (then it closes the connection).

use crate::contract::control::protocol::{
    parse_response_line, Command, ControlProtocolError, ControlResponse, ResponseData,
};
use crate::contract::validation::{Issue, IssueCode, PathSegment, ValidationError};

/// Why a reply carries no data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a valid response to this request (bad JSON, schema, command or id): the connection is not usable.
    Invalid(ValidationError),
    /// The agent refused or failed the request.
    Refused(ControlProtocolError),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Invalid(e) => write!(f, "invalid response: {e}"),
            ReplyError::Refused(e) => write!(f, "{}: {}", e.reason_code, e.message),
        }
    }
}

impl std::error::Error for ReplyError {}

fn mismatch(key: &str, message: String) -> ReplyError {
    ReplyError::Invalid(ValidationError::single(Issue::new(
        vec![PathSegment::from(key)],
        IssueCode::InvalidValue,
        message,
    )))
}

/// Reads `line` (with or without its `\n`) as the reply to a `command` request sent with `id`.
pub fn read_reply(
    line: &[u8],
    command: Command,
    id: Option<&str>,
) -> Result<ResponseData, ReplyError> {
    match parse_response_line(line).map_err(ReplyError::Invalid)? {
        ControlResponse::Success { data, id: got } => {
            if got.as_deref() != id {
                return Err(mismatch(
                    "id",
                    format!("expected the reply to request {id:?}, received id {got:?}"),
                ));
            }
            if data.command() != command {
                return Err(mismatch(
                    "command",
                    format!(
                        "expected a reply to {command}, received one to {}",
                        data.command()
                    ),
                ));
            }
            Ok(data)
        }
        ControlResponse::Failure { error, id: got } if got.is_none() || got.as_deref() == id => {
            Err(ReplyError::Refused(error))
        }
        ControlResponse::Failure { id: got, .. } => Err(mismatch(
            "id",
            format!("expected the reply to request {id:?}, received id {got:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::reason_codes::ControlAuthzCode;

    #[test]
    fn a_reply_must_answer_its_request() {
        let ok =
            br#"{"ok":true,"command":"SetGlobalMode","data":{"globalMode":"observe"},"id":"7"}"#;
        assert!(matches!(
            read_reply(ok, Command::SetGlobalMode, Some("7")),
            Ok(ResponseData::SetGlobalMode(_))
        ));
        for (command, id) in [
            (Command::SetGlobalMode, Some("8")),
            (Command::GetHealth, Some("7")),
            (Command::SetGlobalMode, None),
        ] {
            assert!(
                matches!(read_reply(ok, command, id), Err(ReplyError::Invalid(_))),
                "{command} {id:?}"
            );
        }
        let refused = br#"{"ok":false,"error":{"code_namespace":"control_authz","reason_code":"CTRL_AUTH_PEERCRED_REJECTED_UID","message":"no","command":"Shutdown"},"id":"3"}"#;
        match read_reply(refused, Command::Shutdown, Some("3")) {
            Err(ReplyError::Refused(e)) => {
                assert_eq!(e.reason_code, ControlAuthzCode::PeercredRejectedUid)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_reply(refused, Command::Shutdown, Some("4")),
            Err(ReplyError::Invalid(_))
        ));
        let frame = br#"{"ok":false,"error":{"code_namespace":"control_authz","reason_code":"CTRL_REQUEST_MALFORMED","message":"too long"}}"#;
        assert!(matches!(
            read_reply(frame, Command::GetHealth, Some("1")),
            Err(ReplyError::Refused(_))
        ));
        let strict = br#"{"ok":true,"command":"GetHealth","data":{"status":"ok","degradedReasons":[],"extra":1},"id":"1"}"#;
        assert!(matches!(
            read_reply(strict, Command::GetHealth, Some("1")),
            Err(ReplyError::Invalid(_))
        ));
    }
}
