//! The supervisor's loop: N workers, each restarted on its own when it
//! exits (as the Node cluster primary does), and the rolling reload.
//!
//! Every 5 ms the loop reads what the workers said on their notification
//! sockets, reaps the ones that exited, and decides:
//!
//! - a **serving** worker that exited is restarted after its slot's policy
//!   delay, or its slot is given up; the supervisor is done when every
//!   slot is given up;
//! - a **reload** (SIGHUP) replaces the workers one slot at a time: start
//!   the replacement (the program looked up again), wait until it is ready
//!   (`READY=1` with `wait_ready`, else alive for `min_uptime`), then stop
//!   the old worker gracefully and go on to the next slot. A replacement
//!   that exits first or misses the listen timeout is killed, the old
//!   worker keeps serving, and the reload ends as failed. A SIGHUP during a
//!   reload is queued: one more reload follows;
//! - a **retiring** worker (replaced) is killed, with its process group, if
//!   it has not exited at the kill timeout.
//!
//! Once the stop hook set `stopping`, the loop starts nothing and only
//! reaps, until no worker is left.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod reload;

use super::event::Event;
#[cfg(unix)]
use super::exec::Plan;
#[cfg(unix)]
use super::listen::Listeners;
#[cfg(unix)]
use super::notify::{Message, NotifyDir, NotifySocket};
use super::policy::{Decision, Restarts};
use super::stop::{Shared, kill_tree};
use super::{Output, StopReason, Supervisor, copy_lines};
use crate::{Error, Signal, sys};

/// How often the loop looks at the workers.
const POLL: Duration = Duration::from_millis(5);

/// A worker started and not reaped yet.
struct Worker {
    pid: u32,
    slot: usize,
    started: Instant,
    /// It said `READY=1`.
    said_ready: bool,
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
            Some(listeners)
        };
        #[cfg(not(unix))]
        if !supervisor.listen.is_empty() || supervisor.wait_ready {
            return Err(Error::Supervisor(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "listeners and readiness are passed to workers on Unix only",
            )));
        }
        let now = Instant::now();
        Ok(Cluster {
            supervisor,
            shared,
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

    /// Runs the workers until every slot gave up or the supervisor is stopped.
    pub(crate) fn run(mut self) -> Result<StopReason, Error> {
        let result = self.supervise();
        if result.is_err() {
            self.stop_all();
        }
        result
    }

    fn supervise(&mut self) -> Result<StopReason, Error> {
        loop {
            self.read_notifications();
            if let Some(signal) = self.reap() {
                if self.workers.is_empty() {
                    return Ok(StopReason::Stopped(signal));
                }
                thread::sleep(POLL);
                continue;
            }
            self.retire_overdue();
            self.progress_reload();
            self.start_due()?;
            if self.workers.is_empty() && self.slots.iter().all(|s| s.given_up.is_some()) {
                return Ok(self.slots[0].given_up.expect("every slot gave up"));
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
            thread::sleep(POLL);
        }
    }

    /// Reads every worker's notification socket.
    fn read_notifications(&mut self) {
        #[cfg(unix)]
        for worker in &mut self.workers {
            for message in worker.notify.messages() {
                let pid = worker.pid;
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

    /// Reaps the workers that exited and decides for each; returns the
    /// stopping signal once the supervisor is being stopped.
    fn reap(&mut self) -> Option<i32> {
        let mut state = self.shared.lock();
        let mut exited = Vec::new();
        state.children.retain_mut(|child| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                exited.push((child.id(), status));
                false
            }
            // It cannot be waited for: count it as gone.
            Err(_) => {
                exited.push((child.id(), ExitStatus::default()));
                false
            }
        });
        if !exited.is_empty() {
            self.shared.changed.notify_all();
        }
        let stopping = state.stopping;
        drop(state);
        for (pid, status) in exited {
            self.exited(pid, status, stopping.is_some());
        }
        stopping
    }

    fn exited(&mut self, pid: u32, status: ExitStatus, stopping: bool) {
        let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let worker = self.workers.remove(index);
        let uptime = worker.started.elapsed();
        self.supervisor.emit(Event::Exited {
            pid,
            status,
            uptime,
        });
        if stopping {
            return;
        }
        match worker.role {
            Role::Retiring { .. } => {}
            Role::Replacement => {
                self.reload_failed(format!(
                    "the new worker (pid {pid}) exited before it was ready"
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
                    Decision::Stop(reason) => slot.given_up = Some(reason),
                }
            }
        }
    }

    /// Starts the workers whose time has come.
    fn start_due(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            if self.slots[slot].start_at.is_some_and(|at| at <= now) {
                self.slots[slot].start_at = None;
                self.start(slot, Role::Serving)?;
            }
        }
        Ok(())
    }

    /// Starts a worker for `slot`; `None` if the supervisor is stopping.
    fn start(&mut self, slot: usize, role: Role) -> Result<Option<u32>, Error> {
        let id = self.next_id;
        self.next_id += 1;
        #[cfg(not(unix))]
        let _ = id;
        let supervisor = self.supervisor;
        let mut command = Command::new(&supervisor.program);
        if let Some(dir) = &supervisor.current_dir {
            command.current_dir(dir);
        }
        sys::separate_process_group(&mut command);
        if let Output::Prefixed(_) = supervisor.output {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        #[cfg(unix)]
        let notify = self.notify_dir.socket(id).map_err(|err| {
            Error::Supervisor(context(err, "cannot make a worker's notification socket"))
        })?;
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
        .prepare(&mut command)
        .map_err(Error::Supervisor)?;
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
            Error::Supervisor(context(err, &format!("cannot start {program}")))
        })?;
        let pid = child.id();
        if let Output::Prefixed(prefix) = &supervisor.output {
            take_output(&mut child, prefix);
        }
        state.children.push(child);
        drop(state);
        self.workers.push(Worker {
            pid,
            slot,
            started: Instant::now(),
            said_ready: false,
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
        if let Some(child) = state.children.iter_mut().find(|c| c.id() == pid) {
            kill_tree(child);
        }
    }

    /// After an error: stop every worker as the stop hook would, but
    /// without a run's deadline.
    fn stop_all(&mut self) {
        let pids: Vec<u32> = {
            let mut state = self.shared.lock();
            // Nothing restarts from here on.
            state.stopping.get_or_insert(0);
            state.children.iter().map(Child::id).collect()
        };
        for &pid in &pids {
            let _ = sys::send_signal(pid, Signal::terminate().as_raw());
        }
        let kill_at = Instant::now() + self.supervisor.kill_timeout;
        while !self.shared.lock().children.is_empty() {
            if Instant::now() >= kill_at {
                for child in &mut self.shared.lock().children {
                    kill_tree(child);
                }
            }
            self.reap();
            thread::sleep(POLL);
        }
    }
}

/// `err`, saying what was being done.
fn context(err: std::io::Error, doing: &str) -> std::io::Error {
    std::io::Error::new(err.kind(), format!("{doing}: {err}"))
}

fn take_output(child: &mut Child, prefix: &str) {
    if let Some(out) = child.stdout.take() {
        copy_lines(out, prefix.to_owned(), || Box::new(std::io::stdout()));
    }
    if let Some(err) = child.stderr.take() {
        copy_lines(err, prefix.to_owned(), || Box::new(std::io::stderr()));
    }
}
