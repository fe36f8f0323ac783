//! Reading an archive: parse and check everything once, then hand out
//! borrowed views of the entries.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::crc32::crc32;
use crate::{ALIGNMENT, ArchiveError, Entry, EntryKind, File, HEADER_LEN, Index, MAGIC, VERSION, check_name};

/// A parsed and fully checked boot archive, borrowing the ramdisk's bytes.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    files: Vec<File<'a>>,
}

impl<'a> Archive<'a> {
    /// Parses `bytes` as a boot archive and checks all of it: magic, version,
    /// index bounds and checksum, every entry's name, bounds, alignment and
    /// checksum.
    ///
    /// # Errors
    ///
    /// The first problem found, as an [`ArchiveError`]; errors about one
    /// entry name it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        let mut header = bytes;
        if take::<8>(&mut header)? != MAGIC {
            return Err(ArchiveError::BadMagic);
        }
        let version = u32::from_le_bytes(take(&mut header)?);
        if version != VERSION {
            return Err(ArchiveError::UnsupportedVersion { found: version });
        }
        let index_len = u32::from_le_bytes(take(&mut header)?);
        let index_checksum = u32::from_le_bytes(take(&mut header)?);
        if u32::from_le_bytes(take(&mut header)?) != 0 {
            return Err(ArchiveError::ReservedNotZero);
        }

        let index_len = usize::try_from(index_len).map_err(|_| ArchiveError::IndexOutOfBounds)?;
        let index = header.get(..index_len).ok_or(ArchiveError::IndexOutOfBounds)?;
        if crc32(index) != index_checksum {
            return Err(ArchiveError::IndexChecksumMismatch);
        }
        let Ok((Index { entries }, [])) = postcard::take_from_bytes::<Index<'a>>(index) else {
            return Err(ArchiveError::IndexMalformed);
        };

        // Cannot overflow: the index lies inside `bytes`.
        let data_start = HEADER_LEN + index_len;
        let mut seen = BTreeSet::new();
        let files = entries
            .into_iter()
            .map(|entry| check_entry(bytes, data_start, &mut seen, entry))
            .collect::<Result<_, _>>()?;
        Ok(Self { files })
    }

    /// Every entry, in the order the archive lists them.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = File<'a>> {
        self.files.iter().copied()
    }

    /// The entry called `name`, if there is one.
    pub fn find(&self, name: &str) -> Option<File<'a>> {
        self.entries().find(|file| file.name == name)
    }

    /// The first entry of the given kind, if there is one.
    pub fn find_kind(&self, kind: EntryKind) -> Option<File<'a>> {
        self.entries().find(|file| file.kind == kind)
    }
}

/// Takes the next `N` bytes of the header.
fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], ArchiveError> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(ArchiveError::TooShort)?;
    *bytes = rest;
    Ok(*head)
}

/// Checks one index entry and returns the file it describes.
fn check_entry<'a>(
    bytes: &'a [u8],
    data_start: usize,
    seen: &mut BTreeSet<&'a str>,
    entry: Entry<'a>,
) -> Result<File<'a>, ArchiveError> {
    let name = entry.name;
    check_name(name)?;
    if !seen.insert(name) {
        return Err(ArchiveError::DuplicateName { name: name.into() });
    }
    if !entry.offset.is_multiple_of(ALIGNMENT as u64) {
        return Err(ArchiveError::EntryMisaligned { name: name.into() });
    }
    let data = data_in_bounds(bytes, data_start, entry.offset, entry.length)
        .ok_or_else(|| ArchiveError::EntryOutOfBounds { name: name.into() })?;
    if crc32(data) != entry.checksum {
        return Err(ArchiveError::EntryChecksumMismatch { name: name.into() });
    }
    Ok(File {
        name,
        kind: entry.kind,
        data,
    })
}

/// `bytes[offset..offset + length]`, if it lies at or after `data_start`
/// and inside `bytes`.
fn data_in_bounds(bytes: &[u8], data_start: usize, offset: u64, length: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok().filter(|&start| start >= data_start)?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    bytes.get(start..end)
}
