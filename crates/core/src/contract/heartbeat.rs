//! Heartbeat timing: how often the agent (or the Node API's loader) beats the dataplane heartbeat, and how old
//! the heartbeat may get before enforced cgroups fall back to the configured fail mode (SPEC 4, step 4).
//!
//! One rule for every entry point (the agent's environment and flags, the Node API's `Interceptor.load`
//! options): a beat must come strictly more often than the grace period, otherwise every small scheduling delay
//! flips managed workloads into the degraded verdicts and back. When only the grace is given, the interval is a
//! third of it, which leaves two missed beats of slack.

use std::time::Duration;

use super::validation::{Issue, IssueCode, PathSegment, ValidationError};

/// Default grace period, in milliseconds.
pub const DEFAULT_HEARTBEAT_GRACE_MS: u64 = 5_000;
/// Default interval when neither value is given, in milliseconds (a fifth of the default grace).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Largest accepted value of either option: one day. Beyond it the "heartbeat" no longer detects anything.
pub const MAX_HEARTBEAT_MS: u64 = 86_400_000;
/// The interval given only the grace: a third of it.
pub const GRACE_TO_DEFAULT_INTERVAL_DIVISOR: u64 = 3;

/// The option names of the Node API (`Interceptor.load`); issues carry them as their paths.
pub const INTERVAL_OPTION: &str = "heartbeatIntervalMs";
/// See [`INTERVAL_OPTION`].
pub const GRACE_OPTION: &str = "heartbeatGraceMs";

/// Validated heartbeat timing: `0 < interval < grace <= MAX_HEARTBEAT_MS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatTiming {
    pub interval: Duration,
    pub grace: Duration,
}

impl Default for HeartbeatTiming {
    fn default() -> Self {
        HeartbeatTiming {
            interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            grace: Duration::from_millis(DEFAULT_HEARTBEAT_GRACE_MS),
        }
    }
}

fn issue(key: &str, code: IssueCode, message: String) -> Issue {
    Issue::new(vec![PathSegment::from(key)], code, message)
}

/// Resolves and validates the heartbeat options, given in milliseconds (`None` = not given):
///
/// - neither: 1000 ms interval, 5000 ms grace;
/// - grace only: interval = grace / 3;
/// - interval only: grace 5000 ms;
/// - each value 1..=86,400,000 ms, and the interval strictly shorter than the grace.
///
/// Every problem is an issue whose path is the Node option name ([`INTERVAL_OPTION`], [`GRACE_OPTION`]); the
/// flapping rule's issue names both options and both values.
pub fn heartbeat_timing(
    interval_ms: Option<u64>,
    grace_ms: Option<u64>,
) -> Result<HeartbeatTiming, ValidationError> {
    heartbeat_timing_named(interval_ms, grace_ms, (INTERVAL_OPTION, GRACE_OPTION))
}

/// [`heartbeat_timing`] for an entry point whose options have other names (the agent's environment variables
/// or flags): `names` is (interval name, grace name), used as the issues' paths and in their messages.
pub fn heartbeat_timing_named(
    interval_ms: Option<u64>,
    grace_ms: Option<u64>,
    names: (&str, &str),
) -> Result<HeartbeatTiming, ValidationError> {
    let (interval_name, grace_name) = names;
    let mut issues = Vec::new();
    let mut range = |key: &str, v: Option<u64>| match v {
        Some(0) => {
            issues.push(issue(
                key,
                IssueCode::TooSmall,
                format!("{key} must be at least 1 ms, received 0"),
            ));
            None
        }
        Some(ms) if ms > MAX_HEARTBEAT_MS => {
            issues.push(issue(
                key,
                IssueCode::TooBig,
                format!("{key} must be at most {MAX_HEARTBEAT_MS} ms (one day), received {ms}"),
            ));
            None
        }
        other => Some(other),
    };
    let interval = range(interval_name, interval_ms);
    let grace = range(grace_name, grace_ms);
    let (Some(interval), Some(grace)) = (interval, grace) else {
        return Err(ValidationError::new(issues));
    };
    let grace = grace.unwrap_or(DEFAULT_HEARTBEAT_GRACE_MS);
    let (interval, derived) = match (interval, grace_ms) {
        (Some(i), _) => (i, false),
        (None, Some(g)) => (g / GRACE_TO_DEFAULT_INTERVAL_DIVISOR, true),
        (None, None) => (DEFAULT_HEARTBEAT_INTERVAL_MS, false),
    };
    if interval == 0 || interval >= grace {
        let interval_text = if derived {
            format!("{interval_name} (not given: a third of the grace, {interval} ms)")
        } else {
            format!("{interval_name} ({interval} ms)")
        };
        let grace_text = if grace_ms.is_some() {
            format!("{grace_name} ({grace} ms)")
        } else {
            format!("{grace_name} (not given: default {grace} ms)")
        };
        let why = if interval == 0 {
            format!("{grace_text} is too short to derive {interval_name} from it: give at least 3 ms or both options")
        } else {
            format!(
                "{interval_text} must be shorter than {grace_text}: a heartbeat that does not come more often than \
                 the grace period lets managed workloads flap into the degraded verdicts"
            )
        };
        let key = if derived { grace_name } else { interval_name };
        issues.push(issue(key, IssueCode::Custom, why));
        return Err(ValidationError::new(issues));
    }
    Ok(HeartbeatTiming {
        interval: Duration::from_millis(interval),
        grace: Duration::from_millis(grace),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: HeartbeatTiming) -> (u128, u128) {
        (t.interval.as_millis(), t.grace.as_millis())
    }

    #[test]
    fn defaults_and_derived_interval() {
        assert_eq!(heartbeat_timing(None, None).map(ms), Ok((1000, 5000)));
        assert_eq!(heartbeat_timing(None, None), Ok(HeartbeatTiming::default()));
        assert_eq!(heartbeat_timing(None, Some(900)).map(ms), Ok((300, 900)));
        assert_eq!(heartbeat_timing(None, Some(3)).map(ms), Ok((1, 3)));
        assert_eq!(heartbeat_timing(Some(200), None).map(ms), Ok((200, 5000)));
        assert_eq!(
            heartbeat_timing(Some(999), Some(1000)).map(ms),
            Ok((999, 1000))
        );
    }

    #[test]
    fn a_pair_that_can_only_flap_is_refused_naming_both_options() {
        for (i, g) in [
            (Some(1000), Some(1000)),
            (Some(2000), Some(1000)),
            (Some(5000), None),
        ] {
            let e = heartbeat_timing(i, g).expect_err("flaps");
            assert_eq!(e.issues.len(), 1);
            let m = &e.issues[0].message;
            assert!(
                m.contains("heartbeatIntervalMs") && m.contains("heartbeatGraceMs"),
                "{m}"
            );
            assert_eq!(e.issues[0].path_text(), "heartbeatIntervalMs");
        }
        let e = heartbeat_timing(Some(6000), None).expect_err("flaps");
        assert!(e.issues[0].message.contains("not given: default 5000 ms"));
        let e = heartbeat_timing(None, Some(2)).expect_err("too short to derive");
        assert_eq!(e.issues[0].path_text(), "heartbeatGraceMs");
        assert!(e.issues[0].message.contains("heartbeatIntervalMs"));
    }

    #[test]
    fn out_of_range_values_are_each_an_issue() {
        let e = heartbeat_timing(Some(0), Some(MAX_HEARTBEAT_MS + 1)).expect_err("range");
        let paths: Vec<String> = e.issues.iter().map(|i| i.path_text()).collect();
        assert_eq!(paths, ["heartbeatIntervalMs", "heartbeatGraceMs"]);
        assert!(heartbeat_timing(Some(1), Some(MAX_HEARTBEAT_MS)).is_ok());
    }

    #[test]
    fn other_entry_points_name_their_own_options() {
        let e =
            heartbeat_timing_named(Some(10), Some(10), ("INTERVAL", "GRACE")).expect_err("flaps");
        assert_eq!(e.issues[0].path_text(), "INTERVAL");
        assert_eq!(
            e.issues[0].message,
            "INTERVAL (10 ms) must be shorter than GRACE (10 ms): a heartbeat that does not come more often \
             than the grace period lets managed workloads flap into the degraded verdicts"
        );
    }
}
