//! The workers as the loop and the stop hook share them: the loop starts
//! and reaps them; the stop hook signals every one, waits for the loop to
//! see them gone, and kills the process group of any left at the kill
//! timeout.

use std::process::Child;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::event::{Event, Listener, emit};
use crate::{Exit, Signal, sys};

/// The loop's and the stop hook's shared view of the workers.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) changed: Condvar,
}

#[derive(Default)]
pub(crate) struct State {
    /// Every worker started and not reaped yet.
    pub(crate) children: Vec<Child>,
    /// Set by the stop hook: the signal that stops the supervisor (0 for
    /// another trigger). No worker starts once it is set.
    pub(crate) stopping: Option<i32>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Kills `child` and every process of its group (it leads one): a
/// worker's own children go with it.
pub(crate) fn kill_tree(child: &mut Child) {
    let _ = sys::kill_process_group(child.id());
    let _ = child.kill();
}

/// The stop hook: forward the signal to every worker, wait up to the kill
/// timeout (and before the run's deadline), then kill what is left.
pub(crate) fn stop(
    shared: &Shared,
    listener: Option<&Listener>,
    kill_timeout: Duration,
    exit: &Exit,
) {
    let signal = exit.signal().unwrap_or_else(Signal::terminate);
    let mut state = shared.lock();
    state.stopping = Some(exit.signal().map_or(0, Signal::as_raw));
    shared.changed.notify_all();
    if state.children.is_empty() {
        return;
    }
    for child in &state.children {
        let pid = child.id();
        emit(listener, Event::Stopping { pid, signal });
        if let Err(err) = sys::send_signal(pid, signal.as_raw()) {
            tracing::warn!(%err, pid, "could not forward the signal");
        }
    }
    // Kill in time for the supervisor's own deadline.
    let margin = Duration::from_millis(250);
    let kill_at = (Instant::now() + kill_timeout).min(
        exit.deadline()
            .checked_sub(margin)
            .unwrap_or(exit.deadline()),
    );
    let left = kill_at.saturating_duration_since(Instant::now());
    state = shared
        .changed
        .wait_timeout_while(state, left, |s| !s.children.is_empty())
        .unwrap_or_else(PoisonError::into_inner)
        .0;
    for child in &mut state.children {
        kill_tree(child);
        emit(listener, Event::Killed { pid: child.id() });
    }
    let left = exit.deadline().saturating_duration_since(Instant::now());
    drop(
        shared
            .changed
            .wait_timeout_while(state, left, |s| !s.children.is_empty()),
    );
}
