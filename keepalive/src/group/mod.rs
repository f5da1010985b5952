//! A run: what a process does once (the SIGHUP and SIGQUIT flags, the
//! alarm that wakes the loop, the child subreaper, keepalive's own
//! shutdown in exit_hook's phases) and what each supervisor does for
//! itself (its control socket, watch, health check, log files, loop), for
//! one supervisor ([`Supervisor::run`]) or several in one process
//! ([`Group`]): one loop, one reaper, one stop. A group's apps can come
//! and go while it runs ([`GroupHandle`]): one added is set up on the
//! loop's thread at its next turn, one stopped alone leaves the turns.
//!
//! `setup.rs` sets the process and each supervisor up; `stop.rs` is the
//! stop, of every app (exit_hook's hooks) or of one alone.

use std::io;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster};
use crate::stop::Shared;
use crate::supervisor::Spec;
use crate::{Error, StopReason, Supervisor, os};

mod setup;
mod stop;

pub(crate) use setup::LoopSignals;
#[cfg(target_os = "linux")]
use setup::Subreaper;
use setup::{Held, LastWords};
use stop::AppStop;

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
        run(self.supervisors, &self.handle.roster, false)
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

/// An app of the group, as the loop holds it.
struct Member {
    supervisor: Rc<Supervisor>,
    /// What its run holds (its control socket, watch, log files'
    /// handlers), dropped when it ends (its name is free again).
    held: Option<Held>,
    /// Its loop's state, until it ends.
    cluster: Option<Cluster>,
    /// Its turns have begun: the apps it starts after were ready.
    started: bool,
    /// It said it waits for the apps it starts after.
    said_waiting: bool,
    /// Its stop alone has begun.
    stopping_alone: bool,
    shared: Arc<Shared>,
    name: String,
}

/// How often an app waiting for others to be ready looks again (readiness
/// without a word comes with time, not with an event).
const WAITING_LOOKS_EVERY: Duration = Duration::from_millis(50);

/// A [`Supervisor::run`]: a group of one that ends the process with its
/// workers' status if asked, and says its end itself.
pub(crate) fn run_alone(mut supervisor: Supervisor) -> Result<StopReason, Error> {
    supervisor.after.clear(); // no other app to wait for
    run(vec![supervisor], &Arc::default(), true).map(|reasons| reasons[0])
}

/// Runs `supervisors`, and those added to `roster`, in one loop until each
/// has ended. `alone`: a [`Supervisor::run`], which ends the process with
/// its workers' status if asked, and says its end itself.
fn run(
    mut supervisors: Vec<Supervisor>,
    roster: &Arc<Roster>,
    alone: bool,
) -> Result<Vec<StopReason>, Error> {
    // However the run ends (a setup error too), nothing is added any more.
    let _ends = Ends(roster);
    // Added before the run: set up with the others.
    {
        let mut rolls = roster.lock();
        rolls.phase = Phase::Starting;
        supervisors.extend(rolls.added.drain(..).map(|(supervisor, _)| supervisor));
    }
    if supervisors.is_empty() {
        return Err(Error::Setup(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no supervisor to run",
        )));
    }
    for supervisor in &supervisors {
        supervisor.check()?;
    }
    let signals = LoopSignals::register(
        supervisors.iter().any(|s| s.reload_on_hangup),
        supervisors.iter().any(|s| s.force_on_quit),
    )?;
    let alarm = os::Alarm::new(&setup::wake_signals(&signals))
        .map_err(|err| Error::Setup(crate::error::context(err, "cannot handle SIGCHLD")))?;
    #[cfg(target_os = "linux")]
    let subreaper = Subreaper::become_one()?;
    let mut members = Vec::with_capacity(supervisors.len());
    for supervisor in supervisors {
        members.push(Member::set_up(supervisor, &alarm, roster, alone)?);
    }
    let hooks = stop::hooks(roster, alone && members[0].supervisor.exit_as_workers)?;
    roster.lock().phase = Phase::Running(alarm.bell());
    roster.changed.notify_all();
    let asked = signals.asked();
    loop {
        take_added(&mut members, roster, &alarm);
        take_updates(&mut members, roster);
        start_those_ready(&mut members, roster);
        let mut running: Vec<&mut Member> = members
            .iter_mut()
            .filter(|member| member.started && member.cluster.is_some())
            .collect();
        let mut clusters: Vec<&mut Cluster> = running
            .iter_mut()
            .filter_map(|member| member.cluster.as_mut())
            .collect();
        for (index, reason) in cluster::turn(&mut clusters, &asked, !alone) {
            drop(clusters);
            running[index].end(reason, roster);
            clusters = running
                .iter_mut()
                .filter_map(|member| member.cluster.as_mut())
                .collect();
        }
        drop(clusters);
        for member in &mut members {
            member.stop_alone_if_asked(roster);
        }
        let waiting = members
            .iter()
            .any(|member| !member.started && member.cluster.is_some());
        {
            let mut rolls = roster.lock();
            if members.iter().all(|member| member.cluster.is_none())
                && rolls.added.is_empty()
                && rolls.holds == 0
            {
                rolls.phase = Phase::Ended;
                break;
            }
        }
        let mut clusters: Vec<&mut Cluster> = members
            .iter_mut()
            .filter(|member| member.started)
            .filter_map(|member| member.cluster.as_mut())
            .collect();
        let until = waiting.then(|| Instant::now() + WAITING_LOOKS_EVERY);
        cluster::sleep(&mut clusters, &alarm, until);
    }
    drop(signals);
    for hook in hooks {
        hook.unregister();
    }
    let (apps, stopping, last_words) = {
        let mut rolls = roster.lock();
        let apps: Vec<_> = rolls
            .apps
            .iter()
            .map(|entry| (entry.stop.clone(), entry.last_words.clone(), entry.reason))
            .collect();
        (apps, rolls.stopping, rolls.last_words.take())
    };
    for (app, words, _) in &apps {
        // Ended by itself (given up, stopped alone): the stop hook that
        // would have said them is gone, and the caller ends the process.
        // (Stopped by the process's stop, its hook, which has the run's
        // end to itself, says them: said here, they could be cut by the
        // process ending from the hook's thread.)
        if !stopping {
            setup::say_last_words(words);
        }
        // The workers' last lines, copied out before the caller exits.
        app.shared
            .copiers
            .wait(os::later(Instant::now(), app.kill_timeout));
    }
    match last_words {
        Some(last) if !stopping => last(),
        // The stop hook's.
        Some(last) => roster.lock().last_words = Some(last),
        None => {}
    }
    let reasons: Vec<StopReason> = apps.iter().filter_map(|(_, _, reason)| *reason).collect();
    #[cfg(target_os = "linux")]
    drop(subreaper);
    Ok(members
        .iter()
        .zip(reasons)
        .map(|(member, reason)| {
            let last_status = member.shared.lock().last_status;
            member.supervisor.done(reason, last_status, alone)
        })
        .collect())
}

/// Marks the roster ended when the run returns.
struct Ends<'a>(&'a Roster);

impl Drop for Ends<'_> {
    fn drop(&mut self) {
        let mut rolls = self.0.lock();
        rolls.phase = Phase::Ended;
        // Those who added an app, or asked for an update, the run did not
        // take are told so; those who wait for an app's end are woken.
        rolls.added.clear();
        rolls.updates.clear();
        for entry in &rolls.apps {
            entry.stop.shared.lock().ended = true;
            entry.stop.shared.changed.notify_all();
        }
        self.0.changed.notify_all();
    }
}

/// Sets up the apps added since the last turn, each one's adder told how
/// it went; refused once the group is stopping.
fn take_added(members: &mut Vec<Member>, roster: &Arc<Roster>, alarm: &os::Alarm) {
    let added = std::mem::take(&mut roster.lock().added);
    for (supervisor, answer) in added {
        let refused = roster.lock().refusal();
        let set_up = match refused {
            Some(refused) => Err(refused),
            None => supervisor
                .check()
                .and_then(|()| Member::set_up(supervisor, alarm, roster, false)),
        };
        let _ = answer.send(set_up.map(|member| members.push(member)));
    }
}

/// Gives the apps named by the updates asked since the last turn their
/// new spec, each asker told how it went.
fn take_updates(members: &mut [Member], roster: &Roster) {
    let updates = std::mem::take(&mut roster.lock().updates);
    for (name, spec, answer) in updates {
        let cluster = members
            .iter_mut()
            .filter(|member| member.name == name)
            .find_map(|member| member.cluster.as_mut());
        let taken = match cluster {
            Some(cluster) => {
                cluster.spec = Rc::new(spec);
                Ok(())
            }
            None => Err(Error::Setup(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no running app of the group is named {name}"),
            ))),
        };
        let _ = answer.send(taken);
    }
}

/// Starts the turns of the apps whose `after` apps are all ready (every
/// worker, one at least); an app waiting says so once. Once the group is
/// stopping, none starts: an app being stopped takes its turns, and ends
/// having started nothing.
fn start_those_ready(members: &mut [Member], roster: &Roster) {
    let stopping = roster.lock().stopping;
    for index in 0..members.len() {
        if members[index].started || members[index].cluster.is_none() {
            continue;
        }
        let waits_for = members[index]
            .supervisor
            .after
            .iter()
            .find(|name| !is_ready(members, name))
            .cloned();
        let member = &mut members[index];
        if member.shared.lock().stopping.is_some() {
            member.started = true; // to end, starting nothing
            continue;
        }
        if stopping {
            continue; // until the stop hook stops it
        }
        match waits_for {
            Some(other) => {
                if !std::mem::replace(&mut member.said_waiting, true) {
                    member
                        .supervisor
                        .emit(crate::Event::Waiting { app: other.clone() });
                }
            }
            None => member.started = true,
        }
    }
}

/// Whether the running app `name` has every worker ready, one at least.
fn is_ready(members: &[Member], name: &str) -> bool {
    members
        .iter()
        .filter(|member| member.started && member.cluster.is_some() && member.name == name)
        .any(|member| {
            let state = member.shared.lock();
            !state.view.is_empty()
                && state
                    .view
                    .iter()
                    .all(|seen| seen.is_ready() && !seen.stopping)
        })
}

impl Member {
    /// Sets `supervisor` up (its control socket, listeners, log files) and
    /// puts it on the roster.
    fn set_up(
        mut supervisor: Supervisor,
        alarm: &os::Alarm,
        roster: &Roster,
        alone: bool,
    ) -> Result<Member, Error> {
        // `keepalive events NAME`: every event to the subscribers too.
        #[cfg(unix)]
        let subscribers = supervisor.subscribe();
        #[cfg(not(unix))]
        let subscribers = ();
        let mut held = supervisor.prepare(alarm, &subscribers, !alone)?;
        let sinks = held.sinks.take().unwrap_or_default();
        let supervisor = Rc::new(supervisor);
        let cluster = Cluster::new(supervisor.clone(), &held.tag, held.shared.clone(), sinks)?;
        let name = held.tag.clone();
        if supervisor.after.contains(&name) {
            return Err(Error::Setup(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} cannot start after itself"),
            )));
        }
        let mut rolls = roster.lock();
        if let Some(refused) = rolls.refusal() {
            // The stop began while it was set up: its hooks would not see it.
            return Err(refused);
        }
        rolls.apps.push(Entry {
            name: name.clone(),
            after: supervisor.after.clone(),
            stop: Arc::new(AppStop::of(&supervisor, &held.shared)),
            last_words: held.last_words.clone(),
            #[cfg(unix)]
            control_file: held.control.as_ref().map(crate::control::Server::file),
            reason: None,
        });
        drop(rolls);
        Ok(Member {
            shared: held.shared.clone(),
            supervisor,
            held: Some(held),
            cluster: Some(cluster),
            started: false,
            said_waiting: false,
            stopping_alone: false,
            name,
        })
    }

    /// It ended: its reason on the roster, its cluster and what it held
    /// dropped (its listeners close, its name is free).
    fn end(&mut self, reason: StopReason, roster: &Roster) {
        self.cluster = None;
        #[cfg(unix)]
        if let (Some(held), true) = (&self.held, self.shared.in_group) {
            // Its `keepalive events` streams end with it, after its `Done`.
            held.subscribers.close();
        }
        self.held = None;
        let mut rolls = roster.lock();
        let stopping = rolls.stopping;
        let last_words = rolls
            .apps
            .iter_mut()
            .find(|entry| Arc::ptr_eq(&entry.stop.shared, &self.shared))
            .map(|entry| {
                entry.reason = Some(reason);
                entry.last_words.clone()
            });
        drop(rolls);
        roster.changed.notify_all();
        // One app of a group ended by itself (given up, stopped alone): its
        // last words now (a pid file of its own goes). The process's stop
        // says them in its flush.
        if let (Some(last_words), true, false) = (last_words, self.shared.in_group, stopping) {
            setup::say_last_words(&last_words);
        }
    }

    /// A stop of this app alone was asked (its control socket, a handle):
    /// begun, on a thread of its own for as long as it lasts.
    fn stop_alone_if_asked(&mut self, roster: &Roster) {
        if self.cluster.is_none() || self.stopping_alone {
            return;
        }
        if !std::mem::take(&mut self.shared.lock().stop_asked) {
            return;
        }
        self.stopping_alone = true;
        let app = roster
            .lock()
            .apps
            .iter()
            .find(|entry| Arc::ptr_eq(&entry.stop.shared, &self.shared))
            .map(|entry| entry.stop.clone());
        if let Some(app) = app {
            let spawned = std::thread::Builder::new()
                .name(format!("keepalive-stop-{}", self.name))
                .spawn(move || app.stop_alone());
            if let Err(err) = spawned {
                // Asked again at the loop's next wake.
                tracing::warn!(%err, app = self.name, "no thread to stop the app alone");
                self.shared.lock().stop_asked = true;
                self.stopping_alone = false;
            }
        }
    }
}
