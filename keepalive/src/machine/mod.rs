//! The supervisor's decisions, as a state machine with no clock, no
//! process, no lock and no I/O: [`Machine::handle`] takes the time and one
//! [`Input`] (a worker started, said something, exited; the time passed;
//! a reload, a restart, a stop was asked) and returns the [`Effect`]s to
//! perform (start a worker, ask one to stop, kill one, report an event).
//! The loop in `cluster/` is the shell that reads the clock, waits on the
//! OS, performs the effects and feeds their results back; the unit tests
//! in `tests.rs` drive the machine with a fake clock and fake children.
//!
//! What the machine decides, one application's N workers:
//!
//! - a **serving** worker that exited is restarted after its slot's policy
//!   delay, or its slot is given up; a worker that cannot be started is
//!   its slot's failure too. The supervisor is done when every slot is
//!   given up; until then the other workers serve on;
//! - a **reload** replaces the workers one slot at a time: start the
//!   replacement, wait until it is ready (`READY=1` with `wait_ready`,
//!   else alive for `min_uptime`), then stop the old worker gracefully and
//!   go on to the next slot. A replacement that exits first or misses the
//!   listen timeout is killed, the old worker keeps serving, and the reload
//!   ends as failed. A reload asked during a reload is queued: one more
//!   reload follows;
//! - a **restart** stops every worker, waits until they are gone, then
//!   starts every slot afresh;
//! - a **retiring** worker (replaced) is killed if it has not exited at
//!   the kill timeout;
//! - an **unhealthy** worker (no `WATCHDOG=1`, too much memory, a failed
//!   health check) is replaced ready-first, as in a reload of its slot.
//!
//! Once stopping, the machine starts nothing and only sees workers exit.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

mod exits;
mod health;
mod reload;
mod said;
#[cfg(all(test, unix))]
mod tests;

use crate::StopReason;
use crate::event::Event;
use crate::os::later;
use crate::policy::{Policy, Restarts};
use crate::protocol::Seen;

use said::Chatter;
pub(crate) use said::Message;

/// The most workers a scale asks for (as `--workers`).
const MAX_WORKERS: usize = u16::MAX as usize;

/// What a restart that abandons a reload going on says besides.
pub(crate) const ABANDONS_A_RELOAD: &str =
    "workers were being replaced (a reload): that reload is abandoned for the restart";

/// Why a request is not done: the supervisor is stopping.
const STOPPING: &str = "the instance is stopping";

/// What the machine is told.
#[derive(Debug)]
pub(crate) enum Input {
    /// The answer to [`Effect::Spawn`]: the worker's pid, or why it could
    /// not start. (A spawn refused because the supervisor is stopping is
    /// told as [`Input::Stop`].)
    Spawned {
        slot: usize,
        purpose: Purpose,
        result: Result<u32, SpawnFailed>,
    },
    /// The worker `pid` said `message`; `refused` names a sender that may
    /// not say it for the worker (not the worker, not of its tree).
    #[cfg_attr(not(unix), allow(dead_code, reason = "no notification socket"))]
    Said {
        pid: u32,
        message: Message,
        refused: Option<u32>,
    },
    /// The worker `pid` exited. What it said before is told first.
    Exited { pid: u32, status: ExitStatus },
    /// The resident memory of the pids [`Machine::memory_due`] named.
    Memory(Vec<(u32, Option<u64>)>),
    /// The health check failed (`--health-check`).
    Unhealthy(String),
    /// A reload was asked (SIGHUP, the control socket, a watched file, the
    /// schedule): taken at the next [`Input::Tick`].
    Reload,
    /// A restart was asked: taken at the next [`Input::Tick`].
    Restart,
    /// The supervisor is stopping: nothing starts any more.
    Stop,
    /// SIGQUIT: every worker is being killed now.
    Force,
    /// A control request, answered with [`Effect::Reply`] and `ticket`
    /// once it is done.
    Command { ticket: Ticket, command: Command },
    /// The time passed: do what is due. The last input of a turn.
    Tick,
}

/// A control request's place: its answer comes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(pub(crate) u64);

/// What a control request asks, answered when it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code, reason = "no control socket"))]
pub(crate) enum Command {
    /// A rolling reload; answered when it is over (by the reload that
    /// starts after the request: one going then has its own). Taken at
    /// the next [`Input::Tick`].
    Reload,
    /// Every worker stopped, then every slot started afresh; answered when
    /// every slot's new worker is ready, or one gave up, or the listen
    /// timeout passed. Taken at the next [`Input::Tick`].
    Restart,
    /// This many workers (at least 1): new slots started, answered as a
    /// restart is; or the last slots' workers stopped gracefully, answered
    /// when they are gone. Taken at a tick with no reload or restart going.
    Scale(usize),
}

/// How a request that waited ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Done, or why not.
    pub(crate) result: Result<(), String>,
    /// What it did besides what was asked (a restart that abandoned a
    /// reload).
    pub(crate) note: Option<String>,
}

/// What a worker is started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// To serve its slot (a first start, a restart).
    Serve,
    /// To replace its slot's worker once ready (a reload, a health check).
    Replace,
}

/// Why a worker could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpawnFailed {
    pub(crate) reason: String,
    /// The system's passing want (descriptors, processes, memory), worth
    /// trying again whatever the policy says of a program that cannot start.
    pub(crate) transient: bool,
}

/// What the shell is to do, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Effect {
    /// Start a worker for `slot`, and answer with [`Input::Spawned`]
    /// before the effects that follow this one.
    Spawn { slot: usize, purpose: Purpose },
    /// Ask the worker to stop with the kill signal, unless it was asked
    /// already (by the stop hook).
    AskToStop { pid: u32 },
    /// SIGKILL the worker and its process group.
    Kill { pid: u32 },
    /// The worker's stop may last until `until` (`EXTEND_TIMEOUT_USEC=`).
    Extend { pid: u32, until: Instant },
    /// Report an event.
    Emit(Event),
    /// The answer to the request of `ticket`.
    Reply { ticket: Ticket, outcome: Outcome },
}

/// The settings the decisions depend on.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) policy: Policy,
    pub(crate) wait_ready: bool,
    pub(crate) listen_timeout: Duration,
    pub(crate) kill_timeout: Duration,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) max_memory: Option<u64>,
    /// The supervisor holds the listening sockets (`--listen`).
    pub(crate) holds_sockets: bool,
}

/// A worker started and not reaped yet.
#[derive(Debug)]
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
    chatter: Chatter,
    role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The slot's worker.
    Serving,
    /// Started by a reload for its slot; serving once ready.
    Replacement,
    /// Asked to stop (replaced, restarted, forced); killed at `kill_at`
    /// if still there.
    Retiring { kill_at: Instant, killed: bool },
}

/// One of the N places a worker runs in, with its own restart policy state.
#[derive(Debug, Default)]
struct Slot {
    restarts: Restarts,
    /// How its last worker ended, for `status`.
    last_exit: Option<String>,
    /// When to start its worker; `None` while one serves (or it gave up).
    start_at: Option<Instant>,
    given_up: Option<StopReason>,
}

/// A reload going on: the slot being replaced, and its replacement.
#[derive(Debug)]
struct Reload {
    slot: usize,
    /// `None` while it is being spawned.
    replacement: Option<u32>,
    deadline: Instant,
    /// This slot only (an unhealthy worker replaced), not every slot.
    only: bool,
}

/// Slots started for requests that wait: answered once each slot has a
/// ready worker, or one gave up, or at `until`.
#[derive(Debug)]
struct Awaited {
    slots: std::ops::Range<usize>,
    until: Instant,
    waiters: Vec<Ticket>,
    note: Option<String>,
}

/// The tickets waiting for an operation: asked for the next one, and of
/// the one going.
#[derive(Debug, Default)]
struct Waiters {
    asked: Vec<Ticket>,
    going: Vec<Ticket>,
}

/// The decisions' state: the workers, their slots, what goes on.
#[derive(Debug)]
pub(crate) struct Machine {
    settings: Settings,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    reloading: Option<Reload>,
    reload_pending: bool,
    restart_asked: bool,
    /// A restart waits for the old workers to be gone.
    restarting: bool,
    /// Who waits for a reload: the one going (`going`) or the next
    /// (`asked`).
    reload_waiters: Waiters,
    /// Who waits for a restart: asked, the one going, or its start.
    restart_waiters: Waiters,
    /// Slots started for requests that wait for their workers to be ready.
    awaited: Vec<Awaited>,
    /// The workers to start once the input is handled: (slot, purpose).
    to_spawn: Vec<(usize, Purpose)>,
    /// The restart going abandoned a reload: said in its answer.
    abandoned_reload: bool,
    /// A scale asked: to how many, and who waits for it.
    scale_asked: Option<(usize, Vec<Ticket>)>,
    /// Workers scaled away, and who waits for them to be gone.
    shrinking: Vec<(Vec<u32>, Vec<Ticket>)>,
    stopping: bool,
    /// What the health check found, for the next tick to act on.
    unhealthy: Option<String>,
    /// When to look at the workers' memory next (`max_memory`).
    memory_check_at: Option<Instant>,
    /// The memory read for the next tick to look at.
    memory: Option<Vec<(u32, Option<u64>)>>,
    /// The time of the input being handled.
    now: Instant,
    effects: Vec<Effect>,
}

impl Machine {
    /// Every slot due to start at `now`.
    pub(crate) fn new(settings: Settings, now: Instant) -> Machine {
        Machine {
            slots: (0..settings.workers)
                .map(|_| Slot {
                    start_at: Some(now),
                    ..Slot::default()
                })
                .collect(),
            memory_check_at: settings.max_memory.map(|_| now),
            settings,
            workers: Vec::new(),
            reloading: None,
            reload_pending: false,
            restart_asked: false,
            restarting: false,
            reload_waiters: Waiters::default(),
            restart_waiters: Waiters::default(),
            awaited: Vec::new(),
            to_spawn: Vec::new(),
            abandoned_reload: false,
            scale_asked: None,
            shrinking: Vec::new(),
            stopping: false,
            unhealthy: None,
            memory: None,
            now,
            effects: Vec::new(),
        }
    }

    /// Takes `input` at `now`; returns what to do.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        self.now = now;
        match input {
            Input::Spawned {
                slot,
                purpose,
                result,
            } => self.spawned(slot, purpose, result),
            Input::Said {
                pid,
                message,
                refused,
            } => self.said(pid, message, refused),
            Input::Exited { pid, status } => self.exited(pid, status),
            Input::Memory(samples) => self.memory_read(samples),
            Input::Unhealthy(reason) => self.unhealthy = Some(reason),
            Input::Reload => self.reload_pending = true,
            Input::Restart => self.restart_asked = true,
            Input::Stop => self.stop(),
            Input::Force => self.force(),
            Input::Command { ticket, command } => self.command(ticket, command),
            Input::Tick => self.tick(),
        }
        self.spawn_wanted();
        std::mem::take(&mut self.effects)
    }

    /// What is due: the turn's decisions, in their order.
    fn tick(&mut self) {
        self.report_quieted();
        if self.stopping {
            return;
        }
        self.retire_overdue();
        self.progress_reload();
        self.check_health();
        self.report_late();
        self.start_due();
        self.progress_awaited();
        if self.gave_up().is_some() {
            return;
        }
        if std::mem::take(&mut self.restart_asked) {
            self.start_restart();
        }
        if self.reload_pending && self.reloading.is_none() && !self.restarting {
            self.reload_pending = false;
            self.start_reload();
        }
        self.progress_restart();
        if self.reloading.is_none() && !self.restarting {
            if let Some((to, waiters)) = self.scale_asked.take() {
                self.scale(to, waiters);
            }
        }
        self.progress_shrinking();
    }

    /// A control request: queued for the next tick.
    fn command(&mut self, ticket: Ticket, command: Command) {
        if self.stopping {
            self.answer(&[ticket], Err(STOPPING.into()));
            return;
        }
        match command {
            Command::Reload => {
                self.reload_pending = true;
                self.reload_waiters.asked.push(ticket);
            }
            Command::Restart => {
                self.restart_asked = true;
                self.restart_waiters.asked.push(ticket);
            }
            Command::Scale(0) => self.answer(
                &[ticket],
                Err("at least 1 worker: `keepalive stop` stops them all".into()),
            ),
            Command::Scale(to) if to > MAX_WORKERS => self.answer(
                &[ticket],
                Err(format!("at most {MAX_WORKERS} workers, not {to}")),
            ),
            // The last asked wins; whoever asked before waits for it.
            Command::Scale(to) => {
                let asked = self.scale_asked.get_or_insert_with(|| (to, Vec::new()));
                asked.0 = to;
                asked.1.push(ticket);
            }
        }
    }

    /// Answers every ticket of `tickets` with `result`.
    fn answer(&mut self, tickets: &[Ticket], result: Result<(), String>) {
        self.answer_noting(tickets, result, None);
    }

    /// Answers every ticket of `tickets` with `result` and `note`.
    fn answer_noting(
        &mut self,
        tickets: &[Ticket],
        result: Result<(), String>,
        note: Option<String>,
    ) {
        for &ticket in tickets {
            let outcome = Outcome {
                result: result.clone(),
                note: note.clone(),
            };
            self.effects.push(Effect::Reply { ticket, outcome });
        }
    }

    /// The supervisor is stopping: nothing starts any more, and whoever
    /// waits for a reload or a restart is told.
    fn stop(&mut self) {
        self.stopping = true;
        self.reloading = None;
        self.reload_pending = false;
        self.restart_asked = false;
        let mut waiting: Vec<Ticket> = [&mut self.reload_waiters, &mut self.restart_waiters]
            .into_iter()
            .flat_map(|waiters| waiters.asked.drain(..).chain(waiters.going.drain(..)))
            .collect();
        waiting.extend(self.awaited.drain(..).flat_map(|awaited| awaited.waiters));
        waiting.extend(
            self.scale_asked
                .take()
                .into_iter()
                .flat_map(|(_, waiters)| waiters),
        );
        waiting.extend(self.shrinking.drain(..).flat_map(|(_, waiters)| waiters));
        self.answer(&waiting, Err(STOPPING.into()));
    }

    /// SIGQUIT: every worker counts as killed now (the shell kills them).
    fn force(&mut self) {
        self.emit(Event::Forced);
        let now = self.now;
        for worker in &mut self.workers {
            worker.role = Role::Retiring {
                kill_at: now,
                killed: true,
            };
        }
    }

    /// Starts the slots whose time has come.
    fn start_due(&mut self) {
        let now = self.now;
        for slot in 0..self.slots.len() {
            if self.slots[slot].start_at.is_some_and(|at| at <= now) {
                self.slots[slot].start_at = None;
                self.spawn(slot, Purpose::Serve);
            }
        }
    }

    /// A worker started, or could not.
    fn spawned(&mut self, slot: usize, purpose: Purpose, result: Result<u32, SpawnFailed>) {
        match (result, purpose) {
            (Ok(pid), _) => {
                let role = match purpose {
                    Purpose::Serve => Role::Serving,
                    Purpose::Replace => Role::Replacement,
                };
                if let Some(reload) = self
                    .reloading
                    .as_mut()
                    .filter(|_| role == Role::Replacement)
                {
                    reload.replacement = Some(pid);
                }
                self.workers.push(Worker {
                    pid,
                    slot,
                    started: self.now,
                    said_ready: false,
                    reported_late: false,
                    last_ping: self.now,
                    status: None,
                    chatter: Chatter::default(),
                    role,
                });
                // Ready at once without wait_ready and with no min_uptime.
                self.progress_awaited();
            }
            (Err(failed), Purpose::Serve) => self.start_failed(slot, failed),
            (Err(failed), Purpose::Replace) => {
                self.reload_failed(format!("the new worker could not start: {}", failed.reason))
            }
        }
    }

    /// A worker to start for `slot`, once the input's decisions are all
    /// made (see [`spawn_wanted`](Self::spawn_wanted)).
    fn spawn(&mut self, slot: usize, purpose: Purpose) {
        if !self.to_spawn.contains(&(slot, purpose)) {
            self.to_spawn.push((slot, purpose));
        }
    }

    /// The workers to start, as the input's decisions left them wanted: a
    /// decision made after a start was asked (a restart, a scale down, a
    /// stop, a failed reload) cannot find a worker that does not exist
    /// yet, so the start is dropped instead. (A slot's start so dropped is
    /// its restart's or gone with it.)
    fn spawn_wanted(&mut self) {
        for (slot, purpose) in std::mem::take(&mut self.to_spawn) {
            let wanted = !self.stopping
                && match purpose {
                    Purpose::Serve => slot < self.slots.len() && !self.restarting,
                    Purpose::Replace => self
                        .reloading
                        .as_ref()
                        .is_some_and(|reload| reload.slot == slot && reload.replacement.is_none()),
                };
            if wanted {
                self.effects.push(Effect::Spawn { slot, purpose });
            }
        }
    }

    fn emit(&mut self, event: Event) {
        self.effects.push(Effect::Emit(event));
    }

    /// Ready: said `READY=1` when the supervisor waits for it, else alive
    /// for `min_uptime`.
    fn is_ready(&self, worker: &Worker) -> bool {
        if self.settings.wait_ready {
            worker.said_ready
        } else {
            self.now.saturating_duration_since(worker.started) >= self.settings.policy.min_uptime
        }
    }

    /// Why the supervisor is done: every slot gave up and no worker is
    /// left (the first slot's reason).
    pub(crate) fn gave_up(&self) -> Option<StopReason> {
        if !self.workers.is_empty() {
            return None;
        }
        let mut reasons = self.slots.iter().map(|slot| slot.given_up);
        let first = reasons.next()??;
        reasons.all(|reason| reason.is_some()).then_some(first)
    }

    /// How long the worker `pid` has run, at `now`.
    pub(crate) fn uptime(&self, pid: u32, now: Instant) -> Duration {
        self.workers
            .iter()
            .find(|w| w.pid == pid)
            .map_or(Duration::ZERO, |w| now.saturating_duration_since(w.started))
    }

    /// The workers as the control socket shows them, and whether workers
    /// are being replaced (a reload, a restart).
    pub(crate) fn view(&self) -> (Vec<Seen>, bool) {
        let view = self
            .workers
            .iter()
            .map(|worker| {
                // A slot scaled away has no record left.
                let slot = self.slots.get(worker.slot);
                Seen {
                    slot: worker.slot,
                    pid: worker.pid,
                    started: worker.started,
                    said_ready: worker.said_ready,
                    ready_after: (!self.settings.wait_ready)
                        .then_some(self.settings.policy.min_uptime),
                    stopping: self.stopping || matches!(worker.role, Role::Retiring { .. }),
                    restarts: slot.map_or(0, |slot| slot.restarts.count),
                    last_exit: slot.and_then(|slot| slot.last_exit.clone()),
                    status: worker.status.clone(),
                }
            })
            .collect();
        (view, self.reloading.is_some() || self.restarting)
    }

    /// The next moment the machine has something to do without an input
    /// other than [`Input::Tick`].
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let said = self.workers.iter().filter_map(|w| w.chatter.due());
        if self.stopping {
            // Nothing is started or killed by the machine any more.
            return said.min();
        }
        let settings = &self.settings;
        let slots = self.slots.iter().filter_map(|slot| slot.start_at);
        let workers = self.workers.iter().filter_map(|worker| match worker.role {
            Role::Retiring {
                kill_at,
                killed: false,
            } => Some(kill_at),
            Role::Replacement if !settings.wait_ready => {
                Some(later(worker.started, settings.policy.min_uptime))
            }
            Role::Serving if settings.wait_ready && !worker.said_ready && !worker.reported_late => {
                Some(later(worker.started, settings.listen_timeout))
            }
            _ => None,
        });
        let reload = self.reloading.as_ref().map(|reload| reload.deadline);
        // New workers awaited by a request: their deadline, and without
        // wait_ready the moment each is ready.
        let awaited = !self.awaited.is_empty();
        let starting = self.awaited.iter().map(|a| a.until).chain(
            self.workers
                .iter()
                .filter(|w| awaited && !settings.wait_ready && w.role == Role::Serving)
                .map(|w| later(w.started, settings.policy.min_uptime)),
        );
        slots
            .chain(workers)
            .chain(reload)
            .chain(starting.filter(|&at| at > self.now))
            .chain(self.next_health_check())
            .chain(said)
            .min()
    }
}
