//! Prometheus metrics (OpenMetrics text, built by `prometheus-client`) and the `/metrics` HTTP endpoint.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `interceptor_ebpf_verdicts_total` | counter | `reason_code`, `hook` (the kernel's exact counts) |
//! | `interceptor_ebpf_events_delivered_total` | counter | `reason_code`, `hook` (events the agent received) |
//! | `interceptor_ebpf_kernel_events_emitted_total` | counter | |
//! | `interceptor_ebpf_events_dropped_total` | counter | `stage`: `kernel`, `queue`, `subscriber`, `log` |
//! | `interceptor_ebpf_control_requests_total` | counter | `command`, `outcome` (`ok` or the reason code) |
//! | `interceptor_ebpf_control_connections` | gauge | |
//! | `interceptor_ebpf_control_connections_refused_total` | counter | `reason`: `max_clients`, `peer_limit`, `reserved` |
//! | `interceptor_ebpf_event_subscribers` | gauge | |
//! | `interceptor_ebpf_policy_generation` | gauge | |
//! | `interceptor_ebpf_managed_cgroups` | gauge | |
//! | `interceptor_ebpf_heartbeat_age_seconds` | gauge | |
//! | `interceptor_ebpf_degraded` | gauge | |
//! | `interceptor_ebpf_layer_active` | gauge | `layer` (every bypass layer, 1 while in force) |
//! | `interceptor_ebpf_sockets_refused_total` | counter | `mode`: `enforce` (refused), `observe` (would have been) |
//! | `interceptor_ebpf_egress_packets_dropped_total` | counter | `mode`: `enforce` (dropped), `observe` (would have been) |
//! | `interceptor_ebpf_egress_packets_judged_total` | counter | |
//! | `interceptor_ebpf_socket_marks_written_total` | counter | |

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use interceptor_ebpf_core::contract::control::protocol::Command;
use interceptor_ebpf_core::contract::hook::Hook;
use interceptor_ebpf_core::contract::layer::{Layer, LayerCounters};
use interceptor_ebpf_core::contract::reason_codes::{ControlAuthzCode, DataplaneReasonCode};
use interceptor_ebpf_core::contract::verdict_counts::{all_pairs, count_of, VerdictCount};

use super::fairness::Refusal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    reason_code: &'static str,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    command: &'static str,
    outcome: &'static str,
}

/// What the collector reads at scrape time, refreshed from `Dataplane::status` just before encoding.
#[derive(Clone, Debug, Default)]
pub struct DataplaneCounters {
    pub events_emitted: u64,
    pub dropped_in_kernel: u64,
    pub dropped_in_queue: u64,
    pub managed_cgroups: u64,
    pub layer_counters: LayerCounters,
    /// The kernel's verdict counters (`DataplaneStatus::verdicts`): `interceptor_ebpf_verdicts_total`.
    pub verdicts: Vec<VerdictCount>,
}

/// Values owned elsewhere (subscriber and log drops, generation, heartbeat age), read on each scrape.
pub trait Sampler: Send + Sync + 'static {
    fn dropped_subscriber(&self) -> u64;
    fn dropped_log(&self) -> u64;
    fn generation(&self) -> u64;
    fn heartbeat_age(&self) -> Duration;
    fn degraded(&self) -> bool;
    /// Whether the dataplane attached (or adopted) this bypass layer.
    fn layer_active(&self, layer: Layer) -> bool;
}

struct SampledCollector {
    sampler: Arc<dyn Sampler>,
    cache: Mutex<DataplaneCounters>,
}

impl std::fmt::Debug for SampledCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampledCollector")
    }
}

impl Collector for SampledCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dp = self.cache.lock().map(|c| c.clone()).unwrap_or_default();
        // Read from the kernel's counters at this scrape, never accumulated here: equal to the number of
        // verdicts the programs made, whatever the event stream dropped. Every pair is listed, 0 until it fires.
        let mut family = encoder.encode_descriptor(
            "interceptor_ebpf_verdicts",
            "Verdicts the kernel programs made, by reason code and hook (counted in the kernel: exact, whatever the \
             events' sampling and drops; since the pinned state was created)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (hook, code) in all_pairs() {
            let labels = VerdictLabels {
                reason_code: code.as_str(),
                hook: hook.as_str(),
            };
            ConstCounter::new(count_of(&dp.verdicts, hook, code))
                .encode(family.encode_family(&labels)?)?;
        }
        let emitted = ConstCounter::new(dp.events_emitted);
        emitted.encode(encoder.encode_descriptor(
            "interceptor_ebpf_kernel_events_emitted",
            "Verdict records the kernel put in the ring buffer (since the pinned state was created)",
            None,
            emitted.metric_type(),
        )?)?;
        let drops = [
            ("kernel", dp.dropped_in_kernel),
            ("queue", dp.dropped_in_queue),
            ("subscriber", self.sampler.dropped_subscriber()),
            ("log", self.sampler.dropped_log()),
        ];
        let mut family = encoder.encode_descriptor(
            "interceptor_ebpf_events_dropped",
            "Events or log lines that could not be delivered, by stage: kernel (ring buffer full), queue (user-space \
             queue full), subscriber (a SubscribeEvents client fell behind), log (standard output too slow)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (stage, v) in drops {
            let labels = [("stage", stage)];
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
        let gauges: [(&str, &str, i64); 3] = [
            (
                "interceptor_ebpf_policy_generation",
                "Generation of the active policy (0: none loaded)",
                i64::try_from(self.sampler.generation()).unwrap_or(i64::MAX),
            ),
            (
                "interceptor_ebpf_managed_cgroups",
                "Managed-cgroup entries",
                i64::try_from(dp.managed_cgroups).unwrap_or(i64::MAX),
            ),
            (
                "interceptor_ebpf_degraded",
                "1 while GetHealth reports degraded",
                i64::from(self.sampler.degraded()),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let age = ConstGauge::new(self.sampler.heartbeat_age().as_secs_f64());
        age.encode(encoder.encode_descriptor(
            "interceptor_ebpf_heartbeat_age_seconds",
            "Age of the last heartbeat the agent wrote",
            None,
            age.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "interceptor_ebpf_layer_active",
            "1 while the bypass layer is in force, 0 when disabled or unavailable on this kernel",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for layer in Layer::ALL {
            let labels = [("layer", layer.as_str())];
            ConstGauge::new(i64::from(self.sampler.layer_active(layer)))
                .encode(family.encode_family(&labels)?)?;
        }
        let c = dp.layer_counters;
        let by_mode: [(&str, &str, [u64; 2]); 2] = [
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
        ];
        for (name, help, [enforce, observe]) in by_mode {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (mode, v) in [("enforce", enforce), ("observe", observe)] {
                ConstCounter::new(v).encode(family.encode_family(&[("mode", mode)])?)?;
            }
        }
        let plain: [(&str, &str, u64); 2] = [
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
        ];
        for (name, help, v) in plain {
            let counter = ConstCounter::new(v);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    delivered: Family<VerdictLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    connections: Gauge<i64, AtomicI64>,
    refused: Family<RefusalLabels, Counter>,
    subscribers: Gauge<i64, AtomicI64>,
    collector: Arc<SampledCollector>,
}

impl Metrics {
    pub fn new(sampler: Arc<dyn Sampler>) -> Metrics {
        let mut registry = Registry::default();
        let delivered = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "interceptor_ebpf_events_delivered",
            "Verdict events the agent received from the dataplane, by reason code and hook (best-effort: \
             interceptor_ebpf_events_dropped_total counts the rest; interceptor_ebpf_verdicts_total is exact)",
            delivered.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "interceptor_ebpf_control_requests",
            "Control requests by command (`unknown` when it could not be read) and outcome (`ok` or the reason code)",
            requests.clone(),
        );
        let connections = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "interceptor_ebpf_control_connections",
            "Open control-socket connections",
            connections.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "interceptor_ebpf_control_connections_refused",
            "Control connections refused at accept, by reason: max_clients (every slot taken), peer_limit (the \
             unprivileged uid holds its most), reserved (the rest is kept for privileged peers)",
            refused.clone(),
        );
        for why in Refusal::ALL {
            let _ = refused.get_or_create(&RefusalLabels {
                reason: why.as_str(),
            });
        }
        let subscribers = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "interceptor_ebpf_event_subscribers",
            "Connections streaming events (SubscribeEvents)",
            subscribers.clone(),
        );
        let collector = Arc::new(SampledCollector {
            sampler,
            cache: Mutex::new(DataplaneCounters::default()),
        });
        registry.register_collector(Box::new(collector.clone()));
        // Every reason code and hook from the start, so a rate over a code that has not fired yet reads 0.
        for code in DataplaneReasonCode::ALL {
            for hook in Hook::ALL {
                let _ = delivered.get_or_create(&VerdictLabels {
                    reason_code: code.as_str(),
                    hook: hook.as_str(),
                });
            }
        }
        Metrics {
            registry,
            delivered,
            requests,
            connections,
            refused,
            subscribers,
            collector,
        }
    }

    /// A verdict event the pump received (`interceptor_ebpf_events_delivered_total`).
    pub fn event_delivered(&self, code: DataplaneReasonCode, hook: Hook) {
        self.delivered
            .get_or_create(&VerdictLabels {
                reason_code: code.as_str(),
                hook: hook.as_str(),
            })
            .inc();
    }

    /// `outcome`: `None` = ok.
    pub fn request(&self, command: Option<Command>, outcome: Option<ControlAuthzCode>) {
        self.requests
            .get_or_create(&RequestLabels {
                command: command.map_or("unknown", Command::as_str),
                outcome: outcome.map_or("ok", ControlAuthzCode::as_str),
            })
            .inc();
    }

    pub fn connections(&self) -> &Gauge<i64, AtomicI64> {
        &self.connections
    }

    /// A connection refused at accept (`fairness`).
    pub fn connection_refused(&self, why: Refusal) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: why.as_str(),
            })
            .inc();
    }

    pub fn subscribers(&self) -> &Gauge<i64, AtomicI64> {
        &self.subscribers
    }

    /// The exposition, after refreshing the dataplane counters.
    pub fn encode(&self, dataplane: DataplaneCounters) -> String {
        if let Ok(mut c) = self.collector.cache.lock() {
            *c = dataplane;
        }
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` until the listener's task is aborted. Each scrape calls `render`.
pub async fn serve<F, Fut>(listener: TcpListener, render: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
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

async fn respond<F, Fut>(mut stream: TcpStream, render: F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
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
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", CONTENT_TYPE, render().await),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is served\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
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
        fn degraded(&self) -> bool {
            false
        }
        fn layer_active(&self, layer: Layer) -> bool {
            layer != Layer::SocketCreateLsm
        }
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new(Arc::new(Fixed));
        m.event_delivered(DataplaneReasonCode::DenyDefault, Hook::Connect4);
        m.request(Some(Command::GetHealth), None);
        m.request(None, Some(ControlAuthzCode::RequestMalformed));
        m.connection_refused(Refusal::PeerLimit);
        let text = m.encode(DataplaneCounters {
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
        });
        for want in [
            // The event the pump delivered is not a kernel count: the verdict metric reads only the counters.
            "interceptor_ebpf_events_delivered_total{reason_code=\"DENY_DEFAULT\",hook=\"connect4\"} 1",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"connect4\"} 0",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"sendmsg4\"} 2000000",
            "interceptor_ebpf_verdicts_total{reason_code=\"ALLOW_BROKER\",hook=\"sendmsg6\"} 0",
            "interceptor_ebpf_events_delivered_total{reason_code=\"ALLOW_BROKER\",hook=\"sendmsg6\"} 0",
            "interceptor_ebpf_control_requests_total{command=\"GetHealth\",outcome=\"ok\"} 1",
            "interceptor_ebpf_control_requests_total{command=\"unknown\",outcome=\"CTRL_REQUEST_MALFORMED\"} 1",
            "interceptor_ebpf_control_connections_refused_total{reason=\"peer_limit\"} 1",
            "interceptor_ebpf_control_connections_refused_total{reason=\"reserved\"} 0",
            "interceptor_ebpf_kernel_events_emitted_total 10",
            "interceptor_ebpf_events_dropped_total{stage=\"kernel\"} 1",
            "interceptor_ebpf_events_dropped_total{stage=\"subscriber\"} 2",
            "interceptor_ebpf_policy_generation 7",
            "interceptor_ebpf_managed_cgroups 3",
            "interceptor_ebpf_heartbeat_age_seconds 0.25",
            "interceptor_ebpf_degraded 0",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_SOCKET_CREATE\",hook=\"sock_create\"} 0",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_PACKET_EGRESS\",hook=\"egress\"} 0",
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_SOCKET_CREATE\",hook=\"socket_create_lsm\"} 0",
            "interceptor_ebpf_layer_active{layer=\"sock_create\"} 1",
            "interceptor_ebpf_layer_active{layer=\"socket_create_lsm\"} 0",
            "interceptor_ebpf_layer_active{layer=\"socket_storage\"} 1",
            "interceptor_ebpf_sockets_refused_total{mode=\"enforce\"} 4",
            "interceptor_ebpf_sockets_refused_total{mode=\"observe\"} 5",
            "interceptor_ebpf_egress_packets_dropped_total{mode=\"enforce\"} 6",
            "interceptor_ebpf_egress_packets_dropped_total{mode=\"observe\"} 7",
            "interceptor_ebpf_egress_packets_judged_total 8",
            "interceptor_ebpf_socket_marks_written_total 9",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
    }
}
