//! Prometheus metrics and the `/metrics` HTTP endpoint, in Prometheus text 0.0.4 or OpenMetrics 1.0 as the
//! request's `Accept` header asks (`exposition.rs`). Every family has `# HELP` and `# TYPE`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `interceptor_ebpf_build_info` | gauge (1) | `version`, `revision` (`INTERCEPTOR_EBPF_REVISION` at build time), `rustc`, `target` |
//! | `interceptor_ebpf_verdicts_total` | counter | `reason_code`, `hook` (the kernel's exact counts) |
//! | `interceptor_ebpf_events_delivered_total` | counter | `reason_code`, `hook` (events the agent received) |
//! | `interceptor_ebpf_kernel_events_emitted_total` | counter | |
//! | `interceptor_ebpf_events_dropped_total` | counter | `stage`: `kernel`, `queue`, `subscriber`, `log` |
//! | `interceptor_ebpf_control_requests_total` | counter | `command`, `outcome` (`ok` or the reason code) |
//! | `interceptor_ebpf_control_request_duration_seconds` | histogram | `command` (`unknown` when unreadable) |
//! | `interceptor_ebpf_control_connections` | gauge | |
//! | `interceptor_ebpf_control_connections_refused_total` | counter | `reason`: `max_clients`, `peer_limit`, `reserved` |
//! | `interceptor_ebpf_event_subscribers` | gauge | |
//! | `interceptor_ebpf_policy_generation` | gauge | |
//! | `interceptor_ebpf_policy_applied_timestamp_seconds` | gauge | |
//! | `interceptor_ebpf_policy_apply_duration_seconds` | histogram | |
//! | `interceptor_ebpf_managed_cgroups` | gauge | |
//! | `interceptor_ebpf_degraded` | gauge | |
//! | `interceptor_ebpf_heartbeat_age_seconds` | gauge | |
//! | `interceptor_ebpf_heartbeat_grace_seconds` | gauge | |
//! | `interceptor_ebpf_layer_active` | gauge | `layer` (every bypass layer, 1 while in force) |
//! | `interceptor_ebpf_sockets_refused_total` | counter | `mode`: `enforce` (refused), `observe` (would have been) |
//! | `interceptor_ebpf_egress_packets_dropped_total` | counter | `mode`: `enforce` (dropped), `observe` (would have been) |
//! | `interceptor_ebpf_egress_packets_judged_total` | counter | |
//! | `interceptor_ebpf_socket_marks_written_total` | counter | |
//! | `interceptor_ebpf_dns_proxy_serving` | gauge | |
//! | `interceptor_ebpf_dns_queries_total` | counter | |
//! | `interceptor_ebpf_dns_queries_refused_total` | counter | `mode`: `enforce` (REFUSED), `observe` (would have been) |
//! | `interceptor_ebpf_dns_queries_failed_total` | counter | `reason`: `upstream`, `learn`, `unknown_flow`, `overload`, `malformed` |
//! | `interceptor_ebpf_dns_learned_addresses` | gauge | |
//! | `interceptor_ebpf_dns_addresses_learned_total` | counter | |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | counter, gauges | (`process_metrics.rs`) |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use interceptor_ebpf_core::contract::control::protocol::Command;
use interceptor_ebpf_core::contract::hook::Hook;
use interceptor_ebpf_core::contract::layer::{Layer, LayerCounters};
use interceptor_ebpf_core::contract::reason_codes::{ControlAuthzCode, DataplaneReasonCode};
use interceptor_ebpf_core::contract::verdict_counts::{all_pairs, count_of, VerdictCount};

use super::exposition::{Encoder, Format, Kind};
use super::fairness::Refusal;
use super::histogram::{DurationHistogram, CONTROL_REQUEST_BOUNDS, POLICY_APPLY_BOUNDS};
use super::process_metrics;

/// What the dataplane reports at scrape time, read from `Dataplane::status` just before encoding.
#[derive(Clone, Debug, Default)]
pub struct DataplaneCounters {
    pub events_emitted: u64,
    pub dropped_in_kernel: u64,
    pub dropped_in_queue: u64,
    pub managed_cgroups: u64,
    pub layer_counters: LayerCounters,
    /// The kernel's verdict counters (`DataplaneStatus::verdicts`): `interceptor_ebpf_verdicts_total`.
    pub verdicts: Vec<VerdictCount>,
    /// Rules by name: the DNS proxy's counters and the learned addresses (`interceptor_ebpf_dns_*`).
    pub dns: DnsMetrics,
}

/// The `interceptor_ebpf_dns_*` families, read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct DnsMetrics {
    /// The proxy runs (`--dns-proxy-port` is not 0) and its listeners are alive.
    pub serving: bool,
    pub proxy: crate::dns::DnsCounters,
    /// Learned addresses that have not expired.
    pub learned_addresses: u64,
    /// Addresses learned since the agent started (an address learned again counts again).
    pub learned_total: u64,
}

/// Values owned elsewhere (subscriber and log drops, generation, heartbeat), read on each scrape.
pub trait Sampler: Send + Sync + 'static {
    fn dropped_subscriber(&self) -> u64;
    fn dropped_log(&self) -> u64;
    fn generation(&self) -> u64;
    fn heartbeat_age(&self) -> Duration;
    /// `BROKER_EBPF_HEARTBEAT_GRACE_MS`: the age past which the kernel degrades managed cgroups.
    fn heartbeat_grace(&self) -> Duration;
    fn degraded(&self) -> bool;
    /// Whether the dataplane attached (or adopted) this bypass layer.
    fn layer_active(&self, layer: Layer) -> bool;
}

/// A gauge the agent moves itself (open connections, subscribers).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the binary was built from (build.rs): `interceptor_ebpf_build_info`'s labels, empty ones left out.
const BUILD_LABELS: [(&str, &str); 4] = [
    ("version", env!("CARGO_PKG_VERSION")),
    ("revision", env!("INTERCEPTOR_EBPF_REVISION")),
    ("rustc", env!("INTERCEPTOR_EBPF_RUSTC_VERSION")),
    ("target", env!("INTERCEPTOR_EBPF_TARGET")),
];

/// The label value of a request whose command could not be read.
const UNKNOWN_COMMAND: &str = "unknown";

/// The agent's metrics.
pub struct Metrics {
    sampler: Arc<dyn Sampler>,
    /// By `verdict_index`: every reason code and hook from the start, so a rate over a code that has not fired
    /// yet reads 0.
    delivered: Box<[AtomicU64]>,
    /// `(command, outcome)`: every command with `ok` from the start (so the family always has samples and a rate
    /// over a command not yet sent reads 0), and every other pair once seen.
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// One per command of `Command::ALL`, then `unknown`.
    request_duration: Box<[DurationHistogram]>,
    connections: Gauge,
    /// By `Refusal::ALL`.
    refused: [AtomicU64; Refusal::ALL.len()],
    subscribers: Gauge,
    policy_apply: DurationHistogram,
    /// Seconds since the epoch (`f64` bits) of the last policy this agent applied; 0: none yet.
    policy_applied_at: AtomicU64,
}

fn verdict_index(code: DataplaneReasonCode, hook: Hook) -> Option<usize> {
    let c = DataplaneReasonCode::ALL.iter().position(|x| *x == code)?;
    let h = Hook::ALL.iter().position(|x| *x == hook)?;
    Some(c * Hook::ALL.len() + h)
}

fn command_index(command: Option<Command>) -> usize {
    command
        .and_then(|c| Command::ALL.iter().position(|x| *x == c))
        .unwrap_or(Command::ALL.len())
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new(sampler: Arc<dyn Sampler>) -> Metrics {
        Metrics {
            sampler,
            delivered: (0..DataplaneReasonCode::ALL.len() * Hook::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            requests: Mutex::new(
                Command::ALL
                    .iter()
                    .map(|c| ((c.as_str(), "ok"), 0))
                    .collect(),
            ),
            request_duration: (0..=Command::ALL.len())
                .map(|_| DurationHistogram::new(CONTROL_REQUEST_BOUNDS))
                .collect(),
            connections: Gauge::default(),
            refused: Default::default(),
            subscribers: Gauge::default(),
            policy_apply: DurationHistogram::new(POLICY_APPLY_BOUNDS),
            policy_applied_at: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// A verdict event the pump received (`interceptor_ebpf_events_delivered_total`).
    pub fn event_delivered(&self, code: DataplaneReasonCode, hook: Hook) {
        if let Some(i) = verdict_index(code, hook) {
            self.delivered[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `outcome`: `None` = ok.
    pub fn request(&self, command: Option<Command>, outcome: Option<ControlAuthzCode>) {
        let key = (
            command.map_or(UNKNOWN_COMMAND, Command::as_str),
            outcome.map_or("ok", ControlAuthzCode::as_str),
        );
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry(key).or_insert(0) += 1;
        }
    }

    /// How long the agent took to answer one request, from its complete line to its reply
    /// (`interceptor_ebpf_control_request_duration_seconds`).
    pub fn request_duration(&self, command: Option<Command>, took: Duration) {
        self.request_duration[command_index(command)].observe(took);
    }

    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// A connection refused at accept (`fairness`).
    pub fn connection_refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn subscribers(&self) -> &Gauge {
        &self.subscribers
    }

    /// One run of `Dataplane::replace_policy` (the policy file at start, or ReplacePolicySnapshot), and when it
    /// was applied (`None`: it failed).
    pub fn policy_apply(&self, took: Duration, applied_at: Option<SystemTime>) {
        self.policy_apply.observe(took);
        if let Some(at) = applied_at {
            let seconds = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.policy_applied_at
                .store(seconds.to_bits(), Ordering::Relaxed);
        }
    }

    /// The exposition in `format`, with the dataplane's counters of this scrape.
    pub fn encode(&self, format: Format, dp: &DataplaneCounters) -> String {
        let mut e = Encoder::new(format);
        let build: Vec<(&str, &str)> = BUILD_LABELS
            .iter()
            .copied()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        e.family(
            "interceptor_ebpf_build_info",
            Kind::Gauge,
            "Always 1; the labels say what the agent was built from: version, revision (when the build was given \
             one), rustc version and target",
        )
        .sample(&build, 1u64);

        // Read from the kernel's counters at this scrape, never accumulated here: equal to the number of
        // verdicts the programs made, whatever the event stream dropped. Every pair is listed, 0 until it fires.
        let mut f = e.family(
            "interceptor_ebpf_verdicts",
            Kind::Counter,
            "Verdicts the kernel programs made, by reason code and hook (counted in the kernel: exact, whatever the \
             events' sampling and drops; since the pinned state was created)",
        );
        for (hook, code) in all_pairs() {
            f.sample(
                &[("reason_code", code.as_str()), ("hook", hook.as_str())],
                count_of(&dp.verdicts, hook, code),
            );
        }
        let mut f = e.family(
            "interceptor_ebpf_events_delivered",
            Kind::Counter,
            "Verdict events the agent received from the dataplane, by reason code and hook (best-effort: \
             interceptor_ebpf_events_dropped_total counts the rest; interceptor_ebpf_verdicts_total is exact)",
        );
        for code in DataplaneReasonCode::ALL {
            for hook in Hook::ALL {
                let n = verdict_index(*code, hook)
                    .map_or(0, |i| self.delivered[i].load(Ordering::Relaxed));
                f.sample(
                    &[("reason_code", code.as_str()), ("hook", hook.as_str())],
                    n,
                );
            }
        }
        e.family(
            "interceptor_ebpf_kernel_events_emitted",
            Kind::Counter,
            "Verdict records the kernel put in the ring buffer (since the pinned state was created)",
        )
        .sample(&[], dp.events_emitted);
        let mut f = e.family(
            "interceptor_ebpf_events_dropped",
            Kind::Counter,
            "Events or log lines that could not be delivered, by stage: kernel (ring buffer full), queue (user-space \
             queue full), subscriber (a SubscribeEvents client fell behind), log (standard output too slow)",
        );
        for (stage, v) in [
            ("kernel", dp.dropped_in_kernel),
            ("queue", dp.dropped_in_queue),
            ("subscriber", self.sampler.dropped_subscriber()),
            ("log", self.sampler.dropped_log()),
        ] {
            f.sample(&[("stage", stage)], v);
        }

        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        let mut f = e.family(
            "interceptor_ebpf_control_requests",
            Kind::Counter,
            "Control requests by command (`unknown` when it could not be read) and outcome (`ok` or the reason code)",
        );
        for ((command, outcome), n) in requests {
            f.sample(&[("command", command), ("outcome", outcome)], n);
        }
        let mut f = e.family(
            "interceptor_ebpf_control_request_duration_seconds",
            Kind::Histogram,
            "Time from a complete control request line to its reply, by command (`unknown` when it could not be \
             read); SubscribeEvents until its stream starts",
        );
        let commands = Command::ALL
            .iter()
            .map(|c| c.as_str())
            .chain([UNKNOWN_COMMAND]);
        for (command, h) in commands.zip(self.request_duration.iter()) {
            f.histogram(&[("command", command)], &h.sample());
        }
        e.family(
            "interceptor_ebpf_control_connections",
            Kind::Gauge,
            "Open control-socket connections",
        )
        .sample(&[], self.connections.get());
        let mut f = e.family(
            "interceptor_ebpf_control_connections_refused",
            Kind::Counter,
            "Control connections refused at accept, by reason: max_clients (every slot taken), peer_limit (the \
             unprivileged uid holds its most), reserved (the rest is kept for privileged peers)",
        );
        for (why, n) in Refusal::ALL.iter().zip(&self.refused) {
            f.sample(&[("reason", why.as_str())], n.load(Ordering::Relaxed));
        }
        e.family(
            "interceptor_ebpf_event_subscribers",
            Kind::Gauge,
            "Connections streaming events (SubscribeEvents)",
        )
        .sample(&[], self.subscribers.get());

        e.family(
            "interceptor_ebpf_policy_generation",
            Kind::Gauge,
            "Generation of the active policy (0: none loaded)",
        )
        .sample(&[], saturating_i64(self.sampler.generation()));
        e.family(
            "interceptor_ebpf_policy_applied_timestamp_seconds",
            Kind::Gauge,
            "When this agent last applied a policy (the policy file at start or ReplacePolicySnapshot), in seconds \
             since the epoch; 0 until it applies one (a policy adopted from the pinned state keeps its generation, \
             not its time)",
        )
        .sample(
            &[],
            f64::from_bits(self.policy_applied_at.load(Ordering::Relaxed)),
        );
        e.family(
            "interceptor_ebpf_policy_apply_duration_seconds",
            Kind::Histogram,
            "Time the dataplane took to apply a policy (the policy file at start or ReplacePolicySnapshot), failed \
             applies included",
        )
        .histogram(&[], &self.policy_apply.sample());
        e.family(
            "interceptor_ebpf_managed_cgroups",
            Kind::Gauge,
            "Managed-cgroup entries",
        )
        .sample(&[], saturating_i64(dp.managed_cgroups));
        e.family(
            "interceptor_ebpf_degraded",
            Kind::Gauge,
            "1 while GetHealth reports degraded",
        )
        .sample(&[], u64::from(self.sampler.degraded()));
        e.family(
            "interceptor_ebpf_heartbeat_age_seconds",
            Kind::Gauge,
            "Age of the last heartbeat the agent wrote",
        )
        .sample(&[], self.sampler.heartbeat_age().as_secs_f64());
        e.family(
            "interceptor_ebpf_heartbeat_grace_seconds",
            Kind::Gauge,
            "Heartbeat age past which the kernel gives managed cgroups in enforce mode the degraded verdict \
             (BROKER_EBPF_HEARTBEAT_GRACE_MS)",
        )
        .sample(&[], self.sampler.heartbeat_grace().as_secs_f64());
        let mut f = e.family(
            "interceptor_ebpf_layer_active",
            Kind::Gauge,
            "1 while the bypass layer is in force, 0 when disabled or unavailable on this kernel",
        );
        for layer in Layer::ALL {
            f.sample(
                &[("layer", layer.as_str())],
                u64::from(self.sampler.layer_active(layer)),
            );
        }
        let c = dp.layer_counters;
        for (name, help, [enforce, observe]) in [
            (
                "interceptor_ebpf_sockets_refused",
                "Sockets the socket-creation layers refused (enforce) or would have refused (observe)",
                [c.sockets_refused, c.sockets_would_refuse],
            ),
            (
                "interceptor_ebpf_egress_packets_dropped",
                "Packets the egress layer dropped (enforce) or would have dropped (observe, once per flow)",
                [c.packets_dropped, c.packets_would_drop],
            ),
        ] {
            e.family(name, Kind::Counter, help)
                .sample(&[("mode", "enforce")], enforce)
                .sample(&[("mode", "observe")], observe);
        }
        for (name, help, v) in [
            (
                "interceptor_ebpf_egress_packets_judged",
                "Packets the egress layer judged against the policy (not covered by a socket mark)",
                c.packets_judged,
            ),
            (
                "interceptor_ebpf_socket_marks_written",
                "Socket marks written by connect/sendmsg or egress verdicts",
                c.marks_written,
            ),
        ] {
            e.family(name, Kind::Counter, help).sample(&[], v);
        }

        let d = &dp.dns;
        e.family(
            "interceptor_ebpf_dns_proxy_serving",
            Kind::Gauge,
            "1 while the DNS proxy of rules by name serves (0 when it is off or stopped)",
        )
        .sample(&[], u64::from(d.serving));
        e.family(
            "interceptor_ebpf_dns_queries",
            Kind::Counter,
            "DNS queries of managed workloads the proxy received",
        )
        .sample(&[], d.proxy.queries);
        e.family(
            "interceptor_ebpf_dns_queries_refused",
            Kind::Counter,
            "Queries refused under dnsQueries \"policy\" (enforce: answered REFUSED; observe: would have been)",
        )
        .sample(&[("mode", "enforce")], d.proxy.refused)
        .sample(&[("mode", "observe")], d.proxy.would_refuse);
        e.family(
            "interceptor_ebpf_dns_queries_failed",
            Kind::Counter,
            "Queries the proxy could not answer from the resolver: `upstream` (no answer: SERVFAIL), `learn` (the \
             addresses could not be written: SERVFAIL), `unknown_flow` (not a steered socket: dropped), `overload` \
             (too many in flight: dropped), `malformed` (FORMERR)",
        )
        .sample(&[("reason", "upstream")], d.proxy.upstream_failures)
        .sample(&[("reason", "learn")], d.proxy.learn_failures)
        .sample(&[("reason", "unknown_flow")], d.proxy.unknown_flow)
        .sample(&[("reason", "overload")], d.proxy.dropped)
        .sample(&[("reason", "malformed")], d.proxy.malformed);
        e.family(
            "interceptor_ebpf_dns_learned_addresses",
            Kind::Gauge,
            "Addresses learned from DNS answers for rules by name that have not expired",
        )
        .sample(&[], d.learned_addresses);
        e.family(
            "interceptor_ebpf_dns_addresses_learned",
            Kind::Counter,
            "Addresses written for rules by name (an address learned again counts again)",
        )
        .sample(&[], d.learned_total);

        let p = process_metrics::read();
        if let Some(v) = p.cpu_seconds {
            e.family(
                "process_cpu_seconds",
                Kind::Counter,
                "Total user and system CPU time spent in seconds",
            )
            .sample(&[], v);
        }
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                p.max_fds,
            ),
        ] {
            if let Some(v) = v {
                e.family(name, Kind::Gauge, help).sample(&[], v);
            }
        }
        if let Some(v) = p.start_time_seconds {
            e.family(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since the Unix epoch in seconds",
            )
            .sample(&[], v);
        }
        e.finish()
    }
}

const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` until the listener's task is aborted. Each scrape calls `render` with the format the
/// request's `Accept` header chose.
pub async fn serve<F, Fut>(listener: TcpListener, render: F)
where
    F: Fn(Format) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, render)).await;
        });
    }
}

/// The request line's method and path, and the `Accept` header (every `Accept` line, joined by commas).
fn parse_head(head: &[u8]) -> (&[u8], &[u8], Option<String>) {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let mut accept: Option<String> = None;
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"accept") {
            continue;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim();
        match &mut accept {
            Some(a) => {
                a.push_str(", ");
                a.push_str(value);
            }
            None => accept = Some(value.to_owned()),
        }
    }
    (method, path, accept)
}

async fn respond<F, Fut>(mut stream: TcpStream, render: F) -> std::io::Result<()>
where
    F: Fn(Format) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let (method, path, accept) = parse_head(&head);
    let plain = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => match Format::negotiate(accept.as_deref()) {
            Some(format) => ("200 OK", format.content_type(), render(format).await),
            None => (
                "406 Not Acceptable",
                plain,
                format!(
                    "not acceptable: /metrics is served as {} or {}\n",
                    Format::Text.content_type(),
                    Format::OpenMetrics.content_type()
                ),
            ),
        },
        (b"GET", _) => (
            "404 Not Found",
            plain,
            "not found: the metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            plain,
            "only GET is served\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nVary: Accept\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    struct Fixed;
    impl Sampler for Fixed {
        fn dropped_subscriber(&self) -> u64 {
            2
        }
        fn dropped_log(&self) -> u64 {
            0
        }
        fn generation(&self) -> u64 {
            7
        }
        fn heartbeat_age(&self) -> Duration {
            Duration::from_millis(250)
        }
        fn heartbeat_grace(&self) -> Duration {
            Duration::from_secs(5)
        }
        fn degraded(&self) -> bool {
            false
        }
        fn layer_active(&self, layer: Layer) -> bool {
            layer != Layer::SocketCreateLsm
        }
    }

    fn dataplane() -> DataplaneCounters {
        DataplaneCounters {
            events_emitted: 10,
            dropped_in_kernel: 1,
            dropped_in_queue: 0,
            managed_cgroups: 3,
            layer_counters: LayerCounters::from_values([4, 5, 6, 7, 8, 9]),
            verdicts: vec![VerdictCount {
                hook: Hook::Sendmsg4,
                reason: DataplaneReasonCode::DenyDefault,
                count: 2_000_000,
            }],
            dns: DnsMetrics {
                serving: true,
                proxy: crate::dns::DnsCounters {
                    queries: 12,
                    refused: 2,
                    would_refuse: 1,
                    ..Default::default()
                },
                learned_addresses: 3,
                learned_total: 7,
            },
        }
    }

    fn exercised() -> Metrics {
        let m = Metrics::new(Arc::new(Fixed));
        m.event_delivered(DataplaneReasonCode::DenyDefault, Hook::Connect4);
        m.request(Some(Command::GetHealth), None);
        m.request(None, Some(ControlAuthzCode::RequestMalformed));
        m.request_duration(Some(Command::GetHealth), Duration::from_micros(40));
        m.request_duration(Some(Command::GetHealth), Duration::from_millis(3));
        m.request_duration(None, Duration::from_micros(10));
        m.connection_refused(Refusal::PeerLimit);
        m.connections().inc();
        m.connections().inc();
        m.connections().dec();
        m.policy_apply(
            Duration::from_millis(30),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_500)),
        );
        m.policy_apply(Duration::from_secs(2), None);
        m
    }

    #[test]
    fn exposition_has_every_family() {
        let text = exercised().encode(Format::Text, &dataplane());
        for want in [
            // The event the pump delivered is not a kernel count: the verdict metric reads only the counters.
            "interceptor_ebpf_events_delivered_total{reason_code=\"DENY_DEFAULT\",hook=\"connect4\"} 1\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"connect4\"} 0\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"sendmsg4\"} 2000000\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"ALLOW_BROKER\",hook=\"sendmsg6\"} 0\n",
            "interceptor_ebpf_events_delivered_total{reason_code=\"ALLOW_BROKER\",hook=\"sendmsg6\"} 0\n",
            "interceptor_ebpf_control_requests_total{command=\"GetHealth\",outcome=\"ok\"} 1\n",
            "interceptor_ebpf_control_requests_total{command=\"Shutdown\",outcome=\"ok\"} 0\n",
            "interceptor_ebpf_control_requests_total{command=\"unknown\",outcome=\"CTRL_REQUEST_MALFORMED\"} 1\n",
            "interceptor_ebpf_control_connections_refused_total{reason=\"peer_limit\"} 1\n",
            "interceptor_ebpf_control_connections_refused_total{reason=\"reserved\"} 0\n",
            "interceptor_ebpf_control_connections 1\n",
            "interceptor_ebpf_event_subscribers 0\n",
            "interceptor_ebpf_kernel_events_emitted_total 10\n",
            "interceptor_ebpf_events_dropped_total{stage=\"kernel\"} 1\n",
            "interceptor_ebpf_events_dropped_total{stage=\"subscriber\"} 2\n",
            "interceptor_ebpf_policy_generation 7\n",
            "interceptor_ebpf_managed_cgroups 3\n",
            "interceptor_ebpf_heartbeat_age_seconds 0.25\n",
            "interceptor_ebpf_heartbeat_grace_seconds 5\n",
            "interceptor_ebpf_degraded 0\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_SOCKET_CREATE\",hook=\"sock_create\"} 0\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_PACKET_EGRESS\",hook=\"egress\"} 0\n",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_SOCKET_CREATE\",hook=\"socket_create_lsm\"} 0\n",
            "interceptor_ebpf_layer_active{layer=\"sock_create\"} 1\n",
            "interceptor_ebpf_layer_active{layer=\"socket_create_lsm\"} 0\n",
            "interceptor_ebpf_layer_active{layer=\"socket_storage\"} 1\n",
            "interceptor_ebpf_sockets_refused_total{mode=\"enforce\"} 4\n",
            "interceptor_ebpf_sockets_refused_total{mode=\"observe\"} 5\n",
            "interceptor_ebpf_egress_packets_dropped_total{mode=\"enforce\"} 6\n",
            "interceptor_ebpf_egress_packets_dropped_total{mode=\"observe\"} 7\n",
            "interceptor_ebpf_egress_packets_judged_total 8\n",
            "interceptor_ebpf_socket_marks_written_total 9\n",
            // Two GetHealth requests: 40 µs and 3 ms.
            "interceptor_ebpf_control_request_duration_seconds_bucket{command=\"GetHealth\",le=\"0.0001\"} 1\n",
            "interceptor_ebpf_control_request_duration_seconds_bucket{command=\"GetHealth\",le=\"0.0025\"} 1\n",
            "interceptor_ebpf_control_request_duration_seconds_bucket{command=\"GetHealth\",le=\"0.005\"} 2\n",
            "interceptor_ebpf_control_request_duration_seconds_bucket{command=\"GetHealth\",le=\"+Inf\"} 2\n",
            "interceptor_ebpf_control_request_duration_seconds_sum{command=\"GetHealth\"} 0.00304\n",
            "interceptor_ebpf_control_request_duration_seconds_count{command=\"GetHealth\"} 2\n",
            "interceptor_ebpf_control_request_duration_seconds_count{command=\"unknown\"} 1\n",
            // Every command has its histogram from the start.
            "interceptor_ebpf_control_request_duration_seconds_count{command=\"SetCgroupMode\"} 0\n",
            "interceptor_ebpf_policy_apply_duration_seconds_bucket{le=\"0.025\"} 0\n",
            "interceptor_ebpf_policy_apply_duration_seconds_bucket{le=\"0.05\"} 1\n",
            "interceptor_ebpf_policy_apply_duration_seconds_bucket{le=\"2.5\"} 2\n",
            "interceptor_ebpf_policy_apply_duration_seconds_count 2\n",
            "interceptor_ebpf_policy_apply_duration_seconds_sum 2.03\n",
            // The failed apply did not move the timestamp.
            "interceptor_ebpf_policy_applied_timestamp_seconds 1765000000.5\n",
            "# TYPE process_cpu_seconds_total counter\n",
            "# TYPE process_resident_memory_bytes gauge\n",
            "# TYPE process_virtual_memory_bytes gauge\n",
            "# TYPE process_open_fds gauge\n",
            "# TYPE process_max_fds gauge\n",
            "# TYPE process_start_time_seconds gauge\n",
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
        let build = text
            .lines()
            .find(|l| l.starts_with("interceptor_ebpf_build_info{"))
            .expect("build info");
        assert!(
            build.starts_with(&format!(
                "interceptor_ebpf_build_info{{version=\"{}\",",
                env!("CARGO_PKG_VERSION")
            )) && build.contains(",rustc=\"1.")
                && build.ends_with("\"} 1"),
            "{build}"
        );
        // An empty label is left out, not written as revision="".
        assert_eq!(
            build.contains("revision="),
            !env!("INTERCEPTOR_EBPF_REVISION").is_empty(),
            "{build}"
        );
        assert!(!text.contains("# EOF"));
    }

    /// Every family's name with its `# HELP` and `# TYPE` (each exactly once, HELP first), and every sample
    /// under the family whose metadata precedes it.
    fn families(text: &str, format: Format) -> BTreeSet<String> {
        let mut declared = BTreeSet::new();
        let mut current: Option<(String, String)> = None;
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                assert_eq!(format, Format::OpenMetrics);
                assert!(lines.peek().is_none(), "# EOF is the last line");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty(), "{line}");
                let ty = lines.next().expect("TYPE after HELP");
                let (ty_name, kind) = ty
                    .strip_prefix("# TYPE ")
                    .and_then(|t| t.split_once(' '))
                    .expect("TYPE line");
                assert_eq!(ty_name, name, "{ty}");
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment {line}");
            let (family, kind) = current.as_ref().expect("a sample before any family");
            let sample = line.split(['{', ' ']).next().expect("sample name");
            let allowed: Vec<String> = match (kind.as_str(), format) {
                ("counter", Format::Text) => vec![family.clone()],
                ("counter", Format::OpenMetrics) => vec![format!("{family}_total")],
                ("histogram", _) => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{family}{s}"))
                    .collect(),
                _ => vec![family.clone()],
            };
            assert!(
                allowed.iter().any(|a| a == sample),
                "{sample} under {family} ({kind})"
            );
            if kind == "counter" {
                assert!(sample.ends_with("_total"), "{line}");
            }
        }
        declared
    }

    /// The sample lines, with OpenMetrics' `le="1.0"` written as text 0.0.4 writes it (`le="1"`).
    fn samples(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.replace(".0\"}", "\"}"))
            .collect()
    }

    #[test]
    fn both_formats_declare_every_family_and_carry_the_same_samples() {
        let m = exercised();
        let text = m.encode(Format::Text, &dataplane());
        let om = m.encode(Format::OpenMetrics, &dataplane());
        let text_families = families(&text, Format::Text);
        let om_families = families(&om, Format::OpenMetrics);
        assert!(om.ends_with("\n# EOF\n"));
        // The same families: a text counter's metadata names `_total`, OpenMetrics' does not.
        let renamed: BTreeSet<String> = text_families
            .iter()
            .map(|f| {
                let counter = text.contains(&format!("# TYPE {f} counter\n"));
                match f.strip_suffix("_total") {
                    Some(base) if counter => base.to_owned(),
                    _ => f.clone(),
                }
            })
            .collect();
        assert_eq!(renamed, om_families);
        assert!(text_families.len() >= 27, "{text_families:?}");
        // Both scrapes read /proc at their own moment: compare the rest.
        let stable = |s: BTreeSet<String>| -> BTreeSet<String> {
            s.into_iter()
                .filter(|l| !l.starts_with("process_"))
                .collect()
        };
        assert_eq!(stable(samples(&text)), stable(samples(&om)));
        assert!(
            om.contains("{command=\"GetHealth\",le=\"1.0\"} 2\n"),
            "{om}"
        );
        assert!(
            text.contains("{command=\"GetHealth\",le=\"1\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn the_request_head_gives_method_path_and_every_accept_line() {
        let (method, path, accept) = parse_head(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: text/plain;q=0.5\r\nX-Accept: no\r\n\
              ACCEPT: application/openmetrics-text\r\n\r\n",
        );
        assert_eq!((method, path), (&b"GET"[..], &b"/metrics"[..]));
        assert_eq!(
            accept.as_deref(),
            Some("text/plain;q=0.5, application/openmetrics-text")
        );
        assert_eq!(parse_head(b"GET /metrics HTTP/1.0\r\n\r\n").2, None);
    }
}
