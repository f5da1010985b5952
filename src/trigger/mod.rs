//! What each trigger does: start the run (or join the one going), then end the process.
//!
//! Every trigger goes through [`RunState::begin`](crate::state::RunState::begin).
//! The winner *initiates*: it publishes the [`Exit`], has the hooks run on a
//! crate thread, and sees that the deadline is kept. Hooks never run on an
//! application thread that triggered the run: it may be panicking (a hook's
//! panic would abort), inside `exit()`, whose thread-locals (tokio's among
//! them) are already destroyed, or an application runtime's worker.
//!
//! There are two shapes of run:
//!
//! - **Detached** ([`run_after_signal`], a panic that unwinds, [`start_exit`]): the
//!   triggering thread goes on (the signal thread is the crate's own and
//!   runs the hooks itself; a panicking thread unwinds as usual, so tokio
//!   turns the panic into a `JoinError` and a lock it held is released; an
//!   async caller keeps its runtime). The hooks run on a crate thread while
//!   a guard thread keeps the deadline, and whichever of the two sees the
//!   run end ends the process.
//! - **Blocking** (`exit()`, [`exit`], a panic under `panic = "abort"`): the
//!   triggering thread cannot go on, so it starts a runner thread and waits
//!   for it up to the deadline, then ends the process.
//!
//! How the process then ends depends on the trigger:
//!
//! | trigger | after the run |
//! |---|---|
//! | signal | `_exit(128 + n)`, or die by the signal |
//! | panic | `_exit(101)` |
//! | `exit_hook::exit(n)` | `std::process::exit(n)`; `_exit(n)` if the run was cut short |
//! | `exit_hook::start_exit(n)` | `_exit(n)`, after flushing stdout |
//! | `exit()` (main returned, `std::process::exit`) | return, so `exit()` goes on |
//!
//! A thread that loses the race waits for the run and then ends the process
//! the way the initiator decided ("the first trigger wins"). A hook that ends
//! the process itself ends the run instead: see [`abandon`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod keeper;

use crate::state::{Ended, STATE};
use crate::sys::Wake;
use crate::{Exit, Phase, Signal, Trigger, ask, config, report, runner, sys};

/// Set when the hooks run with no thread beside them to end the process
/// (none could be created): see [`Run::here_without_guard`].
static UNGUARDED: AtomicBool = AtomicBool::new(false);

/// How long a thread that lost the race waits beyond the deadline before it
/// stops waiting for the initiator.
const JOIN_MARGIN: Duration = Duration::from_secs(1);

/// A run that has started: what it is for, and when it began.
struct Run {
    exit: Exit,
    started: Instant,
}

/// Publishes the run's [`Exit`], with its deadline. The caller has won
/// [`RunState::begin`](crate::state::RunState::begin).
fn start(trigger: Trigger, code: Option<i32>) -> Run {
    let started = Instant::now();
    let exit = Exit::new(trigger, code, started + config::timeout());
    publish(exit, started)
}

/// Publishes `exit`, a run that began at `started`.
fn publish(exit: Exit, started: Instant) -> Run {
    let exit = STATE.publish(exit).clone();
    Run { exit, started }
}

impl Run {
    /// Runs the hooks on the crate's signal thread (idle, since a signal
    /// did not start this run), or a new runner thread where there is
    /// none, and [`wait`](Self::wait)s.
    fn on_runner_thread(&self) -> bool {
        if sys::run_on_signal_thread() {
            self.wait()
        } else {
            self.on_new_thread()
        }
    }

    /// Runs the hooks on a new runner thread and [`wait`](Self::wait)s.
    fn on_new_thread(&self) -> bool {
        if let Err(err) = runner::spawn(self.exit.clone()) {
            report::runner_failed(&err);
            STATE.finish(Ended::CutShort);
        }
        self.wait()
    }

    /// A detached run whose thread could not start (no thread can be
    /// created: a pids cgroup or `RLIMIT_NPROC` exhausted): as for
    /// `exit()`, the crate's signal thread, idle since install, runs the
    /// hooks while this thread keeps the deadline, blocking; then it ends
    /// the process. (Without a signal thread a new runner is tried; if
    /// none starts either, the run ends at once.)
    fn without_thread(&self, err: &std::io::Error) -> ! {
        report::no_thread(err);
        self.on_runner_thread();
        end_as(&self.exit)
    }

    /// The hooks run on this crate thread and no guard could start beside
    /// it (no thread can be created): an alarm keeps the deadline
    /// ([`sys::end_after`]), and this thread ends the process when the
    /// hooks are done. No phase is left behind at its end: the hooks run
    /// in order until they are done or the deadline ends the process.
    fn here_without_guard(&self, err: &std::io::Error) -> ! {
        report::no_thread(err);
        let end = match (self.exit.code(), self.exit.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => -signal.as_raw(),
            (None, None) => 0,
        };
        UNGUARDED.store(true, Ordering::Release);
        let left = self
            .exit
            .deadline()
            .saturating_duration_since(Instant::now());
        if let Err(err) = sys::end_after(left, end) {
            report::deadline_unkept(&err);
        }
        runner::run_here(&self.exit);
        let in_time = STATE.wait_finished(self.exit.deadline());
        self.close(in_time);
        end_as(&self.exit)
    }

    /// Waits for the run to finish, at most until its deadline. At each
    /// phase's end on the way, a runner still in that phase is left behind
    /// and the run goes on from the next phase ([`runner::move_on_from`]):
    /// a stuck drain cannot keep the later phases from running.
    fn wait_phases(&self) -> bool {
        for phase in [Phase::Drain, Phase::Cleanup, Phase::Close] {
            if STATE.wait_finished(runner::phase_end(phase, self.exit.deadline())) {
                return true;
            }
            runner::move_on_from(phase, &self.exit);
        }
        STATE.wait_finished(self.exit.deadline())
    }

    /// Waits for the run to finish or its deadline to pass, then closes the
    /// registry and reports. Returns `true` if every hook finished in time.
    fn wait(&self) -> bool {
        let in_time = self.wait_phases();
        self.close(in_time)
    }

    /// After [`wait_phases`](Self::wait_phases) said whether the run
    /// finished `in_time`: closes the registry and reports; `true` if every
    /// hook finished in time.
    fn close(&self, in_time: bool) -> bool {
        // However the run ended, a hook registered from now on would never run.
        crate::registry::registry().close();
        if in_time {
            STATE.completed()
        } else {
            // A `tracing` subscriber may write through a lock a stuck hook
            // holds: the process ends whether or not the report got out.
            let timeout = self.exit.deadline() - self.started;
            sys::within_a_moment("exit-hook-report", move || {
                report::deadline_passed(timeout, runner::unfinished());
            });
            // Only now: a thread waiting to end the process (`main`
            // returned meanwhile, or called `exit`) ends it once the run is
            // finished, and the report must be out by then.
            STATE.finish(Ended::CutShort);
            false
        }
    }
}

/// Runs the hooks for a run started by `trigger` (ending with `code`) on a
/// new runner thread and waits up to the deadline. The caller has won
/// [`RunState::begin`](crate::state::RunState::begin). Returns the run's
/// [`Exit`] and whether every hook finished in time.
pub(crate) fn initiate(trigger: Trigger, code: Option<i32>) -> (Exit, bool) {
    let run = start(trigger, code);
    let in_time = run.on_runner_thread();
    (run.exit, in_time)
}

/// Starts the signal thread (Unix): installation hands this to
/// [`sys::install_signals`], and to [`sys::restart_after_fork`] in a forked child.
pub(crate) fn start_signal_thread(waiter: sys::SignalWaiter) -> io::Result<()> {
    sys::spawn("exit-hook", move || signal_thread(waiter))
}

/// The signal thread: the crate's one thread before a run. It sleeps until
/// a handler wakes it, and turns what woke it into a run: the hooks of a
/// signal's run, or of one handed over, run here, so no thread starts on
/// the way to the exit.
fn signal_thread(mut waiter: sys::SignalWaiter) {
    // Its first allocation makes the C library set up a malloc arena for
    // this thread (mmap, munmap, mprotect): do that now, at install, rather
    // than between the signal and the exit.
    drop(std::hint::black_box(Box::new(0u64)));
    loop {
        match waiter.wait() {
            Wake::Question(signal) => ask::ask(signal),
            Wake::Run(signal, status) => run_after_signal(signal, status),
            Wake::Handed(exit) => runner::run_here(&exit),
            // (A run going already has its guard.)
            Wake::Quiet if !STATE.is_exiting() => keeper::start(),
            Wake::Quiet => {}
            Wake::Uninstalled => return,
        }
    }
}

/// A handler won the run with `signal` (on the signal thread; on Windows
/// the console handler's): `status` is the one its plan was given at
/// install (`None`: die by the signal). Runs the hooks on this thread, then
/// ends the process.
pub(crate) fn run_after_signal(signal: Signal, status: Option<i32>) -> ! {
    config::wait_for_install();
    run_here_and_end(Arc::new(start(Trigger::Signal(signal), status)))
}

/// Starts a detached run: the hooks run on a new crate thread, which ends
/// the process when the run is over, and the calling thread goes on. The
/// caller has won [`RunState::begin`](crate::state::RunState::begin).
pub(crate) fn initiate_detached(trigger: Trigger, code: Option<i32>) {
    detach(start(trigger, code));
}

/// Has the hooks of `run` run on a new crate thread, which ends the process.
fn detach(run: Run) {
    let run = Arc::new(run);
    let spawned = sys::spawn("exit-hook", {
        let run = Arc::clone(&run);
        move || run_here_and_end(run)
    });
    if let Err(err) = spawned {
        run.without_thread(&err);
    }
}

/// Runs the hooks on this crate thread while another keeps the deadline
/// (the keeper, if the process has one, else a guard thread started now),
/// then ends the process. The keeper ends it if the deadline passes or a
/// hook ends the run early; otherwise this thread does, as soon as the
/// hooks are done.
fn run_here_and_end(run: Arc<Run>) -> ! {
    if !keeper::hand(&run) {
        let guard = sys::spawn("exit-hook-guard", {
            let run = Arc::clone(&run);
            move || keep(&run)
        });
        if let Err(err) = guard {
            run.here_without_guard(&err);
        }
    }
    runner::run_here(&run.exit);
    if STATE.completed() {
        run.wait(); // finished already: closes the registry and reports
        end_as(&run.exit);
    }
    // A hook ended the run, or one was left running at its time limit: the
    // guard reports and ends the process.
    sleep_forever()
}

/// Keeps `run`'s deadline while its hooks run on another crate thread
/// (the keeper's or a guard's work): at each phase's end a runner still in
/// it is left behind; the process ends here if the deadline passes or a
/// hook ended the run early, otherwise the hooks' thread ends it.
fn keep(run: &Run) {
    let in_time = run.wait_phases();
    if in_time && STATE.completed() {
        return; // the hooks' thread reports and ends the process
    }
    run.close(in_time);
    end_as(&run.exit);
}

/// `exit()` was called on this thread: `main` returned or `std::process::exit`.
/// Called from the C library's exit handler, so it must not unwind.
pub(crate) fn on_process_exit(status: Option<i32>) {
    if runner::is_forked_copy() {
        // A child a hook forked calls exit(): it is a process of its own
        // now, ending with its own status; the run is its parent's.
        return;
    }
    if runner::is_runner_thread() {
        abandon("called std::process::exit");
    }
    // `main` returning comes here too, after dropping its own guards, and
    // a guard it took and moved to a thread still at work must hold the
    // run: on the main thread, guards are not let go of (a
    // `std::process::exit` there, which looks the same, is bounded by the
    // drain's time). Another thread can only be calling
    // `std::process::exit`, and never gets back to its guards.
    if sys::is_main_thread() == Some(false) {
        let_go_of_this_threads_guards();
    }
    if STATE.begin() {
        // Returning lets `exit()` go on with the status it was given.
        initiate(Trigger::Normal, status);
    } else {
        join();
    }
}

/// Runs the hooks, then exits with `code`; the calling thread waits for it.
///
/// Like [`std::process::exit`], with the hooks first: they run on the
/// crate's thread with the usual deadline, then the process exits with
/// `code` (through `std::process::exit` when every hook returned, or at once
/// with `_exit` when the deadline cut the run short, since a stuck hook may
/// hold what `exit()` needs). If a run is already going, this waits for it
/// and the process ends with *that* run's status: the first trigger wins.
///
/// **From async code, use [`start_exit`] instead.** This function blocks
/// the calling thread until the process ends: called from a task, it blocks
/// a worker of the application's runtime — all of it, on a current-thread
/// runtime — so a hook that awaits an application task waits for the
/// deadline. [`start_exit`] starts the same run and returns at once.
///
/// Called from inside a hook, it ends the run: the hooks still running are
/// abandoned, the ones not started do not start, and the process exits with
/// the run's status. Nothing runs twice or deadlocks.
///
/// ```no_run
/// exit_hook::add(|exit| eprintln!("closing: {exit}"));
/// exit_hook::exit(3); // prints "closing: exit_hook::exit, exit status 3", exits with 3
/// ```
pub fn exit(code: i32) -> ! {
    if runner::is_forked_copy() {
        std::process::exit(code); // see `on_process_exit`
    }
    if runner::is_runner_thread() {
        abandon("called exit_hook::exit");
    }
    let_go_of_this_threads_guards();
    if !STATE.begin() {
        join();
    }
    if initiate(Trigger::Requested, Some(code)).1 {
        // Every hook returned: end like `std::process::exit`, with exit handlers.
        std::process::exit(code)
    } else {
        // A hook is still running and may hold what `exit()` needs.
        sys::exit_now(code)
    }
}

/// Starts the run and returns at once; the process exits with `code` when
/// the run ends. The non-blocking [`exit`], for async code.
///
/// The hooks run on the crate's thread as for any trigger, with the usual
/// deadline; [`exiting`](crate::exiting) futures resolve, and the calling
/// thread goes on, so the application's runtime keeps running the tasks
/// the hooks wait for. When the run is over, the process ends from the
/// crate's thread with `_exit(code)`, after flushing stdout, as a signal
/// run does (the C library's `atexit` handlers do not run: another thread
/// of the application may still be using what they tear down).
///
/// Returns `true` if this call started the run, `false` if a run was
/// already going (its status stands: the first trigger wins), in which case
/// nothing changes. From inside a hook it does nothing and returns `false`.
/// In a child that a hook (or any thread) forked without exec during a run,
/// a copy of that run, not the run, it ends the child at once with `code`,
/// as [`exit`] does there: the child has no run of its own to start.
///
/// ```no_run
/// # async fn load_config() -> Result<(), std::io::Error> { Ok(()) }
/// # #[tokio::main]
/// # async fn main() {
/// tokio::spawn(async {
///     if let Err(err) = load_config().await {
///         eprintln!("fatal: {err}");
///         exit_hook::start_exit(2); // the hooks run, then the process exits with 2
///     }
/// });
/// exit_hook::exiting().await; // resolves at once after start_exit
/// # }
/// ```
pub fn start_exit(code: i32) -> bool {
    if runner::is_forked_copy() {
        std::process::exit(code); // see `exit`: the run is the parent's
    }
    if !STATE.begin() {
        return false;
    }
    let started = Instant::now();
    detach(publish(
        Exit::by_start_exit(code, started + config::timeout()),
        started,
    ));
    true
}

/// This thread is ending the process and never gets back to the guards it
/// took (`exit` runs no destructor): they hold nothing from now on.
pub(crate) fn let_go_of_this_threads_guards() {
    crate::registry::registry().thread_ending();
    crate::registry::changed();
}

/// Waits for the run another trigger started, then ends the process as it decided.
pub(crate) fn join() -> ! {
    STATE.wait_finished(Instant::now() + config::timeout() + JOIN_MARGIN);
    match STATE.exit() {
        Some(exit) => end_as(exit),
        None => sys::exit_now(1),
    }
}

/// Ends the process the way a run for `exit` decided: the door every run
/// leaves by. (The others: a signal's handler ending the process at once,
/// before or beside a run, in `sys`; `exit`'s `std::process::exit` once
/// every hook returned; a child forked during a run leaving its copy of it,
/// in `runner`.)
pub(crate) fn end_as(exit: &Exit) -> ! {
    match (exit.code(), exit.signal()) {
        (Some(code), _) => sys::exit_now(code),
        (None, Some(signal)) => sys::die_by_signal(signal.as_raw()),
        // A normal exit whose status the C library did not tell: the
        // initiating thread is inside `exit()` and ends the process with it.
        (None, None) => sleep_forever(),
    }
}

/// Blocks this thread until the process ends. Not `thread::park`, which
/// needs the thread's handle: this may be a thread inside `exit()`, whose
/// thread-locals are gone.
fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// A hook ended the process from inside the run (`exit_hook::exit`,
/// `std::process::exit`, or a panic when panics abort). Its thread cannot go
/// back to the hook, so the run ends here: the initiator wakes and ends the
/// process with the status it already had, and this thread sleeps until then.
pub(crate) fn abandon(what: &str) -> ! {
    runner::leave_if_forked_copy();
    if let Some(when) = runner::left_behind() {
        // The run stopped waiting for this hook (its time limit, or its
        // phase's end) and went on: a hook left behind cannot end it or
        // change its status.
        report::left_behind_tried(runner::current_hook(), when, what);
        sleep_forever()
    }
    report::abandoned(runner::current_hook(), what);
    STATE.finish(Ended::CutShort);
    if UNGUARDED.load(Ordering::Acquire) {
        // No thread waits to end the process: this one does.
        end_as(STATE.exit().expect("a run is going"));
    }
    sleep_forever()
}
