//! The agent's command handling: one request line in, one response line out.
//!
//! Order of checks for every line: the strict per-command parser of the contract (CTRL_REQUEST_MALFORMED /
//! CTRL_REQUEST_PAYLOAD_INVALID); for a mutating command the peer check on the connection's SO_PEERCRED
//! (codes 1-3) and a fresh check of the socket file's mode and owner (codes 4-5); then the command, whose
//! failure to apply is CTRL_COMMAND_FAILED with the reason. Mutations run one at a time. Every refusal is
//! logged as a ControlPlaneAuthzEvent record; every applied mutation as an `agent_event: "command"` line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;
use interceptor_ebpf_core::contract::control::peer_auth::{
    authorize_controller_peer, ControllerAuthorizationPolicy, PeerCredentials,
};
use interceptor_ebpf_core::contract::control::protocol::{
    parse_request_line, CgroupRef, Command, CommandRequest, ControlProtocolError, ControlRequest,
    ControlResponse, DnsCounters as DnsStatusCounters, DnsStatus, GlobalModeData,
    LearnedAddress as DnsLearnedAddress, ManagedCgroup, PolicySnapshotData, PolicySummary,
    ResponseData, Status, UpsertManagedCgroup, MAX_LINE_BYTES, MAX_SAFE_INTEGER,
};
use interceptor_ebpf_core::contract::layer::{active_layers, LayerCounters};
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;
use interceptor_ebpf_core::contract::verdict_counts::VerdictCount;
use interceptor_ebpf_core::dataplane::{self, Dataplane, DataplaneError};

use super::health::HealthState;
use super::heap;
use super::log::Log;
use super::metrics::Metrics;
use super::socket::SocketFile;
use crate::cgroups::CgroupScope;

/// What the connection does after a request.
pub enum Outcome {
    /// Write this line and read the next request.
    Reply(String),
    /// Write this success line, then stream events until the peer closes.
    Subscribe(String),
    /// The reply to Shutdown: write this line, close, and let the process exit.
    Stopped(String),
}

/// Shared by every connection and task.
pub struct Agent {
    pub dp: Arc<Dataplane>,
    pub scope: CgroupScope,
    pub health: Arc<HealthState>,
    pub metrics: Metrics,
    pub log: Arc<Log>,
    pub socket: SocketFile,
    pub authz: ControllerAuthorizationPolicy,
    /// Serialises mutations (and Shutdown) so each sees the result of the previous one.
    mutate: tokio::sync::Mutex<()>,
    /// Verdict log lines for SubscribeEvents connections.
    pub events: EventFanout,
    pub dropped_subscriber: Arc<AtomicU64>,
    stopping: watch::Sender<bool>,
    closed: AtomicBool,
    /// Signalled once the reply to Shutdown was written, so the process exits only after it.
    pub shutdown_replied: tokio::sync::Notify,
    /// The last snapshot this agent applied, with the generation it became (GetPolicySnapshot). The kernel
    /// keeps only the compiled form, so an adopted state's snapshot is unknown until the next apply.
    applied: std::sync::Mutex<Option<(u64, Arc<PolicySnapshot>)>>,
    /// Gives back the memory of large jobs (policy replacements, bursts of clients, event floods).
    pub release: Arc<heap::Release>,
    /// The DNS proxy (rules by name, SPEC 4b), once started; never with `--dns-proxy-port 0`.
    pub dns: std::sync::OnceLock<crate::dns::DnsProxy>,
}

/// Events a subscriber may fall behind by before it loses some (counted as `subscriber` drops).
pub const SUBSCRIBER_BACKLOG: usize = 8192;

/// The broadcast channel of verdict log lines to SubscribeEvents connections, made when the first subscriber
/// comes: its [`SUBSCRIBER_BACKLOG`] slots are allocated with it (320 KiB), and many agents never have a
/// subscriber (their verdicts go to standard output).
#[derive(Default)]
pub struct EventFanout {
    tx: std::sync::OnceLock<broadcast::Sender<Arc<[u8]>>>,
}

impl EventFanout {
    /// A receiver of every line sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[u8]>> {
        self.tx
            .get_or_init(|| broadcast::channel(SUBSCRIBER_BACKLOG).0)
            .subscribe()
    }

    /// Subscribers connected now.
    pub fn receiver_count(&self) -> usize {
        self.tx.get().map_or(0, broadcast::Sender::receiver_count)
    }

    /// To every subscriber; how many it reached (none: the line is not kept).
    pub fn send(&self, line: Arc<[u8]>) -> usize {
        self.tx.get().and_then(|tx| tx.send(line).ok()).unwrap_or(0)
    }
}

/// The dataplane's summary (the contract's type) as the protocol sends it: the generation clamped to what a
/// JavaScript client reads exactly.
fn to_contract_summary(s: &dataplane::PolicySummary) -> PolicySummary {
    if s.generation == 0 {
        return PolicySummary::default();
    }
    PolicySummary {
        generation: s.generation.min(MAX_SAFE_INTEGER),
        ..*s
    }
}

/// Runs a blocking dataplane call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DataplaneError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the dataplane call did not finish: {e}")),
    }
}

fn peer_json(peer: Option<&PeerCredentials>) -> Value {
    match peer {
        Some(p) => json!({"uid": p.uid, "gid": p.gid, "pid": p.pid}),
        None => Value::Null,
    }
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dp: Arc<Dataplane>,
        scope: CgroupScope,
        health: Arc<HealthState>,
        metrics: Metrics,
        log: Arc<Log>,
        socket: SocketFile,
        authz: ControllerAuthorizationPolicy,
        dropped_subscriber: Arc<AtomicU64>,
    ) -> Agent {
        let (stopping, _) = watch::channel(false);
        Agent {
            dp,
            scope,
            health,
            metrics,
            log,
            socket,
            authz,
            mutate: tokio::sync::Mutex::new(()),
            events: EventFanout::default(),
            dropped_subscriber,
            stopping,
            closed: AtomicBool::new(false),
            shutdown_replied: tokio::sync::Notify::new(),
            applied: std::sync::Mutex::new(None),
            release: heap::Release::new(),
            dns: std::sync::OnceLock::new(),
        }
    }

    /// Why rules by name do not work now (health), and forgets the learned addresses whose TTL ran out.
    pub fn check_dns(&self) -> Option<String> {
        self.dp.expire_dns();
        if !self.dp.dns_steering().unwrap_or(false) {
            return None;
        }
        match self.dns.get() {
            None => Some(
                "the policy names destinations by DNS name but the DNS proxy is off (--dns-proxy-port 0): \
                 managed workloads' DNS fails and fqdn rules allow nothing"
                    .into(),
            ),
            Some(p) if !p.is_serving() => Some(format!(
                "the DNS proxy stopped serving on {}: managed workloads' DNS fails, fqdn rules learn nothing new \
                 and their addresses expire",
                p.local_addrs()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(_) if !self.dp.dns_policy_known() => Some(
                "the adopted policy's DNS names are unknown to this agent: queries are answered but nothing is \
                 learned until the next ReplacePolicySnapshot"
                    .into(),
            ),
            Some(_) => None,
        }
    }

    /// Records the snapshot that became `generation` (the policy file at start, ReplacePolicySnapshot).
    pub fn remember_policy(&self, generation: u64, snapshot: Arc<PolicySnapshot>) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, snapshot));
    }

    /// GetPolicySnapshot: the remembered snapshot when it is the active generation's. Another loader sharing
    /// the pins (the Node API) may have replaced it since: then it is unknown, not stale.
    async fn policy_snapshot(&self) -> Result<PolicySnapshotData, String> {
        let dp = self.dp.clone();
        let summary = blocking(move || dp.policy_summary()).await?;
        let remembered = self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let snapshot = match remembered {
            Some((generation, s)) if generation == summary.generation && generation != 0 => {
                Some(PolicySnapshot::clone(&s))
            }
            _ => None,
        };
        Ok(PolicySnapshotData {
            generation: to_contract_summary(&summary).generation,
            snapshot,
        })
    }

    /// Becomes `true` when the agent starts stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops serving and closes the dataplane (once): `detach` also detaches the programs and removes the pins.
    pub async fn stop(&self, reason: &str, detach: bool) -> Result<(), String> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.log
            .lifecycle("stopping", json!({"reason": reason, "detach": detach}));
        let _ = self.stopping.send(true);
        let dp = self.dp.clone();
        let result = blocking(move || dp.close(detach)).await;
        self.log.lifecycle(
            "stopped",
            json!({
                "enforcement": if detach && result.is_ok() { "detached" } else { "pinned" },
                "error": result.as_ref().err(),
            }),
        );
        result
    }

    fn fail(
        &self,
        code: ControlAuthzCode,
        message: impl Into<String>,
        command: Option<Command>,
        id: Option<String>,
    ) -> String {
        let error = ControlProtocolError::new(code, message, command);
        self.metrics.request(command, Some(code));
        self.log.authz(&error.to_event());
        ControlResponse::Failure { error, id }.to_line()
    }

    fn ok(&self, data: ResponseData, id: Option<String>) -> String {
        self.metrics.request(Some(data.command()), None);
        ControlResponse::Success { data, id }.to_line()
    }

    /// Handles one request line (without its `\n`), timing it for
    /// `interceptor_ebpf_control_request_duration_seconds`.
    pub async fn handle(&self, line: &[u8], peer: Option<&PeerCredentials>) -> Outcome {
        let started = Instant::now();
        let request = match parse_request_line(line) {
            Ok(r) => r,
            Err(rejection) => {
                let error = rejection.error;
                let command = error.command;
                let reply = self.fail(error.reason_code, error.message, command, rejection.id);
                self.metrics.request_duration(command, started.elapsed());
                return Outcome::Reply(reply);
            }
        };
        let command = request.command();
        let outcome = self.execute(request, peer).await;
        self.metrics
            .request_duration(Some(command), started.elapsed());
        outcome
    }

    /// A request the contract's parser accepted: the peer checks of a mutation, then the command.
    async fn execute(&self, request: ControlRequest, peer: Option<&PeerCredentials>) -> Outcome {
        let command = request.command();
        let id = request.id;
        if !command.is_read_only() {
            let checked =
                authorize_controller_peer(peer, &self.authz).and_then(|()| self.socket.check());
            if let Err(refusal) = checked {
                return Outcome::Reply(self.refuse(refusal, command, id));
            }
        }
        match request.request {
            CommandRequest::GetHealth => {
                Outcome::Reply(self.ok(ResponseData::GetHealth(self.health.snapshot()), id))
            }
            CommandRequest::GetStatus => Outcome::Reply(match self.status().await {
                Ok(s) => self.ok(ResponseData::GetStatus(s), id),
                Err(e) => self.fail(ControlAuthzCode::CommandFailed, e, Some(command), id),
            }),
            CommandRequest::GetPolicySummary => {
                let dp = self.dp.clone();
                Outcome::Reply(match blocking(move || dp.policy_summary()).await {
                    Ok(s) => self.ok(ResponseData::GetPolicySummary(to_contract_summary(&s)), id),
                    Err(e) => self.fail(ControlAuthzCode::CommandFailed, e, Some(command), id),
                })
            }
            CommandRequest::GetPolicySnapshot => {
                Outcome::Reply(match self.policy_snapshot().await {
                    Ok(p) => {
                        let reply = self.ok(ResponseData::GetPolicySnapshot(p), id.clone());
                        // The canonical form of an accepted request can be longer than the request was (defaults
                        // written out): a line the client could not read is refused instead.
                        if reply.len() - 1 > MAX_LINE_BYTES {
                            self.fail(
                            ControlAuthzCode::CommandFailed,
                            format!(
                                "the snapshot's response line is {} bytes, over the {MAX_LINE_BYTES}-byte limit",
                                reply.len() - 1
                            ),
                            Some(command),
                            id,
                        )
                        } else {
                            reply
                        }
                    }
                    Err(e) => self.fail(ControlAuthzCode::CommandFailed, e, Some(command), id),
                })
            }
            CommandRequest::SubscribeEvents => {
                if self.is_stopping() {
                    return Outcome::Reply(self.fail(
                        ControlAuthzCode::CommandFailed,
                        "the agent is stopping",
                        Some(command),
                        id,
                    ));
                }
                Outcome::Subscribe(self.ok(ResponseData::SubscribeEvents, id))
            }
            CommandRequest::Shutdown(options) => {
                let _serial = self.mutate.lock().await;
                self.log_command(command, peer, json!({"detach": options.detach}));
                match self.stop("Shutdown", options.detach).await {
                    Ok(()) => Outcome::Stopped(self.ok(ResponseData::Shutdown, id)),
                    Err(e) => Outcome::Stopped(self.fail(
                        ControlAuthzCode::CommandFailed,
                        format!("the agent stopped, but closing the dataplane failed: {e}"),
                        Some(command),
                        id,
                    )),
                }
            }
            CommandRequest::GetDnsStatus => Outcome::Reply(match self.dns_status().await {
                Ok(s) => self.ok(ResponseData::GetDnsStatus(s), id),
                Err(e) => self.fail(ControlAuthzCode::CommandFailed, e, Some(command), id),
            }),
            mutation => {
                let _serial = self.mutate.lock().await;
                if self.is_stopping() {
                    return Outcome::Reply(self.fail(
                        ControlAuthzCode::CommandFailed,
                        "the agent is stopping",
                        Some(command),
                        id,
                    ));
                }
                let result = self.mutate(mutation, peer).await;
                Outcome::Reply(match result {
                    Ok(data) => self.ok(data, id),
                    Err(e) => self.fail(ControlAuthzCode::CommandFailed, e, Some(command), id),
                })
            }
        }
    }

    fn refuse(
        &self,
        refusal: ControlPlaneAuthzEvent,
        command: Command,
        id: Option<String>,
    ) -> String {
        let error = ControlProtocolError::from_event(refusal, Some(command));
        self.fail(error.reason_code, error.message, Some(command), id)
    }

    fn log_command(&self, command: Command, peer: Option<&PeerCredentials>, detail: Value) {
        self.log.lifecycle(
            "command",
            json!({"command": command.as_str(), "peer": peer_json(peer), "result": detail}),
        );
    }

    fn managed(&self, m: &dataplane::ManagedCgroup) -> ManagedCgroup {
        ManagedCgroup {
            cgroup_id: m.cgroup_id,
            path: m.path.as_deref().and_then(|p| self.scope.payload_path(p)),
            mode: m.mode,
            workload_id: m.workload_id.clone(),
        }
    }

    /// A cgroup named by the payload, as a directory below the root (for add) .
    fn directory_of(&self, cgroup: &CgroupRef) -> Result<PathBuf, String> {
        match cgroup {
            CgroupRef::Path(p) => self.scope.directory(p),
            CgroupRef::Id(id) => self.scope.find_id(*id).ok_or_else(|| {
                if dataplane::cgroup_id(self.scope.root()).ok() == Some(*id) {
                    return self.scope.the_root_itself(&format!("cgroup id {id}"));
                }
                format!(
                    "no cgroup with id {id} below the agent's cgroup root {}",
                    self.scope.root_path()
                )
            }),
        }
    }

    /// The id a payload names (an id as is: its cgroup may be gone while its entry remains).
    fn id_of(&self, cgroup: &CgroupRef) -> Result<u64, String> {
        match cgroup {
            CgroupRef::Id(id) => Ok(*id),
            CgroupRef::Path(p) => {
                let dir = self.scope.directory(p)?;
                dataplane::cgroup_id(&dir).map_err(|e| {
                    format!(
                        "cgroup {p}: {e} (the entry of a removed cgroup is addressed by its id)"
                    )
                })
            }
        }
    }

    async fn entry(&self, id: u64) -> Result<Option<ManagedCgroup>, String> {
        let dp = self.dp.clone();
        let status = blocking(move || dp.status()).await?;
        Ok(status
            .managed_cgroups
            .iter()
            .find(|m| m.cgroup_id == id)
            .map(|m| self.managed(m)))
    }

    async fn mutate(
        &self,
        request: CommandRequest,
        peer: Option<&PeerCredentials>,
    ) -> Result<ResponseData, String> {
        let command = request.command();
        let dp = self.dp.clone();
        let data = match request {
            CommandRequest::ReplacePolicySnapshot(snapshot) => {
                let snapshot = Arc::new(snapshot);
                let compiled = snapshot.clone();
                let started = Instant::now();
                let applied = blocking(move || dp.replace_policy(&compiled)).await;
                self.metrics
                    .policy_apply(started.elapsed(), applied.is_ok().then(SystemTime::now));
                // The compiled form (as large as the policy) and the previous snapshot are freed by now; the
                // snapshot itself is kept for GetPolicySnapshot.
                self.release.after_large_job();
                let summary = applied?;
                self.remember_policy(summary.generation, snapshot);
                self.health.set_generation(summary.generation);
                ResponseData::ReplacePolicySnapshot(to_contract_summary(&summary))
            }
            CommandRequest::ValidatePolicySnapshot(snapshot) => {
                let summary = blocking(move || dp.check_policy(&snapshot)).await?;
                ResponseData::ValidatePolicySnapshot(to_contract_summary(&summary))
            }
            CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
                cgroup,
                mode,
                workload_id,
            }) => {
                let dir = self.directory_of(&cgroup)?;
                let entry = blocking(move || {
                    dp.upsert_managed_cgroup(
                        &dataplane::CgroupRef::Path(dir),
                        mode,
                        workload_id.as_deref(),
                    )
                })
                .await?;
                ResponseData::UpsertManagedCgroup(self.managed(&entry))
            }
            CommandRequest::DeleteManagedCgroup(cgroup) => {
                let id = self.id_of(&cgroup)?;
                let entry = self
                    .entry(id)
                    .await?
                    .ok_or_else(|| format!("cgroup {} is not managed", describe(&cgroup)))?;
                let removed =
                    blocking(move || dp.delete_managed_cgroup(&dataplane::CgroupRef::Id(id)))
                        .await?;
                if !removed {
                    return Err(format!("cgroup {} is not managed", describe(&cgroup)));
                }
                ResponseData::DeleteManagedCgroup(entry)
            }
            CommandRequest::SetGlobalMode(mode) => {
                blocking(move || dp.set_global_mode(mode)).await?;
                ResponseData::SetGlobalMode(GlobalModeData { global_mode: mode })
            }
            CommandRequest::SetCgroupMode { cgroup, mode } => {
                let id = self.id_of(&cgroup)?;
                blocking(move || dp.set_cgroup_mode(&dataplane::CgroupRef::Id(id), mode))
                    .await
                    .map_err(|e| match e.contains("is not managed") {
                        true => format!("cgroup {} is not managed", describe(&cgroup)),
                        false => e,
                    })?;
                let entry = self
                    .entry(id)
                    .await?
                    .ok_or_else(|| format!("cgroup {} is not managed", describe(&cgroup)))?;
                ResponseData::SetCgroupMode(entry)
            }
            other => return Err(format!("{} is not a mutation", other.command())),
        };
        let detail = match &data {
            ResponseData::ReplacePolicySnapshot(s) | ResponseData::ValidatePolicySnapshot(s) => {
                json!({
                    "generation": s.generation, "ipv4Rules": s.ipv4_rules, "ipv6Rules": s.ipv6_rules,
                    "brokerEndpoints": s.broker_endpoints, "dnsEndpoints": s.dns_endpoints,
                })
            }
            ResponseData::UpsertManagedCgroup(m)
            | ResponseData::DeleteManagedCgroup(m)
            | ResponseData::SetCgroupMode(m) => json!({
                "cgroupId": m.cgroup_id.to_string(), "path": m.path, "mode": m.mode.map(|m| m.as_str()),
                "workloadId": m.workload_id,
            }),
            ResponseData::SetGlobalMode(g) => json!({"globalMode": g.global_mode.as_str()}),
            _ => Value::Null,
        };
        self.log_command(command, peer, detail);
        Ok(data)
    }

    /// GetDnsStatus: the proxy, the addresses its answers taught, its counters.
    async fn dns_status(&self) -> Result<DnsStatus, String> {
        let dp = self.dp.clone();
        let (status, learned) =
            blocking(move || Ok((dp.status()?, dp.learned_addresses()))).await?;
        let workloads: std::collections::HashMap<u64, Option<String>> = status
            .managed_cgroups
            .iter()
            .map(|m| (m.cgroup_id, m.workload_id.clone()))
            .collect();
        let (dns_queries, learned_total) = self.dp.dns_queries_and_learned_total();
        let proxy = self.dns.get();
        let serving = proxy.is_some_and(crate::dns::DnsProxy::is_serving);
        let reason = match proxy {
            None => Some("the DNS proxy is off (--dns-proxy-port 0)".to_owned()),
            Some(_) if !serving => Some("the DNS proxy stopped serving".to_owned()),
            Some(_) => None,
        };
        let c = proxy
            .map(crate::dns::DnsProxy::counters)
            .unwrap_or_default();
        let clamp = |v: u64| v.min(MAX_SAFE_INTEGER);
        Ok(DnsStatus {
            serving,
            listen: proxy
                .map(|p| p.local_addrs().iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            reason,
            dns_queries,
            learned: learned
                .into_iter()
                .map(|l| DnsLearnedAddress {
                    ttl_remaining_ms: u64::try_from(l.ttl_remaining.as_millis())
                        .unwrap_or(u64::MAX),
                    workload_id: workloads.get(&l.managed_cgroup_id).cloned().flatten(),
                    name: l.name,
                    address: l.address,
                    rule_ids: l.rule_ids,
                    broker: l.broker,
                    cgroup_id: l.managed_cgroup_id,
                })
                .collect(),
            counters: DnsStatusCounters {
                queries: clamp(c.queries),
                refused: clamp(c.refused),
                would_refuse: clamp(c.would_refuse),
                learned_addresses: clamp(learned_total),
                upstream_failures: clamp(c.upstream_failures),
            },
        })
    }

    async fn status(&self) -> Result<Status, String> {
        let dp = self.dp.clone();
        let s = blocking(move || dp.status()).await?;
        let clamp = |v: u64| v.min(MAX_SAFE_INTEGER);
        let generation = if s.generation == 0 {
            0
        } else {
            clamp(s.generation)
        };
        Ok(Status {
            attached_hooks: s.attached_hooks.clone(),
            managed_cgroups: s.managed_cgroups.iter().map(|m| self.managed(m)).collect(),
            global_mode: s.global_mode,
            fail_mode: s.fail_mode,
            generation,
            ipv4_rules: u64::from(s.ipv4_rules),
            ipv6_rules: u64::from(s.ipv6_rules),
            events_emitted: clamp(s.events_emitted),
            dropped_in_kernel: clamp(s.dropped_in_kernel),
            dropped_in_queue: clamp(
                s.dropped_in_queue
                    .saturating_add(self.dropped_subscriber.load(Ordering::Relaxed))
                    .saturating_add(self.log.dropped()),
            ),
            degraded: s.degraded || self.health.is_degraded(),
            learned_addresses: Some(clamp(s.learned_addresses)),
            active_layers: active_layers(&s.layers),
            layer_counters: LayerCounters::from_values(s.layer_counters.values().map(clamp)),
            verdicts: s
                .verdicts
                .into_iter()
                .map(|v| VerdictCount {
                    count: clamp(v.count),
                    ..v
                })
                .collect(),
            layers: s.layers,
        })
    }
}

fn describe(c: &CgroupRef) -> String {
    match c {
        CgroupRef::Path(p) => p.clone(),
        CgroupRef::Id(id) => format!("id {id}"),
    }
}
