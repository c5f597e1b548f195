//! A local ramp's window: samples of the series the requests already count in (the
//! route's series of each pool, the pools' backends' upstream histograms), kept as
//! increments so that a backend leaving the pool takes nothing back out of it.
//!
//! Answers that have not come yet count too. A latency is known when its answer
//! comes, so a pool that turns 3 s slow would show nothing for 3 s; but a request sent
//! before a sample and still unanswered now is at least that old. Each backend counts
//! its requests sent and answered (two counters next to its in-flight count), and the
//! window takes the requests still waiting, by how long at least, as observations of
//! that latency.
//!
//! Nothing here runs per request: [`Window::sample`] reads the counters a few times a
//! second, as `/metrics` does when scraped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Side;
use crate::metrics::{Stats, BUCKETS, SLOTS};
use crate::routing::Route;

/// A request waiting this long or less is no evidence of anything.
const LATE: Duration = Duration::from_millis(250);

/// The window of one ramp, for its two pools: `[pool, baseline]`.
#[derive(Debug, Default)]
pub(super) struct Window {
    last: [Last; 2],
    /// Per sample, oldest first, only what the window needs: each pool's increments,
    /// and how many of its requests had been sent whole by then.
    ring: VecDeque<(Instant, [Delta; 2], [u64; 2])>,
    /// False until the first sample: what was counted before the ramp is not its.
    primed: bool,
}

/// The counters as last read, to take the next increment from.
#[derive(Debug, Default)]
struct Last {
    requests: u64,
    errors: u64,
    backends: HashMap<SocketAddr, Seen>,
    /// Requests sent whole to the pool's backends, and answered (or failed), since
    /// the first sample: sums of their increments, so that a backend that leaves or
    /// joins makes no jump.
    sent: u64,
    headed: u64,
}

/// One backend's counters at the last sample.
#[derive(Debug, Clone, Copy)]
struct Seen {
    buckets: [u64; SLOTS],
    sent: u64,
    headed: u64,
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
            // A backend gone from the pool leaves with its counts: forget it, and take
            // what it still had out as answered, so it is nobody's late answer. (A set:
            // a pool of thousands of pods must not cost a quadratic walk a tick.)
            let present: HashSet<SocketAddr> = members.iter().map(|m| m.backend.addr).collect();
            last.backends.retain(|addr, seen| {
                let stays = present.contains(addr);
                if !stays {
                    last.headed += seen.sent.saturating_sub(seen.headed);
                }
                stays
            });
            for m in members {
                let (sent, headed) = m.backend.conns.heads();
                let now_seen = Seen {
                    buckets: m.backend.stats.totals().buckets,
                    sent,
                    headed,
                };
                let then = last.backends.insert(m.backend.addr, now_seen);
                // A backend first seen counts from here: its past is not the window's.
                let Some(then) = then.filter(|_| primed) else {
                    continue;
                };
                let pairs = now_seen.buckets.iter().zip(&then.buckets);
                for (d, (n, t)) in delta.buckets.iter_mut().zip(pairs) {
                    *d += n.saturating_sub(*t);
                }
                last.sent += sent.saturating_sub(then.sent);
                last.headed += headed.saturating_sub(then.headed);
            }
        }
        if !self.primed {
            self.primed = true;
            deltas = [Delta::default(); 2];
            self.last
                .iter_mut()
                .for_each(|l| (l.sent, l.headed) = (0, 0));
        }
        let sent = [self.last[0].sent, self.last[1].sent];
        self.ring.push_back((now, deltas, sent));
        while self
            .ring
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) > keep)
        {
            self.ring.pop_front();
        }
        deltas[0]
    }

    /// Both pools' figures over the `span` ending at `now`, with the latency quantile
    /// `q`; the requests still waiting for their answer count as answers as late as
    /// they are already.
    pub(super) fn measure(&self, now: Instant, span: Duration, q: f64) -> [Side; 2] {
        let mut sums = [Delta::default(); 2];
        for (_, deltas, _) in self
            .ring
            .iter()
            .filter(|(at, _, _)| now.saturating_duration_since(*at) < span)
        {
            for (sum, d) in sums.iter_mut().zip(deltas) {
                sum.requests += d.requests;
                sum.errors += d.errors;
                for (s, b) in sum.buckets.iter_mut().zip(&d.buckets) {
                    *s += b;
                }
            }
        }
        for (side, sum) in sums.iter_mut().enumerate() {
            self.add_late(side, now, &mut sum.buckets);
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

    /// Adds side `side`'s requests still unanswered at `now` to `buckets`, each at the
    /// least it has waited: sent by a sample's time, and not among the answers counted
    /// since (a lower bound, as those answers may be of later requests).
    fn add_late(&self, side: usize, now: Instant, buckets: &mut [u64; SLOTS]) {
        let headed = self.last[side].headed;
        // Oldest first: each sample adds the requests sent by its time and still
        // waiting, less those already placed at an older age.
        let mut placed = 0;
        for (at, _, sent) in &self.ring {
            let age = now.saturating_duration_since(*at);
            if age <= LATE {
                break;
            }
            let waiting = sent[side].saturating_sub(headed);
            if waiting > placed {
                let slot = BUCKETS
                    .iter()
                    .position(|&b| age.as_secs_f64() <= b)
                    .unwrap_or(SLOTS - 1);
                buckets[slot] += waiting - placed;
                placed = waiting;
            }
        }
    }
}
