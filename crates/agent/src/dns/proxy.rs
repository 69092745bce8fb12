//! The proxy's sockets and tasks (tokio): UDP and TCP listeners on each listening address, one task per UDP query
//! (at most [`DnsProxyConfig::max_in_flight`] at once) and one per TCP client connection (at most
//! [`DnsProxyConfig::max_tcp_connections`]), the pipeline of [`super`]'s documentation, and counters.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::message::{self, AnswerFacts, Query};
use super::sock_diag::SockDiag;
use super::{DnsBackend, LearnedAnswer, QueryVerdict, SteeredFlow};

/// How the proxy listens and how long it waits.
#[derive(Clone, Debug)]
pub struct DnsProxyConfig {
    /// Addresses to serve UDP and TCP on (e.g. `127.0.0.1:P` and `[::1]:P`). Each must name one address (not
    /// `0.0.0.0` or `::`): the client socket lookup needs the address a datagram arrived on. Port 0 on the first
    /// picks a free port, then used for every address (any other port 0 takes that one too).
    pub listen: Vec<SocketAddr>,
    /// How long an upstream resolver has to answer one query (no retry: the client retries).
    pub upstream_timeout: Duration,
    /// UDP queries handled at once; one more is dropped and counted.
    pub max_in_flight: usize,
    /// TCP client connections served at once; one more is closed and counted as dropped.
    pub max_tcp_connections: usize,
    /// How long a TCP client connection may stay idle between queries.
    pub tcp_idle_timeout: Duration,
}

impl DnsProxyConfig {
    /// Loopback v4 and v6 on `port` (0: pick one), with the default limits.
    pub fn loopback(port: u16) -> Self {
        Self {
            listen: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            ],
            upstream_timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            max_tcp_connections: 256,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// A snapshot of the proxy's counters (monotonic since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// Queries received (UDP datagrams and TCP messages), whatever became of them.
    pub queries: u64,
    /// Queries answered REFUSED by the policy.
    pub refused: u64,
    /// Queries reported as would-be-refused (observe mode) and answered normally.
    pub would_refuse: u64,
    /// Answers that taught the dataplane at least one address.
    pub learned: u64,
    /// Queries whose resolver did not answer in time, or could not be reached (answered SERVFAIL).
    pub upstream_failures: u64,
    /// Queries (or TCP connections) from a socket the dataplane did not steer, or whose socket was not found:
    /// dropped unanswered.
    pub unknown_flow: u64,
    /// Queries (or TCP connections) dropped because the in-flight cap was reached.
    pub dropped: u64,
    /// Queries that did not decode (answered FORMERR when they had a header, never forwarded).
    pub malformed: u64,
    /// Answers whose addresses the backend failed to learn (answered SERVFAIL).
    pub learn_failures: u64,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    refused: AtomicU64,
    would_refuse: AtomicU64,
    learned: AtomicU64,
    upstream_failures: AtomicU64,
    unknown_flow: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    learn_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    backend: Arc<dyn DnsBackend>,
    counters: Counters,
    config: DnsProxyConfig,
    /// Set when a listener task ends, for whatever reason (an error, a panic, shutdown).
    listener_ended: AtomicBool,
}

/// Sets [`Shared::listener_ended`] when a listener task ends, however it ends (a panic or an abort included).
struct ListenerGuard(Arc<Shared>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.listener_ended.store(true, Ordering::SeqCst);
    }
}

/// The running proxy. Dropping it stops it (as [`DnsProxy::shutdown`] does).
pub struct DnsProxy {
    shared: Arc<Shared>,
    local: Vec<SocketAddr>,
    listeners: Vec<JoinHandle<()>>,
}

impl DnsProxy {
    /// Binds UDP and TCP on every listening address and starts serving. Must be called inside a tokio runtime.
    pub async fn start(
        config: DnsProxyConfig,
        backend: Arc<dyn DnsBackend>,
    ) -> io::Result<DnsProxy> {
        if config.listen.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the DNS proxy needs a listening address",
            ));
        }
        if let Some(addr) = config.listen.iter().find(|a| a.ip().is_unspecified()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the DNS proxy listens on specific addresses, not {addr}"),
            ));
        }
        let (udp, tcp) = bind_all(&config.listen).await?;
        let local: Vec<SocketAddr> = udp
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<_>>()?;
        let shared = Arc::new(Shared {
            backend,
            counters: Counters::default(),
            config,
            listener_ended: AtomicBool::new(false),
        });
        let mut listeners = Vec::new();
        // Open every netlink socket before spawning, so that a failure surfaces here.
        let mut diags = Vec::new();
        for _ in 0..udp.len() + tcp.len() {
            diags.push(SockDiag::new()?);
        }
        let in_flight = Arc::new(Semaphore::new(shared.config.max_in_flight));
        let tcp_slots = Arc::new(Semaphore::new(shared.config.max_tcp_connections));
        for (socket, addr) in udp.into_iter().zip(&local) {
            let diag = diags
                .pop()
                .ok_or_else(|| io::Error::other("netlink sockets"))?;
            let guard = ListenerGuard(shared.clone());
            listeners.push(tokio::spawn(udp_listener(
                guard,
                Arc::new(socket),
                *addr,
                diag,
                in_flight.clone(),
            )));
        }
        for listener in tcp {
            let diag = diags
                .pop()
                .ok_or_else(|| io::Error::other("netlink sockets"))?;
            let guard = ListenerGuard(shared.clone());
            listeners.push(tokio::spawn(tcp_listener(
                guard,
                listener,
                diag,
                tcp_slots.clone(),
            )));
        }
        Ok(DnsProxy {
            shared,
            local,
            listeners,
        })
    }

    /// The addresses served (UDP and TCP alike), with the picked port when the configuration said 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The port served on every address.
    pub fn port(&self) -> u16 {
        self.local.first().map_or(0, SocketAddr::port)
    }

    pub fn counters(&self) -> DnsCounters {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsCounters {
            queries: get(&c.queries),
            refused: get(&c.refused),
            would_refuse: get(&c.would_refuse),
            learned: get(&c.learned),
            upstream_failures: get(&c.upstream_failures),
            unknown_flow: get(&c.unknown_flow),
            dropped: get(&c.dropped),
            malformed: get(&c.malformed),
            learn_failures: get(&c.learn_failures),
        }
    }

    /// True while every listener task runs; false for good once one has ended (the agent then reports itself
    /// degraded: fqdn rules learn nothing more).
    pub fn is_serving(&self) -> bool {
        !self.shared.listener_ended.load(Ordering::SeqCst)
            && self.listeners.iter().all(|h| !h.is_finished())
    }

    /// Stops the listeners and, with them, every query and connection they started.
    pub fn shutdown(&mut self) {
        for handle in &self.listeners {
            handle.abort();
        }
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds UDP then TCP on each address; with port 0 the first UDP bind picks the port. A picked port taken for
/// TCP (or on another address) is given up and another picked, a few times.
async fn bind_all(listen: &[SocketAddr]) -> io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let pick = listen[0].port() == 0;
    let mut last_err = None;
    for _ in 0..if pick { 8 } else { 1 } {
        match bind_once(listen).await {
            Ok(bound) => return Ok(bound),
            Err(e) if pick && e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not bind the DNS proxy")))
}

async fn bind_once(listen: &[SocketAddr]) -> io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let mut port = listen[0].port();
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in listen {
        let want = SocketAddr::new(addr.ip(), if addr.port() == 0 { port } else { addr.port() });
        let socket = UdpSocket::bind(want).await?;
        if port == 0 {
            port = socket.local_addr()?.port();
        }
        let bound = socket.local_addr()?;
        tcp.push(TcpListener::bind(bound).await?);
        udp.push(socket);
    }
    Ok((udp, tcp))
}

/// Client socket cookie → steered flow, counting what cannot be found. `None`: drop the query or connection.
fn find_flow(
    shared: &Shared,
    cookie: io::Result<Option<u64>>,
    client: SocketAddr,
) -> Option<SteeredFlow> {
    let flow = match cookie {
        Ok(Some(cookie)) => shared.backend.flow(cookie),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(%client, error = %e, "dns proxy: sock_diag lookup failed");
            None
        }
    };
    if flow.is_none() {
        bump(&shared.counters.unknown_flow);
    }
    flow
}

async fn udp_listener(
    guard: ListenerGuard,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    mut diag: SockDiag,
    in_flight: Arc<Semaphore>,
) {
    let shared = guard.0.clone();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        while tasks.try_join_next().is_some() {}
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors of earlier sends surface here on some kernels; they end nothing.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::error!(%local, error = %e, "dns proxy: UDP listener failed");
                return;
            }
        };
        bump(&shared.counters.queries);
        let Some(flow) = find_flow(&shared, diag.udp_client_cookie(client, local), client) else {
            continue;
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            bump(&shared.counters.dropped);
            continue;
        };
        let bytes = buf[..n].to_vec();
        let shared = shared.clone();
        let socket = socket.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(reply) =
                handle_query(&shared, &flow, &bytes, client, &mut Upstream::Udp).await
            {
                if let Err(e) = socket.send_to(&reply, client).await {
                    tracing::debug!(%client, error = %e, "dns proxy: could not answer over UDP");
                }
            }
        });
    }
}

async fn tcp_listener(
    guard: ListenerGuard,
    listener: TcpListener,
    mut diag: SockDiag,
    slots: Arc<Semaphore>,
) {
    let shared = guard.0.clone();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Per-connection failures (the peer reset before accept, descriptor exhaustion) end nothing.
                tracing::warn!(error = %e, "dns proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        let Some(flow) = find_flow(&shared, diag.tcp_client_cookie(client, local), client) else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            bump(&shared.counters.dropped);
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            serve_tcp_client(&shared, flow, stream, client).await;
        });
    }
}

/// One TCP client connection: length-prefixed queries in turn, forwarded over one upstream connection.
async fn serve_tcp_client(
    shared: &Shared,
    flow: SteeredFlow,
    mut stream: TcpStream,
    client: SocketAddr,
) {
    let mut upstream = Upstream::Tcp(None);
    loop {
        let read =
            tokio::time::timeout(shared.config.tcp_idle_timeout, read_framed(&mut stream)).await;
        let bytes = match read {
            Ok(Ok(Some(bytes))) => bytes,
            // Idle, closed, or broken: the connection ends.
            _ => return,
        };
        bump(&shared.counters.queries);
        let Some(reply) = handle_query(shared, &flow, &bytes, client, &mut upstream).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// A 2-byte length-prefixed DNS message; `None` at a clean end of stream.
async fn read_framed(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

async fn write_framed(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(bytes.len()).map_err(|_| io::Error::other("DNS message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await
}

/// How a query reaches its resolver: a fresh UDP socket per query, or the client connection's TCP connection
/// (opened at its first query, opened again after a failure).
enum Upstream {
    Udp,
    Tcp(Option<TcpStream>),
}

impl Upstream {
    fn is_tcp(&self) -> bool {
        matches!(self, Upstream::Tcp(_))
    }

    /// Sends the query and returns the first message that answers it (same id and question), or an error when
    /// none comes in time.
    async fn exchange(
        &mut self,
        to: SocketAddr,
        bytes: &[u8],
        query: &Query,
        timeout: Duration,
    ) -> io::Result<(Vec<u8>, AnswerFacts)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let result = tokio::time::timeout_at(deadline, self.exchange_inner(to, bytes, query)).await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.reset();
                Err(e)
            }
            Err(_) => {
                self.reset();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from {to} in {timeout:?}"),
                ))
            }
        }
    }

    fn reset(&mut self) {
        if let Upstream::Tcp(conn) = self {
            *conn = None;
        }
    }

    async fn exchange_inner(
        &mut self,
        to: SocketAddr,
        bytes: &[u8],
        query: &Query,
    ) -> io::Result<(Vec<u8>, AnswerFacts)> {
        match self {
            Upstream::Udp => {
                let bind = match to {
                    SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                    SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
                };
                let socket = UdpSocket::bind(bind).await?;
                socket.connect(to).await?;
                socket.send(bytes).await?;
                let mut buf = vec![0u8; 65535];
                loop {
                    let n = socket.recv(&mut buf).await?;
                    match message::parse_answer(&buf[..n], query) {
                        Ok(facts) => {
                            buf.truncate(n);
                            return Ok((buf, facts));
                        }
                        // Not the answer to this query (late, forged or garbled): keep waiting for it.
                        Err(e) => {
                            tracing::debug!(resolver = %to, error = %e, "dns proxy: ignored an upstream datagram")
                        }
                    }
                }
            }
            Upstream::Tcp(conn) => {
                let stream = match conn {
                    Some(stream) => stream,
                    None => conn.insert(TcpStream::connect(to).await?),
                };
                write_framed(stream, bytes).await?;
                // One query at a time on this connection: the next message must be its answer.
                let answer = read_framed(stream).await?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the resolver closed the connection",
                    )
                })?;
                let facts = message::parse_answer(&answer, query)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok((answer, facts))
            }
        }
    }
}

/// The pipeline for one query; returns the bytes to send back, or `None` to send nothing.
async fn handle_query(
    shared: &Shared,
    flow: &SteeredFlow,
    bytes: &[u8],
    client: SocketAddr,
    upstream: &mut Upstream,
) -> Option<Vec<u8>> {
    let backend = &shared.backend;
    let counters = &shared.counters;
    let tcp = upstream.is_tcp();
    let query = match message::parse_query(bytes) {
        Ok(query) => query,
        Err(e) => {
            bump(&counters.malformed);
            tracing::debug!(%client, error = %e, "dns proxy: undecodable query");
            return message::formerr_for_raw(bytes);
        }
    };
    // Every question is judged: a second question must not carry a name the first would not.
    for name in &query.names {
        match backend.verdict(flow, name) {
            QueryVerdict::Answer => {}
            QueryVerdict::Refuse => {
                bump(&counters.refused);
                backend.refused(flow, name, QueryVerdict::Refuse, tcp, client);
                return own_answer(&query, ResponseCode::Refused);
            }
            QueryVerdict::ObserveWouldRefuse => {
                bump(&counters.would_refuse);
                backend.refused(flow, name, QueryVerdict::ObserveWouldRefuse, tcp, client);
            }
        }
    }
    let (answer, facts) = match upstream
        .exchange(flow.original, bytes, &query, shared.config.upstream_timeout)
        .await
    {
        Ok(exchanged) => exchanged,
        Err(e) => {
            bump(&counters.upstream_failures);
            tracing::debug!(resolver = %flow.original, error = %e, "dns proxy: upstream failed");
            return own_answer(&query, ResponseCode::ServFail);
        }
    };
    // A truncated (TC) UDP answer is released unchanged; whatever addresses it does carry are learned first like
    // any others (a client that uses a partial answer must not be refused), and the client's TCP retry comes
    // through the TCP listener with the full answer.
    if let (Some(name), false) = (query.single_name(), facts.addrs.is_empty()) {
        let learned = LearnedAnswer {
            query_name: name,
            cname_chain: &facts.cname_chain,
            addrs: &facts.addrs,
        };
        match backend.learn(flow, &learned) {
            Ok(0) => {}
            Ok(_) => bump(&counters.learned),
            Err(e) => {
                bump(&counters.learn_failures);
                tracing::warn!(name, error = %e, "dns proxy: could not learn an answer's addresses; answering SERVFAIL");
                return own_answer(&query, ResponseCode::ServFail);
            }
        }
    }
    Some(answer)
}

fn own_answer(query: &Query, rcode: ResponseCode) -> Option<Vec<u8>> {
    match message::error_response(&query.message, rcode) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "dns proxy: could not encode its own answer");
            None
        }
    }
}
