//! The program's heap: a fixed area in the program's own data, sized by
//! the program ([`entry!`](crate::entry), `heap_kib`).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: Heap = Heap(spin::Mutex::new(linked_list_allocator::Heap::empty()));

/// How often a thread tries a contended heap lock before it sleeps.
const SPINS: u32 = 100;

/// `linked_list_allocator`'s heap behind a lock that, when it stays
/// contended, sleeps a tick instead of spinning on: a thread must not spin
/// on a lock that a lower-priority thread of its process holds, which
/// would never run to release it.
struct Heap(spin::Mutex<linked_list_allocator::Heap>);

impl Heap {
    fn lock(&self) -> spin::MutexGuard<'_, linked_list_allocator::Heap> {
        loop {
            for _ in 0..SPINS {
                if let Some(guard) = self.0.try_lock() {
                    return guard;
                }
                core::hint::spin_loop();
            }
            crate::syscall::sleep_ticks(1);
        }
    }
}

// SAFETY: allocation and deallocation go through the locked
// `linked_list_allocator::Heap`, which hands out disjoint blocks of the
// area given to it and takes back only what it handed out.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if let Some(pointer) = NonNull::new(pointer) {
            // SAFETY: the caller's promise: `pointer` came from `alloc`
            // with this layout.
            unsafe { self.lock().deallocate(pointer, layout) };
        }
    }
}

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
