//! ata: drives the master disk of the secondary IDE channel (ports
//! 0x170..0x178 and 0x376, interrupt 15, as the system description gives
//! them) by programmed I/O, and serves the block protocol. The drive
//! raises the interrupt the driver waits for before each block of sectors:
//! 16 once SET MULTIPLE MODE has taken (READ/WRITE MULTIPLE EXT), one on a
//! drive without that mode. Each call to the kernel moves up to 1 KiB
//! through the data register (`IoPorts::read_string`, `write_string`).
//!
//! For machines without virtio (Bochs); QEMU's IDE disk works the same.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use ata::{Identity, MASTER_LBA, command, lba48_registers, parse_identity, register, status};
use abi::PORT_STRING_MAX;
use block::{Error, SECTOR_SIZE};
use core::ops::Range;
use runtime::capability::{self, AddressSpace, Destination, Endpoint, IoPorts, Irq, Memory, Notification, Slot, Slots};
use runtime::ipc::Buffer;
use service::process::{CSPACE_SLOTS, slot};
use service::transfer::SharedPages;

runtime::entry!(main, heap_kib = 256);

/// The description's devices, in its order: the interrupt, the command
/// block, then the control register.
const IRQ: Irq = Irq(slot::FIRST_DEVICE);
const COMMAND_BLOCK: IoPorts = IoPorts(Slot(slot::FIRST_DEVICE.0 + 1));
const CONTROL: IoPorts = IoPorts(Slot(slot::FIRST_DEVICE.0 + 2));
const BASE: u16 = 0x170;
const CONTROL_PORT: u16 = 0x376;
/// The device control register's software-reset bit.
const SOFTWARE_RESET: u64 = 0x04;
/// Timer ticks the drive may stay busy after a reset.
const RESET_POLLS: u32 = 100;

/// The disk.
struct Disk {
    identity: Identity,
    interrupts: Notification,
    /// Sectors moved per interrupt: the block SET MULTIPLE MODE set, or 1
    /// (READ/WRITE SECTORS) if the drive has no such mode.
    block: u16,
}

fn main() -> u64 {
    match run() {
        Ok(never) => match never {},
        Err(message) => {
            runtime::println!("ata: {message}");
            1
        }
    }
}

fn run() -> Result<core::convert::Infallible, &'static str> {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let memory = Memory(slot::MEMORY);
    let mut disk = Disk::start(&slots, memory)?;
    runtime::println!(
        "ata: {} sectors ({} MiB) on the secondary channel, {} per interrupt",
        disk.identity.sectors,
        disk.identity.sectors / 2048,
        disk.block
    );
    let receive = slots.allocate().map_err(|_| "no slots")?;
    let error = block::serve(
        &mut disk,
        Endpoint(slot::ENDPOINT),
        buffer,
        receive,
        &slots,
        AddressSpace(slot::ADDRESS_SPACE),
    );
    runtime::println!("ata: stopped serving: {error:?}");
    Err("the endpoint failed")
}

fn read_register(offset: u16) -> Result<u8, Error> {
    COMMAND_BLOCK
        .read(BASE + offset, 1)
        .map(|value| value as u8)
        .map_err(|_| Error::Device)
}

fn write_register(offset: u16, value: u8) -> Result<(), Error> {
    COMMAND_BLOCK
        .write(BASE + offset, 1, u64::from(value))
        .map_err(|_| Error::Device)
}

/// Drains `data.len()` bytes from the data register, a 16-bit word at a
/// time (little-endian, as the device sends them).
fn read_data(data: &mut [u8]) -> Result<(), Error> {
    COMMAND_BLOCK
        .read_string(BASE + register::DATA, 2, data)
        .map_err(|_| Error::Device)
}

impl Disk {
    /// Enables the channel's interrupt and identifies the master drive.
    fn start(slots: &Slots, memory: Memory) -> Result<Self, &'static str> {
        let interrupts = memory
            .create_notification(slots.allocate().map_err(|_| "no slots")?)
            .map_err(|_| "no memory")?;
        let signal = Notification(slots.allocate().map_err(|_| "no slots")?);
        capability::mint(interrupts, Destination::own(signal.0), abi::Rights::WRITE, 1)
            .map_err(|_| "cannot badge the notification")?;
        IRQ.bind(signal).map_err(|_| "no interrupt")?;
        IRQ.acknowledge().map_err(|_| "no interrupt")?;
        // A software reset first: an earlier copy of this driver may have
        // died in the middle of a command. Then nIEN clear: the drive
        // interrupts.
        CONTROL
            .write(CONTROL_PORT, 1, SOFTWARE_RESET)
            .map_err(|_| "no control port")?;
        runtime::syscall::sleep_ticks(1);
        CONTROL.write(CONTROL_PORT, 1, 0).map_err(|_| "no control port")?;
        for _ in 0..RESET_POLLS {
            match read_register(register::STATUS_COMMAND) {
                Ok(state) if state & status::BUSY != 0 => runtime::syscall::sleep_ticks(1),
                _ => break,
            }
        }
        // Forget an interrupt the reset may have raised (reading the status
        // above lowered it).
        let _ = interrupts.poll();
        let _ = IRQ.acknowledge();
        write_register(register::DEVICE, MASTER_LBA).map_err(|_| "no command ports")?;
        let mut disk = Self {
            identity: Identity {
                sectors: 0,
                max_block: 0,
            },
            interrupts,
            block: 1,
        };
        if read_register(register::STATUS_COMMAND).map_err(|_| "no command ports")? == 0xff {
            return Err("no drive on the secondary channel");
        }
        write_register(register::STATUS_COMMAND, command::IDENTIFY).map_err(|_| "no command ports")?;
        disk.wait_for_data().map_err(|_| "no ATA disk answers IDENTIFY")?;
        let mut data = [0u8; SECTOR_SIZE];
        read_data(&mut data).map_err(|_| "no data port")?;
        let mut words = [0u16; SECTOR_SIZE / 2];
        for (word, bytes) in words.iter_mut().zip(data.as_chunks::<2>().0) {
            *word = u16::from_le_bytes(*bytes);
        }
        disk.identity = parse_identity(&words).ok_or("the disk has no 48-bit addressing")?;
        if let Some(block) = disk.identity.block() {
            // A drive that refuses the mode is driven a sector at a time.
            let set = write_register(register::SECTOR_COUNT, block as u8)
                .and_then(|()| write_register(register::STATUS_COMMAND, command::SET_MULTIPLE_MODE))
                .and_then(|()| disk.wait_for_data());
            if set.is_ok() {
                disk.block = block;
            }
        }
        Ok(disk)
    }

    /// The command for a transfer: the MULTIPLE one once a block is set.
    fn command(&self, single: u8, multiple: u8) -> u8 {
        if self.block > 1 { multiple } else { single }
    }

    /// The pieces of a transfer of `length` bytes, as byte ranges, each
    /// moved through the data register in one call (a block or
    /// [`PORT_STRING_MAX`] bytes, whichever is less), with whether it
    /// starts a block: the drive interrupts before each block (except the
    /// first of a write, which it asks for by status alone).
    fn pieces(&self, length: usize) -> impl Iterator<Item = (Range<usize>, bool)> + use<> {
        let block = usize::from(self.block) * SECTOR_SIZE;
        let piece = block.min(PORT_STRING_MAX);
        (0..length)
            .step_by(piece)
            .map(move |start| (start..(start + piece).min(length), start % block == 0))
    }

    /// Waits for the interrupt, then for the device to be ready: returns
    /// its status, or an error if it reports one.
    fn wait_for_data(&mut self) -> Result<u8, Error> {
        loop {
            self.interrupts.wait().map_err(|_| Error::Device)?;
            // Reading the status lowers the interrupt before the line is unmasked.
            let state = read_register(register::STATUS_COMMAND)?;
            IRQ.acknowledge().map_err(|_| Error::Device)?;
            if state & status::BUSY == 0 {
                return match state & (status::ERROR | status::FAULT) {
                    0 => Ok(state),
                    _ => Err(Error::Device),
                };
            }
        }
    }

    /// Polls until the device is no longer busy (before the first sector of
    /// a write, which raises no interrupt).
    fn wait_until_ready(&self) -> Result<u8, Error> {
        loop {
            let state = CONTROL.read(CONTROL_PORT, 1).map_err(|_| Error::Device)? as u8;
            if state & status::BUSY == 0 {
                return match state & (status::ERROR | status::FAULT) {
                    0 => Ok(state),
                    _ => Err(Error::Device),
                };
            }
            runtime::syscall::yield_now();
        }
    }

    fn issue(&self, operation: u8, sector: u64, count: u16) -> Result<(), Error> {
        write_register(register::DEVICE, MASTER_LBA)?;
        for (offset, value) in lba48_registers(sector, count) {
            write_register(offset, value)?;
        }
        // An injected stuck request never reaches the drive: the driver
        // waits for ever for its interrupt, and its supervisor kills it.
        if fault_hooks::take_stuck_request() {
            return Ok(());
        }
        write_register(register::STATUS_COMMAND, operation)
    }
}

impl block::Driver for Disk {
    fn sectors(&self) -> u64 {
        self.identity.sectors
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error> {
        let count = bytes.len() / SECTOR_SIZE;
        let operation = self.command(command::READ_EXT, command::READ_MULTIPLE_EXT);
        self.issue(operation, sector, count as u16)?;
        let mut data = [0u8; PORT_STRING_MAX];
        for (piece, starts_block) in self.pieces(bytes.len()) {
            if starts_block && self.wait_for_data()? & status::DATA_REQUEST == 0 {
                return Err(Error::Device);
            }
            let data = &mut data[..piece.len()];
            read_data(data)?;
            transfer
                .write(bytes.start + piece.start, data)
                .map_err(|_| Error::NoBuffer)?;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error> {
        let count = bytes.len() / SECTOR_SIZE;
        let operation = self.command(command::WRITE_EXT, command::WRITE_MULTIPLE_EXT);
        self.issue(operation, sector, count as u16)?;
        let mut data = [0u8; PORT_STRING_MAX];
        for (piece, starts_block) in self.pieces(bytes.len()) {
            let data = &mut data[..piece.len()];
            transfer
                .read(bytes.start + piece.start..bytes.start + piece.end, data)
                .map_err(|_| Error::NoBuffer)?;
            // The first block is asked for without an interrupt; each later
            // one comes with the interrupt for the one before.
            if starts_block {
                let state = if piece.start == 0 {
                    self.wait_until_ready()?
                } else {
                    self.wait_for_data()?
                };
                if state & status::DATA_REQUEST == 0 {
                    return Err(Error::Device);
                }
            }
            COMMAND_BLOCK
                .write_string(BASE + register::DATA, 2, data)
                .map_err(|_| Error::Device)?;
        }
        // The interrupt after the last sector reports the command's end.
        self.wait_for_data().map(drop)
    }

    fn flush(&mut self) -> Result<(), Error> {
        write_register(register::DEVICE, MASTER_LBA)?;
        write_register(register::STATUS_COMMAND, command::FLUSH_EXT)?;
        self.wait_for_data().map(drop)
    }
}
