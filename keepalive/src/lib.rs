//! keepalive: runs a program, restarts it
//! when it exits, stops it gracefully, and, in cluster mode, runs N copies
//! on listening sockets it holds and replaces them without downtime.
//!
//! Like the `forever` monitor: [`Supervisor`] spawns a program and restarts it
//! when it exits; a program that exits within `min_uptime` is *spinning*:
//! restarted after `spin_sleep`, or the backoff, up to `max_restarts` (an
//! unstable restart, as pm2's), or with none of them given up (as forever);
//! `max_restarts` limits the restarts; [`Backoff`] spaces them out; `stop_exit_codes` mean "do not
//! restart". Unlike `forever`, stopping is graceful: when the supervisor gets
//! SIGTERM or SIGINT (and SIGHUP, unless it reloads), `exit_hook` forwards
//! the same signal to every worker — so the workers' own exit hooks run —
//! waits up to the kill timeout, and only then kills each worker's process
//! group. A worker being stopped is never restarted.
//!
//! Like pm2's cluster mode and the Node cluster primary, for any program,
//! on systemd's own protocols (so the same server runs unchanged under
//! systemd, `systemfd` and keepalive):
//!
//! - **Workers** ([`workers`](Supervisor::workers)): N copies, each
//!   restarted on its own with its own restart policy state.
//! - **Listeners** ([`listen`](Supervisor::listen)): bound once and passed
//!   to every worker as descriptors from 3 with `LISTEN_FDS`,
//!   `LISTEN_FDNAMES` and the worker's own `LISTEN_PID`; never closed while
//!   the supervisor lives. No other descriptor reaches a worker.
//! - **Readiness**: each worker gets a `NOTIFY_SOCKET` of its own; `READY=1`,
//!   `STOPPING=1` and `STATUS=…` become [`Event`]s. With
//!   [`wait_ready`](Supervisor::wait_ready) a worker is ready once it says
//!   `READY=1`; otherwise once it has been up `min_uptime`.
//! - **Rolling reload** ([`reload_on_hangup`](Supervisor::reload_on_hangup)):
//!   on SIGHUP, one worker at a time, start its replacement (the program
//!   looked up again, so a new binary is picked up), wait until it is ready,
//!   then stop the old one gracefully. A replacement that exits or misses
//!   the [`listen_timeout`](Supervisor::listen_timeout) is killed; the old
//!   workers keep serving and the reload is reported failed. A SIGHUP during
//!   a reload is queued.
//! - **No orphans**: nothing a worker started outlives it. Every worker
//!   leads its own process group; when the worker ends (it exited, was
//!   replaced or stopped), what is left of the group gets the stop signal,
//!   then SIGKILL at the kill timeout. On Linux the supervisor is also the
//!   *child subreaper* of its workers' trees (`PR_SET_CHILD_SUBREAPER`):
//!   a descendant that left the group (`setsid`, a double fork) becomes
//!   the supervisor's child once its parent dies, and is stopped the same
//!   way as soon as no live worker owns it (by process group, or by the
//!   worker's `NOTIFY_SOCKET` it inherited). Each worker is started with
//!   `PR_SET_PDEATHSIG` = SIGKILL, so a supervisor killed by SIGKILL takes
//!   its workers with it (their own children are not told). Elsewhere
//!   (macOS, the BSDs) only the process group is stopped: a descendant
//!   that left it is not found.
//! - **Who speaks** (Linux): a notification counts only from the worker or
//!   a process of its tree (the sender's pid comes with the datagram,
//!   `SO_PASSCRED`), and `STOPPING=1` only from the worker itself; others
//!   are ignored with an [`Event::Refused`].
//!
//! How it works: one loop (on the thread that calls [`Supervisor::run`])
//! starts the workers, reads their notification sockets, reaps them and
//! decides. It sleeps until something happens: a child exits (SIGCHLD), a
//! SIGHUP, the stop hook, a notification, or the next timer; an idle
//! supervisor costs no CPU. A hook registered for the duration of `run`
//! does the stopping; the loop is the only place that reaps, and it reaps
//! every child of the process (they are its workers and what they left):
//! run a supervisor in a process that starts no children of its own.
//! Listeners, readiness and reload are Unix-only; on Windows `run` refuses
//! them with an error, and the loop looks every 5 ms. The `keepalive`
//! command (`src/bin/keepalive/`) is its command line.

// `unsafe` lives in exec.rs (what a worker does between fork and exec)
// and in os::exit_now (`_exit`); the rest goes through rustix and std.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// The README's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod cluster;
#[cfg(unix)]
pub mod control;
mod error;
mod event;
#[cfg(unix)]
#[allow(unsafe_code, reason = "between fork and exec: see the module's docs")]
mod exec;
mod group;
mod http_check;
#[cfg(target_os = "linux")]
mod leftovers;
mod listen;
mod logfile;
mod machine;
mod names;
#[cfg(unix)]
mod notify;
mod orphans;
mod os;
mod output;
mod policy;
mod protocol;
#[cfg(unix)]
mod runtime;
mod schedule;
mod stop;
mod supervisor;
mod watch;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use event::Event;
pub use listen::{ListenAddr, ParseListenAddrError};
use policy::Policy;
pub use policy::{Backoff, MIN_SPIN_SLEEP, StopReason};

pub use error::Error;
pub use group::{Group, GroupHandle, Hold};
pub use http_check::{HealthCheck, HealthUrl};
pub use logfile::Rotation;
pub use names::{check_name, default_name};
pub use output::Output;
pub use protocol::{AppStatus, PROTOCOL, Reply, Request, STOPPED_ALONE, Status, WorkerStatus};
pub use schedule::Schedule;
pub use supervisor::Supervisor;

impl Supervisor {
    /// Supervises `program`, looked up on the `PATH` (the one
    /// [`env`](Self::env) sets, if any) at every start, as `execvp(3)`
    /// does, so a new binary is picked up by the next restart or reload.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Supervisor {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            output: Output::Inherit,
            policy: Policy::default(),
            kill_timeout: Self::DEFAULT_KILL_TIMEOUT,
            kill_signal: None,
            watchdog: None,
            max_memory: None,
            health_check: None,
            logs: logfile::LogOptions::default(),
            watch: watch::WatchSpec {
                paths: Vec::new(),
                ignore: vec![glob::Pattern::new(".git").expect("a pattern")],
                debounce: Duration::from_millis(500),
            },
            listener: None,
            workers: 1,
            listen: Vec::new(),
            wait_ready: false,
            listen_timeout: Self::DEFAULT_LISTEN_TIMEOUT,
            reload_on_hangup: false,
            control: None,
            inherit_stdin: false,
            force_on_quit: false,
            last_words: None,
            exit_as_workers: false,
            ready_fd: None,
            worker_env: None,
            reload_schedule: None,
            after: Vec::new(),
            command_line: None,
        }
    }

    /// How long a stopping worker may take before it is killed, unless
    /// [`kill_timeout`](Self::kill_timeout) says otherwise: 15 s, above
    /// `exit_hook`'s default deadline (10 s), so that a worker built on it
    /// runs its hooks to the end.
    pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(15);

    /// How long a new worker may take to become ready, unless
    /// [`listen_timeout`](Self::listen_timeout) says otherwise: 10 s.
    pub const DEFAULT_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

    /// Runs `n` copies of the program (cluster mode, default 1). They share
    /// the [`listen`](Self::listen) sockets; each is restarted on its own
    /// when it exits, with its own restart count and backoff. The
    /// supervisor gives up when every copy's policy gave up.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Binds `addr` once, at the start of [`run`](Self::run), and passes it
    /// to every worker as systemd's socket activation does: descriptors
    /// from 3, in the order of the `listen` calls, with `LISTEN_FDS`,
    /// `LISTEN_FDNAMES` and the worker's own `LISTEN_PID` (so `listenfd`,
    /// `sd-notify` and `sd_listen_fds(3)` find them). The supervisor holds
    /// the sockets for its whole life, so no connection is refused while
    /// workers restart or are replaced. Unix only. Named `listener`; see
    /// [`listen_named`](Self::listen_named).
    pub fn listen(self, addr: ListenAddr) -> Self {
        self.listen_named("listener", addr)
    }

    /// [`listen`](Self::listen), with the name the worker finds in
    /// `LISTEN_FDNAMES` (no `:` in it).
    pub fn listen_named(mut self, name: impl Into<String>, addr: ListenAddr) -> Self {
        self.listen.push((name.into(), addr));
        self
    }

    /// Whether a worker counts as ready only once it says `READY=1` on its
    /// `NOTIFY_SOCKET` (pm2's `wait_ready`; systemd's `Type=notify`).
    /// Without it, a worker is ready when it has been alive `min_uptime`.
    /// A reload waits for each new worker to be ready before it stops the
    /// old one. Unix only.
    pub fn wait_ready(mut self, on: bool) -> Self {
        self.wait_ready = on;
        self
    }

    /// How long a new worker may take to become ready (pm2's
    /// `listen_timeout`, default 10 s). During a reload, a replacement that
    /// misses it is killed and the reload fails, the old workers serving
    /// on; a worker started otherwise (with `wait_ready`) is reported once
    /// ([`Event::NotReady`]) and keeps running, as there is nothing to fall
    /// back to.
    pub fn listen_timeout(mut self, timeout: Duration) -> Self {
        self.listen_timeout = timeout;
        self
    }

    /// Whether SIGHUP reloads the workers, one at a time and without
    /// downtime, instead of stopping the supervisor (Unix). A SIGHUP that
    /// comes during a reload is queued: one more reload follows. SIGHUPs
    /// that come before the supervisor's loop woke for the first count as
    /// one, as the kernel merges pending signals too. Install
    /// `exit_hook` without SIGHUP then (keepalive installs SIGTERM and
    /// SIGINT), or SIGHUP would also stop it.
    pub fn reload_on_hangup(mut self, on: bool) -> Self {
        self.reload_on_hangup = on;
        self
    }

    /// Listens for control commands as `name` (Unix): `keepalive status
    /// NAME`, `reload NAME`, `stop NAME`, `signal NAME SIG` from another
    /// shell, through [`control::socket_path`] (mode 0600, in a private directory; only the same
    /// user or root is answered). [`run`](Self::run) fails if an instance
    /// of that name runs; a socket left by a killed one is replaced.
    pub fn control(mut self, name: impl Into<String>) -> Self {
        self.control = Some((name.into(), false));
        self
    }

    /// [`control`](Self::control) as `base`, or as the first of `base-2`,
    /// `base-3`, ... that no running instance has (the name is in the
    /// [`Event::Control`] event).
    pub fn control_numbered(mut self, base: impl Into<String>) -> Self {
        self.control = Some((base.into(), true));
        self
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
        // The last value given for a key is the one (a named set's over
        // the app's own, as pm2's env_production over env).
        let key = key.as_ref().to_owned();
        self.envs.retain(|(known, _)| *known != key);
        self.envs.push((key, value.as_ref().to_owned()));
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

    /// A child that exits sooner than this is spinning (default 1 s): it
    /// is restarted after [`spin_sleep`](Self::spin_sleep) or the
    /// [`backoff`](Self::backoff), up to
    /// [`max_restarts`](Self::max_restarts) (after [`MIN_SPIN_SLEEP`] when
    /// only the limit is set), and given up when none of them is set.
    pub fn min_uptime(mut self, uptime: Duration) -> Self {
        self.policy.min_uptime = uptime;
        self
    }

    /// Restart a spinning child after this wait, instead of giving up; at
    /// least [`MIN_SPIN_SLEEP`] (100 ms), whatever is asked. Also the wait
    /// before trying again a program that could not be started, when no
    /// [`backoff`](Self::backoff) is set.
    pub fn spin_sleep(mut self, sleep: Duration) -> Self {
        self.policy.spin_sleep = Some(sleep);
        self
    }

    /// Stop after this many restarts (default: no limit).
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.policy.max_restarts = Some(restarts);
        self
    }

    /// Wait between restarts (of a spinning child too, when no
    /// [`spin_sleep`](Self::spin_sleep) is set), and between attempts to
    /// start a program that could not be started.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = Some(backoff);
        self
    }

    /// Exit codes that mean "do not restart" (as pm2's `stop_exit_codes`).
    pub fn stop_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.policy.stop_exit_codes = codes.into_iter().collect();
        self
    }

    /// Appends the workers' stdout to `path`, a line at a time (every
    /// worker of this supervisor into the one file; lines never mix). SIGUSR1
    /// reopens it (logrotate's `postrotate`). See
    /// [`log_rotation`](Self::log_rotation).
    pub fn stdout_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.logs.stdout = Some(path.into());
        self
    }

    /// [`stdout_file`](Self::stdout_file) for the workers' stderr.
    pub fn stderr_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.logs.stderr = Some(path.into());
        self
    }

    /// Rotates the log files by size: before a line that would take a file
    /// past `max_size`, `FILE` becomes `FILE.1` (and so on up to `keep`),
    /// between two lines, so none is lost or split.
    pub fn log_rotation(mut self, rotation: Rotation) -> Self {
        self.logs.rotation = Some(rotation);
        self
    }

    /// Starts each line of the log files with the time it was copied
    /// (RFC 3339, UTC, milliseconds).
    pub fn log_timestamps(mut self, on: bool) -> Self {
        self.logs.timestamps = on;
        self
    }

    /// Watches `path` (a file, or a directory and everything under it): a
    /// change replaces the workers the way a reload does, one at a time,
    /// each new one ready before the old one stops ([`Event::Changed`]).
    /// Repeatable.
    pub fn watch(mut self, path: impl Into<PathBuf>) -> Self {
        self.watch.paths.push(path.into());
        self
    }

    /// A change to a path that matches `pattern` (a glob, matched against
    /// the whole path and each of its components: `*.log`, `target`)
    /// changes nothing. `.git` is ignored from the start.
    ///
    /// # Errors
    ///
    /// The pattern's error if it is not a glob.
    pub fn watch_ignore(mut self, pattern: &str) -> Result<Self, glob::PatternError> {
        self.watch.ignore.push(glob::Pattern::new(pattern)?);
        Ok(self)
    }

    /// How long changes are gathered into one reload (default 500 ms).
    pub fn watch_debounce(mut self, debounce: Duration) -> Self {
        self.watch.debounce = debounce;
        self
    }

    /// systemd's watchdog for the workers: each gets `WATCHDOG_USEC`, and
    /// one that has not said `WATCHDOG=1` for `every` (since its start or
    /// its last one) is replaced ready-first ([`Event::Replacing`]): a new
    /// worker starts, and the old one is stopped once it is ready. Unix.
    pub fn watchdog(mut self, every: Duration) -> Self {
        self.watchdog = Some(every);
        self
    }

    /// A worker whose resident memory passes `bytes` is replaced
    /// ready-first, as by the [`watchdog`](Self::watchdog); read every
    /// second (Linux).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// An HTTP check of the workers (`--health-url`): after
    /// [`fails`](HealthCheck::fails) failed checks in a row, the workers
    /// are replaced ready-first — the one worker, or with several every
    /// worker one at a time, as a request to the port they share reaches
    /// whichever one the kernel picks ([`Event::HealthFailed`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use keepalive::{HealthCheck, Supervisor};
    ///
    /// let check = HealthCheck {
    ///     url: "http://127.0.0.1:8080/healthz".parse().unwrap(),
    ///     interval: Duration::from_secs(5),
    ///     fails: 3,
    /// };
    /// let supervisor = Supervisor::new("my-server").health_check(check);
    /// ```
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// The signal that asks a worker to stop, for a stop, a reload and
    /// whatever a worker left (pm2's `kill_signal`; default: the signal
    /// that stops the supervisor, SIGTERM for a reload or another trigger).
    /// A server that drains on SIGINT or SIGQUIT gets that instead.
    pub fn kill_signal(mut self, signal: exit_hook::Signal) -> Self {
        self.kill_signal = Some(signal);
        self
    }

    /// How long a stopping child may take after the forwarded signal before
    /// it is killed (default 15 s: `exit_hook`'s default deadline, 10 s,
    /// and a margin). A stopping worker that says `EXTEND_TIMEOUT_USEC=`
    /// (systemd's field, which `exit_hook` sends with `STOPPING=1`) is
    /// given until then if that is later. Keep both below the `exit_hook`
    /// deadline: the kill comes earlier if the deadline is nearer.
    pub fn kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// Whether SIGQUIT forces a stop (Unix; default `false`): every worker,
    /// and what the workers left, is killed at once, whatever its kill
    /// timeout, and the process exits 131 (or, during a stop, with that
    /// stop's status). A repeated SIGTERM or SIGINT never shortens a
    /// worker's kill timeout: install `exit_hook` with
    /// [`force_on_second_signal(false)`](exit_hook::Builder::force_on_second_signal),
    /// as the `keepalive` command does, and let SIGQUIT (Ctrl+\\ at a
    /// terminal) be the one that forces.
    pub fn force_on_quit(mut self, on: bool) -> Self {
        self.force_on_quit = on;
        self
    }

    /// A readiness channel any program can use without a library (s6's
    /// notification-fd): each worker gets a pipe at descriptor `fd` (also
    /// said in `KEEPALIVE_READY_FD`) and is ready once it writes a newline
    /// to it, as with `READY=1`. Implies [`wait_ready`](Self::wait_ready).
    /// `fd` must be above the listeners' (3, 4, …) and at most 255.
    ///
    /// ```text
    /// // Node: once listening
    /// require("fs").writeSync(Number(process.env.KEEPALIVE_READY_FD), "\n");
    /// ```
    pub fn ready_fd(mut self, fd: i32) -> Self {
        self.ready_fd = Some(fd);
        self.wait_ready = true;
        self
    }

    /// Each worker has its slot's index (0 to N-1, the same for every
    /// restart of that slot) in `KEEPALIVE_WORKER`, and also in the
    /// variable `name` (pm2's `NODE_APP_INSTANCE`, which Node apps read).
    pub fn worker_env(mut self, name: impl Into<OsString>) -> Self {
        self.worker_env = Some(name.into());
        self
    }

    /// Reloads the workers at each time `schedule` names (pm2's
    /// `cron_restart`): a rolling reload, ready-first, as SIGHUP; never a
    /// stop-and-start.
    pub fn reload_on(mut self, schedule: Schedule) -> Self {
        self.reload_schedule = Some(schedule);
        self
    }

    /// Called last when the supervisor stops: after the workers stopped
    /// and their output was copied out, in `exit_hook`'s last phase. What
    /// the program says last (its own queued lines), or removes (a pid
    /// file), goes here: a hook of its own in that phase would run before
    /// the workers' stop, registered before it.
    pub fn last_words(mut self, last: impl FnOnce() + Send + 'static) -> Self {
        self.last_words = Some(Box::new(last));
        self
    }

    /// In a [`Group`], the apps (by their control names) whose every
    /// worker must be ready before this one starts its first; and when
    /// the group stops, this one is stopped, and its workers gone, before
    /// them (systemd's `After=`, Horust's `start-after`). Alone, nothing.
    ///
    /// ```no_run
    /// use keepalive::{Group, Supervisor};
    ///
    /// Group::new()
    ///     .app(Supervisor::new("web-server").control("web").after(["db"]))
    ///     .app(Supervisor::new("db-server").control("db"))
    ///     .run()?;
    /// # Ok::<(), keepalive::Error>(())
    /// ```
    pub fn after<I, S>(mut self, apps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after = apps.into_iter().map(Into::into).collect();
        self
    }

    /// The command line that runs this instance by itself, as its control
    /// socket's `status` shows it (and `keepalive systemd-unit` writes it
    /// into a unit); default: this process's own. An app of a [`Group`]
    /// that would be run alone by another command says that one.
    pub fn command_line<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command_line = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Whether the process ends with the workers' status, as a container's
    /// init does (tini, dumb-init, pm2-runtime; default `false`): stopped,
    /// it exits with the status of the last worker to exit (its code, or
    /// 128 + the signal that killed it: 137 after a kill) instead of
    /// 128 + the signal that stopped the supervisor; given up, with the
    /// last worker's status instead of the reason's. The `keepalive`
    /// command does this when it runs as PID 1.
    pub fn exit_as_workers(mut self, on: bool) -> Self {
        self.exit_as_workers = on;
        self
    }

    /// Whether the workers read the supervisor's own stdin (default
    /// `false`: `/dev/null`, as pm2 does). A worker that reads a terminal
    /// it does not own is stopped by SIGTTIN; one that reads nothing gets
    /// an end of file at once.
    pub fn inherit_stdin(mut self, on: bool) -> Self {
        self.inherit_stdin = on;
        self
    }

    /// Calls `listener` for every [`Event`].
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Runs the workers until the policy stops restarting them, or until
    /// the supervisor itself is stopped (then the workers are stopped first).
    ///
    /// When a signal stops the supervisor, `exit_hook` ends the process
    /// with 128 + n once the workers are gone; `run` may return
    /// [`StopReason::Stopped`] just before.
    ///
    /// A program that cannot be started (missing, not executable) is the
    /// failure of that worker's slot, not of the supervisor: the slot tries
    /// again after its [`backoff`](Self::backoff) or
    /// [`spin_sleep`](Self::spin_sleep), or gives up alone
    /// ([`Event::GaveUp`]) while the other workers serve on. `run` returns
    /// once no slot can run ([`StopReason::CannotStart`] if none ever
    /// could), after what the workers left behind is gone.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] if `workers` is 0, a listening socket cannot be
    /// bound, or the supervisor's own signal handling cannot be set up;
    /// [`Error::StopHook`] with the error of [`exit_hook::HookBuilder::try_add`] if the
    /// stop hook cannot be registered.
    pub fn run(self) -> Result<StopReason, Error> {
        group::run_alone(self)
    }
}
