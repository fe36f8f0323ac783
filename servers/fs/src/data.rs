//! File data: reads and writes between a client's transfer buffer and the
//! disk.
//!
//! Block-aligned transfers go direct: ext2 says where the range lies on
//! disk (allocating it for a write) and the driver moves the bytes between
//! the client's shared pages (which fs passed on to it) and the disk, so
//! they never pass through fs. Anything else goes through ext2's own read
//! and write, by way of one scratch buffer.

use crate::{DiskDevice, fs_error};
use block::{BufferIndex, DiskError, MAX_BUFFERS, SECTOR_SIZE};
use ext2::{Extent, FileSystem, InodeNumber};
use fs::{Error, MAX_TRANSFER};
use service::transfer::SharedPages;

/// A client's data path.
#[derive(Default)]
pub struct ClientData {
    /// The client's pages, as shared with fs.
    pub transfer: SharedPages,
    /// Which of fs's buffers at the driver holds the client's pages, once
    /// passed on; `None` until then (or if fs ran out of buffers).
    disk_buffer: Option<BufferIndex>,
}

/// What every transfer needs besides the client.
pub struct DataPath<'a> {
    /// The filesystem.
    pub filesystem: &'a mut FileSystem<DiskDevice>,
    /// The scratch buffer for transfers that cannot go direct.
    pub scratch: &'a mut [u8],
    /// The next free buffer index at the driver (0 is fs's own).
    pub next_disk_buffer: &'a mut BufferIndex,
}

impl DataPath<'_> {
    /// The client's buffer at the driver, passing its pages on first.
    fn disk_buffer(&mut self, client: &mut ClientData) -> Option<BufferIndex> {
        if client.disk_buffer.is_none() && *self.next_disk_buffer < MAX_BUFFERS {
            let buffer = *self.next_disk_buffer;
            *self.next_disk_buffer += 1;
            if self.filesystem.device().0.share_pages(buffer, &client.transfer).is_ok() {
                client.disk_buffer = Some(buffer);
            }
        }
        client.disk_buffer
    }

    /// Runs `transfer` on the client's buffer at the driver; if the driver
    /// no longer has it (it was restarted), passes the pages on again and
    /// runs it once more.
    fn at_driver(
        &mut self,
        client: &ClientData,
        buffer: BufferIndex,
        transfer: impl Fn(&block::Disk) -> Result<(), DiskError>,
    ) -> Result<(), Error> {
        let disk = &self.filesystem.device().0;
        block::retry_unshared(|| transfer(disk), || disk.share_pages(buffer, &client.transfer)).map_err(disk_failed)
    }

    /// Whether a transfer of `length` bytes at file `offset` through buffer
    /// `at` can go direct: whole blocks on both sides, inside the buffer.
    fn direct(&self, offset: u64, length: usize, at: usize) -> bool {
        let block = self.filesystem.statfs().block_size as usize;
        offset.is_multiple_of(block as u64)
            && at.is_multiple_of(SECTOR_SIZE)
            && at + length.next_multiple_of(block) <= MAX_TRANSFER
    }

    /// Reads up to `length` bytes at `offset` into the client's buffer at
    /// `at`; returns the bytes read.
    pub fn read(
        &mut self,
        client: &mut ClientData,
        inode: InodeNumber,
        offset: u64,
        length: usize,
        at: usize,
    ) -> Result<usize, Error> {
        let length = length.min(MAX_TRANSFER);
        if !client.transfer.covers(at..at + length) {
            return Err(Error::NoBuffer);
        }
        if self.direct(offset, length, at)
            && let Some(buffer) = self.disk_buffer(client)
        {
            let extents = self
                .filesystem
                .map_read(inode, offset, length as u64, MAX_TRANSFER as u64)
                .map_err(fs_error)?;
            let mut count = 0;
            for extent in extents {
                match extent {
                    Extent::Zeros { offset, length } => {
                        let zeros = &mut self.scratch[..length as usize];
                        zeros.fill(0);
                        client
                            .transfer
                            .write(at + offset as usize, zeros)
                            .map_err(|_| Error::NoBuffer)?;
                        count = count.max(offset as usize + length as usize);
                    }
                    Extent::Disk { offset, sector, length } => {
                        let into = (at as u64 + offset) as u32;
                        self.at_driver(client, buffer, |disk| {
                            disk.read_into(buffer, into, sector, (length / SECTOR_SIZE as u64) as u32)
                        })?;
                        count = count.max(offset as usize + length as usize);
                    }
                }
            }
            // The last extent is whole sectors: do not count past the end.
            let size = self.filesystem.stat(inode).map_err(fs_error)?.size;
            let left = usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX);
            return Ok(count.min(length).min(left));
        }
        let data = &mut self.scratch[..length];
        let count = self.filesystem.read(inode, offset, data).map_err(fs_error)?;
        client.transfer.write(at, &data[..count]).map_err(|_| Error::NoBuffer)?;
        Ok(count)
    }

    /// Writes `length` bytes from the client's buffer at `at` to the file
    /// at `offset`; returns the bytes written (fewer if the disk filled).
    pub fn write(
        &mut self,
        client: &mut ClientData,
        inode: InodeNumber,
        offset: u64,
        length: usize,
        at: usize,
    ) -> Result<usize, Error> {
        if length > MAX_TRANSFER || !client.transfer.covers(at..at + length) {
            return Err(Error::NoBuffer);
        }
        let block = self.filesystem.statfs().block_size as usize;
        if self.direct(offset, length, at)
            && length.is_multiple_of(block)
            && let Some(buffer) = self.disk_buffer(client)
        {
            let size = self.filesystem.stat(inode).map_err(fs_error)?.size;
            let extents = self
                .filesystem
                .map_write(inode, offset, length as u64, MAX_TRANSFER as u64)
                .map_err(fs_error)?;
            let mut count = 0;
            for extent in extents {
                if let Extent::Disk {
                    offset: within,
                    sector,
                    length,
                } = extent
                {
                    let from = (at as u64 + within) as u32;
                    let written = self.at_driver(client, buffer, |disk| {
                        disk.write_from(buffer, from, sector, (length / SECTOR_SIZE as u64) as u32)
                    });
                    if written.is_err() {
                        // The new blocks hold stale data until written: cut
                        // the file back rather than expose it.
                        let _ = self.filesystem.truncate(inode, size.max(offset + count as u64));
                        return Err(Error::Io);
                    }
                    count = count.max((within + length) as usize);
                }
            }
            return Ok(count);
        }
        let data = &mut self.scratch[..length];
        client
            .transfer
            .read(at..at + length, data)
            .map_err(|_| Error::NoBuffer)?;
        self.filesystem.write(inode, offset, data).map_err(fs_error)
    }
}

/// A transfer the driver failed (calls to a restarted driver were already
/// repeated): rare, and worth a line.
fn disk_failed(error: DiskError) -> Error {
    runtime::println!("fs: the disk failed: {error:?}");
    Error::Io
}
