//! A graceful HTTP server: on SIGTERM or Ctrl+C it stops taking traffic
//! without dropping a request in flight, then exits with 143 or 130.
//!
//! ```text
//! cargo run --example http_server
//! curl 'localhost:3000/slow?ms=5000' &   # a request in flight
//! kill -TERM <pid>                        # or press Ctrl+C in the server's terminal
//! ```
//!
//! The shutdown is three hooks, each registered where its resource is made,
//! and run one [`Phase`] after another: the server drains
//! ([`Phase::Drain`]), then the database pool closes ([`Phase::Close`]),
//! then the access log is flushed ([`Phase::Flush`]). The database is a
//! real `sqlx` pool on a SQLite file (created at start: no server to
//! install); the access log is written by `tracing-appender`'s non-blocking
//! writer, whose `WorkerGuard` is dropped last. The log shows each step
//! with its time: `/readyz` turns 503, the drain delay passes, the listener
//! closes ("listener closed": new connections are refused), the request in
//! flight completes (curl prints `slept 5000 ms, visit N`), the pool
//! closes, the access log is flushed, and the process exits with 143
//! (`echo $?`).
//!
//! Routes: `/` (hello), `/slow?ms=N` (N ms of work, then a write and a
//! query through the pool), `/healthz` (200 while serving), `/readyz` (200
//! while serving, 503 once shutdown has started).
//!
//! Under systemd socket activation, `systemfd` or `keepalive --listen`, the
//! server takes its listener from `LISTEN_FDS` (with the `listenfd` crate)
//! instead of binding one, and says `READY=1` (with `sd-notify`) when it
//! accepts; it is told `STOPPING=1` by `exit_hook` when it stops.
//!
//! Environment: `PORT` (default 3000; 0 picks a free port), `DRAIN_DELAY_MS`
//! (default 0: how long to keep accepting after `/readyz` turns 503, so load
//! balancers notice first), `SHUTDOWN_TIMEOUT_MS` (default 10000),
//! `ACCESS_LOG` (default `exit_hook_access.log` in the temp directory),
//! `DATABASE` (default `exit_hook_example.db` in the temp directory),
//! `RUST_LOG` (default `info,exit_hook=debug`).

use std::fs::File;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use exit_hook::Phase;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = env_or("PORT", 3000);
    let drain = Duration::from_millis(env_or("DRAIN_DELAY_MS", 0));
    let timeout = Duration::from_millis(env_or("SHUTDOWN_TIMEOUT_MS", 10_000));
    let log_path = env_path("ACCESS_LOG", "exit_hook_access.log");
    let db_path = env_path("DATABASE", "exit_hook_example.db");

    // The access log: made first, flushed last, so it records every answer.
    // Its lines are events of the `ACCESS` target, written to the file by
    // tracing-appender's thread. Not lossy: when its queue is full, a
    // request waits for room instead of its line being dropped (the default).
    let (log_writer, log_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(File::create(&log_path)?);
    let log = Arc::new(AccessLog::new(log_path));
    init_tracing(log_writer)?;

    // The whole shutdown within `timeout`: first the drain delay (still
    // accepting, `/readyz` already 503, for load balancers to notice), then
    // the drain, at most 3/5 of the timeout in all, leaving the rest to
    // close the pool and flush the log even if a request never finishes.
    exit_hook::Builder::new()
        .timeout(timeout)
        .drain_delay(drain)
        .install()?;

    // Dropping the guard waits until the writer's thread has written out
    // every line queued before it.
    exit_hook::in_phase(Phase::Flush).add({
        let log = Arc::clone(&log);
        move |_| {
            drop(log_guard);
            info!(lines = log.lines(), path = %log.path.display(), "access log flushed");
        }
    });

    // The database pool: closed once no request can use it any more.
    let pool = connect(&db_path).await?;
    exit_hook::in_phase(Phase::Close).add_async({
        let pool = pool.clone();
        move |_| close(pool)
    });

    // The server: accepts until the drain starts (after the drain delay),
    // then answers every request in flight. If one never finishes, the
    // drain's time runs out and the run goes on, so the pool and the log
    // are still closed in time.
    let app = App {
        log,
        pool,
        in_flight: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(|| async { "hello from exit_hook\n" }))
        .route("/slow", get(slow))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .with_state(app.clone());
    // Passed in by systemd socket activation, systemfd or keepalive
    // (`LISTEN_FDS`), or bound here.
    let listener = match listenfd::ListenFd::from_env().take_tcp_listener(0)? {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)?
        }
        None => tokio::net::TcpListener::bind(("127.0.0.1", port)).await?,
    };
    info!(access_log = %app.log.path.display(), "listening on http://{}", listener.local_addr()?);
    let (accepting, accepting_rx) = watch::channel(true);
    let accepting_rx_for_shutdown = accepting_rx.clone();
    let listener = LoggedListener {
        listener,
        accepting: accepting_rx,
    };
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stop_accepting(app.clone(), accepting_rx_for_shutdown))
            .into_future(),
    );
    // The listener queues connections from here on: tell the service
    // manager (systemd's Type=notify, keepalive --wait-ready), if any.
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    exit_hook::in_phase(Phase::Drain).add_async(move |_| async move {
        let started = Instant::now();
        let _ = accepting.send(false);
        match server.await {
            Ok(Ok(())) => {
                info!(took = ?started.elapsed(), "every request in flight was answered")
            }
            Ok(Err(err)) => warn!(%err, "the server failed"),
            Err(err) => warn!(%err, "the server task failed"),
        }
    });

    // Serve until the shutdown run ends the process.
    std::future::pending::<()>().await;
    Ok(())
}

/// How long a connection accepted just before the server stopped accepting
/// has to send its request: axum's graceful shutdown closes a connection
/// that has not, and its client would see it closed unanswered.
const ACCEPT_GRACE: Duration = Duration::from_millis(100);

/// Resolves when axum should shut down: once the drain hook stopped the
/// listener (after the drain delay, during which `/readyz` answered 503
/// and keep-alive clients were told to reconnect) and [`ACCEPT_GRACE`] has
/// passed. Connections that arrive from then on wait in the socket's
/// queue: under keepalive, another worker takes them.
async fn stop_accepting(app: App, mut accepting: watch::Receiver<bool>) {
    exit_hook::exiting().await;
    info!("shutdown started: /readyz answers 503");
    let _ = accepting.wait_for(|accepting| !accepting).await;
    info!(
        in_flight = app.in_flight.load(Ordering::SeqCst),
        "stopped accepting; closing the listener"
    );
    tokio::time::sleep(ACCEPT_GRACE).await;
}

/// The listener: it stops handing out connections when told, and says when
/// it is closed. axum drops it once the shutdown future resolved: from then
/// on new connections are refused (unless another process holds the socket).
struct LoggedListener {
    listener: tokio::net::TcpListener,
    accepting: watch::Receiver<bool>,
}

impl axum::serve::Listener for LoggedListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (listener, accepting) = (&mut self.listener, &mut self.accepting);
        let stopped = async move {
            let _ = accepting.wait_for(|accepting| !accepting).await.map(drop);
        };
        tokio::select! {
            accepted = axum::serve::Listener::accept(listener) => accepted,
            () = stopped => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl Drop for LoggedListener {
    fn drop(&mut self) {
        info!("listener closed: new connections are refused");
    }
}

#[derive(Clone)]
struct App {
    log: Arc<AccessLog>,
    pool: SqlitePool,
    in_flight: Arc<AtomicUsize>,
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

/// N ms of work, then a write and a query through the pool: a request in
/// flight when the pool closes would fail here with 503.
async fn slow(
    State(app): State<App>,
    Query(Slow { ms }): Query<Slow>,
) -> Result<String, (StatusCode, String)> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let unavailable = |err: sqlx::Error| (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n"));
    sqlx::query("INSERT INTO visits (route, ms) VALUES ('/slow', ?)")
        .bind(i64::try_from(ms).unwrap_or(i64::MAX))
        .execute(&app.pool)
        .await
        .map_err(unavailable)?;
    let visits: i64 = sqlx::query_scalar("SELECT count(*) FROM visits")
        .fetch_one(&app.pool)
        .await
        .map_err(unavailable)?;
    Ok(format!("slept {ms} ms, visit {visits}\n"))
}

/// Connections in the pool.
const POOL_SIZE: u32 = 8;

/// Opens (and creates, the first time) the SQLite database at `path`.
/// Workers started together (`keepalive --workers 2`) share it: the first
/// to create it makes the others' first statements fail at once with
/// "database is locked" (SQLite does not wait while a file changes its
/// journal mode), so the open is tried again for a while.
async fn connect(path: &std::path::Path) -> Result<SqlitePool, sqlx::Error> {
    let mut tries = 0;
    loop {
        match try_connect(path).await {
            Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("5") && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

async fn try_connect(path: &std::path::Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Readers do not wait for the writer.
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS visits \
         (id INTEGER PRIMARY KEY, route TEXT NOT NULL, ms INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await?;
    info!(database = %path.display(), "database pool open");
    Ok(pool)
}

/// Closes the pool once every connection is back in it: `close` refuses new
/// work, closes the idle connections one by one, and the last to close folds
/// SQLite's write-ahead log into the database and removes it. In sqlx 0.8 a
/// finished request's connection goes back to the pool on a task of its own,
/// and `close` can return while one is still on its way (sqlx#3217): that one
/// would stay open, and the log with it. After the drain no request borrows a
/// connection, so waiting for them all to be back takes moments.
async fn close(pool: SqlitePool) {
    while pool.num_idle() < pool.size() as usize {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    pool.close().await;
    info!("database pool closed");
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
    let mut response = next.run(request).await;
    if exit_hook::is_exiting() {
        // During the drain delay, a keep-alive client is told to reconnect:
        // its next connection goes to another worker (under keepalive) or
        // is refused once the listener closes, instead of its next request
        // racing the close of an idle connection.
        let close = axum::http::HeaderValue::from_static("close");
        response
            .headers_mut()
            .insert(axum::http::header::CONNECTION, close);
    }
    app.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = response.status().as_u16();
    app.log.record(format_args!(
        "{method} {uri} {status} {}ms",
        started.elapsed().as_millis()
    ));
    info!(%method, %uri, status, took = ?started.elapsed(), "request finished");
    response
}

/// The target of access-log events: the access-log layer takes them, the
/// console layer leaves them out.
const ACCESS: &str = "access";

/// The access log: one line per answered request, as an event of the
/// [`ACCESS`] target.
struct AccessLog {
    path: PathBuf,
    lines: AtomicUsize,
}

impl AccessLog {
    fn new(path: PathBuf) -> Self {
        AccessLog {
            path,
            lines: AtomicUsize::new(0),
        }
    }

    fn record(&self, line: std::fmt::Arguments<'_>) {
        info!(target: ACCESS, "{line}");
        self.lines.fetch_add(1, Ordering::SeqCst);
    }

    /// How many lines were recorded.
    fn lines(&self) -> usize {
        self.lines.load(Ordering::SeqCst)
    }
}

/// Events to stdout, filtered by `RUST_LOG`, and the access log's events to
/// its writer.
fn init_tracing(access_log: NonBlocking) -> Result<(), tracing_subscriber::filter::ParseError> {
    let console = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,exit_hook=debug".into())
        .add_directive(format!("{ACCESS}=off").parse()?);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(io::stdout().is_terminal())
                .with_filter(console),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(access_log)
                .with_ansi(false)
                .with_target(false)
                .with_filter(Targets::new().with_target(ACCESS, tracing::Level::INFO)),
        )
        .init();
    Ok(())
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(default))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
