//! A bounded write-back cache of filesystem blocks.
//!
//! Metadata and the partial blocks at the edges of file reads and writes go
//! through here; whole file blocks bypass it ([`BlockCache::read_direct`],
//! [`BlockCache::write_direct`]) but stay coherent with it. Dirty blocks
//! reach the device when they are evicted (least recently used first) or on
//! [`BlockCache::flush`]. Each device call is an IPC round trip in the real
//! system, so runs of consecutive blocks travel together, up to
//! [`MAX_TRANSFER`] bytes per call.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::RangeBounds;

use crate::{BlockDevice, Error, SECTOR_SIZE};

/// The most bytes moved by one device call.
pub(crate) const MAX_TRANSFER: usize = 64 * 1024;

/// The smallest capacity accepted; below it one operation could evict the
/// blocks it is working on over and over.
const MIN_CAPACITY: usize = 8;

struct CachedBlock {
    data: Vec<u8>,
    dirty: bool,
    /// When the block was last used; its key in `recency`.
    stamp: u64,
}

/// The cache. It does not own the device: every call that may touch it
/// borrows it.
pub(crate) struct BlockCache {
    block_size: usize,
    capacity: usize,
    blocks: BTreeMap<u32, CachedBlock>,
    /// Use stamp to block, oldest first.
    recency: BTreeMap<u64, u32>,
    clock: u64,
    /// Buffers of evicted or discarded blocks, reused for the next loads so
    /// that a busy cache does not go to the heap for every block.
    spare: Vec<Vec<u8>>,
    /// Reused staging buffer for writing back a run of dirty blocks.
    staging: Vec<u8>,
}

impl BlockCache {
    /// An empty cache of at most `capacity` blocks of `block_size` bytes.
    pub(crate) fn new(block_size: usize, capacity: usize) -> Self {
        Self {
            block_size,
            capacity: capacity.max(MIN_CAPACITY),
            blocks: BTreeMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
            spare: Vec::new(),
            staging: Vec::new(),
        }
    }

    /// The number of blocks cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// The longest run of blocks worth moving in one call.
    pub(crate) fn max_run(&self) -> usize {
        (MAX_TRANSFER / self.block_size).min(self.capacity / 2).max(1)
    }

    fn sector(&self, block: impl Into<u64>) -> u64 {
        block.into() * (self.block_size / SECTOR_SIZE) as u64
    }

    /// A block's contents, read from the device if not cached.
    pub(crate) fn read<D: BlockDevice>(&mut self, device: &mut D, block: u32) -> Result<&[u8], Error> {
        Ok(&self.load(device, block, true)?.data)
    }

    /// A block's contents for changing, read from the device if not cached.
    pub(crate) fn write<D: BlockDevice>(&mut self, device: &mut D, block: u32) -> Result<&mut [u8], Error> {
        let entry = self.load(device, block, true)?;
        entry.dirty = true;
        Ok(&mut entry.data)
    }

    /// A block to be filled from scratch: zeroed, without reading the device.
    pub(crate) fn fresh<D: BlockDevice>(&mut self, device: &mut D, block: u32) -> Result<&mut [u8], Error> {
        let entry = self.load(device, block, false)?;
        entry.data.fill(0);
        entry.dirty = true;
        Ok(&mut entry.data)
    }

    /// Drops `count` blocks from `first` without writing them back: they
    /// have been freed, or are about to be overwritten on the device.
    pub(crate) fn discard(&mut self, first: u32, count: usize) {
        let end = u64::from(first) + count as u64;
        while let Some((&block, _)) = self
            .blocks
            .range(first..)
            .next()
            .filter(|&(&block, _)| u64::from(block) < end)
        {
            self.remove(block);
        }
    }

    /// Reads whole blocks from `first` into `buffer` (a multiple of the block
    /// size) without caching them: cached copies, which may be newer than
    /// the device, are copied; the runs between them come from the device
    /// in as few calls as possible.
    pub(crate) fn read_direct<D: BlockDevice>(
        &self,
        device: &mut D,
        first: u32,
        buffer: &mut [u8],
    ) -> Result<(), Error> {
        let mut block = u64::from(first);
        for chunk in buffer.chunks_mut(MAX_TRANSFER) {
            let end = block + (chunk.len() / self.block_size) as u64;
            let mut at = 0;
            while at < chunk.len() {
                let cached = u32::try_from(block)
                    .ok()
                    .and_then(|from| self.blocks.range(from..).next())
                    .filter(|&(&cached, _)| u64::from(cached) < end);
                let uncached = cached.map_or(end, |(&cached, _)| u64::from(cached)) - block;
                if uncached > 0 {
                    let bytes = uncached as usize * self.block_size;
                    device
                        .read(self.sector(block), &mut chunk[at..at + bytes])
                        .map_err(Error::Device)?;
                    at += bytes;
                    block += uncached;
                } else if let Some((_, entry)) = cached {
                    chunk[at..at + self.block_size].copy_from_slice(&entry.data);
                    at += self.block_size;
                    block += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes whole blocks from `first` straight to the device, dropping
    /// any cached copies first so that they cannot shadow or overwrite the
    /// new contents.
    pub(crate) fn write_direct<D: BlockDevice>(
        &mut self,
        device: &mut D,
        first: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        self.discard(first, data.len() / self.block_size);
        let mut block = u64::from(first);
        for chunk in data.chunks(MAX_TRANSFER) {
            device.write(self.sector(block), chunk).map_err(Error::Device)?;
            block += (chunk.len() / self.block_size) as u64;
        }
        Ok(())
    }

    /// Writes every dirty block back, consecutive runs in one call each.
    pub(crate) fn flush<D: BlockDevice>(&mut self, device: &mut D) -> Result<(), Error> {
        self.flush_range(device, ..)
    }

    /// Writes the dirty blocks among `blocks` back, as [`Self::flush`]
    /// does: before the caller reads them from the device around the cache.
    pub(crate) fn flush_range<D: BlockDevice>(
        &mut self,
        device: &mut D,
        blocks: impl RangeBounds<u32>,
    ) -> Result<(), Error> {
        let dirty: Vec<u32> = self
            .blocks
            .range(blocks)
            .filter(|(_, entry)| entry.dirty)
            .map(|(&block, _)| block)
            .collect();
        let mut index = 0;
        while let Some(&first) = dirty.get(index) {
            let mut count = 1;
            while count < self.max_run()
                && dirty
                    .get(index + count)
                    .is_some_and(|&next| u64::from(next) == u64::from(first) + count as u64)
            {
                count += 1;
            }
            self.write_back(device, first, count)?;
            index += count;
        }
        Ok(())
    }

    fn next_stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Finds or loads a block and marks it most recently used.
    fn load<D: BlockDevice>(&mut self, device: &mut D, block: u32, read: bool) -> Result<&mut CachedBlock, Error> {
        let loaded = if self.blocks.contains_key(&block) {
            None
        } else {
            self.make_room(device, 1)?;
            let mut data = self.spare.pop().unwrap_or_else(|| vec![0; self.block_size]);
            if read {
                device.read(self.sector(block), &mut data).map_err(Error::Device)?;
            }
            Some(data)
        };
        let stamp = self.next_stamp();
        let block_size = self.block_size;
        // The closure runs only on a miss, when `loaded` holds the data.
        let entry = self.blocks.entry(block).or_insert_with(|| CachedBlock {
            data: loaded.unwrap_or_else(|| vec![0; block_size]),
            dirty: false,
            stamp,
        });
        self.recency.remove(&entry.stamp);
        entry.stamp = stamp;
        self.recency.insert(stamp, block);
        Ok(entry)
    }

    /// Drops a block from the cache, keeping its buffer for reuse.
    fn remove(&mut self, block: u32) {
        if let Some(entry) = self.blocks.remove(&block) {
            self.recency.remove(&entry.stamp);
            if self.spare.len() < self.max_run() {
                self.spare.push(entry.data);
            }
        }
    }

    /// Evicts least recently used blocks until `count` more fit. A dirty
    /// victim is written back together with its dirty neighbours.
    fn make_room<D: BlockDevice>(&mut self, device: &mut D, count: usize) -> Result<(), Error> {
        while self.blocks.len() + count > self.capacity {
            let Some((&stamp, &victim)) = self.recency.iter().next() else {
                break;
            };
            if self.blocks.get(&victim).is_some_and(|entry| entry.dirty) {
                let (first, count) = self.dirty_run_around(victim);
                self.write_back(device, first, count)?;
            }
            self.recency.remove(&stamp);
            self.remove(victim);
        }
        Ok(())
    }

    /// The run of consecutive dirty cached blocks around `block`, as its
    /// first block and length, at most [`Self::max_run`] long.
    fn dirty_run_around(&self, block: u32) -> (u32, usize) {
        let dirty = |candidate: u32| self.blocks.get(&candidate).is_some_and(|entry| entry.dirty);
        let limit = self.max_run();
        let mut first = block;
        let mut count = 1;
        while count < limit && first > 0 && dirty(first - 1) {
            first -= 1;
            count += 1;
        }
        while count < limit && u32::try_from(u64::from(first) + count as u64).is_ok_and(dirty) {
            count += 1;
        }
        (first, count)
    }

    /// Writes `count` cached blocks from `first` in one call and marks them
    /// clean.
    fn write_back<D: BlockDevice>(&mut self, device: &mut D, first: u32, count: usize) -> Result<(), Error> {
        let mut staging = core::mem::take(&mut self.staging);
        staging.clear();
        for block in (0..count as u32).map(|offset| first + offset) {
            if let Some(entry) = self.blocks.get(&block) {
                staging.extend_from_slice(&entry.data);
            }
        }
        let result = device.write(self.sector(first), &staging).map_err(Error::Device);
        self.staging = staging;
        result?;
        for block in (0..count as u32).map(|offset| first + offset) {
            if let Some(entry) = self.blocks.get_mut(&block) {
                entry.dirty = false;
            }
        }
        Ok(())
    }
}
