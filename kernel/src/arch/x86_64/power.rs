//! Stopping the machine and reporting how the run ended.

use abi::debug_exit::{Outcome, PORT};
use x86_64::instructions::port::Port;

/// Reports `outcome` to the emulator's exit device and halts forever (on
/// hardware without the device, halting is all that happens).
pub fn exit(outcome: Outcome) -> ! {
    // SAFETY: writing the exit device's port has no effect on memory; on a
    // machine without it the write goes nowhere.
    unsafe { Port::<u32>::new(PORT).write(outcome.code()) };
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
