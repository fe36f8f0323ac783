//! The kernel's debug console: a 16550 UART on COM1, polled for output.
//!
//! Every other use of the serial port belongs to a user-space driver; the
//! kernel keeps COM1 for its log and the bring-up `DebugWrite` syscall.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const LINE_STATUS_DATA_READY: u8 = 1;
const LINE_STATUS_TRANSMIT_EMPTY: u8 = 1 << 5;

/// The ISA interrupt line of COM1.
pub const COM1_ISA_IRQ: u8 = 4;

fn port(offset: u16) -> Port<u8> {
    Port::new(COM1 + offset)
}

/// Sets COM1 to 115200 baud, 8N1, FIFOs on, receive interrupt enabled.
pub fn init() {
    // SAFETY: COM1's registers are owned by the kernel console; these
    // writes follow the 16550 programming sequence and touch no memory.
    unsafe {
        port(INTERRUPT_ENABLE).write(0);
        port(LINE_CONTROL).write(0x80); // divisor latch on
        port(DATA).write(1); // divisor 1 = 115200 baud
        port(INTERRUPT_ENABLE).write(0);
        port(LINE_CONTROL).write(0x03); // 8 bits, no parity, one stop bit
        port(FIFO_CONTROL).write(0xc7);
        port(MODEM_CONTROL).write(0x0b); // DTR, RTS, OUT2 (IRQ gate)
        port(INTERRUPT_ENABLE).write(0x01); // received-data interrupt
    }
}

/// Writes bytes, waiting for the transmitter before each one.
pub fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        // SAFETY: reading the line status and writing the data register of
        // the kernel-owned COM1 has no effect on memory.
        unsafe {
            while port(LINE_STATUS).read() & LINE_STATUS_TRANSMIT_EMPTY == 0 {
                core::hint::spin_loop();
            }
            port(DATA).write(byte);
        }
    }
}

/// Takes one received byte, if the UART holds one.
pub fn read_byte() -> Option<u8> {
    // SAFETY: as in `write_bytes`; reading DATA pops the receive FIFO.
    unsafe { (port(LINE_STATUS).read() & LINE_STATUS_DATA_READY != 0).then(|| port(DATA).read()) }
}
