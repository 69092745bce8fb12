//! GetDnsStatus data (SPEC 4b): what the agent's DNS proxy serves, which addresses its answers taught, and its
//! counters. The typed struct, its wire form and its strict reader.

use std::net::IpAddr;

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{counter, read_strings};
use crate::contract::cgroup::{parse_cgroup_id, read_workload_id};
use crate::contract::ip_text::parse_canonical_ip;
use crate::contract::json_reader::{self, join, object, Issues};
use crate::contract::policy::{canonical_query_name, DnsQueries};
use crate::contract::slot_id::check_slot_id;
use crate::contract::validation::{IssueCode, PathSegment};

/// GetDnsStatus data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsStatus {
    /// The proxy is running and the sock_addr programs steer managed workloads' DNS traffic to it.
    pub serving: bool,
    /// The addresses the proxy listens on (`127.0.0.1:5353`), as the agent names them.
    pub listen: Vec<String>,
    /// Why the proxy is not serving; only with `serving: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The active policy's `dnsQueries`.
    #[serde(serialize_with = "ser_dns_queries")]
    pub dns_queries: DnsQueries,
    /// Every address an answer taught and that has not expired.
    pub learned: Vec<LearnedAddress>,
    pub counters: DnsCounters,
}

/// One address an answer for a name taught, for one workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedAddress {
    /// The name the workload asked for, canonical ([`canonical_query_name`]).
    pub name: String,
    /// Canonical IP text on the wire.
    pub address: IpAddr,
    /// Until the answer's TTL runs out.
    pub ttl_remaining_ms: u64,
    /// The fqdn rules that name `name`, by id.
    pub rule_ids: Vec<String>,
    /// A broker entry names `name`: the address is a broker endpoint.
    pub broker: bool,
    /// The cgroup the workload that asked is in (decimal text on the wire).
    #[serde(serialize_with = "ser_u64_string")]
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<String>,
}

/// What the proxy did since the agent started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsCounters {
    pub queries: u64,
    /// Answered REFUSED (`DENY_DNS_QUERY`).
    pub refused: u64,
    /// Observe mode: answered, but enforce would have refused (`OBSERVE_WOULD_DENY_DNS_QUERY`).
    pub would_refuse: u64,
    /// Addresses inserted for a policy (an address learned again counts again).
    pub learned_addresses: u64,
    /// Queries the upstream resolver did not answer.
    pub upstream_failures: u64,
}

impl DnsCounters {
    pub const KEYS: [&'static str; 5] = [
        "queries",
        "refused",
        "wouldRefuse",
        "learnedAddresses",
        "upstreamFailures",
    ];
}

fn ser_dns_queries<S: Serializer>(v: &DnsQueries, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn ser_u64_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The strict reader of GetDnsStatus data.
pub(super) fn read_dns_status(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<DnsStatus> {
    let obj = object(
        v,
        path,
        &[
            "serving",
            "listen",
            "reason",
            "dnsQueries",
            "learned",
            "counters",
        ],
        issues,
    )?;
    let serving = obj.bool("serving", issues);
    let listen = obj
        .array("listen", issues)
        .and_then(|items| read_strings(items, &obj.path_of("listen"), issues));
    let reason = obj.opt_non_empty_str("reason", issues);
    let dns_queries = obj.literal::<DnsQueries>("dnsQueries", issues);
    let learned = obj.array("learned", issues).and_then(|items| {
        let lp = obj.path_of("learned");
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match read_learned(item, &join(&lp, i), issues) {
                Some(l) => out.push(l),
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let counters = object(
        obj.get("counters"),
        &obj.path_of("counters"),
        &DnsCounters::KEYS,
        issues,
    )
    .and_then(|c| {
        let [queries, refused, would_refuse, learned_addresses, upstream_failures] =
            DnsCounters::KEYS.map(|k| counter(&c, k, issues));
        Some(DnsCounters {
            queries: queries?,
            refused: refused?,
            would_refuse: would_refuse?,
            learned_addresses: learned_addresses?,
            upstream_failures: upstream_failures?,
        })
    });
    let (serving, reason) = (serving?, reason?);
    if serving && reason.is_some() {
        issues.push(
            obj.path_of("reason"),
            IssueCode::Custom,
            "reason is only present while the proxy is not serving",
        );
        return None;
    }
    Some(DnsStatus {
        serving,
        listen: listen?,
        reason: reason.map(str::to_owned),
        dns_queries: dns_queries?,
        learned: learned?,
        counters: counters?,
    })
}

fn read_learned(v: &Value, path: &[PathSegment], issues: &mut Issues) -> Option<LearnedAddress> {
    let obj = object(
        Some(v),
        path,
        &[
            "name",
            "address",
            "ttlRemainingMs",
            "ruleIds",
            "broker",
            "cgroupId",
            "workloadId",
        ],
        issues,
    )?;
    let name = obj.str("name", issues).and_then(|n| {
        if canonical_query_name(n).as_deref() == Some(n) {
            Some(n.to_owned())
        } else {
            issues.push(
                obj.path_of("name"),
                IssueCode::InvalidFormat,
                format!(
                    "expected a canonical DNS name (lower case, no trailing dot), received `{n}`"
                ),
            );
            None
        }
    });
    let address = obj
        .str("address", issues)
        .and_then(|s| match parse_canonical_ip(s) {
            Ok(ip) => Some(ip),
            Err(message) => {
                issues.push(obj.path_of("address"), IssueCode::InvalidFormat, message);
                None
            }
        });
    let ttl = counter(&obj, "ttlRemainingMs", issues);
    let rule_ids = obj.array("ruleIds", issues).and_then(|items| {
        let rp = obj.path_of("ruleIds");
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let p = join(&rp, i);
            match json_reader::string(Some(item), &p, issues) {
                Some(id) => match check_slot_id("rule id", id) {
                    Ok(()) => out.push(id.to_owned()),
                    Err((code, message)) => {
                        issues.push(p, code, message);
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let broker = obj.bool("broker", issues);
    let cgroup_id = obj
        .str("cgroupId", issues)
        .and_then(|s| parse_cgroup_id(s, &obj.path_of("cgroupId"), issues));
    let workload_id = read_workload_id(&obj, issues);
    Some(LearnedAddress {
        name: name?,
        address: address?,
        ttl_remaining_ms: ttl?,
        rule_ids: rule_ids?,
        broker: broker?,
        cgroup_id: cgroup_id?,
        workload_id: workload_id?,
    })
}
