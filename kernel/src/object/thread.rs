//! Thread: saved user registers, FPU/SSE state, and the address space it
//! runs in.

use super::address_space::AddressSpace;
use crate::arch::entry::TrapFrame;
use crate::arch::fpu::FpuState;
use crate::arch::gdt::{USER_CODE, USER_DATA};
use alloc::string::String;
use alloc::sync::Arc;
use x86_64::VirtAddr;

/// The interrupt flag, plus the always-one bit 1 of RFLAGS.
const INITIAL_RFLAGS: u64 = 0x202;

/// A user thread.
pub struct Thread {
    /// A name for reports (the program it runs).
    pub name: String,
    /// Registers saved on kernel entry; restored on the way out. Must stay
    /// at a fixed address while the thread is current (the entry stubs
    /// write it through the per-CPU `context_top`), hence threads are boxed.
    pub context: TrapFrame,
    /// x87/SSE registers, saved when another thread takes the CPU.
    pub fpu: FpuState,
    /// Where the thread runs.
    pub address_space: Arc<AddressSpace>,
}

impl Thread {
    /// A thread that will start at `entry` with stack pointer `stack_top`
    /// and `argument` in `rdi`.
    pub fn new(
        name: String,
        address_space: Arc<AddressSpace>,
        entry: VirtAddr,
        stack_top: VirtAddr,
        argument: u64,
    ) -> Self {
        let context = TrapFrame {
            rip: entry.as_u64(),
            rsp: stack_top.as_u64(),
            rdi: argument,
            cs: u64::from(USER_CODE),
            ss: u64::from(USER_DATA),
            rflags: INITIAL_RFLAGS,
            ..TrapFrame::default()
        };
        Self {
            name,
            context,
            fpu: FpuState::new(),
            address_space,
        }
    }

    /// The address just past the saved registers: where the next kernel
    /// entry from this thread starts pushing.
    pub fn context_top(&self) -> VirtAddr {
        VirtAddr::from_ptr(&self.context) + size_of::<TrapFrame>() as u64
    }
}
