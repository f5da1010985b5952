//! The rolling reload (one slot at a time: start the replacement, wait
//! until it is ready, retire the old worker; a replacement that exits or
//! is late fails the reload, and the old workers serve on), the restart
//! (every worker retired, then every slot started afresh), and retiring.

use super::{
    ABANDONS_A_RELOAD, Awaited, Effect, Machine, Purpose, Reload, Role, Slot, Ticket, Worker,
};
use crate::event::Event;
use crate::os::later;

impl Machine {
    pub(super) fn start_reload(&mut self) {
        // Those who asked before it started wait for this one.
        let asked = std::mem::take(&mut self.reload_waiters.asked);
        self.reload_waiters.going.extend(asked);
        self.emit(Event::Reloading {
            workers: self.slots.len(),
        });
        self.replace(0, false);
    }

    /// Starts the replacement for `slot` (and, unless `only`, for each
    /// slot after it in turn).
    pub(super) fn replace(&mut self, slot: usize, only: bool) {
        self.reloading = Some(Reload {
            slot,
            replacement: None,
            deadline: later(self.now, self.settings.listen_timeout),
            only,
        });
        self.spawn(slot, Purpose::Replace);
    }

    /// Moves the reload on: its replacement ready, or late.
    pub(super) fn progress_reload(&mut self) {
        let Some(Reload {
            slot,
            replacement: Some(replacement),
            deadline,
            ..
        }) = self.reloading
        else {
            return;
        };
        let Some(index) = self.workers.iter().position(|w| w.pid == replacement) else {
            return;
        };
        if self.is_ready(&self.workers[index]) {
            self.promote(slot, replacement);
        } else if self.now >= deadline {
            self.effects.push(Effect::Kill { pid: replacement });
            self.workers[index].role = Role::Retiring {
                kill_at: self.now,
                killed: true,
            };
            self.reload_failed(format!(
                "the new worker (pid {replacement}) was not ready within {} ms",
                self.settings.listen_timeout.as_millis()
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
        self.retire_where(|w| w.slot == slot && w.role == Role::Serving && w.pid != replacement);
        let only = self.reloading.as_ref().is_some_and(|reload| reload.only);
        if only {
            self.reloading = None;
        } else if slot + 1 < self.slots.len() {
            self.replace(slot + 1, false);
        } else {
            self.reloading = None;
            self.emit(Event::Reloaded);
            let going = std::mem::take(&mut self.reload_waiters.going);
            self.answer(&going, Ok(()));
        }
    }

    /// Asks the workers `which` picks to stop, once each.
    pub(super) fn retire_where(&mut self, which: impl Fn(&Worker) -> bool) {
        let kill_at = later(self.now, self.settings.kill_timeout);
        for worker in &mut self.workers {
            if !which(worker) || matches!(worker.role, Role::Retiring { .. }) {
                continue;
            }
            worker.role = Role::Retiring {
                kill_at,
                killed: false,
            };
            self.effects.push(Effect::AskToStop { pid: worker.pid });
        }
    }

    /// Kills the retiring workers still there at their kill timeout.
    pub(super) fn retire_overdue(&mut self) {
        let now = self.now;
        for worker in &mut self.workers {
            if let Role::Retiring { kill_at, killed } = &mut worker.role {
                if !*killed && *kill_at <= now {
                    *killed = true;
                    let pid = worker.pid;
                    self.effects.push(Effect::Kill { pid });
                    self.effects.push(Effect::Emit(Event::Killed { pid }));
                }
            }
        }
    }

    pub(super) fn reload_failed(&mut self, reason: String) {
        self.reloading = None;
        let going = std::mem::take(&mut self.reload_waiters.going);
        self.answer(&going, Err(reason.clone()));
        self.emit(Event::ReloadFailed { reason });
    }

    /// Every worker is asked to stop, once; a reload going on (or asked)
    /// is abandoned, and whoever waits for it told so.
    pub(super) fn start_restart(&mut self) {
        let abandoned = "abandoned for a restart";
        // A reload of every slot (not a health check's one): its own, or
        // one asked and not started yet.
        if self.reloading.as_ref().is_some_and(|reload| !reload.only) || self.reload_pending {
            self.abandoned_reload = true;
        }
        if self.reloading.is_some() {
            self.reload_failed(abandoned.into());
        }
        let asked = std::mem::take(&mut self.reload_waiters.asked);
        self.answer(&asked, Err(abandoned.into()));
        self.reload_pending = false;
        self.restarting = true;
        // Those who asked wait for this one, as do those of a restart or
        // scale whose start it cuts short.
        let asked = std::mem::take(&mut self.restart_waiters.asked);
        self.restart_waiters.going.extend(asked);
        let cut = self.awaited.drain(..).flat_map(|awaited| awaited.waiters);
        self.restart_waiters.going.extend(cut);
        for slot in &mut self.slots {
            slot.start_at = None;
        }
        self.emit(Event::Restart {
            workers: self.workers.len(),
        });
        self.retire_where(|_| true);
    }

    /// Once the old workers are gone, starts every slot again (its restart
    /// count and any give-up cleared).
    pub(super) fn progress_restart(&mut self) {
        if !self.restarting || !self.workers.is_empty() {
            return;
        }
        self.restarting = false;
        let now = self.now;
        for slot in &mut self.slots {
            *slot = Slot {
                start_at: Some(now),
                last_exit: slot.last_exit.take(),
                ..Slot::default()
            };
        }
        let waiters = std::mem::take(&mut self.restart_waiters.going);
        let note = std::mem::take(&mut self.abandoned_reload).then(|| ABANDONS_A_RELOAD.to_owned());
        self.await_ready(0..self.slots.len(), waiters, note);
        self.start_due();
    }

    /// `slots` were started for `waiters`: they are answered once each
    /// has a ready worker (or one gave up, or at the listen timeout).
    fn await_ready(
        &mut self,
        slots: std::ops::Range<usize>,
        waiters: Vec<Ticket>,
        note: Option<String>,
    ) {
        if waiters.is_empty() {
            return;
        }
        self.awaited.push(Awaited {
            slots,
            until: later(self.now, self.settings.listen_timeout),
            waiters,
            note,
        });
    }

    /// `keepalive scale`: new slots started (answered once their workers
    /// are ready), or the last slots' workers stopped gracefully (answered
    /// once they are gone). The slots below are left as they are.
    pub(super) fn scale(&mut self, to: usize, waiters: Vec<Ticket>) {
        let from = self.slots.len();
        if to == from {
            // Answered with a scale down still stopping workers, if one is.
            match self.shrinking.last_mut() {
                Some((_, shrinking)) => shrinking.extend(waiters),
                None => self.answer(&waiters, Ok(())),
            }
            return;
        }
        self.emit(Event::Scaling { from, to });
        if to > from {
            let now = self.now;
            self.slots.resize_with(to, || Slot {
                start_at: Some(now),
                ..Slot::default()
            });
            self.await_ready(from..to, waiters, None);
            self.start_due();
        } else {
            self.slots.truncate(to);
            let going: Vec<u32> = self
                .workers
                .iter()
                .filter(|w| w.slot >= to)
                .map(|w| w.pid)
                .collect();
            self.retire_where(|w| w.slot >= to);
            self.shrinking.push((going, waiters));
        }
    }

    /// Answers a scale down once the workers it stopped are gone.
    pub(super) fn progress_shrinking(&mut self) {
        let workers = &self.workers;
        let (gone, going): (Vec<_>, Vec<_>) = std::mem::take(&mut self.shrinking)
            .into_iter()
            .partition(|(pids, _)| !workers.iter().any(|w| pids.contains(&w.pid)));
        self.shrinking = going;
        for (_, waiters) in gone {
            self.answer(&waiters, Ok(()));
        }
    }

    /// Answers the requests whose slots' workers are all ready, or of
    /// which one gave up, or whose listen timeout passed.
    pub(super) fn progress_awaited(&mut self) {
        for awaited in std::mem::take(&mut self.awaited) {
            // Slots scaled away since are not waited for.
            let slots = awaited.slots.start..awaited.slots.end.min(self.slots.len());
            let gave_up = slots.clone().find_map(|slot| {
                let reason = self.slots[slot].given_up?;
                Some((slot, reason))
            });
            let ready = |slot: usize| {
                self.workers
                    .iter()
                    .any(|w| w.slot == slot && w.role == Role::Serving && self.is_ready(w))
            };
            let result = if let Some((slot, reason)) = gave_up {
                Err(format!("worker {slot}: {}", Event::Done(reason)))
            } else if slots.clone().all(ready) {
                Ok(())
            } else if self.now >= awaited.until {
                Err(format!(
                    "not every worker was ready within {} ms (the listen timeout)",
                    self.settings.listen_timeout.as_millis()
                ))
            } else {
                self.awaited.push(awaited);
                continue;
            };
            self.answer_noting(&awaited.waiters, result, awaited.note);
        }
    }
}
