//! The command line: `run`, `check`, `demo`, `status`, `shift` and `import`, and the
//! logging they share.

mod demo;
mod import;
mod shift;
mod status;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Move traffic between environments by weight, live"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (for `run`, the default command).
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "config/cutover.toml"
    )]
    config: PathBuf,
    /// Log format; default text on a terminal, json otherwise.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log level (RUST_LOG, when set, takes precedence).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate a config like `nginx -t`, touching no port.
    Check,
    /// A self-contained tour: two built-in upstreams, the proxy on 127.0.0.1:8080,
    /// admin on 127.0.0.1:9900.
    Demo {
        /// Tour autopilot instead: the demo sends its own traffic, the route's ramp
        /// raises k8s step by step, k8s turns slow halfway and the ramp rolls back.
        #[arg(long)]
        autopilot: bool,
    },
    /// Print a running cutover's live state as a table: per route its split, per pool
    /// and backend the state, weights, requests/s, error rate and latency.
    Status {
        /// The admin listener: `http://HOST:PORT`, or `HOST:PORT`.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9900")]
        admin: String,
        /// Print the `/status` document as received (JSON) instead of the table.
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds until Ctrl-C.
        #[arg(long, value_name = "SECS", value_parser = status::parse_every)]
        watch: Option<u64>,
    },
    /// Change a route's split in the config file, keeping its comments and layout:
    /// checked as `check` does, written in one rename; a running cutover picks it up.
    Shift {
        /// The route's name.
        route: String,
        /// New weights, e.g. `ecs=50 k8s=50`; a pool not in the split yet is added.
        #[arg(required = true, value_name = "POOL=WEIGHT")]
        weights: Vec<shift::Weight>,
    },
    /// Write the cutover config equivalent to another proxy's; what cannot be carried
    /// over is listed on stderr (exit status 2).
    #[command(subcommand)]
    Import(Import),
}

#[derive(Debug, Subcommand)]
enum Import {
    /// An nginx config, with its includes: upstreams become pools, servers and
    /// locations with proxy_pass become routes, split_clients a sticky split.
    Nginx {
        /// The nginx config file (nginx.conf, or a file of a conf.d).
        file: PathBuf,
        /// Where to write the cutover config (default: stdout).
        #[arg(short = 'o', long = "out", value_name = "OUT")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs the command line; the process exit code is the result.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        // `check` prints its findings as plain lines unless JSON was asked for by name.
        Command::Check => check(
            &cli.config,
            match cli.log_format {
                Some(LogFormat::Json) => Report::Log,
                _ => Report::Plain,
            },
        ),
        Command::Demo { autopilot } => demo::run(autopilot),
        Command::Status { admin, json, watch } => status::run(&status::Ask { admin, json, watch }),
        Command::Shift { route, weights } => shift::run(&cli.config, &route, &weights),
        Command::Import(Import::Nginx { file, out }) => import::nginx(&file, out.as_ref()),
    }
}

fn init_logging(format: Option<LogFormat>, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Where the findings of a config load go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Plain `file:line:column: error: ...` lines on stderr: `check`'s own output, as
    /// `nginx -t` prints it, for a person or a script to read.
    Plain,
    /// Log events, in the log's format: under `--log-format json` every line on stderr
    /// is JSON, config findings included.
    Log,
}

/// Loads a config, reporting its warnings, or reports every error.
fn load_or_report(path: &Path, report: Report) -> Option<config::Config> {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                report.finding(w, tracing::Level::WARN);
            }
            Some(loaded.config)
        }
        Err(e) => {
            for d in &e.errors {
                report.finding(d, tracing::Level::ERROR);
            }
            None
        }
    }
}

impl Report {
    /// Reports one finding of a config file at `level` (a warning or an error).
    fn finding(self, d: &config::Diagnostic, level: tracing::Level) {
        match self {
            Report::Plain => {
                let word = if level == tracing::Level::ERROR {
                    "error"
                } else {
                    "warning"
                };
                let (file, line, column) = (d.path.display(), d.line, d.column);
                eprintln!("{file}:{line}:{column}: {word}: {}", d.message);
            }
            Report::Log => d.log(level),
        }
    }
}

fn check(path: &Path, report: Report) -> ExitCode {
    let Some(c) = load_or_report(path, report) else {
        return ExitCode::FAILURE;
    };
    let backends: usize = c.pools.iter().map(|p| p.backends.len()).sum();
    println!(
        "{}: ok: {} route(s), {} pool(s), {} backend(s); listening on {}; admin on {}",
        path.display(),
        c.routes.len(),
        c.pools.len(),
        backends,
        c.listen
            .http
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        c.admin,
    );
    ExitCode::SUCCESS
}

fn run(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path, Report::Log) else {
        return ExitCode::FAILURE;
    };
    serve(config, |_| {})
}

/// Builds the runtime the config asks for and serves until SIGTERM or SIGINT.
/// `started` runs once everything is listening.
pub(crate) fn serve(
    config: config::Config,
    started: impl FnOnce(&crate::app::Running),
) -> ExitCode {
    // This runtime is worker 0 (and hosts the admin port, probes and reload); workers
    // 1.. run runtimes of their own on their own threads (`server::workers`). So no
    // runtime needs work stealing: each is a current-thread runtime, with fewer atomics
    // and no cross-thread wake-ups, and `workers = N` serves on N threads. Its blocking
    // threads (a `/metrics` scrape, the last-minute sampler) serve no request: named so.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("cutover-blocking")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Before anything says "ready": from then on a SIGHUP must reload, not kill.
        #[cfg(unix)]
        let sighup = crate::reload::sighup();
        let running = match crate::app::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        #[cfg(unix)]
        let hup = sighup.map(|hup| tokio::spawn(crate::reload::on_sighup(hup, running.reloader())));
        started(&running);
        wait_for_stop().await;
        tracing::info!("stopping: draining in-flight requests");
        #[cfg(unix)]
        if let Some(hup) = hup {
            hup.abort();
        }
        let grace = running.shared.live.load().config.limits.shutdown_grace;
        let drained = running.shutdown(grace).await;
        tracing::info!(cut = drained.cut, "stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
