//! The on-disk structures of ext2: superblock, group descriptors and inodes.
//!
//! Each structure keeps its raw little-endian bytes and reads or writes one
//! field at a time, so fields this crate does not know are carried through
//! unchanged. Offsets are those of the ext2 revision 1 layout. The checks
//! that make the rest of the crate safe against a corrupt disk are in
//! [`Geometry::new`] and [`GroupDescriptors::check`].

use alloc::vec;
use alloc::vec::Vec;

use crate::{Error, SECTOR_SIZE};

/// Where the superblock starts on the device, in bytes.
pub(crate) const SUPERBLOCK_OFFSET: usize = 1024;
/// The size of the superblock, in bytes.
pub(crate) const SUPERBLOCK_SIZE: usize = 1024;
/// The inode of the root directory.
pub(crate) const ROOT_INODE: u32 = 2;
/// The size of one group descriptor.
const DESCRIPTOR_SIZE: usize = 32;
/// The value of `s_magic`.
const MAGIC: u16 = 0xEF53;
/// Directory entries carry a file type byte.
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
/// Superblock backups only in groups 0, 1 and powers of 3, 5 and 7.
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// Some regular file is 2 GiB or larger.
pub(crate) const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// The most links an inode may have.
pub(crate) const MAX_LINKS: u16 = 32000;

/// The file type bits of `i_mode`.
const MODE_TYPE_MASK: u16 = 0xF000;
/// `i_mode` type of a regular file.
pub(crate) const MODE_REGULAR: u16 = 0x8000;
/// `i_mode` type of a directory.
pub(crate) const MODE_DIRECTORY: u16 = 0x4000;
/// `i_mode` type of a symbolic link.
const MODE_SYMLINK: u16 = 0xA000;
/// `i_flags`: the directory has an htree index.
const FLAG_INDEX: u32 = 0x1000;
/// `i_block` slots: 12 direct, then single, double and triple indirect.
pub(crate) const DIRECT_BLOCKS: usize = 12;

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

/// Reads a little-endian `u32`; `offset + 4` must be within `bytes`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

/// Writes a little-endian `u16`; `offset + 2` must be within `bytes`.
pub(crate) fn set_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

/// Writes a little-endian `u32`; `offset + 4` must be within `bytes`.
pub(crate) fn set_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// The superblock, as raw bytes.
pub(crate) struct Superblock {
    raw: [u8; SUPERBLOCK_SIZE],
}

impl Superblock {
    /// Wraps the superblock's bytes, read from [`SUPERBLOCK_OFFSET`].
    pub(crate) fn new(raw: [u8; SUPERBLOCK_SIZE]) -> Self {
        Self { raw }
    }

    /// The bytes to write back.
    pub(crate) fn bytes(&self) -> &[u8; SUPERBLOCK_SIZE] {
        &self.raw
    }

    fn word(&self, offset: usize) -> u32 {
        u32_at(&self.raw, offset)
    }

    pub(crate) fn inodes_count(&self) -> u32 {
        self.word(0)
    }

    pub(crate) fn set_free_counts(&mut self, blocks: u32, inodes: u32) {
        set_u32(&mut self.raw, 12, blocks);
        set_u32(&mut self.raw, 16, inodes);
    }

    /// The last write time, or failing that the creation time.
    pub(crate) fn last_time(&self) -> u32 {
        self.word(48).max(self.word(0x108))
    }

    fn revision(&self) -> u32 {
        self.word(76)
    }

    /// Incompatible features; revision 0 has none.
    fn incompatible(&self) -> u32 {
        if self.revision() == 0 { 0 } else { self.word(96) }
    }

    /// Read-only compatible features; revision 0 has none.
    fn read_only_compatible(&self) -> u32 {
        if self.revision() == 0 { 0 } else { self.word(100) }
    }

    /// Whether the large_file feature is set.
    pub(crate) fn large_file(&self) -> bool {
        self.read_only_compatible() & RO_COMPAT_LARGE_FILE != 0
    }

    /// Sets the large_file feature; only revision 1 has features.
    pub(crate) fn set_large_file(&mut self) {
        let features = self.read_only_compatible() | RO_COMPAT_LARGE_FILE;
        set_u32(&mut self.raw, 100, features);
    }

    /// Whether features can be set, which needs revision 1.
    pub(crate) fn has_features(&self) -> bool {
        self.revision() >= 1
    }
}

/// The shape of a filesystem, derived from a checked superblock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Bytes per block: 1024, 2048 or 4096.
    pub block_size: usize,
    /// Blocks in the filesystem.
    pub blocks_count: u32,
    /// The block of group 0's first block: 1 for 1 KiB blocks, else 0.
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inodes_count: u32,
    /// Bytes per inode record in the inode table.
    pub inode_size: usize,
    /// The first inode that is not reserved.
    pub first_inode: u32,
    pub groups: u32,
    /// Blocks taken by each group's inode table.
    pub inode_table_blocks: u32,
    /// Whether directory entries carry a file type.
    pub file_type: bool,
}

impl Geometry {
    /// Checks the superblock against what this crate supports and against a
    /// device of `sectors` sectors.
    pub(crate) fn new(superblock: &Superblock, sectors: u64) -> Result<Self, Error> {
        let raw = &superblock.raw;
        if u16_at(raw, 56) != MAGIC {
            return Err(Error::BadSuperblock("bad magic number, not an ext2 filesystem"));
        }
        let revision = superblock.revision();
        if revision > 1 {
            return Err(Error::Unsupported("filesystem revision newer than 1"));
        }
        let incompatible = superblock.incompatible();
        if incompatible & !INCOMPAT_FILETYPE != 0 {
            return Err(Error::Unsupported(incompatible_feature_name(
                incompatible & !INCOMPAT_FILETYPE,
            )));
        }
        if superblock.read_only_compatible() & !(RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE) != 0 {
            return Err(Error::Unsupported(
                "read-only compatible features other than sparse_super and large_file",
            ));
        }
        let block_size = match superblock.word(24) {
            0 => 1024,
            1 => 2048,
            2 => 4096,
            _ => return Err(Error::Unsupported("block size other than 1024, 2048 or 4096 bytes")),
        };
        let (inode_size, first_inode) = if revision == 0 {
            (128, 11)
        } else {
            (usize::from(u16_at(raw, 88)), superblock.word(84))
        };
        if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
            return Err(Error::BadSuperblock(
                "inode size is not a power of two from 128 to the block size",
            ));
        }
        let blocks_count = superblock.word(4);
        let first_data_block = superblock.word(20);
        let blocks_per_group = superblock.word(32);
        let inodes_per_group = superblock.word(40);
        let inodes_count = superblock.inodes_count();
        let bits_per_block = (block_size * 8) as u32;
        if first_data_block != u32::from(block_size == 1024) {
            return Err(Error::BadSuperblock("first data block does not match the block size"));
        }
        if blocks_per_group < 256 || blocks_per_group > bits_per_block || blocks_per_group % 8 != 0 {
            return Err(Error::BadSuperblock("blocks per group out of range"));
        }
        if inodes_per_group == 0 || inodes_per_group > bits_per_block {
            return Err(Error::BadSuperblock("inodes per group out of range"));
        }
        if blocks_count <= first_data_block {
            return Err(Error::BadSuperblock("block count is zero"));
        }
        let groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        if u64::from(groups) * u64::from(inodes_per_group) != u64::from(inodes_count) {
            return Err(Error::BadSuperblock("inode count is not inodes per group times groups"));
        }
        if first_inode <= ROOT_INODE || first_inode > inodes_count {
            return Err(Error::BadSuperblock("first non-reserved inode out of range"));
        }
        let device_bytes = sectors.saturating_mul(SECTOR_SIZE as u64);
        if u64::from(blocks_count) * block_size as u64 > device_bytes {
            return Err(Error::BadSuperblock("filesystem is larger than the device"));
        }
        let table_bytes = u64::from(inodes_per_group) * inode_size as u64;
        let inode_table_blocks = table_bytes.div_ceil(block_size as u64) as u32;
        if inode_table_blocks >= blocks_per_group {
            return Err(Error::BadSuperblock("inode table does not fit in a group"));
        }
        Ok(Self {
            block_size,
            blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inodes_count,
            inode_size,
            first_inode,
            groups,
            inode_table_blocks,
            file_type: incompatible & INCOMPAT_FILETYPE != 0,
        })
    }

    /// The block holding the superblock, and the superblock's offset in it.
    pub(crate) fn superblock_location(&self) -> (u32, usize) {
        (
            (SUPERBLOCK_OFFSET / self.block_size) as u32,
            SUPERBLOCK_OFFSET % self.block_size,
        )
    }

    /// The first block of the group descriptor table.
    pub(crate) fn descriptor_table_block(&self) -> u32 {
        self.first_data_block + 1
    }

    /// The group descriptor table's size in bytes, whole blocks.
    pub(crate) fn descriptor_table_bytes(&self) -> usize {
        (self.groups as usize * DESCRIPTOR_SIZE).div_ceil(self.block_size) * self.block_size
    }

    /// The group holding `block`, which must be a valid data block number.
    pub(crate) fn group_of_block(&self, block: u32) -> u32 {
        (block - self.first_data_block) / self.blocks_per_group
    }

    /// The first block of `group`.
    pub(crate) fn group_first_block(&self, group: u32) -> u32 {
        self.first_data_block + group * self.blocks_per_group
    }

    /// Blocks in `group`: the last group may be short.
    pub(crate) fn blocks_in_group(&self, group: u32) -> u32 {
        (self.blocks_count - self.group_first_block(group)).min(self.blocks_per_group)
    }

    /// The group holding inode `inode`, which must be in range.
    pub(crate) fn group_of_inode(&self, inode: u32) -> u32 {
        (inode - 1) / self.inodes_per_group
    }

    /// Block pointers per indirect block.
    pub(crate) fn pointers_per_block(&self) -> u64 {
        (self.block_size / 4) as u64
    }

    /// 512-byte sectors per block, the unit of `i_blocks`.
    pub(crate) fn sectors_per_block(&self) -> u32 {
        (self.block_size / SECTOR_SIZE) as u32
    }

    /// The largest file size the block map can address.
    pub(crate) fn max_file_size(&self) -> u64 {
        let pointers = self.pointers_per_block();
        let blocks = DIRECT_BLOCKS as u64 + pointers + pointers * pointers + pointers * pointers * pointers;
        blocks * self.block_size as u64
    }
}

/// A name for the first unsupported incompatible feature in `bits`.
fn incompatible_feature_name(bits: u32) -> &'static str {
    match bits.isolate_lowest_one() {
        0x1 => "incompatible feature compression",
        0x4 => "incompatible feature needs_recovery (journal not replayed)",
        0x8 => "incompatible feature journal_dev",
        0x10 => "incompatible feature meta_bg",
        0x40 => "incompatible feature extents",
        0x80 => "incompatible feature 64bit",
        0x100 => "incompatible feature mmp",
        0x200 => "incompatible feature flex_bg",
        _ => "unknown incompatible feature",
    }
}

/// The group descriptor table, as raw bytes.
pub(crate) struct GroupDescriptors {
    raw: Vec<u8>,
}

impl GroupDescriptors {
    /// Wraps the table's bytes: whole blocks, starting at the table's block.
    pub(crate) fn new(raw: Vec<u8>) -> Self {
        Self { raw }
    }

    /// The bytes to write back.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Checks that every group's bitmaps and inode table lie inside the
    /// filesystem, after the superblock.
    pub(crate) fn check(&self, geometry: &Geometry) -> Result<(), Error> {
        let lowest = geometry.first_data_block + 1;
        for group in 0..geometry.groups {
            let inside = |block: u32, length: u32| {
                block >= lowest
                    && block
                        .checked_add(length)
                        .is_some_and(|end| end <= geometry.blocks_count)
            };
            if !inside(self.block_bitmap(group), 1) || !inside(self.inode_bitmap(group), 1) {
                return Err(Error::Corrupt("group bitmap block out of range"));
            }
            if !inside(self.inode_table(group), geometry.inode_table_blocks) {
                return Err(Error::Corrupt("group inode table out of range"));
            }
        }
        Ok(())
    }

    fn field(group: u32, offset: usize) -> usize {
        group as usize * DESCRIPTOR_SIZE + offset
    }

    pub(crate) fn block_bitmap(&self, group: u32) -> u32 {
        u32_at(&self.raw, Self::field(group, 0))
    }

    pub(crate) fn inode_bitmap(&self, group: u32) -> u32 {
        u32_at(&self.raw, Self::field(group, 4))
    }

    pub(crate) fn inode_table(&self, group: u32) -> u32 {
        u32_at(&self.raw, Self::field(group, 8))
    }

    pub(crate) fn free_blocks(&self, group: u32) -> u16 {
        u16_at(&self.raw, Self::field(group, 12))
    }

    pub(crate) fn set_free_blocks(&mut self, group: u32, count: u16) {
        set_u16(&mut self.raw, Self::field(group, 12), count);
    }

    pub(crate) fn free_inodes(&self, group: u32) -> u16 {
        u16_at(&self.raw, Self::field(group, 14))
    }

    pub(crate) fn set_free_inodes(&mut self, group: u32, count: u16) {
        set_u16(&mut self.raw, Self::field(group, 14), count);
    }

    pub(crate) fn used_directories(&self, group: u32) -> u16 {
        u16_at(&self.raw, Self::field(group, 16))
    }

    pub(crate) fn set_used_directories(&mut self, group: u32, count: u16) {
        set_u16(&mut self.raw, Self::field(group, 16), count);
    }
}

/// What an inode is, from the type bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InodeType {
    Regular,
    Directory,
    SymbolicLink,
    Other,
}

/// One inode record, as raw bytes (`s_inode_size` of them).
#[derive(Clone)]
pub(crate) struct Inode {
    raw: Vec<u8>,
}

impl Inode {
    /// A zeroed inode record of `size` bytes.
    pub(crate) fn zeroed(size: usize) -> Self {
        Self { raw: vec![0; size] }
    }

    /// Wraps a record read from the inode table.
    pub(crate) fn from_bytes(raw: &[u8]) -> Self {
        Self { raw: raw.to_vec() }
    }

    /// The bytes to write back.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub(crate) fn mode(&self) -> u16 {
        u16_at(&self.raw, 0)
    }

    pub(crate) fn set_mode(&mut self, mode: u16) {
        set_u16(&mut self.raw, 0, mode);
    }

    pub(crate) fn kind(&self) -> InodeType {
        match self.mode() & MODE_TYPE_MASK {
            MODE_REGULAR => InodeType::Regular,
            MODE_DIRECTORY => InodeType::Directory,
            MODE_SYMLINK => InodeType::SymbolicLink,
            _ => InodeType::Other,
        }
    }

    pub(crate) fn is_directory(&self) -> bool {
        self.kind() == InodeType::Directory
    }

    /// The size; the high half counts for regular files only (for others it
    /// was `i_dir_acl`).
    pub(crate) fn size(&self) -> u64 {
        let high = if self.kind() == InodeType::Regular {
            u32_at(&self.raw, 108)
        } else {
            0
        };
        u64::from(high) << 32 | u64::from(u32_at(&self.raw, 4))
    }

    /// Sets the size; callers keep non-regular files below 4 GiB.
    pub(crate) fn set_size(&mut self, size: u64) {
        set_u32(&mut self.raw, 4, size as u32);
        if self.kind() == InodeType::Regular {
            set_u32(&mut self.raw, 108, (size >> 32) as u32);
        }
    }

    pub(crate) fn atime(&self) -> u32 {
        u32_at(&self.raw, 8)
    }

    pub(crate) fn ctime(&self) -> u32 {
        u32_at(&self.raw, 12)
    }

    pub(crate) fn mtime(&self) -> u32 {
        u32_at(&self.raw, 16)
    }

    /// Sets the change and modification times.
    pub(crate) fn touch(&mut self, now: u32) {
        set_u32(&mut self.raw, 12, now);
        set_u32(&mut self.raw, 16, now);
    }

    /// Sets all three times, for a new inode.
    pub(crate) fn set_all_times(&mut self, now: u32) {
        set_u32(&mut self.raw, 8, now);
        self.touch(now);
    }

    pub(crate) fn set_deletion_time(&mut self, time: u32) {
        set_u32(&mut self.raw, 20, time);
    }

    pub(crate) fn links(&self) -> u16 {
        u16_at(&self.raw, 26)
    }

    pub(crate) fn set_links(&mut self, links: u16) {
        set_u16(&mut self.raw, 26, links);
    }

    /// Blocks used, in 512-byte sectors, indirect and attribute blocks included.
    pub(crate) fn sectors(&self) -> u32 {
        u32_at(&self.raw, 28)
    }

    pub(crate) fn set_sectors(&mut self, sectors: u32) {
        set_u32(&mut self.raw, 28, sectors);
    }

    /// Clears the htree index flag: a directory changed by a writer that
    /// does not maintain the index must be scanned linearly.
    pub(crate) fn clear_index_flag(&mut self) {
        let flags = u32_at(&self.raw, 32) & !FLAG_INDEX;
        set_u32(&mut self.raw, 32, flags);
    }

    /// Slot `index` (0 to 14) of `i_block`.
    pub(crate) fn block(&self, index: usize) -> u32 {
        u32_at(&self.raw, 40 + 4 * index)
    }

    pub(crate) fn set_block(&mut self, index: usize, block: u32) {
        set_u32(&mut self.raw, 40 + 4 * index, block);
    }

    /// The extended attribute block, or 0.
    pub(crate) fn attribute_block(&self) -> u32 {
        u32_at(&self.raw, 104)
    }
}
