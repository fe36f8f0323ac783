//! Starts init: loads its ELF image from the boot archive into a new
//! address space, gives it a stack, an IPC buffer, a CSpace holding every
//! initial capability (see `abi::init`), and a thread.

use crate::arch::paging;
use crate::memory::frames;
use crate::memory::layout::USER_END;
use crate::object::address_space::{AddressSpace, MapError};
use crate::object::frame::{Frame, MappedIn};
use crate::object::memory::Pools;
use crate::object::thread::{Thread, reference};
use crate::object::{ObjectRef, Objects, original};
use abi::init::{self, slot};
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use elf::{Elf, ElfError, RelocationError};
use kernel_core::capability_table::SlotRef;
use kernel_core::scheduler::ThreadId;
use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};

/// Where a position-independent program's lowest page goes.
const PIE_BASE: u64 = 0x0040_0000;
/// Top of the initial user stack (the page above stays unmapped).
const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of the initial user stack; the page below it stays unmapped.
const STACK_SIZE: u64 = 64 << 10;
/// Memory the kernel keeps for its own heap and for page tables it pays
/// for itself; the rest goes to init's pool.
const KERNEL_RESERVE: u64 = 16 << 20;

/// Why init could not be started.
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

/// Loads `image` into `space`; returns the entry point.
fn load_image(space: &mut AddressSpace, pools: &mut Pools, image: &[u8]) -> Result<VirtAddr, LoadError> {
    let elf = Elf::parse(image).map_err(LoadError::Elf)?;
    // Addresses are moved by `bias` with wrapping arithmetic, then checked
    // to lie in the user half before anything is mapped.
    let bias = if elf.is_position_independent() {
        PIE_BASE.wrapping_sub(elf.address_range().0)
    } else {
        0
    };
    let user_range = |address: u64, size: u64| -> Result<VirtAddr, LoadError> {
        let start = address.wrapping_add(bias);
        match start.checked_add(size) {
            Some(end) if end <= USER_END => Ok(VirtAddr::new(start)),
            _ => Err(LoadError::Map(MapError::NotUserAddress)),
        }
    };
    for segment in elf.segments() {
        if segment.mem_size == 0 {
            continue;
        }
        let mut flags = PageTableFlags::empty();
        if segment.flags.writable {
            flags |= PageTableFlags::WRITABLE;
        }
        if !segment.flags.executable {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        let start = user_range(segment.vaddr, segment.mem_size)?;
        let last = start + (segment.mem_size - 1);
        for page in Page::range_inclusive(Page::containing_address(start), Page::containing_address(last)) {
            // Two segments may share a page at their edges: it gets both
            // segments' access (and execute unless both forbid it).
            if space.is_mapped(page) {
                space.widen_access(page, flags);
            } else {
                space.map_new_page(pools, page, flags).map_err(LoadError::Map)?;
            }
        }
        space.write_user(start, segment.data, false).map_err(LoadError::Map)?;
    }
    elf.relocations(bias, |target, value| {
        let target = user_range(target, 8)?;
        space
            .write_user(target, &value.to_le_bytes(), false)
            .map_err(LoadError::Map)
    })
    .map_err(|error| match error {
        RelocationError::Elf(error) => LoadError::Elf(error),
        RelocationError::Apply(error) => error,
    })?;
    let stack_flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    let stack = Page::range(
        Page::containing_address(VirtAddr::new(STACK_TOP - STACK_SIZE)),
        Page::containing_address(VirtAddr::new(STACK_TOP)),
    );
    for page in stack {
        space.map_new_page(pools, page, stack_flags).map_err(LoadError::Map)?;
    }
    user_range(elf.entry(), 1)
}

/// Maps the boot archive (page-aligned in the kernel's ramdisk mapping)
/// read-only at `abi::init::BOOT_ARCHIVE`.
fn lend_archive(space: &mut AddressSpace, pools: &mut Pools, archive: &[u8]) -> Result<(), LoadError> {
    let start = VirtAddr::from_ptr(archive.as_ptr());
    for offset in (0..archive.len() as u64).step_by(4096) {
        let (physical, _) =
            paging::translate(paging::kernel_root(), start + offset).ok_or(LoadError::Map(MapError::NotUserAddress))?;
        let page = Page::containing_address(VirtAddr::new(init::BOOT_ARCHIVE + offset));
        space
            .map_borrowed(pools, page, PhysFrame::containing_address(physical))
            .map_err(LoadError::Map)?;
    }
    Ok(())
}

/// Creates init from its ELF `image` and makes it runnable.
///
/// # Errors
/// [`LoadError`] if the image is refused or memory is short; the kernel
/// then has nothing to run.
pub fn start_init(objects: &mut Objects, image: &[u8], archive: &[u8]) -> Result<ThreadId, LoadError> {
    let out_of_memory = LoadError::Map(MapError::OutOfMemory);
    let budget = (frames::free_frames() * 4096).saturating_sub(KERNEL_RESERVE);
    let pool = objects
        .pools
        .create_root(budget)
        .ok_or(LoadError::Map(MapError::OutOfMemory))?;
    let mut space = AddressSpace::new(&mut objects.pools, None).map_err(LoadError::Map)?;
    let entry = load_image(&mut space, &mut objects.pools, image)?;
    lend_archive(&mut space, &mut objects.pools, archive)?;

    let buffer_page = frames::allocate_zeroed().ok_or(LoadError::Map(MapError::OutOfMemory))?;
    let buffer_frame = objects
        .frames
        .insert(Frame::ram(buffer_page, pool))
        .ok_or(LoadError::Map(MapError::OutOfMemory))?;
    let buffer = Page::containing_address(VirtAddr::new(init::IPC_BUFFER));
    let buffer_flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    space
        .map_frame(&mut objects.pools, buffer, buffer_frame, buffer_page, buffer_flags)
        .map_err(LoadError::Map)?;
    let space = objects
        .address_spaces
        .insert(space)
        .ok_or(LoadError::Map(MapError::OutOfMemory))?;
    if let Some(frame) = objects.frames.get_mut(buffer_frame) {
        frame.add_mapping(MappedIn::AddressSpace(space), init::IPC_BUFFER);
    }

    let cspace = objects.capabilities.create_cspace(init::CSPACE_SLOTS as u32);
    let references = objects.capabilities.create_cspace(reference::SLOTS);
    let mut thread = Thread::new(String::from("init"), references, None);
    thread.context.rip = entry.as_u64();
    thread.context.rsp = STACK_TOP;
    thread.context.rdi = init::BOOT_ARCHIVE;
    thread.context.rsi = archive.len() as u64;
    thread.cspace = Some(cspace);
    thread.address_space = Some(space);
    thread.ipc_buffer = Some(VirtAddr::new(init::IPC_BUFFER));
    let id = ThreadId(objects.threads.insert(Box::new(thread)).ok_or(out_of_memory)?);
    objects.ipc.add_thread(id, init::PRIORITY);

    let initial = [
        (slot::THREAD, ObjectRef::Thread(id)),
        (slot::ADDRESS_SPACE, ObjectRef::AddressSpace(space)),
        (slot::CSPACE, ObjectRef::CSpace(cspace)),
        (slot::MEMORY, ObjectRef::Memory(pool)),
        (slot::IRQ_CONTROL, ObjectRef::IrqControl),
        (slot::PORT_CONTROL, ObjectRef::PortControl),
        (slot::DEVICE_MEMORY_CONTROL, ObjectRef::DeviceMemoryControl),
        (slot::IPC_BUFFER_FRAME, ObjectRef::Frame(buffer_frame)),
    ];
    for (index, object) in initial {
        // Fresh CSpaces: every slot is empty and in range.
        let _ = objects
            .capabilities
            .insert_original(SlotRef::new(cspace, index as u32), original(object));
    }
    let _ = objects.capabilities.copy(
        SlotRef::new(cspace, slot::CSPACE as u32),
        SlotRef::new(references, reference::CSPACE),
    );
    let _ = objects.capabilities.copy(
        SlotRef::new(cspace, slot::ADDRESS_SPACE as u32),
        SlotRef::new(references, reference::ADDRESS_SPACE),
    );
    objects.init = Some(id);
    let _ = objects.ipc.start(id);
    Ok(id)
}
