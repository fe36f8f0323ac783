//! Allocating and freeing blocks and inodes in the groups' bitmaps.
//!
//! Bitmaps are read and changed through the block cache; the free counts and
//! directory counts live in the in-memory group descriptors.

use crate::{BlockDevice, Error, FileSystem};

/// The first clear bit of `bitmap` in `from..limit`.
fn find_clear_bit(bitmap: &[u8], from: usize, limit: usize) -> Option<usize> {
    let limit = limit.min(bitmap.len() * 8);
    let mut bit = from;
    while bit < limit {
        let byte = bitmap[bit / 8];
        if byte == 0xFF && bit % 8 == 0 {
            bit += 8;
            continue;
        }
        if byte & (1 << (bit % 8)) == 0 {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

fn bit_is_set(bitmap: &[u8], bit: usize) -> bool {
    bitmap.get(bit / 8).is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
}

fn set_bit(bitmap: &mut [u8], bit: usize, value: bool) {
    if let Some(byte) = bitmap.get_mut(bit / 8) {
        if value {
            *byte |= 1 << (bit % 8);
        } else {
            *byte &= !(1 << (bit % 8));
        }
    }
}

impl<D: BlockDevice> FileSystem<D> {
    /// Allocates a block, the first free one at or after `goal` in its
    /// group, else the first free one in the following groups.
    pub(crate) fn allocate_block(&mut self, goal: u32) -> Result<u32, Error> {
        self.allocate_blocks(goal, 1).map(|(block, _)| block)
    }

    /// Allocates up to `limit` consecutive blocks (at least one): the first
    /// free one as for [`Self::allocate_block`], and the free blocks right
    /// after it in its group. Returns the first block and the count. The
    /// bitmap is searched and changed once for the whole run.
    pub(crate) fn allocate_blocks(&mut self, goal: u32, limit: u32) -> Result<(u32, u32), Error> {
        let geometry = self.geometry;
        let goal = if (geometry.first_data_block..geometry.blocks_count).contains(&goal) {
            goal
        } else {
            geometry.first_data_block
        };
        let goal_group = geometry.group_of_block(goal);
        // The goal group comes first from the goal, and last from its start.
        for step in 0..=geometry.groups {
            let group = (goal_group + step) % geometry.groups;
            let free = self.groups.free_blocks(group);
            if free == 0 {
                continue;
            }
            let first_block = geometry.group_first_block(group);
            let from = if step == 0 { (goal - first_block) as usize } else { 0 };
            let bitmap_block = self.groups.block_bitmap(group);
            let bitmap = self.cache.read(&mut self.device, bitmap_block)?;
            let end = (geometry.blocks_in_group(group) as usize).min(bitmap.len() * 8);
            if let Some(bit) = find_clear_bit(bitmap, from, end) {
                // No more than the descriptor counts free, so a count that
                // disagrees with the bitmap cannot underflow.
                let most = limit.clamp(1, u32::from(free)) as usize;
                let count = (bit..end)
                    .take(most)
                    .take_while(|&candidate| !bit_is_set(bitmap, candidate))
                    .count();
                let bitmap = self.cache.write(&mut self.device, bitmap_block)?;
                for taken in bit..bit + count {
                    set_bit(bitmap, taken, true);
                }
                self.groups.set_free_blocks(group, free - count as u16);
                return Ok((first_block + bit as u32, count as u32));
            }
        }
        Err(Error::NoSpace)
    }

    /// Frees a block and drops it from the cache.
    pub(crate) fn free_block(&mut self, block: u32) -> Result<(), Error> {
        self.check_block(block)?;
        let group = self.geometry.group_of_block(block);
        let bit = (block - self.geometry.group_first_block(group)) as usize;
        let bitmap = self.cache.write(&mut self.device, self.groups.block_bitmap(group))?;
        if !bit_is_set(bitmap, bit) {
            return Err(Error::Corrupt("a block in use is free in the bitmap"));
        }
        set_bit(bitmap, bit, false);
        self.groups
            .set_free_blocks(group, self.groups.free_blocks(group).saturating_add(1));
        self.cache.discard(block, 1);
        Ok(())
    }

    /// Frees each of `blocks`.
    pub(crate) fn free_each(&mut self, blocks: impl IntoIterator<Item = u32>) -> Result<(), Error> {
        blocks.into_iter().try_for_each(|block| self.free_block(block))
    }

    /// Allocates an inode: a file's in its parent's group, a directory's in
    /// the group with the most free inodes, to spread directories out. The
    /// inode's record is not touched.
    pub(crate) fn allocate_inode(&mut self, parent_group: u32, directory: bool) -> Result<u32, Error> {
        let geometry = self.geometry;
        let start = if directory {
            (0..geometry.groups)
                .max_by_key(|&group| (self.groups.free_inodes(group), core::cmp::Reverse(group)))
                .unwrap_or(parent_group)
        } else {
            parent_group
        };
        for step in 0..geometry.groups {
            let group = (start + step) % geometry.groups;
            if self.groups.free_inodes(group) == 0 {
                continue;
            }
            let first_inode = group * geometry.inodes_per_group + 1;
            // Reserved inodes are never handed out, whatever the bitmap says.
            let from = geometry.first_inode.saturating_sub(first_inode) as usize;
            let bitmap_block = self.groups.inode_bitmap(group);
            let bitmap = self.cache.read(&mut self.device, bitmap_block)?;
            if let Some(bit) = find_clear_bit(bitmap, from, geometry.inodes_per_group as usize) {
                set_bit(self.cache.write(&mut self.device, bitmap_block)?, bit, true);
                self.groups.set_free_inodes(group, self.groups.free_inodes(group) - 1);
                if directory {
                    let used = self.groups.used_directories(group).saturating_add(1);
                    self.groups.set_used_directories(group, used);
                }
                return Ok(first_inode + bit as u32);
            }
        }
        Err(Error::NoInodes)
    }

    /// Marks an inode free in its group. The record is the caller's.
    pub(crate) fn free_inode(&mut self, inode: u32, directory: bool) -> Result<(), Error> {
        let group = self.geometry.group_of_inode(inode);
        let bit = ((inode - 1) % self.geometry.inodes_per_group) as usize;
        let bitmap = self.cache.write(&mut self.device, self.groups.inode_bitmap(group))?;
        if !bit_is_set(bitmap, bit) {
            return Err(Error::Corrupt("an inode in use is free in the bitmap"));
        }
        set_bit(bitmap, bit, false);
        self.groups
            .set_free_inodes(group, self.groups.free_inodes(group).saturating_add(1));
        if directory {
            let used = self.groups.used_directories(group).saturating_sub(1);
            self.groups.set_used_directories(group, used);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_clear_bits() {
        let bitmap = [0xFF, 0b1111_0111, 0x00];
        assert_eq!(find_clear_bit(&bitmap, 0, 24), Some(11));
        assert_eq!(find_clear_bit(&bitmap, 12, 24), Some(16));
        assert_eq!(find_clear_bit(&bitmap, 12, 16), None);
        assert_eq!(find_clear_bit(&bitmap, 0, 100), Some(11));
    }
}
