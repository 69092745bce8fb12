//! Strict readers for the plain objects `Interceptor` methods take (`Interceptor.load(options)`,
//! `upsertManagedCgroup({path | id, ...})`, modes). They turn untyped JavaScript input into the dataplane's
//! typed arguments and report every problem as a zod-style issue, like every other parser of this package.
//! The JavaScript values arrive as `serde_json::Value` (napi's conversion); `undefined` and `null` both mean
//! "not given", the usual JavaScript options convention.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use interceptor_ebpf_core::contract::validation::{
    Field, Issue, IssueCode, PathSegment, ValidationError,
};
use interceptor_ebpf_core::dataplane::{CgroupRef, DataplaneOptions, FailMode, Layer, Mode};

/// Keys `Interceptor.load()` accepts, in documentation order.
pub const LOAD_OPTION_KEYS: [&str; 9] = [
    "cgroupRoot",
    "pinDir",
    "failMode",
    "heartbeatGraceMs",
    "ringBufferBytes",
    "globalMode",
    "eventQueueCapacity",
    "heartbeatIntervalMs",
    "disableLayers",
];

/// A day: a grace or beat interval longer than that is a typo, not a configuration.
const MAX_INTERVAL_MS: f64 = 86_400_000.0;
/// The kernel caps a BPF ring buffer well below 4 GiB; 1 GiB is already far more than any queue needs.
const MAX_RING_BUFFER_BYTES: f64 = 1_073_741_824.0;
/// 16 Mi events of ~300 bytes is ~5 GiB of memory: the bound that keeps a typo from exhausting the host.
const MAX_EVENT_QUEUE: f64 = 16_777_216.0;

fn page_size() -> u64 {
    // SAFETY: getpagesize() has no preconditions and only reads a constant of the C runtime.
    let p = unsafe { getpagesize() };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

extern "C" {
    // glibc and musl both export it; the `libc` crate is not a dependency of this crate's N-API layer.
    fn getpagesize() -> std::ffi::c_int;
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Field<'a> {
    match Field::from_json(obj.get(key)) {
        Field::Null => Field::Missing,
        f => f,
    }
}

fn as_object<'a>(
    input: Option<&'a Value>,
    what: &str,
    issues: &mut Vec<Issue>,
) -> Option<&'a Map<String, Value>> {
    match input {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            issues.push(Issue::new(
                vec![],
                IssueCode::InvalidType,
                format!(
                    "expected {what} to be an object, received {}",
                    Field::from_json(Some(other)).type_name()
                ),
            ));
            None
        }
    }
}

fn unknown_keys(obj: &Map<String, Value>, allowed: &[&str], issues: &mut Vec<Issue>) {
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if !unknown.is_empty() {
        issues.push(Issue::new(
            vec![],
            IssueCode::UnrecognizedKeys,
            format!(
                "unrecognized key(s) {}; accepted keys are {}",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                allowed.join(", ")
            ),
        ));
    }
}

fn absolute_path(key: &str, f: Field<'_>, issues: &mut Vec<Issue>) -> Option<PathBuf> {
    match f {
        Field::Missing => None,
        Field::Str(s) if s.starts_with('/') && !s.contains('\0') => Some(PathBuf::from(s)),
        Field::Str(s) => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidFormat,
                format!("expected an absolute path, received `{s}`"),
            ));
            None
        }
        other => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidType,
                format!("expected string, received {}", other.type_name()),
            ));
            None
        }
    }
}

/// An integer within `[min, max]`.
fn integer(key: &str, f: Field<'_>, min: f64, max: f64, issues: &mut Vec<Issue>) -> Option<u64> {
    match f {
        Field::Missing => None,
        Field::Number(n) if n.fract() != 0.0 || !n.is_finite() => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidType,
                format!("expected an integer, received {n}"),
            ));
            None
        }
        Field::Number(n) if n < min => {
            issues.push(Issue::at(
                key,
                IssueCode::TooSmall,
                format!("expected at least {min}, received {n}"),
            ));
            None
        }
        Field::Number(n) if n > max => {
            issues.push(Issue::at(
                key,
                IssueCode::TooBig,
                format!("expected at most {max}, received {n}"),
            ));
            None
        }
        Field::Number(n) => Some(n as u64),
        other => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidType,
                format!("expected number, received {}", other.type_name()),
            ));
            None
        }
    }
}

fn literal<T>(
    key: &str,
    f: Field<'_>,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    match f {
        Field::Missing => None,
        Field::Str(s) => {
            let v = parse(s);
            if v.is_none() {
                issues.push(Issue::at(
                    key,
                    IssueCode::InvalidValue,
                    format!("expected {allowed}, received `{s}`"),
                ));
            }
            v
        }
        other => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidType,
                format!("expected {allowed}, received {}", other.type_name()),
            ));
            None
        }
    }
}

/// `'enforce' | 'observe'` as a single argument (`setGlobalMode(mode)`).
pub fn parse_mode(input: &Value) -> Result<Mode, ValidationError> {
    let mut issues = Vec::new();
    match literal(
        "mode",
        Field::from_json(Some(input)),
        Mode::from_wire,
        "`enforce` or `observe`",
        &mut issues,
    ) {
        Some(m) => Ok(m),
        None => Err(ValidationError::new(root_issues(issues))),
    }
}

/// `'closed' | 'open'` as a single argument (`setFailMode(mode)`).
pub fn parse_fail_mode(input: &Value) -> Result<FailMode, ValidationError> {
    let mut issues = Vec::new();
    match literal(
        "failMode",
        Field::from_json(Some(input)),
        FailMode::from_wire,
        "`closed` or `open`",
        &mut issues,
    ) {
        Some(m) => Ok(m),
        None => Err(ValidationError::new(root_issues(issues))),
    }
}

/// A bare argument has no key: its issues sit at the root path.
fn root_issues(mut issues: Vec<Issue>) -> Vec<Issue> {
    if issues.is_empty() {
        issues.push(Issue::new(
            vec![],
            IssueCode::InvalidType,
            "a value is required",
        ));
    }
    for i in &mut issues {
        i.path.clear();
    }
    issues
}

/// `Interceptor.load(options?)`: every key optional, unknown keys rejected, defaults from
/// [`DataplaneOptions::default`].
pub fn parse_load_options(input: Option<&Value>) -> Result<DataplaneOptions, ValidationError> {
    let mut issues = Vec::new();
    let mut opts = DataplaneOptions::default();
    let Some(obj) = as_object(input, "options", &mut issues) else {
        return if issues.is_empty() {
            Ok(opts)
        } else {
            Err(ValidationError::new(issues))
        };
    };
    unknown_keys(obj, &LOAD_OPTION_KEYS, &mut issues);
    if let Some(p) = absolute_path("cgroupRoot", field(obj, "cgroupRoot"), &mut issues) {
        opts.cgroup_root = Some(p);
    }
    if let Some(p) = absolute_path("pinDir", field(obj, "pinDir"), &mut issues) {
        opts.pin_dir = Some(p);
    }
    if let Some(m) = literal(
        "failMode",
        field(obj, "failMode"),
        FailMode::from_wire,
        "`closed` or `open`",
        &mut issues,
    ) {
        opts.fail_mode = m;
    }
    if let Some(ms) = integer(
        "heartbeatGraceMs",
        field(obj, "heartbeatGraceMs"),
        1.0,
        MAX_INTERVAL_MS,
        &mut issues,
    ) {
        opts.heartbeat_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = integer(
        "heartbeatIntervalMs",
        field(obj, "heartbeatIntervalMs"),
        1.0,
        MAX_INTERVAL_MS,
        &mut issues,
    ) {
        opts.heartbeat_interval = Duration::from_millis(ms);
    }
    let page = page_size();
    if let Some(bytes) = integer(
        "ringBufferBytes",
        field(obj, "ringBufferBytes"),
        page as f64,
        MAX_RING_BUFFER_BYTES,
        &mut issues,
    ) {
        if bytes.is_power_of_two() && bytes % page == 0 {
            opts.ring_buffer_bytes = bytes as u32;
        } else {
            issues.push(Issue::at(
                "ringBufferBytes",
                IssueCode::InvalidValue,
                format!(
                    "expected a power of two that is a multiple of the page size ({page}), received {bytes}"
                ),
            ));
        }
    }
    if let Some(m) = literal(
        "globalMode",
        field(obj, "globalMode"),
        Mode::from_wire,
        "`enforce` or `observe`",
        &mut issues,
    ) {
        opts.global_mode = m;
    }
    if let Some(n) = integer(
        "eventQueueCapacity",
        field(obj, "eventQueueCapacity"),
        1.0,
        MAX_EVENT_QUEUE,
        &mut issues,
    ) {
        opts.event_queue_capacity = n as usize;
    }
    if let Some(layers) = layer_list("disableLayers", obj.get("disableLayers"), &mut issues) {
        opts.disable_layers = layers;
    }
    if issues.is_empty() {
        Ok(opts)
    } else {
        Err(ValidationError::new(issues))
    }
}

/// An array of bypass layer names (`Layer::from_wire`); duplicates are harmless.
fn layer_list(key: &str, value: Option<&Value>, issues: &mut Vec<Issue>) -> Option<Vec<Layer>> {
    let items = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(other) => {
            issues.push(Issue::at(
                key,
                IssueCode::InvalidType,
                format!(
                    "expected an array of layer names, received {}",
                    Field::from_json(Some(other)).type_name()
                ),
            ));
            return None;
        }
    };
    let expected = Layer::ALL.map(Layer::as_str).join(", ");
    let mut out = Vec::new();
    let before = issues.len();
    for (i, item) in items.iter().enumerate() {
        let path = vec![PathSegment::from(key), PathSegment::Index(i)];
        match item {
            Value::String(s) => match Layer::from_wire(s) {
                Some(l) => {
                    if !out.contains(&l) {
                        out.push(l);
                    }
                }
                None => issues.push(Issue::new(
                    path,
                    IssueCode::InvalidValue,
                    format!("expected one of {expected}, received `{s}`"),
                )),
            },
            other => issues.push(Issue::new(
                path,
                IssueCode::InvalidType,
                format!(
                    "expected string, received {}",
                    Field::from_json(Some(other)).type_name()
                ),
            )),
        }
    }
    (issues.len() == before).then_some(out)
}

/// `close({detach?})`: `detach` defaults to `false` (programs, links and maps stay pinned).
pub fn parse_close_options(input: Option<&Value>) -> Result<bool, ValidationError> {
    let mut issues = Vec::new();
    let Some(obj) = as_object(input, "options", &mut issues) else {
        return if issues.is_empty() {
            Ok(false)
        } else {
            Err(ValidationError::new(issues))
        };
    };
    unknown_keys(obj, &["detach"], &mut issues);
    let detach = match field(obj, "detach") {
        Field::Missing => false,
        Field::Bool(b) => b,
        other => {
            issues.push(Issue::at(
                "detach",
                IssueCode::InvalidType,
                format!("expected boolean, received {}", other.type_name()),
            ));
            false
        }
    };
    if issues.is_empty() {
        Ok(detach)
    } else {
        Err(ValidationError::new(issues))
    }
}

/// What a cgroup-targeting method was given: the cgroup and the optional keys some methods accept.
pub struct CgroupTarget {
    pub target: CgroupRef,
    pub mode: Option<Mode>,
    pub workload_id: Option<String>,
}

/// Which optional keys besides `path`/`id` a method accepts.
#[derive(Clone, Copy)]
pub enum TargetKind {
    /// `upsertManagedCgroup`: `mode?`, `workloadId?`.
    Upsert,
    /// `deleteManagedCgroup`: nothing else.
    Delete,
    /// `setCgroupMode`: `mode` required.
    SetMode,
}

/// `{path} | {id}` plus the keys of `kind`. `id` is the cgroup id as events report it: a string of decimal
/// digits (exact for every u64) or a safe integer.
pub fn parse_cgroup_target(
    input: &Value,
    kind: TargetKind,
) -> Result<CgroupTarget, ValidationError> {
    let mut issues = Vec::new();
    let allowed: &[&str] = match kind {
        TargetKind::Upsert => &["path", "id", "mode", "workloadId"],
        TargetKind::Delete => &["path", "id"],
        TargetKind::SetMode => &["path", "id", "mode"],
    };
    let Some(obj) = as_object(Some(input), "the cgroup target", &mut issues) else {
        if issues.is_empty() {
            issues.push(Issue::new(
                vec![],
                IssueCode::InvalidType,
                "expected an object with `path` or `id`, received null",
            ));
        }
        return Err(ValidationError::new(issues));
    };
    unknown_keys(obj, allowed, &mut issues);
    let path = match field(obj, "path") {
        Field::Missing => None,
        Field::Str(s) if !s.is_empty() && !s.contains('\0') => Some(PathBuf::from(s)),
        Field::Str(_) => {
            issues.push(Issue::at(
                "path",
                IssueCode::TooSmall,
                "expected a non-empty path without NUL bytes",
            ));
            None
        }
        other => {
            issues.push(Issue::at(
                "path",
                IssueCode::InvalidType,
                format!("expected string, received {}", other.type_name()),
            ));
            None
        }
    };
    let id = match field(obj, "id") {
        Field::Missing => None,
        Field::Str(s) => match s.parse::<u64>() {
            Ok(v) if s.bytes().all(|b| b.is_ascii_digit()) => Some(v),
            _ => {
                issues.push(Issue::at(
                    "id",
                    IssueCode::InvalidFormat,
                    format!("expected a cgroup id as decimal digits (u64), received `{s}`"),
                ));
                None
            }
        },
        f @ Field::Number(_) => integer("id", f, 1.0, 9_007_199_254_740_991.0, &mut issues),
        other => {
            issues.push(Issue::at(
                "id",
                IssueCode::InvalidType,
                format!(
                    "expected a decimal string or an integer, received {}",
                    other.type_name()
                ),
            ));
            None
        }
    };
    let has_path = !matches!(field(obj, "path"), Field::Missing);
    let has_id = !matches!(field(obj, "id"), Field::Missing);
    if has_path && has_id {
        issues.push(Issue::new(
            vec![],
            IssueCode::Custom,
            "give either `path` or `id`, not both",
        ));
    } else if !has_path && !has_id {
        issues.push(Issue::new(
            vec![],
            IssueCode::InvalidType,
            "one of `path` or `id` is required",
        ));
    }
    let mode = if allowed.contains(&"mode") {
        let f = field(obj, "mode");
        if matches!(kind, TargetKind::SetMode) && matches!(f, Field::Missing) {
            issues.push(Issue::at(
                "mode",
                IssueCode::InvalidType,
                "expected `enforce` or `observe`, received undefined",
            ));
        }
        literal(
            "mode",
            f,
            Mode::from_wire,
            "`enforce` or `observe`",
            &mut issues,
        )
    } else {
        None
    };
    let workload_id = if allowed.contains(&"workloadId") {
        match field(obj, "workloadId") {
            Field::Missing => None,
            Field::Str(s) if !s.is_empty() => Some(s.to_owned()),
            Field::Str(_) => {
                issues.push(Issue::at(
                    "workloadId",
                    IssueCode::TooSmall,
                    "expected a non-empty string",
                ));
                None
            }
            other => {
                issues.push(Issue::at(
                    "workloadId",
                    IssueCode::InvalidType,
                    format!("expected string, received {}", other.type_name()),
                ));
                None
            }
        }
    } else {
        None
    };
    if !issues.is_empty() {
        return Err(ValidationError::new(issues));
    }
    let target = match (path, id) {
        (Some(p), None) => CgroupRef::Path(p),
        (None, Some(i)) => CgroupRef::Id(i),
        // Both or neither were reported above; an unparsable value was reported where it was read.
        _ => {
            return Err(ValidationError::new(vec![Issue::new(
                vec![],
                IssueCode::Custom,
                "give exactly one of `path` or `id`",
            )]))
        }
    };
    Ok(CgroupTarget {
        target,
        mode,
        workload_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(e: &ValidationError) -> Vec<(String, &'static str)> {
        e.issues
            .iter()
            .map(|i| (i.path_text(), i.code.as_str()))
            .collect()
    }

    #[test]
    fn load_options_default_when_absent() {
        let o = match parse_load_options(None) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.fail_mode, FailMode::Closed);
        assert_eq!(o.global_mode, Mode::Enforce);
        assert!(parse_load_options(Some(&json!({}))).is_ok());
    }

    #[test]
    fn load_options_read_every_key() {
        let o = match parse_load_options(Some(&json!({
            "cgroupRoot": "/sys/fs/cgroup/x", "pinDir": "/sys/fs/bpf/y", "failMode": "open",
            "heartbeatGraceMs": 250, "ringBufferBytes": 1 << 20, "globalMode": "observe",
            "eventQueueCapacity": 1024, "heartbeatIntervalMs": 50,
            "disableLayers": ["socket_create_lsm", "sock_create", "socket_create_lsm"]
        }))) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.cgroup_root, Some(PathBuf::from("/sys/fs/cgroup/x")));
        assert_eq!(o.pin_dir, Some(PathBuf::from("/sys/fs/bpf/y")));
        assert_eq!(o.fail_mode, FailMode::Open);
        assert_eq!(o.heartbeat_grace, Duration::from_millis(250));
        assert_eq!(o.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(o.ring_buffer_bytes, 1 << 20);
        assert_eq!(o.global_mode, Mode::Observe);
        assert_eq!(o.event_queue_capacity, 1024);
        assert_eq!(
            o.disable_layers,
            vec![Layer::SocketCreateLsm, Layer::SockCreate]
        );
    }

    #[test]
    fn load_options_list_every_issue() {
        let e = match parse_load_options(Some(&json!({
            "cgroupRoot": "relative", "failMode": "ajar", "heartbeatGraceMs": 1.5,
            "ringBufferBytes": 12288, "globalMode": 3, "bogus": true,
            "disableLayers": ["sock_create", "firewall", 7]
        }))) {
            Ok(_) => panic!("accepted bad options"),
            Err(e) => e,
        };
        assert_eq!(
            codes(&e),
            vec![
                (String::new(), "unrecognized_keys"),
                ("cgroupRoot".into(), "invalid_format"),
                ("failMode".into(), "invalid_value"),
                ("heartbeatGraceMs".into(), "invalid_type"),
                ("ringBufferBytes".into(), "invalid_value"),
                ("globalMode".into(), "invalid_type"),
                ("disableLayers[1]".into(), "invalid_value"),
                ("disableLayers[2]".into(), "invalid_type"),
            ]
        );
        assert!(parse_load_options(Some(&json!({"disableLayers": "sock_create"}))).is_err());
        assert!(parse_load_options(Some(&json!("x"))).is_err());
        assert!(parse_load_options(Some(&json!({"heartbeatGraceMs": 0}))).is_err());
    }

    #[test]
    fn cgroup_target_needs_exactly_one_of_path_and_id() {
        let ok = |v: Value, k| parse_cgroup_target(&v, k).map(|t| t.target);
        assert!(
            matches!(ok(json!({"path": "w/a"}), TargetKind::Delete), Ok(CgroupRef::Path(p)) if p.as_os_str() == "w/a")
        );
        assert!(matches!(
            ok(json!({"id": "18446744073709551615"}), TargetKind::Delete),
            Ok(CgroupRef::Id(u64::MAX))
        ));
        assert!(matches!(
            ok(json!({"id": 42}), TargetKind::Delete),
            Ok(CgroupRef::Id(42))
        ));
        assert!(ok(json!({"path": "a", "id": 1}), TargetKind::Delete).is_err());
        assert!(ok(json!({}), TargetKind::Delete).is_err());
        assert!(ok(json!({"id": "-1"}), TargetKind::Delete).is_err());
        assert!(ok(json!({"id": "+1"}), TargetKind::Delete).is_err());
        assert!(ok(json!({"path": "a", "mode": "enforce"}), TargetKind::Delete).is_err());
        assert!(ok(json!({"path": "a"}), TargetKind::SetMode).is_err());
        let t = match parse_cgroup_target(
            &json!({"path": "a", "mode": "observe", "workloadId": "w1"}),
            TargetKind::Upsert,
        ) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.mode, Some(Mode::Observe));
        assert_eq!(t.workload_id.as_deref(), Some("w1"));
    }

    #[test]
    fn close_options() {
        assert!(matches!(parse_close_options(None), Ok(false)));
        assert!(matches!(
            parse_close_options(Some(&json!({"detach": true}))),
            Ok(true)
        ));
        assert!(parse_close_options(Some(&json!({"detach": "yes"}))).is_err());
        assert!(parse_close_options(Some(&json!({"force": true}))).is_err());
    }

    #[test]
    fn bare_modes() {
        assert!(matches!(parse_mode(&json!("observe")), Ok(Mode::Observe)));
        assert!(parse_mode(&json!("OBSERVE")).is_err());
        assert!(matches!(
            parse_fail_mode(&json!("open")),
            Ok(FailMode::Open)
        ));
        assert!(parse_fail_mode(&json!(null)).is_err());
    }
}
