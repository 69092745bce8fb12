//! DataplanePacketEvent (SPEC section 3): the record the dataplane emits for every judged connect/sendmsg.
//!
//! Every rule lives in [`validate_fields`], fed by [`Field`]s, so the three ways an event arrives share it:
//! a `serde_json::Value` ([`parse_value`]), JSON bytes ([`crate::contract::event_json`]) and JavaScript values
//! read by the N-API fast path (`src/node/events.rs`). The rules, decided for this package:
//!
//! - Strict object: keys outside [`EVENT_KEYS`] produce one `unrecognized_keys` issue at the root listing all
//!   of them. Every issue is collected, field issues in table order first, the unknown keys last.
//! - `code_namespace` is exactly `"dataplane_verdict"`. `reason_code` is a dataplane code; a control-plane code
//!   or an unknown string is rejected with a message saying which. `verdict` must equal the code's verdict.
//!   `would_block` is required, with the exact value, for the three OBSERVE codes and forbidden for all others
//!   (`custom` issues). These cross-field checks are skipped when `reason_code` itself is invalid, and a
//!   `verdict`/`would_block` of the wrong type gets a type issue instead of a cross-field one.
//! - `cgroup_id`: decimal digits only, no leading zero (except `"0"`), fits u64. `dst_ip`: canonical text, i.e.
//!   `text.parse::<IpAddr>()?.to_string() == text` (`010.0.0.1`, `::FFFF:1.2.3.4`, `0:0::1` are rejected).
//!   `dst_port` integer 0..=65535; `pid`, `uid` integers 0..=u32::MAX (the kernel's `pid_t`/`uid_t` range
//!   as reported by BPF helpers); `policy_generation` integer 0..=2^53-1 (exact in every JSON consumer).
//!   Numbers must be finite and integral (`1.0` is 1). `comm` at most 16 UTF-8 bytes. Optional strings
//!   (`message`, `comm`, `rule_id`, `workload_id`) may be empty; the log record drops empty ones.
//! - `observed_at`: RFC 3339 date-time, see [`crate::contract::timestamp`].
//! - Optional means "absent": `null` is a type error for every key.
//! - Strings must be well-formed Unicode. JSON text with a lone-surrogate escape (`"\ud800"`) is rejected as
//!   `invalid_json` (serde_json's behaviour; `JSON.parse` would accept it), and a JavaScript string holding a
//!   lone surrogate is rejected with `invalid_format`, so `parse(JSON.parse(text))` and `parseJson(text)`
//!   agree. Reason: the agent writes log records as UTF-8, which cannot carry a lone surrogate faithfully.
//!
//! Output (parse result and log record) has the keys in the order of [`EVENT_KEYS`], `would_block` kept when
//! false; the log record additionally drops empty optional strings.

use std::net::IpAddr;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::hook::{Hook, Protocol};
use super::reason_codes::{ControlAuthzCode, DataplaneReasonCode, Verdict, DATAPLANE_NAMESPACE};
use super::timestamp::{self, TimestampParts};
use super::validation::{Field, Issue, IssueCode, PathSegment, ValidationError};

/// Every key of a DataplanePacketEvent, in the SPEC's table order (the order of every output).
pub const EVENT_KEYS: [&str; KEY_COUNT] = [
    "code_namespace",
    "reason_code",
    "verdict",
    "would_block",
    "hook",
    "cgroup_id",
    "message",
    "protocol",
    "dst_ip",
    "dst_port",
    "pid",
    "uid",
    "comm",
    "rule_id",
    "policy_generation",
    "workload_id",
    "observed_at",
];

/// Number of keys a DataplanePacketEvent can have.
pub const KEY_COUNT: usize = 17;

/// Index of each key in [`EVENT_KEYS`] (and in the `fields` array given to [`validate_fields`]).
pub mod key {
    pub const CODE_NAMESPACE: usize = 0;
    pub const REASON_CODE: usize = 1;
    pub const VERDICT: usize = 2;
    pub const WOULD_BLOCK: usize = 3;
    pub const HOOK: usize = 4;
    pub const CGROUP_ID: usize = 5;
    pub const MESSAGE: usize = 6;
    pub const PROTOCOL: usize = 7;
    pub const DST_IP: usize = 8;
    pub const DST_PORT: usize = 9;
    pub const PID: usize = 10;
    pub const UID: usize = 11;
    pub const COMM: usize = 12;
    pub const RULE_ID: usize = 13;
    pub const POLICY_GENERATION: usize = 14;
    pub const WORKLOAD_ID: usize = 15;
    pub const OBSERVED_AT: usize = 16;
}

/// Maps a key to its index in [`EVENT_KEYS`]; `None` for keys the schema does not know.
pub fn key_index(k: &str) -> Option<usize> {
    // Dispatch on length first: this runs for every key of every record on the byte path.
    let (i, name) = match k.len() {
        3 => match k.as_bytes()[0] {
            b'p' => (key::PID, "pid"),
            _ => (key::UID, "uid"),
        },
        4 => match k.as_bytes()[0] {
            b'h' => (key::HOOK, "hook"),
            _ => (key::COMM, "comm"),
        },
        6 => (key::DST_IP, "dst_ip"),
        7 => match k.as_bytes()[0] {
            b'v' => (key::VERDICT, "verdict"),
            b'm' => (key::MESSAGE, "message"),
            _ => (key::RULE_ID, "rule_id"),
        },
        8 => match k.as_bytes()[0] {
            b'p' => (key::PROTOCOL, "protocol"),
            _ => (key::DST_PORT, "dst_port"),
        },
        9 => (key::CGROUP_ID, "cgroup_id"),
        11 => match k.as_bytes()[0] {
            b'r' => (key::REASON_CODE, "reason_code"),
            b'w' if k.as_bytes()[1] == b'o' && k.as_bytes()[2] == b'u' => {
                (key::WOULD_BLOCK, "would_block")
            }
            b'w' => (key::WORKLOAD_ID, "workload_id"),
            _ => (key::OBSERVED_AT, "observed_at"),
        },
        14 => (key::CODE_NAMESPACE, "code_namespace"),
        17 => (key::POLICY_GENERATION, "policy_generation"),
        _ => return None,
    };
    (k == name).then_some(i)
}

/// Largest `comm` in UTF-8 bytes (the kernel's `TASK_COMM_LEN`).
pub const COMM_MAX_BYTES: usize = 16;
/// Largest `policy_generation`: 2^53 - 1, the largest integer every JSON consumer (JavaScript) holds exactly.
pub const POLICY_GENERATION_MAX: u64 = (1 << 53) - 1;

/// A process name of at most [`COMM_MAX_BYTES`] UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comm(String);

impl Comm {
    /// `None` when `s` is longer than [`COMM_MAX_BYTES`] bytes.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (s.len() <= COMM_MAX_BYTES).then_some(Comm(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A policy generation number, at most [`POLICY_GENERATION_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyGeneration(u64);

impl PolicyGeneration {
    /// `None` above [`POLICY_GENERATION_MAX`].
    pub const fn new(v: u64) -> Option<Self> {
        if v <= POLICY_GENERATION_MAX {
            Some(PolicyGeneration(v))
        } else {
            None
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A validated RFC 3339 timestamp, kept verbatim (see [`crate::contract::timestamp`]).
pub type ObservedAt = timestamp::Timestamp;

/// A validated DataplanePacketEvent.
///
/// `verdict` and `would_block` are not stored: they are functions of `reason_code` ([`Self::verdict`],
/// [`Self::would_block`]), so an event that contradicts its code cannot be built. The remaining fields have
/// types that only hold valid values (`Comm`, `PolicyGeneration`, `ObservedAt`); the free-text strings may be
/// empty, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplanePacketEvent {
    pub reason_code: DataplaneReasonCode,
    pub hook: Option<Hook>,
    pub cgroup_id: Option<u64>,
    pub message: Option<String>,
    pub protocol: Option<Protocol>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub comm: Option<Comm>,
    pub rule_id: Option<String>,
    pub policy_generation: Option<PolicyGeneration>,
    pub workload_id: Option<String>,
    pub observed_at: Option<ObservedAt>,
}

impl DataplanePacketEvent {
    /// An event with only the required fields.
    pub fn new(reason_code: DataplaneReasonCode) -> Self {
        DataplanePacketEvent {
            reason_code,
            hook: None,
            cgroup_id: None,
            message: None,
            protocol: None,
            dst_ip: None,
            dst_port: None,
            pid: None,
            uid: None,
            comm: None,
            rule_id: None,
            policy_generation: None,
            workload_id: None,
            observed_at: None,
        }
    }

    pub const fn verdict(&self) -> Verdict {
        self.reason_code.verdict()
    }

    pub const fn would_block(&self) -> Option<bool> {
        self.reason_code.would_block()
    }

    /// The log record form (SPEC "Log records"): serializes in table order with empty optional strings dropped.
    pub fn log_record(&self) -> LogRecord<'_> {
        LogRecord(self)
    }

    /// The log record as one JSON text (no trailing newline), exactly what the agent writes per line.
    pub fn to_log_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_log_json(&mut out);
        out
    }

    /// Appends the log record's JSON text to `out`.
    pub fn write_log_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail and every field serializes infallibly (strings, bools, integers).
        if let Err(e) = serde_json::to_writer(&mut *out, &self.log_record()) {
            debug_assert!(false, "log record serialization failed: {e}");
        }
    }

    /// The log record as a `serde_json::Value` (an ordered object: the crate enables `preserve_order`).
    pub fn to_log_value(&self) -> serde_json::Value {
        serde_json::to_value(self.log_record()).unwrap_or(serde_json::Value::Null)
    }

    /// The parse-output form as a `serde_json::Value`: like the log record but empty strings are kept.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// An event's log record, borrowed from the event. Serializes in table order, `would_block` kept when false,
/// empty optional strings dropped.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'e>(pub &'e DataplanePacketEvent);

fn serialize_event<S: Serializer>(
    e: &DataplanePacketEvent,
    drop_empty: bool,
    s: S,
) -> Result<S::Ok, S::Error> {
    let keep = |v: &Option<String>| -> bool {
        match v {
            Some(t) => !(drop_empty && t.is_empty()),
            None => false,
        }
    };
    let comm_kept = e
        .comm
        .as_ref()
        .is_some_and(|c| !(drop_empty && c.0.is_empty()));
    let mut st = s.serialize_struct("DataplanePacketEvent", KEY_COUNT)?;
    st.serialize_field("code_namespace", DATAPLANE_NAMESPACE)?;
    st.serialize_field("reason_code", e.reason_code.as_str())?;
    st.serialize_field("verdict", e.verdict().as_str())?;
    if let Some(wb) = e.would_block() {
        st.serialize_field("would_block", &wb)?;
    }
    if let Some(h) = e.hook {
        st.serialize_field("hook", h.as_str())?;
    }
    if let Some(c) = e.cgroup_id {
        // A string on the wire: u64 does not fit a JavaScript number.
        st.serialize_field("cgroup_id", &c.to_string())?;
    }
    if keep(&e.message) {
        st.serialize_field("message", &e.message)?;
    }
    if let Some(p) = e.protocol {
        st.serialize_field("protocol", p.as_str())?;
    }
    if let Some(ip) = e.dst_ip {
        st.serialize_field("dst_ip", &ip.to_string())?;
    }
    if let Some(p) = e.dst_port {
        st.serialize_field("dst_port", &p)?;
    }
    if let Some(p) = e.pid {
        st.serialize_field("pid", &p)?;
    }
    if let Some(u) = e.uid {
        st.serialize_field("uid", &u)?;
    }
    if comm_kept {
        st.serialize_field("comm", &e.comm.as_ref().map(Comm::as_str))?;
    }
    if keep(&e.rule_id) {
        st.serialize_field("rule_id", &e.rule_id)?;
    }
    if let Some(g) = e.policy_generation {
        st.serialize_field("policy_generation", &g.0)?;
    }
    if keep(&e.workload_id) {
        st.serialize_field("workload_id", &e.workload_id)?;
    }
    if let Some(t) = &e.observed_at {
        st.serialize_field("observed_at", t.as_str())?;
    }
    st.end()
}

impl Serialize for DataplanePacketEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_event(self, false, s)
    }
}

impl Serialize for LogRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_event(self.0, true, s)
    }
}

/// A validated event that borrows its strings from the input, as returned by [`validate_fields`].
/// The byte and JavaScript fast paths read it without allocating; [`EventView::to_event`] makes it owned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventView<'a> {
    pub reason_code: DataplaneReasonCode,
    pub hook: Option<Hook>,
    /// The text as given and its value.
    pub cgroup_id: Option<(&'a str, u64)>,
    pub message: Option<&'a str>,
    pub protocol: Option<Protocol>,
    /// The (canonical) text as given and its value.
    pub dst_ip: Option<(&'a str, IpAddr)>,
    pub dst_port: Option<u16>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub comm: Option<&'a str>,
    pub rule_id: Option<&'a str>,
    pub policy_generation: Option<u64>,
    pub workload_id: Option<&'a str>,
    pub observed_at: Option<(&'a str, TimestampParts)>,
}

impl EventView<'_> {
    /// The owned event.
    pub fn to_event(&self) -> DataplanePacketEvent {
        DataplanePacketEvent {
            reason_code: self.reason_code,
            hook: self.hook,
            cgroup_id: self.cgroup_id.map(|(_, v)| v),
            message: self.message.map(str::to_owned),
            protocol: self.protocol,
            dst_ip: self.dst_ip.map(|(_, v)| v),
            dst_port: self.dst_port,
            pid: self.pid,
            uid: self.uid,
            comm: self.comm.map(|c| Comm(c.to_owned())),
            rule_id: self.rule_id.map(str::to_owned),
            policy_generation: self.policy_generation.map(PolicyGeneration),
            workload_id: self.workload_id.map(str::to_owned),
            observed_at: self
                .observed_at
                .map(|(t, parts)| ObservedAt::from_validated(t, parts)),
        }
    }

    /// Bit `1 << key` is set for each optional string that is present but empty: the fields the log record
    /// drops.
    pub fn empty_string_mask(&self) -> u32 {
        let mut mask = 0;
        for (k, v) in [
            (key::MESSAGE, self.message),
            (key::COMM, self.comm),
            (key::RULE_ID, self.rule_id),
            (key::WORKLOAD_ID, self.workload_id),
        ] {
            if v == Some("") {
                mask |= 1 << k;
            }
        }
        mask
    }
}

/// The input of [`validate_fields`]: one [`Field`] per key of [`EVENT_KEYS`] plus what the reader saw
/// besides.
#[derive(Clone, Debug)]
pub struct EventFields<'a> {
    pub fields: [Field<'a>; KEY_COUNT],
    /// Keys outside [`EVENT_KEYS`], in input order.
    pub unknown_keys: Vec<&'a str>,
    /// Bit `1 << key` set when the reader found a string that is not well-formed Unicode (a JavaScript string
    /// with a lone surrogate); such a field is passed as `Field::Str` of its lossy text.
    pub ill_formed: u32,
}

impl<'a> EventFields<'a> {
    pub fn new() -> Self {
        EventFields {
            fields: [Field::Missing; KEY_COUNT],
            unknown_keys: Vec::new(),
            ill_formed: 0,
        }
    }
}

impl Default for EventFields<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn received(f: &Field<'_>) -> String {
    match f {
        Field::Str(s) => format!("the string {}", quoted(s)),
        Field::Number(n) => format!("the number {}", number_text(*n)),
        Field::Bool(b) => format!("{b}"),
        other => other.type_name().to_owned(),
    }
}

/// A string for a message, JSON-quoted and cut at 64 characters so an attacker-sized value cannot flood logs.
fn quoted(s: &str) -> String {
    const LIMIT: usize = 64;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => {
            let mut q = serde_json::to_string(&s[..cut]).unwrap_or_default();
            q.insert_str(q.len().saturating_sub(1), "...");
            q
        }
        None => serde_json::to_string(s).unwrap_or_default(),
    }
}

fn number_text(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        // f64's Display prints integral values without a fraction and never uses exponents.
        format!("{n}")
    }
}

fn type_issue(k: usize, expected: &str, f: &Field<'_>) -> Issue {
    Issue::at(
        EVENT_KEYS[k],
        IssueCode::InvalidType,
        format!("expected {expected}, received {}", received(f)),
    )
}

struct Checker<'a, 'f> {
    input: &'f EventFields<'a>,
    issues: Vec<Issue>,
}

impl<'a> Checker<'a, '_> {
    fn field(&self, k: usize) -> Field<'a> {
        self.input.fields[k]
    }

    fn push(&mut self, k: usize, code: IssueCode, message: impl Into<String>) {
        self.issues.push(Issue::at(EVENT_KEYS[k], code, message));
    }

    /// A required or optional string. Returns `None` (after recording an issue if needed) unless a
    /// well-formed string is present.
    fn string(&mut self, k: usize, expected: &str) -> Option<&'a str> {
        match self.field(k) {
            Field::Missing => None,
            Field::Str(s) => {
                if self.input.ill_formed & (1 << k) != 0 {
                    self.push(
                        k,
                        IssueCode::InvalidFormat,
                        "contains a lone UTF-16 surrogate, which has no UTF-8 form",
                    );
                    None
                } else {
                    Some(s)
                }
            }
            other => {
                self.issues.push(type_issue(k, expected, &other));
                None
            }
        }
    }

    fn required(&mut self, k: usize, expected: &str) -> Option<&'a str> {
        if self.field(k) == Field::Missing {
            self.push(
                k,
                IssueCode::InvalidType,
                format!("required: expected {expected}, received undefined"),
            );
            return None;
        }
        self.string(k, expected)
    }

    /// An optional integer in `0..=max`.
    fn integer(&mut self, k: usize, max: u64) -> Option<u64> {
        let n = match self.field(k) {
            Field::Missing => return None,
            Field::Number(n) => n,
            other => {
                self.issues.push(type_issue(k, "an integer", &other));
                return None;
            }
        };
        if !n.is_finite() || n.fract() != 0.0 {
            self.push(
                k,
                IssueCode::InvalidType,
                format!("expected an integer, received {}", number_text(n)),
            );
            return None;
        }
        if n < 0.0 {
            self.push(
                k,
                IssueCode::TooSmall,
                format!("must be >= 0, received {}", number_text(n)),
            );
            return None;
        }
        // `max` is at most 2^53 - 1, exact in f64, so the comparison is exact.
        if n > max as f64 {
            self.push(
                k,
                IssueCode::TooBig,
                format!("must be <= {max}, received {}", number_text(n)),
            );
            return None;
        }
        // Integral, non-negative and <= 2^53 - 1: the cast is exact (and maps -0 to 0).
        Some(n as u64)
    }
}

/// Parses `cgroup_id` text: decimal digits, no leading zero except `"0"`, at most u64::MAX.
fn parse_cgroup_id(s: &str) -> Result<u64, (IssueCode, &'static str)> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return Err((
            IssueCode::InvalidFormat,
            "expected decimal digits only (a u64 cgroup id as text)",
        ));
    }
    if b.len() > 1 && b[0] == b'0' {
        return Err((IssueCode::InvalidFormat, "must not have leading zeros"));
    }
    s.parse::<u64>().map_err(|_| {
        (
            IssueCode::TooBig,
            "does not fit in 64 bits (max 18446744073709551615)",
        )
    })
}

/// A fixed buffer that `IpAddr`'s `Display` writes into, so the canonical check does not allocate.
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// True when `ip` prints exactly as `s`.
fn prints_as(ip: &IpAddr, s: &str) -> bool {
    use std::fmt::Write;
    let mut t = IpText {
        buf: [0; 64],
        len: 0,
    };
    write!(t, "{ip}").is_ok() && &t.buf[..t.len] == s.as_bytes()
}

/// Parses `dst_ip`: any IPv4/IPv6 text that `IpAddr` prints back identically.
fn parse_canonical_ip(s: &str) -> Result<IpAddr, String> {
    match s.parse::<IpAddr>() {
        Ok(ip) => {
            // std's IPv4 parser accepts only the canonical dotted quad (no leading zeros, no short forms), so
            // only IPv6 needs the print-back comparison; `tests/events_props.rs` checks that claim.
            if ip.is_ipv4() || prints_as(&ip, s) {
                Ok(ip)
            } else {
                let canonical = ip.to_string();
                Err(format!(
                    "must be canonical IP text: write {} instead of {}",
                    quoted(&canonical),
                    quoted(s)
                ))
            }
        }
        Err(_) => Err(format!(
            "expected an IPv4 or IPv6 address, received {}",
            quoted(s)
        )),
    }
}

const REASON_CODE_LIST: &str = "UNMANAGED_ALLOW, OBSERVE_WOULD_ALLOW, OBSERVE_WOULD_DENY_EXPLICIT, \
     OBSERVE_WOULD_DENY_DEFAULT, ALLOW_EXPLICIT, ALLOW_BROKER, ALLOW_DNS, DENY_EXPLICIT, DENY_DEFAULT, \
     DENY_DEGRADED_FAIL_CLOSED, ALLOW_DEGRADED_FAIL_OPEN";

/// The one validator: checks every rule of the module documentation and returns the event or every issue.
pub fn validate_fields<'a>(input: &EventFields<'a>) -> Result<EventView<'a>, ValidationError> {
    let mut c = Checker {
        input,
        issues: Vec::new(),
    };
    use key::*;

    if let Some(ns) = c.required(CODE_NAMESPACE, "the string \"dataplane_verdict\"") {
        if ns != DATAPLANE_NAMESPACE {
            let why = if ns == super::reason_codes::CONTROL_AUTHZ_NAMESPACE {
                "; control_authz is the ControlPlaneAuthzEvent namespace"
            } else {
                ""
            };
            c.push(
                CODE_NAMESPACE,
                IssueCode::InvalidValue,
                format!(
                    "expected \"dataplane_verdict\", received {}{why}",
                    quoted(ns)
                ),
            );
        }
    }

    let code = match c.required(REASON_CODE, "a dataplane_verdict reason code string") {
        Some(s) => match DataplaneReasonCode::from_wire(s) {
            Some(code) => Some(code),
            None => {
                let msg = if ControlAuthzCode::from_wire(s).is_some() {
                    format!(
                        "{} is a control_authz error code, not a dataplane_verdict reason code",
                        quoted(s)
                    )
                } else {
                    format!(
                        "unknown dataplane_verdict reason code {}; expected one of {REASON_CODE_LIST}",
                        quoted(s)
                    )
                };
                c.push(REASON_CODE, IssueCode::InvalidValue, msg);
                None
            }
        },
        None => None,
    };

    let verdict = match c.required(VERDICT, "\"allow\" or \"deny\"") {
        Some(s) => match Verdict::from_wire(s) {
            Some(v) => Some(v),
            None => {
                c.push(
                    VERDICT,
                    IssueCode::InvalidValue,
                    format!("expected \"allow\" or \"deny\", received {}", quoted(s)),
                );
                None
            }
        },
        None => None,
    };

    // `Some(None)` = absent, `Some(Some(b))` = a boolean, `None` = wrong type (already reported).
    let would_block = match c.field(WOULD_BLOCK) {
        Field::Missing => Some(None),
        Field::Bool(b) => Some(Some(b)),
        other => {
            c.issues.push(type_issue(WOULD_BLOCK, "a boolean", &other));
            None
        }
    };

    if let Some(code) = code {
        let expected = code.verdict();
        if verdict.is_some_and(|v| v != expected) {
            c.push(
                VERDICT,
                IssueCode::Custom,
                format!(
                    "verdict must be \"{}\" for reason_code {}",
                    expected.as_str(),
                    code.as_str()
                ),
            );
        }
        match (code.would_block(), would_block) {
            (Some(want), Some(None)) => c.push(
                WOULD_BLOCK,
                IssueCode::Custom,
                format!(
                    "would_block is required for reason_code {} and must be {want}",
                    code.as_str()
                ),
            ),
            (Some(want), Some(Some(got))) if got != want => c.push(
                WOULD_BLOCK,
                IssueCode::Custom,
                format!(
                    "would_block must be {want} for reason_code {}",
                    code.as_str()
                ),
            ),
            (None, Some(Some(_))) => c.push(
                WOULD_BLOCK,
                IssueCode::Custom,
                format!(
                    "would_block is only allowed for the OBSERVE_* reason codes, not {}",
                    code.as_str()
                ),
            ),
            _ => {}
        }
    }

    let hook = c.string(HOOK, Hook::EXPECTED).and_then(|s| {
        let h = Hook::from_wire(s);
        if h.is_none() {
            c.push(
                HOOK,
                IssueCode::InvalidValue,
                format!("expected {}, received {}", Hook::EXPECTED, quoted(s)),
            );
        }
        h
    });

    let cgroup_id = c
        .string(CGROUP_ID, "a string of decimal digits")
        .and_then(|s| match parse_cgroup_id(s) {
            Ok(v) => Some((s, v)),
            Err((code, msg)) => {
                c.push(CGROUP_ID, code, format!("{msg}, received {}", quoted(s)));
                None
            }
        });

    let message = c.string(MESSAGE, "a string");

    let protocol = c.string(PROTOCOL, Protocol::EXPECTED).and_then(|s| {
        let p = Protocol::from_wire(s);
        if p.is_none() {
            c.push(
                PROTOCOL,
                IssueCode::InvalidValue,
                format!("expected {}, received {}", Protocol::EXPECTED, quoted(s)),
            );
        }
        p
    });

    let dst_ip =
        c.string(DST_IP, "an IP address string")
            .and_then(|s| match parse_canonical_ip(s) {
                Ok(ip) => Some((s, ip)),
                Err(msg) => {
                    c.push(DST_IP, IssueCode::InvalidFormat, msg);
                    None
                }
            });

    // Each bound below fits its target type, so the narrowing casts are exact.
    let dst_port = c.integer(DST_PORT, u64::from(u16::MAX)).map(|v| v as u16);
    let pid = c.integer(PID, u64::from(u32::MAX)).map(|v| v as u32);
    let uid = c.integer(UID, u64::from(u32::MAX)).map(|v| v as u32);

    let comm = c.string(COMM, "a string").and_then(|s| {
        if s.len() > COMM_MAX_BYTES {
            c.push(
                COMM,
                IssueCode::TooBig,
                format!(
                    "must be at most {COMM_MAX_BYTES} bytes of UTF-8, received {} bytes",
                    s.len()
                ),
            );
            None
        } else {
            Some(s)
        }
    });

    let rule_id = c.string(RULE_ID, "a string");
    let policy_generation = c.integer(POLICY_GENERATION, POLICY_GENERATION_MAX);
    let workload_id = c.string(WORKLOAD_ID, "a string");

    let observed_at = c
        .string(OBSERVED_AT, "an RFC 3339 timestamp string")
        .and_then(|s| match timestamp::parse_parts(s) {
            Ok(parts) => Some((s, parts)),
            Err(e) => {
                c.push(
                    OBSERVED_AT,
                    IssueCode::InvalidFormat,
                    format!("{e}, received {}", quoted(s)),
                );
                None
            }
        });

    if !input.unknown_keys.is_empty() {
        let list: Vec<String> = input.unknown_keys.iter().map(|k| quoted(k)).collect();
        c.issues.push(Issue::new(
            Vec::<PathSegment>::new(),
            IssueCode::UnrecognizedKeys,
            format!(
                "unrecognized key{}: {}",
                if list.len() == 1 { "" } else { "s" },
                list.join(", ")
            ),
        ));
    }

    match (c.issues.is_empty(), code) {
        (true, Some(reason_code)) => Ok(EventView {
            reason_code,
            hook,
            cgroup_id,
            message,
            protocol,
            dst_ip,
            dst_port,
            pid,
            uid,
            comm,
            rule_id,
            policy_generation,
            workload_id,
            observed_at,
        }),
        _ => Err(ValidationError::new(c.issues)),
    }
}

/// The root issue when an event is not a JSON object.
pub fn not_an_object(type_name: &str) -> ValidationError {
    ValidationError::single(Issue::new(
        Vec::new(),
        IssueCode::InvalidType,
        format!("expected a DataplanePacketEvent object, received {type_name}"),
    ))
}

/// Reads a `serde_json::Value` object into [`EventFields`]; `Err` when the value is not an object.
pub fn fields_from_value(value: &serde_json::Value) -> Result<EventFields<'_>, ValidationError> {
    let map = match value {
        serde_json::Value::Object(map) => map,
        other => return Err(not_an_object(Field::from_json(Some(other)).type_name())),
    };
    let mut input = EventFields::new();
    for (k, v) in map {
        match key_index(k) {
            Some(i) => input.fields[i] = Field::from_json(Some(v)),
            None => input.unknown_keys.push(k),
        }
    }
    Ok(input)
}

/// Parses a DataplanePacketEvent from a `serde_json::Value`.
pub fn parse_value(value: &serde_json::Value) -> Result<DataplanePacketEvent, ValidationError> {
    let input = fields_from_value(value)?;
    validate_fields(&input).map(|v| v.to_event())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> serde_json::Value {
        json!({
            "code_namespace": "dataplane_verdict",
            "reason_code": "DENY_EXPLICIT",
            "verdict": "deny",
            "hook": "connect4",
            "cgroup_id": "18446744073709551615",
            "message": "matched rule r-17",
            "protocol": "tcp",
            "dst_ip": "203.0.113.9",
            "dst_port": 443,
            "pid": 4242,
            "uid": 1000,
            "comm": "curl",
            "rule_id": "r-17",
            "policy_generation": 9007199254740991u64,
            "workload_id": "wl-api",
            "observed_at": "2024-05-01T12:00:00.123456789Z"
        })
    }

    fn with(mut v: serde_json::Value, k: &str, x: serde_json::Value) -> serde_json::Value {
        v[k] = x;
        v
    }

    fn without(mut v: serde_json::Value, k: &str) -> serde_json::Value {
        v.as_object_mut().map(|m| m.remove(k));
        v
    }

    fn issues(v: &serde_json::Value) -> Vec<(String, IssueCode)> {
        match parse_value(v) {
            Ok(e) => panic!("accepted {v}: {e:?}"),
            Err(e) => e.issues.iter().map(|i| (i.path_text(), i.code)).collect(),
        }
    }

    fn minimal(code: &str) -> serde_json::Value {
        let c = DataplaneReasonCode::from_wire(code).unwrap();
        let mut v = json!({
            "code_namespace": "dataplane_verdict",
            "reason_code": code,
            "verdict": c.verdict().as_str(),
        });
        if let Some(wb) = c.would_block() {
            v["would_block"] = json!(wb);
        }
        v
    }

    #[test]
    fn key_index_knows_exactly_the_table_keys() {
        for (i, k) in EVENT_KEYS.iter().enumerate() {
            assert_eq!(key_index(k), Some(i), "{k}");
        }
        for k in [
            "",
            "pix",
            "uidd",
            "hoo",
            "comms",
            "dst_ipv",
            "verdicT",
            "messages",
            "protocoL",
            "would_blocK",
            "workload_iD",
            "observed_ax",
            "reason_codes",
            "Code_namespace",
            "policy_generatioN",
            "wouldxblock",
        ] {
            assert_eq!(key_index(k), None, "{k}");
        }
    }

    #[test]
    fn accepts_every_code_with_its_verdict() {
        for code in DataplaneReasonCode::ALL {
            let e = parse_value(&minimal(code.as_str())).unwrap();
            assert_eq!(e.reason_code, *code);
        }
    }

    #[test]
    fn accepts_a_full_event_and_keeps_every_field() {
        let e = parse_value(&full()).unwrap();
        assert_eq!(e.cgroup_id, Some(u64::MAX));
        assert_eq!(e.dst_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(
            e.policy_generation.map(PolicyGeneration::get),
            Some(POLICY_GENERATION_MAX)
        );
        assert_eq!(e.to_value(), full());
    }

    #[test]
    fn output_keys_are_in_table_order() {
        let v = parse_value(&full()).unwrap().to_log_value();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: Vec<&str> = EVENT_KEYS
            .iter()
            .copied()
            .filter(|k| *k != "would_block")
            .collect();
        assert_eq!(keys, expected);
        let json = String::from_utf8(parse_value(&full()).unwrap().to_log_json()).unwrap();
        assert!(json.starts_with(
            "{\"code_namespace\":\"dataplane_verdict\",\"reason_code\":\"DENY_EXPLICIT\""
        ));
    }

    #[test]
    fn log_record_drops_empty_strings_and_keeps_false_would_block() {
        let mut v = minimal("OBSERVE_WOULD_ALLOW");
        for k in ["message", "comm", "rule_id", "workload_id"] {
            v[k] = json!("");
        }
        let e = parse_value(&v).unwrap();
        assert_eq!(e.message.as_deref(), Some(""));
        assert_eq!(e.to_value(), v);
        assert_eq!(
            e.to_log_value(),
            json!({"code_namespace": "dataplane_verdict", "reason_code": "OBSERVE_WOULD_ALLOW",
                   "verdict": "allow", "would_block": false})
        );
        assert_eq!(
            String::from_utf8(e.to_log_json()).unwrap(),
            r#"{"code_namespace":"dataplane_verdict","reason_code":"OBSERVE_WOULD_ALLOW","verdict":"allow","would_block":false}"#
        );
    }

    #[test]
    fn rejects_unknown_and_control_codes_saying_which() {
        let e =
            parse_value(&with(full(), "reason_code", json!("CTRL_COMMAND_FAILED"))).unwrap_err();
        assert_eq!(e.issues.len(), 1, "{e}");
        assert!(
            e.issues[0].message.contains("control_authz error code"),
            "{e}"
        );
        let e = parse_value(&with(full(), "reason_code", json!("DENY_EVERYTHING"))).unwrap_err();
        assert!(
            e.issues[0]
                .message
                .contains("unknown dataplane_verdict reason code"),
            "{e}"
        );
        assert_eq!(e.issues.len(), 1, "cross-field checks are skipped: {e}");
        assert_eq!(
            issues(&with(full(), "reason_code", json!("UNSPECIFIED"))),
            [("reason_code".into(), IssueCode::InvalidValue)]
        );
    }

    #[test]
    fn namespace_must_be_dataplane() {
        assert_eq!(
            issues(&with(full(), "code_namespace", json!("control_authz"))),
            [("code_namespace".into(), IssueCode::InvalidValue)]
        );
        assert_eq!(
            issues(&without(full(), "code_namespace")),
            [("code_namespace".into(), IssueCode::InvalidType)]
        );
    }

    #[test]
    fn verdict_must_match_the_code() {
        assert_eq!(
            issues(&with(full(), "verdict", json!("allow"))),
            [("verdict".into(), IssueCode::Custom)]
        );
        assert_eq!(
            issues(&with(
                minimal("OBSERVE_WOULD_DENY_DEFAULT"),
                "verdict",
                json!("deny")
            )),
            [("verdict".into(), IssueCode::Custom)]
        );
        assert_eq!(
            issues(&with(full(), "verdict", json!("block"))),
            [("verdict".into(), IssueCode::InvalidValue)]
        );
    }

    #[test]
    fn would_block_rules() {
        // Required for observe codes, with the exact value.
        assert_eq!(
            issues(&without(minimal("OBSERVE_WOULD_ALLOW"), "would_block")),
            [("would_block".into(), IssueCode::Custom)]
        );
        assert_eq!(
            issues(&with(
                minimal("OBSERVE_WOULD_ALLOW"),
                "would_block",
                json!(true)
            )),
            [("would_block".into(), IssueCode::Custom)]
        );
        assert_eq!(
            issues(&with(
                minimal("OBSERVE_WOULD_DENY_EXPLICIT"),
                "would_block",
                json!(false)
            )),
            [("would_block".into(), IssueCode::Custom)]
        );
        // Forbidden for the others, whatever its value.
        for wb in [true, false] {
            assert_eq!(
                issues(&with(full(), "would_block", json!(wb))),
                [("would_block".into(), IssueCode::Custom)]
            );
        }
        // Wrong type: a type issue, no cross-field issue.
        assert_eq!(
            issues(&with(
                minimal("OBSERVE_WOULD_ALLOW"),
                "would_block",
                json!("false")
            )),
            [("would_block".into(), IssueCode::InvalidType)]
        );
    }

    #[test]
    fn every_issue_is_collected_in_table_order_and_unknown_keys_are_listed_once() {
        let mut v = with(full(), "verdict", json!("allow"));
        v["dst_port"] = json!(70000);
        v["comm"] = json!("a-very-long-process-name");
        v["zeta"] = json!(1);
        v["alpha"] = json!(null);
        let got = issues(&v);
        assert_eq!(
            got,
            [
                ("verdict".into(), IssueCode::Custom),
                ("dst_port".into(), IssueCode::TooBig),
                ("comm".into(), IssueCode::TooBig),
                ("".into(), IssueCode::UnrecognizedKeys),
            ]
        );
        let e = parse_value(&v).unwrap_err();
        let last = &e.issues[3].message;
        assert!(
            last.contains("\"zeta\"") && last.contains("\"alpha\""),
            "{last}"
        );
    }

    #[test]
    fn null_is_not_absent() {
        for k in ["hook", "message", "dst_port", "observed_at", "would_block"] {
            assert_eq!(
                issues(&with(full(), k, json!(null))),
                [(k.into(), IssueCode::InvalidType)],
                "{k}"
            );
        }
    }

    #[test]
    fn cgroup_id_rules() {
        for ok in ["0", "1", "18446744073709551615"] {
            assert!(
                parse_value(&with(full(), "cgroup_id", json!(ok))).is_ok(),
                "{ok}"
            );
        }
        for (bad, code) in [
            ("", IssueCode::InvalidFormat),
            ("01", IssueCode::InvalidFormat),
            ("-1", IssueCode::InvalidFormat),
            ("+1", IssueCode::InvalidFormat),
            ("1 ", IssueCode::InvalidFormat),
            ("0x10", IssueCode::InvalidFormat),
            ("١٢", IssueCode::InvalidFormat),
            ("18446744073709551616", IssueCode::TooBig),
        ] {
            assert_eq!(
                issues(&with(full(), "cgroup_id", json!(bad))),
                [("cgroup_id".into(), code)],
                "{bad}"
            );
        }
        assert_eq!(
            issues(&with(full(), "cgroup_id", json!(42))),
            [("cgroup_id".into(), IssueCode::InvalidType)]
        );
    }

    #[test]
    fn dst_ip_must_be_canonical() {
        for ok in [
            "10.0.0.1",
            "::1",
            "::",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            assert!(
                parse_value(&with(full(), "dst_ip", json!(ok))).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "010.0.0.1",
            "10.0.0",
            "::FFFF:10.0.0.1",
            "0:0::1",
            "2001:DB8::1",
            "2001:db8:0:0:0:0:0:1",
            " 10.0.0.1",
            "fe80::1%eth0",
            "10.0.0.1/32",
            "localhost",
        ] {
            assert_eq!(
                issues(&with(full(), "dst_ip", json!(bad))),
                [("dst_ip".into(), IssueCode::InvalidFormat)],
                "{bad}"
            );
        }
    }

    #[test]
    fn integer_bounds() {
        for (k, max) in [
            ("dst_port", 65535u64),
            ("pid", u64::from(u32::MAX)),
            ("uid", u64::from(u32::MAX)),
            ("policy_generation", POLICY_GENERATION_MAX),
        ] {
            assert!(parse_value(&with(full(), k, json!(0))).is_ok(), "{k}=0");
            assert!(parse_value(&with(full(), k, json!(max))).is_ok(), "{k}=max");
            assert!(parse_value(&with(full(), k, json!(1.0))).is_ok(), "{k}=1.0");
            assert_eq!(
                issues(&with(full(), k, json!(max + 1))),
                [(k.into(), IssueCode::TooBig)],
                "{k}"
            );
            assert_eq!(
                issues(&with(full(), k, json!(-1))),
                [(k.into(), IssueCode::TooSmall)],
                "{k}"
            );
            assert_eq!(
                issues(&with(full(), k, json!(1.5))),
                [(k.into(), IssueCode::InvalidType)],
                "{k}"
            );
            assert_eq!(
                issues(&with(full(), k, json!("1"))),
                [(k.into(), IssueCode::InvalidType)],
                "{k}"
            );
        }
    }

    #[test]
    fn non_finite_numbers_from_javascript_are_rejected() {
        let v = full();
        for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut input = fields_from_value(&v).unwrap();
            input.fields[key::PID] = Field::Number(n);
            let e = validate_fields(&input).unwrap_err();
            assert_eq!(e.issues[0].code, IssueCode::InvalidType, "{n}");
        }
        let mut input = fields_from_value(&v).unwrap();
        input.fields[key::PID] = Field::Number(-0.0);
        assert_eq!(validate_fields(&input).unwrap().pid, Some(0));
    }

    #[test]
    fn comm_is_limited_in_utf8_bytes() {
        assert!(parse_value(&with(full(), "comm", json!("0123456789abcdef"))).is_ok());
        assert!(parse_value(&with(full(), "comm", json!("ééééééé"))).is_ok()); // 14 bytes
        assert_eq!(
            issues(&with(full(), "comm", json!("ééééééééé"))), // 9 chars, 18 bytes
            [("comm".into(), IssueCode::TooBig)]
        );
    }

    #[test]
    fn observed_at_is_rfc3339() {
        assert!(parse_value(&with(
            full(),
            "observed_at",
            json!("2024-02-29T23:59:60+05:30")
        ))
        .is_ok());
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.0000000001Z",
        ] {
            assert_eq!(
                issues(&with(full(), "observed_at", json!(bad))),
                [("observed_at".into(), IssueCode::InvalidFormat)],
                "{bad}"
            );
        }
    }

    #[test]
    fn ill_formed_strings_are_rejected() {
        let v = full();
        let mut input = fields_from_value(&v).unwrap();
        input.ill_formed = 1 << key::MESSAGE;
        let e = validate_fields(&input).unwrap_err();
        assert_eq!(e.issues.len(), 1);
        assert_eq!(e.issues[0].path_text(), "message");
        assert_eq!(e.issues[0].code, IssueCode::InvalidFormat);
    }

    #[test]
    fn non_objects_are_rejected_at_the_root() {
        for v in [json!([]), json!("x"), json!(1), json!(null)] {
            let e = parse_value(&v).unwrap_err();
            assert_eq!(e.issues.len(), 1);
            assert!(e.issues[0].path.is_empty());
            assert_eq!(e.issues[0].code, IssueCode::InvalidType);
        }
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(10_000);
        let e = parse_value(&with(full(), "reason_code", json!(long))).unwrap_err();
        assert!(
            e.issues[0].message.len() < 600,
            "{}",
            e.issues[0].message.len()
        );
    }

    #[test]
    fn empty_string_mask_marks_the_log_drops() {
        let v = with(with(full(), "message", json!("")), "workload_id", json!(""));
        let input = fields_from_value(&v).unwrap();
        let view = validate_fields(&input).unwrap();
        assert_eq!(
            view.empty_string_mask(),
            (1 << key::MESSAGE) | (1 << key::WORKLOAD_ID)
        );
    }
}
