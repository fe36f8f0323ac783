//! Hardware virtualisation: the state page a VMM shares with the kernel for
//! each virtual CPU, and the normalised exits `VcpuRun` reports.
//!
//! A VMM makes a [`GuestMemory`](crate::ObjectType::GuestMemory) and a
//! [`Vcpu`](crate::ObjectType::Vcpu) from its pool, maps its own frames into
//! the guest memory at guest-physical addresses it chooses
//! ([`GuestMap`](crate::Syscall::GuestMap)), and binds the vcpu to the guest
//! memory and to one more frame of its own, the *state page*
//! ([`VcpuConfigure`](crate::Syscall::VcpuConfigure)), which it also maps in
//! its address space. The page holds a [`VcpuState`].
//!
//! [`VcpuRun`](crate::Syscall::VcpuRun) then:
//! 1. loads the guest state groups the VMM named in [`VcpuState::load`]
//!    (the general registers always) and clears `load`;
//! 2. injects [`VcpuState::inject`] if it is set, and asks for an
//!    interrupt-window exit if [`VcpuState::interrupt_window`] is set;
//! 3. runs the guest until it exits;
//! 4. writes the general registers, the groups named in
//!    [`VcpuState::store`] and the [`Exit`] into the page, and returns the
//!    exit's [`ExitKind`] number in `rdi`.
//!
//! The kernel and both hardware backends (Intel VT-x, AMD SVM) agree on this
//! one layout, so a VMM is vendor-neutral.

/// Groups of guest state, as bits of [`VcpuState::load`] and
/// [`VcpuState::store`]. The general registers ([`Registers`]) and the
/// interrupt shadow always travel.
pub mod group {
    /// [`Control`](super::Control): CR0, CR2, CR3, CR4 and EFER.
    pub const CONTROL: u64 = 1 << 0;
    /// [`Segments`](super::Segments): the eight segment registers, GDTR and IDTR.
    pub const SEGMENTS: u64 = 1 << 1;
    /// [`SystemMsrs`](super::SystemMsrs): the SYSCALL, SYSENTER and PAT MSRs.
    pub const MSRS: u64 = 1 << 2;
    /// Every group.
    pub const ALL: u64 = CONTROL | SEGMENTS | MSRS;
}

/// The guest's general registers, instruction pointer and flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "the architectural register names")]
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// Control registers and EFER as the guest sees them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "the architectural register names")]
pub struct Control {
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// A segment register with its hidden part.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// Descriptor attributes: bits 0..=3 type, 4 S, 5..=6 DPL, 7 present,
    /// 8 AVL, 9 L, 10 D/B, 11 G. A segment that is not present is unusable.
    pub attributes: u16,
    /// Limit in bytes (already scaled by G).
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

impl Segment {
    /// A present, accessed code segment (execute/read) of type `long`
    /// (64-bit) or 32-bit, flat from 0 with a 4 GiB limit.
    pub const fn flat_code(selector: u16, long: bool) -> Self {
        let mode = if long { attribute::LONG } else { attribute::DEFAULT_BIG };
        Self {
            selector,
            attributes: 0xb | attribute::CODE_OR_DATA | attribute::PRESENT | attribute::GRANULARITY | mode,
            limit: 0xffff_ffff,
            base: 0,
        }
    }

    /// A present, accessed, writable data segment, flat from 0 with a 4 GiB
    /// limit.
    pub const fn flat_data(selector: u16) -> Self {
        Self {
            selector,
            attributes: 0x3
                | attribute::CODE_OR_DATA
                | attribute::PRESENT
                | attribute::GRANULARITY
                | attribute::DEFAULT_BIG,
            limit: 0xffff_ffff,
            base: 0,
        }
    }
}

/// Bits of [`Segment::attributes`].
pub mod attribute {
    /// S: a code or data segment (clear: a system segment).
    pub const CODE_OR_DATA: u16 = 1 << 4;
    /// P: present.
    pub const PRESENT: u16 = 1 << 7;
    /// L: 64-bit code.
    pub const LONG: u16 = 1 << 9;
    /// D/B: 32-bit default operand size, or a big stack.
    pub const DEFAULT_BIG: u16 = 1 << 10;
    /// G: the limit counts 4 KiB pages.
    pub const GRANULARITY: u16 = 1 << 11;
}

/// A descriptor-table register.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u64,
}

/// The segment and descriptor-table registers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "the architectural register names")]
pub struct Segments {
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: Table,
    pub idtr: Table,
}

/// Model-specific registers the guest uses directly, without exits: the
/// kernel switches them with the guest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "the architectural register names")]
pub struct SystemMsrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
}

/// How an injected event is delivered.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// No event.
    None = 0,
    /// An external (maskable) interrupt: delivered only while the guest has
    /// interrupts enabled and no interrupt shadow (ask for an
    /// interrupt-window exit to learn when).
    Interrupt = 1,
    /// A non-maskable interrupt.
    Nmi = 2,
    /// A hardware exception, with an error code if `has_error_code`.
    Exception = 3,
}

impl EventKind {
    /// Decodes an event kind number.
    pub const fn from_number(number: u32) -> Option<Self> {
        Some(match number {
            0 => Self::None,
            1 => Self::Interrupt,
            2 => Self::Nmi,
            3 => Self::Exception,
            _ => return None,
        })
    }
}

/// An event to inject on the next entry; the kernel clears it once
/// delivered, and sets it again if an exit interrupted its delivery.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// [`EventKind`] as a number.
    pub kind: u32,
    /// The vector (0..=255).
    pub vector: u32,
    /// 1 if `error_code` is pushed (exceptions only).
    pub has_error_code: u32,
    /// The error code.
    pub error_code: u32,
}

impl Event {
    /// No event.
    pub const NONE: Self = Self {
        kind: EventKind::None as u32,
        vector: 0,
        has_error_code: 0,
        error_code: 0,
    };

    /// An external interrupt with `vector`.
    pub const fn interrupt(vector: u8) -> Self {
        Self {
            kind: EventKind::Interrupt as u32,
            vector: vector as u32,
            has_error_code: 0,
            error_code: 0,
        }
    }

    /// A hardware exception, with `error_code` if it has one.
    pub const fn exception(vector: u8, error_code: Option<u32>) -> Self {
        Self {
            kind: EventKind::Exception as u32,
            vector: vector as u32,
            has_error_code: error_code.is_some() as u32,
            error_code: match error_code {
                Some(code) => code,
                None => 0,
            },
        }
    }

    /// Whether an event is set.
    pub const fn is_set(&self) -> bool {
        self.kind != EventKind::None as u32
    }
}

/// Why the guest stopped running. The numbers are the ABI.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// `IN`, `OUT`, `INS` or `OUTS`: `a` = port, `b` = [`io`] bits, `c` = the
    /// value written (`OUT`, masked to its size). Emulate, then advance
    /// `rip` by the instruction length.
    PortIo = 1,
    /// An access to guest-physical memory that is not mapped or not mapped
    /// with that right (MMIO): `a` = guest-physical address, `b` =
    /// [`access`] bits. `rip` is at the instruction, whose length is not
    /// known (0): the VMM decodes it.
    NestedPageFault = 2,
    /// `CPUID`: the leaf is in `rax`, the subleaf in `rcx`.
    Cpuid = 3,
    /// `RDMSR` (`b` = 0) or `WRMSR` (`b` = 1): `a` = the MSR number; a write's
    /// value is in `rdx:rax`.
    Msr = 4,
    /// `HLT`.
    Hlt = 5,
    /// The guest can take an external interrupt now (asked for with
    /// [`VcpuState::interrupt_window`]).
    InterruptWindow = 6,
    /// `VMCALL` or `VMMCALL`: a hypercall, by convention number in `rax`.
    Hypercall = 7,
    /// A triple fault (or another shutdown condition): the guest cannot go
    /// on without being reset.
    Shutdown = 8,
    /// An exception the guest took that the VMM intercepts: `a` = vector,
    /// `b` = error code, `c` = CR2 for a page fault.
    Exception = 9,
    /// A host interrupt or the end of the thread's time slice took the CPU;
    /// nothing happened in the guest. Run it again.
    Preempted = 10,
    /// The hardware refused to enter the guest with this state: `a` = the
    /// backend's reason number. Fix the state before running again.
    InvalidState = 11,
    /// An instruction the VMM must emulate or refuse (`INVD`, `WBINVD`,
    /// `XSETBV`, `MONITOR`, `MWAIT`, `RDPMC`, virtualisation instructions):
    /// `a` = [`instruction`] number.
    Instruction = 12,
}

impl ExitKind {
    /// Decodes an exit number.
    pub const fn from_number(number: u32) -> Option<Self> {
        Some(match number {
            1 => Self::PortIo,
            2 => Self::NestedPageFault,
            3 => Self::Cpuid,
            4 => Self::Msr,
            5 => Self::Hlt,
            6 => Self::InterruptWindow,
            7 => Self::Hypercall,
            8 => Self::Shutdown,
            9 => Self::Exception,
            10 => Self::Preempted,
            11 => Self::InvalidState,
            12 => Self::Instruction,
            _ => return None,
        })
    }
}

/// Bits of [`Exit::b`] for [`ExitKind::PortIo`].
pub mod io {
    /// The access size in bytes (1, 2 or 4), in the low byte.
    pub const SIZE_MASK: u64 = 0xff;
    /// `OUT`/`OUTS` (clear: `IN`/`INS`).
    pub const WRITE: u64 = 1 << 8;
    /// A string instruction (`INS`/`OUTS`): the VMM moves the data itself.
    pub const STRING: u64 = 1 << 9;
    /// With a `REP` prefix.
    pub const REPEAT: u64 = 1 << 10;
}

/// Bits of [`Exit::b`] for [`ExitKind::NestedPageFault`].
pub mod access {
    /// A read (set for every access the hardware reports as a read).
    pub const READ: u64 = 1 << 0;
    /// A write.
    pub const WRITE: u64 = 1 << 1;
    /// An instruction fetch.
    pub const EXECUTE: u64 = 1 << 2;
    /// The address is mapped, without the right the access needed.
    pub const MAPPED: u64 = 1 << 3;
}

/// Numbers in [`Exit::a`] for [`ExitKind::Instruction`].
pub mod instruction {
    /// `INVD`.
    pub const INVD: u64 = 1;
    /// `WBINVD`.
    pub const WBINVD: u64 = 2;
    /// `XSETBV`.
    pub const XSETBV: u64 = 3;
    /// `MONITOR`.
    pub const MONITOR: u64 = 4;
    /// `MWAIT`.
    pub const MWAIT: u64 = 5;
    /// `RDPMC`.
    pub const RDPMC: u64 = 6;
    /// A virtualisation instruction (VMX or SVM): never run in a guest.
    pub const VIRTUALISATION: u64 = 7;
}

/// What the last exit was.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// [`ExitKind`] as a number.
    pub kind: u32,
    /// Length in bytes of the instruction at `rip` that exited, when the
    /// hardware or the kernel knows it (0: the VMM decodes it).
    pub instruction_length: u32,
    /// First detail (see [`ExitKind`]).
    pub a: u64,
    /// Second detail.
    pub b: u64,
    /// Third detail.
    pub c: u64,
}

/// The state page: what the kernel and the VMM exchange around each
/// `VcpuRun`. It lives at the start of the frame given to `VcpuConfigure`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VcpuState {
    /// VMM: [`group`] bits of state it changed; the kernel loads them at the
    /// next entry and clears this.
    pub load: u64,
    /// VMM: [`group`] bits of state it wants written here at every exit.
    pub store: u64,
    /// VMM: an event to inject at the next entry.
    pub inject: Event,
    /// VMM: 1 to exit as soon as the guest can take an external interrupt.
    pub interrupt_window: u32,
    /// Guest state: 1 while the guest is in an interrupt shadow (after `STI`
    /// or `MOV SS`), when no interrupt may be injected. Always exchanged.
    pub interrupt_shadow: u32,
    /// Kernel: the last exit.
    pub exit: Exit,
    /// The general registers, `rip` and `rflags`. Always exchanged.
    pub registers: Registers,
    /// The [`group::CONTROL`] group.
    pub control: Control,
    /// The [`group::SEGMENTS`] group.
    pub segments: Segments,
    /// The [`group::MSRS`] group.
    pub msrs: SystemMsrs,
}

impl Default for VcpuState {
    /// All zero: no groups to load or store, nothing to inject.
    fn default() -> Self {
        Self {
            load: 0,
            store: 0,
            inject: Event::NONE,
            interrupt_window: 0,
            interrupt_shadow: 0,
            exit: Exit {
                kind: 0,
                instruction_length: 0,
                a: 0,
                b: 0,
                c: 0,
            },
            registers: Registers::default(),
            control: Control::default(),
            segments: Segments::default(),
            msrs: SystemMsrs::default(),
        }
    }
}

const _: () = assert!(size_of::<VcpuState>() <= 4096);

/// Test-only: with the kernel built with its `kernel-cpuid-exits`
/// feature, a `CPUID` of this leaf is answered in the kernel (all zeros)
/// and the guest re-entered at once, without an exit to the VMM. The
/// benchmark compares that path with the VMM's; no production kernel has it.
pub const BENCH_KERNEL_CPUID_LEAF: u32 = 0x4b43_5055;

/// Highest guest-physical address (exclusive) a guest memory can map: 512
/// GiB, what one top-level nested table entry's worth of tables covers in
/// both backends.
pub const GUEST_PHYSICAL_END: u64 = 1 << 39;
