//! The registered hooks and exit guards, and how a run takes them out.
//!
//! One mutex guards two slabs: the hooks, each tagged with a growing id, and
//! the [`ExitGuard`](crate::ExitGuard)s alive. Adding and removing are O(1),
//! and sorting by id gives registration order. (The public functions are in
//! `hook.rs` and `guard.rs`.) The lock is held only to insert, remove or
//! take entries — never while a hook runs, and never while a hook's closure
//! is dropped — so registering never waits on a running shutdown.
//!
//! A run asks [`next_batch`] for work until there is none: the hooks of the
//! earliest phase registered, oldest first (so hooks registered during a
//! run join it, and a hook registered for a phase already passed runs next).
//! Before any phase after [`Phase::Drain`] it waits until every guard is
//! released. When nothing is left, the registry closes atomically with that
//! answer: registering after it is [`Error::Exiting`], and a guard taken
//! after it holds nothing.

use std::future::Future;
use std::num::NonZeroU32;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::{Exit, Phase};

mod slab;

use slab::Slab;

/// A boxed async hook body.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A registration site, as `#[track_caller]` gives it.
pub(crate) type Site = &'static Location<'static>;

/// What a hook does.
pub(crate) enum Work {
    Sync(Box<dyn FnOnce(&Exit) + Send>),
    Async(Box<dyn FnOnce(Exit) -> BoxFuture + Send>),
}

/// A registered hook.
pub(crate) struct Hook {
    pub(crate) location: Site,
    pub(crate) phase: Phase,
    /// How long the run waits for this hook before it moves on.
    pub(crate) time_limit: Option<TimeLimit>,
    pub(crate) work: Work,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("location", &format_args!("{}", self.location))
            .field("phase", &self.phase)
            .field("time_limit", &self.time_limit.map(TimeLimit::get))
            .finish_non_exhaustive()
    }
}

/// A hook's time limit in whole microseconds: 4 bytes instead of an
/// `Option<Duration>`'s 16, so that every registered hook stays small (a
/// run of 100 000 sync hooks measured 17.3 ms with 64-byte entries, 13.4 ms
/// with 40). A `u32` holds up to 4294 s, past [`Builder::MAX_TIMEOUT`](crate::Builder::MAX_TIMEOUT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeLimit(NonZeroU32);

impl TimeLimit {
    /// The limit, rounded up to a whole microsecond; `None` for zero or
    /// above [`Builder::MAX_TIMEOUT`](crate::Builder::MAX_TIMEOUT).
    pub(crate) fn new(limit: Duration) -> Option<Self> {
        if limit.is_zero() || limit > crate::config::MAX_TIMEOUT {
            return None;
        }
        let micros = limit.as_nanos().div_ceil(1000);
        Some(TimeLimit(NonZeroU32::new(u32::try_from(micros).ok()?)?))
    }

    pub(crate) fn get(self) -> Duration {
        Duration::from_micros(self.0.get().into())
    }
}

/// Where a hook is stored: its slot, and its id, which tells it apart from
/// a later hook in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: usize,
    id: u64,
}

impl Key {
    /// A key no hook has.
    pub(crate) const NONE: Key = Key {
        index: usize::MAX,
        id: u64::MAX,
    };
}

/// What a run does next, as [`Registry::next`] decides.
pub(crate) enum Next {
    /// Run these hooks (one phase, registration order).
    Batch(Vec<Hook>),
    /// Guards are alive and the next hooks (if any) come after the drain phase.
    WaitForGuards,
    /// Nothing left: the registry is closed.
    Done,
}

pub(crate) struct Registry {
    next_id: u64,
    hooks: Slab<(u64, Hook)>,
    guards: Slab<Held>,
    /// Threads that are ending the process (`exit_hook::exit`): they never
    /// get back to the guards they took.
    ending: Vec<u64>,
    /// The drain's time is up: guards hold nothing any more.
    guards_given_up: bool,
    /// The runner taking batches: a runner left behind at its phase's end
    /// (its generation older) gets none.
    generation: u64,
    /// The phase of the last batch taken.
    phase: Option<Phase>,
    closed: bool,
}

/// A guard alive: where it was taken, by which thread, in which process.
#[derive(Clone, Copy)]
struct Held {
    site: Site,
    thread: u64,
    pid: u32,
}

impl Held {
    /// Whether its holder can still release it: its thread is not the one
    /// ending the process, and is in this process (a child forked without
    /// exec has only the forking thread, a copy).
    fn can_be_released(&self, ending: &[u64], pid: u32) -> bool {
        self.pid == pid && !ending.contains(&self.thread)
    }
}

thread_local! {
    // `const` and without a destructor: readable while the thread exits
    // (from `exit()`, after its other thread-locals are gone).
    static THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A number for this thread, the same for its whole life (and in a child
/// it forks); 0 where thread-locals cannot be read.
pub(crate) fn this_thread() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    THREAD
        .try_with(|id| {
            if id.get() == 0 {
                id.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            id.get()
        })
        .unwrap_or(0)
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            next_id: 0,
            hooks: Slab::new(),
            guards: Slab::new(),
            ending: Vec::new(),
            guards_given_up: false,
            generation: 0,
            phase: None,
            closed: false,
        }
    }

    /// Registers `hook`; once the registry is closed, gives it back, so that
    /// the caller drops it after unlocking (see [`remove`](Self::remove)).
    #[inline]
    pub(crate) fn insert(&mut self, hook: Hook) -> Result<Key, Hook> {
        if self.closed {
            return Err(hook);
        }
        let id = self.next_id;
        self.next_id += 1;
        let index = self.hooks.insert((id, hook));
        Ok(Key { index, id })
    }

    /// Removes the hook under `key` and gives it back, so that the caller
    /// drops its closure after unlocking: the closure's captures may run any
    /// code when dropped, registering or unregistering included.
    #[must_use = "drop the hook after the registry's lock is released"]
    #[inline]
    pub(crate) fn remove(&mut self, key: Key) -> Option<Hook> {
        let (id, _) = self.hooks.get(key.index)?;
        if *id != key.id {
            return None;
        }
        self.hooks.remove(key.index).map(|(_, hook)| hook)
    }

    /// What the run does next; see [`Next`]. Taking the last batch leaves the
    /// registry open (its hooks may register more); the `Done` that follows
    /// closes it.
    pub(crate) fn next(&mut self) -> Next {
        // The earliest and the latest phase registered, in one pass.
        let (first, last) = {
            let mut phases = self.hooks.iter().map(|(_, hook)| hook.phase);
            match phases.next() {
                None => (None, None),
                Some(phase) => {
                    let (first, last) = phases.fold((phase, phase), |(first, last), phase| {
                        (first.min(phase), last.max(phase))
                    });
                    (Some(first), Some(last))
                }
            }
        };
        if self.holding() && first.is_none_or(|phase| phase > Phase::Drain) {
            return Next::WaitForGuards;
        }
        let Some(phase) = first else {
            self.closed = true;
            return Next::Done;
        };
        self.phase = Some(phase);
        let mut batch = if last == Some(phase) {
            self.hooks.take_all() // the usual case: one phase
        } else {
            self.hooks.take_where(|(_, hook)| hook.phase == phase)
        };
        batch.sort_unstable_by_key(|(id, _)| *id);
        Next::Batch(batch.into_iter().map(|(_, hook)| hook).collect())
    }

    /// The runner of generation `runner` is still in `phase` (or before)
    /// and hooks of a later phase wait: the run goes on without it, as the
    /// next generation, which it returns. `None` if that runner has gone
    /// past `phase` already, or if nothing later waits for the time.
    pub(crate) fn move_on_from(&mut self, phase: Phase, runner: u64) -> Option<u64> {
        if runner != self.generation || self.closed || self.phase.is_some_and(|p| p > phase) {
            return None;
        }
        if !self.hooks.iter().any(|(_, hook)| hook.phase > phase) {
            return None; // nothing later needs the time: the deadline bounds it
        }
        self.generation += 1;
        Some(self.generation)
    }

    /// Refuses registrations and guards from now on (the run was cut short).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether a guard that can still be released is alive.
    fn holding(&self) -> bool {
        if self.guards.len() == 0 || self.guards_given_up {
            return false;
        }
        let pid = std::process::id();
        self.guards
            .iter()
            .any(|held| held.can_be_released(&self.ending, pid))
    }

    /// The calling thread is ending the process and will not release its
    /// guards: they hold nothing from now on.
    pub(crate) fn thread_ending(&mut self) {
        let thread = this_thread();
        if !self.ending.contains(&thread) {
            self.ending.push(thread);
        }
    }

    /// Records a guard taken at `site`; `None` once the registry is closed.
    pub(crate) fn hold(&mut self, site: Site) -> Option<usize> {
        let held = Held {
            site,
            thread: this_thread(),
            pid: std::process::id(),
        };
        (!self.closed).then(|| self.guards.insert(held))
    }

    /// Releases the guard [`hold`](Self::hold) returned.
    pub(crate) fn release(&mut self, guard: usize) {
        self.guards.remove(guard);
    }

    /// Where the hooks not taken yet were registered, in registration order.
    pub(crate) fn waiting_hooks(&self) -> Vec<Site> {
        let mut hooks: Vec<_> = self.hooks.iter().collect();
        hooks.sort_unstable_by_key(|(id, hook)| (hook.phase, *id));
        hooks.into_iter().map(|(_, hook)| hook.location).collect()
    }

    /// Where the guards alive that still hold the run were taken.
    pub(crate) fn guard_sites(&self) -> Vec<Site> {
        let pid = std::process::id();
        self.guards
            .iter()
            .filter(|held| held.can_be_released(&self.ending, pid))
            .map(|held| held.site)
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hooks.len()
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

/// Signalled when a guard is released or a hook registered, for a run
/// waiting in [`next_batch`].
static CHANGED: Condvar = Condvar::new();

/// The process's registry. Poisoning is ignored: no user code runs under the
/// lock, so a panic cannot leave it half-updated.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes a run waiting for guards to be released or hooks to arrive; call
/// it after the change, with the lock released.
///
/// Only a run waits, so before one there is no one to wake, and the
/// notification (a system call) is skipped. That cannot miss a waiter: a
/// run waits only after its phase left `Idle` and after seeing the change
/// not made yet, under the lock; the change, made under the same lock
/// afterwards, is followed by this load, which then sees the run.
pub(crate) fn changed() {
    if crate::state::STATE.is_exiting() {
        CHANGED.notify_all();
    }
}

/// The run's next batch of hooks for the runner of generation `runner`,
/// waiting while guards hold it, at most until `drain_end`: then the
/// guards still alive hold nothing (and `held_too_long` is told where they
/// were taken). `None` when nothing is left (the registry is closed then),
/// or when the run went on without this runner.
pub(crate) fn next_batch(
    runner: u64,
    drain_end: std::time::Instant,
    held_too_long: impl Fn(Vec<Site>),
) -> Option<Vec<Hook>> {
    let mut registry = registry();
    loop {
        if registry.generation != runner {
            return None;
        }
        match registry.next() {
            Next::Batch(batch) => return Some(batch),
            Next::Done => return None,
            Next::WaitForGuards => {
                let left = drain_end.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    let sites = registry.guard_sites();
                    registry.guards_given_up = true;
                    drop(registry);
                    held_too_long(sites);
                    registry = self::registry();
                    continue;
                }
                registry = CHANGED
                    .wait_timeout(registry, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn hook_in(phase: Phase) -> Hook {
        Hook {
            location: Location::caller(),
            phase,
            time_limit: None,
            work: Work::Sync(Box::new(|_| {})),
        }
    }

    #[track_caller]
    fn hook() -> Hook {
        hook_in(Phase::Cleanup)
    }

    fn batch(registry: &mut Registry) -> Vec<Hook> {
        match registry.next() {
            Next::Batch(batch) => batch,
            Next::WaitForGuards => panic!("waiting for guards"),
            Next::Done => Vec::new(),
        }
    }

    #[test]
    fn batches_keep_registration_order_without_removed_hooks() {
        let mut registry = Registry::new();
        let keys: Vec<Key> = (0..5).map(|_| registry.insert(hook()).unwrap()).collect();
        assert!(registry.remove(keys[1]).is_some());
        assert!(registry.remove(keys[1]).is_none(), "a hook is removed once");
        assert_eq!(registry.len(), 4);
        assert_eq!(batch(&mut registry).len(), 4);
        let later = registry.insert(hook()).unwrap();
        assert!(later.id > keys[4].id, "ids grow across batches");
        assert_eq!(batch(&mut registry).len(), 1);
    }

    #[test]
    fn nothing_left_closes_the_registry() {
        let mut registry = Registry::new();
        registry.insert(hook()).unwrap();
        assert_eq!(batch(&mut registry).len(), 1);
        assert!(matches!(registry.next(), Next::Done));
        assert!(registry.insert(hook()).is_err());
        assert_eq!(
            registry.hold(Location::caller()),
            None,
            "no guard after the run"
        );
    }

    #[test]
    fn a_taken_hook_cannot_be_removed() {
        let mut registry = Registry::new();
        let key = registry.insert(hook()).unwrap();
        let _batch = batch(&mut registry);
        assert!(registry.remove(key).is_none());
    }

    #[test]
    fn reused_slots_keep_registration_order_and_stale_keys_fail() {
        let mut registry = Registry::new();
        let (a, b, c) = (hook(), hook(), hook()); // three call sites
        let sites = [b.location, c.location];
        let a = registry.insert(a).unwrap();
        registry.insert(b).unwrap();
        assert!(registry.remove(a).is_some());
        let c = registry.insert(c).unwrap();
        assert_eq!(c.index, a.index, "the freed slot is reused");
        assert!(
            registry.remove(a).is_none(),
            "a stale key does not remove the slot's new hook"
        );
        assert_eq!(registry.len(), 2);
        // c sits in an earlier slot than b, but was registered after it.
        let batch: Vec<_> = batch(&mut registry).iter().map(|h| h.location).collect();
        assert_eq!(batch, sites);
    }

    #[test]
    fn close_refuses_new_hooks() {
        let mut registry = Registry::new();
        registry.close();
        assert!(registry.insert(hook()).is_err());
    }

    #[test]
    fn phases_are_taken_in_order_whatever_the_registration_order() {
        let mut registry = Registry::new();
        for phase in [
            Phase::Flush,
            Phase::Close,
            Phase::Drain,
            Phase::Cleanup,
            Phase::Drain,
        ] {
            registry.insert(hook_in(phase)).unwrap();
        }
        let phases = |batch: Vec<Hook>| batch.iter().map(|h| h.phase).collect::<Vec<_>>();
        assert_eq!(phases(batch(&mut registry)), [Phase::Drain, Phase::Drain]);
        assert_eq!(phases(batch(&mut registry)), [Phase::Cleanup]);
        // Registered during the run for a phase already passed: runs next.
        registry.insert(hook_in(Phase::Drain)).unwrap();
        assert_eq!(phases(batch(&mut registry)), [Phase::Drain]);
        assert_eq!(phases(batch(&mut registry)), [Phase::Close]);
        assert_eq!(phases(batch(&mut registry)), [Phase::Flush]);
        assert!(matches!(registry.next(), Next::Done));
    }

    #[test]
    fn guards_hold_every_phase_after_the_drain() {
        let mut registry = Registry::new();
        registry.insert(hook_in(Phase::Drain)).unwrap();
        registry.insert(hook_in(Phase::Flush)).unwrap();
        let guard = registry.hold(Location::caller()).unwrap();
        assert_eq!(batch(&mut registry).len(), 1, "the drain runs while held");
        assert!(matches!(registry.next(), Next::WaitForGuards));
        registry.release(guard);
        assert_eq!(batch(&mut registry)[0].phase, Phase::Flush);
        let guard = registry.hold(Location::caller()).unwrap();
        assert!(
            matches!(registry.next(), Next::WaitForGuards),
            "a guard holds the end of the run too"
        );
        assert_eq!(registry.guard_sites().len(), 1);
        registry.release(guard);
        assert!(matches!(registry.next(), Next::Done));
    }

    #[test]
    fn time_limits_are_kept_to_the_microsecond_and_bounded() {
        let limit = |d| TimeLimit::new(d).map(TimeLimit::get);
        assert_eq!(
            limit(Duration::from_millis(1500)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            limit(Duration::from_nanos(1)),
            Some(Duration::from_micros(1))
        );
        assert_eq!(
            limit(crate::config::MAX_TIMEOUT),
            Some(crate::config::MAX_TIMEOUT)
        );
        assert_eq!(limit(Duration::ZERO), None);
        assert_eq!(
            limit(crate::config::MAX_TIMEOUT + Duration::from_nanos(1)),
            None
        );
        assert!(
            size_of::<Option<(u64, Hook)>>() <= 48,
            "a registered hook stays small"
        );
    }

    #[test]
    fn waiting_hooks_are_listed_in_run_order() {
        let mut registry = Registry::new();
        let flush = hook_in(Phase::Flush);
        let drain = hook_in(Phase::Drain);
        let sites = [drain.location, flush.location];
        registry.insert(flush).unwrap();
        registry.insert(drain).unwrap();
        assert_eq!(registry.waiting_hooks(), sites);
    }
}
