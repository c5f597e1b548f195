//! `cutover demo`: the proxy in front of two built-in environments, from the binary
//! alone. "ecs" answers at once; "k8s" needs a few seconds of warm-up and says so on
//! its readiness path, reporting its progress in `x-cutover-warmup`.
//!
//! `cutover demo --autopilot` (`demo/autopilot.rs`) puts the same upstreams behind a
//! route whose autopilot ramps k8s up, makes k8s slow halfway and shows the rollback.

mod autopilot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::config;

/// Where both tours' configs listen, and their ecs pool: the addresses the tours print
/// and [`Upstreams::bind`] binds, in one place.
macro_rules! listeners_and_ecs {
    () => {
        r#"[listen]
http = ["127.0.0.1:8080"]

[admin]
listen = "127.0.0.1:9900"

[access_log]
enabled = false

[pools.ecs]
backends = ["127.0.0.1:18081", "127.0.0.1:18082"]
"#
    };
}
use listeners_and_ecs;

const CONFIG: &str = concat!(
    r#"# The demo's config. Edit a weight under [[routes]] and save (or run
#   cutover shift -c <this file> demo ecs=50 k8s=50)
# and the next requests follow the new split: the demo watches this file.

"#,
    listeners_and_ecs!(),
    r#"
[pools.k8s]
backends = ["127.0.0.1:18083", "127.0.0.1:18084"]
warmup = { path = "/ready", interval = "500ms", healthy = 2 }
slow_start = "20s"

[[routes]]
name = "demo"
split = { ecs = 90, k8s = 10 }
override = "header:x-cutover-pool"
"#
);

/// How long a demo k8s pod takes to warm up.
const WARMUP: Duration = Duration::from_secs(6);

/// Runs the demo until Ctrl-C: the warm-up tour, or with `autopilot` the ramp's.
pub(super) fn run(autopilot: bool) -> ExitCode {
    if autopilot {
        return autopilot::run();
    }
    let Some(Setup {
        path: config_path,
        config,
        upstreams,
    }) = Setup::prepare(CONFIG)
    else {
        return ExitCode::FAILURE;
    };
    let pid = std::process::id();
    super::serve(config, move |running| {
        upstreams.spawn(&Lag::default());
        let proxy = proxy_addr(running);
        println!(
            "\ncutover demo is running (pid {pid}).\n\
             \n  proxy   http://{proxy}/\n  admin   http://{admin}/readyz\n  config  {cfg}\n\
             \nTry:\n\
             \n  for i in $(seq 20); do curl -s http://{proxy}/; done | sort | uniq -c\
             \n      90/10 between ecs and k8s; k8s gets nothing until its pods are warm (~{w}s),\
             \n      then its share grows over a 20s slow start\
             \n  curl -s -H 'x-cutover-pool: k8s' http://{proxy}/     a tester forcing the new pool\
             \n  curl -s http://{admin}/readyz\
             \n\nWatch it live, from another terminal:\
             \n\n  {exe} status --admin http://{admin} --watch 1\
             \n      the k8s pool warming (no share), then taking its share as its pods\
             \n      slow-start; per route, pool and backend: req/s, errors, p50/p95/p99\
             \n  curl -s http://{admin}/metrics     the same figures for Prometheus\
             \n\nShift traffic (the running demo picks the file change up by itself):\
             \n\n  {exe} shift -c {cfg} demo ecs=50 k8s=50\
             \n  {exe} shift -c {cfg} demo ecs=100 k8s=0     the rollback\
             \n\nor edit `split = {{ ecs = 90, k8s = 10 }}` in {cfg} and save.\
             \n\nCtrl-C stops the demo.\n",
            admin = running.admin_addr,
            cfg = config_path.display(),
            w = WARMUP.as_secs(),
            exe = this_binary(),
        );
    })
}

/// What both tours start from: their config written where the reader can edit it, and
/// loaded; the upstreams' ports bound, so that a busy one is said before anything
/// starts.
struct Setup {
    path: PathBuf,
    config: config::Config,
    upstreams: Upstreams,
}

impl Setup {
    /// The setup for config `text`, or `None` once it has said on stderr why not.
    fn prepare(text: &str) -> Option<Setup> {
        Self::try_prepare(text)
            .inspect_err(|e| eprintln!("{e}"))
            .ok()
    }

    fn try_prepare(text: &str) -> Result<Setup, String> {
        let dir = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
        let path = dir.join("cutover.toml");
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write the demo config to {}: {e}", path.display()))?;
        let config = config::load(&path)
            .map_err(|e| format!("the embedded demo config is invalid (a bug):\n{e}"))?
            .config;
        Ok(Setup {
            path,
            config,
            upstreams: Upstreams::bind()?,
        })
    }
}

/// The four built-in upstreams, bound and not yet served.
struct Upstreams(Vec<(std::net::TcpListener, &'static str)>);

impl Upstreams {
    fn bind() -> Result<Upstreams, String> {
        let mut bound = Vec::new();
        for (port, env) in [
            (18081, "ecs"),
            (18082, "ecs"),
            (18083, "k8s"),
            (18084, "k8s"),
        ] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|e| format!("cannot bind demo upstream {addr}: {e}"))?;
            bound.push((listener, env));
        }
        Ok(Upstreams(bound))
    }

    /// Serves them on the current runtime; every k8s answer waits `lag` first.
    fn spawn(self, lag: &Lag) {
        for (listener, env) in self.0 {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::spawn(upstream(l, env, lag.clone()));
                }
                Err(e) => eprintln!("demo upstream: {e}"),
            }
        }
    }
}

/// How long each k8s answer waits before it goes: zero unless a tour turns k8s slow.
/// Written by the tour, read by every k8s request.
#[derive(Debug, Clone, Default)]
struct Lag(Arc<AtomicU64>);

impl Lag {
    fn set(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.store(ms, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// The proxy's first listener, as the tours print it.
fn proxy_addr(running: &crate::app::Running) -> SocketAddr {
    running
        .http_addrs
        .first()
        .copied()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// This binary's path, quoted for a POSIX shell when it needs it, so that the status
/// command the tour prints can be pasted as it is; plain `cutover` when unknown.
fn this_binary() -> String {
    let Some(path) = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
    else {
        return "cutover".to_owned();
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@,=".contains(c);
    if path.chars().all(plain) {
        path
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

/// A demo upstream answering as `env`; k8s ones are cold for `WARMUP`, and answer
/// after `lag`.
async fn upstream(listener: tokio::net::TcpListener, env: &'static str, lag: Lag) {
    let started = Instant::now();
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let lag = lag.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let wait = if env == "k8s" {
                lag.get()
            } else {
                Duration::ZERO
            };
            async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok::<_, Infallible>(answer(&req, env, port, started.elapsed()))
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(
    req: &Request<Incoming>,
    env: &str,
    port: u16,
    up_for: Duration,
) -> Response<Full<Bytes>> {
    let cold = env == "k8s" && up_for < WARMUP;
    let (status, body, progress) = match req.uri().path() {
        "/ready" if cold => (
            StatusCode::SERVICE_UNAVAILABLE,
            "warming up\n".to_owned(),
            None,
        ),
        "/ready" if env == "k8s" => {
            // Report our own warm-up pace for a while after becoming ready.
            let after = up_for.saturating_sub(WARMUP).as_secs_f64();
            let pct = (30.0 + after * 7.0).min(100.0) as u8;
            (
                StatusCode::OK,
                "ready\n".to_owned(),
                (pct < 100).then_some(pct),
            )
        }
        "/ready" => (StatusCode::OK, "ready\n".to_owned(), None),
        _ => (
            StatusCode::OK,
            format!("hello from {env} (backend 127.0.0.1:{port})\n"),
            None,
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "x-environment",
        http::HeaderValue::from_static(if env == "k8s" { "k8s" } else { "ecs" }),
    );
    if let Some(p) = progress {
        if let Ok(v) = http::HeaderValue::from_str(&p.to_string()) {
            resp.headers_mut().insert("x-cutover-warmup", v);
        }
    }
    resp
}
