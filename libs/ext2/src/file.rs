//! Inodes and their block maps: loading and storing inode records, mapping
//! a file's logical blocks through direct, single, double and triple
//! indirect blocks, and reading, writing, truncating and freeing file data.

use alloc::vec::Vec;

use crate::layout::{DIRECT_BLOCKS, Inode, InodeType, ROOT_INODE, set_u32, u32_at};
use crate::{BlockDevice, Error, FileSystem, InodeNumber};

/// The magic number of an extended attribute block.
const ATTRIBUTE_MAGIC: u32 = 0xEA02_0000;

/// Where a logical block's pointer chain starts, and how it goes on.
struct BlockPath {
    /// The `i_block` slot: 0 to 11 direct, 12 to 14 indirect.
    slot: usize,
    /// Indirect blocks between the slot and the data block: 0 to 3.
    depth: usize,
    /// The pointer index in each indirect block, outermost first.
    indices: [usize; 3],
}

impl<D: BlockDevice> FileSystem<D> {
    /// Fails unless `block` is a block of the filesystem.
    pub(crate) fn check_block(&self, block: u32) -> Result<(), Error> {
        if (self.geometry.first_data_block..self.geometry.blocks_count).contains(&block) {
            Ok(())
        } else {
            Err(Error::Corrupt("block number out of range"))
        }
    }

    /// The block and byte offset of an inode's record.
    fn inode_location(&self, inode: u32) -> Result<(u32, usize), Error> {
        if inode == 0 || inode > self.geometry.inodes_count {
            return Err(Error::Corrupt("inode number out of range"));
        }
        let group = self.geometry.group_of_inode(inode);
        let index = ((inode - 1) % self.geometry.inodes_per_group) as usize;
        let byte = index * self.geometry.inode_size;
        // Inside the table: `GroupDescriptors::check` checked its extent.
        let block = self.groups.inode_table(group) + (byte / self.geometry.block_size) as u32;
        Ok((block, byte % self.geometry.block_size))
    }

    /// Reads an inode's record.
    pub(crate) fn load_inode(&mut self, inode: u32) -> Result<Inode, Error> {
        let (block, offset) = self.inode_location(inode)?;
        let data = self.cache.read(&mut self.device, block)?;
        Ok(Inode::from_bytes(&data[offset..offset + self.geometry.inode_size]))
    }

    /// Writes an inode's record.
    pub(crate) fn store_inode(&mut self, inode: u32, node: &Inode) -> Result<(), Error> {
        let (block, offset) = self.inode_location(inode)?;
        let data = self.cache.write(&mut self.device, block)?;
        data[offset..offset + self.geometry.inode_size].copy_from_slice(node.bytes());
        Ok(())
    }

    /// Loads an inode a caller named: the root or an unreserved inode in use.
    pub(crate) fn open(&mut self, inode: InodeNumber) -> Result<Inode, Error> {
        let InodeNumber(number) = inode;
        if number != ROOT_INODE && !(self.geometry.first_inode..=self.geometry.inodes_count).contains(&number) {
            return Err(Error::NotFound);
        }
        let node = self.load_inode(number)?;
        if node.links() == 0 || node.mode() == 0 {
            return Err(Error::NotFound);
        }
        Ok(node)
    }

    /// Loads an inode a caller named, which must be a regular file.
    pub(crate) fn open_regular(&mut self, inode: InodeNumber) -> Result<Inode, Error> {
        let node = self.open(inode)?;
        match node.kind() {
            InodeType::Regular => Ok(node),
            InodeType::Directory => Err(Error::IsADirectory),
            _ => Err(Error::InvalidOperation("not a regular file")),
        }
    }

    /// The pointer chain of logical block `logical`.
    fn block_path(&self, logical: u64) -> Result<BlockPath, Error> {
        let pointers = self.geometry.pointers_per_block();
        let index = |value: u64| (value % pointers) as usize;
        let mut rest = logical;
        if rest < DIRECT_BLOCKS as u64 {
            return Ok(BlockPath {
                slot: rest as usize,
                depth: 0,
                indices: [0; 3],
            });
        }
        rest -= DIRECT_BLOCKS as u64;
        if rest < pointers {
            return Ok(BlockPath {
                slot: 12,
                depth: 1,
                indices: [index(rest), 0, 0],
            });
        }
        rest -= pointers;
        if rest < pointers * pointers {
            return Ok(BlockPath {
                slot: 13,
                depth: 2,
                indices: [index(rest / pointers), index(rest), 0],
            });
        }
        rest -= pointers * pointers;
        if rest < pointers * pointers * pointers {
            let indices = [index(rest / pointers / pointers), index(rest / pointers), index(rest)];
            return Ok(BlockPath {
                slot: 14,
                depth: 3,
                indices,
            });
        }
        Err(Error::FileTooLarge)
    }

    /// Pointer `index` of indirect block `block`.
    fn pointer(&mut self, block: u32, index: usize) -> Result<u32, Error> {
        self.check_block(block)?;
        Ok(u32_at(self.cache.read(&mut self.device, block)?, index * 4))
    }

    /// The physical block of logical block `logical`, or `None` in a hole.
    pub(crate) fn map(&mut self, node: &Inode, logical: u64) -> Result<Option<u32>, Error> {
        let path = self.block_path(logical)?;
        let mut block = node.block(path.slot);
        for &index in &path.indices[..path.depth] {
            if block == 0 {
                return Ok(None);
            }
            block = self.pointer(block, index)?;
        }
        if block == 0 {
            return Ok(None);
        }
        self.check_block(block)?;
        Ok(Some(block))
    }

    /// The physical block of logical block `logical`, allocating it and any
    /// missing indirect blocks near `goal`. Returns whether the data block
    /// is new (its contents are then undefined). Either every needed block
    /// is allocated and linked, or nothing changes.
    pub(crate) fn map_or_allocate(&mut self, node: &mut Inode, logical: u64, goal: u32) -> Result<(u32, bool), Error> {
        let path = self.block_path(logical)?;
        // pointers[level] is the block at that level of the chain: the
        // indirect blocks, then the data block at `depth`.
        let mut pointers = [0u32; 4];
        pointers[0] = node.block(path.slot);
        let mut level = 0;
        while level < path.depth && pointers[level] != 0 {
            pointers[level + 1] = self.pointer(pointers[level], path.indices[level])?;
            level += 1;
        }
        if pointers[level] != 0 {
            self.check_block(pointers[level])?;
            return Ok((pointers[level], false));
        }
        let needed = path.depth + 1 - level;
        let added_sectors = needed as u32 * self.geometry.sectors_per_block();
        let sectors = node.sectors().checked_add(added_sectors).ok_or(Error::FileTooLarge)?;
        let mut allocated: Vec<u32> = Vec::with_capacity(needed);
        for _ in 0..needed {
            let goal = allocated.last().map_or(goal, |&last| last.saturating_add(1));
            match self.allocate_block(goal) {
                Ok(block) => allocated.push(block),
                Err(error) => {
                    for block in allocated {
                        self.free_block(block)?;
                    }
                    return Err(error);
                }
            }
        }
        for (offset, &block) in allocated.iter().enumerate() {
            let at = level + offset;
            if at < path.depth {
                self.cache.fresh(&mut self.device, block)?;
            }
            if at == 0 {
                node.set_block(path.slot, block);
            } else {
                let parent = self.cache.write(&mut self.device, pointers[at - 1])?;
                set_u32(parent, path.indices[at - 1] * 4, block);
            }
            pointers[at] = block;
        }
        node.set_sectors(sectors);
        Ok((pointers[path.depth], true))
    }

    /// Frees every data block from logical block `first` on, and the
    /// indirect blocks left without pointers.
    fn free_from(&mut self, node: &mut Inode, first: u64) -> Result<(), Error> {
        for slot in 0..DIRECT_BLOCKS {
            let block = node.block(slot);
            if slot as u64 >= first && block != 0 {
                self.free_counted(node, block)?;
                node.set_block(slot, 0);
            }
        }
        let pointers = self.geometry.pointers_per_block();
        let mut base = DIRECT_BLOCKS as u64;
        for (slot, depth) in [(12, 1), (13, 2), (14, 3)] {
            let span = pointers.pow(depth);
            let block = node.block(slot);
            if block != 0 && first < base + span && self.free_tree(node, block, depth, first.saturating_sub(base))? {
                node.set_block(slot, 0);
            }
            base += span;
        }
        Ok(())
    }

    /// Frees, under the indirect block `block` of `depth` levels, the data
    /// blocks from index `start` on (counted inside this subtree). Returns
    /// whether `block` itself was freed, having no pointer left.
    fn free_tree(&mut self, node: &mut Inode, block: u32, depth: u32, start: u64) -> Result<bool, Error> {
        if depth == 0 {
            self.free_counted(node, block)?;
            return Ok(true);
        }
        self.check_block(block)?;
        let entries: Vec<u32> = self
            .cache
            .read(&mut self.device, block)?
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&bytes| u32::from_le_bytes(bytes))
            .collect();
        let child_span = self.geometry.pointers_per_block().pow(depth - 1);
        let mut kept = false;
        for (index, &child) in entries.iter().enumerate() {
            let child_base = index as u64 * child_span;
            if child == 0 {
                continue;
            }
            if child_base + child_span <= start {
                kept = true;
                continue;
            }
            if self.free_tree(node, child, depth - 1, start.saturating_sub(child_base))? {
                set_u32(self.cache.write(&mut self.device, block)?, index * 4, 0);
            } else {
                kept = true;
            }
        }
        if kept {
            return Ok(false);
        }
        self.free_counted(node, block)?;
        Ok(true)
    }

    /// Frees a block of `node` and takes it off its block count.
    fn free_counted(&mut self, node: &mut Inode, block: u32) -> Result<(), Error> {
        self.free_block(block)?;
        node.set_sectors(node.sectors().saturating_sub(self.geometry.sectors_per_block()));
        Ok(())
    }

    /// Reads file data at `offset`; see [`FileSystem::read`].
    pub(crate) fn read_data(&mut self, node: &Inode, offset: u64, buffer: &mut [u8]) -> Result<usize, Error> {
        let size = node.size();
        if offset >= size {
            return Ok(0);
        }
        let length = buffer.len().min(usize::try_from(size - offset).unwrap_or(usize::MAX));
        let block_size = self.geometry.block_size as u64;
        let end = offset + length as u64;
        let mut position = offset;
        while position < end {
            // One chunk of blocks: map them, fetch the missing runs in as
            // few device calls as possible, then copy.
            let first = position / block_size;
            let last = (end - 1) / block_size;
            let count = (last - first + 1).min(self.cache.max_run() as u64);
            let mut blocks = Vec::with_capacity(count as usize);
            for logical in first..first + count {
                blocks.push(self.map(node, logical)?);
            }
            let present: Vec<u32> = blocks.iter().flatten().copied().collect();
            self.cache.prefetch(&mut self.device, &present)?;
            for block in blocks {
                let within = (position % block_size) as usize;
                let take = (self.geometry.block_size - within).min((end - position) as usize);
                let at = (position - offset) as usize;
                let target = &mut buffer[at..at + take];
                match block {
                    Some(block) => {
                        target.copy_from_slice(&self.cache.read(&mut self.device, block)?[within..within + take])
                    }
                    None => target.fill(0),
                }
                position += take as u64;
            }
        }
        Ok(length)
    }

    /// Writes file data at `offset`; see [`FileSystem::write`]. The caller
    /// stores the inode, also on error.
    pub(crate) fn write_data(
        &mut self,
        inode: u32,
        node: &mut Inode,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Error::FileTooLarge)?;
        self.check_size(end)?;
        let block_size = self.geometry.block_size as u64;
        let first = offset / block_size;
        let mut goal = match first.checked_sub(1) {
            Some(previous) => self.map(node, previous)?.map(|block| block.saturating_add(1)),
            None => None,
        }
        .unwrap_or_else(|| self.geometry.group_first_block(self.geometry.group_of_inode(inode)));
        let mut written = 0;
        let mut failure = None;
        while written < data.len() {
            let position = offset + written as u64;
            let within = (position % block_size) as usize;
            let take = (self.geometry.block_size - within).min(data.len() - written);
            let (block, new) = match self.map_or_allocate(node, position / block_size, goal) {
                Ok(found) => found,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            goal = block.saturating_add(1);
            let target = if new || take == self.geometry.block_size {
                self.cache.fresh(&mut self.device, block)?
            } else {
                self.cache.write(&mut self.device, block)?
            };
            target[within..within + take].copy_from_slice(&data[written..written + take]);
            written += take;
        }
        if written > 0 {
            let reached = offset + written as u64;
            if reached > node.size() {
                self.set_size(node, reached);
            }
            node.touch(self.clock);
        }
        match failure {
            Some(Error::NoSpace) if written > 0 => Ok(written),
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    /// Sets a regular file's size; see [`FileSystem::truncate`].
    pub(crate) fn truncate_data(&mut self, node: &mut Inode, size: u64) -> Result<(), Error> {
        self.check_size(size)?;
        if size < node.size() {
            let block_size = self.geometry.block_size as u64;
            self.free_from(node, size.div_ceil(block_size))?;
            // Bytes past the end must read as zero if the file grows again.
            let within = (size % block_size) as usize;
            if within != 0
                && let Some(block) = self.map(node, size / block_size)?
            {
                self.cache.write(&mut self.device, block)?[within..].fill(0);
            }
        }
        self.set_size(node, size);
        node.touch(self.clock);
        Ok(())
    }

    /// Fails with [`Error::FileTooLarge`] for a size beyond the block map,
    /// or beyond 2 GiB where the large_file feature cannot be set.
    fn check_size(&self, size: u64) -> Result<(), Error> {
        let limit = if self.superblock.has_features() {
            self.geometry.max_file_size()
        } else {
            1 << 31
        };
        if size > limit { Err(Error::FileTooLarge) } else { Ok(()) }
    }

    /// Sets a regular file's size, turning on large_file for 2 GiB and up.
    fn set_size(&mut self, node: &mut Inode, size: u64) {
        if size >= 1 << 31 && !self.superblock.large_file() {
            self.superblock.set_large_file();
        }
        node.set_size(size);
    }

    /// Frees an inode no name refers to any more: its blocks, its extended
    /// attribute block, then the inode, which is stamped deleted.
    pub(crate) fn release_inode(&mut self, inode: u32, mut node: Inode) -> Result<(), Error> {
        let attribute_block = node.attribute_block();
        let attribute_sectors = if attribute_block == 0 {
            0
        } else {
            self.geometry.sectors_per_block()
        };
        // Fast symbolic links and device files keep other data in i_block.
        if node.sectors() > attribute_sectors {
            self.free_from(&mut node, 0)?;
        }
        if attribute_block != 0 {
            self.release_attribute_block(attribute_block)?;
        }
        let directory = node.is_directory();
        node.set_links(0);
        node.set_size(0);
        node.set_sectors(0);
        node.touch(self.clock);
        // e2fsck takes a deletion time below the inode count for a link of
        // the orphan list.
        node.set_deletion_time(self.clock.max(self.geometry.inodes_count));
        self.store_inode(inode, &node)?;
        self.free_inode(inode, directory)
    }

    /// Drops one reference to a shared extended attribute block.
    fn release_attribute_block(&mut self, block: u32) -> Result<(), Error> {
        self.check_block(block)?;
        let data = self.cache.read(&mut self.device, block)?;
        if u32_at(data, 0) != ATTRIBUTE_MAGIC {
            return Err(Error::Corrupt("bad extended attribute block"));
        }
        let references = u32_at(data, 4);
        if references > 1 {
            set_u32(self.cache.write(&mut self.device, block)?, 4, references - 1);
            Ok(())
        } else {
            self.free_block(block)
        }
    }
}
