//! What the workers say (systemd's notification protocol, read by the
//! shell), who may say it, how much of it is reported, and a worker that
//! never says `READY=1`.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Effect, Machine, Role};
use crate::event::Event;

/// What a worker said: one line of a notification datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code, reason = "no notification socket"))]
pub(crate) enum Message {
    Ready,
    Stopping,
    /// `EXTEND_TIMEOUT_USEC=n`: the worker needs `n` µs more from now
    /// (systemd's field; `exit_hook` sends it with `STOPPING=1`).
    Extend(Duration),
    Status(String),
    /// `WATCHDOG=1`: the worker is alive (systemd's watchdog protocol).
    Watchdog,
    /// Any other `KEY=value` line (`MAINPID=`, `ERRNO=`, `X_APP_DB=up`…).
    Other(String),
}

/// The line as it was said.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Ready => f.write_str("READY=1"),
            Message::Stopping => f.write_str("STOPPING=1"),
            Message::Extend(more) => write!(f, "EXTEND_TIMEOUT_USEC={}", more.as_micros()),
            Message::Status(status) => write!(f, "STATUS={status}"),
            Message::Watchdog => f.write_str("WATCHDOG=1"),
            Message::Other(line) => f.write_str(line),
        }
    }
}

/// The most reports of what one worker says, in a second.
pub(super) const SAID_PER_SECOND: u32 = 10;

impl Machine {
    /// The worker `pid` said `message` (from `refused`, a sender that may
    /// not say it). What a worker says is reported at most
    /// [`SAID_PER_SECOND`] times a second (`READY=1` always); the rest is
    /// counted and the count reported with the next report. A `STATUS=`
    /// that repeats the last one changes nothing and is not reported.
    pub(super) fn said(&mut self, pid: u32, message: Message, refused: Option<u32>) {
        let now = self.now;
        // Said for a worker reaped already: nothing to change.
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) else {
            return;
        };
        let event = if let Some(sender) = refused {
            Event::Refused {
                pid,
                sender,
                message: message.to_string(),
            }
        } else {
            match message {
                Message::Ready if !worker.said_ready => {
                    worker.said_ready = true;
                    self.effects.push(Effect::Emit(Event::Ready { pid }));
                    return;
                }
                Message::Ready => return,
                Message::Stopping => Event::Draining { pid },
                Message::Extend(more) => {
                    // As systemd: the stop may last until `more` from now,
                    // if that is later than its kill timeout.
                    let until = crate::os::later(now, more);
                    self.effects.push(Effect::Extend { pid, until });
                    Event::Extended { pid, more }
                }
                Message::Watchdog => {
                    worker.last_ping = now;
                    return;
                }
                Message::Status(status) if worker.status.as_ref() == Some(&status) => return,
                Message::Status(status) => {
                    worker.status = Some(status.clone());
                    Event::Status { pid, status }
                }
                Message::Other(line) => Event::Said { pid, line },
            }
        };
        if let Some(quiet) = worker.chatter.allow(now) {
            if quiet > 0 {
                self.effects.push(Effect::Emit(Event::Quieted {
                    pid,
                    dropped: quiet,
                }));
            }
            self.effects.push(Effect::Emit(event));
        }
    }

    /// Reports what the workers said and was not reported, once their
    /// second is over.
    pub(super) fn report_quieted(&mut self) {
        let now = self.now;
        for worker in &mut self.workers {
            if let Some(dropped) = worker.chatter.overdue(now) {
                let pid = worker.pid;
                self.effects
                    .push(Effect::Emit(Event::Quieted { pid, dropped }));
            }
        }
    }

    /// Reports, once, a serving worker that has not said `READY=1` within
    /// the listen timeout of its start (a reload's replacement is killed
    /// then instead, in `progress_reload`).
    pub(super) fn report_late(&mut self) {
        if !self.settings.wait_ready {
            return;
        }
        let timeout = self.settings.listen_timeout;
        for worker in &mut self.workers {
            let waited = self.now.saturating_duration_since(worker.started);
            if worker.role == Role::Serving
                && !worker.said_ready
                && !worker.reported_late
                && waited >= timeout
            {
                worker.reported_late = true;
                let pid = worker.pid;
                self.effects
                    .push(Effect::Emit(Event::NotReady { pid, waited }));
            }
        }
    }
}

/// How much of what a worker says was reported lately.
#[derive(Debug, Default)]
pub(super) struct Chatter {
    since: Option<Instant>,
    reported: u32,
    quiet: u64,
}

impl Chatter {
    /// Whether to report now: `Some(n)` with the `n` not reported since
    /// the last report, or `None` (counted).
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let second = Duration::from_secs(1);
        if self
            .since
            .is_none_or(|since| now.saturating_duration_since(since) >= second)
        {
            self.since = Some(now);
            self.reported = 0;
        }
        if self.reported >= SAID_PER_SECOND {
            self.quiet += 1;
            return None;
        }
        self.reported += 1;
        Some(std::mem::take(&mut self.quiet))
    }

    /// When the count of what was not reported is to be said.
    pub(super) fn due(&self) -> Option<Instant> {
        let since = self.since.filter(|_| self.quiet > 0)?;
        Some(since + Duration::from_secs(1))
    }

    /// The count not reported, once its second is over (and then none).
    pub(super) fn overdue(&mut self, now: Instant) -> Option<u64> {
        self.due()
            .is_some_and(|due| due <= now)
            .then(|| std::mem::take(&mut self.quiet))
    }
}
