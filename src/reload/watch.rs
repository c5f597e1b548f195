//! Seeing the config file change: its directory is watched, so that every way a file
//! is replaced is seen (written in place, an editor's temp file renamed over it, a
//! Kubernetes ConfigMap swapping its `..data` symlink), and the file is looked at every
//! few seconds as well, for platforms and mounts where no event comes. Every event and
//! every look only asks the reload task to compare the content's hash: the kind of
//! event does not matter, and an unchanged file is no reload. The directories of the
//! certificate and key files the live config names are watched the same way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{watch, Notify};

use super::Reloader;
use crate::state::Shared;

/// Events closer together than this are one change: a save is often several writes.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the file is looked at without an event.
const POLL: Duration = Duration::from_secs(2);

type Handle = Arc<Mutex<Option<notify::RecommendedWatcher>>>;

/// Watching stops when this is dropped (and the watch task has ended).
#[derive(Debug)]
pub(crate) struct Watching {
    _watcher: Handle,
}

/// Starts watching `path`, and the certificates `shared`'s live config names, for the
/// reload task, until `stop` carries a grace period.
pub(crate) fn watch(
    path: &Path,
    reloader: Reloader,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Watching {
    let changed = Arc::new(Notify::new());
    let config_dir = directory_of(path);
    let watcher: Handle = Arc::new(Mutex::new(directory_watcher(&config_dir, changed.clone())));
    let mut watched = HashSet::from([config_dir]);
    let task_watcher = watcher.clone();
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = poll.tick() => {}
                () = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            }
            watch_certificates(&task_watcher, &shared, &mut watched);
            reloader.check();
        }
    });
    Watching { _watcher: watcher }
}

/// Adds a watch on each directory of a certificate or key file of the live config not
/// watched yet (a reload may name new ones). Without a watcher the poll sees them.
fn watch_certificates(watcher: &Handle, shared: &Shared, watched: &mut HashSet<PathBuf>) {
    let live = shared.live.load();
    let dirs = live
        .config
        .tls
        .iter()
        .flat_map(|p| [directory_of(&p.cert), directory_of(&p.key)]);
    for dir in dirs {
        if watched.contains(&dir) {
            continue;
        }
        let mut guard = crate::sync::lock(watcher);
        let Some(w) = guard.as_mut() else { return };
        if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the certificate directory; looking at the files every {}s", POLL.as_secs());
        }
        watched.insert(dir);
    }
}

/// A watcher on `dir`, the directory holding the config file (not the file: a rename
/// over it, or a symlink swapped under it, would leave a watch on the file watching the
/// old one).
fn directory_watcher(dir: &Path, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a file is no change, and the reload task's own reads would otherwise
        // wake it again every time.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            changed.notify_one();
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; looking at it every {}s", POLL.as_secs());
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; looking at the file every {}s", POLL.as_secs());
        return None;
    }
    Some(watcher)
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
