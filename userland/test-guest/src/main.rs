//! The test guest: a tiny 64-bit kernel the VMM boots as an ELF image. It
//! starts in long mode with the VMM's identity page tables and GDT (code
//! selector 0x08), runs one check per platform feature, prints `PASS name`
//! or `FAIL name: why` on COM1 for each, and ends through the exit port
//! with the number of failures as its status.

#![no_std]
#![no_main]

mod checks;
mod hardware;

use hardware::{outb, write_str};

/// The guest's entry point: the VMM jumps here with a stack.
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    write_str("test-guest: running\n");
    let failures = checks::run();
    write_str("test-guest: done\n");
    outb(vm_platform::EXIT_PORT, failures);
    hardware::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    write_str("FAIL panic: ");
    if let Some(location) = info.location() {
        write_str(location.file());
    }
    write_str("\n");
    outb(vm_platform::EXIT_PORT, 0xff);
    hardware::halt_forever()
}
