//! The questions an application asks before a signal starts the run
//! ("Ctrl+C: really stop?", [`confirm_exit`](crate::confirm_exit)), as the
//! signal handler sees them: one atomic per signal, so the handler's part
//! is async-signal-safe.
//!
//! A signal's question moves `NONE → READY` once, when a decision is
//! registered. Then, round after round: the handler moves it `READY →
//! PENDING` and wakes the signal thread; that thread moves it `PENDING →
//! ASKING` and has the decision asked on a thread of its own; the answer
//! moves it back to `READY`. A signal that finds its question `PENDING` or
//! `ASKING` is the same signal again while the application is still
//! deciding.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

const NONE: u8 = 0;
const READY: u8 = 1;
const PENDING: u8 = 2;
const ASKING: u8 = 3;

/// The signal numbers a question can be kept for: 1 to 64.
const SIGNALS: usize = 65;

/// What a signal finds when it arrives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Raised {
    /// No decision is registered for it: it starts the run.
    NotAsked,
    /// Its question is now pending: wake the signal thread to ask it.
    Ask,
    /// Its question is pending already: the same signal again.
    Again,
}

/// Every signal's question.
pub(crate) struct Questions([AtomicU8; SIGNALS]);

/// The questions of this process.
pub(crate) static QUESTIONS: Questions = Questions([const { AtomicU8::new(NONE) }; SIGNALS]);

impl Questions {
    fn of(&self, signal: i32) -> Option<&AtomicU8> {
        self.0
            .get(usize::try_from(signal).ok()?)
            .filter(|_| signal > 0)
    }

    /// A decision is registered for `signal`: from now on it asks first.
    pub(crate) fn arm(&self, signal: i32) {
        if let Some(question) = self.of(signal) {
            let _ = question.compare_exchange(NONE, READY, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// `signal` arrived. Async-signal-safe.
    pub(crate) fn raise(&self, signal: i32) -> Raised {
        let Some(question) = self.of(signal) else {
            return Raised::NotAsked;
        };
        match question.compare_exchange(READY, PENDING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Raised::Ask,
            Err(NONE) => Raised::NotAsked,
            Err(_) => Raised::Again,
        }
    }

    /// A pending question, now being asked; `None` if there is none.
    #[cfg_attr(
        windows,
        allow(dead_code, reason = "the console handler takes its own")
    )]
    pub(crate) fn take_pending(&self) -> Option<i32> {
        (1..).take(SIGNALS - 1).find(|&signal| self.take(signal))
    }

    /// Takes `signal`'s question to ask it, if it is pending.
    pub(crate) fn take(&self, signal: i32) -> bool {
        self.of(signal).is_some_and(|question| {
            question
                .compare_exchange(PENDING, ASKING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// In a child forked without exec: a question the parent had pending
    /// or was asking is nobody's here (the asking thread is the parent's),
    /// so each is ready to be asked again. Async-signal-safe.
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    pub(crate) fn after_fork(&self) {
        for question in &self.0 {
            let _ = question.compare_exchange(PENDING, READY, Ordering::AcqRel, Ordering::Acquire);
            let _ = question.compare_exchange(ASKING, READY, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The application answered `signal`'s question: the next one asks again.
    pub(crate) fn answered(&self, signal: i32) {
        if let Some(question) = self.of(signal) {
            let _ = question.compare_exchange(ASKING, READY, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

thread_local! {
    /// The signal whose question this thread asks (0: none).
    static ASKING_HERE: Cell<i32> = const { Cell::new(0) };
}

/// Marks this thread as the one asking `signal`'s question: a panic in the
/// decision is the decision's, not a trigger.
pub(crate) fn mark_asking_thread(signal: i32) {
    ASKING_HERE.with(|here| here.set(signal));
}

/// The signal whose question this thread is asking, if it is asking one.
pub(crate) fn asking_signal() -> Option<i32> {
    ASKING_HERE
        .try_with(Cell::get)
        .ok()
        .filter(|&signal| signal != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_is_asked_once_per_round_and_again_after_its_answer() {
        let questions = Questions([const { AtomicU8::new(NONE) }; SIGNALS]);
        assert_eq!(questions.raise(2), Raised::NotAsked);
        questions.arm(2);
        assert_eq!(questions.raise(15), Raised::NotAsked, "only its own signal");
        assert_eq!(questions.raise(2), Raised::Ask);
        assert_eq!(questions.raise(2), Raised::Again, "pending");
        assert_eq!(questions.take_pending(), Some(2));
        assert_eq!(questions.take_pending(), None, "taken once");
        assert_eq!(questions.raise(2), Raised::Again, "being asked");
        questions.answered(2);
        assert_eq!(questions.raise(2), Raised::Ask, "asks again");
    }

    #[test]
    fn a_forked_child_asks_again_what_its_parent_was_asking() {
        let questions = Questions([const { AtomicU8::new(NONE) }; SIGNALS]);
        questions.arm(2);
        questions.arm(15);
        assert_eq!(questions.raise(2), Raised::Ask);
        assert_eq!(questions.take_pending(), Some(2));
        assert_eq!(questions.raise(15), Raised::Ask);
        questions.after_fork();
        assert_eq!(questions.raise(2), Raised::Ask, "was being asked");
        assert_eq!(questions.raise(15), Raised::Ask, "was pending");
        assert_eq!(questions.raise(1), Raised::NotAsked, "never armed");
    }

    #[test]
    fn signals_out_of_range_are_never_asked() {
        let questions = Questions([const { AtomicU8::new(NONE) }; SIGNALS]);
        for signal in [0, -1, 65, i32::MAX] {
            questions.arm(signal);
            assert_eq!(questions.raise(signal), Raised::NotAsked);
            questions.answered(signal);
        }
        assert_eq!(questions.take_pending(), None);
    }
}
