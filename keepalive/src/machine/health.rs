//! Unhealthy workers, replaced ready-first: one that stopped saying
//! `WATCHDOG=1` within `watchdog` (systemd's protocol; the worker gets
//! `WATCHDOG_USEC`), or whose resident memory passed `max_memory`, or the
//! only worker when the health check failed (with several, a failed check
//! reloads them all). The replacement starts, becomes ready, and only then
//! is the old worker stopped, as in a reload of that one slot; a
//! replacement that is not ready in time is killed and the old worker
//! serves on (and is looked at again). Nothing is replaced while a reload
//! or a restart goes on.

use std::time::{Duration, Instant};

use super::{Machine, Role, Worker};
use crate::event::Event;
use crate::os::later;

/// How often resident memory is read, with `max_memory`.
const MEMORY_EVERY: Duration = Duration::from_secs(1);

impl Machine {
    /// Replaces the first unhealthy serving worker, if any.
    pub(super) fn check_health(&mut self) {
        if self.reloading.is_some() || self.restarting {
            return;
        }
        let now = self.now;
        let mut unhealthy = None;
        if let Some(every) = self.settings.watchdog {
            unhealthy = self
                .serving()
                .find(|w| now.saturating_duration_since(w.last_ping) >= every)
                .map(|w| {
                    (
                        w.slot,
                        w.pid,
                        format!("no WATCHDOG=1 for {} ms", every.as_millis()),
                    )
                });
        }
        let memory = self.memory.take();
        if let (None, Some(limit), Some(samples)) = (&unhealthy, self.settings.max_memory, memory) {
            unhealthy = self.serving().find_map(|w| {
                let (_, rss) = samples.iter().find(|(pid, _)| *pid == w.pid)?;
                let rss = (*rss)?;
                (rss > limit).then(|| {
                    (
                        w.slot,
                        w.pid,
                        format!(
                            "its memory ({:.1} MB) passed --max-memory ({:.1} MB)",
                            rss as f64 / 1e6,
                            limit as f64 / 1e6
                        ),
                    )
                })
            });
        }
        if let (None, Some(reason)) = (&unhealthy, self.unhealthy.take()) {
            let serving: Vec<(usize, u32)> = self.serving().map(|w| (w.slot, w.pid)).collect();
            if let [(slot, pid)] = serving[..] {
                unhealthy = Some((slot, pid, format!("health check: {reason}")));
            } else {
                self.emit(Event::HealthFailed { reason });
                self.start_reload();
                return;
            }
        }
        if let Some((slot, pid, reason)) = unhealthy {
            self.emit(Event::Replacing { pid, reason });
            let look_again = later(now, self.settings.listen_timeout);
            if let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) {
                // Looked at again only after this replacement had its chance.
                worker.last_ping = look_again;
            }
            self.replace(slot, true);
        }
    }

    /// The memory read: looked at by the next tick, and read again
    /// [`MEMORY_EVERY`] from now.
    pub(super) fn memory_read(&mut self, samples: Vec<(u32, Option<u64>)>) {
        self.memory_check_at = Some(later(self.now, MEMORY_EVERY));
        self.memory = Some(samples);
    }

    /// The serving workers whose resident memory is due to be read, if it
    /// is (`max_memory`): answered with [`Input::Memory`](super::Input::Memory).
    pub(crate) fn memory_due(&self, now: Instant) -> Option<Vec<u32>> {
        self.settings.max_memory?;
        let due = self.memory_check_at.is_some_and(|at| at <= now)
            && !self.stopping
            && self.reloading.is_none()
            && !self.restarting;
        if !due {
            return None;
        }
        Some(self.serving().map(|w| w.pid).collect())
    }

    /// When `check_health` has something to look at next.
    pub(super) fn next_health_check(&self) -> Option<Instant> {
        // As check_health, which looks at nothing meanwhile.
        if self.reloading.is_some() || self.restarting {
            return None;
        }
        let watchdog = self
            .settings
            .watchdog
            .and_then(|every| self.serving().map(|w| later(w.last_ping, every)).min());
        watchdog.into_iter().chain(self.memory_check_at).min()
    }

    fn serving(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(|w| w.role == Role::Serving)
    }
}
