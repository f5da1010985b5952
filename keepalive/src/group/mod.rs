//! A run: what a process does once (the SIGHUP and SIGQUIT flags, the
//! alarm that wakes the loop, the child subreaper, keepalive's own
//! shutdown in exit_hook's phases) and what each supervisor does for
//! itself (its control socket, watch, health check, log files, loop), for
//! one supervisor ([`Supervisor::run`]) or several in one process
//! ([`Group`]): one loop, one reaper, one stop. A group's apps can come
//! and go while it runs ([`GroupHandle`]): one added is set up on the
//! loop's thread at its next turn, one stopped alone leaves the turns.
//!
//! `turns.rs` is the run and its loop; `setup.rs` sets the process and
//! each supervisor up; `stop.rs` is the stop, of every app (exit_hook's
//! hooks) or of one alone.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};

use crate::stop::Shared;
use crate::supervisor::Spec;
use crate::{Error, StopReason, Supervisor, os};

mod setup;
mod stop;
mod turns;

use setup::LastWords;
use stop::AppStop;
pub(crate) use turns::run_alone;

/// Several supervisors in one process, each with its own workers, name
/// and control socket: one loop and one reaper for all, one stop. An app's
/// trouble (a give-up, a crash loop, a failed reload) stays that app's:
/// the others run on. The process's stop (exit_hook's: SIGTERM, Ctrl+C)
/// stops every app, those another starts [`after`](Supervisor::after)
/// first; `keepalive stop` on one app's name stops that app alone.
///
/// ```no_run
/// use keepalive::{Group, Supervisor};
///
/// let reasons = Group::new()
///     .app(Supervisor::new("db-server").control("db"))
///     .app(Supervisor::new("web-server").workers(2).control("web").after(["db"]))
///     .run()?;
/// eprintln!("each app's end: {reasons:?}");
/// # Ok::<(), keepalive::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a Group does nothing until `run` is called"]
pub struct Group {
    supervisors: Vec<Supervisor>,
    handle: GroupHandle,
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

    /// What the process says (or removes: a pid file) last: once every
    /// app's workers are stopped and their last lines copied out, by the
    /// process's stop or when the run returns (the group's own
    /// [`Supervisor::last_words`]).
    pub fn last_words(self, last: impl FnOnce() + Send + 'static) -> Group {
        self.handle.roster.lock().last_words = Some(Box::new(last));
        self
    }

    /// What other threads change the running group with: an app added,
    /// one stopped alone.
    ///
    /// ```no_run
    /// use keepalive::{Group, Supervisor};
    ///
    /// let group = Group::new().app(Supervisor::new("web-server").control("web"));
    /// let apps = group.handle();
    /// std::thread::spawn(move || {
    ///     apps.add(Supervisor::new("jobs-runner").control("jobs"))?;
    ///     let reason = apps.stop("jobs")?;
    ///     eprintln!("jobs: {reason:?}");
    ///     Ok::<(), keepalive::Error>(())
    /// });
    /// group.run()?;
    /// # Ok::<(), keepalive::Error>(())
    /// ```
    pub fn handle(&self) -> GroupHandle {
        self.handle.clone()
    }

    /// Runs every supervisor until each has ended (every slot gave up, it
    /// was stopped alone, or the process was stopped) and none is being
    /// added or held for ([`GroupHandle::hold`]); each one's reason, in
    /// the order they were added. SIGHUP reloads those that reload on it;
    /// SIGQUIT forces the stop of those that ask for it (either, if one
    /// of the apps it starts with asks).
    ///
    /// # Errors
    ///
    /// As [`Supervisor::run`], for any of the apps it starts with;
    /// [`Error::Setup`] if there is none.
    pub fn run(self) -> Result<Vec<StopReason>, Error> {
        turns::run(self.supervisors, &self.handle.roster, false)
    }
}

/// A running [`Group`]'s apps, from any thread: [`add`](Self::add) one,
/// [`stop`](Self::stop) one alone, [`hold`](Self::hold) the group open
/// in between. Cloned, it is the same group's.
#[derive(Clone, Debug, Default)]
pub struct GroupHandle {
    roster: Arc<Roster>,
}

impl GroupHandle {
    /// Adds an app to the group. Running, the group sets it up at its
    /// loop's next turn (its control socket, its listeners, its log
    /// files) and this returns once it has: its workers start then, or
    /// once the apps it starts [`after`](Supervisor::after) are ready.
    /// Before [`Group::run`], it joins the apps the group starts with.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::run`] for its setup (its control name taken, a
    /// listener that cannot be bound); [`Error::Setup`] once the group is
    /// stopping or has ended.
    pub fn add(&self, supervisor: Supervisor) -> Result<(), Error> {
        let (answer, answered) = mpsc::channel();
        {
            let mut rolls = self.roster.lock();
            if let Phase::Before = rolls.phase {
                rolls.added.push((supervisor, answer));
                return Ok(()); // set up with the others at the start
            }
            drop(rolls);
            let mut rolls = self.roster.settled();
            if let Some(refused) = rolls.refusal() {
                return Err(refused);
            }
            rolls.added.push((supervisor, answer));
            if let Phase::Running(bell) = &rolls.phase {
                bell.ring();
            }
        }
        answered
            .recv()
            .unwrap_or_else(|_| Err(not_running("the group ended before setting the app up")))
    }

    /// Stops the app `name` alone, as the process's stop stops each app
    /// (its stop signal to every worker once, the kill at its kill
    /// timeout), and returns once its workers and what they left are
    /// gone: its reason, [`StopReason::Stopped`] by SIGTERM. The other
    /// apps run on; the group ends if it was the last one (see
    /// [`hold`](Self::hold)). Asked before the group runs, it waits until
    /// the run has set its apps up.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] ([`io::ErrorKind::NotFound`]) if no running app
    /// of the group has that name.
    pub fn stop(&self, name: &str) -> Result<StopReason, Error> {
        let running = self.roster.settled().running(name);
        let Some((index, shared)) = running else {
            return Err(Error::Setup(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no running app of the group is named {name}"),
            )));
        };
        shared.stop_alone();
        let mut rolls = self.roster.lock();
        loop {
            if let Some(reason) = rolls.apps[index].reason {
                return Ok(reason);
            }
            if let Phase::Ended = rolls.phase {
                return Err(not_running("the group's run ended with an error"));
            }
            // Ended (its shared state says so) a moment before the loop
            // records its reason.
            rolls = self
                .roster
                .changed
                .wait(rolls)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The app `name`'s next workers are started as `supervisor` says:
    /// its program, arguments, environment, working directory and output
    /// (its other settings are not taken). The running workers are left
    /// as they are: a reload (`keepalive reload NAME`, ready-first) or a
    /// restart replaces them. Returns once the group took it (asked
    /// before the group runs, once the run has set its apps up).
    ///
    /// ```no_run
    /// # let apps = keepalive::Group::new().handle();
    /// use keepalive::{Request, Supervisor};
    ///
    /// apps.update("web", &Supervisor::new("web-server-v2").env("MODE", "fast"))?;
    /// keepalive::control::request("web", &Request::ReloadAndWait)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] ([`io::ErrorKind::NotFound`]) if no running app
    /// of the group has that name.
    pub fn update(&self, name: &str, supervisor: &Supervisor) -> Result<(), Error> {
        let (answer, answered) = mpsc::channel();
        {
            let mut rolls = self.roster.settled();
            let Phase::Running(bell) = &rolls.phase else {
                return Err(not_running("the group is not running"));
            };
            bell.ring();
            rolls
                .updates
                .push((name.to_owned(), supervisor.spec(), answer));
        }
        answered
            .recv()
            .unwrap_or_else(|_| Err(not_running("the group ended before taking it")))
    }

    /// Keeps the group running while the returned value lives, even with
    /// every app ended: to stop an app and add it again with other
    /// settings.
    pub fn hold(&self) -> Hold {
        self.roster.lock().holds += 1;
        Hold {
            roster: self.roster.clone(),
        }
    }
}

/// Holds a group open ([`GroupHandle::hold`]) until dropped.
#[derive(Debug)]
#[must_use = "the group is held only while this lives"]
pub struct Hold {
    roster: Arc<Roster>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut rolls = self.roster.lock();
        rolls.holds -= 1;
        if let Phase::Running(bell) = &rolls.phase {
            bell.ring(); // the group may end now
        }
    }
}

/// The group's apps as its loop, its stop hooks and its handles share
/// them.
#[derive(Debug, Default)]
struct Roster {
    rolls: Mutex<Rolls>,
    /// An app ended.
    changed: Condvar,
}

impl Roster {
    fn lock(&self) -> MutexGuard<'_, Rolls> {
        self.rolls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`lock`](Self::lock), once the run has set its first apps up (or
    /// ended): what a handle asks is then answered by the loop, or
    /// refused.
    fn settled(&self) -> MutexGuard<'_, Rolls> {
        self.changed
            .wait_while(self.lock(), |rolls| {
                matches!(rolls.phase, Phase::Before | Phase::Starting)
            })
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a group's run is.
#[derive(Default)]
enum Phase {
    /// `run` was not called yet.
    #[default]
    Before,
    /// `run` sets its first apps up.
    Starting,
    /// The loop runs; the bell wakes it.
    Running(os::Bell),
    /// The run is over.
    Ended,
}

#[derive(Default)]
struct Rolls {
    phase: Phase,
    /// Set by the stop hooks: nothing is added or started any more.
    stopping: bool,
    /// Apps to set up at the loop's next turn, and whom to tell how it went.
    added: Vec<(Supervisor, Answer)>,
    /// New specs for running apps' next workers, by app name.
    updates: Vec<(String, Spec, Answer)>,
    /// Every app set up, in the order it was, ended ones too.
    apps: Vec<Entry>,
    /// Live [`Hold`]s.
    holds: usize,
    /// [`Group::last_words`].
    last_words: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Rolls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rolls")
            .field("stopping", &self.stopping)
            .field("apps", &self.apps.len())
            .field("holds", &self.holds)
            .finish_non_exhaustive()
    }
}

/// Where the loop says how a handle's request went.
type Answer = mpsc::Sender<Result<(), Error>>;

impl Rolls {
    /// Why an app cannot be added now, if it cannot.
    fn refusal(&self) -> Option<Error> {
        if let Phase::Ended = self.phase {
            Some(not_running("the group has ended"))
        } else if self.stopping {
            Some(not_running("the group is stopping"))
        } else {
            None
        }
    }

    /// The running app named `name`: its index, its state.
    fn running(&self, name: &str) -> Option<(usize, Arc<Shared>)> {
        self.apps
            .iter()
            .enumerate()
            .rev()
            .find(|(_, entry)| entry.name == name && entry.reason.is_none())
            .map(|(index, entry)| (index, entry.stop.shared.clone()))
    }
}

fn not_running(why: &str) -> Error {
    Error::Setup(io::Error::new(io::ErrorKind::NotConnected, why))
}

/// An app of the group, as the stop hooks and the handles see it.
struct Entry {
    /// Its name: its control name (or its program's).
    name: String,
    /// The apps it starts after.
    after: Vec<String>,
    stop: Arc<AppStop>,
    last_words: Arc<LastWords>,
    /// Its control socket's file, removed when the process's stop begins.
    #[cfg(unix)]
    control_file: Option<crate::listen::SocketFile>,
    /// How it ended, once it has.
    reason: Option<StopReason>,
}
