//! The issue-collecting parser: JSON value -> [`PolicySnapshot`]. Strict at every level, every issue reported
//! with its path (`rules[3].cidr`). It alone decides what is wrong with a snapshot.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;

use serde_json::Value;

use super::fqdn::{parse_fqdn, FqdnUse};
use super::{
    parse_canonical_cidr, parse_endpoint_ip, BrokerEndpoint, BrokerName, DnsEndpoint, DnsQueries,
    IpNet, PolicySnapshot, Rule, RuleAction, RuleProtocol, RuleTarget, Sampling, DEFAULT_DNS_PORT,
    MAX_BROKER_ENDPOINTS, MAX_DNS_ENDPOINTS, MAX_FQDN_RULES, MAX_RULES_PER_FAMILY,
};
use crate::contract::json_reader::{self, join, object, Issues};
use crate::contract::slot_id::check_slot_id;
use crate::contract::validation::{IssueCode, PathSegment, ValidationError};

/// Parses a snapshot found at `path` (the root, or `payload` inside a control request).
pub(crate) fn parse_snapshot(
    v: Option<&Value>,
    path: &[PathSegment],
) -> Result<PolicySnapshot, ValidationError> {
    let mut issues = Issues::new();
    let snapshot = read_snapshot(v, path, &mut issues);
    issues.finish(snapshot)
}

fn read_snapshot(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<PolicySnapshot> {
    let obj = object(
        v,
        path,
        &["broker", "dns", "rules", "sampling", "dnsQueries"],
        issues,
    )?;
    let broker = read_list(
        &obj,
        "broker",
        MAX_BROKER_ENDPOINTS,
        "broker endpoints",
        issues,
        read_broker,
    );
    let dns = read_list(
        &obj,
        "dns",
        MAX_DNS_ENDPOINTS,
        "dns endpoints",
        issues,
        |v, p, i| read_endpoint(v, p, i).map(|(ip, port)| DnsEndpoint { ip, port }),
    );
    if let Some(list) = &broker {
        let path = obj.path_of("broker");
        let by_ip = list.iter().enumerate().filter_map(|(i, b)| match b {
            BrokerEntry::Ip(e) => Some((i, e.ip, e.port)),
            BrokerEntry::Name(_) => None,
        });
        report_duplicates(by_ip, &path, "broker endpoint", issues);
        let by_name = list.iter().enumerate().filter_map(|(i, b)| match b {
            BrokerEntry::Name(n) => Some((i, &n.fqdn, n.port)),
            BrokerEntry::Ip(_) => None,
        });
        report_duplicates(by_name, &path, "broker endpoint", issues);
    }
    if let Some(list) = &dns {
        report_duplicates(
            list.iter().enumerate().map(|(i, d)| (i, d.ip, d.port)),
            &obj.path_of("dns"),
            "dns endpoint",
            issues,
        );
    }
    let rules = read_rules(&obj, issues);
    let sampling = match obj.get("sampling") {
        None => Some(Sampling::default()),
        v => read_sampling(v, &obj.path_of("sampling"), issues),
    };
    let dns_queries = obj.opt_literal::<DnsQueries>("dnsQueries", issues);
    let (broker, broker_names) = split_broker(broker?);
    Some(PolicySnapshot {
        broker,
        dns: dns?,
        rules: rules?,
        sampling: sampling?,
        broker_names,
        dns_queries: dns_queries?.unwrap_or_default(),
    })
}

/// One `broker[]` entry: by address or by name (SPEC 4b).
pub(super) enum BrokerEntry {
    Ip(BrokerEndpoint),
    Name(BrokerName),
}

/// The entries by address and those by name, each in wire order.
pub(super) fn split_broker(entries: Vec<BrokerEntry>) -> (Vec<BrokerEndpoint>, Vec<BrokerName>) {
    let mut by_ip = Vec::with_capacity(entries.len());
    let mut by_name = Vec::new();
    for e in entries {
        match e {
            BrokerEntry::Ip(e) => by_ip.push(e),
            BrokerEntry::Name(n) => by_name.push(n),
        }
    }
    (by_ip, by_name)
}

/// The issue of an object that must have exactly one of two keys, at the object's path.
pub(super) fn one_of_message(what: &str, a: &str, b: &str, has_a: bool) -> (IssueCode, String) {
    if has_a {
        (
            IssueCode::Custom,
            format!("{what} has both `{a}` and `{b}`; it has exactly one of them"),
        )
    } else {
        (
            IssueCode::InvalidType,
            format!("{what} has neither `{a}` nor `{b}`; it needs exactly one of them"),
        )
    }
}

/// Checks that exactly one of `a` and `b` is present, reporting at the object's path.
fn exactly_one(
    obj: &json_reader::ObjectReader<'_>,
    what: &str,
    a: &str,
    b: &str,
    issues: &mut Issues,
) -> Option<()> {
    let (has_a, has_b) = (obj.has(a), obj.has(b));
    if has_a != has_b {
        return Some(());
    }
    let (code, message) = one_of_message(what, a, b, has_a);
    issues.push(obj.path().to_vec(), code, message);
    None
}

fn read_broker(v: &Value, path: &[PathSegment], issues: &mut Issues) -> Option<BrokerEntry> {
    let obj = object(Some(v), path, &["ip", "fqdn", "port"], issues)?;
    let target = exactly_one(&obj, "a broker entry", "ip", "fqdn", issues);
    let port = obj.int("port", 1, 65_535, issues).map(|p| p as u16);
    target?;
    if obj.has("ip") {
        let ip = obj
            .str("ip", issues)
            .and_then(|s| parse_endpoint_ip(s, &obj.path_of("ip"), issues));
        Some(BrokerEntry::Ip(BrokerEndpoint {
            ip: ip?,
            port: port?,
        }))
    } else {
        let fqdn = obj
            .str("fqdn", issues)
            .and_then(|s| parse_fqdn(s, FqdnUse::Broker, &obj.path_of("fqdn"), issues));
        Some(BrokerEntry::Name(BrokerName {
            fqdn: fqdn?,
            port: port?,
        }))
    }
}

/// Reads a required array of items, reporting every bad item; `None` if any item (or the array) is bad.
fn read_list<T>(
    obj: &json_reader::ObjectReader<'_>,
    key: &str,
    max: usize,
    what: &str,
    issues: &mut Issues,
    mut item: impl FnMut(&Value, &[PathSegment], &mut Issues) -> Option<T>,
) -> Option<Vec<T>> {
    let path = obj.path_of(key);
    let items = obj.array(key, issues)?;
    if items.len() > max {
        issues.push(
            path.clone(),
            IssueCode::TooBig,
            format!(
                "at most {max} {what} are supported, received {}",
                items.len()
            ),
        );
    }
    let mut out = Vec::with_capacity(items.len().min(max));
    let mut ok = items.len() <= max;
    for (i, v) in items.iter().enumerate() {
        match item(v, &join(&path, i), issues) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Reports every `(index, host, port)` whose host and port an earlier one already had, at `path[index]`.
pub(super) fn report_duplicates<K: Hash + Eq + Display>(
    keys: impl Iterator<Item = (usize, K, u16)>,
    path: &[PathSegment],
    what: &str,
    issues: &mut Issues,
) {
    let mut seen: HashMap<(K, u16), usize> = HashMap::new();
    for (i, host, port) in keys {
        let message = format!("duplicate {what} {host}:{port}");
        match seen.entry((host, port)) {
            std::collections::hash_map::Entry::Occupied(first) => issues.push(
                join(path, i),
                IssueCode::Custom,
                format!("{message} (same as [{}])", first.get()),
            ),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
}

fn read_endpoint(v: &Value, path: &[PathSegment], issues: &mut Issues) -> Option<(IpAddr, u16)> {
    let obj = object(Some(v), path, &["ip", "port"], issues)?;
    let ip = obj
        .str("ip", issues)
        .and_then(|s| parse_endpoint_ip(s, &obj.path_of("ip"), issues));
    let port = obj
        .opt_int("port", 1, 65_535, issues)
        .map(|p| p.map_or(DEFAULT_DNS_PORT, |p| p as u16));
    Some((ip?, port?))
}

fn read_rules(obj: &json_reader::ObjectReader<'_>, issues: &mut Issues) -> Option<Vec<Rule>> {
    let path = obj.path_of("rules");
    let items = obj.array("rules", issues)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let rule_path = join(&path, i);
        // Duplicate ids are checked on the raw text so that a rule with another problem still claims its id.
        if let Value::Object(m) = v {
            if let Some(Value::String(id)) = m.get("id") {
                if let Some(first) = ids.get(id.as_str()) {
                    issues.push(
                        join(&rule_path, "id"),
                        IssueCode::Custom,
                        format!("duplicate rule id `{id}` (already used by rules[{first}])"),
                    );
                    ok = false;
                } else {
                    ids.insert(id, i);
                }
            }
        }
        match read_rule(v, &rule_path, issues) {
            Some(r) => out.push(r),
            None => ok = false,
        }
    }
    let count = |f: fn(&RuleTarget) -> bool| out.iter().filter(|r| f(&r.target)).count();
    let v4 = count(|t| t.cidr().is_some_and(IpNet::is_ipv4));
    let v6 = count(|t| t.cidr().is_some_and(|n| !n.is_ipv4()));
    let fqdn = count(|t| t.fqdn().is_some());
    for (family, n, max) in [
        ("IPv4", v4, MAX_RULES_PER_FAMILY),
        ("IPv6", v6, MAX_RULES_PER_FAMILY),
        ("fqdn", fqdn, MAX_FQDN_RULES),
    ] {
        if n > max {
            issues.push(
                path.clone(),
                IssueCode::TooBig,
                format!("at most {max} {family} rules are supported, received {n}"),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

fn read_rule(v: &Value, path: &[PathSegment], issues: &mut Issues) -> Option<Rule> {
    let obj = object(
        Some(v),
        path,
        &["id", "action", "cidr", "fqdn", "ports", "protocol"],
        issues,
    )?;
    let id = obj
        .str("id", issues)
        .and_then(|id| check_rule_id(id, &obj.path_of("id"), issues));
    let action = obj.literal::<RuleAction>("action", issues);
    let target = exactly_one(&obj, "a rule", "cidr", "fqdn", issues).and_then(|()| {
        if obj.has("cidr") {
            obj.str("cidr", issues)
                .and_then(|s| parse_canonical_cidr(s, &obj.path_of("cidr"), issues))
                .map(RuleTarget::Cidr)
        } else {
            obj.str("fqdn", issues)
                .and_then(|s| parse_fqdn(s, FqdnUse::Rule, &obj.path_of("fqdn"), issues))
                .map(RuleTarget::Fqdn)
        }
    });
    let ports = match obj.get("ports") {
        None => Some(Vec::new()),
        v => read_ports(v, &obj.path_of("ports"), issues),
    };
    let protocol = obj
        .opt_literal::<RuleProtocol>("protocol", issues)
        .map(|p| p.map(|p| p.0));
    Some(Rule {
        id: id?.to_owned(),
        action: action?,
        target: target?,
        ports: ports?,
        protocol: protocol?,
    })
}

pub(super) fn check_rule_id<'a>(
    id: &'a str,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    match check_slot_id("rule id", id) {
        Ok(()) => Some(id),
        Err((code, message)) => {
            issues.push(path.to_vec(), code, message);
            None
        }
    }
}

fn read_ports(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Vec<u16>> {
    let items = json_reader::array(v, path, issues)?;
    if items.is_empty() {
        issues.push(
            path.to_vec(),
            IssueCode::TooSmall,
            "ports must not be empty when present; omit `ports` to match every port",
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = join(path, i);
        match json_reader::integer(Some(item), &p, 1, 65_535, issues) {
            Some(port) => {
                let port = port as u16;
                if !seen.insert(port) {
                    issues.push(p, IssueCode::Custom, format!("duplicate port {port}"));
                    ok = false;
                }
                out.push(port);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_sampling(v: Option<&Value>, path: &[PathSegment], issues: &mut Issues) -> Option<Sampling> {
    let obj = object(v, path, &["allowOneIn", "unmanagedOneIn"], issues)?;
    let defaults = Sampling::default();
    let allow = obj.opt_int("allowOneIn", 0, u64::from(u32::MAX), issues);
    let unmanaged = obj.opt_int("unmanagedOneIn", 0, u64::from(u32::MAX), issues);
    Some(Sampling {
        allow_one_in: allow?.map_or(defaults.allow_one_in, |n| n as u32),
        unmanaged_one_in: unmanaged?.map_or(defaults.unmanaged_one_in, |n| n as u32),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_fixtures::{base, issues};
    use super::super::{PolicyCounts, MAX_FQDN_RULES};
    use super::*;
    use crate::contract::hook::Protocol;

    #[test]
    fn parses_the_documented_example_with_defaults() {
        let v = json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53"}, {"ip": "2001:db8::53", "port": 5353}],
            "rules": [
                {"id": "github", "action": "allow", "cidr": "140.82.112.0/20", "ports": [443], "protocol": "tcp"},
                {"id": "v6-deny", "action": "deny", "cidr": "2001:db8::/32"}
            ]
        });
        let s = PolicySnapshot::from_json_value(&v).expect("valid");
        assert_eq!(s.dns[0].port, 53);
        assert_eq!(s.dns[1].port, 5353);
        assert_eq!(
            s.sampling,
            Sampling {
                allow_one_in: 1,
                unmanaged_one_in: 0
            }
        );
        assert_eq!(s.rules[0].ports, vec![443]);
        assert_eq!(s.rules[0].protocol, Some(Protocol::Tcp));
        assert_eq!(s.rules[1].ports, Vec::<u16>::new());
        assert_eq!(s.rules[1].protocol, None);
        assert_eq!(s.rules[1].target.cidr().map(|c| c.prefix_len), Some(32));
        assert_eq!(
            s.counts(),
            PolicyCounts {
                ipv4_rules: 1,
                ipv6_rules: 1,
                broker_endpoints: 1,
                dns_endpoints: 2,
                fqdn_rules: 0,
                broker_names: 0,
            }
        );
        // The normalised form parses to the same snapshot.
        assert_eq!(PolicySnapshot::from_json_value(&s.to_json_value()), Ok(s));
    }

    #[test]
    fn every_issue_is_reported_with_its_path() {
        let got = issues(json!({
            "broker": [{"ip": "10.0.0.5"}],
            "dns": [{"ip": "10.0.0.053", "port": 0}],
            "rules": [
                {"id": "", "action": "permit", "cidr": "10.0.0.1/8", "extra": 1},
                {"id": "b", "action": "deny", "cidr": "10.0.0.0/33", "ports": [], "protocol": "icmp"}
            ],
            "sampling": {"allowOneIn": -1, "everyOther": 2},
            "version": 2
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "",
                "broker[0].port",
                "dns[0].ip",
                "dns[0].port",
                "rules[0]",
                "rules[0].id",
                "rules[0].action",
                "rules[0].cidr",
                "rules[1].cidr",
                "rules[1].ports",
                "rules[1].protocol",
                "sampling",
                "sampling.allowOneIn",
            ],
            "{got:#?}"
        );
        assert!(got[7].2.contains("write `10.0.0.0/8`"), "{}", got[7].2);
    }

    #[test]
    fn ports_ids_and_endpoints_reject_duplicates() {
        let got = issues(json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}, {"ip": "10.0.0.5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53"}, {"ip": "10.0.0.53", "port": 53}],
            "rules": [
                {"id": "x", "action": "allow", "cidr": "10.0.0.0/8", "ports": [443, 80, 443]},
                {"id": "x", "action": "deny", "cidr": "10.1.0.0/16"}
            ]
        }));
        let msgs: Vec<(&str, &str)> = got
            .iter()
            .map(|(p, _, m)| (p.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            msgs,
            [
                (
                    "broker[1]",
                    "duplicate broker endpoint 10.0.0.5:8081 (same as [0])"
                ),
                (
                    "dns[1]",
                    "duplicate dns endpoint 10.0.0.53:53 (same as [0])"
                ),
                ("rules[0].ports[2]", "duplicate port 443"),
                (
                    "rules[1].id",
                    "duplicate rule id `x` (already used by rules[0])"
                ),
            ]
        );
    }

    #[test]
    fn rule_ids_fit_the_kernel_slot() {
        let long = "a".repeat(64);
        let got = issues(base(json!([
            {"id": "a".repeat(63), "action": "allow", "cidr": "10.0.0.0/8"},
            {"id": long, "action": "allow", "cidr": "10.0.0.0/8"},
            {"id": "nul\u{0}id", "action": "allow", "cidr": "10.0.0.0/8"}
        ])));
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].0, "rules[1].id");
        assert_eq!(got[0].1, IssueCode::TooBig);
        assert_eq!(got[1].0, "rules[2].id");
    }

    #[test]
    fn limits_are_enforced_per_family() {
        let rule =
            |i: usize| json!({"id": format!("r{i}"), "action": "allow", "cidr": "10.0.0.0/8"});
        let at_limit: Vec<Value> = (0..MAX_RULES_PER_FAMILY).map(rule).collect();
        let mut v6_too = at_limit.clone();
        v6_too.push(json!({"id": "v6", "action": "allow", "cidr": "2001:db8::/32"}));
        assert!(PolicySnapshot::from_json_value(&base(Value::from(v6_too))).is_ok());
        let mut over = at_limit;
        over.push(rule(MAX_RULES_PER_FAMILY));
        let got = issues(base(Value::from(over)));
        assert_eq!(
            got,
            [(
                "rules".to_owned(),
                IssueCode::TooBig,
                "at most 131072 IPv4 rules are supported, received 131073".to_owned()
            )]
        );
        let eps: Vec<Value> = (0..=MAX_BROKER_ENDPOINTS)
            .map(|i| json!({"ip": format!("10.{}.{}.1", i / 256, i % 256), "port": 8081}))
            .collect();
        let got = issues(json!({"broker": eps, "dns": [], "rules": []}));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "broker");
        assert!(got[0].2.starts_with("at most 1024 broker endpoints"));
    }

    #[test]
    fn sampling_bounds_and_required_sections() {
        let mut v = base(json!([]));
        v["sampling"] = json!({"allowOneIn": 0, "unmanagedOneIn": 4294967295u64});
        let s = PolicySnapshot::from_json_value(&v).expect("valid");
        assert_eq!(
            s.sampling,
            Sampling {
                allow_one_in: 0,
                unmanaged_one_in: u32::MAX
            }
        );
        v["sampling"] = json!({"allowOneIn": 4294967296u64});
        assert_eq!(issues(v)[0].1, IssueCode::TooBig);
        let got = issues(json!({}));
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["broker", "dns", "rules"]);
        assert_eq!(issues(json!([]))[0].2, "expected object, received array");
    }

    #[test]
    fn rules_and_brokers_by_name() {
        let v = json!({
            "broker": [{"fqdn": "broker.internal", "port": 8081}, {"ip": "10.0.0.5", "port": 8081},
                       {"fqdn": "broker.internal", "port": 8082}],
            "dns": [],
            "rules": [
                {"id": "gh", "action": "allow", "fqdn": "*.github.com", "ports": [443], "protocol": "tcp"},
                {"id": "api", "action": "deny", "fqdn": "api.example.com"},
                {"id": "v6", "action": "deny", "cidr": "2001:db8::/32"}
            ],
            "dnsQueries": "policy"
        });
        let s = PolicySnapshot::from_json_value(&v).expect("valid");
        assert_eq!(s.broker.len(), 1);
        let names: Vec<(&str, u16)> = s
            .broker_names
            .iter()
            .map(|b| (b.fqdn.as_str(), b.port))
            .collect();
        assert_eq!(
            names,
            [("broker.internal", 8081), ("broker.internal", 8082)]
        );
        assert_eq!(
            s.rules[0].target.fqdn().map(|p| p.as_str()),
            Some("*.github.com")
        );
        assert_eq!(s.dns_queries, DnsQueries::Policy);
        assert_eq!(
            s.counts(),
            PolicyCounts {
                ipv4_rules: 0,
                ipv6_rules: 1,
                broker_endpoints: 1,
                dns_endpoints: 0,
                fqdn_rules: 2,
                broker_names: 2,
            }
        );
        let out = s.to_json_value();
        assert_eq!(out["broker"][0], json!({"ip": "10.0.0.5", "port": 8081}));
        assert_eq!(
            out["broker"][1],
            json!({"fqdn": "broker.internal", "port": 8081})
        );
        assert_eq!(
            out["rules"][1],
            json!({"id": "api", "action": "deny", "fqdn": "api.example.com"})
        );
        assert_eq!(out["dnsQueries"], "policy");
        let text = serde_json::to_vec(&out).expect("json");
        assert_eq!(PolicySnapshot::from_json_slice(&text), Ok(s.clone()));
        assert_eq!(PolicySnapshot::from_json_value(&out), Ok(s));
        // Absent dnsQueries is `any`, and is written out.
        let s = PolicySnapshot::from_json_value(&base(json!([]))).expect("valid");
        assert_eq!(s.dns_queries, DnsQueries::Any);
        assert_eq!(s.to_json_value()["dnsQueries"], "any");
    }

    #[test]
    fn names_are_checked_where_they_are_written() {
        let got = issues(json!({
            "broker": [
                {"ip": "10.0.0.5", "fqdn": "broker.internal", "port": 1},
                {"port": 2},
                {"fqdn": "*.internal.example", "port": 3},
                {"fqdn": "Broker.Internal", "port": 4}
            ],
            "dns": [],
            "rules": [
                {"id": "a", "action": "allow", "cidr": "10.0.0.0/8", "fqdn": "a.example.com"},
                {"id": "b", "action": "allow"},
                {"id": "c", "action": "allow", "fqdn": "api.github.com."},
                {"id": "d", "action": "allow", "fqdn": "*.com"},
                {"id": "e", "action": "allow", "fqdn": 7}
            ],
            "dnsQueries": "all"
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "broker[0]",
                "broker[1]",
                "broker[2].fqdn",
                "broker[3].fqdn",
                "rules[0]",
                "rules[1]",
                "rules[2].fqdn",
                "rules[3].fqdn",
                "rules[4].fqdn",
                "dnsQueries",
            ],
            "{got:#?}"
        );
        assert!(got[0].2.contains("both `ip` and `fqdn`"), "{}", got[0].2);
        assert!(got[1].2.contains("neither `ip` nor `fqdn`"), "{}", got[1].2);
        assert!(
            got[2].2.contains("a broker is named by an exact name"),
            "{}",
            got[2].2
        );
        assert!(got[3].2.contains("write `broker.internal`"), "{}", got[3].2);
        assert!(got[4].2.contains("both `cidr` and `fqdn`"), "{}", got[4].2);
        assert!(
            got[5].2.contains("neither `cidr` nor `fqdn`"),
            "{}",
            got[5].2
        );
        assert!(got[6].2.contains("write `api.github.com`"), "{}", got[6].2);
        assert!(got[7].2.contains("too broad"), "{}", got[7].2);
        assert_eq!(got[8].1, IssueCode::InvalidType);
        assert_eq!(got[9].1, IssueCode::InvalidValue);
    }

    #[test]
    fn broker_names_are_duplicates_like_addresses_and_share_the_limit() {
        let got = issues(json!({
            "broker": [{"fqdn": "b.internal", "port": 1}, {"ip": "10.0.0.5", "port": 1},
                       {"fqdn": "b.internal", "port": 1}],
            "dns": [], "rules": []
        }));
        assert_eq!(
            got,
            [(
                "broker[2]".to_owned(),
                IssueCode::Custom,
                "duplicate broker endpoint b.internal:1 (same as [0])".to_owned()
            )]
        );
        let mut eps: Vec<Value> = (0..MAX_BROKER_ENDPOINTS / 2)
            .map(|i| json!({"ip": format!("10.0.{}.{}", i / 256, i % 256), "port": 8081}))
            .collect();
        eps.extend(
            (0..MAX_BROKER_ENDPOINTS / 2)
                .map(|i| json!({"fqdn": format!("b{i}.internal"), "port": 1})),
        );
        let v = json!({"broker": eps.clone(), "dns": [], "rules": []});
        assert!(PolicySnapshot::from_json_value(&v).is_ok());
        eps.push(json!({"fqdn": "one-more.internal", "port": 1}));
        let got = issues(json!({"broker": eps, "dns": [], "rules": []}));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].0, "broker");
        assert_eq!(got[0].1, IssueCode::TooBig);
    }

    #[test]
    fn fqdn_rules_have_their_own_limit() {
        let rule = |i: usize| json!({"id": format!("n{i}"), "action": "allow", "fqdn": format!("h{i}.example.com")});
        let mut rules: Vec<Value> = (0..MAX_FQDN_RULES).map(rule).collect();
        rules.push(json!({"id": "v4", "action": "allow", "cidr": "10.0.0.0/8"}));
        let s = PolicySnapshot::from_json_value(&base(Value::from(rules.clone())))
            .expect("at the limit");
        assert_eq!((s.counts().fqdn_rules, s.counts().ipv4_rules), (4096, 1));
        rules.push(rule(MAX_FQDN_RULES));
        let got = issues(base(Value::from(rules)));
        assert_eq!(
            got,
            [(
                "rules".to_owned(),
                IssueCode::TooBig,
                "at most 4096 fqdn rules are supported, received 4097".to_owned()
            )]
        );
    }
}
