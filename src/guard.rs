//! [`ExitGuard`]: application code holding the exit open while it finishes
//! its own shutdown work.

use std::fmt;
use std::panic::Location;

use crate::registry::{self, Site, registry};

/// Holds the exit open until the returned guard is dropped, so that code
/// of the application's own — `main` after its server returned, a worker
/// finishing its batch — can finish once [`exiting`](crate::exiting) fired.
///
/// While any guard is alive, a run does not go past [`Phase::Drain`](crate::Phase::Drain)
/// and does not end: hooks of the later phases start, and the process
/// exits, once every guard is released. The drain's time bounds it
/// ([`Builder::drain_timeout`](crate::Builder::drain_timeout), 3/5 of the
/// deadline by default): then the guards still alive hold nothing, a line
/// on stderr names where each was taken, and the later phases run.
///
/// ```no_run
/// # async fn serve() {}
/// # async fn close_the_pool() {}
/// #[tokio::main]
/// async fn main() {
///     let _running = exit_hook::hold_exit(); // taken before the shutdown can start
///     tokio::select! {
///         _ = serve() => {}                   // say, axum::serve(..).with_graceful_shutdown(exit_hook::exiting())
///         _ = exit_hook::exiting() => {}
///     }
///     close_the_pool().await;                 // on SIGTERM this still runs...
/// } // ...and the process exits with 143 once the guard is dropped here
/// ```
///
/// A guard is cheap (a lock and a slot, about as much as [`add`](crate::add)),
/// `Send` and `Sync`, and works the same from sync and async code.
///
/// - **Taken during a run**, a guard holds it too, until the run has ended:
///   a guard taken once the run is over (its last hook returned and no guard
///   was alive) holds nothing; [`is_holding`](ExitGuard::is_holding) says so.
/// - **A second signal** still ends the process at once, guards or not; so
///   does a hook calling [`exit`](crate::exit).
/// - **A panic** that unwinds drops the guards its thread held, as any value.
///   Under `panic = "abort"` the panicking thread never gets back to its
///   guards, so they hold nothing from then on.
/// - **`main` returning** drops its own guards first; guards held by other
///   threads hold the run that `main`'s return starts, as for any trigger.
/// - **A thread that calls [`exit`](crate::exit)** never gets back to the
///   guards it took (nothing is dropped on the way out): they hold nothing
///   from then on, and the run goes on to the later phases at once. (A
///   guard it took and moved to another thread is let go of too: release
///   it there, or have that thread end the process.) The same holds for
///   `std::process::exit` from a thread other than `main`'s (on Linux). On
///   `main`'s own thread it cannot be told from `main` returning, which
///   must wait for guards it moved to its threads: there the drain's time
///   bounds the wait.
/// - **In a child forked without exec**, the guards taken before the fork
///   hold nothing: the threads that held them are not in the child.
///
/// Like [`add`](crate::add), the first guard installs the handlers with the
/// defaults if nothing is installed yet.
///
/// # Panics
///
/// If installing the handlers fails; install with
/// [`Builder::install`](crate::Builder::install) first to handle the error.
#[track_caller]
#[must_use = "the exit is held only while the guard is alive: bind it, `let _running = ...`"]
pub fn hold_exit() -> ExitGuard {
    if let Err(err) = crate::install::ensure_installed() {
        panic!("exit_hook: {err}");
    }
    let site = Location::caller();
    let slot = registry().hold(site);
    ExitGuard { slot, site }
}

/// Holds the exit open while it is alive; see [`hold_exit`].
#[must_use = "the exit is held only while the guard is alive"]
pub struct ExitGuard {
    /// Its slot in the registry; `None` when it holds nothing.
    slot: Option<usize>,
    site: Site,
}

impl ExitGuard {
    /// Releases the guard; the same as dropping it, said out loud.
    ///
    /// ```
    /// let guard = exit_hook::hold_exit();
    /// // ... finish the work ...
    /// guard.release();
    /// ```
    pub fn release(self) {}

    /// Whether this guard holds the exit: `false` only for a guard taken
    /// after the run was over.
    ///
    /// ```
    /// assert!(exit_hook::hold_exit().is_holding());
    /// ```
    pub fn is_holding(&self) -> bool {
        self.slot.is_some()
    }

    /// Where the guard was taken; the deadline report names it.
    pub fn location(&self) -> &'static Location<'static> {
        self.site
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            registry().release(slot);
            registry::changed();
        }
    }
}

impl fmt::Debug for ExitGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitGuard")
            .field("location", &format_args!("{}", self.site))
            .field("holding", &self.is_holding())
            .finish()
    }
}
