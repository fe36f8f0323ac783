//! The scheduler: fixed priorities, round robin with time slices within a
//! priority, and the choice of which thread runs when the kernel exits.
//!
//! A thread is *runnable* when it is the current thread or in the run
//! queue; everything else (blocked, stopped) is the IPC layer's business.

use crate::queues::{Priority, RunQueue};
use alloc::vec::Vec;

/// Identifies a thread; the kernel assigns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u32);

/// Timer ticks in one time slice.
pub const TIME_SLICE_TICKS: u32 = 5;

/// Which thread runs, and who is next.
pub struct Scheduler {
    ready: RunQueue<ThreadId>,
    current: Option<(ThreadId, Priority)>,
    slice_left: u32,
    /// Threads a higher priority took the CPU from, with the rest of their
    /// slice, which they get back when they run again. Without this, a
    /// thread preempted more often than its slice is long would never reach
    /// the end of one, and its equal-priority peers would starve.
    preempted: Vec<(ThreadId, u32)>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// No threads at all.
    pub const fn new() -> Self {
        Self {
            ready: RunQueue::new(),
            current: None,
            slice_left: TIME_SLICE_TICKS,
            preempted: Vec::new(),
        }
    }

    /// The thread on the CPU, if any.
    pub fn current(&self) -> Option<ThreadId> {
        self.current.map(|(thread, _)| thread)
    }

    /// Makes `thread` runnable at the back of its priority.
    pub fn make_ready(&mut self, thread: ThreadId, priority: Priority) {
        self.ready.push_back(thread, priority);
    }

    /// Takes `thread` off the CPU or out of the run queue (it blocked,
    /// stopped or died). `priority` is the one it was queued with.
    pub fn remove(&mut self, thread: ThreadId, priority: Priority) {
        // It gets a whole slice when it is ready again.
        self.preempted.retain(|&(preempted, _)| preempted != thread);
        if self.current() == Some(thread) {
            self.current = None;
        } else {
            self.ready.remove(thread, priority);
        }
    }

    /// Changes a runnable thread's priority.
    pub fn reprioritise(&mut self, thread: ThreadId, old: Priority, new: Priority) {
        match self.current {
            Some((current, _)) if current == thread => self.current = Some((thread, new)),
            _ => {
                if self.ready.remove(thread, old) {
                    self.ready.push_back(thread, new);
                }
            }
        }
    }

    /// The current thread gives up the rest of its slice to threads of its
    /// priority (and any higher one).
    pub fn yield_current(&mut self) {
        if let Some((thread, priority)) = self.current.take() {
            self.ready.push_back(thread, priority);
            self.slice_left = TIME_SLICE_TICKS;
        }
    }

    /// Counts a timer tick against the current thread; at the end of its
    /// slice it goes to the back of its priority.
    pub fn tick(&mut self) {
        if self.current.is_none() {
            return;
        }
        self.slice_left = self.slice_left.saturating_sub(1);
        if self.slice_left == 0 {
            self.yield_current();
        }
    }

    /// Decides who runs now: the current thread unless a thread of higher
    /// priority is ready (the current one then waits at the front of its
    /// priority, keeping its slice), or the highest ready thread if there
    /// is no current one. `None` means idle.
    pub fn choose(&mut self) -> Option<ThreadId> {
        if let Some((thread, priority)) = self.current {
            match self.ready.highest_priority() {
                Some(highest) if highest > priority => {
                    self.ready.push_front(thread, priority);
                    self.preempted.push((thread, self.slice_left));
                }
                _ => return Some(thread),
            }
        }
        let (thread, priority) = self.ready.pop_highest()?;
        self.current = Some((thread, priority));
        self.slice_left = match self.preempted.iter().rposition(|&(preempted, _)| preempted == thread) {
            Some(index) => self.preempted.swap_remove(index).1,
            None => TIME_SLICE_TICKS,
        };
        Some(thread)
    }

    /// Number of runnable threads, the current one included.
    pub fn runnable(&self) -> usize {
        self.ready.len() + usize::from(self.current.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ThreadId = ThreadId(1);
    const B: ThreadId = ThreadId(2);
    const C: ThreadId = ThreadId(3);

    #[test]
    fn idle_when_nothing_is_ready() {
        let mut scheduler = Scheduler::new();
        assert_eq!(scheduler.choose(), None);
        assert_eq!(scheduler.runnable(), 0);
    }

    #[test]
    fn highest_priority_runs_first() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 10);
        scheduler.make_ready(B, 200);
        assert_eq!(scheduler.choose(), Some(B));
        assert_eq!(scheduler.choose(), Some(B), "the current thread keeps the CPU");
    }

    #[test]
    fn a_higher_priority_thread_preempts_and_the_preempted_one_resumes_first() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 10);
        scheduler.make_ready(C, 10);
        assert_eq!(scheduler.choose(), Some(A));
        scheduler.make_ready(B, 20);
        assert_eq!(scheduler.choose(), Some(B));
        scheduler.remove(B, 20);
        assert_eq!(scheduler.choose(), Some(A), "A goes back in front of C");
    }

    #[test]
    fn time_slices_rotate_equal_priorities() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 5);
        scheduler.make_ready(B, 5);
        assert_eq!(scheduler.choose(), Some(A));
        for _ in 0..TIME_SLICE_TICKS - 1 {
            scheduler.tick();
            assert_eq!(scheduler.choose(), Some(A));
        }
        scheduler.tick();
        assert_eq!(scheduler.choose(), Some(B));
        for _ in 0..TIME_SLICE_TICKS {
            scheduler.tick();
        }
        assert_eq!(scheduler.choose(), Some(A));
    }

    #[test]
    fn a_thread_preempted_every_tick_still_yields_when_its_slice_is_over() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 5);
        scheduler.make_ready(B, 5);
        assert_eq!(scheduler.choose(), Some(A));
        for _ in 0..TIME_SLICE_TICKS - 1 {
            // A higher-priority thread wakes, runs briefly and blocks.
            scheduler.make_ready(C, 9);
            assert_eq!(scheduler.choose(), Some(C));
            scheduler.remove(C, 9);
            assert_eq!(scheduler.choose(), Some(A), "A resumes with what was left of its slice");
            scheduler.tick();
        }
        scheduler.tick();
        assert_eq!(scheduler.choose(), Some(B), "A's slice ran out despite the preemptions");
    }

    #[test]
    fn yield_passes_to_an_equal_priority_only() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 5);
        scheduler.make_ready(B, 1);
        assert_eq!(scheduler.choose(), Some(A));
        scheduler.yield_current();
        assert_eq!(scheduler.choose(), Some(A), "nothing else at priority 5");
        scheduler.make_ready(C, 5);
        scheduler.yield_current();
        assert_eq!(scheduler.choose(), Some(C));
    }

    #[test]
    fn removed_threads_never_run() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 5);
        scheduler.make_ready(B, 5);
        scheduler.remove(B, 5);
        assert_eq!(scheduler.choose(), Some(A));
        scheduler.remove(A, 5);
        assert_eq!(scheduler.current(), None);
        assert_eq!(scheduler.choose(), None);
    }

    #[test]
    fn reprioritise_moves_queued_and_current_threads() {
        let mut scheduler = Scheduler::new();
        scheduler.make_ready(A, 5);
        scheduler.make_ready(B, 3);
        assert_eq!(scheduler.choose(), Some(A));
        scheduler.reprioritise(B, 3, 9);
        assert_eq!(scheduler.choose(), Some(B));
        scheduler.reprioritise(B, 9, 1);
        assert_eq!(
            scheduler.choose(),
            Some(A),
            "B dropped below A, which was waiting in front"
        );
    }
}
