//! Page tables: the kernel half shared by every address space, and the
//! user half of each.
//!
//! All page-table memory is reached through the direct map of physical
//! memory, so the `x86_64` crate's `OffsetPageTable` walks any table.

use crate::memory::frames::{self, KernelFrames};
use crate::memory::layout::{MMIO_START, PHYSICAL_MAP};
use crate::memory::physical_to_virtual;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// The page-table root the kernel booted with; its upper half is copied
/// into every address space.
static KERNEL_ROOT: Once<PhysFrame> = Once::new();
static NEXT_MMIO: AtomicU64 = AtomicU64::new(MMIO_START);

/// Records the boot page table as the kernel's.
pub fn init() {
    KERNEL_ROOT.call_once(|| Cr3::read().0);
}

/// The kernel's own root table frame.
#[expect(
    clippy::expect_used,
    reason = "the root is recorded by paging::init before any caller runs"
)]
pub fn kernel_root() -> PhysFrame {
    *KERNEL_ROOT.get().expect("paging::init runs first")
}

/// A walker over the table rooted at `root`.
///
/// # Safety
/// `root` must be a live PML4 and the caller the only one changing it for
/// the walker's lifetime.
pub unsafe fn table(root: PhysFrame) -> OffsetPageTable<'static> {
    let pml4: *mut PageTable = physical_to_virtual(root.start_address().as_u64()).as_mut_ptr();
    // SAFETY: the direct map covers all physical memory at PHYSICAL_MAP and
    // the caller guarantees the root is a live PML4 with no other writer.
    unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(PHYSICAL_MAP)) }
}

/// Backs `[start, start + size)` in the kernel half with fresh zeroed frames.
///
/// # Errors
/// When memory runs out or part of the range is already mapped.
pub fn map_kernel_region(start: VirtAddr, size: u64, flags: PageTableFlags) -> Result<(), MapToError<Size4KiB>> {
    // SAFETY: the kernel root is live; the kernel runs with interrupts off on
    // one CPU, so nobody else edits it meanwhile.
    let mut kernel = unsafe { table(kernel_root()) };
    let pages = Page::range(Page::containing_address(start), Page::containing_address(start + size));
    for page in pages {
        let frame = frames::allocate_zeroed().ok_or(MapToError::FrameAllocationFailed)?;
        // SAFETY: the frame is fresh and the page is in a kernel region that
        // nothing else maps.
        unsafe { kernel.map_to(page, frame, flags, &mut KernelFrames::default()) }?.flush();
    }
    Ok(())
}

/// Maps device registers at `physical` (uncached) and returns their address.
///
/// # Panics
/// If memory for page tables runs out at boot.
#[expect(
    clippy::expect_used,
    reason = "device registers are mapped only at boot, where running out of memory is fatal anyway"
)]
pub fn map_device(physical: PhysAddr, size: u64) -> VirtAddr {
    let offset = physical.as_u64() % 4096;
    let pages = (offset + size).div_ceil(4096);
    let start = NEXT_MMIO.fetch_add(pages * 4096, Ordering::Relaxed);
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    // SAFETY: as in `map_kernel_region`.
    let mut kernel = unsafe { table(kernel_root()) };
    for index in 0..pages {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(start + index * 4096));
        let frame = PhysFrame::containing_address(physical + index * 4096);
        // SAFETY: device frames are not RAM the allocator hands out, and the
        // page is fresh in the MMIO region.
        unsafe { kernel.map_to(page, frame, flags, &mut KernelFrames::default()) }
            .expect("mapping device registers")
            .flush();
    }
    VirtAddr::new(start + offset)
}

/// Switches to the kernel's own page tables if `root` is the one loaded,
/// so that `root` can be freed.
pub fn leave_if_loaded(root: PhysFrame) {
    let (loaded, flags) = Cr3::read();
    if loaded == root {
        // SAFETY: the kernel root maps the whole kernel half, which is all
        // the kernel uses; user memory is not touched until the next thread
        // is loaded with its own root.
        unsafe { Cr3::write(kernel_root(), flags) };
    }
}

/// Looks up the frame and flags behind a virtual address in `root`.
pub fn translate(root: PhysFrame, address: VirtAddr) -> Option<(PhysAddr, PageTableFlags)> {
    // SAFETY: a read-only walk of a live table; nothing edits it meanwhile.
    let walker = unsafe { table(root) };
    match walker.translate(address) {
        TranslateResult::Mapped { frame, offset, flags } => Some((frame.start_address() + offset, flags)),
        _ => None,
    }
}
