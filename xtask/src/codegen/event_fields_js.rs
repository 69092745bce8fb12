//! Generates `js/event-fields.js` from [`EVENT_KEYS`] and the addon's record layout ([`carried`]); the file is
//! a committed artefact of the package, like `binding.js`.

use interceptor_ebpf_core::contract::events::{EVENT_KEYS, KEY_COUNT, REQUIRED_KEYS};
use interceptor_ebpf_core::contract::reason_codes::DATAPLANE_NAMESPACE;

// The addon's record layout, compiled here from the addon's own file: the addon is a cdylib, which no crate can
// depend on, and the layout stays written once.
#[allow(dead_code)] // `RECORD_SLOTS` and the slot numbers matter to the addon, not to the generator.
#[path = "../../../src/packet_event/layout.rs"]
mod layout;

use layout::{carried, Carried};

/// `js/event-fields.js`: the per-key code of `js/events.js`, generated from [`EVENT_KEYS`] and the record
/// layout so that JavaScript holds no list of keys of its own, while V8 still sees plain named property reads
/// and writes (a loop over the key names costs ~30% of the object parser's throughput, measured).
pub fn render() -> String {
    use std::fmt::Write;
    let const_name = |k: usize| EVENT_KEYS[k].to_ascii_uppercase();
    let mut js = String::new();
    js.push_str(
        "// Generated from EVENT_KEYS (crates/core/src/contract/events/mod.rs) and the record layout\n\
         // (src/packet_event/layout.rs) by `cargo xtask codegen`. Do not edit: `cargo xtask codegen --check` fails on drift.\n\
         'use strict'\n\n\
         /**\n \
         * The code of js/events.js that names each DataplanePacketEvent key, specialised to the keys so that V8 sees\n \
         * plain property reads and writes. `t` is `native.dataplaneEventTables()`, `checkObject` its fast path.\n \
         */\n\
         module.exports = function eventFields(t, checkObject) {\n",
    );
    let mut tables: Vec<&str> = vec!["codes"];
    for k in 0..KEY_COUNT {
        match carried(k) {
            Carried::ByCode(table) | Carried::Indexed(_, table) if !tables.contains(&table) => {
                tables.push(table)
            }
            _ => {}
        }
    }
    for table in &tables {
        let _ = writeln!(js, "  const {table} = t.{table}");
    }
    for k in 0..KEY_COUNT {
        if !matches!(carried(k), Carried::Namespace | Carried::ByCode(_)) {
            let _ = writeln!(js, "  const {} = t.slots[{k}]", const_name(k));
        }
    }
    let values = (0..KEY_COUNT)
        .map(|k| format!("v{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    js.push_str(
        "\n  /**\n\
         \x20  * Reads every key of `input` once and has Rust judge the values (`checkObject(countOrKeys, ...values)`, see\n\
         \x20  * src/packet_event.rs): returns the issues (an array), or a new object with the validated values in table order,\n\
         \x20  * leaving out undefined ones and, `forLog`, the empty strings the log record drops. Each value is read\n\
         \x20  * once, so a getter cannot hand the output something other than what was validated.\n\
         \x20  */\n\
         \x20 function checkAndBuild(input, count, forLog) {\n",
    );
    for (k, key) in EVENT_KEYS.iter().enumerate() {
        let _ = writeln!(js, "    const v{k} = input.{key}");
    }
    let _ = writeln!(js, "    let r = checkObject(count, {values})");
    let _ = writeln!(
        js,
        "    // The count shows keys beyond the known ones: ask again with the names, so Rust can list them.\n\
         \x20   if (r === -1) {{\n      const names = []\n      for (const k in input) names.push(k)\n      \
         r = checkObject(names, {values})\n    }}\n    if (typeof r !== 'number') return r\n    \
         const drop = forLog ? r : 0"
    );
    // The required keys in a literal: V8 then creates the object with its first properties in place.
    let required = REQUIRED_KEYS
        .iter()
        .map(|&k| format!("{}: v{k}", EVENT_KEYS[k]))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(js, "    const out = {{ {required} }}");
    for (k, key) in EVENT_KEYS.iter().enumerate() {
        if REQUIRED_KEYS.contains(&k) {
            continue;
        }
        let _ = writeln!(
            js,
            "    if (v{k} !== undefined && (drop & {}) === 0) out.{key} = v{k}",
            1u32 << k
        );
    }
    js.push_str(
        "    return out\n  }\n\n\
         \x20 /** The event of the record at `s[o]`: `src.text()` is the input as a string, `extras` the strings that could\n\
         \x20  * not be sliced from it. */\n\
         \x20 function fromSlots(s, o, src, extras) {\n",
    );
    let code_key = (0..KEY_COUNT).find(|&k| matches!(carried(k), Carried::Code(_)));
    if let Some(k) = code_key {
        let _ = writeln!(js, "    const code = s[o + {}]", const_name(k));
    }
    let by_code = |k: usize| match carried(k) {
        Carried::Namespace => Some(format!("'{DATAPLANE_NAMESPACE}'")),
        Carried::Code(_) => Some("codes[code]".to_owned()),
        Carried::ByCode(table) => Some(format!("{table}[code]")),
        _ => None,
    };
    let required = REQUIRED_KEYS
        .iter()
        .filter_map(|&k| Some(format!("{}: {}", EVENT_KEYS[k], by_code(k)?)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(js, "    const out = {{ {required} }}\n    let v");
    for (k, key) in EVENT_KEYS.iter().enumerate() {
        if REQUIRED_KEYS.contains(&k) {
            continue;
        }
        let at = const_name(k);
        let _ = match carried(k) {
            Carried::Namespace | Carried::Code(_) | Carried::ByCode(_) => writeln!(
                js,
                "    v = {}\n    if (v !== null) out.{key} = v",
                by_code(k).unwrap_or_default()
            ),
            Carried::Indexed(_, table) => writeln!(
                js,
                "    v = s[o + {at}]\n    if (v !== 0) out.{key} = {table}[v]"
            ),
            Carried::Number(_) => writeln!(js, "    v = s[o + {at}]\n    if (v !== -1) out.{key} = v"),
            Carried::Text(_) => writeln!(
                js,
                "    v = s[o + {at}]\n    if (v !== -1) out.{key} = v >= 0 ? src.text().slice(v, s[o + {at} + 1]) : extras[-v - 2]"
            ),
        };
    }
    js.push_str("    return out\n  }\n\n  return { checkAndBuild, fromSlots }\n}\n");
    js
}
