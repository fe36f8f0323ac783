//! Parsing and validation of static x86-64 ELF executables.
//!
//! [`Elf::parse`] checks everything a loader relies on before anything is
//! mapped: the header, that every loadable segment lies inside the file and in
//! the user half, that segments are sorted and disjoint, that the entry point
//! is executable, and that every relocation is one we can apply to an address
//! inside a segment. The kernel uses it to load user programs and the image
//! builder uses it to refuse bad files, so both reject the same inputs.
//!
//! Nothing here panics or uses `unsafe`: every field is read from a checked
//! slice and all arithmetic on file values is checked.
//!
//! What is left to the loader: for a position-independent program it must add
//! its chosen load bias (a multiple of 4096) to every address and check again
//! that the result is in the user half; it must zero the part of each segment
//! past its file bytes; and two segments may share a page (they never share a
//! byte), whose permissions it must then combine. A relocation target may lie
//! in a read-only segment, so relocations go in before permissions are final.

#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

use core::convert::Infallible;
use core::fmt;

const PAGE_SIZE: u64 = 4096;
/// First address of the kernel half; no segment may reach it.
const USER_END: u64 = 0x0000_8000_0000_0000;
/// Bounds the work `parse` does; real programs have about a dozen.
const MAX_PROGRAM_HEADERS: usize = 64;

const HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;
const DYNAMIC_ENTRY_SIZE: usize = 16;
const RELA_ENTRY_SIZE: usize = 24;

const ELF_CLASS_64: u8 = 2;
const ELF_DATA_LITTLE_ENDIAN: u8 = 1;
const ELF_VERSION_CURRENT: u32 = 1;
const ET_REL: u16 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_REL: u64 = 17;
const DT_JMPREL: u64 = 23;
const DT_RELR: u64 = 36;

const R_X86_64_NONE: u32 = 0;
const R_X86_64_RELATIVE: u32 = 8;

/// A validated ELF64 little-endian x86-64 executable, borrowed from its bytes.
#[derive(Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    /// The program header table, in bounds and a whole number of entries.
    program_headers: &'a [u8],
    entry: u64,
    position_independent: bool,
    address_range: (u64, u64),
}

/// A loadable (`PT_LOAD`) segment, at its link-time address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Link-time virtual address of the first byte.
    pub vaddr: u64,
    /// Size in memory; the bytes past `data` are zero.
    pub mem_size: u64,
    /// The bytes from the file (`p_filesz` of them, never more than `mem_size`).
    pub data: &'a [u8],
    /// Access the program asks for.
    pub flags: SegmentFlags,
}

/// Access permissions of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SegmentFlags {
    /// `PF_R`.
    pub readable: bool,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

/// Why a file was refused. Segment indices count program headers from 0, as
/// `readelf -l` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than an ELF header.
    TooShort,
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// The file is not ELF64.
    NotElf64,
    /// The file is not little-endian.
    NotLittleEndian,
    /// The ELF version is not 1.
    UnsupportedVersion {
        /// The version found (from `e_ident` or `e_version`).
        version: u32,
    },
    /// The file is not for x86-64.
    WrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// The file is neither `ET_EXEC` nor `ET_DYN`.
    NotExecutable {
        /// The `e_type` found.
        elf_type: u16,
    },
    /// `e_phentsize` is not the size of an ELF64 program header.
    BadProgramHeaderSize {
        /// The `e_phentsize` found.
        size: u16,
    },
    /// More program headers than any sensible program has.
    TooManyProgramHeaders {
        /// The `e_phnum` found.
        count: usize,
    },
    /// The program header table does not fit in the file.
    ProgramHeadersOutOfBounds,
    /// The program asks for an interpreter (`PT_INTERP`): it is dynamically linked.
    NeedsInterpreter,
    /// A segment's file bytes do not fit in the file.
    SegmentOutOfBounds {
        /// Index of the program header.
        index: usize,
    },
    /// A segment has more file bytes than memory bytes.
    SegmentFileLargerThanMemory {
        /// Index of the program header.
        index: usize,
    },
    /// A segment's end address overflows.
    SegmentAddressOverflow {
        /// Index of the program header.
        index: usize,
    },
    /// A segment has a byte at or above `0x0000_8000_0000_0000`.
    SegmentInKernelHalf {
        /// Index of the program header.
        index: usize,
    },
    /// A segment starts below the one before it.
    SegmentsNotSorted {
        /// Index of the later program header.
        index: usize,
    },
    /// A segment overlaps the one before it.
    SegmentsOverlap {
        /// Index of the later program header.
        index: usize,
    },
    /// There is no `PT_LOAD` segment.
    NoLoadableSegments,
    /// The entry point is not inside an executable segment.
    EntryOutsideExecutableSegment {
        /// The `e_entry` found.
        entry: u64,
    },
    /// The `PT_DYNAMIC` segment does not fit in the file.
    DynamicOutOfBounds,
    /// The dynamic section has an entry we cannot honour.
    UnsupportedDynamicTag {
        /// The `d_tag` found.
        tag: u64,
    },
    /// `DT_RELA`, `DT_RELASZ` and `DT_RELAENT` are missing, inconsistent or
    /// have the wrong entry size.
    BadRelocationTable,
    /// `DT_RELA` does not point into the file bytes of a loadable segment.
    RelocationTableOutOfBounds,
    /// A relocation is of a type other than `R_X86_64_RELATIVE` or `R_X86_64_NONE`.
    UnsupportedRelocation {
        /// The relocation type found.
        kind: u32,
    },
    /// A relocation's 8-byte target is not inside a loadable segment.
    RelocationOutOfBounds {
        /// The `r_offset` found.
        offset: u64,
    },
}

/// Why [`Elf::relocations`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocationError<E> {
    /// The file is malformed (cannot happen for an `Elf` from [`Elf::parse`],
    /// which already walked the relocations).
    Elf(ElfError),
    /// The caller's `apply` failed.
    Apply(E),
}

impl<'a> Elf<'a> {
    /// Parses and validates an ELF64 little-endian x86-64 executable
    /// (`ET_EXEC`, or `ET_DYN` for a static position-independent one).
    ///
    /// # Errors
    ///
    /// Returns the first problem found; see [`ElfError`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let Some(ident) = bytes.first_chunk::<HEADER_SIZE>() else {
            return Err(ElfError::TooShort);
        };
        let [m0, m1, m2, m3, class, data, ident_version, ..] = *ident;
        if [m0, m1, m2, m3] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if class != ELF_CLASS_64 {
            return Err(ElfError::NotElf64);
        }
        if data != ELF_DATA_LITTLE_ENDIAN {
            return Err(ElfError::NotLittleEndian);
        }
        let header = FileHeader::parse(ident).ok_or(ElfError::TooShort)?;
        for version in [u32::from(ident_version), header.version] {
            if version != ELF_VERSION_CURRENT {
                return Err(ElfError::UnsupportedVersion { version });
            }
        }
        if header.machine != EM_X86_64 {
            return Err(ElfError::WrongMachine {
                machine: header.machine,
            });
        }
        if header.elf_type != ET_EXEC && header.elf_type != ET_DYN {
            return Err(ElfError::NotExecutable {
                elf_type: header.elf_type,
            });
        }

        let count = usize::from(header.program_header_count);
        if count > MAX_PROGRAM_HEADERS {
            return Err(ElfError::TooManyProgramHeaders { count });
        }
        if count > 0 && usize::from(header.program_header_size) != PROGRAM_HEADER_SIZE {
            return Err(ElfError::BadProgramHeaderSize {
                size: header.program_header_size,
            });
        }
        // At most 64 * 56 bytes: cannot overflow.
        let table_size = u64::from(header.program_header_count) * PROGRAM_HEADER_SIZE as u64;
        let program_headers =
            file_range(bytes, header.program_header_offset, table_size).ok_or(ElfError::ProgramHeadersOutOfBounds)?;

        let mut previous: Option<(u64, u64)> = None;
        let mut address_range = (u64::MAX, 0);
        for (index, program_header) in parse_program_headers(program_headers).enumerate() {
            match program_header.kind {
                PT_LOAD => {}
                PT_INTERP => return Err(ElfError::NeedsInterpreter),
                _ => continue,
            }
            let ProgramHeader {
                offset,
                vaddr,
                file_size,
                mem_size,
                ..
            } = program_header;
            if file_range(bytes, offset, file_size).is_none() {
                return Err(ElfError::SegmentOutOfBounds { index });
            }
            if file_size > mem_size {
                return Err(ElfError::SegmentFileLargerThanMemory { index });
            }
            let end = vaddr
                .checked_add(mem_size)
                .ok_or(ElfError::SegmentAddressOverflow { index })?;
            if vaddr >= USER_END || end > USER_END {
                return Err(ElfError::SegmentInKernelHalf { index });
            }
            if let Some((previous_start, previous_end)) = previous {
                if vaddr < previous_start {
                    return Err(ElfError::SegmentsNotSorted { index });
                }
                if vaddr < previous_end {
                    return Err(ElfError::SegmentsOverlap { index });
                }
            }
            previous = Some((vaddr, end));
            // `end <= USER_END`, so rounding up cannot overflow.
            let page_end = end.checked_next_multiple_of(PAGE_SIZE).unwrap_or(USER_END);
            address_range.0 = address_range.0.min(vaddr - vaddr % PAGE_SIZE);
            address_range.1 = address_range.1.max(page_end);
        }
        if previous.is_none() {
            return Err(ElfError::NoLoadableSegments);
        }

        let elf = Self {
            bytes,
            program_headers,
            entry: header.entry,
            position_independent: header.elf_type == ET_DYN,
            address_range,
        };
        if !elf
            .segments()
            .any(|segment| segment.flags.executable && segment.contains(elf.entry, 1))
        {
            return Err(ElfError::EntryOutsideExecutableSegment { entry: elf.entry });
        }
        // Walk the relocations now so that a bad one is refused before loading.
        elf.relocations(0, |_, _| Ok::<(), Infallible>(()))
            .map_err(|error| match error {
                RelocationError::Elf(error) => error,
                RelocationError::Apply(never) => match never {},
            })?;
        Ok(elf)
    }

    /// The entry point (`e_entry`), at its link-time address.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Whether the program is position-independent (`ET_DYN`) and so may be
    /// loaded at any page-aligned bias.
    pub fn is_position_independent(&self) -> bool {
        self.position_independent
    }

    /// The loadable (`PT_LOAD`) segments, in ascending address order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + use<'a> {
        let bytes = self.bytes;
        parse_program_headers(self.program_headers)
            .filter(|program_header| program_header.kind == PT_LOAD)
            .filter_map(move |program_header| {
                Some(Segment {
                    vaddr: program_header.vaddr,
                    mem_size: program_header.mem_size,
                    data: file_range(bytes, program_header.offset, program_header.file_size)?,
                    flags: SegmentFlags {
                        readable: program_header.flags & PF_R != 0,
                        writable: program_header.flags & PF_W != 0,
                        executable: program_header.flags & PF_X != 0,
                    },
                })
            })
    }

    /// The link-time addresses the segments cover, rounded out to whole 4096-byte
    /// pages: the lowest segment's page start and the highest segment's end
    /// rounded up (exclusive).
    pub fn address_range(&self) -> (u64, u64) {
        self.address_range
    }

    /// Calls `apply(target, value)` for each `R_X86_64_RELATIVE` relocation, in
    /// file order. `target` is the link-time address of the 8-byte word to write
    /// (the caller adds `load_bias` to find it in memory); `value` is what to
    /// write, `load_bias + addend`, already computed. `R_X86_64_NONE` entries are
    /// skipped. Pass a `load_bias` of 0 for an `ET_EXEC` program.
    ///
    /// # Errors
    ///
    /// [`RelocationError::Apply`] with the first error `apply` returns, which
    /// stops the walk. [`RelocationError::Elf`] for a malformed table, which
    /// [`Elf::parse`] has already ruled out.
    pub fn relocations<E>(
        &self,
        load_bias: u64,
        mut apply: impl FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<(), RelocationError<E>> {
        let table = self.relocation_table().map_err(RelocationError::Elf)?;
        for entry in table.as_chunks::<RELA_ENTRY_SIZE>().0 {
            let (Some(offset), Some(info), Some(addend)) =
                (read_u64(entry, 0), read_u64(entry, 8), read_u64(entry, 16))
            else {
                return Err(RelocationError::Elf(ElfError::BadRelocationTable));
            };
            // The type is the low half of `r_info`; the high half is the symbol.
            let kind = (info & 0xffff_ffff) as u32;
            match kind {
                R_X86_64_NONE => continue,
                R_X86_64_RELATIVE => {}
                _ => {
                    return Err(RelocationError::Elf(ElfError::UnsupportedRelocation { kind }));
                }
            }
            if !self.segments().any(|segment| segment.contains(offset, 8)) {
                return Err(RelocationError::Elf(ElfError::RelocationOutOfBounds { offset }));
            }
            // The addend is signed; two's complement wrapping gives bias + addend.
            apply(offset, load_bias.wrapping_add(addend)).map_err(RelocationError::Apply)?;
        }
        Ok(())
    }

    /// The `DT_RELA` table's bytes, or an empty slice if there is none.
    fn relocation_table(&self) -> Result<&'a [u8], ElfError> {
        let Some(dynamic) =
            parse_program_headers(self.program_headers).find(|program_header| program_header.kind == PT_DYNAMIC)
        else {
            return Ok(&[]);
        };
        let dynamic = file_range(self.bytes, dynamic.offset, dynamic.file_size).ok_or(ElfError::DynamicOutOfBounds)?;
        let (mut address, mut size, mut entry_size) = (None, None, None);
        for entry in dynamic.as_chunks::<DYNAMIC_ENTRY_SIZE>().0 {
            let (Some(tag), Some(value)) = (read_u64(entry, 0), read_u64(entry, 8)) else {
                break;
            };
            match tag {
                DT_NULL => break,
                DT_RELA => address = Some(value),
                DT_RELASZ => size = Some(value),
                DT_RELAENT => entry_size = Some(value),
                // Each needs work we do not do; ignoring it would load a broken program.
                DT_NEEDED | DT_REL | DT_JMPREL | DT_RELR => {
                    return Err(ElfError::UnsupportedDynamicTag { tag });
                }
                _ => {}
            }
        }
        match (address, size) {
            (None, None) => Ok(&[]),
            (Some(address), Some(size))
                if entry_size == Some(RELA_ENTRY_SIZE as u64) && size % RELA_ENTRY_SIZE as u64 == 0 =>
            {
                self.segments()
                    .find_map(|segment| segment.file_bytes_at(address, size))
                    .ok_or(ElfError::RelocationTableOutOfBounds)
            }
            _ => Err(ElfError::BadRelocationTable),
        }
    }
}

impl fmt::Debug for Elf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (low, high) = self.address_range;
        f.debug_struct("Elf")
            .field("length", &self.bytes.len())
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("position_independent", &self.position_independent)
            .field("address_range", &format_args!("{:#x}..{:#x}", low, high))
            .finish_non_exhaustive()
    }
}

impl<'a> Segment<'a> {
    /// Whether all of `[address, address + size)` lies inside the segment's
    /// memory image.
    pub fn contains(&self, address: u64, size: u64) -> bool {
        let (Some(end), Some(segment_end)) = (address.checked_add(size), self.vaddr.checked_add(self.mem_size)) else {
            return false;
        };
        address >= self.vaddr && end <= segment_end
    }

    /// The file bytes at `[address, address + size)`, if all are file-backed.
    fn file_bytes_at(&self, address: u64, size: u64) -> Option<&'a [u8]> {
        file_range(self.data, address.checked_sub(self.vaddr)?, size)
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort => write!(f, "file too short for an ELF header"),
            Self::BadMagic => write!(f, "not an ELF file (bad magic)"),
            Self::NotElf64 => write!(f, "not a 64-bit ELF file"),
            Self::NotLittleEndian => write!(f, "not a little-endian ELF file"),
            Self::UnsupportedVersion { version } => write!(f, "ELF version {version}, expected 1"),
            Self::WrongMachine { machine } => write!(
                f,
                "wrong architecture: e_machine {machine}{}, expected x86-64 (62)",
                if machine == EM_AARCH64 { " (aarch64)" } else { "" }
            ),
            Self::NotExecutable { elf_type } => write!(
                f,
                "not an executable: e_type {elf_type}{}, expected ET_EXEC or ET_DYN",
                if elf_type == ET_REL { " (object file)" } else { "" }
            ),
            Self::BadProgramHeaderSize { size } => {
                write!(f, "program header size {size}, expected {PROGRAM_HEADER_SIZE}")
            }
            Self::TooManyProgramHeaders { count } => {
                write!(f, "{count} program headers, at most {MAX_PROGRAM_HEADERS}")
            }
            Self::ProgramHeadersOutOfBounds => write!(f, "program headers extend past end of file"),
            Self::NeedsInterpreter => write!(f, "needs an interpreter (PT_INTERP): not static"),
            Self::SegmentOutOfBounds { index } => {
                write!(f, "segment {index} extends past the end of the file")
            }
            Self::SegmentFileLargerThanMemory { index } => {
                write!(f, "segment {index} has more file bytes than memory bytes")
            }
            Self::SegmentAddressOverflow { index } => {
                write!(f, "segment {index} end address overflows")
            }
            Self::SegmentInKernelHalf { index } => {
                write!(f, "segment {index} reaches the kernel half ({USER_END:#x} up)")
            }
            Self::SegmentsNotSorted { index } => {
                write!(f, "segment {index} starts below the previous one")
            }
            Self::SegmentsOverlap { index } => {
                write!(f, "segment {index} overlaps the previous one")
            }
            Self::NoLoadableSegments => write!(f, "no loadable (PT_LOAD) segments"),
            Self::EntryOutsideExecutableSegment { entry } => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
            Self::DynamicOutOfBounds => write!(f, "dynamic segment extends past end of file"),
            Self::UnsupportedDynamicTag { tag } => {
                write!(f, "unsupported dynamic entry {tag} ({})", dynamic_tag_problem(tag))
            }
            Self::BadRelocationTable => {
                write!(f, "DT_RELA, DT_RELASZ or DT_RELAENT missing or malformed")
            }
            Self::RelocationTableOutOfBounds => {
                write!(f, "DT_RELA is outside the file bytes of all segments")
            }
            Self::UnsupportedRelocation { kind } => write!(
                f,
                "unsupported relocation type {kind} ({}); only R_X86_64_RELATIVE is supported",
                relocation_name(kind)
            ),
            Self::RelocationOutOfBounds { offset } => {
                write!(f, "relocation target {offset:#x} is not inside a segment")
            }
        }
    }
}

fn dynamic_tag_problem(tag: u64) -> &'static str {
    match tag {
        DT_NEEDED => "DT_NEEDED: needs a shared library",
        DT_REL => "DT_REL: only DT_RELA is supported",
        DT_JMPREL => "DT_JMPREL: PLT relocations are not supported",
        DT_RELR => "DT_RELR: packed relocations are not supported",
        _ => "unknown",
    }
}

fn relocation_name(kind: u32) -> &'static str {
    match kind {
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        5 => "R_X86_64_COPY",
        6 => "R_X86_64_GLOB_DAT",
        7 => "R_X86_64_JUMP_SLOT",
        37 => "R_X86_64_IRELATIVE",
        _ => "unknown",
    }
}

impl core::error::Error for ElfError {}

impl<E: fmt::Display> fmt::Display for RelocationError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(error) => error.fmt(f),
            Self::Apply(error) => write!(f, "applying a relocation failed: {error}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for RelocationError<E> {}

/// The fields of the ELF header past `e_ident` that we use.
struct FileHeader {
    elf_type: u16,
    machine: u16,
    version: u32,
    entry: u64,
    program_header_offset: u64,
    program_header_size: u16,
    program_header_count: u16,
}

impl FileHeader {
    fn parse(header: &[u8]) -> Option<Self> {
        Some(Self {
            elf_type: read_u16(header, 16)?,
            machine: read_u16(header, 18)?,
            version: read_u32(header, 20)?,
            entry: read_u64(header, 24)?,
            program_header_offset: read_u64(header, 32)?,
            program_header_size: read_u16(header, 54)?,
            program_header_count: read_u16(header, 56)?,
        })
    }
}

/// The fields of a program header that we use.
#[derive(Clone, Copy)]
struct ProgramHeader {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
}

impl ProgramHeader {
    fn parse(entry: &[u8; PROGRAM_HEADER_SIZE]) -> Option<Self> {
        Some(Self {
            kind: read_u32(entry, 0)?,
            flags: read_u32(entry, 4)?,
            offset: read_u64(entry, 8)?,
            vaddr: read_u64(entry, 16)?,
            file_size: read_u64(entry, 32)?,
            mem_size: read_u64(entry, 40)?,
        })
    }
}

/// Every entry of a program header table (entries are whole, so none is skipped).
fn parse_program_headers(table: &[u8]) -> impl Iterator<Item = ProgramHeader> + use<'_> {
    table
        .as_chunks::<PROGRAM_HEADER_SIZE>()
        .0
        .iter()
        .filter_map(ProgramHeader::parse)
}

/// `bytes[offset..offset + size]`, if it is all there.
fn file_range(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*bytes.get(at..)?.first_chunk::<2>()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk::<4>()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk::<8>()?))
}
