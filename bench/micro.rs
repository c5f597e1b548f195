//! Micro-benchmarks of the per-request work that is not I/O: route match, pool and
//! backend pick, sticky rendezvous, outcome recording.
//!
//! Run: `cargo bench --bench micro` (add `-- pick` to filter). Criterion prints the
//! time per iteration; compare runs of the same machine only.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cutover::health::Registry;
use cutover::metrics::{self, Outcome};
use cutover::routing::{PickKeys, Snapshot};

/// A config with two pools, `a` with `n` backends and `b` with one, split 90/10.
fn pools_config(n: usize, sticky: bool) -> String {
    let backends: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "\"10.{}.{}.{}:8080\"",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    format!(
        "[pools.a]\nbackends = [{}]\n[pools.b]\nbackends = [\"10.255.0.1:8080\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ a = 90, b = 10 }}\n{}",
        backends.join(", "),
        if sticky {
            "sticky = \"header:x-user\"\n"
        } else {
            ""
        }
    )
}

fn snapshot(rt: &tokio::runtime::Runtime, text: &str) -> Snapshot {
    let config = cutover::config::parse(Path::new("bench.toml"), text)
        .expect("valid bench config")
        .config;
    rt.block_on(async { Snapshot::build(config, &Registry::new(), None).await })
}

fn picks(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut g = c.benchmark_group("pick");
    for n in [2usize, 100, 10_000] {
        let snap = snapshot(&rt, &pools_config(n, false));
        let route = snap.route(Some("x"), "/").expect("route");
        g.bench_with_input(BenchmarkId::new("pool_then_backend", n), &n, |b, _| {
            let mut rng = rand::rng();
            b.iter(|| {
                let pool = route
                    .pick_pool(&PickKeys::default(), &mut rng)
                    .expect("pool");
                let set = &route.split[pool].0.backends;
                black_box(set.pick(rand::random::<f64>(), &[]))
            })
        });
    }
    let snap = snapshot(&rt, &pools_config(2, true));
    let route = snap.route(Some("x"), "/").expect("route");
    g.bench_function("sticky_rendezvous", |b| {
        let mut rng = rand::rng();
        let keys = PickKeys {
            override_pool: None,
            sticky: Some(b"user-123456789"),
        };
        b.iter(|| black_box(route.pick_pool(black_box(&keys), &mut rng)))
    });
    g.finish();
}

fn route_match(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut text = String::from("[pools.p]\nbackends = [\"10.0.0.1:80\"]\n");
    for i in 0..1000 {
        let hosts = match i % 3 {
            0 => format!("hosts = [\"svc{i}.example.com\"]\n"),
            1 => format!("hosts = [\"*.zone{i}.example.com\"]\n"),
            _ => String::new(),
        };
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\n{hosts}path_prefix = \"/api/v{i}/\"\nsplit = {{ p = 1 }}\n"
        ));
    }
    let snap = snapshot(&rt, &text);
    let mut g = c.benchmark_group("route_match_1000_routes");
    g.bench_function("exact_host", |b| {
        b.iter(|| {
            black_box(snap.route(
                black_box(Some("svc999.example.com")),
                black_box("/api/v999/items/42"),
            ))
        })
    });
    g.bench_function("wildcard_host", |b| {
        b.iter(|| {
            black_box(snap.route(
                black_box(Some("a.b.zone997.example.com:8080")),
                black_box("/api/v997/x"),
            ))
        })
    });
    g.bench_function("any_host_miss_then_catch", |b| {
        b.iter(|| {
            black_box(snap.route(
                black_box(Some("unknown.example.org")),
                black_box("/api/v998/deep/path/here"),
            ))
        })
    });
    g.finish();
}

fn record(c: &mut Criterion) {
    let route = String::from("ad-api");
    let pool = String::from("k8s");
    c.bench_function("metrics_record_outcome", |b| {
        b.iter(|| {
            let mut o = Outcome::new(Instant::now());
            o.route = Some(&route);
            o.pool = Some(&pool);
            o.status = 200;
            metrics::record(black_box(&mut o));
        })
    });
}

/// Picks while 5 000 backends slow-start at once (a Deployment rollout): their probe
/// tasks move factors many times a second on the runtime's threads, and the pool's
/// pick table must not be rebuilt on every pick.
fn mass_slow_start(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = Registry::new();
    let parse = |text: &str| {
        cutover::config::parse(Path::new("bench.toml"), text)
            .expect("valid bench config")
            .config
    };
    let before = parse(&pools_config(1, false));
    // The same pool grown to 5 000 backends, new to the registry, slow-starting over
    // 20 s: each moves its factor every 200 ms, as its probe task ticks.
    let after = parse(&pools_config(5_000, false).replace(
        "[pools.b]",
        "[pools.a.slow_start]\nwindow = \"20s\"\n[pools.b]",
    ));
    let snap = rt.block_on(async {
        let first = Snapshot::build(before, &registry, None).await;
        Snapshot::build(after, &registry, Some(&first)).await
    });
    let route = snap.route(Some("x"), "/").expect("route");
    let set = &route.split[0].0.backends;
    let mut g = c.benchmark_group("pick_during_mass_slow_start_5000");
    // Back to back: factors move once per hundreds of picks.
    g.bench_function("back_to_back", |b| {
        b.iter(|| black_box(set.pick(rand::random::<f64>(), &[])))
    });
    // At a proxy's pace, a pick every ~60 us (what a sleep of 50 us gives): factors
    // move between most picks, and a table rebuilt on each change would cost every pick
    // a pass over 5 000 backends. Only the pick is timed.
    g.bench_function("one_pick_per_60us", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(std::time::Duration::from_micros(50));
                let t = Instant::now();
                black_box(set.pick(rand::random::<f64>(), &[]));
                spent += t.elapsed();
            }
            spent
        })
    });
    g.finish();
    drop(rt);
}

criterion_group!(benches, picks, route_match, record, mass_slow_start);
criterion_main!(benches);
