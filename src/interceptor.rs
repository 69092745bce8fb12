//! `NativeInterceptor`: the dataplane loader (`interceptor_ebpf_core::dataplane::Dataplane`) as a JavaScript class. No rule
//! lives here: options and targets are read by the contract (`contract::load_options`, `contract::cgroup`),
//! snapshots by its strict policy parser, and every decision is the dataplane's. `js/interceptor.js` wraps this class into the public
//! `Interceptor` (promises, errors with codes, the `events()` async iterator).
//!
//! Errors cross as one JSON text in the napi error's message, `{"code": "ERR_…", "message": "…", …}`, which
//! `js/interceptor.js` turns into an `Error` with a stable `code` (or a `ContractValidationError` when the
//! object has `issues`). One shape for sync methods, libuv tasks and tokio futures alike.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use napi::bindgen_prelude::{AsyncTask, Buffer, Either, PromiseRaw};
use napi::tokio::sync::{Mutex, Notify};
use napi::{Env, Status, Task};
use napi_derive::napi;
use serde_json::{json, Value};

use crate::event_batch::encode;
use crate::issues::to_js_issues;
use interceptor_ebpf_core::contract::cgroup::{parse_interceptor_target, TargetKind};
use interceptor_ebpf_core::contract::json_reader::parse_literal;
use interceptor_ebpf_core::contract::layer::active_layers;
use interceptor_ebpf_core::contract::load_options::{
    parse_close_options, parse_events_options, parse_load_options, MAX_EVENT_BATCH,
};
use interceptor_ebpf_core::contract::modes::{FailMode, Mode};
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::validation::ValidationError;
use interceptor_ebpf_core::dataplane::{
    Dataplane, DataplaneError, DataplaneOptions, DataplaneStatus, EventReceiver, ManagedCgroup,
    PolicySummary,
};

/// A dataplane error as JavaScript sees it: its stable `code` ([`DataplaneError::code`]), its one-line message
/// (causes included), and for a verifier rejection the log, once, as `verifierLog`.
fn dataplane_error(e: &DataplaneError) -> napi::Error {
    let mut body = json!({ "code": e.code(), "message": e.to_string() });
    if let Some(log) = e.verifier_log() {
        body["verifierLog"] = Value::String(log.to_owned());
    }
    napi::Error::new(Status::GenericFailure, body.to_string())
}

fn validation_error(schema: &str, e: &ValidationError) -> napi::Error {
    let issues: Vec<Value> = to_js_issues(e)
        .into_iter()
        .map(|i| {
            let path: Vec<Value> = i
                .path
                .into_iter()
                .map(|seg| match seg {
                    Either::A(k) => Value::String(k),
                    Either::B(n) => Value::from(n),
                })
                .collect();
            json!({ "path": path, "code": i.code, "message": i.message })
        })
        .collect();
    let body = json!({
        "code": "ERR_CONTRACT_VALIDATION",
        "schema": schema,
        "message": e.to_string(),
        "issues": issues,
    });
    napi::Error::new(Status::InvalidArg, body.to_string())
}

struct Shared {
    dataplane: Dataplane,
    closed: AtomicBool,
    close_notify: Notify,
    /// Events handed to JavaScript, for `status().eventsDelivered` and the zero-loss accounting.
    delivered: AtomicU64,
}

impl Shared {
    fn check_open(&self) -> napi::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(dataplane_error(&DataplaneError::Closed))
        } else {
            Ok(())
        }
    }
}

/// A loaded dataplane. Created only by `loadInterceptor`.
#[napi]
pub struct NativeInterceptor {
    shared: Arc<Shared>,
}

/// Result of `replacePolicySnapshot`.
#[napi(object)]
pub struct JsPolicySummary {
    pub generation: f64,
    pub ipv4_rules: f64,
    pub ipv6_rules: f64,
    pub broker_endpoints: f64,
    pub dns_endpoints: f64,
    /// Rules by name (SPEC 4b), not counted in `ipv4Rules`/`ipv6Rules`.
    pub fqdn_rules: f64,
    /// Broker entries by name, not counted in `brokerEndpoints`.
    pub broker_names: f64,
}

impl From<PolicySummary> for JsPolicySummary {
    fn from(s: PolicySummary) -> Self {
        JsPolicySummary {
            generation: s.generation as f64,
            ipv4_rules: s.ipv4_rules as f64,
            ipv6_rules: s.ipv6_rules as f64,
            broker_endpoints: s.broker_endpoints as f64,
            fqdn_rules: s.fqdn_rules as f64,
            broker_names: s.broker_names as f64,
            dns_endpoints: s.dns_endpoints as f64,
        }
    }
}

/// One managed-cgroup entry. `cgroupId` is decimal text like the events' `cgroup_id` (a u64 is not exact as a
/// JavaScript number).
#[napi(object)]
pub struct JsManagedCgroup {
    /// The cgroup id (u64) as decimal text.
    pub cgroup_id: String,
    pub path: Option<String>,
    /// Absent: the global mode applies.
    pub mode: Option<String>,
    pub workload_id: Option<String>,
}

impl From<ManagedCgroup> for JsManagedCgroup {
    fn from(m: ManagedCgroup) -> Self {
        JsManagedCgroup {
            cgroup_id: m.cgroup_id.to_string(),
            path: m.path.map(|p| p.to_string_lossy().into_owned()),
            mode: m.mode.map(|m| m.as_str().to_owned()),
            workload_id: m.workload_id,
        }
    }
}

/// `status()` (`DataplaneStatus` in `js/interceptor.d.ts` narrows the strings to their literal unions and takes
/// everything else, these comments included, from here). Counters are numbers: exact up to 2^53 events,
/// centuries at any realistic rate.
#[napi(object)]
pub struct JsDataplaneStatus {
    /// The four sock_addr hooks; the bypass layers are listed in `layers`.
    pub attached_hooks: Vec<String>,
    pub cgroup_root: String,
    pub pin_dir: String,
    /// The pinned state of an earlier loader was adopted instead of starting empty.
    pub adopted: bool,
    pub managed_cgroups: Vec<JsManagedCgroup>,
    pub global_mode: String,
    pub fail_mode: String,
    pub heartbeat_grace_ms: f64,
    pub generation: f64,
    pub ipv4_rules: u32,
    pub ipv6_rules: u32,
    /// Records the kernel wrote into the ring buffer.
    pub events_emitted: f64,
    /// Records the kernel could not reserve ring-buffer space for.
    pub dropped_in_kernel: f64,
    /// Records a subscriber's bounded user-space queue could not take or still held when it unsubscribed, and
    /// records decoded while nobody subscribed (summed over the subscribers).
    pub dropped_in_queue: f64,
    /// Records handed to JavaScript by `events()` / `eventBatches()` of this Interceptor.
    pub events_delivered: f64,
    /// Heartbeat older than the grace period, or no policy loaded.
    pub degraded: bool,
    /// Every bypass layer, in a fixed order, with its state.
    pub layers: Vec<JsLayerStatus>,
    /// The layers in force (`state: 'active'`).
    pub active_layers: Vec<String>,
    /// What the bypass layers refused since their counters were created (they are pinned).
    pub layer_counters: JsLayerCounters,
    /// Every verdict the kernel programs made since their counters were created (they are pinned), by hook and
    /// reason code; only the pairs that counted. Counted by the programs themselves, these are exact whatever
    /// the events' sampling and drops: the events are best-effort, these counts are not.
    pub verdicts: Vec<JsVerdictCount>,
    /// Addresses learned from DNS answers for rules by name that have not expired (SPEC 4b). This Interceptor
    /// runs no DNS proxy, so only an agent's dataplane it shares pins with learns any.
    pub learned_addresses: f64,
}

/// One entry of `status().verdicts`.
#[napi(object)]
pub struct JsVerdictCount {
    pub hook: String,
    pub reason_code: String,
    /// Verdicts this hook made with this reason code (at least 1).
    pub count: f64,
}

/// One bypass layer in `status().layers`.
#[napi(object)]
pub struct JsLayerStatus {
    pub layer: String,
    /// `active`, `disabled` or `unavailable`.
    pub state: String,
    /// Why the layer is unavailable on this kernel.
    pub reason: Option<String>,
}

/// `status().layerCounters`: what the bypass layers refused since their counters were created (they are pinned).
#[napi(object)]
pub struct JsLayerCounters {
    /// Sockets refused at creation (enforce).
    pub sockets_refused: f64,
    /// Sockets observe mode let through that enforce would have refused.
    pub sockets_would_refuse: f64,
    /// Packets the egress layer dropped (each with an event, or counted in `droppedInKernel`).
    pub packets_dropped: f64,
    /// Packets observe mode let through that the egress layer would have dropped (one report per flow).
    pub packets_would_drop: f64,
    /// Packets the egress layer judged against the policy (not covered by a valid socket mark).
    pub packets_judged: f64,
    /// Socket marks written by connect/sendmsg or egress verdicts.
    pub marks_written: f64,
}

fn to_js_status(s: DataplaneStatus, delivered: u64) -> JsDataplaneStatus {
    JsDataplaneStatus {
        attached_hooks: s
            .attached_hooks
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect(),
        cgroup_root: s.cgroup_root.to_string_lossy().into_owned(),
        pin_dir: s.pin_dir.to_string_lossy().into_owned(),
        adopted: s.adopted,
        managed_cgroups: s.managed_cgroups.into_iter().map(Into::into).collect(),
        global_mode: s.global_mode.as_str().to_owned(),
        fail_mode: s.fail_mode.as_str().to_owned(),
        heartbeat_grace_ms: s.heartbeat_grace.as_secs_f64() * 1000.0,
        generation: s.generation as f64,
        ipv4_rules: s.ipv4_rules,
        ipv6_rules: s.ipv6_rules,
        events_emitted: s.events_emitted as f64,
        dropped_in_kernel: s.dropped_in_kernel as f64,
        dropped_in_queue: s.dropped_in_queue as f64,
        events_delivered: delivered as f64,
        learned_addresses: s.learned_addresses as f64,
        degraded: s.degraded,
        active_layers: active_layers(&s.layers)
            .into_iter()
            .map(|l| l.as_str().to_owned())
            .collect(),
        layers: s
            .layers
            .iter()
            .map(|l| JsLayerStatus {
                layer: l.layer.as_str().to_owned(),
                state: l.state.as_str().to_owned(),
                reason: l.state.reason().map(str::to_owned),
            })
            .collect(),
        layer_counters: JsLayerCounters {
            sockets_refused: s.layer_counters.sockets_refused as f64,
            sockets_would_refuse: s.layer_counters.sockets_would_refuse as f64,
            packets_dropped: s.layer_counters.packets_dropped as f64,
            packets_would_drop: s.layer_counters.packets_would_drop as f64,
            packets_judged: s.layer_counters.packets_judged as f64,
            marks_written: s.layer_counters.marks_written as f64,
        },
        verdicts: s
            .verdicts
            .iter()
            .map(|v| JsVerdictCount {
                hook: v.hook.as_str().to_owned(),
                reason_code: v.reason.as_str().to_owned(),
                count: v.count as f64,
            })
            .collect(),
    }
}

/// Loads (or adopts) the dataplane on a libuv worker thread: BTF parsing, verification and attaching take
/// tens of milliseconds and must not stall the JavaScript thread.
pub struct LoadTask {
    options: Option<DataplaneOptions>,
}

impl Task for LoadTask {
    type Output = Dataplane;
    type JsValue = NativeInterceptor;

    fn compute(&mut self) -> napi::Result<Dataplane> {
        let options = self.options.take().unwrap_or_default();
        Dataplane::load(options).map_err(|e| dataplane_error(&e))
    }

    fn resolve(&mut self, _env: Env, dataplane: Dataplane) -> napi::Result<NativeInterceptor> {
        Ok(NativeInterceptor {
            shared: Arc::new(Shared {
                dataplane,
                closed: AtomicBool::new(false),
                close_notify: Notify::new(),
                delivered: AtomicU64::new(0),
            }),
        })
    }
}

/// The batch size of `events({batchSize?})` / `eventBatches({batchSize?})`.
#[napi(js_name = "eventBatchSize")]
pub fn event_batch_size(options: Option<Value>) -> napi::Result<u32> {
    parse_events_options(options.as_ref())
        .map_err(|e| validation_error("InterceptorEventsOptions", &e))
}

/// Validates `options` now (a bad option rejects without touching the kernel) and loads off-thread.
#[napi(js_name = "loadInterceptor")]
pub fn load_interceptor(options: Option<Value>) -> napi::Result<AsyncTask<LoadTask>> {
    let options = parse_load_options(options.as_ref())
        .map_err(|e| validation_error("InterceptorOptions", &e))?;
    Ok(AsyncTask::new(LoadTask {
        options: Some(options),
    }))
}

/// Parses and applies a snapshot on a libuv worker thread: parsing 100,000 rules and filling the inactive
/// slot take tens to hundreds of milliseconds.
pub struct ReplaceTask {
    shared: Arc<Shared>,
    json: Vec<u8>,
}

impl Task for ReplaceTask {
    type Output = PolicySummary;
    type JsValue = JsPolicySummary;

    fn compute(&mut self) -> napi::Result<PolicySummary> {
        self.shared.check_open()?;
        let snapshot = PolicySnapshot::from_json_slice(&self.json)
            .map_err(|e| validation_error("PolicySnapshot", &e))?;
        // The text is no longer needed; free it before the (long) map writes.
        self.json = Vec::new();
        self.shared
            .dataplane
            .replace_policy(&snapshot)
            .map_err(|e| dataplane_error(&e))
    }

    fn resolve(&mut self, _env: Env, summary: PolicySummary) -> napi::Result<JsPolicySummary> {
        Ok(summary.into())
    }
}

/// Stops the dataplane's threads (and detaches when asked) off the JavaScript thread: joining the
/// heartbeat and reader threads may take up to one beat interval.
pub struct CloseTask {
    shared: Arc<Shared>,
    detach: bool,
    /// A second close() is a no-op: the first one already stopped (or detached) the dataplane.
    already_closed: bool,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        if self.already_closed {
            return Ok(());
        }
        self.shared
            .dataplane
            .close(self.detach)
            .map_err(|e| dataplane_error(&e))
    }

    fn resolve(&mut self, _env: Env, _: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// One subscription's state, shared by its pending `nextBatch` futures and `close()`.
struct Subscription {
    /// Subscribed by the first `nextBatch` (the event reader needs the tokio runtime), then reused.
    receiver: Mutex<Option<EventReceiver>>,
    closed: AtomicBool,
    close_notify: Notify,
}

/// Waits for the next batch of one subscription unless the interceptor or the subscription closes first. `None`
/// ends the JavaScript iterator.
async fn next_batch(
    shared: Arc<Shared>,
    sub: Arc<Subscription>,
    max: usize,
) -> napi::Result<Option<Vec<interceptor_ebpf_core::dataplane::VerdictEvent>>> {
    let mut closed = pin!(shared.close_notify.notified());
    let mut unsubscribed = pin!(sub.close_notify.notified());
    // Registered before the flags are read, so a close() between the two cannot be missed.
    closed.as_mut().enable();
    unsubscribed.as_mut().enable();
    if shared.closed.load(Ordering::Acquire) || sub.closed.load(Ordering::Acquire) {
        sub.receiver.lock().await.take();
        return Ok(None);
    }
    let work = async {
        let mut guard = sub.receiver.lock().await;
        if guard.is_none() {
            *guard = Some(
                shared
                    .dataplane
                    .subscribe()
                    .map_err(|e| dataplane_error(&e))?,
            );
        }
        match guard.as_mut() {
            Some(rx) => Ok(rx.recv_batch(max).await),
            None => Ok(None),
        }
    };
    // The pinned future (and the receiver guard it may hold) is dropped at the end of this block.
    let batch = {
        let mut work = pin!(work);
        std::future::poll_fn(|cx| {
            if closed.as_mut().poll(cx).is_ready() || unsubscribed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            work.as_mut().poll(cx)
        })
        .await
    };
    if sub.closed.load(Ordering::Acquire) {
        // Unsubscribe now that no future holds the receiver.
        sub.receiver.lock().await.take();
    }
    batch
}

#[napi]
impl NativeInterceptor {
    /// Parses `json` (the snapshot as JSON text) with the strict policy parser and applies it atomically.
    #[napi]
    pub fn replace_policy_snapshot(
        &self,
        json: Either<String, Buffer>,
    ) -> napi::Result<AsyncTask<ReplaceTask>> {
        self.shared.check_open()?;
        let json = match json {
            Either::A(s) => s.into_bytes(),
            Either::B(b) => b.to_vec(),
        };
        Ok(AsyncTask::new(ReplaceTask {
            shared: Arc::clone(&self.shared),
            json,
        }))
    }

    #[napi]
    pub fn upsert_managed_cgroup(&self, target: Value) -> napi::Result<JsManagedCgroup> {
        self.shared.check_open()?;
        let t = parse_interceptor_target(&target, TargetKind::Upsert)
            .map_err(|e| validation_error("ManagedCgroupUpsert", &e))?;
        self.shared
            .dataplane
            .upsert_managed_cgroup_with(
                &t.target.map_path(PathBuf::from),
                t.mode,
                t.workload_id.as_deref(),
                t.allow_root,
            )
            .map(Into::into)
            .map_err(|e| dataplane_error(&e))
    }

    /// `false` when the cgroup was not managed.
    #[napi]
    pub fn delete_managed_cgroup(&self, target: Value) -> napi::Result<bool> {
        self.shared.check_open()?;
        let t = parse_interceptor_target(&target, TargetKind::Delete)
            .map_err(|e| validation_error("ManagedCgroupRef", &e))?;
        self.shared
            .dataplane
            .delete_managed_cgroup(&t.target.map_path(PathBuf::from))
            .map_err(|e| dataplane_error(&e))
    }

    #[napi]
    pub fn set_global_mode(&self, mode: Value) -> napi::Result<()> {
        self.shared.check_open()?;
        let mode =
            parse_literal::<Mode>(&mode).map_err(|e| validation_error("DataplaneMode", &e))?;
        self.shared
            .dataplane
            .set_global_mode(mode)
            .map_err(|e| dataplane_error(&e))
    }

    #[napi]
    pub fn set_cgroup_mode(&self, target: Value) -> napi::Result<()> {
        self.shared.check_open()?;
        let t = parse_interceptor_target(&target, TargetKind::SetMode)
            .map_err(|e| validation_error("CgroupModeChange", &e))?;
        let Some(mode) = t.mode else {
            // Unreachable: the contract requires `mode` for TargetKind::SetMode.
            return Err(napi::Error::new(Status::InvalidArg, "mode is required"));
        };
        self.shared
            .dataplane
            .set_cgroup_mode(&t.target.map_path(PathBuf::from), mode)
            .map_err(|e| dataplane_error(&e))
    }

    #[napi]
    pub fn set_fail_mode(&self, mode: Value) -> napi::Result<()> {
        self.shared.check_open()?;
        let mode =
            parse_literal::<FailMode>(&mode).map_err(|e| validation_error("FailMode", &e))?;
        self.shared
            .dataplane
            .set_fail_mode(mode)
            .map_err(|e| dataplane_error(&e))
    }

    #[napi]
    pub fn heartbeat(&self) -> napi::Result<()> {
        self.shared.check_open()?;
        self.shared
            .dataplane
            .heartbeat()
            .map_err(|e| dataplane_error(&e))
    }

    /// Stops the loader's own heartbeat timer so tests can provoke the degraded state.
    #[napi]
    pub fn pause_heartbeat_timer(&self) -> napi::Result<()> {
        self.shared.check_open()?;
        self.shared.dataplane.pause_heartbeat_timer();
        Ok(())
    }

    #[napi]
    pub fn status(&self) -> napi::Result<JsDataplaneStatus> {
        self.shared.check_open()?;
        let s = self
            .shared
            .dataplane
            .status()
            .map_err(|e| dataplane_error(&e))?;
        Ok(to_js_status(
            s,
            self.shared.delivered.load(Ordering::Relaxed),
        ))
    }

    /// A new subscription to the verdict events: every subscription receives every event from its first
    /// `nextBatch` on, in its own bounded queue (docs/dataplane.md, "Events"). `events()` makes one per iterator.
    #[napi]
    /// On a closed interceptor the subscription's first batch is `null`, as for every iterator.
    pub fn subscribe_events(&self) -> napi::Result<NativeEventSubscription> {
        Ok(NativeEventSubscription {
            shared: Arc::clone(&self.shared),
            sub: Arc::new(Subscription {
                receiver: Mutex::new(None),
                closed: AtomicBool::new(false),
                close_notify: Notify::new(),
            }),
        })
    }

    /// Ends every pending and future `nextBatch` of every subscription with `null`, then stops the dataplane off-thread.
    #[napi]
    pub fn close(&self, options: Option<Value>) -> napi::Result<AsyncTask<CloseTask>> {
        let detach = parse_close_options(options.as_ref())
            .map_err(|e| validation_error("InterceptorCloseOptions", &e))?;
        let already_closed = self.shared.closed.swap(true, Ordering::AcqRel);
        self.shared.close_notify.notify_waiters();
        Ok(AsyncTask::new(CloseTask {
            shared: Arc::clone(&self.shared),
            detach,
            already_closed,
        }))
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

/// One consumer of the verdict events (`Interceptor.events()` creates one per iterator). Dropping it (`close()`,
/// or garbage collection of an abandoned iterator) unsubscribes; events it had not read are counted in
/// `droppedInQueue`.
#[napi]
pub struct NativeEventSubscription {
    shared: Arc<Shared>,
    sub: Arc<Subscription>,
}

#[napi]
impl NativeEventSubscription {
    /// Resolves with the next batch of events (in the packed transport of `event_batch`), or `null` once the
    /// interceptor or this subscription is closed. One call per batch: the cost of crossing into JavaScript is
    /// paid per batch.
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn next_batch<'env>(
        &self,
        env: &'env Env,
        max: u32,
    ) -> napi::Result<PromiseRaw<'env, Option<Buffer>>> {
        let shared = Arc::clone(&self.shared);
        let sub = Arc::clone(&self.sub);
        let max = max.clamp(1, MAX_EVENT_BATCH) as usize;
        env.spawn_future(async move {
            let batch = next_batch(Arc::clone(&shared), sub, max).await?;
            Ok(batch.map(|events| {
                shared
                    .delivered
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                encode(&events)
            }))
        })
    }

    /// Unsubscribes (idempotent): a pending `nextBatch` resolves with `null`, and so does every later one.
    #[napi]
    pub fn close(&self) {
        self.sub.closed.store(true, Ordering::Release);
        self.sub.close_notify.notify_waiters();
        if let Ok(mut guard) = self.sub.receiver.try_lock() {
            guard.take();
        }
    }
}
