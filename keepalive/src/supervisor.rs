//! What a [`Supervisor`] is: its settings, as the builder in `lib.rs`
//! sets them and the loop (`cluster/`) reads them.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::event::Listener;
use crate::http_check::HealthCheck;
use crate::listen::ListenAddr;
use crate::logfile::LogOptions;
use crate::output::Output;
use crate::policy::Policy;
use crate::schedule::Schedule;
use crate::watch::WatchSpec;

/// Runs a program, restarts it when it exits, and stops it gracefully.
///
/// ```no_run
/// use std::time::Duration;
/// use keepalive::{Backoff, Supervisor};
///
/// // Restart `my-server` with backoff; stop it with the supervisor's SIGTERM.
/// let stopped = Supervisor::new("my-server")
///     .arg("--port=8080")
///     .min_uptime(Duration::from_secs(2))
///     .backoff(Backoff::new(Duration::from_millis(100)))
///     .kill_timeout(Duration::from_secs(5))
///     .on_event(|event| eprintln!("keepalive: {event}"))
///     .run()?;
/// eprintln!("supervisor done: {stopped:?}");
/// # Ok::<(), keepalive::Error>(())
/// ```
///
/// Four workers on one port, reloaded one at a time on SIGHUP:
///
/// ```no_run
/// use std::time::Duration;
/// use exit_hook::Signal;
/// use keepalive::Supervisor;
///
/// // SIGHUP reloads, so exit_hook stops the supervisor on SIGTERM and SIGINT only.
/// exit_hook::Builder::new()
///     .signals([Signal::terminate(), Signal::interrupt()])
///     .timeout(Duration::from_secs(12))
///     .install()?;
/// Supervisor::new("my-server")
///     .workers(4)
///     .listen("0.0.0.0:8080".parse()?) // fd 3 in each worker, LISTEN_FDS=1
///     .wait_ready(true)                // a worker is up once it says READY=1
///     .reload_on_hangup(true)
///     .kill_timeout(Duration::from_secs(10))
///     .on_event(|event| eprintln!("keepalive: {event}"))
///     .run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a Supervisor does nothing until `run` is called"]
pub struct Supervisor {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) output: Output,
    pub(crate) policy: Policy,
    pub(crate) kill_timeout: Duration,
    pub(crate) kill_signal: Option<exit_hook::Signal>,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) watch: WatchSpec,
    pub(crate) logs: LogOptions,
    pub(crate) listener: Option<Listener>,
    pub(crate) workers: usize,
    pub(crate) listen: Vec<(String, ListenAddr)>,
    pub(crate) wait_ready: bool,
    pub(crate) listen_timeout: Duration,
    pub(crate) reload_on_hangup: bool,
    pub(crate) control: Option<(String, bool)>,
    pub(crate) inherit_stdin: bool,
    pub(crate) force_on_quit: bool,
    pub(crate) last_words: Option<Box<dyn FnOnce() + Send>>,
    pub(crate) exit_as_workers: bool,
    pub(crate) ready_fd: Option<i32>,
    pub(crate) worker_env: Option<OsString>,
    pub(crate) reload_schedule: Option<Schedule>,
    pub(crate) after: Vec<String>,
    pub(crate) command_line: Option<Vec<String>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("policy", &self.policy)
            .field("kill_timeout", &self.kill_timeout)
            .field("workers", &self.workers)
            .field("listen", &self.listen)
            .field("wait_ready", &self.wait_ready)
            .field("listen_timeout", &self.listen_timeout)
            .field("reload_on_hangup", &self.reload_on_hangup)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// What a worker is started as: a supervisor's program, arguments,
/// environment, directory and output. A group's app takes a new one for
/// the workers it starts next ([`crate::GroupHandle::update`]).
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) output: Output,
}

impl Supervisor {
    /// What its workers are started as.
    pub(crate) fn spec(&self) -> Spec {
        Spec {
            program: self.program.clone(),
            args: self.args.clone(),
            envs: self.envs.clone(),
            current_dir: self.current_dir.clone(),
            output: self.output.clone(),
        }
    }

    /// Reports `event` (to `tracing` and to the listener).
    pub(crate) fn emit(&self, event: crate::Event) {
        crate::event::emit(self.listener.as_ref(), event);
    }
}
