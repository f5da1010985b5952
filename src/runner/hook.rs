//! How one hook runs: its [`Slot`] in the run's progress (for the deadline
//! report and the `tracing` events), the panic it may raise (caught, and
//! named through [`CURRENT_HOOK`](super::current_hook)), and its time limit:
//! a sync hook with one runs on a thread of its own and is left behind when
//! the limit passes; an async hook's [`Tracked`] future is dropped then.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{CURRENT_HOOK, IS_RUNNER, LEFT_BEHIND, leave_if_forked_copy, progress};
use crate::registry::{BoxFuture, Hook, Site, Work};
use crate::{Exit, report, sys};

/// Runs a sync hook to its end (or its time limit), or makes an async hook's task.
pub(super) fn start(hook: Hook, exit: &Exit) -> Option<Tracked> {
    let Hook {
        location,
        phase,
        time_limit,
        work,
    } = hook;
    let slot = Slot::start(location, phase, time_limit.is_some());
    match work {
        Work::Sync(hook) => {
            match time_limit {
                None => {
                    let _ = slot.run(|| hook(exit));
                }
                Some(limit) => run_limited(slot, hook, exit.clone(), limit.get()),
            }
            None
        }
        Work::Async(hook) => {
            let future = slot.run(|| hook(exit.clone())).ok()?;
            Some(Tracked {
                slot: Some(slot),
                future: Some(future),
                limit: time_limit.map(|limit| {
                    Box::new(Limit {
                        limit: limit.get(),
                        timer: None,
                    })
                }),
            })
        }
    }
}

/// Runs a sync hook on a helper thread and waits for it up to `limit`;
/// past it, reports the hook and leaves it running, and the hook cannot end
/// or change the run any more ([`is_left_behind`]). Where no thread can
/// start, the hook runs here without its limit (the deadline still holds).
///
/// The helpers are kept: one that finished its hook waits for the next, so
/// the run starts a thread only for the first limited hook and for each
/// one left behind, however many limited hooks there are.
fn run_limited(slot: Slot, hook: Box<dyn FnOnce(&Exit) + Send>, exit: Exit, limit: Duration) {
    let location = slot.location;
    let left = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<()>();
    let generation = super::generation();
    let work: Task = Box::new({
        let left = left.clone();
        move || {
            // Like the runner: ending the process from this hook ends the run.
            IS_RUNNER.set(true);
            super::GENERATION.set(generation);
            LEFT.set(Some(left));
            let _ = slot.run(|| hook(&exit));
            LEFT.take();
        }
    });
    let job = match helper() {
        Ok(helper) => helper
            .send((work, done))
            .err()
            .map(|mpsc::SendError(job)| job),
        Err(err) => {
            report::runner_failed(&err);
            Some((work, done))
        }
    };
    if let Some((work, _done)) = job {
        work();
        return;
    }
    // A hook that returns at once is seen without sleeping: a sleeping
    // thread's wake-up is most of what a hand-off costs.
    let started = Instant::now();
    if spin_until(|| matches!(finished.try_recv(), Err(mpsc::TryRecvError::Disconnected))) {
        return;
    }
    let left_of_limit = limit.saturating_sub(started.elapsed());
    if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(left_of_limit) {
        left.store(true, Ordering::Release);
        LEFT_BEHIND.store(true, Ordering::Release);
        report::time_limit_passed(location, limit);
    }
}

/// A limited hook's work, and the sender dropped once the helper that ran
/// it is ready for the next one.
type Job = (Task, mpsc::Sender<()>);
type Task = Box<dyn FnOnce() + Send>;

/// How long the runner and an idle helper look for each other before they
/// sleep: a little longer than the wake-up of a sleeping thread.
const SPIN: Duration = Duration::from_micros(50);

/// Checks `done` until it holds or [`SPIN`] has passed; whether it held.
fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= SPIN {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// The async hooks that passed their time limits, not reported yet.
static PASSED: Mutex<Vec<(Site, Duration)>> = Mutex::new(Vec::new());

/// Takes the async hooks that passed their time limits since last asked.
pub(crate) fn take_passed() -> Vec<(Site, Duration)> {
    std::mem::take(&mut *PASSED.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Idle helper threads, each waiting for a job on its channel.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

/// A helper thread for a limited hook: an idle one, or a new one.
fn helper() -> std::io::Result<mpsc::Sender<Job>> {
    if let Some(idle) = IDLE.lock().unwrap_or_else(PoisonError::into_inner).pop() {
        return Ok(idle);
    }
    let (send, receive) = mpsc::channel::<Job>();
    let back = send.clone();
    sys::spawn("exit-hook-limited", move || {
        loop {
            // The next job: looked for a moment (limited hooks usually come
            // in a row), then waited for.
            let mut next = None;
            spin_until(|| {
                next = receive.try_recv().ok();
                next.is_some()
            });
            let Some((work, done)) = next.or_else(|| receive.recv().ok()) else {
                return;
            };
            work();
            // Ready for the next limited hook (a left-behind one, too, once
            // its hook returned) before the runner hears it is done, so
            // that the runner finds it idle for the next one.
            IDLE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(back.clone());
            drop(done);
        }
    })?;
    Ok(send)
}

thread_local! {
    /// On a helper thread: set once the run left its hook behind.
    static LEFT: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// Whether this thread runs a hook the run left behind at its time limit:
/// it can no longer end or change the run.
pub(crate) fn is_left_behind() -> bool {
    LEFT.try_with(|left| {
        left.borrow()
            .as_ref()
            .is_some_and(|left| left.load(Ordering::Acquire))
    })
    .unwrap_or(false)
}

/// One started hook: its place in [`Progress`] and its start time.
struct Slot {
    index: usize,
    location: Site,
    phase: crate::Phase,
    /// Read only for a time limit, or for the `debug` event of its end:
    /// a clock read per hook is most of what 100 000 hooks cost otherwise.
    started: Option<Instant>,
    /// Set when the run stopped waiting for it; its end is not reported.
    timed_out: bool,
}

impl Slot {
    fn start(location: Site, phase: crate::Phase, timed: bool) -> Self {
        let timed = timed || tracing::enabled!(tracing::Level::DEBUG);
        let mut progress = progress();
        progress.queued.pop_front();
        progress.running.push(Some(location));
        report::hook_started(location, phase);
        Slot {
            index: progress.running.len() - 1,
            location,
            phase,
            started: timed.then(Instant::now),
            timed_out: false,
        }
    }

    /// Runs part of the hook with the hook named for the panic hook. A panic
    /// ends the hook (and was reported); the `Err` says so.
    fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, ()> {
        let previous = CURRENT_HOOK.replace(Some(self.location));
        let result = catch_unwind(AssertUnwindSafe(f)).map_err(drop_payload);
        CURRENT_HOOK.set(previous);
        leave_if_forked_copy();
        result
    }
}

/// Drops a caught panic's payload where its own `Drop` cannot escape:
/// `panic_any(x)` with an `x` whose drop panics would otherwise unwind out
/// of the runner and skip every later hook. A payload that panics again is
/// leaked, not dropped.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(again);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        progress().running[self.index] = None;
        if let (false, Some(started)) = (self.timed_out, self.started) {
            report::hook_finished(self.location, self.phase, started.elapsed());
        }
    }
}

/// An async hook's future, naming its hook while it is polled, and
/// dropping it at the hook's time limit.
pub(super) struct Tracked {
    slot: Option<Slot>,
    future: Option<BoxFuture>,
    /// Boxed: most hooks have none, and the task stays small without it.
    limit: Option<Box<Limit>>,
}

/// An async hook's time limit, and its timer once the hook was pending.
struct Limit {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Tracked {
    /// Whether the hook's time limit has passed (registering a wake-up if not).
    fn past_limit(&mut self, started: Option<Instant>, cx: &mut Context<'_>) -> bool {
        let Some(Limit { limit, timer }) = self.limit.as_deref_mut() else {
            return false;
        };
        // A hook with a limit has its start time (see `Slot::start`).
        let started = started.unwrap_or_else(Instant::now);
        let timer = timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until((started + *limit).into())));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Future for Tracked {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let (Some(slot), Some(future)) = (&this.slot, &mut this.future) else {
            return Poll::Ready(());
        };
        let (location, started) = (slot.location, slot.started);
        match slot.run(|| future.as_mut().poll(cx)) {
            Ok(Poll::Pending) if !this.past_limit(started, cx) => return Poll::Pending,
            Ok(Poll::Pending) => {
                let limit = this.limit.as_ref().map_or(Duration::ZERO, |l| l.limit);
                // Reported with the others of its batch, in one line.
                PASSED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((location, limit));
                if let Some(slot) = &mut this.slot {
                    slot.timed_out = true;
                }
            }
            // Finished or panicked: either way the hook is over.
            Ok(Poll::Ready(())) | Err(()) => {}
        }
        // The future's own `Drop` may panic: it is still this hook's.
        if let Some(slot) = this.slot.take() {
            let future = this.future.take();
            let _ = slot.run(|| drop(future));
        }
        Poll::Ready(())
    }
}
