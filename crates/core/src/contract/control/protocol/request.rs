//! Requests: the typed commands a client sends, their one-line JSON form and the parser that classifies every
//! rejection as CTRL_REQUEST_MALFORMED (envelope) or CTRL_REQUEST_PAYLOAD_INVALID (payload).

use serde::Serialize;
use serde_json::{Map, Value};

use super::envelope::read_request_envelope;
use super::{
    absent_or_null, Command, ControlProtocolError, ControlResponse, Mode, MAX_ISSUES_IN_MESSAGE,
};
use crate::contract::cgroup::{read_cgroup_ref, read_workload_id, CgroupRef, PathSyntax};
use crate::contract::json_reader::{object, Issues};
use crate::contract::policy::{parse_snapshot, PolicySnapshot};
use crate::contract::reason_codes::ControlAuthzCode;
use crate::contract::validation::{Issue, PathSegment, ValidationError};

/// The UpsertManagedCgroup payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpsertManagedCgroup {
    pub cgroup: CgroupRef,
    /// `None`: the cgroup follows the global mode.
    pub mode: Option<Mode>,
    pub workload_id: Option<String>,
}

/// The Shutdown payload: absent, `null` or `{}` keep the pinned enforcement in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownOptions {
    /// `true`: also detach the programs and remove every pin (enforcement stops).
    pub detach: bool,
}

/// A request's command with its typed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandRequest {
    GetHealth,
    GetStatus,
    GetPolicySummary,
    GetPolicySnapshot,
    GetDnsStatus,
    ReplacePolicySnapshot(PolicySnapshot),
    ValidatePolicySnapshot(PolicySnapshot),
    UpsertManagedCgroup(UpsertManagedCgroup),
    DeleteManagedCgroup(CgroupRef),
    SetGlobalMode(Mode),
    SetCgroupMode { cgroup: CgroupRef, mode: Mode },
    Shutdown(ShutdownOptions),
    SubscribeEvents,
}

impl CommandRequest {
    pub fn command(&self) -> Command {
        match self {
            CommandRequest::GetHealth => Command::GetHealth,
            CommandRequest::GetStatus => Command::GetStatus,
            CommandRequest::GetPolicySummary => Command::GetPolicySummary,
            CommandRequest::GetPolicySnapshot => Command::GetPolicySnapshot,
            CommandRequest::GetDnsStatus => Command::GetDnsStatus,
            CommandRequest::ReplacePolicySnapshot(_) => Command::ReplacePolicySnapshot,
            CommandRequest::ValidatePolicySnapshot(_) => Command::ValidatePolicySnapshot,
            CommandRequest::UpsertManagedCgroup(_) => Command::UpsertManagedCgroup,
            CommandRequest::DeleteManagedCgroup(_) => Command::DeleteManagedCgroup,
            CommandRequest::SetGlobalMode(_) => Command::SetGlobalMode,
            CommandRequest::SetCgroupMode { .. } => Command::SetCgroupMode,
            CommandRequest::Shutdown(_) => Command::Shutdown,
            CommandRequest::SubscribeEvents => Command::SubscribeEvents,
        }
    }

    /// The payload's JSON form (`None` for commands without one).
    pub fn payload_json(&self) -> Option<Value> {
        let cgroup_obj = |c: &CgroupRef| {
            let mut m = Map::new();
            match c {
                CgroupRef::Path(p) => m.insert("path".into(), Value::from(p.as_str())),
                CgroupRef::Id(id) => m.insert("id".into(), Value::from(id.to_string())),
            };
            m
        };
        match self {
            CommandRequest::ReplacePolicySnapshot(s)
            | CommandRequest::ValidatePolicySnapshot(s) => Some(s.to_json_value()),
            CommandRequest::UpsertManagedCgroup(u) => {
                let mut m = cgroup_obj(&u.cgroup);
                if let Some(mode) = u.mode {
                    m.insert("mode".into(), Value::from(mode.as_str()));
                }
                if let Some(w) = &u.workload_id {
                    m.insert("workloadId".into(), Value::from(w.as_str()));
                }
                Some(Value::Object(m))
            }
            CommandRequest::DeleteManagedCgroup(c) => Some(Value::Object(cgroup_obj(c))),
            CommandRequest::SetGlobalMode(mode) => Some(serde_json::json!({"mode": mode.as_str()})),
            CommandRequest::SetCgroupMode { cgroup, mode } => {
                let mut m = cgroup_obj(cgroup);
                m.insert("mode".into(), Value::from(mode.as_str()));
                Some(Value::Object(m))
            }
            // `{"command":"Shutdown"}` stays the form of a plain shutdown.
            CommandRequest::Shutdown(ShutdownOptions { detach: true }) => {
                Some(serde_json::json!({"detach": true}))
            }
            _ => None,
        }
    }
}

/// A validated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlRequest {
    pub request: CommandRequest,
    /// Echoed in the response.
    pub id: Option<String>,
}

#[derive(Serialize)]
struct RequestWire<'a> {
    command: Command,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl ControlRequest {
    pub fn command(&self) -> Command {
        self.request.command()
    }

    /// The request as one JSON line, `\n` included (what a client writes).
    pub fn to_line(&self) -> String {
        let wire = RequestWire {
            command: self.command(),
            payload: self.request.payload_json(),
            id: self.id.as_deref(),
        };
        let mut s = serde_json::to_string(&wire).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a request already decoded from JSON (the JS API's object input).
    pub fn from_json_value(v: &Value) -> Result<ControlRequest, RequestRejection> {
        read_request(v)
    }
}

/// Why a request was refused before it reached the agent's handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRejection {
    /// The request's `id` when it could be read, to echo in the failure response.
    pub id: Option<String>,
    /// CTRL_REQUEST_MALFORMED or CTRL_REQUEST_PAYLOAD_INVALID, message listing the issues.
    pub error: ControlProtocolError,
    /// Every issue, with paths from the request root (`payload.rules[3].cidr`).
    pub issues: Vec<Issue>,
}

impl RequestRejection {
    pub(super) fn new(
        code: ControlAuthzCode,
        command: Option<Command>,
        id: Option<String>,
        issues: Vec<Issue>,
    ) -> Self {
        let what = match (code, command) {
            (ControlAuthzCode::RequestPayloadInvalid, Some(c)) => format!("invalid {c} payload"),
            _ => "malformed request".to_owned(),
        };
        RequestRejection {
            id,
            error: ControlProtocolError::new(
                code,
                format!("{what}: {}", summarize(&issues)),
                command,
            ),
            issues,
        }
    }

    /// A malformed-request rejection for issues found before the envelope could be read.
    pub fn from_issues(issues: Vec<Issue>) -> Self {
        RequestRejection::new(ControlAuthzCode::RequestMalformed, None, None, issues)
    }

    fn malformed(issue: Issue) -> Self {
        RequestRejection::new(ControlAuthzCode::RequestMalformed, None, None, vec![issue])
    }

    /// The failure response to send back.
    pub fn into_response(self) -> ControlResponse {
        ControlResponse::Failure {
            error: self.error,
            id: self.id,
        }
    }
}

impl std::fmt::Display for RequestRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.reason_code, self.error.message)
    }
}

impl std::error::Error for RequestRejection {}

/// `path: message; path: message`, at most [`MAX_ISSUES_IN_MESSAGE`] of them.
fn summarize(issues: &[Issue]) -> String {
    let shown = issues.len().min(MAX_ISSUES_IN_MESSAGE);
    let mut out = ValidationError::new(issues[..shown].to_vec()).to_string();
    if issues.len() > shown {
        out.push_str(&format!("; and {} more issues", issues.len() - shown));
    }
    out
}

/// Checks one command's payload (`None`: the key was absent). Issue paths start at the payload's root
/// (`mode`, `rules[3].cidr`); the strict request parsers report the same issues under `payload`.
pub fn parse_command_payload(
    command: Command,
    payload: Option<&Value>,
) -> Result<CommandRequest, ValidationError> {
    let mut issues = Issues::new();
    let request = read_payload(command, payload, &mut issues);
    issues.finish(request).map_err(|mut e| {
        for issue in &mut e.issues {
            if issue.path.first() == Some(&PathSegment::from("payload")) {
                issue.path.remove(0);
            }
        }
        e
    })
}

/// Parses one request line as read from the socket, with or without its trailing `\n`: the envelope and the
/// command's payload, strictly. A valid ReplacePolicySnapshot takes the typed fast path (`fast.rs`), which
/// accepts exactly what the full reader below accepts and hands it every other line.
pub fn parse_request_line(line: &[u8]) -> Result<ControlRequest, RequestRejection> {
    let body = super::check_line(line, "request").map_err(RequestRejection::malformed)?;
    if let Some(request) = super::fast::parse_request(body) {
        return Ok(request);
    }
    let v = super::parse_line_json(body, "request").map_err(RequestRejection::malformed)?;
    let request = read_request(&v)?;
    // Every number of a valid request is in its payload and an integer: a fraction that rounds to one (a port
    // `42001.0000000000001`) is refused from text (issue 17).
    let fractions = crate::contract::json_reader::fractions_read_as_integers(body, &v);
    if !fractions.is_empty() {
        return Err(RequestRejection::new(
            ControlAuthzCode::RequestPayloadInvalid,
            Some(request.request.command()),
            request.id,
            fractions,
        ));
    }
    Ok(request)
}

/// The envelope's rules (shared with [`super::RequestEnvelope`]), then the command's payload. Envelope issues
/// make the request malformed and are listed together with any payload issue found beside them.
fn read_request(v: &Value) -> Result<ControlRequest, RequestRejection> {
    let mut envelope = Issues::new();
    let Some((obj, id, command)) = read_request_envelope(v, &mut envelope) else {
        return Err(RequestRejection::new(
            ControlAuthzCode::RequestMalformed,
            None,
            None,
            envelope.into_vec(),
        ));
    };
    let mut payload = Issues::new();
    let request = command.and_then(|c| read_payload(c, obj.get("payload"), &mut payload));
    if !envelope.is_empty() {
        let mut all = envelope.into_vec();
        all.extend(payload.into_vec());
        return Err(RequestRejection::new(
            ControlAuthzCode::RequestMalformed,
            command,
            id,
            all,
        ));
    }
    match request {
        Some(request) if payload.is_empty() => Ok(ControlRequest { request, id }),
        _ => Err(RequestRejection::new(
            ControlAuthzCode::RequestPayloadInvalid,
            command,
            id,
            payload.into_vec(),
        )),
    }
}

pub(super) fn read_payload(
    command: Command,
    v: Option<&Value>,
    issues: &mut Issues,
) -> Option<CommandRequest> {
    let path = vec![PathSegment::from("payload")];
    let simple = |c: CommandRequest, issues: &mut Issues| {
        absent_or_null(command, "takes no payload", v, &path, issues).then_some(c)
    };
    match command {
        Command::GetHealth => simple(CommandRequest::GetHealth, issues),
        Command::GetStatus => simple(CommandRequest::GetStatus, issues),
        Command::GetPolicySummary => simple(CommandRequest::GetPolicySummary, issues),
        Command::GetPolicySnapshot => simple(CommandRequest::GetPolicySnapshot, issues),
        Command::GetDnsStatus => simple(CommandRequest::GetDnsStatus, issues),
        Command::Shutdown => match v {
            None | Some(Value::Null) => Some(CommandRequest::Shutdown(ShutdownOptions::default())),
            _ => {
                let obj = object(v, &path, &["detach"], issues)?;
                let detach = match obj.get("detach") {
                    None => Some(false),
                    Some(_) => obj.bool("detach", issues),
                };
                Some(CommandRequest::Shutdown(ShutdownOptions {
                    detach: detach?,
                }))
            }
        },
        Command::SubscribeEvents => simple(CommandRequest::SubscribeEvents, issues),
        Command::ValidatePolicySnapshot => match parse_snapshot(v, &path) {
            Ok(s) => Some(CommandRequest::ValidatePolicySnapshot(s)),
            Err(e) => {
                issues.extend(e.issues);
                None
            }
        },
        Command::ReplacePolicySnapshot => match parse_snapshot(v, &path) {
            Ok(s) => Some(CommandRequest::ReplacePolicySnapshot(s)),
            Err(e) => {
                issues.extend(e.issues);
                None
            }
        },
        Command::UpsertManagedCgroup => {
            let obj = object(v, &path, &["path", "id", "mode", "workloadId"], issues)?;
            let cgroup = read_cgroup_ref(&obj, PathSyntax::BelowMount, issues);
            let mode = obj.opt_literal::<Mode>("mode", issues);
            let workload = read_workload_id(&obj, issues);
            Some(CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
                cgroup: cgroup?,
                mode: mode?,
                workload_id: workload?,
            }))
        }
        Command::DeleteManagedCgroup => {
            let obj = object(v, &path, &["path", "id"], issues)?;
            read_cgroup_ref(&obj, PathSyntax::BelowMount, issues)
                .map(CommandRequest::DeleteManagedCgroup)
        }
        Command::SetGlobalMode => {
            let obj = object(v, &path, &["mode"], issues)?;
            obj.literal::<Mode>("mode", issues)
                .map(CommandRequest::SetGlobalMode)
        }
        Command::SetCgroupMode => {
            let obj = object(v, &path, &["path", "id", "mode"], issues)?;
            let cgroup = read_cgroup_ref(&obj, PathSyntax::BelowMount, issues);
            let mode = obj.literal::<Mode>("mode", issues);
            Some(CommandRequest::SetCgroupMode {
                cgroup: cgroup?,
                mode: mode?,
            })
        }
    }
}

#[cfg(test)]
mod tests;
