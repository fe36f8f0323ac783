//! Just enough ACPI to find the interrupt controllers: RSDP, then RSDT or
//! XSDT, then the MADT's I/O APIC and interrupt-source-override entries.

use crate::memory::physical_to_virtual;

/// What the MADT says about I/O interrupt routing.
pub struct InterruptRouting {
    /// Physical address of the (first) I/O APIC.
    pub ioapic_address: u64,
    /// Its first global system interrupt.
    pub ioapic_gsi_base: u32,
    /// Overrides of the identity ISA IRQ → GSI mapping: (irq, gsi, flags).
    overrides: [(u8, u32, u16); 16],
    override_count: usize,
}

/// A GSI with its trigger details.
pub struct Gsi {
    /// The global system interrupt number.
    pub number: u32,
    /// Level-triggered (else edge).
    pub level_triggered: bool,
    /// Active low (else active high).
    pub active_low: bool,
}

impl InterruptRouting {
    /// The routing every PC without a MADT uses.
    pub const fn legacy() -> Self {
        Self {
            ioapic_address: 0xfec0_0000,
            ioapic_gsi_base: 0,
            overrides: [(0, 0, 0); 16],
            override_count: 0,
        }
    }

    /// The GSI an ISA IRQ arrives on, with its polarity and trigger mode.
    pub fn isa_irq(&self, irq: u8) -> Gsi {
        let found = self
            .overrides
            .iter()
            .take(self.override_count)
            .find(|(source, _, _)| *source == irq);
        match found {
            // MPS INTI flags: polarity bits 0-1 (3 = active low), trigger
            // bits 2-3 (3 = level); 0 means "conforms to the bus": ISA is
            // edge-triggered, active high.
            Some(&(_, gsi, flags)) => Gsi {
                number: gsi,
                active_low: flags & 3 == 3,
                level_triggered: (flags >> 2) & 3 == 3,
            },
            None => Gsi {
                number: u32::from(irq),
                active_low: false,
                level_triggered: false,
            },
        }
    }
}

fn read<const N: usize>(physical: u64) -> [u8; N] {
    let mut bytes = [0; N];
    // SAFETY: ACPI tables are in memory the loader's direct map covers (it
    // maps every region of the memory map, ACPI ones included); reads have
    // no side effects.
    unsafe { core::ptr::copy_nonoverlapping(physical_to_virtual(physical).as_ptr::<u8>(), bytes.as_mut_ptr(), N) };
    bytes
}

fn read_u32(physical: u64) -> u32 {
    u32::from_le_bytes(read(physical))
}

fn read_u64(physical: u64) -> u64 {
    u64::from_le_bytes(read(physical))
}

/// Reads the MADT through the RSDP at `rsdp` (physical). `None` if the
/// tables are not there or malformed; the caller falls back to legacy.
pub fn interrupt_routing(rsdp: u64) -> Option<InterruptRouting> {
    if &read::<8>(rsdp) != b"RSD PTR " {
        return None;
    }
    let revision = read::<1>(rsdp + 15)[0];
    let (root, entry_size) = if revision >= 2 && read_u64(rsdp + 24) != 0 {
        (read_u64(rsdp + 24), 8)
    } else {
        (u64::from(read_u32(rsdp + 16)), 4)
    };
    let root_length = u64::from(read_u32(root + 4));
    let entries = root_length.checked_sub(36)? / entry_size;
    let madt = (0..entries.min(64))
        .map(|index| root + 36 + index * entry_size)
        .find_map(|slot| {
            let table = if entry_size == 8 {
                read_u64(slot)
            } else {
                u64::from(read_u32(slot))
            };
            (&read::<4>(table) == b"APIC").then_some(table)
        })?;
    let madt_length = u64::from(read_u32(madt + 4)).min(64 * 1024);
    let mut routing = InterruptRouting {
        ioapic_address: 0,
        ..InterruptRouting::legacy()
    };
    let mut offset = 44;
    while offset + 2 <= madt_length {
        let [kind, length] = read::<2>(madt + offset);
        if length < 2 {
            return None;
        }
        let entry = madt + offset;
        match kind {
            1 if routing.ioapic_address == 0 => {
                routing.ioapic_address = u64::from(read_u32(entry + 4));
                routing.ioapic_gsi_base = read_u32(entry + 8);
            }
            2 if routing.override_count < routing.overrides.len() => {
                let [_, _, _bus, source] = read::<4>(entry);
                let flags = u16::from_le_bytes(read(entry + 8));
                if let Some(slot) = routing.overrides.get_mut(routing.override_count) {
                    *slot = (source, read_u32(entry + 4), flags);
                }
                routing.override_count += 1;
            }
            _ => {}
        }
        offset += u64::from(length);
    }
    (routing.ioapic_address != 0).then_some(routing)
}
