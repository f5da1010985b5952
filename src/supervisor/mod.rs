//! A keep-alive supervisor that restarts a program and stops it gracefully
//! (feature `supervisor`).
//!
//! Like the `forever` monitor: [`Supervisor`] spawns a program and restarts it
//! when it exits; a program that exits within `min_uptime` is *spinning* and
//! is given up, or restarted after `spin_sleep`; `max_restarts` limits the
//! restarts; [`Backoff`] spaces them out; `stop_exit_codes` mean "do not
//! restart". Unlike `forever`, stopping is graceful: when the supervisor gets
//! SIGTERM, SIGINT or SIGHUP, `exit_hook` forwards the same signal to the
//! program — so the program's own exit hooks run — waits up to the kill
//! timeout, and only then kills it. A program being stopped is never
//! restarted, and no orphan is left. The `keepalive` command
//! (`src/bin/keepalive.rs`) is its command line.
//!
//! How it works: the loop spawns the child (in a process group of its own, so
//! a terminal's Ctrl+C reaches only the supervisor, which forwards it once;
//! in exchange the child cannot read from the terminal, which suits the
//! servers and workers a keep-alive is for),
//! polls it, and restarts it as the restart settings decide. A hook
//! registered for the duration of [`Supervisor::run`] does the stopping. The
//! loop is the only place that reaps the child; the hook waits for it on a
//! condition variable, and kills it in time for the supervisor's own deadline.

mod event;
mod policy;
mod stop;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use event::Event;
use event::{Listener, emit};
pub use policy::{Backoff, StopReason};
use policy::{Decision, Policy, Restarts};
use stop::{Shared, stop, wait};

use crate::{Error, sys};

/// Where the child's output goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Output {
    /// The supervisor's own stdout and stderr (the default).
    Inherit,
    /// Each line of the child's stdout and stderr, with this prefix, on the
    /// supervisor's stdout and stderr.
    Prefixed(String),
}

/// Runs a program, restarts it when it exits, and stops it gracefully.
///
/// ```no_run
/// use std::time::Duration;
/// use exit_hook::supervisor::{Backoff, Supervisor};
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
/// # Ok::<(), exit_hook::Error>(())
/// ```
#[must_use = "a Supervisor does nothing until `run` is called"]
pub struct Supervisor {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    output: Output,
    policy: Policy,
    kill_timeout: Duration,
    listener: Option<Listener>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("policy", &self.policy)
            .field("kill_timeout", &self.kill_timeout)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Supervises `program` (looked up on the `PATH` as [`Command::new`] does).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Supervisor {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            output: Output::Inherit,
            policy: Policy::default(),
            kill_timeout: Duration::from_secs(5),
            listener: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The child's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Where the child's output goes (default: inherited).
    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// A child that exits sooner than this is spinning (default 1 s).
    pub fn min_uptime(mut self, uptime: Duration) -> Self {
        self.policy.min_uptime = uptime;
        self
    }

    /// Restart a spinning child after this wait, instead of giving up.
    pub fn spin_sleep(mut self, sleep: Duration) -> Self {
        self.policy.spin_sleep = Some(sleep);
        self
    }

    /// Stop after this many restarts (default: no limit).
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.policy.max_restarts = Some(restarts);
        self
    }

    /// Wait between restarts of a child that was not spinning.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = Some(backoff);
        self
    }

    /// Exit codes that mean "do not restart" (as pm2's `stop_exit_codes`).
    pub fn stop_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.policy.stop_exit_codes = codes.into_iter().collect();
        self
    }

    /// How long a stopping child may take after the forwarded signal before
    /// it is killed (default 5 s). Keep it below the `exit_hook` deadline:
    /// the kill comes earlier if the deadline is nearer.
    pub fn kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// Calls `listener` for every [`Event`].
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Runs the child until the policy stops restarting it, or until the
    /// supervisor itself is stopped (then the child is stopped first).
    ///
    /// When a signal stops the supervisor, `exit_hook` ends the process
    /// with 128 + n once the child is gone; `run` may return
    /// [`StopReason::Stopped`] just before.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the program cannot be started; the errors of
    /// [`try_add`](crate::try_add) if the stop hook cannot be registered.
    pub fn run(self) -> Result<StopReason, Error> {
        let shared = Arc::new(Shared::default());
        let stop_hook = crate::try_add({
            let (shared, listener, kill_timeout) =
                (shared.clone(), self.listener.clone(), self.kill_timeout);
            move |exit| stop(&shared, listener.as_ref(), kill_timeout, exit)
        })?;
        let result = self.supervise(&shared);
        stop_hook.unregister();
        result
    }

    fn emit(&self, event: Event) {
        emit(self.listener.as_ref(), event);
    }

    fn supervise(&self, shared: &Shared) -> Result<StopReason, Error> {
        let mut restarts = Restarts::default();
        loop {
            if let Some(signal) = shared.lock().stopping {
                return Ok(self.done(StopReason::Stopped(signal)));
            }
            let started = Instant::now();
            let child = self.spawn()?;
            let pid = child.id();
            shared.lock().child = Some(child);
            self.emit(Event::Started { pid });
            let status = wait(shared);
            let uptime = started.elapsed();
            self.emit(Event::Exited {
                pid,
                status,
                uptime,
            });
            if let Some(signal) = shared.lock().stopping {
                return Ok(self.done(StopReason::Stopped(signal)));
            }
            match self.policy.decide(&mut restarts, status.code(), uptime) {
                Decision::Stop(reason) => return Ok(self.done(reason)),
                Decision::Restart(delay) => {
                    self.emit(Event::Restarting {
                        delay,
                        restarts: restarts.count,
                    });
                    // Sleep, but wake at once if the supervisor is stopped meanwhile.
                    let state = shared.lock();
                    drop(
                        shared
                            .changed
                            .wait_timeout_while(state, delay, |s| s.stopping.is_none()),
                    );
                }
            }
        }
    }

    fn done(&self, reason: StopReason) -> StopReason {
        self.emit(Event::Done(reason));
        reason
    }

    fn spawn(&self) -> Result<Child, Error> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        sys::separate_process_group(&mut command);
        if let Output::Prefixed(_) = self.output {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = command.spawn()?;
        if let Output::Prefixed(prefix) = &self.output {
            if let Some(out) = child.stdout.take() {
                copy_lines(out, prefix.clone(), || Box::new(io::stdout()));
            }
            if let Some(err) = child.stderr.take() {
                copy_lines(err, prefix.clone(), || Box::new(io::stderr()));
            }
        }
        Ok(child)
    }
}

/// Copies `from` line by line, each with `prefix`, to the writer `to` makes.
fn copy_lines(from: impl Read + Send + 'static, prefix: String, to: fn() -> Box<dyn Write>) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(to(), "{prefix}{line}");
        }
    });
}
