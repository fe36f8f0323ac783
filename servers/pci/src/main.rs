//! pci: enumerates the PCI bus through configuration mechanism #1 (ports
//! 0xCF8 and 0xCFC, its only authority) and describes each device.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use pci::{Address, Device, Pci, Reply, Request, config_address, decode_bars};
use runtime::capability::{Endpoint, IoPorts, Memory, Slots};
use runtime::ipc::Buffer;
use service::process::{CSPACE_SLOTS, slot};

runtime::entry!(main);

/// Ports 0xCF8..0xD00, as the system description gives them.
const CONFIG: IoPorts = IoPorts(slot::FIRST_DEVICE);
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

fn read(address: Address, offset: u8) -> u32 {
    let selected = CONFIG.write(CONFIG_ADDRESS, 4, u64::from(config_address(address, offset)));
    match selected.and_then(|()| CONFIG.read(CONFIG_DATA, 4)) {
        Ok(value) => value as u32,
        Err(_) => u32::MAX,
    }
}

/// Every function present: bus by bus, device by device; functions 1..8
/// only where function 0 says the device has several.
fn enumerate() -> Vec<Device> {
    let mut devices = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let first = Address {
                bus,
                device,
                function: 0,
            };
            if read(first, 0) & 0xffff == 0xffff {
                continue;
            }
            let multifunction = read(first, 0x0c) >> 16 & 0x80 != 0;
            for function in 0..if multifunction { 8 } else { 1 } {
                let address = Address { bus, device, function };
                let identity = read(address, 0);
                if identity & 0xffff == 0xffff {
                    continue;
                }
                let class = read(address, 0x08);
                let header_type = read(address, 0x0c) >> 16 & 0x7f;
                let bars = if header_type == 0 {
                    decode_bars(core::array::from_fn(|index| read(address, 0x10 + 4 * index as u8)))
                } else {
                    Vec::new()
                };
                devices.push(Device {
                    address,
                    vendor: identity as u16,
                    device: (identity >> 16) as u16,
                    class: [(class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8],
                    bars,
                    interrupt_line: read(address, 0x3c) as u8,
                });
            }
        }
    }
    devices
}

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let devices = enumerate();
    runtime::println!("pci: {} functions on the bus", devices.len());
    let Ok(endpoint_slot) = slots.allocate() else { return 1 };
    let Ok(endpoint) = Memory(slot::MEMORY).create_endpoint(endpoint_slot) else {
        return 1;
    };
    if service::names::register("pci", endpoint.0, buffer).is_err() {
        return 1;
    }
    service::serve::<Pci>(Endpoint(endpoint.0), buffer, None, |request| match request.body {
        Request::Devices => Ok(Reply::Devices(devices.clone()).into()),
    });
    1
}
