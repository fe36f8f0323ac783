//! The test guest: a tiny 64-bit kernel the VMM boots as an ELF image. It
//! starts in long mode with the VMM's identity page tables and GDT (code
//! selector 0x08) and its command line in `rdi`/`rsi`. Each word without
//! `=` names a mode, and the modes run in order (`checks echo` runs the
//! checks, then echoes until `quit`); the first mode that fails gives the
//! exit status. The modes:
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
    let mut modes = words.filter(|word| !word.contains('=')).peekable();
    let status = if modes.peek().is_none() {
        run("checks", ram_mib)
    } else {
        modes.map(|mode| run(mode, ram_mib)).find(|&status| status != 0).unwrap_or(0)
    };
    write_str("test-guest: done\n");
    outb(vm_platform::EXIT_PORT, status);
    hardware::halt_forever()
}

/// Runs one mode; returns its status (0 when it passed).
fn run(mode: &str, ram_mib: Option<u32>) -> u8 {
    write_str("test-guest: running ");
    write_str(mode);
    write_str("\n");
    match mode {
        "checks" => checks::run(ram_mib),
        "echo" => echo::run(true),
        "echo-polled" => echo::run(false),
        other => hostile::run(other),
    }
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
