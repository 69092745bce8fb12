//! Root tests of rules by name end to end (SPEC 4b): the real agent, its DNS proxy and the kernel programs, with a
//! workload in a managed cgroup and a stub resolver at 10.0.0.53:53, all in the test's own network namespace
//! (the proxy identifies its clients with sock_diag in its own namespace, so the agent runs there too).
//!
//! Each test has its own world (cgroup, pins, socket dir), netns, stub and agent, and its own proxy port. The
//! workload is a forked child doing raw syscalls on bytes prepared before the fork: a DNS exchange (UDP,
//! connected UDP or TCP, to 10.0.0.53:53 or [2001:db8::53]:53) whose answer comes back through shared memory,
//! then TCP connects (ECONNREFUSED: allowed, every address is local and nothing listens; EPERM: denied).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{json, Value};
use support::dp::{self, Probe};
use support::{ctl, text, Agent, World};

const RESOLVER: &str = "10.0.0.53:53";
const RESOLVER6: &str = "[2001:db8::53]:53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// This test's proxy port, distinct per process and per test. The proxy binds loopback inside the test's own
/// netns, so this is belt and braces: two agents never share a port even if a test ran one on the host.
fn proxy_port(offset: u16) -> u16 {
    20000 + (std::process::id() % 5000) as u16 * 8 + offset
}

// ---------------------------------------------------------------------------------------------------------------
// Stub resolver

#[derive(Clone)]
struct Entry {
    records: Vec<Record>,
    /// Over UDP: the TC bit and no records; the full answer only over TCP.
    truncate_udp: bool,
}

type Table = HashMap<(String, RecordType), Entry>;

fn rec(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(
        Name::from_str(&format!("{name}.")).expect("name"),
        ttl,
        data,
    )
}

fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
    rec(name, ttl, RData::A(A::new(ip[0], ip[1], ip[2], ip[3])))
}

/// Every name the tests ask for.
fn table() -> Table {
    let mut t = Table::new();
    let mut put = |name: &str, rtype, records: Vec<Record>, truncate_udp| {
        t.insert(
            (name.to_owned(), rtype),
            Entry {
                records,
                truncate_udp,
            },
        );
    };
    put(
        "api.example.test",
        RecordType::A,
        vec![a("api.example.test", 2, [203, 0, 113, 7])],
        false,
    );
    put(
        "other.example.test",
        RecordType::A,
        vec![a("other.example.test", 30, [203, 0, 113, 8])],
        false,
    );
    put(
        "img.cdn.example.test",
        RecordType::A,
        vec![a("img.cdn.example.test", 30, [203, 0, 113, 9])],
        false,
    );
    put(
        "a.b.cdn.example.test",
        RecordType::A,
        vec![a("a.b.cdn.example.test", 30, [203, 0, 113, 10])],
        false,
    );
    put(
        "www.example.test",
        RecordType::A,
        vec![
            rec(
                "www.example.test",
                30,
                RData::CNAME(CNAME(Name::from_str("edge.example.net.").expect("name"))),
            ),
            a("edge.example.net", 30, [198, 51, 100, 20]),
        ],
        false,
    );
    put(
        "alias.example.test",
        RecordType::A,
        vec![
            rec(
                "alias.example.test",
                30,
                RData::CNAME(CNAME(Name::from_str("www.example.test.").expect("name"))),
            ),
            rec(
                "www.example.test",
                30,
                RData::CNAME(CNAME(Name::from_str("edge2.example.net.").expect("name"))),
            ),
            a("edge2.example.net", 30, [198, 51, 100, 21]),
        ],
        false,
    );
    put(
        "v6.example.test",
        RecordType::AAAA,
        vec![rec(
            "v6.example.test",
            30,
            RData::AAAA(AAAA::from_str("2001:db8::20").expect("v6")),
        )],
        false,
    );
    put(
        "broker.example.test",
        RecordType::A,
        vec![a("broker.example.test", 30, [192, 0, 2, 80])],
        false,
    );
    put(
        "blocked.example.test",
        RecordType::A,
        vec![a("blocked.example.test", 30, [198, 51, 100, 99])],
        false,
    );
    put(
        "six.example.test",
        RecordType::AAAA,
        vec![rec(
            "six.example.test",
            30,
            RData::AAAA(AAAA::from_str("2001:db8::21").expect("v6")),
        )],
        false,
    );
    put(
        "big.example.test",
        RecordType::A,
        (30..=69)
            .map(|i| a("big.example.test", 30, [198, 51, 100, i]))
            .collect(),
        true,
    );
    put(
        "keep.example.test",
        RecordType::A,
        vec![a("keep.example.test", 30, [192, 0, 2, 1])],
        false,
    );
    put(
        "drop.example.test",
        RecordType::A,
        vec![a("drop.example.test", 30, [192, 0, 2, 2])],
        false,
    );
    put(
        "later.example.test",
        RecordType::A,
        vec![a("later.example.test", 30, [192, 0, 2, 3])],
        false,
    );
    t
}

/// The stub's answer: the table's records (NXDOMAIN for an unknown name, empty for an unknown type).
fn stub_answer(table: &Table, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.queries = query.queries.clone();
    let q = query.queries.first()?;
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match table.get(&(name.clone(), q.query_type())) {
        Some(e) if udp && e.truncate_udp => response.metadata.truncation = true,
        Some(e) => response.answers = e.records.clone(),
        None if table.keys().any(|(n, _)| *n == name) => {}
        None => response.metadata.response_code = ResponseCode::NXDomain,
    }
    response.to_vec().ok()
}

/// A resolver at 10.0.0.53:53 (UDP and TCP) inside the test's netns, served by threads; stopped on drop.
struct Stub {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    udp_queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
}

/// Runs `f` on a thread that entered `netns` (sockets it creates stay in that namespace).
fn in_netns<T: Send + 'static>(netns: &dp::NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let fd = netns.fd.as_raw_fd();
    std::thread::spawn(move || {
        // SAFETY: moves only this thread into the namespace; `fd` stays open while the caller borrows `netns`
        // (the thread is joined before returning).
        let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

impl Stub {
    fn start(netns: &dp::NetNs) -> Stub {
        // IPv6 binds need the address itself (a local route is enough for IPv4 only).
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &netns.name,
                "addr",
                "add",
                "2001:db8::53/128",
                "dev",
                "lo",
                "nodad",
            ])
            .output()
            .expect("run ip");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let sockets = in_netns(netns, || {
            [RESOLVER, RESOLVER6].map(|r| {
                (
                    UdpSocket::bind(r).expect("stub udp"),
                    TcpListener::bind(r).expect("stub tcp"),
                )
            })
        });
        let table = Arc::new(table());
        let stop = Arc::new(AtomicBool::new(false));
        let udp_queries = Arc::new(AtomicU64::new(0));
        let tcp_queries = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for (udp, tcp) in sockets {
            {
                let (table, stop, count) = (table.clone(), stop.clone(), udp_queries.clone());
                udp.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                threads.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65535];
                    while !stop.load(Ordering::SeqCst) {
                        let Ok((n, from)) = udp.recv_from(&mut buf) else {
                            continue;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        if let Some(answer) = stub_answer(&table, &buf[..n], true) {
                            let _ = udp.send_to(&answer, from);
                        }
                    }
                }));
            }
            let (table, stop, count) = (table.clone(), stop.clone(), tcp_queries.clone());
            tcp.set_nonblocking(true).expect("nonblocking");
            threads.push(std::thread::spawn(move || {
                let mut conns: Vec<JoinHandle<()>> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let (table, stop, count) = (table.clone(), stop.clone(), count.clone());
                    conns.push(std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                        while !stop.load(Ordering::SeqCst) {
                            match read_framed(&mut stream) {
                                Ok(bytes) => {
                                    count.fetch_add(1, Ordering::SeqCst);
                                    let Some(answer) = stub_answer(&table, &bytes, false) else {
                                        continue;
                                    };
                                    let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                                    framed.extend_from_slice(&answer);
                                    if stream.write_all(&framed).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    }));
                }
                for c in conns {
                    let _ = c.join();
                }
            }));
        }
        Stub {
            stop,
            threads,
            udp_queries,
            tcp_queries,
        }
    }

    fn queries(&self) -> (u64, u64) {
        (
            self.udp_queries.load(Ordering::SeqCst),
            self.tcp_queries.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A query for `name`'s `rtype` records, recursion desired.
fn query(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_str(&format!("{name}.")).expect("name"),
        rtype,
    ));
    m.to_vec().expect("encode query")
}

// ---------------------------------------------------------------------------------------------------------------
// The workload

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dns {
    /// No query: only the connects.
    Skip,
    /// sendto() the resolver from an unconnected UDP socket, recvfrom() the answer.
    Udp,
    /// connect() a UDP socket to the resolver (as glibc does), send(), then recvfrom() the answer (and
    /// getpeername() must still name the resolver).
    UdpConnected,
    /// connect() the resolver over TCP, write the length-prefixed query, read the length-prefixed answer.
    Tcp,
}

const ANSWER_MAX: usize = 16384;
const MAX_CONNECTS: usize = 4;

/// What the child writes for the parent: a MAP_SHARED page set up before the fork.
#[repr(C)]
struct Exchange {
    /// 0, or the errno of the DNS step that failed (EAGAIN: no answer in time).
    query_errno: i32,
    /// 1 when recvfrom()/getpeername() named the resolver the workload asked.
    from_resolver: i32,
    answer_len: i32,
    connect_errnos: [i32; MAX_CONNECTS],
    answer: [u8; ANSWER_MAX],
}

struct Shared(*mut Exchange);

impl Shared {
    fn new() -> Shared {
        // SAFETY: a fresh anonymous shared mapping of the struct's size; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Exchange>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        Shared(p.cast())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.0.cast(), std::mem::size_of::<Exchange>()) };
    }
}

/// What one workload run did.
#[derive(Debug)]
struct Outcome {
    pid: u32,
    query_errno: i32,
    from_resolver: bool,
    answer: Vec<u8>,
    connects: Vec<i32>,
}

impl Outcome {
    /// The decoded answer (panics when there was none).
    fn message(&self) -> Message {
        assert_eq!(self.query_errno, 0, "the DNS exchange failed: {self:?}");
        assert!(
            self.from_resolver,
            "the answer must come from the resolver asked"
        );
        Message::from_vec(&self.answer).expect("an answer that decodes")
    }
}

/// The addresses an answer carries (A and AAAA, whatever their owner).
fn addresses(m: &Message) -> Vec<std::net::IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(std::net::IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Same family, port and address (the child compares what recvfrom/getpeername gave with the resolver).
fn same_addr(got: &libc::sockaddr_storage, want: &dp::SockAddr) -> bool {
    if i32::from(got.ss_family) != want.family {
        return false;
    }
    let size = std::mem::size_of::<libc::sockaddr_storage>();
    // SAFETY: both are whole sockaddr_storage values, read as plain bytes.
    let (g, w) = unsafe {
        (
            std::slice::from_raw_parts((got as *const libc::sockaddr_storage).cast::<u8>(), size),
            std::slice::from_raw_parts(
                (&want.storage as *const libc::sockaddr_storage).cast::<u8>(),
                size,
            ),
        )
    };
    // sockaddr_in: family(2) port(2) addr(4); sockaddr_in6: family(2) port(2) flowinfo(4) addr(16).
    if want.family == libc::AF_INET {
        g[2..8] == w[2..8]
    } else {
        g[2..4] == w[2..4] && g[8..24] == w[8..24]
    }
}

/// Forks a workload in `cgroup` and `netns`: the DNS exchange `dns` of `q` with the resolver (answer awaited at
/// most `wait`), then a TCP connect to each of `connects`.
fn workload(
    cgroup: &Path,
    netns: &dp::NetNs,
    dns: Dns,
    q: &[u8],
    wait: Duration,
    connects: &[SocketAddr],
) -> Outcome {
    workload_via(cgroup, netns, sa(RESOLVER), dns, q, wait, connects)
}

/// [`workload`] with the resolver at `resolver`.
fn workload_via(
    cgroup: &Path,
    netns: &dp::NetNs,
    resolver: SocketAddr,
    dns: Dns,
    q: &[u8],
    wait: Duration,
    connects: &[SocketAddr],
) -> Outcome {
    assert!(connects.len() <= MAX_CONNECTS);
    let shared = Shared::new();
    let x = shared.0;
    let resolver = dp::sockaddr(resolver);
    let targets: Vec<dp::SockAddr> = connects.iter().map(|c| dp::sockaddr(*c)).collect();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    let tv = libc::timeval {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_usec: wait.subsec_micros() as libc::suseconds_t,
    };
    let r = dp::run_in_child(cgroup, netns, || {
        // SAFETY: raw syscalls on memory prepared before the fork (the shared page, the sockaddrs, the query
        // bytes); every socket is closed.
        unsafe {
            let x = &mut *x;
            let errno = dp::errno;
            let set_timeouts = |s: libc::c_int| {
                for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                    libc::setsockopt(
                        s,
                        libc::SOL_SOCKET,
                        opt,
                        (&tv as *const libc::timeval).cast(),
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                }
            };
            let mut from: libc::sockaddr_storage = std::mem::zeroed();
            let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let from_ptr = (&mut from as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
            match dns {
                Dns::Skip => {}
                Dns::Udp => {
                    let s = libc::socket(resolver.family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
                    set_timeouts(s);
                    if libc::sendto(
                        s,
                        q.as_ptr().cast(),
                        q.len(),
                        0,
                        resolver.ptr(),
                        resolver.len,
                    ) < 0
                    {
                        x.query_errno = errno();
                    } else {
                        let n = libc::recvfrom(
                            s,
                            x.answer.as_mut_ptr().cast(),
                            ANSWER_MAX,
                            0,
                            from_ptr,
                            &mut from_len,
                        );
                        if n < 0 {
                            x.query_errno = errno();
                        } else {
                            x.answer_len = n as i32;
                            x.from_resolver = i32::from(same_addr(&from, &resolver));
                        }
                    }
                    libc::close(s);
                }
                Dns::UdpConnected => {
                    let s = libc::socket(resolver.family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
                    set_timeouts(s);
                    if libc::connect(s, resolver.ptr(), resolver.len) < 0
                        || libc::send(s, q.as_ptr().cast(), q.len(), 0) < 0
                    {
                        x.query_errno = errno();
                    } else {
                        let n = libc::recvfrom(
                            s,
                            x.answer.as_mut_ptr().cast(),
                            ANSWER_MAX,
                            0,
                            from_ptr,
                            &mut from_len,
                        );
                        if n < 0 {
                            x.query_errno = errno();
                        } else {
                            x.answer_len = n as i32;
                            let mut peer: libc::sockaddr_storage = std::mem::zeroed();
                            let mut peer_len =
                                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                            let peer_ok = libc::getpeername(
                                s,
                                (&mut peer as *mut libc::sockaddr_storage).cast(),
                                &mut peer_len,
                            ) == 0
                                && same_addr(&peer, &resolver);
                            x.from_resolver = i32::from(same_addr(&from, &resolver) && peer_ok);
                        }
                    }
                    libc::close(s);
                }
                Dns::Tcp => {
                    let s = libc::socket(resolver.family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
                    set_timeouts(s);
                    let read_exact = |buf: *mut u8, len: usize| -> i32 {
                        let mut got = 0;
                        while got < len {
                            let n = libc::read(s, buf.add(got).cast(), len - got);
                            if n < 0 {
                                return errno();
                            }
                            if n == 0 {
                                return libc::ECONNRESET;
                            }
                            got += n as usize;
                        }
                        0
                    };
                    let mut len = [0u8; 2];
                    if libc::connect(s, resolver.ptr(), resolver.len) < 0
                        || libc::write(s, framed.as_ptr().cast(), framed.len())
                            != framed.len() as isize
                    {
                        x.query_errno = errno();
                    } else {
                        if libc::getpeername(s, from_ptr, &mut from_len) == 0 {
                            x.from_resolver = i32::from(same_addr(&from, &resolver));
                        }
                        let e = read_exact(len.as_mut_ptr(), 2);
                        let n = usize::from(u16::from_be_bytes(len)).min(ANSWER_MAX);
                        let e = if e == 0 {
                            read_exact(x.answer.as_mut_ptr(), n)
                        } else {
                            e
                        };
                        x.query_errno = e;
                        if e == 0 {
                            x.answer_len = n as i32;
                        }
                    }
                    libc::close(s);
                }
            }
            for (i, t) in targets.iter().enumerate() {
                let s = libc::socket(t.family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
                x.connect_errnos[i] = if libc::connect(s, t.ptr(), t.len) < 0 {
                    errno()
                } else {
                    0
                };
                libc::close(s);
            }
            0
        }
    });
    // SAFETY: the child is gone (run_in_child waited for it); the page is ours to read.
    let x = unsafe { &*shared.0 };
    Outcome {
        pid: r.pid,
        query_errno: x.query_errno,
        from_resolver: x.from_resolver == 1,
        answer: x.answer[..x.answer_len.max(0) as usize].to_vec(),
        connects: x.connect_errnos[..connects.len()].to_vec(),
    }
}

/// A query answered through the proxy, then connects: the decoded answer and the connects' errnos.
fn resolve_then_connect(
    t: &Setup,
    name: &str,
    rtype: RecordType,
    connects: &[SocketAddr],
) -> (Outcome, Message) {
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Udp,
        &query(0x4242, name, rtype),
        Duration::from_secs(3),
        connects,
    );
    let m = o.message();
    assert_eq!(m.metadata.id, 0x4242);
    (o, m)
}

fn connect(t: &Setup, dst: &str) -> i32 {
    dp::probe(&t.wl, &t.netns, Probe::TcpConnect, sa(dst)).errno
}

// ---------------------------------------------------------------------------------------------------------------
// The agent and its world

/// Starts the agent inside `netns` (setns before exec; `ip netns exec` would remount /sys and hide the cgroups).
fn start_agent(world: &World, netns: &dp::NetNs, port: u16, policy: Option<&Path>) -> Agent {
    let fd = netns.fd.as_raw_fd();
    let port = port.to_string();
    let mut env = vec![("BROKER_EBPF_DNS_PROXY_PORT", port.as_str())];
    if let Some(p) = policy {
        env.push(("BROKER_EBPF_POLICY_FILE", p.to_str().expect("utf8")));
    }
    Agent::start_with(world, &env, |cmd| {
        // SAFETY: setns is async-signal-safe; `fd` is open until exec (the netns outlives the start).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    })
}

/// One test's everything; dropped agent first, then the stub, the netns and the world.
struct Setup {
    agent: Agent,
    stub: Stub,
    wl: PathBuf,
    wl_id: u64,
    port: u16,
    netns: dp::NetNs,
    world: World,
}

fn policy(rules: Value, dns_queries: &str) -> Value {
    json!({"broker": [], "dns": [{"ip": "10.0.0.53"}, {"ip": "2001:db8::53"}], "rules": rules, "dnsQueries": dns_queries})
}

fn write_json(world: &World, file: &str, v: &Value) -> PathBuf {
    let path = world.dir.path.join(file);
    std::fs::write(&path, v.to_string()).expect("write policy");
    path
}

impl Setup {
    fn new(tag: &str, offset: u16, policy: &Value, mode: Option<&str>) -> Setup {
        let mut world = World::new(tag);
        let netns = dp::NetNs::new(tag);
        let (wl, wl_id) = world.cgroup.child("wl");
        let stub = Stub::start(&netns);
        let file = write_json(&world, "policy.json", policy);
        let port = proxy_port(offset);
        let agent = start_agent(&world, &netns, port, Some(&file));
        let path = world.payload_path(&wl);
        let mut args = vec!["cgroup", "add", &path, "--workload-id", "wl-dns"];
        if let Some(m) = mode {
            args.extend(["--mode", m]);
        }
        let out = ctl(&world.socket, &args, None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        Setup {
            agent,
            stub,
            wl,
            wl_id,
            port,
            netns,
            world,
        }
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = ctl(&self.world.socket, &all, None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "ctl {args:?}: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ctl json")
    }

    fn dns(&self) -> Value {
        self.ctl_json(&["dns"])
    }

    /// The learned entries for `address`.
    fn learned(&self, address: &str) -> Vec<Value> {
        self.dns()["learned"]
            .as_array()
            .expect("learned")
            .iter()
            .filter(|l| l["address"] == address)
            .cloned()
            .collect()
    }

    /// The `dns` hook's event with `code` for `name` from the workload's cgroup (waits for it). The proxy reports
    /// it, so it has no pid.
    fn dns_event(&self, code: &str, name: &str) -> Value {
        let cgroup = self.wl_id.to_string();
        self.agent
            .wait_line(Duration::from_secs(5), |r| {
                r["reason_code"] == code && r["dns_name"] == name && r["cgroup_id"] == cgroup
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {code} event for {name}; lines: {:#?}",
                    self.agent.lines()
                )
            })
    }

    /// The verdict event of the workload `pid` with `code` (waits for it).
    fn event(&self, pid: u32, code: &str) -> Value {
        self.agent
            .wait_line(Duration::from_secs(5), |r| {
                r["pid"] == pid && r["reason_code"] == code
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {code} event for pid {pid}; lines: {:#?}",
                    self.agent.lines()
                )
            })
    }
}

fn named_rules() -> Value {
    json!([
        {"id": "api", "action": "allow", "fqdn": "api.example.test", "ports": [443], "protocol": "tcp"},
        {"id": "cdn", "action": "allow", "fqdn": "*.cdn.example.test", "ports": [443]},
        {"id": "www", "action": "allow", "fqdn": "www.example.test"},
        {"id": "v6", "action": "allow", "fqdn": "v6.example.test"},
        {"id": "six", "action": "allow", "fqdn": "six.example.test"},
        {"id": "big", "action": "allow", "fqdn": "big.example.test"},
        {"id": "net", "action": "allow", "cidr": "198.51.100.96/29", "ports": [443]},
        {"id": "blocked", "action": "deny", "fqdn": "blocked.example.test"},
    ])
}

const ALLOWED: i32 = libc::ECONNREFUSED;
const DENIED: i32 = libc::EPERM;

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[test]
fn an_answer_allows_its_address_until_the_ttl() {
    if support::skip("an_answer_allows_its_address_until_the_ttl") {
        return;
    }
    let mut t = Setup::new("dns-ttl", 0, &policy(named_rules(), "any"), None);
    assert_eq!(connect(&t, "203.0.113.7:443"), DENIED, "never resolved");

    let (o, m) = resolve_then_connect(
        &t,
        "api.example.test",
        RecordType::A,
        &[sa("203.0.113.7:443")],
    );
    let answered = Instant::now();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&m),
        vec!["203.0.113.7".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(o.connects, vec![ALLOWED], "allowed right after the answer");
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "api");
    assert_eq!(e["dns_name"], "api.example.test");
    assert_eq!(e["dst_ip"], "203.0.113.7");
    assert_eq!(e["hook"], "connect4");
    assert_eq!(e["workload_id"], "wl-dns");

    let learned = t.learned("203.0.113.7");
    assert_eq!(learned.len(), 1, "{learned:?}");
    let l = &learned[0];
    assert_eq!(l["name"], "api.example.test");
    assert_eq!(l["ruleIds"], json!(["api"]));
    assert_eq!(l["cgroupId"], t.wl_id.to_string());
    assert_eq!(l["workloadId"], "wl-dns");
    let ttl = l["ttlRemainingMs"].as_u64().expect("ttl");
    assert!(ttl > 0 && ttl <= 2000, "{l}");
    // The rule's ports still apply to a learned address.
    assert_eq!(
        connect(&t, "203.0.113.7:80"),
        DENIED,
        "port 80 is not the rule's"
    );
    // ... and its protocol: UDP to the learned address is not the rule's.
    assert_eq!(
        dp::probe(&t.wl, &t.netns, Probe::UdpSendto, sa("203.0.113.7:443")).errno,
        DENIED,
        "udp is not the rule's protocol"
    );
    let status = t.ctl_json(&["status"]);
    assert_eq!(status["learnedAddresses"], 1, "{status}");
    // Learned for this workload only: another managed workload that did not resolve the name stays denied.
    let (other, _) = t.world.cgroup.child("other");
    let out = ctl(
        &t.world.socket,
        &["cgroup", "add", &t.world.payload_path(&other)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        dp::probe(&other, &t.netns, Probe::TcpConnect, sa("203.0.113.7:443")).errno,
        DENIED,
        "another workload never resolved it"
    );

    // Still allowed within the TTL; the same answer again at 1 s extends it to 3 s.
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(answered.elapsed()));
    let (o, _) = resolve_then_connect(
        &t,
        "api.example.test",
        RecordType::A,
        &[sa("203.0.113.7:443")],
    );
    let extended = Instant::now();
    assert_eq!(o.connects, vec![ALLOWED], "within the TTL");
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(answered.elapsed()));
    assert_eq!(
        connect(&t, "203.0.113.7:443"),
        ALLOWED,
        "past the first answer's TTL, within the second's"
    );
    // Denied once the TTL ran out, without a new answer.
    std::thread::sleep(Duration::from_millis(1900).saturating_sub(extended.elapsed()));
    let deadline = extended + Duration::from_millis(3500);
    loop {
        let errno = connect(&t, "203.0.113.7:443");
        if errno == DENIED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still allowed {:?} after the last answer (TTL 2 s)",
            extended.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !t.learned("203.0.113.7").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the expired address is still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_named_names_teach_and_patterns_match_one_label() {
    if support::skip("only_named_names_teach_and_patterns_match_one_label") {
        return;
    }
    let mut p = policy(named_rules(), "any");
    p["broker"] = json!([{"fqdn": "broker.example.test", "port": 8443}]);
    let t = Setup::new("dns-names", 1, &p, None);
    // Answered as the resolver answers (dnsQueries "any"), but nothing names it.
    let (o, m) = resolve_then_connect(
        &t,
        "other.example.test",
        RecordType::A,
        &[sa("203.0.113.8:443")],
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&m).len(), 1);
    assert_eq!(o.connects, vec![DENIED], "an unnamed name's address");
    t.event(o.pid, "DENY_DEFAULT");

    // (From a connected UDP socket, as glibc queries.)
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::UdpConnected,
        &query(3, "img.cdn.example.test", RecordType::A),
        Duration::from_secs(3),
        &[sa("203.0.113.9:443")],
    );
    assert_eq!(addresses(&o.message()).len(), 1);
    assert_eq!(o.connects, vec![ALLOWED], "one label below the pattern");
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "cdn");
    assert_eq!(e["dns_name"], "img.cdn.example.test");

    let (o, m) = resolve_then_connect(
        &t,
        "a.b.cdn.example.test",
        RecordType::A,
        &[sa("203.0.113.10:443")],
    );
    assert_eq!(addresses(&m).len(), 1);
    assert_eq!(o.connects, vec![DENIED], "two labels below the pattern");

    let learned: Vec<String> = t.dns()["learned"]
        .as_array()
        .expect("learned")
        .iter()
        .map(|l| l["address"].as_str().expect("address").to_owned())
        .collect();
    assert_eq!(learned, vec!["203.0.113.9".to_owned()]);

    // A deny rule by name: its learned host address wins over the wider CIDR allow.
    assert_eq!(connect(&t, "198.51.100.99:443"), ALLOWED, "the CIDR rule");
    let (o, _) = resolve_then_connect(
        &t,
        "blocked.example.test",
        RecordType::A,
        &[sa("198.51.100.99:443"), sa("198.51.100.98:443")],
    );
    assert_eq!(
        o.connects,
        vec![DENIED, ALLOWED],
        "the learned deny, its neighbour"
    );
    let e = t.event(o.pid, "DENY_EXPLICIT");
    assert_eq!(e["rule_id"], "blocked");
    assert_eq!(e["dns_name"], "blocked.example.test");

    // A broker by name: its address on its port, after the answer.
    assert_eq!(connect(&t, "192.0.2.80:8443"), DENIED);
    let (o, _) = resolve_then_connect(
        &t,
        "broker.example.test",
        RecordType::A,
        &[sa("192.0.2.80:8443"), sa("192.0.2.80:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED, DENIED], "the broker's port only");
    let e = t.event(o.pid, "ALLOW_BROKER");
    assert_eq!(e["dns_name"], "broker.example.test");
    let learned = t.learned("192.0.2.80");
    assert_eq!(learned.len(), 1, "{learned:?}");
    assert_eq!(learned[0]["broker"], true);
}

#[test]
fn cname_chains_and_aaaa_answers_teach() {
    if support::skip("cname_chains_and_aaaa_answers_teach") {
        return;
    }
    let t = Setup::new("dns-cname", 2, &policy(named_rules(), "any"), None);
    assert_eq!(connect(&t, "198.51.100.20:443"), DENIED);
    let (o, m) = resolve_then_connect(
        &t,
        "www.example.test",
        RecordType::A,
        &[sa("198.51.100.20:443")],
    );
    assert_eq!(
        addresses(&m),
        vec!["198.51.100.20".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(
        o.connects,
        vec![ALLOWED],
        "the chain's address, only the first name named"
    );
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "www");
    assert_eq!(e["dns_name"], "www.example.test");

    // A named name in the middle of the chain teaches too.
    let (o, m) = resolve_then_connect(
        &t,
        "alias.example.test",
        RecordType::A,
        &[sa("198.51.100.21:443")],
    );
    assert_eq!(addresses(&m).len(), 1);
    assert_eq!(
        o.connects,
        vec![ALLOWED],
        "www.example.test is in the chain"
    );
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "www");
    assert_eq!(e["dns_name"], "www.example.test", "the named name");

    assert_eq!(connect(&t, "[2001:db8::20]:443"), DENIED);
    let (o, m) = resolve_then_connect(
        &t,
        "v6.example.test",
        RecordType::AAAA,
        &[sa("[2001:db8::20]:443")],
    );
    assert_eq!(
        addresses(&m),
        vec!["2001:db8::20".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(o.connects, vec![ALLOWED], "an AAAA answer's address");
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "v6");
    assert_eq!(e["dns_name"], "v6.example.test");
    assert_eq!(e["hook"], "connect6");
    assert_eq!(e["dst_ip"], "2001:db8::20");

    // Through the IPv6 resolver: UDP (recvfrom names it) and TCP (getpeername names it).
    let r6 = sa(RESOLVER6);
    assert_eq!(connect(&t, "[2001:db8::21]:443"), DENIED);
    let o = workload_via(
        &t.wl,
        &t.netns,
        r6,
        Dns::Udp,
        &query(21, "six.example.test", RecordType::AAAA),
        Duration::from_secs(3),
        &[sa("[2001:db8::21]:443")],
    );
    assert_eq!(addresses(&o.message()).len(), 1);
    assert_eq!(
        o.connects,
        vec![ALLOWED],
        "learned through the IPv6 resolver"
    );
    assert_eq!(t.event(o.pid, "ALLOW_EXPLICIT")["rule_id"], "six");
    assert_eq!(connect(&t, "203.0.113.9:443"), DENIED);
    let o = workload_via(
        &t.wl,
        &t.netns,
        r6,
        Dns::Tcp,
        &query(22, "img.cdn.example.test", RecordType::A),
        Duration::from_secs(3),
        &[sa("203.0.113.9:443")],
    );
    assert_eq!(addresses(&o.message()).len(), 1);
    assert_eq!(
        o.connects,
        vec![ALLOWED],
        "learned over TCP through the IPv6 resolver"
    );
}

#[test]
fn a_truncated_answer_is_retried_over_tcp() {
    if support::skip("a_truncated_answer_is_retried_over_tcp") {
        return;
    }
    let t = Setup::new("dns-tc", 3, &policy(named_rules(), "any"), None);
    let q = query(7, "big.example.test", RecordType::A);
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Udp,
        &q,
        Duration::from_secs(3),
        &[sa("198.51.100.30:443")],
    );
    let m = o.message();
    assert!(m.metadata.truncation, "the UDP answer is truncated");
    assert!(m.answers.is_empty());
    assert_eq!(
        o.connects,
        vec![DENIED],
        "a truncated answer without records teaches nothing"
    );
    assert_eq!(t.stub.queries().1, 0, "no TCP query yet");

    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Tcp,
        &q,
        Duration::from_secs(3),
        &[sa("198.51.100.30:443"), sa("198.51.100.69:443")],
    );
    let m = o.message();
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 40);
    assert_eq!(
        o.connects,
        vec![ALLOWED, ALLOWED],
        "the full answer over TCP teaches"
    );
    assert_eq!(
        t.stub.queries().1,
        1,
        "the proxy forwarded the TCP query over TCP"
    );
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "big");
    assert_eq!(e["dns_name"], "big.example.test");
}

fn rcode(answer: &[u8]) -> u8 {
    assert!(answer.len() >= 12, "a DNS header: {answer:?}");
    answer[3] & 0x0f
}

#[test]
fn dns_queries_policy_refuses_unnamed_names() {
    if support::skip("dns_queries_policy_refuses_unnamed_names") {
        return;
    }
    let t = Setup::new("dns-refuse", 4, &policy(named_rules(), "policy"), None);
    let before = t.stub.queries();
    let q = query(9, "other.example.test", RecordType::A);
    let o = workload(&t.wl, &t.netns, Dns::Udp, &q, Duration::from_secs(3), &[]);
    assert_eq!(o.query_errno, 0);
    assert!(o.from_resolver);
    assert_eq!(rcode(&o.answer), 5, "REFUSED");
    assert_eq!(t.stub.queries(), before, "a refused query is not forwarded");
    let e = t.dns_event("DENY_DNS_QUERY", "other.example.test");
    assert_eq!(e["verdict"], "deny");
    assert_eq!(e["hook"], "dns");
    assert_eq!(e["dns_name"], "other.example.test");
    assert_eq!(e["dst_ip"], "10.0.0.53");
    assert_eq!(e["dst_port"], 53);
    assert_eq!(e["protocol"], "udp");
    assert_eq!(e["cgroup_id"], t.wl_id.to_string());

    // A named name is answered.
    let (o, m) = resolve_then_connect(
        &t,
        "api.example.test",
        RecordType::A,
        &[sa("203.0.113.7:443")],
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(o.connects, vec![ALLOWED]);
    // A name the pattern names is answered; one it does not (two labels below) is refused, over TCP too.
    let (o, _) = resolve_then_connect(
        &t,
        "img.cdn.example.test",
        RecordType::A,
        &[sa("203.0.113.9:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED]);
    let before = t.stub.queries();
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Tcp,
        &query(10, "a.b.cdn.example.test", RecordType::A),
        Duration::from_secs(3),
        &[],
    );
    assert_eq!(o.query_errno, 0);
    assert!(o.from_resolver);
    assert_eq!(rcode(&o.answer), 5, "REFUSED over TCP");
    assert_eq!(t.stub.queries(), before, "not forwarded");
    let e = t.dns_event("DENY_DNS_QUERY", "a.b.cdn.example.test");
    assert_eq!(e["protocol"], "tcp");
    assert_eq!(e["dst_ip"], "10.0.0.53");

    // Observe mode: the same query is answered and reported.
    let out = ctl(
        &t.world.socket,
        &["cgroup", "mode", &t.world.payload_path(&t.wl), "observe"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = workload(&t.wl, &t.netns, Dns::Udp, &q, Duration::from_secs(3), &[]);
    let m = o.message();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&m).len(), 1);
    let e = t.dns_event("OBSERVE_WOULD_DENY_DNS_QUERY", "other.example.test");
    assert_eq!(e["verdict"], "allow");
    assert_eq!(e["would_block"], true);
    assert_eq!(e["dns_name"], "other.example.test");
    assert_eq!(e["hook"], "dns");

    let c = &t.dns()["counters"];
    assert_eq!(c["refused"], 2, "{c}");
    assert_eq!(c["wouldRefuse"], 1, "{c}");
}

#[test]
fn a_replacement_keeps_the_addresses_of_names_still_named() {
    if support::skip("a_replacement_keeps_the_addresses_of_names_still_named") {
        return;
    }
    let both = policy(
        json!([
            {"id": "keep", "action": "allow", "fqdn": "keep.example.test"},
            {"id": "drop", "action": "allow", "fqdn": "drop.example.test"},
        ]),
        "any",
    );
    let t = Setup::new("dns-replace", 5, &both, None);
    let (o, _) = resolve_then_connect(
        &t,
        "keep.example.test",
        RecordType::A,
        &[sa("192.0.2.1:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED]);
    let (o, _) = resolve_then_connect(
        &t,
        "drop.example.test",
        RecordType::A,
        &[sa("192.0.2.2:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED]);
    let queried = t.stub.queries();

    let one = policy(
        json!([{"id": "keep2", "action": "allow", "fqdn": "keep.example.test"}]),
        "any",
    );
    let file = write_json(&t.world, "one.json", &one);
    let out = ctl(
        &t.world.socket,
        &["policy", "apply", file.to_str().expect("utf8")],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Skip,
        &[],
        Duration::ZERO,
        &[sa("192.0.2.1:443"), sa("192.0.2.2:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED, DENIED], "kept, dropped");
    assert_eq!(t.stub.queries(), queried, "without a new query");
    let e = t.event(o.pid, "ALLOW_EXPLICIT");
    assert_eq!(e["rule_id"], "keep2", "judged by the new policy's rule");
    assert_eq!(e["dns_name"], "keep.example.test");
    assert_eq!(e["policy_generation"], 2);
    let learned = t.dns()["learned"].clone();
    assert_eq!(
        learned.as_array().map(Vec::len),
        Some(1),
        "only the kept name's address: {learned}"
    );
    assert_eq!(learned[0]["address"], "192.0.2.1");
}

#[test]
fn a_dead_proxy_allows_nothing_new_and_a_restart_adopts() {
    if support::skip("a_dead_proxy_allows_nothing_new_and_a_restart_adopts") {
        return;
    }
    let mut t = Setup::new("dns-dead", 6, &policy(named_rules(), "any"), None);
    let (o, _) = resolve_then_connect(
        &t,
        "www.example.test",
        RecordType::A,
        &[sa("198.51.100.20:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED]);

    t.agent.kill9();
    // Steered to a port nobody serves: no answer, and the name's address stays denied.
    let before = t.stub.queries();
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Udp,
        &query(11, "api.example.test", RecordType::A),
        Duration::from_millis(500),
        &[sa("203.0.113.7:443"), sa("198.51.100.20:443")],
    );
    assert!(
        matches!(o.query_errno, libc::EAGAIN | libc::ECONNREFUSED),
        "no answer: {o:?}"
    );
    assert_eq!(
        o.connects,
        vec![DENIED, ALLOWED],
        "nothing new; the pinned address stays until its TTL"
    );
    let o = workload(
        &t.wl,
        &t.netns,
        Dns::Tcp,
        &query(12, "api.example.test", RecordType::A),
        Duration::from_millis(500),
        &[sa("203.0.113.7:443")],
    );
    assert_ne!(o.query_errno, 0, "no answer over TCP either: {o:?}");
    assert_eq!(o.connects, vec![DENIED]);
    assert_eq!(t.stub.queries(), before, "nothing reached the resolver");

    // A new agent without the proxy adopts the pins and says it is degraded because of the DNS proxy.
    t.agent = start_agent(&t.world, &t.netns, 0, None);
    let out = ctl(&t.world.socket, &["-o", "json", "health"], None);
    assert_eq!(
        out.status.code(),
        Some(6),
        "degraded: {}",
        text(&out.stdout)
    );
    let health: Value = serde_json::from_slice(&out.stdout).expect("health json");
    let reasons = health["degradedReasons"].to_string();
    assert!(reasons.contains("DNS proxy"), "{health}");
    t.agent.kill9();

    // With the proxy on its port again: the learned address is still listed (adopted), and still allowed.
    t.agent = start_agent(&t.world, &t.netns, t.port, None);
    let dns = t.dns();
    assert_eq!(dns["serving"], true, "{dns}");
    let learned = t.learned("198.51.100.20");
    assert_eq!(learned.len(), 1, "{dns}");
    assert_eq!(learned[0]["name"], "www.example.test");
    assert_eq!(learned[0]["ruleIds"], json!(["www"]));
    assert_eq!(connect(&t, "198.51.100.20:443"), ALLOWED);

    // The adopted policy's names are pinned: the agent is healthy and its answers teach again.
    let out = ctl(&t.world.socket, &["health"], None);
    assert_eq!(out.status.code(), Some(0), "healthy: {}", text(&out.stdout));
    let (o, _) = resolve_then_connect(
        &t,
        "api.example.test",
        RecordType::A,
        &[sa("203.0.113.7:443"), sa("198.51.100.20:443")],
    );
    assert_eq!(o.connects, vec![ALLOWED, ALLOWED]);
}
