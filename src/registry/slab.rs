//! A slab: values in slots that are reused once freed, so inserting and
//! removing are O(1) whatever the number of values, and an index stays
//! valid until its value is removed.

/// Slots that are reused once freed; O(1) insert and remove.
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    live: usize,
}

/// Above this many slots, an emptied slab gives its memory back.
pub(super) const KEEP_SLOTS: usize = 64;

impl<T> Slab<T> {
    pub(super) const fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    #[inline]
    pub(super) fn insert(&mut self, value: T) -> usize {
        self.live += 1;
        // The free list may still name slots that `give_back_memory` cut
        // off, past the end: those are skipped.
        while let Some(index) = self.free.pop() {
            if let Some(slot @ None) = self.slots.get_mut(index) {
                *slot = Some(value);
                return index;
            }
        }
        self.slots.push(Some(value));
        self.slots.len() - 1
    }

    #[inline]
    pub(super) fn get(&self, index: usize) -> Option<&T> {
        self.slots.get(index)?.as_ref()
    }

    #[inline]
    pub(super) fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.slots.get_mut(index)?.take()?;
        self.live -= 1;
        self.free.push(index);
        if index + 1 == self.slots.len() {
            self.give_back_memory();
        }
        Some(value)
    }

    /// Removes and returns the values for which `take` holds, in slot order.
    ///
    /// Unlike [`remove`](Self::remove), taking keeps the slots' memory: a run
    /// takes the hooks while the process ends, and freeing a large buffer
    /// then only makes the C library's allocator slower for the rest of the
    /// run (glibc raises its mmap threshold to the size freed, so later large
    /// buffers come from the heap, and freeing one of them consolidates
    /// every small chunk the hooks' tasks left: 16 M instructions with
    /// 100 000 async hooks, measured with callgrind).
    pub(super) fn take_where(&mut self, take: impl Fn(&T) -> bool) -> Vec<T> {
        let mut taken = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(&take) {
                taken.extend(slot.take());
                self.free.push(index);
            }
        }
        self.live -= taken.len();
        taken
    }

    /// Removes and returns every value, in slot order: one pass, one
    /// allocation of the exact size, whatever the number of values.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        let mut taken = Vec::with_capacity(self.live);
        taken.extend(self.slots.drain(..).flatten());
        self.free.clear();
        self.live = 0;
        taken
    }

    /// The last slot was freed: drops the free slots at the end, and gives
    /// the memory back once the slab uses less than a quarter of it. A slab
    /// that emptied out and held more than [`KEEP_SLOTS`] starts afresh.
    ///
    /// Amortised O(1): a slot is dropped once per push, and the free list is
    /// cleaned of the indices cut off only when they are most of it. Memory
    /// behind a live value in the last slot stays until that value goes.
    fn give_back_memory(&mut self) {
        if self.live == 0 && self.slots.capacity() > KEEP_SLOTS {
            *self = Slab::new();
            return;
        }
        while let Some(None) = self.slots.last() {
            self.slots.pop();
        }
        let len = self.slots.len();
        if self.free.len() > 2 * (len - self.live) + KEEP_SLOTS {
            let slots = &self.slots;
            self.free
                .retain(|&index| slots.get(index).is_some_and(Option::is_none));
            // Lowest index last, so it is reused first and the end stays free.
            self.free.sort_unstable_by(|a, b| b.cmp(a));
            self.free.dedup();
        }
        if self.slots.capacity() > KEEP_SLOTS.max(4 * len) {
            self.slots.shrink_to(2 * len);
        }
        if self.free.capacity() > KEEP_SLOTS.max(4 * self.free.len()) {
            self.free.shrink_to(2 * self.free.len());
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_are_reused() {
        let mut slab = Slab::new();
        let (a, b) = (slab.insert('a'), slab.insert('b'));
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "removed once");
        assert_eq!(slab.insert('c'), a);
        assert_eq!(slab.get(b), Some(&'b'));
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn take_where_takes_in_slot_order_and_frees_the_slots() {
        let mut slab = Slab::new();
        for n in 0..6 {
            slab.insert(n);
        }
        assert_eq!(slab.take_where(|n| n % 2 == 0), [0, 2, 4]);
        assert_eq!(slab.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(slab.len(), 3);
        assert!(slab.insert(6) < 6, "a freed slot is reused");
        let mut all = slab.take_all();
        all.sort();
        assert_eq!(all, [1, 3, 5, 6]);
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.insert(7), 0, "an emptied slab starts again at slot 0");
    }

    #[test]
    fn an_emptied_slab_gives_its_memory_back() {
        let mut slab = Slab::new();
        let indices: Vec<usize> = (0..4 * KEEP_SLOTS).map(|n| slab.insert(n)).collect();
        for index in indices {
            slab.remove(index);
        }
        assert_eq!(slab.slots.capacity(), 0);
        assert_eq!(slab.free.capacity(), 0);
        let one = slab.insert(1);
        assert_eq!(slab.remove(one), Some(1));
        assert!(slab.slots.capacity() > 0, "a small slab keeps its slots");
    }

    #[test]
    fn a_slab_that_keeps_a_value_gives_the_rest_back() {
        let mut slab = Slab::new();
        let kept = slab.insert(usize::MAX);
        let indices: Vec<usize> = (0..4 * KEEP_SLOTS * 8).map(|n| slab.insert(n)).collect();
        for index in indices {
            slab.remove(index);
        }
        assert!(
            slab.slots.capacity() <= KEEP_SLOTS,
            "{}",
            slab.slots.capacity()
        );
        assert!(
            slab.free.capacity() <= KEEP_SLOTS,
            "{}",
            slab.free.capacity()
        );
        assert_eq!(slab.get(kept), Some(&usize::MAX));
        let next = slab.insert(7);
        assert_eq!(slab.get(next), Some(&7));
        assert_eq!(slab.len(), 2);
    }

    /// Random inserts and removes (a fixed xorshift sequence) against a
    /// map: no value is lost or overwritten, whatever was given back.
    #[test]
    fn random_operations_match_a_model() {
        use std::collections::HashMap;
        let mut slab = Slab::new();
        let mut model: HashMap<usize, u64> = HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        // Miri interprets every step: a smaller sample there.
        let (ops, phase) = if cfg!(miri) {
            (4_000, 400)
        } else {
            (200_000, 20_000)
        };
        for value in 0..ops {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Phases that grow and phases that shrink the slab.
            let growing = (value / phase) % 2 == 0;
            if model.is_empty() || state % 10 < if growing { 7 } else { 2 } {
                let index = slab.insert(value);
                assert!(
                    model.insert(index, value).is_none(),
                    "slot {index} reused while live"
                );
            } else {
                let keys: Vec<usize> = model.keys().copied().take(8).collect();
                let index = keys[(state as usize >> 8) % keys.len()];
                assert_eq!(slab.remove(index), model.remove(&index));
            }
        }
        assert_eq!(slab.len(), model.len());
        for (index, value) in &model {
            assert_eq!(slab.get(*index), Some(value));
        }
    }
}
