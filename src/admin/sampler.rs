//! Samples every live series' totals each [`TICK`], so that `/status` can tell the
//! last minute from all time. Ticks on worker 0 beside the admin listener and samples
//! on a blocking thread; a tick reads each series once and takes no lock a request
//! takes.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::metrics::TICK;
use crate::state::Shared;

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<std::time::Duration>>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                // Off the worker: thousands of backends take a millisecond or more.
                let shared = shared.clone();
                let _ = tokio::task::spawn_blocking(move || sample(&shared)).await;
            }
        }
    }
}

fn sample(shared: &Shared) {
    let snapshot = shared.live.load_full();
    let now = Instant::now();
    let routes = snapshot
        .routes
        .iter()
        .flat_map(|r| r.pool_series().map(|(_, series, _)| series));
    let backends = snapshot
        .pools
        .iter()
        .flat_map(|p| p.backends.members().iter().map(|m| &m.backend.stats));
    for series in routes.chain(backends) {
        series.sample(now);
    }
}
