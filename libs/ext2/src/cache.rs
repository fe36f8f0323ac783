//! A bounded write-back cache of filesystem blocks.
//!
//! Every block the filesystem reads or writes goes through here. Dirty blocks
//! reach the device when they are evicted (least recently used first) or on
//! [`BlockCache::flush`]. Each device call is an IPC round trip in the real
//! system, so runs of consecutive blocks travel together, up to
//! [`MAX_TRANSFER`] bytes per call.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

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
        }
    }

    /// The longest run of blocks worth moving in one call.
    pub(crate) fn max_run(&self) -> usize {
        (MAX_TRANSFER / self.block_size).min(self.capacity / 2).max(1)
    }

    fn sector(&self, block: u32) -> u64 {
        u64::from(block) * (self.block_size / SECTOR_SIZE) as u64
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

    /// Drops a block without writing it back: it has been freed.
    pub(crate) fn discard(&mut self, block: u32) {
        if let Some(entry) = self.blocks.remove(&block) {
            self.recency.remove(&entry.stamp);
        }
    }

    /// Reads the uncached ones among `blocks`, one device call per run of
    /// consecutive block numbers (at most [`Self::max_run`] blocks each).
    pub(crate) fn prefetch<D: BlockDevice>(&mut self, device: &mut D, blocks: &[u32]) -> Result<(), Error> {
        let mut index = 0;
        while let Some(&first) = blocks.get(index) {
            index += 1;
            if self.blocks.contains_key(&first) {
                continue;
            }
            let mut count = 1;
            while count < self.max_run()
                && blocks.get(index).is_some_and(|&next| {
                    u64::from(next) == u64::from(first) + count as u64 && !self.blocks.contains_key(&next)
                })
            {
                count += 1;
                index += 1;
            }
            self.make_room(device, count)?;
            let mut buffer = vec![0; count * self.block_size];
            device.read(self.sector(first), &mut buffer).map_err(Error::Device)?;
            for (block, data) in (0..)
                .map(|offset| first + offset)
                .zip(buffer.chunks_exact(self.block_size))
            {
                let stamp = self.next_stamp();
                self.recency.insert(stamp, block);
                self.blocks.insert(
                    block,
                    CachedBlock {
                        data: data.to_vec(),
                        dirty: false,
                        stamp,
                    },
                );
            }
        }
        Ok(())
    }

    /// Writes every dirty block back, consecutive runs in one call each.
    pub(crate) fn flush<D: BlockDevice>(&mut self, device: &mut D) -> Result<(), Error> {
        let dirty: Vec<u32> = self
            .blocks
            .iter()
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
        if !self.blocks.contains_key(&block) {
            self.make_room(device, 1)?;
            let mut data = vec![0; self.block_size];
            if read {
                device.read(self.sector(block), &mut data).map_err(Error::Device)?;
            }
            self.blocks.insert(
                block,
                CachedBlock {
                    data,
                    dirty: false,
                    stamp: 0,
                },
            );
        }
        let stamp = self.next_stamp();
        let block_size = self.block_size;
        let entry = self.blocks.entry(block).or_insert_with(|| CachedBlock {
            data: vec![0; block_size],
            dirty: false,
            stamp,
        });
        self.recency.remove(&entry.stamp);
        entry.stamp = stamp;
        self.recency.insert(stamp, block);
        Ok(entry)
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
            self.blocks.remove(&victim);
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
        let mut buffer = Vec::with_capacity(count * self.block_size);
        for block in (0..count as u32).map(|offset| first + offset) {
            if let Some(entry) = self.blocks.get(&block) {
                buffer.extend_from_slice(&entry.data);
            }
        }
        device.write(self.sector(first), &buffer).map_err(Error::Device)?;
        for block in (0..count as u32).map(|offset| first + offset) {
            if let Some(entry) = self.blocks.get_mut(&block) {
                entry.dirty = false;
            }
        }
        Ok(())
    }
}
