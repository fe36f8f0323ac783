//! Tests of the archive format: round trips, layout, every error, and that
//! no corruption makes the reader panic.

use crate::crc32::crc32;
use crate::{ALIGNMENT, Archive, ArchiveBuilder, ArchiveError, EntryKind, File, HEADER_LEN, Index};

/// An archive of three entries; `init`'s data fills exactly two pages, so
/// the archive ends where its data does.
fn sample() -> Vec<u8> {
    let mut builder = ArchiveBuilder::new();
    builder
        .add("system.toml", EntryKind::SystemDescription, b"[init]\n".as_slice())
        .unwrap();
    builder
        .add("kernel.symbols", EntryKind::KernelSymbols, vec![7; 5000])
        .unwrap();
    builder.add("init", EntryKind::Program, pattern(2 * ALIGNMENT)).unwrap();
    builder.build()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn names(archive: &Archive<'_>) -> Vec<String> {
    archive.entries().map(|file| file.name.into()).collect()
}

/// Rewrites the index of a small archive (index within the first page) and
/// fixes its checksum, leaving the data where it is.
fn with_index<'a>(archive: &'a [u8], edit: impl FnOnce(&mut Index<'a>)) -> Vec<u8> {
    let index_len = u32::from_le_bytes(archive[12..16].try_into().unwrap()) as usize;
    let mut index: Index<'a> = postcard::from_bytes(&archive[HEADER_LEN..][..index_len]).unwrap();
    edit(&mut index);
    set_index(archive, &postcard::to_allocvec(&index).unwrap())
}

/// Replaces the index bytes of a small archive and fixes its checksum.
fn set_index(archive: &[u8], index: &[u8]) -> Vec<u8> {
    assert!(HEADER_LEN + index.len() <= ALIGNMENT);
    let mut out = archive.to_vec();
    out[12..16].copy_from_slice(&(index.len() as u32).to_le_bytes());
    out[16..20].copy_from_slice(&crc32(index).to_le_bytes());
    out[HEADER_LEN..ALIGNMENT].fill(0);
    out[HEADER_LEN..][..index.len()].copy_from_slice(index);
    out
}

fn error(bytes: &[u8]) -> ArchiveError {
    Archive::parse(bytes).unwrap_err()
}

fn named(name: &str) -> String {
    name.into()
}

#[test]
fn round_trip_several_entries() {
    let bytes = sample();
    let archive = Archive::parse(&bytes).unwrap();
    assert_eq!(names(&archive), ["system.toml", "kernel.symbols", "init"]);
    let files: Vec<File<'_>> = archive.entries().collect();
    assert_eq!(files[0].kind, EntryKind::SystemDescription);
    assert_eq!(files[0].data, b"[init]\n");
    assert_eq!(files[1].kind, EntryKind::KernelSymbols);
    assert_eq!(files[1].data, vec![7; 5000]);
    assert_eq!(files[2].kind, EntryKind::Program);
    assert_eq!(files[2].data, pattern(2 * ALIGNMENT));
}

#[test]
fn data_is_page_aligned_and_zero_padded() {
    let bytes = sample();
    assert_eq!(&bytes[..8], b"KBOOTARC");
    assert_eq!(bytes.len() % ALIGNMENT, 0);
    let archive = Archive::parse(&bytes).unwrap();
    let mut covered = vec![false; bytes.len()];
    covered[..HEADER_LEN + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize].fill(true);
    for file in archive.entries() {
        let offset = file.data.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(offset % ALIGNMENT, 0, "{} misaligned", file.name);
        covered[offset..][..file.data.len()].fill(true);
    }
    let padding_is_zero = covered.iter().zip(&bytes).all(|(&covered, &byte)| covered || byte == 0);
    assert!(padding_is_zero);
}

#[test]
fn index_spanning_several_pages() {
    let mut builder = ArchiveBuilder::new();
    for i in 0..200 {
        let name = format!("{i:0>64}");
        builder.add(&name, EntryKind::Program, vec![i as u8; i]).unwrap();
    }
    let bytes = builder.build();
    let archive = Archive::parse(&bytes).unwrap();
    assert_eq!(archive.entries().len(), 200);
    for (i, file) in archive.entries().enumerate() {
        assert_eq!(file.data, vec![i as u8; i]);
        assert_eq!((file.data.as_ptr() as usize - bytes.as_ptr() as usize) % ALIGNMENT, 0);
    }
}

#[test]
fn empty_archive_and_empty_entry() {
    let bytes = ArchiveBuilder::new().build();
    assert_eq!(Archive::parse(&bytes).unwrap().entries().len(), 0);

    let mut builder = ArchiveBuilder::new();
    builder.add("empty", EntryKind::Program, Vec::new()).unwrap();
    let bytes = builder.build();
    assert_eq!(Archive::parse(&bytes).unwrap().find("empty").unwrap().data, b"");
}

#[test]
fn find_and_find_kind() {
    let mut builder = ArchiveBuilder::new();
    builder.add("init", EntryKind::Program, b"init".as_slice()).unwrap();
    builder
        .add("console", EntryKind::Program, b"console".as_slice())
        .unwrap();
    builder
        .add("system", EntryKind::SystemDescription, b"system".as_slice())
        .unwrap();
    let bytes = builder.build();
    let archive = Archive::parse(&bytes).unwrap();

    let console = archive.find("console").unwrap();
    assert_eq!(
        (console.kind, console.data),
        (EntryKind::Program, b"console".as_slice())
    );
    assert_eq!(archive.find("Console"), None);
    assert_eq!(archive.find(""), None);
    assert_eq!(archive.find_kind(EntryKind::Program).unwrap().name, "init");
    assert_eq!(archive.find_kind(EntryKind::SystemDescription).unwrap().data, b"system");
    assert_eq!(archive.find_kind(EntryKind::KernelSymbols), None);
}

#[test]
fn truncated_header_is_too_short() {
    let bytes = sample();
    for len in 0..HEADER_LEN {
        assert_eq!(error(&bytes[..len]), ArchiveError::TooShort, "length {len}");
    }
}

#[test]
fn bad_magic() {
    let mut bytes = sample();
    bytes[0] = b'k';
    assert_eq!(error(&bytes), ArchiveError::BadMagic);
}

#[test]
fn wrong_version() {
    let mut bytes = sample();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(error(&bytes), ArchiveError::UnsupportedVersion { found: 2 });
}

#[test]
fn reserved_not_zero() {
    let mut bytes = sample();
    bytes[23] = 1;
    assert_eq!(error(&bytes), ArchiveError::ReservedNotZero);
}

#[test]
fn index_past_end() {
    let bytes = sample();
    let index_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(
        error(&bytes[..HEADER_LEN + index_len - 1]),
        ArchiveError::IndexOutOfBounds
    );
    let mut bytes = bytes;
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(error(&bytes), ArchiveError::IndexOutOfBounds);
}

#[test]
fn flipped_index_byte_is_index_checksum_mismatch() {
    let bytes = sample();
    let index_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    for at in HEADER_LEN..HEADER_LEN + index_len {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        assert_eq!(error(&corrupt), ArchiveError::IndexChecksumMismatch, "byte {at}");
    }
    let mut corrupt = bytes;
    corrupt[16] ^= 1;
    assert_eq!(error(&corrupt), ArchiveError::IndexChecksumMismatch);
}

#[test]
fn flipped_data_byte_names_the_entry() {
    let mut bytes = sample();
    let init_offset =
        Archive::parse(&bytes).unwrap().find("init").unwrap().data.as_ptr() as usize - bytes.as_ptr() as usize;
    bytes[init_offset + 100] ^= 1;
    let error = error(&bytes);
    assert_eq!(error, ArchiveError::EntryChecksumMismatch { name: named("init") });
    assert_eq!(
        error.to_string(),
        "boot archive corrupt: checksum of 'init' does not match"
    );
}

#[test]
fn malformed_index() {
    let bytes = sample();
    let index_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let index = &bytes[HEADER_LEN..][..index_len];

    let mut trailing = index.to_vec();
    trailing.push(0);
    assert_eq!(error(&set_index(&bytes, &trailing)), ArchiveError::IndexMalformed);
    assert_eq!(
        error(&set_index(&bytes, &index[..index_len - 1])),
        ArchiveError::IndexMalformed
    );
    // Entry count 1, name length 1, name "a", kind 3: no such kind.
    assert_eq!(
        error(&set_index(&bytes, &[1, 1, b'a', 3, 0, 0, 0])),
        ArchiveError::IndexMalformed
    );
    // A name that is not UTF-8.
    assert_eq!(
        error(&set_index(&bytes, &[1, 1, 0xff, 0, 0, 0, 0])),
        ArchiveError::IndexMalformed
    );
}

#[test]
fn entry_past_end() {
    let bytes = sample();
    let error = error(&bytes[..bytes.len() - 1]);
    assert_eq!(error, ArchiveError::EntryOutOfBounds { name: named("init") });

    let huge = with_index(&bytes, |index| index.entries[1].length = u64::MAX);
    assert_eq!(
        Archive::parse(&huge).unwrap_err(),
        ArchiveError::EntryOutOfBounds {
            name: named("kernel.symbols")
        }
    );
    let far = with_index(&bytes, |index| index.entries[0].offset = 1 << 40);
    assert_eq!(
        Archive::parse(&far).unwrap_err(),
        ArchiveError::EntryOutOfBounds {
            name: named("system.toml")
        }
    );
}

#[test]
fn entry_overlapping_header_is_out_of_bounds() {
    let bytes = with_index(&sample(), |index| index.entries[0].offset = 0);
    assert_eq!(
        error(&bytes),
        ArchiveError::EntryOutOfBounds {
            name: named("system.toml")
        }
    );
}

#[test]
fn entry_misaligned() {
    let bytes = with_index(&sample(), |index| index.entries[2].offset += 8);
    assert_eq!(error(&bytes), ArchiveError::EntryMisaligned { name: named("init") });
}

#[test]
fn bad_or_duplicate_names_rejected_on_read() {
    let bytes = with_index(&sample(), |index| index.entries[1].name = "init");
    assert_eq!(error(&bytes), ArchiveError::DuplicateName { name: named("init") });
    for bad in ["", "two words", "tab\t", "é", &"x".repeat(65)] {
        let bytes = with_index(&sample(), |index| index.entries[1].name = bad);
        assert_eq!(error(&bytes), ArchiveError::BadName { name: named(bad) });
    }
}

#[test]
fn add_refuses_duplicate_name() {
    let mut builder = ArchiveBuilder::new();
    builder.add("init", EntryKind::Program, Vec::new()).unwrap();
    let error = builder
        .add("init", EntryKind::SystemDescription, Vec::new())
        .unwrap_err();
    assert_eq!(error, ArchiveError::DuplicateName { name: named("init") });
    assert_eq!(Archive::parse(&builder.build()).unwrap().entries().len(), 1);
}

#[test]
fn add_refuses_bad_names() {
    let mut builder = ArchiveBuilder::new();
    for bad in ["", " ", "a b", "line\n", "nul\0", "ünicode", "del\x7f", &"x".repeat(65)] {
        let error = builder.add(bad, EntryKind::Program, Vec::new()).unwrap_err();
        assert_eq!(error, ArchiveError::BadName { name: named(bad) });
    }
    let longest = "x".repeat(64);
    for good in ["a", "init", "drivers/virtio-net.elf", "~!#$%", &longest] {
        builder.add(good, EntryKind::Program, Vec::new()).unwrap();
    }
}

#[test]
fn error_messages() {
    let message = |error: ArchiveError| error.to_string();
    assert_eq!(
        message(ArchiveError::UnsupportedVersion { found: 7 }),
        "boot archive has format version 7, this kernel reads version 1"
    );
    assert_eq!(
        message(ArchiveError::BadName { name: named("a b") }),
        "boot archive: bad entry name \"a b\" (must be 1 to 64 printable ASCII characters)"
    );
    assert_eq!(
        message(ArchiveError::DuplicateName { name: named("init") }),
        "boot archive: entry name 'init' appears twice"
    );
    assert_eq!(
        message(ArchiveError::EntryOutOfBounds { name: named("init") }),
        "boot archive corrupt: data of 'init' lies outside the archive's data area"
    );
}

/// A tiny xorshift generator, so the mutation tests are repeatable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Parses, and if that succeeds, reads every entry: must not panic.
fn parse_and_read(bytes: &[u8]) {
    if let Ok(archive) = Archive::parse(bytes) {
        for file in archive.entries() {
            assert_eq!(
                archive.find(file.name).map(|found| found.data.len()),
                Some(file.data.len())
            );
        }
    }
}

#[test]
fn no_panic_on_any_truncation() {
    let bytes = sample();
    for len in 0..bytes.len() {
        assert!(Archive::parse(&bytes[..len]).is_err(), "length {len}");
    }
}

#[test]
fn no_panic_on_random_mutations() {
    let bytes = sample();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..4000 {
        let mut corrupt = bytes.clone();
        // Most corruption goes where the structure is: header and index.
        let region = if round % 4 == 0 { corrupt.len() } else { 128 };
        for _ in 0..1 + random.below(4) {
            let at = random.below(region);
            corrupt[at] = random.next() as u8;
        }
        parse_and_read(&corrupt);
    }
}

#[test]
fn no_panic_on_index_mutations_with_valid_checksum() {
    let bytes = sample();
    let index_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let index = &bytes[HEADER_LEN..][..index_len];
    let mut random = XorShift(0x2545_F491_4F6C_DD1D);
    for _ in 0..4000 {
        let mut corrupt = index.to_vec();
        for _ in 0..1 + random.below(3) {
            let at = random.below(corrupt.len());
            corrupt[at] = match random.below(3) {
                0 => random.next() as u8,
                1 => corrupt[at] ^ (1 << random.below(8)),
                _ => 0xff,
            };
        }
        let cut = corrupt.len() - random.below(3);
        parse_and_read(&set_index(&bytes, &corrupt[..cut]));
    }
}
