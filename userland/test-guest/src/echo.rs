//! The echo modes: the guest reads lines from COM1 and writes each back as
//! `echo: LINE`; the line `quit` ends it with status 0. `echo` halts until
//! COM1's received-data interrupt arrives (through I/O APIC pin 4, the PIC
//! masked); `echo-polled` polls the line status instead.

use crate::hardware::{self, inb, outb, write_str};
use vm_platform::COM1;

/// The longest line kept; the rest of a longer one is dropped.
const LINE_BYTES: usize = 128;

/// Echoes lines until `quit`; returns the exit status.
pub fn run(interrupts: bool) -> u8 {
    outb(COM1 + 2, 0x07); // FIFOs on and cleared, trigger at one byte
    if interrupts {
        hardware::install_idt();
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
        let index = 0x10 + vm_platform::COM1_INTERRUPT * 2;
        hardware::ioapic_write(index + 1, 0);
        hardware::ioapic_write(index, u32::from(hardware::SERIAL_VECTOR)); // fixed, edge, unmasked
        outb(COM1 + 4, 0x08); // OUT2
        outb(COM1 + 1, 0x01); // received data available
    }
    write_str("echo: ready\n");
    let mut line = [0u8; LINE_BYTES];
    let mut length = 0;
    loop {
        // Interrupts are off here, so one that arrives after the FIFO was
        // found empty waits for the STI before the HLT.
        while inb(COM1 + 5) & 0x01 == 0 {
            if interrupts {
                hardware::wait_for_interrupt();
            }
        }
        match inb(COM1) {
            b'\r' | b'\n' => {
                let text = core::str::from_utf8(&line[..length]).unwrap_or("(not UTF-8)");
                if text == "quit" {
                    return 0;
                }
                if length > 0 {
                    write_str("echo: ");
                    write_str(text);
                    write_str("\n");
                }
                length = 0;
            }
            byte => {
                if let Some(slot) = line.get_mut(length) {
                    *slot = byte;
                    length += 1;
                }
            }
        }
    }
}
