//! The supervisor's loop: N workers, each restarted on its own when it
//! exits (as the Node cluster primary does), and the rolling reload.
//!
//! The loop sleeps until something happens — a child exited (SIGCHLD), a
//! SIGHUP, the stop hook, a notification datagram, or the next timer (a
//! restart delay, a kill timeout, a listen timeout) — then reads what the
//! workers said, reaps what exited, and decides:
//!
//! - a **serving** worker that exited is restarted after its slot's policy
//!   delay, or its slot is given up; a worker that cannot be started is
//!   its slot's failure too. The supervisor is done when every slot is
//!   given up; until then the other workers serve on;
//! - a **reload** (SIGHUP) replaces the workers one slot at a time: start
//!   the replacement (the program looked up again), wait until it is ready
//!   (`READY=1` with `wait_ready`, else alive for `min_uptime`), then stop
//!   the old worker gracefully and go on to the next slot. A replacement
//!   that exits first or misses the listen timeout is killed, the old
//!   worker keeps serving, and the reload ends as failed. A SIGHUP during a
//!   reload is queued: one more reload follows;
//! - a **restart** (`keepalive restart NAME`) stops every worker, waits
//!   until they are gone, then starts every slot afresh; the listeners
//!   stay bound, so connections wait in the backlog meanwhile;
//! - a **retiring** worker (replaced) is killed, with its process group, if
//!   it has not exited at the kill timeout;
//! - whatever an ended worker **left behind** (its process group; on Linux
//!   its orphans) is stopped (`orphans.rs`).
//!
//! Once the stop hook set `stopping`, the loop starts nothing and only
//! reaps, until no worker and nothing they left is there; a reload going
//! on is abandoned (its replacement is stopped with the others).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod health;
mod readiness;
mod reap;
mod reload;
mod restart;
mod start;

pub(crate) use start::Sinks;

use super::event::Event;
#[cfg(unix)]
use super::listen::Listeners;
#[cfg(unix)]
use super::notify::{NotifyDir, NotifySocket};
use super::os::{self, Alarm};
use super::policy::Restarts;
use super::schedule::Schedule;
use super::stop::{Shared, kill_tree};
use super::{StopReason, Supervisor};
use crate::Error;

/// A worker started and not reaped yet.
struct Worker {
    pid: u32,
    slot: usize,
    started: Instant,
    /// It said `READY=1`.
    said_ready: bool,
    /// It was reported as not ready at the listen timeout.
    reported_late: bool,
    /// When it last said `WATCHDOG=1` (or started).
    last_ping: Instant,
    /// What it last said with `STATUS=`.
    status: Option<String>,
    /// How much of what it says was reported lately.
    chatter: readiness::Chatter,
    role: Role,
    #[cfg(unix)]
    notify: NotifySocket,
    /// The readiness pipe's read end (`--ready-fd`), until it said ready
    /// or was closed.
    #[cfg(unix)]
    ready_pipe: Option<std::os::fd::OwnedFd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The slot's worker.
    Serving,
    /// Started by a reload for its slot; serving once ready.
    Replacement,
    /// Replaced, asked to stop; killed at `kill_at` if still there.
    Retiring { kill_at: Instant, killed: bool },
}

/// One of the N places a worker runs in, with its own restart policy state.
#[derive(Default)]
struct Slot {
    restarts: Restarts,
    /// How its last worker ended, for `status`.
    last_exit: Option<String>,
    /// When to start its worker; `None` while one serves (or it gave up).
    start_at: Option<Instant>,
    given_up: Option<StopReason>,
}

/// A reload going on: the slot being replaced, and its replacement.
struct Reload {
    slot: usize,
    replacement: u32,
    deadline: Instant,
    /// This slot only (an unhealthy worker replaced), not every slot.
    only: bool,
}

pub(crate) struct Cluster<'a> {
    supervisor: &'a Supervisor,
    shared: &'a Shared,
    alarm: &'a Alarm,
    /// Set by SIGHUP.
    reload_asked: Option<Arc<AtomicBool>>,
    /// Set by SIGQUIT: kill everything now.
    force_asked: Option<Arc<AtomicBool>>,
    #[cfg(unix)]
    listeners: Option<Listeners>,
    #[cfg(unix)]
    notify_dir: NotifyDir,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    next_id: u64,
    reloading: Option<Reload>,
    reload_pending: bool,
    /// A restart waits for the old workers to be gone.
    restarting: bool,
    /// When to look at the workers' memory next (`max_memory`).
    memory_check_at: Option<Instant>,
    /// The next scheduled reload (`--cron-reload`).
    scheduled_reload: Option<Instant>,
    /// The time of this turn of the loop: read once a turn (and once it
    /// wakes), so that the turn's decisions agree on it.
    now: Instant,
    /// The log files the workers' streams go to.
    sinks: start::Sinks,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(
        supervisor: &'a Supervisor,
        tag: &str,
        shared: &'a Shared,
        alarm: &'a Alarm,
        signals: &crate::LoopSignals,
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
                    .unwrap_or_else(exit_hook::Signal::terminate)
                    .as_raw(),
                supervisor.kill_timeout,
                supervisor.listener.as_ref(),
            );
        }
        let now = Instant::now();
        Ok(Cluster {
            supervisor,
            shared,
            alarm,
            reload_asked: signals.reload.clone(),
            force_asked: signals.force.clone(),
            #[cfg(unix)]
            listeners,
            #[cfg(unix)]
            notify_dir,
            workers: Vec::new(),
            slots: (0..supervisor.workers)
                .map(|_| Slot {
                    start_at: Some(now),
                    ..Slot::default()
                })
                .collect(),
            next_id: 0,
            reloading: None,
            reload_pending: false,
            restarting: false,
            memory_check_at: supervisor.max_memory.map(|_| now),
            scheduled_reload: supervisor.reload_schedule.as_ref().and_then(Schedule::next),
            now,
            sinks,
        })
    }

    /// Runs the workers until every slot gave up or the supervisor is
    /// stopped, and until nothing they started is left.
    pub(crate) fn run(mut self) -> StopReason {
        loop {
            self.now = Instant::now();
            if self
                .force_asked
                .as_ref()
                .is_some_and(|asked| asked.swap(false, Ordering::AcqRel))
            {
                self.force();
            }
            self.read_notifications();
            // Before the stopping branch: a count due is said, not a
            // timer left in the past (which would wake the loop at once).
            self.report_quieted();
            let stopping = self.reap();
            self.shared
                .lock()
                .stragglers
                .tick(self.now, self.supervisor.listener.as_ref());
            // The stop hook waits for everything to be gone.
            self.shared.changed.notify_all();
            if let Some(signal) = stopping {
                if self.shared.lock().all_gone() {
                    return StopReason::Stopped(signal);
                }
                self.sleep();
                continue;
            }
            self.retire_overdue();
            self.progress_reload();
            self.check_health();
            self.report_late();
            self.start_due();
            if self.workers.is_empty() && self.slots.iter().all(|s| s.given_up.is_some()) {
                if self.shared.lock().all_gone() {
                    return self.slots[0].given_up.expect("every slot gave up");
                }
                self.sleep();
                continue;
            }
            let by_signal = self
                .reload_asked
                .as_ref()
                .is_some_and(|asked| asked.swap(false, Ordering::AcqRel));
            let by_control = std::mem::take(&mut self.shared.lock().reload_asked);
            if by_signal || by_control {
                self.reload_pending = true;
            }
            if self.scheduled_reload.is_some_and(|at| at <= self.now) {
                self.scheduled_reload = self
                    .supervisor
                    .reload_schedule
                    .as_ref()
                    .and_then(Schedule::next);
                self.supervisor.emit(Event::Scheduled);
                self.reload_pending = true;
            }
            if std::mem::take(&mut self.shared.lock().restart_asked) {
                self.start_restart();
            }
            if self.reload_pending && self.reloading.is_none() && !self.restarting {
                self.reload_pending = false;
                self.start_reload();
            }
            self.progress_restart();
            self.sleep();
        }
    }

    /// Sleeps until something happens, or the next timer is due; first
    /// publishes the workers as they are now, for `status`.
    fn sleep(&self) {
        self.publish();
        let until = self.next_due();
        #[cfg(unix)]
        {
            let fds: Vec<_> = self
                .workers
                .iter()
                .flat_map(|w| {
                    let ready = w.ready_pipe.as_ref().map(std::os::fd::AsFd::as_fd);
                    std::iter::once(w.notify.as_fd()).chain(ready)
                })
                .collect();
            self.alarm.sleep(&fds, until);
        }
        #[cfg(not(unix))]
        self.alarm.sleep(until);
    }

    /// The workers as the control socket shows them.
    fn publish(&self) {
        if self.supervisor.control.is_none() && self.supervisor.health_check.is_none() {
            return; // nobody can ask
        }
        let view = self
            .workers
            .iter()
            .map(|worker| {
                let slot = &self.slots[worker.slot];
                crate::protocol::Seen {
                    slot: worker.slot,
                    pid: worker.pid,
                    started: worker.started,
                    said_ready: worker.said_ready,
                    ready_after: (!self.supervisor.wait_ready)
                        .then_some(self.supervisor.policy.min_uptime),
                    stopping: matches!(worker.role, Role::Retiring { .. }),
                    restarts: slot.restarts.count,
                    last_exit: slot.last_exit.clone(),
                    status: worker.status.clone(),
                }
            })
            .collect();
        let mut state = self.shared.lock();
        let stopping = state.stopping.is_some();
        state.view = view;
        state.replacing = self.reloading.is_some() || self.restarting;
        if stopping {
            for seen in &mut state.view {
                seen.stopping = true;
            }
        }
    }

    /// The next moment the loop has something to do without being woken.
    fn next_due(&self) -> Option<Instant> {
        let policy = &self.supervisor.policy;
        let slots = self.slots.iter().filter_map(|slot| slot.start_at);
        let workers = self.workers.iter().filter_map(|worker| match worker.role {
            Role::Retiring {
                kill_at,
                killed: false,
            } => Some(kill_at),
            Role::Replacement if !self.supervisor.wait_ready => {
                Some(os::later(worker.started, policy.min_uptime))
            }
            Role::Serving
                if self.supervisor.wait_ready && !worker.said_ready && !worker.reported_late =>
            {
                Some(os::later(worker.started, self.supervisor.listen_timeout))
            }
            _ => None,
        });
        let reload = self.reloading.as_ref().map(|reload| reload.deadline);
        let stragglers = self.shared.lock().stragglers.next_due();
        let health = self.next_health_check();
        slots
            .chain(workers)
            .chain(reload)
            .chain(stragglers)
            .chain(health)
            .chain(self.next_quieted())
            .chain(self.scheduled_reload)
            .min()
    }

    /// Ready: said `READY=1` when the supervisor waits for it, else alive
    /// for `min_uptime`.
    fn is_ready(&self, worker: &Worker) -> bool {
        if self.supervisor.wait_ready {
            worker.said_ready
        } else {
            self.now.saturating_duration_since(worker.started) >= self.supervisor.policy.min_uptime
        }
    }

    /// The signal that asks a worker to stop outside a stop: `kill_signal`,
    /// else SIGTERM.
    fn kill_signal(&self) -> exit_hook::Signal {
        self.supervisor
            .kill_signal
            .unwrap_or_else(exit_hook::Signal::terminate)
    }

    /// SIGQUIT: the stop, forced. Every worker and what the workers left
    /// is killed now; a stop going on ends as soon as they are reaped, and
    /// without one, one starts (exit_hook's run, the stop hook finding
    /// nothing left to wait for) and ends the process with 128 + SIGQUIT.
    fn force(&mut self) {
        self.supervisor.emit(crate::Event::Forced);
        let now = self.now;
        let mut state = self.shared.lock();
        // From here on nothing starts, and the stop hook kills at once.
        state.stopping.get_or_insert(QUIT);
        state.kill_by = Some(now);
        for started in &mut state.children {
            started.signalled = true;
            kill_tree(&mut started.child);
        }
        state.stragglers.kill_all(self.supervisor.listener.as_ref());
        self.shared.changed.notify_all();
        drop(state);
        for worker in &mut self.workers {
            worker.role = Role::Retiring {
                kill_at: now,
                killed: true,
            };
        }
        exit_hook::start_exit(128 + QUIT);
    }

    /// SIGKILL to the worker `pid` and its process group.
    fn kill(&self, pid: u32) {
        let mut state = self.shared.lock();
        if let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) {
            kill_tree(&mut started.child);
        }
    }
}

/// SIGQUIT's number, the same on every Unix.
const QUIT: i32 = 3;

/// `err`, saying what was being done.
fn context(err: io::Error, doing: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{doing}: {err}"))
}
