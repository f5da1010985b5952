//! What the workers say on their notification sockets and readiness
//! pipes, and who may say it; told to the machine, which decides what it
//! means.

use super::Cluster;
#[cfg(unix)]
use crate::machine::Input;
#[cfg(unix)]
use crate::notify::Message;
#[cfg(target_os = "linux")]
use crate::os;

impl Cluster {
    /// Reads every worker's notification socket and readiness pipe. On
    /// Linux only the worker and its process tree may speak for it, and
    /// only the worker itself may say `STOPPING=1` or
    /// `EXTEND_TIMEOUT_USEC=`: a forked child running its own exit hooks
    /// is not the worker draining.
    pub(super) fn read_notifications(&mut self) {
        #[cfg(unix)]
        {
            let mut said = Vec::new();
            for worker in &mut self.handles {
                let pid = worker.pid;
                if let Some(pipe) = &worker.ready_pipe {
                    match read_ready(pipe) {
                        Some(true) => {
                            worker.ready_pipe = None;
                            said.push(Input::Said {
                                pid,
                                message: Message::Ready,
                                refused: None,
                            });
                        }
                        Some(false) => worker.ready_pipe = None, // closed unsaid
                        None => {}
                    }
                }
                for (sender, message) in worker.notify.messages() {
                    let refused = sender.filter(|&s| !may_say(s, pid, &message));
                    said.push(Input::Said {
                        pid,
                        message,
                        refused,
                    });
                }
            }
            for input in said {
                self.feed(input);
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
