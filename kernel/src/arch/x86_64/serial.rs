//! The kernel's debug console: a 16550 UART on COM1, written by polling.
//!
//! The port belongs to the user-space serial driver, which reads it; the
//! kernel only writes its log and bring-up output there. It leaves the
//! FIFOs off and never reads: switching the FIFOs on discards what was
//! typed before the driver started, and reading would take the driver's
//! input.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const LINE_STATUS_TRANSMIT_EMPTY: u8 = 1 << 5;
/// Holding and shift registers both empty: the last byte has left.
const LINE_STATUS_IDLE: u8 = 1 << 6;

fn port(offset: u16) -> Port<u8> {
    Port::new(COM1 + offset)
}

/// Sets COM1 to 115200 baud, 8N1, interrupts off (the driver turns on the
/// ones it wants).
pub fn init() {
    // SAFETY: COM1's registers; these writes follow the 16550 programming
    // sequence and touch no memory.
    unsafe {
        port(INTERRUPT_ENABLE).write(0);
        port(LINE_CONTROL).write(0x80); // divisor latch on
        port(DATA).write(1); // divisor 1 = 115200 baud
        port(INTERRUPT_ENABLE).write(0);
        port(LINE_CONTROL).write(0x03); // 8 bits, no parity, one stop bit
        port(MODEM_CONTROL).write(0x0b); // DTR, RTS, OUT2 (IRQ gate)
    }
}

/// Writes bytes, waiting for the transmitter before each one.
pub fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        // SAFETY: reading the line status and writing the data register of
        // COM1 has no effect on memory.
        unsafe {
            while port(LINE_STATUS).read() & LINE_STATUS_TRANSMIT_EMPTY == 0 {
                core::hint::spin_loop();
            }
            port(DATA).write(byte);
        }
    }
}

/// Waits until the last byte written has left the UART (before the machine
/// stops: an emulator that ends at once would drop it).
pub fn drain() {
    // SAFETY: reading COM1's line status has no effect on memory.
    while unsafe { port(LINE_STATUS).read() } & LINE_STATUS_IDLE == 0 {
        core::hint::spin_loop();
    }
}
