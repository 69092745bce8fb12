//! `ctl policy diff`: what applying a snapshot would change against the active one.
//!
//! Rules are matched by id (ids are unique within a snapshot); broker and DNS endpoints are sets; the order of
//! rules and endpoints does not change a verdict (the longest prefix wins, deny wins a tie), so a reordering is
//! not a difference.

use serde_json::{json, Value};

use interceptor_ebpf_core::contract::policy::{PolicySnapshot, Rule, Sampling};

/// A rule present in both snapshots with different fields.
#[derive(Debug, PartialEq, Eq)]
pub struct ChangedRule<'a> {
    pub from: &'a Rule,
    pub to: &'a Rule,
}

/// Endpoints as `ip:port` (`[ip]:port` for IPv6), in the order of the snapshot they come from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EndpointChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl EndpointChanges {
    fn of(active: Vec<String>, proposed: Vec<String>) -> Self {
        EndpointChanges {
            added: proposed
                .iter()
                .filter(|e| !active.contains(e))
                .cloned()
                .collect(),
            removed: active
                .iter()
                .filter(|e| !proposed.contains(e))
                .cloned()
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The difference from `active` to `proposed`.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyDiff<'a> {
    /// In the proposed snapshot's order.
    pub added: Vec<&'a Rule>,
    /// In the active snapshot's order.
    pub removed: Vec<&'a Rule>,
    /// In the active snapshot's order.
    pub changed: Vec<ChangedRule<'a>>,
    pub broker: EndpointChanges,
    pub dns: EndpointChanges,
    /// `(active, proposed)` when they differ.
    pub sampling: Option<(Sampling, Sampling)>,
}

/// `10.0.0.5:8081`, `[fd00::5]:8081`.
pub fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        ip => format!("{ip}:{port}"),
    }
}

/// Compares two snapshots.
pub fn diff<'a>(active: &'a PolicySnapshot, proposed: &'a PolicySnapshot) -> PolicyDiff<'a> {
    let by_id = |s: &'a PolicySnapshot| {
        s.rules
            .iter()
            .map(|r| (r.id.as_str(), r))
            .collect::<std::collections::HashMap<&str, &Rule>>()
    };
    let (old, new) = (by_id(active), by_id(proposed));
    PolicyDiff {
        added: proposed
            .rules
            .iter()
            .filter(|r| !old.contains_key(r.id.as_str()))
            .collect(),
        removed: active
            .rules
            .iter()
            .filter(|r| !new.contains_key(r.id.as_str()))
            .collect(),
        changed: active
            .rules
            .iter()
            .filter_map(|from| {
                let to = *new.get(from.id.as_str())?;
                // A rule's ports are a set: the order written does not matter.
                let ports = |r: &Rule| {
                    let mut p = r.ports.clone();
                    p.sort_unstable();
                    p.dedup();
                    p
                };
                let same = from.action == to.action
                    && from.target == to.target
                    && from.protocol == to.protocol
                    && ports(from) == ports(to);
                (!same).then_some(ChangedRule { from, to })
            })
            .collect(),
        broker: EndpointChanges::of(
            active
                .broker
                .iter()
                .map(|b| endpoint(b.ip, b.port))
                .collect(),
            proposed
                .broker
                .iter()
                .map(|b| endpoint(b.ip, b.port))
                .collect(),
        ),
        dns: EndpointChanges::of(
            active.dns.iter().map(|d| endpoint(d.ip, d.port)).collect(),
            proposed
                .dns
                .iter()
                .map(|d| endpoint(d.ip, d.port))
                .collect(),
        ),
        sampling: (active.sampling != proposed.sampling)
            .then_some((active.sampling, proposed.sampling)),
    }
}

/// `allow 10.0.0.0/8 ports 443,8443 tcp`.
pub fn rule_text(r: &Rule) -> String {
    let mut s = format!("{} {}", r.action.as_str(), r.target);
    if !r.ports.is_empty() {
        let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
        s.push_str(&format!(" ports {}", ports.join(",")));
    }
    s.push_str(&format!(
        " {}",
        r.protocol.map_or("any-protocol", |p| p.as_str())
    ));
    s
}

fn rule_json(r: &Rule) -> Value {
    let mut one = PolicySnapshot {
        rules: vec![r.clone()],
        ..PolicySnapshot::default()
    }
    .to_json_value();
    one["rules"][0].take()
}

fn sampling_json(s: &Sampling) -> Value {
    json!({"allowOneIn": s.allow_one_in, "unmanagedOneIn": s.unmanaged_one_in})
}

impl PolicyDiff<'_> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.broker.is_empty()
            && self.dns.is_empty()
            && self.sampling.is_none()
    }

    /// One line per change: `+` added, `-` removed, `~` changed.
    pub fn to_text(&self) -> String {
        if self.is_empty() {
            return "no changes: the file is the active policy".to_owned();
        }
        let mut lines = Vec::new();
        for r in &self.added {
            lines.push(format!("+ rule {}: {}", r.id, rule_text(r)));
        }
        for r in &self.removed {
            lines.push(format!("- rule {}: {}", r.id, rule_text(r)));
        }
        for c in &self.changed {
            lines.push(format!(
                "~ rule {}: {} -> {}",
                c.from.id,
                rule_text(c.from),
                rule_text(c.to)
            ));
        }
        for (what, changes) in [("broker", &self.broker), ("dns", &self.dns)] {
            lines.extend(changes.added.iter().map(|e| format!("+ {what} {e}")));
            lines.extend(changes.removed.iter().map(|e| format!("- {what} {e}")));
        }
        if let Some((from, to)) = &self.sampling {
            lines.push(format!(
                "~ sampling: allowOneIn {} -> {}, unmanagedOneIn {} -> {}",
                from.allow_one_in, to.allow_one_in, from.unmanaged_one_in, to.unmanaged_one_in
            ));
        }
        lines.push(format!(
            "{} rules added, {} removed, {} changed",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        ));
        lines.join("\n")
    }

    pub fn to_json(&self) -> Value {
        let endpoints = |c: &EndpointChanges| json!({"added": c.added, "removed": c.removed});
        json!({
            "identical": self.is_empty(),
            "rules": {
                "added": self.added.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
                "removed": self.removed.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
                "changed": self.changed.iter().map(|c| json!({
                    "id": c.from.id, "from": rule_json(c.from), "to": rule_json(c.to),
                })).collect::<Vec<_>>(),
            },
            "broker": endpoints(&self.broker),
            "dns": endpoints(&self.dns),
            "sampling": self.sampling.as_ref().map(|(from, to)| json!({
                "from": sampling_json(from), "to": sampling_json(to),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(v: Value) -> PolicySnapshot {
        PolicySnapshot::from_json_value(&v).expect("snapshot")
    }

    #[test]
    fn identical_snapshots_differ_in_nothing_whatever_the_order() {
        let a = snapshot(json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}, {"ip": "fd00::5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53"}],
            "rules": [
                {"id": "a", "action": "allow", "cidr": "10.1.0.0/16", "ports": [443, 80]},
                {"id": "b", "action": "deny", "cidr": "10.1.2.0/24"}
            ]
        }));
        let b = snapshot(json!({
            "broker": [{"ip": "fd00::5", "port": 8081}, {"ip": "10.0.0.5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53", "port": 53}],
            "rules": [
                {"id": "b", "action": "deny", "cidr": "10.1.2.0/24"},
                {"id": "a", "action": "allow", "cidr": "10.1.0.0/16", "ports": [80, 443]}
            ],
            "sampling": {"allowOneIn": 1, "unmanagedOneIn": 0}
        }));
        let d = diff(&a, &b);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_text(), "no changes: the file is the active policy");
        assert_eq!(d.to_json()["identical"], true);
    }

    #[test]
    fn rules_are_added_removed_and_changed_by_id() {
        let active = snapshot(json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53"}],
            "rules": [
                {"id": "keep", "action": "allow", "cidr": "10.1.0.0/16"},
                {"id": "gone", "action": "deny", "cidr": "10.9.0.0/16"},
                {"id": "edit", "action": "allow", "cidr": "10.2.0.0/16", "ports": [443]}
            ]
        }));
        let proposed = snapshot(json!({
            "broker": [{"ip": "fd00::5", "port": 8081}],
            "dns": [{"ip": "10.0.0.53"}],
            "rules": [
                {"id": "keep", "action": "allow", "cidr": "10.1.0.0/16"},
                {"id": "edit", "action": "allow", "cidr": "10.2.0.0/16", "ports": [443], "protocol": "tcp"},
                {"id": "new", "action": "deny", "cidr": "2001:db8::/32"}
            ],
            "sampling": {"allowOneIn": 10, "unmanagedOneIn": 0}
        }));
        let d = diff(&active, &proposed);
        assert!(!d.is_empty());
        assert_eq!(
            d.to_text(),
            "+ rule new: deny 2001:db8::/32 any-protocol\n\
             - rule gone: deny 10.9.0.0/16 any-protocol\n\
             ~ rule edit: allow 10.2.0.0/16 ports 443 any-protocol -> allow 10.2.0.0/16 ports 443 tcp\n\
             + broker [fd00::5]:8081\n\
             - broker 10.0.0.5:8081\n\
             ~ sampling: allowOneIn 1 -> 10, unmanagedOneIn 0 -> 0\n\
             1 rules added, 1 removed, 1 changed"
        );
        let j = d.to_json();
        assert_eq!(j["identical"], false);
        assert_eq!(
            j["rules"]["added"],
            json!([{"id": "new", "action": "deny", "cidr": "2001:db8::/32"}])
        );
        assert_eq!(j["rules"]["removed"][0]["id"], "gone");
        assert_eq!(j["rules"]["changed"][0]["to"]["protocol"], "tcp");
        assert_eq!(
            j["broker"],
            json!({"added": ["[fd00::5]:8081"], "removed": ["10.0.0.5:8081"]})
        );
        assert_eq!(j["dns"], json!({"added": [], "removed": []}));
        assert_eq!(j["sampling"]["to"]["allowOneIn"], 10);
        // The other way round, added and removed swap.
        let back = diff(&proposed, &active);
        assert_eq!(back.added.len(), 1);
        assert_eq!(back.added[0].id, "gone");
        assert_eq!(back.removed[0].id, "new");
    }
}
