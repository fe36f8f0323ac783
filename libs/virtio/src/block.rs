//! The block device (section 5.2): its feature bits, and the request a
//! driver puts on its one queue as a chain: a header the device reads,
//! the data, and a status byte the device writes last.

/// Feature bits.
pub mod feature {
    /// The configuration's `seg_max` holds the most data buffers in a
    /// request.
    pub const SEGMENT_LIMIT: u32 = 1 << 2;
    /// The device is read-only.
    pub const READ_ONLY: u32 = 1 << 5;
    /// The configuration's `blk_size` holds the block size.
    pub const BLOCK_SIZE: u32 = 1 << 6;
    /// The device has a write cache the flush request writes back.
    pub const FLUSH: u32 = 1 << 9;
}

/// Request types.
pub mod request_type {
    /// Read sectors into the data buffers (`VIRTIO_BLK_T_IN`).
    pub const READ: u32 = 0;
    /// Write the data buffers to sectors (`VIRTIO_BLK_T_OUT`).
    pub const WRITE: u32 = 1;
    /// Make every completed write durable.
    pub const FLUSH: u32 = 4;
    /// Write the device's ID string (at most 20 bytes) into the data buffer.
    pub const GET_ID: u32 = 8;
}

/// What the status byte says of a request.
pub mod request_status {
    /// It was done.
    pub const OK: u8 = 0;
    /// It failed.
    pub const IO_ERROR: u8 = 1;
    /// The device does not know its type.
    pub const UNSUPPORTED: u8 = 2;
}

/// A request's header: its type, a reserved word, the first sector (of
/// 512 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// A [`request_type`].
    pub request_type: u32,
    /// The first sector.
    pub sector: u64,
}

impl RequestHeader {
    /// Its size.
    pub const BYTES: usize = 16;

    /// Its bytes.
    pub fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut bytes = [0; Self::BYTES];
        bytes[0..4].copy_from_slice(&self.request_type.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.sector.to_le_bytes());
        bytes
    }

    /// The header `bytes` hold (the reserved word is ignored).
    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = bytes;
        Self {
            request_type: u32::from_le_bytes([t0, t1, t2, t3]),
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_little_endian_and_read_back() {
        let header = RequestHeader {
            request_type: request_type::WRITE,
            sector: 0x0102,
        };
        assert_eq!(header.to_bytes(), [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(RequestHeader::from_bytes(header.to_bytes()), header);
    }
}
