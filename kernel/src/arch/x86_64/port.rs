//! Port I/O on behalf of a driver whose capability covers the port.

use core::arch::asm;
use x86_64::instructions::port::Port;

/// Reads `width` (1, 2 or 4) bytes from `port`.
pub fn read(port: u16, width: u8) -> u64 {
    // SAFETY: the caller checked the port against an I/O-ports capability
    // that excludes the kernel's own ports; port reads touch no memory.
    unsafe {
        match width {
            1 => u64::from(Port::<u8>::new(port).read()),
            2 => u64::from(Port::<u16>::new(port).read()),
            _ => u64::from(Port::<u32>::new(port).read()),
        }
    }
}

/// Writes the low `width` (1, 2 or 4) bytes of `value` to `port`.
pub fn write(port: u16, width: u8, value: u64) {
    // SAFETY: as in `read`.
    unsafe {
        match width {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            _ => Port::<u32>::new(port).write(value as u32),
        }
    }
}

/// Reads `port` once for every `width`-byte item of `items` (x86's INS),
/// as a device's data register is drained. `items.len()` is a multiple of
/// `width`.
pub fn read_string(port: u16, width: u8, items: &mut [u8]) {
    let count = items.len() / usize::from(width);
    let destination = items.as_mut_ptr();
    // SAFETY: as in `read`; INS stores `count` items of `width` bytes at
    // `destination`, all inside `items`. The direction flag is clear in
    // the kernel (SYSCALL's mask and the entry stubs clear it).
    unsafe {
        match width {
            1 => asm!("rep insb", inout("rdi") destination => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags)),
            2 => asm!("rep insw", inout("rdi") destination => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags)),
            _ => asm!("rep insd", inout("rdi") destination => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags)),
        }
    }
}

/// Writes every `width`-byte item of `items` to `port` in turn (x86's
/// OUTS). `items.len()` is a multiple of `width`.
pub fn write_string(port: u16, width: u8, items: &[u8]) {
    let count = items.len() / usize::from(width);
    let source = items.as_ptr();
    // SAFETY: as in `read_string`; OUTS only reads `items`.
    unsafe {
        match width {
            1 => asm!("rep outsb", inout("rsi") source => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags, readonly)),
            2 => asm!("rep outsw", inout("rsi") source => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags, readonly)),
            _ => asm!("rep outsd", inout("rsi") source => _, inout("rcx") count => _, in("dx") port, options(nostack, preserves_flags, readonly)),
        }
    }
}
