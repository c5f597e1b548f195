//! A real nginx — Debian's `/usr/sbin/nginx`, which `tests/deps/install` installs when
//! it is missing — run in the foreground as a child of the test, from a config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running nginx; killed (it is a single process) when dropped.
pub struct Nginx {
    child: Child,
    /// The address its config listens on, given to [`Nginx::start`].
    pub addr: SocketAddr,
    /// Its directory: the config's, where its `-e` log and captured stderr go.
    dir: PathBuf,
}

impl Nginx {
    /// The nginx binary: `/usr/sbin/nginx` or `nginx` on PATH, installed by
    /// tests/deps/install first when neither is there.
    pub fn binary() -> &'static Path {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| {
            let find = || {
                let debian = PathBuf::from("/usr/sbin/nginx");
                if debian.is_file() {
                    Some(debian)
                } else {
                    super::prometheus::on_path("nginx")
                }
            };
            if let Some(bin) = find() {
                return bin;
            }
            super::install_deps();
            find().expect("nginx after tests/deps/install")
        })
    }

    /// `nginx -t` on `conf`: whether nginx accepts it, and what it said.
    pub fn test_config(conf: &Path) -> (bool, String) {
        let dir = conf.parent().expect("config directory");
        let out = Command::new(Nginx::binary())
            .arg("-t")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .output()
            .expect("run nginx -t");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    /// Starts nginx on `conf`, which listens on `addr`, and waits until nginx itself
    /// answers there. `Err` with its logs when it exits first (a port taken between
    /// choosing it and nginx binding it, say: the caller may try another).
    pub async fn start(conf: &Path, addr: SocketAddr) -> Result<Nginx, String> {
        let dir = conf.parent().expect("config directory").to_path_buf();
        let stderr = std::fs::File::create(dir.join("nginx.stderr")).expect("nginx stderr file");
        let child = Command::new(Nginx::binary())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(conf)
            // In the foreground, one process: the test owns it and kills it.
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, addr, dir };
        // Polls until an answer comes from nginx, not from whatever else may hold the
        // port; bounded by the deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait().expect("nginx status") {
                return Err(format!("nginx exited ({status}):\n{}", nginx.logs()));
            }
            if answers_as_nginx(addr).await {
                return Ok(nginx);
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "nginx did not answer on {addr} within 10 s:\n{}",
                    nginx.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What nginx wrote to its stderr and error log so far.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("nginx.stderr"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an HTTP request to `addr` gets an answer with `Server: nginx...`.
async fn answers_as_nginx(addr: SocketAddr) -> bool {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: readiness.invalid\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(
            String::from_utf8_lossy(&head)
                .to_ascii_lowercase()
                .contains("\r\nserver: nginx"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ask).await,
        Ok(Some(true))
    )
}
