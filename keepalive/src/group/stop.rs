//! The stop: of the whole process, in exit_hook's phases (every app, in
//! waves that follow `after`), or of one app of a group alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Roster, setup};
use crate::stop::{Shared, stop};
use crate::{Error, Supervisor, os};

/// What a stop needs of one app to stop its workers.
pub(super) struct AppStop {
    pub(super) shared: Arc<Shared>,
    listener: Option<crate::event::Listener>,
    pub(super) kill_timeout: Duration,
    kill_signal: Option<exit_hook::Signal>,
}

impl AppStop {
    pub(super) fn of(supervisor: &Supervisor, shared: &Arc<Shared>) -> AppStop {
        AppStop {
            shared: shared.clone(),
            listener: supervisor.listener.clone(),
            kill_timeout: supervisor.kill_timeout,
            kill_signal: supervisor.kill_signal,
        }
    }

    /// Stops its workers as the signal `by` (SIGTERM for another trigger)
    /// asks, by `deadline`.
    fn stop(&self, by: Option<exit_hook::Signal>, deadline: Instant) {
        stop(
            &self.shared,
            self.listener.as_ref(),
            self.kill_timeout,
            self.kill_signal,
            by,
            deadline,
        );
    }

    /// Stops this app alone, as a SIGTERM to a process of its own would:
    /// the kill timeout, and as long again for a worker that asks for it
    /// (`EXTEND_TIMEOUT_USEC=`), as `keepalive run` gives itself.
    pub(super) fn stop_alone(&self) {
        let deadline = os::later(
            Instant::now(),
            self.kill_timeout * 2 + Duration::from_secs(2),
        );
        self.stop(Some(exit_hook::Signal::terminate()), deadline);
    }
}

/// keepalive's own shutdown, in exit_hook's phases, for every app of the
/// run: no control request is taken any more and nothing is added or
/// started (drain); the workers are stopped and waited for, in waves (the
/// apps no other running app starts after first, each wave's apps at
/// once), then their last lines are copied out and the last words said
/// (flush). `exit_as_workers`: a run of one ends the process with its
/// workers' status. Unregistered when the run ends.
pub(super) fn hooks(
    roster: &Arc<Roster>,
    exit_as_workers: bool,
) -> Result<Vec<exit_hook::HookHandle>, Error> {
    let (drained, stopped, flushed) = (roster.clone(), roster.clone(), roster.clone());
    Ok(vec![
        exit_hook::in_phase(exit_hook::Phase::Drain).try_add(move |_| {
            let mut rolls = drained.lock();
            rolls.stopping = true;
            #[cfg(unix)]
            for entry in &rolls.apps {
                if let Some(file) = &entry.control_file {
                    file.remove();
                }
            }
        })?,
        // The workers' stop is in the last phase, before their output's
        // flush: its end is the run's deadline, which bounds the kill
        // timeout (and what a worker's EXTEND_TIMEOUT_USEC= asks), however
        // the phases share the deadline.
        exit_hook::in_phase(exit_hook::Phase::Flush).try_add(move |exit| {
            stop_in_waves(&stopped, exit.signal(), exit.deadline());
        })?,
        exit_hook::in_phase(exit_hook::Phase::Flush).try_add(move |exit| {
            let apps: Vec<_> = flushed
                .lock()
                .apps
                .iter()
                .map(|entry| (entry.stop.shared.clone(), entry.last_words.clone()))
                .collect();
            for (shared, last_words) in &apps {
                shared.copiers.wait(exit.deadline());
                setup::say_last_words(last_words);
            }
            let last = flushed.lock().last_words.take();
            if let Some(last) = last {
                last();
            }
            if let ([(shared, _)], true) = (&apps[..], exit_as_workers) {
                if let Some(status) = shared.lock().last_status {
                    // The run's status would be 128 + the stop
                    // signal: the workers' is what an init passes on.
                    os::exit_now(status);
                }
            }
        })?,
    ])
}

/// Stops every app still running, those no other running app starts
/// after first, each wave's apps at once (a scoped thread each), the next
/// wave once the last one's workers are gone.
fn stop_in_waves(roster: &Roster, by: Option<exit_hook::Signal>, deadline: Instant) {
    let mut left: Vec<(String, Vec<String>, Arc<AppStop>)> = {
        let mut rolls = roster.lock();
        rolls.stopping = true;
        rolls
            .apps
            .iter()
            .filter(|entry| entry.reason.is_none())
            .map(|entry| (entry.name.clone(), entry.after.clone(), entry.stop.clone()))
            .collect()
    };
    while !left.is_empty() {
        let (wave, later): (Vec<_>, Vec<_>) = left
            .iter()
            .cloned()
            .partition(|(name, _, _)| !left.iter().any(|(_, after, _)| after.contains(name)));
        // (`validate` refuses a cycle of `after`; were there one, all at once.)
        let (wave, later) = if wave.is_empty() {
            (later, Vec::new())
        } else {
            (wave, later)
        };
        match &wave[..] {
            [(_, _, one)] => one.stop(by, deadline),
            many => std::thread::scope(|scope| {
                for (_, _, each) in many {
                    scope.spawn(move || each.stop(by, deadline));
                }
            }),
        }
        left = later;
    }
}
