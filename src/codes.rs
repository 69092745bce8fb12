//! Reason-code tables and the small enum schemas, for `js/codes.js`.

use napi::bindgen_prelude::Unknown;
use napi::ValueType;
use napi_derive::napi;

use crate::issues::JsIssue;
use interceptor_ebpf_core::contract::control::protocol::Command;
use interceptor_ebpf_core::contract::hook::Hook;
use interceptor_ebpf_core::contract::reason_codes::{
    reason_code_lists_are_disjoint, ControlAuthzCode, DataplaneReasonCode, Verdict,
};
use interceptor_ebpf_core::contract::validation::{Issue, IssueCode};
use interceptor_ebpf_core::contract::wire_literal::{alternatives, WireLiteral};

/// The code lists and literal sets, in value order, as the single source for the JavaScript arrays.
#[napi(object, object_from_js = false)]
pub struct CodeTables {
    pub dataplane_verdict_reason_codes: Vec<&'static str>,
    pub control_plane_authz_error_codes: Vec<&'static str>,
    pub verdicts: Vec<&'static str>,
    pub hooks: Vec<&'static str>,
    /// The control protocol's commands (`controlProtocolCommands`).
    pub control_protocol_commands: Vec<&'static str>,
}

fn wire_strings<T: WireLiteral>() -> Vec<&'static str> {
    T::VALUES.iter().map(|v| v.wire()).collect()
}

#[napi]
pub fn code_tables() -> CodeTables {
    CodeTables {
        dataplane_verdict_reason_codes: wire_strings::<DataplaneReasonCode>(),
        control_plane_authz_error_codes: wire_strings::<ControlAuthzCode>(),
        verdicts: wire_strings::<Verdict>(),
        hooks: wire_strings::<Hook>(),
        control_protocol_commands: wire_strings::<Command>(),
    }
}

/// Which literal set `check_literal` validates against.
#[napi]
pub enum LiteralSet {
    DataplaneReasonCode,
    ControlAuthzCode,
    Verdict,
    Hook,
}

/// Validates one literal. Returns `null` when valid, else the issues.
#[napi]
pub fn check_literal(set: LiteralSet, value: Unknown) -> napi::Result<Option<Vec<JsIssue>>> {
    let (name, ok) = match value.get_type()? {
        ValueType::String => {
            // SAFETY: the value's type was just checked to be a string.
            let s: String = unsafe { value.cast::<String>() }?;
            let ok = match set {
                LiteralSet::DataplaneReasonCode => {
                    DataplaneReasonCode::from_wire_literal(&s).is_some()
                }
                LiteralSet::ControlAuthzCode => ControlAuthzCode::from_wire_literal(&s).is_some(),
                LiteralSet::Verdict => Verdict::from_wire_literal(&s).is_some(),
                LiteralSet::Hook => Hook::from_wire_literal(&s).is_some(),
            };
            (format!("`{s}`"), ok)
        }
        other => (format!("a value of type {}", js_type_name(other)), false),
    };
    if ok {
        return Ok(None);
    }
    let one_of = |list: String| format!("one of {list}");
    let what = match set {
        LiteralSet::DataplaneReasonCode => "a dataplane_verdict reason code".to_owned(),
        LiteralSet::ControlAuthzCode => "a control_authz error code".to_owned(),
        LiteralSet::Verdict => one_of(alternatives::<Verdict>(|s| format!("`{s}`"), ", ")),
        LiteralSet::Hook => one_of(alternatives::<Hook>(|s| format!("`{s}`"), ", ")),
    };
    Ok(Some(vec![JsIssue::from(&Issue::new(
        vec![],
        IssueCode::InvalidValue,
        format!("expected {what}, received {name}"),
    ))]))
}

/// The runtime twin of the compile-time disjointness check: codes that appear in both lists (always empty in a
/// correct build; `assertNoReasonCodeOverlap()` throws if not).
#[napi]
pub fn reason_code_overlap() -> Vec<String> {
    if reason_code_lists_are_disjoint() {
        return Vec::new();
    }
    DataplaneReasonCode::ALL
        .iter()
        .filter(|d| ControlAuthzCode::from_wire(d.as_str()).is_some())
        .map(|d| d.as_str().to_owned())
        .collect()
}

pub(crate) fn js_type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "boolean",
        ValueType::Number => "number",
        ValueType::String => "string",
        ValueType::Symbol => "symbol",
        ValueType::Object => "object",
        ValueType::Function => "function",
        ValueType::BigInt => "bigint",
        _ => "unknown",
    }
}
