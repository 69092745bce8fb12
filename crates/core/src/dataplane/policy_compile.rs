//! Turning a validated [`PolicySnapshot`] into kernel map entries (pure: no map is touched here, so the limits
//! and the ordering rules are unit-tested without a kernel).
//!
//! - Rules are grouped by CIDR (address masked to the prefix); broker and DNS endpoints join the group of their
//!   host (/32, /128) as entries of their own kind. One hash lookup of that group then decides a broker, DNS or
//!   host-rule destination.
//! - Each group's entries are sorted broker, DNS, deny, allow (stable, so rule order is kept among equals): the
//!   kernel takes the first entry matching port and protocol, which makes broker beat DNS beat every rule, and
//!   deny win a tie between rules of one prefix.
//! - A rule's ports become port ranges (consecutive ports merge); each range is one kernel entry carrying the
//!   rule's index, so a rule with many ports spans several entries.
//! - The prefix lengths present in each family are listed longest first: the kernel looks up only those.
//! - IPv4-mapped IPv6 CIDRs and endpoints (`::ffff:a.b.c.d`) are stored as IPv4, because the programs judge
//!   mapped destinations with the IPv4 tables.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::abi::{self, c, RuleEntry};
use super::error::DataplaneError;
use crate::contract::hook::Protocol;
use crate::contract::policy::{PolicySnapshot, Rule, RuleAction, RuleTarget};

/// Per-family, per-slot capacity of kernel rule entries.
pub const MAX_RULE_ENTRIES_PER_FAMILY: usize = c::DP_RULE_ENTRIES_PER_FAMILY as usize;
/// Per-family, per-slot capacity of distinct CIDRs.
pub const MAX_PREFIXES_PER_FAMILY: usize = c::DP_PREFIXES_PER_FAMILY as usize;
/// Kernel entries one CIDR may hold (rules x port ranges, plus a host's broker and DNS entries).
pub const MAX_ENTRIES_PER_PREFIX: usize = c::DP_ENTRIES_PER_PREFIX as usize;
/// Rules (both families) per snapshot.
pub const MAX_RULES: usize = c::DP_RULE_IDS_PER_SLOT as usize;
/// Endpoint entries (a DNS endpoint takes two: udp and tcp) per snapshot.
pub const MAX_ENDPOINT_ENTRIES: usize = c::DP_ENDPOINTS_PER_SLOT as usize;

/// One group: a CIDR (or an endpoint host) with its entries, sorted broker, DNS, deny, allow. `addr` holds the
/// network-order address bytes, host bits zero.
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
    /// Prefix lengths present in `v4` / `v6`, longest first.
    pub len4: Vec<u8>,
    pub len6: Vec<u8>,
    pub rule_ids: Vec<String>,
    pub ipv4_rules: u32,
    pub ipv6_rules: u32,
    pub broker_endpoints: u32,
    pub dns_endpoints: u32,
    pub allow_one_in: u32,
    pub unmanaged_one_in: u32,
    /// DNS must pass the agent's proxy: the policy names destinations by DNS name (SPEC 4b).
    pub steer_dns: bool,
    /// The policy's DNS names in their pinned form (empty when it names nothing by DNS name): slots.rs.
    pub dns_names: Vec<u8>,
}

/// An address as the tables see it: IPv4 (also for a mapped IPv6 address) or IPv6, host bits zero.
enum TableAddr {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

fn table_addr(addr: IpAddr, prefix_len: u8) -> TableAddr {
    match addr {
        IpAddr::V4(a) => {
            let len = prefix_len.min(32);
            TableAddr::V4(masked(a.octets(), len), len)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if prefix_len >= 96 => {
                let len = (prefix_len - 96).min(32);
                TableAddr::V4(masked(v4.octets(), len), len)
            }
            _ => {
                let len = prefix_len.min(128);
                TableAddr::V6(masked(a.octets(), len), len)
            }
        },
    }
}

/// Zeroes every bit after the first `len`.
fn masked<const N: usize>(mut bytes: [u8; N], len: u8) -> [u8; N] {
    for (i, b) in bytes.iter_mut().enumerate() {
        let first_bit = i * 8;
        let keep = usize::from(len).saturating_sub(first_bit).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    bytes
}

/// The kernel entries of rule `index`: one per port range, with its action and protocol (none: every protocol
/// the hooks judge, tcp, udp and icmp ping sockets). Shared by CIDR rules (their groups) and fqdn rules (the
/// addresses their names teach, dataplane/fqdn.rs).
pub(crate) fn rule_entries(rule: &Rule, index: usize) -> Vec<RuleEntry> {
    let action = match rule.action {
        RuleAction::Allow => abi::ACTION_ALLOW,
        RuleAction::Deny => abi::ACTION_DENY,
    };
    port_ranges(&rule.ports)
        .into_iter()
        .map(|(lo, hi)| RuleEntry {
            port_lo: lo,
            port_hi: hi,
            protocol: rule.protocol.map_or(0, |p| p as u8),
            action,
            reserved: 0,
            rule_index: index as u32,
        })
        .collect()
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

fn endpoint_entry(port: u16, protocol: u8, action: u8) -> RuleEntry {
    RuleEntry {
        port_lo: port,
        port_hi: port,
        protocol,
        action,
        reserved: 0,
        rule_index: abi::RULE_INDEX_NONE,
    }
}

type Groups<const N: usize> = BTreeMap<([u8; N], u8), Vec<RuleEntry>>;

/// The groups of one family, checked against the limits, entries sorted; and the prefix lengths, longest first.
fn finish<const N: usize>(
    groups: Groups<N>,
    rule_prefixes: usize,
    family: &'static str,
) -> Result<(Vec<PrefixEntries<N>>, Vec<u8>), DataplaneError> {
    if rule_prefixes > MAX_PREFIXES_PER_FAMILY {
        return Err(DataplaneError::PolicyTooLarge {
            what: if N == 4 {
                "distinct IPv4 CIDRs"
            } else {
                "distinct IPv6 CIDRs"
            },
            count: rule_prefixes,
            limit: MAX_PREFIXES_PER_FAMILY,
        });
    }
    let mut rule_entries = 0usize;
    let mut out = Vec::with_capacity(groups.len());
    let mut lengths: Vec<u8> = Vec::new();
    for ((addr, prefix_len), mut entries) in groups {
        if entries.len() > MAX_ENTRIES_PER_PREFIX {
            return Err(DataplaneError::PolicyTooLarge {
                what: "kernel entries (rules x port ranges, broker and DNS) of one CIDR",
                count: entries.len(),
                limit: MAX_ENTRIES_PER_PREFIX,
            });
        }
        // Broker, DNS, deny, allow (stable: rule order is kept among equals). The kernel takes the first match.
        entries.sort_by_key(|e| std::cmp::Reverse(e.action));
        rule_entries += entries
            .iter()
            .filter(|e| e.rule_index != abi::RULE_INDEX_NONE)
            .count();
        if !lengths.contains(&prefix_len) {
            lengths.push(prefix_len);
        }
        out.push(PrefixEntries {
            addr,
            prefix_len,
            entries,
        });
    }
    if rule_entries > MAX_RULE_ENTRIES_PER_FAMILY {
        return Err(DataplaneError::PolicyTooLarge {
            what: family,
            count: rule_entries,
            limit: MAX_RULE_ENTRIES_PER_FAMILY,
        });
    }
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    Ok((out, lengths))
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
    let mut v4: Groups<4> = BTreeMap::new();
    let mut v6: Groups<16> = BTreeMap::new();
    let mut compiled = CompiledPolicy {
        allow_one_in: snapshot.sampling.allow_one_in,
        unmanaged_one_in: snapshot.sampling.unmanaged_one_in,
        steer_dns: super::fqdn::NamePolicy::steers(snapshot),
        dns_names: if super::fqdn::NamePolicy::steers(snapshot) {
            super::fqdn::NamePolicy::new(snapshot).to_blob()
        } else {
            Vec::new()
        },
        ..CompiledPolicy::default()
    };
    for (index, rule) in snapshot.rules.iter().enumerate() {
        id_fits(&rule.id)?;
        compiled.rule_ids.push(rule.id.clone());
        let entries = rule_entries(rule, index);
        // An fqdn rule has no table entry of its own: the addresses its name's answers teach are written per
        // workload by the DNS proxy (dataplane/fqdn.rs).
        let RuleTarget::Cidr(cidr) = &rule.target else {
            continue;
        };
        match table_addr(cidr.addr, cidr.prefix_len) {
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
    let rule_prefixes4 = v4.len();
    let rule_prefixes6 = v6.len();

    // Endpoints, de-duplicated. For the same (ip, port, tcp) a broker entry sorts before the DNS one, so it
    // reports ALLOW_BROKER, the earlier step of SPEC 4.
    let mut endpoints: BTreeMap<(IpAddr, u16, u8, u8), ()> = BTreeMap::new();
    for dns in &snapshot.dns {
        for proto in [Protocol::Udp, Protocol::Tcp] {
            endpoints.insert((dns.ip, dns.port, proto as u8, abi::ACTION_DNS), ());
        }
    }
    for broker in &snapshot.broker {
        endpoints.insert(
            (
                broker.ip,
                broker.port,
                Protocol::Tcp as u8,
                abi::ACTION_BROKER,
            ),
            (),
        );
    }
    if endpoints.len() > MAX_ENDPOINT_ENTRIES {
        return Err(DataplaneError::PolicyTooLarge {
            what: "endpoint entries (broker + 2 per DNS)",
            count: endpoints.len(),
            limit: MAX_ENDPOINT_ENTRIES,
        });
    }
    for (ip, port, protocol, action) in endpoints.into_keys() {
        let entry = endpoint_entry(port, protocol, action);
        match table_addr(ip, 128) {
            TableAddr::V4(a, _) => v4.entry((a, 32)).or_default().push(entry),
            TableAddr::V6(a, _) => v6.entry((a, 128)).or_default().push(entry),
        }
    }
    (compiled.v4, compiled.len4) = finish(v4, rule_prefixes4, "IPv4 kernel rule entries")?;
    (compiled.v6, compiled.len6) = finish(v6, rule_prefixes6, "IPv6 kernel rule entries")?;
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
            target: RuleTarget::Cidr(IpNet {
                addr: addr.parse().expect("test addr"),
                prefix_len: len.parse().expect("test len"),
            }),
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
    fn masks_host_bits() {
        assert_eq!(masked([10, 1, 2, 3], 8), [10, 0, 0, 0]);
        assert_eq!(masked([10, 255, 2, 3], 12), [10, 240, 0, 0]);
        assert_eq!(masked([1, 2, 3, 4], 0), [0, 0, 0, 0]);
        assert_eq!(masked([1, 2, 3, 4], 32), [1, 2, 3, 4]);
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
        assert_eq!(c.len4, vec![24, 8], "longest first");
        assert_eq!(c.len6, vec![32]);
    }

    #[test]
    fn endpoints_join_their_host_group_before_its_rules_and_broker_wins_over_dns() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53));
        let snap = PolicySnapshot {
            broker: vec![BrokerEndpoint { ip, port: 53 }],
            dns: vec![
                DnsEndpoint { ip, port: 53 },
                DnsEndpoint {
                    ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    port: 53,
                },
                DnsEndpoint {
                    ip: "::ffff:10.0.0.54".parse().expect("mapped"),
                    port: 53,
                },
            ],
            rules: vec![
                rule("host-allow", RuleAction::Allow, "10.0.0.53/32", &[], None),
                rule("host-deny", RuleAction::Deny, "10.0.0.53/32", &[22], None),
            ],
            ..PolicySnapshot::default()
        };
        let c = compile(&snap).expect("fits");
        let host =
            c.v4.iter()
                .find(|p| p.addr == [10, 0, 0, 53])
                .expect("host group");
        assert_eq!(host.prefix_len, 32);
        let kinds: Vec<(u8, u8, u32)> = host
            .entries
            .iter()
            .map(|e| (e.action, e.protocol, e.rule_index))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (abi::ACTION_BROKER, 6, abi::RULE_INDEX_NONE),
                (abi::ACTION_DNS, 6, abi::RULE_INDEX_NONE),
                (abi::ACTION_DNS, 17, abi::RULE_INDEX_NONE),
                (abi::ACTION_DENY, 0, 1),
                (abi::ACTION_ALLOW, 0, 0),
            ]
        );
        assert!(
            c.v4.iter().any(|p| p.addr == [10, 0, 0, 54]),
            "a mapped endpoint is an IPv4 host"
        );
        let v6 = c.v6.first().expect("::1 host group");
        assert_eq!((v6.prefix_len, v6.entries.len()), (128, 2));
        assert_eq!(c.len4, vec![32]);
        assert_eq!(c.len6, vec![128]);
        assert_eq!((c.broker_endpoints, c.dns_endpoints), (1, 3));
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
