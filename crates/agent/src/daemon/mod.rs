//! `interceptor-ebpf agent`: the daemon.
//!
//! Start-up, in an order that never leaves a window of open egress and never touches another agent's state:
//! 1. configuration (any bad value stops here, before anything is attached);
//! 2. the control socket (a live agent on the path stops us before we load anything) and the metrics port;
//! 3. `Dataplane::load`: attach, or adopt what a previous agent pinned (its policy, managed cgroups and links keep
//!    enforcing throughout: there is no moment without programs);
//! 4. the initial policy file, when no policy is loaded;
//! 5. the agent's own heartbeat (the loader's timer thread is paused: the beat proves the agent's runtime is
//!    alive, not merely one thread), the event pump, the control socket and the metrics endpoint; then, under
//!    systemd, `READY=1` (`notify.rs`), and `WATCHDOG=1` from the heartbeat task.
//!
//! Stop: Shutdown (optionally detaching), SIGTERM or SIGINT close the dataplane leaving its pins enforcing;
//! without heartbeat, managed traffic gets the configured degraded verdict after the grace period.

pub mod control;
pub mod envelope;
pub mod exposition;
pub mod fairness;
pub mod framing;
pub mod health;
pub mod heap;
pub mod histogram;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod process_metrics;
pub mod runtime;
pub mod server;
pub mod socket;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use interceptor_ebpf_core::contract::control::peer_auth::ControllerAuthorizationPolicy;
use interceptor_ebpf_core::contract::layer::{active_layers, Layer};
use interceptor_ebpf_core::dataplane::{Dataplane, DataplaneOptions, EventReceiver};

use crate::config::{AgentConfig, VerdictLog};
use crate::dns::backend::DataplaneBackend;
use crate::dns::{DnsProxy, DnsProxyConfig};
use crate::exit::Exit;
use control::{Agent, SUBSCRIBER_BACKLOG};
use health::{HealthState, Transition};
use log::Log;
use metrics::{DataplaneCounters, DnsMetrics, Metrics, Sampler};
use notify::Notifier;

const EVENT_BATCH: usize = 1024;

struct AgentSampler {
    health: Arc<HealthState>,
    log: Arc<Log>,
    ops: Arc<Log>,
    dropped_subscriber: Arc<AtomicU64>,
}

impl Sampler for AgentSampler {
    fn dropped_subscriber(&self) -> u64 {
        self.dropped_subscriber.load(Ordering::Relaxed)
    }
    fn dropped_log(&self) -> u64 {
        // One queue when the records go to standard error.
        if Arc::ptr_eq(&self.log, &self.ops) {
            self.log.dropped()
        } else {
            self.log.dropped() + self.ops.dropped()
        }
    }
    fn generation(&self) -> u64 {
        self.health.generation()
    }
    fn heartbeat_age(&self) -> Duration {
        self.health.heartbeat_age()
    }
    fn heartbeat_grace(&self) -> Duration {
        self.health.grace()
    }
    fn degraded(&self) -> bool {
        self.health.is_degraded()
    }
    fn layer_active(&self, layer: Layer) -> bool {
        self.health.active_layers().contains(&layer)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Raises the soft open-files limit to the hard one: every control connection is a descriptor, and the default
/// soft limit (often 1024) is below the default `max_clients`.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit write and read a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Starts the operational log (standard error, in the envelope of `envelope.rs`, filtered by `RUST_LOG`) before
/// anything else, so even a configuration error is an envelope line. `None` (after saying why on standard error)
/// when it cannot start.
pub fn start_operational_log() -> Option<Arc<Log>> {
    let ops = match Log::start(Box::new(std::io::stderr())) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("interceptor-ebpf agent: cannot start the log writer: {e}");
            return None;
        }
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    match envelope::install(
        ops.clone(),
        rust_log.as_deref(),
        envelope::stderr_is_journald(),
    ) {
        Ok(installed) => {
            if let Some(why) = installed.bad_filter {
                envelope::warn(
                    "warning",
                    "RUST_LOG is not a valid filter; using the default (info)",
                    json!({ "error": why }),
                );
            }
            Some(ops)
        }
        Err(e) => {
            eprintln!("interceptor-ebpf agent: cannot install the log envelope: {e}");
            ops.finish();
            None
        }
    }
}

/// Runs the agent until it is stopped; returns the exit code. `ops` is [`start_operational_log`]'s; it is
/// drained before returning.
pub fn run(config: AgentConfig, ops: Arc<Log>) -> Exit {
    let exit = run_with_logs(config, ops.clone());
    ops.finish();
    exit
}

fn run_with_logs(config: AgentConfig, ops: Arc<Log>) -> Exit {
    heap::configure();
    raise_fd_limit();
    let runtime = match runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            envelope::error(
                "start_failed",
                "the agent could not start",
                json!({"stage": "async runtime", "error": e.to_string()}),
            );
            return Exit::Failure;
        }
    };
    // Records on standard error share the operational lines' queue: two writers on one descriptor could split
    // each other's lines (a write is only atomic up to PIPE_BUF on a pipe).
    let log = if config.verdict_log == VerdictLog::Stderr {
        ops.clone()
    } else {
        match open_verdict_log(&config.verdict_log) {
            Some(l) => l,
            None => return Exit::Failure,
        }
    };
    let exit = runtime.block_on(run_async(config, log.clone(), ops));
    // Give in-flight replies a moment; the dataplane is already closed.
    runtime.shutdown_timeout(Duration::from_secs(1));
    log.finish();
    exit
}

/// The verdict stream's queue on its destination; `None` after an error line saying why.
fn open_verdict_log(to: &VerdictLog) -> Option<Arc<Log>> {
    let stage = |stage: &str, error: String| {
        envelope::error(
            "start_failed",
            "the agent could not start",
            json!({"stage": stage, "error": error}),
        );
    };
    let sink = match to.open() {
        Ok(s) => s,
        Err(e) => {
            stage("verdict log", format!("{to:?}: {e}"));
            return None;
        }
    };
    match Log::start(sink) {
        Ok(l) => Some(l),
        Err(e) => {
            stage("log writer", e.to_string());
            None
        }
    }
}

/// Starts the DNS proxy on 127.0.0.1 and [::1] (IPv4 only when the host has no IPv6 loopback).
async fn start_dns_proxy(dp: &Arc<Dataplane>, port: u16, log: &Log) -> Result<DnsProxy, String> {
    let backend: Arc<dyn crate::dns::DnsBackend> = Arc::new(DataplaneBackend::new(dp.clone()));
    match DnsProxy::start(DnsProxyConfig::loopback(port), backend.clone()).await {
        Ok(p) => Ok(p),
        Err(e) if std::net::UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_err() => {
            log.lifecycle(
                "warning",
                json!({"message": format!(
                    "the DNS proxy listens on 127.0.0.1:{port} only: this host has no IPv6 loopback ({e}); \
                     IPv6 resolvers of a policy by name are steered to [::1] and fail"
                )}),
            );
            let mut config = DnsProxyConfig::loopback(port);
            config.listen.retain(std::net::SocketAddr::is_ipv4);
            DnsProxy::start(config, backend)
                .await
                .map_err(|e| format!("listen on 127.0.0.1:{port}: {e}"))
        }
        Err(e) => Err(format!("listen on 127.0.0.1:{port} and [::1]:{port}: {e}")),
    }
}

fn start_failed(log: &Log, what: &str, error: String) -> Exit {
    log.lifecycle("start_failed", json!({"stage": what, "error": error}));
    Exit::Failure
}

async fn run_async(mut config: AgentConfig, log: Arc<Log>, ops: Arc<Log>) -> Exit {
    let signals = install_signals();
    // systemd's notification socket, when the agent runs as a Type=notify service. A bad value is reported once
    // the agent serves; it then runs without notifying.
    let (notifier, notify_error) = match Notifier::from_env(&|k| std::env::var(k).ok()) {
        Ok(n) => (n.map(Arc::new), None),
        Err(e) => (None, Some(e)),
    };
    let (std_listener, socket_file) = match socket::bind(&config.contract) {
        Ok(s) => s,
        Err(e) => return start_failed(&log, "control socket", e.to_string()),
    };
    let listener = match tokio::net::UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => return start_failed(&log, "control socket", e.to_string()),
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => return start_failed(&log, "metrics endpoint", format!("bind {addr}: {e}")),
        },
        None => None,
    };

    // The bound address (a configured port 0 becomes the port the kernel chose).
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let options = DataplaneOptions {
        cgroup_root: Some(config.cgroups.root().to_path_buf()),
        pin_dir: config.pin_dir.clone(),
        fail_mode: config.fail_mode,
        heartbeat_grace: config.heartbeat.grace,
        heartbeat_interval: config.heartbeat.interval,
        global_mode: config.global_mode,
        disable_layers: config.disable_layers.clone(),
        ring_buffer_bytes: config.ring_buffer_bytes,
        ..DataplaneOptions::default()
    };
    // On this thread (the main one, where `block_on` runs us; nothing else runs yet): its allocations come
    // from glibc's main arena, the one `malloc_trim` also shrinks from the top, so the tens of MiB the load's
    // BTF parsing freed go back whole. On a blocking-pool thread they could land in a thread arena, whose free
    // top is kept up to the trim threshold: 1 MiB of idle RSS more in some starts and not others.
    let dp = match tokio::task::block_in_place(|| {
        let dp = Dataplane::load(options);
        heap::release_free();
        dp
    }) {
        Ok(dp) => Arc::new(dp),
        Err(e) => return start_failed(&log, "dataplane", e.to_string()),
    };
    // From here on the agent's own task beats (see the module comment).
    dp.pause_heartbeat_timer();
    let receiver = match dp.subscribe() {
        Ok(r) => r,
        Err(e) => return start_failed(&log, "event reader", e.to_string()),
    };
    let status = match dp.status() {
        Ok(s) => s,
        Err(e) => return start_failed(&log, "dataplane", e.to_string()),
    };
    let mut generation = status.generation;
    let adopted_age = dp.adopted_heartbeat_age();
    let active = active_layers(&status.layers);
    // Once, before anything else is reported: which ways around connect()/sendmsg() are closed on this kernel.
    log.lifecycle(
        "layers",
        json!({
            "active": active.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            "layers": status.layers,
        }),
    );
    if status.adopted {
        let age = adopted_age.unwrap_or_default();
        log.lifecycle(
            "adopted",
            json!({
                "pin_dir": status.pin_dir.display().to_string(),
                "generation": generation,
                "managed_cgroups": status.managed_cgroups.len(),
                "pinned_heartbeat_age_ms": ms(age),
                "kernel_degraded_for_ms": ms(age.saturating_sub(config.heartbeat.grace)),
            }),
        );
    }
    // The DNS proxy, before any policy: a policy that names destinations by DNS name needs it (SPEC 4b).
    let dns_proxy = if config.dns_proxy_port == 0 {
        None
    } else {
        match start_dns_proxy(&dp, config.dns_proxy_port, &log).await {
            Ok(p) => Some(p),
            Err(e) => return start_failed(&log, "dns proxy", e),
        }
    };
    if let Err(e) = dp.set_dns_proxy(dns_proxy.as_ref().map_or(0, DnsProxy::port)) {
        return start_failed(&log, "dns proxy", e.to_string());
    }
    // How long the policy file took to apply and when, for the metrics (created below, once health exists), and
    // the snapshot that became the active generation (GetPolicySnapshot). Taken out of the configuration, which
    // lives as long as the agent, so the snapshot is held once.
    let mut file_apply = None;
    let mut file_snapshot = None;
    if let Some((path, snapshot)) = config.policy.take() {
        if generation == 0 {
            let started = std::time::Instant::now();
            // On this thread too, for the same reason as the load.
            let applied = tokio::task::block_in_place(|| {
                let summary = dp.replace_policy(&snapshot);
                heap::release_free();
                summary
            });
            match applied {
                Ok(summary) => {
                    file_apply = Some((started.elapsed(), std::time::SystemTime::now()));
                    file_snapshot = Some(Arc::new(snapshot));
                    generation = summary.generation;
                    log.lifecycle(
                        "policy_loaded",
                        json!({
                            "file": path.display().to_string(),
                            "generation": summary.generation,
                            "ipv4_rules": summary.ipv4_rules,
                            "ipv6_rules": summary.ipv6_rules,
                        }),
                    );
                }
                Err(e) => {
                    return start_failed(&log, "policy file", format!("{}: {e}", path.display()))
                }
            }
        } else {
            log.lifecycle(
                "policy_file_skipped",
                json!({
                    "file": path.display().to_string(),
                    "reason": "the adopted state already has a policy (the latest a controller applied)",
                    "generation": generation,
                }),
            );
        }
    }

    let health = Arc::new(HealthState::new(
        status.adopted,
        adopted_age,
        config.heartbeat.grace,
        config.fail_mode,
        generation,
        active,
    ));
    health.beat(dp.heartbeat().map_err(|e| e.to_string()));
    let dropped_subscriber = Arc::new(AtomicU64::new(0));
    let metrics = Metrics::new(Arc::new(AgentSampler {
        health: health.clone(),
        log: log.clone(),
        ops,
        dropped_subscriber: dropped_subscriber.clone(),
    }));
    if let Some((took, at)) = file_apply {
        metrics.policy_apply(took, Some(at));
    }
    let agent = Arc::new(Agent::new(
        dp.clone(),
        config.cgroups.clone(),
        health.clone(),
        metrics,
        log.clone(),
        socket_file,
        ControllerAuthorizationPolicy::from(&config.contract),
        dropped_subscriber,
    ));
    if let Some(snapshot) = file_snapshot {
        agent.remember_policy(generation, snapshot);
    }
    let dns_listen: Vec<String> = dns_proxy
        .as_ref()
        .map(|p| p.local_addrs().iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    if let Some(p) = dns_proxy {
        let _ = agent.dns.set(p);
    }
    agent.health.set_dns_problem(agent.check_dns());

    tokio::spawn(heartbeat(
        agent.clone(),
        config.heartbeat.interval,
        notifier.clone(),
    ));
    tokio::spawn(pump(agent.clone(), receiver));
    tokio::spawn(server::serve(
        listener,
        agent.clone(),
        server::Limits {
            slots: config.slots,
            idle_timeout: config.idle_timeout,
            request_timeout: config.request_timeout,
        },
    ));
    let metrics_task = metrics_listener.map(|l| {
        let agent = agent.clone();
        tokio::spawn(metrics::serve(l, move |format| {
            let agent = agent.clone();
            async move {
                let dp = agent.dp.clone();
                let dns = |learned_addresses| DnsMetrics {
                    serving: agent.dns.get().is_some_and(DnsProxy::is_serving),
                    proxy: agent.dns.get().map(DnsProxy::counters).unwrap_or_default(),
                    learned_addresses,
                    learned_total: agent.dp.dns_queries_and_learned_total().1,
                };
                let counters = tokio::task::spawn_blocking(move || dp.status())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|s| DataplaneCounters {
                        events_emitted: s.events_emitted,
                        dropped_in_kernel: s.dropped_in_kernel,
                        dropped_in_queue: s.dropped_in_queue,
                        managed_cgroups: s.managed_cgroups.len() as u64,
                        layer_counters: s.layer_counters,
                        verdicts: s.verdicts,
                        dns: dns(s.learned_addresses),
                    })
                    .unwrap_or_default();
                agent.metrics.encode(format, &counters)
            }
        }))
    });

    let permissive = config.contract.privileged_controller_uids.is_empty()
        && config.contract.privileged_controller_gids.is_empty();
    log.lifecycle(
        "started",
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "environment": config.contract.environment.as_str(),
            "control_socket": config.contract.control_socket_path,
            "cgroup_root": config.cgroups.root().display().to_string(),
            "pin_dir": status.pin_dir.display().to_string(),
            "adopted": status.adopted,
            "generation": generation,
            "managed_cgroups": status.managed_cgroups.len(),
            "global_mode": status.global_mode.as_str(),
            "fail_mode": config.fail_mode.as_str(),
            "heartbeat_interval_ms": ms(config.heartbeat.interval),
            "heartbeat_grace_ms": ms(config.heartbeat.grace),
            "metrics_listen": metrics_addr.map(|a| a.to_string()),
            "dns_proxy": dns_listen,
            "privileged_uids": config.contract.privileged_controller_uids,
            "privileged_gids": config.contract.privileged_controller_gids,
            "max_clients": config.slots.max_clients,
            "max_clients_per_uid": config.slots.per_uid,
            "reserved_clients": config.slots.reserved,
        }),
    );
    if let Some(warning) =
        socket::directory_warning(std::path::Path::new(&config.contract.control_socket_path))
    {
        log.lifecycle("warning", json!({ "message": warning }));
    }
    if permissive {
        log.lifecycle(
            "warning",
            json!({"message": "no privileged uids or gids are configured: every peer that can connect to the \
                               control socket may send mutating commands"}),
        );
    }
    if let Some(e) = notify_error {
        log.lifecycle(
            "warning",
            json!({"message": format!("systemd notification disabled: {e}")}),
        );
    }
    let (_, transition) = health.update();
    // READY=1 below carries the status: no STATUS= of its own for this first transition.
    log_transition(&log, None, transition);
    // The programs are attached (or adopted) and the control socket's accept loop runs: a client connecting now
    // is served.
    if let Some(n) = &notifier {
        notify_or_warn(&log, "READY=1", n.ready(&status_text(&health)));
    }

    let exit = wait_for_stop(&agent, notifier.as_deref(), signals).await;
    if let Some(t) = metrics_task {
        t.abort();
    }
    exit
}

/// SIGTERM, SIGINT and SIGHUP, taken over before the agent does anything: a signal that arrives while it starts
/// waits until it serves, and then stops it cleanly (instead of the default action killing it half started).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

fn install_signals() -> Option<Signals> {
    Some(Signals {
        term: signal(SignalKind::terminate()).ok()?,
        int: signal(SignalKind::interrupt()).ok()?,
        hup: signal(SignalKind::hangup()).ok()?,
    })
}

async fn wait_for_stop(
    agent: &Arc<Agent>,
    notifier: Option<&Notifier>,
    signals: Option<Signals>,
) -> Exit {
    let Some(Signals {
        mut term,
        mut int,
        mut hup,
    }) = signals
    else {
        agent.log.lifecycle(
            "warning",
            json!({"message": "cannot install signal handlers; stop the agent with the Shutdown command"}),
        );
        let mut stopping = agent.stopping();
        let _ = stopping.wait_for(|s| *s).await;
        notify_stopping(agent, notifier, "Shutdown");
        return Exit::Ok;
    };
    let mut stopping = agent.stopping();
    loop {
        let reason = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                agent.log.lifecycle("warning", json!({"message": "SIGHUP ignored: the configuration is read at start only"}));
                continue;
            }
            _ = stopping.wait_for(|s| *s) => {
                // Stopped by the Shutdown command: its handler closes the dataplane, then writes the reply.
                notify_stopping(agent, notifier, "Shutdown");
                let _ = tokio::time::timeout(Duration::from_secs(15), agent.shutdown_replied.notified()).await;
                return Exit::Ok;
            }
        };
        notify_stopping(agent, notifier, reason);
        return match agent.stop(reason, false).await {
            Ok(()) => Exit::Ok,
            Err(_) => Exit::Failure,
        };
    }
}

fn log_transition(log: &Log, notifier: Option<&Notifier>, t: Option<Transition>) {
    let status = match t {
        Some(Transition::Degraded { reasons }) => {
            let status = format!("degraded: {}", reasons.join("; "));
            log.lifecycle("degraded", json!({"reasons": reasons}));
            status
        }
        Some(Transition::Recovered { degraded_for }) => {
            log.lifecycle("recovered", json!({"degraded_for_ms": ms(degraded_for)}));
            "serving".to_owned()
        }
        None => return,
    };
    if let Some(n) = notifier {
        notify_or_warn(log, "STATUS", n.status(&status));
    }
}

/// `serving` or `degraded: <reasons>`, for systemd's `STATUS=`.
fn status_text(health: &HealthState) -> String {
    let reasons = health.reasons();
    if reasons.is_empty() {
        format!("serving, policy generation {}", health.generation())
    } else {
        format!("degraded: {}", reasons.join("; "))
    }
}

fn notify_or_warn<T>(log: &Log, what: &str, sent: std::io::Result<T>) {
    if let Err(e) = sent {
        log.lifecycle(
            "warning",
            json!({"message": format!("systemd notification {what} not sent: {e}")}),
        );
    }
}

fn notify_stopping(agent: &Agent, notifier: Option<&Notifier>, reason: &str) {
    if let Some(n) = notifier {
        notify_or_warn(
            &agent.log,
            "STOPPING=1",
            n.stopping(&format!("stopping: {reason}")),
        );
    }
}

/// Beats every `interval`; under a systemd watchdog also sends `WATCHDOG=1` at its pace, while the beats keep
/// the heartbeat within the grace: an agent whose runtime stalls, or whose heartbeat writes keep failing, is
/// restarted by systemd, and a restarted agent adopts the pinned state.
async fn heartbeat(agent: Arc<Agent>, interval: Duration, notifier: Option<Arc<Notifier>>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = notifier
        .as_ref()
        .and_then(|n| n.watchdog_interval())
        .filter(|d| !d.is_zero());
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One warning for pings that cannot be sent, not one per ping.
    let mut watchdog_warned = false;
    let mut stopping = agent.stopping();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let fresh = agent.health.heartbeat_age() <= agent.health.grace();
                if let (Some(n), true) = (&notifier, fresh && !agent.is_stopping()) {
                    let sent = n.watchdog();
                    if sent.is_err() && !watchdog_warned {
                        watchdog_warned = true;
                        notify_or_warn(&agent.log, "WATCHDOG=1", sent);
                    }
                }
                continue;
            }
            _ = stopping.wait_for(|s| *s) => return,
        }
        let result = agent.dp.heartbeat().map_err(|e| e.to_string());
        if agent.is_stopping() {
            return;
        }
        agent.health.beat(result);
        agent.health.set_dns_problem(agent.check_dns());
        let (_, transition) = agent.health.update();
        log_transition(&agent.log, notifier.as_deref(), transition);
    }
}

async fn pump(agent: Arc<Agent>, mut receiver: EventReceiver) {
    let mut backlog = heap::Backlog::default();
    while let Some(batch) = receiver.recv_batch(EVENT_BATCH).await {
        if backlog.after_batch(batch.len() == EVENT_BATCH) {
            agent.release.after_large_job();
        }
        let subscribed = agent.events.receiver_count() > 0;
        for e in &batch {
            agent.metrics.event_delivered(e.reason, e.hook);
            let line: Arc<[u8]> = crate::events::log_line(e).into();
            if subscribed {
                let _ = agent.events.send(line.clone());
            }
            agent.log.line(line);
        }
    }
    if !agent.is_stopping() {
        agent.health.events_stopped();
        agent.log.lifecycle(
            "warning",
            json!({"message": "the dataplane event reader stopped", "subscriber_backlog": SUBSCRIBER_BACKLOG}),
        );
    }
}
