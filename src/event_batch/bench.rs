//! The two transports `benchEventBatch` measures against the production [`super::packed`] one, and the
//! synthetic events it encodes. Built only with the `bench` cargo feature (`bench/dataplane/bench-addon.mjs`
//! builds that addon) and in unit tests: production builds, and the `binding.d.ts` generated from them, leave
//! it out. Every transport starts from the contract's conversion (`VerdictEvent::to_packet_event`).
//!
//! - [`BatchFormat::Objects`]: Rust builds every event object with N-API property sets;
//! - [`BatchFormat::Json`]: Rust writes one JSON array of log records, JavaScript calls `JSON.parse` once;
//! - [`BatchFormat::Packed`]: the production transport ([`super::to_packed`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use napi::bindgen_prelude::{Buffer, Either3, Object, ToNapiValue, TypeName};
use napi::{sys, Env, ValueType};
use napi_derive::napi;

use interceptor_ebpf_core::contract::events::DataplanePacketEvent;
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::{DataplaneReasonCode, DATAPLANE_NAMESPACE};
use interceptor_ebpf_core::dataplane::VerdictEvent;

/// A transport for a batch of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    Objects,
    Json,
    Packed,
}

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
/// move `would_block`, `rule_id`, `dns_name` and `workload_id` to the end of the object.
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
    pub dns_name: Option<String>,
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
        if let Some(n) = e.dns_name {
            o.set("dns_name", n)?;
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

fn to_object(e: &VerdictEvent) -> JsDataplanePacketEvent {
    let p = e.to_packet_event();
    JsDataplanePacketEvent {
        code_namespace: DATAPLANE_NAMESPACE,
        reason_code: p.reason_code.as_str(),
        verdict: p.verdict().as_str(),
        would_block: p.would_block(),
        hook: p.hook.map_or("", |h| h.as_str()),
        cgroup_id: p.cgroup_id.unwrap_or_default().to_string(),
        protocol: p.protocol.map_or("", |h| h.as_str()),
        dst_ip: p.dst_ip.map(|ip| ip.to_string()),
        dst_port: p.dst_port.map(u32::from),
        pid: p.pid.unwrap_or_default(),
        uid: p.uid.unwrap_or_default(),
        comm: p.comm.map(|c| c.into_string()).unwrap_or_default(),
        rule_id: p.rule_id,
        dns_name: p.dns_name,
        policy_generation: p.policy_generation.map_or(0.0, |g| g.get() as f64),
        workload_id: p.workload_id,
        observed_at: p
            .observed_at
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// The batch as one JSON array of the contract's log records (`write_log_json`, the agent's line format).
pub fn to_json(events: &[VerdictEvent]) -> String {
    let mut out = Vec::with_capacity(events.len() * 360 + 2);
    out.push(b'[');
    for (n, e) in events.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        DataplanePacketEvent::from(e).write_log_json(&mut out);
    }
    out.push(b']');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// A batch in one of the three transports, ready to return to JavaScript.
pub type BenchBatch = Either3<Buffer, String, Vec<JsDataplanePacketEvent>>;

pub fn encode(events: &[VerdictEvent], format: BatchFormat) -> BenchBatch {
    match format {
        BatchFormat::Packed => Either3::A(super::encode(events)),
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
                // Some destinations were learned from a DNS answer (SPEC 4b): a few names, repeated.
                dns_name: (i % 5 != 0 && i % 3 == 1).then(|| format!("api-{}.example.com", i % 4)),
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
pub fn bench_event_batch(format: String, count: u32) -> napi::Result<BenchBatch> {
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
                    "dns_name" => e.dns_name.is_some(),
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
}
