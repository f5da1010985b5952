//! The run: every hook, once, on the crate's own thread and runtime.
//!
//! The runner thread builds a current-thread tokio runtime and, inside it,
//! takes the registered hooks in batches, oldest first. A sync hook is called
//! right there, so sync hooks run one after another; an async hook is called
//! to make its future, which is spawned as a task, so async hooks run
//! concurrently. When the batch's tasks are done the runner takes the hooks
//! registered meanwhile, until a batch is empty. Then it marks the run
//! finished, which wakes the initiator (see [`trigger`](crate::trigger)).
//!
//! The runtime is the crate's own, so async hooks run when the application's
//! runtime is blocked, busy or already dropped; they can still await its join
//! handles and channels. Panics are caught per hook; the panic hook reports
//! them, naming the hook through [`current_hook`].

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::registry::{BoxFuture, Hook, Work, registry};
use crate::state::STATE;
use crate::{Exit, report};

thread_local! {
    // `const` and without destructors, so they stay usable while a thread exits.
    static IS_RUNNER: Cell<bool> = const { Cell::new(false) };
    static CURRENT_HOOK: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
}

/// Set when the runner ran every hook (not cut short by a hook ending the process).
static COMPLETED: AtomicBool = AtomicBool::new(false);

/// Hooks started and not yet finished, and hooks taken but not yet started.
#[derive(Default)]
pub(crate) struct Progress {
    running: Vec<Option<&'static Location<'static>>>,
    not_started: usize,
}

static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    running: Vec::new(),
    not_started: 0,
});

fn progress() -> MutexGuard<'static, Progress> {
    PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the run left undone when the deadline passed.
#[derive(Debug)]
pub(crate) struct Unfinished {
    pub(crate) running: Vec<&'static Location<'static>>,
    pub(crate) not_started: usize,
}

/// The hooks still running and the hooks never started, for the deadline report.
pub(crate) fn unfinished() -> Unfinished {
    let progress = progress();
    Unfinished {
        running: progress.running.iter().flatten().copied().collect(),
        not_started: progress.not_started + registry().len(),
    }
}

/// Whether the runner ran every hook.
pub(crate) fn completed() -> bool {
    COMPLETED.load(Ordering::Acquire)
}

/// Whether this thread is the runner (hooks run on it).
pub(crate) fn is_runner_thread() -> bool {
    IS_RUNNER.try_with(Cell::get).unwrap_or(false)
}

/// The registration site of the hook running on this thread, if any.
pub(crate) fn current_hook() -> Option<&'static Location<'static>> {
    CURRENT_HOOK.try_with(Cell::get).ok().flatten()
}

/// Starts the runner thread for `exit`.
pub(crate) fn spawn(exit: Exit) -> io::Result<()> {
    thread::Builder::new()
        .name("exit-hook".into())
        .spawn(move || run_here(&exit))?;
    Ok(())
}

/// Runs the hooks on this thread, which becomes the runner, then marks the
/// run finished.
pub(crate) fn run_here(exit: &Exit) {
    IS_RUNNER.set(true);
    if catch_unwind(AssertUnwindSafe(|| run(exit))).is_ok() {
        COMPLETED.store(true, Ordering::Release);
    }
    STATE.finish();
}

fn run(exit: &Exit) {
    // Built for the first batch with an async hook: a run of sync hooks needs none.
    let mut runtime = None;
    loop {
        let batch = registry().take_batch();
        if batch.is_empty() {
            break;
        }
        progress().not_started += batch.len();
        if batch.iter().all(|hook| matches!(hook.work, Work::Sync(_))) {
            for hook in batch {
                start(hook, exit);
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
                    return;
                }
            }
        }
        if let Some(runtime) = &runtime {
            runtime.block_on(run_batch(batch, exit));
        }
    }
    // The hooks' last lines, flushed here where no hook can hold the lock any
    // more (and within the deadline), so ending the process need not.
    let _ = io::stdout().flush();
    if let Some(runtime) = runtime {
        // Drop without waiting for blocking tasks a hook may have left behind.
        runtime.shutdown_background();
    }
}

/// Starts a batch's hooks in order and waits for its async hooks.
async fn run_batch(batch: Vec<Hook>, exit: &Exit) {
    let mut tasks = JoinSet::new();
    let mut unpolled = false;
    for hook in batch {
        if unpolled && matches!(hook.work, Work::Sync(_)) {
            // Let the async hooks registered before this sync hook
            // start their bodies first: start order is registration order.
            tokio::task::yield_now().await;
            unpolled = false;
        }
        if let Some(task) = start(hook, exit) {
            tasks.spawn(task);
            unpolled = true;
        }
    }
    // Panics were reported by the panic hook as they happened.
    while tasks.join_next().await.is_some() {}
}

/// Runs a sync hook to its end, or makes an async hook's task.
fn start(hook: Hook, exit: &Exit) -> Option<Tracked> {
    let Hook { location, work } = hook;
    let slot = Slot::start(location);
    match work {
        Work::Sync(hook) => {
            let _ = slot.run(|| hook(exit));
            None
        }
        Work::Async(hook) => {
            let future = slot.run(|| hook(exit.clone())).ok()?;
            Some(Tracked {
                slot: Some(slot),
                future,
            })
        }
    }
}

/// One started hook: its place in [`Progress`] and its start time.
struct Slot {
    index: usize,
    location: &'static Location<'static>,
    started: Instant,
}

impl Slot {
    fn start(location: &'static Location<'static>) -> Self {
        let mut progress = progress();
        progress.not_started -= 1;
        progress.running.push(Some(location));
        report::hook_started(location);
        Slot {
            index: progress.running.len() - 1,
            location,
            started: Instant::now(),
        }
    }

    /// Runs part of the hook with the hook named for the panic hook. A panic
    /// ends the hook (and was reported); the `Err` says so.
    fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, ()> {
        let previous = CURRENT_HOOK.replace(Some(self.location));
        let result = catch_unwind(AssertUnwindSafe(f));
        CURRENT_HOOK.set(previous);
        result.map_err(|_| ())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        progress().running[self.index] = None;
        report::hook_finished(self.location, self.started.elapsed());
    }
}

/// An async hook's future, naming its hook while it is polled.
struct Tracked {
    slot: Option<Slot>,
    future: BoxFuture,
}

impl Future for Tracked {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(slot) = &this.slot else {
            return Poll::Ready(());
        };
        match slot.run(|| this.future.as_mut().poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            // Finished or panicked: either way the hook is over.
            Ok(Poll::Ready(())) | Err(()) => {
                this.slot = None;
                Poll::Ready(())
            }
        }
    }
}
