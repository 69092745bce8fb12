//! The control protocol (SPEC 3): one JSON object per line on the agent's Unix socket.
//!
//! - Request `{command, payload?, id?}`, Success `{ok: true, command, data?, id?}`, Failure
//!   `{ok: false, error, id?}`; all strict.
//! - Each command's payload and data schema is parsed here into typed values (see docs/control-protocol.md).
//! - [`parse_request_line`] is the agent's byte entry point: it classifies every rejection as
//!   CTRL_REQUEST_MALFORMED (envelope) or CTRL_REQUEST_PAYLOAD_INVALID (payload), and
//!   [`ControlResponse::to_line`] is the matching serializer.
//! - Two levels: the generic envelope (`envelope.rs`: `payload` and `data` any JSON value, what the original
//!   package's exported schemas checked) and each command's payload and data (`parse_command_payload`,
//!   `parse_command_data`); the strict request and response parsers are the envelope's rules plus those.
//! - Layout: `request.rs` (typed requests, their parser, each command's payload on its own), `fast.rs` (the
//!   strict request parser's typed fast path for ReplacePolicySnapshot), `response.rs` (typed responses,
//!   serializer and parser, each command's data on its own) and `envelope.rs` (the generic envelope only). How a message names a cgroup is
//!   the contract's one cgroup rule set ([`crate::contract::cgroup`], shared with the Node API), checked the
//!   same way in both directions.

mod envelope;
mod fast;
mod request;
mod response;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::contract::control::authz::ControlPlaneAuthzEvent;
use crate::contract::json_reader::{parse_json_strict, Issues};
use crate::contract::reason_codes::ControlAuthzCode;
use crate::contract::validation::{Issue, IssueCode, PathSegment};
use crate::contract::wire_literal::{alternatives, wire_literal_from_all};

pub use crate::contract::cgroup::{
    check_cgroup_path, parse_cgroup_id, CgroupRef, ManagedCgroup, MAX_CGROUP_PATH_BYTES,
    MAX_WORKLOAD_ID_BYTES,
};
pub use crate::contract::modes::{FailMode, Mode};
pub use crate::contract::policy::PolicySummary;
pub use envelope::{
    parse_command, parse_request_envelope_line, parse_response_envelope_line, RequestEnvelope,
    ResponseEnvelope,
};
pub use request::{
    parse_command_payload, parse_request_line, CommandRequest, ControlRequest, RequestRejection,
    ShutdownOptions, UpsertManagedCgroup,
};
pub use response::{
    parse_command_data, parse_response_line, ControlResponse, DnsCounters, DnsStatus,
    GlobalModeData, Health, HealthStatus, LearnedAddress, PolicySnapshotData, ResponseData, Status,
    MAX_VERSION_BYTES,
};

/// Longest accepted line, excluding its `\n`.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
// Counters and generations are bounded by JavaScript's `Number.MAX_SAFE_INTEGER` so that a JS client reads
// exactly what the agent sent.
pub use crate::contract::validation::MAX_SAFE_INTEGER;
/// An error message lists at most this many issues, so a response to a huge invalid payload stays far below
/// the 16 MiB line limit; the rest are counted.
pub const MAX_ISSUES_IN_MESSAGE: usize = 100;

macro_rules! commands {
    ($( $(#[$m:meta])* $variant:ident => $read_only:literal ),+ $(,)?) => {
        /// A control-protocol command.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Command { $( $(#[$m])* $variant ),+ }

        impl Command {
            pub const ALL: [Command; [$(Command::$variant),+].len()] = [$(Command::$variant),+];

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
    /// The loaded policy itself, when the agent knows it (it applied it), with its generation.
    GetPolicySnapshot => true,
    /// Atomically replaces the policy.
    ReplacePolicySnapshot => false,
    /// Validates and compiles a snapshot against the dataplane's limits and applies nothing (`ctl policy apply
    /// --dry-run`): the reply is what ReplacePolicySnapshot would report, with the active generation. Privileged
    /// like a replacement, since compiling a 16 MiB snapshot is work.
    ValidatePolicySnapshot => false,
    /// Adds or updates a managed cgroup.
    UpsertManagedCgroup => false,
    /// Stops managing a cgroup.
    DeleteManagedCgroup => false,
    /// Sets the mode of cgroups whose entry names none.
    SetGlobalMode => false,
    /// Sets one managed cgroup's mode.
    SetCgroupMode => false,
    /// Stops the agent; pinned enforcement stays unless the payload says `detach: true`.
    Shutdown => false,
    /// Streams DataplanePacketEvents, one per line, until the connection closes.
    SubscribeEvents => true,
    /// The DNS proxy (SPEC 4b): whether it serves, the addresses its answers taught, its counters.
    GetDnsStatus => true,
}

wire_literal_from_all!(Command);

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

/// The `payload` or `data` of a command that has none: absent or `null`. `what` completes the message
/// (`"{command} {what} (absent or null)"`).
fn absent_or_null(
    command: Command,
    what: &str,
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
                    "{command} {what} (absent or null), received {}",
                    crate::contract::json_reader::type_name(other)
                ),
            );
            false
        }
    }
}

/// A known command, or an issue naming the known ones (requests, responses and errors alike).
fn read_command(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Command> {
    match v {
        Some(Value::String(s)) => Command::from_wire(s).or_else(|| {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidValue,
                format!(
                    "unknown command `{s}`; expected one of {}",
                    alternatives::<Command>(str::to_owned, ", ")
                ),
            );
            None
        }),
        other => {
            issues.wrong_type(path, "a command string", other);
            None
        }
    }
}

/// The rules every line obeys before it is read as a message (`what` is `request` or `response`): at most
/// [`MAX_LINE_BYTES`] without its `\n`, no other newline, strict UTF-8 JSON without duplicate keys.
fn read_line(line: &[u8], what: &str) -> Result<Value, Issue> {
    parse_line_json(check_line(line, what)?, what)
}

/// The framing half of [`read_line`]: the line without its `\n`, at most [`MAX_LINE_BYTES`], no other newline.
fn check_line<'l>(line: &'l [u8], what: &str) -> Result<&'l [u8], Issue> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.len() > MAX_LINE_BYTES {
        return Err(Issue::new(
            vec![],
            IssueCode::TooBig,
            format!(
                "{what} line is {} bytes; the limit is {MAX_LINE_BYTES}",
                body.len()
            ),
        ));
    }
    if body.contains(&b'\n') {
        return Err(Issue::new(
            vec![],
            IssueCode::InvalidJson,
            format!("a {what} is exactly one line: a newline may only end it"),
        ));
    }
    Ok(body)
}

/// The JSON half of [`read_line`]: strict UTF-8 JSON without duplicate keys.
fn parse_line_json(body: &[u8], what: &str) -> Result<Value, Issue> {
    parse_json_strict(body).map_err(|e| {
        Issue::new(
            vec![],
            IssueCode::InvalidJson,
            format!("{what} is not valid JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests;
