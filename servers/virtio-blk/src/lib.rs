//! The virtio-blk device's layout (virtio 1.x spec, legacy PCI interface,
//! sections 4.1.4.8 and 5.2): the I/O registers, the split virtqueue in
//! memory, and request headers. Host-tested; the driver is `main.rs`.

#![cfg_attr(not(test), no_std)]

/// The PCI ids of a transitional virtio block device.
pub const VENDOR: u16 = 0x1af4;
/// Device id (legacy numbering: 0x1000 + 1, block).
pub const DEVICE: u16 = 0x1001;

/// Registers of the legacy I/O BAR, by offset.
pub mod register {
    /// Features the device offers (32 bits).
    pub const DEVICE_FEATURES: u16 = 0x00;
    /// Features the driver accepts (32 bits).
    pub const DRIVER_FEATURES: u16 = 0x04;
    /// Page number of the selected queue's memory (32 bits).
    pub const QUEUE_ADDRESS: u16 = 0x08;
    /// Size of the selected queue (16 bits).
    pub const QUEUE_SIZE: u16 = 0x0c;
    /// Which queue the two above refer to (16 bits).
    pub const QUEUE_SELECT: u16 = 0x0e;
    /// Written with a queue's index when it has new buffers (16 bits).
    pub const QUEUE_NOTIFY: u16 = 0x10;
    /// Device status (8 bits).
    pub const STATUS: u16 = 0x12;
    /// Interrupt status; reading it clears it and lowers the line (8 bits).
    pub const INTERRUPT_STATUS: u16 = 0x13;
    /// The block device's capacity in sectors (64 bits, as two 32-bit reads).
    pub const CAPACITY: u16 = 0x14;
}

/// Device status bits.
pub mod status {
    /// The driver has seen the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// Feature bits of a block device.
pub mod feature {
    /// The device is read-only.
    pub const READ_ONLY: u32 = 1 << 5;
    /// The device has a flush command.
    pub const FLUSH: u32 = 1 << 9;
}

/// Request types.
pub mod request {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the device's write cache.
    pub const FLUSH: u32 = 4;
}

/// Descriptor flags.
pub mod descriptor {
    /// The chain goes on at `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (else reads it).
    pub const WRITE: u16 = 2;
}

/// The status byte the device writes when a request succeeded.
pub const STATUS_OK: u8 = 0;

/// Where the parts of a split virtqueue of `size` entries lie, in bytes
/// from its start (legacy layout: the used ring starts on a new page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Entries.
    pub size: u16,
    /// The descriptor table (16 bytes per entry).
    pub descriptors: usize,
    /// The available ring: flags, index, then `size` entries of 2 bytes.
    pub available: usize,
    /// The used ring: flags, index, then `size` entries of 8 bytes.
    pub used: usize,
    /// Bytes in all, a whole number of pages.
    pub bytes: usize,
}

impl QueueLayout {
    /// The layout for `size` entries (a power of two, as the device says).
    pub fn new(size: u16) -> Self {
        let entries = usize::from(size);
        let available = 16 * entries;
        let available_end = available + 4 + 2 * entries + 2;
        let used = available_end.next_multiple_of(4096);
        let used_end = used + 4 + 8 * entries + 2;
        Self {
            size,
            descriptors: 0,
            available,
            used,
            bytes: used_end.next_multiple_of(4096),
        }
    }

    /// Offset of descriptor `index`.
    pub fn descriptor(&self, index: u16) -> usize {
        self.descriptors + 16 * usize::from(index)
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
}

/// A request header: type, a reserved word, and the first sector.
pub fn request_header(kind: u32, sector: u64) -> [u8; 16] {
    let mut header = [0; 16];
    header[0..4].copy_from_slice(&kind.to_le_bytes());
    header[8..16].copy_from_slice(&sector.to_le_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_of_128_takes_two_pages_with_the_used_ring_on_the_second() {
        let layout = QueueLayout::new(128);
        assert_eq!(layout.available, 2048);
        assert_eq!(layout.used, 4096);
        assert_eq!(layout.bytes, 8192);
        assert_eq!(layout.descriptor(2), 32);
        assert_eq!(layout.available_entry(130), 2048 + 4 + 4, "the ring wraps");
        assert_eq!(layout.used_index(), 4098);
    }

    #[test]
    fn a_queue_of_256_needs_three_pages() {
        // 4096 of descriptors, 518 of available ring, then a page of used ring.
        let layout = QueueLayout::new(256);
        assert_eq!((layout.available, layout.used, layout.bytes), (4096, 8192, 12288));
    }

    #[test]
    fn headers_are_little_endian() {
        assert_eq!(
            request_header(request::OUT, 0x0102),
            [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
    }
}
