//! The policy snapshot: what the dataplane enforces for every managed cgroup (SPEC 4), as validated domain
//! types. The same snapshot arrives from `Interceptor.replacePolicySnapshot()` and from the control protocol's
//! `ReplacePolicySnapshot` payload, and is parsed by the one strict parser in `parse.rs`.
//!
//! JSON shape (strict: unknown keys rejected at every level):
//! ```json
//! { "broker": [{"ip": "10.0.0.5", "port": 8081}],
//!   "dns": [{"ip": "10.0.0.53"}],
//!   "rules": [{"id": "github", "action": "allow", "cidr": "140.82.112.0/20", "ports": [443], "protocol": "tcp"}],
//!   "sampling": {"allowOneIn": 1, "unmanagedOneIn": 0} }
//! ```
//!
//! Layout: the types and entry points here; `parse.rs` is the issue-collecting parser (it alone decides what
//! is wrong), `fast_path.rs` the typed serde path for valid byte input, `cidr.rs` the canonical address and
//! prefix checks both paths share.

mod cidr;
mod fast_path;
pub mod fqdn;
mod parse;

#[cfg(test)]
mod test_fixtures;

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::hook::Protocol;
use super::json_reader;
use super::validation::{Issue, IssueCode, ValidationError};
use super::wire_literal::wire_literal_from_all;

pub use cidr::{parse_canonical_cidr, parse_endpoint_ip};
pub use fqdn::{canonical_query_name, FqdnIndex, FqdnMatch};
pub(crate) use parse::parse_snapshot;

/// What applying a snapshot did: GetPolicySummary and ReplacePolicySnapshot data, and what
/// `Dataplane::replace_policy` returns. Generation 0 means no policy loaded (all counts 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    pub generation: u64,
    pub ipv4_rules: u64,
    pub ipv6_rules: u64,
    pub broker_endpoints: u64,
    pub dns_endpoints: u64,
    /// Rules with `fqdn` instead of `cidr` (SPEC 4b); not counted in `ipv4_rules` / `ipv6_rules`.
    pub fqdn_rules: u64,
    /// `broker[]` entries with `fqdn` instead of `ip`; not counted in `broker_endpoints`.
    pub broker_names: u64,
}

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

/// A broker endpoint named by DNS (SPEC 4b): the addresses its answers teach are broker endpoints (TCP, this
/// port) for the workload that asked, until their TTL runs out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BrokerName {
    pub fqdn: FqdnPattern,
    pub port: u16,
}

/// The name side of an fqdn rule or broker entry (SPEC 4b): an exact DNS name (`api.github.com`) or a pattern
/// whose first label is `*` (`*.github.com`), which matches a name of exactly one more label
/// (`api.github.com`, not `github.com` nor `a.b.github.com`). Canonical: lower case, no trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FqdnPattern {
    /// The canonical text as written in the policy (`*.github.com` or `api.github.com`).
    text: String,
}

impl FqdnPattern {
    /// Wraps text the parser has already checked (`contract::policy::fqdn`).
    pub(crate) fn from_checked(text: String) -> Self {
        FqdnPattern { text }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The suffix a `*.` pattern matches below (`github.com`), `None` for an exact name.
    pub fn wildcard_suffix(&self) -> Option<&str> {
        self.text.strip_prefix("*.")
    }

    /// Whether `name` (canonical: lower case, no trailing dot) is this name or matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self.wildcard_suffix() {
            None => name == self.text,
            Some(suffix) => name
                .strip_suffix(suffix)
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl std::fmt::Display for FqdnPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a rule matches: an address prefix, or the addresses a DNS name's answers teach (SPEC 4b).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    Cidr(IpNet),
    Fqdn(FqdnPattern),
}

impl RuleTarget {
    /// The prefix of a CIDR rule, `None` for an fqdn rule.
    pub fn cidr(&self) -> Option<&IpNet> {
        match self {
            RuleTarget::Cidr(net) => Some(net),
            RuleTarget::Fqdn(_) => None,
        }
    }

    /// The name or pattern of an fqdn rule, `None` for a CIDR rule.
    pub fn fqdn(&self) -> Option<&FqdnPattern> {
        match self {
            RuleTarget::Fqdn(p) => Some(p),
            RuleTarget::Cidr(_) => None,
        }
    }
}

impl std::fmt::Display for RuleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleTarget::Cidr(net) => net.fmt(f),
            RuleTarget::Fqdn(p) => p.fmt(f),
        }
    }
}

/// Which DNS queries of a managed workload the agent's DNS proxy answers (SPEC 4b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DnsQueries {
    /// Every query is answered as the resolver answers it.
    #[default]
    Any,
    /// A query for a name no fqdn rule, broker name or pattern names is refused (DNS rcode REFUSED) and
    /// reported DENY_DNS_QUERY (observe mode: OBSERVE_WOULD_DENY_DNS_QUERY, and answered).
    Policy,
}

impl DnsQueries {
    pub const ALL: [DnsQueries; 2] = [DnsQueries::Any, DnsQueries::Policy];

    pub const fn as_str(self) -> &'static str {
        match self {
            DnsQueries::Any => "any",
            DnsQueries::Policy => "policy",
        }
    }
}

/// One egress rule. Among the rules matching a destination, port and protocol, the longest prefix wins and
/// deny wins a tie; an address an fqdn rule's name taught is judged as a host prefix (/32, /128).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Non-empty and unique within the snapshot; reported as `rule_id` in events.
    pub id: String,
    pub action: RuleAction,
    pub target: RuleTarget,
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
    /// Broker endpoints by address.
    pub broker: Vec<BrokerEndpoint>,
    /// Broker endpoints by name (`broker[]` entries with `fqdn`), after the ones by address on the wire.
    pub broker_names: Vec<BrokerName>,
    pub dns: Vec<DnsEndpoint>,
    pub rules: Vec<Rule>,
    pub sampling: Sampling,
    pub dns_queries: DnsQueries,
}
/// At most this many rules per address family: the size of each family's rule tables in the dataplane.
pub const MAX_RULES_PER_FAMILY: usize = 131_072;
/// At most this many broker endpoints (the size of the dataplane's broker hash map).
pub const MAX_BROKER_ENDPOINTS: usize = 1_024;
/// At most this many DNS endpoints (the size of the dataplane's DNS hash map).
pub const MAX_DNS_ENDPOINTS: usize = 1_024;
/// Rule ids live in fixed 64-byte kernel slots with a terminating NUL, so at most 63 bytes.
pub const MAX_RULE_ID_BYTES: usize = crate::contract::slot_id::MAX_SLOT_ID_BYTES;
/// At most this many fqdn rules (SPEC 4b); they do not count toward [`MAX_RULES_PER_FAMILY`].
pub const MAX_FQDN_RULES: usize = 4096;
/// Port of a DNS endpoint that does not name one.
pub const DEFAULT_DNS_PORT: u16 = 53;

impl RuleAction {
    pub const ALL: [RuleAction; 2] = [RuleAction::Allow, RuleAction::Deny];

    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
        }
    }
}

/// A protocol a rule may name: the transports whose destination port the sock_addr hooks judge. The other
/// protocols of [`Protocol`] (ICMP ping sockets, and the socket kinds the bypass layers refuse) are reported in
/// events but are not rule selectors: a rule without `protocol` covers ICMP too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleProtocol(pub Protocol);

impl RuleProtocol {
    pub const ALL: [RuleProtocol; 2] = [RuleProtocol(Protocol::Tcp), RuleProtocol(Protocol::Udp)];

    pub const fn as_str(self) -> &'static str {
        self.0.as_str()
    }
}

wire_literal_from_all!(RuleAction, RuleProtocol, DnsQueries);

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
    /// Rules with `fqdn` instead of `cidr` (SPEC 4b); not counted in `ipv4_rules` / `ipv6_rules`.
    pub fqdn_rules: u64,
    /// `broker[]` entries with `fqdn` instead of `ip`; not counted in `broker_endpoints`.
    pub broker_names: u64,
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
        if let Some(snapshot) = fast_path::parse(bytes) {
            return Ok(snapshot);
        }
        let v: Value = json_reader::parse_json_strict(bytes).map_err(|e| {
            ValidationError::single(Issue::new(
                vec![],
                IssueCode::InvalidJson,
                format!("policy snapshot is not valid JSON: {e}"),
            ))
        })?;
        // A port `42001.0000000000001` reads as 42001 from a value; from text it is a fraction (issue 17).
        let fractions = json_reader::fractions_read_as_integers(bytes, &v);
        match Self::from_json_value(&v) {
            Ok(snapshot) if fractions.is_empty() => Ok(snapshot),
            Ok(_) => Err(ValidationError::new(fractions)),
            Err(mut e) => {
                for f in fractions {
                    if !e.issues.iter().any(|i| i.path == f.path) {
                        e.issues.push(f);
                    }
                }
                Err(e)
            }
        }
    }

    /// The normalised JSON form: defaults filled in (`dns[].port`, `sampling`, `dnsQueries`), broker entries
    /// by address before those by name, empty `ports` and absent
    /// `protocol` omitted, so that parsing the output again gives the same snapshot.
    pub fn to_json_value(&self) -> Value {
        let mut rules = Vec::with_capacity(self.rules.len());
        for r in &self.rules {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), Value::from(r.id.clone()));
            m.insert("action".into(), Value::from(r.action.as_str()));
            match &r.target {
                RuleTarget::Cidr(net) => m.insert("cidr".into(), Value::from(net.to_string())),
                RuleTarget::Fqdn(p) => m.insert("fqdn".into(), Value::from(p.as_str())),
            };
            if !r.ports.is_empty() {
                m.insert("ports".into(), Value::from(r.ports.clone()));
            }
            if let Some(p) = r.protocol {
                m.insert("protocol".into(), Value::from(p.as_str()));
            }
            rules.push(Value::Object(m));
        }
        let broker = self
            .broker
            .iter()
            .map(|b| serde_json::json!({"ip": b.ip.to_string(), "port": b.port}))
            .chain(
                self.broker_names
                    .iter()
                    .map(|b| serde_json::json!({"fqdn": b.fqdn.as_str(), "port": b.port})),
            )
            .collect::<Vec<_>>();
        serde_json::json!({
            "broker": broker,
            "dns": self.dns.iter().map(|d| serde_json::json!({"ip": d.ip.to_string(), "port": d.port})).collect::<Vec<_>>(),
            "rules": rules,
            "sampling": {"allowOneIn": self.sampling.allow_one_in, "unmanagedOneIn": self.sampling.unmanaged_one_in},
            "dnsQueries": self.dns_queries.as_str(),
        })
    }

    /// Rule and endpoint counts, as reported by `ReplacePolicySnapshot` and `GetPolicySummary`.
    pub fn counts(&self) -> PolicyCounts {
        let (mut ipv4, mut ipv6, mut fqdn) = (0u64, 0u64, 0u64);
        for r in &self.rules {
            match &r.target {
                RuleTarget::Cidr(net) if net.is_ipv4() => ipv4 += 1,
                RuleTarget::Cidr(_) => ipv6 += 1,
                RuleTarget::Fqdn(_) => fqdn += 1,
            }
        }
        PolicyCounts {
            ipv4_rules: ipv4,
            ipv6_rules: ipv6,
            broker_endpoints: self.broker.len() as u64,
            dns_endpoints: self.dns.len() as u64,
            fqdn_rules: fqdn,
            broker_names: self.broker_names.len() as u64,
        }
    }
}
