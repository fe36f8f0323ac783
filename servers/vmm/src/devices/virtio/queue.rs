//! The split virtqueue (virtio 1.x, section 2.7) in its legacy layout,
//! walked in guest RAM: the descriptor table, the driver's available ring
//! and the device's used ring, all at guest-physical addresses the driver
//! chose.
//!
//! Everything in a queue is the guest's to write at any time, so nothing
//! read from it is trusted: the available index may not run more than the
//! queue's size ahead, every descriptor index is checked against the
//! size, a chain longer than the queue is a loop, a readable buffer after
//! a writable one breaks the chain's shape, indirect tables were not
//! offered, and every ring and buffer must lie inside RAM. Any of these is
//! a [`QueueError`], which the transport answers by marking the device as
//! needing a reset; nothing here panics on what the guest wrote.

use super::{GuestRam, OutsideRam};
use alloc::vec::Vec;
use virtio::queue::{ALIGNMENT, Descriptor, Layout, descriptor_flag};

/// The largest queue a device offers (legacy queues have a fixed size,
/// the one the device reports).
pub const MAX_SIZE: u16 = 256;
/// Available ring flag: the driver does not want an interrupt.
const NO_INTERRUPT: u16 = 1;

/// Why a queue cannot be used any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The available index is more than the queue's size ahead of what
    /// the device has taken.
    AvailableIndex {
        /// What the driver wrote.
        index: u16,
        /// What the device had taken.
        taken: u16,
    },
    /// A chain's head or `next` names a descriptor past the table's end.
    DescriptorIndex(u16),
    /// A chain has more descriptors than the queue: a loop.
    Loop,
    /// A buffer the device reads follows one it writes.
    ReadableAfterWritable,
    /// An indirect descriptor, which the device did not offer.
    Indirect,
    /// A chain's buffers do not make a request the device understands
    /// (too short for its header, no room for its status).
    Request(&'static str),
    /// A ring or buffer does not lie inside the guest's RAM.
    OutsideRam {
        /// Its guest-physical address.
        address: u64,
        /// Its length.
        length: u64,
    },
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::AvailableIndex { index, taken } => write!(
                f,
                "the available index {index} runs more than the queue's size ahead of {taken}"
            ),
            Self::DescriptorIndex(index) => write!(f, "descriptor {index} is past the table's end"),
            Self::Loop => write!(f, "a descriptor chain loops"),
            Self::ReadableAfterWritable => write!(f, "a readable buffer follows a writable one"),
            Self::Indirect => write!(f, "an indirect descriptor, which was not offered"),
            Self::Request(why) => write!(f, "a malformed request: {why}"),
            Self::OutsideRam { address, length } => {
                write!(f, "{length} bytes at {address:#x} are not in the guest's RAM")
            }
        }
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Its guest-physical address.
    pub address: u64,
    /// Its length in bytes.
    pub length: u32,
}

/// A descriptor chain taken from the available ring: the buffers the
/// device reads, then those it writes, each checked to lie in RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head's index, which goes back in the used ring.
    pub head: u16,
    /// The buffers the device reads, in order.
    pub readable: Vec<Buffer>,
    /// The buffers the device writes, in order.
    pub writable: Vec<Buffer>,
}

impl Chain {
    /// The bytes the device may read.
    pub fn readable_bytes(&self) -> u64 {
        total(&self.readable)
    }

    /// The bytes the device may write.
    pub fn writable_bytes(&self) -> u64 {
        total(&self.writable)
    }

    /// Reads `into.len()` bytes of the readable buffers, seen as one run
    /// of bytes, from `offset`.
    ///
    /// # Errors
    /// [`OutsideRam`] if the run is shorter (or RAM changed under it).
    pub fn read(&self, ram: &dyn GuestRam, offset: u64, into: &mut [u8]) -> Result<(), OutsideRam> {
        let mut done = 0;
        for (address, length) in pieces(&self.readable, offset, into.len() as u64)? {
            ram.read(address, &mut into[done..done + length])?;
            done += length;
        }
        Ok(())
    }

    /// Writes `from` into the writable buffers, seen as one run of bytes,
    /// at `offset`.
    ///
    /// # Errors
    /// [`OutsideRam`] if the run is shorter.
    pub fn write(&self, ram: &dyn GuestRam, offset: u64, from: &[u8]) -> Result<(), OutsideRam> {
        let mut done = 0;
        for (address, length) in pieces(&self.writable, offset, from.len() as u64)? {
            ram.write(address, &from[done..done + length])?;
            done += length;
        }
        Ok(())
    }
}

/// Checks that `length` bytes at `address` lie in `ram_bytes` of RAM.
fn inside(ram_bytes: u64, address: u64, length: u64) -> Result<(), QueueError> {
    match address.checked_add(length) {
        Some(end) if end <= ram_bytes => Ok(()),
        _ => Err(QueueError::OutsideRam { address, length }),
    }
}

/// The sum of the buffers' lengths.
fn total(buffers: &[Buffer]) -> u64 {
    buffers.iter().map(|buffer| u64::from(buffer.length)).sum()
}

/// The guest-physical pieces that hold `length` bytes from `offset` of
/// `buffers` seen as one run.
fn pieces(buffers: &[Buffer], mut offset: u64, length: u64) -> Result<Vec<(u64, usize)>, OutsideRam> {
    let mut left = length;
    let mut pieces = Vec::new();
    for buffer in buffers {
        if left == 0 {
            break;
        }
        let size = u64::from(buffer.length);
        if offset >= size {
            offset -= size;
            continue;
        }
        let take = (size - offset).min(left);
        pieces.push((buffer.address + offset, take as usize));
        left -= take;
        offset = 0;
    }
    if left == 0 { Ok(pieces) } else { Err(OutsideRam) }
}

/// A queue the driver has set up: where it starts and how it is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Its guest-physical address.
    start: u64,
    layout: Layout,
    /// The available ring's entries the device has taken (free-running).
    taken: u16,
    /// The used ring's index the device has published (free-running).
    used_index: u16,
}

impl Queue {
    /// A queue of `size` entries (a power of two up to [`MAX_SIZE`]) in
    /// the legacy layout from page `page` (its address over
    /// [`ALIGNMENT`]): the descriptor table, the available ring right
    /// after it, the used ring on the next aligned boundary.
    ///
    /// # Errors
    /// [`QueueError::OutsideRam`] if the queue does not lie in the
    /// guest's `ram_bytes` of RAM.
    pub fn legacy(ram_bytes: u64, size: u16, page: u32) -> Result<Self, QueueError> {
        debug_assert!(size.is_power_of_two() && size <= MAX_SIZE);
        let queue = Self {
            start: u64::from(page) * ALIGNMENT as u64,
            layout: Layout::legacy(size),
            taken: 0,
            used_index: 0,
        };
        inside(ram_bytes, queue.start, queue.layout.bytes() as u64)?;
        Ok(queue)
    }

    /// The guest-physical address of the queue's byte `offset`.
    fn address(&self, offset: usize) -> u64 {
        self.start + offset as u64
    }

    /// Reads a little-endian `u16` of the rings.
    fn load16(ram: &dyn GuestRam, address: u64) -> Result<u16, QueueError> {
        let mut bytes = [0; 2];
        ram.read(address, &mut bytes)
            .map_err(|OutsideRam| QueueError::OutsideRam { address, length: 2 })?;
        Ok(u16::from_le_bytes(bytes))
    }

    /// Whether the driver has made chains available that the device has
    /// not taken.
    ///
    /// # Errors
    /// As [`Self::peek`].
    pub fn has_available(&self, ram: &dyn GuestRam) -> Result<bool, QueueError> {
        Ok(self.available_count(ram)? != 0)
    }

    /// How many chains wait, checked against the queue's size.
    fn available_count(&self, ram: &dyn GuestRam) -> Result<u16, QueueError> {
        let index = Self::load16(ram, self.address(self.layout.available_index()))?;
        let count = index.wrapping_sub(self.taken);
        if count > self.layout.size() {
            return Err(QueueError::AvailableIndex {
                index,
                taken: self.taken,
            });
        }
        Ok(count)
    }

    /// Walks the next available chain, if there is one, without taking
    /// it: [`Self::consume`] does.
    ///
    /// # Errors
    /// [`QueueError`] when the ring or the chain is malformed: the queue
    /// is then unusable.
    pub fn peek(&self, ram: &dyn GuestRam) -> Result<Option<Chain>, QueueError> {
        if self.available_count(ram)? == 0 {
            return Ok(None);
        }
        let head = Self::load16(ram, self.address(self.layout.available_entry(self.taken)))?;
        self.walk(ram, head).map(Some)
    }

    /// Takes the chain [`Self::peek`] returned.
    pub fn consume(&mut self) {
        self.taken = self.taken.wrapping_add(1);
    }

    /// Follows the chain from descriptor `head`.
    fn walk(&self, ram: &dyn GuestRam, head: u16) -> Result<Chain, QueueError> {
        let mut chain = Chain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut index = head;
        for _ in 0..self.layout.size() {
            if index >= self.layout.size() {
                return Err(QueueError::DescriptorIndex(index));
            }
            let at = self.address(self.layout.descriptor(index));
            let mut bytes = [0; Descriptor::BYTES];
            ram.read(at, &mut bytes).map_err(|OutsideRam| QueueError::OutsideRam {
                address: at,
                length: Descriptor::BYTES as u64,
            })?;
            let descriptor = Descriptor::from_bytes(bytes);
            let buffer = Buffer {
                address: descriptor.address,
                length: descriptor.length,
            };
            if descriptor.flags & descriptor_flag::INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            inside(ram.size(), buffer.address, u64::from(buffer.length))?;
            if descriptor.flags & descriptor_flag::WRITE != 0 {
                chain.writable.push(buffer);
            } else if chain.writable.is_empty() {
                chain.readable.push(buffer);
            } else {
                return Err(QueueError::ReadableAfterWritable);
            }
            if descriptor.flags & descriptor_flag::NEXT == 0 {
                return Ok(chain);
            }
            index = descriptor.next;
        }
        Err(QueueError::Loop)
    }

    /// Returns chain `head` to the driver through the used ring, with
    /// `written` bytes written into its buffers.
    ///
    /// # Errors
    /// [`QueueError::OutsideRam`] if the used ring is not in RAM any more.
    pub fn push(&mut self, ram: &dyn GuestRam, head: u16, written: u32) -> Result<(), QueueError> {
        let entry = self.address(self.layout.used_element(self.used_index));
        let mut element = [0; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        let outside = |address, length| move |OutsideRam| QueueError::OutsideRam { address, length };
        ram.write(entry, &element).map_err(outside(entry, 8))?;
        self.used_index = self.used_index.wrapping_add(1);
        // The element is in place before the index that publishes it
        // (this thread is the vcpu's, which is not running meanwhile).
        let index = self.address(self.layout.used_index());
        ram.write(index, &self.used_index.to_le_bytes()).map_err(outside(index, 2))
    }

    /// Whether the driver wants an interrupt for used buffers (it has not
    /// set the available ring's no-interrupt flag).
    ///
    /// # Errors
    /// [`QueueError::OutsideRam`] if the ring is not in RAM any more.
    pub fn wants_interrupt(&self, ram: &dyn GuestRam) -> Result<bool, QueueError> {
        Ok(Self::load16(ram, self.address(self.layout.available_flags()))? & NO_INTERRUPT == 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::Ram;
    use super::*;

    /// Where the test queue lives (page 1).
    pub const PAGE: u32 = 1;
    pub const SIZE: u16 = 8;

    /// A driver's side of a queue in the legacy layout, for tests.
    pub struct Driver {
        start: u64,
        layout: Layout,
        next: u16,
    }

    impl Driver {
        /// The driver of a queue of `size` at page `page`.
        pub fn new(size: u16, page: u32) -> Self {
            Self {
                start: u64::from(page) * ALIGNMENT as u64,
                layout: Layout::legacy(size),
                next: 0,
            }
        }

        /// The guest-physical address of the queue's byte `offset`.
        fn address(&self, offset: usize) -> u64 {
            self.start + offset as u64
        }

        /// Writes descriptor `index`.
        pub fn describe(&self, ram: &Ram, index: u16, address: u64, length: u32, flags: u16, next: u16) {
            let descriptor = Descriptor {
                address,
                length,
                flags,
                next,
            };
            ram.write(self.address(self.layout.descriptor(index)), &descriptor.to_bytes())
                .unwrap();
        }

        /// Makes the chain from `head` available.
        pub fn offer(&mut self, ram: &Ram, head: u16) {
            ram.write(self.address(self.layout.available_entry(self.next)), &head.to_le_bytes())
                .unwrap();
            self.next = self.next.wrapping_add(1);
            self.publish(ram, self.next);
        }

        /// Writes `index` as the available ring's index.
        pub fn publish(&self, ram: &Ram, index: u16) {
            ram.write(self.address(self.layout.available_index()), &index.to_le_bytes())
                .unwrap();
        }

        /// The used ring's index and its `n`th element.
        pub fn used(&self, ram: &Ram, n: u16) -> (u16, u32, u32) {
            let mut index = [0; 2];
            ram.read(self.address(self.layout.used_index()), &mut index).unwrap();
            let mut element = [0; 8];
            ram.read(self.address(self.layout.used_element(n)), &mut element).unwrap();
            (
                u16::from_le_bytes(index),
                u32::from_le_bytes(element[..4].try_into().unwrap()),
                u32::from_le_bytes(element[4..].try_into().unwrap()),
            )
        }
    }

    impl Queue {
        /// Peeks and consumes.
        fn pop(&mut self, ram: &Ram) -> Result<Option<Chain>, QueueError> {
            let chain = self.peek(ram)?;
            if chain.is_some() {
                self.consume();
            }
            Ok(chain)
        }
    }

    fn setup() -> (Ram, Driver, Queue) {
        let ram = Ram::new(64 << 10);
        let driver = Driver::new(SIZE, PAGE);
        let queue = Queue::legacy(ram.size(), SIZE, PAGE).unwrap();
        (ram, driver, queue)
    }

    #[test]
    fn the_queue_starts_at_its_page() {
        let (_, _, queue) = setup();
        assert_eq!(queue.address(0), 0x1000);
        assert_eq!(queue.address(queue.layout.used_index()), 0x2002, "the used ring on the next page");
    }

    #[test]
    fn a_chain_is_walked_readable_then_writable_and_returned_used() {
        let (ram, mut driver, mut queue) = setup();
        assert_eq!(queue.pop(&ram).unwrap(), None, "nothing available");
        driver.describe(&ram, 3, 0x4000, 16, descriptor_flag::NEXT, 5);
        driver.describe(&ram, 5, 0x5000, 512, descriptor_flag::NEXT | descriptor_flag::WRITE, 0);
        driver.describe(&ram, 0, 0x6000, 1, descriptor_flag::WRITE, 0);
        driver.offer(&ram, 3);
        assert!(queue.has_available(&ram).unwrap());
        let chain = queue.pop(&ram).unwrap().expect("a chain");
        assert_eq!(chain.head, 3);
        assert_eq!(chain.readable, [Buffer { address: 0x4000, length: 16 }]);
        assert_eq!(
            chain.writable,
            [Buffer { address: 0x5000, length: 512 }, Buffer { address: 0x6000, length: 1 }]
        );
        assert_eq!((chain.readable_bytes(), chain.writable_bytes()), (16, 513));
        // The writable buffers are one run: the last byte is the status.
        chain.write(&ram, 510, &[1, 2, 3]).unwrap();
        let mut seen = [0; 3];
        ram.read(0x51fe, &mut seen[..2]).unwrap();
        ram.read(0x6000, &mut seen[2..]).unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(chain.write(&ram, 512, &[0, 0]), Err(OutsideRam), "past the run's end");
        assert_eq!(queue.pop(&ram).unwrap(), None);
        queue.push(&ram, 3, 513).unwrap();
        assert_eq!(driver.used(&ram, 0), (1, 3, 513));
    }

    #[test]
    fn indices_wrap_around_the_ring_and_the_counter() {
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0x4000, 8, 0, 0);
        for round in 0..70_000u32 {
            driver.offer(&ram, 0);
            let chain = queue.pop(&ram).unwrap().expect("a chain");
            queue.push(&ram, chain.head, round).unwrap();
        }
        assert_eq!(driver.used(&ram, (69_999 % u32::from(SIZE)) as u16), ((70_000u32 % 65_536) as u16, 0, 69_999));
    }

    #[test]
    fn malformed_rings_and_chains_are_refused() {
        // A head past the table.
        let (ram, mut driver, mut queue) = setup();
        driver.offer(&ram, SIZE);
        assert_eq!(queue.pop(&ram), Err(QueueError::DescriptorIndex(SIZE)));

        // A `next` past the table.
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0x4000, 8, descriptor_flag::NEXT, 200);
        driver.offer(&ram, 0);
        assert_eq!(queue.pop(&ram), Err(QueueError::DescriptorIndex(200)));

        // A loop: 0 -> 1 -> 0.
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0x4000, 8, descriptor_flag::NEXT, 1);
        driver.describe(&ram, 1, 0x4000, 8, descriptor_flag::NEXT, 0);
        driver.offer(&ram, 0);
        assert_eq!(queue.pop(&ram), Err(QueueError::Loop));

        // A descriptor pointing at itself.
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 2, 0x4000, 8, descriptor_flag::NEXT | descriptor_flag::WRITE, 2);
        driver.offer(&ram, 2);
        assert_eq!(queue.pop(&ram), Err(QueueError::Loop));

        // A buffer past the end of RAM, and one whose end overflows.
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0xf000, 0x1001, 0, 0);
        driver.offer(&ram, 0);
        assert_eq!(
            queue.pop(&ram),
            Err(QueueError::OutsideRam {
                address: 0xf000,
                length: 0x1001
            })
        );
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, u64::MAX - 2, 8, 0, 0);
        driver.offer(&ram, 0);
        assert!(matches!(queue.pop(&ram), Err(QueueError::OutsideRam { .. })));

        // Readable after writable, and indirect tables.
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0x4000, 8, descriptor_flag::NEXT | descriptor_flag::WRITE, 1);
        driver.describe(&ram, 1, 0x4000, 8, 0, 0);
        driver.offer(&ram, 0);
        assert_eq!(queue.pop(&ram), Err(QueueError::ReadableAfterWritable));
        let (ram, mut driver, mut queue) = setup();
        driver.describe(&ram, 0, 0x4000, 32, descriptor_flag::INDIRECT, 0);
        driver.offer(&ram, 0);
        assert_eq!(queue.pop(&ram), Err(QueueError::Indirect));

        // An available index too far ahead.
        let (ram, driver, mut queue) = setup();
        driver.publish(&ram, SIZE + 1);
        assert_eq!(
            queue.pop(&ram),
            Err(QueueError::AvailableIndex {
                index: SIZE + 1,
                taken: 0
            })
        );

        // A queue that does not fit in RAM.
        assert_eq!(
            Queue::legacy(0x2000, SIZE, 1),
            Err(QueueError::OutsideRam {
                address: 0x1000,
                length: 0x1046
            })
        );
        assert!(Queue::legacy(0x2000, SIZE, u32::MAX).is_err());
    }

    #[test]
    fn random_rings_never_panic() {
        // A small generator, so the test needs no crate.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let ram = Ram::new(0x4000);
            let mut garbage = alloc::vec![0u8; 0x2000];
            for byte in garbage.iter_mut() {
                *byte = next() as u8;
            }
            // Mostly small numbers, so chains are often followed far.
            for word in garbage.chunks_mut(2) {
                if next() % 2 == 0 {
                    word[0] %= SIZE as u8 + 2;
                    word[1] = 0;
                }
            }
            ram.write(0x1000, &garbage).unwrap();
            let mut queue = Queue::legacy(ram.size(), SIZE, PAGE).unwrap();
            for _ in 0..4 {
                match queue.pop(&ram) {
                    Ok(Some(chain)) => {
                        assert!(chain.readable.len() + chain.writable.len() <= usize::from(SIZE));
                        for buffer in chain.readable.iter().chain(&chain.writable) {
                            assert!(buffer.address + u64::from(buffer.length) <= 0x4000);
                        }
                        queue.push(&ram, chain.head, 0).unwrap();
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
