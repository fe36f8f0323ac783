//! An ext2 filesystem, revision 1 as `mke2fs -t ext2` writes it, over a
//! device of 512-byte sectors.
//!
//! The filesystem server drives a [`FileSystem`] over its [`BlockDevice`];
//! host tests drive one over memory. Metadata blocks go through a bounded
//! write-back cache; whole blocks of file data move straight between the
//! device and the caller, written before anything points to them (or, for
//! [`FileSystem::map_write`], by the caller right after they are linked); the
//! superblock and group descriptors stay in memory. Nothing is durable until
//! [`FileSystem::sync`] returns.
//!
//! Design rules:
//! - Nothing read from the disk is trusted: block and inode numbers, record
//!   lengths and counts are checked before use, and a corrupt disk gives
//!   [`Error::Corrupt`], never a panic.
//! - An operation that may run out of space allocates before it links, so a
//!   failure leaves the filesystem as it was (a write keeps what it wrote).
//! - Every sequence of operations followed by `sync` leaves an image that
//!   `e2fsck -fn` finds clean.
//!
//! Supported: 1, 2 and 4 KiB blocks; inodes of 128 bytes or more; the `filetype`
//! incompatible feature; the `sparse_super` and `large_file` read-only
//! compatible features; any compatible feature (`dir_index` directories lose
//! their index flag when changed, as with any writer that does not keep the
//! index). Refused at mount: every other incompatible or read-only
//! compatible feature (extents, journal recovery, 64bit, flex_bg, metadata
//! checksums, ...).
//!
//! Not kept: access times (reads do not write), symbolic links and device
//! files (they can be listed, stat-ed and removed, not made).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod allocate;
mod cache;
mod directory;
mod file;
mod layout;
mod path;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use cache::BlockCache;
use layout::{
    Geometry, GroupDescriptors, Inode, InodeType, MAX_LINKS, MODE_DIRECTORY, MODE_REGULAR, ROOT_INODE,
    SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock,
};

/// Bytes per device sector.
pub const SECTOR_SIZE: usize = 512;
/// Blocks the cache holds when mounted with [`FileSystem::mount`].
pub const DEFAULT_CACHE_BLOCKS: usize = 1024;

/// A device of 512-byte sectors.
pub trait BlockDevice {
    /// Number of 512-byte sectors.
    fn sectors(&self) -> u64;

    /// Reads `buffer.len() / 512` sectors starting at `sector` (buffer length
    /// is a multiple of 512).
    ///
    /// # Errors
    ///
    /// The device could not read, or the sectors lie past its end.
    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DeviceError>;

    /// Writes `buffer.len() / 512` sectors starting at `sector` (buffer
    /// length is a multiple of 512).
    ///
    /// # Errors
    ///
    /// The device could not write, or the sectors lie past its end.
    fn write(&mut self, sector: u64, buffer: &[u8]) -> Result<(), DeviceError>;

    /// Makes every completed write durable.
    ///
    /// # Errors
    ///
    /// The device could not guarantee durability.
    fn flush(&mut self) -> Result<(), DeviceError>;
}

/// A device operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError {
    /// What went wrong, in the device's own terms; the filesystem only
    /// passes it on.
    pub code: u32,
}

/// Why a filesystem operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A path component or inode does not exist.
    NotFound,
    /// The name to create already exists.
    AlreadyExists,
    /// A path component that must be a directory is not one.
    NotADirectory,
    /// The operation needs a file but found a directory.
    IsADirectory,
    /// The directory to remove or replace still has entries.
    DirectoryNotEmpty,
    /// A path component is longer than 255 bytes.
    NameTooLong,
    /// The path is not absolute, or a name holds a NUL byte.
    InvalidPath,
    /// A `..` would go above the root.
    EscapesRoot,
    /// No free block is left.
    NoSpace,
    /// No free inode is left.
    NoInodes,
    /// The file would grow past the largest size ext2 can map.
    FileTooLarge,
    /// The operation makes no sense here; the reason says why.
    InvalidOperation(&'static str),
    /// An on-disk structure is inconsistent; the reason says which.
    Corrupt(&'static str),
    /// The filesystem uses something this crate does not support.
    Unsupported(&'static str),
    /// The superblock is not a valid ext2 superblock.
    BadSuperblock(&'static str),
    /// The device failed.
    Device(DeviceError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => write!(f, "no such file or directory"),
            Self::AlreadyExists => write!(f, "a file or directory of that name already exists"),
            Self::NotADirectory => write!(f, "a path component is not a directory"),
            Self::IsADirectory => write!(f, "the target is a directory"),
            Self::DirectoryNotEmpty => write!(f, "the directory is not empty"),
            Self::NameTooLong => write!(f, "a name is longer than 255 bytes"),
            Self::InvalidPath => write!(f, "the path is not absolute or holds a NUL byte"),
            Self::EscapesRoot => write!(f, "the path goes above the root directory"),
            Self::NoSpace => write!(f, "no space left on the filesystem"),
            Self::NoInodes => write!(f, "no free inodes left on the filesystem"),
            Self::FileTooLarge => write!(f, "the file would be larger than ext2 allows"),
            Self::InvalidOperation(reason) => write!(f, "invalid operation: {reason}"),
            Self::Corrupt(reason) => write!(f, "the filesystem is corrupt: {reason}"),
            Self::Unsupported(reason) => write!(f, "the filesystem uses an unsupported feature: {reason}"),
            Self::BadSuperblock(reason) => write!(f, "bad superblock: {reason}"),
            Self::Device(error) => write!(f, "the device failed (code {})", error.code),
        }
    }
}

/// The number of an inode: what a path resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeNumber(pub u32);

impl InodeNumber {
    /// The root directory.
    pub const ROOT: Self = Self(ROOT_INODE);
}

/// What kind of object an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (not followed by this crate).
    SymbolicLink,
    /// A device file, FIFO or socket.
    Other,
}

impl From<InodeType> for FileKind {
    fn from(kind: InodeType) -> Self {
        match kind {
            InodeType::Regular => Self::File,
            InodeType::Directory => Self::Directory,
            InodeType::SymbolicLink => Self::SymbolicLink,
            InodeType::Other => Self::Other,
        }
    }
}

/// What [`FileSystem::stat`] tells about an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The inode described.
    pub inode: InodeNumber,
    /// What kind of object it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Hard links: names for a file; 2 plus subdirectories for a directory.
    pub links: u16,
    /// Permission bits of the mode (`0o7777` at most).
    pub permissions: u16,
    /// Space used in 512-byte units, indirect blocks included.
    pub blocks: u64,
    /// Last access time, seconds since 1970 (not updated by reads).
    pub accessed: u32,
    /// Last content change, seconds since 1970.
    pub modified: u32,
    /// Last inode change, seconds since 1970.
    pub changed: u32,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The entry's name; bytes that are not UTF-8 are replaced by U+FFFD.
    pub name: String,
    /// The inode it names.
    pub inode: InodeNumber,
    /// What kind of object it is.
    pub kind: FileKind,
}

/// Space and inode usage, from [`FileSystem::statfs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks in the filesystem.
    pub total_blocks: u64,
    /// Blocks free.
    pub free_blocks: u64,
    /// Inodes in the filesystem.
    pub total_inodes: u64,
    /// Inodes free.
    pub free_inodes: u64,
}

/// A piece of a file range, for I/O the caller does itself: see
/// [`FileSystem::map_read`] and [`FileSystem::map_write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// `length` bytes of the range that read as zeros: a hole.
    Zeros {
        /// Byte offset within the requested range.
        offset: u64,
        /// Bytes covered.
        length: u64,
    },
    /// `length` bytes, a multiple of [`SECTOR_SIZE`], at device sector
    /// `sector`.
    Disk {
        /// Byte offset within the requested range.
        offset: u64,
        /// The first device sector.
        sector: u64,
        /// Bytes covered.
        length: u64,
    },
}

/// A mounted ext2 filesystem on a device `D`.
pub struct FileSystem<D: BlockDevice> {
    device: D,
    cache: BlockCache,
    geometry: Geometry,
    superblock: Superblock,
    groups: GroupDescriptors,
    /// Seconds since 1970, for timestamps.
    clock: u32,
}

impl<D: BlockDevice> FileSystem<D> {
    /// Mounts the filesystem on `device` with a cache of
    /// [`DEFAULT_CACHE_BLOCKS`] blocks.
    ///
    /// # Errors
    ///
    /// [`Error::BadSuperblock`] or [`Error::Unsupported`] with the reason
    /// the image is refused, [`Error::Corrupt`] if the group descriptors or
    /// root directory are inconsistent, [`Error::Device`] if reading failed.
    pub fn mount(device: D) -> Result<Self, Error> {
        Self::mount_with_cache(device, DEFAULT_CACHE_BLOCKS)
    }

    /// Mounts the filesystem on `device` with a cache of `cache_blocks`
    /// blocks (at least 8).
    ///
    /// # Errors
    ///
    /// As for [`Self::mount`].
    pub fn mount_with_cache(mut device: D, cache_blocks: usize) -> Result<Self, Error> {
        let superblock_end = SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE;
        if device.sectors() < (superblock_end / SECTOR_SIZE) as u64 {
            return Err(Error::BadSuperblock("device is too small to hold a superblock"));
        }
        let mut raw = [0; SUPERBLOCK_SIZE];
        device
            .read((SUPERBLOCK_OFFSET / SECTOR_SIZE) as u64, &mut raw)
            .map_err(Error::Device)?;
        let superblock = Superblock::new(raw);
        let geometry = Geometry::new(&superblock, device.sectors())?;
        let mut table = vec![0; geometry.descriptor_table_bytes()];
        let table_sector = u64::from(geometry.descriptor_table_block()) * u64::from(geometry.sectors_per_block());
        device.read(table_sector, &mut table).map_err(Error::Device)?;
        let groups = GroupDescriptors::new(table);
        groups.check(&geometry)?;
        let mut file_system = Self {
            device,
            cache: BlockCache::new(geometry.block_size, cache_blocks),
            clock: superblock.last_time(),
            geometry,
            superblock,
            groups,
        };
        if !file_system.load_inode(ROOT_INODE)?.is_directory() {
            return Err(Error::Corrupt("the root inode is not a directory"));
        }
        Ok(file_system)
    }

    /// Sets the clock used for timestamps, in seconds since 1970. It starts
    /// at the superblock's last write time.
    pub fn set_time(&mut self, seconds: u32) {
        self.clock = seconds;
    }

    /// The inode `path` names.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::NotADirectory`] for a component that
    /// is not a directory, path errors, [`Error::Corrupt`], [`Error::Device`].
    pub fn lookup(&mut self, path: &str) -> Result<InodeNumber, Error> {
        let components = path::parse(path)?;
        self.resolve(&components).map(InodeNumber)
    }

    /// Creates an empty regular file, mode `0o644`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`], [`Error::NoInodes`], [`Error::NoSpace`] if
    /// the directory must grow and cannot, and as for [`Self::lookup`].
    pub fn create(&mut self, path: &str) -> Result<InodeNumber, Error> {
        let components = path::parse(path)?;
        let (name, parent_path) = components.split_last().ok_or(Error::AlreadyExists)?;
        let parent = self.resolve_directory(parent_path)?;
        if self.find_entry(parent, name.as_bytes())?.is_some() {
            return Err(Error::AlreadyExists);
        }
        let inode = self.allocate_inode(self.geometry.group_of_inode(parent), false)?;
        if let Err(error) = self.add_entry(parent, name.as_bytes(), inode, MODE_REGULAR) {
            self.free_inode(inode, false)?;
            return Err(error);
        }
        let mut node = Inode::zeroed(self.geometry.inode_size);
        node.set_mode(MODE_REGULAR | 0o644);
        node.set_links(1);
        node.set_all_times(self.clock);
        self.store_inode(inode, &node)?;
        Ok(InodeNumber(inode))
    }

    /// Creates an empty directory, mode `0o755`.
    ///
    /// # Errors
    ///
    /// As for [`Self::create`]; [`Error::InvalidOperation`] if the parent
    /// has the most subdirectories a directory can have.
    pub fn mkdir(&mut self, path: &str) -> Result<InodeNumber, Error> {
        let components = path::parse(path)?;
        let (name, parent_path) = components.split_last().ok_or(Error::AlreadyExists)?;
        let parent = self.resolve_directory(parent_path)?;
        if self.find_entry(parent, name.as_bytes())?.is_some() {
            return Err(Error::AlreadyExists);
        }
        if self.load_inode(parent)?.links() >= MAX_LINKS {
            return Err(Error::InvalidOperation("the parent has too many subdirectories"));
        }
        let inode = self.allocate_inode(self.geometry.group_of_inode(parent), true)?;
        let group_start = self.geometry.group_first_block(self.geometry.group_of_inode(inode));
        let block = match self.allocate_block(group_start) {
            Ok(block) => block,
            Err(error) => {
                self.free_inode(inode, true)?;
                return Err(error);
            }
        };
        if let Err(error) = self.add_entry(parent, name.as_bytes(), inode, MODE_DIRECTORY) {
            self.free_block(block)?;
            self.free_inode(inode, true)?;
            return Err(error);
        }
        let data = self.cache.fresh(&mut self.device, block)?;
        directory::initialise_block(data, inode, parent, self.geometry.file_type);
        let mut node = Inode::zeroed(self.geometry.inode_size);
        node.set_mode(MODE_DIRECTORY | 0o755);
        node.set_links(2);
        node.set_all_times(self.clock);
        node.set_size(self.geometry.block_size as u64);
        node.set_block(0, block);
        node.set_sectors(self.geometry.sectors_per_block());
        self.store_inode(inode, &node)?;
        self.adjust_links(parent, 1)?;
        Ok(InodeNumber(inode))
    }

    /// Reads from `offset` into `buffer`; returns the bytes read, fewer
    /// than asked at the end of the file. Holes read as zeroes.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an inode not in use, [`Error::IsADirectory`],
    /// [`Error::InvalidOperation`] for other non-regular files,
    /// [`Error::Corrupt`], [`Error::Device`].
    pub fn read(&mut self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize, Error> {
        let node = self.open_regular(inode)?;
        self.read_data(&node, offset, buffer)
    }

    /// Writes `data` at `offset`, growing the file as needed; returns the
    /// bytes written. If the disk fills up part way, what was written stays
    /// consistent and the shorter count is returned.
    ///
    /// # Errors
    ///
    /// [`Error::NoSpace`] if not a byte could be written,
    /// [`Error::FileTooLarge`], and as for [`Self::read`].
    pub fn write(&mut self, inode: InodeNumber, offset: u64, data: &[u8]) -> Result<usize, Error> {
        let mut node = self.open_regular(inode)?;
        let result = self.write_data(inode.0, &mut node, offset, data);
        self.store_inode(inode.0, &node)?;
        result
    }

    /// Where `length` bytes of file `inode` from `offset` lie, for reading
    /// them straight from the device (direct I/O around this crate).
    ///
    /// `offset` must be a multiple of the block size. The range is clipped
    /// at the end of the file: the extents cover `0..min(length, size -
    /// offset)` of it, in order, and nothing if `offset` is at or past the
    /// end. Holes come back as [`Extent::Zeros`] of exact length. A
    /// [`Extent::Disk`] is a multiple of [`SECTOR_SIZE`] long: the last one
    /// is rounded up to whole sectors (never whole blocks), so it may reach
    /// up to 511 bytes past the range, still inside the file's last block;
    /// the caller's buffer must allow for that. Extents are merged where
    /// they carry on from each other and are at most `max_extent` bytes (the
    /// caller's transfer limit, a non-zero multiple of the block size). Dirty
    /// cached copies of the blocks returned are written back first, so the
    /// device holds the newest data; the extents stay valid until the next
    /// call that changes the filesystem.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] for an unaligned `offset` or a bad
    /// `max_extent`, and as for [`Self::read`].
    pub fn map_read(
        &mut self,
        inode: InodeNumber,
        offset: u64,
        length: u64,
        max_extent: u64,
    ) -> Result<Vec<Extent>, Error> {
        self.check_extent_request(offset, 0, max_extent)?;
        let node = self.open_regular(inode)?;
        self.map_read_data(&node, offset, length, max_extent)
    }

    /// Allocates, where there are holes, the blocks for writing `length`
    /// bytes of file `inode` at `offset`, and returns where they lie, for
    /// writing them straight to the device (direct I/O around this crate).
    ///
    /// `offset` and `length` must be multiples of the block size, and
    /// `max_extent` as for [`Self::map_read`]. Only [`Extent::Disk`]s come
    /// back, in order, merged where physically consecutive, together
    /// covering a prefix of the range. The file grows to `offset + length`
    /// (the prefix's end, if shorter) if it was smaller, its times are
    /// updated as by [`Self::write`], and cached copies of the blocks are
    /// dropped: the caller's data is newer. If the disk fills up (or another
    /// error strikes) part way, the extents of the prefix placed so far come
    /// back.
    ///
    /// The caller must write every returned extent before its next call on
    /// this filesystem: newly allocated blocks are already part of the file
    /// and hold stale data until written. If a write fails it should
    /// [`Self::truncate`] the file back.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOperation`] for an unaligned `offset` or `length` or
    /// a bad `max_extent`, [`Error::NoSpace`] if not a block could be
    /// placed, and as for [`Self::write`].
    pub fn map_write(
        &mut self,
        inode: InodeNumber,
        offset: u64,
        length: u64,
        max_extent: u64,
    ) -> Result<Vec<Extent>, Error> {
        self.check_extent_request(offset, length, max_extent)?;
        let mut node = self.open_regular(inode)?;
        let result = self.map_write_data(inode.0, &mut node, offset, length, max_extent);
        self.store_inode(inode.0, &node)?;
        result
    }

    /// Sets the file's size: shrinking frees the blocks past the end,
    /// growing leaves a hole.
    ///
    /// # Errors
    ///
    /// [`Error::FileTooLarge`], and as for [`Self::read`].
    pub fn truncate(&mut self, inode: InodeNumber, size: u64) -> Result<(), Error> {
        let mut node = self.open_regular(inode)?;
        self.truncate_data(&mut node, size)?;
        self.store_inode(inode.0, &node)
    }

    /// Renames a file or directory, replacing a file (or an empty directory
    /// by a directory) already at `to`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::IsADirectory`] to replace a directory
    /// by a file, [`Error::NotADirectory`] for the reverse,
    /// [`Error::DirectoryNotEmpty`], [`Error::InvalidOperation`] to move the
    /// root or a directory into itself, [`Error::NoSpace`] if the target
    /// directory must grow and cannot, and path errors.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        let source_path = path::parse(from)?;
        let target_path = path::parse(to)?;
        let (source_name, source_parent_path) = source_path
            .split_last()
            .ok_or(Error::InvalidOperation("cannot rename the root directory"))?;
        let (target_name, target_parent_path) = target_path
            .split_last()
            .ok_or(Error::InvalidOperation("cannot replace the root directory"))?;
        let source_parent = self.resolve_directory(source_parent_path)?;
        let source = self
            .find_entry(source_parent, source_name.as_bytes())?
            .ok_or(Error::NotFound)?;
        let mut source_node = self.load_inode(source)?;
        let moves_directory = source_node.is_directory();
        if moves_directory && target_path.len() > source_path.len() && target_path.starts_with(&source_path) {
            return Err(Error::InvalidOperation("cannot move a directory into itself"));
        }
        let target_parent = self.resolve_directory(target_parent_path)?;
        let replaced = self.find_entry(target_parent, target_name.as_bytes())?;
        if replaced == Some(source) {
            return Ok(());
        }
        let parents_differ = source_parent != target_parent;
        if moves_directory && parents_differ && self.load_inode(target_parent)?.links() >= MAX_LINKS {
            return Err(Error::InvalidOperation(
                "the target directory has too many subdirectories",
            ));
        }
        let mode = source_node.mode();
        if let Some(replaced) = replaced {
            let replaced_node = self.load_inode(replaced)?;
            match (moves_directory, replaced_node.is_directory()) {
                (false, true) => return Err(Error::IsADirectory),
                (true, false) => return Err(Error::NotADirectory),
                (true, true) if !self.is_empty_directory(replaced)? => return Err(Error::DirectoryNotEmpty),
                _ => {}
            }
            self.retarget_entry(target_parent, target_name.as_bytes(), source, mode)?;
            self.unlink(target_parent, replaced, replaced_node)?;
        } else {
            self.add_entry(target_parent, target_name.as_bytes(), source, mode)?;
        }
        self.remove_entry(source_parent, source_name.as_bytes())?;
        if moves_directory && parents_differ {
            self.retarget_entry(source, b"..", target_parent, MODE_DIRECTORY)?;
            self.adjust_links(source_parent, -1)?;
            self.adjust_links(target_parent, 1)?;
            source_node = self.load_inode(source)?;
        }
        source_node.touch(self.clock);
        self.store_inode(source, &source_node)
    }

    /// Removes a file, or an empty directory, freeing its blocks and inode
    /// once no name is left for it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::DirectoryNotEmpty`],
    /// [`Error::InvalidOperation`] for the root, and path errors.
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        let components = path::parse(path)?;
        let (name, parent_path) = components
            .split_last()
            .ok_or(Error::InvalidOperation("cannot remove the root directory"))?;
        let parent = self.resolve_directory(parent_path)?;
        let inode = self.find_entry(parent, name.as_bytes())?.ok_or(Error::NotFound)?;
        let node = self.load_inode(inode)?;
        if node.is_directory() && !self.is_empty_directory(inode)? {
            return Err(Error::DirectoryNotEmpty);
        }
        self.remove_entry(parent, name.as_bytes())?;
        self.unlink(parent, inode, node)
    }

    /// The entries of a directory, without `.` and `..`, in on-disk order.
    ///
    /// # Errors
    ///
    /// [`Error::NotADirectory`], [`Error::NotFound`] for an inode not in
    /// use, [`Error::Corrupt`], [`Error::Device`].
    pub fn read_dir(&mut self, inode: InodeNumber) -> Result<Vec<DirectoryEntry>, Error> {
        if !self.open(inode)?.is_directory() {
            return Err(Error::NotADirectory);
        }
        self.list_directory(inode.0)
    }

    /// What an inode is and how large.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an inode not in use, [`Error::Corrupt`],
    /// [`Error::Device`].
    pub fn stat(&mut self, inode: InodeNumber) -> Result<Metadata, Error> {
        let node = self.open(inode)?;
        Ok(Metadata {
            inode,
            kind: node.kind().into(),
            size: node.size(),
            links: node.links(),
            permissions: node.mode() & 0o7777,
            blocks: u64::from(node.sectors()),
            accessed: node.atime(),
            modified: node.mtime(),
            changed: node.ctime(),
        })
    }

    /// Space and inode usage.
    pub fn statfs(&self) -> Usage {
        let (free_blocks, free_inodes) = self.free_counts();
        Usage {
            block_size: self.geometry.block_size as u32,
            total_blocks: u64::from(self.geometry.blocks_count),
            free_blocks: u64::from(free_blocks),
            total_inodes: u64::from(self.geometry.inodes_count),
            free_inodes: u64::from(free_inodes),
        }
    }

    /// Writes every dirty block, the superblock and the group descriptors,
    /// then flushes the device: everything done so far is durable.
    ///
    /// # Errors
    ///
    /// [`Error::Device`].
    pub fn sync(&mut self) -> Result<(), Error> {
        let (free_blocks, free_inodes) = self.free_counts();
        self.superblock.set_free_counts(free_blocks, free_inodes);
        let (block, offset) = self.geometry.superblock_location();
        let data = self.cache.write(&mut self.device, block)?;
        data[offset..offset + SUPERBLOCK_SIZE].copy_from_slice(self.superblock.bytes());
        let table = self.groups.bytes();
        for (block, chunk) in (self.geometry.descriptor_table_block()..).zip(table.chunks(self.geometry.block_size)) {
            self.cache.fresh(&mut self.device, block)?.copy_from_slice(chunk);
        }
        self.cache.flush(&mut self.device)?;
        self.device.flush().map_err(Error::Device)
    }

    /// The device, for the transfers the caller makes itself at the
    /// extents of [`Self::map_read`] and [`Self::map_write`]. Anything else
    /// written through it bypasses the filesystem and its cache.
    pub fn device(&mut self) -> &mut D {
        &mut self.device
    }

    /// Gives the device back, without syncing.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Free blocks and inodes: the sums over the groups, which are what the
    /// superblock must say.
    fn free_counts(&self) -> (u32, u32) {
        (0..self.geometry.groups).fold((0u32, 0u32), |(blocks, inodes), group| {
            (
                blocks.saturating_add(u32::from(self.groups.free_blocks(group))),
                inodes.saturating_add(u32::from(self.groups.free_inodes(group))),
            )
        })
    }

    /// Follows `components` from the root.
    fn resolve(&mut self, components: &[&str]) -> Result<u32, Error> {
        let mut inode = ROOT_INODE;
        for name in components {
            inode = self.find_entry(inode, name.as_bytes())?.ok_or(Error::NotFound)?;
        }
        Ok(inode)
    }

    /// Follows `components` from the root to a directory.
    fn resolve_directory(&mut self, components: &[&str]) -> Result<u32, Error> {
        let inode = self.resolve(components)?;
        if self.load_inode(inode)?.is_directory() {
            Ok(inode)
        } else {
            Err(Error::NotADirectory)
        }
    }

    /// Adds `change` to a directory's link count.
    fn adjust_links(&mut self, directory: u32, change: i16) -> Result<(), Error> {
        let mut node = self.load_inode(directory)?;
        node.set_links(node.links().saturating_add_signed(change));
        node.touch(self.clock);
        self.store_inode(directory, &node)
    }

    /// Drops one name of `inode`, whose entry in `parent` is already gone;
    /// frees it when no name is left. A directory has only one name.
    fn unlink(&mut self, parent: u32, inode: u32, mut node: Inode) -> Result<(), Error> {
        if node.is_directory() {
            self.adjust_links(parent, -1)?;
            return self.release_inode(inode, node);
        }
        let links = node.links().saturating_sub(1);
        if links == 0 {
            return self.release_inode(inode, node);
        }
        node.set_links(links);
        node.touch(self.clock);
        self.store_inode(inode, &node)
    }
}
