//! The routing snapshot: everything a request needs to find its route, pool and
//! backend, built whole from one [`Config`] and swapped in one piece.
//!
//! Backend health is not here but in the [`Registry`]: a snapshot holds `Arc`s into it,
//! so a new snapshot for the same (pool, address) continues where the old one was.

mod table;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rand::Rng;

use crate::autopilot::Pilot;
use crate::balance::{self, BackendSet, Member};
use crate::config::{Config, KeySource, PoolConfig, RouteConfig, Target};
use crate::health::{self, Machine, Registry, Settings};
use crate::metrics::Series;
pub(crate) use table::RouteTable;

/// One generation of the live configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub generation: u64,
    /// When this config was loaded (for `/status` and the reload timestamp).
    pub loaded_at: SystemTime,
    pub routes: Vec<Route>,
    pub pools: Vec<Arc<Pool>>,
    /// Where requests that matched no route count (`route="none"`); kept across
    /// reloads.
    pub(crate) unrouted: Arc<Series>,
    table: RouteTable,
}

/// A pool and its members as this snapshot sees them.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub backends: BackendSet,
    pub config: PoolConfig,
}

/// A route with its split resolved to pools.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub config: RouteConfig,
    /// (pool, configured weight); the order of `config.split` (by pool name).
    pub split: Vec<(Arc<Pool>, u32)>,
    /// The weight each split entry has now: configured, or still climbing to it.
    weights: Vec<Weight>,
    /// The series requests count in: one per split entry, then one for requests that
    /// got no pool (`pool="none"`). A (route, pool) that stays across a reload keeps
    /// its series; one that goes takes its series with it.
    series: Vec<Arc<Series>>,
    /// The route's autopilot and the split entry of the pool it raises (the baseline
    /// is the other one: validation allows no third). Kept across a reload of the
    /// same ramp, like the series.
    pilot: Option<(Arc<Pilot>, usize)>,
}

/// A split weight, possibly ramping up after a reload raised it.
#[derive(Debug, Clone, Copy)]
enum Weight {
    Fixed(f64),
    Ramping {
        from: f64,
        to: f64,
        since: Instant,
        window: std::time::Duration,
    },
}

/// No pool with a ready backend could be chosen; `pool` is the one the pick landed on,
/// if any (for the metrics and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoReadyPool {
    pub pool: Option<usize>,
}

/// What the request offers the pool pick.
#[derive(Debug, Default)]
pub struct PickKeys<'a> {
    /// The value of the route's `override` source, if present.
    pub override_pool: Option<&'a str>,
    /// The value of the route's `sticky` source, if present.
    pub sticky: Option<&'a [u8]>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot, resolving hostname backends and taking each backend's health
    /// state from `registry`. `at_start` marks the first load, whose backends are taken
    /// as warm when their first probe passes.
    pub async fn build(
        config: Config,
        registry: &Registry,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let generation = previous.map_or(1, |p| p.generation + 1);
        let at_start = previous.is_none();
        let now = Instant::now();
        let mut pools = Vec::new();
        for pc in &config.pools {
            let mut members = Vec::new();
            // A pool of thousands of pods must not cost a quadratic walk per reload.
            let mut seen = std::collections::HashSet::new();
            for b in &pc.backends {
                for (addr, host) in resolve(&pc.name, &b.target, registry).await {
                    let make = || Machine::new(Settings::of(pc), at_start, now);
                    let (backend, created) =
                        registry.get_or_insert(&pc.name, addr, host, pc.warmup.clone(), make);
                    if created {
                        health::spawn_probes(&backend);
                    } else {
                        backend.apply(pc, now);
                    }
                    if seen.insert(addr) {
                        members.push(Member {
                            backend,
                            weight: b.weight,
                        });
                    }
                }
            }
            pools.push(Arc::new(Pool {
                name: Arc::from(pc.name.as_str()),
                backends: BackendSet::new(members, registry.pool_epoch(&pc.name)),
                config: pc.clone(),
            }));
        }
        let routes = config
            .routes
            .iter()
            .map(|rc| {
                let before =
                    previous.and_then(|p| p.routes.iter().find(|r| r.config.name == rc.name));
                let mut split = Vec::new();
                let mut weights = Vec::new();
                let mut series = Vec::new();
                for (name, w) in &rc.split {
                    let Some(pool) = pools.iter().find(|p| &*p.name == name.as_str()) else {
                        continue;
                    };
                    split.push((pool.clone(), *w));
                    let old = before.map(|r| r.weight_of(name, now));
                    weights.push(Weight::after_reload(old, *w, rc.ramp_up, now));
                    series.push(
                        before
                            .and_then(|r| r.series_of(Some(name)))
                            .unwrap_or_default(),
                    );
                }
                series.push(before.and_then(|r| r.series_of(None)).unwrap_or_default());
                let pilot = rc.autopilot.as_ref().and_then(|cfg| {
                    let i = split.iter().position(|(p, _)| *p.name == *cfg.pool)?;
                    let pilot = Pilot::carry(&rc.name, cfg, before.and_then(|r| r.pilot()));
                    Some((pilot, i))
                });
                Route {
                    name: Arc::from(rc.name.as_str()),
                    config: rc.clone(),
                    split,
                    weights,
                    series,
                    pilot,
                }
            })
            .collect();
        Snapshot {
            table: RouteTable::build(&config.routes),
            config: Arc::new(config),
            generation,
            loaded_at: SystemTime::now(),
            routes,
            pools,
            unrouted: previous.map_or_else(Default::default, |p| p.unrouted.clone()),
        }
    }

    /// Whether any route names a host (see [`RouteTable::by_host`]).
    pub(crate) fn routes_by_host(&self) -> bool {
        self.table.by_host()
    }

    /// The route for a request's host and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.table.find(host, path).and_then(|i| self.routes.get(i))
    }
}

/// Addresses for a backend target: a name's last good answer (see [`crate::discovery`]),
/// looked up now when the name is new.
async fn resolve(
    pool: &str,
    target: &Target,
    registry: &Registry,
) -> Vec<(std::net::SocketAddr, Option<String>)> {
    match target {
        Target::Addr(a) => vec![(*a, None)],
        Target::Host { name, port } => registry
            .dns
            .addresses(pool, name, *port)
            .await
            .into_iter()
            .map(|a| (a, Some(name.clone())))
            .collect(),
    }
}

// === impl Route ===

impl Route {
    /// The weight each pool of the split gets now: its split weight (climbing, during a
    /// `ramp_up`) times the pool's ready capacity with `fallback`, as it is without.
    pub(crate) fn effective_split(&self) -> impl Iterator<Item = (&Arc<Pool>, f64)> + Clone + '_ {
        let fallback = self.config.fallback;
        // A running autopilot sets the two weights itself: its share and the rest.
        let piloted = self
            .pilot
            .as_ref()
            .and_then(|(p, i)| Some((p.share()?, *i)));
        let now =
            (piloted.is_none() && self.weights.iter().any(Weight::is_ramping)).then(Instant::now);
        self.split
            .iter()
            .zip(&self.weights)
            .enumerate()
            .map(move |(i, ((pool, _), w))| {
                let w = match piloted {
                    Some((share, pool)) if i == pool => f64::from(share),
                    Some((share, _)) => f64::from(100 - share.min(100)),
                    None => w.at(now),
                };
                let eff = if fallback {
                    w * pool.backends.capacity()
                } else {
                    w
                };
                (pool, eff)
            })
    }

    /// The series of split entry `pool`, or of requests that got no pool.
    pub(crate) fn series(&self, pool: Option<usize>) -> &Series {
        let none = self.series.len() - 1;
        &self.series[pool.unwrap_or(none).min(none)]
    }

    /// The series of the split entry named `pool` (`None`: the no-pool series), to
    /// carry over to the next snapshot.
    fn series_of(&self, pool: Option<&str>) -> Option<Arc<Series>> {
        match pool {
            Some(name) => {
                let i = self.split.iter().position(|(p, _)| &*p.name == name)?;
                self.series.get(i).cloned()
            }
            None => self.series.last().cloned(),
        }
    }

    /// Each series with its `pool` label: the split's pools in order (with `true`: a
    /// pool of the split), then `none` (with `false`).
    pub(crate) fn pool_series(&self) -> impl Iterator<Item = (&str, &Series, bool)> + '_ {
        self.series
            .iter()
            .enumerate()
            .map(|(i, s)| match self.split.get(i) {
                Some((pool, _)) => (&*pool.name, &**s, true),
                None => (crate::metrics::NONE, &**s, false),
            })
    }

    /// The route's autopilot, if it has one.
    pub(crate) fn pilot(&self) -> Option<&Arc<Pilot>> {
        self.pilot.as_ref().map(|(p, _)| p)
    }

    /// The split entries of the autopilot's pool and baseline.
    pub(crate) fn autopilot_sides(&self) -> Option<[usize; 2]> {
        let (_, pool) = self.pilot.as_ref()?;
        (self.split.len() == 2).then_some([*pool, 1 - pool])
    }

    /// The split weight of `pool` at `now` (0 when the pool is not in the split): what
    /// a reload ramps from. A running autopilot's share counts, in the file's units,
    /// so that handing the ramp back to the file never dips the pool.
    pub(crate) fn weight_of(&self, pool: &str, now: Instant) -> f64 {
        let Some(i) = self.split.iter().position(|(p, _)| &*p.name == pool) else {
            return 0.0;
        };
        if let Some((pilot, piloted)) = &self.pilot {
            if let Some(share) = pilot.share() {
                let total: f64 = self.split.iter().map(|(_, w)| f64::from(*w)).sum();
                let percent = if i == *piloted {
                    share
                } else {
                    100 - share.min(100)
                };
                return f64::from(percent) * total / 100.0;
            }
        }
        self.weights.get(i).map_or(0.0, |w| w.at(Some(now)))
    }

    /// Chooses the pool for one request. Precedence: override, sticky key, weight.
    pub fn pick_pool(&self, keys: &PickKeys<'_>, rng: &mut impl Rng) -> Result<usize, NoReadyPool> {
        if let Some(name) = keys.override_pool {
            if let Some(i) = self.split.iter().position(|(p, _)| &*p.name == name) {
                return if self.split[i].0.backends.has_ready() {
                    Ok(i)
                } else {
                    Err(NoReadyPool { pool: Some(i) })
                };
            }
        }
        self.with_weights(|weights| {
            let chosen = match keys.sticky {
                Some(key) => {
                    let names = self.split.iter().map(|(p, _)| &*p.name);
                    balance::rendezvous(key, names.zip(weights.iter().copied()))
                }
                None => balance::weighted(weights.iter().copied(), rng.random::<f64>()),
            };
            match chosen {
                // With fallback a chosen pool has capacity, so it has a ready backend.
                Some(i) if self.config.fallback || self.split[i].0.backends.has_ready() => Ok(i),
                pool => Err(NoReadyPool { pool }),
            }
        })
    }

    /// Runs `f` on the effective split, computed once (each pool's capacity is read
    /// once) into a stack buffer for the usual handful of pools.
    fn with_weights<R>(&self, f: impl FnOnce(&[f64]) -> R) -> R {
        const INLINE: usize = 8;
        let n = self.split.len();
        if n <= INLINE {
            let mut buf = [0.0; INLINE];
            for (slot, (_, w)) in buf.iter_mut().zip(self.effective_split()) {
                *slot = w;
            }
            f(&buf[..n])
        } else {
            let v: Vec<f64> = self.effective_split().map(|(_, w)| w).collect();
            f(&v)
        }
    }

    /// The next pool to try after `tried` pools failed, when `fallback` allows it.
    pub(crate) fn fallback_pool(&self, tried: &[usize], rng: &mut impl Rng) -> Option<usize> {
        if !self.config.fallback {
            return None;
        }
        let weights =
            self.effective_split()
                .enumerate()
                .map(|(i, (_, w))| if tried.contains(&i) { 0.0 } else { w });
        balance::weighted(weights, rng.random::<f64>())
    }

    /// Where this route reads its sticky key from.
    pub fn sticky(&self) -> Option<&KeySource> {
        self.config.sticky.as_ref()
    }

    pub(crate) fn override_source(&self) -> Option<&KeySource> {
        self.config.override_.as_ref()
    }
}

// === impl Weight ===

impl Weight {
    /// A new config's weight, given what the pool had just before the reload: a raise
    /// climbs over `ramp_up`, anything else (a rollback included) applies at once.
    fn after_reload(
        old: Option<f64>,
        new: u32,
        ramp_up: std::time::Duration,
        now: Instant,
    ) -> Weight {
        let to = f64::from(new);
        match old {
            Some(from) if from < to && !ramp_up.is_zero() => Weight::Ramping {
                from,
                to,
                since: now,
                window: ramp_up,
            },
            _ => Weight::Fixed(to),
        }
    }

    fn is_ramping(&self) -> bool {
        matches!(self, Weight::Ramping { .. })
    }

    fn at(&self, now: Option<Instant>) -> f64 {
        match (*self, now) {
            (Weight::Fixed(w), _) => w,
            (Weight::Ramping { to, .. }, None) => to,
            (
                Weight::Ramping {
                    from,
                    to,
                    since,
                    window,
                },
                Some(now),
            ) => {
                let x = now.saturating_duration_since(since).as_secs_f64() / window.as_secs_f64();
                from + (to - from) * x.min(1.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn raised_weights_ramp_and_lowered_ones_apply_at_once() {
        let t0 = Instant::now();
        let ramp = Duration::from_secs(10);
        let w = Weight::after_reload(Some(10.0), 50, ramp, t0);
        assert_eq!(w.at(Some(t0)), 10.0);
        assert_eq!(w.at(Some(t0 + Duration::from_secs(5))), 30.0);
        assert_eq!(w.at(Some(t0 + Duration::from_secs(60))), 50.0);
        assert_eq!(
            Weight::after_reload(Some(50.0), 0, ramp, t0).at(Some(t0)),
            0.0
        );
        assert_eq!(
            Weight::after_reload(None, 50, ramp, t0).at(Some(t0)),
            50.0,
            "first load"
        );
        assert_eq!(
            Weight::after_reload(Some(10.0), 50, Duration::ZERO, t0).at(Some(t0)),
            50.0
        );
    }
}
