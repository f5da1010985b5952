//! Reaping: what exited, what each exit means for its slot or the reload,
//! and what an ended worker left behind (handed to the stragglers under the
//! same lock as the worker's removal).

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::{Cluster, Role};
use crate::StopReason;
use crate::event::Event;
use crate::os;
use crate::policy::Decision;
use crate::stop::State;

impl Cluster<'_> {
    /// Reaps what exited and decides for each worker; returns the stopping
    /// signal once the supervisor is being stopped. What an ended worker
    /// left is put in the stragglers under the same lock as its removal,
    /// so the stop hook never sees "all gone" in between.
    pub(super) fn reap(&mut self) -> Option<i32> {
        let shared = self.shared;
        let mut state = shared.lock();
        let reaped = os::reap(state.children.iter_mut().map(|s| &mut s.child));
        if reaped.is_empty() {
            return state.stopping;
        }
        let signal = match state.stopping {
            Some(_) => state.stop_signal,
            None => self.kill_signal().as_raw(),
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
                .map_or(Duration::ZERO, |w| {
                    self.now.saturating_duration_since(w.started)
                });
            state.last_status = Some(crate::os::shell_status(status));
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
    pub(super) fn exited(
        &mut self,
        pid: u32,
        status: ExitStatus,
        uptime: Duration,
        stopping: bool,
    ) {
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
        self.slots[worker.slot].last_exit = Some(status.to_string());
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
                        slot.start_at = Some(os::later(self.now, delay));
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
    pub(super) fn stop_orphans(
        &self,
        state: &mut State,
        ended: &[u32],
        signal: i32,
        kill_at: Instant,
    ) {
        #[cfg(target_os = "linux")]
        {
            use crate::orphans::{LiveWorker, Ties, owner};
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
    pub(super) fn give_up(&mut self, slot: usize, reason: StopReason) {
        self.slots[slot].given_up = Some(reason);
        if self.slots.iter().any(|s| s.given_up.is_none()) {
            self.supervisor.emit(Event::GaveUp { slot, reason });
        }
    }
}
