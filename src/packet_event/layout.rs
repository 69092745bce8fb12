//! The record layout of `parseJson`/`parseNdjson` (src/packet_event/fast_path.rs writes it, `js/event-fields.js`
//! reads it): which `Float64Array` slot holds each DataplanePacketEvent key. Self-contained on purpose: the code
//! generator (`cargo xtask codegen`, xtask/src/codegen/event_fields_js.rs) compiles this same file to write
//! `js/event-fields.js`, since the addon is a cdylib that no other crate can depend on.

use interceptor_ebpf_core::contract::events::key;

/// Number of `Float64Array` slots per record written by `parseJson`/`parseNdjson`.
pub const RECORD_SLOTS: usize = 23;
/// Slot of each value within a record; strings take two slots (UTF-16 start, end), `-1` when absent and
/// `-(2 + k)` for "`extras[k]`".
pub mod slot {
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
    /// Appended after the original layout (SPEC 4b).
    pub const DNS_NAME: usize = 21;
}

/// How a key of a DataplanePacketEvent travels in a record and is rebuilt in JavaScript: the record layout,
/// from which `cargo xtask codegen` generates `js/event-fields.js` (`xtask/src/codegen/event_fields_js.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    /// `code_namespace`: always the dataplane namespace, not stored.
    Namespace,
    /// `reason_code`: the code's value at this slot; the keys below follow from it.
    Code(usize),
    /// A value looked up by code value in the named table (`verdicts`, `wouldBlock`, where `null` means absent).
    ByCode(&'static str),
    /// A value index into the named table (`hooks`, `protocols`) at this slot; 0 when absent.
    Indexed(usize, &'static str),
    /// A number at this slot; -1 when absent.
    Number(usize),
    /// A string at this slot and the next: UTF-16 start and end in the input, `-(2 + k)` for `extras[k]`, or -1
    /// when absent.
    Text(usize),
}

/// The layout of key `k` (an index into `EVENT_KEYS`).
pub const fn carried(k: usize) -> Carried {
    match k {
        key::CODE_NAMESPACE => Carried::Namespace,
        key::REASON_CODE => Carried::Code(slot::CODE),
        key::VERDICT => Carried::ByCode("verdicts"),
        key::WOULD_BLOCK => Carried::ByCode("wouldBlock"),
        key::HOOK => Carried::Indexed(slot::HOOK, "hooks"),
        key::PROTOCOL => Carried::Indexed(slot::PROTOCOL, "protocols"),
        key::DST_PORT => Carried::Number(slot::DST_PORT),
        key::PID => Carried::Number(slot::PID),
        key::UID => Carried::Number(slot::UID),
        key::POLICY_GENERATION => Carried::Number(slot::POLICY_GENERATION),
        key::CGROUP_ID => Carried::Text(slot::CGROUP_ID),
        key::MESSAGE => Carried::Text(slot::MESSAGE),
        key::DST_IP => Carried::Text(slot::DST_IP),
        key::COMM => Carried::Text(slot::COMM),
        key::RULE_ID => Carried::Text(slot::RULE_ID),
        key::DNS_NAME => Carried::Text(slot::DNS_NAME),
        key::WORKLOAD_ID => Carried::Text(slot::WORKLOAD_ID),
        // key::OBSERVED_AT, the last key; a key added to EVENT_KEYS must be given its own arm.
        _ => Carried::Text(slot::OBSERVED_AT),
    }
}
