//! x87/SSE: switched on at boot, saved and restored per thread, lazily:
//! only when a thread that does not own the FPU uses it.

use core::arch::asm;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// Default x87 control word: all exceptions masked, 64-bit precision.
const DEFAULT_FCW: u16 = 0x037f;
/// Default MXCSR: all SSE exceptions masked.
const DEFAULT_MXCSR: u32 = 0x1f80;

/// Turns on the FPU and SSE for the whole system.
pub fn init() {
    // SAFETY: sets the documented bits that enable x87 and SSE; the kernel
    // itself is built without SSE, so nothing depends on the old values.
    unsafe {
        Cr0::update(|flags| {
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            flags.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|flags| flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// Makes the next x87/SSE instruction trap with `device not available`
/// (CR0.TS), or stops it doing so.
pub fn trap_next_use(trap: bool) {
    let on = Cr0::read().contains(Cr0Flags::TASK_SWITCHED);
    if on == trap {
        return;
    }
    // SAFETY: TS only decides whether FPU instructions trap; the kernel
    // itself uses none (it is built without SSE), and FXSAVE/FXRSTOR run
    // only after `trap_next_use(false)`.
    unsafe {
        Cr0::update(|flags| flags.set(Cr0Flags::TASK_SWITCHED, trap));
    }
}

/// A thread's x87 and SSE registers, in the FXSAVE layout.
#[repr(C, align(16))]
pub struct FpuState([u8; 512]);

impl FpuState {
    /// The state a new thread starts with: empty stack, exceptions masked.
    pub fn new() -> Self {
        let mut area = [0; 512];
        area[0..2].copy_from_slice(&DEFAULT_FCW.to_le_bytes());
        area[24..28].copy_from_slice(&DEFAULT_MXCSR.to_le_bytes());
        Self(area)
    }

    /// Saves the CPU's current x87/SSE registers here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes and 16-byte aligned, as FXSAVE
        // needs; SSE is on (`init`).
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    /// Loads these registers into the CPU.
    pub fn restore(&self) {
        // SAFETY: as in `save`; the area holds either `new`'s valid default
        // or what FXSAVE wrote, so FXRSTOR cannot fault on reserved MXCSR bits.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly)) };
    }
}
