//! N-API glue for DataplanePacketEvent (`js/events.js`). No rule lives here: every value is reduced to a
//! `Field` and judged by `interceptor_ebpf_core::contract::events::validate_fields`.
//!
//! The three hot entry points are raw `napi_sys` callbacks rather than `#[napi]` functions, because the
//! boundary dominates the cost of validating a small record (measured: ~30 ns per raw call against ~140 ns
//! for a `#[napi]` one, ~100 ns per property read, ~1.1 µs to build a result object property by property):
//!
//! - `checkObject(countOrKeys, ...18 values)`: the JS wrapper reads the known keys itself (cheap in JS) and
//!   passes their values as arguments, plus the object's key count. Returns the log record's empty-string
//!   mask (a number >= 0) when valid, `-1` when the key count shows keys it was not given (the wrapper then
//!   calls again with the key names so the unknown ones can be named), or the issue array.
//! - `parseJson(input, slots)`: validates one JSON text (string, Buffer or Uint8Array) and writes the typed
//!   values and the UTF-16 offsets of the strings into the caller's `Float64Array`; JS builds the object by
//!   slicing the text, which is far cheaper than creating strings through N-API. Strings that cannot be sliced
//!   (JSON escapes) come back as an array of "extra" strings.
//! - `parseNdjson(input)`: the same for a batch, returning `[slots, count, extras, errors]`.
//!
//! The raw callbacks live in `src/packet_event/fast_path.rs`, written against the safe wrappers of `napi_raw.rs`.
//! Every callback runs inside `catch_unwind`: a panic becomes a thrown JavaScript `Error`, never an abort
//! (`__test__/events.test.mjs` feeds hostile inputs to check this).

mod fast_path;
mod layout;

use layout::{carried, slot, Carried, RECORD_SLOTS};

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;

use crate::codes::js_type_name;
use crate::issues::{to_js_issues, JsIssue};
use crate::napi_raw::{RawCallback, Scope};
use interceptor_ebpf_core::contract::events::{not_an_object, EVENT_KEYS, KEY_COUNT};
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode;

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
    /// Protocol wire string by value (the values of `Protocol`; 0 is never one).
    pub protocols: Vec<String>,
    pub record_slots: u32,
    /// `slots[k]`: the slot of key `k` of `keys` in a record (a string's start; its end is the next slot), or
    /// -1 for keys that follow from the code. The one definition of the layout, read by `js/event-fields.js`.
    pub slots: Vec<i32>,
}

/// Names by value: `out[v]` is the name of the item whose value is `v` (empty where none has it).
fn by_value(items: impl Iterator<Item = (usize, &'static str)>) -> Vec<String> {
    let mut out = Vec::new();
    for (v, name) in items {
        if out.len() <= v {
            out.resize(v + 1, String::new());
        }
        out[v] = name.to_owned();
    }
    out
}

#[napi(catch_unwind)]
pub fn dataplane_event_tables() -> DataplaneEventTables {
    let codes = || {
        DataplaneReasonCode::ALL
            .iter()
            .map(|c| (c.value() as usize, *c))
    };
    let mut would_block = Vec::new();
    for (v, c) in codes() {
        if would_block.len() <= v {
            would_block.resize(v + 1, None);
        }
        would_block[v] = c.would_block();
    }
    DataplaneEventTables {
        keys: EVENT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        codes: by_value(codes().map(|(v, c)| (v, c.as_str()))),
        verdicts: by_value(codes().map(|(v, c)| (v, c.verdict().as_str()))),
        would_block,
        hooks: by_value(Hook::ALL.iter().map(|h| (*h as usize, h.as_str()))),
        protocols: by_value(Protocol::ALL.iter().map(|p| (*p as usize, p.as_str()))),
        record_slots: RECORD_SLOTS as u32,
        slots: (0..KEY_COUNT)
            .map(|k| match carried(k) {
                Carried::Code(s)
                | Carried::Indexed(s, _)
                | Carried::Number(s)
                | Carried::Text(s) => s as i32,
                Carried::Namespace | Carried::ByCode(_) => -1,
            })
            .collect(),
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
    use interceptor_ebpf_core::contract::events::key;

    #[test]
    fn the_layout_gives_every_stored_key_its_own_slots() {
        let mut used = [false; RECORD_SLOTS];
        for (k, name) in EVENT_KEYS.iter().enumerate() {
            let (at, width) = match carried(k) {
                Carried::Code(s) | Carried::Indexed(s, _) | Carried::Number(s) => (s, 1),
                Carried::Text(s) => (s, 2),
                Carried::Namespace | Carried::ByCode(_) => continue,
            };
            for (s, taken) in used.iter_mut().enumerate().skip(at).take(width) {
                assert!(!*taken, "slot {s} of key {name} is taken twice");
                *taken = true;
            }
        }
        assert!(used.iter().all(|u| *u), "every slot of a record is used");
        assert_eq!(carried(key::OBSERVED_AT), Carried::Text(slot::OBSERVED_AT));
        assert_eq!(carried(key::COMM), Carried::Text(slot::COMM));
        assert_eq!(carried(key::DNS_NAME), Carried::Text(slot::DNS_NAME));
    }
}
