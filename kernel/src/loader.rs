//! Loads a program from the boot archive into a new address space and
//! makes a thread for it.

use crate::memory::layout::USER_END;
use crate::object::address_space::{AddressSpace, MapError};
use crate::object::thread::Thread;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use elf::{Elf, ElfError, RelocationError};
use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags};

/// Where a position-independent program's lowest page goes.
const PIE_BASE: u64 = 0x0040_0000;
/// Top of the initial user stack (the page above stays unmapped).
const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of the initial user stack; the page below it stays unmapped.
const STACK_SIZE: u64 = 64 << 10;

/// Why a program could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The ELF file is malformed or not for this machine.
    Elf(ElfError),
    /// Memory ran out, or the program asks for addresses it may not have.
    Map(MapError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Elf(error) => write!(formatter, "{error}"),
            Self::Map(error) => write!(formatter, "mapping failed: {error:?}"),
        }
    }
}

/// Loads the ELF `image` and returns a thread ready to run it, with
/// `argument` in `rdi`.
///
/// # Errors
/// [`LoadError`] says why; everything built so far is freed.
pub fn load(name: &str, image: &[u8], argument: u64) -> Result<Box<Thread>, LoadError> {
    let elf = Elf::parse(image).map_err(LoadError::Elf)?;
    // Addresses are moved by `bias` with wrapping arithmetic, then checked
    // to lie in the user half before anything is mapped.
    let bias = if elf.is_position_independent() { PIE_BASE.wrapping_sub(elf.address_range().0) } else { 0 };
    let user_range = |address: u64, size: u64| -> Result<VirtAddr, LoadError> {
        let start = address.wrapping_add(bias);
        match start.checked_add(size) {
            Some(end) if end <= USER_END => Ok(VirtAddr::new(start)),
            _ => Err(LoadError::Map(MapError::NotUserAddress)),
        }
    };
    let mut space = AddressSpace::new().map_err(LoadError::Map)?;
    for segment in elf.segments() {
        let mut flags = PageTableFlags::empty();
        if segment.flags.writable {
            flags |= PageTableFlags::WRITABLE;
        }
        if !segment.flags.executable {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        if segment.mem_size == 0 {
            continue;
        }
        let start = user_range(segment.vaddr, segment.mem_size)?;
        let last = start + (segment.mem_size - 1);
        for page in Page::range_inclusive(Page::containing_address(start), Page::containing_address(last)) {
            // Two segments may share a page at their edges: it gets both
            // segments' access (and execute unless both forbid it).
            if space.user_physical(page.start_address(), false).is_some() {
                space.widen_access(page, flags);
            } else {
                space.map_new_page(page, flags).map_err(LoadError::Map)?;
            }
        }
        space.write_user(start, segment.data).map_err(LoadError::Map)?;
    }
    elf.relocations(bias, |target, value| {
        let target = user_range(target, 8)?;
        space.write_user(target, &value.to_le_bytes()).map_err(LoadError::Map)
    })
    .map_err(|error| match error {
        RelocationError::Elf(error) => LoadError::Elf(error),
        RelocationError::Apply(error) => error,
    })?;
    let stack_bottom = STACK_TOP - STACK_SIZE;
    let stack_flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for page in Page::range(
        Page::containing_address(VirtAddr::new(stack_bottom)),
        Page::containing_address(VirtAddr::new(STACK_TOP)),
    ) {
        space.map_new_page(page, stack_flags).map_err(LoadError::Map)?;
    }
    let entry = user_range(elf.entry(), 1)?;
    Ok(Box::new(Thread::new(
        String::from(name),
        Arc::new(space),
        entry,
        VirtAddr::new(STACK_TOP),
        argument,
    )))
}
