//! How a batch of dataplane verdicts crosses into JavaScript: one N-API call per batch, never one per event.
//!
//! Three transports were measured (`pnpm bench:dataplane` prints the table, `bench/dataplane/codec.mjs` runs
//! it alone); all three keep SPEC 3's key order exactly:
//! - [`BatchFormat::Objects`]: Rust builds every event object with N-API property sets;
//! - [`BatchFormat::Json`]: Rust writes one JSON array, JavaScript calls `JSON.parse` once;
//! - [`BatchFormat::Packed`]: Rust writes fixed-size records plus a string table in which a string repeated
//!   within the batch (comm, rule id, workload id, cgroup id, destination) is stored once; `js/interceptor.js`
//!   decodes it with typed-array reads and object literals.
//!
//! The production path (`NativeEventSubscription::next_batch`) uses [`PRODUCTION_FORMAT`], the fastest of the
//! three in that measurement; the others stay only behind `benchEventBatch` so the claim can be re-measured.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use napi::bindgen_prelude::{Buffer, Either3, Object, ToNapiValue, TypeName};
use napi::{sys, Env, ValueType};
use napi_derive::napi;

use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::{DataplaneReasonCode, DATAPLANE_NAMESPACE};
use interceptor_ebpf_core::contract::timestamp::Timestamp;
use interceptor_ebpf_core::contract::validation::MAX_SAFE_INTEGER;
use interceptor_ebpf_core::dataplane::VerdictEvent;

/// A transport for a batch of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    Objects,
    Json,
    Packed,
}

/// The transport `events()` uses; see the module comment and docs/node-api.md for the numbers behind it.
pub const PRODUCTION_FORMAT: BatchFormat = BatchFormat::Packed;

impl BatchFormat {
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "objects" => Some(BatchFormat::Objects),
            "json" => Some(BatchFormat::Json),
            "packed" => Some(BatchFormat::Packed),
            _ => None,
        }
    }
}

/// One DataplanePacketEvent (SPEC 3) as a JavaScript object built in Rust, property by property in SPEC key
/// order. Not `#[napi(object)]`: napi-rs sets a struct's `Option` fields after all required ones, which would
/// move `would_block`, `rule_id` and `workload_id` to the end of the object.
pub struct JsDataplanePacketEvent {
    pub code_namespace: &'static str,
    pub reason_code: &'static str,
    pub verdict: &'static str,
    pub would_block: Option<bool>,
    pub hook: &'static str,
    pub cgroup_id: String,
    pub protocol: &'static str,
    /// Absent for a verdict on a call without destination (a socket refused at creation).
    pub dst_ip: Option<String>,
    pub dst_port: Option<u32>,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub rule_id: Option<String>,
    pub policy_generation: f64,
    pub workload_id: Option<String>,
    pub observed_at: String,
}

impl TypeName for JsDataplanePacketEvent {
    fn type_name() -> &'static str {
        "DataplanePacketEvent"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for JsDataplanePacketEvent {
    unsafe fn to_napi_value(env: sys::napi_env, e: Self) -> napi::Result<sys::napi_value> {
        let env_ref = Env::from_raw(env);
        let mut o = Object::new(&env_ref)?;
        o.set("code_namespace", e.code_namespace)?;
        o.set("reason_code", e.reason_code)?;
        o.set("verdict", e.verdict)?;
        if let Some(wb) = e.would_block {
            o.set("would_block", wb)?;
        }
        o.set("hook", e.hook)?;
        o.set("cgroup_id", e.cgroup_id)?;
        o.set("protocol", e.protocol)?;
        if let Some(ip) = e.dst_ip {
            o.set("dst_ip", ip)?;
        }
        if let Some(port) = e.dst_port {
            o.set("dst_port", port)?;
        }
        o.set("pid", e.pid)?;
        o.set("uid", e.uid)?;
        o.set("comm", e.comm)?;
        if let Some(r) = e.rule_id {
            o.set("rule_id", r)?;
        }
        o.set("policy_generation", e.policy_generation)?;
        if let Some(w) = e.workload_id {
            o.set("workload_id", w)?;
        }
        o.set("observed_at", e.observed_at)?;
        // SAFETY: `env` is the live environment napi handed to this conversion, and `o` was created in it.
        unsafe { ToNapiValue::to_napi_value(env, o) }
    }
}

/// A generation is a counter starting at 1; it stays far below 2^53, where a JavaScript number stops being
/// exact. Saturating there keeps a (theoretical) overflow visible instead of silently rounding.
fn generation_as_number(g: u64) -> f64 {
    g.min(MAX_SAFE_INTEGER) as f64
}

fn to_object(e: &VerdictEvent) -> JsDataplanePacketEvent {
    JsDataplanePacketEvent {
        code_namespace: DATAPLANE_NAMESPACE,
        reason_code: e.reason.as_str(),
        verdict: e.reason.verdict().as_str(),
        would_block: e.reason.would_block(),
        hook: e.hook.as_str(),
        cgroup_id: e.cgroup_id.to_string(),
        protocol: e.protocol.as_str(),
        dst_ip: e.dst_ip.map(|ip| ip.to_string()),
        dst_port: e.dst_port.map(u32::from),
        pid: e.pid,
        uid: e.uid,
        comm: e.comm.clone(),
        rule_id: e.rule_id.clone(),
        policy_generation: generation_as_number(e.policy_generation),
        workload_id: e.workload_id.clone(),
        observed_at: rfc3339_nanos(e.observed_at),
    }
}

/// `observed_at` as RFC 3339 UTC with exactly 9 fractional digits (`2026-11-28T15:11:19.000000042Z`), by the
/// contract's one timestamp writer. A wall clock outside 1970..=9999 (a broken RTC) is clamped to the epoch
/// rather than producing text the contract would reject.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    Timestamp::from_system_time(t)
        .or_else(|| Timestamp::from_unix(0, 0))
        .map(|ts| ts.as_str().to_owned())
        .unwrap_or_default()
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's string escaper: the exact JSON grammar, so JSON.parse reads back the same string.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        // Serializing a &str cannot fail; an empty string keeps the output valid if it ever did.
        Err(_) => out.push_str("\"\""),
    }
}

/// The batch as one JSON array text.
pub fn to_json(events: &[VerdictEvent]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(events.len() * 360 + 2);
    out.push('[');
    for (n, e) in events.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"code_namespace\":\"{DATAPLANE_NAMESPACE}\",\"reason_code\":\"{}\",\"verdict\":\"{}\"",
            e.reason.as_str(),
            e.reason.verdict().as_str()
        );
        if let Some(wb) = e.reason.would_block() {
            let _ = write!(out, ",\"would_block\":{wb}");
        }
        let _ = write!(
            out,
            ",\"hook\":\"{}\",\"cgroup_id\":\"{}\",\"protocol\":\"{}\"",
            e.hook.as_str(),
            e.cgroup_id,
            e.protocol.as_str(),
        );
        if let Some(ip) = e.dst_ip {
            let _ = write!(out, ",\"dst_ip\":\"{ip}\"");
        }
        if let Some(port) = e.dst_port {
            let _ = write!(out, ",\"dst_port\":{port}");
        }
        let _ = write!(out, ",\"pid\":{},\"uid\":{},\"comm\":", e.pid, e.uid);
        push_json_str(&mut out, &e.comm);
        if let Some(r) = &e.rule_id {
            out.push_str(",\"rule_id\":");
            push_json_str(&mut out, r);
        }
        let _ = write!(
            out,
            ",\"policy_generation\":{}",
            e.policy_generation.min(MAX_SAFE_INTEGER)
        );
        if let Some(w) = &e.workload_id {
            out.push_str(",\"workload_id\":");
            push_json_str(&mut out, w);
        }
        let _ = write!(
            out,
            ",\"observed_at\":\"{}\"}}",
            rfc3339_nanos(e.observed_at)
        );
    }
    out.push(']');
    out
}

/// The packed layout: every word is a little-endian u32. A batch is `HEADER_WORDS` words (event count, string
/// count, string bytes), `WORDS_PER_EVENT` words per event, one end offset per string, then the strings' UTF-8
/// bytes. "String" words are indexes into the batch's string table. The one definition of the layout: the
/// writer below uses it, and `js/interceptor.js` reads the same numbers from [`packed_event_tables`].
pub mod packed {
    /// Header word: number of events.
    pub const COUNT: usize = 0;
    /// Header word: number of strings.
    pub const STRING_COUNT: usize = 1;
    /// Header word: length of the string bytes.
    pub const STRING_BYTES: usize = 2;
    pub const HEADER_WORDS: usize = STRING_BYTES + 1;

    /// Event word: the reason code's value.
    pub const REASON: usize = 0;
    /// Event word: hook value | protocol value << [`PROTOCOL_SHIFT`] | flags << [`FLAGS_SHIFT`].
    pub const KINDS: usize = 1;
    pub const CGROUP_ID: usize = 2;
    pub const DST_IP: usize = 3;
    pub const DST_PORT: usize = 4;
    pub const PID: usize = 5;
    pub const UID: usize = 6;
    pub const COMM: usize = 7;
    pub const RULE_ID: usize = 8;
    /// Event word: the policy generation's low 32 bits.
    pub const GENERATION_LOW: usize = 9;
    /// Event word: the policy generation's high bits.
    pub const GENERATION_HIGH: usize = 10;
    pub const WORKLOAD_ID: usize = 11;
    pub const OBSERVED_AT: usize = 12;
    pub const WORDS_PER_EVENT: usize = OBSERVED_AT + 1;

    /// Width of the hook and protocol fields of [`KINDS`].
    pub const KIND_MASK: u32 = 0xff;
    pub const PROTOCOL_SHIFT: u32 = 8;
    pub const FLAGS_SHIFT: u32 = 16;
    /// Flag bit: the event has a rule_id.
    pub const HAS_RULE_ID: u32 = 1;
    /// Flag bit: the event has a workload_id.
    pub const HAS_WORKLOAD_ID: u32 = 2;
    /// Flag bit: the event has a destination (dst_ip and dst_port); [`DST_IP`] and [`DST_PORT`] are 0
    /// otherwise (a socket refused at creation has none).
    pub const HAS_DESTINATION: u32 = 4;
}

/// Interns the strings of one batch so a string repeated across events is decoded once in JavaScript.
#[derive(Default)]
struct StringTable {
    index: HashMap<String, u32>,
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl StringTable {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.push_unique(s);
        self.index.insert(s.to_owned(), i);
        i
    }

    /// For strings that are (nearly) never repeated, such as timestamps: no hashing.
    fn push_unique(&mut self, s: &str) -> u32 {
        self.bytes.extend_from_slice(s.as_bytes());
        self.ends
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
        u32::try_from(self.ends.len() - 1).unwrap_or(u32::MAX)
    }
}

/// The batch in the [`packed`] layout.
pub fn to_packed(events: &[VerdictEvent]) -> Vec<u8> {
    use packed::*;
    let mut strings = StringTable::default();
    let mut words: Vec<u32> = Vec::with_capacity(events.len() * WORDS_PER_EVENT);
    let mut scratch = String::new();
    for e in events {
        let mut flags = 0u32;
        if e.rule_id.is_some() {
            flags |= HAS_RULE_ID;
        }
        if e.workload_id.is_some() {
            flags |= HAS_WORKLOAD_ID;
        }
        if e.dst_ip.is_some() {
            flags |= HAS_DESTINATION;
        }
        scratch.clear();
        {
            use std::fmt::Write;
            let _ = write!(scratch, "{}", e.cgroup_id);
        }
        let cgroup = strings.intern(&scratch);
        let dst = match e.dst_ip {
            Some(ip) => {
                scratch.clear();
                {
                    use std::fmt::Write;
                    let _ = write!(scratch, "{ip}");
                }
                strings.intern(&scratch)
            }
            None => 0,
        };
        let comm = strings.intern(&e.comm);
        let rule = e.rule_id.as_deref().map_or(0, |r| strings.intern(r));
        let workload = e.workload_id.as_deref().map_or(0, |w| strings.intern(w));
        let observed = strings.push_unique(&rfc3339_nanos(e.observed_at));
        let mut record = [0u32; WORDS_PER_EVENT];
        record[REASON] = e.reason.value();
        record[KINDS] = u32::from(e.hook as u8)
            | (u32::from(e.protocol as u8) << PROTOCOL_SHIFT)
            | (flags << FLAGS_SHIFT);
        record[CGROUP_ID] = cgroup;
        record[DST_IP] = dst;
        record[DST_PORT] = u32::from(e.dst_port.unwrap_or(0));
        record[PID] = e.pid;
        record[UID] = e.uid;
        record[COMM] = comm;
        record[RULE_ID] = rule;
        record[GENERATION_LOW] = e.policy_generation as u32;
        record[GENERATION_HIGH] = (e.policy_generation >> 32) as u32;
        record[WORKLOAD_ID] = workload;
        record[OBSERVED_AT] = observed;
        words.extend_from_slice(&record);
    }
    let mut header = [0u32; HEADER_WORDS];
    header[COUNT] = u32::try_from(events.len()).unwrap_or(u32::MAX);
    header[STRING_COUNT] = u32::try_from(strings.ends.len()).unwrap_or(u32::MAX);
    header[STRING_BYTES] = u32::try_from(strings.bytes.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(
        4 * (header.len() + words.len() + strings.ends.len()) + strings.bytes.len(),
    );
    for w in header.iter().chain(&words).chain(&strings.ends) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&strings.bytes);
    out
}

/// Where each value sits in a packed batch ([`packed`]), for `js/interceptor.js`.
#[napi(object, object_from_js = false)]
pub struct PackedLayout {
    pub header_words: u32,
    pub count: u32,
    pub string_count: u32,
    pub words_per_event: u32,
    pub reason: u32,
    pub kinds: u32,
    pub cgroup_id: u32,
    pub dst_ip: u32,
    pub dst_port: u32,
    pub pid: u32,
    pub uid: u32,
    pub comm: u32,
    pub rule_id: u32,
    pub generation_low: u32,
    pub generation_high: u32,
    pub workload_id: u32,
    pub observed_at: u32,
    pub kind_mask: u32,
    pub protocol_shift: u32,
    pub flags_shift: u32,
    pub has_rule_id: u32,
    pub has_workload_id: u32,
    pub has_destination: u32,
}

/// What `js/interceptor.js` needs to decode a packed batch: the layout, and tables indexed by the numeric
/// values the records carry, so the JavaScript decoder holds no offset or code table of its own.
#[napi(object, object_from_js = false)]
pub struct PackedEventTables {
    pub layout: PackedLayout,
    /// `code_namespace` of every event.
    pub namespace: &'static str,
    /// `reasonCodes[value]`: the wire name of the code with that value (`null` for 0, never on the wire).
    pub reason_codes: Vec<Option<&'static str>>,
    pub verdicts: Vec<Option<&'static str>>,
    /// `wouldBlock[value]`: `true`/`false` for the observe codes, `null` for the codes that must omit it.
    pub would_block: Vec<Option<bool>>,
    pub hooks: Vec<Option<&'static str>>,
    pub protocols: Vec<Option<&'static str>>,
}

fn by_value<T: Copy>(items: impl Iterator<Item = (usize, T)>) -> Vec<Option<T>> {
    let mut out: Vec<Option<T>> = Vec::new();
    for (v, item) in items {
        if out.len() <= v {
            out.resize(v + 1, None);
        }
        out[v] = Some(item);
    }
    out
}

#[napi(js_name = "packedEventTables")]
pub fn packed_event_tables() -> PackedEventTables {
    let codes = || {
        DataplaneReasonCode::ALL
            .iter()
            .map(|c| (c.value() as usize, *c))
    };
    let word = |w: usize| w as u32;
    PackedEventTables {
        layout: PackedLayout {
            header_words: word(packed::HEADER_WORDS),
            count: word(packed::COUNT),
            string_count: word(packed::STRING_COUNT),
            words_per_event: word(packed::WORDS_PER_EVENT),
            reason: word(packed::REASON),
            kinds: word(packed::KINDS),
            cgroup_id: word(packed::CGROUP_ID),
            dst_ip: word(packed::DST_IP),
            dst_port: word(packed::DST_PORT),
            pid: word(packed::PID),
            uid: word(packed::UID),
            comm: word(packed::COMM),
            rule_id: word(packed::RULE_ID),
            generation_low: word(packed::GENERATION_LOW),
            generation_high: word(packed::GENERATION_HIGH),
            workload_id: word(packed::WORKLOAD_ID),
            observed_at: word(packed::OBSERVED_AT),
            kind_mask: packed::KIND_MASK,
            protocol_shift: packed::PROTOCOL_SHIFT,
            flags_shift: packed::FLAGS_SHIFT,
            has_rule_id: packed::HAS_RULE_ID,
            has_workload_id: packed::HAS_WORKLOAD_ID,
            has_destination: packed::HAS_DESTINATION,
        },
        namespace: DATAPLANE_NAMESPACE,
        reason_codes: by_value(codes().map(|(v, c)| (v, c.as_str()))),
        verdicts: by_value(codes().map(|(v, c)| (v, c.verdict().as_str()))),
        would_block: by_value(codes().map(|(v, c)| (v, c.would_block())))
            .into_iter()
            .map(Option::flatten)
            .collect(),
        hooks: by_value(Hook::ALL.iter().map(|h| (*h as usize, h.as_str()))),
        protocols: by_value(Protocol::ALL.iter().map(|p| (*p as usize, p.as_str()))),
    }
}

/// A batch in one of the three transports, ready to return to JavaScript.
pub type EncodedBatch = Either3<Buffer, String, Vec<JsDataplanePacketEvent>>;

pub fn encode(events: &[VerdictEvent], format: BatchFormat) -> EncodedBatch {
    match format {
        BatchFormat::Packed => Either3::A(Buffer::from(to_packed(events))),
        BatchFormat::Json => Either3::B(to_json(events)),
        BatchFormat::Objects => Either3::C(events.iter().map(to_object).collect()),
    }
}

/// Synthetic but realistic events for the transport benchmark: the mix of codes, the repetition of comm,
/// rule ids and destinations, and string lengths a busy workload produces. Deterministic in `count`.
pub fn synthetic_events(count: usize) -> Vec<VerdictEvent> {
    let base = SystemTime::now();
    (0..count)
        .map(|i| {
            let reason = DataplaneReasonCode::ALL[i % DataplaneReasonCode::ALL.len()];
            let v6 = i % 4 == 3;
            let dst_ip = if v6 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (i % 64) as u16))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 1, (i % 7) as u8, (i % 64) as u8))
            };
            VerdictEvent {
                observed_at: base + Duration::from_nanos(i as u64 * 731),
                monotonic_ns: 1_000_000_000 + i as u64 * 731,
                cgroup_id: 4_294_967_296 + (i % 3) as u64,
                pid: 4242 + (i % 3) as u32,
                uid: 1000,
                comm: "connect_rate".to_owned(),
                hook: if v6 { Hook::Connect6 } else { Hook::Connect4 },
                protocol: if i % 2 == 0 {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                },
                dst_ip: (i % 13 != 12).then_some(dst_ip),
                dst_port: (i % 13 != 12).then_some(443),
                reason,
                rule_id: (i % 5 != 0).then(|| format!("egress-rule-{}", i % 100)),
                policy_generation: 7,
                workload_id: (i % 10 != 0).then(|| "workload-billing-7f9c".to_owned()),
                managed_cgroup_id: 4_294_967_296,
            }
        })
        .collect()
}

/// Benchmark hook, not part of the documented API: encodes `count` synthetic events in `format`
/// (`objects` | `json` | `packed`) so `bench/dataplane/codec.mjs` can time each transport end to end.
#[napi(
    js_name = "benchEventBatch",
    ts_return_type = "Buffer | string | Array<Record<string, unknown>>"
)]
pub fn bench_event_batch(format: String, count: u32) -> napi::Result<EncodedBatch> {
    let format = BatchFormat::from_wire(&format).ok_or_else(|| {
        napi::Error::new(
            napi::Status::InvalidArg,
            format!("format must be objects, json or packed, got {format}"),
        )
    })?;
    Ok(encode(&synthetic_events(count as usize), format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use interceptor_ebpf_core::contract::events::EVENT_KEYS;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_has_nine_fraction_digits_and_correct_civil_date() {
        // 2026-11-28T15:11:19Z is 1795878679 s after the epoch.
        let t = UNIX_EPOCH + Duration::new(1_795_878_679, 42);
        assert_eq!(rfc3339_nanos(t), "2026-11-28T15:11:19.000000042Z");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // Leap day.
        let t = UNIX_EPOCH + Duration::new(951_782_400, 999_999_999);
        assert_eq!(rfc3339_nanos(t), "2000-02-29T00:00:00.999999999Z");
    }

    #[test]
    fn json_batch_keeps_spec_key_order_and_omits_absent_keys() {
        // 13 events: the last one has no destination (a refused socket).
        let events = synthetic_events(13);
        let text = to_json(&events);
        let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => panic!("batch is not JSON: {e}: {text}"),
            };
        assert_eq!(parsed.len(), 13);
        // serde_json's Map sorts keys, so read the order from the text itself: every `"key":` token of each
        // object (the synthetic strings contain no braces, quotes or colons).
        let key_orders: Vec<Vec<&str>> = text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split("},{")
            .map(|obj| {
                obj.split('"')
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[1].starts_with(':'))
                    .map(|w| w[0])
                    .collect()
            })
            .collect();
        assert_eq!(key_orders.len(), 13);
        // Every key of the table but `message`, which the dataplane never sets.
        let order: Vec<&str> = EVENT_KEYS.into_iter().filter(|k| *k != "message").collect();
        for ((obj, keys), e) in parsed.iter().zip(&key_orders).zip(&events) {
            let expected: Vec<&str> = order
                .iter()
                .copied()
                .filter(|k| match *k {
                    "would_block" => e.reason.would_block().is_some(),
                    "rule_id" => e.rule_id.is_some(),
                    "workload_id" => e.workload_id.is_some(),
                    "dst_ip" | "dst_port" => e.dst_ip.is_some(),
                    _ => true,
                })
                .collect();
            assert_eq!(keys, &expected);
            assert_eq!(obj["verdict"], e.reason.verdict().as_str());
            assert_eq!(obj["cgroup_id"], e.cgroup_id.to_string());
        }
    }

    #[test]
    fn packed_batch_round_trips_its_string_table() {
        use packed::*;
        let events = synthetic_events(25);
        let buf = to_packed(&events);
        let word = |i: usize| {
            u32::from_le_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]])
        };
        let (count, nstrings, nbytes) = (
            word(COUNT) as usize,
            word(STRING_COUNT) as usize,
            word(STRING_BYTES) as usize,
        );
        assert_eq!(count, 25);
        let ends_at = HEADER_WORDS + count * WORDS_PER_EVENT;
        let bytes_at = 4 * (ends_at + nstrings);
        assert_eq!(buf.len(), bytes_at + nbytes);
        let string = |idx: u32| {
            let idx = idx as usize;
            let start = if idx == 0 {
                0
            } else {
                word(ends_at + idx - 1) as usize
            };
            let end = word(ends_at + idx) as usize;
            String::from_utf8_lossy(&buf[bytes_at + start..bytes_at + end]).into_owned()
        };
        let record = |n: usize, k: usize| word(HEADER_WORDS + n * WORDS_PER_EVENT + k);
        // A string repeated across events is stored once: every event points at the same comm entry.
        assert!((0..count).all(|n| record(n, COMM) == record(0, COMM)));
        for (n, e) in events.iter().enumerate() {
            let w = |k: usize| record(n, k);
            assert_eq!(w(REASON), e.reason.value());
            assert_eq!(w(KINDS) & KIND_MASK, e.hook as u32);
            assert_eq!((w(KINDS) >> PROTOCOL_SHIFT) & KIND_MASK, e.protocol as u32);
            assert_eq!(string(w(CGROUP_ID)), e.cgroup_id.to_string());
            assert_eq!(
                (w(KINDS) >> FLAGS_SHIFT) & HAS_DESTINATION != 0,
                e.dst_ip.is_some()
            );
            match e.dst_ip {
                Some(ip) => {
                    assert_eq!(string(w(DST_IP)), ip.to_string());
                    assert_eq!(Some(w(DST_PORT) as u16), e.dst_port);
                }
                None => assert_eq!((w(DST_IP), w(DST_PORT)), (0, 0)),
            }
            assert_eq!((w(PID), w(UID)), (e.pid, e.uid));
            assert_eq!(string(w(COMM)), e.comm);
            let flags = w(KINDS) >> FLAGS_SHIFT;
            assert_eq!(flags & HAS_RULE_ID != 0, e.rule_id.is_some());
            assert_eq!(flags & HAS_WORKLOAD_ID != 0, e.workload_id.is_some());
            if let Some(r) = &e.rule_id {
                assert_eq!(&string(w(RULE_ID)), r);
            }
            let generation = u64::from(w(GENERATION_LOW)) | (u64::from(w(GENERATION_HIGH)) << 32);
            assert_eq!(generation, e.policy_generation);
            assert_eq!(string(w(OBSERVED_AT)), rfc3339_nanos(e.observed_at));
        }
    }
}
