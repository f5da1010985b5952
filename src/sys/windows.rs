//! Windows: the CRT's `atexit`; console control events are not handled yet.
//!
//! Panics, `exit_hook::exit` and returning from `main` run the hooks. Console
//! events (Ctrl+C, Ctrl+Break, close, logoff, shutdown) need a console control
//! handler that blocks until the run ends; until it lands, no signal can be
//! configured and [`check_signal`] says so.

use std::io;
use std::os::raw::c_int;

use super::SignalPlan;
use crate::Signal;

// The numbers Node uses for the console events.
pub(crate) const SIGHUP: i32 = 1;
pub(crate) const SIGINT: i32 = 2;
pub(crate) const SIGQUIT: i32 = 3;
pub(crate) const SIGTERM: i32 = 15;
const SIGBREAK: i32 = 21;

/// No console events are handled yet, so no signal is configured by default.
pub(crate) const DEFAULT_SIGNALS: &[Signal] = &[];

pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    match signal {
        SIGHUP => Some("SIGHUP"),
        SIGINT => Some("SIGINT"),
        SIGQUIT => Some("SIGQUIT"),
        SIGTERM => Some("SIGTERM"),
        SIGBREAK => Some("SIGBREAK"),
        _ => None,
    }
}

pub(crate) fn check_signal(_signal: i32) -> Result<(), &'static str> {
    Err("console control events are not handled on Windows yet")
}

unsafe extern "C" {
    fn atexit(function: extern "C" fn()) -> c_int;
}

pub(crate) fn install_exit_handler() -> io::Result<()> {
    extern "C" fn handler() {
        let _ = std::panic::catch_unwind(|| crate::trigger::on_process_exit(None));
    }
    // SAFETY: `handler` is a plain function valid for the whole process that never unwinds.
    if unsafe { atexit(handler) } != 0 {
        return Err(io::Error::other(
            "the C runtime refused to register an exit handler",
        ));
    }
    Ok(())
}

pub(crate) fn install_signals(plans: &[SignalPlan]) -> io::Result<()> {
    // `check_signal` rejects every signal, so there is never a plan here.
    debug_assert!(plans.is_empty());
    Ok(())
}

pub(crate) fn exit_now(code: i32) -> ! {
    super::flush_stdout();
    std::process::exit(code)
}

/// Windows has no death by signal; the status is 128 + n as with the default policy.
pub(crate) fn die_by_signal(signal: i32) -> ! {
    exit_now(128 + signal)
}
