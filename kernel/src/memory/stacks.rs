//! Kernel stacks, each with an unmapped guard page below it so an overflow
//! faults (onto the double-fault IST stack) instead of corrupting memory.

use super::layout::{STACK_SIZE, STACK_SLOT_SIZE, STACKS_START};
use crate::arch::paging;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::VirtAddr;
use x86_64::structures::paging::PageTableFlags;

static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);
const MAX_STACKS: usize = 8;
static STACKS: spin::Mutex<[Range<u64>; MAX_STACKS]> = spin::Mutex::new([const { 0..0 }; MAX_STACKS]);

/// Maps a new kernel stack and returns its top (16-byte aligned).
///
/// # Panics
/// If memory runs out or more than a handful of stacks are asked for: both
/// happen only at boot.
#[expect(
    clippy::expect_used,
    reason = "kernel stacks are made only at boot, where running out of memory is fatal anyway"
)]
pub fn allocate() -> VirtAddr {
    let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
    let top = STACKS_START + (slot + 1) * STACK_SLOT_SIZE;
    let bottom = top - STACK_SIZE;
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    paging::map_kernel_region(VirtAddr::new(bottom), STACK_SIZE, flags).expect("no memory for a kernel stack");
    match STACKS.lock().get_mut(slot as usize) {
        Some(entry) => *entry = bottom..top,
        None => panic!("more than {MAX_STACKS} kernel stacks"),
    }
    VirtAddr::new(top)
}

/// Whether `range` lies inside one kernel stack: the backtrace walker reads
/// frame records only where this holds, so a corrupt frame pointer cannot
/// make the report fault in turn.
pub fn contains(range: Range<u64>) -> bool {
    // The lock may be held by the code that failed: then say no.
    STACKS.try_lock().is_some_and(|stacks| {
        stacks
            .iter()
            .any(|stack| stack.start <= range.start && range.end <= stack.end && range.start < range.end)
    })
}
