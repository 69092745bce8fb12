//! The two serialized forms of a [`DataplanePacketEvent`]: the parse output (every present field) and the log
//! record (SPEC "Log records": empty optional strings dropped). Both keep the keys in [`EVENT_KEYS`] order.
//!
//! [`EVENT_KEYS`]: super::EVENT_KEYS

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{Comm, DataplanePacketEvent, KEY_COUNT};
use crate::contract::reason_codes::DATAPLANE_NAMESPACE;

impl DataplanePacketEvent {
    /// The log record form (SPEC "Log records"): serializes in table order with empty optional strings dropped.
    pub fn log_record(&self) -> LogRecord<'_> {
        LogRecord(self)
    }

    /// The log record as one JSON text (no trailing newline), exactly what the agent writes per line.
    pub fn to_log_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_log_json(&mut out);
        out
    }

    /// Appends the log record's JSON text to `out`.
    pub fn write_log_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail and every field serializes infallibly (strings, bools, integers).
        if let Err(e) = serde_json::to_writer(&mut *out, &self.log_record()) {
            debug_assert!(false, "log record serialization failed: {e}");
        }
    }

    /// The log record as a `serde_json::Value` (an ordered object: the crate enables `preserve_order`).
    pub fn to_log_value(&self) -> serde_json::Value {
        serde_json::to_value(self.log_record()).unwrap_or(serde_json::Value::Null)
    }

    /// The parse-output form as a `serde_json::Value`: like the log record but empty strings are kept.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// An event's log record, borrowed from the event. Serializes in table order, `would_block` kept when false,
/// empty optional strings dropped.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'e>(pub &'e DataplanePacketEvent);

fn serialize_event<S: Serializer>(
    e: &DataplanePacketEvent,
    drop_empty: bool,
    s: S,
) -> Result<S::Ok, S::Error> {
    let keep = |v: &Option<String>| -> bool {
        match v {
            Some(t) => !(drop_empty && t.is_empty()),
            None => false,
        }
    };
    let comm_kept = e
        .comm
        .as_ref()
        .is_some_and(|c| !(drop_empty && c.0.is_empty()));
    let mut st = s.serialize_struct("DataplanePacketEvent", KEY_COUNT)?;
    st.serialize_field("code_namespace", DATAPLANE_NAMESPACE)?;
    st.serialize_field("reason_code", e.reason_code.as_str())?;
    st.serialize_field("verdict", e.verdict().as_str())?;
    if let Some(wb) = e.would_block() {
        st.serialize_field("would_block", &wb)?;
    }
    if let Some(h) = e.hook {
        st.serialize_field("hook", h.as_str())?;
    }
    if let Some(c) = e.cgroup_id {
        // A string on the wire: u64 does not fit a JavaScript number.
        st.serialize_field("cgroup_id", &c.to_string())?;
    }
    if keep(&e.message) {
        st.serialize_field("message", &e.message)?;
    }
    if let Some(p) = e.protocol {
        st.serialize_field("protocol", p.as_str())?;
    }
    if let Some(ip) = e.dst_ip {
        st.serialize_field("dst_ip", &ip.to_string())?;
    }
    if let Some(p) = e.dst_port {
        st.serialize_field("dst_port", &p)?;
    }
    if let Some(p) = e.pid {
        st.serialize_field("pid", &p)?;
    }
    if let Some(u) = e.uid {
        st.serialize_field("uid", &u)?;
    }
    if comm_kept {
        st.serialize_field("comm", &e.comm.as_ref().map(Comm::as_str))?;
    }
    if keep(&e.rule_id) {
        st.serialize_field("rule_id", &e.rule_id)?;
    }
    if keep(&e.dns_name) {
        st.serialize_field("dns_name", &e.dns_name)?;
    }
    if let Some(g) = e.policy_generation {
        st.serialize_field("policy_generation", &g.0)?;
    }
    if keep(&e.workload_id) {
        st.serialize_field("workload_id", &e.workload_id)?;
    }
    if let Some(t) = &e.observed_at {
        st.serialize_field("observed_at", t.as_str())?;
    }
    st.end()
}

impl Serialize for DataplanePacketEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_event(self, false, s)
    }
}

impl Serialize for LogRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_event(self.0, true, s)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_fixtures::{full, minimal};
    use super::super::{parse_value, EVENT_KEYS};

    #[test]
    fn output_keys_are_in_table_order() {
        let v = parse_value(&full()).unwrap().to_log_value();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: Vec<&str> = EVENT_KEYS
            .iter()
            .copied()
            .filter(|k| *k != "would_block")
            .collect();
        assert_eq!(keys, expected);
        let json = String::from_utf8(parse_value(&full()).unwrap().to_log_json()).unwrap();
        assert!(json.starts_with(
            "{\"code_namespace\":\"dataplane_verdict\",\"reason_code\":\"DENY_EXPLICIT\""
        ));
    }

    #[test]
    fn log_record_drops_empty_strings_and_keeps_false_would_block() {
        let mut v = minimal("OBSERVE_WOULD_ALLOW");
        for k in ["message", "comm", "rule_id", "dns_name", "workload_id"] {
            v[k] = json!("");
        }
        let e = parse_value(&v).unwrap();
        assert_eq!(e.message.as_deref(), Some(""));
        assert_eq!(e.to_value(), v);
        assert_eq!(
            e.to_log_value(),
            json!({"code_namespace": "dataplane_verdict", "reason_code": "OBSERVE_WOULD_ALLOW",
                   "verdict": "allow", "would_block": false})
        );
        assert_eq!(
            String::from_utf8(e.to_log_json()).unwrap(),
            r#"{"code_namespace":"dataplane_verdict","reason_code":"OBSERVE_WOULD_ALLOW","verdict":"allow","would_block":false}"#
        );
    }
}
