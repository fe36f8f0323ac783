//! The PCI protocol, decoding of configuration space (host-tested), and
//! the order in which a driver receives its device's resources.
//!
//! init claims each device that the system description gives a driver
//! (`pci_devices`), and gives the driver the device's interrupt and BARs as
//! capabilities, laid out by [`resources`]. The driver asks pci which
//! devices it owns ([`Request::Claimed`]) and may then read and write their
//! configuration space, except the BARs; nobody else may touch them.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Pci;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every device found on the bus. Anyone may ask.
    Devices,
    /// From init only: hands the first unclaimed device with these ids to
    /// the process whose badge is `owner`, and turns on its I/O and memory
    /// decoding and bus mastering. Errors: `Denied` (not init), `NotFound`
    /// (no such device is free).
    Claim {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: u16,
        /// The badge of the driver that will own it.
        owner: u64,
    },
    /// The devices the caller owns, in the order they were claimed.
    Claimed,
    /// Reads the 32-bit configuration register at `offset` (a multiple of
    /// 4, below 256) of a device the caller owns. Errors: `Denied`.
    ReadConfig {
        /// The device.
        address: Address,
        /// Register offset.
        offset: u8,
    },
    /// Writes a configuration register of a device the caller owns. The
    /// BARs (0x10..0x28) are refused: moving them could overlap another
    /// device. Not idempotent in general (some registers clear on write).
    WriteConfig {
        /// The device.
        address: Address,
        /// Register offset.
        offset: u8,
        /// The value.
        value: u32,
    },
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The devices, in bus order (or claim order).
    Devices(Vec<Device>),
    /// The claimed device.
    Device(Device),
    /// A configuration register's value.
    Config(u32),
    /// Done.
    Done,
}

impl service::Protocol for Pci {
    const SERVICE: &'static str = "pci";
    type Request = Request;
    type Reply = Reply;

    fn idempotent(request: &Request) -> bool {
        // A repeated claim takes a second device.
        !matches!(request, Request::Claim { .. } | Request::WriteConfig { .. })
    }
}

/// Where a function sits on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

/// One function found on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Where it is.
    pub address: Address,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class, subclass and programming interface.
    pub class: [u8; 3],
    /// Its base address registers, decoded.
    pub bars: Vec<Bar>,
    /// The legacy interrupt line firmware routed it to (255: none).
    pub interrupt_line: u8,
}

/// A base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bar {
    /// A range of I/O ports.
    Ports {
        /// BAR index (0..6).
        index: u8,
        /// First port.
        base: u16,
        /// Number of ports.
        size: u16,
    },
    /// A range of memory-mapped registers.
    Memory {
        /// BAR index (0..6).
        index: u8,
        /// Physical address.
        base: u64,
        /// Size in bytes.
        size: u64,
        /// 64-bit BAR (it used the next register too).
        wide: bool,
    },
}

/// Decodes the six BAR registers of a type-0 header. `sizing` holds what
/// each register read back after all ones were written to it, which gives
/// the BAR's size. An unused BAR is left out; a 64-bit memory BAR takes
/// its neighbour as the high half.
pub fn decode_bars(registers: [u32; 6], sizing: [u32; 6]) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut index = 0;
    while index < registers.len() {
        let (value, mask) = (registers[index], sizing[index]);
        let wide = value & 1 == 0 && (value >> 1) & 0b11 == 0b10;
        if value & 1 == 1 {
            let base = (value & !0b11) as u16;
            let size = (!(mask & !0b11)).wrapping_add(1) as u16;
            if base != 0 && size != 0 {
                bars.push(Bar::Ports {
                    index: index as u8,
                    base,
                    size,
                });
            }
        } else {
            let high = |array: [u32; 6], default: u32| match wide {
                true => array.get(index + 1).copied().unwrap_or(default),
                false => default,
            };
            let base = u64::from(value & !0xf) | u64::from(high(registers, 0)) << 32;
            let size_mask = u64::from(mask & !0xf) | u64::from(high(sizing, u32::MAX)) << 32;
            let size = (!size_mask).wrapping_add(1);
            if base != 0 && size != 0 {
                bars.push(Bar::Memory {
                    index: index as u8,
                    base,
                    size,
                    wide,
                });
            }
        }
        index += if wide { 2 } else { 1 };
    }
    bars
}

/// The configuration-space address for port 0xCF8 (mechanism #1).
pub fn config_address(address: Address, offset: u8) -> u32 {
    1 << 31
        | u32::from(address.bus) << 16
        | u32::from(address.device & 0x1f) << 11
        | u32::from(address.function & 0x7) << 8
        | u32::from(offset & 0xfc)
}

/// Whether a configuration write to `offset` would touch a BAR.
pub fn is_bar_register(offset: u8) -> bool {
    (0x10..0x28).contains(&offset)
}

/// One capability a driver receives for its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The device's interrupt line.
    Interrupt(u8),
    /// An I/O BAR's ports.
    Ports {
        /// BAR index.
        bar: u8,
        /// First port.
        first: u16,
        /// Number of ports.
        count: u16,
    },
    /// One 4 KiB page of a memory BAR.
    MemoryPage {
        /// BAR index.
        bar: u8,
        /// Physical address of the page.
        address: u64,
    },
}

/// The most pages of one memory BAR handed over; larger BARs (frame
/// buffers) are left out until device frames can span many pages.
pub const MAX_BAR_PAGES: u64 = 64;

/// The capabilities a driver receives for `device`, in slot order: its
/// interrupt (if routed), then each I/O BAR, then each memory BAR page by
/// page (BARs larger than [`MAX_BAR_PAGES`] are left out). init gives them
/// in this order and the driver finds them by the same function.
pub fn resources(device: &Device) -> Vec<Resource> {
    let mut resources = Vec::new();
    if device.interrupt_line != 255 {
        resources.push(Resource::Interrupt(device.interrupt_line));
    }
    for bar in &device.bars {
        if let &Bar::Ports { index, base, size } = bar {
            resources.push(Resource::Ports {
                bar: index,
                first: base,
                count: size,
            });
        }
    }
    for bar in &device.bars {
        if let &Bar::Memory { index, base, size, .. } = bar {
            let pages = size.div_ceil(4096);
            if pages <= MAX_BAR_PAGES && base % 4096 == 0 {
                resources.extend((0..pages).map(|page| Resource::MemoryPage {
                    bar: index,
                    address: base + page * 4096,
                }));
            }
        }
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_memory_and_wide_bars_decode_with_their_sizes() {
        let registers = [0xc041, 0xfebf_1000, 0x0000_000c, 0x1, 0, 0];
        let sizing = [0xffff_ffc1, 0xffff_f000, 0xffff_c00c, 0xffff_ffff, 0, 0];
        assert_eq!(
            decode_bars(registers, sizing),
            [
                Bar::Ports {
                    index: 0,
                    base: 0xc040,
                    size: 0x40
                },
                Bar::Memory {
                    index: 1,
                    base: 0xfebf_1000,
                    size: 0x1000,
                    wide: false
                },
                Bar::Memory {
                    index: 2,
                    base: 0x1_0000_0000,
                    size: 0x4000,
                    wide: true
                },
            ]
        );
    }

    #[test]
    fn empty_bars_are_left_out() {
        assert!(decode_bars([0; 6], [0; 6]).is_empty());
        // A wide BAR in the last register has no high half to borrow.
        assert_eq!(
            decode_bars([0, 0, 0, 0, 0, 0xfe00_0004], [0, 0, 0, 0, 0, 0xfff0_0004]),
            [Bar::Memory {
                index: 5,
                base: 0xfe00_0000,
                size: 0x10_0000,
                wide: true
            }]
        );
    }

    #[test]
    fn config_addresses_follow_mechanism_one() {
        let address = Address {
            bus: 1,
            device: 3,
            function: 2,
        };
        assert_eq!(config_address(address, 0x10), 0x8001_1a10);
        assert_eq!(config_address(address, 0x13), 0x8001_1a10, "offsets are dword-aligned");
        assert!(is_bar_register(0x10) && is_bar_register(0x24) && !is_bar_register(0x28) && !is_bar_register(0x04));
    }

    #[test]
    fn resources_come_interrupt_then_ports_then_pages() {
        let device = Device {
            address: Address {
                bus: 0,
                device: 4,
                function: 0,
            },
            vendor: 0x1af4,
            device: 0x1001,
            class: [1, 0, 0],
            bars: decode_bars(
                [0xfebf_2000, 0xc041, 0xe000_0000, 0, 0, 0],
                [0xffff_e000, 0xffff_ffc1, 0xf000_0000, 0, 0, 0],
            ),
            interrupt_line: 11,
        };
        assert_eq!(
            resources(&device),
            [
                Resource::Interrupt(11),
                Resource::Ports {
                    bar: 1,
                    first: 0xc040,
                    count: 0x40
                },
                Resource::MemoryPage {
                    bar: 0,
                    address: 0xfebf_2000
                },
                Resource::MemoryPage {
                    bar: 0,
                    address: 0xfebf_3000
                },
                // BAR 2 (256 MiB) is too large to hand over page by page.
            ]
        );
    }
}
