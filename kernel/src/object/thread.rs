//! Thread: saved user registers, FPU/SSE state, and what the thread runs
//! with (CSpace, address space, IPC buffer, fault endpoint).
//!
//! A thread holds its own copies of the capabilities it was configured
//! with, in a small CSpace of its own ([`Thread::references`]), so the
//! objects it uses live at least as long as it does and a revoke of the
//! originals takes them from it too.

use crate::arch::entry::TrapFrame;
use crate::arch::fpu::FpuState;
use crate::arch::gdt::{USER_CODE, USER_DATA};
use alloc::string::String;
use kernel_core::capability_table::{CSpaceId, SlotRef};
use kernel_core::ipc::EndpointId;
use x86_64::VirtAddr;

/// The interrupt flag, plus the always-one bit 1 of RFLAGS.
pub const INITIAL_RFLAGS: u64 = 0x202;

/// Slots of [`Thread::references`].
pub mod reference {
    /// The thread's CSpace.
    pub const CSPACE: u32 = 1;
    /// The thread's address space.
    pub const ADDRESS_SPACE: u32 = 2;
    /// The thread's fault endpoint.
    pub const FAULT_ENDPOINT: u32 = 3;
    /// Slots in the reference CSpace.
    pub const SLOTS: u32 = 4;
}

/// An exception the thread took, kept for its fault message.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// Exception vector.
    pub vector: u64,
    /// Error code.
    pub error_code: u64,
    /// CR2 for page faults, else 0.
    pub address: u64,
}

/// A user thread.
pub struct Thread {
    /// A name for reports.
    pub name: String,
    /// Registers saved on kernel entry; restored on the way out. Stays at
    /// a fixed address while the thread exists (threads are boxed): the
    /// entry stubs write it through the per-CPU `context_top`.
    pub context: TrapFrame,
    /// x87/SSE registers, saved when another thread takes the CPU.
    pub fpu: FpuState,
    /// This thread's private CSpace holding its configuration's capabilities.
    pub references: CSpaceId,
    /// Its CSpace (a copy of the capability is in `references`).
    pub cspace: Option<CSpaceId>,
    /// Its address space, by id.
    pub address_space: Option<u32>,
    /// Where its IPC buffer is, if it has one.
    pub ipc_buffer: Option<VirtAddr>,
    /// Where its faults go, with the badge they carry.
    pub fault_endpoint: Option<(EndpointId, u64)>,
    /// The exception it is stopped on, if any.
    pub fault: Option<Fault>,
    /// The pool that paid for it (none for init).
    pub pool: Option<u32>,
}

impl Thread {
    /// A stopped, unconfigured thread.
    pub fn new(name: String, references: CSpaceId, pool: Option<u32>) -> Self {
        let context = TrapFrame {
            cs: u64::from(USER_CODE),
            ss: u64::from(USER_DATA),
            rflags: INITIAL_RFLAGS,
            ..TrapFrame::default()
        };
        Self {
            name,
            context,
            fpu: FpuState::new(),
            references,
            cspace: None,
            address_space: None,
            ipc_buffer: None,
            fault_endpoint: None,
            fault: None,
            pool,
        }
    }

    /// The address just past the saved registers: where the next kernel
    /// entry from this thread starts pushing.
    pub fn context_top(&self) -> VirtAddr {
        VirtAddr::from_ptr(&self.context) + size_of::<TrapFrame>() as u64
    }

    /// A slot of its reference CSpace.
    pub fn reference_slot(&self, index: u32) -> SlotRef {
        SlotRef::new(self.references, index)
    }
}
