//! Stopping the machine and reporting how the run ended.

use abi::debug_exit::{BOCHS_SHUTDOWN, BOCHS_SHUTDOWN_PORT, Outcome, PORT, REPORT};
use x86_64::instructions::port::Port;

/// Reports `outcome` on the console and to the emulator (QEMU's exit
/// device, Bochs' shutdown port) and halts forever (on hardware without
/// either, halting is all that happens).
pub fn exit(outcome: Outcome) -> ! {
    log::info!("{REPORT}{}", outcome.name());
    super::serial::drain();
    // SAFETY: writing the exit device's port has no effect on memory; on a
    // machine without it the write goes nowhere.
    unsafe { Port::<u32>::new(PORT).write(outcome.code()) };
    for &byte in BOCHS_SHUTDOWN {
        // SAFETY: as above, for Bochs' shutdown port (QEMU has nothing there).
        unsafe { Port::<u8>::new(BOCHS_SHUTDOWN_PORT).write(byte) };
    }
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
