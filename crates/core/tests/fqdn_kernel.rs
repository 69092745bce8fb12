//! Root tests of the kernel half of rules by name (SPEC 4b, bpf/dns_steering.h): addresses learned for a
//! workload are judged as host prefixes until their TTL, follow a policy replacement while their name is still
//! named, and a workload's DNS traffic is steered to the proxy address with its own resolver shown on the return
//! path. The proxy itself is tested in crates/agent (tests/dns.rs). Each test has its own cgroup, netns and pins.

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode as R;
use interceptor_ebpf_core::dataplane::{CgroupRef, Dataplane, SteeredFlow};
use support::{probe, Probe, TestEnv};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn policy(v: serde_json::Value) -> PolicySnapshot {
    PolicySnapshot::from_json_value(&v).unwrap_or_else(|e| panic!("policy: {e}"))
}

fn named_policy(rules: serde_json::Value) -> PolicySnapshot {
    policy(serde_json::json!({
        "broker": [{"ip": "10.0.0.5", "port": 8081}, {"fqdn": "broker.example.test", "port": 8443}],
        "dns": [{"ip": "10.0.0.53"}, {"ip": "2001:db8::53"}],
        "rules": rules,
    }))
}

struct World {
    env: TestEnv,
    dp: Dataplane,
    wl: std::path::PathBuf,
    wl_id: u64,
    rx: interceptor_ebpf_core::dataplane::EventReceiver,
    backlog: Vec<interceptor_ebpf_core::dataplane::VerdictEvent>,
}

impl World {
    fn new(tag: &str, rt: &tokio::runtime::Runtime, proxy_port: u16) -> Option<World> {
        if support::skip(tag) {
            return None;
        }
        let mut env = TestEnv::new(tag);
        let (wl, wl_id) = env.cgroup.child("wl");
        let dp = env.load();
        dp.set_dns_proxy(proxy_port).expect("proxy");
        dp.upsert_managed_cgroup(&CgroupRef::Path(wl.clone()), None, Some("wl-1"))
            .expect("managed");
        let rx = {
            let _g = rt.enter();
            dp.subscribe().expect("subscribe")
        };
        Some(World {
            env,
            dp,
            wl,
            wl_id,
            rx,
            backlog: Vec::new(),
        })
    }

    fn flow(&self) -> SteeredFlow {
        SteeredFlow {
            original: "10.0.0.53:53".parse().expect("addr"),
            cgroup_id: self.wl_id,
            managed_cgroup_id: self.wl_id,
        }
    }

    /// A TCP connect from the workload: its errno and its event's reason.
    fn connect(
        &mut self,
        rt: &tokio::runtime::Runtime,
        dst: &str,
    ) -> interceptor_ebpf_core::dataplane::VerdictEvent {
        let r = probe(
            &self.wl,
            &self.env.netns,
            Probe::TcpConnect,
            dst.parse().expect("dst"),
        );
        let ev = rt
            .block_on(support::event_for(&mut self.rx, &mut self.backlog, r.pid))
            .unwrap_or_else(|| panic!("{dst}: no event"));
        let want = if ev.reason.verdict()
            == interceptor_ebpf_core::contract::reason_codes::Verdict::Deny
        {
            libc::EPERM
        } else {
            libc::ECONNREFUSED
        };
        assert_eq!(r.errno, want, "{dst}: errno for {:?}", ev.reason);
        ev
    }
}

#[test]
fn learned_addresses_allow_until_their_ttl_and_follow_a_replacement() {
    let rt = rt();
    let Some(mut w) = World::new("fqdn-learn", &rt, 15353) else {
        return;
    };
    w.dp.replace_policy(&named_policy(serde_json::json!([
        {"id": "api", "action": "allow", "fqdn": "api.example.test", "ports": [443], "protocol": "tcp"},
        {"id": "cdn", "action": "allow", "fqdn": "*.cdn.example.test"},
        {"id": "bad", "action": "deny", "fqdn": "bad.cdn.example.test"},
        {"id": "deny-host", "action": "deny", "cidr": "198.51.100.9/32"}
    ])))
    .expect("policy");
    let flow = w.flow();

    // No answer, no address.
    assert_eq!(w.connect(&rt, "203.0.113.7:443").reason, R::DenyDefault);
    let n =
        w.dp.learn_dns(
            &flow,
            &["api.example.test"],
            &[(IpAddr::from([203, 0, 113, 7]), 2)],
        )
        .expect("learn");
    assert_eq!(n, 1);
    let ev = w.connect(&rt, "203.0.113.7:443");
    assert_eq!(ev.reason, R::AllowExplicit);
    assert_eq!(ev.rule_id.as_deref(), Some("api"));
    assert_eq!(ev.dns_name.as_deref(), Some("api.example.test"));
    // The rule's port and protocol still apply to the learned address.
    assert_eq!(w.connect(&rt, "203.0.113.7:80").reason, R::DenyDefault);
    assert_eq!(w.dp.status().expect("status").learned_addresses, 1);

    // An unlisted name teaches nothing.
    let n =
        w.dp.learn_dns(
            &flow,
            &["other.example.test"],
            &[(IpAddr::from([203, 0, 113, 8]), 60)],
        )
        .expect("learn");
    assert_eq!(n, 0);
    assert_eq!(w.connect(&rt, "203.0.113.8:443").reason, R::DenyDefault);

    // The one-label pattern, and a deny name for the same address wins the tie.
    w.dp.learn_dns(
        &flow,
        &["img.cdn.example.test"],
        &[(IpAddr::from([203, 0, 113, 20]), 60)],
    )
    .expect("learn");
    let ev = w.connect(&rt, "203.0.113.20:8080");
    assert_eq!(
        (ev.reason, ev.rule_id.as_deref()),
        (R::AllowExplicit, Some("cdn"))
    );
    w.dp.learn_dns(
        &flow,
        &["bad.cdn.example.test"],
        &[(IpAddr::from([203, 0, 113, 20]), 60)],
    )
    .expect("learn");
    let ev = w.connect(&rt, "203.0.113.20:8080");
    assert_eq!(
        (ev.reason, ev.rule_id.as_deref()),
        (R::DenyExplicit, Some("bad"))
    );
    // A CIDR host rule's deny beats a learned allow on the same address.
    w.dp.learn_dns(
        &flow,
        &["x.cdn.example.test"],
        &[(IpAddr::from([198, 51, 100, 9]), 60)],
    )
    .expect("learn");
    assert_eq!(w.connect(&rt, "198.51.100.9:443").reason, R::DenyExplicit);
    // A broker name's address is a broker endpoint (TCP, its port).
    w.dp.learn_dns(
        &flow,
        &["broker.example.test"],
        &[(IpAddr::from([203, 0, 113, 30]), 60)],
    )
    .expect("learn");
    let ev = w.connect(&rt, "203.0.113.30:8443");
    assert_eq!(ev.reason, R::AllowBroker);
    assert_eq!(ev.dns_name.as_deref(), Some("broker.example.test"));
    // Another workload did not resolve anything.
    let (other, other_id) = w.env.cgroup.child("other");
    w.dp.upsert_managed_cgroup(&CgroupRef::Path(other.clone()), None, None)
        .expect("managed");
    let r = probe(
        &other,
        &w.env.netns,
        Probe::TcpConnect,
        "203.0.113.20:8080".parse().expect("dst"),
    );
    assert_eq!(
        r.errno,
        libc::EPERM,
        "workload {other_id} never resolved it"
    );

    // A replacement keeps the addresses of names it still names and drops the others.
    w.dp.replace_policy(&named_policy(serde_json::json!([
        {"id": "cdn2", "action": "allow", "fqdn": "*.cdn.example.test", "ports": [8080]}
    ])))
    .expect("policy 2");
    let ev = w.connect(&rt, "203.0.113.20:8080");
    assert_eq!(
        (ev.reason, ev.rule_id.as_deref()),
        (R::AllowExplicit, Some("cdn2"))
    );
    assert_eq!(w.connect(&rt, "203.0.113.7:443").reason, R::DenyDefault);

    // TTL expiry: api's 2 s are over; the kernel stops honouring it without any user-space action.
    w.dp.replace_policy(&named_policy(serde_json::json!([
        {"id": "api", "action": "allow", "fqdn": "api.example.test"}
    ])))
    .expect("policy 3");
    w.dp.learn_dns(
        &flow,
        &["api.example.test"],
        &[(IpAddr::from([203, 0, 113, 7]), 1)],
    )
    .expect("learn");
    assert_eq!(w.connect(&rt, "203.0.113.7:443").reason, R::AllowExplicit);
    // A TTL of 0 still teaches the address for MIN_TTL_SECS.
    let summary =
        w.dp.replace_policy(&named_policy(serde_json::json!([
            {"id": "api", "action": "allow", "fqdn": "api.example.test"},
            {"id": "cdn", "action": "allow", "fqdn": "*.cdn.example.test"}
        ])))
        .expect("policy 4");
    assert_eq!(summary.fqdn_rules, 2);
    w.dp.learn_dns(
        &flow,
        &["img.cdn.example.test"],
        &[(IpAddr::from([203, 0, 113, 21]), 0)],
    )
    .expect("learn");
    assert_eq!(w.connect(&rt, "203.0.113.21:443").reason, R::AllowExplicit);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(w.connect(&rt, "203.0.113.21:443").reason, R::DenyDefault);
    assert_eq!(w.connect(&rt, "203.0.113.7:443").reason, R::DenyDefault);
    assert_eq!(w.dp.expire_dns(), 2);
    // What is left is the broker name's address, still named and within its TTL.
    let left: Vec<String> =
        w.dp.learned_addresses()
            .into_iter()
            .map(|l| l.name)
            .collect();
    assert_eq!(left, ["broker.example.test"]);
}

#[test]
fn a_policy_by_name_needs_a_proxy() {
    let rt = rt();
    let Some(w) = World::new("fqdn-noproxy", &rt, 0) else {
        return;
    };
    let e =
        w.dp.replace_policy(&named_policy(serde_json::json!([])))
            .expect_err("no proxy");
    assert!(e.to_string().contains("DNS proxy"), "{e}");
}

/// A UDP socket bound in the test's netns (a thread enters it, binds, and leaves).
fn bind_in_netns(netns: &support::NetNs, addr: SocketAddr) -> UdpSocket {
    let fd = netns.fd.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only (CLONE_NEWNET applies to the calling thread), with a valid fd.
            assert_eq!(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, 0, "setns");
            UdpSocket::bind(addr).expect("bind in netns")
        })
        .join()
        .expect("thread")
    })
}

#[test]
fn dns_is_steered_to_the_proxy_and_the_answer_comes_from_the_resolver() {
    let rt = rt();
    let Some(mut w) = World::new("fqdn-steer", &rt, 15354) else {
        return;
    };
    w.dp.replace_policy(&named_policy(serde_json::json!([
        {"id": "api", "action": "allow", "fqdn": "api.example.test"}
    ])))
    .expect("policy");
    let proxy4 = bind_in_netns(&w.env.netns, "127.0.0.1:15354".parse().expect("addr"));
    let proxy6 = bind_in_netns(&w.env.netns, "[::1]:15354".parse().expect("addr"));
    for s in [&proxy4, &proxy6] {
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
    }
    for (resolver, proxy, connected) in [
        ("10.0.0.53:53", &proxy4, false),
        ("10.0.0.53:53", &proxy4, true),
        ("[2001:db8::53]:53", &proxy6, false),
        ("[::ffff:10.0.0.53]:53", &proxy4, true),
    ] {
        let resolver: SocketAddr = resolver.parse().expect("resolver");
        let dst = support::sockaddr(resolver);
        // The child sends its socket cookie to the resolver, waits for the answer and checks where it came from:
        // 0 when recvfrom() (and getpeername() of a connected socket) show the resolver.
        let want = dst;
        let child = std::thread::scope(|s| {
            let h = s.spawn(|| {
                support::run_in_child(&w.wl, &w.env.netns, move || {
                    // SAFETY: raw syscalls on stack memory prepared before the fork (see run_in_child).
                    unsafe {
                        let fd = libc::socket(dst.family, libc::SOCK_DGRAM, 0);
                        if fd < 0 {
                            return 100;
                        }
                        let mut cookie = 0u64;
                        let mut len = 8 as libc::socklen_t;
                        libc::getsockopt(
                            fd,
                            libc::SOL_SOCKET,
                            libc::SO_COOKIE,
                            (&mut cookie as *mut u64).cast(),
                            &mut len,
                        );
                        let sent = if connected {
                            if libc::connect(fd, dst.ptr(), dst.len) != 0 {
                                return 101;
                            }
                            libc::send(fd, (&cookie as *const u64).cast(), 8, 0)
                        } else {
                            libc::sendto(
                                fd,
                                (&cookie as *const u64).cast(),
                                8,
                                0,
                                dst.ptr(),
                                dst.len,
                            )
                        };
                        if sent != 8 {
                            return 1000 + *libc::__errno_location();
                        }
                        let mut buf = [0u8; 16];
                        let mut from: libc::sockaddr_storage = std::mem::zeroed();
                        let mut flen =
                            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                        let n = libc::recvfrom(
                            fd,
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            0,
                            (&mut from as *mut libc::sockaddr_storage).cast(),
                            &mut flen,
                        );
                        if n != 2 {
                            return 103;
                        }
                        let same = |a: &libc::sockaddr_storage, l: libc::socklen_t| {
                            l == want.len
                                && libc::memcmp(
                                    (a as *const libc::sockaddr_storage).cast(),
                                    want.ptr().cast(),
                                    want.len as usize,
                                ) == 0
                        };
                        if !same(&from, flen) {
                            return 104;
                        }
                        if connected {
                            let mut peer: libc::sockaddr_storage = std::mem::zeroed();
                            let mut plen =
                                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                            libc::getpeername(
                                fd,
                                (&mut peer as *mut libc::sockaddr_storage).cast(),
                                &mut plen,
                            );
                            if !same(&peer, plen) {
                                return 105;
                            }
                        }
                        0
                    }
                })
            });
            // The proxy side: the datagram arrives at the proxy address, and the cookie names the flow.
            let mut buf = [0u8; 64];
            let (n, from) = match proxy.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) => {
                    let child = h.join().expect("child thread");
                    let mut evs = Vec::new();
                    while let Some(ev) =
                        rt.block_on(support::event_for(&mut w.rx, &mut w.backlog, child.pid))
                    {
                        evs.push(format!("{:?} {:?} {:?}", ev.hook, ev.reason, ev.dst_ip));
                    }
                    panic!(
                        "{resolver} connected={connected}: nothing at the proxy ({e}); child: {child:?}; \
                         its events: {evs:?}"
                    );
                }
            };
            assert_eq!(n, 8, "{resolver}");
            let cookie = u64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
            let flow = w.dp.dns_flow(cookie).expect("flow recorded");
            let want_original = match resolver.ip() {
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), resolver.port()),
                    None => resolver,
                },
                IpAddr::V4(_) => resolver,
            };
            assert_eq!(flow.original, want_original, "{resolver}");
            assert_eq!(flow.managed_cgroup_id, w.wl_id);
            assert_eq!(flow.cgroup_id, w.wl_id);
            proxy.send_to(b"ok", from).expect("answer");
            h.join().expect("child thread")
        });
        assert_eq!(child.errno, 0, "{resolver} connected={connected}");
        // The event reports the resolver the workload addressed.
        let ev = rt
            .block_on(support::event_for(&mut w.rx, &mut w.backlog, child.pid))
            .expect("event");
        assert_eq!(ev.reason, R::AllowDns);
        assert_eq!(ev.dst_port, Some(53));
    }
    // DNS steering is per policy: a policy without names leaves DNS alone (the query reaches 10.0.0.53, a local
    // address of this netns, where nothing listens: the send succeeds and nothing arrives at the proxy).
    w.dp.replace_policy(&policy(serde_json::json!({
        "broker": [], "dns": [{"ip": "10.0.0.53"}], "rules": []
    })))
    .expect("plain policy");
    let r = probe(
        &w.wl,
        &w.env.netns,
        Probe::UdpSendto,
        "10.0.0.53:53".parse().expect("dst"),
    );
    assert_eq!(r.errno, 0);
    proxy4
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    assert!(proxy4.recv_from(&mut [0u8; 64]).is_err(), "not steered");
}
