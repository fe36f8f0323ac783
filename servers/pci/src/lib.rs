//! The PCI protocol, and decoding of configuration space (host-tested).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Pci;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every device found on the bus.
    Devices,
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The devices, in bus order.
    Devices(Vec<Device>),
}

impl service::Protocol for Pci {
    const SERVICE: &'static str = "pci";
    type Request = Request;
    type Reply = Reply;

    fn idempotent(_: &Request) -> bool {
        true
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
    },
    /// A range of memory-mapped registers.
    Memory {
        /// BAR index (0..6).
        index: u8,
        /// Physical address.
        base: u64,
        /// 64-bit BAR (it used the next register too).
        wide: bool,
    },
}

/// Decodes the six BAR registers of a type-0 header. An unused BAR (0)
/// is left out; a 64-bit memory BAR takes its neighbour as the high half.
pub fn decode_bars(registers: [u32; 6]) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut index = 0;
    while index < registers.len() {
        let value = registers[index];
        let wide = value & 1 == 0 && (value >> 1) & 0b11 == 0b10;
        if value & 1 == 1 {
            let base = (value & !0b11) as u16;
            if base != 0 {
                bars.push(Bar::Ports {
                    index: index as u8,
                    base,
                });
            }
        } else {
            let high = if wide {
                registers.get(index + 1).copied().unwrap_or(0)
            } else {
                0
            };
            let base = u64::from(value & !0xf) | u64::from(high) << 32;
            if base != 0 {
                bars.push(Bar::Memory {
                    index: index as u8,
                    base,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_memory_and_wide_bars_decode() {
        let registers = [0xc041, 0xfebf_1000, 0x0000_000c, 0x1, 0, 0];
        assert_eq!(
            decode_bars(registers),
            [
                Bar::Ports { index: 0, base: 0xc040 },
                Bar::Memory {
                    index: 1,
                    base: 0xfebf_1000,
                    wide: false
                },
                Bar::Memory {
                    index: 2,
                    base: 0x1_0000_0000,
                    wide: true
                },
            ]
        );
    }

    #[test]
    fn empty_bars_are_left_out() {
        assert!(decode_bars([0; 6]).is_empty());
        // A wide BAR in the last register has no high half to borrow.
        assert_eq!(
            decode_bars([0, 0, 0, 0, 0, 0xfe00_0004]),
            [Bar::Memory {
                index: 5,
                base: 0xfe00_0000,
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
    }
}
