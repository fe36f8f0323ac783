//! The kernel half of every address space: one PML4 slot per purpose, so a
//! runaway in one region cannot run into another.
//!
//! | start                   | what                                        |
//! | ----------------------- | ------------------------------------------- |
//! | `0xffff_8000_0000_0000` | all physical memory, mapped by the loader   |
//! | `0xffff_a000_0000_0000` | kernel heap, large blocks (grows, to 1 GiB) |
//! | `0xffff_a800_0000_0000` | kernel stacks, each above an unmapped guard |
//! | `0xffff_b000_0000_0000` | device registers (LAPIC, IOAPIC), uncached  |
//! | `0xffff_c000_0000_0000` | the loader's choice: kernel image, boot info, ramdisk |

/// Direct map of physical memory.
pub const PHYSICAL_MAP: u64 = 0xffff_8000_0000_0000;
/// Start of the kernel heap.
pub const HEAP_START: u64 = 0xffff_a000_0000_0000;
/// Size of the kernel heap at boot.
pub const HEAP_INITIAL_SIZE: u64 = 4 << 20;
/// The most the kernel heap may grow to.
pub const HEAP_MAX_SIZE: u64 = 1 << 30;
/// Start of the kernel stack region.
pub const STACKS_START: u64 = 0xffff_a800_0000_0000;
/// Address space per kernel stack: the stack plus its guard page(s).
pub const STACK_SLOT_SIZE: u64 = 128 << 10;
/// Usable size of one kernel stack (the rest of its slot is guard).
pub const STACK_SIZE: u64 = 64 << 10;
/// Start of the device-register region.
pub const MMIO_START: u64 = 0xffff_b000_0000_0000;
/// Where the bootloader may place its own mappings.
pub const LOADER_START: u64 = 0xffff_c000_0000_0000;
/// First address of user space's upper bound (exclusive): the lower half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
