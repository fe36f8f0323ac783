//! The program's heap: a fixed area in the program's own data, sized by
//! the program ([`entry!`](crate::entry), `heap_kib`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

/// The storage of a heap of `BYTES` bytes; [`entry!`](crate::entry)
/// declares one in the program, and only [`crate::run`] touches it.
#[doc(hidden)]
#[repr(align(4096))]
pub struct HeapArea<const BYTES: usize>(UnsafeCell<[u8; BYTES]>);

// SAFETY: the area is handed to the allocator once (by `run`, before any
// thread but the first exists) and reached only through it after that.
unsafe impl<const BYTES: usize> Sync for HeapArea<BYTES> {}

impl<const BYTES: usize> HeapArea<BYTES> {
    /// An empty area (it lives in the program's zeroed data).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; BYTES]))
    }

    /// Its start and length.
    pub fn region(&'static self) -> (*mut u8, usize) {
        (self.0.get().cast::<u8>(), BYTES)
    }
}

/// Where the heap lies: its start address and length in bytes (0, 0 until
/// the program runs). For fault injection, which flips bits in it.
pub fn region() -> (usize, usize) {
    (AREA.0.load(Ordering::Relaxed), AREA.1.load(Ordering::Relaxed))
}

static AREA: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));

/// Hands `(start, length)` to the allocator.
///
/// # Safety
/// Called once, before any allocation, with an area nothing else uses.
pub(crate) unsafe fn init((start, length): (*mut u8, usize)) {
    AREA.0.store(start as usize, Ordering::Relaxed);
    AREA.1.store(length, Ordering::Relaxed);
    // SAFETY: the caller hands over an unused area, once.
    unsafe { HEAP.lock().init(start, length) };
}
