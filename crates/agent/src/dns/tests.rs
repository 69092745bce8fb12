//! The proxy end to end on loopback, without root: a stub resolver (UDP and TCP on one port, answering from a
//! table), a fake backend that steers every cookie to it and records what the proxy tells it, and clients that
//! query the proxy as a steered workload would.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query as Question, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::sock_diag::socket_cookie;
use super::{
    DnsBackend, DnsCounters, DnsProxy, DnsProxyConfig, LearnedAnswer, QueryVerdict, SteeredFlow,
};

// ---------------------------------------------------------------------------------------------------------------
// Stub resolver

#[derive(Clone)]
struct Entry {
    rcode: ResponseCode,
    records: Vec<Record>,
    /// Over UDP, answer with the TC bit and no records (the full answer is served over TCP only).
    truncate_udp: bool,
    /// Answer only after this long.
    delay: Duration,
    /// Never answer.
    silent: bool,
}

impl Entry {
    fn ok(records: Vec<Record>) -> Self {
        Entry {
            rcode: ResponseCode::NoError,
            records,
            truncate_udp: false,
            delay: Duration::ZERO,
            silent: false,
        }
    }
}

struct Stub {
    addr: SocketAddr,
    udp_queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
}

fn rec(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(Name::from_str(name).unwrap(), ttl, data)
}

fn table() -> HashMap<(String, RecordType), Entry> {
    let mut t = HashMap::new();
    t.insert(
        ("api.example.com.".into(), RecordType::A),
        Entry::ok(vec![
            rec("api.example.com.", 300, RData::A(A::new(192, 0, 2, 10))),
            rec("api.example.com.", 300, RData::A(A::new(192, 0, 2, 11))),
        ]),
    );
    t.insert(
        ("api.example.com.".into(), RecordType::AAAA),
        Entry::ok(vec![rec(
            "api.example.com.",
            60,
            RData::AAAA(AAAA::from_str("2001:db8::10").unwrap()),
        )]),
    );
    t.insert(
        ("www.example.com.".into(), RecordType::A),
        Entry::ok(vec![
            rec(
                "www.example.com.",
                100,
                RData::CNAME(CNAME(Name::from_str("lb.example.net.").unwrap())),
            ),
            rec(
                "lb.example.net.",
                200,
                RData::CNAME(CNAME(Name::from_str("edge.example.org.").unwrap())),
            ),
            rec("edge.example.org.", 300, RData::A(A::new(198, 51, 100, 1))),
            // An address for a name outside the chain: never learned.
            rec(
                "unrelated.example.org.",
                300,
                RData::A(A::new(203, 0, 113, 66)),
            ),
        ]),
    );
    let mut big = Entry::ok(
        (1..=40)
            .map(|i| rec("big.example.com.", 30, RData::A(A::new(10, 0, 0, i))))
            .collect(),
    );
    big.truncate_udp = true;
    t.insert(("big.example.com.".into(), RecordType::A), big);
    t.insert(
        ("slow.example.com.".into(), RecordType::A),
        Entry {
            delay: Duration::from_millis(300),
            ..Entry::ok(vec![rec(
                "slow.example.com.",
                30,
                RData::A(A::new(192, 0, 2, 99)),
            )])
        },
    );
    t.insert(
        ("mute.example.com.".into(), RecordType::A),
        Entry {
            silent: true,
            ..Entry::ok(vec![])
        },
    );
    t
}

/// The stub's answer to a query, or `None` to stay silent.
fn stub_answer(
    table: &HashMap<(String, RecordType), Entry>,
    bytes: &[u8],
    udp: bool,
) -> Option<(Vec<u8>, Duration)> {
    let query = Message::from_vec(bytes).ok()?;
    let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.queries = query.queries.clone();
    let mut delay = Duration::ZERO;
    match query
        .queries
        .first()
        .and_then(|q| table.get(&(q.name.to_lowercase().to_ascii(), q.query_type)))
    {
        Some(entry) if entry.silent => return None,
        Some(entry) => {
            delay = entry.delay;
            response.metadata.response_code = entry.rcode;
            if udp && entry.truncate_udp {
                response.metadata.truncation = true;
            } else {
                response.answers = entry.records.clone();
            }
        }
        None => response.metadata.response_code = ResponseCode::NXDomain,
    }
    Some((response.to_vec().unwrap(), delay))
}

async fn start_stub() -> Stub {
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let table = Arc::new(table());
    let udp_queries = Arc::new(AtomicU64::new(0));
    let tcp_queries = Arc::new(AtomicU64::new(0));
    {
        let (table, count) = (table.clone(), udp_queries.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                if let Some((answer, delay)) = stub_answer(&table, &buf[..n], true) {
                    let udp = udp.clone();
                    if delay.is_zero() {
                        // No task and no timer on the fast path: the latency test measures the proxy, not this.
                        udp.send_to(&answer, from).await.unwrap();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            udp.send_to(&answer, from).await.unwrap();
                        });
                    }
                }
            }
        });
    }
    {
        let (table, count) = (table.clone(), tcp_queries.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let (table, count) = (table.clone(), count.clone());
                tokio::spawn(async move {
                    while let Ok(bytes) = read_framed(&mut stream).await {
                        count.fetch_add(1, Ordering::SeqCst);
                        let Some((answer, delay)) = stub_answer(&table, &bytes, false) else {
                            continue;
                        };
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        write_framed(&mut stream, &answer).await;
                    }
                });
            }
        });
    }
    Stub {
        addr,
        udp_queries,
        tcp_queries,
    }
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut bytes = vec![0u8; usize::from(len)];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_framed(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(bytes).await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// Fake backend

#[derive(Debug, Clone)]
struct Learned {
    done_at: Instant,
    name: String,
    chain: Vec<String>,
    addrs: Vec<(IpAddr, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    name: String,
    verdict: QueryVerdict,
    tcp: bool,
    client: SocketAddr,
}

struct Fake {
    upstream: SocketAddr,
    refuse: HashSet<String>,
    observe: HashSet<String>,
    steer_nothing: bool,
    panic_in_flow: bool,
    fail_learn: AtomicBool,
    /// How long `learn` takes (the answer must wait for it).
    learn_delay: Duration,
    cookies: Mutex<Vec<u64>>,
    learned: Mutex<Vec<Learned>>,
    refusals: Mutex<Vec<Refusal>>,
}

impl Fake {
    fn new(upstream: SocketAddr) -> Self {
        Fake {
            upstream,
            refuse: HashSet::new(),
            observe: HashSet::new(),
            steer_nothing: false,
            panic_in_flow: false,
            fail_learn: AtomicBool::new(false),
            learn_delay: Duration::from_millis(30),
            cookies: Mutex::new(Vec::new()),
            learned: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        }
    }

    fn flow_of(&self) -> SteeredFlow {
        SteeredFlow {
            original: self.upstream,
            cgroup_id: 42,
            managed_cgroup_id: 7,
        }
    }
}

impl DnsBackend for Fake {
    fn flow(&self, cookie: u64) -> Option<SteeredFlow> {
        self.cookies.lock().unwrap().push(cookie);
        assert!(!self.panic_in_flow, "backend bug");
        (!self.steer_nothing).then(|| self.flow_of())
    }

    fn verdict(&self, flow: &SteeredFlow, name: &str) -> QueryVerdict {
        assert_eq!(*flow, self.flow_of());
        if self.refuse.contains(name) {
            QueryVerdict::Refuse
        } else if self.observe.contains(name) {
            QueryVerdict::ObserveWouldRefuse
        } else {
            QueryVerdict::Answer
        }
    }

    fn learn(&self, flow: &SteeredFlow, answer: &LearnedAnswer<'_>) -> Result<usize, String> {
        assert_eq!(*flow, self.flow_of());
        if !self.learn_delay.is_zero() {
            std::thread::sleep(self.learn_delay);
        }
        if self.fail_learn.load(Ordering::SeqCst) {
            return Err("map full".into());
        }
        self.learned.lock().unwrap().push(Learned {
            done_at: Instant::now(),
            name: answer.query_name.to_string(),
            chain: answer.cname_chain.to_vec(),
            addrs: answer.addrs.to_vec(),
        });
        Ok(answer.addrs.len())
    }

    fn refused(
        &self,
        flow: &SteeredFlow,
        name: &str,
        verdict: QueryVerdict,
        protocol_tcp: bool,
        client: SocketAddr,
    ) {
        assert_eq!(*flow, self.flow_of());
        self.refusals.lock().unwrap().push(Refusal {
            name: name.to_string(),
            verdict,
            tcp: protocol_tcp,
            client,
        });
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Clients

fn query(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Question::query(Name::from_str(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

struct Reply {
    message: Message,
    at: Instant,
    cookie: u64,
    local: SocketAddr,
}

/// Sends one query over UDP from a fresh socket; `None` when nothing comes back within `wait`.
async fn udp_ask(proxy: SocketAddr, bytes: &[u8], wait: Duration) -> (Option<Reply>, u64) {
    let bind: SocketAddr = if proxy.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let socket = UdpSocket::bind(bind).await.unwrap();
    let cookie = socket_cookie(socket.as_fd()).unwrap();
    socket.connect(proxy).await.unwrap();
    socket.send(bytes).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            let at = Instant::now();
            let message = Message::from_vec(&buf[..n]).unwrap();
            (
                Some(Reply {
                    message,
                    at,
                    cookie,
                    local: socket.local_addr().unwrap(),
                }),
                cookie,
            )
        }
        _ => (None, cookie),
    }
}

async fn tcp_ask(stream: &mut TcpStream, bytes: &[u8]) -> Reply {
    let cookie = socket_cookie(stream.as_fd()).unwrap();
    write_framed(stream, bytes).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_framed(stream))
        .await
        .unwrap()
        .unwrap();
    Reply {
        message: Message::from_vec(&answer).unwrap(),
        at: Instant::now(),
        cookie,
        local: stream.local_addr().unwrap(),
    }
}

async fn start(fake: Fake) -> (DnsProxy, Arc<Fake>) {
    let fake = Arc::new(fake);
    let mut config = DnsProxyConfig::loopback(0);
    config.upstream_timeout = Duration::from_millis(500);
    let proxy = DnsProxy::start(config, fake.clone()).await.unwrap();
    (proxy, fake)
}

const WAIT: Duration = Duration::from_secs(5);

fn addrs(reply: &Reply) -> Vec<IpAddr> {
    reply
        .message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_are_learned_before_the_client_gets_the_answer() {
    let stub = start_stub().await;
    let (proxy, fake) = start(Fake::new(stub.addr)).await;
    assert!(proxy.is_serving());
    let [v4, v6] = [proxy.local_addrs()[0], proxy.local_addrs()[1]];
    assert_eq!(v4.port(), v6.port());
    assert!(v4.is_ipv4() && v6.is_ipv6() && v4.port() != 0);

    let (reply, _) = udp_ask(v4, &query(0x1111, "API.example.com.", RecordType::A), WAIT).await;
    let reply = reply.expect("an answer over 127.0.0.1");
    assert_eq!(reply.message.metadata.id, 0x1111);
    assert_eq!(
        addrs(&reply),
        vec![
            "192.0.2.10".parse::<IpAddr>().unwrap(),
            "192.0.2.11".parse().unwrap()
        ]
    );
    let learned = fake.learned.lock().unwrap().clone();
    assert_eq!(learned.len(), 1);
    assert_eq!(learned[0].name, "api.example.com");
    assert!(learned[0].chain.is_empty());
    assert_eq!(
        learned[0].addrs,
        vec![
            ("192.0.2.10".parse().unwrap(), 300),
            ("192.0.2.11".parse().unwrap(), 300)
        ]
    );
    assert!(
        learned[0].done_at <= reply.at,
        "the answer was released before learn returned"
    );
    // The backend was asked for the flow of the client's own socket.
    assert_eq!(fake.cookies.lock().unwrap().as_slice(), &[reply.cookie]);

    let (reply6, _) = udp_ask(
        v6,
        &query(0x2222, "api.example.com.", RecordType::AAAA),
        WAIT,
    )
    .await;
    let reply6 = reply6.expect("an answer over [::1]");
    assert_eq!(
        addrs(&reply6),
        vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
    );
    let learned = fake.learned.lock().unwrap().clone();
    assert_eq!(learned.len(), 2);
    assert_eq!(
        learned[1].addrs,
        vec![("2001:db8::10".parse().unwrap(), 60)]
    );
    assert!(learned[1].done_at <= reply6.at);
    assert_eq!(fake.cookies.lock().unwrap()[1], reply6.cookie);

    let c = proxy.counters();
    assert_eq!(
        (c.queries, c.learned, c.unknown_flow, c.refused),
        (2, 2, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_chain_teaches_the_chains_addresses_only() {
    let stub = start_stub().await;
    let (proxy, fake) = start(Fake::new(stub.addr)).await;
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(7, "www.example.com.", RecordType::A),
        WAIT,
    )
    .await;
    let reply = reply.unwrap();
    // The client gets the resolver's answer unchanged, unrelated record included.
    assert_eq!(reply.message.answers.len(), 4);
    let learned = fake.learned.lock().unwrap().clone();
    assert_eq!(learned.len(), 1);
    assert_eq!(learned[0].name, "www.example.com");
    assert_eq!(
        learned[0].chain,
        vec!["lb.example.net".to_string(), "edge.example.org".to_string()]
    );
    // The smallest TTL on the way: the first CNAME's 100.
    assert_eq!(
        learned[0].addrs,
        vec![("198.51.100.1".parse().unwrap(), 100)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_name_gets_refused_with_the_same_id_and_is_never_forwarded() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.refuse.insert("api.example.com".into());
    let (proxy, fake) = start(fake).await;
    let (reply, _) = udp_ask(
        proxy.local_addrs()[1],
        &query(0xabcd, "api.EXAMPLE.com.", RecordType::A),
        WAIT,
    )
    .await;
    let reply = reply.unwrap();
    assert_eq!(reply.message.metadata.id, 0xabcd);
    assert_eq!(reply.message.metadata.response_code, ResponseCode::Refused);
    assert_eq!(reply.message.metadata.message_type, MessageType::Response);
    assert_eq!(
        reply.message.queries[0].name,
        Name::from_str("api.EXAMPLE.com.").unwrap()
    );
    assert!(reply.message.answers.is_empty());
    assert_eq!(stub.udp_queries.load(Ordering::SeqCst), 0);
    assert!(fake.learned.lock().unwrap().is_empty());
    let refusals = fake.refusals.lock().unwrap().clone();
    assert_eq!(
        refusals,
        vec![Refusal {
            name: "api.example.com".into(),
            verdict: QueryVerdict::Refuse,
            tcp: false,
            client: reply.local
        }]
    );
    let c = proxy.counters();
    assert_eq!((c.queries, c.refused, c.would_refuse), (1, 1, 0));

    // Over TCP too, reported as TCP.
    let mut stream = TcpStream::connect(proxy.local_addrs()[0]).await.unwrap();
    let reply = tcp_ask(
        &mut stream,
        &query(0x0102, "api.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(reply.message.metadata.response_code, ResponseCode::Refused);
    assert_eq!(reply.message.metadata.id, 0x0102);
    assert!(fake.refusals.lock().unwrap()[1].tcp);
    assert_eq!(stub.tcp_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_question_cannot_smuggle_a_refused_name() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.refuse.insert("secret.exfil.example".into());
    let (proxy, fake) = start(fake).await;
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.queries.push(Question::query(
        Name::from_str("api.example.com.").unwrap(),
        RecordType::A,
    ));
    m.queries.push(Question::query(
        Name::from_str("secret.exfil.example.").unwrap(),
        RecordType::A,
    ));
    let (reply, _) = udp_ask(proxy.local_addrs()[0], &m.to_vec().unwrap(), WAIT).await;
    assert_eq!(
        reply.unwrap().message.metadata.response_code,
        ResponseCode::Refused
    );
    assert_eq!(stub.udp_queries.load(Ordering::SeqCst), 0);
    assert_eq!(
        fake.refusals.lock().unwrap()[0].name,
        "secret.exfil.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_answers_normally_but_reports() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.observe.insert("api.example.com".into());
    let (proxy, fake) = start(fake).await;
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(5, "api.example.com.", RecordType::A),
        WAIT,
    )
    .await;
    let reply = reply.unwrap();
    assert_eq!(reply.message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&reply).len(), 2);
    let refusals = fake.refusals.lock().unwrap().clone();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].verdict, QueryVerdict::ObserveWouldRefuse);
    assert_eq!(refusals[0].name, "api.example.com");
    let c = proxy.counters();
    assert_eq!((c.refused, c.would_refuse, c.learned), (0, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_learn_answers_servfail_instead_of_the_addresses() {
    let stub = start_stub().await;
    let fake = Fake::new(stub.addr);
    fake.fail_learn.store(true, Ordering::SeqCst);
    let (proxy, _fake) = start(fake).await;
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(6, "api.example.com.", RecordType::A),
        WAIT,
    )
    .await;
    let reply = reply.unwrap();
    assert_eq!(reply.message.metadata.id, 6);
    assert_eq!(reply.message.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.message.answers.is_empty());
    assert_eq!(stub.udp_queries.load(Ordering::SeqCst), 1);
    let c = proxy.counters();
    assert_eq!((c.learn_failures, c.learned), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_udp_answer_passes_through_and_the_tcp_retry_learns() {
    let stub = start_stub().await;
    let (proxy, fake) = start(Fake::new(stub.addr)).await;
    let q = query(0x7777, "big.example.com.", RecordType::A);
    let (reply, _) = udp_ask(proxy.local_addrs()[0], &q, WAIT).await;
    let reply = reply.unwrap();
    assert!(reply.message.metadata.truncation);
    assert!(reply.message.answers.is_empty());
    assert!(fake.learned.lock().unwrap().is_empty());

    for addr in proxy.local_addrs() {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let reply = tcp_ask(&mut stream, &q).await;
        assert!(!reply.message.metadata.truncation);
        assert_eq!(reply.message.answers.len(), 40);
        let learned = fake.learned.lock().unwrap().last().cloned().unwrap();
        assert_eq!(learned.addrs.len(), 40);
        assert!(learned.done_at <= reply.at);
        assert_eq!(*fake.cookies.lock().unwrap().last().unwrap(), reply.cookie);
        // A second query on the same connection reuses it.
        let reply = tcp_ask(
            &mut stream,
            &query(0x7778, "api.example.com.", RecordType::AAAA),
        )
        .await;
        assert_eq!(reply.message.metadata.id, 0x7778);
        assert_eq!(
            addrs(&reply),
            vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
        );
    }
    assert_eq!(stub.tcp_queries.load(Ordering::SeqCst), 4);
    assert_eq!(proxy.counters().learned, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_flow_gets_no_answer_and_is_counted() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.steer_nothing = true;
    let (proxy, fake) = start(fake).await;
    let (reply, cookie) = udp_ask(
        proxy.local_addrs()[0],
        &query(1, "api.example.com.", RecordType::A),
        Duration::from_millis(300),
    )
    .await;
    assert!(reply.is_none());
    assert_eq!(fake.cookies.lock().unwrap().as_slice(), &[cookie]);
    let mut stream = TcpStream::connect(proxy.local_addrs()[1]).await.unwrap();
    // The proxy closes a connection it cannot attribute (possibly before this write).
    let q = query(2, "api.example.com.", RecordType::A);
    let _ = stream.write_u16(q.len() as u16).await;
    let _ = stream.write_all(&q).await;
    let read = tokio::time::timeout(WAIT, read_framed(&mut stream))
        .await
        .unwrap();
    assert!(read.is_err());
    assert_eq!(
        stub.udp_queries.load(Ordering::SeqCst) + stub.tcp_queries.load(Ordering::SeqCst),
        0
    );
    let c = proxy.counters();
    assert_eq!(c.unknown_flow, 2);
    assert_eq!(c.learned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_passes_through_and_a_silent_resolver_gets_servfail() {
    let stub = start_stub().await;
    let (proxy, fake) = start(Fake::new(stub.addr)).await;
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(3, "nowhere.example.com.", RecordType::A),
        WAIT,
    )
    .await;
    assert_eq!(
        reply.unwrap().message.metadata.response_code,
        ResponseCode::NXDomain
    );
    let started = Instant::now();
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(4, "mute.example.com.", RecordType::A),
        WAIT,
    )
    .await;
    let reply = reply.unwrap();
    assert_eq!(reply.message.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.message.metadata.id, 4);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(fake.learned.lock().unwrap().is_empty());
    let c = proxy.counters();
    assert_eq!((c.upstream_failures, c.learned), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_handled_concurrently_and_the_cap_drops_the_rest() {
    let stub = start_stub().await;
    let fake = Arc::new(Fake::new(stub.addr));
    let mut config = DnsProxyConfig::loopback(0);
    config.max_in_flight = 4;
    let proxy = DnsProxy::start(config, fake.clone()).await.unwrap();
    let addr = proxy.local_addrs()[0];
    // 4 slow queries (300 ms each) at once finish together, not one after another.
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..4 {
        slow.push(tokio::spawn(async move {
            udp_ask(addr, &query(i, "slow.example.com.", RecordType::A), WAIT)
                .await
                .0
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fifth while they are in flight is dropped.
    let (fifth, _) = udp_ask(
        addr,
        &query(99, "api.example.com.", RecordType::A),
        Duration::from_millis(100),
    )
    .await;
    assert!(fifth.is_none());
    for handle in slow {
        assert!(handle.await.unwrap().is_some());
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.counters().dropped, 1);
    // And capacity comes back.
    let (again, _) = udp_ask(addr, &query(100, "api.example.com.", RecordType::A), WAIT).await;
    assert!(again.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_answered_formerr_and_never_forwarded() {
    let stub = start_stub().await;
    let (proxy, _fake) = start(Fake::new(stub.addr)).await;
    let mut bytes = query(0x4242, "api.example.com.", RecordType::A);
    bytes.truncate(20);
    let (reply, _) = udp_ask(proxy.local_addrs()[0], &bytes, WAIT).await;
    let reply = reply.unwrap();
    assert_eq!(reply.message.metadata.id, 0x4242);
    assert_eq!(reply.message.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(stub.udp_queries.load(Ordering::SeqCst), 0);
    assert_eq!(proxy.counters().malformed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_serving() {
    let stub = start_stub().await;
    let (mut proxy, _fake) = start(Fake::new(stub.addr)).await;
    let addr = proxy.local_addrs()[0];
    assert!(proxy.is_serving());
    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!proxy.is_serving());
    let (reply, _) = udp_ask(
        addr,
        &query(1, "api.example.com.", RecordType::A),
        Duration::from_millis(200),
    )
    .await;
    assert!(reply.is_none());
    assert!(TcpStream::connect(addr).await.is_err());
    assert_eq!(proxy.counters(), DnsCounters::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_listener_means_not_serving() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.panic_in_flow = true;
    let (proxy, _fake) = start(fake).await;
    assert!(proxy.is_serving());
    let (reply, _) = udp_ask(
        proxy.local_addrs()[0],
        &query(1, "api.example.com.", RecordType::A),
        Duration::from_millis(200),
    )
    .await;
    assert!(reply.is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!proxy.is_serving());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unspecified_listening_addresses_are_rejected() {
    let fake = Arc::new(Fake::new("127.0.0.1:53".parse().unwrap()));
    let mut config = DnsProxyConfig::loopback(0);
    config.listen = vec!["0.0.0.0:0".parse().unwrap()];
    assert!(DnsProxy::start(config, fake).await.is_err());
}

/// p50/p99 of proxied vs direct queries against the stub, 2000 each, one at a time over UDP v4.
/// `cargo test --release -p interceptor-ebpf-agent --lib dns::tests::latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency_proxied_vs_direct() {
    let stub = start_stub().await;
    let mut fake = Fake::new(stub.addr);
    fake.learn_delay = Duration::ZERO;
    let (proxy, _fake) = start(fake).await;
    let runs = 2000;
    let measure = |to: SocketAddr| async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(to).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs {
            let q = query(i as u16, "api.example.com.", RecordType::A);
            let t = Instant::now();
            socket.send(&q).await.unwrap();
            let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(Message::from_vec(&buf[..n]).unwrap().metadata.id, i as u16);
        }
        times.sort();
        times
    };
    let direct = measure(stub.addr).await;
    let proxied = measure(proxy.local_addrs()[0]).await;
    let pct = |t: &[Duration], p: usize| t[(t.len() * p / 100).min(t.len() - 1)];
    println!(
        "direct  p90 {:?} p95 {:?}; proxied p90 {:?} p95 {:?}",
        pct(&direct, 90),
        pct(&direct, 95),
        pct(&proxied, 90),
        pct(&proxied, 95)
    );
    println!(
        "direct:  p50 {:?} p99 {:?}\nproxied: p50 {:?} p99 {:?}\nadded:   p50 {:?} p99 {:?}",
        pct(&direct, 50),
        pct(&direct, 99),
        pct(&proxied, 50),
        pct(&proxied, 99),
        pct(&proxied, 50).saturating_sub(pct(&direct, 50)),
        pct(&proxied, 99).saturating_sub(pct(&direct, 99)),
    );
}
