//! Per-CPU state, reached through the GS base.
//!
//! The entry stubs read these fields at fixed offsets from `%gs`, so the
//! layout is `repr(C)` and the stubs take the offsets from `offset_of!`.
//! There is one CPU today; the structure is where a second one's state goes.

use core::cell::UnsafeCell;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};

/// What the entry stubs and the scheduler need to find per CPU.
#[repr(C)]
pub struct PerCpu {
    /// Top of this CPU's kernel stack, loaded on every entry.
    pub kernel_stack_top: u64,
    /// Just past the current thread's saved registers (also in TSS.RSP0).
    pub context_top: u64,
    /// The user stack pointer, parked by the SYSCALL entry.
    pub user_rsp: u64,
}

struct PerCpuCell(UnsafeCell<PerCpu>);

// SAFETY: one CPU, and the kernel runs with interrupts off, so accesses are
// never concurrent.
unsafe impl Sync for PerCpuCell {}

static BOOT_CPU: PerCpuCell = PerCpuCell(UnsafeCell::new(PerCpu {
    kernel_stack_top: 0,
    context_top: 0,
    user_rsp: 0,
}));

/// Points GS at the boot CPU's state and records its kernel stack.
pub fn init(kernel_stack_top: VirtAddr) {
    let per_cpu = BOOT_CPU.0.get();
    // SAFETY: nothing else touches the per-CPU state before this call.
    unsafe { (*per_cpu).kernel_stack_top = kernel_stack_top.as_u64() };
    GsBase::write(VirtAddr::from_ptr(per_cpu));
    // The user's GS base, swapped in on the way out; user code starts at 0.
    KernelGsBase::write(VirtAddr::zero());
}

/// Makes `context_top` (the end of a thread's saved registers) the place
/// the next kernel entry from user mode saves to.
pub fn set_context_top(top: VirtAddr) {
    // SAFETY: a plain store; see the `Sync` impl for why it cannot race.
    unsafe { (*BOOT_CPU.0.get()).context_top = top.as_u64() };
    super::gdt::set_kernel_entry_stack(top);
}
