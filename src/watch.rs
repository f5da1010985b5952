//! Application code watching for the run: [`is_exiting`] for readiness
//! probes, [`exiting`] for a server's graceful shutdown.

use crate::install;
use crate::state::STATE;

/// Whether the process has started ending: a run of the hooks has begun
/// (or is over). Cheap: one atomic load. Readiness probes use it.
///
/// ```
/// assert!(!exit_hook::is_exiting());
/// ```
pub fn is_exiting() -> bool {
    STATE.is_exiting()
}

/// A future that resolves when a run of the hooks starts, for
/// `axum::serve(..).with_graceful_shutdown(exit_hook::exiting())` and
/// the like. It resolves at once if a run has started already.
///
/// Like [`add`](crate::add), it installs the handlers with the defaults if
/// nothing is installed yet, so SIGTERM starts a run and this future
/// resolves. **It does not keep the process alive**: the process exits as
/// soon as the run is over, and a run with nothing to wait for is over in
/// a millisecond. Whatever must finish after it fired — the server's
/// drain, `main`'s own cleanup — must be awaited by a hook (registered in
/// [`Phase::Drain`](crate::Phase::Drain)) or held open with an
/// [`ExitGuard`](crate::hold_exit):
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn app(listener: tokio::net::TcpListener, router: axum::Router) {
/// let _running = exit_hook::hold_exit();
/// axum::serve(listener, router)
///     .with_graceful_shutdown(exit_hook::exiting())
///     .await
///     .unwrap(); // every request in flight answered
/// # }
/// ```
///
/// Waiters are woken from the crate's own thread, so a task awaiting this
/// future runs on any runtime flavour, even when the thread that triggered
/// the run was a worker of that runtime and is now blocked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let serving = tokio::time::sleep(Duration::from_millis(10)); // say, axum::serve(..)
/// tokio::select! {
///     _ = exit_hook::exiting() => println!("shutting down"),
///     _ = serving => println!("served until done"),
/// }
/// # }
/// ```
///
/// # Panics
///
/// If installing the handlers fails, as [`add`](crate::add) does; install
/// with [`Builder::install`](crate::Builder::install) first to handle the error.
pub fn exiting() -> impl Future<Output = ()> + Send + 'static {
    if let Err(err) = install::ensure_installed() {
        panic!("exit_hook: {err}");
    }
    STATE.started()
}
