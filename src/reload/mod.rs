//! Applying a changed config: one task owns the swap, and everything that asks for a
//! reload (SIGHUP today; the file watcher and the admin API later) sends it a request.
//! A reload builds a whole new snapshot off the request path and swaps it in one atomic
//! store; a config that fails validation changes nothing. Requests are served one at a
//! time, so two reloads never interleave.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, ConfigError};
use crate::routing::Snapshot;
use crate::state::Shared;

/// What a reload ends in: the new generation, or the errors that kept the old config.
type Outcome = Result<u64, ConfigError>;

/// Asks the reload task for reloads. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Reloader {
    tx: mpsc::Sender<oneshot::Sender<Outcome>>,
}

impl Reloader {
    /// Reloads the config file and waits for the outcome.
    pub(crate) async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || ConfigError::other("the reload task has stopped");
        self.tx.send(tx).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// Starts the reload task for the config at `path`; it ends when every [`Reloader`]
/// is gone.
pub(crate) fn spawn(path: PathBuf, shared: Arc<Shared>) -> Reloader {
    // Requests that arrive during a reload wait here; each is answered by a reload that
    // started after it was asked, so none is answered with an older file.
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<Outcome>>(16);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let outcome = reload(&path, &shared).await;
            match &outcome {
                Ok(generation) => {
                    shared.reloads.succeeded();
                    tracing::info!(generation, "config reloaded");
                }
                Err(e) => {
                    shared.reloads.failed(e.to_string());
                    for d in &e.errors {
                        d.log(tracing::Level::ERROR);
                    }
                    tracing::error!(
                        errors = e.errors.len(),
                        "config reload failed; the old config keeps serving"
                    );
                }
            }
            let _ = reply.send(outcome);
        }
    });
    Reloader { tx }
}

async fn reload(path: &std::path::Path, shared: &Shared) -> Outcome {
    let loaded = config::load(path)?;
    for w in &loaded.warnings {
        w.log(tracing::Level::WARN);
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

/// Takes SIGHUP over from its default action (ending the process). Called before
/// cutover says it is ready, so that a SIGHUP sent as soon as it is never kills it.
#[cfg(unix)]
pub(crate) fn sighup() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(hup) => Some(hup),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP");
            None
        }
    }
}

/// Asks for a reload on every SIGHUP until the task is dropped.
#[cfg(unix)]
pub(crate) async fn on_sighup(mut hup: tokio::signal::unix::Signal, reloader: Reloader) {
    while hup.recv().await.is_some() {
        // The task logs the outcome.
        let _ = reloader.reload().await;
    }
}
