//! The proxy's backend on the real dataplane: steered flows and learned addresses live in the eBPF maps, query
//! verdicts come from the active policy's names (`Dataplane::dns_query_verdict`), and refused queries become
//! DENY_DNS_QUERY / OBSERVE_WOULD_DENY_DNS_QUERY events on the dataplane's event stream.

use std::net::SocketAddr;
use std::sync::Arc;

use interceptor_ebpf_core::dataplane::Dataplane;

use super::{DnsBackend, LearnedAnswer, QueryVerdict, SteeredFlow};

pub struct DataplaneBackend {
    dp: Arc<Dataplane>,
}

impl DataplaneBackend {
    pub fn new(dp: Arc<Dataplane>) -> DataplaneBackend {
        DataplaneBackend { dp }
    }
}

impl DnsBackend for DataplaneBackend {
    fn flow(&self, cookie: u64) -> Option<SteeredFlow> {
        self.dp.dns_flow(cookie)
    }

    fn verdict(&self, flow: &SteeredFlow, name: &str) -> QueryVerdict {
        self.dp.dns_query_verdict(flow, name)
    }

    fn learn(&self, flow: &SteeredFlow, answer: &LearnedAnswer<'_>) -> Result<usize, String> {
        let mut names: Vec<&str> = Vec::with_capacity(1 + answer.cname_chain.len());
        names.push(answer.query_name);
        names.extend(answer.cname_chain.iter().map(String::as_str));
        self.dp
            .learn_dns(flow, &names, answer.addrs)
            .map_err(|e| e.to_string())
    }

    fn refused(
        &self,
        flow: &SteeredFlow,
        name: &str,
        verdict: QueryVerdict,
        protocol_tcp: bool,
        _client: SocketAddr,
    ) {
        self.dp.report_dns_query(flow, name, verdict, protocol_tcp);
    }
}
