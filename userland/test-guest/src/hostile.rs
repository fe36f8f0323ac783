//! Hostile guests: what a broken or malicious guest might do. The VMM must
//! stop the guest (or shrug it off) and the host and other guests must
//! carry on.

use crate::checks;
use crate::hardware::{self, write_str};
use core::arch::asm;

/// Runs hostile behaviour `mode`; returns the status to exit with, if the
/// guest is still running afterwards.
pub fn run(mode: &str) -> u8 {
    match mode {
        "triple-fault" => triple_fault(),
        "mmio-unmapped" => {
            // No device and no RAM here: the VMM stops the guest.
            let value = hardware::mmio_read(0xe000_0000);
            write_str("FAIL mmio-unmapped: a read of unmapped space returned\n");
            value as u8 | 1
        }
        "garbage-hypercalls" => garbage_hypercalls(),
        "interrupt-storm" => interrupt_storm(),
        "wild-page-tables" => wild_page_tables(),
        _ => {
            write_str("FAIL unknown mode\n");
            0xfd
        }
    }
}

/// An empty IDT and an exception: #GP on the breakpoint, #DF on the #GP,
/// then shutdown.
fn triple_fault() -> u8 {
    let pointer: [u64; 2] = [0, 0];
    // SAFETY: deliberately fatal: with a zero-length IDT every exception
    // escalates to a triple fault, which is the test.
    unsafe {
        asm!("lidt [{}]", "int3", in(reg) pointer.as_ptr(), options(nostack));
    }
    write_str("FAIL triple-fault: still running\n");
    1
}

/// Ten thousand hypercalls with made-up numbers and arguments, then the
/// checks: the VMM answers each with UNKNOWN (or a real answer) and goes on.
fn garbage_hypercalls() -> u8 {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Skip the console hypercall: garbage there is only noise.
        let number = if seed % 7 == vm_platform::hypercall::CONSOLE_WRITE {
            seed
        } else {
            seed % 7
        };
        hardware::hypercall(number, seed.rotate_left(17));
    }
    write_str("PASS garbage-hypercalls\n");
    checks::run(None)
}

/// The PIT at its fastest and interrupts on, for ever: a new interrupt is
/// always pending, so the guest lives in its timer handler. The VMM must
/// keep up as it can, and the host must keep its CPU for everyone else,
/// until the guest is stopped.
fn interrupt_storm() -> u8 {
    hardware::install_idt();
    hardware::start_pit(1_193_182 / 2);
    loop {
        hardware::wait_for_interrupt();
    }
}

/// Page tables that map a virtual page to a guest-physical address far past
/// RAM (where the host might keep anything); a read there must reach no
/// memory: the VMM stops the guest.
fn wild_page_tables() -> u8 {
    // Identity tables from the VMM: PML4 at 0x1000, PDPT at 0x2000. Point
    // PDPT entry 5 (virtual 5 GiB) at a 1 GiB page at 64 GiB.
    let pdpt = 0x2000 as *mut u64;
    // SAFETY: the VMM's page tables are in the guest's own RAM; changing
    // them is the guest's business, and the point of the test. CR3 is
    // reloaded so the new entry is used.
    unsafe {
        pdpt.add(5).write_volatile((64 << 30) | 0x83);
        asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
    }
    let value = hardware::mmio_read(5 << 30);
    write_str("FAIL wild-page-tables: read memory it was not given: ");
    hardware::write_hex(u64::from(value));
    write_str("\n");
    1
}
