//! Who may hold the control socket's connection slots: no unprivileged peer can lock root or the privileged
//! controller out (issue 17, "Lock-out").
//!
//! - Every connection counts against `max_clients`.
//! - An unprivileged peer (by the uid SO_PEERCRED gives at connect time) holds at most `per_uid` connections,
//!   and unprivileged peers together hold at most `max_clients - reserved`: the last `reserved` slots are kept
//!   for privileged peers, so a flood by any number of unprivileged uids leaves room for `ctl health` and every
//!   mutation of root or the controller.
//! - Privileged: uid 0, and a peer the controller policy (`BROKER_EBPF_PRIVILEGED_UIDS`/`_GIDS`) allows to
//!   mutate. With both lists empty every peer may mutate, but only uid 0 counts as privileged here (otherwise
//!   nothing would be kept for root). A peer without credentials counts as one unprivileged peer.
//!
//! A refusal is logged as one `connection_refused` lifecycle line at most once a second (the line says how many
//! were refused since the previous one), and counted in
//! `interceptor_ebpf_control_connections_refused_total{reason}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interceptor_ebpf_core::contract::control::peer_auth::{
    authorize_controller_peer, ControllerAuthorizationPolicy, PeerCredentials,
};

/// How many connections, by whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    pub max_clients: usize,
    /// Most connections one unprivileged uid may hold.
    pub per_uid: usize,
    /// Slots only privileged peers may take.
    pub reserved: usize,
}

/// Why a connection was refused: the `reason` label of the metric and of the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// This unprivileged uid holds `per_uid` connections.
    PeerLimit,
    /// What is left is kept for privileged peers.
    Reserved,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Full, Refusal::PeerLimit, Refusal::Reserved];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "max_clients",
            Refusal::PeerLimit => "peer_limit",
            Refusal::Reserved => "reserved",
        }
    }

    /// The CTRL_COMMAND_FAILED message the refused peer reads.
    pub fn message(self, limits: &SlotLimits, peer: Option<&PeerCredentials>) -> String {
        match self {
            Refusal::Full => format!(
                "the agent serves at most {} connections at once (BROKER_EBPF_MAX_CLIENTS); try again",
                limits.max_clients
            ),
            Refusal::PeerLimit => format!(
                "uid {} holds {} connections, the most an unprivileged peer may hold \
                 (BROKER_EBPF_MAX_CLIENTS_PER_UID); close one and try again",
                peer.map_or_else(|| "(unknown)".to_owned(), |p| p.uid.to_string()),
                limits.per_uid
            ),
            Refusal::Reserved => format!(
                "the connections unprivileged peers may hold are taken: the last {} of {} are kept for \
                 privileged peers (BROKER_EBPF_RESERVED_CLIENTS); try again",
                limits.reserved, limits.max_clients
            ),
        }
    }
}

#[derive(Default)]
struct Held {
    total: usize,
    unprivileged: usize,
    /// Unprivileged connections by uid (`None`: no credentials).
    by_uid: HashMap<Option<u32>, usize>,
}

/// The connection slots of the control socket.
pub struct Slots {
    limits: SlotLimits,
    policy: ControllerAuthorizationPolicy,
    held: Mutex<Held>,
}

/// One connection's slot, given back on drop.
pub struct Slot {
    slots: Arc<Slots>,
    /// `Some(uid)` for an unprivileged peer.
    unprivileged: Option<Option<u32>>,
}

impl Slots {
    pub fn new(limits: SlotLimits, policy: ControllerAuthorizationPolicy) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            policy,
            held: Mutex::new(Held::default()),
        })
    }

    pub fn limits(&self) -> &SlotLimits {
        &self.limits
    }

    /// Root, or a peer the controller policy names (an empty policy names nobody here).
    pub fn is_privileged(&self, peer: Option<&PeerCredentials>) -> bool {
        let Some(p) = peer else { return false };
        if p.uid == 0 {
            return true;
        }
        let names_someone = !self.policy.privileged_controller_uids.is_empty()
            || !self.policy.privileged_controller_gids.is_empty();
        names_someone && authorize_controller_peer(peer, &self.policy).is_ok()
    }

    /// A slot for a new connection of `peer`, or why not.
    pub fn acquire(self: &Arc<Self>, peer: Option<&PeerCredentials>) -> Result<Slot, Refusal> {
        let privileged = self.is_privileged(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total >= self.limits.max_clients {
            return Err(Refusal::Full);
        }
        if privileged {
            held.total += 1;
            return Ok(Slot {
                slots: self.clone(),
                unprivileged: None,
            });
        }
        let key = peer.map(|p| p.uid);
        if held.by_uid.get(&key).copied().unwrap_or(0) >= self.limits.per_uid {
            return Err(Refusal::PeerLimit);
        }
        if held.unprivileged >= self.limits.max_clients.saturating_sub(self.limits.reserved) {
            return Err(Refusal::Reserved);
        }
        held.total += 1;
        held.unprivileged += 1;
        *held.by_uid.entry(key).or_insert(0) += 1;
        Ok(Slot {
            slots: self.clone(),
            unprivileged: Some(key),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(key) = self.unprivileged {
            held.unprivileged -= 1;
            if let Some(n) = held.by_uid.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    held.by_uid.remove(&key);
                }
            }
        }
    }
}

/// At most one log line per `every`; what was held back is counted into the next one.
pub struct LogLimiter {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log now, `n` lines were held back since the last one; `None`: hold this one back.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials {
            uid,
            gid,
            pid: Some(1),
        }
    }

    fn slots(max: usize, per_uid: usize, reserved: usize, uids: &[u32]) -> Arc<Slots> {
        Slots::new(
            SlotLimits {
                max_clients: max,
                per_uid,
                reserved,
            },
            ControllerAuthorizationPolicy {
                privileged_controller_uids: uids.to_vec(),
                privileged_controller_gids: vec![],
            },
        )
    }

    #[test]
    fn one_unprivileged_uid_stops_at_its_cap_and_others_still_connect() {
        let s = slots(10, 3, 2, &[]);
        let a = peer(1000, 1000);
        let held: Vec<_> = (0..3).map(|_| s.acquire(Some(&a)).expect("slot")).collect();
        assert_eq!(s.acquire(Some(&a)).err(), Some(Refusal::PeerLimit));
        assert!(s.acquire(Some(&peer(1001, 1000))).is_ok());
        drop(held);
        assert!(s.acquire(Some(&a)).is_ok(), "slots are given back on drop");
    }

    #[test]
    fn unprivileged_peers_together_leave_the_reserve_to_root_and_the_controller() {
        let s = slots(6, 6, 2, &[1500]);
        let mut held = Vec::new();
        for uid in 2000..2004 {
            held.push(s.acquire(Some(&peer(uid, uid))).expect("slot"));
        }
        assert_eq!(
            s.acquire(Some(&peer(2004, 2004))).err(),
            Some(Refusal::Reserved)
        );
        held.push(s.acquire(Some(&peer(1500, 1))).expect("controller"));
        held.push(s.acquire(Some(&peer(0, 0))).expect("root"));
        assert_eq!(s.acquire(Some(&peer(0, 0))).err(), Some(Refusal::Full));
        assert_eq!(s.acquire(None).err(), Some(Refusal::Full));
    }

    #[test]
    fn privilege_is_root_or_the_controller_policy_never_everyone() {
        let open = slots(4, 1, 1, &[]);
        assert!(open.is_privileged(Some(&peer(0, 5))));
        assert!(!open.is_privileged(Some(&peer(1000, 0))));
        assert!(!open.is_privileged(None));
        let by_gid = Slots::new(
            *open.limits(),
            ControllerAuthorizationPolicy {
                privileged_controller_uids: vec![],
                privileged_controller_gids: vec![1500],
            },
        );
        assert!(by_gid.is_privileged(Some(&peer(1000, 1500))));
        assert!(!by_gid.is_privileged(Some(&peer(1000, 1000))));
    }

    #[test]
    fn the_log_limiter_admits_one_line_a_period_and_counts_the_rest() {
        let l = LogLimiter::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(l.admit(t), Some(0));
        assert_eq!(l.admit(t + Duration::from_millis(10)), None);
        assert_eq!(l.admit(t + Duration::from_millis(20)), None);
        assert_eq!(l.admit(t + Duration::from_millis(1001)), Some(2));
    }
}
