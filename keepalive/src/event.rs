//! What the supervisor reports: [`Event`], to a listener and to `tracing`.

use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use super::StopReason;
use exit_hook::Signal;

/// What the supervisor does, as it happens; also sent to `tracing`.
///
/// Serialized (`keepalive events`, JSON) with its kind under `event` in
/// kebab case (`reload-done`, `gave-up`), durations in milliseconds
/// (`uptime_ms`), an exit status as `code` and `signal`, a signal as its
/// number.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
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
        #[serde(flatten, serialize_with = "json::exit_status")]
        status: ExitStatus,
        /// How long it ran.
        #[serde(rename = "uptime_ms", serialize_with = "json::millis")]
        uptime: Duration,
    },
    /// The child will be started again after `delay`.
    Restarting {
        /// The wait before the restart.
        #[serde(rename = "delay_ms", serialize_with = "json::millis")]
        delay: Duration,
        /// Restarts so far, this one included.
        restarts: u32,
    },
    /// The supervisor is stopping: `signal` was forwarded to the child.
    Stopping {
        /// The child's process id.
        pid: u32,
        /// The signal forwarded.
        #[serde(serialize_with = "json::signal")]
        signal: Signal,
    },
    /// The child did not exit within the kill timeout and was killed.
    Killed {
        /// Its process id.
        pid: u32,
    },
    /// A listening socket is bound, held for the workers (Unix).
    Listening {
        /// What it is bound to (`127.0.0.1:8080`, `unix:/run/app.sock`).
        addr: String,
    },
    /// A worker said `READY=1` on its notification socket.
    Ready {
        /// Its process id.
        pid: u32,
    },
    /// A worker said `STOPPING=1`: it is shutting down.
    Draining {
        /// Its process id.
        pid: u32,
    },
    /// The time a reload schedule (`--cron-reload`) names has come: a
    /// reload starts.
    #[serde(rename = "scheduled-reload")]
    Scheduled,
    /// A stopping worker said `EXTEND_TIMEOUT_USEC=`: it is killed no
    /// sooner than `more` from now (within the supervisor's own deadline).
    Extended {
        /// Its process id.
        pid: u32,
        /// How much longer it asked for.
        #[serde(rename = "more_ms", serialize_with = "json::millis")]
        more: Duration,
    },
    /// A worker said `STATUS=…`.
    Status {
        /// Its process id.
        pid: u32,
        /// What it said.
        status: String,
    },
    /// A worker said another `KEY=value` line on its notification socket
    /// (`MAINPID=`, `ERRNO=`, an application's own `X_…=`).
    Said {
        /// Its process id.
        pid: u32,
        /// The line.
        line: String,
    },
    /// A worker said more on its notification socket than is reported
    /// (at most 10 reports a second): this many were not.
    Quieted {
        /// Its process id.
        pid: u32,
        /// How many were not reported.
        dropped: u64,
    },
    /// A rolling reload started (SIGHUP): every worker is replaced, one at a time.
    Reloading {
        /// How many workers it replaces.
        workers: usize,
    },
    /// Every worker was replaced.
    #[serde(rename = "reload-done")]
    Reloaded,
    /// A restart (`keepalive restart NAME`): every worker is stopped, then
    /// every slot starts afresh; the listeners stay bound meanwhile.
    Restart {
        /// How many workers are stopped.
        workers: usize,
    },
    /// The number of workers changes (`keepalive scale NAME N`): new ones
    /// start, or the last ones are stopped gracefully.
    Scaling {
        /// How many there were.
        from: usize,
        /// How many there will be.
        to: usize,
    },
    /// A reload stopped: a new worker did not become ready. The workers
    /// not replaced yet keep serving.
    ReloadFailed {
        /// What went wrong.
        reason: String,
    },
    /// A worker could not be started (the program is missing, not
    /// executable, …): that slot's failure, decided by its restart policy;
    /// the other workers serve on.
    StartFailed {
        /// Which of the workers (0 for the first).
        slot: usize,
        /// What went wrong.
        reason: String,
    },
    /// One slot stopped restarting; the other workers serve on. When every
    /// slot has, [`Event::Done`] follows.
    GaveUp {
        /// Which of the workers (0 for the first).
        slot: usize,
        /// Why.
        #[serde(skip)]
        reason: StopReason,
    },
    /// A worker started with `wait_ready` has not said `READY=1` within the
    /// listen timeout (said once; it keeps running).
    NotReady {
        /// Its process id.
        pid: u32,
        /// How long it has been running.
        #[serde(rename = "waited_ms", serialize_with = "json::millis")]
        waited: Duration,
    },
    /// A notification for a worker's socket came from a process that may
    /// not say it (not the worker nor in its process tree; or, for
    /// `STOPPING=1`, not the worker itself) and was ignored (Linux).
    Refused {
        /// The worker whose socket it was.
        pid: u32,
        /// The process that sent it.
        sender: u32,
        /// What it said.
        #[serde(rename = "said")]
        message: String,
    },
    /// An ended worker left processes behind; they are sent the stop
    /// signal and killed at the kill timeout.
    LeftBehind {
        /// The process, or the process group.
        pid: u32,
        /// Whether `pid` is the worker's process group (the rest of it).
        group: bool,
    },
    /// The HTTP health check failed too often: every worker is replaced,
    /// one at a time, each new one ready first (with one worker, a
    /// [`Replacing`](Event::Replacing) follows instead).
    HealthFailed {
        /// What the checks found.
        reason: String,
    },
    /// An unhealthy worker is being replaced, ready-first: its replacement
    /// starts, and it is stopped once the replacement is ready.
    Replacing {
        /// The unhealthy worker.
        pid: u32,
        /// Why: no `WATCHDOG=1` in time, or its memory over the limit.
        reason: String,
    },
    /// A watched path changed: a rolling reload follows.
    Changed {
        /// The path (the first of a burst).
        path: String,
    },
    /// The supervisor listens for control commands (Unix).
    Control {
        /// The name it is controlled by.
        name: String,
        /// Its control socket.
        socket: String,
    },
    /// The predictable runtime directory (`keepalive-UID` in the
    /// temporary directory) was somebody else's, or open to others, and
    /// was not used: a private one was made instead (Unix).
    RuntimeDirRefused {
        /// What was wrong with it.
        reason: String,
    },
    /// A log file cannot be written (a full disk, most often): its lines
    /// are dropped, counted, until it can be again. Said once.
    LogDropping {
        /// The log file.
        path: String,
        /// Why the write failed.
        reason: String,
    },
    /// A log file that could not be written is written again.
    LogResumed {
        /// The log file.
        path: String,
        /// How many lines were dropped meanwhile.
        dropped: u64,
    },
    /// A stop was forced (SIGQUIT): every worker and what it left is
    /// killed now, whatever its kill timeout.
    Forced,
    /// In a [`Group`](crate::Group): the app waits for `app`, which it
    /// starts [`after`](crate::Supervisor::after), to be ready before it
    /// starts its workers. Said once.
    Waiting {
        /// The app it waits for.
        app: String,
    },
    /// No more restarts.
    #[serde(serialize_with = "json::nothing")]
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
            Event::Listening { addr } => write!(f, "listening on {addr}"),
            Event::Ready { pid } => write!(f, "pid {pid} is ready"),
            Event::Draining { pid } => write!(f, "pid {pid} is stopping"),
            Event::Scheduled => f.write_str("scheduled reload"),
            Event::Extended { pid, more } => {
                write!(f, "pid {pid} asks {} ms more to stop", more.as_millis())
            }
            Event::Status { pid, status } => write!(f, "pid {pid} status: {status}"),
            Event::Said { pid, line } => write!(f, "pid {pid} says {line}"),
            Event::Quieted { pid, dropped } => write!(
                f,
                "pid {pid} said {dropped} more thing(s) on its notification socket, not shown"
            ),
            Event::Reloading { workers } => {
                write!(f, "reloading: replacing {workers} worker(s) one at a time")
            }
            Event::Reloaded => f.write_str("reload done: every worker replaced"),
            Event::Restart { workers } => write!(
                f,
                "restart: stopping {workers} worker(s), then starting them again"
            ),
            Event::Scaling { from, to } if to > from => {
                write!(
                    f,
                    "scaling: from {from} to {to} worker(s), starting {}",
                    to - from
                )
            }
            Event::Scaling { from, to } => {
                write!(
                    f,
                    "scaling: from {from} to {to} worker(s), stopping {}",
                    from - to
                )
            }
            Event::ReloadFailed { reason } => {
                write!(f, "reload failed: {reason}; the old workers keep serving")
            }
            Event::StartFailed { slot, reason } => {
                write!(f, "worker {slot} could not start: {reason}")
            }
            Event::GaveUp { slot, reason } => {
                write!(f, "worker {slot} ")?;
                gave_up(f, reason)?;
                f.write_str("; the other workers keep serving")
            }
            Event::NotReady { pid, waited } => write!(
                f,
                "pid {pid} has not said READY=1 after {} ms (the listen timeout)",
                waited.as_millis()
            ),
            Event::Refused {
                pid,
                sender,
                message,
            } => write!(
                f,
                "ignored {message} on pid {pid}'s socket from pid {sender}, which may not say it"
            ),
            Event::LeftBehind { pid, group: true } => {
                write!(f, "stopping what pid {pid} left in its process group")
            }
            Event::LeftBehind { pid, group: false } => {
                write!(f, "stopping pid {pid}, left behind by an ended worker")
            }
            Event::HealthFailed { reason } => write!(
                f,
                "health check: {reason}; replacing every worker, one at a time"
            ),
            Event::Replacing { pid, reason } => {
                write!(f, "replacing pid {pid}: {reason}")
            }
            Event::Changed { path } => write!(f, "{path} changed: reloading"),
            Event::Control { name, socket } => {
                write!(f, "controlled as {name} ({socket})")
            }
            Event::RuntimeDirRefused { reason } => {
                write!(f, "{reason}; using a private directory instead")
            }
            Event::LogDropping { path, reason } => write!(
                f,
                "cannot write the log {path} ({reason}): dropping its lines until it can be"
            ),
            Event::LogResumed { path, dropped } => {
                write!(f, "writing the log {path} again; {dropped} line(s) dropped")
            }
            Event::Forced => f.write_str("forced: killing every worker now"),
            Event::Waiting { app } => write!(f, "waits for {app} to be ready"),
            Event::Done(StopReason::Stopped(Some(signal))) => {
                write!(f, "done: stopped by {signal}")
            }
            Event::Done(StopReason::Stopped(None)) => f.write_str("done: stopped"),
            Event::Done(StopReason::ExitCode(code)) => {
                write!(f, "done: exit code {code} means do not restart")
            }
            Event::Done(reason) => gave_up(f, reason),
        }
    }
}

fn gave_up(f: &mut fmt::Formatter<'_>, reason: &StopReason) -> fmt::Result {
    match reason {
        StopReason::Spinning { uptime } => write!(
            f,
            "gave up: the child is spinning (exited after {} ms)",
            uptime.as_millis()
        ),
        StopReason::MaxRestarts(n) => write!(f, "gave up: {n} restarts"),
        StopReason::ExitCode(code) => {
            write!(f, "done: exit code {code} means do not restart")
        }
        StopReason::Stopped(Some(signal)) => write!(f, "stopped by {signal}"),
        StopReason::Stopped(None) => f.write_str("stopped"),
        StopReason::CannotStart => f.write_str("gave up: the program could not be started"),
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

/// How an [`Event`]'s fields read in JSON.
mod json {
    use std::process::ExitStatus;
    use std::time::Duration;

    use serde::ser::{SerializeMap, Serializer};

    pub(super) fn millis<S: Serializer>(duration: &Duration, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn signal<S: Serializer>(
        signal: &exit_hook::Signal,
        out: S,
    ) -> Result<S::Ok, S::Error> {
        out.serialize_i32(signal.as_raw())
    }

    /// `code` and `signal`, each `null` when it is not how it ended.
    pub(super) fn exit_status<S: Serializer>(
        status: &ExitStatus,
        out: S,
    ) -> Result<S::Ok, S::Error> {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(status);
        #[cfg(not(unix))]
        let signal: Option<i32> = None;
        let mut map = out.serialize_map(Some(2))?;
        map.serialize_entry("code", &status.code())?;
        map.serialize_entry("signal", &signal)?;
        map.end()
    }

    /// No fields (what `done` carries is said in its message).
    pub(super) fn nothing<T, S: Serializer>(_: &T, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_map(Some(0))?.end()
    }
}
