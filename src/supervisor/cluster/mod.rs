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
//! - a **retiring** worker (replaced) is killed, with its process group, if
//!   it has not exited at the kill timeout;
//! - whatever an ended worker **left behind** (its process group; on Linux
//!   its orphans) is stopped (`orphans.rs`).
//!
//! Once the stop hook set `stopping`, the loop starts nothing and only
//! reaps, until no worker and nothing they left is there; a reload going
//! on is abandoned (its replacement is stopped with the others).

use std::io;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod reload;

use super::event::Event;
#[cfg(unix)]
use super::exec::Plan;
#[cfg(unix)]
use super::listen::Listeners;
#[cfg(unix)]
use super::notify::{Message, NotifyDir, NotifySocket};
use super::os::{self, Alarm};
use super::output::copy_lines;
use super::policy::{Decision, Restarts};
use super::stop::{Shared, Started, State, kill_tree};
use super::{Output, StopReason, Supervisor};
use crate::{Error, Signal};

/// A worker started and not reaped yet.
struct Worker {
    pid: u32,
    slot: usize,
    started: Instant,
    /// It said `READY=1`.
    said_ready: bool,
    /// It was reported as not ready at the listen timeout.
    reported_late: bool,
    role: Role,
    #[cfg(unix)]
    notify: NotifySocket,
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
    /// When to start its worker; `None` while one serves (or it gave up).
    start_at: Option<Instant>,
    given_up: Option<StopReason>,
}

/// A reload going on: the slot being replaced, and its replacement.
struct Reload {
    slot: usize,
    replacement: u32,
    deadline: Instant,
}

pub(crate) struct Cluster<'a> {
    supervisor: &'a Supervisor,
    shared: &'a Shared,
    alarm: &'a Alarm,
    /// Set by SIGHUP.
    reload_asked: Option<Arc<AtomicBool>>,
    #[cfg(unix)]
    listeners: Option<Listeners>,
    #[cfg(unix)]
    notify_dir: NotifyDir,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    next_id: u64,
    reloading: Option<Reload>,
    reload_pending: bool,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(
        supervisor: &'a Supervisor,
        shared: &'a Shared,
        alarm: &'a Alarm,
        reload_asked: Option<Arc<AtomicBool>>,
    ) -> Result<Self, Error> {
        #[cfg(unix)]
        let listeners = if supervisor.listen.is_empty() {
            None
        } else {
            let listeners = Listeners::bind(&supervisor.listen).map_err(Error::Supervisor)?;
            for addr in &listeners.bound {
                supervisor.emit(Event::Listening { addr: addr.clone() });
            }
            shared.lock().socket_files = listeners.files.clone();
            Some(listeners)
        };
        #[cfg(not(unix))]
        if !supervisor.listen.is_empty() || supervisor.wait_ready {
            return Err(Error::Supervisor(io::Error::new(
                io::ErrorKind::Unsupported,
                "listeners and readiness are passed to workers on Unix only",
            )));
        }
        let now = Instant::now();
        Ok(Cluster {
            supervisor,
            shared,
            alarm,
            reload_asked,
            #[cfg(unix)]
            listeners,
            #[cfg(unix)]
            notify_dir: NotifyDir::create().map_err(|err| {
                Error::Supervisor(context(
                    err,
                    "cannot make the notification sockets' directory",
                ))
            })?,
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
        })
    }

    /// Runs the workers until every slot gave up or the supervisor is
    /// stopped, and until nothing they started is left.
    pub(crate) fn run(mut self) -> StopReason {
        loop {
            self.read_notifications();
            let stopping = self.reap();
            self.shared
                .lock()
                .stragglers
                .tick(Instant::now(), self.supervisor.listener.as_ref());
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
            self.report_late();
            self.start_due();
            if self.workers.is_empty() && self.slots.iter().all(|s| s.given_up.is_some()) {
                if self.shared.lock().all_gone() {
                    return self.slots[0].given_up.expect("every slot gave up");
                }
                self.sleep();
                continue;
            }
            if self
                .reload_asked
                .as_ref()
                .is_some_and(|asked| asked.swap(false, Ordering::AcqRel))
            {
                self.reload_pending = true;
            }
            if self.reload_pending && self.reloading.is_none() {
                self.reload_pending = false;
                self.start_reload();
            }
            self.sleep();
        }
    }

    /// Sleeps until something happens, or the next timer is due.
    fn sleep(&self) {
        let until = self.next_due();
        #[cfg(unix)]
        {
            let fds: Vec<_> = self.workers.iter().map(|w| w.notify.as_fd()).collect();
            self.alarm.sleep(&fds, until);
        }
        #[cfg(not(unix))]
        self.alarm.sleep(until);
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
                Some(worker.started + policy.min_uptime)
            }
            Role::Serving
                if self.supervisor.wait_ready && !worker.said_ready && !worker.reported_late =>
            {
                Some(worker.started + self.supervisor.listen_timeout)
            }
            _ => None,
        });
        let reload = self.reloading.as_ref().map(|reload| reload.deadline);
        let stragglers = self.shared.lock().stragglers.next_due();
        slots.chain(workers).chain(reload).chain(stragglers).min()
    }

    /// Reads every worker's notification socket. On Linux only the worker
    /// and its process tree may speak for it, and only the worker itself
    /// may say `STOPPING=1`: a forked child running its own exit hooks is
    /// not the worker draining.
    fn read_notifications(&mut self) {
        #[cfg(unix)]
        for worker in &mut self.workers {
            for (sender, message) in worker.notify.messages() {
                let pid = worker.pid;
                if let Some(sender) = sender.filter(|&s| !may_say(s, pid, &message)) {
                    let message = match &message {
                        Message::Ready => "READY=1".to_owned(),
                        Message::Stopping => "STOPPING=1".to_owned(),
                        Message::Status(status) => format!("STATUS={status}"),
                    };
                    self.supervisor.emit(Event::Refused {
                        pid,
                        sender,
                        message,
                    });
                    continue;
                }
                let event = match message {
                    Message::Ready if !worker.said_ready => {
                        worker.said_ready = true;
                        Event::Ready { pid }
                    }
                    Message::Ready => continue,
                    Message::Stopping => Event::Draining { pid },
                    Message::Status(status) => Event::Status { pid, status },
                };
                self.supervisor.emit(event);
            }
        }
    }

    /// Reaps what exited and decides for each worker; returns the stopping
    /// signal once the supervisor is being stopped. What an ended worker
    /// left is put in the stragglers under the same lock as its removal,
    /// so the stop hook never sees "all gone" in between.
    fn reap(&mut self) -> Option<i32> {
        let shared = self.shared;
        let mut state = shared.lock();
        let reaped = os::reap(state.children.iter_mut().map(|s| &mut s.child));
        if reaped.is_empty() {
            return state.stopping;
        }
        let signal = match state.stopping {
            Some(signal) if signal != 0 => signal,
            _ => Signal::terminate().as_raw(),
        };
        let kill_at = state.kill_at(self.supervisor.kill_timeout);
        let listener = self.supervisor.listener.as_ref();
        let mut exited = Vec::new();
        for (pid, status) in reaped {
            let Some(index) = state.children.iter().position(|s| s.child.id() == pid) else {
                state.stragglers.reaped(pid);
                continue;
            };
            state.children.remove(index);
            let uptime = self
                .workers
                .iter()
                .find(|w| w.pid == pid)
                .map_or(Duration::ZERO, |w| w.started.elapsed());
            self.supervisor.emit(Event::Exited {
                pid,
                status,
                uptime,
            });
            state
                .stragglers
                .worker_ended(pid, signal, kill_at, listener);
            exited.push((pid, status, uptime));
        }
        let ended: Vec<u32> = exited.iter().map(|&(pid, ..)| pid).collect();
        self.stop_orphans(&mut state, &ended, signal, kill_at);
        shared.changed.notify_all();
        let stopping = state.stopping;
        drop(state);
        // What an exited worker said before it exited counts (its
        // `READY=1` may have come after this round's reading).
        self.read_notifications();
        for (pid, status, uptime) in exited {
            self.exited(pid, status, uptime, stopping.is_some());
        }
        stopping
    }

    /// Decides for the worker `pid`, which exited with `status`.
    fn exited(&mut self, pid: u32, status: ExitStatus, uptime: Duration, stopping: bool) {
        let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        if stopping {
            self.workers.remove(index);
            return;
        }
        let worker = &self.workers[index];
        if worker.role == Role::Replacement && self.is_ready(worker) {
            // It was ready, then exited before the loop saw it: it did
            // replace the old worker, and its slot restarts it.
            self.promote(worker.slot, pid);
        }
        let index = self
            .workers
            .iter()
            .position(|w| w.pid == pid)
            .expect("still there");
        let worker = self.workers.remove(index);
        match worker.role {
            Role::Retiring { .. } => {}
            Role::Replacement => {
                let hint = if self.supervisor.listen.is_empty() {
                    "; a worker that binds its own port cannot start while the old one holds it: \
                     let the supervisor hold the socket (--listen)"
                } else {
                    ""
                };
                self.reload_failed(format!(
                    "the new worker (pid {pid}) exited ({status}) before it was ready{hint}"
                ));
            }
            Role::Serving => {
                let slot = &mut self.slots[worker.slot];
                match self
                    .supervisor
                    .policy
                    .decide(&mut slot.restarts, status.code(), uptime)
                {
                    Decision::Restart(delay) => {
                        slot.start_at = Some(Instant::now() + delay);
                        let restarts = slot.restarts.count;
                        self.supervisor.emit(Event::Restarting { delay, restarts });
                    }
                    Decision::Stop(reason) => self.give_up(worker.slot, reason),
                }
            }
        }
    }

    /// Stops the supervisor's children that are not workers and that no
    /// live worker (one not in `ended`) owns: what ended workers left
    /// (Linux, as their subreaper).
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn stop_orphans(&self, state: &mut State, ended: &[u32], signal: i32, kill_at: Instant) {
        #[cfg(target_os = "linux")]
        {
            use super::orphans::{LiveWorker, Ties, owner};
            let live: Vec<LiveWorker<'_>> = self
                .workers
                .iter()
                .filter(|w| !ended.contains(&w.pid))
                .map(|w| LiveWorker {
                    pid: w.pid,
                    notify_socket: w.notify.path(),
                })
                .collect();
            let me = std::process::id();
            for pid in os::children() {
                if live.iter().any(|w| w.pid == pid)
                    || state.children.iter().any(|s| s.child.id() == pid)
                {
                    continue;
                }
                let Some(stat) = os::stat(pid).filter(|stat| stat.parent == me) else {
                    continue;
                };
                let socket = os::notify_socket_of(pid);
                let ties = Ties {
                    group: stat.group,
                    notify_socket: socket.as_deref(),
                };
                if owner(ties, &live).is_none() {
                    state.stragglers.orphan(
                        pid,
                        stat.group == pid,
                        signal,
                        kill_at,
                        self.supervisor.listener.as_ref(),
                    );
                }
            }
        }
    }

    /// The slot stops restarting; the others serve on.
    fn give_up(&mut self, slot: usize, reason: StopReason) {
        self.slots[slot].given_up = Some(reason);
        if self.slots.iter().any(|s| s.given_up.is_none()) {
            self.supervisor.emit(Event::GaveUp { slot, reason });
        }
    }

    /// Reports, once, a worker that has not said `READY=1` within the
    /// listen timeout of its start (a reload's replacement is killed then
    /// instead, in `progress_reload`).
    fn report_late(&mut self) {
        if !self.supervisor.wait_ready {
            return;
        }
        let timeout = self.supervisor.listen_timeout;
        for worker in &mut self.workers {
            let waited = worker.started.elapsed();
            if worker.role == Role::Serving
                && !worker.said_ready
                && !worker.reported_late
                && waited >= timeout
            {
                worker.reported_late = true;
                self.supervisor.emit(Event::NotReady {
                    pid: worker.pid,
                    waited,
                });
            }
        }
    }

    /// Starts the workers whose time has come.
    fn start_due(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            if self.slots[slot].start_at.is_some_and(|at| at <= now) {
                self.slots[slot].start_at = None;
                if let Err(err) = self.start(slot, Role::Serving) {
                    self.start_failed(slot, err);
                }
            }
        }
    }

    /// A worker of `slot` could not start: the slot's policy decides.
    fn start_failed(&mut self, slot: usize, err: io::Error) {
        self.supervisor.emit(Event::StartFailed {
            slot,
            reason: err.to_string(),
        });
        let state = &mut self.slots[slot];
        match self
            .supervisor
            .policy
            .decide_failed_start(&mut state.restarts)
        {
            Decision::Restart(delay) => {
                state.start_at = Some(Instant::now() + delay);
                let restarts = state.restarts.count;
                self.supervisor.emit(Event::Restarting { delay, restarts });
            }
            Decision::Stop(reason) => self.give_up(slot, reason),
        }
    }

    /// Starts a worker for `slot`; `None` if the supervisor is stopping.
    fn start(&mut self, slot: usize, role: Role) -> io::Result<Option<u32>> {
        let id = self.next_id;
        self.next_id += 1;
        #[cfg(not(unix))]
        let _ = id;
        let supervisor = self.supervisor;
        let mut command = Command::new(&supervisor.program);
        if let Some(dir) = &supervisor.current_dir {
            command.current_dir(dir);
        }
        crate::sys::separate_process_group(&mut command);
        if let Output::Prefixed(_) = supervisor.output {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        #[cfg(unix)]
        let notify = self
            .notify_dir
            .socket(id)
            .map_err(|err| context(err, "cannot make a worker's notification socket"))?;
        #[cfg(unix)]
        Plan {
            program: &supervisor.program,
            args: &supervisor.args,
            envs: &supervisor.envs,
            listeners: self
                .listeners
                .as_ref()
                .map(|listeners| (listeners.raw_fds(), listeners.names())),
            notify_socket: Some(notify.path()),
        }
        .prepare(&mut command)?;
        #[cfg(not(unix))]
        command
            .args(&supervisor.args)
            .envs(supervisor.envs.iter().map(|(k, v)| (k, v)));
        // Under the lock: the stop hook sees every worker that starts.
        let mut state = self.shared.lock();
        if state.stopping.is_some() {
            return Ok(None);
        }
        let mut child = command.spawn().map_err(|err| {
            let program = std::path::Path::new(&supervisor.program).display();
            context(err, &format!("cannot start {program}"))
        })?;
        let pid = child.id();
        if let Output::Prefixed(prefix) = &supervisor.output {
            take_output(&mut child, prefix);
        }
        // A group of that id, left by an earlier worker, is gone: the
        // kernel gives no process the id of a group still there.
        state.stragglers.forget_group(pid);
        state.children.push(Started {
            child,
            signalled: false,
        });
        drop(state);
        self.workers.push(Worker {
            pid,
            slot,
            started: Instant::now(),
            said_ready: false,
            reported_late: false,
            role,
            #[cfg(unix)]
            notify,
        });
        supervisor.emit(Event::Started { pid });
        Ok(Some(pid))
    }

    /// Ready: said `READY=1` when the supervisor waits for it, else alive
    /// for `min_uptime`.
    fn is_ready(&self, worker: &Worker) -> bool {
        if self.supervisor.wait_ready {
            worker.said_ready
        } else {
            worker.started.elapsed() >= self.supervisor.policy.min_uptime
        }
    }

    /// SIGKILL to the worker `pid` and its process group.
    fn kill(&self, pid: u32) {
        let mut state = self.shared.lock();
        if let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) {
            kill_tree(&mut started.child);
        }
    }
}

/// Whether `sender` may say `message` for the worker `pid`: the worker
/// itself may say anything; a process of its tree, anything but
/// `STOPPING=1`.
#[cfg(unix)]
fn may_say(sender: u32, pid: u32, message: &Message) -> bool {
    if sender == pid {
        return true;
    }
    #[cfg(target_os = "linux")]
    return *message != Message::Stopping && os::descends_from(sender, pid);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = message;
        false
    }
}

/// `err`, saying what was being done.
fn context(err: io::Error, doing: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{doing}: {err}"))
}

fn take_output(child: &mut std::process::Child, prefix: &str) {
    if let Some(out) = child.stdout.take() {
        copy_lines(out, prefix.to_owned(), || Box::new(std::io::stdout()));
    }
    if let Some(err) = child.stderr.take() {
        copy_lines(err, prefix.to_owned(), || Box::new(std::io::stderr()));
    }
}
