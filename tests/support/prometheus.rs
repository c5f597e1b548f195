//! A real Prometheus for tests: Debian's `prometheus` and `promtool`, found on PATH or
//! installed by `tests/deps/install`, scraping a cutover on a loopback port of its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tempdir;

/// How long any one wait on Prometheus may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// One series of an instant query's answer.
#[derive(Debug)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus scraping cutover's admin listener every second, on a port and in a
/// storage directory of its own; killed on drop.
pub struct Prometheus {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempdir::Dir,
}

impl Prometheus {
    pub fn start(bin: &Path, target: SocketAddr) -> Prometheus {
        Prometheus::start_with(bin, &[target], &[])
    }

    /// A Prometheus scraping every one of `targets` as instances of the job `cutover`,
    /// and evaluating the rules of `rule_files` (absolute paths) every second.
    pub fn start_with(bin: &Path, targets: &[SocketAddr], rule_files: &[PathBuf]) -> Prometheus {
        Prometheus::start_at(bin, free_port(), targets, rule_files)
    }

    /// [`Prometheus::start_with`] listening on `addr` (from [`free_port`]): for
    /// configs that must name Prometheus before it starts.
    pub fn start_at(
        bin: &Path,
        addr: SocketAddr,
        targets: &[SocketAddr],
        rule_files: &[PathBuf],
    ) -> Prometheus {
        let dir = tempdir::Dir::new();
        let config = dir.path.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut yml = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: cutover\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        if !rule_files.is_empty() {
            yml.push_str("rule_files:\n");
            for f in rule_files {
                yml.push_str(&format!("  - '{}'\n", f.display()));
            }
        }
        std::fs::write(&config, yml).expect("write prometheus.yml");
        let log = File::create(dir.path.join("prometheus.log")).expect("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Prometheus { child, addr, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("prometheus.log")).unwrap_or_default()
    }

    /// Fails the test, with Prometheus's log, when it has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
    }

    pub async fn wait_ready(&mut self) {
        if !self.ready().await {
            self.assert_alive();
        }
    }

    /// Waits until it is ready (true) or has exited (false: a port taken meanwhile,
    /// say, which its log tells).
    pub async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some((200, _)) = http_get(self.addr, "/-/ready").await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {PATIENCE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a scrape has seen exactly `n` requests answered.
    pub async fn wait_for_total(&mut self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = Vec::new();
        loop {
            self.assert_alive();
            last = self
                .try_query("sum(cutover_requests_total)")
                .await
                .unwrap_or(last);
            if matches!(&last[..], [s] if s.value == n as f64) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not see {n} requests within {PATIENCE:?}, last {last:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query at the current time; fails the test on an error answer.
    pub async fn query(&self, q: &str) -> Vec<Sample> {
        match self.try_query(q).await {
            Ok(samples) => samples,
            Err(e) => panic!("query failed: {e}\n{q}"),
        }
    }

    pub async fn try_query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(q));
        let (status, body) = http_get(self.addr, &path)
            .await
            .ok_or("no answer from prometheus")?;
        let doc: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
        if status != 200 || doc["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        if doc["data"]["resultType"] != "vector" {
            return Err(format!("not an instant vector: {body}"));
        }
        let series = doc["data"]["result"].as_array().ok_or(body.clone())?;
        series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .ok_or("no metric")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or(format!("no value in {s}"))?;
                Ok(Sample { labels, value })
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address that was free a moment ago (Prometheus takes no port 0).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// GET over HTTP/1.0, so that the answer is neither chunked nor kept alive: the status
/// and the body, or None when nothing answers (yet).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// === The tools ===

/// `prometheus` and `promtool`, found on PATH or installed.
pub struct Tools {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

impl Tools {
    pub fn find_or_install() -> Tools {
        if let Some(tools) = Tools::find() {
            return tools;
        }
        super::install_deps();
        Tools::find().expect("prometheus and promtool on PATH after tests/deps/install")
    }

    pub fn find() -> Option<Tools> {
        Some(Tools {
            prometheus: on_path("prometheus")?,
            promtool: on_path("promtool")?,
        })
    }

    /// `promtool check metrics` on `exposition`; fails the test, with promtool's words,
    /// unless it exits 0.
    pub fn check_metrics(&self, exposition: &str) {
        let mut child = Command::new(&self.promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(exposition.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}\n{}{}\nexposition:\n{exposition}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `clients` in parallel, each sending `GET /` to `proxy` one after the other until
/// `end` or until `stop` is set; each answer must be a 200 or a 500 (the tests' failing
/// upstream). The number of answers.
pub async fn drive(
    proxy: std::net::SocketAddr,
    clients: usize,
    end: tokio::time::Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    use std::sync::atomic::Ordering;
    let clients: Vec<_> = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < end {
                    let r = super::get(proxy, "/", &[]).await;
                    assert!(
                        r.status == 200 || r.status == 500,
                        "{} {}",
                        r.status,
                        r.body
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client task");
    }
    total
}
