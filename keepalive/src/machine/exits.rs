//! A worker that exited, or could not start: what it means for its slot
//! (restarted after the policy's delay, or given up) or for the reload.

use std::process::ExitStatus;

use super::{Machine, Role, SpawnFailed};
use crate::StopReason;
use crate::event::Event;
use crate::os::later;
use crate::policy::Decision;

impl Machine {
    /// Decides for the worker `pid`, which exited with `status`.
    pub(super) fn exited(&mut self, pid: u32, status: ExitStatus) {
        let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        // A count of what it said that is due is said before it goes.
        let worker = &mut self.workers[index];
        if let Some(dropped) = worker.chatter.overdue(self.now) {
            self.emit(Event::Quieted { pid, dropped });
        }
        if self.stopping {
            self.workers.remove(index);
            return;
        }
        let worker = &self.workers[index];
        let uptime = self.now.saturating_duration_since(worker.started);
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
        // (A slot scaled away has no record left.)
        if let Some(slot) = self.slots.get_mut(worker.slot) {
            slot.last_exit = Some(status.to_string());
        }
        match worker.role {
            Role::Retiring { .. } => {}
            Role::Replacement => {
                let hint = if self.settings.holds_sockets {
                    ""
                } else {
                    "; a worker that binds its own port cannot start while the old one holds it: \
                     let the supervisor hold the socket (--listen)"
                };
                self.reload_failed(format!(
                    "the new worker (pid {pid}) exited ({status}) before it was ready{hint}"
                ));
            }
            Role::Serving => {
                let slot = &mut self.slots[worker.slot];
                match self
                    .settings
                    .policy
                    .decide(&mut slot.restarts, status.code(), uptime)
                {
                    Decision::Restart(delay) => {
                        slot.start_at = Some(later(self.now, delay));
                        let restarts = slot.restarts.count;
                        self.emit(Event::Restarting { delay, restarts });
                    }
                    Decision::Stop(reason) => self.give_up(worker.slot, reason),
                }
            }
        }
    }

    /// A worker of `slot` could not start: the slot's policy decides.
    pub(super) fn start_failed(&mut self, slot: usize, failed: SpawnFailed) {
        self.emit(Event::StartFailed {
            slot,
            reason: failed.reason,
        });
        let state = &mut self.slots[slot];
        match self
            .settings
            .policy
            .decide_failed_start(&mut state.restarts, failed.transient)
        {
            Decision::Restart(delay) => {
                state.start_at = Some(later(self.now, delay));
                let restarts = state.restarts.count;
                self.emit(Event::Restarting { delay, restarts });
            }
            Decision::Stop(reason) => self.give_up(slot, reason),
        }
    }

    /// The slot stops restarting; the others serve on.
    pub(super) fn give_up(&mut self, slot: usize, reason: StopReason) {
        self.slots[slot].given_up = Some(reason);
        if self.slots.iter().any(|s| s.given_up.is_none()) {
            self.emit(Event::GaveUp { slot, reason });
        }
    }
}
