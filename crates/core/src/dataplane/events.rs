//! The event pipeline: ring buffer -> decoded [`VerdictEvent`]s -> a bounded user-space queue.
//!
//! The reader is a tokio task waiting on the ring buffer's fd (`AsyncFd::register_with_interest`, the I/O-safe
//! replacement of the deprecated `AsyncFd::new`). Each wake-up drains the ring buffer, decodes every record and
//! appends it to a queue of at most `event_queue_capacity` events; what does not fit is counted in
//! `dropped_in_queue` and discarded, so memory never grows with a slow consumer.

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
use crate::contract::hook::{Hook, Protocol};
use crate::contract::reason_codes::DataplaneReasonCode;

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
    /// Lossy UTF-8, NULs trimmed, at most 16 bytes.
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
    pub policy_generation: u64,
    /// From the managed-cgroup entry that matched.
    pub workload_id: Option<String>,
    /// The managed cgroup whose entry matched (0 when unmanaged). An addition to the agreed API.
    pub managed_cgroup_id: u64,
}

/// Rule ids of recent generations, filled by `replace_policy` and, for an adopted state, from the pinned map.
#[derive(Default)]
pub(crate) struct RuleIdCache {
    by_generation: StdHashMap<u64, Arc<Vec<String>>>,
}

impl RuleIdCache {
    /// Keeps the ids of the last few generations: enough for records still in the ring buffer after a switch.
    const KEEP: usize = 4;

    pub(crate) fn insert(&mut self, generation: u64, ids: Arc<Vec<String>>) {
        self.by_generation.insert(generation, ids);
        while self.by_generation.len() > Self::KEEP {
            let Some(oldest) = self.by_generation.keys().min().copied() else {
                break;
            };
            self.by_generation.remove(&oldest);
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
        // Adopted generation (written by an earlier loader): read the slot that still holds it.
        let maps = self.maps.lock().ok()?;
        (0..2u32)
            .find(|s| maps.meta(*s).is_ok_and(|m| m.generation == generation))
            .and_then(|s| maps.rule_id(s, index))
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
    let end = raw
        .comm
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(raw.comm.len());
    let comm = String::from_utf8_lossy(&raw.comm[..end]).into_owned();
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
        policy_generation: raw.policy_generation,
        workload_id: ctx.and_then(|c| c.workload_id(raw.managed_cgroup_id)),
        managed_cgroup_id: raw.managed_cgroup_id,
    })
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, in ns: added to a record's bpf_ktime_get_ns to get wall time.
pub(crate) fn boot_offset_ns() -> i128 {
    i128::from(config_map::clock_ns(libc::CLOCK_REALTIME)) - i128::from(config_map::monotonic_ns())
}

/// The bounded queue between the reader task and [`EventReceiver`].
pub(crate) struct EventQueue {
    events: Mutex<VecDeque<VerdictEvent>>,
    capacity: usize,
    notify: Notify,
    closed: AtomicBool,
    pub dropped: AtomicU64,
    pub undecodable: AtomicU64,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventQueue {
            events: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        })
    }

    fn push_batch(&self, batch: Vec<VerdictEvent>) {
        if batch.is_empty() {
            return;
        }
        let mut dropped = 0u64;
        if let Ok(mut q) = self.events.lock() {
            for e in batch {
                if q.len() < self.capacity {
                    q.push_back(e);
                } else {
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// Receives decoded events in batches.
pub struct EventReceiver {
    queue: Arc<EventQueue>,
}

impl EventReceiver {
    pub(crate) fn new(queue: Arc<EventQueue>) -> Self {
        EventReceiver { queue }
    }

    /// Waits for at least one event and returns up to `max` (at least 1); `None` once the dataplane is closed and
    /// the queue is empty.
    pub async fn recv_batch(&mut self, max: usize) -> Option<Vec<VerdictEvent>> {
        let max = max.max(1);
        loop {
            let notified = self.queue.notify.notified();
            {
                let mut q = self.queue.events.lock().ok()?;
                if !q.is_empty() {
                    let n = q.len().min(max);
                    return Some(q.drain(..n).collect());
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
    fn drop(&mut self) {
        if let Ok(mut q) = self.queue.events.lock() {
            q.clear();
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
    queue: Arc<EventQueue>,
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
                    queue.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            }
            if batch.len() >= MAX_BATCH {
                queue.push_batch(std::mem::take(&mut batch));
            }
        }
        queue.push_batch(batch);
        guard.clear_ready();
    }
    queue.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_record_and_keeps_mapped_ipv6() {
        let mut raw = RawEvent {
            monotonic_ns: 5_000_000_000,
            cgroup_id: 42,
            tgid: 7,
            uid: 1000,
            reason: DataplaneReasonCode::DenyDefault as u32,
            rule_index: abi::RULE_INDEX_NONE,
            dst_port: 443,
            hook: Hook::Connect6 as u8,
            protocol: Protocol::Tcp as u8,
            family: abi::FAMILY_INET6,
            policy_generation: 3,
            ..RawEvent::default()
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
    fn rule_id_cache_keeps_recent_generations_only() {
        let mut c = RuleIdCache::default();
        for g in 1..=6u64 {
            c.insert(g, Arc::new(vec![format!("r{g}")]));
        }
        assert_eq!(c.get(6, 0), Some(Some("r6".into())));
        assert_eq!(c.get(3, 0), Some(Some("r3".into())));
        assert_eq!(c.get(2, 0), None);
        assert_eq!(c.get(6, 1), Some(None));
    }
}
