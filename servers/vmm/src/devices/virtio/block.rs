//! The virtio block device (type 2): a disk of 512-byte sectors whose
//! bytes live in a [`Backing`] (for the VMM, a file in our filesystem).
//!
//! One request queue. A request is a chain: a 16-byte header the device
//! reads (type, reserved, sector), the data (read for a write, written
//! for a read), and one status byte the device writes last. The buffers
//! are taken as one run of bytes each way, whatever their boundaries.
//! Offered: the segment limit, the block size and flush. Reads, writes,
//! flushes and the ID request are done; a transfer that is not whole
//! sectors or runs past the disk's end, or that the backing fails, ends
//! with the I/O-error status, an unknown type with "unsupported". A chain
//! too short for the header or with no byte for the status cannot be
//! answered, and marks the device as needing a reset.

use super::queue::{Chain, QueueError};
use super::{Device, GuestRam, identity};
use crate::devices::pci::Identity;
use alloc::string::String;
use alloc::vec::Vec;
use virtio::block::{RequestHeader, feature, request_status, request_type};

/// Bytes in a sector.
pub const SECTOR_BYTES: u64 = 512;
/// The request queue's size.
pub const QUEUE_SIZE: u16 = 128;
/// The most bytes moved between RAM and the backing at a time.
const CHUNK: usize = 64 << 10;
/// The header's length.
const HEADER_BYTES: u64 = RequestHeader::BYTES as u64;
/// What the ID request answers (at most 20 bytes).
const ID: &[u8] = b"l4hv-virtio-blk";
/// The longest ID.
const ID_BYTES: usize = 20;

/// Where a disk's bytes live.
pub trait Backing {
    /// Reads `into.len()` bytes at byte `offset`, all of them.
    ///
    /// # Errors
    /// Why not.
    fn read(&mut self, offset: u64, into: &mut [u8]) -> Result<(), String>;
    /// Writes `from` at byte `offset`.
    ///
    /// # Errors
    /// Why not.
    fn write(&mut self, offset: u64, from: &[u8]) -> Result<(), String>;
    /// Makes every completed write durable.
    ///
    /// # Errors
    /// Why not.
    fn flush(&mut self) -> Result<(), String>;
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Read sectors into the chain's writable buffers.
    Read,
    /// Write the chain's readable data to sectors.
    Write,
    /// Make the completed writes durable.
    Flush,
    /// Write the device's ID string.
    GetId,
    /// A type the device does not know.
    Unsupported(u32),
}

/// A request taken apart: what it asks for, where, and the run of data
/// bytes (in the readable buffers after the header for a write, in the
/// writable buffers before the status byte otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What it asks for.
    pub operation: Operation,
    /// The first sector.
    pub sector: u64,
    /// The data's length in bytes.
    pub data_bytes: u64,
    /// Where the status byte is in the writable run.
    pub status_offset: u64,
}

impl Request {
    /// Reads the header of `chain` and finds its data and status byte.
    ///
    /// # Errors
    /// [`QueueError::Request`] for a chain too short for the header or
    /// with no writable byte for the status.
    pub fn parse(chain: &Chain, ram: &dyn GuestRam) -> Result<Self, QueueError> {
        let readable = chain.readable_bytes();
        let writable = chain.writable_bytes();
        if readable < HEADER_BYTES {
            return Err(QueueError::Request("shorter than a block request's header"));
        }
        let Some(status_offset) = writable.checked_sub(1) else {
            return Err(QueueError::Request("no room for a block request's status"));
        };
        let mut header = [0; RequestHeader::BYTES];
        chain
            .read(ram, 0, &mut header)
            .map_err(|_| QueueError::Request("its header is not in RAM"))?;
        let RequestHeader { request_type, sector } = RequestHeader::from_bytes(header);
        let (operation, data_bytes) = match request_type {
            request_type::READ => (Operation::Read, status_offset),
            request_type::WRITE => (Operation::Write, readable - HEADER_BYTES),
            request_type::FLUSH => (Operation::Flush, 0),
            request_type::GET_ID => (Operation::GetId, status_offset),
            other => (Operation::Unsupported(other), 0),
        };
        Ok(Self {
            operation,
            sector,
            data_bytes,
            status_offset,
        })
    }

    /// The byte range of the disk a read or write touches, if it is whole
    /// sectors inside a disk of `sectors`.
    fn range(&self, sectors: u64) -> Option<(u64, u64)> {
        if self.data_bytes % SECTOR_BYTES != 0 {
            return None;
        }
        let end = self.sector.checked_add(self.data_bytes / SECTOR_BYTES)?;
        (end <= sectors).then_some((self.sector * SECTOR_BYTES, self.data_bytes))
    }
}

/// A virtio disk.
pub struct Block {
    sectors: u64,
    /// Bytes on their way between RAM and the backing.
    bounce: Vec<u8>,
    /// The last failure of the backing, not yet reported.
    backing_error: Option<String>,
}

impl Block {
    /// A disk of `bytes` (rounded down to whole sectors).
    pub fn new(bytes: u64) -> Self {
        Self {
            sectors: bytes / SECTOR_BYTES,
            bounce: Vec::new(),
            backing_error: None,
        }
    }

    /// Does the request `chain` holds with `backing`; returns the bytes
    /// written into the chain (data and status).
    ///
    /// # Errors
    /// [`QueueError::Request`] for a chain that is not a request.
    pub fn handle(&mut self, chain: &Chain, ram: &dyn GuestRam, backing: &mut dyn Backing) -> Result<u32, QueueError> {
        let request = Request::parse(chain, ram)?;
        let (status, data_written) = match self.execute(&request, chain, ram, backing) {
            Ok(written) => (request_status::OK, written),
            Err(status) => (status, 0),
        };
        chain
            .write(ram, request.status_offset, &[status])
            .map_err(|_| QueueError::Request("its status byte is not in RAM"))?;
        // At most the chain's writable bytes, which fit a queue's worth
        // of 32-bit lengths only if the guest says so: saturate.
        Ok(u32::try_from(data_written + 1).unwrap_or(u32::MAX))
    }

    /// Carries out `request`; returns the data bytes written into the
    /// chain, or the status to report.
    fn execute(
        &mut self,
        request: &Request,
        chain: &Chain,
        ram: &dyn GuestRam,
        backing: &mut dyn Backing,
    ) -> Result<u64, u8> {
        match request.operation {
            Operation::Read => {
                let (offset, length) = request.range(self.sectors).ok_or(request_status::IO_ERROR)?;
                self.copy(length, |bounce, done| {
                    backing.read(offset + done, bounce)?;
                    chain
                        .write(ram, done, bounce)
                        .map_err(|_| String::from("a buffer is not in RAM"))
                })?;
                Ok(length)
            }
            Operation::Write => {
                let (offset, length) = request.range(self.sectors).ok_or(request_status::IO_ERROR)?;
                self.copy(length, |bounce, done| {
                    chain
                        .read(ram, HEADER_BYTES + done, bounce)
                        .map_err(|_| String::from("a buffer is not in RAM"))?;
                    backing.write(offset + done, bounce)
                })?;
                Ok(0)
            }
            Operation::Flush => {
                backing.flush().map_err(|error| self.failed(error))?;
                Ok(0)
            }
            Operation::GetId => {
                let mut id = [0; ID_BYTES];
                id[..ID.len()].copy_from_slice(ID);
                let length = request.data_bytes.min(ID_BYTES as u64) as usize;
                chain.write(ram, 0, &id[..length]).map_err(|_| request_status::IO_ERROR)?;
                Ok(length as u64)
            }
            Operation::Unsupported(_) => Err(request_status::UNSUPPORTED),
        }
    }

    /// Moves `length` bytes through the bounce buffer, [`CHUNK`] at a
    /// time: `step` gets the buffer and how many bytes went before.
    fn copy(
        &mut self,
        length: u64,
        mut step: impl FnMut(&mut [u8], u64) -> Result<(), String>,
    ) -> Result<(), u8> {
        let mut bounce = core::mem::take(&mut self.bounce);
        bounce.resize(CHUNK, 0);
        let mut done = 0;
        let mut result = Ok(());
        while done < length {
            let chunk = (length - done).min(CHUNK as u64) as usize;
            if let Err(error) = step(&mut bounce[..chunk], done) {
                result = Err(self.failed(error));
                break;
            }
            done += chunk as u64;
        }
        self.bounce = bounce;
        result
    }

    /// Keeps the backing's `error` for the log; the request fails.
    fn failed(&mut self, error: String) -> u8 {
        self.backing_error = Some(error);
        request_status::IO_ERROR
    }

    /// The backing's last failure, once.
    pub fn take_backing_error(&mut self) -> Option<String> {
        self.backing_error.take()
    }
}

impl Device for Block {
    /// Mass storage (SCSI class, as other hypervisors give it).
    const IDENTITY: Identity = identity(
        virtio::transitional_device_id::BLOCK,
        virtio::device_type::BLOCK,
        [0x01, 0x00, 0x00],
    );
    const QUEUE_SIZES: &'static [u16] = &[QUEUE_SIZE];

    fn features(&self) -> u32 {
        feature::SEGMENT_LIMIT | feature::BLOCK_SIZE | feature::FLUSH
    }

    /// Capacity in sectors, no size limit, the segment limit (the queue
    /// less the header and status), no geometry, the block size.
    fn configuration(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&self.sectors.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(SECTOR_BYTES as u32).to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Buffer;
    use super::super::tests::{MemoryDisk, Ram};
    use super::*;

    const HEADER: u64 = 0x1000;
    const DATA: u64 = 0x2000;
    const STATUS: u64 = 0x9000;

    /// A device in front of a disk of 8 sectors, each filled with its
    /// number.
    fn numbered_disk() -> (Block, MemoryDisk) {
        let bytes = (0..8 * SECTOR_BYTES).map(|index| (index / SECTOR_BYTES) as u8).collect();
        (Block::new(8 * SECTOR_BYTES), MemoryDisk::new(bytes))
    }

    /// RAM with a header of `request_type` for `sector` at [`HEADER`].
    fn ram_with_header(request_type: u32, sector: u64) -> Ram {
        let ram = Ram::new(0x10000);
        ram.write(HEADER, &RequestHeader { request_type, sector }.to_bytes())
            .unwrap();
        ram.write(STATUS, &[0xff]).unwrap();
        ram
    }

    /// A chain of `readable` then `writable` buffers, each an address and
    /// a length.
    fn request_chain(readable: &[(u64, u32)], writable: &[(u64, u32)]) -> Chain {
        let buffers = |list: &[(u64, u32)]| {
            list.iter()
                .map(|&(address, length)| Buffer { address, length })
                .collect()
        };
        Chain {
            head: 0,
            readable: buffers(readable),
            writable: buffers(writable),
        }
    }

    fn status_byte(ram: &Ram) -> u8 {
        let mut status = [0];
        ram.read(STATUS, &mut status).unwrap();
        status[0]
    }

    #[test]
    fn a_read_in_two_buffers_fills_them_and_reports_its_length() {
        let ram = ram_with_header(request_type::READ, 2);
        let chain = request_chain(&[(HEADER, 16)], &[(DATA, 512), (DATA + 0x1000, 512), (STATUS, 1)]);
        let request = Request::parse(&chain, &ram).unwrap();
        assert_eq!(
            request,
            Request {
                operation: Operation::Read,
                sector: 2,
                data_bytes: 1024,
                status_offset: 1024
            }
        );
        let (mut block, mut backing) = numbered_disk();
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1025));
        let mut data = [0; 512];
        ram.read(DATA, &mut data).unwrap();
        assert!(data.iter().all(|byte| *byte == 2));
        ram.read(DATA + 0x1000, &mut data).unwrap();
        assert!(data.iter().all(|byte| *byte == 3));
        assert_eq!(status_byte(&ram), request_status::OK);
    }

    #[test]
    fn a_write_with_the_header_and_data_in_one_buffer_lands_on_the_disk() {
        let ram = ram_with_header(request_type::WRITE, 7);
        ram.write(HEADER + 16, &[0xab; 512]).unwrap();
        let chain = request_chain(&[(HEADER, 16 + 512)], &[(STATUS, 1)]);
        let (mut block, mut backing) = numbered_disk();
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1));
        assert_eq!(status_byte(&ram), request_status::OK);
        assert!(backing.bytes[7 * 512..].iter().all(|byte| *byte == 0xab));
        assert!(backing.bytes[6 * 512..7 * 512].iter().all(|byte| *byte == 6), "the sector before untouched");
    }

    #[test]
    fn flush_and_id_are_answered_and_unknown_types_are_unsupported() {
        let (mut block, mut backing) = numbered_disk();
        let ram = ram_with_header(request_type::FLUSH, 0);
        let chain = request_chain(&[(HEADER, 16)], &[(STATUS, 1)]);
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1));
        assert_eq!((status_byte(&ram), backing.flushes), (request_status::OK, 1));

        let ram = ram_with_header(request_type::GET_ID, 0);
        let chain = request_chain(&[(HEADER, 16)], &[(DATA, 20), (STATUS, 1)]);
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(21));
        let mut id = [0; 20];
        ram.read(DATA, &mut id).unwrap();
        assert!(id.starts_with(ID));
        assert_eq!(status_byte(&ram), request_status::OK);

        let ram = ram_with_header(99, 0);
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1));
        assert_eq!(status_byte(&ram), request_status::UNSUPPORTED);
    }

    #[test]
    fn transfers_past_the_end_partial_sectors_and_backing_failures_are_io_errors() {
        let (mut block, mut backing) = numbered_disk();
        for (sector, length) in [(7, 1024), (8, 512), (u64::MAX, 512), (u64::MAX / 512, 512), (0, 100)] {
            let ram = ram_with_header(request_type::READ, sector);
            let chain = request_chain(&[(HEADER, 16)], &[(DATA, length), (STATUS, 1)]);
            assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1), "sector {sector}, {length} bytes");
            assert_eq!(status_byte(&ram), request_status::IO_ERROR);
        }
        backing.broken = true;
        let ram = ram_with_header(request_type::WRITE, 0);
        let chain = request_chain(&[(HEADER, 16), (DATA, 512)], &[(STATUS, 1)]);
        assert_eq!(block.handle(&chain, &ram, &mut backing), Ok(1));
        assert_eq!(status_byte(&ram), request_status::IO_ERROR);
        assert_eq!(block.take_backing_error().as_deref(), Some("broken"));
        assert_eq!(block.take_backing_error(), None, "reported once");
    }

    #[test]
    fn chains_that_are_not_requests_are_refused() {
        let (mut block, mut backing) = numbered_disk();
        let ram = ram_with_header(request_type::READ, 0);
        let short_header = request_chain(&[(HEADER, 8)], &[(STATUS, 1)]);
        assert!(matches!(block.handle(&short_header, &ram, &mut backing), Err(QueueError::Request(_))));
        let no_status = request_chain(&[(HEADER, 16), (DATA, 512)], &[]);
        assert!(matches!(block.handle(&no_status, &ram, &mut backing), Err(QueueError::Request(_))));
        let empty_status = request_chain(&[(HEADER, 16)], &[(STATUS, 0)]);
        assert!(matches!(block.handle(&empty_status, &ram, &mut backing), Err(QueueError::Request(_))));
        assert_eq!(status_byte(&ram), 0xff, "nothing written");
    }

    #[test]
    fn the_configuration_gives_capacity_segments_and_block_size() {
        let block = Block::new(8 * 512 + 100);
        let bytes = block.configuration();
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 8);
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 126);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 512);
    }
}
