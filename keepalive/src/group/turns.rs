//! The group's loop over its apps: each one set up (its control socket,
//! listeners, log files) and put on the roster, its turns begun once the
//! apps it starts after are ready, ended and dropped (its name free
//! again) when it has ended.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::setup;
#[cfg(target_os = "linux")]
use super::setup::Subreaper;
use super::setup::{Held, LoopSignals};
use super::stop::{self, AppStop};
use super::{Entry, Phase, Roster};
use crate::cluster::{self, Cluster};
use crate::stop::Shared;
use crate::{Error, StopReason, Supervisor, os};

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
    /// Its place on the roster (`Roster::apps`).
    entry: usize,
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
pub(super) fn run(
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
    turns(&mut members, roster, &alarm, &signals.asked(), alone);
    drop(signals);
    for hook in hooks {
        hook.unregister();
    }
    let reasons = say_what_is_left(roster);
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

/// The loop: each turn sets up the apps added, gives the apps updated
/// their spec, starts those whose `after` apps are ready, takes every
/// running app's turn (one reaper for all), begins the stops alone asked
/// for, and sleeps; until every app has ended and none is being added or
/// held for.
fn turns(
    members: &mut Vec<Member>,
    roster: &Arc<Roster>,
    alarm: &os::Alarm,
    asked: &cluster::Asked,
    alone: bool,
) {
    loop {
        take_added(members, roster, alarm);
        take_updates(members, roster);
        start_those_ready(members, roster);
        let mut running: Vec<&mut Member> = members
            .iter_mut()
            .filter(|member| member.started && member.cluster.is_some())
            .collect();
        let mut clusters: Vec<&mut Cluster> = running
            .iter_mut()
            .filter_map(|member| member.cluster.as_mut())
            .collect();
        let ended = cluster::turn(&mut clusters, asked, !alone);
        drop(clusters);
        for (index, reason) in ended {
            running[index].end(reason, roster);
        }
        for member in members.iter_mut() {
            member.stop_alone_if_asked(roster);
        }
        {
            let mut rolls = roster.lock();
            if members.iter().all(|member| member.cluster.is_none())
                && rolls.added.is_empty()
                && rolls.holds == 0
            {
                rolls.phase = Phase::Ended;
                return;
            }
        }
        let waiting = members
            .iter()
            .any(|member| !member.started && member.cluster.is_some());
        let until = waiting.then(|| Instant::now() + WAITING_LOOKS_EVERY);
        let mut clusters: Vec<&mut Cluster> = members
            .iter_mut()
            .filter(|member| member.started)
            .filter_map(|member| member.cluster.as_mut())
            .collect();
        cluster::sleep(&mut clusters, alarm, until);
    }
}

/// Once the loop is over: the last words not said yet (unless the
/// process's stop says them), the workers' last lines copied out; every
/// app's reason, in order.
fn say_what_is_left(roster: &Roster) -> Vec<StopReason> {
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
    apps.iter().filter_map(|(_, _, reason)| *reason).collect()
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
        let entry = rolls.apps.len();
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
            entry,
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
        let entry = &mut rolls.apps[self.entry];
        entry.reason = Some(reason);
        let last_words = entry.last_words.clone();
        drop(rolls);
        roster.changed.notify_all();
        // One app of a group ended by itself (given up, stopped alone): its
        // last words now (a pid file of its own goes). The process's stop
        // says them in its flush.
        if self.shared.in_group && !stopping {
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
        let app = roster.lock().apps[self.entry].stop.clone();
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
