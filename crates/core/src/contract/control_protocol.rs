//! The control protocol (SPEC 3): one JSON object per line on the agent's Unix socket.
//!
//! - Request `{command, payload?, id?}`, Success `{ok: true, command, data?, id?}`, Failure
//!   `{ok: false, error, id?}`; all strict.
//! - Each command's payload and data schema is parsed here into typed values (see docs/control-protocol.md).
//! - [`parse_request_line`] is the agent's byte entry point: it classifies every rejection as
//!   CTRL_REQUEST_MALFORMED (envelope) or CTRL_REQUEST_PAYLOAD_INVALID (payload), and
//!   [`ControlResponse::to_line`] is the matching serializer.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::control_authz::{read_event, ControlPlaneAuthzEvent};
use super::hook::Hook;
use super::json_reader::{self, join, object, parse_json_strict, Issues, ObjectReader};
use super::policy::{parse_snapshot, PolicySnapshot};
use super::reason_codes::{ControlAuthzCode, CONTROL_AUTHZ_NAMESPACE};
use super::timestamp::Timestamp;
use super::validation::{Issue, IssueCode, PathSegment, ValidationError};

/// Longest accepted line, excluding its `\n`.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Longest accepted `workloadId`: it shares the 64-byte kernel slot layout of rule ids.
pub const MAX_WORKLOAD_ID_BYTES: usize = 63;
/// Longest accepted cgroup path (PATH_MAX - 1).
pub const MAX_CGROUP_PATH_BYTES: usize = 4095;
/// Counters and generations are bounded by JavaScript's `Number.MAX_SAFE_INTEGER` so that a JS client reads
/// exactly what the agent sent.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// An error message lists at most this many issues, so a response to a huge invalid payload stays far below
/// the 16 MiB line limit; the rest are counted.
pub const MAX_ISSUES_IN_MESSAGE: usize = 100;

macro_rules! commands {
    ($( $(#[$m:meta])* $variant:ident => $read_only:literal ),+ $(,)?) => {
        /// A control-protocol command.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Command { $( $(#[$m])* $variant ),+ }

        impl Command {
            pub const ALL: [Command; 10] = [$(Command::$variant),+];

            /// The wire string, identical to the variant name.
            pub const fn as_str(self) -> &'static str {
                match self { $(Command::$variant => stringify!($variant)),+ }
            }

            pub fn from_wire(s: &str) -> Option<Self> {
                match s { $(stringify!($variant) => Some(Command::$variant),)+ _ => None }
            }

            /// Read-only commands need only a connection; every other command must pass the peer check and
            /// a fresh socket mode/owner check first (SPEC 3).
            pub const fn is_read_only(self) -> bool {
                match self { $(Command::$variant => $read_only),+ }
            }
        }
    };
}

commands! {
    /// Liveness and degraded reasons.
    GetHealth => true,
    /// Hooks, managed cgroups, modes, policy counts and event counters.
    GetStatus => true,
    /// Generation and counts of the loaded policy.
    GetPolicySummary => true,
    /// Atomically replaces the policy.
    ReplacePolicySnapshot => false,
    /// Adds or updates a managed cgroup.
    UpsertManagedCgroup => false,
    /// Stops managing a cgroup.
    DeleteManagedCgroup => false,
    /// Sets the mode of cgroups whose entry names none.
    SetGlobalMode => false,
    /// Sets one managed cgroup's mode.
    SetCgroupMode => false,
    /// Stops the agent (pinned enforcement stays).
    Shutdown => false,
    /// Streams DataplanePacketEvents, one per line, until the connection closes.
    SubscribeEvents => true,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

pub use super::modes::{FailMode, Mode};

/// `healthy` or not, as GetHealth reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("observe", Mode::Observe)];
const FAIL_MODES: &[(&str, FailMode)] = &[("closed", FailMode::Closed), ("open", FailMode::Open)];
const HEALTH: &[(&str, HealthStatus)] = &[
    ("ok", HealthStatus::Ok),
    ("degraded", HealthStatus::Degraded),
];
const HOOKS: &[(&str, Hook)] = &[
    ("connect4", Hook::Connect4),
    ("connect6", Hook::Connect6),
    ("sendmsg4", Hook::Sendmsg4),
    ("sendmsg6", Hook::Sendmsg6),
];

/// A cgroup named by its path under the cgroup2 mount (`/system.slice/app.service`) or by its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CgroupRef {
    Path(String),
    Id(u64),
}

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
    ReplacePolicySnapshot(PolicySnapshot),
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
            CommandRequest::ReplacePolicySnapshot(_) => Command::ReplacePolicySnapshot,
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
            CommandRequest::ReplacePolicySnapshot(s) => Some(s.to_json_value()),
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

/// A `control_authz` error whose command, when present, is a [`Command`]: the `error` of a failure response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlProtocolError {
    pub reason_code: ControlAuthzCode,
    pub message: String,
    pub command: Option<Command>,
}

impl ControlProtocolError {
    pub fn new(
        reason_code: ControlAuthzCode,
        message: impl Into<String>,
        command: Option<Command>,
    ) -> Self {
        ControlProtocolError {
            reason_code,
            message: message.into(),
            command,
        }
    }

    /// The same error as a ControlPlaneAuthzEvent (for the log).
    pub fn to_event(&self) -> ControlPlaneAuthzEvent {
        ControlPlaneAuthzEvent {
            reason_code: self.reason_code,
            message: self.message.clone(),
            command: self.command.map(|c| c.as_str().to_owned()),
        }
    }

    /// Turns a peer/socket check refusal into the error of a response to `command`.
    pub fn from_event(event: ControlPlaneAuthzEvent, command: Option<Command>) -> Self {
        ControlProtocolError {
            reason_code: event.reason_code,
            message: event.message,
            command: command.or_else(|| event.command.as_deref().and_then(Command::from_wire)),
        }
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
    fn new(
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

/// Parses one request line as read from the socket, with or without its trailing `\n`.
pub fn parse_request_line(line: &[u8]) -> Result<ControlRequest, RequestRejection> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.len() > MAX_LINE_BYTES {
        return Err(RequestRejection::malformed(Issue::new(
            vec![],
            IssueCode::TooBig,
            format!(
                "request line is {} bytes; the limit is {MAX_LINE_BYTES}",
                body.len()
            ),
        )));
    }
    if body.contains(&b'\n') {
        return Err(RequestRejection::malformed(Issue::new(
            vec![],
            IssueCode::InvalidJson,
            "a request is exactly one line: a newline may only end it",
        )));
    }
    if let Some(request) = fast::parse_request(body) {
        return Ok(request);
    }
    let v = parse_json_strict(body).map_err(|e| {
        RequestRejection::malformed(Issue::new(
            vec![],
            IssueCode::InvalidJson,
            format!("request is not valid JSON: {e}"),
        ))
    })?;
    read_request(&v)
}

fn read_request(v: &Value) -> Result<ControlRequest, RequestRejection> {
    let mut envelope = Issues::new();
    let obj = object(Some(v), &[], &["command", "payload", "id"], &mut envelope);
    let Some(obj) = obj else {
        return Err(RequestRejection::new(
            ControlAuthzCode::RequestMalformed,
            None,
            None,
            envelope.into_vec(),
        ));
    };
    let id = obj
        .opt_str("id", &mut envelope)
        .flatten()
        .map(str::to_owned);
    let command = match obj.get("command") {
        Some(Value::String(s)) => match Command::from_wire(s) {
            Some(c) => Some(c),
            None => {
                envelope.push(
                    obj.path_of("command"),
                    IssueCode::InvalidValue,
                    format!("unknown command `{s}`; expected one of {}", command_list()),
                );
                None
            }
        },
        other => {
            envelope.wrong_type(&obj.path_of("command"), "a command string", other);
            None
        }
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

fn command_list() -> String {
    Command::ALL
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_payload(
    command: Command,
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(other) => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidType,
                format!(
                    "{command} takes no payload (absent or null), received {}",
                    json_reader::type_name(other)
                ),
            );
            false
        }
    }
}

fn read_payload(
    command: Command,
    v: Option<&Value>,
    issues: &mut Issues,
) -> Option<CommandRequest> {
    let path = vec![PathSegment::from("payload")];
    let simple =
        |c: CommandRequest, issues: &mut Issues| no_payload(command, v, &path, issues).then_some(c);
    match command {
        Command::GetHealth => simple(CommandRequest::GetHealth, issues),
        Command::GetStatus => simple(CommandRequest::GetStatus, issues),
        Command::GetPolicySummary => simple(CommandRequest::GetPolicySummary, issues),
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
        Command::ReplacePolicySnapshot => match parse_snapshot(v, &path) {
            Ok(s) => Some(CommandRequest::ReplacePolicySnapshot(s)),
            Err(e) => {
                issues.extend(e.issues);
                None
            }
        },
        Command::UpsertManagedCgroup => {
            let obj = object(v, &path, &["path", "id", "mode", "workloadId"], issues)?;
            let cgroup = read_cgroup_ref(&obj, issues);
            let mode = obj.opt_literal("mode", MODES, issues);
            let workload = read_workload_id(&obj, issues);
            Some(CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
                cgroup: cgroup?,
                mode: mode?,
                workload_id: workload?,
            }))
        }
        Command::DeleteManagedCgroup => {
            let obj = object(v, &path, &["path", "id"], issues)?;
            read_cgroup_ref(&obj, issues).map(CommandRequest::DeleteManagedCgroup)
        }
        Command::SetGlobalMode => {
            let obj = object(v, &path, &["mode"], issues)?;
            obj.literal("mode", MODES, issues)
                .map(CommandRequest::SetGlobalMode)
        }
        Command::SetCgroupMode => {
            let obj = object(v, &path, &["path", "id", "mode"], issues)?;
            let cgroup = read_cgroup_ref(&obj, issues);
            let mode = obj.literal("mode", MODES, issues);
            Some(CommandRequest::SetCgroupMode {
                cgroup: cgroup?,
                mode: mode?,
            })
        }
    }
}

/// Exactly one of `path` and `id`.
fn read_cgroup_ref(obj: &ObjectReader<'_>, issues: &mut Issues) -> Option<CgroupRef> {
    match (obj.has("path"), obj.has("id")) {
        (true, true) => {
            issues.push(
                obj.path().to_vec(),
                IssueCode::Custom,
                "give exactly one of `path` and `id`, not both",
            );
            None
        }
        (false, false) => {
            issues.push(
                obj.path().to_vec(),
                IssueCode::InvalidType,
                "`path` or `id` is required",
            );
            None
        }
        (true, false) => obj
            .str("path", issues)
            .and_then(|p| check_cgroup_path(p, &obj.path_of("path"), issues))
            .map(|p| CgroupRef::Path(p.to_owned())),
        (false, true) => obj
            .str("id", issues)
            .and_then(|s| parse_cgroup_id(s, &obj.path_of("id"), issues))
            .map(CgroupRef::Id),
    }
}

/// A cgroup path as `/proc/<pid>/cgroup` prints it: absolute from the cgroup2 mount, normalised, not the
/// root (managing the root cgroup would put every process of the host under the policy).
pub fn check_cgroup_path<'a>(
    p: &'a str,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    let why = if !p.starts_with('/') {
        Some(
            "must start with `/` (relative to the cgroup2 mount, as /proc/<pid>/cgroup prints it)"
                .to_owned(),
        )
    } else if p == "/" {
        Some("must not be the root cgroup `/`".to_owned())
    } else if p.len() > MAX_CGROUP_PATH_BYTES {
        Some(format!(
            "is {} bytes; at most {MAX_CGROUP_PATH_BYTES}",
            p.len()
        ))
    } else if p.contains('\0') {
        Some("must not contain NUL".to_owned())
    } else if p[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        Some("must be normalised: no empty, `.` or `..` segments and no trailing `/`".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidFormat,
                format!("cgroup path `{p}` {why}"),
            );
            None
        }
        None => Some(p),
    }
}

/// A cgroup id: decimal digits of a non-zero u64, no sign, no leading zeros (ids are u64 and JavaScript
/// numbers are not, so the wire form is a string).
pub fn parse_cgroup_id(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u64>() {
        Ok(0) if canonical => {
            issues.push(
                path.to_vec(),
                IssueCode::TooSmall,
                "cgroup id 0 does not exist; ids start at 1",
            );
            None
        }
        Ok(n) if canonical => Some(n),
        Err(_) if canonical => {
            issues.push(
                path.to_vec(),
                IssueCode::TooBig,
                format!("cgroup id `{s}` does not fit in 64 bits"),
            );
            None
        }
        _ => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidFormat,
                format!(
                    "expected a cgroup id as decimal digits without leading zeros, received `{s}`"
                ),
            );
            None
        }
    }
}

fn read_workload_id(obj: &ObjectReader<'_>, issues: &mut Issues) -> Option<Option<String>> {
    let Some(w) = obj.opt_str("workloadId", issues)? else {
        return Some(None);
    };
    let path = obj.path_of("workloadId");
    if w.is_empty() || w.len() > MAX_WORKLOAD_ID_BYTES {
        issues.push(
            path,
            if w.is_empty() {
                IssueCode::TooSmall
            } else {
                IssueCode::TooBig
            },
            format!(
                "workloadId must be 1..={MAX_WORKLOAD_ID_BYTES} bytes, received {}",
                w.len()
            ),
        );
        return None;
    }
    if w.chars().any(char::is_control) {
        issues.push(
            path,
            IssueCode::InvalidFormat,
            "workloadId must not contain control characters (including NUL)",
        );
        return None;
    }
    Some(Some(w.to_owned()))
}

// ---------------------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------------------

fn ser_u64_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_hooks<S: Serializer>(v: &[Hook], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|h| h.as_str()))
}

fn ser_timestamp<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_str(t.as_str()),
        None => s.serialize_none(),
    }
}

/// GetHealth data. The fields after `degraded_reasons` are optional on the wire (a reader accepts their
/// absence); the agent always sends those that apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `Degraded` exactly when `degraded_reasons` is non-empty.
    pub status: HealthStatus,
    pub degraded_reasons: Vec<String>,
    /// Since when the current degraded condition holds; only while degraded.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_timestamp"
    )]
    pub degraded_since: Option<Timestamp>,
    /// When the agent started.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_timestamp"
    )]
    pub started_at: Option<Timestamp>,
    /// The agent adopted a pinned state (policy, managed cgroups, links) instead of starting empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// Only with `adopted: true`: how old the pinned heartbeat was when the agent adopted the state; beyond
    /// `heartbeatGraceMs` the kernel had been giving the degraded verdicts for the difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted_heartbeat_age_ms: Option<u64>,
    /// Age of the last heartbeat the agent wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_grace_ms: Option<u64>,
}

impl Health {
    /// Status and reasons only: `Degraded` exactly when `degraded_reasons` is non-empty.
    pub fn from_reasons(degraded_reasons: Vec<String>) -> Self {
        Health {
            status: if degraded_reasons.is_empty() {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            degraded_reasons,
            degraded_since: None,
            started_at: None,
            adopted: None,
            adopted_heartbeat_age_ms: None,
            heartbeat_age_ms: None,
            heartbeat_grace_ms: None,
        }
    }
}

/// One managed-cgroup entry, as GetStatus lists it and the cgroup commands return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCgroup {
    #[serde(serialize_with = "ser_u64_string")]
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `None`: follows the global mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<String>,
}

/// GetStatus data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(serialize_with = "ser_hooks")]
    pub attached_hooks: Vec<Hook>,
    pub managed_cgroups: Vec<ManagedCgroup>,
    pub global_mode: Mode,
    pub fail_mode: FailMode,
    /// 0 until a policy is loaded.
    pub generation: u64,
    pub ipv4_rules: u64,
    pub ipv6_rules: u64,
    pub events_emitted: u64,
    /// Events the ring buffer could not take.
    pub dropped_in_kernel: u64,
    /// Events dropped between the ring buffer and subscribers/logs.
    pub dropped_in_queue: u64,
    pub degraded: bool,
}

/// GetPolicySummary and ReplacePolicySnapshot data. Generation 0 means no policy loaded (all counts 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    pub generation: u64,
    pub ipv4_rules: u64,
    pub ipv6_rules: u64,
    pub broker_endpoints: u64,
    pub dns_endpoints: u64,
}

/// SetGlobalMode data: the mode now in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalModeData {
    pub global_mode: Mode,
}

/// A success response's command with its typed data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseData {
    GetHealth(Health),
    GetStatus(Status),
    GetPolicySummary(PolicySummary),
    ReplacePolicySnapshot(PolicySummary),
    /// The entry as stored after the upsert.
    UpsertManagedCgroup(ManagedCgroup),
    /// The entry that was removed.
    DeleteManagedCgroup(ManagedCgroup),
    SetGlobalMode(GlobalModeData),
    /// The entry after its mode changed.
    SetCgroupMode(ManagedCgroup),
    /// No data: the agent stops after sending this.
    Shutdown,
    /// No data: DataplanePacketEvent lines follow.
    SubscribeEvents,
}

impl ResponseData {
    pub fn command(&self) -> Command {
        match self {
            ResponseData::GetHealth(_) => Command::GetHealth,
            ResponseData::GetStatus(_) => Command::GetStatus,
            ResponseData::GetPolicySummary(_) => Command::GetPolicySummary,
            ResponseData::ReplacePolicySnapshot(_) => Command::ReplacePolicySnapshot,
            ResponseData::UpsertManagedCgroup(_) => Command::UpsertManagedCgroup,
            ResponseData::DeleteManagedCgroup(_) => Command::DeleteManagedCgroup,
            ResponseData::SetGlobalMode(_) => Command::SetGlobalMode,
            ResponseData::SetCgroupMode(_) => Command::SetCgroupMode,
            ResponseData::Shutdown => Command::Shutdown,
            ResponseData::SubscribeEvents => Command::SubscribeEvents,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum DataRef<'a> {
    Health(&'a Health),
    Status(&'a Status),
    Summary(&'a PolicySummary),
    Cgroup(&'a ManagedCgroup),
    Global(&'a GlobalModeData),
}

#[derive(Serialize)]
struct SuccessWire<'a> {
    ok: bool,
    command: Command,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorWire<'a> {
    code_namespace: &'static str,
    reason_code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Command>,
}

#[derive(Serialize)]
struct FailureWire<'a> {
    ok: bool,
    error: ErrorWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// A response line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlResponse {
    Success {
        data: ResponseData,
        id: Option<String>,
    },
    Failure {
        error: ControlProtocolError,
        id: Option<String>,
    },
}

impl ControlResponse {
    /// A failure response; `id` should be the request's.
    pub fn failure(
        code: ControlAuthzCode,
        message: impl Into<String>,
        command: Option<Command>,
        id: Option<String>,
    ) -> Self {
        ControlResponse::Failure {
            error: ControlProtocolError::new(code, message, command),
            id,
        }
    }

    /// The response as one JSON line, `\n` included, keys in protocol order (`ok` first).
    pub fn to_line(&self) -> String {
        let json = match self {
            ControlResponse::Success { data, id } => {
                let data_ref = match data {
                    ResponseData::GetHealth(h) => Some(DataRef::Health(h)),
                    ResponseData::GetStatus(s) => Some(DataRef::Status(s)),
                    ResponseData::GetPolicySummary(p) | ResponseData::ReplacePolicySnapshot(p) => {
                        Some(DataRef::Summary(p))
                    }
                    ResponseData::UpsertManagedCgroup(c)
                    | ResponseData::DeleteManagedCgroup(c)
                    | ResponseData::SetCgroupMode(c) => Some(DataRef::Cgroup(c)),
                    ResponseData::SetGlobalMode(g) => Some(DataRef::Global(g)),
                    ResponseData::Shutdown | ResponseData::SubscribeEvents => None,
                };
                serde_json::to_string(&SuccessWire {
                    ok: true,
                    command: data.command(),
                    data: data_ref,
                    id: id.as_deref(),
                })
            }
            ControlResponse::Failure { error, id } => serde_json::to_string(&FailureWire {
                ok: false,
                error: ErrorWire {
                    code_namespace: CONTROL_AUTHZ_NAMESPACE,
                    reason_code: error.reason_code.as_str(),
                    message: &error.message,
                    command: error.command,
                },
                id: id.as_deref(),
            }),
        };
        // Serializing these plain structs cannot fail; an empty object keeps the path panic-free regardless.
        let mut line = json.unwrap_or_else(|_| String::from("{}"));
        line.push('\n');
        line
    }

    /// Parses a response already decoded from JSON.
    pub fn from_json_value(v: &Value) -> Result<ControlResponse, ValidationError> {
        let mut issues = Issues::new();
        let r = read_response(v, &mut issues);
        issues.finish(r)
    }
}

/// Parses one response line (what a client reads), with or without its trailing `\n`.
pub fn parse_response_line(line: &[u8]) -> Result<ControlResponse, ValidationError> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let bad = |code: IssueCode, message: String| {
        Err(ValidationError::single(Issue::new(vec![], code, message)))
    };
    if body.len() > MAX_LINE_BYTES {
        return bad(
            IssueCode::TooBig,
            format!(
                "response line is {} bytes; the limit is {MAX_LINE_BYTES}",
                body.len()
            ),
        );
    }
    if body.contains(&b'\n') {
        return bad(
            IssueCode::InvalidJson,
            "a response is exactly one line: a newline may only end it".to_owned(),
        );
    }
    match parse_json_strict(body) {
        Ok(v) => ControlResponse::from_json_value(&v),
        Err(e) => bad(
            IssueCode::InvalidJson,
            format!("response is not valid JSON: {e}"),
        ),
    }
}

fn read_response(v: &Value, issues: &mut Issues) -> Option<ControlResponse> {
    let ok = match v {
        Value::Object(m) => match m.get("ok") {
            Some(Value::Bool(b)) => Some(*b),
            other => {
                issues.wrong_type(&[PathSegment::from("ok")], "boolean", other);
                None
            }
        },
        other => {
            issues.wrong_type(&[], "object", Some(other));
            return None;
        }
    };
    match ok? {
        true => {
            let obj = object(Some(v), &[], &["ok", "command", "data", "id"], issues)?;
            let id = obj.opt_str("id", issues);
            let command = read_command(obj.get("command"), &obj.path_of("command"), issues);
            let data =
                command.and_then(|c| read_data(c, obj.get("data"), &obj.path_of("data"), issues));
            Some(ControlResponse::Success {
                data: data?,
                id: id?.map(str::to_owned),
            })
        }
        false => {
            let obj = object(Some(v), &[], &["ok", "error", "id"], issues)?;
            let id = obj.opt_str("id", issues);
            let error = read_protocol_error(obj.get("error"), &obj.path_of("error"), issues);
            Some(ControlResponse::Failure {
                error: error?,
                id: id?.map(str::to_owned),
            })
        }
    }
}

fn read_command(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Command> {
    match v {
        Some(Value::String(s)) => Command::from_wire(s).or_else(|| {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidValue,
                format!("unknown command `{s}`; expected one of {}", command_list()),
            );
            None
        }),
        other => {
            issues.wrong_type(path, "a command string", other);
            None
        }
    }
}

/// A ControlPlaneAuthzEvent whose `command`, when present, is a Command.
fn read_protocol_error(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<ControlProtocolError> {
    let before = issues.len();
    let event = read_event(v, path, issues);
    let command = match v.and_then(|e| e.get("command")) {
        Some(Value::String(s)) if !s.is_empty() => read_command(
            Some(&Value::from(s.as_str())),
            &join(path, "command"),
            issues,
        ),
        _ => None,
    };
    let event = event?;
    if issues.len() > before {
        return None;
    }
    Some(ControlProtocolError {
        reason_code: event.reason_code,
        message: event.message,
        command,
    })
}

fn no_data(command: Command, v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(other) => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidType,
                format!(
                    "{command} responds without data (absent or null), received {}",
                    json_reader::type_name(other)
                ),
            );
            false
        }
    }
}

fn read_data(
    command: Command,
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<ResponseData> {
    match command {
        Command::Shutdown => no_data(command, v, path, issues).then_some(ResponseData::Shutdown),
        Command::SubscribeEvents => {
            no_data(command, v, path, issues).then_some(ResponseData::SubscribeEvents)
        }
        Command::GetHealth => read_health(v, path, issues).map(ResponseData::GetHealth),
        Command::GetStatus => read_status(v, path, issues).map(ResponseData::GetStatus),
        Command::GetPolicySummary => {
            read_summary(v, path, issues).map(ResponseData::GetPolicySummary)
        }
        Command::ReplacePolicySnapshot => {
            read_summary(v, path, issues).map(ResponseData::ReplacePolicySnapshot)
        }
        Command::UpsertManagedCgroup => {
            read_managed(v, path, issues).map(ResponseData::UpsertManagedCgroup)
        }
        Command::DeleteManagedCgroup => {
            read_managed(v, path, issues).map(ResponseData::DeleteManagedCgroup)
        }
        Command::SetCgroupMode => read_managed(v, path, issues).map(ResponseData::SetCgroupMode),
        Command::SetGlobalMode => {
            let obj = object(v, path, &["globalMode"], issues)?;
            obj.literal("globalMode", MODES, issues)
                .map(|global_mode| ResponseData::SetGlobalMode(GlobalModeData { global_mode }))
        }
    }
}

fn read_timestamp(
    obj: &ObjectReader<'_>,
    key: &str,
    issues: &mut Issues,
) -> Option<Option<Timestamp>> {
    let Some(text) = obj.opt_str(key, issues)? else {
        return Some(None);
    };
    match Timestamp::parse(text) {
        Ok(t) => Some(Some(t)),
        Err(e) => {
            issues.push(obj.path_of(key), IssueCode::InvalidFormat, e.to_string());
            None
        }
    }
}

fn read_health(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Health> {
    let obj = object(
        v,
        path,
        &[
            "status",
            "degradedReasons",
            "degradedSince",
            "startedAt",
            "adopted",
            "adoptedHeartbeatAgeMs",
            "heartbeatAgeMs",
            "heartbeatGraceMs",
        ],
        issues,
    )?;
    let status = obj.literal("status", HEALTH, issues);
    let reasons = obj.array("degradedReasons", issues).and_then(|items| {
        let rp = obj.path_of("degradedReasons");
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let p = join(&rp, i);
            match json_reader::string(Some(item), &p, issues) {
                Some("") => {
                    issues.push(p, IssueCode::TooSmall, "expected a non-empty string");
                    ok = false;
                }
                Some(s) => out.push(s.to_owned()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let degraded_since = read_timestamp(&obj, "degradedSince", issues);
    let started_at = read_timestamp(&obj, "startedAt", issues);
    let adopted = match obj.get("adopted") {
        None => Some(None),
        Some(_) => obj.bool("adopted", issues).map(Some),
    };
    let adopted_age = obj.opt_int("adoptedHeartbeatAgeMs", 0, MAX_SAFE_INTEGER, issues);
    let age = obj.opt_int("heartbeatAgeMs", 0, MAX_SAFE_INTEGER, issues);
    let grace = obj.opt_int("heartbeatGraceMs", 0, MAX_SAFE_INTEGER, issues);
    let (status, reasons) = (status?, reasons?);
    if (status == HealthStatus::Degraded) == reasons.is_empty() {
        issues.push(
            path.to_vec(),
            IssueCode::Custom,
            "status is `degraded` exactly when degradedReasons is non-empty",
        );
        return None;
    }
    let (degraded_since, adopted, adopted_age) = (degraded_since?, adopted?, adopted_age?);
    if degraded_since.is_some() && status != HealthStatus::Degraded {
        issues.push(
            obj.path_of("degradedSince"),
            IssueCode::Custom,
            "degradedSince is only present while the status is `degraded`",
        );
        return None;
    }
    if adopted_age.is_some() && adopted != Some(true) {
        issues.push(
            obj.path_of("adoptedHeartbeatAgeMs"),
            IssueCode::Custom,
            "adoptedHeartbeatAgeMs is only present with `adopted: true`",
        );
        return None;
    }
    Some(Health {
        status,
        degraded_reasons: reasons,
        degraded_since,
        started_at: started_at?,
        adopted,
        adopted_heartbeat_age_ms: adopted_age,
        heartbeat_age_ms: age?,
        heartbeat_grace_ms: grace?,
    })
}

fn read_managed(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<ManagedCgroup> {
    let obj = object(v, path, &["cgroupId", "path", "mode", "workloadId"], issues)?;
    let id = obj
        .str("cgroupId", issues)
        .and_then(|s| parse_cgroup_id(s, &obj.path_of("cgroupId"), issues));
    let cg_path = match obj.opt_str("path", issues) {
        Some(Some(p)) => {
            check_cgroup_path(p, &obj.path_of("path"), issues).map(|p| Some(p.to_owned()))
        }
        Some(None) => Some(None),
        None => None,
    };
    let mode = obj.opt_literal("mode", MODES, issues);
    let workload = read_workload_id(&obj, issues);
    Some(ManagedCgroup {
        cgroup_id: id?,
        path: cg_path?,
        mode: mode?,
        workload_id: workload?,
    })
}

fn counter(obj: &ObjectReader<'_>, key: &str, issues: &mut Issues) -> Option<u64> {
    obj.int(key, 0, MAX_SAFE_INTEGER, issues)
}

fn read_summary(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<PolicySummary> {
    let keys = [
        "generation",
        "ipv4Rules",
        "ipv6Rules",
        "brokerEndpoints",
        "dnsEndpoints",
    ];
    let obj = object(v, path, &keys, issues)?;
    let [g, v4, v6, b, d] = keys.map(|k| counter(&obj, k, issues));
    let s = PolicySummary {
        generation: g?,
        ipv4_rules: v4?,
        ipv6_rules: v6?,
        broker_endpoints: b?,
        dns_endpoints: d?,
    };
    if s.generation == 0 && s != PolicySummary::default() {
        issues.push(
            path.to_vec(),
            IssueCode::Custom,
            "generation 0 means no policy is loaded: every count must be 0",
        );
        return None;
    }
    Some(s)
}

fn read_status(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Status> {
    let obj = object(
        v,
        path,
        &[
            "attachedHooks",
            "managedCgroups",
            "globalMode",
            "failMode",
            "generation",
            "ipv4Rules",
            "ipv6Rules",
            "eventsEmitted",
            "droppedInKernel",
            "droppedInQueue",
            "degraded",
        ],
        issues,
    )?;
    let hooks = obj.array("attachedHooks", issues).and_then(|items| {
        let hp = obj.path_of("attachedHooks");
        let mut out: Vec<Hook> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match json_reader::literal(Some(item), &join(&hp, i), HOOKS, issues) {
                Some(h) if out.contains(&h) => {
                    issues.push(
                        join(&hp, i),
                        IssueCode::Custom,
                        format!("duplicate hook `{}`", h.as_str()),
                    );
                    ok = false;
                }
                Some(h) => out.push(h),
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let cgroups = obj.array("managedCgroups", issues).and_then(|items| {
        let cp = obj.path_of("managedCgroups");
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match read_managed(Some(item), &join(&cp, i), issues) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let global_mode = obj.literal("globalMode", MODES, issues);
    let fail_mode = obj.literal("failMode", FAIL_MODES, issues);
    let generation = counter(&obj, "generation", issues);
    let ipv4 = counter(&obj, "ipv4Rules", issues);
    let ipv6 = counter(&obj, "ipv6Rules", issues);
    let emitted = counter(&obj, "eventsEmitted", issues);
    let dk = counter(&obj, "droppedInKernel", issues);
    let dq = counter(&obj, "droppedInQueue", issues);
    let degraded = obj.bool("degraded", issues);
    Some(Status {
        attached_hooks: hooks?,
        managed_cgroups: cgroups?,
        global_mode: global_mode?,
        fail_mode: fail_mode?,
        generation: generation?,
        ipv4_rules: ipv4?,
        ipv6_rules: ipv6?,
        events_emitted: emitted?,
        dropped_in_kernel: dk?,
        dropped_in_queue: dq?,
        degraded: degraded?,
    })
}

mod fast;

#[cfg(test)]
mod tests;
