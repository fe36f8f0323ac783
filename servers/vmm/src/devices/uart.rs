//! A 16550 UART at COM1: what the guest writes goes to our console, a line
//! at a time with the guest's name in front; what the console sends the
//! guest ([`Uart::receive`]) waits in the receive FIFO for the guest to
//! read. The scratch, line-control and modem registers keep their values.
//!
//! Transmission is instant, so the transmitter is always empty: with its
//! interrupt enabled (IER bit 1) the UART asks for an interrupt after each
//! byte (and when the interrupt is enabled), until the guest reads the
//! interrupt identification or writes the next byte.
//!
//! Reception: the FIFO holds 16 bytes once enabled through the FIFO
//! control register, one (the 16450's holding register) before. A byte
//! that finds it full is lost and sets the overrun bit. With IER bit 0 the
//! UART asks for an interrupt while the FIFO holds data: "received data
//! available" (identification 0x04) at or above the trigger level, the
//! "character timeout" (0x0C) below it, since input arrives in bursts and
//! no more is on its way. With IER bit 2 an overrun asks for one too
//! (0x06) until the guest reads the line status. The identification
//! reports the highest-priority cause: line status, then received data,
//! then the transmitter. OUT2 in the modem control register gates the
//! line, as on a PC.

use super::output_line::OutputLine;
use alloc::collections::VecDeque;
use alloc::string::String;

/// The 16550's receive FIFO.
pub const FIFO_BYTES: usize = 16;

/// COM1's registers.
#[derive(Default)]
pub struct Uart {
    interrupt_enable: u8,
    line_control: u8,
    modem_control: u8,
    scratch: u8,
    divisor: u16,
    /// FIFO control: enable (bit 0) and the receive trigger level (bits
    /// 6 and 7).
    fifo_control: u8,
    /// A transmitter-empty interrupt not yet identified.
    transmit_interrupt: bool,
    /// A received byte was lost since the guest last read the line status.
    overrun: bool,
    /// Received bytes the guest has not read.
    received: VecDeque<u8>,
    /// The line being written.
    line: OutputLine,
}

/// Line status: data ready.
const DATA_READY: u8 = 0x01;
/// Line status: overrun error.
const OVERRUN: u8 = 0x02;
/// Line status: transmitter holding register and transmitter empty.
const TRANSMITTER_EMPTY: u8 = 0x60;
/// Line control: the divisor latch is accessed at offsets 0 and 1.
const DIVISOR_LATCH: u8 = 0x80;
/// Interrupt enable: received data available.
const RECEIVE_INTERRUPT: u8 = 0x01;
/// Interrupt enable: transmitter holding register empty.
const TRANSMIT_EMPTY_INTERRUPT: u8 = 0x02;
/// Interrupt enable: receiver line status.
const LINE_STATUS_INTERRUPT: u8 = 0x04;
/// FIFO control: FIFOs enabled.
const FIFO_ENABLE: u8 = 0x01;
/// FIFO control: clear the receive FIFO.
const CLEAR_RECEIVE: u8 = 0x02;
/// FIFO control: the receive trigger level's bits.
const TRIGGER_LEVEL: u8 = 0xc0;
/// Interrupt identification: the FIFOs are enabled.
const FIFOS_ENABLED: u8 = 0xc0;
/// Modem control: OUT2, which gates the interrupt line on a PC.
const OUT2: u8 = 0x08;

/// Why the UART asks for an interrupt, highest priority first; the values
/// are the identification register's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Cause {
    LineStatus = 0x06,
    ReceivedData = 0x04,
    CharacterTimeout = 0x0c,
    TransmitterEmpty = 0x02,
}

impl Uart {
    /// A port read at `offset` (0..8) from the base.
    pub fn read(&mut self, offset: u16) -> u8 {
        let latch = self.line_control & DIVISOR_LATCH != 0;
        match offset {
            0 if latch => self.divisor as u8,
            1 if latch => (self.divisor >> 8) as u8,
            0 => self.received.pop_front().unwrap_or(0),
            1 => self.interrupt_enable,
            2 => {
                let fifos = if self.fifo_enabled() { FIFOS_ENABLED } else { 0 };
                match self.cause() {
                    Some(cause) => {
                        // Identifying the transmitter's interrupt clears it;
                        // the others last until their cause goes.
                        if cause == Cause::TransmitterEmpty {
                            self.transmit_interrupt = false;
                        }
                        fifos | cause as u8
                    }
                    None => fifos | 0x01, // no interrupt pending
                }
            }
            3 => self.line_control,
            4 => self.modem_control,
            5 => {
                let overrun = if core::mem::take(&mut self.overrun) { OVERRUN } else { 0 };
                let ready = if self.received.is_empty() { 0 } else { DATA_READY };
                TRANSMITTER_EMPTY | overrun | ready
            }
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
            2 => {
                // Turning the FIFOs on or off empties them, as does the
                // clear bit.
                if (value ^ self.fifo_control) & FIFO_ENABLE != 0 || value & CLEAR_RECEIVE != 0 {
                    self.received.clear();
                }
                self.fifo_control = value & (FIFO_ENABLE | TRIGGER_LEVEL);
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
        self.cause().is_some() && self.modem_control & OUT2 != 0
    }

    /// How many more bytes the receive FIFO takes.
    pub fn room(&self) -> usize {
        self.capacity().saturating_sub(self.received.len())
    }

    /// A byte arrives on the line. It is lost, and the overrun bit set, if
    /// the FIFO is full.
    pub fn receive(&mut self, byte: u8) {
        if self.room() == 0 {
            self.overrun = true;
        } else {
            self.received.push_back(byte);
        }
    }

    /// Takes a transmitted byte; a newline (or a full line) finishes one.
    pub fn transmit(&mut self, byte: u8) -> Option<String> {
        self.line.push(byte)
    }

    /// Takes the unfinished line, if there is one (see
    /// [`Devices::unfinished_line`](super::Devices::unfinished_line)).
    pub fn flush(&mut self) -> Option<String> {
        self.line.take()
    }

    fn fifo_enabled(&self) -> bool {
        self.fifo_control & FIFO_ENABLE != 0
    }

    /// The receive FIFO's size: one byte until the FIFOs are enabled.
    fn capacity(&self) -> usize {
        if self.fifo_enabled() { FIFO_BYTES } else { 1 }
    }

    /// The received-data interrupt's threshold: 1, 4, 8 or 14 bytes.
    fn trigger_level(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match self.fifo_control >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// The highest-priority interrupt the UART asks for, if any.
    fn cause(&self) -> Option<Cause> {
        let enabled = |bit: u8| self.interrupt_enable & bit != 0;
        if self.overrun && enabled(LINE_STATUS_INTERRUPT) {
            Some(Cause::LineStatus)
        } else if !self.received.is_empty() && enabled(RECEIVE_INTERRUPT) {
            Some(if self.received.len() >= self.trigger_level() {
                Cause::ReceivedData
            } else {
                Cause::CharacterTimeout
            })
        } else if self.transmit_interrupt && enabled(TRANSMIT_EMPTY_INTERRUPT) {
            Some(Cause::TransmitterEmpty)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newlines_and_a_flush_takes_the_rest() {
        let mut uart = Uart::default();
        assert_eq!(uart.flush(), None);
        for byte in b"hello\r" {
            assert_eq!(uart.write(0, *byte), None);
        }
        assert_eq!(uart.write(0, b'\n').as_deref(), Some("hello"));
        for byte in b"~ # " {
            uart.write(0, *byte);
        }
        assert_eq!(uart.flush().as_deref(), Some("~ # "));
        assert_eq!(uart.flush(), None, "taken once");
        assert_eq!(uart.write(0, b'\n').as_deref(), Some(""), "the next line starts afresh");
    }

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

    #[test]
    fn without_fifos_one_byte_is_held_and_the_next_overruns() {
        let mut uart = Uart::default();
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY);
        assert_eq!(uart.room(), 1);
        uart.receive(b'a');
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY | DATA_READY);
        uart.receive(b'b');
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY | DATA_READY | OVERRUN);
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY | DATA_READY, "reading clears the overrun");
        assert_eq!(uart.read(0), b'a');
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY);
        assert_eq!(uart.read(0), 0, "an empty holding register reads 0");
    }

    #[test]
    fn the_fifo_holds_sixteen_bytes_in_order_and_can_be_cleared() {
        let mut uart = Uart::default();
        uart.write(2, FIFO_ENABLE);
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x01);
        assert_eq!(uart.room(), FIFO_BYTES);
        for byte in 0..17u8 {
            uart.receive(byte);
        }
        assert_eq!(uart.room(), 0);
        assert_eq!(uart.read(5) & OVERRUN, OVERRUN, "the seventeenth byte is lost");
        for byte in 0..16u8 {
            assert_eq!(uart.read(5) & DATA_READY, DATA_READY);
            assert_eq!(uart.read(0), byte);
        }
        assert_eq!(uart.read(5) & DATA_READY, 0);
        uart.receive(b'x');
        uart.write(2, FIFO_ENABLE | CLEAR_RECEIVE);
        assert_eq!(uart.read(5) & DATA_READY, 0, "cleared");
        uart.receive(b'y');
        uart.write(2, 0);
        assert_eq!(uart.read(5) & DATA_READY, 0, "turning the FIFOs off empties them");
    }

    #[test]
    fn received_data_interrupts_until_read_and_goes_before_the_transmitter() {
        let mut uart = Uart::default();
        uart.write(4, OUT2);
        uart.write(2, FIFO_ENABLE | 0x40); // trigger at 4 bytes
        uart.write(1, RECEIVE_INTERRUPT | TRANSMIT_EMPTY_INTERRUPT);
        uart.receive(b'a');
        assert!(uart.interrupt_line());
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x0c, "below the trigger level: timeout");
        for byte in *b"bcd" {
            uart.receive(byte);
        }
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x04, "at the trigger level");
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x04, "identification does not clear it");
        for byte in *b"abcd" {
            assert_eq!(uart.read(0), byte);
        }
        assert!(uart.interrupt_line(), "the transmitter's interrupt was waiting");
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x02);
        assert!(!uart.interrupt_line());
        uart.receive(b'e');
        uart.write(1, TRANSMIT_EMPTY_INTERRUPT);
        assert_eq!(uart.read(2), FIFOS_ENABLED | 0x01, "receive interrupts disabled");
        assert!(!uart.interrupt_line());
    }

    #[test]
    fn an_overrun_interrupts_first_until_the_line_status_is_read() {
        let mut uart = Uart::default();
        uart.write(4, OUT2);
        uart.write(1, RECEIVE_INTERRUPT | LINE_STATUS_INTERRUPT);
        uart.receive(b'a');
        uart.receive(b'b');
        assert_eq!(uart.read(2), 0x06);
        assert_eq!(uart.read(5), TRANSMITTER_EMPTY | DATA_READY | OVERRUN);
        assert_eq!(uart.read(2), 0x04);
        assert_eq!(uart.read(0), b'a');
        assert!(!uart.interrupt_line());
    }
}
