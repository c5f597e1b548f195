//! Applying a changed config: one task owns the swap, and everything that asks for a
//! reload sends it a request. The file watcher asks whether the file changed: the same
//! bytes again are no reload. SIGHUP and [`Reloader::reload`] ask for a reload, which
//! re-reads the file (and whatever it names) even when its bytes did not change, unless
//! a reload of those very bytes started after the ask. A reload builds a whole new
//! snapshot off the request path and swaps it in one atomic store; a config that fails
//! validation changes nothing. Asks are served one at a time, so two reloads never
//! interleave.
//!
//! The certificate and key files a config names count as its content: a check also
//! compares their hash, so that a rotated certificate (a Kubernetes Secret mounted as
//! files updates like a ConfigMap) is reloaded without the config file changing.

mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{self, ConfigError};
use crate::routing::Snapshot;
use crate::state::Shared;

pub(crate) use watch::{watch, Watching};

/// What a reload ends in: the new generation, or the errors that kept the old config.
type Outcome = Result<u64, ConfigError>;

/// What the reload task is asked.
#[derive(Debug)]
enum Ask {
    /// Reload, and say how it went (SIGHUP, the API); asked at that instant.
    Reload(oneshot::Sender<Outcome>, Instant),
    /// The file may have changed (the watcher): reload if its content did.
    Check,
    /// A backend name's answer changed: rebuild the live config's snapshot.
    Rebuild,
}

/// Asks the reload task for reloads. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Reloader {
    tx: mpsc::Sender<Ask>,
}

impl Reloader {
    /// Reloads the config file and waits for the outcome.
    pub(crate) async fn reload(&self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || ConfigError::other("the reload task has stopped");
        let ask = Ask::Reload(tx, Instant::now());
        self.tx.send(ask).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Says the file may have changed. Never waits: a check already queued will read
    /// the file after this change anyway.
    pub(crate) fn check(&self) {
        let _ = self.tx.try_send(Ask::Check);
    }

    /// Says a backend name's answer changed. Never waits.
    pub(crate) fn rebuild(&self) {
        let _ = self.tx.try_send(Ask::Rebuild);
    }
}

/// The last reload: the content it read, when it read it, and what it came to.
struct Last {
    hash: u64,
    /// The certificate and key files of the live config, and the hash of their bytes
    /// when last read.
    files: Vec<PathBuf>,
    files_hash: u64,
    read_at: Instant,
    outcome: Outcome,
}

impl Last {
    fn files_of(shared: &Shared) -> (Vec<PathBuf>, u64) {
        let live = shared.live.load();
        let config = &live.config;
        let files = config
            .tls
            .iter()
            .flat_map(|p| [p.cert.clone(), p.key.clone()])
            .collect();
        (files, config.tls_files_hash)
    }

    /// Whether a certificate or key file of the live config changed since it was read.
    fn files_changed(&self) -> bool {
        !self.files.is_empty() && self.files_now() != self.files_hash
    }

    fn files_now(&self) -> u64 {
        crate::tls::files_hash(self.files.iter().map(PathBuf::as_path))
    }
}

/// Starts the reload task for the config at `path`; `loaded_hash` is the content hash of
/// the text the live config (generation 1) was read from. The task ends when every
/// [`Reloader`] is gone.
pub(crate) fn spawn(path: PathBuf, loaded_hash: u64, shared: Arc<Shared>) -> Reloader {
    // Requests that arrive during a reload wait here; each is answered by a reload that
    // started after it was asked, so none is answered with an older file.
    let (tx, mut rx) = mpsc::channel::<Ask>(16);
    tokio::spawn(async move {
        let (files, files_hash) = Last::files_of(&shared);
        let mut last = Last {
            hash: loaded_hash,
            files,
            files_hash,
            read_at: Instant::now(),
            outcome: Ok(1),
        };
        // Whether the watcher already said it cannot read the file (said once).
        let mut unreadable_said = false;
        while let Some(ask) = rx.recv().await {
            if let Ask::Rebuild = ask {
                rebuild(&shared).await;
                continue;
            }
            let read_at = Instant::now();
            let read = settled(&path).await;
            let outcome = match read {
                Ok(text) => {
                    unreadable_said = false;
                    let hash = config::content_hash(&text);
                    let fresh = match &ask {
                        // The same bytes, and the same certificates: no news.
                        Ask::Check | Ask::Rebuild => hash == last.hash && !last.files_changed(),
                        // The same bytes, reloaded after this was asked: that answers it.
                        Ask::Reload(_, asked) => hash == last.hash && last.read_at >= *asked,
                    };
                    if fresh {
                        last.outcome.clone()
                    } else if matches!(ask, Ask::Check) && text.trim().is_empty() {
                        // A file truncated and not written yet (an in-place save caught
                        // midway): never a config anyone means; its write comes next.
                        continue;
                    } else {
                        // Read before the reload: a file that changes while it runs
                        // is seen by the next check, whatever the reload made of it.
                        let before = last.files_now();
                        let outcome = reload(&path, text, &shared).await;
                        report(&outcome, &shared, read_at.elapsed());
                        let (files, files_hash) = match outcome {
                            Ok(_) => Last::files_of(&shared),
                            // The files as they were failed: wait for them to change.
                            Err(_) => (std::mem::take(&mut last.files), before),
                        };
                        last = Last {
                            hash,
                            files,
                            files_hash,
                            read_at,
                            outcome: outcome.clone(),
                        };
                        outcome
                    }
                }
                Err(e) => {
                    let outcome = Err(ConfigError::unreadable(&path, &e));
                    match ask {
                        Ask::Reload(..) => report(&outcome, &shared, Duration::ZERO),
                        // Gone for a moment (a swap) is the next look's business; a file
                        // that cannot be read (its mode, its owner) is said once.
                        Ask::Check
                            if e.kind() != std::io::ErrorKind::NotFound && !unreadable_said =>
                        {
                            unreadable_said = true;
                            tracing::warn!(path = %path.display(), error = %e, "cannot read the config file; its changes are not applied");
                        }
                        Ask::Check | Ask::Rebuild => {}
                    }
                    outcome
                }
            };
            if let Ask::Reload(reply, _) = ask {
                let _ = reply.send(outcome);
            }
        }
    });
    Reloader { tx }
}

/// The live config again, with the backend names' new answers: the same swap as a
/// reload, keeping the generation (the config did not change).
async fn rebuild(shared: &Shared) {
    let old = shared.live.load_full();
    let config = (*old.config).clone();
    let mut snapshot = Snapshot::build(config, &shared.registry, Some(&old)).await;
    snapshot.generation = old.generation;
    let count =
        |s: &Snapshot| -> usize { s.pools.iter().map(|p| p.backends.members().len()).sum() };
    tracing::info!(
        backends = count(&snapshot),
        before = count(&old),
        "backend addresses changed"
    );
    shared.live.store(Arc::new(snapshot));
}

/// The file's content once two reads a moment apart agree: a file written in place is
/// seen while it is being written, and half a file may parse.
async fn settled(path: &Path) -> std::io::Result<String> {
    const SETTLE: Duration = Duration::from_millis(50);
    let mut text = std::fs::read_to_string(path)?;
    for _ in 0..10 {
        tokio::time::sleep(SETTLE).await;
        let again = std::fs::read_to_string(path)?;
        if again == text {
            break;
        }
        text = again;
    }
    Ok(text)
}

/// Logs and counts how a reload that took `took` went.
fn report(outcome: &Outcome, shared: &Shared, took: Duration) {
    match outcome {
        Ok(generation) => {
            shared.reloads.succeeded();
            let took_ms = took.as_secs_f64() * 1000.0;
            tracing::info!(generation, took_ms, "config reloaded");
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
}

async fn reload(path: &Path, text: String, shared: &Shared) -> Outcome {
    // Parsing thousands of backends takes milliseconds: off the worker this task
    // shares with requests.
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::parse(&owned, &text))
        .await
        .map_err(|e| ConfigError::other(&format!("the config parser failed: {e}")))??;
    for w in &loaded.warnings {
        w.log(tracing::Level::WARN);
    }
    let old = shared.live.load_full();
    let (new, now) = (&loaded.config, &old.config);
    if !now.listen.https.is_empty() && new.tls_server.is_none() {
        // The https listeners stay bound until a restart; they need certificates.
        return Err(ConfigError::other(
            "the running https listeners need [tls] certs until a restart removes them",
        ));
    }
    if new.listen != now.listen || new.admin != now.admin || new.workers != now.workers {
        tracing::warn!(
            "[listen], [admin] and [runtime] changes need a restart; everything else is applied"
        );
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
