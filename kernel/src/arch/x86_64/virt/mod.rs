//! Hardware virtualisation: which extension the CPU has, and the one
//! interface the Vcpu object uses over both backends.
//!
//! At boot [`init`] detects AMD SVM (with nested paging) or Intel VT-x (with
//! EPT and unrestricted guest) and switches it on. A [`Hardware`] vcpu then
//! loads a [`VcpuState`], runs the guest until it exits, and stores the
//! state and the normalised exit back.
//! Everything else about a guest (devices, decoding, policy) is the VMM's,
//! in user space.

/// For the world switches: loads a guest's general registers other than
/// RAX and RDI from the `abi::vcpu::Registers` that RDI points to (the
/// offsets are its fields').
macro_rules! load_guest_registers {
    () => {
        concat!(
            "mov rbx, [rdi + 0x08]\n",
            "mov rcx, [rdi + 0x10]\n",
            "mov rdx, [rdi + 0x18]\n",
            "mov rsi, [rdi + 0x20]\n",
            "mov rbp, [rdi + 0x30]\n",
            "mov r8, [rdi + 0x40]\n",
            "mov r9, [rdi + 0x48]\n",
            "mov r10, [rdi + 0x50]\n",
            "mov r11, [rdi + 0x58]\n",
            "mov r12, [rdi + 0x60]\n",
            "mov r13, [rdi + 0x68]\n",
            "mov r14, [rdi + 0x70]\n",
            "mov r15, [rdi + 0x78]\n",
        )
    };
}

/// For the world switches: stores a guest's general registers other than
/// RAX and RDI into the `abi::vcpu::Registers` that RDI points to.
macro_rules! store_guest_registers {
    () => {
        concat!(
            "mov [rdi + 0x08], rbx\n",
            "mov [rdi + 0x10], rcx\n",
            "mov [rdi + 0x18], rdx\n",
            "mov [rdi + 0x20], rsi\n",
            "mov [rdi + 0x30], rbp\n",
            "mov [rdi + 0x40], r8\n",
            "mov [rdi + 0x48], r9\n",
            "mov [rdi + 0x50], r10\n",
            "mov [rdi + 0x58], r11\n",
            "mov [rdi + 0x60], r12\n",
            "mov [rdi + 0x68], r13\n",
            "mov [rdi + 0x70], r14\n",
            "mov [rdi + 0x78], r15\n",
        )
    };
}

mod svm;
mod vmx;

use abi::vcpu::{Control, Exit, Registers, Segment, Segments, SystemMsrs, Table, VcpuState, attribute};
use spin::Once;
use x86_64::structures::paging::PhysFrame;

/// The extension the kernel drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AMD SVM with nested paging.
    Svm,
    /// Intel VT-x with EPT and unrestricted guest.
    Vmx,
}

static BACKEND: Once<Option<Backend>> = Once::new();

/// Detects the CPU's virtualisation extension and turns it on. Logs what
/// it found.
pub fn init() {
    BACKEND.call_once(|| {
        if svm::init() {
            log::info!("virtualisation: AMD SVM with nested paging");
            return Some(Backend::Svm);
        }
        if vmx::init() {
            log::info!("virtualisation: Intel VT-x with EPT and unrestricted guest");
            return Some(Backend::Vmx);
        }
        log::info!(
            "virtualisation: none (neither AMD SVM with nested paging nor VT-x with EPT and unrestricted guest); \
             vcpus are not supported"
        );
        None
    });
}

/// The backend in use, if any.
pub fn backend() -> Option<Backend> {
    BACKEND.get().copied().flatten()
}

/// The nested page-table format of the backend in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// AMD nested paging: ordinary long-mode entries, user bit set (the
    /// hardware treats every guest access as a user access).
    Npt,
    /// Intel EPT: read, write and execute bits, write-back memory type in
    /// the leaves.
    Ept,
}

impl TableFormat {
    /// The format for `backend`.
    pub fn of(backend: Backend) -> Self {
        match backend {
            Backend::Svm => Self::Npt,
            Backend::Vmx => Self::Ept,
        }
    }

    /// An entry pointing to the next-level table at `physical`.
    pub fn table(self, physical: u64) -> u64 {
        match self {
            // Present, writable, user: the leaf decides the rights.
            Self::Npt => physical | 0b111,
            // Readable, writable, executable: the leaf decides.
            Self::Ept => physical | 0b111,
        }
    }

    /// A leaf entry for the page at `physical`.
    pub fn leaf(self, physical: u64, access: crate::object::guest_memory::GuestAccess) -> u64 {
        match self {
            Self::Npt => {
                let mut entry = physical | 0b101; // present, user
                if access.write {
                    entry |= 0b10;
                }
                if !access.execute {
                    entry |= 1 << 63;
                }
                entry
            }
            Self::Ept => {
                // Readable, write-back; a guest page is never write-only.
                let mut entry = physical | 0b001 | (6 << 3);
                if access.write {
                    entry |= 0b010;
                }
                if access.execute {
                    entry |= 0b100;
                }
                entry
            }
        }
    }
}

/// A vcpu's hardware part: the control block of the backend in use.
pub enum Hardware {
    /// An AMD VMCB.
    Svm(svm::Vmcb),
    /// An Intel VMCS.
    Vmx(vmx::Vmcs),
}

impl Hardware {
    /// A new vcpu in the x86 reset state, or `None` when there is no
    /// backend or no memory.
    pub fn new() -> Option<Self> {
        match backend()? {
            Backend::Svm => svm::Vmcb::new().map(Self::Svm),
            Backend::Vmx => vmx::Vmcs::new().map(Self::Vmx),
        }
    }

    /// Writes every part of the guest state into `state`.
    pub fn store_all(&self, state: &mut VcpuState) {
        match self {
            Self::Svm(vmcb) => vmcb.store(state, abi::vcpu::group::ALL),
            Self::Vmx(vmcs) => vmcs.store(state, abi::vcpu::group::ALL),
        }
    }

    /// Loads `state`, runs the guest in the nested tables at `root` until
    /// it exits, and stores the state back. `flush` drops the guest's
    /// cached translations first (its tables changed).
    pub fn run(&mut self, state: &mut VcpuState, root: PhysFrame, flush: bool) -> Exit {
        match self {
            Self::Svm(vmcb) => vmcb.run(state, root, flush),
            Self::Vmx(vmcs) => vmcs.run(state, root, flush),
        }
    }
}

/// The x86 reset state: real mode at F000:FFF0, paging off.
pub fn reset_state() -> VcpuState {
    let real = |selector: u16, base: u64, kind: u16| Segment {
        selector,
        attributes: kind | attribute::CODE_OR_DATA | attribute::PRESENT,
        limit: 0xffff,
        base,
    };
    let system = |kind: u16| Segment {
        selector: 0,
        attributes: kind | attribute::PRESENT,
        limit: 0xffff,
        base: 0,
    };
    VcpuState {
        registers: Registers {
            rdx: 0x600,
            rip: 0xfff0,
            rflags: 0x2,
            ..Registers::default()
        },
        control: Control {
            cr0: 0x6000_0010,
            ..Control::default()
        },
        segments: Segments {
            es: real(0, 0, 0x3),
            cs: real(0xf000, 0xffff_0000, 0xb),
            ss: real(0, 0, 0x3),
            ds: real(0, 0, 0x3),
            fs: real(0, 0, 0x3),
            gs: real(0, 0, 0x3),
            ldtr: system(0x2),
            tr: system(0xb),
            gdtr: Table { base: 0, limit: 0xffff },
            idtr: Table { base: 0, limit: 0xffff },
        },
        msrs: SystemMsrs {
            pat: 0x0007_0406_0007_0406,
            ..SystemMsrs::default()
        },
        ..VcpuState::default()
    }
}
