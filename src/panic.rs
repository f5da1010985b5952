//! The panic hook: a panic starts the run, and a panicking hook is reported.
//!
//! It wraps the hook that was installed before, which still runs first for
//! panics outside hooks, so the usual message (and backtrace) is printed.
//! The run happens before the hook returns, so it works with
//! `panic = "abort"` too: the abort never comes, the process exits with 101.

use std::panic::{self, PanicHookInfo};

use crate::state::STATE;
use crate::{Panic, Trigger, install, report, runner, sys, trigger};

/// The status after a run started by a panic: Rust's own for a panicking `main`.
pub(crate) const PANIC_STATUS: i32 = 101;

/// Wraps the current panic hook. Call once, not while panicking.
pub(crate) fn install() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| on_panic(info, &previous)));
}

fn on_panic(info: &PanicHookInfo<'_>, previous: &(dyn Fn(&PanicHookInfo<'_>) + Send + Sync)) {
    if let Some(hook) = runner::current_hook() {
        report::hook_panicked(hook, info);
        if cfg!(panic = "abort") {
            // Nothing can catch it; end the run instead of aborting.
            trigger::abandon("panicked");
        }
        return;
    }
    previous(info);
    if runner::is_runner_thread() || !install::config().is_some_and(|config| config.exit_on_panic) {
        return;
    }
    if STATE.begin() {
        trigger::initiate(
            Trigger::Panic(Panic::from_hook_info(info)),
            Some(PANIC_STATUS),
        );
        sys::exit_now(PANIC_STATUS);
    }
    if cfg!(panic = "abort") {
        // Aborting would cut the run short: wait for it and end as it decided.
        trigger::join();
    }
    // A run is going: this thread unwinds as usual, so whatever a hook may be
    // waiting on (a join handle of this thread's task) completes.
}
