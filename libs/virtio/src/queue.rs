//! The split virtqueue (section 2.7) in its legacy layout: the descriptor
//! table, the driver's available ring right after it, and the device's
//! used ring on the next [`ALIGNMENT`] boundary, all in memory the driver
//! chose. Every field is little-endian.

/// The legacy layout's alignment: the used ring starts on such a
/// boundary, and the driver gives the queue's address in units of it
/// ([`crate::legacy::QUEUE_ADDRESS`]).
pub const ALIGNMENT: usize = 4096;

/// Descriptor flags.
pub mod descriptor_flag {
    /// The chain goes on at the descriptor's `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (else it reads it).
    pub const WRITE: u16 = 2;
    /// The buffer is a table of descriptors.
    pub const INDIRECT: u16 = 4;
}

/// One entry of the descriptor table: a buffer, and where its chain goes
/// on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The buffer's physical address.
    pub address: u64,
    /// Its length in bytes.
    pub length: u32,
    /// [`descriptor_flag`] bits.
    pub flags: u16,
    /// The next descriptor's index, with [`descriptor_flag::NEXT`].
    pub next: u16,
}

impl Descriptor {
    /// Its size in the table.
    pub const BYTES: usize = 16;

    /// Its bytes in the table.
    pub fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut bytes = [0; Self::BYTES];
        bytes[0..8].copy_from_slice(&self.address.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.length.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.flags.to_le_bytes());
        bytes[14..16].copy_from_slice(&self.next.to_le_bytes());
        bytes
    }

    /// The descriptor `bytes` of the table hold.
    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = bytes;
        Self {
            address: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            length: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        }
    }
}

/// Where the parts of a queue lie, in bytes from its start.
///
/// The available ring is its flags (2 bytes), its index (2), an entry of
/// 2 bytes per descriptor and the used-event word (2); the used ring is
/// its flags, its index, an element of 8 bytes (head, length written)
/// per descriptor and the available-event word. Ring entries are found by
/// free-running indices, which wrap around the queue's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    size: u16,
    available: usize,
    used: usize,
}

impl Layout {
    /// The legacy layout of a queue of `size` entries.
    ///
    /// # Panics
    /// If `size` is 0: a device offers no such queue.
    pub fn legacy(size: u16) -> Self {
        assert!(size != 0, "a virtqueue has at least one entry");
        let entries = usize::from(size);
        let available = Descriptor::BYTES * entries;
        let available_end = available + 6 + 2 * entries;
        Self {
            size,
            available,
            used: available_end.next_multiple_of(ALIGNMENT),
        }
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Offset of descriptor `index` (below the size).
    pub fn descriptor(&self, index: u16) -> usize {
        Descriptor::BYTES * usize::from(index)
    }

    /// Offset of the available ring's flags.
    pub fn available_flags(&self) -> usize {
        self.available
    }

    /// Offset of the available ring's index.
    pub fn available_index(&self) -> usize {
        self.available + 2
    }

    /// Offset of the available ring's entry for running index `index`.
    pub fn available_entry(&self, index: u16) -> usize {
        self.available + 4 + 2 * usize::from(index % self.size)
    }

    /// Offset of the used ring's index.
    pub fn used_index(&self) -> usize {
        self.used + 2
    }

    /// Offset of the used ring's element for running index `index`.
    pub fn used_element(&self, index: u16) -> usize {
        self.used + 4 + 8 * usize::from(index % self.size)
    }

    /// The bytes the queue spans, up to the end of the used ring.
    pub fn bytes(&self) -> usize {
        self.used + 6 + 8 * usize::from(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_of_8_has_its_used_ring_on_the_second_page() {
        let layout = Layout::legacy(8);
        assert_eq!(layout.available_flags(), 0x80);
        assert_eq!(layout.used_index(), 0x1002);
        assert_eq!(layout.bytes(), 0x1046);
    }

    #[test]
    fn a_queue_of_128_takes_two_pages_and_its_rings_wrap() {
        let layout = Layout::legacy(128);
        assert_eq!(layout.descriptor(2), 32);
        assert_eq!(layout.available_index(), 2048 + 2);
        assert_eq!(layout.available_entry(130), 2048 + 4 + 4, "the ring wraps");
        assert_eq!(layout.used_index(), 4098);
        assert_eq!(layout.used_element(129), 4096 + 4 + 8);
        assert_eq!(layout.bytes().next_multiple_of(ALIGNMENT), 8192);
    }

    #[test]
    fn a_queue_of_256_needs_three_pages() {
        // 4096 of descriptors, 518 of available ring, then a page of used ring.
        let layout = Layout::legacy(256);
        assert_eq!(layout.available_flags(), 4096);
        assert_eq!(layout.used_index(), 8192 + 2);
        assert_eq!(layout.bytes().next_multiple_of(ALIGNMENT), 12288);
    }

    #[test]
    fn descriptors_are_little_endian_and_read_back() {
        let descriptor = Descriptor {
            address: 0x0102_0304_0506_0708,
            length: 0x0a0b_0c0d,
            flags: descriptor_flag::NEXT | descriptor_flag::WRITE,
            next: 0x0e0f,
        };
        let bytes = descriptor.to_bytes();
        assert_eq!(
            bytes,
            [8, 7, 6, 5, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a, 3, 0, 0x0f, 0x0e]
        );
        assert_eq!(Descriptor::from_bytes(bytes), descriptor);
    }
}
