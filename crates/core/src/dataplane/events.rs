//! The event pipeline: ring buffer -> decoded [`VerdictEvent`]s -> one bounded queue per subscriber.
//!
//! The reader is a tokio task waiting on the ring buffer's fd (`AsyncFd::register_with_interest`, the I/O-safe
//! replacement of the deprecated `AsyncFd::new`). Each wake-up drains the ring buffer, decodes every record and
//! hands the batch to the [`EventHub`], which appends it to the queue of every subscriber: each subscriber sees
//! every event. A queue holds at most `event_queue_capacity` events; what does not fit one subscriber's queue is
//! discarded for that subscriber and counted in `dropped_in_queue`, so memory never grows with a slow consumer
//! and a slow consumer never slows another one. Events decoded while nobody subscribes, and events still
//! queued when a subscriber goes away, are counted there too.

use std::collections::{HashMap as StdHashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::abi::{self, RawEvent};
use super::config_map;
use super::slots::PolicyMaps;
use crate::contract::events::{
    Comm, DataplanePacketEvent, PolicyGeneration, POLICY_GENERATION_MAX,
};
use crate::contract::hook::{Hook, Protocol};
use crate::contract::reason_codes::DataplaneReasonCode;
use crate::contract::timestamp::Timestamp;

/// One verdict from the kernel, enriched in user space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictEvent {
    /// Wall clock of the record's monotonic time (boot offset taken when the batch was read).
    pub observed_at: SystemTime,
    pub monotonic_ns: u64,
    /// The caller's own cgroup.
    pub cgroup_id: u64,
    /// tgid.
    pub pid: u32,
    pub uid: u32,
    /// The task's name as text: [`Comm::from_kernel_bytes`] (lossy UTF-8, cut to at most 16 bytes).
    pub comm: String,
    pub hook: Hook,
    pub protocol: Protocol,
    /// As the caller wrote it: an IPv4-mapped IPv6 destination stays IPv6. `None` for a verdict on a call
    /// that has no destination (a socket refused at creation: hooks `sock_create`, `socket_create_lsm`).
    pub dst_ip: Option<IpAddr>,
    /// `None` exactly when `dst_ip` is.
    pub dst_port: Option<u16>,
    pub reason: DataplaneReasonCode,
    /// The id of the rule that decided, from the generation that decided.
    pub rule_id: Option<String>,
    /// The name whose DNS answer taught the destination, for a verdict an fqdn rule or broker name decided.
    pub dns_name: Option<String>,
    pub policy_generation: u64,
    /// From the managed-cgroup entry that matched.
    pub workload_id: Option<String>,
    /// The managed cgroup whose entry matched (0 when unmanaged). An addition to the agreed API.
    pub managed_cgroup_id: u64,
}

impl VerdictEvent {
    /// `observed_at` as the contract's timestamp (RFC 3339 UTC, 9 fractional digits). A wall clock outside
    /// 1970..=9999 (a broken RTC) is clamped to the epoch rather than producing text the contract would reject.
    pub fn observed_timestamp(&self) -> Option<Timestamp> {
        Timestamp::from_system_time(self.observed_at).or_else(|| Timestamp::from_unix(0, 0))
    }

    /// The verdict as the contract's DataplanePacketEvent: the one conversion, shared by the agent's log lines
    /// and the Node API's `events()`. `cgroup_id` is the caller's own cgroup; a socket refused at creation has
    /// no destination (both keys absent); no `message`.
    pub fn to_packet_event(&self) -> DataplanePacketEvent {
        DataplanePacketEvent {
            reason_code: self.reason,
            hook: Some(self.hook),
            cgroup_id: Some(self.cgroup_id),
            message: None,
            protocol: Some(self.protocol),
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            // A query the DNS proxy refused was made by a socket, not observed in a task: no pid, uid or comm.
            pid: (self.hook != Hook::Dns).then_some(self.pid),
            uid: (self.hook != Hook::Dns).then_some(self.uid),
            // The decoder cuts a comm to 16 bytes of UTF-8 (`Comm::from_kernel_bytes`), so it always fits.
            comm: Comm::new(self.comm.as_str()),
            rule_id: self.rule_id.clone(),
            dns_name: self.dns_name.clone(),
            policy_generation: self.policy_generation_number(),
            workload_id: self.workload_id.clone(),
            observed_at: self.observed_timestamp(),
        }
    }

    /// A generation counts policy replacements from 1 and stays far below 2^53, where a JavaScript number stops
    /// being exact; saturating there keeps a (theoretical) overflow visible instead of dropping the key.
    pub fn policy_generation_number(&self) -> Option<PolicyGeneration> {
        PolicyGeneration::new(self.policy_generation.min(POLICY_GENERATION_MAX))
    }
}

impl From<&VerdictEvent> for DataplanePacketEvent {
    fn from(e: &VerdictEvent) -> Self {
        e.to_packet_event()
    }
}

/// Rule ids of recent generations, filled by `replace_policy` and, for an adopted state, from the pinned map.
#[derive(Default)]
pub(crate) struct RuleIdCache {
    by_generation: StdHashMap<u64, Arc<Vec<String>>>,
    ids: usize,
}

impl RuleIdCache {
    /// Always kept: the ids of the last few generations, enough for the records still in the ring buffer.
    const KEEP: usize = 4;
    /// Older generations are kept while all cached generations hold at most this many ids in total (a few MiB),
    /// so records of small policies replaced back to back still resolve their rule ids.
    const ID_BUDGET: usize = 65_536;

    pub(crate) fn insert(&mut self, generation: u64, ids: Arc<Vec<String>>) {
        self.ids += ids.len();
        if let Some(old) = self.by_generation.insert(generation, ids) {
            self.ids -= old.len();
        }
        while self.by_generation.len() > Self::KEEP && self.ids > Self::ID_BUDGET {
            let Some(oldest) = self.by_generation.keys().min().copied() else {
                break;
            };
            if let Some(old) = self.by_generation.remove(&oldest) {
                self.ids -= old.len();
            }
        }
    }

    fn get(&self, generation: u64, index: u32) -> Option<Option<String>> {
        let ids = self.by_generation.get(&generation)?;
        Some(ids.get(index as usize).cloned())
    }
}

/// What the reader needs besides the ring buffer.
pub(crate) struct EventContext {
    pub rule_ids: Arc<Mutex<RuleIdCache>>,
    pub workloads: Arc<RwLock<StdHashMap<u64, Option<String>>>>,
    pub maps: Arc<Mutex<PolicyMaps>>,
    pub learned: Arc<Mutex<super::loader::LearnedState>>,
}

impl EventContext {
    fn rule_id(&self, generation: u64, index: u32) -> Option<String> {
        if index == abi::RULE_INDEX_NONE || generation == 0 {
            return None;
        }
        if let Ok(cache) = self.rule_ids.lock() {
            if let Some(hit) = cache.get(generation, index) {
                return hit;
            }
        }
        // Adopted generation (written by an earlier loader): read the ids of the slot that still holds it, once.
        let ids = {
            let maps = self.maps.lock().ok()?;
            let slot =
                (0..2u32).find(|s| maps.meta(*s).is_ok_and(|m| m.generation == generation))?;
            Arc::new(maps.rule_ids(slot)?)
        };
        let id = ids.get(index as usize).cloned();
        if let Ok(mut cache) = self.rule_ids.lock() {
            cache.insert(generation, ids);
        }
        id
    }

    /// The name whose DNS answer taught the destination of a verdict an fqdn rule or a broker name decided.
    fn dns_name(
        &self,
        raw: &RawEvent,
        reason: DataplaneReasonCode,
        dst: Option<IpAddr>,
    ) -> Option<String> {
        let dst = dst?;
        if raw.managed_cgroup_id == 0 {
            return None;
        }
        let learned = self.learned.lock().ok()?;
        let by_name = match reason {
            DataplaneReasonCode::AllowBroker => true,
            _ => {
                raw.rule_index != abi::RULE_INDEX_NONE
                    && learned
                        .table
                        .policy()
                        .is_some_and(|p| p.is_fqdn_rule(raw.rule_index))
            }
        };
        if !by_name {
            return None;
        }
        learned
            .table
            .name_of(raw.managed_cgroup_id, dst, raw.monotonic_ns)
    }

    fn workload_id(&self, managed_cgroup_id: u64) -> Option<String> {
        self.workloads
            .read()
            .ok()?
            .get(&managed_cgroup_id)
            .cloned()
            .flatten()
    }
}

/// Decodes one record; `None` for a record this build cannot represent (unknown hook, protocol or reason).
pub(crate) fn decode(
    raw: &RawEvent,
    boot_offset_ns: i128,
    ctx: Option<&EventContext>,
) -> Option<VerdictEvent> {
    let hook = Hook::from_value(raw.hook)?;
    let protocol = Protocol::from_value(raw.protocol)?;
    let reason = DataplaneReasonCode::from_value(raw.reason)?;
    let dst_ip = match raw.family {
        abi::FAMILY_INET => Some(IpAddr::V4(Ipv4Addr::from([
            raw.dst_addr[0],
            raw.dst_addr[1],
            raw.dst_addr[2],
            raw.dst_addr[3],
        ]))),
        abi::FAMILY_INET6 => Some(IpAddr::V6(Ipv6Addr::from(raw.dst_addr))),
        abi::FAMILY_NONE => None,
        _ => return None,
    };
    let comm = Comm::from_kernel_bytes(&raw.comm).into_string();
    let wall_ns = i128::from(raw.monotonic_ns) + boot_offset_ns;
    let observed_at = if wall_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(wall_ns).unwrap_or(u64::MAX))
    } else {
        UNIX_EPOCH
    };
    Some(VerdictEvent {
        observed_at,
        monotonic_ns: raw.monotonic_ns,
        cgroup_id: raw.cgroup_id,
        pid: raw.tgid,
        uid: raw.uid,
        comm,
        hook,
        protocol,
        dst_port: dst_ip.map(|_| raw.dst_port),
        dst_ip,
        reason,
        rule_id: ctx.and_then(|c| c.rule_id(raw.policy_generation, raw.rule_index)),
        dns_name: ctx.and_then(|c| c.dns_name(raw, reason, dst_ip)),
        policy_generation: raw.policy_generation,
        workload_id: ctx.and_then(|c| c.workload_id(raw.managed_cgroup_id)),
        managed_cgroup_id: raw.managed_cgroup_id,
    })
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, in ns: added to a record's bpf_ktime_get_ns to get wall time.
pub(crate) fn boot_offset_ns() -> i128 {
    i128::from(config_map::clock_ns(rustix::time::ClockId::Realtime))
        - i128::from(config_map::monotonic_ns())
}

/// One subscriber's bounded queue.
struct EventQueue {
    events: Mutex<VecDeque<VerdictEvent>>,
    notify: Notify,
    closed: AtomicBool,
}

/// Fans decoded events out to every subscriber.
pub(crate) struct EventHub {
    subscribers: Mutex<Vec<Arc<EventQueue>>>,
    capacity: usize,
    closed: AtomicBool,
    /// Events a subscriber's queue could not take, or that no subscriber was there to take (summed).
    pub dropped: AtomicU64,
    pub undecodable: AtomicU64,
}

impl EventHub {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventHub {
            subscribers: Mutex::new(Vec::new()),
            capacity,
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        })
    }

    /// A new subscriber: it receives every event published from now on.
    pub(crate) fn subscribe(self: &Arc<Self>) -> EventReceiver {
        let queue = Arc::new(EventQueue {
            events: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(self.closed.load(Ordering::SeqCst)),
        });
        lock(&self.subscribers).push(queue.clone());
        EventReceiver {
            queue,
            hub: self.clone(),
        }
    }

    fn push(&self, queue: &EventQueue, batch: impl ExactSizeIterator<Item = VerdictEvent>) {
        let offered = batch.len();
        let mut taken = 0usize;
        {
            let mut q = lock(&queue.events);
            let room = self.capacity.saturating_sub(q.len());
            for e in batch.take(room) {
                q.push_back(e);
                taken += 1;
            }
        }
        if taken < offered {
            self.dropped
                .fetch_add((offered - taken) as u64, Ordering::Relaxed);
        }
        queue.notify.notify_one();
    }

    /// Appends `batch` to every subscriber's queue (the last one takes the batch itself, the others a copy).
    pub(crate) fn publish(&self, batch: Vec<VerdictEvent>) {
        if batch.is_empty() {
            return;
        }
        let subscribers = lock(&self.subscribers).clone();
        let Some((last, others)) = subscribers.split_last() else {
            self.dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        };
        for q in others {
            self.push(q, batch.iter().cloned());
        }
        self.push(last, batch.into_iter());
    }

    /// Ends every subscription: receivers drain what is queued, then see the end of the stream.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for q in lock(&self.subscribers).iter() {
            q.closed.store(true, Ordering::SeqCst);
            q.notify.notify_one();
        }
    }
}

/// A poisoned lock only means a panic elsewhere mid-push; the queue itself is still a valid VecDeque.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One subscription to the verdict events: it receives every event decoded after it was created.
pub struct EventReceiver {
    queue: Arc<EventQueue>,
    hub: Arc<EventHub>,
}

impl EventReceiver {
    /// Queue room kept after a burst has been drained.
    const KEPT_CAPACITY: usize = 4096;

    /// Waits for at least one event and returns up to `max` (at least 1); `None` once the dataplane is closed and
    /// this subscriber's queue is empty.
    pub async fn recv_batch(&mut self, max: usize) -> Option<Vec<VerdictEvent>> {
        let max = max.max(1);
        loop {
            let notified = self.queue.notify.notified();
            {
                let mut q = lock(&self.queue.events);
                if !q.is_empty() {
                    let n = q.len().min(max);
                    let batch: Vec<VerdictEvent> = q.drain(..n).collect();
                    // A burst grew the queue up to its capacity; give the memory back once it is drained.
                    if q.is_empty() && q.capacity() > Self::KEPT_CAPACITY {
                        q.shrink_to(Self::KEPT_CAPACITY);
                    }
                    return Some(batch);
                }
            }
            if self.queue.closed.load(Ordering::SeqCst) {
                return None;
            }
            notified.await;
        }
    }
}

impl Drop for EventReceiver {
    /// Unsubscribes; events still queued for this subscriber are counted as dropped.
    fn drop(&mut self) {
        lock(&self.hub.subscribers).retain(|q| !Arc::ptr_eq(q, &self.queue));
        let left = {
            let mut q = lock(&self.queue.events);
            let n = q.len();
            q.clear();
            n
        };
        if left > 0 {
            self.hub.dropped.fetch_add(left as u64, Ordering::Relaxed);
        }
    }
}

/// Registers the ring buffer with the current tokio reactor.
pub(crate) fn register(ring: RingBuf<MapData>) -> std::io::Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the RingBuf owns its map fd for its whole life and `as_raw_fd` always returns that same fd; the
    // AsyncFd owns the RingBuf, so the fd stays open until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The reader task: drains the ring buffer on every readiness notification until aborted.
pub(crate) async fn run_reader(
    mut fd: AsyncFd<RingBuf<MapData>>,
    hub: Arc<EventHub>,
    ctx: EventContext,
) {
    const MAX_BATCH: usize = 4096;
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(_) => break,
        };
        let offset = boot_offset_ns();
        let ring = guard.get_inner_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match RawEvent::from_bytes(&item).and_then(|raw| decode(&raw, offset, Some(&ctx))) {
                Some(e) => batch.push(e),
                None => {
                    hub.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            }
            if batch.len() >= MAX_BATCH {
                hub.publish(std::mem::take(&mut batch));
            }
        }
        hub.publish(batch);
        guard.clear_ready();
    }
    hub.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DENY_DEFAULT record of a TCP connect to port 443 from cgroup 42, on `hook`.
    fn denied_connect(hook: Hook, family: u8) -> RawEvent {
        RawEvent {
            cgroup_id: 42,
            reason: DataplaneReasonCode::DenyDefault as u32,
            rule_index: abi::RULE_INDEX_NONE,
            dst_port: 443,
            hook: hook as u8,
            protocol: Protocol::Tcp as u8,
            family,
            ..RawEvent::default()
        }
    }

    #[test]
    fn decodes_a_record_and_keeps_mapped_ipv6() {
        let mut raw = RawEvent {
            monotonic_ns: 5_000_000_000,
            tgid: 7,
            uid: 1000,
            policy_generation: 3,
            ..denied_connect(Hook::Connect6, abi::FAMILY_INET6)
        };
        raw.dst_addr[10] = 0xff;
        raw.dst_addr[11] = 0xff;
        raw.dst_addr[12..].copy_from_slice(&[192, 0, 2, 1]);
        raw.comm[..4].copy_from_slice(b"curl");
        let e = decode(&raw, 1_000_000_000, None).expect("decodes");
        assert_eq!(
            e.dst_ip,
            Some("::ffff:192.0.2.1".parse::<IpAddr>().expect("ip"))
        );
        assert_eq!(e.dst_port, Some(443));
        assert_eq!(e.comm, "curl");
        assert_eq!(e.reason, DataplaneReasonCode::DenyDefault);
        assert_eq!(e.observed_at, UNIX_EPOCH + Duration::from_secs(6));
        assert_eq!(e.rule_id, None);
        raw.hook = 9;
        assert!(decode(&raw, 0, None).is_none());
    }

    /// A process may name itself with any bytes (prctl(PR_SET_NAME), /proc/self/comm). Lossy decoding turns
    /// each invalid byte into a 3-byte U+FFFD: the decoder must still produce a record this package's own
    /// parser accepts.
    #[test]
    fn a_comm_that_is_not_utf8_still_gives_a_valid_event() {
        use crate::contract::events::{parse_value, COMM_MAX_BYTES};
        let mut raw = denied_connect(Hook::Connect4, abi::FAMILY_INET);
        raw.dst_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
        for comm in [[0xff; 16], *b"caf\xc3\xa9\xff\xfe\x80abcdefg\xe2"] {
            raw.comm = comm;
            let e = decode(&raw, 0, None).expect("decodes");
            assert!(e.comm.len() <= COMM_MAX_BYTES, "{:?}", e.comm);
            let event = serde_json::json!({
                "code_namespace": "dataplane_verdict", "reason_code": e.reason.as_str(),
                "verdict": e.reason.verdict().as_str(), "hook": e.hook.as_str(),
                "cgroup_id": e.cgroup_id.to_string(), "protocol": e.protocol.as_str(),
                "dst_ip": e.dst_ip.expect("a connect has a destination").to_string(),
                "dst_port": e.dst_port, "pid": e.pid, "uid": e.uid,
                "comm": e.comm,
            });
            if let Err(err) = parse_value(&event) {
                panic!("the package's parser rejects the decoded event: {err}");
            }
        }
        raw.comm = [0xff; 16];
        assert_eq!(
            decode(&raw, 0, None).expect("decodes").comm,
            "\u{fffd}".repeat(5)
        );
        raw.comm = *b"caf\xc3\xa9\xff\xfe\x80abcdefg\xe2";
        assert_eq!(
            decode(&raw, 0, None).expect("decodes").comm,
            "caf\u{e9}\u{fffd}\u{fffd}\u{fffd}ab"
        );
    }

    #[test]
    fn a_socket_refusal_has_no_destination() {
        let raw = RawEvent {
            reason: DataplaneReasonCode::DenySocketCreate as u32,
            rule_index: abi::RULE_INDEX_NONE,
            hook: Hook::SockCreate as u8,
            protocol: Protocol::Raw as u8,
            family: abi::FAMILY_NONE,
            ..RawEvent::default()
        };
        let e = decode(&raw, 0, None).expect("decodes");
        assert_eq!((e.dst_ip, e.dst_port), (None, None));
        assert_eq!((e.hook, e.protocol), (Hook::SockCreate, Protocol::Raw));
        // A family the programs never write is not guessed at.
        assert!(decode(&RawEvent { family: 3, ..raw }, 0, None).is_none());
    }

    #[test]
    fn rule_id_cache_keeps_recent_generations_within_its_budget() {
        let mut c = RuleIdCache::default();
        // Small policies: far more than KEEP generations fit the id budget.
        for g in 1..=100u64 {
            c.insert(g, Arc::new(vec![format!("r{g}")]));
        }
        assert_eq!(c.get(100, 0), Some(Some("r100".into())));
        assert_eq!(c.get(1, 0), Some(Some("r1".into())));
        assert_eq!(c.get(100, 1), Some(None));
        // Large ones: only the last KEEP generations stay once the budget is exceeded.
        let big = Arc::new(vec![String::new(); RuleIdCache::ID_BUDGET / 2]);
        for g in 101..=106u64 {
            c.insert(g, big.clone());
        }
        assert!(c.get(106, 0).is_some() && c.get(103, 0).is_some());
        assert_eq!(c.get(102, 0), None);
        assert_eq!(c.get(100, 0), None);
        assert_eq!(c.ids, 4 * big.len());
    }

    fn event(port: u16) -> VerdictEvent {
        VerdictEvent {
            observed_at: UNIX_EPOCH,
            monotonic_ns: 0,
            cgroup_id: 1,
            pid: 1,
            uid: 0,
            comm: String::new(),
            hook: Hook::Connect4,
            protocol: Protocol::Tcp,
            dst_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            dst_port: Some(port),
            reason: DataplaneReasonCode::DenyDefault,
            rule_id: None,
            dns_name: None,
            policy_generation: 1,
            workload_id: None,
            managed_cgroup_id: 1,
        }
    }

    #[test]
    fn observed_at_has_nine_fraction_digits_and_the_correct_civil_date() {
        let at = |t: SystemTime| {
            let mut e = event(1);
            e.observed_at = t;
            e.observed_timestamp().map(|ts| ts.as_str().to_owned())
        };
        // 2026-11-28T15:11:19Z is 1795878679 s after the epoch.
        let t = UNIX_EPOCH + Duration::new(1_795_878_679, 42);
        assert_eq!(at(t).as_deref(), Some("2026-11-28T15:11:19.000000042Z"));
        assert_eq!(
            at(UNIX_EPOCH).as_deref(),
            Some("1970-01-01T00:00:00.000000000Z")
        );
        // Leap day.
        let t = UNIX_EPOCH + Duration::new(951_782_400, 999_999_999);
        assert_eq!(at(t).as_deref(), Some("2000-02-29T00:00:00.999999999Z"));
        // A broken RTC before the epoch is clamped to it, not dropped.
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(at(t).as_deref(), Some("1970-01-01T00:00:00.000000000Z"));
    }

    #[test]
    fn the_packet_event_carries_every_field_and_saturates_the_generation() {
        let mut e = event(443);
        e.comm = "curl".into();
        e.rule_id = Some("r".into());
        e.workload_id = Some("w".into());
        let p = DataplanePacketEvent::from(&e);
        assert_eq!(p.reason_code, e.reason);
        assert_eq!((p.hook, p.protocol), (Some(e.hook), Some(e.protocol)));
        assert_eq!((p.cgroup_id, p.pid, p.uid), (Some(1), Some(1), Some(0)));
        assert_eq!((p.dst_ip, p.dst_port), (e.dst_ip, Some(443)));
        assert_eq!(p.comm.as_ref().map(Comm::as_str), Some("curl"));
        assert_eq!(
            (p.rule_id.as_deref(), p.workload_id.as_deref()),
            (Some("r"), Some("w"))
        );
        assert_eq!(p.message, None);
        assert_eq!(p.policy_generation.map(PolicyGeneration::get), Some(1));
        e.policy_generation = u64::MAX;
        assert_eq!(
            e.to_packet_event()
                .policy_generation
                .map(PolicyGeneration::get),
            Some(POLICY_GENERATION_MAX)
        );
    }

    fn ports(batch: Option<Vec<VerdictEvent>>) -> Vec<u16> {
        batch
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.dst_port)
            .collect()
    }

    #[test]
    fn every_subscriber_sees_every_event_and_drops_are_counted_per_subscriber() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let hub = EventHub::new(3);
        // Nobody subscribed: counted, not kept.
        hub.publish(vec![event(1)]);
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        hub.publish((10..12).map(event).collect());
        assert_eq!(rt.block_on(a.recv_batch(10)).map(|v| v.len()), Some(2));
        // b has not read yet: of 2 + 2 events its queue of 3 takes 3 and drops 1; a takes both.
        hub.publish((20..22).map(event).collect());
        assert_eq!(ports(rt.block_on(b.recv_batch(10))), vec![10, 11, 20]);
        assert_eq!(ports(rt.block_on(a.recv_batch(10))), vec![20, 21]);
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 2);
        // A subscriber that goes away with events queued: they are counted.
        hub.publish(vec![event(30)]);
        drop(b);
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 3);
        hub.publish(vec![event(40)]);
        assert_eq!(ports(rt.block_on(a.recv_batch(10))), vec![30, 40]);
        // Closing ends every stream once its queue is empty.
        hub.publish(vec![event(50)]);
        hub.close();
        assert_eq!(ports(rt.block_on(a.recv_batch(10))), vec![50]);
        assert!(rt.block_on(a.recv_batch(10)).is_none());
        let mut late = hub.subscribe();
        assert!(rt.block_on(late.recv_batch(10)).is_none());
    }
}
