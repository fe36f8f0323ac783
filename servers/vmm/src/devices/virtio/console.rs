//! The virtio console (type 3): one port, no multiport, no size. The
//! transmit queue's bytes go to our console a line at a time, as the
//! UART's do; the receive queue takes what is typed for the guest.
//!
//! A guest has one input stream (`vm console`). It goes to COM1 until the
//! guest has written to this console, and from then on here, until the
//! driver resets the device: a guest whose shell runs on `hvc0` gets what
//! is typed, and one that only loaded the driver keeps its serial shell.

use super::queue::{Chain, QueueError};
use super::{Device, GuestRam, identity};
use crate::devices::output_line::OutputLine;
use crate::devices::pci::Identity;
use crate::input::Input;
use alloc::string::String;
use alloc::vec::Vec;

/// The receive queue's index.
pub const RECEIVE_QUEUE: usize = 0;
/// The transmit queue's index.
pub const TRANSMIT_QUEUE: usize = 1;
/// Each queue's size.
const QUEUE_SIZE: u16 = 64;
/// The most bytes read from a transmit chain at a time.
const TRANSMIT_CHUNK: u64 = 4096;
/// The configuration: columns, rows, the most ports, the emergency write
/// register; none offered, all zero.
const CONFIGURATION_BYTES: usize = 12;

/// The console's state.
#[derive(Default)]
pub struct Console {
    line: OutputLine,
    /// The guest has written here since the driver last reset it.
    used: bool,
}

impl Console {
    /// Takes the bytes of transmit `chain` and returns the lines they
    /// finish; the chain goes back with nothing written.
    ///
    /// # Errors
    /// [`QueueError::Request`] if its buffers are not in RAM.
    pub fn transmit(&mut self, chain: &Chain, ram: &dyn GuestRam, lines: &mut Vec<String>) -> Result<u32, QueueError> {
        let length = chain.readable_bytes();
        let mut bytes = Vec::new();
        for start in (0..length).step_by(TRANSMIT_CHUNK as usize) {
            bytes.resize((length - start).min(TRANSMIT_CHUNK) as usize, 0);
            chain
                .read(ram, start, &mut bytes)
                .map_err(|_| QueueError::Request("a console buffer is not in RAM"))?;
            lines.extend(bytes.iter().filter_map(|byte| self.line.push(*byte)));
        }
        self.used |= length != 0;
        Ok(0)
    }

    /// Fills receive `chain` from `input`; `None` (the chain stays for
    /// later) when nothing waits.
    ///
    /// # Errors
    /// [`QueueError::Request`] if its buffers are not in RAM.
    pub fn receive(chain: &Chain, ram: &dyn GuestRam, input: &mut Input) -> Result<Option<u32>, QueueError> {
        if input.is_empty() {
            return Ok(None);
        }
        let room = usize::try_from(chain.writable_bytes()).unwrap_or(usize::MAX);
        let bytes: Vec<u8> = input.take(room).collect();
        chain
            .write(ram, 0, &bytes)
            .map_err(|_| QueueError::Request("a console buffer is not in RAM"))?;
        Ok(Some(bytes.len() as u32))
    }

    /// Whether input goes here rather than to COM1: the guest has written
    /// here since the driver set the device up.
    pub fn used(&self) -> bool {
        self.used
    }

    /// The unfinished line, if there is one.
    pub fn flush(&mut self) -> Option<String> {
        self.line.take()
    }
}

impl Device for Console {
    /// A communication controller.
    const IDENTITY: Identity = identity(
        virtio::transitional_device_id::CONSOLE,
        virtio::device_type::CONSOLE,
        [0x07, 0x80, 0x00],
    );
    const QUEUE_SIZES: &'static [u16] = &[QUEUE_SIZE, QUEUE_SIZE];

    fn features(&self) -> u32 {
        0
    }

    fn configuration(&self) -> Vec<u8> {
        alloc::vec![0; CONFIGURATION_BYTES]
    }

    /// Input goes back to COM1.
    fn reset(&mut self) {
        self.used = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Buffer;
    use super::super::tests::Ram;
    use super::*;

    #[test]
    fn transmitted_bytes_make_lines_and_received_ones_fill_buffers() {
        let ram = Ram::new(0x4000);
        ram.write(0x1000, b"hello\r\nwor").unwrap();
        ram.write(0x2000, b"ld\n$ ").unwrap();
        let mut console = Console::default();
        assert!(!console.used());
        let mut lines = Vec::new();
        let chain = Chain {
            head: 0,
            readable: alloc::vec![Buffer { address: 0x1000, length: 10 }, Buffer { address: 0x2000, length: 5 }],
            writable: alloc::vec![],
        };
        assert_eq!(console.transmit(&chain, &ram, &mut lines), Ok(0));
        assert_eq!(lines, ["hello", "world"]);
        assert!(console.used());
        assert_eq!(console.flush().as_deref(), Some("$ "));

        let mut input = Input::new();
        let receive = Chain {
            head: 1,
            readable: alloc::vec![],
            writable: alloc::vec![Buffer { address: 0x3000, length: 4 }],
        };
        assert_eq!(Console::receive(&receive, &ram, &mut input), Ok(None), "nothing typed");
        input.offer(b"ls -l\n").unwrap();
        assert_eq!(Console::receive(&receive, &ram, &mut input), Ok(Some(4)));
        let mut seen = [0; 4];
        ram.read(0x3000, &mut seen).unwrap();
        assert_eq!(&seen, b"ls -");
        assert_eq!(input.len(), 2, "the rest waits for the next buffer");
        console.reset();
        assert!(!console.used());
    }
}
