//! Booting an unmodified Linux kernel (a bzImage) by the x86 boot
//! protocol's 64-bit entry (Documentation/x86/boot.rst): checking the
//! setup header, placing the kernel and its initrd, and building the zero
//! page (`struct boot_params`) with the command line and an e820 memory
//! map. The machine copies the plan into RAM, reading the kernel and the
//! initrd from their files in chunks, and enters at the load address plus
//! 0x200 in long mode with RSI pointing at the zero page.
//!
//! Guest-physical layout:
//!
//! | where | what |
//! | --- | --- |
//! | [`TABLES`]..0x7000 | identity page tables for the first 4 GiB |
//! | [`GDT`] | null, null, 64-bit code (0x10), data (0x18), the boot protocol's selectors |
//! | [`ZERO_PAGE`] | the zero page |
//! | [`COMMAND_LINE`] | the command line, NUL-terminated |
//! | [`FLOATING_POINTER`](crate::mptable::FLOATING_POINTER) | the MP table |
//! | [`load_address`] | the kernel's protected-mode part: `pref_address` for a relocatable kernel, 1 MiB for another; it decompresses itself within `init_size` bytes |
//! | [`initrd_address`] | the initrd, as high as RAM and `initrd_addr_max` allow, page-aligned |

use crate::boot::{self, Bytes, HIGH_MEMORY, Misplaced, PAGE, Writes, descriptor};
use crate::mptable;
use alloc::string::String;
use alloc::vec::Vec;

pub use crate::boot::{GDT, TABLES};

/// Where the zero page goes.
pub const ZERO_PAGE: u64 = 0x8000;
/// Where the command line goes (at most [`MAX_COMMAND_LINE`] bytes and a
/// NUL, below 640 KiB).
pub const COMMAND_LINE: u64 = 0x9000;
/// The longest command line the VMM passes, whatever the kernel takes.
pub const MAX_COMMAND_LINE: usize = 4095;
/// The code selector the boot protocol wants (`__BOOT_CS`).
pub const CODE_SELECTOR: u16 = 0x10;
/// The data selector the boot protocol wants (`__BOOT_DS`).
pub const DATA_SELECTOR: u16 = 0x18;
/// The GDT's limit.
pub const GDT_LIMIT: u16 = 31;
/// The command line a Linux guest gets when `vm start` gives none: the
/// console on COM1, early messages there too, the MP table rather than
/// ACPI (there is none), reset by triple fault (the VMM ends the guest
/// then), and no waiting after a panic.
pub const DEFAULT_COMMAND_LINE: &str = "console=ttyS0 earlyprintk=serial acpi=off reboot=t panic=-1";
/// The command line a Linux guest gets: `arguments`, or
/// [`DEFAULT_COMMAND_LINE`] if there are none, and `tsc_early_khz=` with
/// the time-stamp counter's rate the VMM measured (`tsc_khz`) unless they
/// set it. The firmware of other hypervisors tells Linux that rate (in
/// CPUID or a paravirtual clock); without it Linux calibrates the TSC
/// against PIT channel 2, which needs thousands of port reads within
/// 10 ms, more than exits to a user-space VMM under emulation allow: it
/// then marks the TSC unstable and keeps time by the timer tick alone.
pub fn command_line(arguments: &str, tsc_khz: u64) -> String {
    let mut line = String::from(if arguments.is_empty() {
        DEFAULT_COMMAND_LINE
    } else {
        arguments
    });
    let given = line.split_whitespace().any(|word| word.starts_with("tsc_early_khz="));
    if !given && tsc_khz > 0 {
        line.push_str(&alloc::format!(" tsc_early_khz={tsc_khz}"));
    }
    line
}

/// How many bytes of the file's start [`check`] needs (the boot sector
/// and the setup header with room to spare).
pub const HEADER_BYTES: usize = 0x1000;
/// The oldest boot protocol taken: 2.12, the first with `xloadflags`.
pub const MIN_VERSION: u16 = 0x020c;

/// Offsets in the boot sector and setup header (which the zero page
/// repeats at the same offsets) and in the rest of the zero page.
mod offset {
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const ALT_MEM_K: usize = 0x1e0;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const SETUP_HEADER: usize = 0x1f1;
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const SYSSIZE: usize = 0x1f4;
    pub const BOOT_FLAG: usize = 0x1fe;
    /// The jump's displacement: the header ends 0x202 plus it.
    pub const JUMP_DISPLACEMENT: usize = 0x201;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const SETUP_DATA: usize = 0x250;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// Where the setup header's room in the zero page ends.
    pub const SETUP_HEADER_END: usize = 0x290;
    pub const E820_TABLE: usize = 0x2d0;
}

/// The boot sector's signature.
const BOOT_FLAG: u16 = 0xaa55;
/// The setup header's signature.
const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// `loadflags`: the protected-mode part is loaded at 1 MiB or above.
const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags`: the kernel has the 64-bit entry at +0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// The entry point's offset in the protected-mode part.
const ENTRY_64: u64 = 0x200;
/// `type_of_loader`: a loader without an assigned ID.
const UNDEFINED_LOADER: u8 = 0xff;
/// The e820 table's room in the zero page.
const E820_MAX_ENTRIES: usize = 128;

/// Why a Linux kernel or its boot was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// The file is too short to hold a boot sector and setup header.
    TooShort {
        /// Its length.
        length: u64,
    },
    /// No boot sector signature (0xAA55 at 0x1FE).
    NoBootSector,
    /// No "HdrS" at 0x202.
    NoSetupHeader,
    /// The boot protocol is older than 2.12.
    OldProtocol {
        /// The version the header gives.
        version: u16,
    },
    /// `loadflags` lacks LOADED_HIGH: a zImage, loaded below 1 MiB.
    NotLoadedHigh,
    /// `xloadflags` lacks XLF_KERNEL_64: no 64-bit entry point.
    No64BitEntry,
    /// The setup sectors run past the end of the file.
    SetupPastEnd {
        /// Where they end.
        setup_end: u64,
        /// The file's length.
        length: u64,
    },
    /// `syssize` says the protected-mode part is longer than the file
    /// holds.
    Truncated {
        /// What `syssize` says, in bytes.
        expected: u64,
        /// What the file holds after the setup sectors.
        present: u64,
    },
    /// A relocatable kernel's alignment is not a power of two of at least
    /// 4 KiB.
    BadAlignment {
        /// `kernel_alignment`.
        alignment: u32,
    },
    /// `init_size` is smaller than the protected-mode part.
    BadInitSize {
        /// `init_size`.
        init_size: u32,
    },
    /// The kernel, with the memory it decompresses into, does not fit.
    KernelMisplaced(Misplaced),
    /// The command line is longer than the kernel takes.
    CommandLineTooLong {
        /// Its length.
        length: usize,
        /// The most the kernel (or the VMM) takes.
        limit: usize,
    },
    /// More than one module, or a module with arguments: a Linux kernel
    /// takes one initrd.
    Modules,
    /// The initrd does not fit between the kernel and the end of RAM (or
    /// `initrd_addr_max`).
    InitrdDoesNotFit {
        /// Its length.
        length: u64,
        /// The room above the kernel.
        room: u64,
    },
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort { length } => write!(
                f,
                "a Linux kernel is too short ({length} bytes) for a boot sector and setup header"
            ),
            Self::NoBootSector => write!(f, "not a Linux kernel: no boot sector signature 0xAA55 at 0x1FE"),
            Self::NoSetupHeader => write!(f, "not a Linux bzImage: no setup header signature 'HdrS' at 0x202"),
            Self::OldProtocol { version } => write!(
                f,
                "the Linux kernel speaks boot protocol {}.{:02}; the VMM needs 2.12 or later",
                version >> 8,
                version & 0xff
            ),
            Self::NotLoadedHigh => write!(
                f,
                "the Linux kernel is a zImage (loadflags lack LOADED_HIGH); only bzImages boot"
            ),
            Self::No64BitEntry => write!(
                f,
                "the Linux kernel has no 64-bit entry point (xloadflags lack XLF_KERNEL_64)"
            ),
            Self::SetupPastEnd { setup_end, length } => write!(
                f,
                "the Linux kernel's setup sectors end at {setup_end:#x}, past the file's {length} bytes"
            ),
            Self::Truncated { expected, present } => write!(
                f,
                "the Linux kernel is truncated: syssize says {expected} bytes of protected-mode code, the file holds {present}"
            ),
            Self::BadAlignment { alignment } => write!(
                f,
                "the Linux kernel's alignment {alignment:#x} is not a power of two of at least 4 KiB"
            ),
            Self::BadInitSize { init_size } => write!(
                f,
                "the Linux kernel's init_size {init_size:#x} is smaller than its protected-mode code"
            ),
            Self::KernelMisplaced(misplaced) => write!(
                f,
                "the Linux kernel with the memory it decompresses into {misplaced}: give it more RAM"
            ),
            Self::CommandLineTooLong { length, limit } => write!(
                f,
                "the command line is {length} bytes; the Linux kernel takes at most {limit}"
            ),
            Self::Modules => write!(f, "a Linux kernel takes one module, its initrd, without arguments"),
            Self::InitrdDoesNotFit { length, room } => write!(
                f,
                "the initrd ({length} bytes) does not fit in the {room} bytes of RAM above the Linux kernel: give it more RAM"
            ),
        }
    }
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

fn half(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([byte(bytes, at), byte(bytes, at + 1)])
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([
        byte(bytes, at),
        byte(bytes, at + 1),
        byte(bytes, at + 2),
        byte(bytes, at + 3),
    ])
}

fn quad(bytes: &[u8], at: usize) -> u64 {
    u64::from(word(bytes, at)) | (u64::from(word(bytes, at + 4)) << 32)
}

/// Whether `start` (a file's first bytes) looks like a Linux kernel with
/// a setup header: boot sector signature and "HdrS". Such a file is
/// booted as Linux or refused with [`check`]'s reason.
pub fn is_bzimage(start: &[u8]) -> bool {
    half(start, offset::BOOT_FLAG) == BOOT_FLAG && start.get(offset::HEADER..offset::HEADER + 4) == Some(HEADER_MAGIC)
}

/// A Linux kernel that passed [`check`]: what its setup header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The setup header as the file has it (from 0x1F1 to its end), to be
    /// copied into the zero page.
    header: Vec<u8>,
    /// Where the protected-mode part starts in the file.
    setup_bytes: u64,
    /// Its length (the rest of the file).
    protected_mode_bytes: u64,
    relocatable: bool,
    alignment: u64,
    preferred_address: u64,
    init_size: u64,
    initrd_address_max: u64,
    command_line_size: usize,
}

/// Checks the Linux kernel whose first bytes are `start` (at least
/// [`HEADER_BYTES`] of them, or the whole file if shorter) and whose
/// length is `length`.
///
/// # Errors
/// [`LinuxError`] says what is wrong: not a bzImage, too old a protocol,
/// no 64-bit entry, truncated, a bad alignment or `init_size`.
pub fn check(start: &[u8], length: u64) -> Result<Kernel, LinuxError> {
    if (start.len() as u64) < length.min(HEADER_BYTES as u64) || length < offset::SETUP_HEADER_END as u64 {
        return Err(LinuxError::TooShort { length });
    }
    if half(start, offset::BOOT_FLAG) != BOOT_FLAG {
        return Err(LinuxError::NoBootSector);
    }
    if start.get(offset::HEADER..offset::HEADER + 4) != Some(HEADER_MAGIC) {
        return Err(LinuxError::NoSetupHeader);
    }
    let version = half(start, offset::VERSION);
    if version < MIN_VERSION {
        return Err(LinuxError::OldProtocol { version });
    }
    if byte(start, offset::LOADFLAGS) & LOADED_HIGH == 0 {
        return Err(LinuxError::NotLoadedHigh);
    }
    if half(start, offset::XLOADFLAGS) & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    // 0 setup sectors means 4, for historical reasons.
    let sectors = match byte(start, offset::SETUP_SECTS) {
        0 => 4,
        sectors => u64::from(sectors),
    };
    let setup_bytes = (sectors + 1) * 512;
    if setup_bytes >= length {
        return Err(LinuxError::SetupPastEnd {
            setup_end: setup_bytes,
            length,
        });
    }
    let protected_mode_bytes = length - setup_bytes;
    let expected = u64::from(word(start, offset::SYSSIZE)) * 16;
    if expected > protected_mode_bytes {
        return Err(LinuxError::Truncated {
            expected,
            present: protected_mode_bytes,
        });
    }
    let relocatable = byte(start, offset::RELOCATABLE_KERNEL) != 0;
    let alignment = word(start, offset::KERNEL_ALIGNMENT);
    if relocatable && (!alignment.is_power_of_two() || u64::from(alignment) < PAGE) {
        return Err(LinuxError::BadAlignment { alignment });
    }
    let init_size = word(start, offset::INIT_SIZE);
    if u64::from(init_size) < expected.max(1) {
        return Err(LinuxError::BadInitSize { init_size });
    }
    // At least up to `init_size`, which protocol 2.10 added.
    let header_end = (offset::HEADER + usize::from(byte(start, offset::JUMP_DISPLACEMENT)))
        .clamp(offset::INIT_SIZE + 4, offset::SETUP_HEADER_END);
    Ok(Kernel {
        header: start[offset::SETUP_HEADER..header_end].to_vec(),
        setup_bytes,
        protected_mode_bytes,
        relocatable,
        alignment: u64::from(alignment),
        preferred_address: quad(start, offset::PREF_ADDRESS),
        init_size: u64::from(init_size),
        initrd_address_max: u64::from(word(start, offset::INITRD_ADDR_MAX)),
        command_line_size: word(start, offset::CMDLINE_SIZE) as usize,
    })
}

/// Where `kernel`'s protected-mode part is loaded: its preferred address
/// (rounded up to its alignment, and at least 1 MiB) if it is
/// relocatable, otherwise 1 MiB.
pub fn load_address(kernel: &Kernel) -> u64 {
    if kernel.relocatable {
        kernel
            .preferred_address
            .max(HIGH_MEMORY)
            .checked_next_multiple_of(kernel.alignment)
            .unwrap_or(u64::MAX)
    } else {
        HIGH_MEMORY
    }
}

/// The end of the memory `kernel` occupies while it boots: its file, and
/// the `init_size` bytes it decompresses into from where it runs (a
/// kernel that is not relocatable moves itself to its preferred address).
fn kernel_end(kernel: &Kernel) -> u64 {
    let load = load_address(kernel);
    let runs_at = if kernel.relocatable {
        load
    } else {
        load.max(kernel.preferred_address)
    };
    load.saturating_add(kernel.protected_mode_bytes)
        .max(runs_at.saturating_add(kernel.init_size))
}

/// Where an initrd of `length` bytes goes: page-aligned, ending as high
/// as both the RAM and `initrd_addr_max` allow, above the kernel.
///
/// # Errors
/// [`LinuxError::InitrdDoesNotFit`].
pub fn initrd_address(kernel: &Kernel, length: u64, ram_bytes: u64) -> Result<u64, LinuxError> {
    let top = ram_bytes.min(kernel.initrd_address_max.saturating_add(1));
    let floor = kernel_end(kernel).next_multiple_of(PAGE);
    let room = top.saturating_sub(floor);
    top.checked_sub(length)
        .map(|start| start & !(PAGE - 1))
        .filter(|&start| start >= floor)
        .ok_or(LinuxError::InitrdDoesNotFit { length, room })
}

/// An initrd: the boot file it is read from and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Initrd {
    /// Which boot file (see [`Bytes::File`]).
    pub file: usize,
    /// Its length in bytes.
    pub length: u64,
}

/// What the machine must do to boot a Linux kernel.
#[derive(Debug)]
pub struct Boot<'a> {
    /// What to write where.
    pub writes: Writes<'a>,
    /// Where it starts (64-bit mode, paging on [`TABLES`], the GDT at
    /// [`GDT`]).
    pub entry: u64,
    /// The zero page's address (for RSI).
    pub zero_page: u64,
}

/// Plans the boot of `kernel`, read from boot file `image`, with
/// `command_line` and perhaps an initrd, on a machine with `ram_bytes` of
/// RAM from address 0.
///
/// # Errors
/// [`LinuxError`]: the kernel or initrd does not fit, or the command line
/// is too long.
pub fn plan<'a>(
    kernel: &Kernel,
    image: usize,
    command_line: &str,
    initrd: Option<Initrd>,
    ram_bytes: u64,
) -> Result<Boot<'a>, LinuxError> {
    let load = load_address(kernel);
    boot::check_placement(load, kernel_end(kernel), ram_bytes).map_err(LinuxError::KernelMisplaced)?;
    let limit = kernel.command_line_size.min(MAX_COMMAND_LINE);
    if command_line.len() > limit {
        return Err(LinuxError::CommandLineTooLong {
            length: command_line.len(),
            limit,
        });
    }
    let initrd = initrd
        .map(|initrd| initrd_address(kernel, initrd.length, ram_bytes).map(|address| (address, initrd)))
        .transpose()?;
    let mut command = Vec::from(command_line.as_bytes());
    command.push(0);
    let mut writes: Writes<'a> = alloc::vec![
        (TABLES, Bytes::Made(boot::identity_tables())),
        (
            GDT,
            Bytes::Made(boot::gdt(&[0, 0, descriptor::CODE_64, descriptor::DATA]))
        ),
        (
            ZERO_PAGE,
            Bytes::Made(zero_page(
                kernel,
                initrd.map(|(address, initrd)| (address, initrd.length)),
                ram_bytes
            ))
        ),
        (COMMAND_LINE, Bytes::Made(command)),
        (mptable::FLOATING_POINTER, Bytes::Made(mptable::build())),
        (
            load,
            Bytes::File {
                file: image,
                offset: kernel.setup_bytes,
                length: kernel.protected_mode_bytes,
            }
        ),
    ];
    if let Some((address, initrd)) = initrd {
        writes.push((
            address,
            Bytes::File {
                file: initrd.file,
                offset: 0,
                length: initrd.length,
            },
        ));
    }
    Ok(Boot {
        writes,
        entry: load + ENTRY_64,
        zero_page: ZERO_PAGE,
    })
}

/// The zero page: the kernel's setup header, marked as loaded by an
/// undefined loader, with the command line's and the initrd's
/// (address, length) and the e820 memory map.
fn zero_page(kernel: &Kernel, initrd: Option<(u64, u64)>, ram_bytes: u64) -> Vec<u8> {
    let mut page = alloc::vec![0u8; PAGE as usize];
    let header_end = offset::SETUP_HEADER + kernel.header.len();
    page[offset::SETUP_HEADER..header_end].copy_from_slice(&kernel.header);
    page[offset::TYPE_OF_LOADER] = UNDEFINED_LOADER;
    // The loader's to give; this one gives no setup data.
    page[offset::SETUP_DATA..offset::SETUP_DATA + 8].fill(0);
    let mut put = |at: usize, value: u32| page[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let (initrd_address, initrd_length) = initrd.unwrap_or((0, 0));
    for (low, high, value) in [
        (offset::CMD_LINE_PTR, offset::EXT_CMD_LINE_PTR, COMMAND_LINE),
        (offset::RAMDISK_IMAGE, offset::EXT_RAMDISK_IMAGE, initrd_address),
        (offset::RAMDISK_SIZE, offset::EXT_RAMDISK_SIZE, initrd_length),
    ] {
        put(low, value as u32);
        put(high, (value >> 32) as u32);
    }
    put(offset::ALT_MEM_K, (ram_bytes.saturating_sub(HIGH_MEMORY) >> 10) as u32);
    let map = boot::memory_map(ram_bytes);
    for (index, range) in map.iter().take(E820_MAX_ENTRIES).enumerate() {
        let at = offset::E820_TABLE + index * 20;
        page[at..at + 8].copy_from_slice(&range.base.to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&range.length.to_le_bytes());
        page[at + 16..at + 20].copy_from_slice(&(range.kind as u32).to_le_bytes());
    }
    page[offset::E820_ENTRIES] = map.len().min(E820_MAX_ENTRIES) as u8;
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::MemoryKind;

    const SETUP_SECTORS: u8 = 3;
    const SETUP: usize = (SETUP_SECTORS as usize + 1) * 512;
    const PROTECTED_MODE: usize = 0x3000;
    const RAM: u64 = 64 << 20;

    fn put(image: &mut [u8], at: usize, bytes: &[u8]) {
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A bzImage as Debian's 6.1 kernel's header has it (protocol 2.15,
    /// relocatable, 2 MiB alignment, preferred at 16 MiB), with a small
    /// protected-mode part and `init_size` of 4 MiB.
    fn bzimage() -> Vec<u8> {
        let mut image = alloc::vec![0u8; SETUP + PROTECTED_MODE];
        image[offset::SETUP_SECTS] = SETUP_SECTORS;
        put(
            &mut image,
            offset::SYSSIZE,
            &((PROTECTED_MODE / 16) as u32).to_le_bytes(),
        );
        put(&mut image, offset::BOOT_FLAG, &[0x55, 0xaa, 0xeb, 0x6a]);
        put(&mut image, offset::HEADER, b"HdrS");
        put(&mut image, offset::VERSION, &0x020fu16.to_le_bytes());
        image[offset::LOADFLAGS] = LOADED_HIGH;
        put(&mut image, 0x214, &0x10_0000u32.to_le_bytes());
        put(&mut image, offset::INITRD_ADDR_MAX, &0x7fff_ffffu32.to_le_bytes());
        put(&mut image, offset::KERNEL_ALIGNMENT, &0x20_0000u32.to_le_bytes());
        image[offset::RELOCATABLE_KERNEL] = 1;
        put(&mut image, offset::XLOADFLAGS, &0x7fu16.to_le_bytes());
        put(&mut image, offset::CMDLINE_SIZE, &0x7ffu32.to_le_bytes());
        put(&mut image, offset::PREF_ADDRESS, &0x100_0000u64.to_le_bytes());
        put(&mut image, offset::INIT_SIZE, &0x40_0000u32.to_le_bytes());
        for (index, byte) in image[SETUP..].iter_mut().enumerate() {
            *byte = index as u8;
        }
        image
    }

    fn checked(image: &[u8]) -> Result<Kernel, LinuxError> {
        check(&image[..image.len().min(HEADER_BYTES)], image.len() as u64)
    }

    fn zero_page_of<'a>(boot: &'a Boot<'_>) -> &'a [u8] {
        match boot.writes.iter().find(|(at, _)| *at == ZERO_PAGE) {
            Some((_, Bytes::Made(page))) => page,
            _ => panic!("no zero page"),
        }
    }

    #[test]
    fn a_valid_bzimage_loads_at_its_preferred_address_and_enters_at_0x200() {
        let image = bzimage();
        assert!(is_bzimage(&image));
        let kernel = checked(&image).unwrap();
        assert_eq!(load_address(&kernel), 0x100_0000);
        let boot = plan(&kernel, 0, DEFAULT_COMMAND_LINE, None, RAM).unwrap();
        assert_eq!(boot.entry, 0x100_0200);
        assert_eq!(boot.zero_page, ZERO_PAGE);
        let code = boot
            .writes
            .iter()
            .find(|(at, _)| *at == 0x100_0000)
            .map(|(_, bytes)| bytes);
        assert_eq!(
            code,
            Some(&Bytes::File {
                file: 0,
                offset: SETUP as u64,
                length: PROTECTED_MODE as u64
            })
        );
        let command = boot
            .writes
            .iter()
            .find(|(at, _)| *at == COMMAND_LINE)
            .map(|(_, bytes)| bytes);
        let mut expected = Vec::from(DEFAULT_COMMAND_LINE.as_bytes());
        expected.push(0);
        assert_eq!(command, Some(&Bytes::Made(expected)));
    }

    #[test]
    fn the_zero_page_holds_the_header_the_command_line_the_initrd_and_the_e820_map() {
        let image = bzimage();
        let kernel = checked(&image).unwrap();
        let initrd = Initrd {
            file: 1,
            length: 0x1_2345,
        };
        let boot = plan(&kernel, 0, "console=ttyS0", Some(initrd), RAM).unwrap();
        let page = zero_page_of(&boot);
        assert_eq!(page.len(), 4096);
        // The setup header as the file has it, but for the loader's fields.
        for at in offset::SETUP_HEADER..0x26c {
            if at != offset::TYPE_OF_LOADER
                && !(offset::CMD_LINE_PTR..offset::CMD_LINE_PTR + 4).contains(&at)
                && !(offset::RAMDISK_IMAGE..offset::RAMDISK_SIZE + 4).contains(&at)
            {
                assert_eq!(page[at], image[at], "header byte {at:#x}");
            }
        }
        assert_eq!(page[offset::TYPE_OF_LOADER], 0xff);
        assert_eq!(word(page, offset::CMD_LINE_PTR), COMMAND_LINE as u32);
        assert_eq!(word(page, offset::EXT_CMD_LINE_PTR), 0);
        // The initrd ends page-aligned at the end of RAM.
        let initrd_at = u64::from(word(page, offset::RAMDISK_IMAGE));
        assert_eq!(initrd_at, (RAM - 0x1_2345) & !0xfff);
        assert_eq!(word(page, offset::RAMDISK_SIZE), 0x1_2345);
        assert_eq!(
            (
                word(page, offset::EXT_RAMDISK_IMAGE),
                word(page, offset::EXT_RAMDISK_SIZE)
            ),
            (0, 0)
        );
        assert!(boot.writes.contains(&(
            initrd_at,
            Bytes::File {
                file: 1,
                offset: 0,
                length: 0x1_2345
            }
        )));
        assert_eq!(word(page, offset::ALT_MEM_K), 63 * 1024);
        // e820: the count at 0x1e8, 20-byte entries from 0x2d0.
        let count = usize::from(page[offset::E820_ENTRIES]);
        let map = boot::memory_map(RAM);
        assert_eq!(count, map.len());
        for (index, range) in map.iter().enumerate() {
            let at = offset::E820_TABLE + index * 20;
            assert_eq!(quad(page, at), range.base);
            assert_eq!(quad(page, at + 8), range.length);
            assert_eq!(word(page, at + 16), range.kind as u32);
        }
        let usable: u64 = map
            .iter()
            .filter(|range| range.kind == MemoryKind::Available)
            .map(|range| range.length)
            .sum();
        assert_eq!(usable, RAM - (384 << 10), "all RAM but the legacy hole");
        // Nothing else in the page is set.
        assert!(page[offset::E820_TABLE + count * 20..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn the_command_line_defaults_and_carries_the_tsc_rate() {
        assert_eq!(
            command_line("", 2_445_434),
            alloc::format!("{DEFAULT_COMMAND_LINE} tsc_early_khz=2445434")
        );
        assert_eq!(
            command_line("console=ttyS0 quiet", 1000),
            "console=ttyS0 quiet tsc_early_khz=1000"
        );
        assert_eq!(
            command_line("tsc_early_khz=5 quiet", 1000),
            "tsc_early_khz=5 quiet",
            "the guest's own wins"
        );
        assert_eq!(command_line("quiet", 0), "quiet", "no rate measured, none given");
    }

    #[test]
    fn broken_headers_are_refused_with_their_reason() {
        let cases: [(fn(&mut Vec<u8>), fn(&LinuxError) -> bool); 10] = [
            (
                |image| image[offset::BOOT_FLAG] = 0,
                |error| *error == LinuxError::NoBootSector,
            ),
            (
                |image| image[offset::HEADER] = b'X',
                |error| *error == LinuxError::NoSetupHeader,
            ),
            (
                |image| put(image, offset::VERSION, &0x020bu16.to_le_bytes()),
                |error| *error == LinuxError::OldProtocol { version: 0x020b },
            ),
            (
                |image| image[offset::LOADFLAGS] = 0,
                |error| *error == LinuxError::NotLoadedHigh,
            ),
            (
                |image| put(image, offset::XLOADFLAGS, &2u16.to_le_bytes()),
                |error| *error == LinuxError::No64BitEntry,
            ),
            (
                |image| image.truncate(SETUP + 0x100),
                |error| matches!(error, LinuxError::Truncated { .. }),
            ),
            (
                |image| image[offset::SETUP_SECTS] = 200,
                |error| matches!(error, LinuxError::SetupPastEnd { .. }),
            ),
            (
                |image| put(image, offset::KERNEL_ALIGNMENT, &0x3000u32.to_le_bytes()),
                |error| *error == LinuxError::BadAlignment { alignment: 0x3000 },
            ),
            (
                |image| put(image, offset::INIT_SIZE, &0x100u32.to_le_bytes()),
                |error| *error == LinuxError::BadInitSize { init_size: 0x100 },
            ),
            (
                |image| image.truncate(0x200),
                |error| *error == LinuxError::TooShort { length: 0x200 },
            ),
        ];
        for (index, (break_it, expected)) in cases.into_iter().enumerate() {
            let mut image = bzimage();
            break_it(&mut image);
            let error = checked(&image).expect_err("refused");
            assert!(expected(&error), "case {index}: {error:?}");
            assert!(!alloc::format!("{error}").is_empty());
        }
        // An old version's text reads as a version.
        let text = alloc::format!("{}", LinuxError::OldProtocol { version: 0x020b });
        assert!(text.contains("2.11"), "{text}");
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let kernel = checked(&bzimage()).unwrap();
        // 16 MiB + 4 MiB of init_size needs more than 16 MiB of RAM.
        let error = plan(&kernel, 0, "", None, 16 << 20).unwrap_err();
        assert!(
            matches!(error, LinuxError::KernelMisplaced(Misplaced::PastRam { .. })),
            "{error:?}"
        );
        assert!(alloc::format!("{error}").contains("more RAM"));
        assert!(plan(&kernel, 0, "", None, 20 << 20).is_ok(), "20 MiB is just enough");
        let long = "x".repeat(0x800);
        assert_eq!(
            plan(&kernel, 0, &long, None, RAM).unwrap_err(),
            LinuxError::CommandLineTooLong {
                length: 0x800,
                limit: 0x7ff
            }
        );
        // The initrd must fit between the kernel's 20 MiB and the top.
        let initrd = |length| Some(Initrd { file: 1, length });
        assert!(plan(&kernel, 0, "", initrd(RAM - (20 << 20)), RAM).is_ok());
        let error = plan(&kernel, 0, "", initrd(RAM - (20 << 20) + 1), RAM).unwrap_err();
        assert!(matches!(error, LinuxError::InitrdDoesNotFit { .. }), "{error:?}");
    }

    #[test]
    fn the_initrd_stays_below_initrd_addr_max_and_a_fixed_kernel_loads_at_1_mib() {
        let mut image = bzimage();
        put(&mut image, offset::INITRD_ADDR_MAX, &0x27f_ffffu32.to_le_bytes());
        let kernel = checked(&image).unwrap();
        assert_eq!(initrd_address(&kernel, 0x1000, RAM), Ok(0x27f_f000));
        image[offset::RELOCATABLE_KERNEL] = 0;
        let kernel = checked(&image).unwrap();
        assert_eq!(load_address(&kernel), HIGH_MEMORY);
        // It moves itself to 16 MiB and decompresses there.
        assert_eq!(kernel_end(&kernel), 0x140_0000);
        assert_eq!(plan(&kernel, 0, "", None, RAM).unwrap().entry, 0x10_0200);
    }

    /// A plan's writes all lie in RAM and none overlaps another.
    fn assert_sound(boot: &Boot<'_>, ram_bytes: u64) {
        let mut ranges: Vec<(u64, u64)> = boot
            .writes
            .iter()
            .map(|(at, bytes)| (*at, at.checked_add(bytes.len()).expect("no wrap")))
            .collect();
        ranges.sort_unstable();
        for (start, end) in &ranges {
            assert!(*end <= ram_bytes, "{start:#x}..{end:#x} past RAM");
        }
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{:x?} overlaps {:x?}", pair[0], pair[1]);
        }
        assert!(boot.entry < ram_bytes);
    }

    #[test]
    fn random_mutations_never_panic_and_what_passes_is_sound() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let original = bzimage();
        let mut passed = 0;
        for round in 0..5_000 {
            let mut image = original.clone();
            for _ in 0..1 + next() % 6 {
                // Mostly the header, where the numbers are.
                let at = if next() % 4 == 0 {
                    (next() % image.len() as u64) as usize
                } else {
                    0x1f0 + (next() % 0x80) as usize
                };
                image[at] = next() as u8;
            }
            if round % 7 == 0 {
                image.truncate((next() % image.len() as u64) as usize);
            }
            let ram = (1 + next() % 64) << 20;
            let initrd = (next() % 2 == 0).then(|| Initrd {
                file: 1,
                length: next() % (8 << 20),
            });
            let Ok(kernel) = checked(&image) else { continue };
            if let Ok(boot) = plan(&kernel, 0, DEFAULT_COMMAND_LINE, initrd, ram) {
                assert_sound(&boot, ram);
                passed += 1;
            }
        }
        assert!(passed > 100, "mutations mostly left a bootable kernel: {passed}");
    }

    /// The real thing: `LINUX_BZIMAGE=/path/to/vmlinuz cargo test --lib
    /// --package vmm -- --ignored a_real_kernel`.
    #[test]
    #[ignore = "needs a kernel file named by LINUX_BZIMAGE"]
    fn a_real_kernel() {
        let path = std::env::var("LINUX_BZIMAGE").expect("LINUX_BZIMAGE names a bzImage");
        let image = std::fs::read(path).expect("readable");
        assert!(is_bzimage(&image));
        let kernel = checked(&image).unwrap();
        std::println!("{kernel:x?}");
        let boot = plan(
            &kernel,
            0,
            DEFAULT_COMMAND_LINE,
            Some(Initrd {
                file: 1,
                length: 2 << 20,
            }),
            128 << 20,
        )
        .unwrap();
        assert_sound(&boot, 128 << 20);
        std::println!("entry {:#x}", boot.entry);
        for (at, bytes) in &boot.writes {
            std::println!("{at:#x}: {} bytes", bytes.len());
        }
    }
}
