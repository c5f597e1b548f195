//! Locking that a panic elsewhere cannot wedge.

use std::sync::{Mutex, MutexGuard};

/// Takes `m` even when a holder panicked: every lock in cutover guards plain values
/// (counts, samples, settings) that stay sound after a panic, and the proxy must not
/// stop answering over one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
