//! Responses: the typed data of each command's success, the failure form, their one-line JSON form (keys in
//! protocol order) and the strict parser a client uses.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{
    absent_or_null, read_command, Command, ControlProtocolError, FailMode, Mode, MAX_SAFE_INTEGER,
};
use crate::contract::cgroup::{
    check_cgroup_path, parse_cgroup_id, read_workload_id, ManagedCgroup,
};
use crate::contract::control::authz::read_event;
use crate::contract::hook::Hook;
use crate::contract::json_reader::{self, join, object, Issues, ObjectReader};
use crate::contract::layer::{
    active_layers, Layer, LayerCounters, LayerState, LayerStateName, LayerStatus,
};
use crate::contract::policy::{parse_snapshot, PolicySnapshot, PolicySummary};
use crate::contract::reason_codes::{
    ControlAuthzCode, DataplaneReasonCode, CONTROL_AUTHZ_NAMESPACE,
};
use crate::contract::timestamp::Timestamp;
use crate::contract::validation::{IssueCode, PathSegment, ValidationError};
use crate::contract::verdict_counts::VerdictCount;
use crate::contract::wire_literal::wire_literal_from_all;

mod dns;
pub use dns::{DnsCounters, DnsStatus, LearnedAddress};

/// `healthy` or not, as GetHealth reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 2] = [HealthStatus::Ok, HealthStatus::Degraded];

    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
        }
    }
}

wire_literal_from_all!(HealthStatus);

fn ser_hooks<S: Serializer>(v: &[Hook], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|h| h.as_str()))
}

fn ser_verdicts<S: Serializer>(v: &[VerdictCount], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        hook: &'static str,
        reason_code: &'static str,
        count: u64,
    }
    s.collect_seq(v.iter().map(|c| Wire {
        hook: c.hook.as_str(),
        reason_code: c.reason.as_str(),
        count: c.count,
    }))
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
    /// How long the kernel waits without a heartbeat before it gives the degraded verdicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_grace_ms: Option<u64>,
    /// The bypass layers in force (docs/threat-model.md), in [`Layer::ALL`] order, no duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_layers: Option<Vec<Layer>>,
    /// The agent's version (its package version, e.g. `0.1.0`): a non-empty string of at most
    /// [`MAX_VERSION_BYTES`] printable ASCII characters. Absent from agents older than the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Longest `version` GetHealth carries.
pub const MAX_VERSION_BYTES: usize = 64;

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
            active_layers: None,
            version: None,
        }
    }
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
    /// Every bypass layer with its state, in [`Layer::ALL`] order.
    pub layers: Vec<LayerStatus>,
    /// The layers of `layers` whose state is `active`, in the same order.
    pub active_layers: Vec<Layer>,
    /// What the bypass layers refused, dropped and judged.
    pub layer_counters: LayerCounters,
    /// The kernel's exact verdict counts, by (hook, reason code): each pair at most once, each count at least 1.
    #[serde(serialize_with = "ser_verdicts")]
    pub verdicts: Vec<VerdictCount>,
    /// Addresses the DNS proxy's answers taught that have not expired (SPEC 4b); absent from agents older than
    /// the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_addresses: Option<u64>,
}

/// GetPolicySnapshot data: the active generation and, when the agent knows it, the snapshot it was built from.
/// `snapshot` is absent when no policy is loaded (generation 0) and when the agent did not apply the active
/// generation itself: a pinned state it adopted from a previous agent, or a policy another loader wrote into the
/// same pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySnapshotData {
    pub generation: u64,
    pub snapshot: Option<PolicySnapshot>,
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
    GetPolicySnapshot(PolicySnapshotData),
    ReplacePolicySnapshot(PolicySummary),
    /// What a replacement would report; `generation` is the active one (nothing was applied).
    ValidatePolicySnapshot(PolicySummary),
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
    GetDnsStatus(DnsStatus),
}

impl ResponseData {
    pub fn command(&self) -> Command {
        match self {
            ResponseData::GetHealth(_) => Command::GetHealth,
            ResponseData::GetStatus(_) => Command::GetStatus,
            ResponseData::GetPolicySummary(_) => Command::GetPolicySummary,
            ResponseData::GetPolicySnapshot(_) => Command::GetPolicySnapshot,
            ResponseData::ReplacePolicySnapshot(_) => Command::ReplacePolicySnapshot,
            ResponseData::ValidatePolicySnapshot(_) => Command::ValidatePolicySnapshot,
            ResponseData::UpsertManagedCgroup(_) => Command::UpsertManagedCgroup,
            ResponseData::DeleteManagedCgroup(_) => Command::DeleteManagedCgroup,
            ResponseData::SetGlobalMode(_) => Command::SetGlobalMode,
            ResponseData::SetCgroupMode(_) => Command::SetCgroupMode,
            ResponseData::Shutdown => Command::Shutdown,
            ResponseData::SubscribeEvents => Command::SubscribeEvents,
            ResponseData::GetDnsStatus(_) => Command::GetDnsStatus,
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
    Snapshot(SnapshotWire),
    Dns(&'a DnsStatus),
}

/// GetPolicySnapshot data on the wire: `snapshot` in the policy file's canonical form.
#[derive(Serialize)]
struct SnapshotWire {
    generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<Value>,
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
// One is built per request and written out at once; boxing the success data would change the public shape
// every caller matches on for no measurable gain (the Status data crossed clippy's size threshold with
// `learnedAddresses`).
#[allow(clippy::large_enum_variant)]
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
                    ResponseData::GetPolicySummary(p)
                    | ResponseData::ReplacePolicySnapshot(p)
                    | ResponseData::ValidatePolicySnapshot(p) => Some(DataRef::Summary(p)),
                    ResponseData::UpsertManagedCgroup(c)
                    | ResponseData::DeleteManagedCgroup(c)
                    | ResponseData::SetCgroupMode(c) => Some(DataRef::Cgroup(c)),
                    ResponseData::SetGlobalMode(g) => Some(DataRef::Global(g)),
                    ResponseData::GetPolicySnapshot(p) => Some(DataRef::Snapshot(SnapshotWire {
                        generation: p.generation,
                        snapshot: p.snapshot.as_ref().map(PolicySnapshot::to_json_value),
                    })),
                    ResponseData::GetDnsStatus(d) => Some(DataRef::Dns(d)),
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

/// Checks one command's success data (`None`: the key was absent). Issue paths start at the data's root.
pub fn parse_command_data(
    command: Command,
    data: Option<&Value>,
) -> Result<ResponseData, ValidationError> {
    let mut issues = Issues::new();
    let parsed = read_data(command, data, &[], &mut issues);
    issues.finish(parsed)
}

impl ResponseData {
    /// The data's JSON form, as a success response carries it (`None` for commands without data).
    pub fn to_json_value(&self) -> Option<Value> {
        let line = ControlResponse::Success {
            data: self.clone(),
            id: None,
        }
        .to_line();
        let mut response: Value = serde_json::from_str(&line).ok()?;
        response.as_object_mut()?.remove("data")
    }
}

/// Parses one response line (what a client reads), with or without its trailing `\n`.
pub fn parse_response_line(line: &[u8]) -> Result<ControlResponse, ValidationError> {
    let v = super::read_line(line, "response").map_err(ValidationError::single)?;
    ControlResponse::from_json_value(&v)
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

pub(super) fn read_data(
    command: Command,
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<ResponseData> {
    match command {
        Command::Shutdown => absent_or_null(command, "responds without data", v, path, issues)
            .then_some(ResponseData::Shutdown),
        Command::SubscribeEvents => {
            absent_or_null(command, "responds without data", v, path, issues)
                .then_some(ResponseData::SubscribeEvents)
        }
        Command::GetHealth => read_health(v, path, issues).map(ResponseData::GetHealth),
        Command::GetStatus => read_status(v, path, issues).map(ResponseData::GetStatus),
        Command::GetPolicySummary => {
            read_summary(v, path, issues).map(ResponseData::GetPolicySummary)
        }
        Command::GetPolicySnapshot => {
            read_snapshot_data(v, path, issues).map(ResponseData::GetPolicySnapshot)
        }
        Command::ValidatePolicySnapshot => {
            read_summary(v, path, issues).map(ResponseData::ValidatePolicySnapshot)
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
        Command::GetDnsStatus => {
            dns::read_dns_status(v, path, issues).map(ResponseData::GetDnsStatus)
        }
        Command::SetGlobalMode => {
            let obj = object(v, path, &["globalMode"], issues)?;
            obj.literal::<Mode>("globalMode", issues)
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
            "activeLayers",
            "version",
        ],
        issues,
    )?;
    let status = obj.literal::<HealthStatus>("status", issues);
    let version = match obj.opt_str("version", issues) {
        Some(Some(v))
            if v.is_empty()
                || v.len() > MAX_VERSION_BYTES
                || !v.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            issues.push(
                obj.path_of("version"),
                IssueCode::InvalidFormat,
                format!(
                    "expected a version of 1-{MAX_VERSION_BYTES} printable ASCII characters without spaces"
                ),
            );
            None
        }
        Some(v) => Some(v.map(str::to_owned)),
        None => None,
    };
    let reasons = obj
        .array("degradedReasons", issues)
        .and_then(|items| read_strings(items, &obj.path_of("degradedReasons"), issues));
    let degraded_since = read_timestamp(&obj, "degradedSince", issues);
    let started_at = read_timestamp(&obj, "startedAt", issues);
    let adopted = match obj.get("adopted") {
        None => Some(None),
        Some(_) => obj.bool("adopted", issues).map(Some),
    };
    let adopted_age = obj.opt_int("adoptedHeartbeatAgeMs", 0, MAX_SAFE_INTEGER, issues);
    let age = obj.opt_int("heartbeatAgeMs", 0, MAX_SAFE_INTEGER, issues);
    let grace = obj.opt_int("heartbeatGraceMs", 0, MAX_SAFE_INTEGER, issues);
    let layers = match obj.get("activeLayers") {
        None => Some(None),
        v => read_layer_names(v, &obj.path_of("activeLayers"), issues).map(Some),
    };
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
        active_layers: layers?,
        version: version?,
    })
}

/// An array of `T` whose items are each read by `item`; two items with the same `key` (a wire name) are an
/// issue at the second one's index, naming `what` it is.
fn read_unique<T>(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
    what: &str,
    item: impl Fn(&Value, &[PathSegment], &mut Issues) -> Option<T>,
    key: impl Fn(&T) -> &'static str,
) -> Option<Vec<T>> {
    let items = json_reader::array(v, path, issues)?;
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, value) in items.iter().enumerate() {
        let p = join(path, i);
        match item(value, &p, issues) {
            Some(x) if out.iter().any(|y| key(y) == key(&x)) => {
                issues.push(
                    p,
                    IssueCode::Custom,
                    format!("duplicate {what} `{}`", key(&x)),
                );
                ok = false;
            }
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `activeLayers`: layer names, no duplicates.
fn read_layer_names(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<Vec<Layer>> {
    read_unique(
        v,
        path,
        issues,
        "layer",
        |v, p, issues| json_reader::literal::<Layer>(Some(v), p, issues),
        |l| l.as_str(),
    )
}

/// One `{layer, state, reason?}`: `reason`, a non-empty string, exactly when the state is `unavailable`.
fn read_layer_status(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<LayerStatus> {
    let obj = object(v, path, &["layer", "state", "reason"], issues)?;
    let layer = obj.literal::<Layer>("layer", issues);
    let state = obj.literal::<LayerStateName>("state", issues);
    let reason = obj.opt_non_empty_str("reason", issues);
    let (layer, state, reason) = (layer?, state?, reason?);
    let state = match (state, reason) {
        (LayerStateName::Active, None) => LayerState::Active,
        (LayerStateName::Disabled, None) => LayerState::Disabled,
        (LayerStateName::Unavailable, Some(r)) => LayerState::Unavailable(r.to_owned()),
        (LayerStateName::Unavailable, None) => {
            issues.push(
                obj.path_of("reason"),
                IssueCode::InvalidType,
                "an `unavailable` layer says why in `reason`",
            );
            return None;
        }
        (_, Some(_)) => {
            issues.push(
                obj.path_of("reason"),
                IssueCode::Custom,
                "reason is only present for an `unavailable` layer",
            );
            return None;
        }
    };
    Some(LayerStatus { layer, state })
}

fn read_layer_counters(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<LayerCounters> {
    let obj = object(v, path, &LayerCounters::KEYS, issues)?;
    let values = LayerCounters::KEYS.map(|k| counter(&obj, k, issues));
    let mut out = [0u64; LayerCounters::KEYS.len()];
    for (slot, v) in out.iter_mut().zip(values) {
        *slot = v?;
    }
    Some(LayerCounters::from_values(out))
}

/// `verdicts`: `{hook, reasonCode, count}` objects, each (hook, reason code) pair at most once, each count at least 1
/// (a status lists only the pairs that counted).
fn read_verdicts(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<Vec<VerdictCount>> {
    let items = json_reader::array(v, path, issues)?;
    let mut out: Vec<VerdictCount> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, value) in items.iter().enumerate() {
        let p = join(path, i);
        let Some(obj) = object(Some(value), &p, &["hook", "reasonCode", "count"], issues) else {
            ok = false;
            continue;
        };
        let hook = obj.literal::<Hook>("hook", issues);
        let reason = obj.literal::<DataplaneReasonCode>("reasonCode", issues);
        let count = obj.int("count", 1, MAX_SAFE_INTEGER, issues);
        let (Some(hook), Some(reason), Some(count)) = (hook, reason, count) else {
            ok = false;
            continue;
        };
        if out.iter().any(|c| c.hook == hook && c.reason == reason) {
            issues.push(
                p,
                IssueCode::Custom,
                format!(
                    "duplicate verdict count `{} {}`",
                    hook.as_str(),
                    reason.as_str()
                ),
            );
            ok = false;
            continue;
        }
        out.push(VerdictCount {
            hook,
            reason,
            count,
        });
    }
    ok.then_some(out)
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
    let mode = obj.opt_literal::<Mode>("mode", issues);
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
    // SPEC 4b's counts: optional on read (0 when absent), so an agent from before them still reads.
    let fqdn_keys = ["fqdnRules", "brokerNames"];
    let all: Vec<&str> = keys.iter().chain(&fqdn_keys).copied().collect();
    let obj = object(v, path, &all, issues)?;
    let [g, v4, v6, b, d] = keys.map(|k| counter(&obj, k, issues));
    let [fqdn, names] = fqdn_keys.map(|k| {
        obj.opt_int(k, 0, MAX_SAFE_INTEGER, issues)
            .map(Option::unwrap_or_default)
    });
    let s = PolicySummary {
        generation: g?,
        ipv4_rules: v4?,
        ipv6_rules: v6?,
        broker_endpoints: b?,
        dns_endpoints: d?,
        fqdn_rules: fqdn?,
        broker_names: names?,
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

/// `{generation, snapshot?}`: a snapshot only with a generation (0 means no policy is loaded), checked by the
/// policy's one strict parser.
fn read_snapshot_data(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<PolicySnapshotData> {
    let obj = object(v, path, &["generation", "snapshot"], issues)?;
    let generation = counter(&obj, "generation", issues);
    let snapshot = match obj.get("snapshot") {
        None => Some(None),
        Some(s) => match parse_snapshot(Some(s), &obj.path_of("snapshot")) {
            Ok(s) => Some(Some(s)),
            Err(e) => {
                issues.extend(e.issues);
                None
            }
        },
    };
    let (generation, snapshot) = (generation?, snapshot?);
    if generation == 0 && snapshot.is_some() {
        issues.push(
            obj.path_of("snapshot"),
            IssueCode::Custom,
            "generation 0 means no policy is loaded: there is no snapshot",
        );
        return None;
    }
    Some(PolicySnapshotData {
        generation,
        snapshot,
    })
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
            "layers",
            "activeLayers",
            "layerCounters",
            "verdicts",
            "learnedAddresses",
        ],
        issues,
    )?;
    let learned = obj.opt_int("learnedAddresses", 0, MAX_SAFE_INTEGER, issues);
    let hooks = read_unique(
        obj.get("attachedHooks"),
        &obj.path_of("attachedHooks"),
        issues,
        "hook",
        |v, p, issues| json_reader::literal::<Hook>(Some(v), p, issues),
        |h| h.as_str(),
    );
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
    let global_mode = obj.literal::<Mode>("globalMode", issues);
    let fail_mode = obj.literal::<FailMode>("failMode", issues);
    let generation = counter(&obj, "generation", issues);
    let ipv4 = counter(&obj, "ipv4Rules", issues);
    let ipv6 = counter(&obj, "ipv6Rules", issues);
    let emitted = counter(&obj, "eventsEmitted", issues);
    let dk = counter(&obj, "droppedInKernel", issues);
    let dq = counter(&obj, "droppedInQueue", issues);
    let degraded = obj.bool("degraded", issues);
    let layers = read_unique(
        obj.get("layers"),
        &obj.path_of("layers"),
        issues,
        "layer",
        |v, p, issues| read_layer_status(Some(v), p, issues),
        |l| l.layer.as_str(),
    );
    let active = read_layer_names(
        obj.get("activeLayers"),
        &obj.path_of("activeLayers"),
        issues,
    );
    let layer_counters = read_layer_counters(
        obj.get("layerCounters"),
        &obj.path_of("layerCounters"),
        issues,
    );
    let verdicts = read_verdicts(obj.get("verdicts"), &obj.path_of("verdicts"), issues);
    let (layers, active) = (layers?, active?);
    if active != active_layers(&layers) {
        issues.push(
            obj.path_of("activeLayers"),
            IssueCode::Custom,
            "activeLayers lists exactly the layers whose state is `active`, in the order of `layers`",
        );
        return None;
    }
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
        layers,
        active_layers: active,
        layer_counters: layer_counters?,
        verdicts: verdicts?,
        learned_addresses: learned?,
    })
}

/// Non-empty strings, each at its own path below `path`; `None` when any is not one.
fn read_strings(items: &[Value], path: &[PathSegment], issues: &mut Issues) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = join(path, i);
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
}

#[cfg(test)]
mod tests;
