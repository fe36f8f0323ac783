//! The block-device protocol: sectors of 512 bytes, read and written
//! through a transfer buffer the client shares with the driver.
//!
//! Bulk data never travels in messages. A client makes up to
//! [`MAX_BUFFER_PAGES`] frames, maps them, and hands each to the driver
//! ([`Request::Share`]); a read or write then names a byte offset in that
//! buffer. A client may share several buffers (up to [`MAX_BUFFERS`]): a
//! filesystem shares its own clients' buffers, so that file data moves
//! between them and the disk without passing through the filesystem. The driver copies between the buffer and DMA memory of its own,
//! so a client cannot point the device at memory it does not own, and a
//! request is checked before the device sees it. [`Disk`] does all of this
//! for a client.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod client;
mod server;

pub use client::{Disk, DiskError, SHARE_ATTEMPTS, retry_unshared};
pub use server::{Driver, serve};

use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Block;

/// Bytes in a sector.
pub const SECTOR_SIZE: usize = 512;
/// Pages in a client's transfer buffer at most.
pub const MAX_BUFFER_PAGES: u8 = 16;
/// The most bytes one request moves: a whole transfer buffer.
pub const MAX_TRANSFER: usize = MAX_BUFFER_PAGES as usize * 4096;
/// Transfer buffers one client may share.
pub const MAX_BUFFERS: u8 = 64;

/// Which of a client's transfer buffers, below [`MAX_BUFFERS`].
pub type BufferIndex = u8;

/// Requests. Every one is idempotent: repeating a read, a write of the
/// same bytes, a share of the same frame or a flush changes nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The disk's size.
    Info,
    /// The frame capability sent along becomes page `page` of the caller's
    /// transfer buffer `buffer` (replacing any earlier one).
    Share {
        /// Which buffer.
        buffer: BufferIndex,
        /// Page index, below [`MAX_BUFFER_PAGES`].
        page: u8,
    },
    /// Reads `count` sectors from `sector` into transfer buffer `buffer` at
    /// byte `offset`.
    Read {
        /// Which buffer.
        buffer: BufferIndex,
        /// First sector.
        sector: u64,
        /// Sectors to read.
        count: u32,
        /// Where in the transfer buffer, in bytes (a multiple of 512).
        offset: u32,
    },
    /// Writes `count` sectors at `sector` from transfer buffer `buffer` at
    /// byte `offset`. The data is durable after a [`Request::Flush`].
    Write {
        /// Which buffer.
        buffer: BufferIndex,
        /// First sector.
        sector: u64,
        /// Sectors to write.
        count: u32,
        /// Where in the transfer buffer, in bytes (a multiple of 512).
        offset: u32,
    },
    /// Makes every completed write durable.
    Flush,
    /// Drops every transfer buffer the caller shared: a restarted client
    /// (which keeps its badge) starts clean, so no buffer index can still
    /// name pages of another of its clients.
    Forget,
}

/// Successful replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The disk's size.
    Info {
        /// Number of sectors.
        sectors: u64,
        /// Whether writes are refused.
        read_only: bool,
    },
    /// Done.
    Done,
}

/// Why a request was refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// The sectors run past the end of the disk.
    OutOfRange,
    /// Zero sectors, an offset that is not a multiple of 512, or a transfer
    /// that runs past the end of the transfer buffer.
    Misaligned,
    /// The transfer buffer lacks a page the request touches, or a shared
    /// capability is not a frame.
    NoBuffer,
    /// The disk is read-only.
    ReadOnly,
    /// The device reported an error.
    Device,
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        formatter.write_str(match self {
            Self::OutOfRange => "the sectors run past the end of the disk",
            Self::Misaligned => "the transfer is empty, unaligned or larger than the transfer buffer",
            Self::NoBuffer => "the transfer buffer is not shared",
            Self::ReadOnly => "the disk is read-only",
            Self::Device => "the device reported an I/O error",
        })
    }
}

impl service::Protocol for Block {
    const SERVICE: &'static str = "block";
    type Request = Request;
    type Reply = Result<Reply, Error>;

    fn idempotent(_: &Request) -> bool {
        true
    }
}

/// Checks a read or write of `count` sectors at `sector` through buffer
/// `offset`, against a disk of `sectors` and a buffer of `buffer_bytes`.
/// Returns the byte range of the buffer it uses.
///
/// # Errors
/// [`Error::Misaligned`] or [`Error::OutOfRange`].
pub fn check_transfer(
    sectors: u64,
    buffer_bytes: usize,
    sector: u64,
    count: u32,
    offset: u32,
) -> Result<core::ops::Range<usize>, Error> {
    let bytes = count as usize * SECTOR_SIZE;
    let start = offset as usize;
    let end = start.checked_add(bytes).ok_or(Error::Misaligned)?;
    if count == 0 || !start.is_multiple_of(SECTOR_SIZE) || end > buffer_bytes {
        return Err(Error::Misaligned);
    }
    match sector.checked_add(u64::from(count)) {
        Some(last) if last <= sectors => Ok(start..end),
        _ => Err(Error::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_are_checked_against_the_disk_and_the_buffer() {
        assert_eq!(check_transfer(100, 8192, 0, 16, 0), Ok(0..8192));
        assert_eq!(check_transfer(100, 8192, 96, 4, 512), Ok(512..2560));
        assert_eq!(check_transfer(100, 8192, 97, 4, 0), Err(Error::OutOfRange));
        assert_eq!(check_transfer(100, 8192, u64::MAX, 1, 0), Err(Error::OutOfRange));
        assert_eq!(check_transfer(100, 8192, 0, 0, 0), Err(Error::Misaligned));
        assert_eq!(check_transfer(100, 8192, 0, 1, 100), Err(Error::Misaligned));
        assert_eq!(check_transfer(100, 8192, 0, 17, 0), Err(Error::Misaligned));
        assert_eq!(check_transfer(100, 8192, 0, u32::MAX, u32::MAX), Err(Error::Misaligned));
    }
}
