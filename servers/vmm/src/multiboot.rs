//! The multiboot (version 1) loader's logic: finding and checking the
//! header, placing the kernel (ELF32 program headers, or the a.out kludge's
//! addresses when header flag 16 asks for them) and its modules, and
//! building the boot information. It decides what goes where; the machine
//! copies it into RAM and enters the kernel in 32-bit protected mode with
//! paging off, EAX = [`BOOTLOADER_MAGIC`] and EBX = the information's
//! address.
//!
//! Guest-physical layout: the boot information (a GDT, the information
//! structure, the memory map, the module list and the strings) from
//! [`BOOT_AREA`] up, below 640 KiB; the kernel at or above 1 MiB, where it
//! asks; the modules after it, each page-aligned (whether or not header
//! flag 0 asks). The memory map says: 0..640 KiB available, 640 KiB..1 MiB
//! reserved (the PC's legacy hole), 1 MiB to the end of RAM available, and
//! the device pages (test device, I/O APIC, local APIC) reserved
//! ([`boot::memory_map`]). Modules are read from their files straight into
//! guest RAM ([`Bytes::File`]).

use crate::boot::{self, Bytes, CONVENTIONAL_END, HIGH_MEMORY, PAGE, Writes, descriptor};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The header's magic number.
pub const MAGIC: u32 = 0x1bad_b002;
/// What the kernel finds in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie in this many bytes from the file's start.
const SEARCH_LENGTH: usize = 8192;
/// Where the boot information starts, and the end of conventional memory
/// it must stay below.
pub const BOOT_AREA: u32 = 0x1000;
/// The selectors of the flat code and data segments the kernel starts
/// with, in the GDT at [`BOOT_AREA`].
pub const CODE_SELECTOR: u16 = 0x08;
/// See [`CODE_SELECTOR`].
pub const DATA_SELECTOR: u16 = 0x10;
/// The most modules one boot takes.
pub const MAX_MODULES: usize = 16;

/// Header flags. Modules are always page-aligned and memory information
/// always given, so flags 0 and 1 need nothing more.
mod flag {
    /// Page-align modules.
    pub const ALIGN_MODULES: u32 = 1 << 0;
    /// Memory information is wanted.
    pub const MEMORY_INFORMATION: u32 = 1 << 1;
    /// A video mode is wanted (not offered).
    pub const VIDEO_MODE: u32 = 1 << 2;
    /// The address fields (the a.out kludge) are valid.
    pub const ADDRESSES: u32 = 1 << 16;
}

/// Boot-information flags.
mod info_flag {
    pub const MEMORY: u32 = 1 << 0;
    pub const COMMAND_LINE: u32 = 1 << 2;
    pub const MODULES: u32 = 1 << 3;
    pub const MEMORY_MAP: u32 = 1 << 6;
    pub const LOADER_NAME: u32 = 1 << 9;
}

/// The a.out kludge's address fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addresses {
    header: u32,
    load: u32,
    load_end: u32,
    bss_end: u32,
    entry: u32,
}

/// A multiboot header that checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its offset in the file.
    offset: usize,
    addresses: Option<Addresses>,
}

/// A module for the kernel: the boot file it is read from, its length
/// and its command line.
pub struct Module<'a> {
    /// Which boot file holds it (see [`Bytes::File`]).
    pub file: usize,
    /// Its length in bytes.
    pub length: u64,
    /// Its string in the module list.
    pub command_line: &'a str,
}

/// What the machine must do to boot a multiboot kernel.
#[derive(Debug)]
pub struct Load<'a> {
    /// What to write where (guest-physical addresses).
    pub writes: Writes<'a>,
    /// The kernel's entry point.
    pub entry: u32,
    /// The boot information's address (for EBX).
    pub information: u32,
    /// The GDT holding the flat segments, and its limit.
    pub gdt: (u32, u16),
}

fn word(bytes: &[u8], offset: usize) -> Option<u32> {
    let slice = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
}

fn half(bytes: &[u8], offset: usize) -> Option<u16> {
    let slice = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([slice[0], slice[1]]))
}

/// Finds the multiboot header in `image`: `Ok(None)` if there is no magic
/// number in the first 8 KiB, an error if there is one but no good header
/// (the reason says what is wrong).
///
/// # Errors
/// A bad checksum, a truncated header, or requirements (flags 0..=15) the
/// VMM cannot meet.
pub fn find_header(image: &[u8]) -> Result<Option<Header>, String> {
    let mut first_error = None;
    let end = image.len().min(SEARCH_LENGTH);
    for offset in (0..end.saturating_sub(3)).step_by(4) {
        if word(image, offset) != Some(MAGIC) {
            continue;
        }
        match parse_header(image, offset) {
            Ok(header) => return Ok(Some(header)),
            Err(why) => {
                first_error.get_or_insert(why);
            }
        }
    }
    first_error.map_or(Ok(None), Err)
}

fn parse_header(image: &[u8], offset: usize) -> Result<Header, String> {
    let truncated = || format!("the multiboot header at offset {offset:#x} is cut off by the end of the file");
    let flags = word(image, offset + 4).ok_or_else(truncated)?;
    let checksum = word(image, offset + 8).ok_or_else(truncated)?;
    if MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
        return Err(format!(
            "the multiboot header at offset {offset:#x} has a bad checksum ({checksum:#010x})"
        ));
    }
    if flags & flag::VIDEO_MODE != 0 {
        return Err(String::from("the kernel asks for a video mode (multiboot flag 2), which the VMM does not offer"));
    }
    let unknown = flags & 0xffff & !(flag::ALIGN_MODULES | flag::MEMORY_INFORMATION);
    if unknown != 0 {
        return Err(format!("the kernel requires multiboot features the VMM does not know (flags {unknown:#x})"));
    }
    let addresses = if flags & flag::ADDRESSES != 0 {
        let field = |index: usize| word(image, offset + 12 + index * 4).ok_or_else(truncated);
        Some(Addresses {
            header: field(0)?,
            load: field(1)?,
            load_end: field(2)?,
            bss_end: field(3)?,
            entry: field(4)?,
        })
    } else {
        None
    };
    Ok(Header { offset, addresses })
}

/// One piece of the kernel in memory: `bytes` at `address`, then `zeros`
/// more zero bytes.
struct Piece<'a> {
    address: u32,
    bytes: &'a [u8],
    zeros: u32,
}

impl Piece<'_> {
    /// The end address, or `None` past 4 GiB.
    fn end(&self) -> Option<u32> {
        self.address
            .checked_add(u32::try_from(self.bytes.len()).ok()?)?
            .checked_add(self.zeros)
    }
}

/// The kernel's pieces and its entry point from the a.out kludge's
/// addresses.
fn pieces_from_addresses<'a>(
    image: &'a [u8],
    header: &Header,
    addresses: Addresses,
) -> Result<(Vec<Piece<'a>>, u32), String> {
    let bad = |why: &str| format!("bad multiboot load addresses: {why}");
    let before_header = addresses
        .header
        .checked_sub(addresses.load)
        .ok_or_else(|| bad("the load address is above the header's"))?;
    let start = header
        .offset
        .checked_sub(before_header as usize)
        .ok_or_else(|| bad("the load address is before the file's start"))?;
    let length = if addresses.load_end == 0 {
        image.len() - start
    } else {
        addresses
            .load_end
            .checked_sub(addresses.load)
            .ok_or_else(|| bad("the load end is below the load address"))? as usize
    };
    let bytes = image
        .get(start..start.checked_add(length).ok_or_else(|| bad("too long"))?)
        .ok_or_else(|| bad("the load end is past the end of the file"))?;
    let load_end = addresses.load.checked_add(length as u32).ok_or_else(|| bad("past 4 GiB"))?;
    let zeros = if addresses.bss_end == 0 {
        0
    } else {
        addresses
            .bss_end
            .checked_sub(load_end)
            .ok_or_else(|| bad("the BSS ends before the loaded part"))?
    };
    let piece = Piece {
        address: addresses.load,
        bytes,
        zeros,
    };
    let end = piece.end().ok_or_else(|| bad("past 4 GiB"))?;
    if !(addresses.load..end).contains(&addresses.entry) {
        return Err(bad("the entry point is outside the loaded image"));
    }
    Ok((alloc::vec![piece], addresses.entry))
}

/// The kernel's pieces and its entry point from its ELF32 program headers
/// (loaded at their physical addresses).
fn pieces_from_elf32(image: &[u8]) -> Result<(Vec<Piece<'_>>, u32), String> {
    let bad = |why: &str| format!("bad ELF32 kernel: {why}");
    if image.get(0..4) != Some(b"\x7fELF") {
        return Err(String::from(
            "the multiboot kernel is not ELF and its header gives no load addresses (flag 16)",
        ));
    }
    if image.get(4) != Some(&1) {
        return Err(String::from(
            "the multiboot kernel is not a 32-bit ELF file and its header gives no load addresses (flag 16)",
        ));
    }
    let field16 = |offset| half(image, offset).ok_or_else(|| bad("truncated header"));
    let field32 = |offset| word(image, offset).ok_or_else(|| bad("truncated header"));
    if image.get(5) != Some(&1) || field16(18)? != 3 {
        return Err(bad("not little-endian x86"));
    }
    if field16(16)? != 2 {
        return Err(bad("not an executable"));
    }
    let entry = field32(24)?;
    let table = field32(28)? as usize;
    let entry_size = usize::from(field16(42)?);
    let count = usize::from(field16(44)?);
    if entry_size < 32 {
        return Err(bad("program headers too small"));
    }
    let mut pieces = Vec::new();
    let mut physical_entry = None;
    for index in 0..count {
        let at = table
            .checked_add(index * entry_size)
            .ok_or_else(|| bad("program headers out of range"))?;
        let field = |offset: usize| word(image, at + offset).ok_or_else(|| bad("program headers past the file's end"));
        const LOAD: u32 = 1;
        if field(0)? != LOAD {
            continue;
        }
        let (offset, virtual_address, physical, file_size, memory_size) =
            (field(4)?, field(8)?, field(12)?, field(16)?, field(20)?);
        let zeros = memory_size
            .checked_sub(file_size)
            .ok_or_else(|| bad("a segment's file size exceeds its memory size"))?;
        let bytes = image
            .get(offset as usize..(offset as usize).saturating_add(file_size as usize))
            .ok_or_else(|| bad("a segment lies past the file's end"))?;
        if entry.wrapping_sub(virtual_address) < memory_size {
            physical_entry = physical.checked_add(entry - virtual_address);
        }
        pieces.push(Piece {
            address: physical,
            bytes,
            zeros,
        });
    }
    if pieces.is_empty() {
        return Err(bad("no loadable segment"));
    }
    let entry = physical_entry.ok_or_else(|| bad("the entry point is outside every segment"))?;
    Ok((pieces, entry))
}

/// Checks that [`start`, `end`) lies in high memory and RAM.
fn check_placement(what: &str, start: u32, end: u32, ram_bytes: u64) -> Result<(), String> {
    boot::check_placement(u64::from(start), u64::from(end), ram_bytes).map_err(|misplaced| format!("{what} {misplaced}"))
}

/// The boot information as it is built: bytes that go at [`BOOT_AREA`].
struct Area(Vec<u8>);

impl Area {
    /// The address the next byte goes to.
    fn here(&self) -> u32 {
        BOOT_AREA + self.0.len() as u32
    }

    /// Appends `bytes` at an `align`-aligned address; returns it.
    fn push(&mut self, bytes: &[u8], align: usize) -> u32 {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        let at = self.here();
        self.0.extend_from_slice(bytes);
        at
    }

    /// Appends a NUL-terminated string; returns its address.
    fn push_string(&mut self, text: &str) -> u32 {
        let at = self.push(text.as_bytes(), 1);
        self.0.push(0);
        at
    }

    fn put(&mut self, at: u32, value: u32) {
        let offset = (at - BOOT_AREA) as usize;
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

/// Plans the boot of the multiboot kernel `image` (whose header is
/// `header`) with `command_line` and `modules` on a machine with
/// `ram_bytes` of RAM from address 0.
///
/// # Errors
/// Why the image cannot boot here: malformed, overlapping the low
/// megabyte, or not fitting in RAM.
pub fn plan<'a>(
    image: &'a [u8],
    header: &Header,
    command_line: &str,
    modules: &[Module<'_>],
    ram_bytes: u64,
) -> Result<Load<'a>, String> {
    let (pieces, entry) = match header.addresses {
        Some(addresses) => pieces_from_addresses(image, header, addresses)?,
        None => pieces_from_elf32(image)?,
    };
    let mut kernel_end = HIGH_MEMORY as u32;
    let mut writes = Vec::new();
    for piece in pieces {
        let end = piece.end().ok_or_else(|| String::from("a kernel segment extends past 4 GiB"))?;
        check_placement("the kernel", piece.address, end, ram_bytes)?;
        kernel_end = kernel_end.max(end);
        writes.push((u64::from(piece.address), Bytes::Copy(piece.bytes)));
        if piece.zeros > 0 {
            writes.push((u64::from(end - piece.zeros), Bytes::Zero(u64::from(piece.zeros))));
        }
    }
    if modules.len() > MAX_MODULES {
        return Err(format!("more than {MAX_MODULES} modules"));
    }
    let mut placed = Vec::new();
    let mut next = kernel_end;
    for module in modules {
        // Always page-aligned: that satisfies flag 0 and costs little.
        let start = next
            .checked_next_multiple_of(PAGE as u32)
            .ok_or_else(|| String::from("the modules do not fit below 4 GiB"))?;
        let end = u32::try_from(module.length)
            .ok()
            .and_then(|length| start.checked_add(length))
            .ok_or_else(|| String::from("the modules do not fit below 4 GiB"))?;
        check_placement(&format!("module '{}'", module.command_line), start, end, ram_bytes)?;
        writes.push((
            u64::from(start),
            Bytes::File {
                file: module.file,
                offset: 0,
                length: module.length,
            },
        ));
        placed.push((start, end));
        next = end;
    }
    let mut area = Area(Vec::new());
    let gdt = area.push(&boot::gdt(&[0, descriptor::CODE_32, descriptor::DATA]), 8);
    // The structure up to the framebuffer fields (116 bytes), zeroed.
    let information = area.push(&[0; 116], 8);
    let command_line_at = area.push_string(command_line);
    let loader_name = area.push_string("L4Hv VMM");
    let module_strings: Vec<u32> = modules.iter().map(|module| area.push_string(module.command_line)).collect();
    let mut module_list = Vec::new();
    for ((start, end), string) in placed.iter().zip(&module_strings) {
        for value in [*start, *end, *string, 0] {
            module_list.extend_from_slice(&value.to_le_bytes());
        }
    }
    let modules_at = area.push(&module_list, 4);
    let mut map = Vec::new();
    for range in boot::memory_map(ram_bytes) {
        map.extend_from_slice(&20u32.to_le_bytes());
        map.extend_from_slice(&range.base.to_le_bytes());
        map.extend_from_slice(&range.length.to_le_bytes());
        map.extend_from_slice(&(range.kind as u32).to_le_bytes());
    }
    let map_at = area.push(&map, 4);
    if u64::from(area.here()) > CONVENTIONAL_END {
        return Err(String::from("the command lines do not fit in the boot information area"));
    }
    let upper_kib = (ram_bytes.saturating_sub(HIGH_MEMORY) / 1024) as u32;
    for (offset, value) in [
        (
            0,
            info_flag::MEMORY
                | info_flag::COMMAND_LINE
                | info_flag::MODULES
                | info_flag::MEMORY_MAP
                | info_flag::LOADER_NAME,
        ),
        (4, (CONVENTIONAL_END / 1024) as u32),
        (8, upper_kib),
        (16, command_line_at),
        (20, modules.len() as u32),
        (24, modules_at),
        (44, map.len() as u32),
        (48, map_at),
        (64, loader_name),
    ] {
        area.put(information + offset, value);
    }
    writes.push((u64::from(BOOT_AREA), Bytes::Made(area.0)));
    Ok(Load {
        writes,
        entry,
        information,
        gdt: (gdt, 23),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 8 << 20;

    /// A kernel image with a kludge header at offset 64: code at 1 MiB.
    fn kludge_image(flags: u32, bss_end: u32) -> Vec<u8> {
        let mut image = alloc::vec![0x90u8; 64];
        let flags = flags | flag::ADDRESSES;
        for value in [
            MAGIC,
            flags,
            0u32.wrapping_sub(MAGIC).wrapping_sub(flags),
            0x10_0040,
            0x10_0000,
            0,
            bss_end,
            0x10_0060,
        ] {
            image.extend_from_slice(&value.to_le_bytes());
        }
        image.resize(0x100, 0xf4);
        image
    }

    /// A minimal ELF32 executable with one segment of `code` linked at
    /// virtual `virtual_address`, physical `physical`, and a header.
    fn elf32_image(virtual_address: u32, physical: u32) -> Vec<u8> {
        let mut image = alloc::vec![0u8; 0x1000];
        image[0..4].copy_from_slice(b"\x7fELF");
        image[4] = 1;
        image[5] = 1;
        image[16..18].copy_from_slice(&2u16.to_le_bytes());
        image[18..20].copy_from_slice(&3u16.to_le_bytes());
        image[24..28].copy_from_slice(&(virtual_address + 0x10).to_le_bytes());
        image[28..32].copy_from_slice(&52u32.to_le_bytes());
        image[42..44].copy_from_slice(&32u16.to_le_bytes());
        image[44..46].copy_from_slice(&1u16.to_le_bytes());
        for (index, value) in [1u32, 0x800, virtual_address, physical, 0x800, 0x2000].iter().enumerate() {
            image[52 + index * 4..56 + index * 4].copy_from_slice(&value.to_le_bytes());
        }
        let header = [MAGIC, 3, 0u32.wrapping_sub(MAGIC + 3)];
        for (index, value) in header.iter().enumerate() {
            image[0x800 + index * 4..0x804 + index * 4].copy_from_slice(&value.to_le_bytes());
        }
        image
    }

    fn information_word(load: &Load<'_>, offset: u32) -> u32 {
        let Some((_, Bytes::Made(area))) = load.writes.iter().find(|(at, _)| *at == u64::from(BOOT_AREA)) else {
            panic!("no boot information");
        };
        let at = (load.information - BOOT_AREA + offset) as usize;
        u32::from_le_bytes(area[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn finds_nothing_in_a_plain_file_and_refuses_a_bad_checksum() {
        assert_eq!(find_header(&[0u8; 9000]), Ok(None));
        let mut image = kludge_image(0, 0);
        image[72] ^= 1;
        let error = find_header(&image).unwrap_err();
        assert!(error.contains("bad checksum"), "{error}");
        // A magic number past the first 8 KiB does not count.
        let mut late = alloc::vec![0u8; 8192];
        late.extend_from_slice(&kludge_image(0, 0)[64..]);
        assert_eq!(find_header(&late), Ok(None));
    }

    #[test]
    fn refuses_a_video_mode_and_unknown_requirements() {
        for flags in [flag::VIDEO_MODE, 1 << 5] {
            assert!(find_header(&kludge_image(flags, 0)).is_err());
        }
        assert!(find_header(&kludge_image(1 << 20, 0)).is_ok(), "optional flags are ignored");
    }

    #[test]
    fn loads_by_the_kludge_addresses_with_bss() {
        let image = kludge_image(3, 0x10_2000);
        let header = find_header(&image).unwrap().unwrap();
        let load = plan(&image, &header, "kernel a=b", &[], RAM).unwrap();
        assert_eq!(load.entry, 0x10_0060);
        assert_eq!(load.writes[0], (0x10_0000, Bytes::Copy(&image[..])));
        assert_eq!(load.writes[1], (0x10_0100, Bytes::Zero(0x1f00)));
    }

    #[test]
    fn loads_elf32_segments_at_their_physical_addresses() {
        let image = elf32_image(0xc010_0000, 0x20_0000);
        let header = find_header(&image).unwrap().unwrap();
        let modules = [Module {
            file: 1,
            length: 10,
            command_line: "/m one",
        }];
        let load = plan(&image, &header, "kernel", &modules, RAM).unwrap();
        assert_eq!(load.entry, 0x20_0010);
        assert_eq!(load.writes[0], (0x20_0000, Bytes::Copy(&image[0x800..0x1000])));
        assert_eq!(load.writes[1], (0x20_0800, Bytes::Zero(0x1800)));
        assert_eq!(
            load.writes[2],
            (
                0x20_2000,
                Bytes::File {
                    file: 1,
                    offset: 0,
                    length: 10
                }
            )
        );
        assert_eq!(information_word(&load, 0), 0x24d);
        assert_eq!(information_word(&load, 4), 640);
        assert_eq!(information_word(&load, 8), 7 * 1024);
        assert_eq!(information_word(&load, 20), 1);
        assert_eq!(information_word(&load, 44), 6 * 24);
    }

    #[test]
    fn refuses_what_does_not_fit_or_overlaps_low_memory() {
        let image = elf32_image(0x8000, 0x8000);
        let header = find_header(&image).unwrap().unwrap();
        let error = plan(&image, &header, "", &[], RAM).unwrap_err();
        assert!(error.contains("below 1 MiB"), "{error}");
        let image = elf32_image(0x7f_f000, 0x7f_f000);
        let header = find_header(&image).unwrap().unwrap();
        let error = plan(&image, &header, "", &[], RAM).unwrap_err();
        assert!(error.contains("past the guest's 8 MiB"), "{error}");
        let image = elf32_image(0x20_0000, 0x20_0000);
        let header = find_header(&image).unwrap().unwrap();
        let modules = [Module {
            file: 1,
            length: 7 << 20,
            command_line: "big",
        }];
        let error = plan(&image, &header, "", &modules, RAM).unwrap_err();
        assert!(error.contains("module 'big'"), "{error}");
    }

    #[test]
    fn mutated_images_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for original in [elf32_image(0x20_0000, 0x20_0000), kludge_image(3, 0x10_2000)] {
            for _ in 0..2_000 {
                let mut image = original.clone();
                for _ in 0..1 + next() % 4 {
                    // Mostly the headers, where the numbers are.
                    let at = (next() % 128) as usize + if next() % 2 == 0 { 0 } else { 0x800 };
                    if at < image.len() {
                        image[at] = next() as u8;
                    }
                }
                // Keep the checksum right so the planner sees the damage.
                if let Some(offset) = (0..image.len() - 12).step_by(4).find(|&at| word(&image, at) == Some(MAGIC)) {
                    let flags = word(&image, offset + 4).unwrap_or(0);
                    let checksum = 0u32.wrapping_sub(MAGIC).wrapping_sub(flags);
                    image[offset + 8..offset + 12].copy_from_slice(&checksum.to_le_bytes());
                }
                if let Ok(Some(header)) = find_header(&image) {
                    let _ = plan(&image, &header, "kernel", &[], RAM);
                }
            }
        }
    }

    #[test]
    fn malformed_images_are_errors() {
        let mut image = elf32_image(0x20_0000, 0x20_0000);
        image[44..46].copy_from_slice(&0xffffu16.to_le_bytes());
        let header = find_header(&image).unwrap().unwrap();
        assert!(plan(&image, &header, "", &[], RAM).is_err());
        let mut image = elf32_image(0x20_0000, 0x20_0000);
        image[4] = 2;
        let header = find_header(&image).unwrap().unwrap();
        assert!(plan(&image, &header, "", &[], RAM).unwrap_err().contains("flag 16"));
        for cut in [60, 70, 90] {
            let image = &kludge_image(0, 0)[..cut];
            if let Ok(Some(header)) = find_header(image) {
                let _ = plan(image, &header, "", &[], RAM);
            }
        }
    }
}
