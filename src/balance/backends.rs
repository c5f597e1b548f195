//! Weighted backend choice inside one pool, cheap with thousands of backends.
//!
//! Effective weights change only when a backend's state or slow-start factor does, so
//! the cumulative table is cached and rebuilt when the registry's epoch moves (at once
//! for a state, at most every [`FACTOR_EVERY`] for factors); a pick is one atomic load,
//! one compare and a binary search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::health::{Backend, State};

/// A backend as one snapshot sees it: the shared health state plus this config's
/// weight for it.
#[derive(Debug, Clone)]
pub struct Member {
    pub backend: Arc<Backend>,
    pub weight: u32,
}

impl Member {
    /// Its configured weight times its warm-up/slow-start factor: what picks use now.
    pub(crate) fn effective_weight(&self) -> f64 {
        f64::from(self.weight) * self.backend.factor()
    }
}

/// The members of a pool and their cached pick table.
#[derive(Debug)]
pub struct BackendSet {
    members: Vec<Member>,
    configured_total: f64,
    epoch: Arc<AtomicU64>,
    table: ArcSwap<Table>,
    /// [`BackendSet::capacity`] as an f32, beside the low 32 bits of the epoch it was
    /// computed at. Every request's split reads the capacity of each pool in it: one
    /// word read here spares a load of the table per pool. Packed in one word, a
    /// figure is never paired with another epoch's tag.
    capacity: AtomicU64,
}

#[derive(Debug)]
struct Table {
    epoch: u64,
    built_at: Instant,
    /// Running sum of effective weights, one entry per member.
    cumulative: Vec<f64>,
}

/// How late a table may take in slow-start factors: a pool rebuilds it at most this
/// often for them (a change of state is taken in at once).
const FACTOR_EVERY: Duration = Duration::from_millis(100);

impl BackendSet {
    pub fn new(members: Vec<Member>, epoch: Arc<AtomicU64>) -> Self {
        let configured_total = members.iter().map(|m| f64::from(m.weight)).sum();
        let set = BackendSet {
            members,
            configured_total,
            epoch,
            table: ArcSwap::from_pointee(Table {
                epoch: u64::MAX,
                built_at: Instant::now(),
                cumulative: Vec::new(),
            }),
            capacity: AtomicU64::new(0),
        };
        set.compute_capacity();
        set
    }

    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// Sum of effective weights over sum of configured weights, in [0, 1].
    pub(crate) fn capacity(&self) -> f64 {
        let cached = self.capacity.load(Ordering::Acquire);
        if cached >> 32 == tag(self.epoch.load(Ordering::Acquire)) {
            return f64::from(f32::from_bits(cached as u32));
        }
        self.compute_capacity()
    }

    /// Computes the capacity from the current table and caches it with the table's
    /// epoch (a set with no configured weight has none, and caches nothing: its word
    /// stays 0, which reads as 0.0 whatever the epoch).
    fn compute_capacity(&self) -> f64 {
        if self.configured_total <= 0.0 {
            return 0.0;
        }
        let t = self.current();
        let capacity = t.cumulative.last().copied().unwrap_or(0.0) / self.configured_total;
        let capacity = capacity as f32;
        self.capacity.store(
            tag(t.epoch) << 32 | u64::from(capacity.to_bits()),
            Ordering::Release,
        );
        f64::from(capacity)
    }

    /// Whether any member can take a request now.
    pub(crate) fn has_ready(&self) -> bool {
        self.current().cumulative.last().is_some_and(|&t| t > 0.0)
    }

    /// Whether one more member may be ejected: at most `max(1, floor(n * pct / 100))`
    /// of the pool at once.
    pub(crate) fn may_eject(&self, max_percent: u32) -> bool {
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
        let factors_only = t.epoch >> 32 == now >> 32 && t.epoch != u64::MAX;
        if factors_only && t.built_at.elapsed() < FACTOR_EVERY {
            return t;
        }
        let mut sum = 0.0;
        let cumulative = self
            .members
            .iter()
            .map(|m| {
                sum += m.effective_weight();
                sum
            })
            .collect();
        self.table.store(Arc::new(Table {
            epoch: now,
            built_at: Instant::now(),
            cumulative,
        }));
        self.table.load()
    }
}

/// The part of an epoch kept beside the cached capacity: the low 16 bits of its count
/// of state changes and of factor changes.
fn tag(epoch: u64) -> u64 {
    (epoch >> 32 & 0xFFFF) << 16 | epoch & 0xFFFF
}

fn weight_at(cumulative: &[f64], i: usize) -> f64 {
    let before = if i == 0 { 0.0 } else { cumulative[i - 1] };
    cumulative[i] - before
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    use crate::health::{Event, Machine, Registry, Settings};

    #[test]
    fn capacity_follows_the_members_states() {
        let registry = Registry::new();
        let now = Instant::now();
        let settings = Settings::eject_at_first_failure();
        let members: Vec<Member> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|addr| {
                let addr = addr.parse().expect("addr");
                let machine = || Machine::new(settings.clone(), true, now);
                let (backend, _) = registry.get_or_insert("p", addr, None, None, machine);
                Member { backend, weight: 1 }
            })
            .collect();
        let set = BackendSet::new(members.clone(), registry.pool_epoch("p"));
        assert_eq!(set.capacity(), 1.0);
        // Read again from the cached word: the same figure.
        assert_eq!(set.capacity(), 1.0);
        // Each ejection moves the epoch; the next read must see it.
        for (ejected, left) in members.iter().zip([2.0 / 3.0, 1.0 / 3.0]) {
            let failed = Event::RequestFailed { may_eject: true };
            ejected.backend.observe(failed, now);
            let capacity = set.capacity();
            assert!((capacity - left).abs() < 1e-6, "{capacity}, want {left}");
        }
    }

    #[test]
    fn slow_start_factors_are_taken_in_at_a_bounded_rate() {
        let registry = Registry::new();
        let t0 = Instant::now();
        let mut settings = Settings::eject_at_first_failure();
        settings.slow_start = Some(crate::config::SlowStart {
            window: Duration::from_secs(100),
            aggression: 1.0,
            min_percent: 0,
        });
        // Not there at start: it slow-starts from t0.
        let machine = || Machine::new(settings.clone(), false, t0);
        let addr = "127.0.0.1:1".parse().expect("addr");
        let (backend, _) = registry.get_or_insert("p", addr, None, None, machine);
        backend.tick(t0 + Duration::from_secs(10));
        let member = Member {
            backend: backend.clone(),
            weight: 1,
        };
        let set = BackendSet::new(vec![member], registry.pool_epoch("p"));
        let near = |want: f64| (set.capacity() - want).abs() < 1e-6;
        assert!(near(0.1), "{}", set.capacity());
        // A factor moves: the table built a moment ago stands for now...
        backend.tick(t0 + Duration::from_secs(50));
        assert!(
            near(0.1),
            "factor-only changes coalesce: {}",
            set.capacity()
        );
        // ...and is rebuilt once it is FACTOR_EVERY old.
        std::thread::sleep(FACTOR_EVERY);
        assert!(near(0.5), "{}", set.capacity());
        // A change of state is taken in at once.
        backend.observe(Event::RequestFailed { may_eject: true }, t0);
        assert_eq!(set.capacity(), 0.0, "ejected");
    }
}
