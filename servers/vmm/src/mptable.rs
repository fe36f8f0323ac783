//! The MP table (Intel MultiProcessor Specification 1.4) the VMM puts in
//! the guest's BIOS area, so that an operating system without ACPI (Linux
//! with `acpi=off`) finds the one CPU, the I/O APIC and how the ISA
//! interrupts reach it.
//!
//! At [`FLOATING_POINTER`] (in the 0xF0000–0xFFFFF range every OS scans):
//! the 16-byte floating pointer structure, then the configuration table:
//! a processor entry (local APIC ID 0, the boot processor), the PCI bus
//! (ID 0: an MP bus ID is the PCI bus number) and an ISA bus (ID 1), the
//! I/O APIC ([`IO_APIC_ID`] at [`IO_APIC`]), an I/O interrupt entry for
//! every ISA interrupt but 2 (the cascade) with the PC's usual override,
//! ISA 0 (the PIT) on pin [`IO_APIC_PIT_PIN`] and the others on the pin of
//! their number (COM1: [`COM1_INTERRUPT`](vm_platform::COM1_INTERRUPT)),
//! all edge-triggered and active high as the ISA bus is; one for INTA of
//! every PCI slot with a device, on pin
//! [`FIRST_INTERRUPT_PIN`](vm_platform::pci::FIRST_INTERRUPT_PIN) + slot,
//! level-triggered and active low as PCI interrupts are (the source is
//! `slot << 2 | pin - 1`); and the local interrupts of the virtual-wire
//! mode the local APIC starts in: the 8259A's ExtINT on LINT0 and NMI on
//! LINT1.

use alloc::vec::Vec;
use vm_platform::pci::{FIRST_INTERRUPT_PIN, INTERRUPTING_SLOTS};
use vm_platform::{IO_APIC, IO_APIC_ID, IO_APIC_PIT_PIN, LOCAL_APIC};

/// Where the floating pointer structure goes; the configuration table
/// follows it.
pub const FLOATING_POINTER: u64 = 0xf_0000;
/// The specification revision both structures name (1.4).
const SPECIFICATION: u8 = 4;
/// The configuration table's header length.
const HEADER_BYTES: usize = 44;
/// The local APIC's version (as `vmm::devices::lapic` reports it).
const LOCAL_APIC_VERSION: u8 = 0x14;
/// The I/O APIC's version (as `vmm::devices::ioapic` reports it).
const IO_APIC_VERSION: u8 = 0x11;
/// The PCI bus's ID in the table: its bus number.
const PCI_BUS: u8 = 0;
/// The ISA bus's ID in the table.
const ISA_BUS: u8 = 1;
/// I/O interrupt entry flags: polarity and trigger mode as the bus says
/// (ISA: active high, edge).
const BUS_DEFAULT: u8 = 0;
/// I/O interrupt entry flags: active low (bits 0–1 = 3), level-triggered
/// (bits 2–3 = 3).
const LEVEL_ACTIVE_LOW: u8 = 0x0f;

/// Entry types.
mod entry {
    pub const PROCESSOR: u8 = 0;
    pub const BUS: u8 = 1;
    pub const IO_APIC: u8 = 2;
    pub const IO_INTERRUPT: u8 = 3;
    pub const LOCAL_INTERRUPT: u8 = 4;
}

/// Interrupt types of I/O and local interrupt entries.
mod interrupt {
    pub const VECTORED: u8 = 0;
    pub const NMI: u8 = 1;
    pub const EXTERNAL: u8 = 3;
}

/// The I/O APIC pin ISA interrupt `irq` arrives on, or `None` for 2,
/// the cascade, which has none.
pub fn isa_pin(irq: u8) -> Option<u8> {
    match irq {
        0 => Some(IO_APIC_PIT_PIN),
        2 => None,
        _ => Some(irq),
    }
}

/// Sets byte `at` so that `bytes[range]` sums to zero.
fn checksum(bytes: &mut [u8], range: core::ops::Range<usize>, at: usize) {
    bytes[at] = 0;
    let sum = bytes[range].iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    bytes[at] = sum.wrapping_neg();
}

/// The floating pointer structure and the configuration table, as the
/// bytes to put at [`FLOATING_POINTER`].
pub fn build() -> Vec<u8> {
    let table = FLOATING_POINTER as u32 + 16;
    let mut bytes = Vec::new();
    // The floating pointer: signature, table address, length in 16-byte
    // units, revision, checksum, feature bytes (all zero: a table is
    // present, and the IMCR is absent, so the system is in virtual-wire
    // mode).
    bytes.extend_from_slice(b"_MP_");
    bytes.extend_from_slice(&table.to_le_bytes());
    bytes.extend_from_slice(&[1, SPECIFICATION, 0, 0, 0, 0, 0, 0]);
    checksum(&mut bytes, 0..16, 10);

    let mut entries = Vec::new();
    let mut count = 0u16;
    // The processor: enabled, the boot processor; family 6, and the
    // CPUID features FPU and APIC.
    entries.extend_from_slice(&[entry::PROCESSOR, 0, LOCAL_APIC_VERSION, 0b11]);
    entries.extend_from_slice(&0x0600u32.to_le_bytes());
    entries.extend_from_slice(&((1u32 << 9) | 1).to_le_bytes());
    entries.extend_from_slice(&[0; 8]);
    count += 1;
    for (id, name) in [(PCI_BUS, b"PCI   "), (ISA_BUS, b"ISA   ")] {
        entries.extend_from_slice(&[entry::BUS, id]);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.extend_from_slice(&[entry::IO_APIC, IO_APIC_ID, IO_APIC_VERSION, 1]);
    entries.extend_from_slice(&(IO_APIC as u32).to_le_bytes());
    count += 1;
    let routes = (0..16)
        .filter_map(|irq| Some((BUS_DEFAULT, ISA_BUS, irq, isa_pin(irq)?)))
        .chain(
            INTERRUPTING_SLOTS
                .into_iter()
                .map(|slot| (LEVEL_ACTIVE_LOW, PCI_BUS, slot << 2, FIRST_INTERRUPT_PIN + slot)),
        );
    for (flags, bus, source, pin) in routes {
        entries.extend_from_slice(&[
            entry::IO_INTERRUPT,
            interrupt::VECTORED,
            flags,
            0,
            bus,
            source,
            IO_APIC_ID,
            pin,
        ]);
        count += 1;
    }
    for (kind, lint) in [(interrupt::EXTERNAL, 0), (interrupt::NMI, 1)] {
        // To every local APIC (0xff).
        entries.extend_from_slice(&[entry::LOCAL_INTERRUPT, kind, 0, 0, ISA_BUS, 0, 0xff, lint]);
        count += 1;
    }

    let start = bytes.len();
    let length = (HEADER_BYTES + entries.len()) as u16;
    bytes.extend_from_slice(b"PCMP");
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(&[SPECIFICATION, 0]);
    bytes.extend_from_slice(b"L4HV    ");
    bytes.extend_from_slice(b"MICROVMM    ");
    bytes.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&(LOCAL_APIC as u32).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]); // no extended table
    bytes.extend_from_slice(&entries);
    checksum(&mut bytes, start..start + usize::from(length), start + 7);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_platform::COM1_INTERRUPT;

    /// What a parser written from the specification finds.
    #[derive(Debug, Default)]
    struct Found {
        processors: Vec<(u8, u8)>,
        buses: Vec<(u8, [u8; 6])>,
        io_apics: Vec<(u8, u32)>,
        /// (source IRQ, I/O APIC ID, pin) of vectored I/O interrupts from
        /// the ISA bus.
        routes: Vec<(u8, u8, u8)>,
        /// (flags, source, pin) of those from the PCI bus.
        pci_routes: Vec<(u8, u8, u8)>,
        /// (interrupt type, LINT) of local interrupts.
        local: Vec<(u8, u8)>,
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte))
    }

    /// Scans `memory` (guest-physical from `base`) on 16-byte boundaries
    /// for the floating pointer, checks both checksums and reads the
    /// entries, as an OS would.
    fn parse(memory: &[u8], base: u64) -> Found {
        let at = (0..memory.len() - 16)
            .step_by(16)
            .find(|&at| &memory[at..at + 4] == b"_MP_" && sum(&memory[at..at + 16]) == 0)
            .expect("a floating pointer with a good checksum");
        assert_eq!(memory[at + 8], 1, "length in 16-byte units");
        assert_eq!(memory[at + 9], 4, "revision 1.4");
        assert_eq!(memory[at + 11], 0, "a configuration table, not a default configuration");
        let table = u32::from_le_bytes(memory[at + 4..at + 8].try_into().unwrap()) as u64;
        let table = (table - base) as usize;
        assert_eq!(&memory[table..table + 4], b"PCMP");
        let length = usize::from(u16::from_le_bytes([memory[table + 4], memory[table + 5]]));
        assert_eq!(sum(&memory[table..table + length]), 0, "the table's checksum");
        let count = u16::from_le_bytes([memory[table + 34], memory[table + 35]]);
        let lapic = u32::from_le_bytes(memory[table + 36..table + 40].try_into().unwrap());
        assert_eq!(u64::from(lapic), LOCAL_APIC);
        let mut found = Found::default();
        let mut offset = table + 44;
        for _ in 0..count {
            let entry = &memory[offset..];
            offset += match entry[0] {
                0 => {
                    found.processors.push((entry[1], entry[3]));
                    20
                }
                1 => {
                    found.buses.push((entry[1], entry[2..8].try_into().unwrap()));
                    8
                }
                2 => {
                    found
                        .io_apics
                        .push((entry[1], u32::from_le_bytes(entry[4..8].try_into().unwrap())));
                    8
                }
                3 => {
                    assert_eq!(entry[1], 0, "vectored");
                    match &found.buses.iter().find(|bus| bus.0 == entry[4]).expect("a known bus").1 {
                        b"ISA   " => {
                            assert_eq!(entry[2], 0, "as the ISA bus says");
                            found.routes.push((entry[5], entry[6], entry[7]));
                        }
                        b"PCI   " => {
                            assert_eq!(entry[6], IO_APIC_ID);
                            found.pci_routes.push((entry[2], entry[5], entry[7]));
                        }
                        other => panic!("an interrupt from bus {other:?}"),
                    }
                    8
                }
                4 => {
                    assert_eq!(entry[6], 0xff, "to every local APIC");
                    found.local.push((entry[1], entry[7]));
                    8
                }
                other => panic!("unknown entry type {other}"),
            };
        }
        assert_eq!(offset, table + length, "the entries fill the table exactly");
        found
    }

    #[test]
    fn an_os_finds_the_cpu_the_io_apic_and_the_isa_routes() {
        let table = build();
        // The BIOS area as an OS scans it, with the table where the VMM
        // puts it.
        let mut bios = alloc::vec![0u8; 0x1_0000];
        bios[..table.len()].copy_from_slice(&table);
        let found = parse(&bios, FLOATING_POINTER);
        assert_eq!(found.processors, [(0, 0b11)], "APIC ID 0, enabled boot processor");
        assert_eq!(found.buses, [(0, *b"PCI   "), (1, *b"ISA   ")], "PCI bus 0 has MP bus ID 0");
        assert_eq!(found.io_apics, [(IO_APIC_ID, IO_APIC as u32)]);
        assert_eq!(found.routes.len(), 15, "ISA 0..16 without the cascade");
        assert!(found.routes.iter().all(|route| route.1 == IO_APIC_ID));
        let pin = |irq| found.routes.iter().find(|route| route.0 == irq).map(|route| route.2);
        assert_eq!(pin(0), Some(IO_APIC_PIT_PIN), "the PIT");
        assert_eq!(pin(COM1_INTERRUPT), Some(COM1_INTERRUPT), "COM1");
        assert_eq!(pin(2), None);
        let mut pins: Vec<u8> = found.routes.iter().map(|route| route.2).collect();
        pins.sort_unstable();
        pins.dedup();
        assert_eq!(pins.len(), 15, "no two ISA interrupts share a pin");
        assert_eq!(found.local, [(interrupt::EXTERNAL, 0), (interrupt::NMI, 1)]);
    }

    #[test]
    fn pci_slots_interrupt_level_triggered_and_active_low_on_pins_no_isa_interrupt_uses() {
        let table = build();
        let mut bios = alloc::vec![0u8; 0x1_0000];
        bios[..table.len()].copy_from_slice(&table);
        let found = parse(&bios, FLOATING_POINTER);
        let expected: Vec<(u8, u8, u8)> = INTERRUPTING_SLOTS
            .iter()
            .map(|&slot| (0x0f, slot << 2, FIRST_INTERRUPT_PIN + slot))
            .collect();
        assert_eq!(found.pci_routes, expected, "INTA (pin - 1 = 0) of each slot");
        for (_, _, pin) in &found.pci_routes {
            assert!(found.routes.iter().all(|route| route.2 != *pin));
            assert!(usize::from(*pin) < crate::devices::ioapic::PINS);
        }
    }

    #[test]
    fn it_fits_in_the_bios_area() {
        assert!(FLOATING_POINTER + build().len() as u64 <= 0x10_0000);
        assert_eq!(FLOATING_POINTER % 16, 0);
    }
}
