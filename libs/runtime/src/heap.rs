//! The program's heap: a fixed region in the program's own data until the
//! kernel offers memory mapping to user space.

use core::ptr::addr_of_mut;
use linked_list_allocator::LockedHeap;

const HEAP_SIZE: usize = 64 * 1024;

#[repr(align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands the heap area to the allocator; called once before `main`.
pub(crate) fn init() {
    // SAFETY: called once, before any allocation, from the one thread that
    // runs `run`; nothing else refers to AREA, and only its address is taken.
    unsafe { HEAP.lock().init(addr_of_mut!(AREA.0).cast::<u8>(), HEAP_SIZE) };
}
