//! Applying a changed config: SIGHUP now, the file watcher later. A reload builds a
//! whole new snapshot off the request path and swaps it in one atomic store; a config
//! that fails validation changes nothing.

use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::routing::Snapshot;
use crate::server::Shared;

/// Reloads from `path`. Returns the new generation, or the errors that kept the old
/// config in place.
pub async fn reload(path: &Path, shared: &Arc<Shared>) -> Result<u64, config::ConfigError> {
    let loaded = config::load(path)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let old = shared.live.load_full();
    if loaded.config.listen != old.config.listen || loaded.config.workers != old.config.workers {
        tracing::warn!("[listen] and [runtime] changes need a restart; everything else is applied");
    }
    let snapshot = Snapshot::build(loaded.config, &shared.registry, Some(&old)).await;
    let generation = snapshot.generation;
    shared.live.store(Arc::new(snapshot));
    Ok(generation)
}

/// Reloads on every SIGHUP until the task is dropped.
#[cfg(unix)]
pub async fn on_sighup(path: std::path::PathBuf, shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP");
        return;
    };
    while hup.recv().await.is_some() {
        match reload(&path, &shared).await {
            Ok(generation) => tracing::info!(generation, "config reloaded"),
            Err(e) => {
                tracing::error!(errors = %e, "config reload failed; the old config keeps serving")
            }
        }
    }
}
