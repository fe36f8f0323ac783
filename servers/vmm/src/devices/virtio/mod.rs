//! Para-virtual devices: virtio over PCI, in the legacy (transitional)
//! interface every virtio driver still speaks, with split virtqueues.
//!
//! A [`VirtioPci`] is one PCI function: its configuration header, the
//! legacy register block its I/O BAR decodes, and the device behind it
//! ([`block::Block`], [`console::Console`]). Register accesses only
//! change state; a write to the queue-notify register marks
//! the queue, and the machine serves marked queues after the exit
//! ([`crate::devices::Devices::serve_virtio`]), with the guest's RAM and
//! the devices' backends in hand. Serving is synchronous: the vcpu waits
//! while a request goes to the filesystem, as it would on a device that
//! completes before the next instruction.
//!
//! The driver may write anything into its queues. A malformed ring or
//! chain marks the device as needing a reset (status bit 6, with a
//! configuration-change interrupt) and the device ignores its queues
//! until the driver resets it; a request that is well formed but cannot
//! be done (a sector past the end, a failed read) fails with the device's
//! own error status. Nothing the guest writes makes the VMM panic.

pub mod block;
pub mod console;
pub mod queue;

use super::pci::{ConfigSpace, Function, Identity};
use alloc::string::String;
use alloc::vec::Vec;
use queue::{Chain, Queue, QueueError};
use virtio::{legacy, status};

/// The guest's RAM as a device sees it: bytes at guest-physical
/// addresses from 0 to [`GuestRam::size`].
pub trait GuestRam {
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Copies `into.len()` bytes from `address`.
    ///
    /// # Errors
    /// [`OutsideRam`] if they are not all in RAM.
    fn read(&self, address: u64, into: &mut [u8]) -> Result<(), OutsideRam>;
    /// Copies `from` to `address`.
    ///
    /// # Errors
    /// [`OutsideRam`] if it does not fit in RAM.
    fn write(&self, address: u64, from: &[u8]) -> Result<(), OutsideRam>;
}

/// An access outside the guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideRam;

/// Interrupt status bits ([`legacy::INTERRUPT_STATUS`], cleared by
/// reading it).
mod isr {
    /// A queue has used buffers.
    pub const QUEUE: u8 = 1;
    /// The configuration changed (or the device needs a reset).
    pub const CONFIGURATION: u8 = 2;
}

/// What a device behind the legacy transport offers.
pub trait Device {
    /// The PCI identity: transitional device ID, class, and the virtio
    /// device type as the subsystem ID.
    const IDENTITY: Identity;
    /// Each queue's size (a power of two).
    const QUEUE_SIZES: &'static [u16];
    /// The feature bits it offers (the legacy interface has 32).
    fn features(&self) -> u32;
    /// Its configuration space's bytes.
    fn configuration(&self) -> Vec<u8>;
    /// The driver reset the device (the transport is reset already).
    fn reset(&mut self) {}
}

/// The identity of a virtio device of type `kind` with transitional PCI
/// device ID `device` and PCI class `class`.
pub const fn identity(device: u16, kind: u16, class: [u8; 3]) -> Identity {
    Identity {
        vendor: virtio::VENDOR,
        device,
        // Revision 0: the legacy interface.
        revision: 0,
        class,
        subsystem_vendor: virtio::VENDOR,
        subsystem: kind,
    }
}

/// One queue's registers and, once the driver has placed it, the queue.
#[derive(Clone, Debug)]
struct QueueSlot {
    size: u16,
    page: u32,
    queue: Option<Queue>,
}

/// The legacy register block of one device.
#[derive(Clone, Debug)]
struct Transport {
    ram_bytes: u64,
    driver_features: u32,
    status: u8,
    selected: u16,
    queues: Vec<QueueSlot>,
    isr: u8,
    /// Queues notified and not yet served, a bit each.
    notified: u32,
    /// Why the device needs a reset, not yet reported.
    failure: Option<String>,
}

impl Transport {
    /// A reset device with queues of `sizes` in a guest with `ram_bytes`
    /// of RAM.
    fn new(sizes: &[u16], ram_bytes: u64) -> Self {
        Self {
            ram_bytes,
            driver_features: 0,
            status: 0,
            selected: 0,
            queues: sizes
                .iter()
                .map(|&size| QueueSlot {
                    size,
                    page: 0,
                    queue: None,
                })
                .collect(),
            isr: 0,
            notified: 0,
            failure: None,
        }
    }

    /// Back to the reset state (status 0).
    fn reset(&mut self) {
        let sizes: Vec<u16> = self.queues.iter().map(|slot| slot.size).collect();
        *self = Self::new(&sizes, self.ram_bytes);
    }

    /// A read of `size` bytes at `offset` in the register block; the
    /// device's configuration follows the registers.
    fn read(&mut self, offset: u16, size: u8, features: u32, configuration: &[u8]) -> u32 {
        let selected = self.queues.get(usize::from(self.selected));
        match offset {
            legacy::DEVICE_FEATURES => features,
            legacy::DRIVER_FEATURES => self.driver_features,
            legacy::QUEUE_ADDRESS => selected.map_or(0, |slot| slot.page),
            legacy::QUEUE_SIZE => selected.map_or(0, |slot| u32::from(slot.size)),
            legacy::QUEUE_SELECT => u32::from(self.selected),
            legacy::STATUS => u32::from(self.status),
            legacy::INTERRUPT_STATUS => u32::from(core::mem::take(&mut self.isr)),
            _ if offset >= legacy::CONFIGURATION => {
                let start = usize::from(offset - legacy::CONFIGURATION);
                (0..usize::from(size)).rev().fold(0, |value, byte| {
                    let byte = configuration.get(start + byte).copied().unwrap_or(0);
                    (value << 8) | u32::from(byte)
                })
            }
            _ => 0,
        }
    }

    /// A write at `offset`; registers that read only ignore it. Returns
    /// whether the driver reset the device.
    fn write(&mut self, offset: u16, value: u32, features: u32) -> bool {
        match offset {
            legacy::DRIVER_FEATURES => self.driver_features = value & features,
            legacy::QUEUE_ADDRESS => self.place_queue(value),
            legacy::QUEUE_SELECT => self.selected = value as u16,
            legacy::QUEUE_NOTIFY => {
                if usize::from(value as u16) < self.queues.len() {
                    self.notified |= 1 << (value as u16);
                }
            }
            legacy::STATUS => {
                if value as u8 == 0 {
                    self.reset();
                    return true;
                }
                // The device's own bit stays until a reset.
                self.status = value as u8 | (self.status & status::NEEDS_RESET);
            }
            _ => {}
        }
        false
    }

    /// The driver puts the selected queue at page `page`, or takes it
    /// away with 0.
    fn place_queue(&mut self, page: u32) {
        let ram_bytes = self.ram_bytes;
        let Some(slot) = self.queues.get_mut(usize::from(self.selected)) else {
            return;
        };
        slot.page = page;
        slot.queue = None;
        if page == 0 {
            return;
        }
        match Queue::legacy(ram_bytes, slot.size, page) {
            Ok(queue) => slot.queue = Some(queue),
            Err(error) => self.fail(error),
        }
    }

    /// Marks the device as needing a reset because of `error`, and tells
    /// the driver through a configuration interrupt.
    fn fail(&mut self, error: QueueError) {
        self.status |= status::NEEDS_RESET;
        self.isr |= isr::CONFIGURATION;
        self.failure = Some(alloc::format!("{error}; the device needs a reset"));
    }

    /// Whether the device may use its queues: the driver is ready and the
    /// device has not failed.
    fn running(&self) -> bool {
        self.status & (status::DRIVER_OK | status::NEEDS_RESET) == status::DRIVER_OK
    }

    /// Whether the interrupt line is asserted.
    fn interrupt_pending(&self) -> bool {
        self.isr != 0
    }

    /// Serves queue `index` if it was notified or `always`: each available
    /// chain goes to `handle`, which says how many bytes it wrote into the
    /// chain (or `None` to leave it and the rest for later), and goes back
    /// used. An interrupt follows if any was used and the driver wants it.
    fn serve(
        &mut self,
        index: usize,
        always: bool,
        ram: &dyn GuestRam,
        mut handle: impl FnMut(&Chain) -> Result<Option<u32>, QueueError>,
    ) {
        let notified = self.notified & (1 << index) != 0;
        self.notified &= !(1 << index);
        if !(notified || always) || !self.running() {
            return;
        }
        let Some(queue) = self.queues.get_mut(index).and_then(|slot| slot.queue.as_mut()) else {
            return;
        };
        let mut used = false;
        let result = loop {
            let chain = match queue.peek(ram) {
                Ok(Some(chain)) => chain,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            };
            let written = match handle(&chain) {
                Ok(Some(written)) => written,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            };
            queue.consume();
            if let Err(error) = queue.push(ram, chain.head, written) {
                break Err(error);
            }
            used = true;
        };
        let wants = used && queue.wants_interrupt(ram).unwrap_or(true);
        if let Err(error) = result {
            self.fail(error);
        }
        if wants {
            self.isr |= isr::QUEUE;
        }
    }
}

/// A virtio device on the guest's PCI bus.
pub struct VirtioPci<D: Device> {
    config: ConfigSpace,
    transport: Transport,
    /// The device behind the transport.
    pub device: D,
}

impl<D: Device> VirtioPci<D> {
    /// `device` in a PCI function whose I/O BAR starts at `io_base` and
    /// whose INTA reaches I/O APIC pin `interrupt`, in a guest with
    /// `ram_bytes` of RAM.
    pub fn new(device: D, io_base: u16, interrupt: u8, ram_bytes: u64) -> Self {
        let length = legacy::CONFIGURATION as usize + device.configuration().len();
        let io_size = (length as u16).next_power_of_two().max(4);
        Self {
            config: ConfigSpace::device(D::IDENTITY, io_size, io_base, interrupt),
            transport: Transport::new(D::QUEUE_SIZES, ram_bytes),
            device,
        }
    }

    /// `port`'s offset in the register block.
    fn offset(&self, port: u16) -> u16 {
        self.config
            .io_range()
            .map_or(0, |range| port.wrapping_sub(range.start))
    }

    /// Serves queue `index` if it was notified, or `always`, and the
    /// device may reach RAM (bus mastering is on) and runs: each
    /// available chain goes to `handle` with the device, which says how
    /// many bytes it wrote into the chain (or `None` to leave it and the
    /// rest for later), and goes back used, with an interrupt if the
    /// driver wants one. A malformed ring or chain, or a `handle` error,
    /// makes the device need a reset ([`Self::take_failure`] says why).
    pub fn serve(
        &mut self,
        index: usize,
        always: bool,
        ram: &dyn GuestRam,
        mut handle: impl FnMut(&mut D, &Chain) -> Result<Option<u32>, QueueError>,
    ) {
        if !self.config.bus_master() {
            return;
        }
        let device = &mut self.device;
        self.transport.serve(index, always, ram, |chain| handle(device, chain));
    }

    /// Why the device stopped, once: it needs a reset.
    pub fn take_failure(&mut self) -> Option<String> {
        self.transport.failure.take()
    }
}

impl<D: Device> Function for VirtioPci<D> {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn interrupt_pending(&self) -> bool {
        self.transport.interrupt_pending()
    }

    fn port_read(&mut self, port: u16, size: u8) -> u32 {
        let offset = self.offset(port);
        let features = self.device.features();
        let configuration = self.device.configuration();
        self.transport.read(offset, size, features, &configuration)
    }

    fn port_write(&mut self, port: u16, value: u32) {
        let offset = self.offset(port);
        if self.transport.write(offset, value, self.device.features()) {
            self.device.reset();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::block::Backing;
    use super::*;
    use core::cell::RefCell;

    /// A disk in a vector, which can be told to fail.
    pub struct MemoryDisk {
        pub bytes: Vec<u8>,
        pub broken: bool,
        pub flushes: u32,
    }

    impl MemoryDisk {
        /// A working disk of `bytes`, never flushed.
        pub fn new(bytes: Vec<u8>) -> Self {
            Self {
                bytes,
                broken: false,
                flushes: 0,
            }
        }
    }

    impl Backing for MemoryDisk {
        fn read(&mut self, offset: u64, into: &mut [u8]) -> Result<(), String> {
            if self.broken {
                return Err(String::from("broken"));
            }
            let start = offset as usize;
            into.copy_from_slice(&self.bytes[start..start + into.len()]);
            Ok(())
        }

        fn write(&mut self, offset: u64, from: &[u8]) -> Result<(), String> {
            if self.broken {
                return Err(String::from("broken"));
            }
            let start = offset as usize;
            self.bytes[start..start + from.len()].copy_from_slice(from);
            Ok(())
        }

        fn flush(&mut self) -> Result<(), String> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// Guest RAM in a vector.
    pub struct Ram(RefCell<Vec<u8>>);

    impl Ram {
        pub fn new(bytes: usize) -> Self {
            Self(RefCell::new(alloc::vec![0; bytes]))
        }
    }

    impl GuestRam for Ram {
        fn size(&self) -> u64 {
            self.0.borrow().len() as u64
        }

        fn read(&self, address: u64, into: &mut [u8]) -> Result<(), OutsideRam> {
            let ram = self.0.borrow();
            let start = usize::try_from(address).map_err(|_| OutsideRam)?;
            let end = start.checked_add(into.len()).ok_or(OutsideRam)?;
            let bytes = ram.get(start..end).ok_or(OutsideRam)?;
            into.copy_from_slice(bytes);
            Ok(())
        }

        fn write(&self, address: u64, from: &[u8]) -> Result<(), OutsideRam> {
            let mut ram = self.0.borrow_mut();
            let start = usize::try_from(address).map_err(|_| OutsideRam)?;
            let end = start.checked_add(from.len()).ok_or(OutsideRam)?;
            let bytes = ram.get_mut(start..end).ok_or(OutsideRam)?;
            bytes.copy_from_slice(from);
            Ok(())
        }
    }
}
