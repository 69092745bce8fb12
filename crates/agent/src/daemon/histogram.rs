//! A lock-free histogram of durations, for the latency metrics of control requests and policy applies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::exposition::HistogramSample;

/// Bucket bounds in seconds for control requests: GetHealth is answered in tens of microseconds, a
/// 10,000-rule ReplacePolicySnapshot in about 70 ms (bench/control/results.md), Shutdown waits for the dataplane
/// to close.
pub const CONTROL_REQUEST_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bucket bounds in seconds for policy applies: a small policy takes milliseconds, 10,000 rules about 30 ms in
/// the dataplane, 131,072 rules per family (the most) seconds.
pub const POLICY_APPLY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Counts observations per bucket (not cumulative: one increment per observation) and sums them in
/// nanoseconds.
pub struct DurationHistogram {
    bounds: &'static [f64],
    /// One per bound, then one for the observations above the last bound.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    pub fn new(bounds: &'static [f64]) -> DurationHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds increase");
        DurationHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        // The first bucket whose bound is at least the value (`le` is inclusive); past the last, the overflow.
        let i = self.bounds.partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The state for one scrape. The count is the buckets' total, so `_count` always equals the `+Inf` bucket
    /// even while observations land during the read.
    pub fn sample(&self) -> HistogramSample<'static> {
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for bucket in &self.buckets[..self.bounds.len()] {
            running = running.saturating_add(bucket.load(Ordering::Relaxed));
            cumulative.push(running);
        }
        let count = running.saturating_add(self.buckets[self.bounds.len()].load(Ordering::Relaxed));
        HistogramSample {
            bounds: self.bounds,
            cumulative,
            count,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::new(&[0.001, 0.01, 1.0]);
        assert_eq!(
            h.sample(),
            HistogramSample {
                bounds: &[0.001, 0.01, 1.0],
                cumulative: vec![0, 0, 0],
                count: 0,
                sum: 0.0,
            }
        );
        h.observe(Duration::from_micros(1000)); // exactly on a bound: that bucket (le is inclusive)
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(3)); // above every bound: +Inf only
        let s = h.sample();
        assert_eq!(s.cumulative, vec![1, 2, 3]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.502001).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn the_bounds_increase() {
        for bounds in [CONTROL_REQUEST_BOUNDS, POLICY_APPLY_BOUNDS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
            DurationHistogram::new(bounds).observe(Duration::from_secs(60));
        }
    }
}
