//! The panic hook: a panic starts the run, and a panicking hook is reported.
//!
//! It wraps the hook that was installed before, which still runs first for
//! panics outside hooks, so the usual message (and backtrace) is printed.
//!
//! When panics unwind, the panic hook starts a detached run and returns:
//! the panicking thread unwinds as it would have (tokio turns the panic into
//! a `JoinError` and its worker goes on; locks the thread held are released,
//! so a hook that needs them gets them), and the crate's thread ends the
//! process with 101 when the run is over. Under `panic = "abort"` the abort
//! would come as soon as the hook returns, so the run happens before it
//! returns: the abort never comes, the process exits with 101. The same
//! holds for the panic Rust raises, and then aborts on, when a destructor
//! panics while its thread unwinds: the run the first panic started is
//! waited for, and the process exits with its status.

use std::panic::{self, PanicHookInfo};

use crate::state::STATE;
use crate::state::question;
use crate::{Panic, Trigger, config, report, runner, sys, trigger};

/// The status after a run started by a panic: Rust's own for a panicking `main`.
pub(crate) const PANIC_STATUS: i32 = 101;

/// Does what the crate's own panic hook does, from an application's panic
/// hook that replaced it.
///
/// Installing wraps the panic hook that was there. **A later
/// [`std::panic::set_hook`] replaces that wrapper**, and then a panic no
/// longer starts a run: a panic on another thread runs no hook at all, a
/// panic on `main` runs them only as the normal exit Rust's runtime makes
/// of it (status 101), and a panicking hook is no longer named. Crash
/// reporters install their own hook (color-eyre, human-panic, Sentry's
/// panic integration): call this function from yours, after its own work.
///
/// ```no_run
/// exit_hook::add(|exit| eprintln!("bye: {exit}"));
/// std::panic::set_hook(Box::new(|info| {
///     eprintln!("crash report: {info}"); // your reporter's work
///     exit_hook::handle_panic(info); // then the run, and exit status 101
/// }));
/// ```
///
/// It follows the installed configuration
/// ([`Builder::exit_on_panic`](crate::Builder::exit_on_panic)) and does
/// nothing before installation. A hook that *chains* to the one it
/// replaced (taken with `std::panic::take_hook` after installation) already
/// calls the crate's: it must not call this as well.
pub fn handle_panic(info: &PanicHookInfo<'_>) {
    on_panic(info, &|_| {});
}

/// Wraps the current panic hook. Call once, not while panicking.
pub(crate) fn install() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| on_panic(info, &previous)));
}

/// The messages of the panics Rust raises just before it aborts, while a
/// thread unwinds (a destructor panicked during cleanup; an unwind reached
/// a function that cannot unwind). `PanicHookInfo::can_unwind` would say
/// so, but is unstable; these are core's own words.
const ABORTING: [&str; 2] = [
    "panic in a destructor during cleanup",
    "panic in a function that cannot unwind",
];

/// Whether the process aborts when this panic hook returns: under
/// `panic = "abort"`, or for Rust's panic during unwinding.
fn aborts_after(info: &PanicHookInfo<'_>) -> bool {
    cfg!(panic = "abort")
        || (std::thread::panicking()
            && info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|message| ABORTING.contains(message))
            && info
                .location()
                .is_some_and(|at| at.file().ends_with("panicking.rs")))
}

fn on_panic(info: &PanicHookInfo<'_>, previous: &(dyn Fn(&PanicHookInfo<'_>) + Send + Sync)) {
    let aborts = aborts_after(info);
    if let Some(hook) = runner::current_hook() {
        report::hook_panicked(hook, info);
        if aborts {
            // Nothing can catch it; end the run instead of aborting.
            trigger::abandon("panicked");
        }
        return;
    }
    previous(info);
    if let Some(signal) = question::asking_signal() {
        if aborts {
            // A decision that panics counts as "yes" (as under unwinding,
            // where `ask` catches it); nothing can catch this one, so the
            // signal's run starts here and this thread waits for its end.
            let signal = crate::Signal::from_raw(signal);
            report::decision_panicked(signal);
            sys::start_signal_run(signal.as_raw());
            trigger::join();
        }
        return;
    }
    if runner::is_runner_thread() || !config::get().is_some_and(|config| config.exit_on_panic) {
        return;
    }
    if aborts {
        // This thread never unwinds back to the guards it holds.
        trigger::let_go_of_this_threads_guards();
    }
    if STATE.begin() {
        let trigger = Trigger::Panic(Panic::from_hook_info(info));
        if aborts {
            let (exit, _) = trigger::initiate(trigger, Some(PANIC_STATUS));
            trigger::end_as(&exit);
        }
        trigger::initiate_detached(trigger, Some(PANIC_STATUS));
        return;
    }
    if aborts {
        // Aborting would cut the run short: wait for it and end as it decided.
        trigger::join();
    }
    // A run is going: this thread unwinds as usual, so whatever a hook may be
    // waiting on (a join handle of this thread's task) completes.
}
