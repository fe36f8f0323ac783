//! Tests on ELF images built by hand.

use super::*;
use std::format;
use std::vec;
use std::vec::Vec;

/// File offset of the payload; the header and up to 8 program headers fit before it.
const PAYLOAD: u64 = 0x200;
const PAYLOAD_SIZE: usize = 0x300;
const RELOCATIONS_AT: usize = 0x100;
const DYNAMIC_AT: usize = 0x200;

struct Header {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
}

/// A three-segment program: text at `base + 0x1000` (payload 0..0x100),
/// read-only data at `base + 0x2000` (payload 0x100..0x200, holding the
/// relocations), and data plus bss at `base + 0x3000` (payload 0x200..0x300,
/// holding the dynamic section; 0x1000 bytes in memory).
struct Builder {
    elf_type: u16,
    machine: u16,
    entry: u64,
    headers: Vec<Header>,
    relocations: Vec<(u64, u64, i64)>,
    dynamic: Vec<(u64, u64)>,
}

impl Builder {
    fn new(elf_type: u16, base: u64) -> Self {
        let segment = |flags, offset: usize, vaddr, mem_size| Header {
            kind: PT_LOAD,
            flags,
            offset: PAYLOAD + offset as u64,
            vaddr: base + vaddr,
            file_size: 0x100,
            mem_size,
        };
        Self {
            elf_type,
            machine: EM_X86_64,
            entry: base + 0x1010,
            headers: vec![
                segment(PF_R | PF_X, 0, 0x1000, 0x100),
                segment(PF_R, RELOCATIONS_AT, 0x2000, 0x100),
                segment(PF_R | PF_W, DYNAMIC_AT, 0x3000, 0x1000),
            ],
            relocations: Vec::new(),
            dynamic: Vec::new(),
        }
    }

    fn exec() -> Self {
        Self::new(ET_EXEC, 0x20_0000)
    }

    /// A position-independent program with two relative relocations and a no-op.
    fn pie() -> Self {
        let mut builder = Self::new(ET_DYN, 0);
        builder.relocations = vec![
            (0x3100, u64::from(R_X86_64_RELATIVE), 0x1000),
            (0, u64::from(R_X86_64_NONE), 0),
            (0x3ff8, u64::from(R_X86_64_RELATIVE), -8),
        ];
        builder.dynamic = vec![(DT_RELA, 0x2000), (DT_RELASZ, 3 * 24), (DT_RELAENT, 24), (DT_NULL, 0)];
        builder.headers.push(Header {
            kind: PT_DYNAMIC,
            flags: PF_R | PF_W,
            offset: PAYLOAD + DYNAMIC_AT as u64,
            vaddr: 0x3000,
            file_size: 0x100,
            mem_size: 0x100,
        });
        builder
    }

    fn build(&self) -> Vec<u8> {
        let mut out = vec![0; PAYLOAD as usize + PAYLOAD_SIZE];
        let mut put = |at: usize, value: &[u8]| out[at..at + value.len()].copy_from_slice(value);
        put(0, b"\x7fELF\x02\x01\x01");
        put(16, &self.elf_type.to_le_bytes());
        put(18, &self.machine.to_le_bytes());
        put(20, &1u32.to_le_bytes());
        put(24, &self.entry.to_le_bytes());
        put(32, &64u64.to_le_bytes());
        put(52, &64u16.to_le_bytes());
        put(54, &56u16.to_le_bytes());
        put(56, &(self.headers.len() as u16).to_le_bytes());
        for (index, header) in self.headers.iter().enumerate() {
            let at = 64 + 56 * index;
            put(at, &header.kind.to_le_bytes());
            put(at + 4, &header.flags.to_le_bytes());
            put(at + 8, &header.offset.to_le_bytes());
            put(at + 16, &header.vaddr.to_le_bytes());
            put(at + 24, &header.vaddr.to_le_bytes());
            put(at + 32, &header.file_size.to_le_bytes());
            put(at + 40, &header.mem_size.to_le_bytes());
            put(at + 48, &PAGE_SIZE.to_le_bytes());
        }
        for (index, &(offset, info, addend)) in self.relocations.iter().enumerate() {
            let at = PAYLOAD as usize + RELOCATIONS_AT + 24 * index;
            put(at, &offset.to_le_bytes());
            put(at + 8, &info.to_le_bytes());
            put(at + 16, &addend.to_le_bytes());
        }
        for (index, &(tag, value)) in self.dynamic.iter().enumerate() {
            let at = PAYLOAD as usize + DYNAMIC_AT + 16 * index;
            put(at, &tag.to_le_bytes());
            put(at + 8, &value.to_le_bytes());
        }
        out
    }

    fn parse_error(&self) -> ElfError {
        Elf::parse(&self.build()).expect_err("image should be refused")
    }
}

fn parse_error(bytes: &[u8]) -> ElfError {
    Elf::parse(bytes).expect_err("image should be refused")
}

fn collect_relocations(elf: &Elf<'_>, load_bias: u64) -> Vec<(u64, u64)> {
    let mut applied = Vec::new();
    elf.relocations(load_bias, |target, value| {
        applied.push((target, value));
        Ok::<(), ()>(())
    })
    .unwrap();
    applied
}

#[test]
fn valid_executable() {
    let bytes = Builder::exec().build();
    let elf = Elf::parse(&bytes).unwrap();
    assert_eq!(elf.entry(), 0x20_1010);
    assert!(!elf.is_position_independent());
    assert_eq!(elf.address_range(), (0x20_1000, 0x20_4000));
    let segments: Vec<_> = elf.segments().collect();
    assert_eq!(segments.len(), 3);
    let text = segments[0];
    assert_eq!((text.vaddr, text.mem_size, text.data.len()), (0x20_1000, 0x100, 0x100));
    assert_eq!(
        text.flags,
        SegmentFlags {
            readable: true,
            writable: false,
            executable: true
        }
    );
    assert_eq!(text.data.as_ptr(), bytes[PAYLOAD as usize..].as_ptr());
    assert_eq!((segments[2].mem_size, segments[2].data.len()), (0x1000, 0x100));
    assert!(segments[2].flags.writable);
    assert!(collect_relocations(&elf, 0x1000).is_empty());
}

#[test]
fn address_range_rounds_out_to_pages() {
    let mut builder = Builder::exec();
    builder.headers[0].vaddr += 0x10;
    builder.entry += 0x10;
    builder.headers[2].mem_size = 0x1001;
    let bytes = builder.build();
    assert_eq!(Elf::parse(&bytes).unwrap().address_range(), (0x20_1000, 0x20_5000));
}

#[test]
fn valid_position_independent_with_relocations() {
    let bytes = Builder::pie().build();
    let elf = Elf::parse(&bytes).unwrap();
    assert!(elf.is_position_independent());
    assert_eq!(elf.address_range(), (0x1000, 0x4000));
    let bias = 0x10_0000;
    assert_eq!(
        collect_relocations(&elf, bias),
        [(0x3100, 0x10_1000), (0x3ff8, 0xf_fff8)]
    );
    assert_eq!(collect_relocations(&elf, 0), [(0x3100, 0x1000), (0x3ff8, u64::MAX - 7)]);
}

#[test]
fn relocation_apply_error_stops_the_walk() {
    let bytes = Builder::pie().build();
    let elf = Elf::parse(&bytes).unwrap();
    let mut calls = 0;
    let result = elf.relocations(0, |_, _| {
        calls += 1;
        Err("full")
    });
    assert_eq!(result, Err(RelocationError::Apply("full")));
    assert_eq!(calls, 1);
    assert_eq!(format!("{}", result.unwrap_err()), "applying a relocation failed: full");
}

#[test]
fn header_errors() {
    let good = Builder::exec().build();
    assert_eq!(parse_error(&[]), ElfError::TooShort);
    assert_eq!(parse_error(&good[..63]), ElfError::TooShort);
    let with = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        parse_error(&bytes)
    };
    assert_eq!(with(1, b'X'), ElfError::BadMagic);
    assert_eq!(with(4, 1), ElfError::NotElf64);
    assert_eq!(with(5, 2), ElfError::NotLittleEndian);
    assert_eq!(with(6, 0), ElfError::UnsupportedVersion { version: 0 });
    assert_eq!(with(20, 2), ElfError::UnsupportedVersion { version: 2 });
    assert_eq!(with(54, 32), ElfError::BadProgramHeaderSize { size: 32 });
    assert_eq!(with(56, 65), ElfError::TooManyProgramHeaders { count: 65 });
    assert_eq!(parse_error(&good[..200]), ElfError::ProgramHeadersOutOfBounds);
    assert_eq!(with(39, 0x80), ElfError::ProgramHeadersOutOfBounds);

    let mut builder = Builder::exec();
    builder.machine = EM_AARCH64;
    assert_eq!(builder.parse_error(), ElfError::WrongMachine { machine: 183 });
    builder = Builder::exec();
    builder.elf_type = ET_REL;
    assert_eq!(builder.parse_error(), ElfError::NotExecutable { elf_type: 1 });
}

#[test]
fn segment_errors() {
    let refuse = |change: fn(&mut Builder)| {
        let mut builder = Builder::exec();
        change(&mut builder);
        builder.parse_error()
    };
    let error = refuse(|b| b.headers[2].file_size = 0x101);
    assert_eq!(error, ElfError::SegmentOutOfBounds { index: 2 });
    let error = refuse(|b| b.headers[1].offset = u64::MAX);
    assert_eq!(error, ElfError::SegmentOutOfBounds { index: 1 });
    let error = refuse(|b| b.headers[0].mem_size = 0x10);
    assert_eq!(error, ElfError::SegmentFileLargerThanMemory { index: 0 });
    let error = refuse(|b| b.headers[2].mem_size = u64::MAX);
    assert_eq!(error, ElfError::SegmentAddressOverflow { index: 2 });
    let error = refuse(|b| (b.headers[2].vaddr, b.headers[2].mem_size) = (0x7fff_ffff_f000, 0x1001));
    assert_eq!(error, ElfError::SegmentInKernelHalf { index: 2 });
    let error = refuse(|b| b.headers[2].vaddr = USER_END);
    assert_eq!(error, ElfError::SegmentInKernelHalf { index: 2 });
    let error = refuse(|b| b.headers[1].vaddr = 0x20_1080);
    assert_eq!(error, ElfError::SegmentsOverlap { index: 1 });
    let error = refuse(|b| b.headers.swap(1, 2));
    assert_eq!(error, ElfError::SegmentsNotSorted { index: 2 });
    let error = refuse(|b| b.headers.iter_mut().for_each(|h| h.kind = 4));
    assert_eq!(error, ElfError::NoLoadableSegments);
    let error = refuse(|b| b.headers[1].kind = PT_INTERP);
    assert_eq!(error, ElfError::NeedsInterpreter);
    let error = refuse(|b| b.entry = 0x20_2000);
    assert_eq!(error, ElfError::EntryOutsideExecutableSegment { entry: 0x20_2000 });
    let error = refuse(|b| b.entry = 0x20_1100);
    assert_eq!(error, ElfError::EntryOutsideExecutableSegment { entry: 0x20_1100 });

    // A segment may end exactly at the top of the user half.
    let mut builder = Builder::exec();
    (builder.headers[2].vaddr, builder.headers[2].mem_size) = (0x7fff_ffff_f000, 0x1000);
    assert_eq!(Elf::parse(&builder.build()).unwrap().address_range().1, USER_END);
}

#[test]
fn relocation_errors() {
    let refuse = |change: fn(&mut Builder)| {
        let mut builder = Builder::pie();
        change(&mut builder);
        builder.parse_error()
    };
    let error = refuse(|b| b.relocations[0].1 = 1);
    assert_eq!(error, ElfError::UnsupportedRelocation { kind: 1 });
    let error = refuse(|b| b.relocations[2].1 = (5 << 32) | 37);
    assert_eq!(error, ElfError::UnsupportedRelocation { kind: 37 });
    let error = refuse(|b| b.relocations[0].0 = 0x5000);
    assert_eq!(error, ElfError::RelocationOutOfBounds { offset: 0x5000 });
    let error = refuse(|b| b.relocations[0].0 = 0x3ffc);
    assert_eq!(error, ElfError::RelocationOutOfBounds { offset: 0x3ffc });
    let error = refuse(|b| b.relocations[0].0 = u64::MAX - 3);
    assert_eq!(error, ElfError::RelocationOutOfBounds { offset: u64::MAX - 3 });
    let error = refuse(|b| b.dynamic[0].1 = 0x9000);
    assert_eq!(error, ElfError::RelocationTableOutOfBounds);
    let error = refuse(|b| b.dynamic[0].1 = 0x20f0);
    assert_eq!(error, ElfError::RelocationTableOutOfBounds);
    let error = refuse(|b| b.dynamic[1].1 = 25);
    assert_eq!(error, ElfError::BadRelocationTable);
    let error = refuse(|b| b.dynamic[2].1 = 16);
    assert_eq!(error, ElfError::BadRelocationTable);
    let error = refuse(|b| b.dynamic[1] = (DT_NULL, 0));
    assert_eq!(error, ElfError::BadRelocationTable);
    let error = refuse(|b| b.dynamic[2] = (DT_RELR, 0x2000));
    assert_eq!(error, ElfError::UnsupportedDynamicTag { tag: DT_RELR });
    let error = refuse(|b| b.dynamic[2] = (DT_REL, 0x2000));
    assert_eq!(error, ElfError::UnsupportedDynamicTag { tag: DT_REL });
    let error = refuse(|b| b.headers[3].file_size = 0x200);
    assert_eq!(error, ElfError::DynamicOutOfBounds);

    // Entries after DT_NULL are not read.
    let mut builder = Builder::pie();
    builder.dynamic.push((DT_RELR, 0));
    assert!(Elf::parse(&builder.build()).is_ok());
}

#[test]
fn messages_name_the_problem() {
    let cases = [
        (ElfError::BadMagic, "not an ELF file (bad magic)"),
        (
            ElfError::WrongMachine { machine: 183 },
            "wrong architecture: e_machine 183 (aarch64), expected x86-64 (62)",
        ),
        (
            ElfError::UnsupportedRelocation { kind: 1 },
            "unsupported relocation type 1 (R_X86_64_64); only R_X86_64_RELATIVE is supported",
        ),
        (
            ElfError::SegmentInKernelHalf { index: 2 },
            "segment 2 reaches the kernel half (0x800000000000 up)",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(format!("{error}"), message);
    }
}

/// Parses, and if accepted, walks everything a loader would; returns whether accepted.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(elf) = Elf::parse(bytes) else {
        return false;
    };
    let (low, high) = elf.address_range();
    assert!(low < high && high <= USER_END);
    for segment in elf.segments() {
        assert!(segment.vaddr >= low && segment.vaddr + segment.mem_size <= high);
        assert!(segment.data.len() as u64 <= segment.mem_size);
    }
    elf.relocations(0x1234_5000, |target, _| {
        assert!(elf.segments().any(|segment| segment.contains(target, 8)));
        Ok::<(), ()>(())
    })
    .unwrap();
    true
}

#[test]
fn no_panic_on_truncation_or_mutation() {
    for good in [Builder::exec().build(), Builder::pie().build()] {
        for length in 0..=good.len() {
            assert_eq!(exercise(&good[..length]), length == good.len());
        }
        // xorshift64: deterministic, no dependencies.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..4000 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly hit the headers and tables, where mutations matter.
                let span = if next() % 2 == 0 { 0x200 } else { bytes.len() };
                let at = (next() % span as u64) as usize;
                bytes[at] = match next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    _ => next() as u8,
                };
            }
            accepted += usize::from(exercise(&bytes));
        }
        // Both outcomes must be common, or the mutations explore nothing.
        assert!((500..3500).contains(&accepted), "{accepted} of 4000 accepted");
    }
}
