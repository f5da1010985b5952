//! A graceful HTTP server: on SIGTERM or Ctrl+C it stops taking traffic
//! without dropping a request in flight, then exits with 143 or 130.
//!
//! ```text
//! cargo run --example http_server
//! curl 'localhost:3000/slow?ms=5000' &   # a request in flight
//! kill -TERM <pid>                        # or press Ctrl+C in the server's terminal
//! ```
//!
//! The log shows each step with its time: `/readyz` turns 503, the drain
//! delay passes, the listener closes (new connections are refused), the
//! request in flight completes (curl prints `slept 5000 ms`), the access log
//! is flushed, and the process exits with 143 (`echo $?`).
//!
//! Routes: `/` (hello), `/slow?ms=N` (N ms of work), `/healthz` (200 while
//! serving), `/readyz` (200 while serving, 503 once shutdown has started).
//!
//! Environment: `PORT` (default 3000; 0 picks a free port), `DRAIN_DELAY_MS`
//! (default 0: how long to keep accepting after `/readyz` turns 503, so load
//! balancers notice first), `SHUTDOWN_TIMEOUT_MS` (default 10000),
//! `ACCESS_LOG` (default `exit_hook_access.log` in the temp directory),
//! `RUST_LOG` (default `info,exit_hook=debug`).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tracing::{info, warn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,exit_hook=debug".into()),
        )
        .with_ansi(io::stdout().is_terminal())
        .init();
    let port: u16 = env_or("PORT", 3000);
    let drain = Duration::from_millis(env_or("DRAIN_DELAY_MS", 0));
    let timeout = Duration::from_millis(env_or("SHUTDOWN_TIMEOUT_MS", 10_000));
    let log_path = std::env::var_os("ACCESS_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("exit_hook_access.log"));

    exit_hook::Builder::new().timeout(timeout).install()?;

    let app = App {
        log: Arc::new(AccessLog::create(log_path)?),
        in_flight: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(|| async { "hello from exit_hook\n" }))
        .route("/slow", get(slow))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(app.clone(), log_request));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    info!(access_log = %app.log.path.display(), "listening on http://{}", listener.local_addr()?);

    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stop_accepting(drain, app.clone()))
            .into_future(),
    );

    // Runs once, on SIGTERM or Ctrl+C: wait for the requests in flight, then
    // close the access log. It gives up on stragglers 500 ms before the
    // deadline so that the log is still flushed.
    exit_hook::add_async(move |exit| async move {
        let started = Instant::now();
        let give_up = exit
            .deadline()
            .checked_sub(Duration::from_millis(500))
            .unwrap_or(exit.deadline());
        match tokio::time::timeout_at(give_up.into(), server).await {
            Ok(Ok(Ok(()))) => {
                info!(took = ?started.elapsed(), "every request in flight was answered")
            }
            Ok(Ok(Err(err))) => warn!(%err, "the server failed"),
            Ok(Err(err)) => warn!(%err, "the server task failed"),
            Err(_) => warn!(
                in_flight = app.in_flight.load(Ordering::SeqCst),
                "gave up waiting for requests in flight"
            ),
        }
        match app.log.close() {
            Ok(lines) => info!(lines, path = %app.log.path.display(), "access log flushed"),
            Err(err) => warn!(%err, "could not flush the access log"),
        }
    });

    // Serve until the shutdown run ends the process.
    std::future::pending::<()>().await;
    Ok(())
}

/// Resolves when the listener should close: once shutdown has started and
/// the drain delay has passed. Until then `/readyz` already answers 503.
async fn stop_accepting(drain: Duration, app: App) {
    exit_hook::exiting().await;
    info!(?drain, "shutdown started: /readyz answers 503");
    tokio::time::sleep(drain).await;
    info!(
        in_flight = app.in_flight.load(Ordering::SeqCst),
        "closing the listener"
    );
}

#[derive(Clone)]
struct App {
    log: Arc<AccessLog>,
    in_flight: Arc<AtomicUsize>,
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

async fn slow(Query(Slow { ms }): Query<Slow>) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}

async fn readyz() -> (StatusCode, &'static str) {
    if exit_hook::is_exiting() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Counts the requests in flight and writes one access-log line per answer.
async fn log_request(State(app): State<App>, request: Request, next: Next) -> Response {
    let (method, uri, started) = (
        request.method().clone(),
        request.uri().clone(),
        Instant::now(),
    );
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    info!(%method, %uri, "request started");
    let response = next.run(request).await;
    app.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = response.status().as_u16();
    app.log.record(format_args!(
        "{method} {uri} {status} {}ms",
        started.elapsed().as_millis()
    ));
    info!(%method, %uri, status, took = ?started.elapsed(), "request finished");
    response
}

/// The access log: one line per answered request, kept in memory until
/// [`close`](AccessLog::close) writes it out, as a buffered log would be.
struct AccessLog {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
    lines: AtomicUsize,
}

impl AccessLog {
    fn create(path: PathBuf) -> io::Result<Self> {
        let file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Ok(AccessLog {
            path,
            file: Mutex::new(file),
            lines: AtomicUsize::new(0),
        })
    }

    fn record(&self, line: std::fmt::Arguments<'_>) {
        let mut file = self.file.lock().unwrap();
        if writeln!(file, "{line}").is_ok() {
            self.lines.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Flushes the log; returns how many lines it holds.
    fn close(&self) -> io::Result<usize> {
        self.file.lock().unwrap().flush()?;
        Ok(self.lines.load(Ordering::SeqCst))
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
