//! The kernel heap: a fixed region of the kernel half, backed at boot.

use super::layout::{HEAP_SIZE, HEAP_START};
use crate::arch::paging;
use linked_list_allocator::LockedHeap;
use x86_64::VirtAddr;
use x86_64::structures::paging::PageTableFlags;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Backs the heap region with frames and hands it to the allocator.
///
/// # Panics
/// If memory runs out this early.
pub fn init() {
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    paging::map_kernel_region(VirtAddr::new(HEAP_START), HEAP_SIZE, flags).expect("no memory for the kernel heap");
    // SAFETY: the region was just mapped, is used for nothing else, and
    // `init` runs once.
    unsafe { HEAP.lock().init(HEAP_START as *mut u8, HEAP_SIZE as usize) };
}
