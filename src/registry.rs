//! The registered hooks, in registration order, and the handles that remove them.
//!
//! One mutex guards a slab of hooks, each tagged with a growing id: adding
//! and removing are O(1), and sorting by id gives registration order.
//! (The public functions that register and unregister are in `hook.rs`.) The lock is held only to
//! insert, remove or take hooks — never while a hook runs — so registering
//! never waits on a running shutdown. The runner takes the hooks out in
//! batches (hooks registered during a run join it) and closes the registry
//! when the run is over; registering after that is [`Error::Exiting`].

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Error, Exit};

/// A boxed async hook body.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a hook does.
pub(crate) enum Work {
    Sync(Box<dyn FnOnce(&Exit) + Send>),
    Async(Box<dyn FnOnce(Exit) -> BoxFuture + Send>),
}

/// A registered hook.
pub(crate) struct Hook {
    pub(crate) location: &'static Location<'static>,
    pub(crate) work: Work,
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

/// A slab: inserting and removing are O(1) whatever the number of hooks,
/// and removed slots are reused. Ids grow with each registration, so
/// sorting by id restores registration order when a run takes the hooks.
pub(crate) struct Registry {
    next_id: u64,
    slots: Vec<Option<(u64, Hook)>>,
    free: Vec<usize>,
    live: usize,
    closed: bool,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            next_id: 0,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            closed: false,
        }
    }

    pub(crate) fn insert(&mut self, hook: Hook) -> Result<Key, Error> {
        if self.closed {
            return Err(Error::Exiting);
        }
        let id = self.next_id;
        self.next_id += 1;
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some((id, hook));
                index
            }
            None => {
                self.slots.push(Some((id, hook)));
                self.slots.len() - 1
            }
        };
        self.live += 1;
        Ok(Key { index, id })
    }

    pub(crate) fn remove(&mut self, key: Key) -> bool {
        match self.slots.get_mut(key.index) {
            Some(slot) if slot.as_ref().is_some_and(|(id, _)| *id == key.id) => {
                *slot = None;
                self.free.push(key.index);
                self.live -= 1;
                true
            }
            _ => false,
        }
    }

    /// Takes every hook registered so far, oldest first. An empty batch
    /// closes the registry: the run is over and nothing more will be taken.
    pub(crate) fn take_batch(&mut self) -> Vec<Hook> {
        let mut batch: Vec<(u64, Hook)> = self.slots.drain(..).flatten().collect();
        self.free.clear();
        self.live = 0;
        if batch.is_empty() {
            self.closed = true;
        }
        batch.sort_unstable_by_key(|(id, _)| *id);
        batch.into_iter().map(|(_, hook)| hook).collect()
    }

    /// Refuses registrations from now on (the run was cut short).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

/// The process's registry. Poisoning is ignored: no hook runs under the lock,
/// so a panic cannot leave it half-updated.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn hook() -> Hook {
        Hook {
            location: Location::caller(),
            work: Work::Sync(Box::new(|_| {})),
        }
    }

    #[test]
    fn batches_keep_registration_order_without_removed_hooks() {
        let mut registry = Registry::new();
        let keys: Vec<Key> = (0..5).map(|_| registry.insert(hook()).unwrap()).collect();
        assert!(registry.remove(keys[1]));
        assert!(!registry.remove(keys[1]), "a hook is removed once");
        assert_eq!(registry.len(), 4);
        assert_eq!(registry.take_batch().len(), 4);
        let later = registry.insert(hook()).unwrap();
        assert!(later.id > keys[4].id, "ids grow across batches");
        assert_eq!(registry.take_batch().len(), 1);
    }

    #[test]
    fn an_empty_batch_closes_the_registry() {
        let mut registry = Registry::new();
        registry.insert(hook()).unwrap();
        assert_eq!(registry.take_batch().len(), 1);
        assert!(registry.take_batch().is_empty());
        assert!(matches!(registry.insert(hook()), Err(Error::Exiting)));
    }

    #[test]
    fn a_taken_hook_cannot_be_removed() {
        let mut registry = Registry::new();
        let key = registry.insert(hook()).unwrap();
        let _batch = registry.take_batch();
        assert!(!registry.remove(key));
    }

    #[test]
    fn reused_slots_keep_registration_order_and_stale_keys_fail() {
        let mut registry = Registry::new();
        let (a, b, c) = (hook(), hook(), hook()); // three call sites
        let sites = [b.location, c.location];
        let a = registry.insert(a).unwrap();
        registry.insert(b).unwrap();
        assert!(registry.remove(a));
        let c = registry.insert(c).unwrap();
        assert_eq!(c.index, a.index, "the freed slot is reused");
        assert!(
            !registry.remove(a),
            "a stale key does not remove the slot's new hook"
        );
        assert_eq!(registry.len(), 2);
        // c sits in an earlier slot than b, but was registered after it.
        let batch: Vec<_> = registry.take_batch().iter().map(|h| h.location).collect();
        assert_eq!(batch, sites);
    }

    #[test]
    fn close_refuses_new_hooks() {
        let mut registry = Registry::new();
        registry.close();
        assert!(matches!(registry.insert(hook()), Err(Error::Exiting)));
    }
}
