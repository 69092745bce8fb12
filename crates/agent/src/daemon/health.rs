//! Health: whether managed traffic is judged by a policy under a live heartbeat, and why not.
//!
//! The agent knows every input without asking the kernel: the generation it applied or adopted, the time of its
//! last successful heartbeat write, whether the event reader still runs. GetHealth is therefore answered from
//! memory (no map reads), and the heartbeat task re-evaluates it every beat to notice and log transitions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use interceptor_ebpf_core::contract::control::protocol::{Health, HealthStatus};
use interceptor_ebpf_core::contract::layer::Layer;
use interceptor_ebpf_core::contract::modes::FailMode;
use interceptor_ebpf_core::contract::timestamp::Timestamp;

/// A change of the degraded state, for the lifecycle log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Degraded { reasons: Vec<String> },
    Recovered { degraded_for: Duration },
}

pub struct HealthState {
    started: Instant,
    started_at: SystemTime,
    adopted: bool,
    adopted_heartbeat_age: Option<Duration>,
    grace: Duration,
    fail_mode: FailMode,
    /// Nanoseconds after `started` of the last successful heartbeat write.
    last_beat_ns: AtomicU64,
    beat_error: Mutex<Option<String>>,
    generation: AtomicU64,
    events_stopped: AtomicBool,
    /// When the current degraded condition began (wall clock and monotonic).
    degraded_since: Mutex<Option<(SystemTime, Instant)>>,
    /// The bypass layers the dataplane attached or adopted: fixed for the agent's life.
    active_layers: Vec<Layer>,
    /// Why rules by name cannot work now (the DNS proxy is off or stopped, or the adopted policy's names are
    /// unknown), re-evaluated every beat; `None` when they work or the policy names nothing.
    dns_problem: Mutex<Option<String>>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl HealthState {
    pub fn new(
        adopted: bool,
        adopted_heartbeat_age: Option<Duration>,
        grace: Duration,
        fail_mode: FailMode,
        generation: u64,
        active_layers: Vec<Layer>,
    ) -> HealthState {
        HealthState {
            started: Instant::now(),
            started_at: SystemTime::now(),
            adopted,
            adopted_heartbeat_age,
            grace,
            fail_mode,
            last_beat_ns: AtomicU64::new(0),
            beat_error: Mutex::new(None),
            generation: AtomicU64::new(generation),
            events_stopped: AtomicBool::new(false),
            degraded_since: Mutex::new(None),
            active_layers,
            dns_problem: Mutex::new(None),
        }
    }

    /// Records the outcome of one heartbeat write.
    pub fn beat(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.last_beat_ns.store(ns, Ordering::Relaxed);
                if let Ok(mut e) = self.beat_error.lock() {
                    *e = None;
                }
            }
            Err(why) => {
                if let Ok(mut e) = self.beat_error.lock() {
                    *e = Some(why);
                }
            }
        }
    }

    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Records why rules by name do not work now, or `None` when they do.
    pub fn set_dns_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.dns_problem.lock() {
            *p = problem;
        }
    }

    pub fn events_stopped(&self) {
        self.events_stopped.store(true, Ordering::Relaxed);
    }

    /// The heartbeat age past which the kernel degrades managed cgroups.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_nanos(self.last_beat_ns.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn degraded_verdict(&self) -> &'static str {
        match self.fail_mode {
            FailMode::Closed => "DENY_DEGRADED_FAIL_CLOSED",
            FailMode::Open => "ALLOW_DEGRADED_FAIL_OPEN",
        }
    }

    /// Why the agent is degraded now; empty when it is not.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.generation() == 0 {
            out.push(format!(
                "no policy loaded: managed cgroups in enforce mode get {}",
                self.degraded_verdict()
            ));
        }
        if let Some(e) = self.beat_error.lock().ok().and_then(|e| e.clone()) {
            out.push(format!("heartbeat write failed: {e}"));
        }
        let age = self.heartbeat_age();
        if age > self.grace {
            out.push(format!(
                "heartbeat stale: last beat {} ms ago, grace {} ms: managed cgroups in enforce mode get {}",
                ms(age),
                ms(self.grace),
                self.degraded_verdict()
            ));
        }
        if let Some(p) = self.dns_problem.lock().ok().and_then(|p| p.clone()) {
            out.push(p);
        }
        if self.events_stopped.load(Ordering::Relaxed) {
            out.push(
                "the event reader stopped: verdicts are still enforced but no longer logged or streamed".into(),
            );
        }
        out
    }

    /// Re-evaluates the state; returns the transition, if any, for the log.
    pub fn update(&self) -> (Vec<String>, Option<Transition>) {
        let reasons = self.reasons();
        let Ok(mut since) = self.degraded_since.lock() else {
            return (reasons, None);
        };
        let transition = match (reasons.is_empty(), *since) {
            (false, None) => {
                *since = Some((SystemTime::now(), Instant::now()));
                Some(Transition::Degraded {
                    reasons: reasons.clone(),
                })
            }
            (true, Some((_, at))) => {
                *since = None;
                Some(Transition::Recovered {
                    degraded_for: at.elapsed(),
                })
            }
            _ => None,
        };
        (reasons, transition)
    }

    /// The GetHealth data.
    pub fn snapshot(&self) -> Health {
        let (reasons, _) = self.update();
        let since = self.degraded_since.lock().ok().and_then(|s| *s);
        Health {
            status: if reasons.is_empty() {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            degraded_since: since.and_then(|(t, _)| Timestamp::from_system_time(t)),
            started_at: Timestamp::from_system_time(self.started_at),
            adopted: Some(self.adopted),
            adopted_heartbeat_age_ms: self.adopted_heartbeat_age.map(ms),
            heartbeat_age_ms: Some(ms(self.heartbeat_age())),
            heartbeat_grace_ms: Some(ms(self.grace)),
            active_layers: Some(self.active_layers.clone()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            degraded_reasons: reasons,
        }
    }

    /// The bypass layers in force.
    pub fn active_layers(&self) -> &[Layer] {
        &self.active_layers
    }

    pub fn is_degraded(&self) -> bool {
        !self.reasons().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_policy_is_degraded_until_one_is_loaded() {
        let h = HealthState::new(
            false,
            None,
            Duration::from_secs(5),
            FailMode::Closed,
            0,
            vec![Layer::SockCreate, Layer::Egress],
        );
        h.beat(Ok(()));
        let (reasons, t) = h.update();
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].contains("DENY_DEGRADED_FAIL_CLOSED"),
            "{reasons:?}"
        );
        assert!(matches!(t, Some(Transition::Degraded { .. })));
        let s = h.snapshot();
        assert_eq!(s.status, HealthStatus::Degraded);
        assert!(s.degraded_since.is_some());
        assert_eq!(s.adopted, Some(false));
        assert_eq!(
            s.active_layers,
            Some(vec![Layer::SockCreate, Layer::Egress])
        );
        h.set_generation(1);
        assert!(matches!(h.update().1, Some(Transition::Recovered { .. })));
        let s = h.snapshot();
        assert_eq!(s.status, HealthStatus::Ok);
        assert_eq!(s.degraded_since, None);
        assert_eq!(s.degraded_reasons, Vec::<String>::new());
    }

    #[test]
    fn a_stale_or_failing_heartbeat_is_degraded() {
        let h = HealthState::new(
            true,
            Some(Duration::from_millis(7000)),
            Duration::from_millis(20),
            FailMode::Open,
            3,
            Vec::new(),
        );
        h.beat(Ok(()));
        assert!(!h.is_degraded());
        std::thread::sleep(Duration::from_millis(40));
        let r = h.reasons();
        assert!(
            r[0].starts_with("heartbeat stale") && r[0].contains("ALLOW_DEGRADED_FAIL_OPEN"),
            "{r:?}"
        );
        h.beat(Err("map write failed".into()));
        assert!(h.reasons().iter().any(|r| r.contains("map write failed")));
        let s = h.snapshot();
        assert_eq!(s.adopted_heartbeat_age_ms, Some(7000));
    }
}
