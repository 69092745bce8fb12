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
/// At most this many rules per address family: the size of each family's rule tables in the dataplane.
pub const MAX_RULES_PER_FAMILY: usize = 131_072;
/// At most this many broker endpoints (the size of the dataplane's broker hash map).
pub const MAX_BROKER_ENDPOINTS: usize = 1_024;
/// At most this many DNS endpoints (the size of the dataplane's DNS hash map).
pub const MAX_DNS_ENDPOINTS: usize = 1_024;
/// Rule ids live in fixed 64-byte kernel slots with a terminating NUL, so at most 63 bytes.
pub const MAX_RULE_ID_BYTES: usize = crate::contract::slot_id::MAX_SLOT_ID_BYTES;
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

wire_literal_from_all!(RuleAction, RuleProtocol);

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
