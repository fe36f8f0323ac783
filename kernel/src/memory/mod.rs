//! Kernel memory: where things live in the kernel half, physical frames,
//! the heap, kernel stacks and device mappings.

pub mod frames;
pub mod heap;
pub mod layout;
pub mod stacks;

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

/// The kernel-half address at which physical address `physical` is mapped.
pub fn physical_to_virtual(physical: u64) -> VirtAddr {
    VirtAddr::new(layout::PHYSICAL_MAP + physical)
}

/// The bytes of one physical frame, through the direct map.
///
/// # Safety
/// The frame must be RAM that nobody else reads or writes while the slice
/// lives (a frame the caller just allocated, or one it owns).
pub unsafe fn frame_bytes(frame: PhysFrame) -> &'static mut [u8; 4096] {
    let address = physical_to_virtual(frame.start_address().as_u64());
    // SAFETY: the direct map covers all RAM and the caller guarantees
    // exclusive access; the address is frame-aligned.
    unsafe { &mut *address.as_mut_ptr() }
}
