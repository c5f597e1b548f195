//! What a pool's config asks of each of its backends' state machines, as one value.

use crate::config::{Eject, PoolConfig, SlowStart};

/// The pool settings a [`super::Machine`] runs on.
///
/// Built from the pool's config so that every backend of a pool, including one that
/// outlives a reload, is judged by the same rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The warm-up probe's thresholds; `None` when the pool has no probe, so its
    /// backends start ready and nothing but ejection takes them out.
    pub probe: Option<ProbeCounts>,
    pub slow_start: Option<SlowStart>,
    pub eject: Eject,
}

/// How many probe results in a row move a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeCounts {
    /// Passes that make a warming or down backend ready.
    pub healthy: u32,
    /// Failures that take a ready backend down.
    pub(crate) unhealthy: u32,
}

// === impl Settings ===

impl Settings {
    /// The settings of `pool`'s backends.
    pub(crate) fn of(pool: &PoolConfig) -> Settings {
        Settings {
            probe: pool.warmup.as_ref().map(|w| ProbeCounts {
                healthy: w.healthy,
                unhealthy: w.unhealthy,
            }),
            slow_start: pool.slow_start.clone(),
            eject: pool.eject.clone(),
        }
    }

    /// No probe, no slow start, and ejection at the first failure for 10 s: the
    /// shortest way for a test to move a backend.
    #[cfg(test)]
    pub(crate) fn eject_at_first_failure() -> Settings {
        Settings {
            probe: None,
            slow_start: None,
            eject: Eject {
                consecutive_failures: 1,
                base: std::time::Duration::from_secs(10),
                max: std::time::Duration::from_secs(10),
                max_percent: 100,
            },
        }
    }

    pub(super) fn has_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Passes in a row needed to become ready; 1 without a probe.
    pub(super) fn healthy(&self) -> u32 {
        self.probe.map_or(1, |p| p.healthy.max(1))
    }

    /// Failures in a row needed to go down; 1 without a probe.
    pub(super) fn unhealthy(&self) -> u32 {
        self.probe.map_or(1, |p| p.unhealthy.max(1))
    }
}
