//! The typed fast path of [`PolicySnapshot::from_json_slice`]. It only ever answers "valid, here it is" or
//! "ask the slow path": every check reuses the slow path's validators, and its serde types are at least as
//! strict as the slow path (unknown keys, duplicate keys, `null` for an optional key, non-integral numbers and
//! arrays in place of objects all send the input to the slow path).

use std::borrow::Cow;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::fqdn::{parse_fqdn, FqdnUse};
use super::parse::{check_rule_id, report_duplicates, split_broker, BrokerEntry};
use super::{
    parse_canonical_cidr, parse_endpoint_ip, BrokerEndpoint, BrokerName, DnsEndpoint, DnsQueries,
    PolicySnapshot, Rule, RuleAction, RuleProtocol, RuleTarget, Sampling, DEFAULT_DNS_PORT,
    MAX_BROKER_ENDPOINTS, MAX_DNS_ENDPOINTS, MAX_FQDN_RULES, MAX_RULES_PER_FAMILY,
};
use crate::contract::json_reader::Issues;
use crate::contract::validation::PathSegment;
use crate::contract::wire_literal::WireLiteral;

/// A derived wire struct read from a JSON object only. serde's derived struct impls also accept a JSON
/// array of the field values in declaration order (`[[], [], []]` would be an empty snapshot), which the
/// slow path rightly rejects as "expected object".
struct Obj<T>(T);

impl<T> Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjVisitor(PhantomData)).map(Obj)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotWire<'a> {
    #[serde(borrow)]
    broker: Vec<Obj<BrokerWire<'a>>>,
    #[serde(borrow)]
    dns: Vec<Obj<DnsWire<'a>>>,
    #[serde(borrow)]
    rules: Vec<Obj<RuleWire<'a>>>,
    #[serde(default, deserialize_with = "present")]
    sampling: Option<Obj<SamplingWire>>,
    #[serde(rename = "dnsQueries", default, deserialize_with = "present", borrow)]
    dns_queries: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerWire<'a> {
    #[serde(default, deserialize_with = "present", borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present", borrow)]
    fqdn: Option<Cow<'a, str>>,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsWire<'a> {
    #[serde(borrow)]
    ip: Cow<'a, str>,
    #[serde(default, deserialize_with = "present")]
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleWire<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(default, deserialize_with = "present", borrow)]
    cidr: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present", borrow)]
    fqdn: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    ports: Option<Vec<u16>>,
    #[serde(default, deserialize_with = "present", borrow)]
    protocol: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SamplingWire {
    #[serde(default, deserialize_with = "present")]
    allow_one_in: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    unmanaged_one_in: Option<u32>,
}

/// A key that is present must hold a `T`: unlike `Option<T>`'s own impl, `null` is refused.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

pub(super) fn parse(bytes: &[u8]) -> Option<PolicySnapshot> {
    let Obj(wire): Obj<SnapshotWire<'_>> = serde_json::from_slice(bytes).ok()?;
    // Validators report into a scratch list; any report means "let the slow path explain".
    let mut scratch = Issues::new();
    let no_path: &[PathSegment] = &[];
    let over = |n: usize, max: usize| n > max;
    if over(wire.broker.len(), MAX_BROKER_ENDPOINTS) || over(wire.dns.len(), MAX_DNS_ENDPOINTS) {
        return None;
    }
    let mut broker = Vec::with_capacity(wire.broker.len());
    for e in &wire.broker {
        (e.port != 0).then_some(())?;
        broker.push(match (&e.ip, &e.fqdn) {
            (Some(ip), None) => BrokerEntry::Ip(BrokerEndpoint {
                ip: parse_endpoint_ip(ip, no_path, &mut scratch)?,
                port: e.port,
            }),
            (None, Some(name)) => BrokerEntry::Name(BrokerName {
                fqdn: parse_fqdn(name, FqdnUse::Broker, no_path, &mut scratch)?,
                port: e.port,
            }),
            _ => return None,
        });
    }
    let (broker, broker_names) = split_broker(broker);
    let mut dns = Vec::with_capacity(wire.dns.len());
    for e in &wire.dns {
        let ip = parse_endpoint_ip(&e.ip, no_path, &mut scratch)?;
        let port = e.port.unwrap_or(DEFAULT_DNS_PORT);
        (port != 0).then_some(())?;
        dns.push(DnsEndpoint { ip, port });
    }
    report_duplicates(
        broker.iter().map(|b| (0, b.ip, b.port)),
        no_path,
        "",
        &mut scratch,
    );
    report_duplicates(
        broker_names.iter().map(|b| (0, &b.fqdn, b.port)),
        no_path,
        "",
        &mut scratch,
    );
    report_duplicates(
        dns.iter().map(|d| (0, d.ip, d.port)),
        no_path,
        "",
        &mut scratch,
    );
    let mut rules = Vec::with_capacity(wire.rules.len());
    let mut ids: HashSet<&str> = HashSet::with_capacity(wire.rules.len());
    let (mut v4, mut v6) = (0usize, 0usize);
    for r in &wire.rules {
        let id = check_rule_id(&r.id, no_path, &mut scratch)?;
        ids.insert(id).then_some(())?;
        let action = RuleAction::from_wire_literal(&r.action)?;
        let target = match (&r.cidr, &r.fqdn) {
            (Some(cidr), None) => {
                let net = parse_canonical_cidr(cidr, no_path, &mut scratch)?;
                v4 += usize::from(net.is_ipv4());
                v6 += usize::from(!net.is_ipv4());
                RuleTarget::Cidr(net)
            }
            (None, Some(name)) => {
                RuleTarget::Fqdn(parse_fqdn(name, FqdnUse::Rule, no_path, &mut scratch)?)
            }
            _ => return None,
        };
        let ports = match &r.ports {
            None => Vec::new(),
            Some(ports) => {
                let mut seen = HashSet::with_capacity(ports.len());
                let ok = !ports.is_empty() && ports.iter().all(|&p| p != 0 && seen.insert(p));
                ok.then(|| ports.clone())?
            }
        };
        let protocol = match &r.protocol {
            None => None,
            Some(name) => Some(RuleProtocol::from_wire_literal(name)?.0),
        };
        rules.push(Rule {
            id: id.to_owned(),
            action,
            target,
            ports,
            protocol,
        });
    }
    let fqdn = rules.len() - v4 - v6;
    if over(v4, MAX_RULES_PER_FAMILY)
        || over(v6, MAX_RULES_PER_FAMILY)
        || over(fqdn, MAX_FQDN_RULES)
    {
        return None;
    }
    let dns_queries = match &wire.dns_queries {
        None => DnsQueries::default(),
        Some(text) => DnsQueries::from_wire_literal(text)?,
    };
    let defaults = Sampling::default();
    let sampling = wire.sampling.map_or(defaults, |s| Sampling {
        allow_one_in: s.allow_one_in.unwrap_or(defaults.allow_one_in),
        unmanaged_one_in: s.unmanaged_one_in.unwrap_or(defaults.unmanaged_one_in),
    });
    scratch.is_empty().then_some(PolicySnapshot {
        broker,
        dns,
        rules,
        sampling,
        broker_names,
        dns_queries,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::PolicySnapshot;
    use crate::contract::validation::IssueCode;

    #[test]
    fn bytes_that_are_not_json_are_one_issue() {
        let err = PolicySnapshot::from_json_slice(b"{\"broker\": [").expect_err("not json");
        assert_eq!(err.issues.len(), 1);
        assert_eq!(err.issues[0].code, IssueCode::InvalidJson);
        let ok = PolicySnapshot::from_json_slice(br#"{"broker":[],"dns":[],"rules":[]}"#);
        assert_eq!(ok, Ok(PolicySnapshot::default()));
    }

    /// Issue 17: `42001.0000000000001` is 42001 as a number but a fraction as text; from text it is refused at
    /// its path, by both paths (the fast one never takes a float), while `443.0` stays an integer.
    #[test]
    fn a_port_whose_text_is_a_fraction_is_not_an_integer() {
        let text = br#"{"broker":[{"ip":"10.0.0.5","port":42001.0000000000001}],"dns":[],"rules":[{"id":"a","action":"allow","cidr":"10.1.0.0/16","ports":[443.0,7.00000000000000001]}]}"#;
        let err = PolicySnapshot::from_json_slice(text).expect_err("a fraction");
        let paths: Vec<String> = err.issues.iter().map(|i| i.path_text()).collect();
        assert_eq!(paths, ["broker[0].port", "rules[0].ports[1]"], "{err}");
        assert_eq!(err.issues[0].code, IssueCode::InvalidType);
        assert!(
            err.issues[0]
                .message
                .starts_with("expected integer, received 42001.0000000000001"),
            "{err}"
        );
        let whole = br#"{"broker":[{"ip":"10.0.0.5","port":42001.0}],"dns":[],"rules":[{"id":"a","action":"allow","cidr":"10.1.0.0/16","ports":[4.43e2]}]}"#;
        let s = PolicySnapshot::from_json_slice(whole)
            .expect("integers written with a fraction of zeros");
        assert_eq!(
            (s.broker[0].port, s.rules[0].ports.as_slice()),
            (42001, &[443][..])
        );
    }

    /// Found by `fuzz/fuzz_targets/policy_snapshot.rs`: serde's derived struct impls also read a JSON array of
    /// the field values, so the fast path took `[[],[],[]]` as an empty snapshot and `["10.0.0.5",8081]` as a
    /// broker endpoint, while the slow path (and the JS API) reject them.
    #[test]
    fn byte_input_refuses_arrays_in_place_of_objects() {
        let cases = [
            ("[[],[],[]]", ""),
            (r#"[[],[],[],{}]"#, ""),
            (
                r#"{"broker":[["10.0.0.5",8081]],"dns":[],"rules":[]}"#,
                "broker[0]",
            ),
            (
                r#"{"broker":[],"dns":[["10.0.0.53"]],"rules":[]}"#,
                "dns[0]",
            ),
            (
                r#"{"broker":[],"dns":[],"rules":[["x","allow","10.0.0.0/8"]]}"#,
                "rules[0]",
            ),
            (
                r#"{"broker":[],"dns":[],"rules":[],"sampling":[1,0]}"#,
                "sampling",
            ),
        ];
        for (text, path) in cases {
            let err = PolicySnapshot::from_json_slice(text.as_bytes()).expect_err(text);
            let value: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(
                Err(err.clone()),
                PolicySnapshot::from_json_value(&value),
                "{text}"
            );
            assert_eq!(err.issues.len(), 1, "{text}: {err}");
            assert_eq!(err.issues[0].path_text(), path, "{text}");
            assert_eq!(err.issues[0].code, IssueCode::InvalidType, "{text}");
            assert_eq!(err.issues[0].message, "expected object, received array");
        }
    }
}
