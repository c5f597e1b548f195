//! `cutover demo --autopilot`: the demo's upstreams behind a route whose autopilot
//! raises k8s in short steps. The demo sends its own traffic through the proxy, makes
//! k8s slow once the ramp reaches half, and the tour prints each change of the ramp as
//! it happens, the rollback and its reason included.
//!
//! The tour reads the ramp where `/status` reads it (the route's pilot, in this
//! process) a few times a second, and the same loop turns k8s slow: the slow-down
//! follows the ramp, and the time it prints from the slow-down to the rollback is
//! measured, not told.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

use super::{listeners_and_ecs, proxy_addr, this_binary, Lag, Setup};
use crate::autopilot::machine::RATIO_FLOOR;
use crate::autopilot::Report;
use crate::state::Shared;

const CONFIG: &str = concat!(
    r#"# The autopilot demo's config. The route's split is where a rollback returns;
# [routes.autopilot] raises k8s from there, step by step, while k8s keeps up with
# ecs. To start the ramp over, change `run` and save: the demo watches this file.

"#,
    listeners_and_ecs!(),
    r#"
# Warm from the start: this tour is about the ramp (`cutover demo` shows warm-up).
[pools.k8s]
backends = ["127.0.0.1:18083", "127.0.0.1:18084"]

[[routes]]
name = "demo"
split = { ecs = 100, k8s = 0 }
override = "header:x-cutover-pool"

[routes.autopilot]
run = 1
pool = "k8s"
baseline = "ecs"
steps = [5, 25, 50, 100]
hold = "6s"
min_requests = 10
window = "5s"
max_latency = "250ms"
max_latency_ratio = 4
"#
);

/// The route the tour follows.
const ROUTE: &str = "demo";

/// The demo's own traffic: this many clients, each asking once every `EVERY` and
/// never with two requests out, so the rate is bounded whatever the proxy does.
const CLIENTS: u32 = 25;
const EVERY: Duration = Duration::from_millis(500);

/// k8s turns slow once the ramp gives it this share or more...
const SLOW_AT: u32 = 50;
/// ...by this much per answer: above `max_latency`, so a check must fail.
const SLOW: Duration = Duration::from_millis(400);

/// How often the tour looks at the ramp: a fraction of the ramp's own evaluation tick,
/// so that no state is missed and the times it prints are close.
const LOOK: Duration = Duration::from_millis(100);

/// Runs the autopilot tour until Ctrl-C.
pub(super) fn run() -> ExitCode {
    let Some(Setup {
        path,
        config,
        upstreams,
    }) = Setup::prepare(CONFIG)
    else {
        return ExitCode::FAILURE;
    };
    let Some((ramp, split)) = config
        .routes
        .iter()
        .find(|r| r.name == ROUTE)
        .and_then(|r| {
            let split = r.split.iter().map(|(pool, w)| (pool.as_str(), *w));
            Some((r.autopilot.clone()?, file_split(split)))
        })
    else {
        eprintln!("the embedded demo config has no autopilot (a bug)");
        return ExitCode::FAILURE;
    };
    crate::cli::serve(config, move |running| {
        let lag = Lag::default();
        upstreams.spawn(&lag);
        let proxy = proxy_addr(running);
        let tour = Tour {
            began: Instant::now(),
            lag,
            fault: Fault::Waiting,
            last: None,
            admin: running.admin_addr,
            config: path,
            exe: this_binary(),
        };
        say(&tour.intro(&ramp, &split, proxy));
        tokio::spawn(traffic(proxy));
        tokio::spawn(follow(running.shared.clone(), tour));
    })
}

/// Writes to stdout; a reader that went away (`| head`) must not stop the demo.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

// === the traffic ===

/// The demo's own traffic through the proxy's port, until Ctrl-C: the ramp's windows
/// fill without the reader doing anything.
async fn traffic(proxy: SocketAddr) {
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        // Spread over one beat: requests come evenly, not in bursts.
        clients.spawn(client(proxy, EVERY * i / CLIENTS));
    }
    crate::cli::wait_for_stop().await;
    // Before the proxy drains: its last requests are not the demo's own.
    clients.abort_all();
}

/// One client: a keep-alive connection, a request every `EVERY` after `offset`, each
/// read to its end before the next.
async fn client(proxy: SocketAddr, offset: Duration) {
    tokio::time::sleep(offset).await;
    let mut beat = tokio::time::interval(EVERY);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn = None;
    loop {
        beat.tick().await;
        if conn.is_none() {
            conn = connect(proxy).await.ok();
        }
        if let Some(send) = conn.as_mut() {
            if ask(send, proxy).await.is_err() {
                // Closed or broken: a new connection on the next beat.
                conn = None;
            }
        }
    }
}

async fn connect(proxy: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(proxy).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn ask(send: &mut SendRequest<Empty<Bytes>>, proxy: SocketAddr) -> anyhow::Result<()> {
    send.ready().await?;
    let req = Request::get("/")
        .header(http::header::HOST, proxy.to_string())
        .body(Empty::new())?;
    let resp = send.send_request(req).await?;
    resp.into_body().collect().await?;
    Ok(())
}

// === the tour ===

/// Looks at the route's ramp every `LOOK` and says what changed, until Ctrl-C.
async fn follow(shared: Arc<Shared>, mut tour: Tour) {
    let stop = crate::cli::wait_for_stop();
    tokio::pin!(stop);
    let mut look = tokio::time::interval(LOOK);
    look.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = look.tick() => {}
        }
        let snapshot = shared.live.load();
        // The reader may edit the route or its autopilot away: then nothing to say.
        let Some(route) = snapshot.routes.iter().find(|r| &*r.name == ROUTE) else {
            continue;
        };
        let Some(pilot) = route.pilot() else {
            continue;
        };
        let now = Instant::now();
        let split = route.split.iter().map(|(pool, w)| (&*pool.name, *w));
        say(&tour.observe(&pilot.report(now), &file_split(split), now));
    }
}

/// `ecs = 100, k8s = 0`: a route's split as the file has it.
fn file_split<'a>(split: impl Iterator<Item = (&'a str, u32)>) -> String {
    let pools: Vec<String> = split.map(|(pool, w)| format!("{pool} = {w}")).collect();
    pools.join(", ")
}

/// What the tour has said and done so far, to say only what changes.
struct Tour {
    /// When the proxy was up: the clock of the tour's lines.
    began: Instant,
    lag: Lag,
    fault: Fault,
    /// The (run, state, step) of the ramp last said.
    last: Option<(i64, &'static str, usize)>,
    admin: SocketAddr,
    config: PathBuf,
    exe: String,
}

/// The slow-down the demo plays once: waiting for the ramp to reach `SLOW_AT`, k8s
/// slow since then, or over (the ramp rolled back and k8s is fast again).
#[derive(Debug, Clone, Copy)]
enum Fault {
    Waiting,
    /// Since this wall time: the ramp's `since` is one too.
    Slow(SystemTime),
    Over,
}

impl Tour {
    /// What the tour is about to show; `split` is the file's.
    fn intro(&self, ramp: &crate::config::Autopilot, split: &str, proxy: SocketAddr) -> String {
        let steps: Vec<String> = ramp.steps.iter().map(ToString::to_string).collect();
        let (last, before) = steps.split_last().map_or(("", &[][..]), |(l, b)| (l, b));
        let ceiling = ramp
            .max_latency
            .map_or_else(String::new, |d| format!("under {} and ", fmt(d)));
        let rate = f64::from(CLIENTS) / EVERY.as_secs_f64();
        format!(
            "\ncutover demo --autopilot is running (pid {pid}).\n\
             \n  proxy   http://{proxy}/     the demo sends it ~{rate:.0} requests/s itself\
             \n  admin   http://{admin}/status\
             \n  config  {cfg}\n\
             \nRoute {ROUTE:?} splits {split} in the file: where a rollback returns.\
             \nIts autopilot raises {pool} to {before} and then {last} %, each step held {hold}\
             \nor more and judged against {base} over the last {window}: {pool}'s p{q} must stay\
             \n{ceiling}under {ratio} times {base}'s (both counted as {floor} at least).\
             \nWhen {pool} reaches {SLOW_AT} %, the demo makes it slow.\n\
             \nWatch it live, from another terminal:\n\
             \n  {exe} status --admin http://{admin} --watch 1\n\
             \nCtrl-C stops the demo.\n\n",
            pid = std::process::id(),
            admin = self.admin,
            cfg = self.config.display(),
            base = ramp.baseline,
            pool = ramp.pool,
            before = before.join(", "),
            hold = fmt(ramp.hold),
            window = fmt(ramp.window),
            q = (ramp.quantile * 1000.0).round() / 10.0,
            ratio = ramp.max_latency_ratio,
            floor = fmt(Duration::from_secs_f64(RATIO_FLOOR)),
            exe = self.exe,
        )
    }

    /// The lines to print about the ramp as `r` reports it at `now`, and k8s slowed or
    /// healed as the story goes. `split` is the file's.
    fn observe(&mut self, r: &Report, split: &str, now: Instant) -> String {
        let seen = (r.cfg.run, r.state, r.step);
        if self.last == Some(seen) {
            return String::new();
        }
        let t = now.saturating_duration_since(self.began).as_secs_f64();
        let at = format!("{t:>6.1}s  ");
        let mut out = String::new();
        if self.last.is_some_and(|(run, ..)| run != r.cfg.run) {
            out += &format!("{at}run = {}: the ramp starts over\n", r.cfg.run);
        }
        self.last = Some(seen);
        let pool = &r.cfg.pool;
        let share = r.share.unwrap_or(0);
        match r.state {
            "running" => {
                let n = r.cfg.steps.len();
                out += &format!("{at}step {} of {n}: {pool} at {share} %\n", r.step);
                if share >= SLOW_AT && matches!(self.fault, Fault::Waiting) {
                    self.lag.set(SLOW);
                    self.fault = Fault::Slow(SystemTime::now());
                    let ms = SLOW.as_millis();
                    out += &format!("{at}the demo makes {pool} slow: {ms} ms an answer\n");
                }
            }
            "done" => {
                let base = &r.cfg.baseline;
                out += &format!(
                    "{at}done: {pool} holds {share} %. Write it into the file to keep it:\n\
                     \n  {exe} shift -c {cfg} {ROUTE} {base}={rest} {pool}={share}\n\n",
                    rest = 100 - share.min(100),
                    exe = self.exe,
                    cfg = self.config.display(),
                );
            }
            "rolled_back" => out += &self.rolled_back(r, split, &at),
            // Pending: for a moment before step 1.
            _ => {}
        }
        out
    }

    fn rolled_back(&mut self, r: &Report, split: &str, at: &str) -> String {
        let reason = r.reason.as_deref().unwrap_or("(no reason given)");
        let pool = &r.cfg.pool;
        let mut out = match self.fault {
            Fault::Slow(slowed) => {
                self.lag.set(Duration::ZERO);
                self.fault = Fault::Over;
                let after = r
                    .since
                    .duration_since(slowed)
                    .unwrap_or_default()
                    .as_secs_f64();
                format!(
                    "{at}rolled back after {after:.1}s: {reason}\
                     \n         back to the file's split, {split}; the demo makes {pool} fast again\n"
                )
            }
            // Not the demo's doing: this machine was slow, or someone sent errors.
            Fault::Waiting => format!("{at}rolled back before the demo slowed {pool}: {reason}\n"),
            Fault::Over => format!("{at}rolled back: {reason}\n"),
        };
        let (admin, cfg, exe) = (self.admin, self.config.display(), &self.exe);
        let run = r.cfg.run;
        let then = match self.fault {
            Fault::Over => format!(" ({pool} stays fast this time)"),
            Fault::Waiting | Fault::Slow(_) => String::new(),
        };
        out += &format!(
            "\nLook closer:\n\
             \n  {exe} status --admin http://{admin}\
             \n      the ramp, its checks and why it rolled back\
             \n  curl -s http://{admin}/status\
             \n      the same as JSON, under routes[].autopilot\
             \n  curl -s http://{admin}/metrics | grep cutover_autopilot\
             \n      its step, its state and its rollbacks by check, for Prometheus\n\
             \nStart over{then}: change `run = {run}` in the config and save, or\n\
             \n  sed -i 's/^run = {run}$/run = {next}/' {cfg}\n\n",
            next = run.saturating_add(1),
        );
        out
    }
}

/// A duration as the config file writes it: `6s`, `250ms`.
fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
