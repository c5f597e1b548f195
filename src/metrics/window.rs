//! The last minute of a series, for `/status`: a few samples of its running totals,
//! taken every [`TICK`], so that the figures over the window are the totals now less
//! the oldest sample inside it. No per-request log, and nothing on the request path.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::series::{Totals, BUCKETS, SLOTS};

/// The span `/status` reports over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often the totals are sampled.
pub(crate) const TICK: Duration = Duration::from_secs(5);

/// Samples of one series' totals, oldest first.
#[derive(Debug)]
pub(crate) struct Ring {
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    requests: u64,
    errors: u64,
    buckets: [u64; SLOTS],
}

/// A series over the window, or several added together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Stats {
    /// Requests per second.
    pub rate: f64,
    pub requests: u64,
    pub errors: u64,
    pub buckets: [u64; SLOTS],
}

impl Ring {
    /// A ring for a series born at `at`, with nothing counted yet.
    pub(crate) fn new(at: Instant) -> Self {
        Ring {
            samples: VecDeque::from([Sample::of(at, &Totals::default())]),
        }
    }

    /// Records the totals at `now`, unless nothing moved since the last sample (a value
    /// holds until the next sample: an idle series keeps one sample, however many
    /// thousand backends sit idle), and forgets what no window can start from.
    pub(crate) fn push(&mut self, now: Instant, totals: &Totals) {
        let sample = Sample::of(now, totals);
        if self
            .samples
            .back()
            .is_some_and(|last| last.same_counts(&sample))
        {
            return;
        }
        self.samples.push_back(sample);
        // Keep one sample from before the window: where it starts.
        while self.samples.len() > 1 && now.saturating_duration_since(self.samples[1].at) >= WINDOW
        {
            self.samples.pop_front();
        }
    }

    /// The window ending at `now`, whose totals are `current`: from the last sample
    /// taken [`WINDOW`] ago or before (the first, for a series younger than that).
    pub(crate) fn stats(&self, now: Instant, current: &Totals) -> Stats {
        let base = self
            .samples
            .iter()
            .rev()
            .find(|s| now.saturating_duration_since(s.at) >= WINDOW)
            .or(self.samples.front());
        let Some(base) = base else {
            return Stats::default();
        };
        let mut buckets = [0; SLOTS];
        for ((d, now), then) in buckets.iter_mut().zip(&current.buckets).zip(&base.buckets) {
            *d = now.saturating_sub(*then);
        }
        let requests = current.answers().saturating_sub(base.requests);
        // Over the window, or the series' life when shorter; at least a second, so the
        // first request is no rate of thousands.
        let span = now
            .saturating_duration_since(base.at)
            .clamp(Duration::from_secs(1), WINDOW);
        Stats {
            rate: requests as f64 / span.as_secs_f64(),
            requests,
            errors: current.errors().saturating_sub(base.errors),
            buckets,
        }
    }
}

impl Sample {
    fn same_counts(&self, other: &Sample) -> bool {
        self.requests == other.requests && self.buckets == other.buckets
    }

    fn of(at: Instant, t: &Totals) -> Self {
        Sample {
            at,
            requests: t.answers(),
            errors: t.errors(),
            buckets: t.buckets,
        }
    }
}

impl Stats {
    /// Adds another series' window (the same pool on another route).
    pub(crate) fn add(&mut self, other: &Stats) {
        self.rate += other.rate;
        self.requests += other.requests;
        self.errors += other.errors;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// Errors over requests; `None` without requests.
    pub(crate) fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The `q` quantile in seconds, interpolated inside its bucket as Prometheus's
    /// `histogram_quantile` does; `None` without observations.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let count: u64 = self.buckets.iter().sum();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = BUCKETS.get(i) else {
                    // Past the last bound: the last bound is all that is known.
                    return Some(BUCKETS[BUCKETS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let into = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * into);
            }
            below += n;
        }
        Some(BUCKETS[BUCKETS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(buckets: &[(usize, u64)], codes: &[(u16, u64)]) -> Totals {
        let mut t = Totals::default();
        for &(i, n) in buckets {
            t.buckets[i] = n;
        }
        t.codes = codes.to_vec();
        t
    }

    #[test]
    fn the_window_counts_only_its_last_minute() {
        let t0 = Instant::now();
        let mut ring = Ring::new(t0);
        // 100 requests in the first 10 s, then 60 more (6 of them 5xx) by 70 s.
        ring.push(
            t0 + Duration::from_secs(10),
            &totals(&[(0, 100)], &[(200, 100)]),
        );
        for s in (15..=65).step_by(5) {
            ring.push(
                t0 + Duration::from_secs(s),
                &totals(&[(0, 100)], &[(200, 100)]),
            );
        }
        let now = t0 + Duration::from_secs(70);
        let current = totals(&[(0, 100), (3, 60)], &[(200, 154), (502, 6)]);
        let st = ring.stats(now, &current);
        assert_eq!((st.requests, st.errors), (60, 6));
        assert_eq!(st.rate, 1.0, "60 requests over the 60 s from t=10");
        assert_eq!(ring.samples.len(), 2, "unchanged samples are not kept");
        assert_eq!(st.error_ratio(), Some(0.1));
        // All 60 in the (5ms, 10ms] bucket: the median halfway through it.
        assert_eq!(st.quantile(0.5), Some(0.0075));
        assert_eq!(st.quantile(1.0), Some(0.01));
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let mut st = Stats::default();
        assert_eq!(st.quantile(0.99), None);
        st.buckets[0] = 50; // (0, 1ms]
        st.buckets[1] = 50; // (1ms, 2.5ms]
        assert_eq!(st.quantile(0.5), Some(0.001));
        assert!((st.quantile(0.75).unwrap_or(0.0) - 0.00175).abs() < 1e-12);
        st.buckets[SLOTS - 1] = 900;
        assert_eq!(st.quantile(0.99), Some(30.0), "+Inf answers the last bound");
    }

    #[test]
    fn a_series_idle_for_long_counts_from_its_value_a_window_ago() {
        let t0 = Instant::now();
        let mut ring = Ring::new(t0);
        ring.push(
            t0 + Duration::from_secs(5),
            &totals(&[(0, 10)], &[(200, 10)]),
        );
        // Idle for minutes: no sample. Then 30 more requests.
        let now = t0 + Duration::from_secs(300);
        let current = totals(&[(0, 40)], &[(200, 40)]);
        ring.push(now, &current);
        let st = ring.stats(now + Duration::from_secs(1), &current);
        assert_eq!(st.requests, 30);
        assert_eq!(st.rate, 0.5, "30 over the last 60 s");
    }

    #[test]
    fn a_young_series_reports_over_at_least_a_second() {
        let t0 = Instant::now();
        let ring = Ring::new(t0);
        let st = ring.stats(
            t0 + Duration::from_millis(100),
            &totals(&[(0, 5)], &[(200, 5)]),
        );
        assert_eq!(st.rate, 5.0);
    }
}
