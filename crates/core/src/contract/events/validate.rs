//! The one validator of a DataplanePacketEvent ([`validate_fields`]) and the `serde_json::Value` reader that
//! feeds it. Every rule is listed in the module documentation of [`crate::contract::events`].

use super::{key, EventFields, EventView, COMM_MAX_BYTES, EVENT_KEYS, POLICY_GENERATION_MAX};
use super::{key_index, DataplanePacketEvent};
use crate::contract::hook::{Hook, Protocol};
use std::sync::LazyLock;

use crate::contract::cgroup::decimal_u64;
use crate::contract::ip_text::parse_canonical_ip;
use crate::contract::reason_codes::{
    ControlAuthzCode, DataplaneReasonCode, Verdict, CONTROL_AUTHZ_NAMESPACE, DATAPLANE_NAMESPACE,
};
use crate::contract::timestamp;
use crate::contract::validation::{quoted, Field, Issue, IssueCode, PathSegment, ValidationError};
use crate::contract::wire_literal::{alternatives, WireLiteral};

fn received(f: &Field<'_>) -> String {
    match f {
        Field::Str(s) => format!("the string {}", quoted(s)),
        Field::Number(n) => format!("the number {}", number_text(*n)),
        Field::Bool(b) => format!("{b}"),
        other => other.type_name().to_owned(),
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

    /// An optional string of `T`'s list; `expected` names the list in messages.
    fn literal<T: WireLiteral>(&mut self, k: usize, expected: &str) -> Option<T> {
        let s = self.string(k, expected)?;
        let value = T::from_wire_literal(s);
        if value.is_none() {
            self.push(
                k,
                IssueCode::InvalidValue,
                format!("expected {expected}, received {}", quoted(s)),
            );
        }
        value
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

/// What each literal field accepts, spelled from its one list ([`WireLiteral`]) once, on first use.
fn one_of<T: WireLiteral>() -> String {
    format!("one of {}", alternatives::<T>(|s| format!("\"{s}\""), ", "))
}
static REASON_CODES: LazyLock<String> =
    LazyLock::new(|| alternatives::<DataplaneReasonCode>(str::to_owned, ", "));
static VERDICTS: LazyLock<String> = LazyLock::new(one_of::<Verdict>);
static HOOKS: LazyLock<String> = LazyLock::new(one_of::<Hook>);
static PROTOCOLS: LazyLock<String> = LazyLock::new(one_of::<Protocol>);

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
                        "unknown dataplane_verdict reason code {}; expected one of {}",
                        quoted(s),
                        *REASON_CODES
                    )
                };
                c.push(REASON_CODE, IssueCode::InvalidValue, msg);
                None
            }
        },
        None => None,
    };

    let verdict = match c.required(VERDICT, &VERDICTS) {
        Some(s) => match Verdict::from_wire(s) {
            Some(v) => Some(v),
            None => {
                c.push(
                    VERDICT,
                    IssueCode::InvalidValue,
                    format!("expected {}, received {}", *VERDICTS, quoted(s)),
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

    let hook = c.literal::<Hook>(HOOK, &HOOKS);

    let cgroup_id =
        c.string(CGROUP_ID, "a string of decimal digits")
            .and_then(|s| match decimal_u64(s) {
                Ok(v) => Some((s, v)),
                Err((code, msg)) => {
                    c.push(CGROUP_ID, code, format!("{msg}, received {}", quoted(s)));
                    None
                }
            });

    let message = c.string(MESSAGE, "a string");

    let protocol = c.literal::<Protocol>(PROTOCOL, &PROTOCOLS);

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
    let dns_name = c.string(DNS_NAME, "a string");
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
            dns_name,
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
