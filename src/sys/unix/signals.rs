//! The signal handlers and the signal thread.
//!
//! A handler only does async-signal-safe work: one compare-and-swap on the
//! run state, then either a one-byte wake-up of the signal thread (the
//! signal started the run) or `_exit(2)` (a second signal forces the exit).
//! The signal thread (named `exit-hook`) is the crate's thread before a
//! run (with, once the process has run a moment, the guard it starts when
//! it says [`Wake::Quiet`]). It is the trigger's ([`StartThread`]); here is what it
//! sleeps on, [`SignalWaiter::wait`]: `recv(2)` on the wake-up socket,
//! costing nothing while idle, then what woke it (a run a handler won, a
//! question pending, a run handed over), as a [`Wake`].
//!
//! What a real process does around them:
//!
//! - **Inherited ignored signals.** Under `nohup` (SIGHUP ignored) or as a
//!   background job of a non-interactive shell (SIGINT ignored), the parent
//!   asked for the signal to be ignored; installing leaves such a signal
//!   ignored unless the builder says to take it anyway.
//! - **Signals the process sends itself** (a hook's `kill(0, SIGTERM)` to
//!   stop its children reaches the process too) do not force the exit
//!   during a run: the handler reads the sender from `siginfo`.
//! - **fork() without exec.** The child has the handlers but not the signal
//!   thread, and shares the wake-up socket with the parent. A fork handler
//!   closes the child's copies; until the child calls into the crate again
//!   (which starts its own signal thread, [`restart_after_fork`]), a signal
//!   ends it as the signal's plan says, without hooks, and never reaches
//!   the parent.
//! - **Signal masks.** The signal thread unblocks the planned signals (the
//!   installing thread may have blocked them) and blocks SIGPIPE.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::reraise;
use super::wake::{self, Woken};
use crate::Signal;
use crate::state::STATE;
use crate::state::question::{QUESTIONS, Raised};
use crate::sys::{SignalPlan, StartThread, Wake};

/// The plans installed, for the signal thread (the child's, after a fork).
static PLANS: OnceLock<Arc<[SignalPlan]>> = OnceLock::new();
/// Whether this process has a signal thread: not before install, nor in a
/// child forked without exec until it starts its own.
static THREAD_HERE: AtomicBool = AtomicBool::new(false);
/// Set by the fork handler in a child; cleared when the child starts its thread.
static NEEDS_THREAD: AtomicBool = AtomicBool::new(false);
/// How many forks without exec this process is from the one that
/// installed (each child's fork handler adds one): what the crate's
/// threads were started by is told apart by it, not by the pid, which a
/// child in a new pid namespace may share.
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Set when a run is handed to the signal thread ([`run_on_signal_thread`]).
static HANDED: AtomicBool = AtomicBool::new(false);
/// The planned signals as a bit set (bit n for signal n), for the crate
/// threads' masks.
static PLANNED: AtomicU64 = AtomicU64::new(0);

/// The signals the handlers are (being) installed for.
pub(super) fn planned() -> impl Iterator<Item = i32> {
    let set = PLANNED.load(Ordering::Acquire);
    (1..64).filter(move |signal| set & (1 << signal) != 0)
}

/// Registers a handler for every planned signal and has `start_thread`
/// start the signal thread with its [`SignalWaiter`]; returns the signals
/// left alone because they were inherited as ignored (unless
/// `take_ignored`). All or nothing: on an error every signal's previous
/// disposition is back.
pub(crate) fn install_signals(
    plans: &[SignalPlan],
    take_ignored: bool,
    start_thread: StartThread,
) -> io::Result<Vec<Signal>> {
    let mut left_ignored = Vec::new();
    let mut taken = Vec::with_capacity(plans.len());
    for &plan in plans {
        let previous = disposition(plan.signal)?;
        if previous.sa_sigaction == libc::SIG_IGN && !take_ignored {
            left_ignored.push(Signal::from_raw(plan.signal));
        } else {
            taken.push((plan, previous));
        }
    }
    if taken.is_empty() {
        return Ok(left_ignored);
    }
    let plans: Arc<[SignalPlan]> = taken.iter().map(|(plan, _)| *plan).collect();
    let set = plans
        .iter()
        .filter(|plan| (1..64).contains(&plan.signal))
        .fold(0, |set, plan| set | 1 << plan.signal);
    PLANNED.store(set, Ordering::Release);
    register_fork_handler()?;
    if let Err(err) = start(start_thread, Arc::clone(&plans)) {
        PLANNED.store(0, Ordering::Release);
        return Err(err);
    }
    let mut registered = Vec::with_capacity(taken.len());
    for (plan, previous) in &taken {
        let plan = *plan;
        // SAFETY: `in_handler` is async-signal-safe: atomics, fstat(2),
        // send(2), write(2), getpid(2), _exit(2) and `reraise`.
        match unsafe {
            signal_hook_registry::register_sigaction(plan.signal, move |info| {
                in_handler(&plan, info);
            })
        } {
            Ok(id) => registered.push((id, plan.signal, previous)),
            Err(err) => {
                for (id, signal, previous) in registered {
                    signal_hook_registry::unregister(id);
                    // signal-hook leaves its own handler in place, which
                    // with no action ignores the signal: put back what was there.
                    // SAFETY: `previous` is what sigaction(2) reported for `signal`.
                    unsafe { libc::sigaction(signal, previous, std::ptr::null_mut()) };
                }
                // The signal thread sees its socket vanish and ends.
                THREAD_HERE.store(false, Ordering::Release);
                PLANNED.store(0, Ordering::Release);
                wake::close();
                return Err(err);
            }
        }
    }
    let _ = PLANS.set(plans);
    Ok(left_ignored)
}

/// In a child forked without exec, has `start_thread` start its own signal
/// thread: the crate's calls (`add`, `hold_exit`, `exiting`, …) call this.
pub(crate) fn restart_after_fork(start_thread: StartThread) -> io::Result<()> {
    if NEEDS_THREAD.load(Ordering::Relaxed) && NEEDS_THREAD.swap(false, Ordering::AcqRel) {
        if let Some(plans) = PLANS.get() {
            return start(start_thread, Arc::clone(plans));
        }
    }
    Ok(())
}

/// Hands the run already published (by a trigger other than a signal) to
/// the signal thread, which runs its hooks: the thread is there and idle,
/// so none has to start on the way to the exit. The caller keeps the
/// deadline. `false` if this process has no signal thread.
pub(crate) fn run_on_signal_thread() -> bool {
    if !THREAD_HERE.load(Ordering::Acquire) {
        return false;
    }
    HANDED.store(true, Ordering::Release);
    // If the socket is gone, the thread finds the run once it made a new one.
    wake::wake();
    true
}

/// Starts the run for `signal` from a thread other than its handler (the
/// application answered its question "exit"), as its handler would have:
/// the signal thread runs it. `false` if a run had started already.
pub(crate) fn start_signal_run(signal: i32) -> bool {
    if STATE.begin_from_signal(signal) {
        wake::wake();
        true
    } else {
        false
    }
}

/// Whether this process is a child forked (without exec) from the one that installed.
pub(crate) fn forked() -> bool {
    forks() > 0
}

/// How many forks without exec this process is from the one that installed.
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Acquire)
}

/// Makes the wake-up socket and has `start_thread` start the signal thread
/// that waits on it. Made here, before the thread exists: moving its ends
/// up to [`LOWEST`](super::wake) grows the descriptor table, which in a
/// process of several threads waits for an RCU grace period (measured:
/// 17 ms on the signal thread, against microseconds here).
fn start(start_thread: StartThread, plans: Arc<[SignalPlan]>) -> io::Result<()> {
    let receiver = wake::pair()?;
    THREAD_HERE.store(true, Ordering::Release);
    let waiter = SignalWaiter {
        receiver,
        plans,
        quiet_at: Some(Instant::now() + QUIET_AFTER),
    };
    if let Err(err) = start_thread(waiter) {
        THREAD_HERE.store(false, Ordering::Release);
        wake::close();
        return Err(err);
    }
    Ok(())
}

/// The signal's current disposition.
fn disposition(signal: i32) -> io::Result<libc::sigaction> {
    let mut current = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction(2) only writes the current one.
    if unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sigaction(2) succeeded and filled it.
    Ok(unsafe { current.assume_init() })
}

fn register_fork_handler() -> io::Result<()> {
    static REGISTERED: OnceLock<i32> = OnceLock::new();
    extern "C" fn in_child() {
        // Async-signal-safe only: the child of a multithreaded process.
        THREAD_HERE.store(false, Ordering::Release);
        FORKS.fetch_add(1, Ordering::AcqRel);
        NEEDS_THREAD.store(true, Ordering::Release);
        // The parent's pending questions are this child's to ask again.
        QUESTIONS.after_fork();
        // The inherited ends lead to the parent's thread: a signal to the
        // child must not wake it.
        wake::close();
    }
    // SAFETY: `in_child` is a plain function for the whole process.
    let failed =
        *REGISTERED.get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(in_child)) });
    if failed == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(failed))
    }
}

/// The signal handler's work. Async-signal-safe.
fn in_handler(plan: &SignalPlan, info: &libc::siginfo_t) {
    if !THREAD_HERE.load(Ordering::Acquire) {
        // A child forked without exec that has not called into the crate
        // since: no thread here can run the hooks.
        end(plan, b" in a forked child without its exit_hook thread: ");
    }
    if !STATE.is_exiting() {
        // The application may want to be asked first (`confirm_exit`).
        match QUESTIONS.raise(plan.signal) {
            Raised::NotAsked => {}
            Raised::Ask => {
                // The signal thread has the question asked.
                wake::wake();
                return;
            }
            Raised::Again => {
                if plan.force && !sent_by_this_process(info) {
                    // The question waits for its answer on the line: end it.
                    // SAFETY: write(2) is async-signal-safe; the byte is static.
                    unsafe { libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1) };
                    end(plan, b" while its question is pending: ");
                }
                return;
            }
        }
    }
    if STATE.begin_from_signal(plan.signal) {
        // If the socket is gone, the signal thread is making a new one and
        // finds the run when it has.
        wake::wake();
    } else if plan.force && !sent_by_this_process(info) {
        end(plan, b" during the shutdown run: ");
    }
}

/// Ends the process as `plan` says, after one line on stderr. Async-signal-safe.
fn end(plan: &SignalPlan, context: &[u8]) -> ! {
    let mut line = [0u8; 160];
    let len = plan.forced_line(context, &mut line);
    // SAFETY: write(2) is async-signal-safe; `line` is ours and holds `len` bytes.
    unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len) };
    match plan.status {
        // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
        Some(code) => unsafe { libc::_exit(code) },
        None => reraise(plan.signal),
    }
}

/// Whether the process sent this signal to itself (`kill(0, …)`, `raise`).
fn sent_by_this_process(info: &libc::siginfo_t) -> bool {
    // The codes of a signal sent by a process (`kill`, `sigqueue`, `tgkill`),
    // for which `si_pid` is the sender. Elsewhere only `si_pid` is read:
    // the kernel's own signals leave it 0.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let from_a_process = [libc::SI_USER, libc::SI_QUEUE, libc::SI_TKILL].contains(&info.si_code);
    // <sys/signal.h>: SI_USER 0x10001, SI_QUEUE 0x10002 (not in the libc crate).
    #[cfg(target_vendor = "apple")]
    let from_a_process = [0x10001, 0x10002].contains(&info.si_code);
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    let from_a_process = true;
    // SAFETY: `si_pid` is valid for these codes; getpid(2) is async-signal-safe.
    from_a_process && unsafe { info.si_pid() == libc::getpid() }
}

/// How long after its start the signal thread, with nothing to do, says
/// the process is not a short-lived one ending at once ([`Wake::Quiet`]).
const QUIET_AFTER: Duration = Duration::from_millis(10);

/// The signal thread's side of the handlers: what it sleeps on.
pub(crate) struct SignalWaiter {
    receiver: wake::Receiver,
    plans: Arc<[SignalPlan]>,
    /// When [`Wake::Quiet`] is said, unless it was.
    quiet_at: Option<Instant>,
}

impl SignalWaiter {
    /// Sleeps until there is something for the signal thread to do, and
    /// says what. Whatever was pending when it is called comes first, so a
    /// signal that won the run before the thread started is not lost, nor
    /// one that won it while the socket was being made anew: a socket made
    /// is published, then the flags looked at again, as a handler sets its
    /// flag, then looks for the socket (a fence on each side), so one of
    /// the two sees the other.
    pub(crate) fn wait(&mut self) -> Wake {
        loop {
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(signal) = QUESTIONS.take_pending() {
                return Wake::Question(Signal::from_raw(signal));
            }
            if let Some(signal) = STATE.take_signal() {
                let status = match self.plans.iter().find(|plan| plan.signal == signal) {
                    Some(plan) => plan.status,
                    None => Some(Signal::from_raw(signal).shell_status()),
                };
                return Wake::Run(Signal::from_raw(signal), status);
            }
            if HANDED.swap(false, Ordering::AcqRel) {
                if let Some(exit) = STATE.exit() {
                    return Wake::Handed(exit.clone());
                }
            }
            let quiet_in = self
                .quiet_at
                .map(|at| at.saturating_duration_since(Instant::now()));
            let woken = match quiet_in {
                Some(Duration::ZERO) => Woken::Quiet,
                quiet_in => self.receiver.wait(quiet_in),
            };
            match woken {
                Woken::Byte => {}
                Woken::Quiet => {
                    self.quiet_at = None;
                    return Wake::Quiet;
                }
                Woken::Gone => {
                    if !THREAD_HERE.load(Ordering::Acquire) {
                        return Wake::Uninstalled;
                    }
                    // The old receiver stays until the new pair is made:
                    // the descriptor number the crate names stays its own.
                    match wake::pair() {
                        // Installation may have failed meanwhile: its
                        // `close` came first, or sees this pair.
                        Ok(_) if !THREAD_HERE.load(Ordering::SeqCst) => {
                            wake::close();
                            return Wake::Uninstalled;
                        }
                        Ok(new) => self.receiver = new,
                        // Out of descriptors, say: try again soon; a signal
                        // that wins meanwhile is found above.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        }
    }
}
