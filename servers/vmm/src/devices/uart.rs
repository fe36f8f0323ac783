//! A 16550 UART at COM1: what the guest writes goes to our console, a line
//! at a time with the guest's name in front; the scratch, line-control and
//! modem registers keep their values. Nothing is ever received (yet).
//!
//! Transmission is instant, so the transmitter is always empty: with its
//! interrupt enabled (IER bit 1) the UART asks for an interrupt after each
//! byte (and when the interrupt is enabled), until the guest reads the
//! interrupt identification or writes the next byte. OUT2 in the modem
//! control register gates the line, as on a PC.

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
    /// A transmitter-empty interrupt not yet identified.
    transmit_interrupt: bool,
    /// The line being written.
    line: Vec<u8>,
}

/// Line status: transmitter holding register and transmitter empty.
const TRANSMITTER_EMPTY: u8 = 0x60;
/// Line control: the divisor latch is accessed at offsets 0 and 1.
const DIVISOR_LATCH: u8 = 0x80;
/// Interrupt enable: transmitter holding register empty.
const TRANSMIT_EMPTY_INTERRUPT: u8 = 0x02;
/// Modem control: OUT2, which gates the interrupt line on a PC.
const OUT2: u8 = 0x08;

impl Uart {
    /// A port read at `offset` (0..8) from the base.
    pub fn read(&mut self, offset: u16) -> u8 {
        let latch = self.line_control & DIVISOR_LATCH != 0;
        match offset {
            0 if latch => self.divisor as u8,
            1 if latch => (self.divisor >> 8) as u8,
            0 => 0,
            1 => self.interrupt_enable,
            2 if self.transmit_interrupt && self.interrupt_enable & TRANSMIT_EMPTY_INTERRUPT != 0 => {
                self.transmit_interrupt = false;
                0x02
            }
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
            0 => {
                // The byte leaves at once: empty again.
                self.transmit_interrupt = true;
                return self.transmit(value);
            }
            1 => {
                if value & !self.interrupt_enable & TRANSMIT_EMPTY_INTERRUPT != 0 {
                    self.transmit_interrupt = true;
                }
                self.interrupt_enable = value & 0x0f;
            }
            3 => self.line_control = value,
            4 => self.modem_control = value,
            7 => self.scratch = value,
            _ => {}
        }
        None
    }

    /// The level of the interrupt line (ISA interrupt 4).
    pub fn interrupt_line(&self) -> bool {
        self.transmit_interrupt
            && self.interrupt_enable & TRANSMIT_EMPTY_INTERRUPT != 0
            && self.modem_control & OUT2 != 0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transmit_interrupt_follows_writes_and_identification() {
        let mut uart = Uart::default();
        uart.write(4, OUT2);
        assert!(!uart.interrupt_line());
        uart.write(1, TRANSMIT_EMPTY_INTERRUPT);
        assert!(uart.interrupt_line(), "enabling with the transmitter empty");
        assert_eq!(uart.read(2), 0x02);
        assert!(!uart.interrupt_line());
        assert_eq!(uart.read(2), 0x01);
        assert_eq!(uart.write(0, b'x'), None);
        assert!(uart.interrupt_line());
        uart.write(4, 0);
        assert!(!uart.interrupt_line(), "OUT2 gates the line");
        assert_eq!(uart.write(0, b'\n'), Some(String::from("x")));
    }
}
