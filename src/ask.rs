//! A signal's pending question, asked on a thread of its own: the decisions
//! [`confirm_exit`](crate::confirm_exit) registered, and what their answers do.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use crate::state::STATE;
use crate::state::question::{self, QUESTIONS};
use crate::{Signal, report, sys};

/// A decision: `true` exits, `false` carries on.
pub(crate) type Decision = Box<dyn FnMut(Signal) -> bool + Send>;

/// The decision registered for each signal, the latest one.
static DECISIONS: Mutex<Vec<(Signal, Arc<Mutex<Decision>>)>> = Mutex::new(Vec::new());

/// Registers `decide` for `signal`, in place of the one it had, and arms
/// the signal's question.
pub(crate) fn register(signal: Signal, decide: Decision) {
    let decision = Arc::new(Mutex::new(decide));
    let replaced = {
        let mut decisions = lock(&DECISIONS);
        match decisions.iter_mut().find(|(asked, _)| *asked == signal) {
            Some((_, old)) => Some(std::mem::replace(old, decision)),
            None => {
                decisions.push((signal, decision));
                None
            }
        }
    };
    // Dropped outside the lock: what the old decision holds may register
    // a decision in its `Drop`, as the hook registry allows too.
    drop(replaced);
    QUESTIONS.arm(signal.as_raw());
}

/// `signal`'s question is pending (on the signal thread, or the console
/// handler's on Windows): asks it on a thread of its own, so that the other
/// signals still reach theirs.
pub(crate) fn ask(signal: Signal) {
    if let Err(err) = sys::spawn("exit-hook-ask", move || answer(signal)) {
        // No thread to ask on: the signal does what it would without a question.
        report::runner_failed(&err);
        sys::start_signal_run(signal.as_raw());
        QUESTIONS.answered(signal.as_raw());
    }
}

/// Asks the decision and acts on its answer: a "yes" starts the signal's
/// run as its handler would have.
fn answer(signal: Signal) {
    question::mark_asking_thread(signal.as_raw());
    // A run that started meanwhile (SIGTERM, a panic) has made the question moot.
    if !STATE.is_exiting() && decide(signal) {
        sys::start_signal_run(signal.as_raw());
    }
    QUESTIONS.answered(signal.as_raw());
}

/// The registered decision's answer; `true` if it panicked.
fn decide(signal: Signal) -> bool {
    let decision = lock(&DECISIONS)
        .iter()
        .find(|(asked, _)| *asked == signal)
        .map(|(_, decision)| Arc::clone(decision));
    let Some(decision) = decision else {
        return true;
    };
    // One question per signal at a time: the decision is free, unless this
    // is a child forked while its parent was asking it, whose asking thread
    // (holding it) is not here. Then it cannot be asked: the signal does
    // what it would without a question.
    let mut decide = match decision.try_lock() {
        Ok(decide) => decide,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => {
            report::decision_unavailable(signal);
            return true;
        }
    };
    panic::catch_unwind(AssertUnwindSafe(|| decide(signal))).unwrap_or_else(|_| {
        report::decision_panicked(signal);
        true
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
