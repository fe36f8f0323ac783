//! A 16550 UART at COM1: what the guest writes goes to our console, a line
//! at a time with the guest's name in front; the scratch, line-control and
//! modem registers keep their values. Nothing is ever received (yet).

use alloc::string::String;
use alloc::vec::Vec;

/// COM1's registers.
#[derive(Default)]
pub struct Uart {
    interrupt_enable: u8,
    line_control: u8,
    modem_control: u8,
    scratch: u8,
    divisor: u16,
    /// The line being written.
    line: Vec<u8>,
}

/// Line status: transmitter holding register and transmitter empty.
const TRANSMITTER_EMPTY: u8 = 0x60;
/// Line control: the divisor latch is accessed at offsets 0 and 1.
const DIVISOR_LATCH: u8 = 0x80;

impl Uart {
    /// A port read at `offset` (0..8) from the base.
    pub fn read(&self, offset: u16) -> u8 {
        let latch = self.line_control & DIVISOR_LATCH != 0;
        match offset {
            0 if latch => self.divisor as u8,
            1 if latch => (self.divisor >> 8) as u8,
            0 => 0,
            1 => self.interrupt_enable,
            2 => 0x01, // no interrupt pending
            3 => self.line_control,
            4 => self.modem_control,
            5 => TRANSMITTER_EMPTY,
            6 => 0xb0, // carrier detect, data set ready, clear to send
            _ => self.scratch,
        }
    }

    /// A port write at `offset`; returns a finished line of output.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<String> {
        let latch = self.line_control & DIVISOR_LATCH != 0;
        match offset {
            0 if latch => self.divisor = (self.divisor & 0xff00) | u16::from(value),
            1 if latch => self.divisor = (self.divisor & 0x00ff) | (u16::from(value) << 8),
            0 => return self.transmit(value),
            1 => self.interrupt_enable = value & 0x0f,
            3 => self.line_control = value,
            4 => self.modem_control = value,
            7 => self.scratch = value,
            _ => {}
        }
        None
    }

    /// Takes a transmitted byte; a newline (or a full line) finishes one.
    pub fn transmit(&mut self, byte: u8) -> Option<String> {
        if byte == b'\n' || self.line.len() >= 200 {
            if byte != b'\n' {
                self.line.push(byte);
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            return Some(line);
        }
        if byte != b'\r' {
            self.line.push(byte);
        }
        None
    }
}
