//! The kernel's one physical frame allocator, built from the boot memory map.

use super::physical_to_virtual;
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use kernel_core::frame_allocator::{self, FrameAllocator};
use kernel_core::quarantine::Quarantine;
use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::structures::paging::{self, PhysFrame, Size4KiB};

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// Frames a device may still write: pages whose physical address a driver
/// learnt, freed less than [`QUARANTINE_TICKS`] ago. Without an IOMMU a
/// driver that dies with a request in flight leaves its device writing to
/// pages that are no longer its own; were they reused at once, the device
/// would corrupt whoever (the kernel heap, another process) got them next.
/// Here they wait, filled with [`POISON`], and are checked on their way
/// out, so a late write is also reported.
static QUARANTINE: Mutex<Quarantine<QUARANTINE_FRAMES>> = Mutex::new(Quarantine::new());

/// How long a freed DMA frame waits: one second, far longer than any
/// request of an emulated or real disk takes once its driver is gone.
const QUARANTINE_TICKS: u64 = 100;

/// What a quarantined frame is filled with.
const POISON: u8 = 0xa5;

/// Frames in quarantine at once (1 MiB); when it is full, the oldest
/// leaves early.
const QUARANTINE_FRAMES: usize = 256;

/// The RAM regions of the boot memory map (the first few dozen), so device
/// memory can be told from RAM.
static RAM: Mutex<([core::ops::Range<u64>; 64], usize)> = Mutex::new(([const { 0..0 }; 64], 0));

/// Builds the allocator from the usable regions of the memory map. Its
/// bitmap is carved out of the first usable region large enough.
///
/// # Panics
/// If no usable region can hold the bitmap: the machine is unusable.
#[expect(
    clippy::expect_used,
    reason = "a machine without memory for the bitmap cannot run the kernel"
)]
pub fn init(regions: &MemoryRegions) {
    let usable = || {
        regions
            .iter()
            .filter(|region| region.kind == MemoryRegionKind::Usable)
            .map(|region| region.start..region.end)
    };
    // RAM is what is free now and what the loader used (the kernel, its
    // page tables, the boot archive): a driver may map none of it.
    let mut ram = RAM.lock();
    let all_ram = regions
        .iter()
        .filter(|region| matches!(region.kind, MemoryRegionKind::Usable | MemoryRegionKind::Bootloader))
        .map(|region| region.start..region.end);
    for region in all_ram {
        // The loader splits RAM into many regions; join touching ones so
        // the table holds them all.
        let count = ram.1;
        if let Some(last) = count.checked_sub(1).and_then(|last| ram.0.get_mut(last))
            && last.end == region.start
        {
            last.end = region.end;
            continue;
        }
        match ram.0.get_mut(count) {
            Some(slot) => {
                *slot = region;
                ram.1 += 1;
            }
            None => log::warn!("memory: more RAM regions than the kernel tracks; {region:x?} ignored"),
        }
    }
    drop(ram);
    let end = usable().map(|region| region.end).max().unwrap_or(0);
    let bytes = frame_allocator::bitmap_bytes(end);
    let start =
        frame_allocator::bitmap_placement(usable(), bytes).expect("no usable memory region can hold the frame bitmap");
    let words = (bytes / 8) as usize;
    // SAFETY: `bitmap_placement` chose a range inside a usable region that
    // the bootloader left free; the direct map covers it; the allocator
    // excludes it below, so this slice is the only reference to it.
    let bitmap = unsafe { core::slice::from_raw_parts_mut(physical_to_virtual(start).as_mut_ptr::<u64>(), words) };
    let allocator = FrameAllocator::new(bitmap, usable(), start..start + bytes);
    log::info!(
        "memory: {} MiB usable, frame bitmap {} KiB",
        allocator.total_frames() * 4 / 1024,
        bytes / 1024
    );
    *FRAMES.lock() = Some(allocator);
}

/// Allocates one zeroed frame; `None` when memory is exhausted.
pub fn allocate_zeroed() -> Option<PhysFrame> {
    release_quarantined();
    let address = FRAMES.lock().as_mut()?.allocate()?;
    let frame = PhysFrame::containing_address(PhysAddr::new(address));
    // SAFETY: the allocator just handed this frame out, so nothing else
    // refers to it.
    unsafe { super::frame_bytes(frame) }.fill(0);
    Some(frame)
}

/// Allocates `count` physically consecutive zeroed frames (for device DMA);
/// returns the first.
pub fn allocate_contiguous_zeroed(count: u64) -> Option<PhysFrame> {
    release_quarantined();
    let address = FRAMES.lock().as_mut()?.allocate_contiguous(count)?;
    let first = PhysFrame::containing_address(PhysAddr::new(address));
    for index in 0..count {
        // SAFETY: the allocator just handed these frames out, so nothing
        // else refers to them.
        unsafe { super::frame_bytes(first + index) }.fill(0);
    }
    Some(first)
}

/// Returns a frame to the allocator. The caller must no longer use it.
///
/// # Panics
/// On a double free or a frame the allocator never owned: kernel bookkeeping
/// is broken and continuing would hand one frame out twice.
pub fn free(frame: PhysFrame) {
    // Debug builds poison what they free, so a use after free (a page
    // table still loaded, a mapping left behind) fails at once, not later.
    if cfg!(debug_assertions) {
        // SAFETY: the caller gives the frame up; nothing may use it now.
        unsafe { super::frame_bytes(frame) }.fill(0xa5);
    }
    if let Some(allocator) = FRAMES.lock().as_mut()
        && let Err(error) = allocator.free(frame.start_address().as_u64())
    {
        panic!("freeing frame {:#x}: {error:?}", frame.start_address().as_u64());
    }
}

/// Frees a frame a device may still write (its physical address was
/// handed out): it is poisoned and held back for [`QUARANTINE_TICKS`]
/// before the allocator gets it.
pub fn free_after_quarantine(frame: PhysFrame) {
    // SAFETY: the caller gives the frame up; nothing but a device may
    // touch it now.
    unsafe { super::frame_bytes(frame) }.fill(POISON);
    let evicted = QUARANTINE.lock().push(frame.start_address().as_u64(), now());
    if let Some(evicted) = evicted {
        leave_quarantine(evicted);
    }
}

/// Frees the quarantined frames whose time is up.
fn release_quarantined() {
    let before = now().saturating_sub(QUARANTINE_TICKS);
    // One at a time: freeing takes the allocator's lock, never inside
    // the quarantine's.
    while let Some(frame) = QUARANTINE.lock().pop_freed_by(before) {
        leave_quarantine(frame);
    }
}

/// Checks that nothing wrote to a quarantined frame, then frees it.
fn leave_quarantine(address: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(address));
    // SAFETY: the frame is quarantined: no object and no mapping refers
    // to it, only (perhaps) a device.
    let bytes = unsafe { super::frame_bytes(frame) };
    let written = bytes.iter().filter(|&&byte| byte != POISON).count();
    if written > 0 {
        log::warn!(
            "memory: frame {address:#x} was written ({written} bytes) after its driver freed it: \
             a device still held it; quarantine kept it from reuse"
        );
    }
    free(frame);
}

fn now() -> u64 {
    crate::arch::apic::TICKS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Whether `address` is in RAM (usable, or used by the loader and kernel).
pub fn is_ram(address: u64) -> bool {
    let ram = RAM.lock();
    ram.0.iter().take(ram.1).any(|region| region.contains(&address))
}

/// Frames free now (quarantined ones are not, yet). A pure reading; the
/// difference across an operation is not what it allocated, since an
/// allocation may first release frames whose quarantine is over.
pub fn free_frames() -> u64 {
    FRAMES.lock().as_ref().map_or(0, FrameAllocator::free_frames)
}

/// Hands zeroed frames to the `x86_64` crate's page-table code and counts
/// them, so a mapping can be charged for exactly the tables it added.
/// (The free count before and after would not do: an allocation may first
/// release frames whose quarantine is over.)
#[derive(Default)]
pub struct KernelFrames {
    /// Frames handed out so far.
    pub allocated: u64,
}

// SAFETY: every frame returned comes from the allocator, unused and zeroed.
unsafe impl paging::FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = allocate_zeroed()?;
        self.allocated += 1;
        Some(frame)
    }
}
