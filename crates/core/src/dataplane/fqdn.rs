//! Rules by name (SPEC 4b), the user-space half: the addresses the agent's DNS proxy learned from managed
//! workloads' answers, kept per (managed cgroup, name) and written to the kernel's `dp_learned` map per
//! (slot, managed cgroup, address) with the entries of every fqdn rule and broker name whose names taught the
//! address (bpf/dns_steering.h). Design and limits: docs/dataplane.md, "Rules by name".
//!
//! - A name's addresses expire at their answer's TTL; learning an address again extends it. The kernel ignores an
//!   expired entry by itself, so [`LearnedTable::expire`] only returns the memory.
//! - A policy replacement writes the entries of the names the new policy still names into the slot it is about to
//!   flip to, and removes the old slot's entries after the flip; names it no longer names are forgotten.
//! - An adopting loader reads the active slot's entries back (the name is stored in each value), so a restarted
//!   agent keeps the addresses that have not expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};

use super::abi::{self, DnsFlow, Learned, LearnedKey, RuleEntry};
use super::error::DataplaneError;
use super::policy_compile::rule_entries;
use crate::contract::hook::Protocol;
use crate::contract::policy::{DnsQueries, PolicySnapshot, RuleTarget};

/// Who sent a DNS query the proxy received, as the sock_addr program recorded it when it steered the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteeredFlow {
    /// The resolver the workload addressed.
    pub original: SocketAddr,
    /// The socket's cgroup when it was steered.
    pub cgroup_id: u64,
    /// The managed entry that covered it.
    pub managed_cgroup_id: u64,
}

/// What the proxy does with a query (SPEC 4b, `dnsQueries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsQueryVerdict {
    Answer,
    /// Refused with rcode REFUSED: DENY_DNS_QUERY.
    Refuse,
    /// Answered, reported OBSERVE_WOULD_DENY_DNS_QUERY (the workload's mode is observe).
    ObserveWouldRefuse,
}

/// One learned address as `ctl dns` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedAddress {
    pub name: String,
    pub address: IpAddr,
    pub ttl_remaining: Duration,
    /// Ids of the fqdn rules whose names taught it (empty for a broker name).
    pub rule_ids: Vec<String>,
    /// A broker name taught it.
    pub broker: bool,
    pub managed_cgroup_id: u64,
}

/// One name of a policy (an fqdn rule or a broker name) and the entries an address it teaches is judged by.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// `api.github.com` or `*.github.com`.
    pattern: String,
    entries: Vec<RuleEntry>,
    /// The fqdn rule's id; `None` for a broker name.
    rule_id: Option<String>,
}

/// A policy's names: what the proxy matches a query against, and the entries each match gives an address. Pinned
/// per slot next to the slot's rule ids ([`NamePolicy::to_blob`]), so an adopting loader knows them too.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NamePolicy {
    targets: Vec<Target>,
    exact: HashMap<String, Vec<usize>>,
    /// `*.github.com` under `github.com`.
    wildcard: HashMap<String, Vec<usize>>,
    /// The indices (in `snapshot.rules`) of the fqdn rules: events decided by one carry `dns_name`.
    fqdn_rules: BTreeSet<u32>,
    pub dns_queries: DnsQueries,
}

impl NamePolicy {
    pub(crate) fn new(snapshot: &PolicySnapshot) -> NamePolicy {
        let mut targets = Vec::new();
        for (index, rule) in snapshot.rules.iter().enumerate() {
            let RuleTarget::Fqdn(pattern) = &rule.target else {
                continue;
            };
            targets.push(Target {
                pattern: pattern.as_str().to_owned(),
                entries: rule_entries(rule, index),
                rule_id: Some(rule.id.clone()),
            });
        }
        for b in &snapshot.broker_names {
            targets.push(Target {
                pattern: b.fqdn.as_str().to_owned(),
                entries: vec![RuleEntry {
                    port_lo: b.port,
                    port_hi: b.port,
                    protocol: Protocol::Tcp as u8,
                    action: abi::ACTION_BROKER,
                    reserved: 0,
                    rule_index: abi::RULE_INDEX_NONE,
                }],
                rule_id: None,
            });
        }
        NamePolicy::from_targets(targets, snapshot.dns_queries)
    }

    fn from_targets(targets: Vec<Target>, dns_queries: DnsQueries) -> NamePolicy {
        let mut p = NamePolicy {
            dns_queries,
            ..NamePolicy::default()
        };
        for (i, t) in targets.iter().enumerate() {
            match t.pattern.strip_prefix("*.") {
                Some(suffix) => p.wildcard.entry(suffix.to_owned()).or_default(),
                None => p.exact.entry(t.pattern.clone()).or_default(),
            }
            .push(i);
            if t.rule_id.is_some() {
                p.fqdn_rules.extend(t.entries.iter().map(|e| e.rule_index));
            }
        }
        p.targets = targets;
        p
    }

    /// The pinned form: JSON `{"dnsQueries", "targets": [{"pattern", "ruleId"?, "entries": [[lo, hi, protocol,
    /// action, ruleIndex], ...]}]}`.
    pub(crate) fn to_blob(&self) -> Vec<u8> {
        let targets: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|t| {
                let entries: Vec<serde_json::Value> = t
                    .entries
                    .iter()
                    .map(|e| {
                        serde_json::json!([
                            e.port_lo,
                            e.port_hi,
                            e.protocol,
                            e.action,
                            e.rule_index
                        ])
                    })
                    .collect();
                let mut o = serde_json::json!({"pattern": t.pattern, "entries": entries});
                if let Some(id) = &t.rule_id {
                    o["ruleId"] = serde_json::Value::from(id.as_str());
                }
                o
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "dnsQueries": self.dns_queries.as_str(),
            "targets": targets,
        }))
        .unwrap_or_default()
    }

    /// Reads [`Self::to_blob`]'s form back; `None` for anything else.
    pub(crate) fn from_blob(bytes: &[u8]) -> Option<NamePolicy> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let dns_queries = DnsQueries::ALL
            .into_iter()
            .find(|q| v.get("dnsQueries").and_then(|x| x.as_str()) == Some(q.as_str()))?;
        let mut targets = Vec::new();
        for t in v.get("targets")?.as_array()? {
            let num =
                |e: &serde_json::Value, i: usize| e.get(i).and_then(serde_json::Value::as_u64);
            let entries = t
                .get("entries")?
                .as_array()?
                .iter()
                .map(|e| {
                    Some(RuleEntry {
                        port_lo: u16::try_from(num(e, 0)?).ok()?,
                        port_hi: u16::try_from(num(e, 1)?).ok()?,
                        protocol: u8::try_from(num(e, 2)?).ok()?,
                        action: u8::try_from(num(e, 3)?).ok()?,
                        reserved: 0,
                        rule_index: u32::try_from(num(e, 4)?).ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            targets.push(Target {
                pattern: t.get("pattern")?.as_str()?.to_owned(),
                entries,
                rule_id: t.get("ruleId").and_then(|x| x.as_str()).map(str::to_owned),
            });
        }
        Some(NamePolicy::from_targets(targets, dns_queries))
    }

    /// Whether the snapshot names anything by DNS name or refuses queries: DNS must then pass the proxy.
    pub(crate) fn steers(snapshot: &PolicySnapshot) -> bool {
        snapshot.dns_queries == DnsQueries::Policy
            || !snapshot.broker_names.is_empty()
            || snapshot
                .rules
                .iter()
                .any(|r| matches!(r.target, RuleTarget::Fqdn(_)))
    }

    /// The targets `name` (canonical) matches: exact names, then `*.` patterns one label above it.
    fn matches(&self, name: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.exact.get(name).cloned().unwrap_or_default();
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(t) = self.wildcard.get(parent) {
                out.extend(t);
            }
        }
        out
    }

    /// Whether a query for `name` is answered under `dnsQueries: "policy"`.
    pub(crate) fn names(&self, name: &str) -> bool {
        !self.matches(name).is_empty()
    }

    /// How many fqdn rules and broker names the policy has.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let rules = self.targets.iter().filter(|t| t.rule_id.is_some()).count() as u64;
        (rules, self.targets.len() as u64 - rules)
    }

    pub(crate) fn is_fqdn_rule(&self, rule_index: u32) -> bool {
        self.fqdn_rules.contains(&rule_index)
    }
}

/// The shortest life of a learned address, in seconds: an answer with a shorter TTL (0 = "do not cache") still
/// teaches its address for this long, so the connect that follows the answer is judged by it.
pub const MIN_TTL_SECS: u32 = 1;

/// One (managed cgroup, name): its addresses and when each expires (CLOCK_MONOTONIC ns).
type NameKey = (u64, String);

#[derive(Default)]
pub(crate) struct LearnedTable {
    policy: Option<Arc<NamePolicy>>,
    names: BTreeMap<NameKey, BTreeMap<IpAddr, u64>>,
    /// (managed cgroup, address) -> the names that taught it.
    by_addr: HashMap<(u64, IpAddr), BTreeSet<String>>,
    /// Entries of `LEARNED_INLINE` dropped because a learned address had more (allow entries, from the end).
    pub truncated: u64,
    /// Addresses written for a policy name since the loader started (an address learned again counts again).
    pub learned_total: u64,
}

fn key(slot: u32, managed_id: u64, addr: IpAddr) -> LearnedKey {
    let mut k = LearnedKey {
        managed_id,
        slot: slot as u8,
        ..LearnedKey::default()
    };
    match addr {
        IpAddr::V4(a) => {
            k.v4 = 1;
            k.addr[..4].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            // The programs judge a mapped destination by its IPv4 address.
            Some(v4) => {
                k.v4 = 1;
                k.addr[..4].copy_from_slice(&v4.octets());
            }
            None => k.addr = a.octets(),
        },
    }
    k
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn decode_name(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let s = std::str::from_utf8(&bytes[..end]).ok()?;
    (!s.is_empty()).then(|| s.to_owned())
}

impl LearnedTable {
    pub(crate) fn policy(&self) -> Option<&Arc<NamePolicy>> {
        self.policy.as_ref()
    }

    /// The names of an adopted policy (read from the active slot's pin).
    pub(crate) fn set_policy(&mut self, policy: Arc<NamePolicy>) {
        self.policy = Some(policy);
    }

    /// The kernel value of (managed, addr) under `policy`, from the names that taught it and have not expired;
    /// `None` when nothing of it is left.
    fn value(
        &mut self,
        policy: &NamePolicy,
        managed: u64,
        addr: IpAddr,
        now: u64,
    ) -> Option<Learned> {
        let names = self.by_addr.get(&(managed, addr))?;
        let mut entries: Vec<RuleEntry> = Vec::new();
        let mut expires = 0u64;
        let mut latest: Option<&str> = None;
        for name in names {
            let Some(exp) = self
                .names
                .get(&(managed, name.clone()))
                .and_then(|a| a.get(&addr))
                .copied()
            else {
                continue;
            };
            if exp <= now {
                continue;
            }
            let targets = policy.matches(name);
            if targets.is_empty() {
                continue;
            }
            for t in targets {
                for e in &policy.targets[t].entries {
                    if !entries.contains(e) {
                        entries.push(*e);
                    }
                }
            }
            if exp >= expires {
                expires = exp;
                latest = Some(name);
            }
        }
        let name = latest?;
        // Broker entries first, then deny, then allow: the first matching entry decides (dns_steering.h).
        entries.sort_by_key(|e| match e.action {
            a if a == abi::ACTION_BROKER => 0,
            a if a == abi::ACTION_DENY => 1,
            _ => 2,
        });
        if entries.len() > abi::LEARNED_INLINE {
            self.truncated += (entries.len() - abi::LEARNED_INLINE) as u64;
            entries.truncate(abi::LEARNED_INLINE);
        }
        let mut v = Learned {
            expires_ns: expires,
            count: entries.len() as u32,
            pad: 0,
            entries: [RuleEntry::default(); abi::LEARNED_INLINE],
            name: [0; abi::DNS_NAME_BYTES],
        };
        v.entries[..entries.len()].copy_from_slice(&entries);
        let n = name.len().min(abi::DNS_NAME_BYTES - 1);
        v.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        Some(v)
    }

    /// Writes (or removes) the kernel entry of (managed, addr) in `slot`.
    fn sync(
        &mut self,
        map: &mut BpfHashMap<MapData, LearnedKey, Learned>,
        policy: &NamePolicy,
        slot: u32,
        managed: u64,
        addr: IpAddr,
        now: u64,
    ) -> Result<(), DataplaneError> {
        let k = key(slot, managed, addr);
        match self.value(policy, managed, addr, now) {
            Some(v) => map
                .insert(k, v, 0)
                .map_err(|e| DataplaneError::map("dp_learned", e)),
            None => {
                let _ = map.remove(&k);
                Ok(())
            }
        }
    }

    /// Learns the answer for `name` (and the CNAME chain's names) of `managed`: every address is written to the
    /// active slot before this returns. Returns how many addresses the policy's names gave entries.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn learn(
        &mut self,
        map: &mut BpfHashMap<MapData, LearnedKey, Learned>,
        slot: u32,
        managed: u64,
        names: &[&str],
        addrs: &[(IpAddr, u32)],
        now: u64,
    ) -> Result<usize, DataplaneError> {
        let Some(policy) = self.policy.clone() else {
            return Ok(0);
        };
        // Only the names the policy names are kept: the others teach nothing.
        let named: Vec<&str> = names.iter().copied().filter(|n| policy.names(n)).collect();
        if named.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        for (addr, ttl) in addrs {
            let addr = canonical(*addr);
            // A TTL under MIN_TTL_SECS counts as that: a TTL-0 answer must still let through the connect that
            // follows it.
            let ttl = (*ttl).max(MIN_TTL_SECS);
            let expires = now.saturating_add(u64::from(ttl) * 1_000_000_000);
            for n in &named {
                let slot_of = self.names.entry((managed, (*n).to_owned())).or_default();
                let e = slot_of.entry(addr).or_insert(0);
                *e = (*e).max(expires);
                self.by_addr
                    .entry((managed, addr))
                    .or_default()
                    .insert((*n).to_owned());
            }
            self.sync(map, &policy, slot, managed, addr, now)?;
            written += 1;
            self.learned_total += 1;
        }
        Ok(written)
    }

    /// Forgets what has expired by `now` and removes its kernel entries from `slot`. Returns how many addresses
    /// were forgotten.
    pub(crate) fn expire(
        &mut self,
        map: &mut BpfHashMap<MapData, LearnedKey, Learned>,
        slot: u32,
        now: u64,
    ) -> usize {
        let mut touched: BTreeSet<(u64, IpAddr)> = BTreeSet::new();
        self.names.retain(|(managed, name), addrs| {
            addrs.retain(|addr, exp| {
                if *exp > now {
                    return true;
                }
                touched.insert((*managed, *addr));
                if let Some(set) = self.by_addr.get_mut(&(*managed, *addr)) {
                    set.remove(name);
                }
                false
            });
            !addrs.is_empty()
        });
        let mut forgotten = 0;
        for (managed, addr) in touched {
            if self
                .by_addr
                .get(&(managed, addr))
                .is_some_and(BTreeSet::is_empty)
            {
                self.by_addr.remove(&(managed, addr));
                forgotten += 1;
            }
            if let Some(policy) = self.policy.clone() {
                let _ = self.sync(map, &policy, slot, managed, addr, now);
            } else if !self.by_addr.contains_key(&(managed, addr)) {
                let _ = map.remove(&key(slot, managed, addr));
            }
        }
        forgotten
    }

    /// A replacement: forgets the names `next` does not name, writes every remaining address into `slot` (the one
    /// about to become active) and makes `next` the table's policy.
    pub(crate) fn write_for(
        &mut self,
        map: &mut BpfHashMap<MapData, LearnedKey, Learned>,
        next: Arc<NamePolicy>,
        slot: u32,
        now: u64,
    ) -> Result<(), DataplaneError> {
        self.names.retain(|(_, name), _| next.names(name));
        for names in self.by_addr.values_mut() {
            names.retain(|n| next.names(n));
        }
        self.by_addr.retain(|_, names| !names.is_empty());
        let keys: Vec<(u64, IpAddr)> = self.by_addr.keys().copied().collect();
        for (managed, addr) in keys {
            self.sync(map, &next, slot, managed, addr, now)?;
        }
        self.policy = Some(next);
        Ok(())
    }

    /// Removes every entry of `slot` (the slot a replacement just left).
    pub(crate) fn clear_slot(map: &mut BpfHashMap<MapData, LearnedKey, Learned>, slot: u32) {
        let stale: Vec<LearnedKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| u32::from(k.slot) == slot)
            .collect();
        for k in stale {
            let _ = map.remove(&k);
        }
    }

    /// Reads an adopted state's entries of `slot` back: names, addresses and expiries (the policy that wrote them
    /// is not known until the next replacement, which recomputes their entries).
    pub(crate) fn adopt(
        &mut self,
        map: &BpfHashMap<MapData, LearnedKey, Learned>,
        slot: u32,
        now: u64,
    ) {
        for (k, v) in map.iter().filter_map(Result::ok) {
            if u32::from(k.slot) != slot || v.expires_ns <= now {
                continue;
            }
            let Some(name) = decode_name(&v.name) else {
                continue;
            };
            let addr = if k.v4 == 1 {
                IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
            } else {
                IpAddr::from(k.addr)
            };
            self.names
                .entry((k.managed_id, name.clone()))
                .or_default()
                .insert(addr, v.expires_ns);
            self.by_addr
                .entry((k.managed_id, addr))
                .or_default()
                .insert(name);
        }
    }

    /// Addresses learned and not expired by `now`.
    pub(crate) fn count(&self, now: u64) -> u64 {
        self.by_addr
            .keys()
            .filter(|(m, a)| {
                self.by_addr[&(*m, *a)].iter().any(|n| {
                    self.names
                        .get(&(*m, n.clone()))
                        .and_then(|x| x.get(a))
                        .is_some_and(|e| *e > now)
                })
            })
            .count() as u64
    }

    /// The name that taught (managed, addr), when one has not expired: an event's `dns_name`.
    pub(crate) fn name_of(&self, managed: u64, addr: IpAddr, now: u64) -> Option<String> {
        let addr = canonical(addr);
        self.by_addr.get(&(managed, addr))?.iter().find_map(|n| {
            self.names
                .get(&(managed, n.clone()))
                .and_then(|a| a.get(&addr))
                .filter(|e| **e > now)
                .map(|_| n.clone())
        })
    }

    /// Every learned address that has not expired, by name.
    pub(crate) fn view(&self, now: u64) -> Vec<LearnedAddress> {
        let mut out = Vec::new();
        for ((managed, name), addrs) in &self.names {
            let (rule_ids, broker) = match &self.policy {
                Some(p) => {
                    let targets = p.matches(name);
                    (
                        targets
                            .iter()
                            .filter_map(|t| p.targets[*t].rule_id.clone())
                            .collect(),
                        targets.iter().any(|t| p.targets[*t].rule_id.is_none()),
                    )
                }
                None => (Vec::new(), false),
            };
            for (addr, exp) in addrs {
                if *exp <= now {
                    continue;
                }
                out.push(LearnedAddress {
                    name: name.clone(),
                    address: *addr,
                    ttl_remaining: Duration::from_nanos(exp - now),
                    rule_ids: rule_ids.clone(),
                    broker,
                    managed_cgroup_id: *managed,
                });
            }
        }
        out
    }
}

/// A steered socket's record, as the proxy needs it.
pub(crate) fn flow_of(raw: &DnsFlow) -> SteeredFlow {
    let ip = if raw.family == abi::FAMILY_INET {
        IpAddr::from([raw.addr[0], raw.addr[1], raw.addr[2], raw.addr[3]])
    } else {
        IpAddr::from(raw.addr)
    };
    SteeredFlow {
        original: SocketAddr::new(ip, raw.port),
        cgroup_id: raw.cgroup_id,
        managed_cgroup_id: raw.managed_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> PolicySnapshot {
        PolicySnapshot::from_json_value(&serde_json::json!({
            "broker": [{"fqdn": "broker.example.test", "port": 8443}],
            "dns": [{"ip": "10.0.0.53"}],
            "rules": [
                {"id": "api", "action": "allow", "fqdn": "api.example.test", "ports": [443, 8443], "protocol": "tcp"},
                {"id": "net", "action": "deny", "cidr": "10.0.0.0/8"},
                {"id": "cdn", "action": "allow", "fqdn": "*.cdn.example.test"}
            ],
            "dnsQueries": "policy"
        }))
        .expect("valid")
    }

    #[test]
    fn names_match_exactly_or_one_label_below_a_pattern() {
        let p = NamePolicy::new(&snapshot());
        assert!(p.names("api.example.test"));
        assert!(p.names("img.cdn.example.test"));
        assert!(!p.names("cdn.example.test"));
        assert!(!p.names("a.img.cdn.example.test"));
        assert!(p.names("broker.example.test"));
        assert!(!p.names("example.test"));
        assert!(p.is_fqdn_rule(0) && p.is_fqdn_rule(2) && !p.is_fqdn_rule(1));
        assert_eq!(p.dns_queries, DnsQueries::Policy);
    }

    #[test]
    fn the_pinned_form_reads_back_the_same_names() {
        let p = NamePolicy::new(&snapshot());
        assert_eq!(NamePolicy::from_blob(&p.to_blob()), Some(p));
        assert_eq!(NamePolicy::from_blob(b"{}"), None);
    }
}
