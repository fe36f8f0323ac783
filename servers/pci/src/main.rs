//! pci: enumerates the PCI bus through configuration mechanism #1 (ports
//! 0xCF8 and 0xCFC, its only authority), describes each device, and hands
//! devices to the drivers init names, who alone may then configure them.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use pci::{Address, Device, Pci, Reply, Request, config_address, decode_bars, is_bar_register};
use runtime::capability::{Endpoint, IoPorts};
use runtime::ipc::Buffer;
use service::init::{Init, InitReply, InitRequest};
use service::process::{Start, slot};
use service::{Client, ErrorCode};

runtime::entry!(main);

/// Ports 0xCF8..0xD00, as the system description gives them.
const CONFIG: IoPorts = IoPorts(slot::FIRST_DEVICE);
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// The command register and its decode and bus-master bits.
const COMMAND: u8 = 0x04;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// The badge init calls with.
const INIT: u64 = 0;

fn read(address: Address, offset: u8) -> u32 {
    let selected = CONFIG.write(CONFIG_ADDRESS, 4, u64::from(config_address(address, offset)));
    match selected.and_then(|()| CONFIG.read(CONFIG_DATA, 4)) {
        Ok(value) => value as u32,
        Err(_) => u32::MAX,
    }
}

fn write(address: Address, offset: u8, value: u32) {
    let selected = CONFIG.write(CONFIG_ADDRESS, 4, u64::from(config_address(address, offset)));
    let _ = selected.and_then(|()| CONFIG.write(CONFIG_DATA, 4, u64::from(value)));
}

/// The BARs of a type-0 header with their sizes: each register is written
/// with all ones and read back (decoding off meanwhile), then restored.
fn bars(address: Address) -> Vec<pci::Bar> {
    let command = read(address, COMMAND);
    write(address, COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
    let register = |index: usize| 0x10 + 4 * index as u8;
    let registers: [u32; 6] = core::array::from_fn(|index| read(address, register(index)));
    let sizing = core::array::from_fn(|index| {
        write(address, register(index), u32::MAX);
        let mask = read(address, register(index));
        write(address, register(index), registers[index]);
        mask
    });
    write(address, COMMAND, command);
    decode_bars(registers, sizing)
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
                devices.push(Device {
                    address,
                    vendor: identity as u16,
                    device: (identity >> 16) as u16,
                    class: [(class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8],
                    bars: if header_type == 0 { bars(address) } else { Vec::new() },
                    interrupt_line: read(address, 0x3c) as u8,
                });
            }
        }
    }
    devices
}

/// The bus and who owns what on it.
struct Bus {
    devices: Vec<Device>,
    /// The owner's badge of each device, by index into `devices`.
    owners: Vec<Option<u64>>,
}

impl Bus {
    fn handle(&mut self, caller: u64, request: Request) -> Result<Reply, ErrorCode> {
        match request {
            Request::Devices => Ok(Reply::Devices(self.devices.clone())),
            Request::Claim { vendor, device, owner } => {
                if caller != INIT {
                    return Err(ErrorCode::Denied);
                }
                let free = (0..self.devices.len()).find(|&index| {
                    self.owners[index].is_none()
                        && self.devices[index].vendor == vendor
                        && self.devices[index].device == device
                });
                let index = free.ok_or(ErrorCode::NotFound)?;
                self.owners[index] = Some(owner);
                let claimed = &self.devices[index];
                let command = read(claimed.address, COMMAND);
                write(
                    claimed.address,
                    COMMAND,
                    command | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER,
                );
                Ok(Reply::Device(claimed.clone()))
            }
            Request::Claimed => Ok(Reply::Devices(
                self.devices
                    .iter()
                    .zip(&self.owners)
                    .filter(|(_, owner)| **owner == Some(caller))
                    .map(|(device, _)| device.clone())
                    .collect(),
            )),
            Request::ReadConfig { address, offset } => {
                self.check_owner(caller, address, offset)?;
                Ok(Reply::Config(read(address, offset)))
            }
            Request::WriteConfig { address, offset, value } => {
                self.check_owner(caller, address, offset)?;
                if is_bar_register(offset) {
                    return Err(ErrorCode::Denied);
                }
                write(address, offset, value);
                Ok(Reply::Done)
            }
        }
    }

    /// A restarted pci server forgot who owns what: init, who claimed the
    /// devices for their drivers, says.
    fn recover_owners(&mut self, buffer: Buffer) {
        let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
        match init.call(&InitRequest::PciOwners) {
            Ok(InitReply::PciOwners(owners)) => {
                for ([bus, device, function], owner) in owners {
                    let address = Address { bus, device, function };
                    if let Some(index) = self.devices.iter().position(|found| found.address == address) {
                        self.owners[index] = Some(owner);
                    }
                }
                runtime::println!(
                    "pci: restarted; {} devices have owners again",
                    self.owners.iter().flatten().count()
                );
            }
            other => runtime::println!("pci: restarted, but init did not say who owns what: {other:?}"),
        }
    }

    /// Configuration access: the owner only, aligned registers only.
    fn check_owner(&self, caller: u64, address: Address, offset: u8) -> Result<(), ErrorCode> {
        if offset % 4 != 0 {
            return Err(ErrorCode::Malformed);
        }
        let owned = self
            .devices
            .iter()
            .zip(&self.owners)
            .any(|(device, owner)| device.address == address && *owner == Some(caller));
        if owned { Ok(()) } else { Err(ErrorCode::Denied) }
    }
}

fn main() -> u64 {
    let start = Start::get();
    let buffer = Buffer::main_thread();
    let devices = enumerate();
    runtime::println!("pci: {} functions on the bus", devices.len());
    let mut bus = Bus {
        owners: alloc::vec![None; devices.len()],
        devices,
    };
    if start.generation > 1 {
        bus.recover_owners(buffer);
    }
    let endpoint = Endpoint(slot::ENDPOINT);
    if service::names::register("pci", endpoint.0, buffer).is_err() {
        return 1;
    }
    service::serve::<Pci>(endpoint, buffer, None, |request| {
        bus.handle(request.badge, request.body).map(Into::into)
    });
    1
}
