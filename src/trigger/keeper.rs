//! The keeper: the guard thread (`exit-hook-guard`, which keeps a detached
//! run's deadline while its hooks run on a crate thread) started before
//! any run, once the process has run a moment
//! ([`Wake::Quiet`](crate::sys::Wake::Quiet)), so that a signal's run
//! starts no thread on its way to the exit. A short-lived
//! program, which ends before that moment, never pays for it; a run that
//! comes first, or in a child forked without exec, starts a guard thread
//! instead, as before.

use std::sync::{Arc, Mutex, mpsc};

use super::Run;
use crate::sys;

/// The keeper, and how many forks from the installing process the process
/// that started it was ([`sys::forks`]): a child forked without exec has a
/// copy of its parent's, without its thread.
static KEEPER: Mutex<Option<(u64, mpsc::SyncSender<Arc<Run>>)>> = Mutex::new(None);

/// Starts the keeper, parked until a run is handed to it. Once per
/// process; nothing if a thread cannot be started (a run then starts its
/// guard itself).
pub(super) fn start() {
    // `try_lock`: a child forked while another thread held it must not
    // wait for ever.
    let Ok(mut keeper) = KEEPER.try_lock() else {
        return;
    };
    let here = sys::forks();
    match keeper.take() {
        Some(ours) if ours.0 == here => {
            *keeper = Some(ours);
            return;
        }
        // A parent's: never dropped here, since dropping its sender takes
        // the channel's lock, which a thread of the parent may have held at
        // the fork.
        Some(parents) => std::mem::forget(parents),
        None => {}
    }
    // Bounded: handing a run over allocates nothing.
    let (give, take) = mpsc::sync_channel::<Arc<Run>>(1);
    let started = sys::spawn("exit-hook-guard", move || {
        if let Ok(run) = take.recv() {
            super::keep(&run);
        }
    });
    *keeper = started.ok().map(|()| (here, give));
}

/// Hands `run` to the keeper, which keeps its deadline from now on;
/// `false` if this process has none.
pub(super) fn hand(run: &Arc<Run>) -> bool {
    let Ok(mut keeper) = KEEPER.try_lock() else {
        return false;
    };
    match keeper.take() {
        Some((forks, give)) if forks == sys::forks() => give.try_send(Arc::clone(run)).is_ok(),
        Some(parents) => {
            std::mem::forget(parents); // see `start`
            false
        }
        None => false,
    }
}
