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
    /// `None` means TCP and UDP.
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
