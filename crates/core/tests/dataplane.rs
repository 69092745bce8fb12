//! Root tests of the eBPF dataplane (SPEC 4): each test loads the programs onto its own parent cgroup, with its
//! own netns and pin directory (tests/support), runs probes as forked children and matches each probe's errno
//! with the event the kernel emitted for it. They print SKIPPED and pass when not root or without BPF.

mod support;

use std::time::Duration;

use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::policy::{
    BrokerEndpoint, DnsEndpoint, IpNet, PolicySnapshot, Rule, RuleAction, Sampling,
};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode as R;
use interceptor_ebpf_core::dataplane::{CgroupRef, Dataplane, FailMode, Mode};
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
    assert_eq!(st.attached_hooks, Hook::SOCK_ADDR.to_vec());
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

/// A loaded dataplane on a test parent with one managed workload cgroup `wl` (workload id "wl-1").
struct World {
    dp: Dataplane,
    wl: std::path::PathBuf,
    wl_id: u64,
    rx: interceptor_ebpf_core::dataplane::EventReceiver,
    backlog: Vec<interceptor_ebpf_core::dataplane::VerdictEvent>,
    // Dropped last: the dataplane detaches before its cgroups, netns and pins go.
    env: TestEnv,
}

impl World {
    fn new(
        tag: &str,
        rt: &tokio::runtime::Runtime,
        tune: impl FnOnce(&mut interceptor_ebpf_core::dataplane::DataplaneOptions),
    ) -> Option<World> {
        if support::skip(tag) {
            return None;
        }
        let mut env = TestEnv::new(tag);
        let (wl, wl_id) = env.cgroup.child("wl");
        let mut opts = env.options();
        tune(&mut opts);
        let dp = Dataplane::load(opts).unwrap_or_else(|e| panic!("load: {e}"));
        let managed = dp
            .upsert_managed_cgroup(&CgroupRef::Path(wl.clone()), None, Some("wl-1"))
            .expect("upsert managed");
        assert_eq!(managed.cgroup_id, wl_id);
        let rx = {
            let _g = rt.enter();
            dp.subscribe().expect("subscribe")
        };
        Some(World {
            dp,
            wl,
            wl_id,
            rx,
            backlog: Vec::new(),
            env,
        })
    }

    fn child(&mut self, rel: &str) -> (std::path::PathBuf, u64) {
        self.env.cgroup.child(rel)
    }

    /// Runs a probe from `cg` and checks its errno and the reason of the event emitted for it; returns the event.
    fn expect(
        &mut self,
        rt: &tokio::runtime::Runtime,
        cg: &std::path::Path,
        kind: Probe,
        dst: &str,
        reason: R,
    ) -> interceptor_ebpf_core::dataplane::VerdictEvent {
        let r = probe(cg, &self.env.netns, kind, sa(dst));
        let allowed_errno = if kind == Probe::TcpConnect {
            ECONNREFUSED
        } else {
            0
        };
        let want_errno =
            if reason.verdict() == interceptor_ebpf_core::contract::reason_codes::Verdict::Deny {
                EPERM
            } else {
                allowed_errno
            };
        assert_eq!(
            r.errno, want_errno,
            "{kind:?} {dst}: errno (want {reason:?})"
        );
        let ev = rt
            .block_on(support::event_for(&mut self.rx, &mut self.backlog, r.pid))
            .unwrap_or_else(|| panic!("{kind:?} {dst}: no event (want {reason:?})"));
        assert_eq!(ev.reason, reason, "{kind:?} {dst}: {ev:?}");
        // udpv6_sendmsg hands an IPv4-mapped destination to udp_sendmsg, so the kernel runs sendmsg4 with the
        // IPv4 address for it; connect() of a mapped address stays on connect6 with the address as written.
        let mapped = match sa(dst).ip() {
            std::net::IpAddr::V6(a) => a.to_ipv4_mapped(),
            std::net::IpAddr::V4(_) => None,
        };
        let (v6, want_ip) = match (kind, mapped) {
            (Probe::UdpSendto, Some(v4)) => (false, std::net::IpAddr::V4(v4)),
            _ => (sa(dst).is_ipv6(), sa(dst).ip()),
        };
        assert_eq!(ev.dst_ip, Some(want_ip));
        assert_eq!(ev.dst_port, Some(sa(dst).port()));
        let proto = if kind == Probe::TcpConnect {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        assert_eq!(ev.protocol, proto);
        let hook = match (kind, v6) {
            (Probe::UdpSendto, false) => Hook::Sendmsg4,
            (Probe::UdpSendto, true) => Hook::Sendmsg6,
            (_, false) => Hook::Connect4,
            (_, true) => Hook::Connect6,
        };
        assert_eq!(ev.hook, hook);
        ev
    }

    fn expect_no_event(
        &mut self,
        rt: &tokio::runtime::Runtime,
        cg: &std::path::Path,
        kind: Probe,
        dst: &str,
        errno: i32,
    ) {
        let r = probe(cg, &self.env.netns, kind, sa(dst));
        assert_eq!(r.errno, errno, "{kind:?} {dst}");
        rt.block_on(support::no_event_for(
            &mut self.rx,
            &mut self.backlog,
            r.pid,
            Duration::from_millis(300),
        ));
    }
}

fn snapshot(rules: Vec<Rule>) -> PolicySnapshot {
    PolicySnapshot {
        broker: vec![BrokerEndpoint {
            ip: "10.0.0.5".parse().expect("ip"),
            port: 8081,
        }],
        dns: vec![DnsEndpoint {
            ip: "10.0.0.53".parse().expect("ip"),
            port: 53,
        }],
        rules,
        sampling: Sampling::default(),
    }
}

fn base_rules() -> Vec<Rule> {
    vec![
        rule("deny-10", RuleAction::Deny, "10.0.0.0/8", &[], None),
        rule("allow-10-1", RuleAction::Allow, "10.1.0.0/16", &[], None),
        rule(
            "allow-10-2-https",
            RuleAction::Allow,
            "10.2.0.0/16",
            &[443, 8443],
            Some(Protocol::Tcp),
        ),
        rule(
            "allow-10-3-udp",
            RuleAction::Allow,
            "10.3.0.0/16",
            &[],
            Some(Protocol::Udp),
        ),
        rule("tie-allow", RuleAction::Allow, "10.4.0.0/16", &[80], None),
        rule("tie-deny", RuleAction::Deny, "10.4.0.0/16", &[80, 81], None),
        rule("allow-host", RuleAction::Allow, "192.0.2.10/32", &[], None),
        rule("allow-v6", RuleAction::Allow, "2001:db8::/32", &[], None),
        rule("deny-v6-1", RuleAction::Deny, "2001:db8:1::/48", &[], None),
    ]
}

#[test]
fn unmanaged_cgroups_are_allowed_without_events_unless_sampled() {
    let rt = rt();
    let Some(mut w) = World::new("unmanaged", &rt, |_| {}) else {
        return;
    };
    let (other, _) = w.child("other");
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    // 10.9.9.9 is denied by default for the workload, but `other` is not managed.
    w.expect_no_event(&rt, &other, Probe::TcpConnect, "10.9.9.9:80", ECONNREFUSED);
    w.expect(
        &rt,
        &w.wl.clone(),
        Probe::TcpConnect,
        "10.9.9.9:80",
        R::DenyExplicit,
    );
    let mut s = snapshot(base_rules());
    s.sampling.unmanaged_one_in = 1;
    w.dp.replace_policy(&s).expect("policy");
    let ev = w.expect(
        &rt,
        &other,
        Probe::TcpConnect,
        "10.9.9.9:80",
        R::UnmanagedAllow,
    );
    assert_eq!(ev.workload_id, None);
    assert_eq!(ev.rule_id, None);
}

#[test]
fn broker_and_dns_are_allowed_in_every_mode() {
    let rt = rt();
    let Some(mut w) = World::new("endpoints", &rt, |o| {
        o.heartbeat_grace = Duration::from_millis(400)
    }) else {
        return;
    };
    let wl = w.wl.clone();
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.0.0.5:8081", R::AllowBroker);
    assert_eq!(ev.workload_id.as_deref(), Some("wl-1"));
    assert_eq!(ev.cgroup_id, w.wl_id);
    // The broker is TCP only; the same ip:port over UDP falls through to the rules (10/8 deny).
    w.expect(&rt, &wl, Probe::UdpSendto, "10.0.0.5:8081", R::DenyExplicit);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.0.0.5:8082",
        R::DenyExplicit,
    );
    w.expect(&rt, &wl, Probe::UdpSendto, "10.0.0.53:53", R::AllowDns);
    w.expect(&rt, &wl, Probe::UdpConnect, "10.0.0.53:53", R::AllowDns);
    w.expect(&rt, &wl, Probe::TcpConnect, "10.0.0.53:53", R::AllowDns);
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "10.0.0.53:5353",
        R::DenyExplicit,
    );
    // Observe mode and degraded enforce mode keep them allowed.
    w.dp.set_cgroup_mode(&CgroupRef::Path(wl.clone()), Mode::Observe)
        .expect("mode");
    w.expect(&rt, &wl, Probe::TcpConnect, "10.0.0.5:8081", R::AllowBroker);
    w.expect(&rt, &wl, Probe::UdpSendto, "10.0.0.53:53", R::AllowDns);
    w.dp.set_cgroup_mode(&CgroupRef::Path(wl.clone()), Mode::Enforce)
        .expect("mode");
    w.dp.pause_heartbeat_timer();
    w.dp.set_fail_mode(FailMode::Closed).expect("fail mode");
    std::thread::sleep(Duration::from_millis(700));
    w.expect(&rt, &wl, Probe::TcpConnect, "10.0.0.5:8081", R::AllowBroker);
    w.expect(&rt, &wl, Probe::UdpSendto, "10.0.0.53:53", R::AllowDns);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.1.0.1:80",
        R::DenyDegradedFailClosed,
    );
}

#[test]
fn degraded_fails_closed_or_open_after_the_heartbeat_stops() {
    let rt = rt();
    let Some(mut w) = World::new("degraded", &rt, |o| {
        o.heartbeat_grace = Duration::from_millis(400)
    }) else {
        return;
    };
    let wl = w.wl.clone();
    // No policy loaded yet: degraded even with a fresh heartbeat.
    assert!(w.dp.status().expect("status").degraded);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.1.0.1:80",
        R::DenyDegradedFailClosed,
    );
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    assert!(!w.dp.status().expect("status").degraded);
    w.expect(&rt, &wl, Probe::TcpConnect, "10.1.0.1:80", R::AllowExplicit);
    w.dp.pause_heartbeat_timer();
    std::thread::sleep(Duration::from_millis(800));
    assert!(w.dp.status().expect("status").degraded);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.1.0.1:80",
        R::DenyDegradedFailClosed,
    );
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "10.1.0.1:80",
        R::DenyDegradedFailClosed,
    );
    w.dp.set_fail_mode(FailMode::Open).expect("fail mode");
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::AllowDegradedFailOpen,
    );
    // Observe mode is never degraded: it keeps reporting what the rules would do.
    w.dp.set_global_mode(Mode::Observe).expect("mode");
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::ObserveWouldDenyExplicit,
    );
    w.dp.set_global_mode(Mode::Enforce).expect("mode");
    // A beat ends the degraded state.
    w.dp.heartbeat().expect("beat");
    assert!(!w.dp.status().expect("status").degraded);
    w.expect(&rt, &wl, Probe::TcpConnect, "10.9.0.1:80", R::DenyExplicit);
}

#[test]
fn rules_longest_prefix_deny_wins_ties_ports_and_protocols() {
    let rt = rt();
    let Some(mut w) = World::new("rules", &rt, |_| {}) else {
        return;
    };
    let wl = w.wl.clone();
    let summary =
        w.dp.replace_policy(&snapshot(base_rules()))
            .expect("policy");
    assert_eq!(
        (summary.ipv4_rules, summary.ipv6_rules, summary.generation),
        (7, 2, 1)
    );
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.9.0.1:80", R::DenyExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    assert_eq!(ev.policy_generation, 1);
    // Longest prefix: /16 allow inside /8 deny.
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.1.2.3:80", R::AllowExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("allow-10-1"));
    assert_eq!(ev.workload_id.as_deref(), Some("wl-1"));
    // Ports: 443 and 8443 match the /16; port 80 falls back to the shorter /8 deny.
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.2.0.1:8443",
        R::AllowExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("allow-10-2-https"));
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.2.0.1:80", R::DenyExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    // Protocol: the tcp-only rule does not match UDP.
    w.expect(&rt, &wl, Probe::UdpSendto, "10.2.0.1:443", R::DenyExplicit);
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "10.3.0.1:9999",
        R::AllowExplicit,
    );
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.3.0.1:9999",
        R::DenyExplicit,
    );
    // Tie on the same prefix and port: deny wins; port 82 matches neither, so the /8 decides.
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.4.0.1:80", R::DenyExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("tie-deny"));
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "10.4.0.1:82", R::DenyExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    // A /32 allow and the default deny.
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "192.0.2.10:22",
        R::AllowExplicit,
    );
    let ev = w.expect(&rt, &wl, Probe::TcpConnect, "192.0.2.11:22", R::DenyDefault);
    assert_eq!(ev.rule_id, None);
    let ev = w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "198.51.100.1:53",
        R::DenyDefault,
    );
    assert_eq!(ev.rule_id, None);
}

#[test]
fn ipv6_and_ipv4_mapped_destinations() {
    let rt = rt();
    let Some(mut w) = World::new("ipv6", &rt, |_| {}) else {
        return;
    };
    let wl = w.wl.clone();
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[2001:db8:2::1]:443",
        R::AllowExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("allow-v6"));
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[2001:db8:1::1]:443",
        R::DenyExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("deny-v6-1"));
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "[2001:db8:1::1]:53",
        R::DenyExplicit,
    );
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "[2001:db8:3::1]:53",
        R::AllowExplicit,
    );
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[2001:db9::1]:443",
        R::DenyDefault,
    );
    // IPv4-mapped IPv6 on connect6/sendmsg6 is judged by the IPv4 rules and endpoints; the event keeps the
    // address as written.
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[::ffff:10.1.2.3]:80",
        R::AllowExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("allow-10-1"));
    assert_eq!(
        ev.dst_ip,
        Some("::ffff:10.1.2.3".parse::<std::net::IpAddr>().expect("ip"))
    );
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[::ffff:10.9.0.1]:80",
        R::DenyExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    w.expect(
        &rt,
        &wl,
        Probe::UdpConnect,
        "[::ffff:10.0.0.53]:53",
        R::AllowDns,
    );
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "[::ffff:10.0.0.53]:53",
        R::AllowDns,
    );
    w.expect(
        &rt,
        &wl,
        Probe::UdpConnect,
        "[::ffff:10.9.0.1]:53",
        R::DenyExplicit,
    );
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "[::ffff:10.0.0.5]:8081",
        R::AllowBroker,
    );
}

#[test]
fn observe_mode_reports_all_three_observe_codes() {
    let rt = rt();
    let Some(mut w) = World::new("observe", &rt, |_| {}) else {
        return;
    };
    let wl = w.wl.clone();
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    // Per-cgroup override.
    w.dp.set_cgroup_mode(&CgroupRef::Path(wl.clone()), Mode::Observe)
        .expect("mode");
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.1.0.1:80",
        R::ObserveWouldAllow,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("allow-10-1"));
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::ObserveWouldDenyExplicit,
    );
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    w.expect(
        &rt,
        &wl,
        Probe::UdpSendto,
        "198.51.100.7:9",
        R::ObserveWouldDenyDefault,
    );
    // Global observe with an inheriting entry.
    w.dp.upsert_managed_cgroup(&CgroupRef::Id(w.wl_id), None, Some("wl-1"))
        .expect("upsert");
    w.expect(&rt, &wl, Probe::TcpConnect, "10.9.0.1:80", R::DenyExplicit);
    w.dp.set_global_mode(Mode::Observe).expect("mode");
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::ObserveWouldDenyExplicit,
    );
    // An explicit enforce entry overrides the global observe mode.
    w.dp.set_cgroup_mode(&CgroupRef::Id(w.wl_id), Mode::Enforce)
        .expect("mode");
    w.expect(&rt, &wl, Probe::TcpConnect, "10.9.0.1:80", R::DenyExplicit);
    let st = w.dp.status().expect("status");
    assert_eq!(st.global_mode, Mode::Observe);
    assert_eq!(st.managed_cgroups.len(), 1);
    assert_eq!(st.managed_cgroups[0].mode, Some(Mode::Enforce));
    assert_eq!(st.managed_cgroups[0].path.as_deref(), Some(wl.as_path()));
    assert!(matches!(
        w.dp.set_cgroup_mode(&CgroupRef::Id(1), Mode::Observe),
        Err(interceptor_ebpf_core::dataplane::DataplaneError::NotManaged { .. })
    ));
}

#[test]
fn child_cgroups_inherit_the_nearest_managed_ancestor() {
    let rt = rt();
    let Some(mut w) = World::new("nested", &rt, |_| {}) else {
        return;
    };
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    let (deep, deep_id) = w.child("wl/a/b");
    let ev = w.expect(
        &rt,
        &deep,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::DenyExplicit,
    );
    assert_eq!(ev.cgroup_id, deep_id, "the caller's own cgroup");
    assert_eq!(ev.workload_id.as_deref(), Some("wl-1"));
    assert_eq!(ev.managed_cgroup_id, w.wl_id);
    // A nearer managed ancestor (observe, another workload) wins over wl.
    let (a, a_id) = w.child("wl/a");
    w.dp.upsert_managed_cgroup(
        &CgroupRef::Path(a.clone()),
        Some(Mode::Observe),
        Some("wl-a"),
    )
    .expect("upsert");
    let ev = w.expect(
        &rt,
        &deep,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::ObserveWouldDenyExplicit,
    );
    assert_eq!(ev.workload_id.as_deref(), Some("wl-a"));
    assert_eq!(ev.managed_cgroup_id, a_id);
    assert!(w
        .dp
        .delete_managed_cgroup(&CgroupRef::Path(a))
        .expect("delete"));
    assert!(!w
        .dp
        .delete_managed_cgroup(&CgroupRef::Id(a_id))
        .expect("delete again"));
    w.expect(
        &rt,
        &deep,
        Probe::TcpConnect,
        "10.9.0.1:80",
        R::DenyExplicit,
    );
}

#[test]
fn allow_sampling_never_hides_denies() {
    let rt = rt();
    let Some(mut w) = World::new("sampling", &rt, |_| {}) else {
        return;
    };
    let wl = w.wl.clone();
    let mut s = snapshot(base_rules());
    s.sampling.allow_one_in = 0;
    w.dp.replace_policy(&s).expect("policy");
    w.expect_no_event(&rt, &wl, Probe::TcpConnect, "10.1.0.1:80", ECONNREFUSED);
    w.expect_no_event(&rt, &wl, Probe::TcpConnect, "10.0.0.5:8081", ECONNREFUSED);
    w.expect(&rt, &wl, Probe::TcpConnect, "10.9.0.1:80", R::DenyExplicit);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        "203.0.113.1:80",
        R::DenyDefault,
    );
    let st = w.dp.status().expect("status");
    assert_eq!(st.events_emitted, 2, "{st:?}");
    assert_eq!(st.dropped_in_kernel, 0);
    assert_eq!(st.dropped_in_queue, 0);
}

#[test]
fn replacement_is_atomic_while_another_process_connects_in_a_loop() {
    // A worker thread drains the ring buffer while the connect loop runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(mut w) = World::new("atomic", &rt, |o| o.ring_buffer_bytes = 4 << 20) else {
        return;
    };
    let wl = w.wl.clone();
    // Two policies giving different verdicts for 10.9.0.1:80, each with a different rule count and ids, so an
    // event mixing them (reason of one, rule id or generation of the other) is detectable.
    let a = snapshot(vec![
        rule("a-deny-8", RuleAction::Deny, "10.0.0.0/8", &[], None),
        rule(
            "a-allow",
            RuleAction::Allow,
            "10.9.0.0/16",
            &[80],
            Some(Protocol::Tcp),
        ),
    ]);
    let b = snapshot(vec![
        rule("b-allow-8", RuleAction::Allow, "10.0.0.0/8", &[], None),
        rule("b-filler", RuleAction::Allow, "10.9.1.0/24", &[], None),
        rule("b-deny", RuleAction::Deny, "10.9.0.0/16", &[80, 81], None),
    ]);
    const CONNECTS: usize = 30_000;
    let first = w.dp.replace_policy(&a).expect("policy a").generation;
    let dp = &w.dp;
    let netns = &w.env.netns;
    let (pid, errnos, generations) = std::thread::scope(|s| {
        let looper = s.spawn(|| support::probe_loop(&wl, netns, sa("10.9.0.1:80"), CONNECTS));
        let mut generations = vec![(first, true)];
        let mut use_b = true;
        while !looper.is_finished() {
            let g = dp
                .replace_policy(if use_b { &b } else { &a })
                .expect("replace")
                .generation;
            generations.push((g, !use_b));
            use_b = !use_b;
        }
        let (pid, errnos) = looper.join().expect("looper");
        (pid, errnos, generations)
    });
    assert!(
        generations.len() >= 3,
        "the loop must overlap several replacements: {generations:?}"
    );
    let events = rt.block_on(support::events_for(
        &mut w.rx,
        pid,
        errnos.len(),
        Duration::from_secs(5),
    ));
    assert_eq!(events.len(), errnos.len(), "one event per connect");
    let mut seen_a = 0;
    let mut seen_b = 0;
    for (i, (ev, errno)) in events.iter().zip(&errnos).enumerate() {
        let is_a = generations
            .iter()
            .find(|(g, _)| *g == ev.policy_generation)
            .unwrap_or_else(|| panic!("event {i} has unknown generation: {ev:?}"))
            .1;
        if is_a {
            seen_a += 1;
            assert_eq!(
                (ev.reason, ev.rule_id.as_deref(), *errno),
                (R::AllowExplicit, Some("a-allow"), ECONNREFUSED)
            );
        } else {
            seen_b += 1;
            assert_eq!(
                (ev.reason, ev.rule_id.as_deref(), *errno),
                (R::DenyExplicit, Some("b-deny"), EPERM)
            );
        }
    }
    assert!(
        seen_a > 0 && seen_b > 0,
        "both generations judged connects: a={seen_a} b={seen_b}"
    );
    let st = w.dp.status().expect("status");
    assert_eq!(
        (st.dropped_in_kernel, st.dropped_in_queue),
        (0, 0),
        "every event was delivered"
    );
    eprintln!(
        "{CONNECTS} connects across {} generations: a={seen_a} b={seen_b}",
        generations.len()
    );
}

#[test]
fn enforcement_survives_the_loader_and_a_new_loader_adopts_it() {
    let rt = rt();
    if support::skip("adoption") {
        return;
    }
    let mut env = TestEnv::new("adopt");
    let (wl, wl_id) = env.cgroup.child("wl");
    let summary;
    {
        let dp = env.load();
        dp.upsert_managed_cgroup(
            &CgroupRef::Path(wl.clone()),
            Some(Mode::Enforce),
            Some("wl-adopt"),
        )
        .expect("upsert");
        summary = dp.replace_policy(&snapshot(base_rules())).expect("policy");
        // Dropped without close(): close(false), everything stays pinned.
    }
    // No loader runs: the pinned links keep enforcing (the heartbeat grace is 5 s).
    assert_eq!(
        probe(&wl, &env.netns, Probe::TcpConnect, sa("10.9.0.1:80")).errno,
        EPERM
    );
    assert_eq!(
        probe(&wl, &env.netns, Probe::TcpConnect, sa("10.1.0.1:80")).errno,
        ECONNREFUSED
    );

    let dp = env.load();
    let st = dp.status().expect("status");
    assert!(st.adopted);
    assert_eq!(st.attached_hooks, Hook::SOCK_ADDR.to_vec());
    assert_eq!(st.generation, summary.generation);
    assert_eq!(
        (st.ipv4_rules, st.ipv6_rules),
        (summary.ipv4_rules, summary.ipv6_rules)
    );
    assert_eq!(st.managed_cgroups.len(), 1);
    assert_eq!(st.managed_cgroups[0].cgroup_id, wl_id);
    assert_eq!(
        st.managed_cgroups[0].workload_id.as_deref(),
        Some("wl-adopt")
    );
    assert_eq!(st.managed_cgroups[0].path.as_deref(), Some(wl.as_path()));
    // Events of the adopted generation resolve rule and workload ids from the pinned maps.
    let mut rx = {
        let _g = rt.enter();
        dp.subscribe().expect("subscribe")
    };
    assert!(matches!(
        {
            let _g = rt.enter();
            dp.subscribe()
        },
        Err(interceptor_ebpf_core::dataplane::DataplaneError::AlreadySubscribed)
    ));
    let r = probe(&wl, &env.netns, Probe::TcpConnect, sa("10.9.0.1:80"));
    assert_eq!(r.errno, EPERM);
    let mut backlog = Vec::new();
    let ev = rt
        .block_on(support::event_for(&mut rx, &mut backlog, r.pid))
        .expect("event");
    assert_eq!(ev.reason, R::DenyExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("deny-10"));
    assert_eq!(ev.workload_id.as_deref(), Some("wl-adopt"));
    assert_eq!(ev.policy_generation, summary.generation);
    // The adopting loader replaces on top of the adopted generation.
    let next = dp.replace_policy(&snapshot(vec![])).expect("replace");
    assert_eq!(next.generation, summary.generation + 1);
    assert_eq!(
        probe(&wl, &env.netns, Probe::TcpConnect, sa("10.1.0.1:80")).errno,
        EPERM
    );

    dp.close(true).expect("detach");
    assert!(!env.pins.path.exists(), "detach removes every pin");
    assert!(matches!(
        dp.status(),
        Err(interceptor_ebpf_core::dataplane::DataplaneError::Closed)
    ));
    // Detached: nothing judges the workload any more.
    assert_eq!(
        probe(&wl, &env.netns, Probe::TcpConnect, sa("10.9.0.1:80")).errno,
        ECONNREFUSED
    );
}

#[test]
fn holds_131072_ipv4_rules_and_rejects_more() {
    let rt = rt();
    let Some(mut w) = World::new("capacity", &rt, |_| {}) else {
        return;
    };
    let wl = w.wl.clone();
    let limit = interceptor_ebpf_core::dataplane::MAX_RULE_ENTRIES_PER_FAMILY;
    // limit /32 rules in 10.128.0.0/9 (allow) plus nothing else: every other address is default-denied.
    let mut rules: Vec<Rule> = (0..limit as u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a80_0000u32 + i);
            rule(
                &format!("r{i}"),
                RuleAction::Allow,
                &format!("{ip}/32"),
                &[],
                None,
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let s =
        w.dp.replace_policy(&snapshot(rules.clone()))
            .expect("131072 rules fit");
    eprintln!(
        "replace_policy with {limit} IPv4 /32 rules took {:?}",
        started.elapsed()
    );
    assert_eq!(s.ipv4_rules as usize, limit);
    let last = std::net::Ipv4Addr::from(0x0a80_0000u32 + limit as u32 - 1);
    let ev = w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        &format!("{last}:80"),
        R::AllowExplicit,
    );
    assert_eq!(ev.rule_id, Some(format!("r{}", limit - 1)));
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        &format!(
            "{}:80",
            std::net::Ipv4Addr::from(0x0a80_0000u32 + limit as u32)
        ),
        R::DenyDefault,
    );
    rules.push(rule(
        "one-too-many",
        RuleAction::Allow,
        "10.0.0.1/32",
        &[],
        None,
    ));
    let err =
        w.dp.replace_policy(&snapshot(rules))
            .expect_err("one more does not fit");
    assert!(
        matches!(
            err,
            interceptor_ebpf_core::dataplane::DataplaneError::PolicyTooLarge { .. }
        ),
        "{err}"
    );
    // The failed replacement left the active generation in force.
    assert_eq!(w.dp.status().expect("status").generation, s.generation);
    w.expect(
        &rt,
        &wl,
        Probe::TcpConnect,
        &format!("{last}:80"),
        R::AllowExplicit,
    );
}

#[test]
fn ring_buffer_and_queue_overflow_are_counted_not_buffered() {
    // Ring buffer of one page (~40 records) that nobody drains while 500 denied connects run.
    let rt = rt();
    let Some(mut w) = World::new("overflow", &rt, |o| {
        o.ring_buffer_bytes = 4096;
        o.event_queue_capacity = 16;
    }) else {
        return;
    };
    let wl = w.wl.clone();
    w.dp.replace_policy(&snapshot(base_rules()))
        .expect("policy");
    let (_pid, errnos) = support::probe_loop(&wl, &w.env.netns, sa("10.9.0.1:80"), 500);
    assert!(errnos.iter().all(|e| *e == EPERM));
    let st = w.dp.status().expect("status");
    assert!(st.dropped_in_kernel > 0, "{st:?}");
    assert_eq!(
        st.events_emitted + st.dropped_in_kernel,
        500,
        "every verdict is either emitted or counted"
    );
    // Draining: the queue takes at most 16 of the emitted records and counts the rest.
    let got = rt.block_on(async {
        let mut got = 0usize;
        while let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_millis(300), w.rx.recv_batch(1000)).await
        {
            got += batch.len();
        }
        got
    });
    let st = w.dp.status().expect("status");
    assert_eq!(
        got as u64 + st.dropped_in_queue,
        st.events_emitted,
        "{st:?}"
    );
    assert!(
        got <= 16 && st.dropped_in_queue > 0,
        "queue bounded: got {got}, {st:?}"
    );
}
