//! The child as the loop and the stop hook share it: the loop reaps it,
//! the stop hook signals it, waits for the loop to see it gone, and kills it
//! at the kill timeout.

use std::process::{Child, ExitStatus};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::event::{Event, Listener, emit};
use crate::{Exit, Signal, sys};

/// How often the loop looks at the child.
const POLL: Duration = Duration::from_millis(5);

/// The loop's and the stop hook's shared view of the child.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) changed: Condvar,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) child: Option<Child>,
    pub(crate) stopping: Option<i32>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Polls the child until it exits; reaps it and tells the stop hook.
pub(crate) fn wait(shared: &Shared) -> ExitStatus {
    loop {
        let mut state = shared.lock();
        let exited = match state.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status),
            Some(Ok(None)) => None,
            // The child cannot be waited for: treat it as gone.
            Some(Err(_)) | None => Some(ExitStatus::default()),
        };
        if let Some(status) = exited {
            state.child = None;
            shared.changed.notify_all();
            return status;
        }
        drop(state);
        thread::sleep(POLL);
    }
}

/// The stop hook: forward the signal, wait up to the kill timeout (and
/// before the run's deadline), then kill.
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
    let Some(pid) = state.child.as_ref().map(Child::id) else {
        return;
    };
    emit(listener, Event::Stopping { pid, signal });
    if let Err(err) = sys::send_signal(pid, signal.as_raw()) {
        tracing::warn!(%err, pid, "could not forward the signal");
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
        .wait_timeout_while(state, left, |s| s.child.is_some())
        .unwrap_or_else(PoisonError::into_inner)
        .0;
    if let Some(child) = state.child.as_mut() {
        let _ = child.kill();
        emit(listener, Event::Killed { pid });
        let left = exit.deadline().saturating_duration_since(Instant::now());
        drop(
            shared
                .changed
                .wait_timeout_while(state, left, |s| s.child.is_some()),
        );
    }
}
