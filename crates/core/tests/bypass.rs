//! The bypass suite (docs/threat-model.md): every way around `connect()`/`sendmsg()` a workload in a managed
//! cgroup has tried, each against a destination the policy denies. Each attempt is refused with its event, or
//! (where this kernel lacks the layer that would refuse it) the status says so and the documented mitigation
//! is checked instead. Root only: own cgroups, netns and pins per test (tests/support); SKIPPED otherwise.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::policy::{
    BrokerEndpoint, DnsEndpoint, IpNet, PolicySnapshot, Rule, RuleAction, Sampling,
};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode as R;
use interceptor_ebpf_core::dataplane::{
    CgroupRef, Dataplane, DataplaneOptions, EventReceiver, Layer, LayerState, Mode, VerdictEvent,
};
use support::{errno, probe, run_in_child, sockaddr, Probe, ProbeResult, TestEnv};

const EPERM: i32 = libc::EPERM;
/// The legacy packet socket type (`socket(AF_INET, SOCK_PACKET, ...)`); libc deprecates the constant.
const SOCK_PACKET: i32 = 10;

/// Denied by default (no rule covers them); the workload may only reach the broker, DNS and 10.1.0.0/16.
const DENIED4: &str = "10.9.9.9";
const DENIED6: &str = "2001:db8:9::9";
const DENIED_PORT: u16 = 9999;

fn denied4() -> SocketAddr {
    SocketAddr::new(DENIED4.parse().expect("ip"), DENIED_PORT)
}

fn denied6() -> SocketAddr {
    SocketAddr::new(DENIED6.parse().expect("ip"), DENIED_PORT)
}

fn policy() -> PolicySnapshot {
    PolicySnapshot {
        broker: vec![BrokerEndpoint {
            ip: "10.0.0.5".parse().expect("ip"),
            port: 8081,
        }],
        dns: vec![DnsEndpoint {
            ip: "10.0.0.53".parse().expect("ip"),
            port: 53,
        }],
        rules: vec![Rule {
            id: "allow-10-1".into(),
            action: RuleAction::Allow,
            cidr: IpNet {
                addr: "10.1.0.0".parse().expect("ip"),
                prefix_len: 16,
            },
            ports: vec![],
            protocol: None,
        }],
        sampling: Sampling::default(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A dataplane on the test's parent cgroup with a managed workload `wl` (workload id "wl-bypass") under the
/// policy above, and an unmanaged sibling `other`.
struct World {
    dp: Dataplane,
    wl: std::path::PathBuf,
    wl_id: u64,
    other: std::path::PathBuf,
    rx: EventReceiver,
    backlog: Vec<VerdictEvent>,
    rt: tokio::runtime::Runtime,
    // Dropped last: the dataplane detaches before its cgroups, netns and pins go.
    env: TestEnv,
}

impl World {
    fn new(tag: &str, tune: impl FnOnce(&mut DataplaneOptions)) -> Option<World> {
        if support::skip(tag) {
            return None;
        }
        let rt = rt();
        let mut env = TestEnv::new(tag);
        // Ping sockets need the caller's gid in ping_group_range; Docker opens it to every gid in containers.
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &env.netns.name, "sysctl", "-qw"])
            .arg("net.ipv4.ping_group_range=0 2147483647")
            .output()
            .expect("run sysctl");
        assert!(out.status.success(), "ping_group_range: {out:?}");
        let (wl, wl_id) = env.cgroup.child("wl");
        let (other, _) = env.cgroup.child("other");
        let mut opts = env.options();
        tune(&mut opts);
        let dp = Dataplane::load(opts).unwrap_or_else(|e| panic!("load: {e}"));
        dp.upsert_managed_cgroup(&CgroupRef::Path(wl.clone()), None, Some("wl-bypass"))
            .expect("upsert managed");
        dp.replace_policy(&policy()).expect("policy");
        let rx = {
            let _g = rt.enter();
            dp.subscribe().expect("subscribe")
        };
        Some(World {
            dp,
            wl,
            wl_id,
            other,
            rx,
            backlog: Vec::new(),
            rt,
            env,
        })
    }

    fn layer(&self, layer: Layer) -> LayerState {
        let st = self.dp.status().expect("status");
        st.layers
            .into_iter()
            .find(|l| l.layer == layer)
            .map(|l| l.state)
            .unwrap_or_else(|| panic!("{layer} missing from the status"))
    }

    fn in_wl(&self, f: impl FnOnce() -> i32) -> ProbeResult {
        run_in_child(&self.wl, &self.env.netns, f)
    }

    fn in_other(&self, f: impl FnOnce() -> i32) -> ProbeResult {
        run_in_child(&self.other, &self.env.netns, f)
    }

    fn event(&mut self, pid: u32, what: &str) -> VerdictEvent {
        self.rt
            .block_on(support::event_for(&mut self.rx, &mut self.backlog, pid))
            .unwrap_or_else(|| panic!("{what}: no event for pid {pid}"))
    }

    fn no_event(&mut self, pid: u32) {
        self.rt.block_on(support::no_event_for(
            &mut self.rx,
            &mut self.backlog,
            pid,
            Duration::from_millis(300),
        ));
    }

    /// The event of a refused socket: no destination, the workload's ids.
    fn expect_socket_refusal(
        &mut self,
        r: ProbeResult,
        what: &str,
        hook: Hook,
        protocol: Protocol,
        reason: R,
    ) {
        let want_errno = if reason == R::DenySocketCreate {
            EPERM
        } else {
            0
        };
        assert_eq!(r.errno, want_errno, "{what}: errno");
        let ev = self.event(r.pid, what);
        assert_eq!(ev.reason, reason, "{what}: {ev:?}");
        assert_eq!(ev.hook, hook, "{what}: {ev:?}");
        assert_eq!(ev.protocol, protocol, "{what}: {ev:?}");
        assert_eq!((ev.dst_ip, ev.dst_port), (None, None), "{what}: {ev:?}");
        assert_eq!(ev.cgroup_id, self.wl_id);
        assert_eq!(ev.managed_cgroup_id, self.wl_id);
        assert_eq!(ev.workload_id.as_deref(), Some("wl-bypass"));
        assert_eq!(ev.rule_id, None);
        assert!(ev.policy_generation > 0, "{what}: {ev:?}");
    }

    /// A judged call to a denied destination: EPERM and a DENY_DEFAULT event at `hook`.
    fn expect_denied(&mut self, r: ProbeResult, what: &str, hook: Hook, protocol: Protocol) {
        assert_eq!(r.errno, EPERM, "{what}: errno");
        let ev = self.event(r.pid, what);
        assert_eq!(ev.reason, R::DenyDefault, "{what}: {ev:?}");
        assert_eq!(ev.hook, hook, "{what}: {ev:?}");
        assert_eq!(ev.protocol, protocol, "{what}: {ev:?}");
        assert_eq!(ev.workload_id.as_deref(), Some("wl-bypass"));
    }
}

/// socket(family, type, protocol): 0 when created (and closed again), else errno.
fn create_socket(family: i32, ty: i32, protocol: i32) -> i32 {
    // SAFETY: plain syscalls on integers.
    unsafe {
        let s = libc::socket(family, ty, protocol);
        if s < 0 {
            return errno();
        }
        libc::close(s);
    }
    0
}

#[test]
fn every_layer_is_reported_with_its_state() {
    let Some(w) = World::new("layers", |_| {}) else {
        return;
    };
    let st = w.dp.status().expect("status");
    assert_eq!(
        st.layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
        Layer::ALL.to_vec()
    );
    assert_eq!(w.layer(Layer::SockCreate), LayerState::Active);
    match w.layer(Layer::SocketCreateLsm) {
        LayerState::Active => {}
        LayerState::Unavailable(why) => {
            assert!(!why.is_empty());
            eprintln!("socket_create_lsm is unavailable on this kernel: {why}");
        }
        LayerState::Disabled => panic!("socket_create_lsm was not disabled"),
    }
    let pins: Vec<String> = std::fs::read_dir(&w.env.pins.path)
        .expect("pin dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in [
        "link_sock_create",
        "prog_sock_create",
        "dp_layer_state",
        "dp_layer_counters",
    ] {
        assert!(pins.iter().any(|p| p == name), "{name} pinned: {pins:?}");
    }
    assert_eq!(st.attached_hooks, Hook::SOCK_ADDR.to_vec());
}

#[test]
fn raw_sockets_are_refused_at_creation_with_an_event() {
    let Some(mut w) = World::new("raw", |_| {}) else {
        return;
    };
    let before = w.dp.status().expect("status").layer_counters;
    for (what, family, protocol) in [
        ("raw IPv4, UDP", libc::AF_INET, libc::IPPROTO_UDP),
        (
            "raw IPv4, IPPROTO_RAW (header included)",
            libc::AF_INET,
            libc::IPPROTO_RAW,
        ),
        ("raw IPv4, ICMP", libc::AF_INET, libc::IPPROTO_ICMP),
        ("raw IPv6, ICMPv6", libc::AF_INET6, libc::IPPROTO_ICMPV6),
        ("raw IPv6, UDP", libc::AF_INET6, libc::IPPROTO_UDP),
    ] {
        let r = w.in_wl(|| create_socket(family, libc::SOCK_RAW, protocol));
        w.expect_socket_refusal(
            r,
            what,
            Hook::SockCreate,
            Protocol::Raw,
            R::DenySocketCreate,
        );
    }
    // A raw socket made through io_uring (IORING_OP_SOCKET) is created by the same kernel path.
    if uring::available() {
        let r = w.in_wl(|| uring::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP));
        w.expect_socket_refusal(
            r,
            "io_uring raw socket",
            Hook::SockCreate,
            Protocol::Raw,
            R::DenySocketCreate,
        );
    } else {
        eprintln!("io_uring is disabled on this kernel (kernel.io_uring_disabled): IORING_OP_SOCKET not tried");
    }
    // Judged kinds are created as before.
    for (what, family, ty, protocol) in [
        ("TCP", libc::AF_INET, libc::SOCK_STREAM, 0),
        ("UDP", libc::AF_INET6, libc::SOCK_DGRAM, 0),
        (
            "UDP-Lite",
            libc::AF_INET,
            libc::SOCK_DGRAM,
            libc::IPPROTO_UDPLITE,
        ),
        (
            "MPTCP",
            libc::AF_INET,
            libc::SOCK_STREAM,
            libc::IPPROTO_MPTCP,
        ),
    ] {
        let r = w.in_wl(|| create_socket(family, ty, protocol));
        assert_eq!(r.errno, 0, "{what} socket in the managed cgroup");
        w.no_event(r.pid);
    }
    // An unmanaged cgroup may create raw sockets: no event.
    let r = w.in_other(|| create_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP));
    assert_eq!(r.errno, 0, "raw socket in an unmanaged cgroup");
    w.no_event(r.pid);
    let after = w.dp.status().expect("status").layer_counters;
    let refused = if uring::available() { 6 } else { 5 };
    assert_eq!(after.sockets_refused - before.sockets_refused, refused);
}

#[test]
fn observe_mode_reports_the_socket_it_would_refuse() {
    let Some(mut w) = World::new("rawobs", |_| {}) else {
        return;
    };
    w.dp.set_cgroup_mode(&CgroupRef::Path(w.wl.clone()), Mode::Observe)
        .expect("observe");
    let r = w.in_wl(|| create_socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6));
    w.expect_socket_refusal(
        r,
        "raw IPv6 in observe mode",
        Hook::SockCreate,
        Protocol::Raw,
        R::ObserveWouldDenySocketCreate,
    );
    assert_eq!(R::ObserveWouldDenySocketCreate.would_block(), Some(true));
    let c = w.dp.status().expect("status").layer_counters;
    assert_eq!((c.sockets_refused, c.sockets_would_refuse), (0, 1));
}

#[test]
fn judged_calls_that_skip_plain_connect_are_still_judged() {
    let Some(mut w) = World::new("judged", |_| {}) else {
        return;
    };
    // TCP Fast Open: sendto(MSG_FASTOPEN) connects inside sendmsg, through the connect4/connect6 hook.
    for (dst, hook) in [(denied4(), Hook::Connect4), (denied6(), Hook::Connect6)] {
        let dst = sockaddr(dst);
        let r = w.in_wl(|| {
            // SAFETY: raw syscalls on the address prepared above.
            unsafe {
                let s = libc::socket(dst.family, libc::SOCK_STREAM, 0);
                let rc = libc::sendto(
                    s,
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_FASTOPEN,
                    dst.ptr(),
                    dst.len,
                );
                if rc < 0 {
                    errno()
                } else {
                    0
                }
            }
        });
        w.expect_denied(r, "TCP Fast Open", hook, Protocol::Tcp);
    }

    // sendmmsg: every datagram goes through sendmsg4; the first denied one ends the call with EPERM.
    let dst = sockaddr(denied4());
    let r = w.in_wl(|| {
        let mut payload = *b"probe";
        // SAFETY: the iovec and msghdr point at live stack memory for the duration of the call.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            let mut iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            };
            let mut msgs: [libc::mmsghdr; 2] = std::mem::zeroed();
            for m in &mut msgs {
                m.msg_hdr.msg_name = dst.ptr() as *mut libc::c_void;
                m.msg_hdr.msg_namelen = dst.len;
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            let rc = libc::sendmmsg(s, msgs.as_mut_ptr(), 2, 0);
            if rc < 0 {
                errno()
            } else {
                1000 + rc
            }
        }
    });
    w.expect_denied(r, "sendmmsg", Hook::Sendmsg4, Protocol::Udp);

    // IPv4-mapped IPv6: connect() stays on connect6 with the mapped address; an unconnected UDP send is handed
    // to udp_sendmsg and judged by sendmsg4 with the IPv4 address.
    let mapped: SocketAddr = format!("[::ffff:{DENIED4}]:{DENIED_PORT}")
        .parse()
        .expect("mapped");
    for (kind, hook, protocol) in [
        (Probe::TcpConnect, Hook::Connect6, Protocol::Tcp),
        (Probe::UdpConnect, Hook::Connect6, Protocol::Udp),
        (Probe::UdpSendto, Hook::Sendmsg4, Protocol::Udp),
    ] {
        let r = probe(&w.wl, &w.env.netns, kind, mapped);
        w.expect_denied(r, &format!("v4-mapped {kind:?}"), hook, protocol);
    }

    // io_uring: IORING_OP_CONNECT and IORING_OP_SENDMSG run the same kernel paths as the syscalls.
    if uring::available() {
        let r = w.in_wl(|| uring::connect(&dst));
        w.expect_denied(r, "io_uring connect", Hook::Connect4, Protocol::Tcp);
        let r = w.in_wl(|| uring::sendmsg(&dst));
        w.expect_denied(r, "io_uring sendmsg", Hook::Sendmsg4, Protocol::Udp);
    } else {
        eprintln!("io_uring is disabled on this kernel (kernel.io_uring_disabled): io_uring connect not tried");
    }
}

#[test]
fn ping_sockets_are_refused_while_no_layer_judges_their_sends() {
    let Some(mut w) = World::new("pingnoegress", |_| {}) else {
        return;
    };
    // An unconnected sendto() of a ping socket reaches no sock_addr hook; without the egress layer nothing would
    // judge it, so the socket is refused at creation.
    for (what, family, protocol) in [
        ("ping IPv4", libc::AF_INET, libc::IPPROTO_ICMP),
        ("ping IPv6", libc::AF_INET6, libc::IPPROTO_ICMPV6),
    ] {
        let r = w.in_wl(|| create_socket(family, libc::SOCK_DGRAM, protocol));
        w.expect_socket_refusal(
            r,
            what,
            Hook::SockCreate,
            Protocol::Icmp,
            R::DenySocketCreate,
        );
    }
    let r = w.in_other(|| create_socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP));
    assert_eq!(r.errno, 0, "ping socket in an unmanaged cgroup");
}

#[test]
fn packet_and_xdp_sockets_are_refused_by_the_lsm_layer_or_by_dropping_net_raw() {
    let Some(mut w) = World::new("packet", |_| {}) else {
        return;
    };
    // ETH_P_ALL in network byte order, the protocol of a packet socket.
    let all = i32::from(0x0003u16.to_be());
    let kinds = [
        (
            "AF_PACKET",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            all,
            Protocol::Packet,
        ),
        (
            "AF_PACKET dgram",
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            all,
            Protocol::Packet,
        ),
        // socket(AF_INET, SOCK_PACKET) is the legacy spelling of a packet socket.
        (
            "AF_INET SOCK_PACKET",
            libc::AF_INET,
            SOCK_PACKET,
            all,
            Protocol::Packet,
        ),
        ("AF_XDP", 44, libc::SOCK_RAW, 0, Protocol::Xdp),
    ];
    match w.layer(Layer::SocketCreateLsm) {
        LayerState::Active => {
            for (what, family, ty, proto, protocol) in kinds {
                let r = w.in_wl(|| create_socket(family, ty, proto));
                w.expect_socket_refusal(
                    r,
                    what,
                    Hook::SocketCreateLsm,
                    protocol,
                    R::DenySocketCreate,
                );
            }
        }
        LayerState::Unavailable(why) => {
            // Documented gap (docs/threat-model.md): without BPF LSM nothing this product attaches sees these
            // sockets. The recommended container setting, `cap_drop: [NET_RAW]`, is what stops them: checked here.
            eprintln!(
                "socket_create_lsm unavailable ({why}): checking the documented mitigation, a workload without CAP_NET_RAW"
            );
            for (what, family, ty, proto, _) in kinds {
                let r = w.in_wl(|| {
                    if let Err(e) = drop_net_raw() {
                        return 10_000 + e;
                    }
                    create_socket(family, ty, proto)
                });
                assert_eq!(r.errno, EPERM, "{what} without CAP_NET_RAW");
            }
        }
        LayerState::Disabled => panic!("socket_create_lsm was not disabled"),
    }
}

#[test]
fn a_disabled_layer_is_reported_and_an_adopted_state_drops_it() {
    let Some(mut w) = World::new("disabled", |o| o.disable_layers = vec![Layer::SockCreate]) else {
        return;
    };
    assert_eq!(w.layer(Layer::SockCreate), LayerState::Disabled);
    assert!(!w.env.pins.path.join("link_sock_create").exists());
    // Degraded combination: nothing refuses the raw socket at creation.
    let r = w.in_wl(|| create_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP));
    assert_eq!(r.errno, 0, "raw socket with sock_create disabled");
    w.no_event(r.pid);

    // The next loader adopts the pinned state with the layer enabled: it attaches it...
    w.dp.close(false).expect("close");
    let mut opts = w.env.options();
    let dp = Dataplane::load(opts.clone()).expect("adopt");
    assert!(dp.status().expect("status").adopted);
    assert_eq!(
        dp.status().expect("status").layers[0].state,
        LayerState::Active
    );
    assert!(w.env.pins.path.join("link_sock_create").exists());
    let r = w.in_wl(|| create_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP));
    assert_eq!(
        r.errno, EPERM,
        "raw socket after the adopting loader attached sock_create"
    );
    dp.close(false).expect("close");
    // ... and one that disables it again detaches it.
    opts.disable_layers = vec![Layer::SockCreate];
    let dp = Dataplane::load(opts).expect("adopt");
    assert_eq!(
        dp.status().expect("status").layers[0].state,
        LayerState::Disabled
    );
    assert!(!w.env.pins.path.join("link_sock_create").exists());
    assert!(!w.env.pins.path.join("prog_sock_create").exists());
    let r = w.in_wl(|| create_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP));
    assert_eq!(
        r.errno, 0,
        "raw socket after sock_create was disabled again"
    );
    dp.close(true).expect("close");
}

/// Drops CAP_NET_RAW from the calling process's effective, permitted and bounding sets, as
/// `cap_drop: [NET_RAW]` does for a container. Raw syscalls only (runs in a forked child).
fn drop_net_raw() -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset read and write the two structures above, laid out as the kernel's v3 ABI.
    unsafe {
        if libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_RAW as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(errno());
        }
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(errno());
        }
        data[0].effective &= !(1 << CAP_NET_RAW);
        data[0].permitted &= !(1 << CAP_NET_RAW);
        data[0].inheritable &= !(1 << CAP_NET_RAW);
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// A minimal io_uring: one submission, one completion, raw syscalls only (the probes run in forked children).
mod uring {
    use super::support::{errno, SockAddr};

    const IORING_OP_SENDMSG: u8 = 9;
    const IORING_OP_CONNECT: u8 = 16;
    const IORING_OP_SOCKET: u8 = 45;
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const IORING_ENTER_GETEVENTS: u32 = 1;

    #[repr(C)]
    #[derive(Default)]
    struct SqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        flags: u32,
        dropped: u32,
        array: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct CqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        overflow: u32,
        cqes: u32,
        flags: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: SqOffsets,
        cq_off: CqOffsets,
    }

    #[repr(C)]
    struct Sqe {
        opcode: u8,
        flags: u8,
        ioprio: u16,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        op_flags: u32,
        user_data: u64,
        buf_index: u16,
        personality: u16,
        splice_fd_in: i32,
        addr3: u64,
        pad: u64,
    }
    const _: () = assert!(std::mem::size_of::<Sqe>() == 64);

    #[repr(C)]
    struct Cqe {
        user_data: u64,
        res: i32,
        flags: u32,
    }

    /// io_uring can be set up here (kernel.io_uring_disabled may forbid it).
    pub fn available() -> bool {
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim() == "0")
            .unwrap_or(true)
    }

    fn map(fd: i32, len: usize, offset: i64) -> Result<*mut u8, i32> {
        // SAFETY: a fresh shared mapping of the ring fd; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(p.cast())
        }
    }

    /// Submits one SQE filled by `fill` and returns its completion's `res` (negative errno on failure), or the
    /// errno of the ring's own setup.
    fn submit_one(fill: impl FnOnce(&mut Sqe)) -> Result<i32, i32> {
        let mut p = Params::default();
        // SAFETY: io_uring_setup writes the Params structure; every pointer below is inside the mappings the
        // kernel sized through those offsets, and the ring indexes are read and written with volatile accesses
        // (the kernel is the other side).
        unsafe {
            let fd = libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut p as *mut Params) as i32;
            if fd < 0 {
                return Err(errno());
            }
            let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
            let cq_len =
                p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
            let (sq, cq, sqes) = match (
                map(fd, sq_len, IORING_OFF_SQ_RING),
                map(fd, cq_len, IORING_OFF_CQ_RING),
                map(fd, p.sq_entries as usize * 64, IORING_OFF_SQES),
            ) {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
            };
            let sqe = &mut *sqes.cast::<Sqe>();
            std::ptr::write_bytes(sqe as *mut Sqe, 0, 1);
            fill(sqe);
            let mask = *sq.add(p.sq_off.ring_mask as usize).cast::<u32>();
            let tail_ptr = sq.add(p.sq_off.tail as usize).cast::<u32>();
            let tail = std::ptr::read_volatile(tail_ptr);
            *sq.add(p.sq_off.array as usize)
                .cast::<u32>()
                .add((tail & mask) as usize) = 0;
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            std::ptr::write_volatile(tail_ptr, tail.wrapping_add(1));
            let rc = libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                1u32,
                1u32,
                IORING_ENTER_GETEVENTS,
                std::ptr::null::<libc::c_void>(),
                0usize,
            );
            if rc < 0 {
                return Err(errno());
            }
            let cq_mask = *cq.add(p.cq_off.ring_mask as usize).cast::<u32>();
            let head = std::ptr::read_volatile(cq.add(p.cq_off.head as usize).cast::<u32>());
            let cqe = &*cq
                .add(p.cq_off.cqes as usize)
                .cast::<Cqe>()
                .add((head & cq_mask) as usize);
            Ok(cqe.res)
        }
    }

    /// A completion as the probes report it: 0 for success, errno for a failed operation, 20,000 + errno when
    /// the ring could not be set up (so an assertion shows which).
    fn outcome(r: Result<i32, i32>) -> i32 {
        match r {
            Ok(res) if res >= 0 => 0,
            Ok(res) => -res,
            Err(e) => 20_000 + e,
        }
    }

    /// 0 when the socket was created, else errno.
    pub fn socket(family: i32, ty: i32, protocol: i32) -> i32 {
        let res = submit_one(|sqe| {
            sqe.opcode = IORING_OP_SOCKET;
            sqe.fd = family;
            sqe.off = ty as u64;
            sqe.len = protocol as u32;
        });
        outcome(res)
    }

    /// IORING_OP_CONNECT of a TCP socket: 0 or errno.
    pub fn connect(dst: &SockAddr) -> i32 {
        // SAFETY: a plain socket() syscall.
        let s = unsafe { libc::socket(dst.family, libc::SOCK_STREAM, 0) };
        let res = submit_one(|sqe| {
            sqe.opcode = IORING_OP_CONNECT;
            sqe.fd = s;
            sqe.addr = dst.ptr() as u64;
            sqe.off = u64::from(dst.len);
        });
        outcome(res)
    }

    /// IORING_OP_SENDMSG of an unconnected UDP socket: 0 or errno.
    pub fn sendmsg(dst: &SockAddr) -> i32 {
        let mut payload = *b"probe";
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: msghdr is plain old data; zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = dst.ptr() as *mut libc::c_void;
        msg.msg_namelen = dst.len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: a plain socket() syscall.
        let s = unsafe { libc::socket(dst.family, libc::SOCK_DGRAM, 0) };
        let res = submit_one(|sqe| {
            sqe.opcode = IORING_OP_SENDMSG;
            sqe.fd = s;
            sqe.addr = &msg as *const libc::msghdr as u64;
            sqe.len = 1;
        });
        outcome(res)
    }
}
