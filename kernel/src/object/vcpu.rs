//! Vcpu: a virtual CPU, its hardware control block, its guest FPU state,
//! and what it is bound to (a guest memory and the VMM's state page).
//!
//! Like a thread, a vcpu keeps its own copies of the capabilities it was
//! bound with, in a small CSpace of its own, so the guest memory and the
//! state page live as long as it does and a revoke of the originals takes
//! them away.

use crate::arch::fpu::FpuState;
use crate::arch::virt::Hardware;
use kernel_core::capability_table::{CSpaceId, SlotRef};
use x86_64::structures::paging::PhysFrame;

/// Slots of [`Vcpu::references`].
pub mod reference {
    /// The guest memory.
    pub const GUEST_MEMORY: u32 = 1;
    /// The state page's frame.
    pub const STATE_PAGE: u32 = 2;
    /// Slots in the reference CSpace.
    pub const SLOTS: u32 = 3;
}

/// What a configured vcpu runs with.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    /// The guest memory, by id.
    pub guest_memory: u32,
    /// The frame holding the [`abi::vcpu::VcpuState`].
    pub state_page: PhysFrame,
}

/// A virtual CPU.
pub struct Vcpu {
    /// The VMCB or VMCS.
    pub hardware: Hardware,
    /// The guest's x87/SSE registers, loaded only while it runs.
    pub fpu: FpuState,
    /// Set by `VcpuConfigure`.
    pub binding: Option<Binding>,
    /// The guest memory generation it last ran with.
    pub seen_generation: Option<u64>,
    /// This vcpu's private CSpace holding its binding's capabilities.
    pub references: CSpaceId,
    /// The pool that paid for it.
    pub pool: u32,
}

impl Vcpu {
    /// A slot of its reference CSpace.
    pub fn reference_slot(&self, index: u32) -> SlotRef {
        SlotRef::new(self.references, index)
    }
}
