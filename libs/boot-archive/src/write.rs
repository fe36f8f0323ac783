//! Writing an archive, for the image builder.

use alloc::string::String;
use alloc::vec::Vec;

use crate::crc32::crc32;
use crate::{ALIGNMENT, ArchiveError, Entry, EntryKind, HEADER_LEN, Index, MAGIC, VERSION, check_name};

/// Collects entries, then lays them out as an archive.
#[derive(Clone, Debug, Default)]
pub struct ArchiveBuilder {
    entries: Vec<Pending>,
}

/// An entry as added, before it has a place in the archive.
#[derive(Clone, Debug)]
struct Pending {
    name: String,
    kind: EntryKind,
    data: Vec<u8>,
}

impl ArchiveBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; entries appear in the archive in the order added.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::BadName`] if `name` breaks the naming rules of the
    /// format, [`ArchiveError::DuplicateName`] if an entry already has it.
    pub fn add(&mut self, name: &str, kind: EntryKind, data: impl Into<Vec<u8>>) -> Result<(), ArchiveError> {
        check_name(name)?;
        if self.entries.iter().any(|entry| entry.name == name) {
            return Err(ArchiveError::DuplicateName { name: name.into() });
        }
        self.entries.push(Pending {
            name: name.into(),
            kind,
            data: data.into(),
        });
        Ok(())
    }

    /// Lays out the archive: header, index, then each entry's data on a page
    /// boundary, zero-padded to a whole number of pages.
    ///
    /// # Panics
    ///
    /// If the index exceeds 4 GiB, which takes tens of millions of entries.
    pub fn build(&self) -> Vec<u8> {
        let checksums: Vec<u32> = self.entries.iter().map(|entry| crc32(&entry.data)).collect();
        // The index holds the data offsets, which depend on the index's
        // length. Each round can only move the data later, which can only
        // lengthen the index, so starting low this settles in a round or two.
        let mut data_start = align_up(HEADER_LEN);
        let (entries, index) = loop {
            let mut offset = data_start;
            let entries: Vec<Entry<'_>> = self
                .entries
                .iter()
                .zip(&checksums)
                .map(|(entry, &checksum)| {
                    let placed = Entry {
                        name: &entry.name,
                        kind: entry.kind,
                        offset: offset as u64,
                        length: entry.data.len() as u64,
                        checksum,
                    };
                    offset = align_up(offset + entry.data.len());
                    placed
                })
                .collect();
            let index = Index { entries };
            let bytes = postcard::to_allocvec(&index).expect("serialising to a Vec cannot fail");
            let needed = align_up(HEADER_LEN + bytes.len());
            if needed <= data_start {
                break (index.entries, bytes);
            }
            data_start = needed;
        };

        let index_len = u32::try_from(index.len()).expect("boot archive index exceeds 4 GiB");
        let mut archive = Vec::new();
        archive.extend_from_slice(&MAGIC);
        archive.extend_from_slice(&VERSION.to_le_bytes());
        archive.extend_from_slice(&index_len.to_le_bytes());
        archive.extend_from_slice(&crc32(&index).to_le_bytes());
        archive.extend_from_slice(&0u32.to_le_bytes());
        archive.extend_from_slice(&index);
        for (placed, entry) in entries.iter().zip(&self.entries) {
            archive.resize(placed.offset as usize, 0);
            archive.extend_from_slice(&entry.data);
        }
        archive.resize(align_up(archive.len()), 0);
        archive
    }
}

/// Rounds `offset` up to the next multiple of [`ALIGNMENT`].
fn align_up(offset: usize) -> usize {
    offset.next_multiple_of(ALIGNMENT)
}
