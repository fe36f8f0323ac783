//! The virtual machine's hardware: its RAM (frames of this process mapped
//! both into the guest memory and here), its vcpu and state page, and
//! loading an image into it.
//!
//! Guest-physical layout for a 64-bit ELF guest: identity page tables for
//! the first 4 GiB at [`TABLES`], a GDT at [`GDT`], the stack below
//! [`STACK_TOP`](vm_platform::STACK_TOP), the command line at
//! [`ARGUMENTS`](vm_platform::ARGUMENTS), the image from
//! [`IMAGE_BASE`](vm_platform::IMAGE_BASE). A multiboot kernel's layout is
//! `vmm::multiboot`'s, a Linux kernel's `vmm::linux`'s; the machine
//! carries out their plans ([`Machine::write_plan`]), reading files in
//! chunks straight into guest RAM.

use abi::Rights;
use abi::vcpu::{Control, Segment, Segments, SystemMsrs, Table, VcpuState, attribute, group};
use alloc::string::String;
use alloc::vec::Vec;
use elf::Elf;
use runtime::capability::{self, AddressSpace, CSpace, Destination, Frame, GuestMemory, Memory, Slot, Slots, Vcpu};
use runtime::memory::Region;
use runtime::vcpu::StatePage;
use vm_platform::{ARGUMENTS, IMAGE_BASE, MAX_ARGUMENTS, STACK_TOP};
use vmm::boot::{self, Bytes, GDT, TABLES, descriptor};
use vmm::devices::virtio::{GuestRam, OutsideRam};
use vmm::linux;
use vmm::multiboot::{self, Load};

/// How many bytes of a file the machine reads at a time (what one
/// filesystem transfer carries).
const CHUNK: usize = fs::MAX_TRANSFER;

/// Reads `into.len()` bytes at an offset of a boot file (numbered as in
/// [`Bytes::File`]), all of them or an error saying why not.
pub type ReadFile<'a> = dyn FnMut(usize, u64, &mut [u8]) -> Result<(), String> + 'a;

/// A VM: RAM, one vcpu, its state page. Dropping it destroys them all
/// (the RAM frames go with the CSpace that keeps them, which unmaps them
/// here too).
pub struct Machine {
    /// The vcpu.
    pub vcpu: Vcpu,
    /// Its state page.
    pub page: StatePage,
    /// The guest's RAM as this process sees it.
    pub ram: Region,
    memory: GuestMemory,
    frames: CSpace,
    page_frame: Frame,
}

/// The guest's RAM as its devices reach it: RAM starts at guest-physical
/// 0, so an address is an offset in the region.
pub struct RamForDevices<'a>(pub &'a Region);

impl GuestRam for RamForDevices<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&self, address: u64, into: &mut [u8]) -> Result<(), OutsideRam> {
        let offset = usize::try_from(address).map_err(|_| OutsideRam)?;
        self.0.read(offset, into).map_err(|_| OutsideRam)
    }

    fn write(&self, address: u64, from: &[u8]) -> Result<(), OutsideRam> {
        let offset = usize::try_from(address).map_err(|_| OutsideRam)?;
        self.0.write(offset, from).map_err(|_| OutsideRam)
    }
}

/// Capabilities deleted when dropped: a machine half made.
struct Made(Vec<Slot>);

impl Drop for Made {
    fn drop(&mut self) {
        for slot in self.0.iter().rev() {
            let _ = capability::delete(Destination::own(*slot));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        for slot in [self.vcpu.0, self.memory.0, self.frames.0, self.page_frame.0] {
            let _ = capability::delete(Destination::own(slot));
        }
    }
}

/// Why a VM could not be made or loaded.
#[derive(Debug)]
pub enum MachineError {
    /// A syscall failed (no virtualisation, no memory, ...).
    Kernel(&'static str, abi::Error),
    /// The image was refused.
    Image(String),
}

impl Machine {
    /// Makes a VM with `memory_mib` of RAM from `pool`.
    ///
    /// # Errors
    /// [`MachineError::Kernel`].
    pub fn new(
        slots: &Slots,
        pool: Memory,
        address_space: AddressSpace,
        memory_mib: u32,
    ) -> Result<Self, MachineError> {
        let kernel = |what: &'static str| move |error: abi::Error| MachineError::Kernel(what, error);
        // Everything made so far, deleted again if a later step fails.
        let mut made = Made(Vec::new());
        let mut slot = || {
            let slot = slots.allocate().map_err(kernel("no slot"))?;
            made.0.push(slot);
            Ok::<_, MachineError>(slot)
        };
        let (memory_slot, vcpu_slot, keep_slot, page_slot, scratch) = (slot()?, slot()?, slot()?, slot()?, slot()?);
        let memory = pool
            .create_guest_memory(memory_slot)
            .map_err(kernel("cannot make guest memory"))?;
        let vcpu = pool.create_vcpu(vcpu_slot).map_err(kernel("cannot make a vcpu"))?;
        let pages = u64::from(memory_mib) * 256;
        // The frames live in a CSpace of their own: one slot here, not one
        // per page. Each is made in `scratch`, mapped into the guest and
        // here, then moved there.
        let keep = pool
            .create_cspace(keep_slot, pages + 1)
            .map_err(kernel("cannot make the frame CSpace"))?;
        let ram = Region::reserve(pages as usize);
        for page in 0..pages {
            let frame = pool
                .create_frame(scratch)
                .map_err(kernel("out of memory for guest RAM"))?;
            memory
                .map(frame, page * 4096, Rights::READ | Rights::WRITE | Rights::EXECUTE)
                .map_err(kernel("cannot map guest RAM"))?;
            ram.map_page(address_space, frame, page as usize, Rights::READ | Rights::WRITE)
                .map_err(kernel("cannot map guest RAM here"))?;
            capability::move_to(frame, Destination::in_cspace(keep, page + 1))
                .map_err(kernel("cannot keep a RAM frame"))?;
        }
        let page_frame = pool
            .create_frame(page_slot)
            .map_err(kernel("no memory for the state page"))?;
        vcpu.configure(memory, page_frame)
            .map_err(kernel("cannot bind the vcpu"))?;
        let page = StatePage::map(address_space, page_frame).map_err(kernel("cannot map the state page"))?;
        // From here on `Machine`'s drop deletes them.
        made.0.clear();
        Ok(Self {
            vcpu,
            page,
            ram,
            memory,
            frames: keep,
            page_frame,
        })
    }
}

impl Machine {
    /// Loads a 64-bit ELF image (position-independent ones at
    /// [`IMAGE_BASE`]) and returns the state that enters it in long mode,
    /// identity-mapped, with a stack.
    ///
    /// # Errors
    /// [`MachineError::Image`] for an image that is not such an ELF file or
    /// does not fit.
    pub fn load_elf64(&self, image: &[u8], arguments: &str) -> Result<VcpuState, MachineError> {
        let refuse = |why: &str| MachineError::Image(String::from(why));
        let elf = Elf::parse(image)
            .map_err(|error| MachineError::Image(alloc::format!("not a 64-bit ELF image: {error:?}")))?;
        let (low, high) = elf.address_range();
        let bias = if elf.is_position_independent() {
            IMAGE_BASE.wrapping_sub(low)
        } else if low >= IMAGE_BASE {
            0
        } else {
            return Err(refuse("the image links below the image base (0x200000)"));
        };
        let end = high.wrapping_add(bias);
        if end > self.ram.len() as u64 || end < IMAGE_BASE {
            return Err(refuse("the image does not fit in the guest's RAM"));
        }
        for segment in elf.segments() {
            let at = segment.vaddr.wrapping_add(bias) as usize;
            self.ram
                .write(at, segment.data)
                .map_err(|_| refuse("a segment lies outside RAM"))?;
        }
        // `target` is the link-time address; the word sits `bias` higher.
        elf.relocations(bias, |target, value| {
            self.ram.write(target.wrapping_add(bias) as usize, &value.to_le_bytes())
        })
        .map_err(|_| refuse("a relocation lies outside RAM"))?;
        self.ram
            .write(TABLES as usize, &boot::identity_tables())
            .and_then(|()| {
                self.ram
                    .write(GDT as usize, &boot::gdt(&[0, descriptor::CODE_64, descriptor::DATA]))
            })
            .map_err(|_| refuse("RAM too small for the page tables"))?;
        if arguments.len() > MAX_ARGUMENTS {
            return Err(refuse("the command line is too long"));
        }
        self.ram
            .write(ARGUMENTS as usize, arguments.as_bytes())
            .map_err(|_| refuse("RAM too small for the command line"))?;
        let mut state = long_mode_state(elf.entry().wrapping_add(bias), 0x08, 0x10, 23);
        state.registers.rsp = STACK_TOP;
        state.registers.rdi = ARGUMENTS;
        state.registers.rsi = arguments.len() as u64;
        Ok(state)
    }

    /// Writes a multiboot kernel, its modules and boot information as
    /// `load` says, and returns the state that enters it in 32-bit
    /// protected mode with paging off.
    ///
    /// # Errors
    /// [`MachineError::Image`] if a module cannot be read.
    pub fn load_multiboot(&self, load: &Load<'_>, read: &mut ReadFile<'_>) -> Result<VcpuState, MachineError> {
        self.write_plan(&load.writes, read)?;
        Ok(protected_mode_state(load))
    }

    /// Writes a Linux kernel, its initrd, the zero page and the tables as
    /// `plan` says, and returns the state that enters the kernel's 64-bit
    /// entry point with RSI pointing at the zero page.
    ///
    /// # Errors
    /// [`MachineError::Image`] if the kernel or initrd cannot be read.
    pub fn load_linux(&self, plan: &linux::Boot<'_>, read: &mut ReadFile<'_>) -> Result<VcpuState, MachineError> {
        self.write_plan(&plan.writes, read)?;
        let mut state = long_mode_state(
            plan.entry,
            linux::CODE_SELECTOR,
            linux::DATA_SELECTOR,
            u64::from(linux::GDT_LIMIT),
        );
        state.registers.rsi = plan.zero_page;
        Ok(state)
    }

    /// Carries out a loader's plan: each write in order, files read
    /// [`CHUNK`] bytes at a time through one buffer.
    ///
    /// # Errors
    /// [`MachineError::Image`] if a file cannot be read, or a write falls
    /// outside RAM (the plan was made for this RAM size, so only a bug
    /// gets there).
    fn write_plan(&self, writes: &[(u64, Bytes<'_>)], read: &mut ReadFile<'_>) -> Result<(), MachineError> {
        let outside = |_| MachineError::Image(String::from("a piece of the boot plan lies outside RAM"));
        let mut buffer = Vec::new();
        for (address, bytes) in writes {
            let at = *address as usize;
            match bytes {
                Bytes::Copy(data) => self.ram.write(at, data).map_err(outside)?,
                Bytes::Made(data) => self.ram.write(at, data).map_err(outside)?,
                Bytes::Zero(length) => {
                    buffer.clear();
                    buffer.resize(CHUNK, 0);
                    for start in (0..*length).step_by(CHUNK) {
                        let chunk = (length - start).min(CHUNK as u64) as usize;
                        self.ram.write(at + start as usize, &buffer[..chunk]).map_err(outside)?;
                    }
                }
                Bytes::File { file, offset, length } => {
                    buffer.resize(CHUNK, 0);
                    for start in (0..*length).step_by(CHUNK) {
                        let chunk = (length - start).min(CHUNK as u64) as usize;
                        read(*file, offset + start, &mut buffer[..chunk]).map_err(MachineError::Image)?;
                        self.ram.write(at + start as usize, &buffer[..chunk]).map_err(outside)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The task register both entry states start with: an empty busy TSS.
const TASK_REGISTER: Segment = Segment {
    selector: 0,
    attributes: 0xb | attribute::PRESENT,
    limit: 0x67,
    base: 0,
};

/// The state the multiboot specification gives a kernel: 32-bit protected
/// mode, paging off, flat 4 GiB code and data segments, interrupts off,
/// EAX the boot loader's magic number and EBX the boot information.
fn protected_mode_state(load: &Load<'_>) -> VcpuState {
    let (gdt, limit) = load.gdt;
    let mut state = entry_state(
        u64::from(load.entry),
        Control {
            cr0: 0x11, // ET, PE
            ..Control::default()
        },
        Segment::flat_code(multiboot::CODE_SELECTOR, false),
        Segment::flat_data(multiboot::DATA_SELECTOR),
        Table {
            base: u64::from(gdt),
            limit: u64::from(limit),
        },
    );
    state.registers.rax = u64::from(multiboot::BOOTLOADER_MAGIC);
    state.registers.rbx = u64::from(load.information);
    state
}

/// The state entering `entry` in 64-bit mode with paging on the identity
/// tables at [`TABLES`], flat `code` and `data` segments from the GDT at
/// [`GDT`] (of `gdt_limit`), interrupts off.
fn long_mode_state(entry: u64, code: u16, data: u16, gdt_limit: u64) -> VcpuState {
    entry_state(
        entry,
        Control {
            cr0: 0x8000_0033, // PG, NE, ET, MP, PE
            cr2: 0,
            cr3: TABLES,
            cr4: 0x620,  // OSXMMEXCPT, OSFXSR, PAE
            efer: 0x500, // LMA, LME
        },
        Segment::flat_code(code, true),
        Segment::flat_data(data),
        Table {
            base: GDT,
            limit: gdt_limit,
        },
    )
}

/// What both entry states share: every group loaded, interrupts off, flat
/// `code` and `data` segments from the table at `gdtr`, no IDT yet, and
/// the architectural reset PAT.
fn entry_state(entry: u64, control: Control, code: Segment, data: Segment, gdtr: Table) -> VcpuState {
    let mut state = VcpuState {
        load: group::ALL,
        ..VcpuState::default()
    };
    state.registers.rip = entry;
    state.registers.rflags = 0x2;
    state.control = control;
    state.segments = Segments {
        es: data,
        cs: code,
        ss: data,
        ds: data,
        fs: data,
        gs: data,
        ldtr: Segment::default(),
        tr: TASK_REGISTER,
        gdtr,
        idtr: Table { base: 0, limit: 0 },
    };
    state.msrs = SystemMsrs {
        pat: 0x0007_0406_0007_0406,
        ..SystemMsrs::default()
    };
    state
}
