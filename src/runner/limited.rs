//! Sync hooks with a time limit: a row of them runs on a helper thread while
//! the runner watches.
//!
//! The helper takes the row's hooks one after another and says which one it
//! is on (under [`Row`]'s lock: a start time and a limit). The runner sleeps
//! until that hook's limit, and wakes only then or when the row is done:
//! it hands nothing over per hook, so a limited hook costs about what an
//! unlimited one does. If the same hook is still running at its limit, the
//! runner reports it and leaves that helper behind with it ([`is_left_behind`]:
//! it can no longer end or change the run, and takes no more hooks), and a
//! new helper goes on with the rest of the row.
//!
//! The helpers are kept: one that finished its row waits for the next, so a
//! run starts a thread for its first row and for each hook left behind,
//! however many limited hooks there are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use super::hook::Slot;
use super::{IS_RUNNER, LEFT_BEHIND, superseded};
use crate::registry::{Hook, Site, Work};
use crate::{Exit, report, sys};

/// Whether `hook` runs in a row of limited sync hooks.
pub(super) fn is_limited_sync(hook: &Hook) -> bool {
    hook.time_limit.is_some() && matches!(hook.work, Work::Sync(_))
}

/// Runs `row`, limited sync hooks in their order, each to its end or its
/// time limit. Where no thread can start, the rest runs here without
/// limits (the deadline still holds).
pub(super) fn run_row(row: Vec<Hook>, exit: &Exit) {
    let row = Arc::new(Row {
        state: Mutex::new(RowState {
            hooks: row.into(),
            current: None,
            helpers: 0,
        }),
        changed: Condvar::new(),
    });
    let (mut left, mut task) = start_helper(&row, exit);
    let mut state = row.lock();
    loop {
        if state.helpers == 0 {
            // Done, or stopped: the run went on without this runner.
            return;
        }
        let Some(&Current {
            location,
            limit,
            until,
        }) = state.current.as_ref()
        else {
            // The helper not started yet: it says when it is.
            state = row.wait(state, None);
            continue;
        };
        if Instant::now() < until {
            // Woken by the row's end, or sleeping again till the limit of
            // the hook the helper has gone on to.
            state = row.wait(state, Some(until));
            continue;
        }
        // The helper is still on this hook at its limit: it stays with it.
        state.current = None;
        state.helpers -= 1;
        left.store(true, Ordering::Release);
        lock_left_tasks().push(task);
        LEFT_BEHIND.store(true, Ordering::Release);
        let more = !state.hooks.is_empty();
        drop(state);
        report::time_limit_passed(location, limit);
        if more && !superseded() {
            (left, task) = start_helper(&row, exit);
        }
        state = row.lock();
    }
}

/// A row's hooks and which one its helper is on.
struct Row {
    state: Mutex<RowState>,
    /// Signalled when a helper starts a hook after none, or ends.
    changed: Condvar,
}

struct RowState {
    hooks: VecDeque<Hook>,
    current: Option<Current>,
    /// Helpers on this row that the runner waits for (not left behind).
    helpers: usize,
}

/// The hook a helper is on (until it takes the next).
struct Current {
    location: Site,
    limit: Duration,
    until: Instant,
}

impl Row {
    fn lock(&self) -> MutexGuard<'_, RowState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(
        &self,
        state: MutexGuard<'a, RowState>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, RowState> {
        match until {
            None => self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                self.changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

/// Starts a helper on the rest of `row`; the flag that leaves it behind,
/// and the number of its task (for [`is_left_behind`]).
fn start_helper(row: &Arc<Row>, exit: &Exit) -> (Arc<AtomicBool>, u64) {
    let left = Arc::new(AtomicBool::new(false));
    let task = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
    row.lock().helpers += 1;
    let work: Task = Box::new({
        let (row, left, exit) = (row.clone(), left.clone(), exit.clone());
        let generation = super::generation();
        move || {
            // Like the runner: ending the process from a hook ends the run.
            IS_RUNNER.set(true);
            super::GENERATION.set(generation);
            TASK.set(task);
            take_hooks(&row, &left, &exit);
            TASK.set(0);
        }
    });
    let refused = match helper() {
        Ok(helper) => helper.send(work).err().map(|mpsc::SendError(work)| work),
        Err(err) => {
            report::runner_failed(&err);
            Some(work)
        }
    };
    if let Some(work) = refused {
        // No thread: this one runs the rest, without the limits.
        work();
    }
    (left, task)
}

/// On a helper: runs the row's hooks in order until none is left, the run
/// left this helper behind, or the run went on without its runner.
fn take_hooks(row: &Row, left: &AtomicBool, exit: &Exit) {
    loop {
        let hook = {
            let mut state = row.lock();
            let next = if left.load(Ordering::Acquire) || superseded() {
                None
            } else {
                state.hooks.pop_front()
            };
            let Some(hook) = next else {
                if !left.load(Ordering::Acquire) {
                    state.helpers -= 1;
                    state.current = None;
                }
                drop(state);
                row.changed.notify_all();
                return;
            };
            // A row holds limited hooks only, each within `MAX_TIMEOUT`.
            let limit = hook
                .time_limit
                .map_or(crate::config::MAX_TIMEOUT, |l| l.get());
            let was_idle = state.current.is_none();
            state.current = Some(Current {
                location: hook.location,
                limit,
                until: Instant::now() + limit,
            });
            if was_idle {
                row.changed.notify_all();
            }
            hook
        };
        // The row keeps the hook's start (`until`): the slot reads no clock.
        let slot = Slot::start(hook.location, hook.phase, false);
        if let Work::Sync(work) = hook.work {
            let _ = slot.run(|| work(exit));
        }
        drop(slot);
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// Idle helper threads, each waiting for a row on its channel.
static IDLE: Mutex<Vec<mpsc::Sender<Task>>> = Mutex::new(Vec::new());

/// A helper thread: an idle one, or a new one.
fn helper() -> std::io::Result<mpsc::Sender<Task>> {
    if let Some(idle) = IDLE.lock().unwrap_or_else(PoisonError::into_inner).pop() {
        return Ok(idle);
    }
    let (send, receive) = mpsc::channel::<Task>();
    let back = send.clone();
    sys::spawn("exit-hook-limited", move || {
        while let Ok(work) = receive.recv() {
            work();
            IDLE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(back.clone());
        }
    })?;
    Ok(send)
}

thread_local! {
    /// On a helper thread: the number of the task it runs (0: none). A
    /// plain number, with no destructor: `std::process::exit` from a hook
    /// destroys the thread's thread-locals before the crate's exit handler
    /// asks whether that hook was left behind, and this one stays readable.
    static TASK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The tasks numbered so far (from 1: 0 is none).
static NEXT_TASK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The tasks whose hook the run left behind at its time limit.
static LEFT_TASKS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn lock_left_tasks() -> MutexGuard<'static, Vec<u64>> {
    LEFT_TASKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this thread runs a hook the run left behind at its time limit:
/// it can no longer end or change the run.
pub(crate) fn is_left_behind() -> bool {
    let task = TASK.try_with(std::cell::Cell::get).unwrap_or(0);
    task != 0 && lock_left_tasks().contains(&task)
}
