//! The rolling reload: one slot at a time, start the replacement, wait
//! until it is ready, retire the old worker; a replacement that exits or
//! is late fails the reload, and the old workers serve on.

use super::{Cluster, Reload, Role};
use crate::event::Event;

use crate::os;

impl Cluster<'_> {
    pub(super) fn start_reload(&mut self) {
        self.supervisor.emit(Event::Reloading {
            workers: self.slots.len(),
        });
        self.replace(0, false);
    }

    /// Starts the replacement for `slot` (and, unless `only`, for each
    /// slot after it in turn).
    pub(super) fn replace(&mut self, slot: usize, only: bool) {
        match self.start(slot, Role::Replacement) {
            Ok(Some(pid)) => {
                self.reloading = Some(Reload {
                    slot,
                    replacement: pid,
                    deadline: os::later(self.now, self.supervisor.listen_timeout),
                    only,
                });
            }
            Ok(None) => self.reloading = None,
            Err(err) => self.reload_failed(format!("the new worker could not start: {err}")),
        }
    }

    /// Moves the reload on: its replacement ready, or late.
    pub(super) fn progress_reload(&mut self) {
        let Some(reload) = &self.reloading else {
            return;
        };
        let (slot, replacement, deadline) = (reload.slot, reload.replacement, reload.deadline);
        let Some(index) = self.workers.iter().position(|w| w.pid == replacement) else {
            return;
        };
        if self.is_ready(&self.workers[index]) {
            self.promote(slot, replacement);
        } else if self.now >= deadline {
            self.kill(replacement);
            self.workers[index].role = Role::Retiring {
                kill_at: self.now,
                killed: true,
            };
            self.reload_failed(format!(
                "the new worker (pid {replacement}) was not ready within {} ms",
                self.supervisor.listen_timeout.as_millis()
            ));
        }
    }

    /// The replacement is ready: it serves the slot (even one that had
    /// given up), the old worker retires, and the next slot's turn comes.
    pub(super) fn promote(&mut self, slot: usize, replacement: u32) {
        if let Some(worker) = self.workers.iter_mut().find(|w| w.pid == replacement) {
            worker.role = Role::Serving;
        }
        self.slots[slot].start_at = None;
        self.slots[slot].given_up = None;
        self.retire(slot, replacement);
        let only = self.reloading.as_ref().is_some_and(|reload| reload.only);
        if only {
            self.reloading = None;
        } else if slot + 1 < self.slots.len() {
            self.replace(slot + 1, false);
        } else {
            self.reloading = None;
            self.supervisor.emit(Event::Reloaded);
        }
    }

    /// Asks the serving workers of `slot` other than `keep` to stop, once:
    /// under the lock, so that the stop hook does not ask them again.
    fn retire(&mut self, slot: usize, keep: u32) {
        self.retire_where(|w| w.slot == slot && w.role == Role::Serving && w.pid != keep);
    }

    /// Asks the workers `which` picks to stop, once each.
    pub(super) fn retire_where(&mut self, which: impl Fn(&super::Worker) -> bool) {
        let kill_at = os::later(self.now, self.supervisor.kill_timeout);
        let signal = self.kill_signal();
        let mut state = self.shared.lock();
        for worker in &mut self.workers {
            if !which(worker) || matches!(worker.role, Role::Retiring { .. }) {
                continue;
            }
            worker.role = Role::Retiring {
                kill_at,
                killed: false,
            };
            let pid = worker.pid;
            let Some(started) = state.children.iter_mut().find(|s| s.child.id() == pid) else {
                continue;
            };
            if !std::mem::replace(&mut started.signalled, true) {
                self.supervisor.emit(Event::Stopping { pid, signal });
                let _ = os::signal_process(pid, signal.as_raw());
            }
        }
    }

    /// Kills the retiring workers still there at their kill timeout.
    pub(super) fn retire_overdue(&mut self) {
        let now = self.now;
        let overdue: Vec<u32> = self
            .workers
            .iter_mut()
            .filter_map(|worker| match &mut worker.role {
                Role::Retiring { kill_at, killed } if !*killed && *kill_at <= now => {
                    *killed = true;
                    Some(worker.pid)
                }
                _ => None,
            })
            .collect();
        for pid in overdue {
            self.kill(pid);
            self.supervisor.emit(Event::Killed { pid });
        }
    }

    pub(super) fn reload_failed(&mut self, reason: String) {
        self.reloading = None;
        self.supervisor.emit(Event::ReloadFailed { reason });
    }
}
