//! For the autopilot tests: traffic that runs until stopped, and a route's ramp as
//! `/status` and `/metrics` show it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::status::Autopilot;

use super::{get, Proxy};

/// The users the clients take turns as (`x-user: user-N`), for sticky routes.
pub const USERS: usize = 50;

/// Requests sent by a few concurrent clients until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// `clients` clients, each going round `instances` in turn and round the users,
    /// waiting `pause` after each answer; each stops by itself after `limit`.
    pub fn start(
        instances: &[SocketAddr],
        clients: usize,
        pause: Duration,
        limit: Duration,
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let (stop, sent, to) = (stop.clone(), sent.clone(), instances.to_vec());
                tokio::spawn(async move {
                    let end = Instant::now() + limit;
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let user = format!("user-{}", i % USERS);
                        let _ = get(to[i % to.len()], "/", &[("x-user", &user)]).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        i += clients;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Traffic { stop, sent, tasks }
    }

    /// Stops the clients and waits until none has a request out; how many were sent.
    pub async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.sent.load(Ordering::Relaxed)
    }
}

/// The ramp of route `r`, from `/status`.
pub async fn autopilot(proxy: &Proxy) -> Autopilot {
    let r = get(proxy.admin, "/status", &[]).await;
    let status: cutover::status::Status = serde_json::from_str(&r.body).expect("status json");
    status
        .routes
        .into_iter()
        .find(|r| r.name == "r")
        .and_then(|r| r.autopilot)
        .expect("route r has an autopilot")
}

pub async fn metrics(proxy: &Proxy) -> String {
    get(proxy.admin, "/metrics", &[]).await.body
}
