//! What a run sets up: once for the process (the SIGHUP and SIGQUIT
//! flags, the child subreaper) and for each supervisor (its control
//! socket, watch, health check, log files), and what a supervisor's run
//! says at its end.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(unix)]
use crate::control;
use crate::event::Event;
#[cfg(unix)]
use crate::protocol;
use crate::stop::Shared;
use crate::{Error, StopReason, Supervisor, cluster, default_name, http_check, logfile, os, watch};

/// What a supervisor holds for its run.
pub(super) struct Held {
    pub(super) shared: Arc<Shared>,
    pub(super) tag: String,
    #[cfg(unix)]
    pub(super) control: Option<control::Server>,
    _watch: Option<watch::Watch>,
    pub(super) last_words: Arc<LastWords>,
    pub(super) sinks: Option<cluster::Sinks>,
    _reopen: Vec<SignalFlag>,
    /// Who follows its events (`keepalive events NAME`).
    #[cfg(unix)]
    pub(super) subscribers: Arc<control::Subscribers>,
}

/// The process the workers' subreaper (Linux) for the run: given back when
/// dropped (also when the setup fails half-way), unless it was one before.
#[cfg(target_os = "linux")]
pub(super) struct Subreaper {
    was: bool,
}

#[cfg(target_os = "linux")]
impl Subreaper {
    pub(super) fn become_one() -> Result<Subreaper, Error> {
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

impl Supervisor {
    /// What this supervisor sets up for itself: the state its loop shares
    /// with its stop and its control threads, watch, its control socket
    /// (its name), health check, last words, log files.
    pub(super) fn prepare(
        &mut self,
        alarm: &os::Alarm,
        #[cfg(unix)] subscribers: &Arc<control::Subscribers>,
        #[cfg(not(unix))] _subscribers: &(),
        in_group: bool,
    ) -> Result<Held, Error> {
        let shared = Arc::new(Shared::new(alarm.bell(), in_group));
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
            #[cfg(unix)]
            subscribers: subscribers.clone(),
        })
    }

    /// Every event to the control socket's subscribers too (`keepalive
    /// events NAME`): they are returned, the listener wrapped.
    #[cfg(unix)]
    pub(super) fn subscribe(&mut self) -> Arc<control::Subscribers> {
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
    pub(super) fn check(&self) -> Result<(), Error> {
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
            argv: self.command_line.clone(),
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
    pub(super) fn done(
        &self,
        reason: StopReason,
        last_status: Option<i32>,
        alone: bool,
    ) -> StopReason {
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
pub(super) type LastWords = std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>;

/// The signals that wake the loop: SIGCHLD, and SIGHUP and SIGQUIT when
/// they set a flag.
pub(super) fn wake_signals(signals: &LoopSignals) -> Vec<i32> {
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
    pub(super) fn register(
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
    pub(super) fn register(reload: bool, force: bool) -> Result<LoopSignals, Error> {
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
    pub(super) fn asked(&self) -> cluster::Asked {
        cluster::Asked {
            reload: self.reload.clone(),
            force: self.force.clone(),
        }
    }
}

/// What the program says last ([`Supervisor::last_words`]), once.
pub(super) fn say_last_words(last_words: &LastWords) {
    let last = last_words
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(last) = last {
        last();
    }
}
