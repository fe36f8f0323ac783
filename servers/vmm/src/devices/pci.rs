//! PCI for the guest: configuration mechanism #1 (the address register at
//! [`PCI_CONFIG_ADDRESS`](vm_platform::PCI_CONFIG_ADDRESS), the data
//! window at [`PCI_CONFIG_DATA`](vm_platform::PCI_CONFIG_DATA)) and the
//! type-0 configuration header of each function on bus 0.
//!
//! A [`ConfigSpace`] is one function's header: identity fields that read
//! only, the command register (I/O decoding, bus mastering, INTx
//! disable), at most one I/O BAR (BAR0, sized as the PCI specification
//! says: writing all ones reads back the size mask), the interrupt line
//! and pin. There are no capabilities, no memory BARs, no expansion ROM.
//! The VMM plays firmware: BAR0 starts assigned and the interrupt line
//! holds the I/O APIC pin the function's INTA reaches, as a BIOS leaves
//! them; the guest may move the BAR.

use super::all_ones;

/// The address register's enable bit.
const ENABLE: u32 = 1 << 31;

/// Command register bits the guest may set: I/O space, memory space, bus
/// master, INTx disable.
pub mod command {
    /// I/O space decoding.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Memory space decoding (accepted; no memory BARs exist).
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// Bus mastering: the function may read and write guest RAM.
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx disable.
    pub const INTERRUPT_DISABLE: u16 = 1 << 10;
}
/// Status register: an interrupt is pending.
const INTERRUPT_STATUS: u16 = 1 << 3;
/// A BAR's I/O-space indicator.
const BAR_IO: u32 = 1;

/// Where a configuration access goes, as decoded from the address
/// register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigAddress {
    /// The bus number.
    pub bus: u8,
    /// The device (slot), 0..32.
    pub slot: u8,
    /// The function, 0..8.
    pub function: u8,
    /// The byte offset in the 256-byte header, of the dword the register
    /// names plus the data port's offset (0..=3).
    pub offset: u8,
}

impl ConfigAddress {
    /// Decodes `register` (the address register's value) for an access
    /// through data port `0xCFC + byte`; `None` when its enable bit is
    /// clear (the access goes nowhere).
    pub fn decode(register: u32, byte: u8) -> Option<Self> {
        if register & ENABLE == 0 {
            return None;
        }
        Some(Self {
            bus: (register >> 16) as u8,
            slot: ((register >> 11) & 0x1f) as u8,
            function: ((register >> 8) & 0x7) as u8,
            offset: (register as u8 & 0xfc) | (byte & 3),
        })
    }
}

/// What a function is: the header's read-only identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code: base class, subclass, programming interface.
    pub class: [u8; 3],
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// One function's configuration header (type 0).
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    identity: Identity,
    command: u16,
    cache_line_size: u8,
    latency_timer: u8,
    /// BAR0's size in bytes (a power of two, at least 4), if it has one.
    io_size: u16,
    /// BAR0's value: the base, with the size's low bits clear.
    io_base: u16,
    /// The interrupt line register (the guest's to write; firmware's
    /// value is the I/O APIC pin).
    interrupt_line: u8,
    /// INTA if the function interrupts, else none (0).
    interrupt_pin: u8,
}

impl ConfigSpace {
    /// A function with `identity`, no BAR and no interrupt: a host bridge.
    pub fn bridge(identity: Identity) -> Self {
        Self {
            identity,
            command: 0,
            cache_line_size: 0,
            latency_timer: 0,
            io_size: 0,
            io_base: 0,
            interrupt_line: 0,
            interrupt_pin: 0,
        }
    }

    /// A function with `identity`, an I/O BAR of `io_size` bytes (a power
    /// of two from 4 to 256) at `io_base`, and INTA reaching I/O APIC pin
    /// `interrupt`.
    pub fn device(identity: Identity, io_size: u16, io_base: u16, interrupt: u8) -> Self {
        debug_assert!(io_size.is_power_of_two() && (4..=256).contains(&io_size));
        Self {
            io_size,
            io_base: io_base & !(io_size - 1),
            interrupt_line: interrupt,
            interrupt_pin: 1,
            ..Self::bridge(identity)
        }
    }

    /// The header's dword at `offset & !3`.
    fn dword(&self, offset: u8, interrupt_pending: bool) -> u32 {
        let identity = &self.identity;
        let pair = |low: u16, high: u16| u32::from(low) | (u32::from(high) << 16);
        match offset & 0xfc {
            0x00 => pair(identity.vendor, identity.device),
            0x04 => {
                let status = if interrupt_pending { INTERRUPT_STATUS } else { 0 };
                pair(self.command, status)
            }
            0x08 => u32::from_le_bytes([
                identity.revision,
                identity.class[2],
                identity.class[1],
                identity.class[0],
            ]),
            // Header type 0, single function; no BIST.
            0x0c => u32::from(self.cache_line_size) | (u32::from(self.latency_timer) << 8),
            0x10 if self.io_size != 0 => u32::from(self.io_base) | BAR_IO,
            0x2c => pair(identity.subsystem_vendor, identity.subsystem),
            0x3c => u32::from(self.interrupt_line) | (u32::from(self.interrupt_pin) << 8),
            _ => 0,
        }
    }

    /// A read of `size` bytes (1, 2 or 4) at `offset`; bytes past the
    /// dword read as zero (a misaligned access, which PCI does not have).
    /// `interrupt_pending` is the function's interrupt status.
    pub fn read(&self, offset: u8, size: u8, interrupt_pending: bool) -> u32 {
        let shift = u32::from(offset & 3) * 8;
        let value = self.dword(offset, interrupt_pending).checked_shr(shift).unwrap_or(0);
        value & all_ones(size)
    }

    /// A write of `size` bytes at `offset`; read-only fields ignore it.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        let shift = u32::from(offset & 3) * 8;
        let old = self.dword(offset, false);
        let field = all_ones(size).checked_shl(shift).unwrap_or(0);
        let merged = (old & !field) | (value.checked_shl(shift).unwrap_or(0) & field);
        match offset & 0xfc {
            0x04 if field & 0xffff != 0 => {
                let writable = command::IO_SPACE
                    | command::MEMORY_SPACE
                    | command::BUS_MASTER
                    | command::INTERRUPT_DISABLE;
                self.command = merged as u16 & writable;
            }
            0x0c => {
                self.cache_line_size = merged as u8;
                self.latency_timer = (merged >> 8) as u8;
            }
            0x10 if self.io_size != 0 => {
                // The low bits of a BAR are its size: all ones reads back
                // the size mask.
                self.io_base = merged as u16 & !(self.io_size - 1) & 0xfffc;
            }
            0x3c => self.interrupt_line = merged as u8,
            _ => {}
        }
    }

    /// The I/O ports BAR0 decodes, if it has one and I/O decoding is on.
    pub fn io_range(&self) -> Option<core::ops::Range<u16>> {
        if self.io_size == 0 || self.command & command::IO_SPACE == 0 {
            return None;
        }
        Some(self.io_base..self.io_base.saturating_add(self.io_size))
    }

    /// Whether the function may raise INTx (not disabled in the command
    /// register).
    pub fn interrupts_enabled(&self) -> bool {
        self.command & command::INTERRUPT_DISABLE == 0
    }

    /// Whether the function may read and write guest RAM.
    pub fn bus_master(&self) -> bool {
        self.command & command::BUS_MASTER != 0
    }
}

/// A function on the bus, as the bus sees it: its header, its interrupt
/// status, and the registers its I/O BAR decodes.
pub trait Function {
    /// Its configuration header.
    fn config(&self) -> &ConfigSpace;
    /// Its configuration header, to write.
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// Whether it has an interrupt pending (the status register's bit;
    /// INTA is asserted while this holds and INTx is not disabled).
    fn interrupt_pending(&self) -> bool;
    /// A read of `size` bytes from a port its BAR decodes.
    fn port_read(&mut self, port: u16, size: u8) -> u32;
    /// A write to a port its BAR decodes.
    fn port_write(&mut self, port: u16, value: u32);

    /// The level of its INTA line.
    fn interrupt_line(&self) -> bool {
        self.interrupt_pending() && self.config().interrupts_enabled()
    }

    /// Whether its BAR decodes `port`.
    fn decodes(&self, port: u16) -> bool {
        self.config().io_range().is_some_and(|range| range.contains(&port))
    }
}

/// A host bridge: a header and nothing else.
impl Function for ConfigSpace {
    fn config(&self) -> &ConfigSpace {
        self
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        self
    }

    fn interrupt_pending(&self) -> bool {
        false
    }

    fn port_read(&mut self, _port: u16, size: u8) -> u32 {
        all_ones(size)
    }

    fn port_write(&mut self, _port: u16, _value: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: Identity = Identity {
        vendor: 0x1af4,
        device: 0x1001,
        revision: 0,
        class: [0x01, 0x00, 0x00],
        subsystem_vendor: 0x1af4,
        subsystem: 2,
    };

    #[test]
    fn the_address_register_names_bus_slot_function_and_offset() {
        let register = ENABLE | (0 << 16) | (3 << 11) | (1 << 8) | 0x3c;
        assert_eq!(
            ConfigAddress::decode(register, 1),
            Some(ConfigAddress {
                bus: 0,
                slot: 3,
                function: 1,
                offset: 0x3d
            })
        );
        assert_eq!(ConfigAddress::decode(register & !ENABLE, 0), None, "disabled");
        // The low two bits of the register are not part of the offset.
        assert_eq!(ConfigAddress::decode(ENABLE | 0x13, 0).map(|address| address.offset), Some(0x10));
        assert_eq!(
            ConfigAddress::decode(ENABLE | (0xff << 16) | (31 << 11) | (7 << 8), 3),
            Some(ConfigAddress {
                bus: 0xff,
                slot: 31,
                function: 7,
                offset: 3
            })
        );
    }

    #[test]
    fn the_header_reads_its_identity_in_any_width() {
        let space = ConfigSpace::device(IDENTITY, 0x40, 0xc100, 17);
        assert_eq!(space.read(0, 4, false), 0x1001_1af4);
        assert_eq!(space.read(2, 2, false), 0x1001);
        assert_eq!(space.read(1, 1, false), 0x1a);
        assert_eq!(space.read(0x08, 4, false), 0x0100_0000, "class 01, subclass 00, revision 0");
        assert_eq!(space.read(0x0b, 1, false), 0x01);
        assert_eq!(space.read(0x0e, 1, false), 0, "header type 0");
        assert_eq!(space.read(0x2e, 2, false), 2, "the subsystem: the virtio device type");
        assert_eq!(space.read(0x3c, 2, false), 0x0111, "INTA, line 17");
        assert_eq!(space.read(0x34, 1, false), 0, "no capabilities");
        assert_eq!(space.read(0x06, 2, true), u32::from(INTERRUPT_STATUS));
        assert_eq!(space.read(0xff, 1, false), 0);
    }

    #[test]
    fn identity_fields_ignore_writes_and_the_command_register_keeps_its_bits() {
        let mut space = ConfigSpace::device(IDENTITY, 0x40, 0xc100, 17);
        space.write(0, 4, 0xdead_beef);
        space.write(0x08, 4, 0xffff_ffff);
        assert_eq!(space.read(0, 4, false), 0x1001_1af4);
        assert_eq!(space.read(0x08, 4, false), 0x0100_0000);
        assert_eq!(space.io_range(), None, "I/O decoding starts off");
        space.write(0x04, 2, 0xffff);
        assert_eq!(space.read(0x04, 2, false), 0x0407);
        assert_eq!(space.io_range(), Some(0xc100..0xc140));
        assert!(space.bus_master());
        assert!(!space.interrupts_enabled());
        // A byte write to the status half leaves the command alone.
        space.write(0x06, 1, 0xff);
        assert_eq!(space.read(0x04, 2, false), 0x0407);
        space.write(0x3c, 1, 5);
        assert_eq!(space.read(0x3c, 2, false), 0x0105, "the pin stays INTA");
    }

    #[test]
    fn a_bar_is_sized_by_writing_all_ones_and_can_move() {
        let mut space = ConfigSpace::device(IDENTITY, 0x40, 0xc100, 17);
        assert_eq!(space.read(0x10, 4, false), 0xc101, "an I/O BAR at 0xc100");
        space.write(0x10, 4, 0xffff_ffff);
        let size_mask = space.read(0x10, 4, false) & !BAR_IO;
        assert_eq!(!size_mask as u16 + 1, 0x40, "the size from the mask");
        space.write(0x10, 4, 0xd04f);
        space.write(0x04, 2, u32::from(command::IO_SPACE));
        assert_eq!(space.io_range(), Some(0xd040..0xd080), "aligned down to the size");
        assert_eq!(space.read(0x14, 4, false), 0, "no other BARs");
        let bridge = ConfigSpace::bridge(IDENTITY);
        assert_eq!(bridge.read(0x10, 4, false), 0);
        assert_eq!(bridge.read(0x3d, 1, false), 0, "no interrupt pin");
    }
}
