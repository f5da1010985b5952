//! What ended workers leave behind, and stopping it: nothing a worker
//! started outlives the worker.
//!
//! When a worker ends (it exited, was replaced or was stopped), two kinds
//! of processes may be left:
//!
//! - the rest of its **process group** (it leads one): children that kept
//!   the group, however deep. The group gets the stop signal, then SIGKILL
//!   at the kill timeout.
//! - **orphans** that left the group (`setsid`, `setpgid`): on Linux the
//!   supervisor is their subreaper, so once their parent dies they become
//!   its children. Each one that no live worker [owns](owner) gets the stop
//!   signal (its own group too, if it leads one), then SIGKILL at the kill
//!   timeout, and is reaped by the loop.
//!
//! A process the supervisor reaps is its child, so its pid cannot have been
//! reused; a group is signalled only while it has a process.

// Orphans are found on Linux only, as their subreaper; elsewhere only the
// process group is stopped.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::path::Path;
use std::time::Instant;

use super::event::{Event, Listener, emit};
use super::os;
use exit_hook::Signal;

/// What is being stopped, and when it is killed.
#[derive(Debug, Default)]
pub(crate) struct Stragglers {
    left: Vec<Straggler>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The rest of an ended worker's process group.
    Group(u32),
    /// An orphan, the supervisor's child now; `true` if it leads a group.
    Process(u32, bool),
}

#[derive(Debug)]
struct Straggler {
    target: Target,
    kill_at: Instant,
    killed: bool,
}

impl Stragglers {
    pub(crate) fn is_empty(&self) -> bool {
        self.left.is_empty()
    }

    /// When the next one is to be killed.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.left
            .iter()
            .filter(|s| !s.killed)
            .map(|s| s.kill_at)
            .min()
    }

    fn knows(&self, pid: u32) -> bool {
        self.left
            .iter()
            .any(|s| matches!(s.target, Target::Process(p, _) if p == pid))
    }

    /// The worker `pid` ended: stops what is left of its process group.
    pub(crate) fn worker_ended(
        &mut self,
        pid: u32,
        signal: Signal,
        kill_at: Instant,
        listener: Option<&Listener>,
    ) {
        if pid == os::own_group() || !os::group_exists(pid) {
            return;
        }
        emit(listener, Event::LeftBehind { pid, group: true });
        let _ = os::signal_group(pid, signal);
        self.left.push(Straggler {
            target: Target::Group(pid),
            kill_at,
            killed: false,
        });
    }

    /// Stops `pid`, a child of the supervisor that is not a worker and that
    /// no live worker owns.
    pub(crate) fn orphan(
        &mut self,
        pid: u32,
        leads_group: bool,
        signal: Signal,
        kill_at: Instant,
        listener: Option<&Listener>,
    ) {
        if self.knows(pid) {
            return;
        }
        emit(listener, Event::LeftBehind { pid, group: false });
        let leads_group = leads_group && pid != os::own_group();
        let _ = os::signal_process(pid, signal);
        if leads_group {
            let _ = os::signal_group(pid, signal);
        }
        self.left.push(Straggler {
            target: Target::Process(pid, leads_group),
            kill_at,
            killed: false,
        });
    }

    /// A new worker has the id `pid`: no group of that id is left.
    pub(crate) fn forget_group(&mut self, pid: u32) {
        self.left.retain(|s| s.target != Target::Group(pid));
    }

    /// The processes being stopped (not the groups).
    #[cfg_attr(
        not(target_os = "linux"),
        allow(dead_code, reason = "no orphans elsewhere")
    )]
    pub(crate) fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.left.iter().filter_map(|s| match s.target {
            Target::Process(pid, _) => Some(pid),
            Target::Group(_) => None,
        })
    }

    /// `pid` was reaped.
    pub(crate) fn reaped(&mut self, pid: u32) {
        self.left
            .retain(|s| !matches!(s.target, Target::Process(p, _) if p == pid));
    }

    /// Kills what is due at `now` and forgets the groups that emptied.
    pub(crate) fn tick(&mut self, now: Instant, listener: Option<&Listener>) {
        self.left.retain_mut(|s| {
            if let Target::Group(pgid) = s.target {
                if !os::group_exists(pgid) {
                    return false;
                }
            }
            if !s.killed && s.kill_at <= now {
                s.killed = true;
                kill(s.target, listener);
                // A group has nothing of ours to reap: it is done.
                return !matches!(s.target, Target::Group(_));
            }
            true
        });
    }

    /// Kills everything left, now (the supervisor's own deadline).
    pub(crate) fn kill_all(&mut self, listener: Option<&Listener>) {
        for s in self.left.iter_mut().filter(|s| !s.killed) {
            s.killed = true;
            kill(s.target, listener);
        }
        self.left.retain(|s| !matches!(s.target, Target::Group(_)));
    }
}

fn kill(target: Target, listener: Option<&Listener>) {
    use os::KILL;
    match target {
        Target::Group(pgid) => {
            let _ = os::signal_group(pgid, KILL);
            emit(listener, Event::Killed { pid: pgid });
        }
        Target::Process(pid, leads_group) => {
            let _ = os::signal_process(pid, KILL);
            if leads_group {
                let _ = os::signal_group(pid, KILL);
            }
            emit(listener, Event::Killed { pid });
        }
    }
}

/// What ties a process to a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ties<'a> {
    /// Its process group.
    pub(crate) group: u32,
    /// The `NOTIFY_SOCKET` it was started with.
    pub(crate) notify_socket: Option<&'a Path>,
}

/// A live worker, as [`owner`] matches it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveWorker<'a> {
    pub(crate) pid: u32,
    pub(crate) notify_socket: &'a Path,
}

/// The live worker an orphan belongs to, if any: the one whose process
/// group it is still in, else the one whose `NOTIFY_SOCKET` it was started
/// with (each worker has its own, and children inherit it). An orphan that
/// left the group and was started without the variable is tied to no one,
/// and is stopped: keeping it could only leave it running for ever.
pub(crate) fn owner(orphan: Ties<'_>, live: &[LiveWorker<'_>]) -> Option<u32> {
    live.iter()
        .find(|w| w.pid == orphan.group)
        .or_else(|| {
            let socket = orphan.notify_socket?;
            live.iter().find(|w| w.notify_socket == socket)
        })
        .map(|w| w.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_belongs_to_the_worker_whose_group_or_socket_it_has() {
        let (a, b) = (Path::new("/run/k/w1.sock"), Path::new("/run/k/w2.sock"));
        let live = [
            LiveWorker {
                pid: 100,
                notify_socket: a,
            },
            LiveWorker {
                pid: 200,
                notify_socket: b,
            },
        ];
        let tie = |group, notify_socket| Ties {
            group,
            notify_socket,
        };
        // Still in a worker's group: that worker's, whatever its variable says.
        assert_eq!(owner(tie(200, Some(a)), &live), Some(200));
        // Left the group (setsid): the socket it inherited says whose.
        assert_eq!(owner(tie(555, Some(a)), &live), Some(100));
        // The socket of a worker that ended, or none: nobody's.
        assert_eq!(
            owner(tie(555, Some(Path::new("/run/k/w0.sock"))), &live),
            None
        );
        assert_eq!(owner(tie(555, None), &live), None);
        assert_eq!(owner(tie(100, None), &[]), None);
    }
}
