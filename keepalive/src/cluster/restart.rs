//! The restart (`keepalive restart NAME`, pm2's restart): every worker is
//! asked to stop, once; when they are all gone, every slot starts afresh
//! (its restart count and any give-up cleared). A reload going on is
//! abandoned. The listeners stay bound throughout: a connection made
//! meanwhile waits in the backlog for the new workers instead of being
//! refused.

use super::{Cluster, Slot};
use crate::event::Event;

impl Cluster<'_> {
    pub(super) fn start_restart(&mut self) {
        if self.reloading.take().is_some() {
            self.supervisor.emit(Event::ReloadFailed {
                reason: "abandoned for a restart".into(),
            });
        }
        self.reload_pending = false;
        self.restarting = true;
        for slot in &mut self.slots {
            slot.start_at = None;
        }
        self.supervisor.emit(Event::Restart {
            workers: self.workers.len(),
        });
        self.retire_where(|_| true);
    }

    /// Once the old workers are gone, starts every slot again.
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
        self.start_due();
    }
}
