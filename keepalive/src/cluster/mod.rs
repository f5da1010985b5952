//! The supervisor's loop: the shell around the decisions' state machine
//! ([`crate::machine`]). It sleeps until something happens — a child
//! exited (SIGCHLD), a SIGHUP, the stop hook, a notification datagram, or
//! the machine's next timer — then, in one turn at one time, reads what
//! the workers said, reaps what exited, tells the machine, and performs
//! what it decides: starting a worker (the program looked up again, with
//! the protocols' variables, its process group, its output), asking one
//! to stop, killing one with its process group. Whatever an ended worker
//! **left behind** (its process group; on Linux its orphans) is stopped
//! here too (`orphans.rs`).
//!
//! Once the stop hook set `stopping`, the loop starts nothing and only
//! reaps, until no worker and nothing they left is there; a reload going
//! on is abandoned (its replacement is stopped with the others).

use std::collections::{HashMap, VecDeque};
#[cfg(not(unix))]
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

mod group;
mod readiness;
mod reap;
mod start;

pub(crate) use group::{sleep, turn};

pub(crate) use start::Sinks;

use super::event::Event;
#[cfg(unix)]
use super::listen::Listeners;
use super::machine::{Effect, Input, Machine, Outcome, Settings, SpawnFailed, Ticket};
#[cfg(unix)]
use super::notify::{NotifyDir, NotifySocket};
use super::os;
use super::schedule::Schedule;
use super::stop::{Shared, Stopping, kill_tree};
use super::{StopReason, Supervisor};
use crate::Error;
#[cfg(unix)]
use crate::error::context;

/// The flags the signal handlers set for the loop.
pub(crate) struct Asked {
    /// Set by SIGHUP: reload.
    pub(crate) reload: Option<Arc<AtomicBool>>,
    /// Set by SIGQUIT: kill everything now.
    pub(crate) force: Option<Arc<AtomicBool>>,
}

/// What a cluster's turn must leave alone, being the other clusters' (in
/// a group): their live workers (with their notification sockets, which
/// their workers' children inherit), and the processes they watch (their
/// workers not reaped yet, what their ended workers left).
#[derive(Debug, Default)]
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "no orphans elsewhere")
)]
pub(crate) struct Foreign {
    pub(crate) workers: Vec<(u32, std::path::PathBuf)>,
    pub(crate) processes: Vec<u32>,
}

/// What the shell holds for a worker the machine knows by its pid.
#[cfg(unix)]
struct Handles {
    pid: u32,
    notify: NotifySocket,
    /// The readiness pipe's read end (`--ready-fd`), until it said ready
    /// or was closed.
    ready_pipe: Option<std::os::fd::OwnedFd>,
}

pub(crate) struct Cluster {
    pub(crate) supervisor: Rc<Supervisor>,
    /// What its workers are started as (a group's handle may replace it).
    pub(crate) spec: Rc<crate::supervisor::Spec>,
    pub(crate) shared: Arc<Shared>,
    #[cfg(unix)]
    listeners: Option<Listeners>,
    #[cfg(unix)]
    notify_dir: NotifyDir,
    #[cfg(unix)]
    handles: Vec<Handles>,
    /// The decisions.
    machine: Machine,
    /// The machine was told the supervisor is stopping.
    told_stop: bool,
    /// Where the answers to the requests waiting for them go.
    replies: HashMap<Ticket, std::sync::mpsc::Sender<Outcome>>,
    next_ticket: u64,
    /// The answers of this turn, sent once it is published.
    answered: Vec<(Ticket, Outcome)>,
    next_id: u64,
    /// The next scheduled reload (`--cron-reload`).
    scheduled_reload: Option<Instant>,
    /// The time of this turn of the loop: read once a turn (and once it
    /// wakes), so that the turn's decisions agree on it.
    now: Instant,
    /// The log files the workers' streams go to.
    sinks: start::Sinks,
}

impl Cluster {
    pub(crate) fn new(
        supervisor: Rc<Supervisor>,
        tag: &str,
        shared: Arc<Shared>,
        sinks: start::Sinks,
    ) -> Result<Self, Error> {
        #[cfg(unix)]
        let listeners = if supervisor.listen.is_empty() {
            None
        } else {
            let listeners = Listeners::bind(&supervisor.listen).map_err(Error::Setup)?;
            for addr in &listeners.bound {
                supervisor.emit(Event::Listening { addr: addr.clone() });
            }
            shared
                .lock()
                .socket_files
                .extend(listeners.files.iter().cloned());
            Some(listeners)
        };
        #[cfg(not(unix))]
        let _ = tag;
        #[cfg(not(unix))]
        if !supervisor.listen.is_empty() || supervisor.wait_ready {
            return Err(Error::Setup(io::Error::new(
                io::ErrorKind::Unsupported,
                "listeners and readiness are passed to workers on Unix only",
            )));
        }
        #[cfg(unix)]
        let notify_dir = {
            let named = supervisor.control.is_some().then_some(tag);
            let dir = NotifyDir::create(named).map_err(|err| {
                Error::Setup(context(
                    err,
                    "cannot make the notification sockets' directory",
                ))
            })?;
            shared.lock().notify_dir = Some(dir.path().to_owned());
            dir
        };
        // Holding the name (its control socket), what an earlier instance
        // of it left is ours to stop.
        #[cfg(target_os = "linux")]
        if supervisor.control.is_some() {
            crate::leftovers::stop(
                notify_dir.path(),
                supervisor
                    .kill_signal
                    .unwrap_or_else(exit_hook::Signal::terminate),
                supervisor.kill_timeout,
                supervisor.listener.as_ref(),
            );
        }
        let now = Instant::now();
        Ok(Cluster {
            spec: Rc::new(supervisor.spec()),
            supervisor: supervisor.clone(),
            shared,
            #[cfg(unix)]
            listeners,
            #[cfg(unix)]
            notify_dir,
            #[cfg(unix)]
            handles: Vec::new(),
            machine: Machine::new(
                Settings {
                    workers: supervisor.workers,
                    policy: supervisor.policy.clone(),
                    wait_ready: supervisor.wait_ready,
                    listen_timeout: supervisor.listen_timeout,
                    kill_timeout: supervisor.kill_timeout,
                    watchdog: supervisor.watchdog,
                    max_memory: supervisor.max_memory,
                    holds_sockets: !supervisor.listen.is_empty(),
                },
                now,
            ),
            told_stop: false,
            replies: HashMap::new(),
            next_ticket: 0,
            answered: Vec::new(),
            next_id: 0,
            scheduled_reload: supervisor.reload_schedule.as_ref().and_then(Schedule::next),
            now,
            sinks,
        })
    }

    /// One turn of the loop at `now`: what `forced` (SIGQUIT) and
    /// `hangup` (SIGHUP, when it reloads) ask, what the workers said, its
    /// workers the group's reaper found exited (`foreign`: what the other
    /// clusters own, not this one's orphans), what is due. The reason it
    /// ended, once every slot gave up or it was stopped and nothing it
    /// started is left.
    pub(crate) fn turn(
        &mut self,
        now: Instant,
        forced: bool,
        hangup: bool,
        foreign: &Foreign,
    ) -> Option<StopReason> {
        self.now = now;
        if forced && self.supervisor.force_on_quit {
            self.force();
        }
        self.read_notifications();
        let stopping = self.reap(foreign);
        self.shared
            .lock()
            .stragglers
            .tick(self.now, self.supervisor.listener.as_ref());
        // The stop hook waits for everything to be gone.
        self.shared.changed.notify_all();
        if let Some(stopping) = stopping {
            // No reload is scheduled any more: nothing to wake for.
            self.scheduled_reload = None;
            if self.shared.lock().all_gone() {
                self.send_answers();
                return Some(StopReason::Stopped(stopping.by));
            }
            self.take_commands(); // answered: stopping
            self.feed(Input::Tick);
            return None;
        }
        self.tell_asked(hangup && self.supervisor.reload_on_hangup);
        self.feed(Input::Tick);
        if let Some(reason) = self.machine.gave_up() {
            self.scheduled_reload = None;
            if self.shared.lock().all_gone() {
                self.send_answers();
                return Some(reason);
            }
        }
        None
    }

    /// What another cluster's turn must leave alone: this one's live
    /// workers, its workers not reaped yet and what its ended workers left.
    fn own(&self, into: &mut Foreign) {
        #[cfg(unix)]
        into.workers.extend(
            self.handles
                .iter()
                .map(|w| (w.pid, w.notify.path().to_owned())),
        );
        let state = self.shared.lock();
        into.processes
            .extend(state.children.iter().map(|s| s.child.id()));
        into.processes.extend(state.stragglers.pids());
    }

    /// Tells the machine what was asked since the last turn: a reload (by
    /// SIGHUP, the control socket, a watched file, the schedule), a
    /// restart, what the health check found, the memory it asks to read.
    fn tell_asked(&mut self, by_signal: bool) {
        if let Some(pids) = self.machine.memory_due(self.now) {
            let samples = pids
                .into_iter()
                .map(|pid| (pid, os::resident_bytes(pid)))
                .collect();
            self.feed(Input::Memory(samples));
        }
        let (by_control, restart, unhealthy) = {
            let mut state = self.shared.lock();
            (
                std::mem::take(&mut state.reload_asked),
                std::mem::take(&mut state.restart_asked),
                state.unhealthy.take(),
            )
        };
        if let Some(reason) = unhealthy {
            self.feed(Input::Unhealthy(reason));
        }
        if by_signal || by_control {
            self.feed(Input::Reload);
        }
        if self.scheduled_reload.is_some_and(|at| at <= self.now)
            && self.machine.gave_up().is_none()
        {
            self.scheduled_reload = self
                .supervisor
                .reload_schedule
                .as_ref()
                .and_then(Schedule::next);
            self.supervisor.emit(Event::Scheduled);
            self.feed(Input::Reload);
        }
        if restart {
            self.feed(Input::Restart);
        }
        self.take_commands();
    }

    /// Tells the machine the requests that wait for their outcome, each
    /// with its ticket.
    fn take_commands(&mut self) {
        let commands = std::mem::take(&mut self.shared.lock().commands);
        for (command, reply) in commands {
            let ticket = Ticket(self.next_ticket);
            self.next_ticket += 1;
            self.replies.insert(ticket, reply);
            self.feed(Input::Command { ticket, command });
        }
    }

    /// Tells the machine `input`, and performs what it decides, in order;
    /// an effect answered (a spawn) is answered before the next effect.
    fn feed(&mut self, input: Input) {
        let mut effects = VecDeque::from(self.machine.handle(self.now, input));
        while let Some(effect) = effects.pop_front() {
            if let Some(answer) = self.perform(effect) {
                let more = self.machine.handle(self.now, answer);
                for effect in more.into_iter().rev() {
                    effects.push_front(effect);
                }
            }
        }
    }

    /// Performs `effect`; returns what to tell the machine of it.
    fn perform(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Spawn { slot, purpose } => match self.start(slot) {
                Ok(Some(pid)) => Some(Input::Spawned {
                    slot,
                    purpose,
                    result: Ok(pid),
                }),
                Ok(None) => self.tell_stop(),
                Err(failed) => Some(Input::Spawned {
                    slot,
                    purpose,
                    result: Err(SpawnFailed {
                        reason: crate::error::chain(&failed.error),
                        transient: failed.transient,
                    }),
                }),
            },
            Effect::AskToStop { pid } => {
                self.ask_to_stop(pid);
                None
            }
            Effect::Kill { pid } => {
                self.kill(pid);
                None
            }
            Effect::Extend { pid, until } => {
                // The stop hook waiting on it is woken by the loop's turn,
                // which notifies after reading this.
                let mut state = self.shared.lock();
                if let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) {
                    started.extended_until = Some(until);
                }
                None
            }
            Effect::Emit(event) => {
                self.supervisor.emit(event);
                None
            }
            Effect::Reply { ticket, outcome } => {
                // Sent once the turn's view is published: a status asked
                // after the answer shows what it says.
                self.answered.push((ticket, outcome));
                None
            }
        }
    }

    /// [`Input::Stop`], once.
    fn tell_stop(&mut self) -> Option<Input> {
        (!std::mem::replace(&mut self.told_stop, true)).then_some(Input::Stop)
    }

    /// Before the loop sleeps: publishes the workers as they are now, for
    /// `status`, sends the turn's answers; when it has something to do
    /// without being woken.
    pub(crate) fn rest(&mut self) -> Option<Instant> {
        self.publish();
        self.send_answers();
        let stragglers = self.shared.lock().stragglers.next_due();
        self.machine
            .next_due()
            .into_iter()
            .chain(stragglers)
            .chain(self.scheduled_reload)
            .min()
    }

    /// What wakes the loop for this cluster: the workers' notification
    /// sockets and readiness pipes.
    #[cfg(unix)]
    pub(crate) fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.handles.iter().flat_map(|w| {
            let ready = w.ready_pipe.as_ref().map(std::os::fd::AsFd::as_fd);
            std::iter::once(w.notify.as_fd()).chain(ready)
        })
    }

    /// Sends this turn's answers (once its view is published).
    fn send_answers(&mut self) {
        for (ticket, outcome) in std::mem::take(&mut self.answered) {
            if let Some(reply) = self.replies.remove(&ticket) {
                // The asker may have gone: nobody to tell.
                let _ = reply.send(outcome);
            }
        }
    }

    /// The workers as the control socket shows them.
    fn publish(&self) {
        if self.supervisor.control.is_none()
            && self.supervisor.health_check.is_none()
            && !self.shared.in_group
        {
            return; // nobody can ask (in a group, the apps started after it do)
        }
        let (view, replacing) = self.machine.view();
        let mut state = self.shared.lock();
        let stopping = state.stopping.is_some();
        state.view = view;
        state.replacing = replacing;
        if stopping {
            for seen in &mut state.view {
                seen.stopping = true;
            }
        }
    }

    /// The signal that asks a worker to stop outside a stop: `kill_signal`,
    /// else SIGTERM.
    fn kill_signal(&self) -> exit_hook::Signal {
        self.supervisor
            .kill_signal
            .unwrap_or_else(exit_hook::Signal::terminate)
    }

    /// Asks the worker `pid` to stop, unless the stop hook did: under the
    /// lock, so that it is asked once.
    fn ask_to_stop(&self, pid: u32) {
        let signal = self.kill_signal();
        let mut state = self.shared.lock();
        let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) else {
            return;
        };
        if !std::mem::replace(&mut started.signalled, true) {
            self.supervisor.emit(Event::Stopping { pid, signal });
            let _ = os::signal_process(pid, signal);
        }
    }

    /// SIGQUIT: the stop, forced. Every worker and what the workers left
    /// is killed now; a stop going on ends as soon as they are reaped, and
    /// without one, one starts (exit_hook's run, the stop hook finding
    /// nothing left to wait for) and ends the process with 128 + SIGQUIT.
    fn force(&mut self) {
        self.feed(Input::Force);
        let now = self.now;
        let mut state = self.shared.lock();
        // From here on nothing starts, and the stop hook kills at once.
        let signal = self.kill_signal();
        state.stopping.get_or_insert(Stopping {
            by: Some(exit_hook::Signal::quit()),
            signal,
        });
        state.kill_by = Some(now);
        for started in &mut state.children {
            started.signalled = true;
            kill_tree(&mut started.child);
        }
        state.stragglers.kill_all(self.supervisor.listener.as_ref());
        self.shared.changed.notify_all();
        drop(state);
        exit_hook::start_exit(128 + exit_hook::Signal::quit().as_raw());
    }

    /// SIGKILL to the worker `pid` and its process group.
    fn kill(&self, pid: u32) {
        let mut state = self.shared.lock();
        if let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) {
            kill_tree(&mut started.child);
        }
    }
}
