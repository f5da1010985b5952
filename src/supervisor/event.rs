//! What the supervisor reports: [`Event`], to a listener and to `tracing`.

use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use super::StopReason;
use crate::Signal;

/// What the supervisor does, as it happens; also sent to `tracing`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The child started.
    Started {
        /// Its process id.
        pid: u32,
    },
    /// The child exited.
    Exited {
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// How long it ran.
        uptime: Duration,
    },
    /// The child will be started again after `delay`.
    Restarting {
        /// The wait before the restart.
        delay: Duration,
        /// Restarts so far, this one included.
        restarts: u32,
    },
    /// The supervisor is stopping: `signal` was forwarded to the child.
    Stopping {
        /// The child's process id.
        pid: u32,
        /// The signal forwarded.
        signal: Signal,
    },
    /// The child did not exit within the kill timeout and was killed.
    Killed {
        /// Its process id.
        pid: u32,
    },
    /// No more restarts.
    Done(StopReason),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { pid } => write!(f, "started pid {pid}"),
            Event::Exited {
                pid,
                status,
                uptime,
            } => write!(
                f,
                "pid {pid} exited ({status}) after {} ms",
                uptime.as_millis()
            ),
            Event::Restarting { delay, restarts } => write!(
                f,
                "restarting in {} ms (restart {restarts})",
                delay.as_millis()
            ),
            Event::Stopping { pid, signal } => write!(f, "stopping: sent {signal} to pid {pid}"),
            Event::Killed { pid } => write!(f, "killed pid {pid} after the kill timeout"),
            Event::Done(reason) => match reason {
                StopReason::Spinning { uptime } => write!(
                    f,
                    "gave up: the child is spinning (exited after {} ms)",
                    uptime.as_millis()
                ),
                StopReason::MaxRestarts(n) => write!(f, "gave up: {n} restarts"),
                StopReason::ExitCode(code) => {
                    write!(f, "done: exit code {code} means do not restart")
                }
                StopReason::Stopped(signal) => write!(f, "done: stopped by signal {signal}"),
            },
        }
    }
}

pub(crate) type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// Sends `event` to `tracing` and to the listener, if there is one.
pub(crate) fn emit(listener: Option<&Listener>, event: Event) {
    tracing::info!(%event, "supervisor");
    if let Some(listener) = listener {
        listener(&event);
    }
}
