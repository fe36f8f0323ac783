//! Directories: linear lists of records, each block covered exactly by
//! records of `inode (4) | rec_len (2) | name_len (1) | file_type (1) | name`
//! padded to a multiple of 4 bytes. A record with inode 0 is unused space.
//! Without the filetype feature, `name_len` is 2 bytes and there is no type.

use alloc::string::String;
use alloc::vec::Vec;

use crate::layout::{InodeType, MODE_DIRECTORY, MODE_REGULAR, set_u16, set_u32, u32_at};
use crate::{BlockDevice, DirectoryEntry, Error, FileKind, FileSystem, InodeNumber};

/// Bytes before the name in every record.
const HEADER_LEN: usize = 8;
/// The file type byte of a regular file.
const FILE_TYPE_REGULAR: u8 = 1;
/// The file type byte of a directory.
const FILE_TYPE_DIRECTORY: u8 = 2;

/// One record of a directory block, checked to lie inside it.
struct Record {
    offset: usize,
    inode: u32,
    length: usize,
    name_len: usize,
    file_type: u8,
}

impl Record {
    fn name<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        &block[self.offset + HEADER_LEN..self.offset + HEADER_LEN + self.name_len]
    }

    /// Bytes the record needs for its name; the rest of `length` is free.
    fn used(&self) -> usize {
        record_length(self.name_len)
    }
}

/// Where a name was found.
struct Location {
    block: u32,
    offset: usize,
    /// The offset of the record before it in the same block.
    previous: Option<usize>,
    inode: u32,
}

/// The smallest record for a name of `name_len` bytes.
fn record_length(name_len: usize) -> usize {
    (HEADER_LEN + name_len).next_multiple_of(4)
}

/// The file type byte for an inode of `mode`, or 0 without the filetype
/// feature.
fn file_type_byte(mode: u16, file_type: bool) -> u8 {
    if !file_type {
        return 0;
    }
    match mode & 0xF000 {
        MODE_REGULAR => FILE_TYPE_REGULAR,
        MODE_DIRECTORY => FILE_TYPE_DIRECTORY,
        0x2000 => 3,
        0x6000 => 4,
        0x1000 => 5,
        0xC000 => 6,
        0xA000 => 7,
        _ => 0,
    }
}

/// Splits a directory block into its records, checking that they cover it
/// exactly and that each name fits its record.
fn parse_block(block: &[u8], file_type: bool) -> Result<Vec<Record>, Error> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < block.len() {
        let header = block
            .get(offset..offset + HEADER_LEN)
            .ok_or(Error::Corrupt("directory record crosses the block end"))?;
        let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
        let (name_len, type_byte) = if file_type {
            (usize::from(header[6]), header[7])
        } else {
            (usize::from(u16::from_le_bytes([header[6], header[7]])), 0)
        };
        let inode = u32_at(header, 0);
        let fits = length >= HEADER_LEN && length % 4 == 0 && length <= block.len() - offset;
        if !fits || HEADER_LEN + name_len > length || (inode != 0 && name_len == 0) {
            return Err(Error::Corrupt("directory record length does not fit"));
        }
        records.push(Record {
            offset,
            inode,
            length,
            name_len,
            file_type: type_byte,
        });
        offset += length;
    }
    Ok(records)
}

/// Writes a record header and name at `offset`.
fn write_record(block: &mut [u8], offset: usize, inode: u32, length: usize, name: &[u8], type_byte: u8) {
    set_u32(block, offset, inode);
    set_u16(block, offset + 4, length as u16);
    block[offset + 6] = name.len() as u8;
    block[offset + 7] = type_byte;
    block[offset + HEADER_LEN..offset + HEADER_LEN + name.len()].copy_from_slice(name);
}

/// Fills the first block of a new directory: `.` and `..`.
pub(crate) fn initialise_block(block: &mut [u8], inode: u32, parent: u32, file_type: bool) {
    let type_byte = file_type_byte(MODE_DIRECTORY, file_type);
    let dot_length = record_length(1);
    write_record(block, 0, inode, dot_length, b".", type_byte);
    write_record(block, dot_length, parent, block.len() - dot_length, b"..", type_byte);
}

impl<D: BlockDevice> FileSystem<D> {
    /// The blocks of directory `directory`, in order, holes skipped.
    fn directory_blocks(&mut self, directory: u32) -> Result<Vec<u32>, Error> {
        let node = self.load_inode(directory)?;
        if !node.is_directory() {
            return Err(Error::NotADirectory);
        }
        let block_size = self.geometry.block_size as u64;
        if node.size() % block_size != 0 {
            return Err(Error::Corrupt("directory size is not a multiple of the block size"));
        }
        let count = (node.size() / block_size).min(u64::from(self.geometry.blocks_count));
        let mut blocks = Vec::new();
        for logical in 0..count {
            if let Some(block) = self.map(&node, logical)? {
                blocks.push(block);
            }
        }
        Ok(blocks)
    }

    /// Finds `name` in `directory`.
    fn locate(&mut self, directory: u32, name: &[u8]) -> Result<Option<Location>, Error> {
        for block in self.directory_blocks(directory)? {
            let data = self.cache.read(&mut self.device, block)?;
            let mut previous = None;
            for record in parse_block(data, self.geometry.file_type)? {
                if record.inode != 0 && record.name(data) == name {
                    if record.inode > self.geometry.inodes_count {
                        return Err(Error::Corrupt("directory entry names an inode out of range"));
                    }
                    let (offset, inode) = (record.offset, record.inode);
                    return Ok(Some(Location {
                        block,
                        offset,
                        previous,
                        inode,
                    }));
                }
                previous = Some(record.offset);
            }
        }
        Ok(None)
    }

    /// The inode `name` in `directory` refers to, if any.
    pub(crate) fn find_entry(&mut self, directory: u32, name: &[u8]) -> Result<Option<u32>, Error> {
        Ok(self.locate(directory, name)?.map(|location| location.inode))
    }

    /// Marks `directory` changed: times, and no more htree index.
    fn touch_directory(&mut self, directory: u32) -> Result<(), Error> {
        let mut node = self.load_inode(directory)?;
        node.clear_index_flag();
        node.touch(self.clock);
        self.store_inode(directory, &node)
    }

    /// Adds the entry `name` → `inode` (of `mode`) to `directory`, in the
    /// first gap large enough, else in a new block at its end.
    pub(crate) fn add_entry(&mut self, directory: u32, name: &[u8], inode: u32, mode: u16) -> Result<(), Error> {
        let type_byte = file_type_byte(mode, self.geometry.file_type);
        let needed = record_length(name.len());
        let blocks = self.directory_blocks(directory)?;
        for &block in &blocks {
            let data = self.cache.read(&mut self.device, block)?;
            let gap = parse_block(data, self.geometry.file_type)?
                .into_iter()
                .find_map(|record| {
                    if record.inode == 0 && record.length >= needed {
                        Some((record.offset, None, record.length))
                    } else if record.inode != 0 && record.length >= record.used() + needed {
                        Some((record.offset + record.used(), Some(record), 0))
                    } else {
                        None
                    }
                });
            let Some((offset, split, length)) = gap else {
                continue;
            };
            let data = self.cache.write(&mut self.device, block)?;
            let length = match split {
                Some(record) => {
                    set_u16(data, record.offset + 4, record.used() as u16);
                    record.length - record.used()
                }
                None => length,
            };
            write_record(data, offset, inode, length, name, type_byte);
            return self.touch_directory(directory);
        }
        let mut node = self.load_inode(directory)?;
        let block_size = self.geometry.block_size;
        let goal = match blocks.last() {
            Some(&last) => last.saturating_add(1),
            None => self.geometry.group_first_block(self.geometry.group_of_inode(directory)),
        };
        let logical = node.size() / block_size as u64;
        let (block, _) = self.map_or_allocate(&mut node, logical, goal)?;
        let data = self.cache.fresh(&mut self.device, block)?;
        write_record(data, 0, inode, block_size, name, type_byte);
        node.set_size(node.size() + block_size as u64);
        node.clear_index_flag();
        node.touch(self.clock);
        self.store_inode(directory, &node)
    }

    /// Removes the entry `name` from `directory`, giving its space to the
    /// record before it.
    pub(crate) fn remove_entry(&mut self, directory: u32, name: &[u8]) -> Result<(), Error> {
        let location = self.locate(directory, name)?.ok_or(Error::NotFound)?;
        let data = self.cache.write(&mut self.device, location.block)?;
        match location.previous {
            Some(previous) => {
                // Both lengths were checked to fit in the block.
                let merged = u16::from_le_bytes([data[previous + 4], data[previous + 5]])
                    + u16::from_le_bytes([data[location.offset + 4], data[location.offset + 5]]);
                set_u16(data, previous + 4, merged);
            }
            None => set_u32(data, location.offset, 0),
        }
        self.touch_directory(directory)
    }

    /// Points the existing entry `name` of `directory` at `inode` (of `mode`).
    pub(crate) fn retarget_entry(&mut self, directory: u32, name: &[u8], inode: u32, mode: u16) -> Result<(), Error> {
        let location = self
            .locate(directory, name)?
            .ok_or(Error::Corrupt("directory entry vanished"))?;
        let data = self.cache.write(&mut self.device, location.block)?;
        set_u32(data, location.offset, inode);
        if self.geometry.file_type {
            data[location.offset + 7] = file_type_byte(mode, true);
        }
        self.touch_directory(directory)
    }

    /// Whether `directory` has no entries but `.` and `..`.
    pub(crate) fn is_empty_directory(&mut self, directory: u32) -> Result<bool, Error> {
        for block in self.directory_blocks(directory)? {
            let data = self.cache.read(&mut self.device, block)?;
            for record in parse_block(data, self.geometry.file_type)? {
                if record.inode != 0 && !matches!(record.name(data), b"." | b"..") {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The entries of `directory` but `.` and `..`.
    pub(crate) fn list_directory(&mut self, directory: u32) -> Result<Vec<DirectoryEntry>, Error> {
        let mut entries = Vec::new();
        let mut untyped = Vec::new();
        for block in self.directory_blocks(directory)? {
            let data = self.cache.read(&mut self.device, block)?;
            for record in parse_block(data, self.geometry.file_type)? {
                let name = record.name(data);
                if record.inode == 0 || matches!(name, b"." | b"..") {
                    continue;
                }
                let kind = match record.file_type {
                    FILE_TYPE_REGULAR => FileKind::File,
                    FILE_TYPE_DIRECTORY => FileKind::Directory,
                    7 => FileKind::SymbolicLink,
                    0 => {
                        untyped.push(entries.len());
                        FileKind::Other
                    }
                    _ => FileKind::Other,
                };
                let name = String::from_utf8_lossy(name).into_owned();
                entries.push(DirectoryEntry {
                    name,
                    inode: InodeNumber(record.inode),
                    kind,
                });
            }
        }
        // Without file types in the records, the inodes tell.
        for index in untyped {
            if let Some(entry) = entries.get_mut(index) {
                let kind: InodeType = self.load_inode(entry.inode.0)?.kind();
                entry.kind = kind.into();
            }
        }
        Ok(entries)
    }
}
