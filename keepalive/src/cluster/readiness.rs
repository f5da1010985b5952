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
    /// may say `STOPPING=1`: a forked child running its own exit hooks is
    /// not the worker draining.
    pub(super) fn read_notifications(&mut self) {
        #[cfg(unix)]
        for worker in &mut self.workers {
            for (sender, message) in worker.notify.messages() {
                let pid = worker.pid;
                if let Some(sender) = sender.filter(|&s| !may_say(s, pid, &message)) {
                    let message = match &message {
                        Message::Ready => "READY=1".to_owned(),
                        Message::Stopping => "STOPPING=1".to_owned(),
                        Message::Status(status) => format!("STATUS={status}"),
                        Message::Watchdog => "WATCHDOG=1".to_owned(),
                        Message::Other(line) => line.clone(),
                    };
                    self.supervisor.emit(Event::Refused {
                        pid,
                        sender,
                        message,
                    });
                    continue;
                }
                let event = match message {
                    Message::Ready if !worker.said_ready => {
                        worker.said_ready = true;
                        Event::Ready { pid }
                    }
                    Message::Ready => continue,
                    Message::Stopping => Event::Draining { pid },
                    Message::Watchdog => {
                        worker.last_ping = std::time::Instant::now();
                        continue;
                    }
                    Message::Status(status) => {
                        worker.status = Some(status.clone());
                        Event::Status { pid, status }
                    }
                    Message::Other(line) => Event::Said { pid, line },
                };
                self.supervisor.emit(event);
            }
        }
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
            let waited = worker.started.elapsed();
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

/// Whether `sender` may say `message` for the worker `pid`: the worker
/// itself may say anything; a process of its tree, anything but
/// `STOPPING=1`.
#[cfg(unix)]
fn may_say(sender: u32, pid: u32, message: &Message) -> bool {
    if sender == pid {
        return true;
    }
    #[cfg(target_os = "linux")]
    return *message != Message::Stopping && os::descends_from(sender, pid);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = message;
        false
    }
}
