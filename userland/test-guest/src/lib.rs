//! What the guests built here share: port I/O and the serial console
//! (COM1, polled). The test guest's binary and the multiboot guest use it.

#![no_std]

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O in the guest's own (virtual) machine; it touches no
    // memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes text to COM1, waiting for the transmitter each byte.
pub fn write_str(text: &str) {
    for byte in text.bytes() {
        while inb(vm_platform::COM1 + 5) & 0x20 == 0 {}
        outb(vm_platform::COM1, byte);
    }
}

/// Writes `value` in hexadecimal to COM1.
pub fn write_hex(value: u64) {
    let digits = b"0123456789abcdef";
    let mut text = [0u8; 18];
    text[0] = b'0';
    text[1] = b'x';
    for (index, byte) in text[2..].iter_mut().enumerate() {
        *byte = digits[((value >> (60 - 4 * index)) & 0xf) as usize];
    }
    write_str(core::str::from_utf8(&text).unwrap_or("?"));
}


/// Prints `PASS name` or `FAIL name: why` for a check's result; returns
/// whether it passed.
pub fn report(name: &str, result: Result<(), &str>) -> bool {
    match result {
        Ok(()) => {
            write_str("PASS ");
            write_str(name);
            write_str("\n");
            true
        }
        Err(why) => {
            write_str("FAIL ");
            write_str(name);
            write_str(": ");
            write_str(why);
            write_str("\n");
            false
        }
    }
}
