//! The policy snapshot: what the dataplane enforces for every managed cgroup (SPEC 4), as validated domain
//! types. The same snapshot arrives from `Interceptor.replacePolicySnapshot()` and from the control protocol's
//! `ReplacePolicySnapshot` payload, and is parsed by the one strict parser in this file.
//!
//! JSON shape (strict: unknown keys rejected at every level):
//! ```json
//! { "broker": [{"ip": "10.0.0.5", "port": 8081}],
//!   "dns": [{"ip": "10.0.0.53"}],
//!   "rules": [{"id": "github", "action": "allow", "cidr": "140.82.112.0/20", "ports": [443], "protocol": "tcp"}],
//!   "sampling": {"allowOneIn": 1, "unmanagedOneIn": 0} }
//! ```

use std::net::IpAddr;

use super::hook::Protocol;

/// Whether a matching rule lets the connection through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
}

/// An address prefix whose host bits are zero (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A broker endpoint: always TCP (SPEC 4 step 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrokerEndpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// A DNS resolver endpoint: UDP and TCP, port 53 unless given (SPEC 4 step 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsEndpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// One egress rule. Among the rules matching a destination, port and protocol, the longest prefix wins and
/// deny wins a tie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Non-empty and unique within the snapshot; reported as `rule_id` in events.
    pub id: String,
    pub action: RuleAction,
    pub cidr: IpNet,
    /// Destination ports this rule covers; empty means every port.
    pub ports: Vec<u16>,
    /// `None` means every protocol the hooks judge: TCP, UDP and ICMP ping sockets.
    pub protocol: Option<Protocol>,
}

/// Which allow events reach user space. Deny events are never sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    /// Emit one in N allow events of managed cgroups: 1 (default) emits all, 0 emits none.
    pub allow_one_in: u32,
    /// Emit one in N UNMANAGED_ALLOW events: 0 (default) emits none.
    pub unmanaged_one_in: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            allow_one_in: 1,
            unmanaged_one_in: 0,
        }
    }
}

/// A complete, validated policy. Applied atomically: no verdict ever mixes two snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PolicySnapshot {
    pub broker: Vec<BrokerEndpoint>,
    pub dns: Vec<DnsEndpoint>,
    pub rules: Vec<Rule>,
    pub sampling: Sampling,
}

// ---------------------------------------------------------------------------------------------------------------
// Parser: JSON -> PolicySnapshot. Strict at every level, every issue reported with its path (`rules[3].cidr`).
// ---------------------------------------------------------------------------------------------------------------

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::json_reader::{self, join, object, Issues};
use super::validation::{Issue, IssueCode, PathSegment, ValidationError};

/// At most this many rules per address family: the size of each family's rule tables in the dataplane.
pub const MAX_RULES_PER_FAMILY: usize = 131_072;
/// At most this many broker endpoints (the size of the dataplane's broker hash map).
pub const MAX_BROKER_ENDPOINTS: usize = 1_024;
/// At most this many DNS endpoints (the size of the dataplane's DNS hash map).
pub const MAX_DNS_ENDPOINTS: usize = 1_024;
/// Rule ids live in fixed 64-byte kernel slots with a terminating NUL, so at most 63 bytes.
pub const MAX_RULE_ID_BYTES: usize = 63;
/// Port of a DNS endpoint that does not name one.
pub const DEFAULT_DNS_PORT: u16 = 53;

const ACTIONS: &[(&str, RuleAction)] = &[("allow", RuleAction::Allow), ("deny", RuleAction::Deny)];
const PROTOCOLS: &[(&str, Protocol)] = &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)];

impl RuleAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        }
    }
}

impl IpNet {
    /// True for IPv4 prefixes.
    pub const fn is_ipv4(&self) -> bool {
        matches!(self.addr, IpAddr::V4(_))
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// How many of the snapshot's rules, broker and DNS endpoints there are: the body of `PolicySummary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PolicyCounts {
    pub ipv4_rules: u64,
    pub ipv6_rules: u64,
    pub broker_endpoints: u64,
    pub dns_endpoints: u64,
}

impl PolicySnapshot {
    /// Parses and validates a snapshot from a JSON value. Every issue is reported, each with its path.
    pub fn from_json_value(v: &Value) -> Result<PolicySnapshot, ValidationError> {
        parse_snapshot(Some(v), &[])
    }

    /// Parses a snapshot from JSON text (a policy file, a control request, `Interceptor.replacePolicySnapshot`).
    ///
    /// Valid input takes a typed fast path (serde straight into borrowed wire structs, no `Value` tree): it is
    /// what makes a 100,000-rule replacement fit its time budget. Anything the fast path does not accept,
    /// for whatever reason, is parsed again by the issue-collecting path, which alone decides what is wrong,
    /// so both paths accept exactly the same snapshots (`tests/policy_props.rs` checks the agreement).
    pub fn from_json_slice(bytes: &[u8]) -> Result<PolicySnapshot, ValidationError> {
        if let Some(snapshot) = fast::parse(bytes) {
            return Ok(snapshot);
        }
        let v: Value = json_reader::parse_json_strict(bytes).map_err(|e| {
            ValidationError::single(Issue::new(
                vec![],
                IssueCode::InvalidJson,
                format!("policy snapshot is not valid JSON: {e}"),
            ))
        })?;
        Self::from_json_value(&v)
    }

    /// The normalised JSON form: defaults filled in (`dns[].port`, `sampling`), empty `ports` and absent
    /// `protocol` omitted, so that parsing the output again gives the same snapshot.
    pub fn to_json_value(&self) -> Value {
        let mut rules = Vec::with_capacity(self.rules.len());
        for r in &self.rules {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), Value::from(r.id.clone()));
            m.insert("action".into(), Value::from(r.action.as_str()));
            m.insert("cidr".into(), Value::from(r.cidr.to_string()));
            if !r.ports.is_empty() {
                m.insert("ports".into(), Value::from(r.ports.clone()));
            }
            if let Some(p) = r.protocol {
                m.insert("protocol".into(), Value::from(p.as_str()));
            }
            rules.push(Value::Object(m));
        }
        serde_json::json!({
            "broker": self.broker.iter().map(|b| serde_json::json!({"ip": b.ip.to_string(), "port": b.port})).collect::<Vec<_>>(),
            "dns": self.dns.iter().map(|d| serde_json::json!({"ip": d.ip.to_string(), "port": d.port})).collect::<Vec<_>>(),
            "rules": rules,
            "sampling": {"allowOneIn": self.sampling.allow_one_in, "unmanagedOneIn": self.sampling.unmanaged_one_in},
        })
    }

    /// Rule and endpoint counts, as reported by `ReplacePolicySnapshot` and `GetPolicySummary`.
    pub fn counts(&self) -> PolicyCounts {
        let ipv4 = self.rules.iter().filter(|r| r.cidr.is_ipv4()).count() as u64;
        PolicyCounts {
            ipv4_rules: ipv4,
            ipv6_rules: self.rules.len() as u64 - ipv4,
            broker_endpoints: self.broker.len() as u64,
            dns_endpoints: self.dns.len() as u64,
        }
    }
}

/// Parses a snapshot found at `path` (the root, or `payload` inside a control request).
pub(crate) fn parse_snapshot(
    v: Option<&Value>,
    path: &[PathSegment],
) -> Result<PolicySnapshot, ValidationError> {
    let mut issues = Issues::new();
    let snapshot = read_snapshot(v, path, &mut issues);
    issues.finish(snapshot)
}

/// The typed fast path of [`PolicySnapshot::from_json_slice`]. It only ever answers "valid, here it is" or
/// "ask the slow path": every check reuses the slow path's validators, and its serde types are at least as
/// strict as the slow path (unknown keys, duplicate keys, `null` for an optional key, non-integral numbers and
/// arrays in place of objects all send the input to the slow path).
mod fast {
    use std::borrow::Cow;
    use std::marker::PhantomData;
    use std::ops::Deref;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::*;

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
        broker: Vec<Obj<EndpointWire<'a>>>,
        #[serde(borrow)]
        dns: Vec<Obj<DnsWire<'a>>>,
        #[serde(borrow)]
        rules: Vec<Obj<RuleWire<'a>>>,
        #[serde(default, deserialize_with = "present")]
        sampling: Option<Obj<SamplingWire>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EndpointWire<'a> {
        #[serde(borrow)]
        ip: Cow<'a, str>,
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
        #[serde(borrow)]
        cidr: Cow<'a, str>,
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
    fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }

    pub(super) fn parse(bytes: &[u8]) -> Option<PolicySnapshot> {
        let Obj(wire): Obj<SnapshotWire<'_>> = serde_json::from_slice(bytes).ok()?;
        // Validators report into a scratch list; any report means "let the slow path explain".
        let mut scratch = Issues::new();
        let no_path: &[PathSegment] = &[];
        let over = |n: usize, max: usize| n > max;
        if over(wire.broker.len(), MAX_BROKER_ENDPOINTS) || over(wire.dns.len(), MAX_DNS_ENDPOINTS)
        {
            return None;
        }
        let mut broker = Vec::with_capacity(wire.broker.len());
        for e in &wire.broker {
            let ip = parse_canonical_ip(&e.ip, no_path, &mut scratch)?;
            (e.port != 0).then_some(())?;
            broker.push(BrokerEndpoint { ip, port: e.port });
        }
        let mut dns = Vec::with_capacity(wire.dns.len());
        for e in &wire.dns {
            let ip = parse_canonical_ip(&e.ip, no_path, &mut scratch)?;
            let port = e.port.unwrap_or(DEFAULT_DNS_PORT);
            (port != 0).then_some(())?;
            dns.push(DnsEndpoint { ip, port });
        }
        report_duplicates(
            broker.iter().map(|b| (b.ip, b.port)),
            no_path,
            "",
            &mut scratch,
        );
        report_duplicates(
            dns.iter().map(|d| (d.ip, d.port)),
            no_path,
            "",
            &mut scratch,
        );
        let mut rules = Vec::with_capacity(wire.rules.len());
        let mut ids: HashSet<&str> = HashSet::with_capacity(wire.rules.len());
        let mut v4 = 0usize;
        for r in &wire.rules {
            let id = check_rule_id(&r.id, no_path, &mut scratch)?;
            ids.insert(id).then_some(())?;
            let action = ACTIONS.iter().find(|(name, _)| *name == r.action)?.1;
            let cidr = parse_canonical_cidr(&r.cidr, no_path, &mut scratch)?;
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
                Some(name) => Some(PROTOCOLS.iter().find(|(n, _)| *n == name.as_ref())?.1),
            };
            v4 += usize::from(cidr.is_ipv4());
            rules.push(Rule {
                id: id.to_owned(),
                action,
                cidr,
                ports,
                protocol,
            });
        }
        if over(v4, MAX_RULES_PER_FAMILY) || over(rules.len() - v4, MAX_RULES_PER_FAMILY) {
            return None;
        }
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
        })
    }
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

fn report_duplicates(
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
        .and_then(|s| parse_canonical_ip(s, &obj.path_of("ip"), issues));
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
    let v4 = out.iter().filter(|r| r.cidr.is_ipv4()).count();
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
    let action = obj.literal("action", ACTIONS, issues);
    let cidr = obj
        .str("cidr", issues)
        .and_then(|s| parse_canonical_cidr(s, &obj.path_of("cidr"), issues));
    let ports = match obj.get("ports") {
        None => Some(Vec::new()),
        v => read_ports(v, &obj.path_of("ports"), issues),
    };
    let protocol = obj.opt_literal("protocol", PROTOCOLS, issues);
    Some(Rule {
        id: id?.to_owned(),
        action: action?,
        cidr: cidr?,
        ports: ports?,
        protocol: protocol?,
    })
}

fn check_rule_id<'a>(id: &'a str, path: &[PathSegment], issues: &mut Issues) -> Option<&'a str> {
    if id.is_empty() {
        issues.push(
            path.to_vec(),
            IssueCode::TooSmall,
            "rule id must not be empty",
        );
        return None;
    }
    if id.len() > MAX_RULE_ID_BYTES {
        issues.push(
            path.to_vec(),
            IssueCode::TooBig,
            format!(
                "rule id is {} bytes; at most {MAX_RULE_ID_BYTES} bytes fit the dataplane's 64-byte rule slot",
                id.len()
            ),
        );
        return None;
    }
    // A NUL would silently truncate the id in its C string slot; other control characters would corrupt
    // log lines that print it.
    if id.chars().any(char::is_control) {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidFormat,
            "rule id must not contain control characters (including NUL)",
        );
        return None;
    }
    Some(id)
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

/// The IPv4 address inside `::ffff:0:0/96`, if `addr` is IPv4-mapped.
fn mapped_v4(addr: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    (s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff).then(|| {
        let o = addr.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// Parses canonical IP text: what `IpAddr`'s `Display` prints (dotted quad without leading zeros, RFC 5952
/// IPv6). IPv4-mapped IPv6 is refused because the dataplane judges mapped destinations as IPv4.
pub fn parse_canonical_ip(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<IpAddr> {
    let Ok(ip) = s.parse::<IpAddr>() else {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidFormat,
            format!("expected an IPv4 or IPv6 address, received `{s}`"),
        );
        return None;
    };
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = mapped_v4(&v6) {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidValue,
                format!(
                    "`{s}` is an IPv4-mapped IPv6 address; the dataplane matches IPv4-mapped destinations \
                     against IPv4 entries: write `{v4}`"
                ),
            );
            return None;
        }
    }
    let canonical = ip.to_string();
    if canonical != s {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidFormat,
            format!("`{s}` is not canonical IP text: write `{canonical}`"),
        );
        return None;
    }
    Some(ip)
}

/// Parses a canonical CIDR (`10.0.0.0/8`, `2001:db8::/32`): canonical address text, a decimal prefix length
/// within the family, host bits zero.
pub fn parse_canonical_cidr(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<IpNet> {
    let bad = |issues: &mut Issues, why: String| {
        issues.push(path.to_vec(), IssueCode::InvalidFormat, why);
        None
    };
    let Some((addr_text, len_text)) = s.split_once('/') else {
        return bad(
            issues,
            format!("expected a CIDR like `10.0.0.0/8` or `2001:db8::/32`, received `{s}`"),
        );
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return bad(
            issues,
            format!("`{s}`: `{addr_text}` is not an IPv4 or IPv6 address"),
        );
    };
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text.parse::<u8>() {
        Ok(n) if n <= max_len && n.to_string() == len_text => n,
        _ => {
            return bad(
                issues,
                format!("`{s}`: prefix length must be a decimal integer 0..={max_len} without leading zeros"),
            )
        }
    };
    let network = mask(addr, len);
    if let IpAddr::V6(v6) = addr {
        if len >= 96 {
            if let Some(v4) = mapped_v4(&v6) {
                let v4net = mask_v4(v4, len - 96);
                issues.push(
                    path.to_vec(),
                    IssueCode::InvalidValue,
                    format!(
                        "`{s}` is an IPv4-mapped IPv6 range; the dataplane judges IPv4-mapped destinations by \
                         the IPv4 rules: write the IPv4 rule `{v4net}/{}`",
                        len - 96
                    ),
                );
                return None;
            }
        }
    }
    let canonical = format!("{network}/{len}");
    if network != addr {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidValue,
            format!("`{s}` has host bits set: write `{canonical}`"),
        );
        return None;
    }
    if canonical != s {
        return bad(
            issues,
            format!("`{s}` is not canonical CIDR text: write `{canonical}`"),
        );
    }
    Some(IpNet {
        addr: network,
        prefix_len: len,
    })
}

/// Zeroes the host bits of `addr` beyond `len`.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, len)),
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    Ipv4Addr::from(u32::from(a) & m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(v: Value) -> Vec<(String, IssueCode, String)> {
        PolicySnapshot::from_json_value(&v)
            .expect_err("snapshot must be rejected")
            .issues
            .into_iter()
            .map(|i| (i.path_text(), i.code, i.message))
            .collect()
    }

    fn base(rules: Value) -> Value {
        json!({"broker": [{"ip": "10.0.0.5", "port": 8081}], "dns": [{"ip": "10.0.0.53"}], "rules": rules})
    }

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
        assert_eq!(s.rules[1].cidr.prefix_len, 32);
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
    fn host_bits_and_non_canonical_text_name_the_canonical_form() {
        let got = issues(base(json!([
            {"id": "a", "action": "allow", "cidr": "192.168.1.1/24"},
            {"id": "b", "action": "allow", "cidr": "2001:DB8::/32"},
            {"id": "c", "action": "allow", "cidr": "2001:db8:0:0::/64"},
            {"id": "d", "action": "allow", "cidr": "10.0.0.0/08"},
            {"id": "e", "action": "allow", "cidr": "10.0.0.0"},
            {"id": "f", "action": "allow", "cidr": "2001:db8::/129"}
        ])));
        assert_eq!(
            got[0].2,
            "`192.168.1.1/24` has host bits set: write `192.168.1.0/24`"
        );
        assert_eq!(
            got[1].2,
            "`2001:DB8::/32` is not canonical CIDR text: write `2001:db8::/32`"
        );
        assert_eq!(
            got[2].2,
            "`2001:db8:0:0::/64` is not canonical CIDR text: write `2001:db8::/64`"
        );
        assert!(got[3].2.contains("without leading zeros"));
        assert!(got[4].2.contains("expected a CIDR"));
        assert!(got[5].2.contains("0..=128"));
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn ipv4_mapped_ranges_point_to_the_ipv4_rule() {
        let got = issues(base(json!([
            {"id": "a", "action": "deny", "cidr": "::ffff:10.0.0.0/104"},
            {"id": "b", "action": "deny", "cidr": "::ffff:0:0/96"}
        ])));
        assert!(
            got[0].2.ends_with("write the IPv4 rule `10.0.0.0/8`"),
            "{}",
            got[0].2
        );
        assert!(
            got[1].2.ends_with("write the IPv4 rule `0.0.0.0/0`"),
            "{}",
            got[1].2
        );
        // A wider IPv6 range that merely contains the mapped block is an ordinary IPv6 rule.
        let ok = PolicySnapshot::from_json_value(&base(
            json!([{"id": "all6", "action": "deny", "cidr": "::/0"}]),
        ));
        assert!(ok.is_ok());
        let ep = issues(
            json!({"broker": [{"ip": "::ffff:10.0.0.5", "port": 8081}], "dns": [], "rules": []}),
        );
        assert!(ep[0].2.ends_with("write `10.0.0.5`"), "{}", ep[0].2);
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
    fn bytes_that_are_not_json_are_one_issue() {
        let err = PolicySnapshot::from_json_slice(b"{\"broker\": [").expect_err("not json");
        assert_eq!(err.issues.len(), 1);
        assert_eq!(err.issues[0].code, IssueCode::InvalidJson);
        let ok = PolicySnapshot::from_json_slice(br#"{"broker":[],"dns":[],"rules":[]}"#);
        assert_eq!(ok, Ok(PolicySnapshot::default()));
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
