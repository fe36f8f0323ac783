//! What the boot protocols share: the plan of writes a loader hands the
//! machine (bytes made here, copies, zeros, and ranges of files the
//! machine reads in chunks straight into guest RAM), the checks that a
//! piece lies in RAM above the low megabyte, the memory map every guest is
//! told about, and the long-mode page tables and descriptors.
//!
//! Guest-physical layout below 1 MiB that the loaders agree on: identity
//! page tables at [`TABLES`], a GDT at [`GDT`]; the rest of the first
//! 640 KiB is each loader's own; 640 KiB to 1 MiB is reserved (the PC's
//! legacy hole; the VMM puts firmware tables such as the MP table there).

use alloc::vec::Vec;
use vm_platform::{IO_APIC, LOCAL_APIC, TEST_DEVICE};

/// The end of conventional memory (640 KiB).
pub const CONVENTIONAL_END: u64 = 0xa_0000;
/// The lowest address a kernel, module or initrd may be loaded at.
pub const HIGH_MEMORY: u64 = 0x10_0000;
/// A page.
pub const PAGE: u64 = 4096;
/// Where the identity page tables go: a PML4, a PDPT and four page
/// directories ([`identity_tables`]), up to 0x7000.
pub const TABLES: u64 = 0x1000;
/// Where a long-mode guest's GDT goes.
pub const GDT: u64 = 0x7000;

/// Segment descriptors.
pub mod descriptor {
    /// Flat 64-bit code.
    pub const CODE_64: u64 = 0x00af_9a00_0000_ffff;
    /// Flat 32-bit code.
    pub const CODE_32: u64 = 0x00cf_9a00_0000_ffff;
    /// Flat writable data.
    pub const DATA: u64 = 0x00cf_9200_0000_ffff;
}

/// Bytes to put into guest RAM.
#[derive(Debug, PartialEq, Eq)]
pub enum Bytes<'a> {
    /// A copy of these.
    Copy(&'a [u8]),
    /// This many zeros.
    Zero(u64),
    /// These, made here.
    Made(Vec<u8>),
    /// `length` bytes from `offset` of boot file number `file` (the
    /// caller's numbering), read by the machine in chunks so that large
    /// files never pass through the heap.
    File {
        /// Which file.
        file: usize,
        /// Where in it.
        offset: u64,
        /// How many bytes.
        length: u64,
    },
}

impl Bytes<'_> {
    /// How many bytes they are.
    pub fn len(&self) -> u64 {
        match self {
            Self::Copy(bytes) => bytes.len() as u64,
            Self::Made(bytes) => bytes.len() as u64,
            Self::Zero(length) | Self::File { length, .. } => *length,
        }
    }

    /// Whether they are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a loader asks the machine to write: bytes at guest-physical
/// addresses, in order.
pub type Writes<'a> = Vec<(u64, Bytes<'a>)>;

/// Why a piece cannot go where it would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misplaced {
    /// It starts below 1 MiB.
    BelowHighMemory {
        /// Its start.
        start: u64,
    },
    /// It ends past the end of RAM (or wraps).
    PastRam {
        /// Its end (saturated).
        end: u64,
        /// The RAM's size.
        ram_bytes: u64,
    },
}

impl core::fmt::Display for Misplaced {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BelowHighMemory { start } => write!(
                f,
                "loads at {start:#x}, below 1 MiB, where the VMM keeps the boot information and the legacy hole"
            ),
            Self::PastRam { end, ram_bytes } => {
                write!(f, "ends at {end:#x}, past the guest's {} MiB of RAM", ram_bytes >> 20)
            }
        }
    }
}

/// Checks that [`start`, `end`) lies in RAM at or above 1 MiB.
///
/// # Errors
/// [`Misplaced`] says which bound it crosses.
pub fn check_placement(start: u64, end: u64, ram_bytes: u64) -> Result<(), Misplaced> {
    if start < HIGH_MEMORY {
        return Err(Misplaced::BelowHighMemory { start });
    }
    if end > ram_bytes || end < start {
        return Err(Misplaced::PastRam { end, ram_bytes });
    }
    Ok(())
}

/// The kind of a memory-map entry. Multiboot's memory map and the e820
/// table number them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MemoryKind {
    /// RAM the guest may use.
    Available = 1,
    /// Not for the guest's allocator: the legacy hole, device pages.
    Reserved = 2,
}

/// One entry of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    /// Its first address.
    pub base: u64,
    /// Its length in bytes.
    pub length: u64,
    /// What it is.
    pub kind: MemoryKind,
}

/// The memory map of a guest with `ram_bytes` of RAM, in address order:
/// 0..640 KiB available, 640 KiB..1 MiB reserved (the legacy hole),
/// 1 MiB to the end of RAM available, and the pages of the devices the
/// VMM emulates by MMIO (test device, I/O APIC, local APIC) reserved.
pub fn memory_map(ram_bytes: u64) -> Vec<MemoryRange> {
    let range = |base, length, kind| MemoryRange { base, length, kind };
    let mut map = alloc::vec![
        range(0, CONVENTIONAL_END, MemoryKind::Available),
        range(CONVENTIONAL_END, HIGH_MEMORY - CONVENTIONAL_END, MemoryKind::Reserved),
        range(
            HIGH_MEMORY,
            ram_bytes.saturating_sub(HIGH_MEMORY),
            MemoryKind::Available
        ),
    ];
    map.extend([TEST_DEVICE, IO_APIC, LOCAL_APIC].map(|page| range(page, PAGE, MemoryKind::Reserved)));
    map
}

/// Page tables that map the first 4 GiB onto themselves with 2 MiB
/// pages, present and writable, as the bytes to put at [`TABLES`]: a
/// PML4, a PDPT and four page directories (24 KiB). They cover any RAM a
/// guest may have and the devices' pages.
pub fn identity_tables() -> Vec<u8> {
    const PRESENT_WRITABLE: u64 = 0b11;
    const LARGE: u64 = 1 << 7;
    let mut entries = alloc::vec![0u64; 6 * 512];
    let pdpt = TABLES + PAGE;
    entries[0] = pdpt | PRESENT_WRITABLE;
    for gib in 0..4u64 {
        let directory = TABLES + (2 + gib) * PAGE;
        entries[512 + gib as usize] = directory | PRESENT_WRITABLE;
        for entry in 0..512u64 {
            let address = (gib << 30) | (entry << 21);
            entries[(2 + gib as usize) * 512 + entry as usize] = address | PRESENT_WRITABLE | LARGE;
        }
    }
    entries.iter().flat_map(|entry| entry.to_le_bytes()).collect()
}

/// A GDT of `descriptors`, as bytes; its limit is their length less one.
pub fn gdt(descriptors: &[u64]) -> Vec<u8> {
    descriptors
        .iter()
        .flat_map(|descriptor| descriptor.to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tables: &[u8], address: u64) -> u64 {
        let at = (address - TABLES) as usize;
        u64::from_le_bytes(tables[at..at + 8].try_into().unwrap())
    }

    /// Walks the tables as the CPU would for `linear`.
    fn translate(tables: &[u8], linear: u64) -> Option<u64> {
        let pml4e = entry(tables, TABLES + ((linear >> 39) & 0x1ff) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = entry(tables, (pml4e & !0xfff) + ((linear >> 30) & 0x1ff) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = entry(tables, (pdpte & !0xfff) + ((linear >> 21) & 0x1ff) * 8);
        assert_ne!(pde & (1 << 7), 0, "2 MiB pages");
        (pde & 1 != 0).then_some((pde & !0x1f_ffff) | (linear & 0x1f_ffff))
    }

    #[test]
    fn the_tables_map_the_first_4_gib_onto_themselves_and_nothing_else() {
        let tables = identity_tables();
        assert_eq!(tables.len(), (GDT - TABLES) as usize, "they end where the GDT starts");
        for linear in [0, 0x1234, 0x10_0000, 0x7fff_f123, 0xfec0_0000, 0xfee0_0ff0, 0xffff_ffff] {
            assert_eq!(translate(&tables, linear), Some(linear));
        }
        assert_eq!(translate(&tables, 1 << 32), None);
        assert_eq!(translate(&tables, 1 << 39), None);
    }

    #[test]
    fn the_memory_map_keeps_the_hole_and_the_devices_out() {
        let map = memory_map(128 << 20);
        let available: Vec<_> = map.iter().filter(|range| range.kind == MemoryKind::Available).collect();
        assert_eq!(available.len(), 2);
        assert_eq!((available[0].base, available[0].length), (0, 640 << 10));
        assert_eq!((available[1].base, available[1].length), (1 << 20, 127 << 20));
        for device in [IO_APIC, LOCAL_APIC, TEST_DEVICE] {
            assert!(
                map.iter()
                    .any(|range| range.kind == MemoryKind::Reserved && range.base == device)
            );
        }
        // Nothing overlaps.
        let mut sorted = map.clone();
        sorted.sort_by_key(|range| range.base);
        for pair in sorted.windows(2) {
            assert!(pair[0].base + pair[0].length <= pair[1].base);
        }
    }

    #[test]
    fn placement_needs_high_memory_and_ram() {
        let ram = 16 << 20;
        assert_eq!(check_placement(1 << 20, ram, ram), Ok(()));
        assert_eq!(
            check_placement(0xf_f000, 2 << 20, ram),
            Err(Misplaced::BelowHighMemory { start: 0xf_f000 })
        );
        assert!(matches!(
            check_placement(2 << 20, ram + 1, ram),
            Err(Misplaced::PastRam { .. })
        ));
        assert!(matches!(
            check_placement(2 << 20, 1, ram),
            Err(Misplaced::PastRam { .. })
        ));
    }
}
