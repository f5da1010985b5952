//! One loop for every cluster of the process: one reaper, one sleep. Each
//! turn reaps every child that exited (`wait(-1)`: the process's only
//! reaper), gives each cluster its own (and tells it which children are
//! the other clusters' workers, not orphans), hands what is nobody's to
//! the clusters' stragglers, then sleeps until any of them has something
//! to do. A cluster that ended (every slot gave up, or stopped) leaves the
//! turns; the others go on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Asked, Cluster};
use crate::StopReason;
use crate::os::{self, Alarm};

/// Runs `clusters` until each has ended; each one's reason, in order.
pub(crate) fn run(mut clusters: Vec<Cluster<'_>>, alarm: &Alarm, asked: &Asked) -> Vec<StopReason> {
    let mut ended: Vec<Option<StopReason>> = vec![None; clusters.len()];
    loop {
        let now = Instant::now();
        let take = |flag: &Option<std::sync::Arc<std::sync::atomic::AtomicBool>>| {
            flag.as_ref()
                .is_some_and(|asked| asked.swap(false, Ordering::AcqRel))
        };
        let (forced, hangup) = (take(&asked.force), take(&asked.reload));
        let mut reaped = os::reap(std::iter::empty());
        let children: Vec<Vec<u32>> = clusters.iter().map(Cluster::children).collect();
        for (index, cluster) in clusters.iter_mut().enumerate() {
            if ended[index].is_some() {
                continue;
            }
            let foreign: Vec<u32> = children
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != index)
                .flat_map(|(_, pids)| pids.iter().copied())
                .collect();
            ended[index] = cluster.turn(now, forced, hangup, &mut reaped, &foreign);
            if let Some(reason) = ended[index] {
                // Said as it happens: in a group the others go on.
                cluster.supervisor.emit(crate::Event::Done(reason));
            }
        }
        // Nobody's worker: what an ended worker left, if anyone's.
        for (pid, _) in reaped {
            for cluster in &clusters {
                cluster.straggler_reaped(pid);
            }
        }
        if ended.iter().all(Option::is_some) {
            return ended.into_iter().flatten().collect();
        }
        let mut until: Option<Instant> = None;
        for (index, cluster) in clusters.iter_mut().enumerate() {
            if ended[index].is_none() {
                until = cluster.rest().into_iter().chain(until).min();
            }
        }
        #[cfg(unix)]
        {
            let fds: Vec<_> = clusters
                .iter()
                .enumerate()
                .filter(|&(index, _)| ended[index].is_none())
                .flat_map(|(_, cluster)| cluster.fds())
                .collect();
            alarm.sleep(&fds, until);
        }
        #[cfg(not(unix))]
        alarm.sleep(until);
    }
}
