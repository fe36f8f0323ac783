//! Port I/O on behalf of a driver whose capability covers the port.

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
