//! Turning a validated [`PolicySnapshot`] into kernel map entries (pure: no map is touched here, so the limits
//! and the ordering rules are unit-tested without a kernel).
//!
//! - Rules are grouped by CIDR; each group's entries are sorted deny first, which is how "deny wins a tie" is
//!   decided in the kernel (the first entry matching port and protocol is the prefix's verdict).
//! - A rule's ports become port ranges (consecutive ports merge); each range is one kernel entry carrying the
//!   rule's index, so a rule with many ports spans several entries.
//! - IPv4-mapped IPv6 CIDRs and endpoints (`::ffff:a.b.c.d`) are stored as IPv4, because the programs judge
//!   mapped destinations with the IPv4 tables.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::abi::{self, c, EndpointKey, RuleEntry};
use super::error::DataplaneError;
use crate::contract::hook::Protocol;
use crate::contract::policy::{PolicySnapshot, RuleAction};

/// Per-family, per-slot capacity of kernel rule entries.
pub const MAX_RULE_ENTRIES_PER_FAMILY: usize = c::DP_RULE_ENTRIES_PER_FAMILY as usize;
/// Per-family, per-slot capacity of distinct CIDRs.
pub const MAX_PREFIXES_PER_FAMILY: usize = c::DP_PREFIXES_PER_FAMILY as usize;
/// Kernel entries one CIDR may hold (rules x port ranges).
pub const MAX_ENTRIES_PER_PREFIX: usize = c::DP_ENTRIES_PER_PREFIX as usize;
/// Rules (both families) per snapshot.
pub const MAX_RULES: usize = c::DP_RULE_IDS_PER_SLOT as usize;
/// Endpoint entries (a DNS endpoint takes two: udp and tcp) per snapshot.
pub const MAX_ENDPOINT_ENTRIES: usize = c::DP_ENDPOINTS_PER_SLOT as usize;

/// One CIDR with its entries (sorted deny first). `addr` is the network-order address bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrefixEntries<const N: usize> {
    pub addr: [u8; N],
    pub prefix_len: u8,
    pub entries: Vec<RuleEntry>,
}

/// A snapshot as kernel entries, independent of the slot it will be written to.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledPolicy {
    pub v4: Vec<PrefixEntries<4>>,
    pub v6: Vec<PrefixEntries<16>>,
    /// Endpoint keys with slot 0 (the writer sets the slot) and their kind.
    pub endpoints: Vec<(EndpointKey, u32)>,
    pub rule_ids: Vec<String>,
    pub ipv4_rules: u32,
    pub ipv6_rules: u32,
    pub broker_endpoints: u32,
    pub dns_endpoints: u32,
    pub allow_one_in: u32,
    pub unmanaged_one_in: u32,
}

/// An address as the tables see it: IPv4 (also for a mapped IPv6 address) or IPv6.
enum TableAddr {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

fn table_addr(addr: IpAddr, prefix_len: u8) -> TableAddr {
    match addr {
        IpAddr::V4(a) => TableAddr::V4(a.octets(), prefix_len),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if prefix_len >= 96 => TableAddr::V4(v4.octets(), prefix_len - 96),
            _ => TableAddr::V6(a.octets(), prefix_len),
        },
    }
}

/// Sorted, de-duplicated ports as inclusive ranges; no ports means every port.
fn port_ranges(ports: &[u16]) -> Vec<(u16, u16)> {
    if ports.is_empty() {
        return vec![(0, u16::MAX)];
    }
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(p) => *hi = p,
            _ => ranges.push((p, p)),
        }
    }
    ranges
}

fn id_fits(id: &str) -> Result<(), DataplaneError> {
    if id.len() > abi::ID_BYTES || id.as_bytes().contains(&0) {
        return Err(DataplaneError::InvalidPolicy(format!(
            "rule id {id:?} must be at most {} bytes without NUL",
            abi::ID_BYTES
        )));
    }
    Ok(())
}

fn endpoint_key(ip: IpAddr, port: u16, protocol: Protocol) -> EndpointKey {
    let mut key = EndpointKey {
        slot: 0,
        family: abi::FAMILY_INET,
        protocol: protocol as u8,
        reserved: 0,
        port,
        reserved2: 0,
        addr: [0; 16],
    };
    match table_addr(ip, 128) {
        TableAddr::V4(a, _) => key.addr[..4].copy_from_slice(&a),
        TableAddr::V6(a, _) => {
            key.family = abi::FAMILY_INET6;
            key.addr = a;
        }
    }
    key
}

fn sort_and_check<const N: usize>(
    groups: BTreeMap<([u8; N], u8), Vec<RuleEntry>>,
    family: &'static str,
) -> Result<Vec<PrefixEntries<N>>, DataplaneError> {
    if groups.len() > MAX_PREFIXES_PER_FAMILY {
        return Err(DataplaneError::PolicyTooLarge {
            what: if N == 4 {
                "distinct IPv4 CIDRs"
            } else {
                "distinct IPv6 CIDRs"
            },
            count: groups.len(),
            limit: MAX_PREFIXES_PER_FAMILY,
        });
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(groups.len());
    for ((addr, prefix_len), mut entries) in groups {
        if entries.len() > MAX_ENTRIES_PER_PREFIX {
            return Err(DataplaneError::PolicyTooLarge {
                what: "kernel rule entries (rules x port ranges) of one CIDR",
                count: entries.len(),
                limit: MAX_ENTRIES_PER_PREFIX,
            });
        }
        // Deny first (stable, so rule order is kept among equals): the kernel takes the first match of a prefix.
        entries.sort_by_key(|e| e.action != abi::ACTION_DENY);
        total += entries.len();
        out.push(PrefixEntries {
            addr,
            prefix_len,
            entries,
        });
    }
    if total > MAX_RULE_ENTRIES_PER_FAMILY {
        return Err(DataplaneError::PolicyTooLarge {
            what: family,
            count: total,
            limit: MAX_RULE_ENTRIES_PER_FAMILY,
        });
    }
    Ok(out)
}

/// Compiles a validated snapshot; fails when it does not fit the kernel maps.
pub(crate) fn compile(snapshot: &PolicySnapshot) -> Result<CompiledPolicy, DataplaneError> {
    if snapshot.rules.len() > MAX_RULES {
        return Err(DataplaneError::PolicyTooLarge {
            what: "rules",
            count: snapshot.rules.len(),
            limit: MAX_RULES,
        });
    }
    let mut v4: BTreeMap<([u8; 4], u8), Vec<RuleEntry>> = BTreeMap::new();
    let mut v6: BTreeMap<([u8; 16], u8), Vec<RuleEntry>> = BTreeMap::new();
    let mut compiled = CompiledPolicy {
        allow_one_in: snapshot.sampling.allow_one_in,
        unmanaged_one_in: snapshot.sampling.unmanaged_one_in,
        ..CompiledPolicy::default()
    };
    for (index, rule) in snapshot.rules.iter().enumerate() {
        id_fits(&rule.id)?;
        compiled.rule_ids.push(rule.id.clone());
        let action = match rule.action {
            RuleAction::Allow => abi::ACTION_ALLOW,
            RuleAction::Deny => abi::ACTION_DENY,
        };
        let entries = port_ranges(&rule.ports)
            .into_iter()
            .map(|(lo, hi)| RuleEntry {
                port_lo: lo,
                port_hi: hi,
                protocol: rule.protocol.map_or(0, |p| p as u8),
                action,
                reserved: 0,
                rule_index: index as u32,
            });
        match table_addr(rule.cidr.addr, rule.cidr.prefix_len) {
            TableAddr::V4(a, len) => {
                compiled.ipv4_rules += 1;
                v4.entry((a, len)).or_default().extend(entries);
            }
            TableAddr::V6(a, len) => {
                compiled.ipv6_rules += 1;
                v6.entry((a, len)).or_default().extend(entries);
            }
        }
    }
    compiled.v4 = sort_and_check(v4, "IPv4 kernel rule entries")?;
    compiled.v6 = sort_and_check(v6, "IPv6 kernel rule entries")?;

    // DNS first, broker last: a broker endpoint that is also a DNS (ip, port, tcp) endpoint reports
    // ALLOW_BROKER, the earlier step of SPEC 4.
    let mut endpoints: BTreeMap<Vec<u8>, (EndpointKey, u32)> = BTreeMap::new();
    let key_bytes = |k: &EndpointKey| {
        let mut v = vec![k.family, k.protocol];
        v.extend_from_slice(&k.port.to_be_bytes());
        v.extend_from_slice(&k.addr);
        v
    };
    for dns in &snapshot.dns {
        for proto in [Protocol::Udp, Protocol::Tcp] {
            let k = endpoint_key(dns.ip, dns.port, proto);
            endpoints.insert(key_bytes(&k), (k, abi::ENDPOINT_DNS));
        }
    }
    for broker in &snapshot.broker {
        let k = endpoint_key(broker.ip, broker.port, Protocol::Tcp);
        endpoints.insert(key_bytes(&k), (k, abi::ENDPOINT_BROKER));
    }
    if endpoints.len() > MAX_ENDPOINT_ENTRIES {
        return Err(DataplaneError::PolicyTooLarge {
            what: "endpoint entries (broker + 2 per DNS)",
            count: endpoints.len(),
            limit: MAX_ENDPOINT_ENTRIES,
        });
    }
    compiled.endpoints = endpoints.into_values().collect();
    compiled.broker_endpoints = snapshot.broker.len() as u32;
    compiled.dns_endpoints = snapshot.dns.len() as u32;
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::contract::policy::{BrokerEndpoint, DnsEndpoint, IpNet, Rule};

    fn rule(
        id: &str,
        action: RuleAction,
        cidr: &str,
        ports: &[u16],
        protocol: Option<Protocol>,
    ) -> Rule {
        let (addr, len) = cidr.split_once('/').expect("test cidr");
        Rule {
            id: id.into(),
            action,
            cidr: IpNet {
                addr: addr.parse().expect("test addr"),
                prefix_len: len.parse().expect("test len"),
            },
            ports: ports.to_vec(),
            protocol,
        }
    }

    #[test]
    fn ports_merge_into_ranges_and_empty_means_all() {
        assert_eq!(port_ranges(&[]), vec![(0, 65535)]);
        assert_eq!(
            port_ranges(&[443, 80, 81, 82, 443, 65535]),
            vec![(80, 82), (443, 443), (65535, 65535)]
        );
    }

    #[test]
    fn groups_by_cidr_deny_first_and_keeps_rule_indexes() {
        let snap = PolicySnapshot {
            rules: vec![
                rule(
                    "a",
                    RuleAction::Allow,
                    "10.0.0.0/8",
                    &[80, 443],
                    Some(Protocol::Tcp),
                ),
                rule("d", RuleAction::Deny, "10.0.0.0/8", &[443], None),
                rule("v6", RuleAction::Allow, "2001:db8::/32", &[], None),
                rule("m", RuleAction::Deny, "::ffff:192.0.2.0/120", &[], None),
            ],
            ..PolicySnapshot::default()
        };
        let c = compile(&snap).expect("fits");
        assert_eq!((c.ipv4_rules, c.ipv6_rules), (3, 1));
        let ten =
            c.v4.iter()
                .find(|p| p.addr == [10, 0, 0, 0])
                .expect("10/8 group");
        assert_eq!(ten.prefix_len, 8);
        let actions: Vec<(u8, u32)> = ten
            .entries
            .iter()
            .map(|e| (e.action, e.rule_index))
            .collect();
        assert_eq!(
            actions,
            vec![
                (abi::ACTION_DENY, 1),
                (abi::ACTION_ALLOW, 0),
                (abi::ACTION_ALLOW, 0)
            ]
        );
        let mapped =
            c.v4.iter()
                .find(|p| p.addr == [192, 0, 2, 0])
                .expect("mapped CIDR stored as IPv4");
        assert_eq!(mapped.prefix_len, 24);
        assert_eq!(c.v6.len(), 1);
        assert_eq!(c.rule_ids, vec!["a", "d", "v6", "m"]);
    }

    #[test]
    fn broker_wins_over_dns_on_the_same_tcp_endpoint() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53));
        let snap = PolicySnapshot {
            broker: vec![BrokerEndpoint { ip, port: 53 }],
            dns: vec![
                DnsEndpoint { ip, port: 53 },
                DnsEndpoint {
                    ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    port: 53,
                },
            ],
            ..PolicySnapshot::default()
        };
        let c = compile(&snap).expect("fits");
        assert_eq!(c.endpoints.len(), 4);
        let tcp = c
            .endpoints
            .iter()
            .find(|(k, _)| k.family == abi::FAMILY_INET && k.protocol == 6)
            .expect("tcp");
        assert_eq!(tcp.1, abi::ENDPOINT_BROKER);
        let udp = c
            .endpoints
            .iter()
            .find(|(k, _)| k.family == abi::FAMILY_INET && k.protocol == 17)
            .expect("udp");
        assert_eq!(udp.1, abi::ENDPOINT_DNS);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let long = "x".repeat(65);
        let snap = PolicySnapshot {
            rules: vec![rule(&long, RuleAction::Allow, "10.0.0.0/8", &[], None)],
            ..PolicySnapshot::default()
        };
        assert!(matches!(
            compile(&snap),
            Err(DataplaneError::InvalidPolicy(_))
        ));
        let ports: Vec<u16> = (0..=u16::MAX)
            .step_by(2)
            .take(MAX_ENTRIES_PER_PREFIX + 1)
            .collect();
        let snap = PolicySnapshot {
            rules: vec![rule("p", RuleAction::Allow, "10.0.0.0/8", &ports, None)],
            ..PolicySnapshot::default()
        };
        assert!(matches!(
            compile(&snap),
            Err(DataplaneError::PolicyTooLarge { .. })
        ));
    }
}
