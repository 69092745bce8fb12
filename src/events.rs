//! N-API glue for DataplanePacketEvent (`js/events.js`). No rule lives here: every value is reduced to a
//! `Field` and judged by `interceptor_ebpf_core::contract::events::validate_fields`.
//!
//! The three hot entry points are raw `napi_sys` callbacks rather than `#[napi]` functions, because the
//! boundary dominates the cost of validating a small record (measured: ~30 ns per raw call against ~140 ns
//! for a `#[napi]` one, ~100 ns per property read, ~1.1 µs to build a result object property by property):
//!
//! - `checkObject(countOrKeys, ...17 values)`: the JS wrapper reads the known keys itself (cheap in JS) and
//!   passes their values as arguments, plus the object's key count. Returns the log record's empty-string
//!   mask (a number >= 0) when valid, `-1` when the key count shows keys it was not given (the wrapper then
//!   calls again with the key names so the unknown ones can be named), or the issue array.
//! - `parseJson(input, slots)`: validates one JSON text (string, Buffer or Uint8Array) and writes the typed
//!   values and the UTF-16 offsets of the strings into the caller's `Float64Array`; JS builds the object by
//!   slicing the text, which is far cheaper than creating strings through N-API. Strings that cannot be sliced
//!   (JSON escapes) come back as an array of "extra" strings.
//! - `parseNdjson(input)`: the same for a batch, returning `[slots, count, extras, errors]`.
//!
//! The raw callbacks live in `events/fast_path.rs`, written against the safe wrappers of `napi_raw.rs`.
//! Every callback runs inside `catch_unwind`: a panic becomes a thrown JavaScript `Error`, never an abort
//! (`__test__/events.test.mjs` feeds hostile inputs to check this).

mod fast_path;

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;

use crate::codes::js_type_name;
use crate::issues::{to_js_issues, JsIssue};
use crate::napi_raw::{RawCallback, Scope};
use interceptor_ebpf_core::contract::events::{not_an_object, EVENT_KEYS};
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode;

/// Number of `Float64Array` slots per record written by `parseJson`/`parseNdjson`.
pub const RECORD_SLOTS: usize = 21;
/// Slot of each value within a record; strings take two slots (UTF-16 start, end), `-1` when absent and
/// `-(2 + k)` for "`extras[k]`".
mod slot {
    pub const CODE: usize = 0;
    pub const HOOK: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const DST_PORT: usize = 3;
    pub const PID: usize = 4;
    pub const UID: usize = 5;
    pub const POLICY_GENERATION: usize = 6;
    pub const CGROUP_ID: usize = 7;
    pub const MESSAGE: usize = 9;
    pub const DST_IP: usize = 11;
    pub const COMM: usize = 13;
    pub const RULE_ID: usize = 15;
    pub const WORKLOAD_ID: usize = 17;
    pub const OBSERVED_AT: usize = 19;
}

/// Value tables for the JS side, indexed by the numeric value the slots carry.
#[napi(object)]
pub struct DataplaneEventTables {
    /// `EVENT_KEYS`, in table order.
    pub keys: Vec<String>,
    /// Reason code wire string by value (index 0 unused).
    pub codes: Vec<String>,
    /// Verdict by code value.
    pub verdicts: Vec<String>,
    /// `would_block` by code value: `null` when the code carries none.
    pub would_block: Vec<Option<bool>>,
    /// Hook wire string by value (index 0 unused).
    pub hooks: Vec<String>,
    /// Protocol wire string by IANA number (only 6 and 17 used).
    pub protocols: Vec<String>,
    pub record_slots: u32,
    /// Where each value sits in a record: the one definition of the layout, read by `js/events.js`.
    pub slots: SlotLayout,
}

/// Slot index of each value in a record (strings: start; the end is the next slot).
#[napi(object)]
pub struct SlotLayout {
    pub code: u32,
    pub hook: u32,
    pub protocol: u32,
    pub dst_port: u32,
    pub pid: u32,
    pub uid: u32,
    pub policy_generation: u32,
    pub cgroup_id: u32,
    pub message: u32,
    pub dst_ip: u32,
    pub comm: u32,
    pub rule_id: u32,
    pub workload_id: u32,
    pub observed_at: u32,
}

#[napi(catch_unwind)]
pub fn dataplane_event_tables() -> DataplaneEventTables {
    let max_code = DataplaneReasonCode::ALL
        .iter()
        .map(|c| c.value() as usize)
        .max()
        .unwrap_or(0);
    let mut codes = vec![String::new(); max_code + 1];
    let mut verdicts = vec![String::new(); max_code + 1];
    let mut would_block = vec![None; max_code + 1];
    for c in DataplaneReasonCode::ALL {
        let i = c.value() as usize;
        codes[i] = c.as_str().to_owned();
        verdicts[i] = c.verdict().as_str().to_owned();
        would_block[i] = c.would_block();
    }
    let mut hooks = vec![String::new(); Hook::ALL.len() + 1];
    for h in Hook::ALL {
        hooks[h as usize] = h.as_str().to_owned();
    }
    let mut protocols = vec![String::new(); 18];
    for p in Protocol::ALL {
        protocols[p as usize] = p.as_str().to_owned();
    }
    DataplaneEventTables {
        keys: EVENT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        codes,
        verdicts,
        would_block,
        hooks,
        protocols,
        record_slots: RECORD_SLOTS as u32,
        slots: SlotLayout {
            code: slot::CODE as u32,
            hook: slot::HOOK as u32,
            protocol: slot::PROTOCOL as u32,
            dst_port: slot::DST_PORT as u32,
            pid: slot::PID as u32,
            uid: slot::UID as u32,
            policy_generation: slot::POLICY_GENERATION as u32,
            cgroup_id: slot::CGROUP_ID as u32,
            message: slot::MESSAGE as u32,
            dst_ip: slot::DST_IP as u32,
            comm: slot::COMM as u32,
            rule_id: slot::RULE_ID as u32,
            workload_id: slot::WORKLOAD_ID as u32,
            observed_at: slot::OBSERVED_AT as u32,
        },
    }
}

/// The issue for a root value that is not an object (the wrapper routes non-objects here).
#[napi(catch_unwind)]
pub fn dataplane_event_root_issues(value: Unknown) -> napi::Result<Vec<JsIssue>> {
    let name = match value.get_type()? {
        ValueType::Object if value.is_array()? => "array",
        other => js_type_name(other),
    };
    Ok(to_js_issues(&not_an_object(name)))
}
/// Creates the raw fast-path functions; `js/events.js` calls this once per module instance (per worker).
#[napi(catch_unwind)]
pub fn dataplane_event_fast_paths(env: &Env) -> napi::Result<Unknown<'_>> {
    // SAFETY: `env` is the environment napi-rs passes to this call, and `cx` does not outlive the call.
    let cx = unsafe { Scope::new(env.raw()) };
    let obj = cx.object()?;
    let entries: [(&str, RawCallback); 3] = [
        ("checkObject", fast_path::check_object_cb),
        ("parseJson", fast_path::parse_json_cb),
        ("parseNdjson", fast_path::parse_ndjson_cb),
    ];
    for (name, cb) in entries {
        let f = cx.function(name, cb)?;
        cx.set_named(obj, name, f)?;
    }
    // SAFETY: `obj` is an object handle created in this env during this call.
    Ok(unsafe { Unknown::from_raw_unchecked(cx.raw(), obj.raw()) })
}

/// One rejected NDJSON line, for JavaScript.
#[napi(object)]
pub struct NdjsonLineIssues {
    pub line: u32,
    pub issues: Vec<JsIssue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_layout_covers_every_key_once() {
        // 7 scalar slots + 7 strings of two slots; code_namespace/verdict/would_block derive from the code.
        assert_eq!(RECORD_SLOTS, 7 + 7 * 2);
        assert_eq!(slot::OBSERVED_AT + 2, RECORD_SLOTS);
    }
}
