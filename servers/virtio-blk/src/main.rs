//! virtio-blk: drives one virtio block device through its legacy I/O BAR
//! and serves the block protocol.
//!
//! Its authority is what init gave it for the device (the interrupt and the
//! I/O BAR) and pci's configuration access to that device alone. DMA goes
//! through frames it makes itself, physically consecutive, whose addresses
//! the kernel reports; clients' data is copied between their shared
//! transfer buffers and that memory, so the device only ever touches the
//! driver's own pages. One request is in flight at a time; completions
//! arrive by interrupt.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Rights;
use alloc::vec::Vec;
use block::{Driver, Error, MAX_TRANSFER};
use core::ops::Range;
use pci::{Pci, Resource};
use runtime::capability::{
    self, AddressSpace, Destination, Endpoint, Frame, IoPorts, Irq, Memory, Notification, Slot, Slots,
};
use runtime::ipc::Buffer;
use runtime::memory::Region;
use service::Client;
use service::process::{CSPACE_SLOTS, slot};
use service::transfer::SharedPages;
use virtio::block::{RequestHeader, feature, request_status, request_type};
use virtio::queue::{self, Descriptor, Layout, descriptor_flag};
use virtio::{legacy, status};

runtime::entry!(main, heap_kib = 256);

const OWN_SPACE: AddressSpace = AddressSpace(slot::ADDRESS_SPACE);
/// Bytes of DMA memory after the queue: a page for the request header and
/// status byte, then the data pages.
const HEADER_PAGE: usize = 4096;
const STATUS_OFFSET: usize = RequestHeader::BYTES;

/// The device, set up.
struct Device {
    ports: IoPorts,
    base: u16,
    irq: Irq,
    interrupts: Notification,
    /// Queue, header page and data, in one run of DMA memory.
    dma: Region,
    dma_physical: u64,
    layout: Layout,
    /// The next running index of the available ring.
    next_available: u16,
    /// The used-ring index seen last.
    last_used: u16,
    sectors: u64,
    features: u32,
}

fn main() -> u64 {
    match run() {
        Ok(never) => match never {},
        Err(message) => {
            runtime::println!("virtio-blk: {message}");
            1
        }
    }
}

fn run() -> Result<core::convert::Infallible, &'static str> {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let memory = Memory(slot::MEMORY);
    let pci =
        Client::<Pci>::connect(slots.allocate().map_err(|_| "no slots")?, buffer).map_err(|_| "no pci service")?;
    let Ok(pci::Reply::Devices(devices)) = pci.call(&pci::Request::Claimed) else {
        return Err("pci does not answer");
    };
    let device = devices.first().ok_or("no device was given to this driver")?;
    let mut found = (None, None);
    for (index, resource) in (slot::FIRST_DEVICE.0..).zip(pci::resources(device)) {
        match resource {
            Resource::Interrupt(_) => found.0 = Some(Irq(Slot(index))),
            Resource::Ports { bar: 0, first, .. } => found.1 = Some((IoPorts(Slot(index)), first)),
            _ => {}
        }
    }
    let (Some(irq), Some((ports, base))) = found else {
        return Err("the device has no interrupt or no legacy I/O BAR");
    };
    let mut device = Device::start(&slots, memory, ports, base, irq).map_err(|_| "the device did not start")?;
    runtime::println!(
        "virtio-blk: {} sectors ({} MiB){}",
        device.sectors,
        device.sectors / 2048,
        if device.read_only() { ", read-only" } else { "" }
    );
    let receive = slots.allocate().map_err(|_| "no slots")?;
    let error = block::serve(
        &mut device,
        Endpoint(slot::ENDPOINT),
        buffer,
        receive,
        &slots,
        OWN_SPACE,
    );
    runtime::println!("virtio-blk: stopped serving: {error:?}");
    Err("the endpoint failed")
}

impl block::Driver for Device {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.features & feature::READ_ONLY != 0
    }

    fn read(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error> {
        self.submit(request_type::READ, sector, bytes.len())?;
        transfer
            .copy_in(bytes.start, bytes.len(), &self.dma, self.data_offset())
            .map_err(|_| Error::NoBuffer)
    }

    fn write(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error> {
        transfer
            .copy_out(bytes.start, bytes.len(), &self.dma, self.data_offset())
            .map_err(|_| Error::NoBuffer)?;
        self.submit(request_type::WRITE, sector, bytes.len())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.features & feature::FLUSH != 0 {
            self.submit(request_type::FLUSH, 0, 0)?;
        }
        Ok(())
    }
}

/// Where the header page starts in the DMA memory: after the queue
/// `layout` describes, on a page.
fn header_offset(layout: &Layout) -> usize {
    layout.bytes().next_multiple_of(queue::ALIGNMENT)
}

impl Device {
    /// Resets the device, negotiates features and sets up queue 0.
    fn start(slots: &Slots, memory: Memory, ports: IoPorts, base: u16, irq: Irq) -> Result<Self, abi::Error> {
        let write = |offset: u16, width: u8, value: u64| ports.write(base + offset, width, value);
        let read = |offset: u16, width: u8| ports.read(base + offset, width);
        write(legacy::STATUS, 1, 0)?;
        write(legacy::STATUS, 1, u64::from(status::ACKNOWLEDGE))?;
        write(legacy::STATUS, 1, u64::from(status::ACKNOWLEDGE | status::DRIVER))?;
        let offered = read(legacy::DEVICE_FEATURES, 4)? as u32;
        let features = offered & (feature::FLUSH | feature::READ_ONLY);
        write(legacy::DRIVER_FEATURES, 4, u64::from(features))?;
        write(legacy::QUEUE_SELECT, 2, 0)?;
        let size = read(legacy::QUEUE_SIZE, 2)? as u16;
        if size < 3 || !size.is_power_of_two() {
            write(legacy::STATUS, 1, u64::from(status::FAILED))?;
            return Err(abi::Error::new(abi::ErrorKind::InvalidState));
        }
        let layout = Layout::legacy(size);
        let pages = ((header_offset(&layout) + HEADER_PAGE + MAX_TRANSFER) / 4096) as u64;
        let first = slots.allocate()?;
        for _ in 1..pages {
            slots.allocate()?;
        }
        memory.create_contiguous_frames(first, pages)?;
        let frames = (0..pages).map(|page| Frame(Slot(first.0 + page)));
        let dma = Region::map(
            OWN_SPACE,
            frames.collect::<Vec<_>>().into_iter(),
            Rights::READ | Rights::WRITE,
        )?;
        let dma_physical = capability::identify(first)?.physical;
        // The queue opens the DMA memory, which starts on a page.
        write(legacy::QUEUE_ADDRESS, 4, dma_physical / queue::ALIGNMENT as u64)?;
        let interrupts = memory.create_notification(slots.allocate()?)?;
        let signal = Notification(slots.allocate()?);
        capability::mint(interrupts, Destination::own(signal.0), Rights::WRITE, 1)?;
        irq.bind(signal)?;
        irq.acknowledge()?;
        // The block device's configuration opens with its capacity in
        // sectors, 64 bits read as two halves.
        let low = read(legacy::CONFIGURATION, 4)?;
        let high = read(legacy::CONFIGURATION + 4, 4)?;
        write(
            legacy::STATUS,
            1,
            u64::from(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK),
        )?;
        Ok(Self {
            ports,
            base,
            irq,
            interrupts,
            dma,
            dma_physical,
            layout,
            next_available: 0,
            last_used: 0,
            sectors: high << 32 | low,
            features,
        })
    }

    /// Offset in DMA memory of the data.
    fn data_offset(&self) -> usize {
        header_offset(&self.layout) + HEADER_PAGE
    }

    /// Puts one request (header, data of `length` bytes, status) on the
    /// queue, tells the device, and waits for its completion interrupt.
    fn submit(&mut self, kind: u32, sector: u64, length: usize) -> Result<(), Error> {
        self.try_submit(kind, sector, length).map_err(|_| Error::Device)?
    }

    fn try_submit(&mut self, kind: u32, sector: u64, length: usize) -> Result<Result<(), Error>, Fault> {
        let header = header_offset(&self.layout);
        let physical = |offset: usize| self.dma_physical + offset as u64;
        let request = RequestHeader {
            request_type: kind,
            sector,
        };
        self.dma.write(header, &request.to_bytes())?;
        self.dma.store::<u8>(header + STATUS_OFFSET, 0xff)?;
        let data_flags = if kind == request_type::READ {
            descriptor_flag::WRITE
        } else {
            0
        };
        let mut chain = Vec::new();
        chain.push((physical(header), RequestHeader::BYTES as u32, 0));
        if length > 0 {
            chain.push((physical(self.data_offset()), length as u32, data_flags));
        }
        chain.push((physical(header + STATUS_OFFSET), 1, descriptor_flag::WRITE));
        let links = chain.len() as u16;
        for (index, (address, length, flags)) in (0u16..).zip(chain) {
            let next = if index + 1 < links { descriptor_flag::NEXT } else { 0 };
            let descriptor = Descriptor {
                address,
                length,
                flags: flags | next,
                next: index + 1,
            };
            self.dma.write(self.layout.descriptor(index), &descriptor.to_bytes())?;
        }
        self.dma
            .store::<u16>(self.layout.available_entry(self.next_available), 0)?;
        self.next_available = self.next_available.wrapping_add(1);
        // The entry must be visible before the index that publishes it.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.dma
            .store::<u16>(self.layout.available_index(), self.next_available)?;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        // An injected stuck request is queued but the device never hears
        // of it: the driver waits for ever, and its supervisor kills it.
        if !fault_hooks::take_stuck_request() {
            self.ports.write(self.base + legacy::QUEUE_NOTIFY, 2, 0)?;
        }
        while self.dma.load::<u16>(self.layout.used_index())? == self.last_used {
            self.interrupts.wait()?;
            // Reading the status lowers the line before it is unmasked.
            self.ports.read(self.base + legacy::INTERRUPT_STATUS, 1)?;
            self.irq.acknowledge()?;
        }
        self.last_used = self.last_used.wrapping_add(1);
        let done = self.dma.load::<u8>(header + STATUS_OFFSET)?;
        Ok(if done == request_status::OK {
            Ok(())
        } else {
            Err(Error::Device)
        })
    }
}

/// Something went wrong talking to the device or the kernel.
struct Fault;

impl From<abi::Error> for Fault {
    fn from(_: abi::Error) -> Self {
        Self
    }
}

impl From<runtime::memory::OutOfBounds> for Fault {
    fn from(_: runtime::memory::OutOfBounds) -> Self {
        Self
    }
}
