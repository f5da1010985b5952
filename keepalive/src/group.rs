//! A run: what a process does once (the SIGHUP and SIGQUIT flags, the
//! alarm that wakes the loop, the child subreaper, keepalive's own
//! shutdown in exit_hook's phases) and what each supervisor does for
//! itself (its control socket, watch, health check, log files, loop), for
//! one supervisor ([`Supervisor::run`]) or several in one process
//! ([`Group`]): one loop, one reaper, one stop.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(unix)]
use crate::control;
use crate::event::Event;
use crate::stop::{Shared, stop};
use crate::{Error, StopReason, Supervisor, cluster, default_name, http_check, logfile, os, watch};
#[cfg(unix)]
use crate::{listen, protocol};

/// Several supervisors in one process, each with its own workers, name
/// and control socket: one loop and one reaper for all, one stop. An app's
/// trouble (a give-up, a crash loop, a failed reload) stays that app's:
/// the others run on. The process's stop is every app's: `keepalive stop`
/// on one app's name stops the process, as SIGTERM does.
///
/// ```no_run
/// use keepalive::{Group, Supervisor};
///
/// let reasons = Group::new()
///     .app(Supervisor::new("db-server").control("db"))
///     .app(Supervisor::new("web-server").workers(2).control("web"))
///     .run()?;
/// eprintln!("each app's end: {reasons:?}");
/// # Ok::<(), keepalive::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a Group does nothing until `run` is called"]
pub struct Group {
    supervisors: Vec<Supervisor>,
}

impl Group {
    /// No supervisor yet.
    pub fn new() -> Group {
        Group::default()
    }

    /// One more app: its supervisor, run with the others.
    pub fn app(mut self, supervisor: Supervisor) -> Group {
        self.supervisors.push(supervisor);
        self
    }

    /// Runs every supervisor until each has ended (every slot gave up, or
    /// the process was stopped: exit_hook's stop stops them all at once);
    /// each one's reason, in the order they were added. SIGHUP reloads
    /// those that reload on it; SIGQUIT forces the stop if one asked for
    /// it.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::run`], for any of them; [`Error::Setup`] if there
    /// is none.
    pub fn run(self) -> Result<Vec<StopReason>, Error> {
        run(self.supervisors)
    }
}

/// What a supervisor holds for its run.
struct Held {
    shared: Arc<Shared>,
    tag: String,
    #[cfg(unix)]
    control: Option<control::Server>,
    _watch: Option<watch::Watch>,
    last_words: Arc<LastWords>,
    sinks: Option<cluster::Sinks>,
    _reopen: Vec<SignalFlag>,
}

/// Runs `supervisors` in one loop until each has ended.
pub(crate) fn run(mut supervisors: Vec<Supervisor>) -> Result<Vec<StopReason>, Error> {
    if supervisors.is_empty() {
        return Err(Error::Setup(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no supervisor to run",
        )));
    }
    for supervisor in &supervisors {
        supervisor.check()?;
    }
    // `keepalive events NAME`: every event to the subscribers too.
    #[cfg(unix)]
    let subscribers: Vec<_> = supervisors.iter_mut().map(Supervisor::subscribe).collect();
    let signals = LoopSignals::register(
        supervisors.iter().any(|s| s.reload_on_hangup),
        supervisors.iter().any(|s| s.force_on_quit),
    )?;
    let alarm = os::Alarm::new(&wake_signals(&signals))
        .map_err(|err| Error::Setup(crate::error::context(err, "cannot handle SIGCHLD")))?;
    #[cfg(target_os = "linux")]
    let subreaper = Subreaper::become_one()?;
    let mut held = Vec::with_capacity(supervisors.len());
    #[cfg_attr(not(unix), allow(unused_variables))]
    for (index, supervisor) in supervisors.iter_mut().enumerate() {
        #[cfg(unix)]
        let subscribers = &subscribers[index];
        #[cfg(not(unix))]
        let subscribers = &();
        held.push(supervisor.prepare(&alarm, subscribers)?);
    }
    let hooks = stop_hooks(&supervisors, &held)?;
    let sinks: Vec<_> = held.iter_mut().map(|held| held.sinks.take()).collect();
    let clusters: Result<Vec<_>, Error> = supervisors
        .iter()
        .zip(&held)
        .zip(sinks)
        .map(|((supervisor, held), sinks)| {
            cluster::Cluster::new(
                supervisor,
                &held.tag,
                &held.shared,
                sinks.unwrap_or_default(),
            )
        })
        .collect();
    let alone = supervisors.len() == 1;
    let result = clusters.map(|clusters| cluster::run(clusters, &alarm, &signals.asked(), !alone));
    drop(signals);
    for hook in hooks {
        hook.unregister();
    }
    for (index, (supervisor, held)) in supervisors.iter().zip(&held).enumerate() {
        // Given up (or failed): the stop hook that would have said them is
        // gone, and the caller ends the process. (Stopped, the stop hook,
        // which has the run's end to itself, says them: said here, they
        // could be cut by the process ending from the hook's thread.)
        let stopped = result
            .as_ref()
            .is_ok_and(|reasons| matches!(reasons[index], StopReason::Stopped(_)));
        if !stopped {
            say_last_words(&held.last_words);
        }
        // The workers' last lines, copied out before the caller exits.
        held.shared.copiers.wait(os::later(
            std::time::Instant::now(),
            supervisor.kill_timeout,
        ));
    }
    #[cfg(target_os = "linux")]
    drop(subreaper);
    let reasons = result?;
    Ok(supervisors
        .iter()
        .zip(&held)
        .zip(reasons)
        .map(|((supervisor, held), reason)| {
            let last_status = held.shared.lock().last_status;
            supervisor.done(reason, last_status, alone)
        })
        .collect())
}

/// The process the workers' subreaper (Linux) for the run: given back when
/// dropped (also when the setup fails half-way), unless it was one before.
#[cfg(target_os = "linux")]
struct Subreaper {
    was: bool,
}

#[cfg(target_os = "linux")]
impl Subreaper {
    fn become_one() -> Result<Subreaper, Error> {
        let was = os::become_subreaper().map_err(|err| {
            Error::Setup(crate::error::context(
                err,
                "cannot become the workers' subreaper",
            ))
        })?;
        Ok(Subreaper { was })
    }
}

#[cfg(target_os = "linux")]
impl Drop for Subreaper {
    fn drop(&mut self) {
        if !self.was {
            os::stop_being_subreaper();
        }
    }
}

/// What the stop hook needs of one app to stop its workers.
struct AppStop {
    shared: Arc<Shared>,
    listener: Option<crate::event::Listener>,
    kill_timeout: std::time::Duration,
    kill_signal: Option<exit_hook::Signal>,
}

impl AppStop {
    fn stop(&self, exit: &exit_hook::Exit) {
        stop(
            &self.shared,
            self.listener.as_ref(),
            self.kill_timeout,
            self.kill_signal,
            exit,
        );
    }
}

/// keepalive's own shutdown, in exit_hook's phases, for every supervisor
/// at once: no control request is taken any more (drain); the workers are
/// stopped and waited for, every supervisor's at the same time, then their
/// last lines are copied out and the last words said (flush).
/// Unregistered when the run ends.
fn stop_hooks(
    supervisors: &[Supervisor],
    held: &[Held],
) -> Result<Vec<exit_hook::HookHandle>, Error> {
    #[cfg(unix)]
    let control_files: Vec<ControlFile> = held
        .iter()
        .filter_map(|held| held.control.as_ref().map(control::Server::file))
        .collect();
    let stops: Vec<AppStop> = supervisors
        .iter()
        .zip(held)
        .map(|(supervisor, held)| AppStop {
            shared: held.shared.clone(),
            listener: supervisor.listener.clone(),
            kill_timeout: supervisor.kill_timeout,
            kill_signal: supervisor.kill_signal,
        })
        .collect();
    let flushes: Vec<_> = held
        .iter()
        .map(|held| (held.shared.clone(), held.last_words.clone()))
        .collect();
    // Only a run of one may end the process with its workers' status.
    let exit_as_workers = supervisors.len() == 1 && supervisors[0].exit_as_workers;
    Ok(vec![
        exit_hook::in_phase(exit_hook::Phase::Drain).try_add(move |_| {
            #[cfg(unix)]
            for file in &control_files {
                file.remove();
            }
        })?,
        // The workers' stop is in the last phase, before their output's
        // flush: its end is the run's deadline, which bounds the kill
        // timeout (and what a worker's EXTEND_TIMEOUT_USEC= asks), however
        // the phases share the deadline.
        exit_hook::in_phase(exit_hook::Phase::Flush).try_add(move |exit| match &stops[..] {
            [one] => one.stop(exit),
            many => std::thread::scope(|scope| {
                for each in many {
                    scope.spawn(move || each.stop(exit));
                }
            }),
        })?,
        exit_hook::in_phase(exit_hook::Phase::Flush).try_add(move |exit| {
            for (shared, last_words) in &flushes {
                shared.copiers.wait(exit.deadline());
                say_last_words(last_words);
            }
            if exit_as_workers {
                let status = flushes[0].0.lock().last_status;
                if let Some(status) = status {
                    // The run's status would be 128 + the stop
                    // signal: the workers' is what an init passes on.
                    os::exit_now(status);
                }
            }
        })?,
    ])
}

impl Supervisor {
    /// What this supervisor sets up for itself: the state its loop shares
    /// with its stop and its control threads, watch, its control socket
    /// (its name), health check, last words, log files.
    fn prepare(
        &mut self,
        alarm: &os::Alarm,
        #[cfg(unix)] subscribers: &Arc<control::Subscribers>,
        #[cfg(not(unix))] _subscribers: &(),
    ) -> Result<Held, Error> {
        let shared = Arc::new(Shared::new(alarm.bell()));
        let watch = if self.watch.paths.is_empty() {
            None
        } else {
            let watch = watch::Watch::start(&self.watch, shared.clone(), self.listener.clone())
                .map_err(Error::Setup)?;
            Some(watch)
        };
        // The instance's name: the notification sockets' directory is
        // named by it, so what its workers leave can be found by it.
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut tag = default_name(std::path::Path::new(&self.program));
        #[cfg(unix)]
        let control = self.serve_control(&shared, subscribers, &mut tag)?;
        if let Some(check) = &self.health_check {
            http_check::start(check.clone(), shared.clone()).map_err(Error::Setup)?;
        }
        let last_words = Arc::new(std::sync::Mutex::new(self.last_words.take()));
        let (sinks, reopen) = self.open_logs()?;
        Ok(Held {
            shared,
            tag,
            #[cfg(unix)]
            control,
            _watch: watch,
            last_words,
            sinks: Some(sinks),
            _reopen: reopen,
        })
    }

    /// Every event to the control socket's subscribers too (`keepalive
    /// events NAME`): they are returned, the listener wrapped.
    #[cfg(unix)]
    fn subscribe(&mut self) -> Arc<control::Subscribers> {
        let subscribers = Arc::new(control::Subscribers::default());
        if self.control.is_some() {
            let (user, sent) = (self.listener.take(), subscribers.clone());
            self.listener = Some(Arc::new(move |event: &Event| {
                if let Some(user) = &user {
                    user(event);
                }
                sent.send(event);
            }));
        }
        subscribers
    }

    /// What `run` refuses before it starts anything: no worker, a
    /// readiness descriptor where a listener goes or past 255.
    fn check(&self) -> Result<(), Error> {
        if self.workers == 0 {
            return Err(Error::Setup(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the supervisor needs at least one worker",
            )));
        }
        if let Some(fd) = self.ready_fd {
            let first_free = 3 + self.listen.len() as i32;
            if !(first_free..=255).contains(&fd) {
                return Err(Error::Setup(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the readiness descriptor must be from {first_free} (after the listeners) to 255, not {fd}"
                    ),
                )));
            }
        }
        Ok(())
    }

    /// The control socket, if one was asked for: served from now on, its
    /// name the instance's `tag`.
    #[cfg(unix)]
    fn serve_control(
        &self,
        shared: &Arc<Shared>,
        subscribers: &Arc<control::Subscribers>,
        tag: &mut String,
    ) -> Result<Option<control::Server>, Error> {
        let Some((name, numbered)) = &self.control else {
            return Ok(None);
        };
        // Absolute: `keepalive logs` reads them from its own directory.
        let shown = |path: &Option<PathBuf>| {
            let path = path.as_ref()?;
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            Some(path.display().to_string())
        };
        let about = protocol::About {
            program: std::path::Path::new(&self.program).display().to_string(),
            stdout_log: shown(&self.logs.stdout),
            stderr_log: shown(&self.logs.stderr),
        };
        let refused = |err: &io::Error| {
            self.emit(Event::RuntimeDirRefused {
                reason: err.to_string(),
            });
        };
        let (server, name) = control::Server::start(
            name,
            *numbered,
            about,
            shared.clone(),
            subscribers.clone(),
            refused,
        )
        .map_err(|err| {
            Error::Setup(crate::error::context(
                err,
                format!("cannot listen for control as {name}"),
            ))
        })?;
        shared.lock().socket_files.push(server.file());
        tag.clone_from(&name);
        self.emit(Event::Control {
            name,
            socket: server.path().display().to_string(),
        });
        Ok(Some(server))
    }

    /// Opens the log files, and has SIGUSR1 reopen them (Unix): the sinks,
    /// and the handlers' registrations, dropped after the run.
    fn open_logs(&self) -> Result<(cluster::Sinks, Vec<SignalFlag>), Error> {
        let mut reopen = Vec::new();
        let mut open = |path: &Option<PathBuf>| -> Result<Option<logfile::LogSink>, Error> {
            let Some(path) = path else { return Ok(None) };
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let log = logfile::LogFile::open(
                path,
                self.logs.rotation,
                self.logs.timestamps,
                flag.clone(),
                self.listener.clone(),
            )
            .map_err(|err| {
                Error::Setup(crate::error::context(
                    err,
                    format!("cannot open the log file {}", path.display()),
                ))
            })?;
            reopen.push(SignalFlag::register(REOPEN_SIGNAL, "SIGUSR1", flag)?);
            Ok(Some(logfile::LogSink(Arc::new(std::sync::Mutex::new(log)))))
        };
        let sinks = cluster::Sinks {
            stdout: open(&self.logs.stdout)?,
            stderr: open(&self.logs.stderr)?,
        };
        Ok((sinks, reopen))
    }

    /// The run's end: a run of one says it here (a group's apps said it
    /// as each ended) and, given up, ends the process with the app's own
    /// status if asked.
    fn done(&self, reason: StopReason, last_status: Option<i32>, alone: bool) -> StopReason {
        if !alone {
            return reason;
        }
        self.emit(Event::Done(reason));
        if self.exit_as_workers && !matches!(reason, StopReason::Stopped(_)) {
            if let Some(status) = last_status {
                // Given up: the app's own status, as an init passes it on.
                exit_hook::exit(status);
            }
        }
        reason
    }
}

/// [`Supervisor::last_words`], said once: by the stop's last hook, or when
/// the loop ends without one.
type LastWords = std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>;

/// The control socket's file, removed when the stop begins.
#[cfg(unix)]
type ControlFile = listen::SocketFile;

/// The signals that wake the loop: SIGCHLD, and SIGHUP and SIGQUIT when
/// they set a flag.
fn wake_signals(signals: &LoopSignals) -> Vec<i32> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGQUIT};
        let mut wake = vec![SIGCHLD];
        if signals.reload.is_some() {
            wake.push(SIGHUP);
        }
        if signals.force.is_some() {
            wake.push(SIGQUIT);
        }
        wake
    }
    #[cfg(not(unix))]
    {
        let _ = signals;
        Vec::new()
    }
}

/// The signal that reopens the log files: SIGUSR1, as logrotate expects.
#[cfg(unix)]
const REOPEN_SIGNAL: i32 = signal_hook::consts::SIGUSR1;
#[cfg(not(unix))]
const REOPEN_SIGNAL: i32 = 0;

/// A signal that sets a flag, for the duration of a run.
struct SignalFlag {
    #[cfg(unix)]
    id: signal_hook::SigId,
}

impl SignalFlag {
    #[cfg_attr(not(unix), allow(unused_variables))]
    fn register(
        signal: i32,
        name: &str,
        flag: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<SignalFlag, Error> {
        #[cfg(unix)]
        {
            let id = signal_hook::flag::register(signal, flag).map_err(|err| {
                Error::Setup(crate::error::context(err, format!("cannot handle {name}")))
            })?;
            Ok(SignalFlag { id })
        }
        #[cfg(not(unix))]
        Ok(SignalFlag {})
    }
}

impl Drop for SignalFlag {
    fn drop(&mut self) {
        #[cfg(unix)]
        signal_hook::low_level::unregister(self.id);
    }
}

/// The signals that set a flag for the loop, for the duration of a run:
/// SIGHUP when it reloads, SIGQUIT when it forces a stop. Registered
/// before the alarm, so a flag is set before the byte that wakes the loop
/// to look at it is written (signal-hook runs the handlers in order).
pub(crate) struct LoopSignals {
    pub(crate) reload: Option<Arc<std::sync::atomic::AtomicBool>>,
    pub(crate) force: Option<Arc<std::sync::atomic::AtomicBool>>,
    _handlers: Vec<SignalFlag>,
}

impl LoopSignals {
    fn register(reload: bool, force: bool) -> Result<LoopSignals, Error> {
        #[cfg(not(unix))]
        if reload || force {
            return Err(Error::Setup(io::Error::new(
                io::ErrorKind::Unsupported,
                "reloading on SIGHUP and forcing on SIGQUIT are Unix only",
            )));
        }
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut signals = LoopSignals {
            reload: None,
            force: None,
            _handlers: Vec::new(),
        };
        #[cfg(unix)]
        for (on, signal, name, flag) in [
            (
                reload,
                signal_hook::consts::SIGHUP,
                "SIGHUP",
                &mut signals.reload,
            ),
            (
                force,
                signal_hook::consts::SIGQUIT,
                "SIGQUIT",
                &mut signals.force,
            ),
        ] {
            if on {
                let set = Arc::new(std::sync::atomic::AtomicBool::new(false));
                signals
                    ._handlers
                    .push(SignalFlag::register(signal, name, set.clone())?);
                *flag = Some(set);
            }
        }
        Ok(signals)
    }

    /// The flags, for the loop.
    fn asked(&self) -> cluster::Asked {
        cluster::Asked {
            reload: self.reload.clone(),
            force: self.force.clone(),
        }
    }
}

/// What the program says last ([`Supervisor::last_words`]), once.
fn say_last_words(last_words: &LastWords) {
    let last = last_words
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(last) = last {
        last();
    }
}
