//! Reaping: what exited (told to the machine), and what an ended worker
//! left behind (handed to the stragglers under the same lock as the
//! worker's removal).

use std::time::Instant;

use super::{Cluster, Foreign};
use crate::event::Event;
use crate::machine::Input;
#[cfg(target_os = "linux")]
use crate::os;
use crate::stop::{State, Stopping};
use exit_hook::Signal;

impl Cluster {
    /// Reaps what exited and tells the machine; returns the stopping
    /// signal once the supervisor is being stopped (and tells the machine). What an ended worker
    /// left is put in the stragglers under the same lock as its removal,
    /// so the stop hook never sees "all gone" in between.
    pub(super) fn reap(&mut self, foreign: &Foreign) -> Option<Stopping> {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        let reaped: Vec<(u32, std::process::ExitStatus)> = std::mem::take(&mut state.exited)
            .into_iter()
            .map(|(started, status)| (started.child.id(), status))
            .collect();
        let stopping = state.stopping;
        if reaped.is_empty() {
            drop(state);
            self.told_stopping(stopping);
            return stopping;
        }
        let signal = match state.stopping {
            Some(stopping) => stopping.signal,
            None => self.kill_signal(),
        };
        let kill_at = state.kill_at(self.supervisor.kill_timeout);
        let listener = self.supervisor.listener.as_ref();
        let mut exited = Vec::new();
        for (pid, status) in reaped {
            let uptime = self.machine.uptime(pid, self.now);
            state.last_status = Some(crate::os::shell_status(status));
            self.supervisor.emit(Event::Exited {
                pid,
                status,
                uptime,
            });
            state
                .stragglers
                .worker_ended(pid, signal, kill_at, listener);
            exited.push((pid, status));
        }
        let ended: Vec<u32> = exited.iter().map(|&(pid, _)| pid).collect();
        self.stop_orphans(&mut state, &ended, foreign, signal, kill_at);
        shared.changed.notify_all();
        drop(state);
        self.told_stopping(stopping);
        // What an exited worker said before it exited counts (its
        // `READY=1` may have come after this round's reading).
        self.read_notifications();
        for (pid, status) in exited {
            self.feed(Input::Exited { pid, status });
            #[cfg(unix)]
            self.handles.retain(|handles| handles.pid != pid);
        }
        stopping
    }

    /// Tells the machine, once, that the supervisor is stopping.
    fn told_stopping(&mut self, stopping: Option<Stopping>) {
        if stopping.is_some() {
            if let Some(stop) = self.tell_stop() {
                self.feed(stop);
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
        foreign: &Foreign,
        signal: Signal,
        kill_at: Instant,
    ) {
        #[cfg(target_os = "linux")]
        {
            use crate::orphans::{LiveWorker, Ties, owner};
            // This cluster's live workers and the other clusters' (in a
            // group): a process one of them owns is not an orphan.
            let live: Vec<LiveWorker<'_>> = self
                .handles
                .iter()
                .filter(|w| !ended.contains(&w.pid))
                .map(|w| LiveWorker {
                    pid: w.pid,
                    notify_socket: w.notify.path(),
                })
                .chain(foreign.workers.iter().map(|(pid, socket)| LiveWorker {
                    pid: *pid,
                    notify_socket: socket,
                }))
                .collect();
            let me = std::process::id();
            for pid in os::children() {
                if live.iter().any(|w| w.pid == pid)
                    || state.children.iter().any(|s| s.child.id() == pid)
                    || foreign.processes.contains(&pid)
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
}
