//! The boot archive: every user program, the system description and the
//! kernel's symbol table, packed into the bootloader's single ramdisk.
//!
//! The image builder writes it with [`ArchiveBuilder`]; the kernel reads it
//! with [`Archive::parse`], which checks everything before it hands out a
//! single byte, and returns an error, never panics, on a corrupt archive.
//!
//! # Format, version 1
//!
//! All integers are little-endian. An archive is a header, an index, and the
//! entries' data:
//!
//! ```text
//! offset  size  field
//! 0       8     magic, "KBOOTARC"
//! 8       4     format version, 1
//! 12      4     index length in bytes
//! 16      4     CRC-32 of the index bytes
//! 20      4     reserved, 0
//! 24      ..    index
//! ..      ..    each entry's data, at a 4096-aligned offset
//! ```
//!
//! The index is a [postcard]-serialised
//! `Index { entries: Vec<Entry> }`, with
//! `Entry { name: String, kind: EntryKind, offset: u64, length: u64, checksum: u32 }`.
//! In bytes: the entry count, then for each entry the name's length and its
//! UTF-8 bytes, the kind (0 program, 1 system description, 2 kernel symbols),
//! the offset, the length and the checksum. Every one of these integers is an
//! unsigned LEB128 varint. `offset` counts from the start of the archive.
//!
//! The reader checks that:
//! - names are 1 to [`MAX_NAME_LEN`] printable ASCII characters (`!` to `~`)
//!   and unique;
//! - each entry's data lies after the index and inside the archive, and starts
//!   at a multiple of [`ALIGNMENT`], so the kernel can map program pages
//!   straight from the ramdisk;
//! - each entry's checksum is the CRC-32 of its data.
//!
//! The writer fills every gap with zeroes and pads the archive to a multiple
//! of [`ALIGNMENT`], so the last page of every entry lies wholly inside the
//! archive. Readers do not rely on either.
//!
//! Checksums are CRC-32/ISO-HDLC, the common CRC-32 of zlib, Ethernet and PNG.
//!
//! The payload of the [`EntryKind::KernelSymbols`] entry is described in
//! [`symbols`].

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod crc32;
mod read;
pub mod symbols;
#[cfg(test)]
mod tests;
mod write;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

pub use read::Archive;
pub use write::ArchiveBuilder;

/// The first eight bytes of every boot archive.
pub const MAGIC: [u8; 8] = *b"KBOOTARC";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// The size of the header that precedes the index.
pub const HEADER_LEN: usize = 24;
/// Every entry's data starts at a multiple of this many bytes: one page.
pub const ALIGNMENT: usize = 4096;
/// The longest entry name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A user program, as an ELF executable.
    Program,
    /// The system description: which programs run, and what they may touch.
    SystemDescription,
    /// The kernel's own symbol table, in the format of [`symbols`].
    KernelSymbols,
}

/// One entry of a parsed archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File<'a> {
    /// The entry's name, unique in its archive.
    pub name: &'a str,
    /// What the entry holds.
    pub kind: EntryKind,
    /// The entry's bytes, starting on a page boundary of the archive.
    pub data: &'a [u8],
}

/// The index as stored; see the crate documentation.
#[derive(Debug, Serialize, Deserialize)]
struct Index<'a> {
    #[serde(borrow)]
    entries: Vec<Entry<'a>>,
}

/// One index entry as stored; see the crate documentation.
#[derive(Debug, Serialize, Deserialize)]
struct Entry<'a> {
    name: &'a str,
    kind: EntryKind,
    offset: u64,
    length: u64,
    checksum: u32,
}

/// Checks an entry name against the rules of the format.
fn check_name(name: &str) -> Result<(), ArchiveError> {
    let valid = !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(|byte| byte.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(ArchiveError::BadName { name: name.into() })
    }
}

/// Why an archive could not be read, or an entry could not be added to one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// The archive is shorter than its header.
    TooShort,
    /// The archive does not start with [`MAGIC`].
    BadMagic,
    /// The archive has a format version other than [`VERSION`].
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The header's reserved field is not zero.
    ReservedNotZero,
    /// The index runs past the end of the archive.
    IndexOutOfBounds,
    /// The index does not match its checksum.
    IndexChecksumMismatch,
    /// The index matches its checksum but cannot be decoded.
    IndexMalformed,
    /// An entry name is empty, too long, or not printable ASCII.
    BadName {
        /// The offending name.
        name: String,
    },
    /// Two entries have the same name.
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// An entry's data does not start on an [`ALIGNMENT`] boundary.
    EntryMisaligned {
        /// The entry's name.
        name: String,
    },
    /// An entry's data overlaps the header or index, or runs past the end.
    EntryOutOfBounds {
        /// The entry's name.
        name: String,
    },
    /// An entry's data does not match its checksum.
    EntryChecksumMismatch {
        /// The entry's name.
        name: String,
    },
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORRUPT: &str = "boot archive corrupt";
        match self {
            Self::TooShort => write!(f, "{CORRUPT}: shorter than its {HEADER_LEN}-byte header"),
            Self::BadMagic => write!(f, "not a boot archive: magic is not \"KBOOTARC\""),
            Self::UnsupportedVersion { found } => write!(
                f,
                "boot archive has format version {found}, this kernel reads version {VERSION}"
            ),
            Self::ReservedNotZero => write!(f, "{CORRUPT}: reserved header field is not zero"),
            Self::IndexOutOfBounds => write!(f, "{CORRUPT}: index runs past the end"),
            Self::IndexChecksumMismatch => {
                write!(f, "{CORRUPT}: checksum of the index does not match")
            }
            Self::IndexMalformed => write!(f, "{CORRUPT}: index cannot be decoded"),
            Self::BadName { name } => write!(
                f,
                "boot archive: bad entry name {name:?} \
                 (must be 1 to {MAX_NAME_LEN} printable ASCII characters)"
            ),
            Self::DuplicateName { name } => {
                write!(f, "boot archive: entry name '{name}' appears twice")
            }
            Self::EntryMisaligned { name } => write!(
                f,
                "{CORRUPT}: data of '{name}' does not start on a {ALIGNMENT}-byte boundary"
            ),
            Self::EntryOutOfBounds { name } => {
                write!(f, "{CORRUPT}: data of '{name}' lies outside the archive's data area")
            }
            Self::EntryChecksumMismatch { name } => {
                write!(f, "{CORRUPT}: checksum of '{name}' does not match")
            }
        }
    }
}

impl core::error::Error for ArchiveError {}
