//! The one validator of a DataplanePacketEvent ([`validate_fields`]) and the `serde_json::Value` reader that
//! feeds it. Every rule is listed in the module documentation of [`crate::contract::events`].

use std::net::IpAddr;

use super::{key, EventFields, EventView, COMM_MAX_BYTES, EVENT_KEYS, POLICY_GENERATION_MAX};
use super::{key_index, DataplanePacketEvent};
use crate::contract::hook::{Hook, Protocol};
use crate::contract::reason_codes::{
    ControlAuthzCode, DataplaneReasonCode, Verdict, CONTROL_AUTHZ_NAMESPACE, DATAPLANE_NAMESPACE,
};
use crate::contract::timestamp;
use crate::contract::validation::{Field, Issue, IssueCode, PathSegment, ValidationError};

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
            let why = if ns == CONTROL_AUTHZ_NAMESPACE {
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

    let hook = c
        .string(HOOK, "one of \"connect4\", \"connect6\", \"sendmsg4\", \"sendmsg6\"")
        .and_then(|s| {
            let h = Hook::from_wire(s);
            if h.is_none() {
                c.push(
                    HOOK,
                    IssueCode::InvalidValue,
                    format!(
                        "expected one of \"connect4\", \"connect6\", \"sendmsg4\", \"sendmsg6\", received {}",
                        quoted(s)
                    ),
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

    let protocol = c.string(PROTOCOL, "\"tcp\" or \"udp\"").and_then(|s| {
        let p = Protocol::from_wire(s);
        if p.is_none() {
            c.push(
                PROTOCOL,
                IssueCode::InvalidValue,
                format!("expected \"tcp\" or \"udp\", received {}", quoted(s)),
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
mod tests;
