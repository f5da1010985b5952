//! Starting a worker: how its process is made (the program looked up
//! again, the protocols' variables, its process group, its output).

use std::io;
#[cfg(unix)]
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::Cluster;
#[cfg(unix)]
use super::Handles;
use crate::Output;
use crate::error::context;
use crate::event::Event;
#[cfg(unix)]
use crate::exec::Plan;
use crate::logfile::LogSink;
use crate::os;
use crate::output::{Copiers, copy_lines};
use crate::stop::Started;

impl Cluster {
    /// Starts a worker for `slot`; `None` if the supervisor is stopping.
    pub(super) fn start(&mut self, slot: usize) -> Result<Option<u32>, Failed> {
        let id = self.next_id;
        self.next_id += 1;
        #[cfg(not(unix))]
        let _ = (id, slot);
        let supervisor = self.supervisor.clone();
        let spec = self.spec.clone();
        let mut command = Command::new(&spec.program);
        if let Some(dir) = &spec.current_dir {
            command.current_dir(dir);
        }
        os::separate_process_group(&mut command);
        if !supervisor.inherit_stdin {
            command.stdin(Stdio::null());
        }
        let prefix = match &spec.output {
            Output::Prefixed(prefix) => Some(prefix.as_str()),
            Output::Inherit => None,
        };
        if prefix.is_some() || self.sinks.stdout.is_some() {
            command.stdout(Stdio::piped());
        }
        if prefix.is_some() || self.sinks.stderr.is_some() {
            command.stderr(Stdio::piped());
        }
        #[cfg(unix)]
        let notify = self.notify_dir.socket(id).map_err(|err| {
            let failed = Failed::of(err);
            Failed {
                error: context(failed.error, "cannot make a worker's notification socket"),
                ..failed
            }
        })?;
        #[cfg(unix)]
        let ready = supervisor
            .ready_fd
            .map(|at| ReadyPipe::new().map(|pipe| (pipe, at)))
            .transpose()
            .map_err(|err| Failed {
                error: context(err, "cannot make a worker's readiness pipe"),
                ..Failed::of(io::Error::other(""))
            })?;
        #[cfg(unix)]
        Plan {
            program: &spec.program,
            args: &spec.args,
            envs: &spec.envs,
            listeners: self
                .listeners
                .as_ref()
                .map(|listeners| (listeners.raw_fds(), listeners.names())),
            notify_socket: Some(notify.path()),
            watchdog: supervisor.watchdog,
            worker: (slot, supervisor.worker_env.as_deref()),
            ready: ready
                .as_ref()
                .map(|(pipe, at)| (pipe.write.as_raw_fd(), *at)),
        }
        .prepare(&mut command)
        .map_err(Failed::of)?;
        #[cfg(not(unix))]
        command
            .args(&spec.args)
            .envs(spec.envs.iter().map(|(k, v)| (k, v)));
        // Under the lock: the stop hook sees every worker that starts.
        let mut state = self.shared.lock();
        if state.stopping.is_some() {
            return Ok(None);
        }
        let mut child = command.spawn().map_err(|err| {
            let program = std::path::Path::new(&spec.program).display();
            let failed = Failed::of(err);
            Failed {
                error: context(failed.error, format!("cannot start {program}")),
                ..failed
            }
        })?;
        let pid = child.id();
        take_output(
            &mut child,
            prefix.unwrap_or(""),
            &self.sinks,
            &self.shared.copiers,
        );
        // A group of that id, left by an earlier worker, is gone: the
        // kernel gives no process the id of a group still there.
        state.stragglers.forget_group(pid);
        state.children.push(Started {
            child,
            signalled: false,
            extended_until: None,
        });
        drop(state);
        #[cfg(unix)]
        self.handles.push(Handles {
            pid,
            notify,
            // The worker holds the write end now: only its end keeps the pipe open.
            ready_pipe: ready.map(|(pipe, _)| pipe.read),
        });
        supervisor.emit(Event::Started { pid });
        Ok(Some(pid))
    }
}

/// Why a worker could not start, and whether it is the system's passing
/// want (out of descriptors, processes or memory), not the program's.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: io::Error,
    /// Worth trying again whatever the policy says of a program that
    /// cannot start: descriptors, processes and memory come back.
    pub(crate) transient: bool,
}

impl Failed {
    fn of(error: io::Error) -> Failed {
        let transient = os::is_shortage(&error);
        Failed { error, transient }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The copies of a worker's piped streams: to its log file if it has one,
/// else to keepalive's own stream, each line with `prefix`.
fn take_output(
    child: &mut std::process::Child,
    prefix: &str,
    sinks: &Sinks,
    copiers: &Arc<Copiers>,
) {
    if let Some(out) = child.stdout.take() {
        let to: Box<dyn std::io::Write + Send> = match &sinks.stdout {
            Some(log) => Box::new(log.clone()),
            None => Box::new(std::io::stdout()),
        };
        copy_lines(out, prefix.to_owned(), to, copiers);
    }
    if let Some(err) = child.stderr.take() {
        let to: Box<dyn std::io::Write + Send> = match &sinks.stderr {
            Some(log) => Box::new(log.clone()),
            None => Box::new(std::io::stderr()),
        };
        copy_lines(err, prefix.to_owned(), to, copiers);
    }
}

/// Where the workers' streams go when not to keepalive's own.
#[derive(Clone, Default)]
pub(crate) struct Sinks {
    pub(crate) stdout: Option<LogSink>,
    pub(crate) stderr: Option<LogSink>,
}

/// A worker's readiness pipe (s6's notification-fd): it writes a newline
/// to its end when it is ready.
#[cfg(unix)]
struct ReadyPipe {
    /// Non-blocking: the loop polls it with the notification sockets.
    read: std::os::fd::OwnedFd,
    /// Moved to 512 or above, where no listener's place (3, 4, …) is.
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl ReadyPipe {
    fn new() -> io::Result<ReadyPipe> {
        // pipe(2), not pipe2: macOS has no pipe2. The loop's thread is the
        // only one that forks, and marks these close-on-exec before it does.
        let (read, write) = rustix::pipe::pipe()?;
        rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::CLOEXEC)?;
        rustix::io::ioctl_fionbio(&read, true)?;
        let write = rustix::io::fcntl_dupfd_cloexec(&write, 512)?;
        Ok(ReadyPipe { read, write })
    }
}
