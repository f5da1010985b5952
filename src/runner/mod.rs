//! The run: every hook, once, on the crate's own thread and runtime.
//!
//! The runner first wakes the [`exiting`](crate::exiting) futures — from
//! this crate thread, never from the thread that triggered the run, which
//! may be an application runtime's only worker about to block. Then it takes
//! the registered hooks in batches, one [`Phase`](crate::Phase) at a time,
//! oldest first (see [`registry::next_batch`], which also waits for the
//! exit guards). A sync hook is called right there, so sync hooks run one
//! after another; an async hook is called to make its future, and a batch's
//! futures are polled together on a current-thread runtime of the crate's
//! own, so async hooks run concurrently. When a batch is done the runner takes the
//! next, until none is left. Then it marks the run finished, which wakes the
//! initiator (see [`trigger`](crate::trigger)).
//!
//! A hook with a time limit is waited for only that long: an async hook's
//! future is dropped then; a sync hook runs on a thread of its own, which is
//! left behind. A run that left a hook behind does not count as completed,
//! so the process ends without waiting on what that hook may hold.
//!
//! The runtime is the crate's own, so async hooks run when the application's
//! runtime is blocked, busy or already dropped; they can still await its join
//! handles and channels. Panics are caught per hook; the panic hook reports
//! them, naming the hook through [`current_hook`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::registry::{self, Hook, Site, Work, registry};
use crate::report::{self, Unfinished};
use crate::state::{Ended, STATE};
use crate::{Exit, Phase, config, sys};

mod hook;
mod limited;

use hook::{start, take_passed};

thread_local! {
    // `const` and without destructors, so they stay usable while a thread exits.
    static IS_RUNNER: Cell<bool> = const { Cell::new(false) };
    static CURRENT_HOOK: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
    /// The generation of the runner this thread is (or runs hooks for).
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// The generation of the runner taking batches; a thread of an older one
/// was left behind at its phase's end (mirrors the registry's, for checks
/// without its lock).
static RUNNING_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Whether this thread belongs to a runner the run went on without.
fn superseded() -> bool {
    IS_RUNNER.try_with(Cell::get).unwrap_or(false)
        && GENERATION.try_with(Cell::get).unwrap_or(0) != RUNNING_GENERATION.load(Ordering::Acquire)
}

/// Whether this thread runs a hook the run no longer waits for, and why:
/// `at its time limit`, or `at its phase's end` (a hook without a limit,
/// or one whose phase ended first). Such a hook can no longer end or
/// change the run.
pub(crate) fn left_behind() -> Option<&'static str> {
    if limited::is_left_behind() {
        Some("at its time limit")
    } else if superseded() {
        Some("at its phase's end")
    } else {
        None
    }
}

/// This thread's runner generation, for a helper running one of its hooks.
fn generation() -> u64 {
    GENERATION.try_with(Cell::get).unwrap_or(0)
}

/// Set when a sync hook was left running at its time limit.
static LEFT_BEHIND: AtomicBool = AtomicBool::new(false);

/// The process the run belongs to (0 before a run): a child forked by a
/// hook is a copy of the runner, and must not go on with the run.
static RUN_PID: AtomicU32 = AtomicU32::new(0);

/// Hooks started and not yet finished, and hooks taken but not yet started
/// (in the order they will start).
struct Progress {
    running: Vec<Option<Site>>,
    queued: VecDeque<Site>,
}

static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    running: Vec::new(),
    queued: VecDeque::new(),
});

fn progress() -> MutexGuard<'static, Progress> {
    PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hooks still running, the hooks never started and the guards still
/// alive, for the deadline report. Takes only crate locks that no user code
/// runs under.
pub(crate) fn unfinished() -> Unfinished {
    let (running, mut not_started) = {
        let progress = progress();
        let running = progress.running.iter().flatten().copied().collect();
        (running, progress.queued.iter().copied().collect::<Vec<_>>())
    };
    let registry = registry();
    not_started.extend(registry.waiting_hooks());
    Unfinished {
        passed_limits: take_passed(),
        running,
        not_started,
        guards: registry.guard_sites(),
    }
}

/// When `phase` must be over in a run whose deadline is `deadline`: the
/// drain at its timeout into the run; cleanup and close at a third and two
/// thirds of what is left; flush at the deadline. A phase over early leaves
/// its time to the next.
pub(crate) fn phase_end(phase: Phase, deadline: Instant) -> Instant {
    let timeout = config::timeout();
    let drain = config::drain_timeout();
    let rest = timeout.saturating_sub(drain);
    let into_run = match phase {
        Phase::Drain => drain,
        Phase::Cleanup => drain + rest / 3,
        Phase::Close => drain + rest * 2 / 3,
        Phase::Flush => timeout,
    };
    deadline - timeout + into_run
}

/// Whether this thread is the runner (hooks run on it).
pub(crate) fn is_runner_thread() -> bool {
    IS_RUNNER.try_with(Cell::get).unwrap_or(false)
}

/// The registration site of the hook running on this thread, if any.
pub(crate) fn current_hook() -> Option<&'static Location<'static>> {
    CURRENT_HOOK.try_with(Cell::get).ok().flatten()
}

/// Whether this process is a child that a hook forked (without exec)
/// during the run: a copy of the run, not the run.
pub(crate) fn is_forked_copy() -> bool {
    sys::forked() && {
        let run = RUN_PID.load(Ordering::Acquire);
        run != 0 && run != std::process::id()
    }
}

/// A hook forked, and its child came back into the run: the child ends
/// here, with the run's status, and runs no other hook (its parent does).
pub(crate) fn leave_if_forked_copy() {
    if is_forked_copy() {
        let exit = STATE.exit();
        let code = exit.and_then(|exit| {
            exit.code()
                .or_else(|| exit.signal().map(crate::Signal::shell_status))
        });
        sys::exit_now(code.unwrap_or(0));
    }
}

/// Starts the runner thread for `exit`.
pub(crate) fn spawn(exit: Exit) -> io::Result<()> {
    sys::spawn("exit-hook", move || run_here(&exit))
}

/// Runs the hooks on this thread, which becomes the runner, then marks the
/// run finished.
pub(crate) fn run_here(exit: &Exit) {
    IS_RUNNER.set(true);
    GENERATION.set(0);
    RUN_PID.store(std::process::id(), Ordering::Release);
    STATE.announce();
    sys::notify_stopping(exit.deadline().saturating_duration_since(Instant::now()));
    // The run's events are emitted here, not on the thread keeping the
    // deadline: a `tracing` subscriber may block (writing through a lock
    // an application thread holds), and only the hooks may wait on it.
    let started = Instant::now();
    report::run_started(exit);
    // For a signal (a supervisor, a load balancer's orchestrator), not for
    // a crash or an exit the application asked for.
    let delay = config::drain_delay();
    if !delay.is_zero() && exit.signal().is_some() {
        // `is_exiting()` is true and `exiting()` resolved: the application
        // still serves, and says it is going (readiness 503).
        report::drain_delay(delay);
        std::thread::sleep(delay);
    }
    go_on(exit, started);
}

/// Runs the hooks left, then marks the run finished, unless the run went
/// on without this thread meanwhile.
fn go_on(exit: &Exit, started: Instant) {
    let ran_all = catch_unwind(AssertUnwindSafe(|| run(exit))).unwrap_or(false);
    if superseded() {
        return; // the runner that took over finishes the run
    }
    let ended = if ran_all && !LEFT_BEHIND.load(Ordering::Acquire) {
        // The hooks' last lines, flushed here where no hook can hold the
        // lock any more (and within the deadline), so ending the process
        // need not. A hook left behind might hold it: ending the process
        // flushes then, without waiting on the lock for ever.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        Ended::Completed
    } else {
        Ended::CutShort
    };
    report::run_finished(started.elapsed());
    STATE.finish(ended);
}

/// `phase` is over (its end in the run has come): if the runner is still in
/// it, the run goes on without that runner, on a new thread, from the next
/// phase. Its hooks still running are left behind, as at a time limit, and
/// the ones of that phase not started do not start.
pub(crate) fn move_on_from(phase: Phase, exit: &Exit) {
    if Instant::now() >= exit.deadline() {
        return; // too late for any phase: the deadline ends the process
    }
    {
        let progress = progress();
        if progress.running.iter().all(Option::is_none) && progress.queued.is_empty() {
            // Between batches, or waiting for guards (a wait bounded by the
            // drain's end itself): not stuck in a hook.
            return;
        }
    }
    let next = registry().move_on_from(phase, RUNNING_GENERATION.load(Ordering::Acquire));
    let Some(next) = next else { return };
    RUNNING_GENERATION.store(next, Ordering::Release);
    LEFT_BEHIND.store(true, Ordering::Release);
    let (running, skipped) = {
        let mut progress = progress();
        let running: Vec<Site> = progress.running.iter().flatten().copied().collect();
        (running, progress.queued.drain(..).collect::<Vec<_>>())
    };
    report::phase_over(phase, &running, &skipped);
    let exit = exit.clone();
    let spawned = sys::spawn("exit-hook", move || {
        IS_RUNNER.set(true);
        GENERATION.set(next);
        let started = exit.deadline() - config::timeout();
        go_on(&exit, started);
    });
    if let Err(err) = spawned {
        report::runner_failed(&err);
        STATE.finish(Ended::CutShort);
    }
}

/// Runs every batch of hooks; `false` if the run could not go on (no
/// runtime for async hooks) or went on without this thread.
fn run(exit: &Exit) -> bool {
    // Built for the first batch with an async hook: a run of sync hooks needs none.
    let mut runtime = None;
    let drain_end = phase_end(Phase::Drain, exit.deadline());
    while let Some(batch) = registry::next_batch(generation(), drain_end, report::guards_given_up) {
        progress()
            .queued
            .extend(batch.iter().map(|hook| hook.location));
        if batch.iter().all(|hook| matches!(hook.work, Work::Sync(_))) {
            let mut hooks = batch.into_iter().peekable();
            while let Some(hook) = hooks.next() {
                start_sync(hook, &mut hooks, exit);
                if superseded() {
                    return false;
                }
            }
            continue;
        }
        if runtime.is_none() {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(built) => runtime = Some(built),
                Err(err) => {
                    report::runner_failed(&err);
                    return false;
                }
            }
        }
        if let Some(runtime) = &runtime {
            run_batch(runtime, batch, exit);
        }
        if superseded() {
            return false;
        }
    }
    if let Some(runtime) = runtime {
        // Drop without waiting for blocking tasks a hook may have left behind.
        runtime.shutdown_background();
    }
    true
}

/// Runs a sync hook; a limited one with the limited sync hooks that follow
/// it in `rest`, as one row: the runner watches their helper instead of
/// handing each one over.
fn start_sync(hook: Hook, rest: &mut std::iter::Peekable<impl Iterator<Item = Hook>>, exit: &Exit) {
    if limited::is_limited_sync(&hook) {
        let mut row = vec![hook];
        row.extend(std::iter::from_fn(|| {
            rest.next_if(limited::is_limited_sync)
        }));
        limited::run_row(row, exit);
    } else {
        start(hook, exit);
    }
}

/// Starts a batch's hooks in order and waits for its async hooks.
///
/// A sync hook is called outside the crate's runtime, between two turns of
/// it, as in a batch of sync hooks alone: a hook calling its application's
/// `Handle::block_on` works whatever shares its phase. An async hook's
/// closure is called inside it (`Runtime::enter`), so it can spawn.
///
/// The async hooks are polled together in one future ([`FuturesUnordered`]),
/// not spawned as a task each: a run with 100 000 hooks pays no task
/// header, scheduler queue or join bookkeeping per hook (100 000 hooks ×
/// 100 ms: 172 → 136 ms from SIGTERM to reaped). A hook's panics are caught
/// where it is polled ([`Tracked`](hook::Tracked)), so one hook cannot take
/// the others down. They are polled `unconstrained`: tokio's
/// cooperative budget is per task, and one task polling 100 000 timers
/// would spend it at once, after which every timer answers "pending, try
/// again" (2.6 s for that run, measured). The price: a hook whose awaits
/// are always ready (draining a full channel) is no longer made to yield
/// by the budget, and keeps the other hooks waiting until it waits for
/// something; the deadline still bounds it.
fn run_batch(runtime: &tokio::runtime::Runtime, batch: Vec<Hook>, exit: &Exit) {
    let mut tasks = FuturesUnordered::new();
    let mut unpolled = false;
    let mut hooks = batch.into_iter().peekable();
    while let Some(hook) = hooks.next() {
        if matches!(hook.work, Work::Sync(_)) {
            if unpolled {
                // Let the async hooks registered before this sync hook
                // start their bodies first: start order is registration order.
                runtime.block_on(tokio::task::unconstrained(poll_ready(&mut tasks)));
                unpolled = false;
            }
            start_sync(hook, &mut hooks, exit);
            if superseded() {
                return;
            }
        } else {
            let _inside = runtime.enter();
            if let Some(task) = start(hook, exit) {
                tasks.push(task);
                unpolled = true;
            }
        }
    }
    runtime.block_on(tokio::task::unconstrained(async {
        while tasks.next().await.is_some() {}
    }));
    report::time_limits_passed(&take_passed());
}

/// Polls every async hook that can make progress (the new ones for the
/// first time), without waiting for any.
async fn poll_ready(tasks: &mut FuturesUnordered<hook::Tracked>) {
    std::future::poll_fn(|cx| {
        while let Poll::Ready(Some(())) = tasks.poll_next_unpin(cx) {}
        Poll::Ready(())
    })
    .await;
}
