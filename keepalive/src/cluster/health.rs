//! Unhealthy workers, replaced ready-first: one that stopped saying
//! `WATCHDOG=1` within `watchdog` (systemd's protocol; the worker gets
//! `WATCHDOG_USEC`), or whose resident memory passed `max_memory`. The
//! replacement starts, becomes ready, and only then is the old worker
//! stopped, as in a reload of that one slot; a replacement that is not
//! ready in time is killed and the old worker serves on (and is looked at
//! again). Nothing is replaced while a reload goes on.

use std::time::{Duration, Instant};

use super::{Cluster, Role};
use crate::event::Event;
use crate::os;

/// How often resident memory is read, with `max_memory`.
const MEMORY_EVERY: Duration = Duration::from_secs(1);

impl Cluster<'_> {
    /// Replaces the first unhealthy serving worker, if any.
    pub(super) fn check_health(&mut self) {
        if self.reloading.is_some() || self.restarting {
            return;
        }
        let now = self.now;
        let mut unhealthy = None;
        if let Some(every) = self.supervisor.watchdog {
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
        if let (None, Some(limit)) = (&unhealthy, self.supervisor.max_memory) {
            if self.memory_check_at.is_some_and(|at| at <= now) {
                self.memory_check_at = Some(now + MEMORY_EVERY);
                unhealthy = self.serving().find_map(|w| {
                    let rss = os::resident_bytes(w.pid)?;
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
        }
        let failed_check = self.shared.lock().unhealthy.take();
        if let (None, Some(reason)) = (&unhealthy, failed_check) {
            let serving: Vec<(usize, u32)> = self.serving().map(|w| (w.slot, w.pid)).collect();
            if let [(slot, pid)] = serving[..] {
                unhealthy = Some((slot, pid, format!("health check: {reason}")));
            } else {
                self.supervisor.emit(Event::HealthFailed { reason });
                self.start_reload();
                return;
            }
        }
        if let Some((slot, pid, reason)) = unhealthy {
            self.supervisor.emit(Event::Replacing { pid, reason });
            if let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) {
                // Looked at again only after this replacement had its chance.
                worker.last_ping = os::later(now, self.supervisor.listen_timeout);
            }
            self.replace(slot, true);
        }
    }

    /// When `check_health` has something to look at next.
    pub(super) fn next_health_check(&self) -> Option<Instant> {
        if self.reloading.is_some() {
            return None;
        }
        let watchdog = self
            .supervisor
            .watchdog
            .and_then(|every| self.serving().map(|w| os::later(w.last_ping, every)).min());
        watchdog.into_iter().chain(self.memory_check_at).min()
    }

    fn serving(&self) -> impl Iterator<Item = &super::Worker> {
        self.workers.iter().filter(|w| w.role == Role::Serving)
    }
}
