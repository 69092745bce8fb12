//! DataplanePacketEvent (SPEC section 3): the record the dataplane emits for every judged connect/sendmsg.
//!
//! Every rule lives in [`validate_fields`], fed by [`Field`]s, so the three ways an event arrives share it:
//! a `serde_json::Value` ([`parse_value`]), JSON bytes ([`crate::contract::events::json`]) and JavaScript values
//! read by the N-API fast path (`src/packet_event/fast_path.rs` of the addon). The rules, decided for this package:
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
//!   (`message`, `comm`, `rule_id`, `dns_name`, `workload_id`) may be empty; the log record drops empty ones.
//! - `observed_at`: RFC 3339 date-time, see [`crate::contract::timestamp`].
//! - Optional means "absent": `null` is a type error for every key.
//! - Strings must be well-formed Unicode. JSON text with a lone-surrogate escape (`"\ud800"`) is rejected as
//!   `invalid_json` (serde_json's behaviour; `JSON.parse` would accept it), and a JavaScript string holding a
//!   lone surrogate is rejected with `invalid_format`, so `parse(JSON.parse(text))` and `parseJson(text)`
//!   agree. Reason: the agent writes log records as UTF-8, which cannot carry a lone surrogate faithfully.
//!
//! Output (parse result and log record) has the keys in the order of [`EVENT_KEYS`], `would_block` kept when
//! false; the log record additionally drops empty optional strings.

pub mod json;
mod serialize;
mod validate;

#[cfg(test)]
mod test_fixtures;

use std::net::IpAddr;

use super::hook::{Hook, Protocol};
use super::reason_codes::{DataplaneReasonCode, Verdict};
use super::timestamp::{self, TimestampParts};
use super::validation::Field;

pub use serialize::LogRecord;
pub use validate::{fields_from_value, not_an_object, parse_value, validate_fields};

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
    "dns_name",
    "policy_generation",
    "workload_id",
    "observed_at",
];

/// Number of keys a DataplanePacketEvent can have.
pub const KEY_COUNT: usize = 18;

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
    pub const DNS_NAME: usize = 14;
    pub const POLICY_GENERATION: usize = 15;
    pub const WORKLOAD_ID: usize = 16;
    pub const OBSERVED_AT: usize = 17;
}

/// The keys every event has (indexes into [`EVENT_KEYS`]); the others are optional.
pub const REQUIRED_KEYS: [usize; 3] = [key::CODE_NAMESPACE, key::REASON_CODE, key::VERDICT];

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
        8 => match k.as_bytes()[..2] {
            [b'p', _] => (key::PROTOCOL, "protocol"),
            [_, b'n'] => (key::DNS_NAME, "dns_name"),
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
pub const POLICY_GENERATION_MAX: u64 = super::validation::MAX_SAFE_INTEGER;

/// A process name of at most [`COMM_MAX_BYTES`] UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comm(String);

impl Comm {
    /// `None` when `s` is longer than [`COMM_MAX_BYTES`] bytes.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (s.len() <= COMM_MAX_BYTES).then_some(Comm(s))
    }

    /// The kernel's `comm` (a NUL-padded 16-byte array holding whatever bytes the process set, UTF-8 or not)
    /// as a `comm` field: the bytes up to the first NUL, invalid UTF-8 replaced with U+FFFD, then cut at a
    /// character boundary to at most [`COMM_MAX_BYTES`]. The cut is needed because a replacement character
    /// takes 3 bytes: 16 invalid bytes would otherwise become 48, which the contract (and so every parser of
    /// this package) rejects. Cutting keeps the event; the name was not text to begin with.
    pub fn from_kernel_bytes(raw: &[u8]) -> Comm {
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let mut s = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut cut = s.len().min(COMM_MAX_BYTES);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        Comm(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
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
    /// SPEC 4b: the DNS name whose answer taught the destination, or the name of a refused query.
    pub dns_name: Option<String>,
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
            dns_name: None,
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
    pub dns_name: Option<&'a str>,
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
            dns_name: self.dns_name.map(str::to_owned),
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
            (key::DNS_NAME, self.dns_name),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_fixtures::{full, with};
    use super::*;

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
            "dns_namE",
            "dxs_name",
            "dn_name",
        ] {
            assert_eq!(key_index(k), None, "{k}");
        }
    }

    #[test]
    fn exactly_the_required_keys_are_required() {
        for (k, name) in EVENT_KEYS.iter().enumerate() {
            let mut v = full();
            let removed = v.as_object_mut().and_then(|o| o.remove(*name));
            if removed.is_none() {
                continue; // would_block: absent from `full()` already
            }
            assert_eq!(
                parse_value(&v).is_err(),
                REQUIRED_KEYS.contains(&k),
                "without {name}"
            );
        }
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
