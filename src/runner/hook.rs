//! How one hook runs: its [`Slot`] in the run's progress (for the deadline
//! report and the `tracing` events), the panic it may raise (caught, and
//! named through [`CURRENT_HOOK`](super::current_hook)), and its time limit:
//! a sync hook with one runs on a helper thread ([`limited`](super::limited))
//! and is left behind when the limit passes; an async hook's [`Tracked`]
//! future is dropped then.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{CURRENT_HOOK, leave_if_forked_copy, progress};
use crate::registry::{BoxFuture, Hook, Site, Work};
use crate::{Exit, report};

/// Runs a sync hook without a time limit to its end, or makes an async
/// hook's task. (Limited sync hooks run in rows: [`super::limited`].)
pub(super) fn start(hook: Hook, exit: &Exit) -> Option<Tracked> {
    debug_assert!(!super::limited::is_limited_sync(&hook));
    let Hook {
        location,
        phase,
        time_limit,
        work,
    } = hook;
    let slot = Slot::start(location, phase, time_limit.is_some());
    match work {
        Work::Sync(hook) => {
            let _ = slot.run(|| hook(exit));
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

/// The async hooks that passed their time limits, not reported yet.
static PASSED: Mutex<Vec<(Site, Duration)>> = Mutex::new(Vec::new());

/// Takes the async hooks that passed their time limits since last asked.
pub(crate) fn take_passed() -> Vec<(Site, Duration)> {
    std::mem::take(&mut *PASSED.lock().unwrap_or_else(PoisonError::into_inner))
}

/// One started hook: its place in [`Progress`] and its start time.
pub(super) struct Slot {
    index: usize,
    location: Site,
    phase: crate::Phase,
    /// Read only for an async hook's time limit, or for the `debug` event of its end:
    /// a clock read per hook is most of what 100 000 hooks cost otherwise.
    started: Option<Instant>,
    /// Set when the run stopped waiting for it; its end is not reported.
    timed_out: bool,
}

impl Slot {
    pub(super) fn start(location: Site, phase: crate::Phase, timed: bool) -> Self {
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
    pub(super) fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, ()> {
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
