//! Hostname backends, followed: each name a pool lists is looked up again every
//! `resolve_every`, and every address in the answer is a backend of its own. A changed
//! answer rebuilds the snapshot through the reload task (the one writer); a failed or
//! empty answer keeps the last good one, so a DNS outage never empties a pool.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Target;
use crate::reload::Reloader;
use crate::state::Shared;
use crate::sync::lock;

/// The last good answer for every name, and how lookups went per pool.
#[derive(Debug, Default)]
pub(crate) struct Dns {
    answers: Mutex<HashMap<(String, u16), Vec<SocketAddr>>>,
    results: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// How one lookup went: the `result` label of `cutover_dns_resolutions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Looked {
    Success,
    Empty,
    Failure,
}

impl Looked {
    fn label(self) -> &'static str {
        match self {
            Looked::Success => "success",
            Looked::Empty => "empty",
            Looked::Failure => "failure",
        }
    }
}

impl Dns {
    /// The addresses of `name:port` for `pool`: the last good answer, or a lookup when
    /// there is none yet (a name new to this config).
    pub(crate) async fn addresses(&self, pool: &str, name: &str, port: u16) -> Vec<SocketAddr> {
        let known = lock(&self.answers).get(&(name.to_owned(), port)).cloned();
        match known {
            Some(addrs) => addrs,
            None => {
                self.refresh(pool, name, port).await;
                lock(&self.answers)
                    .get(&(name.to_owned(), port))
                    .cloned()
                    .unwrap_or_default()
            }
        }
    }

    /// Looks `name:port` up again for `pool`; true when a good answer differs from the
    /// one kept (it is kept from now on). A failed or empty answer changes nothing.
    pub(crate) async fn refresh(&self, pool: &str, name: &str, port: u16) -> bool {
        let (looked, addrs) = match tokio::net::lookup_host((name, port)).await {
            Ok(found) => {
                let mut v: Vec<SocketAddr> = found.collect();
                v.sort();
                v.dedup();
                (
                    if v.is_empty() {
                        Looked::Empty
                    } else {
                        Looked::Success
                    },
                    v,
                )
            }
            Err(e) => {
                tracing::warn!(pool, host = name, error = %e, "backend name did not resolve; keeping its last addresses");
                (Looked::Failure, Vec::new())
            }
        };
        *lock(&self.results)
            .entry((pool.to_owned(), looked.label()))
            .or_default() += 1;
        if looked != Looked::Success {
            if looked == Looked::Empty {
                tracing::warn!(
                    pool,
                    host = name,
                    "backend name resolved to no address; keeping its last addresses"
                );
            }
            return false;
        }
        let mut answers = lock(&self.answers);
        let key = (name.to_owned(), port);
        if answers.get(&key) == Some(&addrs) {
            return false;
        }
        answers.insert(key, addrs);
        true
    }

    /// (pool, result, count) of every lookup so far.
    pub(crate) fn results(&self) -> Vec<(String, &'static str, u64)> {
        lock(&self.results)
            .iter()
            .map(|((pool, result), n)| (pool.clone(), *result, *n))
            .collect()
    }
}

/// Looks every hostname of the live config up again on each pool's `resolve_every`
/// (with a tenth of jitter, so that many proxies do not ask in step), and asks the
/// reload task to rebuild when an answer changed. Runs until `stop`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    reloader: Reloader,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    // When each (pool, name, port) was last looked up.
    let mut looked: HashMap<(String, String, u16), Instant> = HashMap::new();
    loop {
        let snapshot = shared.live.load_full();
        let names: Vec<(String, String, u16, Duration)> = snapshot
            .config
            .pools
            .iter()
            .flat_map(|p| {
                p.backends.iter().filter_map(move |b| match &b.target {
                    Target::Host { name, port } => {
                        Some((p.name.clone(), name.clone(), *port, p.resolve_every))
                    }
                    Target::Addr(_) => None,
                })
            })
            .collect();
        drop(snapshot);
        looked.retain(|(pool, name, port), _| {
            names
                .iter()
                .any(|(p, n, o, _)| p == pool && n == name && o == port)
        });
        let now = Instant::now();
        let mut changed = false;
        let mut next = now + Duration::from_secs(1);
        for (pool, name, port, every) in names {
            let key = (pool, name, port);
            let due = looked.get(&key).map_or(now, |at| *at + every);
            if due <= now {
                changed |= shared.registry.dns.refresh(&key.0, &key.1, key.2).await;
                looked.insert(key, Instant::now());
                next = next.min(Instant::now() + every);
            } else {
                next = next.min(due);
            }
        }
        if changed {
            reloader.rebuild();
        }
        let jitter = rand::rng().random_range(0.9..1.1);
        let wait = next
            .saturating_duration_since(Instant::now())
            .mul_f64(jitter);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
        }
    }
}
