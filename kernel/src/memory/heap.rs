//! The kernel heap: small blocks from slabs, larger ones from a region of
//! the kernel half that starts with a few megabytes and grows, a chunk at
//! a time, when an allocation does not fit.
//!
//! Most kernel allocations are small records (a frame's mappings, tree
//! nodes), made and freed by the ten thousand; `kernel_core::slab` serves
//! them in constant time, from whole frames reached through the map of all
//! physical memory, which go back to the frame allocator once empty. The
//! region's first-fit list allocator, whose release walks its free list,
//! only sees the few large blocks (arrays of objects and slots).
//!
//! Both take frames from the same allocator as everything else. What
//! user processes make is charged to their pools at more than its heap
//! cost, and the pools together are promised less than all of memory, so
//! the heap finds frames when it needs them.

use super::layout::{HEAP_INITIAL_SIZE, HEAP_MAX_SIZE, HEAP_START, PHYSICAL_MAP};
use super::{frames, physical_to_virtual};
use crate::arch::paging;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use kernel_core::slab::{self, Slabs};
use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// How much the heap grows at least, each time it must.
const GROWTH: u64 = 256 << 10;

struct GrowingHeap {
    small: Mutex<Slabs>,
    large: Mutex<Heap>,
}

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap {
    small: Mutex::new(Slabs::new()),
    large: Mutex::new(Heap::empty()),
};

/// Slabs are whole frames, used through the map of all physical memory.
struct SlabFrames;

// SAFETY: each page is a frame the frame allocator just handed out (so
// nothing else uses it), seen through the direct map, where it is
// page-aligned; it goes back to the allocator when freed.
unsafe impl slab::Pages for SlabFrames {
    fn allocate(&mut self) -> Option<NonNull<u8>> {
        let frame = frames::allocate_zeroed()?;
        NonNull::new(physical_to_virtual(frame.start_address().as_u64()).as_mut_ptr())
    }

    unsafe fn free(&mut self, page: NonNull<u8>) {
        let physical = page.as_ptr() as u64 - PHYSICAL_MAP;
        frames::free(PhysFrame::containing_address(PhysAddr::new(physical)));
    }
}

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
    unsafe { HEAP.large.lock().init(HEAP_START as *mut u8, HEAP_INITIAL_SIZE as usize) };
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

// SAFETY: a layout always goes to the same side, chosen by
// `Slabs::serves`: small blocks to the slabs, others to
// `linked_list_allocator::Heap`, each under its lock; heap growth only adds
// freshly mapped memory at the top.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Slabs::serves(layout) {
            return self
                .small
                .lock()
                .allocate(layout, &mut SlabFrames)
                .map_or(core::ptr::null_mut(), NonNull::as_ptr);
        }
        let mut heap = self.large.lock();
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
        let Some(block) = NonNull::new(pointer) else { return };
        if Slabs::serves(layout) {
            // SAFETY: the caller returns a block `alloc` took from the slabs
            // for this layout, whose pages came from `SlabFrames`.
            unsafe { self.small.lock().free(block, layout, &mut SlabFrames) };
        } else {
            // SAFETY: the caller returns a block this allocator handed out
            // with this layout.
            unsafe { self.large.lock().deallocate(block, layout) };
        }
    }
}
