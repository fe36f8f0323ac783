//! The test guest: a tiny 64-bit kernel the VMM boots as an ELF image. It
//! starts in long mode with the VMM's identity page tables and GDT (code
//! selector 0x08) and its command line in `rdi`/`rsi`, which picks what it
//! does:
//! - nothing (or `checks`): one check per platform feature, each printing
//!   `PASS name` or `FAIL name: why` on COM1, then it ends through the exit
//!   port with the number of failures as its status; `ram-mib=N` anywhere
//!   on the command line tells the checks the RAM `vm start -m` gave;
//! - `echo` or `echo-polled` ([`echo`]): lines typed on COM1 come back
//!   as `echo: LINE` until `quit`, which ends it with status 0;
//! - a hostile behaviour ([`hostile`]) the VMM and the kernel must survive.

#![no_std]
#![no_main]

mod checks;
mod echo;
mod hardware;
mod hostile;

use hardware::{outb, write_str};

/// The guest's entry point: the VMM jumps here with a stack and the
/// command line.
#[unsafe(no_mangle)]
extern "C" fn _start(arguments: *const u8, length: usize) -> ! {
    // SAFETY: the VMM put `length` bytes of command line at `arguments`,
    // inside the identity-mapped RAM, and nothing writes them.
    let command_line = unsafe { core::slice::from_raw_parts(arguments, length.min(vm_platform::MAX_ARGUMENTS)) };
    let words = core::str::from_utf8(command_line).unwrap_or("").split_whitespace();
    let ram_mib = words
        .clone()
        .find_map(|word| word.strip_prefix("ram-mib=")?.parse().ok());
    let mode = words.clone().find(|word| !word.contains('=')).unwrap_or("checks");
    write_str("test-guest: running ");
    write_str(mode);
    write_str("\n");
    let status = match mode {
        "checks" => checks::run(ram_mib),
        "echo" => echo::run(true),
        "echo-polled" => echo::run(false),
        other => hostile::run(other),
    };
    write_str("test-guest: done\n");
    outb(vm_platform::EXIT_PORT, status);
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
