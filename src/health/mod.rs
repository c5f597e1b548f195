//! Backend health: the state every backend carries across reloads (warming, ready,
//! down, ejected, and its slow-start factor), the registry that keeps it, and the
//! probe tasks that move it.
//!
//! The state machine itself is a plain type ([`machine::Machine`]) fed with events and
//! the clock; probes and the proxy only report what they saw.

mod machine;
mod probe;
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

pub(crate) use machine::{Event, Machine, State};
pub(crate) use probe::spawn_probes;
pub(crate) use settings::Settings;

use crate::config::{PoolConfig, Warmup};
use crate::metrics::Series;
use crate::sync::lock;
use crate::upstream::ConnPool;

/// One upstream address in one pool.
///
/// Shared by every snapshot that contains it: the registry hands out the same `Arc` for
/// the same (pool, address) so that a reload keeps its warm-up and slow-start progress.
#[derive(Debug)]
pub struct Backend {
    pub pool: String,
    pub addr: SocketAddr,
    /// The configured hostname when the address came from DNS.
    pub host: Option<String>,
    /// `ip:port`, ready to put in an upstream URI and in metric labels.
    pub authority: http::uri::Authority,
    /// Written by the health machine on every change, read by every pick.
    state: AtomicU8,
    /// `f64` bits of the warm-up/slow-start factor in [0, 1]; 0 unless routable.
    factor: AtomicU64,
    /// The transition logic; only probe tasks and failure reports lock it, never a pick.
    /// Private so that every change goes through `Backend::update`, which publishes
    /// it: a pick reads only `state` and `factor`.
    machine: Mutex<Machine>,
    /// Failures on real traffic since the last success; lets a success skip the lock
    /// when there is nothing to reset.
    recent_failures: AtomicU32,
    /// Idle keep-alive connections to this backend; they outlive reloads with it.
    pub conns: ConnPool,
    /// Its attempts by outcome and their latency; kept across reloads with it, gone
    /// with it.
    pub(crate) stats: Series,
    /// The pool's warm-up probe as the live config has it; the probe task reads it
    /// before each probe, so a reload that changes it needs no new task.
    warmup: Mutex<Option<Warmup>>,
    epoch: Arc<AtomicU64>,
}

/// A pool epoch's step for a change of state or membership (its high 32 bits)...
pub(crate) const STATE_CHANGE: u64 = 1 << 32;
/// ...and for a change of a slow-start factor only (its low 32 bits), which pickers may
/// take in a little late: hundreds of pods slow-starting at once move a factor many
/// times a second, and a table rebuilt on each would cost every pick a pass over the
/// pool.
pub(crate) const FACTOR_CHANGE: u64 = 1;

/// Hands out backends by (pool, address) and keeps them alive across reloads.
///
/// Each pool has an epoch that grows whenever one of its backends' state or factor
/// changes (by [`STATE_CHANGE`] or [`FACTOR_CHANGE`]), so its pickers know to rebuild
/// their tables without being told who changed, and a change in one pool costs the
/// others nothing.
#[derive(Debug, Default)]
pub struct Registry {
    backends: Mutex<HashMap<(String, SocketAddr), Weak<Backend>>>,
    epochs: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// The last good DNS answer of every backend name: kept across reloads, so that a
    /// reload during a DNS outage keeps the pods it had.
    pub(crate) dns: crate::discovery::Dns,
}

// === impl Backend ===

impl Backend {
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// 0 while warming, down or ejected; the slow-start factor while ready.
    pub(crate) fn factor(&self) -> f64 {
        f64::from_bits(self.factor.load(Ordering::Acquire))
    }

    /// Feeds an observation to the state machine and publishes the result.
    pub(crate) fn observe(&self, event: Event, now: Instant) -> Option<State> {
        self.update(now, |m| m.observe(event, now)).flatten()
    }

    /// A request to this backend got a response head.
    pub(crate) fn report_success(&self) {
        if self.recent_failures.load(Ordering::Relaxed) != 0 {
            self.recent_failures.store(0, Ordering::Relaxed);
            self.observe(Event::RequestSucceeded, Instant::now());
        }
    }

    /// A connect error, reset or timeout on real traffic. `may_eject` is whether the
    /// pool's ejection budget has room.
    pub(crate) fn report_failure(&self, may_eject: bool) {
        self.recent_failures.fetch_add(1, Ordering::Relaxed);
        if let Some(state) = self.observe(Event::RequestFailed { may_eject }, Instant::now()) {
            tracing::warn!(pool = %self.pool, backend = %self.addr, state = state.as_str(), "backend state changed");
        }
    }

    /// Takes a reloaded pool's settings: thresholds, slow start and ejection for the
    /// state machine, the probe for the probe task. A backend that stays keeps its state
    /// and progress; only the rules it is judged by change.
    pub(crate) fn apply(&self, pool: &PoolConfig, now: Instant) {
        let settings = Settings::of(pool);
        let changed = self
            .update(now, |m| m.set_settings(settings, now))
            .flatten();
        if let Some(state) = changed {
            tracing::info!(pool = %self.pool, backend = %self.addr, state = state.as_str(), "backend state changed");
        }
        *lock(&self.warmup) = pool.warmup.clone();
    }

    /// The warm-up probe it is checked with now, if its pool has one.
    pub(crate) fn warmup(&self) -> Option<Warmup> {
        lock(&self.warmup).clone()
    }

    /// Recomputes the slow-start factor for `now`; probes call this on every tick.
    pub(crate) fn tick(&self, now: Instant) {
        self.update(now, |_| ());
    }

    /// Ends an ejection whose time is up (see [`Machine::expire_ejection`]) and
    /// publishes the result; returns the new state when it changed.
    pub(crate) fn expire_ejection(&self, now: Instant) -> Option<State> {
        self.update(now, |m| m.expire_ejection(now)).flatten()
    }

    /// Runs `f` on the machine, then publishes the state and factor it leaves at `now`.
    /// `None` when the lock is poisoned: the backend then keeps what it last published.
    fn update<R>(&self, now: Instant, f: impl FnOnce(&mut Machine) -> R) -> Option<R> {
        let (out, state, factor) = {
            let mut m = self.machine.lock().ok()?;
            let out = f(&mut m);
            (out, m.state(), m.factor(now))
        };
        self.publish(state, factor);
        Some(out)
    }

    fn publish(&self, state: State, factor: f64) {
        let old_state = self.state.swap(state as u8, Ordering::AcqRel);
        let old_factor = self.factor.swap(factor.to_bits(), Ordering::AcqRel);
        if old_state != state as u8 {
            self.epoch.fetch_add(STATE_CHANGE, Ordering::AcqRel);
        } else if old_factor != factor.to_bits() {
            self.epoch.fetch_add(FACTOR_CHANGE, Ordering::AcqRel);
        }
    }
}

// === impl Registry ===

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The generation counter of `pool` that its pickers compare their tables against.
    pub(crate) fn pool_epoch(&self, pool: &str) -> Arc<AtomicU64> {
        let mut epochs = lock(&self.epochs);
        epochs.entry(pool.to_owned()).or_default().clone()
    }

    /// Returns the live backend for (pool, addr), or creates one in the state `machine`
    /// starts in; the flag says whether it was created (and so needs a health task).
    pub(crate) fn get_or_insert(
        &self,
        pool: &str,
        addr: SocketAddr,
        host: Option<String>,
        warmup: Option<Warmup>,
        machine: impl FnOnce() -> Machine,
    ) -> (Arc<Backend>, bool) {
        let mut map = lock(&self.backends);
        let key = (pool.to_owned(), addr);
        if let Some(b) = map.get(&key).and_then(Weak::upgrade) {
            return (b, false);
        }
        // Sweep dead entries now and then, not on every insert: a pool of thousands of
        // backends must not cost a quadratic start.
        if map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let now = Instant::now();
        let epoch = self.pool_epoch(pool);
        let m = machine();
        let authority = match http::uri::Authority::try_from(addr.to_string()) {
            Ok(a) => a,
            Err(_) => http::uri::Authority::from_static("invalid"),
        };
        let b = Arc::new(Backend {
            pool: pool.to_owned(),
            addr,
            host,
            authority,
            state: AtomicU8::new(m.state() as u8),
            factor: AtomicU64::new(m.factor(now).to_bits()),
            machine: Mutex::new(m),
            recent_failures: AtomicU32::new(0),
            conns: ConnPool::default(),
            stats: Series::new(),
            warmup: Mutex::new(warmup),
            epoch: epoch.clone(),
        });
        map.insert(key, Arc::downgrade(&b));
        epoch.fetch_add(STATE_CHANGE, Ordering::AcqRel);
        (b, true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_expired_ejection_is_published() {
        let registry = Registry::new();
        let t0 = Instant::now();
        let settings = Settings::eject_at_first_failure();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let machine = || Machine::new(settings, true, t0);
        let (b, _) = registry.get_or_insert("p", addr, None, None, machine);
        let epoch = registry.pool_epoch("p");
        let failed = Event::RequestFailed { may_eject: true };
        assert_eq!(b.observe(failed, t0), Some(State::Ejected));
        assert_eq!((b.state(), b.factor()), (State::Ejected, 0.0));

        let before = epoch.load(Ordering::Acquire);
        assert_eq!(b.expire_ejection(t0 + Duration::from_secs(9)), None);
        assert_eq!(b.state(), State::Ejected, "time not up");
        assert_eq!(
            b.expire_ejection(t0 + Duration::from_secs(10)),
            Some(State::Ready)
        );
        assert_eq!((b.state(), b.factor()), (State::Ready, 1.0));
        assert!(
            epoch.load(Ordering::Acquire) > before,
            "pickers must rebuild"
        );
    }
}
