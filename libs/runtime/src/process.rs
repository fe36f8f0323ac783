//! Starting a program from an ELF image in a new address space.
//!
//! Each page of the image is a frame mapped into the new address space
//! with the access its segments ask for, and also, writable, into the
//! caller's own address space (a scratch window), where the image is laid
//! out and relocated before the window is unmapped. No page is ever both
//! writable and executable in the new program (W^X): an image that would
//! need one is refused. The frames' capabilities live in a CSpace of their
//! own, made from the new program's pool.

use crate::capability::{AddressSpace, CSpace, Endpoint, Frame, Memory, Slots, Thread};
use abi::{Error, Rights};
use core::sync::atomic::{AtomicU64, Ordering};
use elf::{Elf, ElfError};

/// Where a position-independent program's lowest page goes.
const PIE_BASE: u64 = 0x0040_0000;
/// Top of a new program's stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Pages of stack a new program gets.
const STACK_PAGES: u64 = 16;
/// Where a new program's IPC buffer is mapped.
pub const IPC_BUFFER: u64 = abi::init::IPC_BUFFER;
/// The caller's scratch window, where new programs' pages are filled.
static SCRATCH: AtomicU64 = AtomicU64::new(0x0000_6000_0000_0000);

/// Why a program could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The image was refused.
    Elf(ElfError),
    /// A syscall failed.
    Kernel(Error),
    /// A page would be both writable and executable (segments share it):
    /// refused, so no program ever has memory that is both.
    WriteAndExecute {
        /// The page's address in the program.
        address: u64,
    },
}

impl From<Error> for SpawnError {
    fn from(error: Error) -> Self {
        Self::Kernel(error)
    }
}

/// A started program's objects (its thread is stopped until [`Process::start`]).
#[derive(Debug, Clone, Copy)]
pub struct Process {
    /// Its first thread.
    pub thread: Thread,
    /// Its address space.
    pub address_space: AddressSpace,
    /// Its CSpace, empty; fill it with [`crate::capability::copy`] before starting.
    pub cspace: CSpace,
}

impl Process {
    /// Lets it run.
    ///
    /// # Errors
    /// As `ThreadStart`.
    pub fn start(&self) -> Result<(), Error> {
        self.thread.start()
    }
}

/// What a new program is made from.
pub struct Spawn<'a> {
    /// Pays for every object.
    pub memory: Memory,
    /// The caller's own address space (for the scratch window).
    pub own_address_space: AddressSpace,
    /// Free slots of the caller's CSpace.
    pub slots: &'a Slots,
    /// Slots of the new CSpace.
    pub cspace_slots: u64,
    /// Where the program's faults go.
    pub fault_endpoint: Option<Endpoint>,
}

impl Spawn<'_> {
    /// Builds a process for `image`, its thread set to start at the entry
    /// point with `arguments` in `rdi` and `rsi`.
    ///
    /// # Errors
    /// [`SpawnError`] for a refused image or a failed syscall.
    pub fn spawn(&self, image: &[u8], arguments: [u64; 2]) -> Result<Process, SpawnError> {
        let elf = Elf::parse(image).map_err(SpawnError::Elf)?;
        let address_space = self.memory.create_address_space(self.slots.allocate()?)?;
        let cspace = self.memory.create_cspace(self.slots.allocate()?, self.cspace_slots)?;
        let thread = self.memory.create_thread(self.slots.allocate()?)?;
        let (low, high) = elf.address_range();
        let bias = if elf.is_position_independent() {
            PIE_BASE.wrapping_sub(low)
        } else {
            0
        };
        let pages = (high - low) / 4096;
        // Each page's access, from the segments that touch it.
        let mut rights = alloc::vec![Rights::READ; pages as usize];
        for segment in elf.segments() {
            let first = (segment.vaddr - low) / 4096;
            let last = (segment.vaddr - low + segment.mem_size.max(1) - 1) / 4096;
            for page in rights.iter_mut().take(last as usize + 1).skip(first as usize) {
                if segment.flags.writable {
                    *page |= Rights::WRITE;
                }
                if segment.flags.executable {
                    *page |= Rights::EXECUTE;
                }
            }
        }
        if let Some(index) = rights
            .iter()
            .position(|page| page.contains(Rights::WRITE | Rights::EXECUTE))
        {
            return Err(SpawnError::WriteAndExecute {
                address: low.wrapping_add(bias) + index as u64 * 4096,
            });
        }
        // The new program's frames are kept in a CSpace of their own, paid
        // from its pool: the caller spends two slots per program, not one
        // per page, and the frames go when the pool is revoked.
        // Slot 0 of every CSpace is the null slot.
        let frame_slots = 1 + pages + STACK_PAGES + 1;
        let frames = self.memory.create_cspace(self.slots.allocate()?, frame_slots)?;
        let scratch_slot = self.slots.allocate()?;
        let mut kept = 1;
        let mut new_frame = |map: &mut dyn FnMut(Frame) -> Result<(), Error>| -> Result<(), SpawnError> {
            let frame = self.memory.create_frame(scratch_slot)?;
            map(frame)?;
            crate::capability::move_to(frame, crate::capability::Destination::in_cspace(frames, kept))?;
            kept += 1;
            Ok(())
        };
        // Each page is mapped twice: into the new address space with its own
        // access, and writable into this one's scratch window, where the
        // image is laid out as it will sit there (page `low` at `scratch`).
        let scratch = SCRATCH.fetch_add((pages + 1) * 4096, Ordering::Relaxed);
        for (index, &access) in (0..pages).zip(&rights) {
            new_frame(&mut |frame| {
                address_space.map(frame, low.wrapping_add(bias) + index * 4096, access)?;
                self.own_address_space
                    .map(frame, scratch + index * 4096, Rights::READ | Rights::WRITE)
            })?;
        }
        for segment in elf.segments() {
            let offset = segment.vaddr - low;
            // SAFETY: the window `scratch..scratch + pages * 4096` was just
            // mapped writable in this address space; the segment lies inside
            // `low..high` (checked by `Elf::parse`); nothing else uses it.
            unsafe {
                core::ptr::copy_nonoverlapping(segment.data.as_ptr(), (scratch + offset) as *mut u8, segment.data.len())
            };
        }
        elf.relocations(bias, |target, value| {
            // SAFETY: `Elf::parse` checked every relocation target lies inside
            // a loadable segment, so inside the mapped window.
            unsafe { ((scratch + (target - low)) as *mut u64).write_unaligned(value) };
            Ok::<(), Error>(())
        })
        .map_err(|error| match error {
            elf::RelocationError::Elf(error) => SpawnError::Elf(error),
            elf::RelocationError::Apply(error) => SpawnError::Kernel(error),
        })?;
        for index in 0..pages {
            self.own_address_space.unmap(scratch + index * 4096)?;
        }
        for page in 0..STACK_PAGES {
            new_frame(&mut |frame| {
                address_space.map(frame, STACK_TOP - (page + 1) * 4096, Rights::READ | Rights::WRITE)
            })?;
        }
        new_frame(&mut |frame| address_space.map(frame, IPC_BUFFER, Rights::READ | Rights::WRITE))?;
        thread.configure(cspace, address_space, IPC_BUFFER, self.fault_endpoint)?;
        thread.write_registers(elf.entry().wrapping_add(bias), STACK_TOP, arguments[0], arguments[1])?;
        Ok(Process {
            thread,
            address_space,
            cspace,
        })
    }
}
