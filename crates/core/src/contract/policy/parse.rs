//! The issue-collecting parser: JSON value -> [`PolicySnapshot`]. Strict at every level, every issue reported
//! with its path (`rules[3].cidr`). It alone decides what is wrong with a snapshot.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde_json::Value;

use super::{
    parse_canonical_cidr, parse_endpoint_ip, BrokerEndpoint, DnsEndpoint, IpNet, PolicySnapshot,
    Rule, RuleAction, RuleProtocol, RuleTarget, Sampling, DEFAULT_DNS_PORT, MAX_BROKER_ENDPOINTS,
    MAX_DNS_ENDPOINTS, MAX_RULES_PER_FAMILY,
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
    let obj = object(v, path, &["broker", "dns", "rules", "sampling"], issues)?;
    let broker = read_list(
        &obj,
        "broker",
        MAX_BROKER_ENDPOINTS,
        "broker endpoints",
        issues,
        |v, p, i| read_endpoint(v, p, i, false).map(|(ip, port)| BrokerEndpoint { ip, port }),
    );
    let dns = read_list(
        &obj,
        "dns",
        MAX_DNS_ENDPOINTS,
        "dns endpoints",
        issues,
        |v, p, i| read_endpoint(v, p, i, true).map(|(ip, port)| DnsEndpoint { ip, port }),
    );
    if let Some(list) = &broker {
        report_duplicates(
            list.iter().map(|b| (b.ip, b.port)),
            &obj.path_of("broker"),
            "broker endpoint",
            issues,
        );
    }
    if let Some(list) = &dns {
        report_duplicates(
            list.iter().map(|d| (d.ip, d.port)),
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
    Some(PolicySnapshot {
        broker: broker?,
        dns: dns?,
        rules: rules?,
        sampling: sampling?,
        broker_names: Vec::new(),
        dns_queries: Default::default(),
    })
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

pub(super) fn report_duplicates(
    keys: impl Iterator<Item = (IpAddr, u16)>,
    path: &[PathSegment],
    what: &str,
    issues: &mut Issues,
) {
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for (i, key) in keys.enumerate() {
        if let Some(first) = seen.insert(key, i) {
            seen.insert(key, first);
            issues.push(
                join(path, i),
                IssueCode::Custom,
                format!("duplicate {what} {}:{} (same as [{first}])", key.0, key.1),
            );
        }
    }
}

fn read_endpoint(
    v: &Value,
    path: &[PathSegment],
    issues: &mut Issues,
    port_optional: bool,
) -> Option<(IpAddr, u16)> {
    let obj = object(Some(v), path, &["ip", "port"], issues)?;
    let ip = obj
        .str("ip", issues)
        .and_then(|s| parse_endpoint_ip(s, &obj.path_of("ip"), issues));
    let port = if port_optional {
        obj.opt_int("port", 1, 65_535, issues)
            .map(|p| p.map_or(DEFAULT_DNS_PORT, |p| p as u16))
    } else {
        obj.int("port", 1, 65_535, issues).map(|p| p as u16)
    };
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
    let v4 = out
        .iter()
        .filter(|r| r.target.cidr().is_some_and(IpNet::is_ipv4))
        .count();
    let v6 = out.len() - v4;
    for (family, n) in [("IPv4", v4), ("IPv6", v6)] {
        if n > MAX_RULES_PER_FAMILY {
            issues.push(
                path.clone(),
                IssueCode::TooBig,
                format!(
                    "at most {MAX_RULES_PER_FAMILY} {family} rules are supported, received {n}"
                ),
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
        &["id", "action", "cidr", "ports", "protocol"],
        issues,
    )?;
    let id = obj
        .str("id", issues)
        .and_then(|id| check_rule_id(id, &obj.path_of("id"), issues));
    let action = obj.literal::<RuleAction>("action", issues);
    let cidr = obj
        .str("cidr", issues)
        .and_then(|s| parse_canonical_cidr(s, &obj.path_of("cidr"), issues));
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
        target: RuleTarget::Cidr(cidr?),
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
    use super::super::PolicyCounts;
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
                dns_endpoints: 2
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
}
