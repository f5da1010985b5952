//! What the workers say on their notification sockets, who may say it,
//! and a worker that never says `READY=1`.

use super::{Cluster, Role};
use crate::event::Event;
#[cfg(unix)]
use crate::notify::Message;
#[cfg(target_os = "linux")]
use crate::os;

impl Cluster<'_> {
    /// Reads every worker's notification socket. On Linux only the worker
    /// and its process tree may speak for it, and only the worker itself
    /// may say `STOPPING=1` or `EXTEND_TIMEOUT_USEC=`: a forked child running its own exit hooks is
    /// not the worker draining.
    ///
    /// What a worker says is reported at most [`SAID_PER_SECOND`] times a
    /// second (`READY=1` always); the rest is counted and the count
    /// reported with the next report. A `STATUS=` that repeats the last
    /// one changes nothing and is not reported.
    pub(super) fn read_notifications(&mut self) {
        #[cfg(unix)]
        for worker in &mut self.workers {
            if let Some(pipe) = &worker.ready_pipe {
                match read_ready(pipe) {
                    Some(true) => {
                        worker.ready_pipe = None;
                        if !worker.said_ready {
                            worker.said_ready = true;
                            self.supervisor.emit(Event::Ready { pid: worker.pid });
                        }
                    }
                    Some(false) => worker.ready_pipe = None, // closed unsaid
                    None => {}
                }
            }
            for (sender, message) in worker.notify.messages() {
                let pid = worker.pid;
                let now = self.now;
                let report = |event: Event, chatter: &mut Chatter| {
                    if let Some(quiet) = chatter.allow(now) {
                        if quiet > 0 {
                            self.supervisor.emit(Event::Quieted {
                                pid,
                                dropped: quiet,
                            });
                        }
                        self.supervisor.emit(event);
                    }
                };
                if let Some(sender) = sender.filter(|&s| !may_say(s, pid, &message)) {
                    let message = match &message {
                        Message::Ready => "READY=1".to_owned(),
                        Message::Stopping => "STOPPING=1".to_owned(),
                        Message::Extend(more) => {
                            format!("EXTEND_TIMEOUT_USEC={}", more.as_micros())
                        }
                        Message::Status(status) => format!("STATUS={status}"),
                        Message::Watchdog => "WATCHDOG=1".to_owned(),
                        Message::Other(line) => line.clone(),
                    };
                    let refused = Event::Refused {
                        pid,
                        sender,
                        message,
                    };
                    report(refused, &mut worker.chatter);
                    continue;
                }
                let event = match message {
                    Message::Ready if !worker.said_ready => {
                        worker.said_ready = true;
                        self.supervisor.emit(Event::Ready { pid });
                        continue;
                    }
                    Message::Ready => continue,
                    Message::Stopping => Event::Draining { pid },
                    Message::Extend(more) => {
                        // As systemd: the stop may last until `more` from
                        // now, if that is later than its kill timeout.
                        let mut state = self.shared.lock();
                        if let Some(started) =
                            state.children.iter_mut().find(|s| s.child.id() == pid)
                        {
                            started.extended_until = Some(now + more);
                        }
                        // The stop hook waiting on it is woken by the
                        // loop's turn, which notifies after reading this.
                        drop(state);
                        Event::Extended { pid, more }
                    }
                    Message::Watchdog => {
                        worker.last_ping = now;
                        continue;
                    }
                    Message::Status(status) if worker.status.as_ref() == Some(&status) => continue,
                    Message::Status(status) => {
                        worker.status = Some(status.clone());
                        Event::Status { pid, status }
                    }
                    Message::Other(line) => Event::Said { pid, line },
                };
                report(event, &mut worker.chatter);
            }
        }
    }

    /// Reports what the workers said and was not reported, once their
    /// second is over.
    pub(super) fn report_quieted(&mut self) {
        let now = self.now;
        for worker in &mut self.workers {
            if let Some(dropped) = worker.chatter.overdue(now) {
                self.supervisor.emit(Event::Quieted {
                    pid: worker.pid,
                    dropped,
                });
            }
        }
    }

    /// When [`report_quieted`](Self::report_quieted) has something to say.
    pub(super) fn next_quieted(&self) -> Option<std::time::Instant> {
        self.workers.iter().filter_map(|w| w.chatter.due()).min()
    }

    /// Reports, once, a worker that has not said `READY=1` within the
    /// listen timeout of its start (a reload's replacement is killed then
    /// instead, in `progress_reload`).
    pub(super) fn report_late(&mut self) {
        if !self.supervisor.wait_ready {
            return;
        }
        let timeout = self.supervisor.listen_timeout;
        for worker in &mut self.workers {
            let waited = self.now.saturating_duration_since(worker.started);
            if worker.role == Role::Serving
                && !worker.said_ready
                && !worker.reported_late
                && waited >= timeout
            {
                worker.reported_late = true;
                self.supervisor.emit(Event::NotReady {
                    pid: worker.pid,
                    waited,
                });
            }
        }
    }
}

/// The most reports of what one worker says, in a second.
#[cfg_attr(not(unix), allow(dead_code, reason = "no notification socket"))]
pub(super) const SAID_PER_SECOND: u32 = 10;

/// How much of what a worker says was reported lately.
#[derive(Debug, Default)]
#[cfg_attr(not(unix), allow(dead_code, reason = "no notification socket"))]
pub(super) struct Chatter {
    since: Option<std::time::Instant>,
    reported: u32,
    quiet: u64,
}

#[cfg_attr(not(unix), allow(dead_code, reason = "no notification socket"))]
impl Chatter {
    /// Whether to report now: `Some(n)` with the `n` not reported since
    /// the last report, or `None` (counted).
    fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        let second = std::time::Duration::from_secs(1);
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
    fn due(&self) -> Option<std::time::Instant> {
        let since = self.since.filter(|_| self.quiet > 0)?;
        Some(since + std::time::Duration::from_secs(1))
    }

    /// The count not reported, once its second is over (and then none).
    fn overdue(&mut self, now: std::time::Instant) -> Option<u64> {
        self.due()
            .is_some_and(|due| due <= now)
            .then(|| std::mem::take(&mut self.quiet))
    }
}

/// Whether `sender` may say `message` for the worker `pid`: the worker
/// itself may say anything; a process of its tree, anything but
/// `STOPPING=1`.
#[cfg(unix)]
fn may_say(sender: u32, pid: u32, message: &Message) -> bool {
    if sender == pid {
        return true;
    }
    // A helper that sends and exits at once (`systemd-notify --ready`, a
    // shell's) is gone before its ancestry can be read: what it says is
    // taken, except what only the worker itself may say. (The socket's
    // directory is the supervisor user's alone, mode 0700.)
    #[cfg(target_os = "linux")]
    return !matches!(message, Message::Stopping | Message::Extend(_))
        && (os::descends_from(sender, pid) || os::is_gone(sender));
    #[cfg(not(target_os = "linux"))]
    {
        let _ = message;
        false
    }
}

/// What a readiness pipe holds: `Some(true)` once a newline came (s6's
/// notification-fd: ready), `Some(false)` if it was closed without one,
/// `None` while nothing (more) came.
#[cfg(unix)]
fn read_ready(pipe: &std::os::fd::OwnedFd) -> Option<bool> {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(pipe, &mut buf) {
            Ok(0) => return Some(false),
            Ok(n) if buf[..n].contains(&b'\n') => return Some(true),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A helper that said `READY=1` and exited at once (`systemd-notify
    /// --ready`) is believed: its ancestry cannot be read any more. What
    /// only the worker may say is not.
    #[test]
    fn a_sender_already_gone_is_believed_but_not_for_stopping() {
        let mut helper = std::process::Command::new("true").spawn().unwrap();
        let gone = helper.id();
        helper.wait().unwrap();
        let worker = std::process::id();
        assert!(may_say(gone, worker, &Message::Ready));
        assert!(may_say(gone, worker, &Message::Status("up".into())));
        assert!(!may_say(gone, worker, &Message::Stopping));
        assert!(!may_say(
            gone,
            worker,
            &Message::Extend(std::time::Duration::from_secs(1))
        ));
        // A live process outside the worker's tree is not.
        let parent = rustix::process::getppid().map_or(1, |pid| pid.as_raw_nonzero().get() as u32);
        assert!(!may_say(parent, worker, &Message::Ready));
    }
}
