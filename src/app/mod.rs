//! Start-up and shutdown, in one room: builds the shared state and the first snapshot,
//! starts the admin listener, the proxy listeners and the reload task, and stops them
//! in order. The parts it starts are handed the [`Shared`] state it makes, whose type
//! lives in [`crate::state`], so that none of them imports this module.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::state::Shared;

use crate::config::{Config, ConfigError};
use crate::health::Registry;
use crate::reload::{Reloader, Watching};
use crate::routing::Snapshot;
use crate::server::Listening;

/// A started cutover: where it listens, and how to reload and stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    /// One per configured `https` address, as `http_addrs`.
    pub https_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    reloader: Reloader,
    /// Carries the grace period once shutdown starts.
    stop: watch::Sender<Option<Duration>>,
    admin: JoinHandle<()>,
    listening: Listening,
    /// The config file's watcher; it stops when this is dropped.
    _watching: Watching,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Requests still running when the grace period ended.
    pub cut: usize,
}

/// Binds the admin port, builds the first snapshot, binds the proxy ports and starts
/// serving and the reload task. Must run inside a tokio runtime, which becomes worker 0.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let admin_listener = TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("binding admin listener {}", config.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    crate::worker::set_count(workers);
    let path = config.path.clone();
    let loaded_hash = config.content_hash;
    let registry = Registry::new();
    let snapshot = Snapshot::build(config, &registry, None).await;
    let shared = Shared::new(snapshot, registry);
    let (stop, stopped) = watch::channel(None);
    let admin = tokio::spawn(crate::admin::serve(
        admin_listener,
        shared.clone(),
        stopped.clone(),
    ));
    tokio::spawn(crate::admin::sampler::run(shared.clone(), stopped.clone()));
    tokio::spawn(crate::autopilot::run(shared.clone(), stopped.clone()));
    let listening = crate::server::listen(&shared, workers, &stopped)?;
    let reloader = crate::reload::spawn(path.clone(), loaded_hash, shared.clone());
    let watching = crate::reload::watch(&path, reloader.clone(), shared.clone(), stopped.clone());
    tokio::spawn(crate::discovery::run(
        shared.clone(),
        reloader.clone(),
        stopped.clone(),
    ));
    // Every listener is bound (connections queue until accepted): ready before the log
    // line that tells the outside so.
    shared.ready.store(true, Ordering::Release);
    tracing::info!(addr = %admin_addr, "admin listening");
    Ok(Running {
        http_addrs: listening.addrs.clone(),
        https_addrs: listening.tls_addrs.clone(),
        admin_addr,
        shared,
        reloader,
        stop,
        admin,
        listening,
        _watching: watching,
    })
}

impl Running {
    /// Reloads the config file, as SIGHUP does, through the one reload task. Returns
    /// the new generation, or the errors that kept the old config serving.
    pub async fn reload(&self) -> Result<u64, ConfigError> {
        self.reloader.reload().await
    }

    /// The reload task's handle, for whatever else asks for reloads (SIGHUP).
    pub(crate) fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, and reports
    /// how many were cut.
    pub async fn shutdown(self, grace: Duration) -> Drained {
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.stop.send(Some(grace));
        let _ = self.admin.await;
        self.listening.stop(&self.shared, grace).await;
        let cut = self.shared.in_flight.get();
        if cut > 0 {
            tracing::warn!(
                cut,
                "shutdown grace period ended with requests still running"
            );
        }
        Drained { cut }
    }
}
