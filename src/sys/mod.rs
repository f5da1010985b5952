//! The operating system: signal handlers, the exit handler, ending the process.
//!
//! Both back-ends offer the same crate-private items, so no other file needs
//! a `cfg` for the platform:
//!
//! - `SIGHUP`, `SIGINT`, `SIGTERM`, `SIGQUIT`, `SIGBREAK` and `DEFAULT_SIGNALS`;
//! - `signal_name` and `check_signal`;
//! - `install_exit_handler`, which makes `exit()` call
//!   [`trigger::on_process_exit`](crate::trigger::on_process_exit);
//! - `install_signals`, whose handlers race for the run through
//!   [`STATE`](crate::state::STATE) and whose thread calls
//!   [`trigger::on_signal`](crate::trigger::on_signal);
//! - `exit_now` and `die_by_signal`, which end the process without running
//!   anything else;
//! - for the supervisor: `send_signal` and `separate_process_group`.

use std::io::{self, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub(crate) use imp::{
    DEFAULT_SIGNALS, SIGBREAK, SIGHUP, SIGINT, SIGQUIT, SIGTERM, check_signal, die_by_signal,
    exit_now, install_exit_handler, install_signals, signal_name,
};
#[cfg(feature = "supervisor")]
pub(crate) use imp::{send_signal, separate_process_group};

/// What a signal handler does, decided at install time so that the handler
/// itself only reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalPlan {
    /// The signal number.
    pub(crate) signal: i32,
    /// The exit code after a run it started; `None` to die by the signal.
    pub(crate) status: Option<i32>,
    /// Whether it ends the process at once when a run is already going.
    pub(crate) force: bool,
}

/// How long ending the process waits for stdout to flush.
const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// Flushes what the standard library buffers for stdout, so the hooks' last
/// lines are not lost when the process ends without `exit()`.
///
/// A run that completed has flushed already: the runner does it as its last
/// step, within the deadline. Otherwise the flush takes stdout's lock, which
/// a hook stuck at the deadline may hold for ever (as may a thread blocked
/// writing to a full pipe), so it happens on a helper thread and the process
/// waits for it at most [`FLUSH_WAIT`].
fn flush_stdout() {
    if crate::runner::completed() {
        return;
    }
    let (done, flushed) = mpsc::channel();
    let helper = thread::Builder::new()
        .name("exit-hook-flush".into())
        .spawn(move || {
            let _ = io::stdout().flush();
            let _ = done.send(());
        });
    if helper.is_ok() {
        let _ = flushed.recv_timeout(FLUSH_WAIT);
    }
}
