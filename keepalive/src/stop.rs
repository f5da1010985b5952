//! The workers as the loop and the stop hook share them: the loop starts
//! and reaps them; the stop hook signals every one **once** — a worker a
//! reload already asked to stop is not asked again, since a second SIGTERM
//! means "force the exit" to an `exit_hook` program — waits for the loop to
//! see them and what they left behind gone, and kills what is left at the
//! kill timeout. (The flush phase then waits for the workers' output to
//! be copied out.)

use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::event::{Event, Listener, emit};
use super::orphans::Stragglers;
use super::os::Bell;
use super::output::Copiers;
use exit_hook::Signal;

use super::os;

/// The loop's and the stop hook's shared view of the workers.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) changed: Condvar,
    /// Wakes the loop.
    pub(crate) bell: Bell,
    /// The threads copying the workers' output.
    pub(crate) copiers: Arc<Copiers>,
    /// One app of a [`Group`](crate::Group) of several: a stop asked of
    /// its control socket stops it alone.
    #[cfg_attr(not(unix), allow(dead_code, reason = "no control socket"))]
    pub(crate) in_group: bool,
}

#[derive(Default)]
pub(crate) struct State {
    /// Every worker started and not reaped yet.
    pub(crate) children: Vec<Started>,
    /// Workers reaped (by the loop's one reaper, under this lock) and not
    /// yet seen by their cluster's turn: not signalled any more, not gone
    /// yet (what they left is not counted before the turn).
    pub(crate) exited: Vec<(Started, std::process::ExitStatus)>,
    /// The cluster ended (in a group, the others go on): nothing takes a
    /// request for it any more.
    pub(crate) ended: bool,
    /// What ended workers left, being stopped.
    pub(crate) stragglers: Stragglers,
    /// A stop of this app alone, asked of its control socket or of its
    /// group's handle (in a group), for the loop to take.
    pub(crate) stop_asked: bool,
    /// Set by the stop hook (or a forced stop): no worker starts once it
    /// is set.
    pub(crate) stopping: Option<Stopping>,
    /// When the stop hook kills what is left: nothing is given longer.
    pub(crate) kill_by: Option<Instant>,
    /// The Unix sockets the supervisor bound (its listeners, its control
    /// socket): the stop hook removes them, as the process ends before
    /// they are dropped.
    #[cfg(unix)]
    pub(crate) socket_files: Vec<super::listen::SocketFile>,
    /// The workers' notification directory, removed by the stop hook too.
    #[cfg(unix)]
    pub(crate) notify_dir: Option<std::path::PathBuf>,
    /// The workers as the loop last saw them, for `status`.
    pub(crate) view: Vec<super::protocol::Seen>,
    /// How the last worker to exit ended, as a shell says it (its code,
    /// or 128 + its signal), for [`exit_as_workers`](crate::Supervisor::exit_as_workers).
    pub(crate) last_status: Option<i32>,
    /// A reload asked for by the control socket, for the loop to take.
    pub(crate) reload_asked: bool,
    /// A restart asked for by the control socket, for the loop to take.
    pub(crate) restart_asked: bool,
    /// Requests that wait for their outcome, for the loop to take: the
    /// outcome is sent when the work is done (the sender dropped if the
    /// loop ends first).
    pub(crate) commands: Vec<(
        crate::machine::Command,
        std::sync::mpsc::Sender<crate::machine::Outcome>,
    )>,
    /// Workers are being replaced (a reload, a restart): the health check
    /// counts nothing meanwhile.
    pub(crate) replacing: bool,
    /// What the health check found, for the loop to act on.
    pub(crate) unhealthy: Option<String>,
}

/// The supervisor is stopping: by what, and with what its workers are
/// asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopping {
    /// The signal that stops the supervisor; `None` for another trigger
    /// (a panic, a normal exit).
    pub(crate) by: Option<Signal>,
    /// The signal that asks a worker to stop (what ended workers left
    /// gets it too).
    pub(crate) signal: Signal,
}

/// A worker process, not reaped yet.
pub(crate) struct Started {
    pub(crate) child: Child,
    /// It was sent its stop signal (by a reload or the stop hook).
    pub(crate) signalled: bool,
    /// It said `EXTEND_TIMEOUT_USEC=`: the stop hook kills it no sooner
    /// than this (nor later than its own deadline allows).
    pub(crate) extended_until: Option<Instant>,
}

impl Shared {
    pub(crate) fn new(bell: Bell, in_group: bool) -> Shared {
        Shared {
            state: Mutex::default(),
            changed: Condvar::new(),
            bell,
            copiers: Arc::default(),
            in_group,
        }
    }

    /// Asks the loop to stop this app alone (in a group), and waits until
    /// it has ended: its workers stopped, and gone.
    pub(crate) fn stop_alone(&self) {
        let mut state = self.lock();
        if !state.ended {
            state.stop_asked = true;
            self.bell.ring();
        }
        drop(
            self.changed
                .wait_while(state, |state| !state.ended)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// When something asked to stop now must be killed: after the kill
    /// timeout, and no later than the stop hook's own kill.
    pub(crate) fn kill_at(&self, kill_timeout: Duration) -> Instant {
        let at = os::later(Instant::now(), kill_timeout);
        self.kill_by.map_or(at, |by| at.min(by))
    }

    /// Whether the workers and all they left are gone.
    pub(crate) fn all_gone(&self) -> bool {
        self.children.is_empty() && self.exited.is_empty() && self.stragglers.is_empty()
    }
}

/// Kills `child` and every process of its group (it leads one): a
/// worker's own children go with it.
pub(crate) fn kill_tree(child: &mut Child) {
    let _ = os::signal_group(child.id(), os::KILL);
    let _ = child.kill();
}

/// The stop hook: forward the signal that stops the supervisor (`by`;
/// SIGTERM for another trigger) to every worker not signalled yet, wait
/// up to the kill timeout (and before `deadline`, the run's), then kill
/// what is left.
pub(crate) fn stop(
    shared: &Shared,
    listener: Option<&Listener>,
    kill_timeout: Duration,
    kill_signal: Option<Signal>,
    by: Option<Signal>,
    deadline: Instant,
) {
    let signal = kill_signal.unwrap_or_else(|| by.unwrap_or_else(Signal::terminate));
    // Kill in time for the supervisor's own deadline.
    let margin = Duration::from_millis(250);
    let kill_at = os::later(Instant::now(), kill_timeout)
        .min(deadline.checked_sub(margin).unwrap_or(deadline));
    let mut state = shared.lock();
    // A forced stop (SIGQUIT) set these first: it stands.
    let kill_at = state.kill_by.map_or(kill_at, |forced| forced.min(kill_at));
    state.stopping.get_or_insert(Stopping { by, signal }).signal = signal;
    state.kill_by = Some(kill_at);
    shared.changed.notify_all();
    shared.bell.ring();
    for started in state.children.iter_mut().filter(|s| !s.signalled) {
        started.signalled = true;
        let pid = started.child.id();
        emit(listener, Event::Stopping { pid, signal });
        if let Err(err) = os::signal_process(pid, signal) {
            tracing::warn!(%err, pid, "could not send the stop signal");
        }
    }
    // A worker that said EXTEND_TIMEOUT_USEC= gets until then, as under
    // systemd; never past the supervisor's own deadline.
    let latest = deadline.checked_sub(margin).unwrap_or(kill_at);
    loop {
        let until = state
            .children
            .iter()
            .filter_map(|started| started.extended_until)
            .fold(kill_at, Instant::max)
            .min(latest.max(kill_at));
        let left = until.saturating_duration_since(Instant::now());
        if state.all_gone() || left.is_zero() {
            break;
        }
        state = shared
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    for started in &mut state.children {
        kill_tree(&mut started.child);
        emit(
            listener,
            Event::Killed {
                pid: started.child.id(),
            },
        );
    }
    state.stragglers.kill_all(listener);
    shared.bell.ring();
    let left = deadline.saturating_duration_since(Instant::now());
    let (state, _) = shared
        .changed
        .wait_timeout_while(state, left, |s| !s.all_gone())
        .unwrap_or_else(PoisonError::into_inner);
    #[cfg(unix)]
    {
        for file in &state.socket_files {
            file.remove();
        }
        // The process may end before the loop drops it.
        if let Some(dir) = &state.notify_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    #[cfg(not(unix))]
    drop(state);
}
