//! The emulated platform: which device answers each port and each
//! guest-physical address the guest's RAM does not cover.

pub mod pic;
pub mod pit;
pub mod uart;

use crate::clock::Nanoseconds;
use alloc::string::String;
use pic::Pic;
use pit::Pit;
use uart::Uart;
use vm_platform::{COM1, EXIT_PORT, TEST_DEVICE};

/// What a port write did besides changing device state.
pub enum Effect {
    /// Nothing else.
    None,
    /// A line of console output.
    Output(String),
    /// The guest asked to end, with this status.
    Exit(u8),
}

/// Every device of one guest.
#[derive(Default)]
pub struct Devices {
    /// COM1.
    pub uart: Uart,
    /// The interrupt controllers.
    pub pic: Pic,
    /// The interval timer.
    pub pit: Pit,
    /// The test device's register.
    test_register: u32,
}

impl Devices {
    /// A port read of `size` bytes (1, 2 or 4); ports nobody answers read
    /// as all ones, as on a real bus.
    pub fn port_read(&mut self, port: u16, size: u8, now: Nanoseconds) -> u32 {
        let byte = match port {
            _ if Pic::handles(port) => self.pic.read(port),
            _ if Pit::handles(port) => self.pit.read(port, now),
            COM1..=0x3ff => self.uart.read(port - COM1),
            _ => return all_ones(size),
        };
        u32::from(byte)
    }

    /// A port write; ports nobody answers ignore it.
    pub fn port_write(&mut self, port: u16, value: u32, now: Nanoseconds) -> Effect {
        let byte = value as u8;
        match port {
            _ if Pic::handles(port) => self.pic.write(port, byte),
            _ if Pit::handles(port) => self.pit.write(port, byte, now),
            COM1..=0x3ff => {
                if let Some(line) = self.uart.write(port - COM1, byte) {
                    return Effect::Output(line);
                }
            }
            EXIT_PORT => return Effect::Exit(byte),
            _ => {}
        }
        Effect::None
    }

    /// An MMIO read; `None` where no device is (the guest is stopped).
    pub fn mmio_read(&mut self, address: u64, size: u8) -> Option<u64> {
        match address.checked_sub(TEST_DEVICE)? {
            0 => Some(u64::from(self.test_register)),
            4 => Some(u64::from(!self.test_register)),
            offset if offset < 4096 => Some(u64::from(all_ones(size))),
            _ => None,
        }
    }

    /// An MMIO write; `None` where no device is.
    pub fn mmio_write(&mut self, address: u64, value: u64) -> Option<()> {
        match address.checked_sub(TEST_DEVICE)? {
            0 => self.test_register = value as u32,
            offset if offset < 4096 => {}
            _ => return None,
        }
        Some(())
    }

    /// Advances the timers to `now`, raising their interrupt lines.
    pub fn tick(&mut self, now: Nanoseconds) {
        if self.pit.poll_interrupt(now) {
            self.pic.pulse(0);
        }
    }

    /// When a timer next needs attention.
    pub fn next_deadline(&self) -> Option<Nanoseconds> {
        self.pit.next_interrupt()
    }
}

/// All ones in `size` bytes.
fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}
