//! The kernel heap: a region of the kernel half that starts with a few
//! megabytes and grows, a chunk at a time, when an allocation does not fit.
//!
//! Growth takes frames from the same allocator as everything else. What
//! user processes make is charged to their pools at more than its heap
//! cost, and the pools together are promised less than all of memory, so
//! the heap finds frames when it needs them.

use super::layout::{HEAP_INITIAL_SIZE, HEAP_MAX_SIZE, HEAP_START};
use crate::arch::paging;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::structures::paging::PageTableFlags;

/// How much the heap grows at least, each time it must.
const GROWTH: u64 = 256 << 10;

struct GrowingHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap(Mutex::new(Heap::empty()));

fn heap_flags() -> PageTableFlags {
    PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE
}

/// Backs the first part of the heap region and hands it to the allocator.
///
/// # Panics
/// If memory runs out this early.
#[expect(
    clippy::expect_used,
    reason = "a machine without memory for the first heap cannot run the kernel"
)]
pub fn init() {
    paging::map_kernel_region(VirtAddr::new(HEAP_START), HEAP_INITIAL_SIZE, heap_flags())
        .expect("no memory for the kernel heap");
    // SAFETY: the region was just mapped, is used for nothing else, and
    // `init` runs once.
    unsafe { HEAP.0.lock().init(HEAP_START as *mut u8, HEAP_INITIAL_SIZE as usize) };
}

impl GrowingHeap {
    /// Maps at least `needed` more bytes at the top of the heap.
    fn grow(heap: &mut Heap, needed: u64) -> bool {
        let top = heap.top() as u64;
        let size = needed.div_ceil(GROWTH) * GROWTH + GROWTH;
        if top + size > HEAP_START + HEAP_MAX_SIZE {
            return false;
        }
        if paging::map_kernel_region(VirtAddr::new(top), size, heap_flags()).is_err() {
            return false;
        }
        // SAFETY: the pages just above the heap's top were just mapped and
        // belong to the heap region, which nothing else uses.
        unsafe { heap.extend(size as usize) };
        true
    }
}

// SAFETY: allocation and release go to `linked_list_allocator::Heap` under
// a lock; growth only adds freshly mapped memory at the top.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.0.lock();
        if let Ok(block) = heap.allocate_first_fit(layout) {
            return block.as_ptr();
        }
        let needed = (layout.size() + layout.align()) as u64;
        if Self::grow(&mut heap, needed)
            && let Ok(block) = heap.allocate_first_fit(layout)
        {
            return block.as_ptr();
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(pointer) {
            // SAFETY: the caller returns a block this allocator handed out
            // with this layout.
            unsafe { self.0.lock().deallocate(block, layout) };
        }
    }
}
