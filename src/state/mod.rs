//! The once-only state of the process's single run.
//!
//! A process runs its hooks at most once, so the whole state is one phase,
//! `Idle → Running → Finished`, moved forward only. Whoever moves it out of
//! `Idle` (with one compare-and-swap) *initiates* the run: it decides the
//! trigger and therefore the exit status ("the first trigger wins"). Everyone
//! who loses that race — a second signal, a panic on another thread, a thread
//! calling `exit` — waits for `Finished` and ends the process the way the
//! initiator decided.
//!
//! The signal handler takes part in the race too, so [`RunState::begin_from_signal`]
//! only touches atomics: it is async-signal-safe. The handler records the
//! signal number and wakes the signal thread, which then starts the run with
//! [`RunState::publish`]. Everything else here may lock and allocate.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Exit;

pub(crate) mod question;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
/// Finished: every hook returned, and stdout was flushed after them.
const COMPLETED: u8 = 2;
/// Finished: cut short (the deadline passed, a hook ended the run or was
/// left behind at its time limit, no runner could start).
const CUT_SHORT: u8 = 3;

/// How a run ended, handed to [`RunState::finish`] by whoever ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every hook returned, and the runner flushed stdout after them: the
    /// process may end as its trigger asks (`exit()`'s handlers included).
    Completed,
    /// The deadline passed, a hook ended the run or was left behind, or no
    /// runner could start: a hook may still hold what `exit()` and stdout need.
    CutShort,
}

/// The phase of the process's run, and how to wait for its end.
#[derive(Debug)]
pub(crate) struct RunState {
    phase: AtomicU8,
    /// The signal that won the race from a handler; 0 while there is none.
    signal: AtomicI32,
    /// What started the run, once the initiator has published it.
    exit: OnceLock<Exit>,
    lock: Mutex<()>,
    finished: Condvar,
    started: Notify,
}

/// The state of this process.
pub(crate) static STATE: RunState = RunState::new();

impl RunState {
    pub(crate) const fn new() -> Self {
        RunState {
            phase: AtomicU8::new(IDLE),
            signal: AtomicI32::new(0),
            exit: OnceLock::new(),
            lock: Mutex::new(()),
            finished: Condvar::new(),
            started: Notify::const_new(),
        }
    }

    /// Tries to initiate the run. `true` means the caller won and must
    /// [`publish`](Self::publish) what started it.
    pub(crate) fn begin(&self) -> bool {
        self.phase
            .compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// [`begin`](Self::begin) for a signal handler: async-signal-safe.
    /// The winner's signal number is kept for [`take_signal`](Self::take_signal).
    pub(crate) fn begin_from_signal(&self, signal: i32) -> bool {
        if self.begin() {
            self.record_signal(signal);
            true
        } else {
            false
        }
    }

    /// The second step of [`begin_from_signal`](Self::begin_from_signal),
    /// separate so that the model check can interleave it.
    fn record_signal(&self, signal: i32) {
        self.signal.store(signal, Ordering::Release);
    }

    /// The signal that initiated the run from a handler, once; later calls,
    /// and calls when no signal won, give `None`.
    pub(crate) fn take_signal(&self) -> Option<i32> {
        match self.signal.swap(0, Ordering::AcqRel) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Records what started the run (by the initiator, once). The
    /// [`exiting`](crate::exiting) futures polled from now on resolve; the
    /// ones already waiting are woken by [`announce`](Self::announce).
    pub(crate) fn publish(&self, exit: Exit) -> &Exit {
        self.exit.get_or_init(|| exit)
    }

    /// Wakes the [`exiting`](crate::exiting) futures waiting for the run.
    ///
    /// Called on a crate thread, never on the thread that triggered the run:
    /// a waker called there would queue the task on that thread's runtime
    /// worker (tokio puts a task woken on a worker into that worker's own
    /// slot), and that thread may be about to block until the process ends.
    /// Woken from elsewhere, the task goes to its runtime's shared queue,
    /// where any worker picks it up.
    pub(crate) fn announce(&self) {
        self.started.notify_waiters();
    }

    /// What started the run, once the initiator has published it.
    pub(crate) fn exit(&self) -> Option<&Exit> {
        self.exit.get()
    }

    /// Whether a run has started (or already ended).
    pub(crate) fn is_exiting(&self) -> bool {
        self.phase.load(Ordering::Acquire) != IDLE
    }

    /// Whether the run has ended (its hooks returned, or it was cut short).
    pub(crate) fn is_finished(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= COMPLETED
    }

    /// How the run ended; `None` while it has not.
    pub(crate) fn ended(&self) -> Option<Ended> {
        match self.phase.load(Ordering::Acquire) {
            COMPLETED => Some(Ended::Completed),
            CUT_SHORT => Some(Ended::CutShort),
            _ => None,
        }
    }

    /// Whether the run ended with every hook returned ([`Ended::Completed`]).
    pub(crate) fn completed(&self) -> bool {
        self.ended() == Some(Ended::Completed)
    }

    /// Marks the run as ended, `how`, and wakes everyone waiting for it.
    /// The first call decides: the runner, the deadline and a hook that
    /// exits may all call it. Returns `true` for the call that ended it.
    /// Only a running run ends: a call before any run started changes nothing.
    pub(crate) fn finish(&self, how: Ended) -> bool {
        let ended = match how {
            Ended::Completed => COMPLETED,
            Ended::CutShort => CUT_SHORT,
        };
        let first = self
            .phase
            .compare_exchange(RUNNING, ended, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        // Taking the lock orders this wake-up after any waiter's check of the phase.
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.finished.notify_all();
        first
    }

    /// Waits until the run has ended or `deadline` passes; `true` if it ended.
    pub(crate) fn wait_finished(&self, deadline: Instant) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.is_finished() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left == Duration::ZERO {
                return false;
            }
            guard = self
                .finished
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Resolves once a run has started.
    pub(crate) async fn started(&self) {
        let notified = self.started.notified();
        let mut notified = std::pin::pin!(notified);
        // Register before checking, so a `publish` between the two is not missed.
        notified.as_mut().enable();
        if self.exit.get().is_none() {
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    use super::*;
    use crate::Trigger;

    #[test]
    fn only_the_first_begin_wins() {
        let state = RunState::new();
        assert!(!state.is_exiting());
        assert!(state.begin());
        assert!(!state.begin());
        assert!(!state.begin_from_signal(15));
        assert!(state.is_exiting());
        assert_eq!(state.take_signal(), None, "a losing signal is not recorded");
    }

    #[test]
    fn a_signal_that_wins_is_taken_once() {
        let state = RunState::new();
        assert!(state.begin_from_signal(15));
        assert_eq!(state.take_signal(), Some(15));
        assert_eq!(state.take_signal(), None);
    }

    #[test]
    fn racing_threads_have_exactly_one_winner() {
        let state = Arc::new(RunState::new());
        let winners = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (state, winners) = (state.clone(), winners.clone());
                thread::spawn(move || {
                    let won = if i % 2 == 0 {
                        state.begin()
                    } else {
                        state.begin_from_signal(i)
                    };
                    if won {
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(winners.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn finish_is_reported_once_and_wakes_waiters() {
        let state = Arc::new(RunState::new());
        assert!(state.begin());
        let waiter = {
            let state = state.clone();
            thread::spawn(move || state.wait_finished(Instant::now() + Duration::from_secs(60)))
        };
        assert!(state.finish(Ended::Completed));
        assert!(!state.finish(Ended::CutShort), "the first finish decides");
        assert!(waiter.join().unwrap());
        assert!(state.is_finished() && state.is_exiting());
        assert_eq!(state.ended(), Some(Ended::Completed));
    }

    #[test]
    fn finish_before_any_run_changes_nothing() {
        let state = RunState::new();
        assert!(!state.finish(Ended::CutShort));
        assert!(
            !state.is_exiting(),
            "a stray finish must not disable shutdown"
        );
        assert!(state.begin());
        assert!(state.finish(Ended::CutShort));
    }

    #[test]
    fn waiting_gives_up_at_the_deadline() {
        let state = RunState::new();
        assert!(state.begin());
        assert!(!state.wait_finished(Instant::now() + Duration::from_millis(10)));
    }

    #[test]
    fn publish_keeps_the_first_exit() {
        let state = RunState::new();
        state.publish(Exit::new(Trigger::Requested, Some(3), Instant::now()));
        let kept = state.publish(Exit::new(Trigger::Normal, Some(0), Instant::now()));
        assert_eq!(kept.code(), Some(3));
        assert_eq!(state.exit().and_then(Exit::code), Some(3));
    }
}

#[cfg(test)]
mod model_check;
