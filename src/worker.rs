//! Which worker thread code runs on, and counts kept per worker.
//!
//! Each worker serves its own connections on its own runtime. What a request writes
//! on every pass (a count, a pool's idle list) lives on the worker's own cache lines:
//! a line written by two workers moves between their cores on every request.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many workers there are, set once at start-up before per-worker state is made.
static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Sets the number of worker threads.
pub(crate) fn set_count(workers: usize) {
    WORKERS.store(workers.max(1), Ordering::Relaxed);
}

/// The number of worker threads: how many slots per-worker state gets.
pub(crate) fn count() -> usize {
    WORKERS.load(Ordering::Relaxed)
}

/// Marks the calling thread as worker `index`.
pub(crate) fn set_current(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// The slot of the calling thread among `slots`. Threads that are not workers (the
/// admin side, tests) share slot 0; a thread of a server started with more workers
/// than `slots` has wraps around.
pub(crate) fn slot(slots: usize) -> usize {
    CURRENT.with(Cell::get) % slots.max(1)
}

/// A count each worker moves on its own cache line; reading it adds them up.
#[derive(Debug)]
pub(crate) struct Count {
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicUsize);

impl Default for Count {
    fn default() -> Self {
        Count::with_slots(count())
    }
}

impl Count {
    fn with_slots(n: usize) -> Self {
        Count {
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds one in the calling worker's slot; returns the slot, for [`Count::sub`].
    pub(crate) fn add(&self) -> usize {
        let slot = slot(self.slots.len());
        self.slots[slot].0.fetch_add(1, Ordering::Relaxed);
        slot
    }

    /// Takes back one that [`Count::add`] put in `slot`, from whichever thread: a slot
    /// never goes below zero, so a sum read meanwhile never wraps.
    pub(crate) fn sub(&self, slot: usize) {
        self.slots[slot].0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.0.load(Ordering::Acquire))
            .fold(0, usize::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_adds_up_its_workers() {
        let c = Count::with_slots(3);
        std::thread::scope(|s| {
            for w in 0..3 {
                let c = &c;
                s.spawn(move || {
                    set_current(w);
                    let slots: Vec<usize> = (0..=w).map(|_| c.add()).collect();
                    assert!(slots.iter().all(|&s| s == w));
                    c.sub(slots[0]);
                });
            }
        });
        assert_eq!(c.get(), 3);
        // Each worker moved its own slot only.
        let parts: Vec<usize> = c
            .slots
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .collect();
        assert_eq!(parts, [0, 1, 2]);
    }
}
