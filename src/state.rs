//! The state the parts of a running cutover share: made once by [`crate::app::start`],
//! read by the listeners, the admin endpoints and the reload task. A leaf: it imports
//! none of them, so none of them needs `app`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::health::Registry;
use crate::routing::Snapshot;

/// State shared by the listeners, the admin endpoints and the reload task.
///
/// `live` is written only by start-up and the reload task (one atomic swap each), read
/// by every request; `registry` keeps backend health across those swaps. The counts
/// are moved by the connections and read by the admin endpoints and shutdown.
#[derive(Debug)]
pub struct Shared {
    pub live: Arc<ArcSwap<Snapshot>>,
    pub(crate) registry: Registry,
    /// True once a config is loaded and every listener is bound (`/readyz`); false
    /// again once shutdown starts.
    pub ready: AtomicBool,
    /// Requests inside the proxy service now, over all connections.
    pub(crate) in_flight: crate::worker::Count,
    /// Open client connections (parked ones included).
    pub connections: AtomicUsize,
    /// Woken when `connections` drops to zero, for draining.
    pub(crate) drained: tokio::sync::Notify,
    /// How reloads went, for `/metrics` and `/status`.
    pub(crate) reloads: Reloads,
}

/// Reloads counted by result, and the errors of the last one if it failed.
#[derive(Debug, Default)]
pub(crate) struct Reloads {
    succeeded: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Reloads {
    pub(crate) fn succeeded(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        *self.lock() = None;
    }

    pub(crate) fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.lock() = Some(error);
    }

    /// (successes, failures) since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The errors of the last reload when it failed; `None` once one succeeds.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        crate::sync::lock(&self.last_error)
    }
}

impl Shared {
    pub(crate) fn new(snapshot: Snapshot, registry: Registry) -> Arc<Self> {
        Arc::new(Shared {
            live: Arc::new(ArcSwap::from_pointee(snapshot)),
            registry,
            ready: AtomicBool::new(false),
            in_flight: crate::worker::Count::default(),
            connections: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            reloads: Reloads::default(),
        })
    }
}
