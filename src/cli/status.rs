//! `cutover status`: reads `/status` from a running cutover's admin listener and prints
//! it as a table ([`render`]), as the JSON it received, or redrawn every few seconds.

mod autopilot;
mod render;
mod table;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::api_client::{BaseUrl, GetError};
use crate::status::Status;

/// Connect, request and the whole answer: the admin listener is local and answers at
/// once, so a few seconds only ever pass when it is stuck.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A `/status` of a few thousand backends is a few MiB; anything far past that is not one.
const MAX_BODY: usize = 64 << 20;

/// What `cutover status` was asked for.
#[derive(Debug)]
pub(super) struct Ask {
    /// The admin listener, `http://HOST:PORT` or `HOST:PORT`.
    pub(super) admin: String,
    /// The document as received instead of the table.
    pub(super) json: bool,
    /// Redraw every this many seconds (at least 1) until Ctrl-C.
    pub(super) watch: Option<u64>,
}

/// Runs `cutover status`: 0 once printed (or when a watch is stopped), 1 when the admin
/// listener cannot be read, with one line on stderr saying why.
pub(super) fn run(ask: &Ask) -> ExitCode {
    let target = match Target::parse(&ask.admin) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let out = Output {
        json: ask.json,
        terminal: std::io::stdout().is_terminal(),
        colour: colour(),
    };
    rt.block_on(async {
        // The first answer decides: an address that never answered is a mistake to
        // report, not something to watch.
        let first = match out.frame(&target).await {
            Ok(text) => text,
            Err(e) => return fail(&e),
        };
        let Some(every) = ask.watch else {
            return print(&first);
        };
        watch(&target, &out, first, Duration::from_secs(every)).await
    })
}

/// `--watch SECS`: a whole number of seconds, at least one (0 would redraw in a busy
/// loop, hammering the admin listener).
pub(super) fn parse_every(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the interval must be at least 1 second".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number of seconds")),
    }
}

/// Redraws until Ctrl-C. A failure after the first answer (the proxy restarting) is
/// shown and the next round tries again.
async fn watch(target: &Target, out: &Output, first: String, every: Duration) -> ExitCode {
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stop);
    // A steady beat, however long a fetch took; the first tick is now.
    let mut beat = tokio::time::interval(every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    let mut frame = Ok(first);
    loop {
        let printed = match &frame {
            Ok(text) if out.terminal => print_raw(&format!("\x1b[H\x1b[2J{text}")),
            Ok(text) => print_raw(&format!("{text}\n")),
            Err(e) => {
                if out.terminal {
                    let _ = print_raw("\x1b[H\x1b[2J");
                }
                eprintln!("cutover status: {e}");
                Ok(())
            }
        };
        if let Err(code) = printed {
            return code;
        }
        tokio::select! {
            _ = &mut stop => return ExitCode::SUCCESS,
            _ = beat.tick() => {}
        }
        frame = tokio::select! {
            _ = &mut stop => return ExitCode::SUCCESS,
            f = out.frame(target) => f,
        };
    }
}

/// Colour only for a person at a terminal who has not asked for none
/// (<https://no-color.org>: `NO_COLOR` set and not empty).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cutover status: {message}");
    ExitCode::FAILURE
}

fn print(text: &str) -> ExitCode {
    match print_raw(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends the command quietly.
fn print_raw(text: &str) -> Result<(), ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => Err(fail(&format!("cannot write to stdout: {e}"))),
    }
}

// === impl Output ===

/// How a fetched document is shown.
struct Output {
    json: bool,
    terminal: bool,
    colour: bool,
}

impl Output {
    /// One fetch, as the text to print or the one-line reason it failed.
    async fn frame(&self, target: &Target) -> Result<String, String> {
        let body = target.fetch().await?;
        let unreadable = |e: serde_json::Error| {
            format!(
                "the admin listener at {} answered /status with something else: {e}",
                target.base
            )
        };
        if self.json {
            // As received: parsed only to be sure it is JSON at all.
            serde_json::from_slice::<serde_json::Value>(&body).map_err(unreadable)?;
            let text = String::from_utf8_lossy(&body);
            return Ok(format!("{}\n", text.trim_end()));
        }
        let status: Status = serde_json::from_slice(&body).map_err(unreadable)?;
        Ok(render::render(&status, self.colour))
    }
}

// === impl Target ===

/// Where `/status` is read from.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    base: BaseUrl,
}

impl Target {
    /// `http://HOST[:PORT][/PREFIX]`, or the same without the scheme.
    fn parse(admin: &str) -> Result<Target, String> {
        let admin = admin.trim();
        let full = if admin.contains("://") {
            admin.to_owned()
        } else {
            format!("http://{admin}")
        };
        BaseUrl::parse(&full)
            .map(|base| Target { base })
            .map_err(|why| format!("--admin {admin:?}: {why}"))
    }

    /// GET `/status`: its body when the answer is a 200.
    async fn fetch(&self) -> Result<Bytes, String> {
        let url = &self.base;
        let unreachable = |why: String| format!("cannot reach the admin listener at {url}: {why}");
        let got = match tokio::time::timeout(TIMEOUT, url.get("/status", MAX_BODY)).await {
            Ok(got) => got,
            Err(_) => {
                let secs = TIMEOUT.as_secs();
                return Err(unreachable(format!("no answer within {secs}s")));
            }
        };
        match got {
            Ok((StatusCode::OK, body)) => Ok(body),
            Ok((status, _)) => Err(format!(
                "the admin listener at {url} answered {status} to GET {}/status",
                url.prefix
            )),
            Err(GetError::Unreachable(why)) => Err(unreachable(why)),
            Err(GetError::TooLarge) => Err(unreachable(format!(
                "reading its answer: over {} MiB",
                MAX_BODY >> 20
            ))),
            Err(GetError::Broken(why)) => Err(unreachable(format!("reading its answer: {why}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_with_and_without_scheme() {
        let t = Target::parse("127.0.0.1:9900").expect("no scheme").base;
        let with_scheme = Target::parse("http://127.0.0.1:9900/").expect("scheme");
        assert_eq!(t, with_scheme.base);
        assert_eq!(t.to_string(), "http://127.0.0.1:9900");
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("127.0.0.1:9900", "")
        );
        let v6 = Target::parse("http://[::1]:9900").expect("IPv6").base;
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:9900")
        );
        // The host's text inside the port is not where the port starts.
        let zero = Target::parse("0:9900").expect("host 0").base;
        assert_eq!(zero.authority, "0:9900");
        let prefixed = Target::parse("http://admin.local/cutover/")
            .expect("prefix")
            .base;
        assert_eq!(prefixed.authority, "admin.local:80");
        assert_eq!(prefixed.prefix, "/cutover");
    }

    #[test]
    fn admin_urls_that_cannot_work_are_refused() {
        for bad in [
            "https://127.0.0.1:9900",
            "",
            "http://",
            "127.0.0.1:notaport",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
