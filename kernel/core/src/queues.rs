//! The scheduler's run queue and the IPC wait queue.
//!
//! Both hold small `Copy` handles (thread ids, say), never the threads
//! themselves. Neither checks for duplicates: keeping each thread in at most
//! one queue is the caller's invariant. Adding an item may grow a `VecDeque`,
//! so it allocates from the kernel heap.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Scheduling priority: 0 is lowest, 255 highest.
pub type Priority = u8;

/// Number of priority levels.
const LEVELS: usize = 256;

/// Words in the bitmap of non-empty levels.
const BITMAP_WORDS: usize = LEVELS / 64;

/// Threads ready to run, by priority: 256 FIFO levels plus a bitmap of the
/// non-empty ones, so finding the highest ready priority is a few word
/// operations (like seL4's ready queues).
pub struct RunQueue<T> {
    /// Level `p` holds the ready items of priority `p`, next to run first.
    levels: [VecDeque<T>; LEVELS],
    /// Bit `p % 64` of word `p / 64` set: level `p` is non-empty.
    non_empty: [u64; BITMAP_WORDS],
    len: usize,
}

#[expect(
    clippy::indexing_slicing,
    reason = "levels has 256 entries and the bitmap 4 words: a u8 priority, or one shifted right by 6, always indexes inside"
)]
impl<T: Copy + Eq> RunQueue<T> {
    /// An empty run queue. `const` so the kernel can keep one in a `static`;
    /// it allocates nothing until the first push.
    pub const fn new() -> Self {
        Self {
            levels: [const { VecDeque::new() }; LEVELS],
            non_empty: [0; BITMAP_WORDS],
            len: 0,
        }
    }

    /// Adds `item` at the back of its level (round robin). O(1) amortised.
    pub fn push_back(&mut self, item: T, priority: Priority) {
        self.levels[usize::from(priority)].push_back(item);
        self.mark(priority, true);
        self.len += 1;
    }

    /// Adds `item` at the front of its level (a preempted thread that keeps
    /// the rest of its slice). O(1) amortised.
    pub fn push_front(&mut self, item: T, priority: Priority) {
        self.levels[usize::from(priority)].push_front(item);
        self.mark(priority, true);
        self.len += 1;
    }

    /// Takes the first item of the highest non-empty level. O(1).
    pub fn pop_highest(&mut self) -> Option<(T, Priority)> {
        let priority = self.highest_priority()?;
        let level = &mut self.levels[usize::from(priority)];
        let item = level.pop_front()?;
        if level.is_empty() {
            self.mark(priority, false);
        }
        self.len -= 1;
        Some((item, priority))
    }

    /// The highest non-empty level, or `None` when nothing is ready. O(1):
    /// looks at the four bitmap words.
    pub fn highest_priority(&self) -> Option<Priority> {
        let (index, word) = self.non_empty.iter().enumerate().rev().find(|&(_, &word)| word != 0)?;
        // `word` is non-zero, so `leading_zeros` is at most 63.
        Priority::try_from(index * 64 + 63 - word.leading_zeros() as usize).ok()
    }

    /// Removes the first occurrence of `item` from level `priority`; false if
    /// it was not there (the other levels are not searched). O(n) in the
    /// length of that level.
    pub fn remove(&mut self, item: T, priority: Priority) -> bool {
        let level = &mut self.levels[usize::from(priority)];
        let Some(position) = level.iter().position(|&queued| queued == item) else {
            return false;
        };
        level.remove(position);
        if level.is_empty() {
            self.mark(priority, false);
        }
        self.len -= 1;
        true
    }

    /// Items queued, over all levels. O(1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is ready. O(1).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mark(&mut self, priority: Priority, non_empty: bool) {
        // `priority >> 6` is at most 3, and the bitmap has four words.
        let word = &mut self.non_empty[usize::from(priority >> 6)];
        let bit = 1u64 << (priority & 63);
        if non_empty { *word |= bit } else { *word &= !bit }
    }
}

impl<T: Copy + Eq> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Threads blocked on an endpoint or notification: served highest priority
/// first, FIFO within a priority.
///
/// A single sorted list rather than per-level queues: wait queues are short
/// and there is one per endpoint, so 8 KiB of levels each would be waste.
/// The O(n) operations are bounded by the number of threads in the system.
pub struct WaitQueue<T> {
    /// In serving order: priority non-increasing, arrival order within one.
    entries: VecDeque<(T, Priority)>,
}

impl<T: Copy + Eq> WaitQueue<T> {
    /// An empty wait queue; allocates nothing until the first push.
    pub const fn new() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }

    /// Inserts `item` behind every entry of equal or higher priority. O(n)
    /// in the queue length (a binary search, then a shift).
    pub fn push(&mut self, item: T, priority: Priority) {
        let position = self.entries.partition_point(|&(_, queued)| queued >= priority);
        self.entries.insert(position, (item, priority));
    }

    /// Takes the first (highest priority, longest waiting) item. O(1).
    pub fn pop(&mut self) -> Option<T> {
        self.entries.pop_front().map(|(item, _)| item)
    }

    /// The item [`pop`](Self::pop) would take, left in place. O(1).
    pub fn peek(&self) -> Option<T> {
        self.entries.front().map(|&(item, _)| item)
    }

    /// Removes the first occurrence of `item` wherever it is; false if
    /// absent. O(n) in the queue length.
    pub fn remove(&mut self, item: T) -> bool {
        self.take(item).is_some()
    }

    /// Changes the priority of a queued item, keeping the order rule: it goes
    /// behind the entries of its new priority, even if that is its old one
    /// (as seL4 does). False if absent. O(n) in the queue length.
    pub fn reprioritise(&mut self, item: T, priority: Priority) -> bool {
        if self.take(item).is_none() {
            return false;
        }
        self.push(item, priority);
        true
    }

    /// Removes and returns every item, in serving order (used to wake all
    /// waiters with an error when an endpoint dies). O(n).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.entries.drain(..).map(|(item, _)| item).collect()
    }

    /// Items queued. O(1).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody waits. O(1).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The items in serving order, left in place.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.entries.iter().map(|&(item, _)| item)
    }

    fn take(&mut self, item: T) -> Option<(T, Priority)> {
        let position = self.entries.iter().position(|&(queued, _)| queued == item)?;
        self.entries.remove(position)
    }
}

impl<T: Copy + Eq> Default for WaitQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_random::Random;
    use std::vec::Vec;

    /// The priorities where the bitmap changes word, and their neighbours.
    const BOUNDARIES: [Priority; 6] = [0, 63, 64, 127, 128, 255];

    fn drain(queue: &mut RunQueue<u32>) -> Vec<(u32, Priority)> {
        core::iter::from_fn(|| queue.pop_highest()).collect()
    }

    #[test]
    fn run_queue_can_be_a_constant() {
        const EMPTY: RunQueue<u32> = RunQueue::new();
        let mut queue = EMPTY;
        assert!(queue.is_empty());
        assert_eq!(queue.highest_priority(), None);
        assert_eq!(queue.pop_highest(), None);
        assert!(RunQueue::<u32>::default().is_empty());
    }

    #[test]
    fn run_queue_pops_highest_priority_first() {
        let mut queue = RunQueue::new();
        for (item, priority) in [(1, 10), (2, 200), (3, 0), (4, 64), (5, 255), (6, 63)] {
            queue.push_back(item, priority);
        }
        assert_eq!(
            drain(&mut queue),
            [(5, 255), (2, 200), (4, 64), (6, 63), (1, 10), (3, 0)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn run_queue_round_robins_within_a_level() {
        let mut queue = RunQueue::new();
        for item in 1..=3 {
            queue.push_back(item, 7);
        }
        queue.push_back(9, 3);
        let mut order = Vec::new();
        for _ in 0..7 {
            let (item, priority) = queue.pop_highest().unwrap();
            order.push(item);
            queue.push_back(item, priority); // end of slice
        }
        // The lower level starves while level 7 has work.
        assert_eq!(order, [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(queue.len(), 4);
    }

    #[test]
    fn push_front_goes_first_in_its_level_only() {
        let mut queue = RunQueue::new();
        queue.push_back(1, 5);
        queue.push_back(2, 5);
        queue.push_back(3, 6);
        queue.push_front(4, 5);
        queue.push_front(5, 4);
        assert_eq!(drain(&mut queue), [(3, 6), (4, 5), (1, 5), (2, 5), (5, 4)]);
    }

    #[test]
    fn run_queue_remove_present_absent_and_wrong_level() {
        let mut queue = RunQueue::new();
        queue.push_back(1, 64);
        queue.push_back(2, 64);
        queue.push_back(3, 128);
        assert!(!queue.remove(1, 63), "wrong level");
        assert!(!queue.remove(1, 128), "wrong level");
        assert!(!queue.remove(7, 64), "absent");
        assert_eq!(queue.len(), 3);
        assert!(queue.remove(3, 128));
        assert!(!queue.remove(3, 128), "already removed");
        assert_eq!(queue.highest_priority(), Some(64));
        assert!(queue.remove(1, 64));
        assert_eq!(queue.len(), 1);
        assert_eq!(drain(&mut queue), [(2, 64)]);
        assert!(!queue.remove(2, 64));
        assert_eq!(queue.highest_priority(), None);
    }

    #[test]
    fn highest_priority_tracks_levels_across_bitmap_words() {
        let mut queue = RunQueue::new();
        for (item, &priority) in BOUNDARIES.iter().enumerate() {
            queue.push_back(item as u32, priority);
            assert_eq!(queue.highest_priority(), Some(priority));
        }
        // Empty from the top: each level's own bit must clear.
        for &priority in BOUNDARIES.iter().rev() {
            assert_eq!(queue.highest_priority(), Some(priority));
            assert_eq!(queue.pop_highest().map(|(_, p)| p), Some(priority));
        }
        assert_eq!(queue.highest_priority(), None);
        // Refill out of order; removal of the top level exposes the next.
        for &priority in &[128, 0, 255, 63, 127, 64] {
            queue.push_back(u32::from(priority), priority);
        }
        assert_eq!(queue.highest_priority(), Some(255));
        assert!(queue.remove(255, 255));
        assert_eq!(queue.highest_priority(), Some(128));
        assert!(queue.remove(128, 128));
        assert!(queue.remove(64, 64));
        assert_eq!(queue.highest_priority(), Some(127));
        assert!(queue.remove(127, 127));
        assert_eq!(queue.highest_priority(), Some(63));
        queue.push_front(200, 255);
        assert_eq!(queue.highest_priority(), Some(255));
        assert_eq!(drain(&mut queue), [(200, 255), (63, 63), (0, 0)]);
    }

    #[test]
    fn level_stays_marked_until_its_last_item_leaves() {
        let mut queue = RunQueue::new();
        queue.push_back(1, 127);
        queue.push_back(2, 127);
        queue.push_back(3, 0);
        assert_eq!(queue.pop_highest(), Some((1, 127)));
        assert_eq!(queue.highest_priority(), Some(127));
        assert!(queue.remove(2, 127));
        assert_eq!(queue.highest_priority(), Some(0));
    }

    #[test]
    fn run_queue_len_counts_every_level() {
        let mut queue = RunQueue::new();
        for item in 0..300u32 {
            queue.push_back(item, (item % 256) as Priority);
        }
        assert_eq!(queue.len(), 300);
        assert!(!queue.is_empty());
        assert!(queue.remove(5, 5));
        assert!(queue.remove(261, 5));
        assert_eq!(queue.len(), 298);
        assert_eq!(drain(&mut queue).len(), 298);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn wait_queue_serves_highest_priority_first() {
        let mut queue = WaitQueue::default();
        for (item, priority) in [(1, 10), (2, 200), (3, 0), (4, 255), (5, 64)] {
            queue.push(item, priority);
        }
        assert_eq!(queue.iter().collect::<Vec<_>>(), [4, 2, 5, 1, 3]);
        let order: Vec<u32> = core::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, [4, 2, 5, 1, 3]);
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn wait_queue_is_fifo_within_a_priority() {
        let mut queue = WaitQueue::new();
        queue.push(1, 5);
        queue.push(2, 9);
        queue.push(3, 5);
        queue.push(4, 9);
        queue.push(5, 5);
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.drain_all(), [2, 4, 1, 3, 5]);
    }

    #[test]
    fn wait_queue_peek_leaves_the_item() {
        let mut queue = WaitQueue::new();
        assert_eq!(queue.peek(), None);
        queue.push(1, 1);
        queue.push(2, 2);
        assert_eq!(queue.peek(), Some(2));
        assert_eq!(queue.peek(), Some(2));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop(), Some(2));
        assert_eq!(queue.peek(), Some(1));
    }

    #[test]
    fn wait_queue_remove() {
        let mut queue = WaitQueue::new();
        for (item, priority) in [(1, 3), (2, 3), (3, 1), (4, 7)] {
            queue.push(item, priority);
        }
        assert!(queue.remove(2), "middle");
        assert!(queue.remove(4), "head");
        assert!(queue.remove(3), "tail");
        assert!(!queue.remove(3), "already gone");
        assert!(!queue.remove(9), "never there");
        assert_eq!(queue.iter().collect::<Vec<_>>(), [1]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn wait_queue_reprioritise_up_and_down() {
        let mut queue = WaitQueue::new();
        for (item, priority) in [(1, 5), (2, 5), (3, 8), (4, 2)] {
            queue.push(item, priority);
        }
        // Up: behind the entries already at 8.
        assert!(queue.reprioritise(4, 8));
        assert_eq!(queue.iter().collect::<Vec<_>>(), [3, 4, 1, 2]);
        // Down: behind the entries already at 5.
        assert!(queue.reprioritise(3, 5));
        assert_eq!(queue.iter().collect::<Vec<_>>(), [4, 1, 2, 3]);
        // Unchanged priority: still goes to the back of its level.
        assert!(queue.reprioritise(1, 5));
        assert_eq!(queue.iter().collect::<Vec<_>>(), [4, 2, 3, 1]);
        assert!(queue.reprioritise(1, 0));
        assert!(queue.reprioritise(2, 255));
        assert_eq!(queue.iter().collect::<Vec<_>>(), [2, 4, 3, 1]);
        assert!(!queue.reprioritise(9, 1));
        assert_eq!(queue.len(), 4);
    }

    #[test]
    fn wait_queue_drain_all_empties_in_serving_order() {
        let mut queue = WaitQueue::new();
        assert!(queue.drain_all().is_empty());
        for (item, priority) in [(1, 0), (2, 255), (3, 0), (4, 128), (5, 255)] {
            queue.push(item, priority);
        }
        assert_eq!(queue.drain_all(), [2, 5, 4, 1, 3]);
        assert!(queue.is_empty());
        assert_eq!(queue.peek(), None);
        queue.push(6, 1);
        assert_eq!(queue.pop(), Some(6));
    }

    /// Often a boundary or a few crowded levels, so levels hold several
    /// items; sometimes anything.
    fn priority(random: &mut Random) -> Priority {
        match random.index(3) {
            0 => BOUNDARIES[random.index(BOUNDARIES.len())],
            1 => 100 + random.index(4) as Priority,
            _ => random.next() as Priority,
        }
    }

    /// The run queue as one list in per-level order: the highest priority
    /// wins, and the earliest entry within it.
    #[derive(Default)]
    struct RunModel(Vec<(u32, Priority)>);

    impl RunModel {
        fn highest(&self) -> Option<Priority> {
            self.0.iter().map(|&(_, priority)| priority).max()
        }

        fn pop(&mut self) -> Option<(u32, Priority)> {
            let highest = self.highest()?;
            let index = self.0.iter().position(|&(_, priority)| priority == highest)?;
            Some(self.0.remove(index))
        }

        fn remove(&mut self, item: u32, priority: Priority) -> bool {
            match self.0.iter().position(|&entry| entry == (item, priority)) {
                Some(index) => {
                    self.0.remove(index);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn run_queue_matches_a_naive_model() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut queue = RunQueue::new();
        let mut model = RunModel::default();
        for step in 0..20_000 {
            // Alternate filling and draining so the queue empties and refills.
            let draining = (step / 500) % 2 == 1;
            match random.index(10) {
                0..=4 if draining => assert_eq!(queue.pop_highest(), model.pop()),
                0..=2 => {
                    let (item, priority) = (random.index(64) as u32, priority(&mut random));
                    queue.push_back(item, priority);
                    model.0.push((item, priority));
                }
                3 | 4 => {
                    let (item, priority) = (random.index(64) as u32, priority(&mut random));
                    queue.push_front(item, priority);
                    model.0.insert(0, (item, priority));
                }
                5..=7 => assert_eq!(queue.pop_highest(), model.pop()),
                8 if !model.0.is_empty() => {
                    let (item, priority) = model.0[random.index(model.0.len())];
                    assert!(model.remove(item, priority));
                    assert!(queue.remove(item, priority));
                }
                _ => {
                    let (item, priority) = (random.index(64) as u32, priority(&mut random));
                    assert_eq!(queue.remove(item, priority), model.remove(item, priority));
                }
            }
            assert_eq!(queue.highest_priority(), model.highest());
            assert_eq!(queue.len(), model.0.len());
            assert_eq!(queue.is_empty(), model.0.is_empty());
        }
        let mut expected = Vec::new();
        while let Some(entry) = model.pop() {
            expected.push(entry);
        }
        assert_eq!(drain(&mut queue), expected);
    }

    /// The wait queue as arrivals in order, each with its priority; a
    /// reprioritised item arrives anew. Serving order is a stable sort.
    #[derive(Default)]
    struct WaitModel(Vec<(u32, Priority)>);

    impl WaitModel {
        fn serving_order(&self) -> Vec<u32> {
            let mut sorted = self.0.clone();
            sorted.sort_by_key(|&(_, priority)| core::cmp::Reverse(priority));
            sorted.into_iter().map(|(item, _)| item).collect()
        }

        fn peek(&self) -> Option<u32> {
            let highest = self.0.iter().map(|&(_, priority)| priority).max()?;
            self.0
                .iter()
                .find(|&&(_, priority)| priority == highest)
                .map(|&(item, _)| item)
        }

        fn take(&mut self, item: u32) -> bool {
            match self.0.iter().position(|&(queued, _)| queued == item) {
                Some(index) => {
                    self.0.remove(index);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn wait_queue_matches_a_naive_model() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        let mut queue = WaitQueue::new();
        let mut model = WaitModel::default();
        for step in 0..20_000 {
            // Items are unique, as a thread waits in one place at a time.
            let item = random.index(96) as u32;
            let priority = priority(&mut random);
            match random.index(10) {
                0..=3 => {
                    if !model.0.iter().any(|&(queued, _)| queued == item) {
                        queue.push(item, priority);
                        model.0.push((item, priority));
                    }
                }
                4 | 5 => {
                    let expected = model.peek();
                    if let Some(first) = expected {
                        model.take(first);
                    }
                    assert_eq!(queue.pop(), expected);
                }
                6 => assert_eq!(queue.remove(item), model.take(item)),
                7 | 8 => {
                    let present = model.take(item);
                    if present {
                        model.0.push((item, priority));
                    }
                    assert_eq!(queue.reprioritise(item, priority), present);
                }
                _ if step % 50 == 0 => {
                    assert_eq!(queue.drain_all(), model.serving_order());
                    model.0.clear();
                }
                _ => {}
            }
            assert_eq!(queue.peek(), model.peek());
            assert_eq!(queue.len(), model.0.len());
            assert_eq!(queue.is_empty(), model.0.is_empty());
            assert_eq!(queue.iter().collect::<Vec<_>>(), model.serving_order());
        }
        assert_eq!(queue.drain_all(), model.serving_order());
        assert!(queue.is_empty());
    }
}
