//! How a batch of dataplane verdicts crosses into JavaScript: one N-API call per batch, never one per event.
//!
//! The batch is [`packed`]: fixed-size records plus a string table in which a string repeated within the batch
//! (comm, rule id, DNS name, workload id, cgroup id, destination) is stored once; `js/interceptor.js` decodes it with
//! typed-array reads and object literals, keeping SPEC 3's key order exactly. It was the fastest of three
//! measured transports (`pnpm bench:dataplane` prints the table, `bench/dataplane/codec.mjs` runs it alone);
//! the other two live in [`bench`], built only with the `bench` cargo feature so production builds leave them
//! out.

use std::collections::HashMap;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::{DataplaneReasonCode, DATAPLANE_NAMESPACE};
use interceptor_ebpf_core::contract::timestamp::Timestamp;
use interceptor_ebpf_core::dataplane::VerdictEvent;

#[cfg(any(test, feature = "bench"))]
pub mod bench;

/// The batch as `nextBatch` returns it to JavaScript: the [`packed`] bytes.
pub fn encode(events: &[VerdictEvent]) -> Buffer {
    Buffer::from(to_packed(events))
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
    pub const DNS_NAME: usize = 9;
    /// Event word: the policy generation's low 32 bits.
    pub const GENERATION_LOW: usize = 10;
    /// Event word: the policy generation's high bits.
    pub const GENERATION_HIGH: usize = 11;
    pub const WORKLOAD_ID: usize = 12;
    pub const OBSERVED_AT: usize = 13;
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
    /// Flag bit: the event has a dns_name (SPEC 4b).
    pub const HAS_DNS_NAME: u32 = 8;
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
        if e.dns_name.is_some() {
            flags |= HAS_DNS_NAME;
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
        let dns_name = e.dns_name.as_deref().map_or(0, |n| strings.intern(n));
        let workload = e.workload_id.as_deref().map_or(0, |w| strings.intern(w));
        let observed = strings.push_unique(
            e.observed_timestamp()
                .as_ref()
                .map_or("", Timestamp::as_str),
        );
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
        record[DNS_NAME] = dns_name;
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
    pub dns_name: u32,
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
    pub has_dns_name: u32,
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
            dns_name: word(packed::DNS_NAME),
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
            has_dns_name: packed::HAS_DNS_NAME,
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

#[cfg(test)]
mod tests {
    use super::bench::synthetic_events;
    use super::*;

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
            assert_eq!(flags & HAS_DNS_NAME != 0, e.dns_name.is_some());
            if let Some(r) = &e.rule_id {
                assert_eq!(&string(w(RULE_ID)), r);
            }
            match &e.dns_name {
                Some(name) => assert_eq!(&string(w(DNS_NAME)), name),
                None => assert_eq!(w(DNS_NAME), 0),
            }
            let generation = u64::from(w(GENERATION_LOW)) | (u64::from(w(GENERATION_HIGH)) << 32);
            assert_eq!(generation, e.policy_generation);
            assert_eq!(
                Some(string(w(OBSERVED_AT))),
                e.observed_timestamp().map(|t| t.as_str().to_owned())
            );
        }
    }
}
