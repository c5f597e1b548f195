//! Weighted backend choice inside one pool, cheap with thousands of backends.
//!
//! Effective weights change only when a backend's state or slow-start factor does, so
//! the cumulative table is cached and rebuilt when the registry's epoch moves; a pick is
//! one atomic load, one compare and a binary search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::health::{Backend, State};

/// A backend as one snapshot sees it: the shared health state plus this config's
/// weight for it.
#[derive(Debug, Clone)]
pub struct Member {
    pub backend: Arc<Backend>,
    pub weight: u32,
}

/// The members of a pool and their cached pick table.
#[derive(Debug)]
pub struct BackendSet {
    members: Vec<Member>,
    configured_total: f64,
    epoch: Arc<AtomicU64>,
    table: ArcSwap<Table>,
}

#[derive(Debug, Default)]
struct Table {
    epoch: u64,
    /// Running sum of effective weights, one entry per member.
    cumulative: Vec<f64>,
}

impl BackendSet {
    pub fn new(members: Vec<Member>, epoch: Arc<AtomicU64>) -> Self {
        let configured_total = members.iter().map(|m| f64::from(m.weight)).sum();
        let set = BackendSet {
            members,
            configured_total,
            epoch,
            table: ArcSwap::from_pointee(Table {
                epoch: u64::MAX,
                cumulative: Vec::new(),
            }),
        };
        set.current();
        set
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Sum of effective weights over sum of configured weights, in [0, 1].
    pub fn capacity(&self) -> f64 {
        if self.configured_total <= 0.0 {
            return 0.0;
        }
        let t = self.current();
        t.cumulative.last().copied().unwrap_or(0.0) / self.configured_total
    }

    /// Whether any member can take a request now.
    pub fn has_ready(&self) -> bool {
        self.current().cumulative.last().is_some_and(|&t| t > 0.0)
    }

    /// Whether one more member may be ejected: at most `max(1, floor(n * pct / 100))`
    /// of the pool at once.
    pub fn may_eject(&self, max_percent: u32) -> bool {
        let n = self.members.len();
        let budget = (n * max_percent as usize / 100).max(1);
        let ejected = self
            .members
            .iter()
            .filter(|m| m.backend.state() == State::Ejected)
            .count();
        ejected < budget
    }

    /// A member index chosen by effective weight with `r` uniform in [0, 1), skipping
    /// those in `exclude` (already tried). `None` when nothing eligible is left.
    pub fn pick(&self, r: f64, exclude: &[usize]) -> Option<usize> {
        let t = self.current();
        let total = t.cumulative.last().copied().unwrap_or(0.0);
        if total <= 0.0 {
            return None;
        }
        let target = r * total;
        let first = t
            .cumulative
            .partition_point(|&c| c <= target)
            .min(t.cumulative.len() - 1);
        // Walk on from the pick to the next eligible member, wrapping around; the walk is
        // only long when most members are excluded or at zero weight.
        let n = t.cumulative.len();
        (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| weight_at(&t.cumulative, i) > 0.0 && !exclude.contains(&i))
    }

    fn current(&self) -> arc_swap::Guard<Arc<Table>> {
        let now = self.epoch.load(Ordering::Acquire);
        let t = self.table.load();
        if t.epoch == now {
            return t;
        }
        let mut sum = 0.0;
        let cumulative = self
            .members
            .iter()
            .map(|m| {
                sum += f64::from(m.weight) * m.backend.factor();
                sum
            })
            .collect();
        self.table.store(Arc::new(Table {
            epoch: now,
            cumulative,
        }));
        self.table.load()
    }
}

fn weight_at(cumulative: &[f64], i: usize) -> f64 {
    let before = if i == 0 { 0.0 } else { cumulative[i - 1] };
    cumulative[i] - before
}
