//! N-API glue of `ControlClient` (`js/control-client.js`): the request line a controller sends and the reading of
//! the agent's reply, both decided by the contract (strict per-command schemas, `contract::control::client`).
//! The socket itself is Node's `net` module, in JavaScript; nothing here blocks.

use napi::bindgen_prelude::Uint8Array;
use napi_derive::napi;

use std::ffi::OsString;
use std::path::PathBuf;

use crate::issues::{to_js_issues, JsIssue};
use interceptor_ebpf_core::contract::config::{controller_socket_path, ENV_CONTROL_SOCKET};
use interceptor_ebpf_core::contract::control::client::{read_reply, ReplyError};
use interceptor_ebpf_core::contract::control::protocol::{
    parse_request_line, Command, ControlResponse, MAX_LINE_BYTES,
};

/// Longest line either side of the control socket may send, without its newline (SPEC 3): the contract's
/// `MAX_LINE_BYTES`, so `js/control-client.js` frames lines by the agent's own limit.
#[napi]
pub const MAX_CONTROL_LINE_BYTES: u32 = {
    // A JavaScript number holds it exactly; the assertion keeps the cast from ever truncating.
    assert!(MAX_LINE_BYTES <= u32::MAX as usize);
    MAX_LINE_BYTES as u32
};

/// The environment variable `ControlClient.connect()` reads when it is given no path, as `ctl` does.
#[napi]
pub const CONTROL_SOCKET_ENV: &str = ENV_CONTROL_SOCKET;

/// The socket `ControlClient.connect(socketPath)` connects to: `socketPath`, else `envValue` (the value of
/// `CONTROL_SOCKET_ENV`) unless empty, else the default; the contract's rule, which `ctl` follows too.
#[napi]
pub fn control_socket_path(socket_path: Option<String>, env_value: Option<String>) -> String {
    let path = controller_socket_path(
        socket_path.map(PathBuf::from),
        env_value.map(OsString::from),
    );
    // Both inputs were JavaScript strings, so the path is UTF-8; lossy only to avoid a panic path.
    path.into_os_string()
        .into_string()
        .unwrap_or_else(|p| p.to_string_lossy().into_owned())
}

/// A request checked before it is sent: `line` (without `\n`), or `issues` and `rejection` (the failure line
/// the agent would answer, with its CTRL_REQUEST_* code).
#[napi(object)]
pub struct ControlClientRequest {
    pub line: Option<String>,
    pub issues: Option<Vec<JsIssue>>,
    pub rejection: Option<String>,
}

/// `request_json`: `JSON.stringify({command, payload, id})`.
#[napi]
pub fn control_client_request_line(request_json: String) -> ControlClientRequest {
    match parse_request_line(request_json.as_bytes()) {
        Ok(request) => ControlClientRequest {
            line: Some(request.to_line().trim_end().to_owned()),
            issues: None,
            rejection: None,
        },
        Err(rejection) => ControlClientRequest {
            line: None,
            issues: Some(rejection.issues.iter().map(JsIssue::from).collect()),
            rejection: Some(rejection.into_response().to_line().trim_end().to_owned()),
        },
    }
}

/// The agent's reply: `json` is the normalised response line (`ok: true` with `data`, or `ok: false` with
/// `error`); `issues` when the line is not a valid reply to this request.
#[napi(object)]
pub struct ControlClientReply {
    pub json: Option<String>,
    pub issues: Option<Vec<JsIssue>>,
}

#[napi]
pub fn control_client_read_reply(
    line: Uint8Array,
    command: String,
    id: String,
) -> ControlClientReply {
    let Some(command) = Command::from_wire(&command) else {
        return ControlClientReply {
            json: None,
            issues: Some(vec![JsIssue {
                path: vec![],
                code: "invalid_value".into(),
                message: format!("unknown command `{command}`"),
            }]),
        };
    };
    let response = match read_reply(&line, command, Some(&id)) {
        Ok(data) => ControlResponse::Success { data, id: Some(id) },
        Err(ReplyError::Refused(error)) => ControlResponse::Failure {
            error,
            id: Some(id),
        },
        Err(ReplyError::Invalid(e)) => {
            return ControlClientReply {
                json: None,
                issues: Some(to_js_issues(&e)),
            }
        }
    };
    ControlClientReply {
        json: Some(response.to_line().trim_end().to_owned()),
        issues: None,
    }
}
