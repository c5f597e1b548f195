//! A local ramp's window: samples of the series the requests already count in (the
//! route's series of each pool, the pools' backends' upstream histograms), kept as
//! increments so that a backend leaving the pool takes nothing back out of it.
//!
//! Nothing here runs per request: [`Window::sample`] reads the counters a few times a
//! second, as `/metrics` does when scraped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Side;
use crate::metrics::{Stats, SLOTS};
use crate::routing::Route;

/// The window of one ramp, for its two pools: `[pool, baseline]`.
#[derive(Debug, Default)]
pub(super) struct Window {
    last: [Last; 2],
    /// Increments per sample, oldest first; only what the longest window needs.
    ring: VecDeque<(Instant, [Delta; 2])>,
    /// False until the first sample: what was counted before the ramp is not its.
    primed: bool,
}

/// The counters as last read, to take the next increment from.
#[derive(Debug, Default)]
struct Last {
    requests: u64,
    errors: u64,
    backends: HashMap<SocketAddr, [u64; SLOTS]>,
}

/// What one pool counted between two samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delta {
    pub requests: u64,
    pub errors: u64,
    buckets: [u64; SLOTS],
}

impl Default for Delta {
    fn default() -> Self {
        Delta {
            requests: 0,
            errors: 0,
            buckets: [0; SLOTS],
        }
    }
}

impl Window {
    /// Reads the counters of split entries `sides` (`[pool, baseline]`) of `route` at
    /// `now`, keeps their increments for `keep`, and returns the pool's.
    pub(super) fn sample(
        &mut self,
        route: &Route,
        sides: [usize; 2],
        now: Instant,
        keep: Duration,
    ) -> Delta {
        let mut deltas = [Delta::default(); 2];
        let primed = self.primed;
        for ((last, delta), i) in self.last.iter_mut().zip(&mut deltas).zip(sides) {
            let totals = route.series(Some(i)).totals();
            let (requests, errors) = (totals.answers(), totals.errors());
            delta.requests = requests.saturating_sub(last.requests);
            delta.errors = errors.saturating_sub(last.errors);
            (last.requests, last.errors) = (requests, errors);
            let Some((pool, _)) = route.split.get(i) else {
                continue;
            };
            let members = pool.backends.members();
            // A backend gone from the pool leaves with its counts: forget it too. (A
            // set: a pool of thousands of pods must not cost a quadratic walk a tick.)
            let present: HashSet<SocketAddr> = members.iter().map(|m| m.backend.addr).collect();
            last.backends.retain(|addr, _| present.contains(addr));
            for m in members {
                let now_buckets = m.backend.stats.totals().buckets;
                let then = last.backends.insert(m.backend.addr, now_buckets);
                // A backend first seen counts from here: its past is not the window's.
                let Some(then) = then.filter(|_| primed) else {
                    continue;
                };
                for ((d, n), t) in delta.buckets.iter_mut().zip(&now_buckets).zip(&then) {
                    *d += n.saturating_sub(*t);
                }
            }
        }
        if !self.primed {
            self.primed = true;
            deltas = [Delta::default(); 2];
        }
        self.ring.push_back((now, deltas));
        while self
            .ring
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > keep)
        {
            self.ring.pop_front();
        }
        deltas[0]
    }

    /// Both pools' figures over the `span` ending at `now`, with the latency quantile
    /// `q`.
    pub(super) fn measure(&self, now: Instant, span: Duration, q: f64) -> [Side; 2] {
        let mut sums = [Delta::default(); 2];
        for (_, deltas) in self
            .ring
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < span)
        {
            for (sum, d) in sums.iter_mut().zip(deltas) {
                sum.requests += d.requests;
                sum.errors += d.errors;
                for (s, b) in sum.buckets.iter_mut().zip(&d.buckets) {
                    *s += b;
                }
            }
        }
        sums.map(|d| {
            let stats = Stats {
                buckets: d.buckets,
                ..Stats::default()
            };
            Side {
                requests: d.requests as f64,
                errors: d.errors as f64,
                observations: d.buckets.iter().sum::<u64>() as f64,
                latency: stats.quantile(q),
            }
        })
    }
}
