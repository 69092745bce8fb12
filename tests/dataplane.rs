//! Root tests of the eBPF dataplane (SPEC 4): each test loads the programs onto its own parent cgroup, with its
//! own netns and pin directory (tests/support), runs probes as forked children and matches each probe's errno
//! with the event the kernel emitted for it. They print SKIPPED and pass when not root or without BPF.

mod support;

use std::time::Duration;

use interceptor_ebpf::contract::hook::{Hook, Protocol};
use interceptor_ebpf::contract::policy::{
    BrokerEndpoint, DnsEndpoint, IpNet, PolicySnapshot, Rule, RuleAction, Sampling,
};
use interceptor_ebpf::contract::reason_codes::DataplaneReasonCode as R;
use interceptor_ebpf::dataplane::{CgroupRef, Dataplane, FailMode, Mode};
use support::{probe, Probe, TestEnv};

const EPERM: i32 = libc::EPERM;
const ECONNREFUSED: i32 = libc::ECONNREFUSED;

fn rule(
    id: &str,
    action: RuleAction,
    cidr: &str,
    ports: &[u16],
    protocol: Option<Protocol>,
) -> Rule {
    let (addr, len) = cidr.split_once('/').expect("cidr");
    Rule {
        id: id.into(),
        action,
        cidr: IpNet {
            addr: addr.parse().expect("addr"),
            prefix_len: len.parse().expect("len"),
        },
        ports: ports.to_vec(),
        protocol,
    }
}

fn sa(s: &str) -> std::net::SocketAddr {
    s.parse().expect("socket addr")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn loads_attaches_and_detach_removes_every_pin() {
    if support::skip("loads_attaches_and_detach_removes_every_pin") {
        return;
    }
    let env = TestEnv::new("load");
    let dp = env.load();
    let st = dp.status().expect("status");
    assert_eq!(st.attached_hooks, Hook::ALL.to_vec());
    assert!(!st.adopted);
    assert!(st.degraded, "no policy loaded yet");
    assert_eq!(st.generation, 0);
    let pins: Vec<String> = std::fs::read_dir(&env.pins.path)
        .expect("pin dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in [
        "dp_config",
        "dp_events",
        "link_connect4",
        "link_sendmsg6",
        "prog_connect6",
    ] {
        assert!(pins.iter().any(|p| p == name), "{name} pinned: {pins:?}");
    }
    dp.close(true).expect("close");
    assert!(!env.pins.path.exists(), "detach removes the pin dir");
}
