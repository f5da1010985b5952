//! One loop for every cluster of the process (`crate::group` runs it):
//! one reaper, one sleep. Each turn reaps every child that exited
//! (`wait(-1)`: the process's only reaper) with every cluster's state
//! locked, so a reaped worker leaves
//! its cluster's children (for the exited it turn takes) and a reaped
//! orphan its stragglers before anyone can signal the pid or see "all
//! gone" in between; then each cluster takes its turn, told what the other
//! clusters own (their workers are not its orphans); then the loop sleeps
//! until any of them has something to do. A cluster that ended (every slot
//! gave up, or stopped) leaves the turns; the others go on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Asked, Cluster, Foreign};
use crate::StopReason;
use crate::os::{self, Alarm};
use crate::stop::{State, Stopping};

/// One turn of every cluster of the group at one time: what SIGQUIT and
/// SIGHUP asked (taken here, once for all), the reaper, each cluster's
/// turn. Those that ended, by their index, with their reason: each said
/// its `Done` if `say_done` (in a group; a run of one says it last, after
/// its last words), and takes no request any more.
pub(crate) fn turn(
    clusters: &mut [&mut Cluster],
    asked: &Asked,
    say_done: bool,
) -> Vec<(usize, StopReason)> {
    let now = Instant::now();
    let take = |flag: &Option<std::sync::Arc<std::sync::atomic::AtomicBool>>| {
        flag.as_ref()
            .is_some_and(|asked| asked.swap(false, Ordering::AcqRel))
    };
    let (forced, hangup) = (take(&asked.force), take(&asked.reload));
    reap(clusters);
    let mut ended = Vec::new();
    for index in 0..clusters.len() {
        // What the others own, as it is now (an earlier turn may have
        // started a worker).
        let mut foreign = Foreign::default();
        for (other, cluster) in clusters.iter().enumerate() {
            if other != index {
                cluster.own(&mut foreign);
            }
        }
        let cluster = &mut clusters[index];
        let Some(reason) = cluster.turn(now, forced, hangup, &foreign) else {
            continue;
        };
        if say_done {
            cluster.supervisor.emit(crate::Event::Done(reason));
        }
        end(&mut cluster.shared.lock());
        cluster.shared.changed.notify_all();
        ended.push((index, reason));
    }
    ended
}

/// Sleeps until any of `clusters` has something to do, or `until`.
pub(crate) fn sleep(clusters: &mut [&mut Cluster], alarm: &Alarm, until: Option<Instant>) {
    let mut until = until;
    for cluster in clusters.iter_mut() {
        until = cluster.rest().into_iter().chain(until).min();
    }
    #[cfg(unix)]
    {
        let fds: Vec<_> = clusters.iter().flat_map(|cluster| cluster.fds()).collect();
        alarm.sleep(&fds, until);
    }
    #[cfg(not(unix))]
    alarm.sleep(until);
}

/// Reaps what exited, every running cluster's state locked (in order; the
/// other parties lock one at a time): a worker goes from its cluster's
/// children to its exited, for its turn; anything else is taken out of
/// every cluster's stragglers.
fn reap(clusters: &[&mut Cluster]) {
    let mut states: Vec<_> = clusters.iter().map(|c| c.shared.lock()).collect();
    // Windows reaps each child by its handle, Unix any child at all.
    #[cfg(not(unix))]
    let reaped: Vec<_> = states
        .iter_mut()
        .flat_map(|state| os::reap(state.children.iter_mut().map(|s| &mut s.child)))
        .collect();
    #[cfg(unix)]
    let reaped = os::reap(std::iter::empty::<&mut std::process::Child>());
    for (pid, status) in reaped {
        let owner = states.iter_mut().find_map(|state| {
            let index = state.children.iter().position(|s| s.child.id() == pid)?;
            Some((state, index))
        });
        match owner {
            Some((state, index)) => {
                let started = state.children.remove(index);
                state.exited.push((started, status));
            }
            None => {
                for state in &mut states {
                    state.stragglers.reaped(pid);
                }
            }
        }
    }
}

/// A cluster ended: a request waiting for it is told so (its sender
/// dropped), none is taken any more, its status shows no worker, and its
/// health check stops asking.
fn end(state: &mut State) {
    state.commands.clear();
    state.ended = true;
    state.view.clear();
    state.stopping.get_or_insert(Stopping {
        by: None,
        signal: exit_hook::Signal::terminate(),
    });
}
