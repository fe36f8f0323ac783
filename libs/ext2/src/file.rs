//! Inodes and their block maps: loading and storing inode records, mapping
//! a file's logical blocks through direct, single, double and triple
//! indirect blocks, and reading, writing, truncating and freeing file data.
//!
//! File data moves in runs: one walk of the block map finds a run of
//! physically consecutive blocks (or a hole) under one indirect block, and
//! its whole blocks go straight between the device and the caller's buffer
//! in large calls. Only the partial blocks at the edges go through the cache.
//! The same runs, as [`Extent`]s, let a caller move block-aligned data
//! between the device and its own memory without a copy here.

use alloc::vec::Vec;

use crate::layout::{DIRECT_BLOCKS, Inode, InodeType, ROOT_INODE, set_u32, u32_at};
use crate::{BlockDevice, Error, Extent, FileSystem, InodeNumber, SECTOR_SIZE};

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

impl BlockPath {
    /// The index of the data block's pointer in its leaf.
    fn leaf_index(&self) -> usize {
        match self.depth.checked_sub(1) {
            None => self.slot,
            Some(level) => self.indices[level],
        }
    }
}

/// Where the pointers to a run of a file's data blocks live.
#[derive(Clone, Copy)]
enum Leaf {
    /// The direct slots of `i_block`.
    Inode,
    /// An indirect block whose pointers name data blocks.
    Indirect(u32),
}

/// Data blocks allocated for consecutive logical blocks, not yet linked
/// into the file.
struct Reserved {
    leaf: Leaf,
    /// The index in `leaf` of the first block's pointer.
    index: usize,
    first: u32,
    count: usize,
}

/// The run at `index` of a leaf's pointers, at most `available` long: its
/// first pointer and how many pointers follow on from it, all zero (a hole)
/// or counting up by one (consecutive blocks).
fn scan_run(pointer: impl Fn(usize) -> u32, index: usize, available: usize) -> (u32, usize) {
    let first = pointer(index);
    let follows = (1..available)
        .take_while(|&offset| {
            let expected = if first == 0 {
                Some(0)
            } else {
                first.checked_add(offset as u32)
            };
            Some(pointer(index + offset)) == expected
        })
        .count();
    (first, 1 + follows)
}

/// Appends `length` bytes at `offset` of a mapped range to `extents`: on the
/// device from sector `sector`, or zeros for `None`. They are merged into the
/// last extent where they carry on from it, and cut into extents of at most
/// `max_extent` bytes.
fn push_extent(extents: &mut Vec<Extent>, offset: u64, sector: Option<u64>, length: u64, max_extent: u64) {
    let (mut offset, mut sector, mut length) = (offset, sector, length);
    while length > 0 {
        let last = match (extents.last_mut(), sector) {
            (
                Some(Extent::Zeros {
                    offset: at,
                    length: size,
                }),
                None,
            ) if *at + *size == offset => Some(size),
            (
                Some(Extent::Disk {
                    offset: at,
                    sector: start,
                    length: size,
                }),
                Some(sector),
            ) if *at + *size == offset && *start + *size / SECTOR_SIZE as u64 == sector => Some(size),
            _ => None,
        };
        let take = match last {
            Some(size) if *size < max_extent => {
                let take = (max_extent - *size).min(length);
                *size += take;
                take
            }
            _ => {
                let take = max_extent.min(length);
                extents.push(match sector {
                    None => Extent::Zeros { offset, length: take },
                    Some(sector) => Extent::Disk {
                        offset,
                        sector,
                        length: take,
                    },
                });
                take
            }
        };
        offset += take;
        sector = sector.map(|start| start + take / SECTOR_SIZE as u64);
        length -= take;
    }
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

    /// The number of pointers in the leaf of `path`.
    fn leaf_length(&self, path: &BlockPath) -> usize {
        if path.depth == 0 {
            DIRECT_BLOCKS
        } else {
            self.geometry.pointers_per_block() as usize
        }
    }

    /// The leaf holding the pointer of `path`'s data block, or `None` if an
    /// indirect block on the way is missing.
    fn leaf(&mut self, node: &Inode, path: &BlockPath) -> Result<Option<Leaf>, Error> {
        let Some(levels) = path.depth.checked_sub(1) else {
            return Ok(Some(Leaf::Inode));
        };
        let mut block = node.block(path.slot);
        for &index in &path.indices[..levels] {
            if block == 0 {
                return Ok(None);
            }
            block = self.pointer(block, index)?;
        }
        if block == 0 {
            return Ok(None);
        }
        self.check_block(block)?;
        Ok(Some(Leaf::Indirect(block)))
    }

    /// The physical block of logical block `logical`, or `None` in a hole.
    pub(crate) fn map(&mut self, node: &Inode, logical: u64) -> Result<Option<u32>, Error> {
        Ok(self.map_run(node, logical, 1)?.0)
    }

    /// The run from logical block `logical`, at most `limit` blocks and
    /// within one leaf, that is a hole or physically consecutive: the
    /// physical block of `logical` (`None` in a hole) and the run's length.
    /// The indirect blocks are walked once for the whole run.
    fn map_run(&mut self, node: &Inode, logical: u64, limit: u64) -> Result<(Option<u32>, u64), Error> {
        let path = self.block_path(logical)?;
        let index = path.leaf_index();
        let available = (self.leaf_length(&path) - index)
            .min(usize::try_from(limit).unwrap_or(usize::MAX))
            .max(1);
        let (first, count) = match self.leaf(node, &path)? {
            None => return Ok((None, available as u64)),
            Some(Leaf::Inode) => scan_run(|at| node.block(at), index, available),
            Some(Leaf::Indirect(block)) => {
                let data = self.cache.read(&mut self.device, block)?;
                scan_run(|at| u32_at(data, at * 4), index, available)
            }
        };
        if first == 0 {
            return Ok((None, count as u64));
        }
        // The blocks are consecutive (`scan_run` checked that the last one
        // does not overflow), so the ends bound them all.
        self.check_block(first)?;
        self.check_block(first + (count as u32 - 1))?;
        Ok((Some(first), count as u64))
    }

    /// The physical block of logical block `logical`, allocating it and any
    /// missing indirect blocks near `goal`. Returns whether the data block
    /// is new (its contents are then undefined). Either every needed block
    /// is allocated and linked, or nothing changes.
    pub(crate) fn map_or_allocate(&mut self, node: &mut Inode, logical: u64, goal: u32) -> Result<(u32, bool), Error> {
        if let Some(block) = self.map(node, logical)? {
            return Ok((block, false));
        }
        let run = self.reserve(node, logical, 1, goal)?;
        self.link(node, &run)?;
        Ok((run.first, true))
    }

    /// Allocates data blocks near `goal` for up to `limit` logical blocks
    /// from `logical`, which must start a hole at least that long within
    /// one leaf (as [`Self::map_run`] finds), and the missing indirect
    /// blocks above them. The indirect blocks are zeroed and linked; the
    /// data blocks are left for [`Self::link`], so that their contents can
    /// reach the device before anything points to them. On error nothing
    /// changes.
    fn reserve(&mut self, node: &mut Inode, logical: u64, limit: u64, goal: u32) -> Result<Reserved, Error> {
        let path = self.block_path(logical)?;
        // chain[level] is the block at that level of the path: the indirect
        // blocks, then the (absent) data block at `depth`.
        let mut chain = [0u32; 4];
        chain[0] = node.block(path.slot);
        let mut level = 0;
        while level < path.depth && chain[level] != 0 {
            chain[level + 1] = self.pointer(chain[level], path.indices[level])?;
            level += 1;
        }
        let missing = path.depth - level;
        let mut indirect = [0u32; 3];
        let mut next_goal = goal;
        for at in 0..missing {
            match self.allocate_block(next_goal) {
                Ok(block) => {
                    indirect[at] = block;
                    next_goal = block.saturating_add(1);
                }
                Err(error) => {
                    self.free_each(indirect[..at].iter().copied())?;
                    return Err(error);
                }
            }
        }
        let (first, count) = match self.allocate_blocks(next_goal, u32::try_from(limit).unwrap_or(u32::MAX)) {
            Ok(run) => run,
            Err(error) => {
                self.free_each(indirect[..missing].iter().copied())?;
                return Err(error);
            }
        };
        // Checked here for the data blocks too, so that linking cannot fail.
        let sectors_per_block = self.geometry.sectors_per_block();
        let sectors = (missing as u32 + count)
            .checked_mul(sectors_per_block)
            .and_then(|added| node.sectors().checked_add(added));
        if sectors.is_none() {
            self.free_each(indirect[..missing].iter().copied().chain(first..first + count))?;
            return Err(Error::FileTooLarge);
        }
        for (offset, &block) in indirect[..missing].iter().enumerate() {
            let at = level + offset;
            self.cache.fresh(&mut self.device, block)?;
            if at == 0 {
                node.set_block(path.slot, block);
            } else {
                let parent = self.cache.write(&mut self.device, chain[at - 1])?;
                set_u32(parent, path.indices[at - 1] * 4, block);
            }
            chain[at] = block;
        }
        node.set_sectors(node.sectors() + missing as u32 * sectors_per_block);
        let leaf = match path.depth.checked_sub(1) {
            None => Leaf::Inode,
            Some(level) => Leaf::Indirect(chain[level]),
        };
        Ok(Reserved {
            leaf,
            index: path.leaf_index(),
            first,
            count: count as usize,
        })
    }

    /// Points the leaf at reserved data blocks and counts them in the
    /// file's blocks.
    fn link(&mut self, node: &mut Inode, run: &Reserved) -> Result<(), Error> {
        let pointers = (run.index..run.index + run.count).zip(run.first..);
        match run.leaf {
            Leaf::Inode => pointers.for_each(|(index, block)| node.set_block(index, block)),
            Leaf::Indirect(leaf) => {
                let data = self.cache.write(&mut self.device, leaf)?;
                pointers.for_each(|(index, block)| set_u32(data, index * 4, block));
            }
        }
        // `reserve` checked that the sum fits.
        let added = run.count as u32 * self.geometry.sectors_per_block();
        node.set_sectors(node.sectors().saturating_add(added));
        Ok(())
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
            let logical = position / block_size;
            let (found, count) = self.map_run(node, logical, (end - 1) / block_size - logical + 1)?;
            let run_end = end.min((logical + count) * block_size);
            let target = &mut buffer[(position - offset) as usize..(run_end - offset) as usize];
            match found {
                Some(first) => self.read_run(first, (position % block_size) as usize, target)?,
                None => target.fill(0),
            }
            position = run_end;
        }
        Ok(length)
    }

    /// Fills `target` from consecutive blocks, starting `within` bytes into
    /// block `first`: whole blocks straight from the device, partial ones
    /// at the edges through the cache.
    fn read_run(&mut self, first: u32, within: usize, target: &mut [u8]) -> Result<(), Error> {
        let block_size = self.geometry.block_size;
        let (mut block, mut target) = (first, target);
        if within != 0 || target.len() < block_size {
            let (head, rest) = target.split_at_mut((block_size - within).min(target.len()));
            head.copy_from_slice(&self.cache.read(&mut self.device, block)?[within..within + head.len()]);
            // Still inside the filesystem if `rest` is not empty.
            (block, target) = (block + 1, rest);
        }
        let (whole, tail) = target.split_at_mut(target.len() / block_size * block_size);
        self.cache.read_direct(&mut self.device, block, whole)?;
        if !tail.is_empty() {
            let last = block + (whole.len() / block_size) as u32;
            tail.copy_from_slice(&self.cache.read(&mut self.device, last)?[..tail.len()]);
        }
        Ok(())
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
        let block_size = self.geometry.block_size;
        let written = self.place_data(
            inode,
            node,
            offset,
            data.len() as u64,
            |file_system, node, position, goal| {
                let (logical, within) = (position / block_size as u64, (position % block_size as u64) as usize);
                // Below `data.len()`, so it fits.
                let rest = &data[(position - offset) as usize..];
                if within == 0 && rest.len() >= block_size {
                    file_system.write_run(node, logical, rest, goal)
                } else {
                    file_system.write_partial(node, logical, within, rest, goal)
                }
            },
        )?;
        // At most `data.len()`.
        Ok(written as usize)
    }

    /// Places `length` bytes of file data at `offset` step by step: each
    /// `step` places bytes from the position it is given, with new blocks
    /// near the goal block it is given, and returns how many it placed and
    /// the last block it used (the next step's goal is the block after).
    /// Then the file grows over what was placed and its times are updated.
    /// Returns the bytes placed: fewer than `length` if the disk fills up
    /// part way. The caller stores the inode, also on error.
    fn place_data(
        &mut self,
        inode: u32,
        node: &mut Inode,
        offset: u64,
        length: u64,
        mut step: impl FnMut(&mut Self, &mut Inode, u64, u32) -> Result<(usize, u32), Error>,
    ) -> Result<u64, Error> {
        if length == 0 {
            return Ok(0);
        }
        let end = offset.checked_add(length).ok_or(Error::FileTooLarge)?;
        self.check_size(end)?;
        let block_size = self.geometry.block_size as u64;
        let first = offset / block_size;
        let mut goal = match first.checked_sub(1) {
            Some(previous) => self.map(node, previous)?.map(|block| block.saturating_add(1)),
            None => None,
        }
        .unwrap_or_else(|| self.geometry.group_first_block(self.geometry.group_of_inode(inode)));
        let mut placed = 0;
        let mut failure = None;
        while placed < length {
            match step(self, node, offset + placed, goal) {
                Ok((bytes, last)) => {
                    placed += bytes as u64;
                    goal = last.saturating_add(1);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if placed > 0 {
            let reached = offset + placed;
            if reached > node.size() {
                self.set_size(node, reached);
            }
            node.touch(self.clock);
        }
        match failure {
            Some(Error::NoSpace) if placed > 0 => Ok(placed),
            Some(error) => Err(error),
            None => Ok(placed),
        }
    }

    /// The blocks for whole blocks of data from logical block `logical`, as
    /// many as one run (see [`Self::map_run`]) of at most `limit` blocks
    /// holds: the file's own, or in a hole new ones near `goal`, reserved
    /// (see [`Self::reserve`]) for the caller to link. Returns the first
    /// block, the count and the reservation.
    fn place_run(
        &mut self,
        node: &mut Inode,
        logical: u64,
        limit: u64,
        goal: u32,
    ) -> Result<(u32, usize, Option<Reserved>), Error> {
        let (found, count) = self.map_run(node, logical, limit)?;
        if let Some(first) = found {
            return Ok((first, count as usize, None));
        }
        let run = self.reserve(node, logical, count, goal)?;
        Ok((run.first, run.count, Some(run)))
    }

    /// Writes whole blocks of `data`, as many as one run from logical block
    /// `logical` holds (see [`Self::place_run`]), straight to the device.
    /// Returns the bytes written and the last block written.
    fn write_run(&mut self, node: &mut Inode, logical: u64, data: &[u8], goal: u32) -> Result<(usize, u32), Error> {
        let block_size = self.geometry.block_size;
        let (first, count, reserved) = self.place_run(node, logical, (data.len() / block_size) as u64, goal)?;
        let bytes = count * block_size;
        let last = first + (count as u32 - 1);
        // The data goes first, so that a block map on the device never
        // points at blocks holding someone else's old contents.
        if let Err(error) = self.cache.write_direct(&mut self.device, first, &data[..bytes]) {
            if reserved.is_some() {
                self.free_each(first..=last)?;
            }
            return Err(error);
        }
        if let Some(run) = reserved {
            self.link(node, &run)?;
        }
        Ok((bytes, last))
    }

    /// Fails with [`Error::InvalidOperation`] unless `offset` and `length`
    /// are multiples of the block size and `max_extent` a non-zero one.
    pub(crate) fn check_extent_request(&self, offset: u64, length: u64, max_extent: u64) -> Result<(), Error> {
        let block_size = self.geometry.block_size as u64;
        if !offset.is_multiple_of(block_size) || !length.is_multiple_of(block_size) {
            return Err(Error::InvalidOperation(
                "offset or length is not a multiple of the block size",
            ));
        }
        if max_extent == 0 || !max_extent.is_multiple_of(block_size) {
            return Err(Error::InvalidOperation(
                "max_extent is not a multiple of the block size",
            ));
        }
        Ok(())
    }

    /// Maps file data at `offset` for the caller to read; see
    /// [`FileSystem::map_read`].
    pub(crate) fn map_read_data(
        &mut self,
        node: &Inode,
        offset: u64,
        length: u64,
        max_extent: u64,
    ) -> Result<Vec<Extent>, Error> {
        let end = offset.saturating_add(length).min(node.size());
        let block_size = self.geometry.block_size as u64;
        let sectors_per_block = u64::from(self.geometry.sectors_per_block());
        let mut extents = Vec::new();
        let mut position = offset;
        while position < end {
            let logical = position / block_size;
            let (found, count) = self.map_run(node, logical, (end - position).div_ceil(block_size))?;
            let run_end = end.min((logical + count) * block_size);
            match found {
                Some(first) => {
                    // `map_run` checked the run, so its end fits.
                    self.cache.flush_range(&mut self.device, first..first + count as u32)?;
                    let sector = u64::from(first) * sectors_per_block;
                    let bytes = (run_end - position).next_multiple_of(SECTOR_SIZE as u64);
                    push_extent(&mut extents, position - offset, Some(sector), bytes, max_extent);
                }
                None => push_extent(&mut extents, position - offset, None, run_end - position, max_extent),
            }
            position = run_end;
        }
        Ok(extents)
    }

    /// Places file data at `offset` for the caller to write; see
    /// [`FileSystem::map_write`]. The caller stores the inode, also on
    /// error.
    pub(crate) fn map_write_data(
        &mut self,
        inode: u32,
        node: &mut Inode,
        offset: u64,
        length: u64,
        max_extent: u64,
    ) -> Result<Vec<Extent>, Error> {
        let block_size = self.geometry.block_size as u64;
        let sectors_per_block = u64::from(self.geometry.sectors_per_block());
        let end = offset.saturating_add(length);
        let mut extents = Vec::new();
        let placed = self.place_data(inode, node, offset, length, |file_system, node, position, goal| {
            let (first, count, reserved) =
                file_system.place_run(node, position / block_size, (end - position) / block_size, goal)?;
            // The caller's write replaces the whole blocks.
            file_system.cache.discard(first, count);
            if let Some(run) = reserved {
                file_system.link(node, &run)?;
            }
            let bytes = count as u64 * block_size;
            push_extent(
                &mut extents,
                position - offset,
                Some(u64::from(first) * sectors_per_block),
                bytes,
                max_extent,
            );
            Ok((count * block_size as usize, first + (count as u32 - 1)))
        });
        match placed {
            // Linked blocks not handed to the caller would expose stale data.
            Err(_) if !extents.is_empty() => Ok(extents),
            Err(error) => Err(error),
            Ok(_) => Ok(extents),
        }
    }

    /// Writes the part of `data` that falls in logical block `logical` from
    /// byte `within`, through the cache, allocating the block near `goal`
    /// in a hole. Returns the bytes written and the block.
    fn write_partial(
        &mut self,
        node: &mut Inode,
        logical: u64,
        within: usize,
        data: &[u8],
        goal: u32,
    ) -> Result<(usize, u32), Error> {
        let take = (self.geometry.block_size - within).min(data.len());
        let (block, new) = self.map_or_allocate(node, logical, goal)?;
        let target = if new {
            self.cache.fresh(&mut self.device, block)?
        } else {
            self.cache.write(&mut self.device, block)?
        };
        target[within..within + take].copy_from_slice(&data[..take]);
        Ok((take, block))
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
