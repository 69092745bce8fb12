//! The agent's transparent DNS proxy (SPEC section 4b, "Rules by name").
//!
//! The sock_addr programs steer a managed workload's DNS traffic (UDP and TCP to a `dns[]` resolver) to the
//! proxy's listening addresses and record, per client socket cookie, the resolver the workload meant. For each
//! query the proxy:
//! 1. finds the client socket's cookie ([`sock_diag`]) and asks the [`DnsBackend`] for its [`SteeredFlow`] (no flow:
//!    the query is dropped and counted: the proxy forwards only to resolvers the dataplane steered from);
//! 2. reads the question ([`message`]) and asks for a [`QueryVerdict`] (`dnsQueries: "policy"` refuses names no
//!    rule names, with rcode REFUSED and a report through [`DnsBackend::refused`]);
//! 3. forwards the query to the original resolver, reads the answer's CNAME chain and addresses, and teaches
//!    them to the dataplane ([`DnsBackend::learn`]) **before** releasing the answer; a failed learn answers
//!    SERVFAIL (fail closed: never release an answer whose addresses the dataplane would refuse).
//!
//! The proxy itself is [`proxy::DnsProxy`]. This module knows nothing of eBPF maps or policy: the backend does.
//!
//! What the rest of the agent must provide around it:
//! - the client sockets must be visible in the agent's network namespace (sock_diag looks there), and the agent's
//!   own sockets must not be steered (its forwarded queries would come back to it and be dropped as unknown);
//! - replies leave the proxy from its listening address; a client that checks the reply's source (glibc does for
//!   unconnected UDP sockets) needs the dataplane to restore the original resolver as the source (`recvmsg4/6`
//!   and `getpeername4/6` sock_addr programs);
//! - [`DnsBackend::flow`] runs on a listener's receive loop, once per query: it must be a map lookup, not more.

pub mod backend;
pub mod message;
pub mod proxy;
pub mod sock_diag;
#[cfg(test)]
mod tests;

pub use proxy::{DnsCounters, DnsProxy, DnsProxyConfig};

use std::net::{IpAddr, SocketAddr};

/// Who sent a query, as the dataplane recorded it when it steered the socket, and what to do with a query (from
/// the policy's `dnsQueries` and the flow's effective mode): the dataplane's own types.
pub use interceptor_ebpf_core::dataplane::{DnsQueryVerdict as QueryVerdict, SteeredFlow};

/// The addresses an answer teaches, for [`DnsBackend::learn`].
#[derive(Clone, Copy, Debug)]
pub struct LearnedAnswer<'a> {
    /// The question name, canonical (lower case, no trailing dot).
    pub query_name: &'a str,
    /// The CNAME chain from the question name, in order, canonical, without the question name itself: the
    /// addresses belong to the last name of the chain (or to the question name when the chain is empty).
    pub cname_chain: &'a [String],
    /// The A/AAAA addresses of the chain's names with their TTLs in seconds (never empty when `learn` is called).
    pub addrs: &'a [(IpAddr, u32)],
}

/// The proxy's view of the dataplane and the policy. The real implementation is backed by the eBPF maps; the
/// proxy calls it from its tasks, so the calls must be cheap and must not block for long.
pub trait DnsBackend: Send + Sync + 'static {
    /// The steered flow of a client socket, by its socket cookie; `None` when the dataplane steered no such socket.
    fn flow(&self, cookie: u64) -> Option<SteeredFlow>;

    /// Whether a query for `name` (canonical: lower case, no trailing dot; bytes outside `[a-z0-9-_*]` appear as
    /// `\DDD`, so such a name never equals a policy name) from this flow is answered.
    fn verdict(&self, flow: &SteeredFlow, name: &str) -> QueryVerdict;

    /// Teaches the dataplane the addresses of an answer: the backend inserts those of names the flow's policy
    /// names (the question name or any name of the chain) and ignores the rest. It must have taken effect when
    /// it returns. Returns how many addresses it inserted or refreshed; `Err` makes the proxy answer SERVFAIL.
    fn learn(&self, flow: &SteeredFlow, answer: &LearnedAnswer<'_>) -> Result<usize, String>;

    /// Reports a refused (`Refuse`) or would-be-refused (`ObserveWouldRefuse`) query; the caller turns it into a
    /// DENY_DNS_QUERY / OBSERVE_WOULD_DENY_DNS_QUERY event (`hook: "dns"`, `dns_name: name`).
    fn refused(
        &self,
        flow: &SteeredFlow,
        name: &str,
        verdict: QueryVerdict,
        protocol_tcp: bool,
        client: SocketAddr,
    );
}
