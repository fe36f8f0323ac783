//! The emulated platform: which device answers each port and each
//! guest-physical address the guest's RAM does not cover, how interrupt
//! lines are wired, and which interrupt the CPU takes next.
//!
//! Wiring, as on a PC: the PIT's output is ISA interrupt 0 (8259A line 0,
//! I/O APIC pin 2), COM1's is ISA interrupt 4 (line 4, pin 4). PCI slot
//! `n`'s INTA is I/O APIC pin 16 + `n`
//! ([`vm_platform::pci::FIRST_INTERRUPT_PIN`]), level-triggered; it does
//! not reach the 8259A. The 8259A
//! reaches the CPU as ExtINT through the local APIC's LINT0; the I/O APIC
//! and the local APIC's own sources through the local APIC's request
//! register. ExtINT bypasses the local APIC's priorities, so the PIC's
//! interrupt goes first when both are ready (as KVM does).

pub mod ioapic;
pub mod lapic;
pub mod output_line;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;
pub mod virtio;

use crate::input::Input;
use crate::time::Nanoseconds;
use alloc::string::String;
use alloc::vec::Vec;
use ioapic::IoApic;
use lapic::{Lapic, Written};
use pci::{ConfigAddress, ConfigSpace, Function};
use pic::Pic;
use pit::Pit;
use rtc::Rtc;
use uart::Uart;
use virtio::block::{Backing, Block};
use virtio::console::{self, Console};
use virtio::{GuestRam, VirtioPci};
use vm_platform::pci::{
    FIRST_INTERRUPT_PIN, HOST_BRIDGE_SLOT, INTERRUPTING_SLOTS, IO_BASE, IO_STRIDE, VIRTIO_BLOCK_SLOT,
    VIRTIO_CONSOLE_SLOT,
};
use vm_platform::{
    COM1, COM1_INTERRUPT, EXIT_PORT, IO_APIC, IO_APIC_PIT_PIN, LOCAL_APIC, PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA,
    TEST_DEVICE,
};

/// How long COM1 must be quiet before its unfinished line is shown.
pub const QUIET: Nanoseconds = Nanoseconds(200_000_000);
/// The size of each device's MMIO page.
const PAGE: u64 = 4096;
/// The system control port: bit 1 shows the A20 gate, always open here.
const SYSTEM_CONTROL: u16 = 0x92;
const A20_ENABLED: u8 = 0x02;
/// The host bridge's identity: Red Hat's generic PCI host bridge.
const HOST_BRIDGE: pci::Identity = pci::Identity {
    vendor: 0x1b36,
    device: 0x0008,
    revision: 0,
    class: [0x06, 0x00, 0x00],
    subsystem_vendor: 0x1b36,
    subsystem: 0x0008,
};
/// The slots that may hold a function.
const PCI_SLOTS: [u8; 3] = [HOST_BRIDGE_SLOT, VIRTIO_BLOCK_SLOT, VIRTIO_CONSOLE_SLOT];

/// What an access did besides changing device state.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing else.
    None,
    /// A line of console output.
    Output(String),
    /// Something the guest asked for that the platform ignored or
    /// refused, worth a line in the VMM's log.
    Ignored(String),
    /// The guest asked to end, with this status.
    Exit(u8),
}

/// An interrupt ready for the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// From the 8259A, as ExtINT.
    External(u8),
    /// From the local APIC's request register.
    Local(u8),
}

impl Interrupt {
    /// Its vector.
    pub fn vector(self) -> u8 {
        match self {
            Self::External(vector) | Self::Local(vector) => vector,
        }
    }
}

/// Every device of one guest.
pub struct Devices {
    /// COM1.
    pub uart: Uart,
    /// The 8259A pair.
    pub pic: Pic,
    /// The interval timer.
    pub pit: Pit,
    /// The CPU's local APIC.
    pub lapic: Lapic,
    /// The I/O APIC.
    pub ioapic: IoApic,
    /// The CMOS RAM and clock.
    pub rtc: Rtc,
    /// The PCI configuration address register.
    pci_address: u32,
    /// The PCI host bridge.
    host_bridge: ConfigSpace,
    /// The virtio disk, if the guest has one.
    block: Option<VirtioPci<Block>>,
    /// The virtio console.
    console: VirtioPci<Console>,
    /// When the guest last wrote to the virtio console.
    console_written: Nanoseconds,
    /// The test device's register.
    test_register: u32,
    /// When the guest last wrote to COM1.
    com1_written: Nanoseconds,
}

impl Devices {
    /// The devices of a machine with `ram_bytes` of RAM and, if
    /// `disk_bytes` is given, a virtio disk of that size.
    pub fn new(ram_bytes: u64, disk_bytes: Option<u64>) -> Self {
        Self {
            uart: Uart::default(),
            pic: Pic::default(),
            pit: Pit::default(),
            lapic: Lapic::default(),
            ioapic: IoApic::default(),
            rtc: Rtc::new(ram_bytes),
            pci_address: 0,
            host_bridge: ConfigSpace::bridge(HOST_BRIDGE),
            block: disk_bytes.map(|bytes| virtio_function(Block::new(bytes), VIRTIO_BLOCK_SLOT, ram_bytes)),
            console: virtio_function(Console::default(), VIRTIO_CONSOLE_SLOT, ram_bytes),
            console_written: Nanoseconds(0),
            test_register: 0,
            com1_written: Nanoseconds(0),
        }
    }

    /// A port read of `size` bytes (1, 2 or 4); ports nobody answers read
    /// as all ones, as on a real bus.
    pub fn port_read(&mut self, port: u16, size: u8, now: Nanoseconds) -> u32 {
        if let Some(value) = self.pci_port_read(port, size) {
            return value;
        }
        let byte = match port {
            _ if Pic::handles(port) => self.pic.read(port),
            _ if Pit::handles(port) => self.pit.read(port, now),
            _ if Rtc::handles(port) => self.rtc.read(port, now),
            SYSTEM_CONTROL => A20_ENABLED,
            COM1..=0x3ff => {
                let byte = self.uart.read(port - COM1);
                self.update_uart_line();
                byte
            }
            _ => return all_ones(size),
        };
        u32::from(byte)
    }

    /// A port write of `size` bytes; ports nobody answers ignore it.
    pub fn port_write(&mut self, port: u16, size: u8, value: u32, now: Nanoseconds) -> Effect {
        if self.pci_port_write(port, size, value) {
            return Effect::None;
        }
        let byte = value as u8;
        match port {
            _ if Pic::handles(port) => self.pic.write(port, byte),
            _ if Pit::handles(port) => self.pit.write(port, byte, now),
            _ if Rtc::handles(port) => self.rtc.write(port, byte, now),
            COM1..=0x3ff => {
                self.com1_written = now;
                let line = self.uart.write(port - COM1, byte);
                self.update_uart_line();
                if let Some(line) = line {
                    return Effect::Output(line);
                }
            }
            EXIT_PORT => return Effect::Exit(byte),
            _ => {}
        }
        Effect::None
    }

    /// An MMIO read; `None` where no device is (the guest is stopped).
    pub fn mmio_read(&mut self, address: u64, size: u8, now: Nanoseconds) -> Option<u64> {
        let value = match Page::of(address)? {
            (Page::LocalApic, offset) if self.lapic.hardware_enabled() => self.lapic.read(offset, now),
            (Page::IoApic, offset) => self.ioapic.read(offset),
            (Page::TestDevice, 0) => self.test_register,
            (Page::TestDevice, 4) => !self.test_register,
            _ => all_ones(size),
        };
        Some(u64::from(value))
    }

    /// An MMIO write; `None` where no device is.
    pub fn mmio_write(&mut self, address: u64, value: u64, now: Nanoseconds) -> Option<Effect> {
        let value = value as u32;
        match Page::of(address)? {
            (Page::LocalApic, offset) if self.lapic.hardware_enabled() => {
                match self.lapic.write(offset, value, now) {
                    Some(Written::LevelEnd(vector)) => self.ioapic.end_of_interrupt(vector, &mut self.lapic),
                    Some(Written::Ignored(why)) => return Some(Effect::Ignored(why)),
                    None => {}
                }
            }
            (Page::IoApic, offset) => self.ioapic.write(offset, value, &mut self.lapic),
            (Page::TestDevice, 0) => self.test_register = value,
            _ => {}
        }
        Some(Effect::None)
    }

    /// Advances the timers to `now`, raising their interrupt lines.
    pub fn tick(&mut self, now: Nanoseconds) {
        if self.pit.poll_interrupt(now) {
            self.pic.pulse(0);
            self.ioapic.pulse(IO_APIC_PIT_PIN, &mut self.lapic);
        }
        self.lapic.tick(now);
    }

    /// When a timer next needs attention.
    pub fn next_deadline(&self) -> Option<Nanoseconds> {
        match (self.pit.next_interrupt(), self.lapic.next_deadline()) {
            (Some(pit), Some(lapic)) => Some(pit.min(lapic)),
            (pit, lapic) => pit.or(lapic),
        }
    }

    /// The interrupt the CPU would take now, if any, without taking it.
    pub fn pending_interrupt(&mut self) -> Option<Interrupt> {
        if self.lapic.passes_external_interrupts()
            && let Some(vector) = self.pic.pending_vector()
        {
            return Some(Interrupt::External(vector));
        }
        self.lapic.pending_vector().map(Interrupt::Local)
    }

    /// The CPU takes `interrupt` (from [`Self::pending_interrupt`]).
    pub fn acknowledge(&mut self, interrupt: Interrupt) {
        match interrupt {
            Interrupt::External(_) => self.pic.acknowledge(),
            Interrupt::Local(vector) => self.lapic.acknowledge(vector),
        }
    }

    /// Moves bytes from `input` to the guest's console: the virtio
    /// console's receive buffers in `ram` once the guest has written
    /// there ([`Console::used`]), else COM1's line while its receive
    /// FIFO has room, so none is lost; raises the device's interrupt line
    /// if the guest asked for it.
    pub fn receive(&mut self, input: &mut Input, ram: &dyn GuestRam) {
        if self.console.device.used() {
            if !input.is_empty() {
                self.console.serve(console::RECEIVE_QUEUE, true, ram, |_, chain| {
                    Console::receive(chain, ram, input)
                });
                self.update_pci_lines();
            }
            return;
        }
        if input.is_empty() || self.uart.room() == 0 {
            return;
        }
        for byte in input.take(self.uart.room()) {
            self.uart.receive(byte);
        }
        self.update_uart_line();
    }

    /// COM1's or the virtio console's unfinished line of output, once the
    /// guest has left that console alone for [`QUIET`]: a prompt waiting
    /// for input. Output in a burst (echoed input, a line written a byte
    /// at a time) stays whole.
    pub fn unfinished_line(&mut self, now: Nanoseconds) -> Option<String> {
        let quiet = |since: Nanoseconds| now.0.saturating_sub(since.0) >= QUIET.0;
        let serial = if quiet(self.com1_written) { self.uart.flush() } else { None };
        serial.or_else(|| {
            if quiet(self.console_written) {
                self.console.device.flush()
            } else {
                None
            }
        })
    }

    /// A read of the PCI configuration mechanism's ports or of a
    /// function's BAR; `None` for other ports.
    fn pci_port_read(&mut self, port: u16, size: u8) -> Option<u32> {
        let value = match port {
            // Only whole-dword accesses reach the address register.
            PCI_CONFIG_ADDRESS if size == 4 => self.pci_address,
            PCI_CONFIG_ADDRESS..PCI_CONFIG_DATA => all_ones(size),
            PCI_CONFIG_DATA..=0xcff => ConfigAddress::decode(self.pci_address, (port - PCI_CONFIG_DATA) as u8)
                .and_then(|address| {
                    let function = self.pci_function(address)?;
                    Some(function.config().read(address.offset, size, function.interrupt_pending()))
                })
                .unwrap_or(all_ones(size)),
            _ => {
                let value = self.pci_function_at(port)?.port_read(port, size) & all_ones(size);
                self.update_pci_lines();
                value
            }
        };
        Some(value)
    }

    /// A write to the PCI configuration mechanism's ports or to a
    /// function's BAR; whether it was one.
    fn pci_port_write(&mut self, port: u16, size: u8, value: u32) -> bool {
        match port {
            PCI_CONFIG_ADDRESS if size == 4 => self.pci_address = value,
            PCI_CONFIG_ADDRESS..PCI_CONFIG_DATA => {}
            PCI_CONFIG_DATA..=0xcff => {
                if let Some(address) = ConfigAddress::decode(self.pci_address, (port - PCI_CONFIG_DATA) as u8)
                    && let Some(function) = self.pci_function(address)
                {
                    function.config_mut().write(address.offset, size, value);
                }
                self.update_pci_lines();
            }
            _ => match self.pci_function_at(port) {
                Some(function) => {
                    function.port_write(port, value);
                    self.update_pci_lines();
                }
                None => return false,
            },
        }
        true
    }

    /// The function a configuration access at `address` reaches: bus 0,
    /// function 0 of an occupied slot.
    fn pci_function(&mut self, address: ConfigAddress) -> Option<&mut dyn Function> {
        if address.bus != 0 || address.function != 0 {
            return None;
        }
        self.pci_slot(address.slot)
    }

    /// The function in `slot`, if there is one.
    fn pci_slot(&mut self, slot: u8) -> Option<&mut dyn Function> {
        match slot {
            HOST_BRIDGE_SLOT => Some(&mut self.host_bridge),
            VIRTIO_BLOCK_SLOT => self.block.as_mut().map(|block| block as &mut dyn Function),
            VIRTIO_CONSOLE_SLOT => Some(&mut self.console),
            _ => None,
        }
    }

    /// The function whose BAR decodes `port`.
    fn pci_function_at(&mut self, port: u16) -> Option<&mut dyn Function> {
        let slot = PCI_SLOTS
            .into_iter()
            .find(|&slot| self.pci_slot(slot).is_some_and(|function| function.decodes(port)))?;
        self.pci_slot(slot)
    }

    /// Drives each slot's INTA pin on the I/O APIC from its function.
    fn update_pci_lines(&mut self) {
        for slot in INTERRUPTING_SLOTS {
            let high = self.pci_slot(slot).is_some_and(|function| function.interrupt_line());
            self.ioapic.set_line(FIRST_INTERRUPT_PIN + slot, high, &mut self.lapic);
        }
    }

    /// Serves the virtio queues the guest has notified, with its `ram`
    /// and the disk's `backing`; returns the console's finished lines and
    /// what is worth a line in the log (a device that needs a reset, a
    /// failing backing).
    pub fn serve_virtio(
        &mut self,
        ram: &dyn GuestRam,
        backing: Option<&mut dyn Backing>,
        now: Nanoseconds,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut lines = Vec::new();
        let mut wrote = false;
        self.console.serve(console::TRANSMIT_QUEUE, false, ram, |device, chain| {
            wrote = true;
            device.transmit(chain, ram, &mut lines).map(Some)
        });
        if let Some(why) = self.console.take_failure() {
            effects.push(Effect::Ignored(alloc::format!("virtio console: {why}")));
        }
        if wrote {
            self.console_written = now;
        }
        effects.extend(lines.into_iter().map(Effect::Output));
        if let (Some(block), Some(backing)) = (self.block.as_mut(), backing) {
            block.serve(0, false, ram, |device, chain| device.handle(chain, ram, backing).map(Some));
            if let Some(why) = block.take_failure() {
                effects.push(Effect::Ignored(alloc::format!("virtio disk: {why}")));
            }
            if let Some(why) = block.device.take_backing_error() {
                effects.push(Effect::Ignored(alloc::format!("virtio disk: its file failed: {why}")));
            }
        }
        self.update_pci_lines();
        effects
    }

    /// Drives ISA interrupt 4 from the UART's output.
    fn update_uart_line(&mut self) {
        let high = self.uart.interrupt_line();
        self.pic.set_line(COM1_INTERRUPT, high);
        self.ioapic.set_line(COM1_INTERRUPT, high, &mut self.lapic);
    }
}

/// `device` as the function in PCI `slot`, with its BAR and interrupt
/// where the platform puts that slot's.
fn virtio_function<D: virtio::Device>(device: D, slot: u8, ram_bytes: u64) -> VirtioPci<D> {
    let io_base = IO_BASE + u16::from(slot) * IO_STRIDE;
    VirtioPci::new(device, io_base, FIRST_INTERRUPT_PIN + slot, ram_bytes)
}

/// The MMIO pages devices answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    LocalApic,
    IoApic,
    TestDevice,
}

impl Page {
    /// The page `address` is in and the offset in it.
    fn of(address: u64) -> Option<(Self, u64)> {
        [(Self::LocalApic, LOCAL_APIC), (Self::IoApic, IO_APIC), (Self::TestDevice, TEST_DEVICE)]
            .into_iter()
            .find_map(|(page, base)| {
                let offset = address.checked_sub(base)?;
                (offset < PAGE).then_some((page, offset))
            })
    }
}

/// All ones in `size` bytes.
fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

#[cfg(test)]
mod tests {
    // `::virtio` is the crate of shared definitions, `super::virtio` the
    // device models.
    use super::virtio::queue::tests::Driver;
    use super::virtio::tests::{MemoryDisk, Ram};
    use super::*;
    use ::virtio::block::{RequestHeader, feature, request_status, request_type};
    use ::virtio::queue::descriptor_flag;
    use ::virtio::{legacy, status};

    const NOW: Nanoseconds = Nanoseconds(0);

    #[test]
    fn the_pit_reaches_the_cpu_through_the_pic_or_the_io_apic() {
        let mut devices = Devices::new(4 << 20, None);
        for (port, value) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xfe)] {
            devices.port_write(port, 1, value, NOW);
        }
        devices.port_write(0x43, 1, 0x34, NOW);
        devices.port_write(0x40, 1, 100, NOW);
        devices.port_write(0x40, 1, 0, NOW);
        let period = Nanoseconds(100 * 1_000_000_000 / 1_193_182 + 1);
        devices.tick(period);
        let interrupt = devices.pending_interrupt();
        assert_eq!(interrupt, Some(Interrupt::External(0x20)));
        devices.acknowledge(Interrupt::External(0x20));
        devices.port_write(0x20, 1, 0x20, NOW);
        // Now through the I/O APIC: mask the PIC, route pin 2.
        devices.port_write(0x21, 1, 0xff, NOW);
        devices.mmio_write(IO_APIC, 0x14, NOW);
        devices.mmio_write(IO_APIC + 0x10, 0x31, NOW);
        devices.tick(Nanoseconds(period.0 * 2));
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x31)));
        devices.acknowledge(Interrupt::Local(0x31));
        assert_eq!(devices.mmio_write(LOCAL_APIC + 0xb0, 0, NOW), Some(Effect::None));
        assert_eq!(devices.pending_interrupt(), None);
    }

    #[test]
    fn external_interrupts_go_first_and_local_ones_wait() {
        let mut devices = Devices::new(4 << 20, None);
        devices.pic.write(0x21, 0x00);
        devices.pic.pulse(1);
        devices.lapic.accept(0x80, false);
        let first = devices.pending_interrupt().expect("pending");
        assert!(matches!(first, Interrupt::External(_)));
        devices.acknowledge(first);
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x80)));
    }

    #[test]
    fn com1_raises_interrupt_4_when_enabled() {
        let mut devices = Devices::new(4 << 20, None);
        devices.port_write(0x21, 1, 0xff, NOW);
        devices.mmio_write(IO_APIC, 0x18, NOW);
        devices.mmio_write(IO_APIC + 0x10, 0x44, NOW);
        devices.port_write(COM1 + 4, 1, 0x08, NOW);
        devices.port_write(COM1 + 1, 1, 0x02, NOW);
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x44)));
        assert_eq!(devices.port_read(COM1 + 2, 1, NOW), 0x02);
        assert!(!devices.uart.interrupt_line());
    }

    #[test]
    fn received_bytes_wait_for_room_and_interrupt_through_the_io_apic() {
        let mut devices = Devices::new(4 << 20, None);
        devices.port_write(0x21, 1, 0xff, NOW);
        devices.mmio_write(IO_APIC, 0x18, NOW);
        devices.mmio_write(IO_APIC + 0x10, 0x44, NOW);
        devices.port_write(COM1 + 4, 1, 0x08, NOW);
        devices.port_write(COM1 + 1, 1, 0x01, NOW);
        let mut input = Input::new();
        assert_eq!(input.offer(b"hi"), Ok(2));
        devices.receive(&mut input, &Ram::new(0));
        assert_eq!(input.len(), 1, "without FIFOs one byte fits");
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x44)));
        devices.acknowledge(Interrupt::Local(0x44));
        devices.mmio_write(LOCAL_APIC + 0xb0, 0, NOW);
        assert_eq!(devices.port_read(COM1 + 2, 1, NOW), 0x04);
        assert_eq!(devices.port_read(COM1, 1, NOW), u32::from(b'h'));
        assert!(!devices.uart.interrupt_line());
        devices.receive(&mut input, &Ram::new(0));
        assert!(input.is_empty());
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x44)), "a new edge");
        assert_eq!(devices.port_read(COM1 + 5, 1, NOW), 0x61);
        assert_eq!(devices.port_read(COM1, 1, NOW), u32::from(b'i'));
    }

    #[test]
    fn an_unfinished_line_shows_once_com1_is_quiet() {
        let mut devices = Devices::new(4 << 20, None);
        for (index, byte) in b"~ # ".iter().enumerate() {
            let now = Nanoseconds(index as u64 * 1_000_000);
            assert_eq!(devices.port_write(COM1, 1, u32::from(*byte), now), Effect::None);
        }
        assert_eq!(devices.unfinished_line(Nanoseconds(100_000_000)), None, "not quiet yet");
        let quiet = Nanoseconds(3_000_000 + QUIET.0);
        assert_eq!(devices.unfinished_line(quiet).as_deref(), Some("~ # "));
        assert_eq!(devices.unfinished_line(quiet), None, "shown once");
    }

    /// Selects `offset` of slot `slot`'s function 0 through the address
    /// register.
    fn select(devices: &mut Devices, slot: u8, offset: u8) {
        let address = 0x8000_0000 | (u32::from(slot) << 11) | u32::from(offset);
        devices.port_write(PCI_CONFIG_ADDRESS, 4, address, NOW);
    }

    fn config_read(devices: &mut Devices, slot: u8, offset: u8) -> u32 {
        select(devices, slot, offset & !3);
        devices.port_read(PCI_CONFIG_DATA + u16::from(offset & 3), 4, NOW)
    }

    #[test]
    fn the_pci_bus_answers_as_linux_probes_it() {
        let mut devices = Devices::new(4 << 20, Some(4096));
        // Mechanism #1: a dword written to 0xCF8 reads back; bytes there
        // are not the address register (so mechanism #2's probe fails).
        devices.port_write(PCI_CONFIG_ADDRESS, 4, 0x8000_0000, NOW);
        assert_eq!(devices.port_read(PCI_CONFIG_ADDRESS, 4, NOW), 0x8000_0000);
        devices.port_write(PCI_CONFIG_ADDRESS + 3, 1, 0, NOW);
        assert_eq!(devices.port_read(PCI_CONFIG_ADDRESS + 3, 1, NOW), 0xff);
        assert_eq!(devices.port_read(PCI_CONFIG_ADDRESS, 4, NOW), 0x8000_0000);
        // The host bridge, the disk, the console; nothing else.
        assert_eq!(config_read(&mut devices, HOST_BRIDGE_SLOT, 0), 0x0008_1b36);
        assert_eq!(config_read(&mut devices, HOST_BRIDGE_SLOT, 8) >> 16, 0x0600, "a host bridge");
        assert_eq!(config_read(&mut devices, VIRTIO_BLOCK_SLOT, 0), 0x1001_1af4);
        assert_eq!(config_read(&mut devices, VIRTIO_BLOCK_SLOT, 0x2c), 0x0002_1af4);
        assert_eq!(config_read(&mut devices, VIRTIO_CONSOLE_SLOT, 0), 0x1003_1af4);
        assert_eq!(config_read(&mut devices, VIRTIO_CONSOLE_SLOT, 0x2c), 0x0003_1af4);
        assert_eq!(config_read(&mut devices, 3, 0), 0xffff_ffff, "an empty slot");
        select(&mut devices, VIRTIO_BLOCK_SLOT, 0);
        devices.port_write(PCI_CONFIG_ADDRESS, 4, 0x8000_0000 | (1 << 11) | (1 << 8), NOW);
        assert_eq!(devices.port_read(PCI_CONFIG_DATA, 4, NOW), 0xffff_ffff, "function 1");
        devices.port_write(PCI_CONFIG_ADDRESS, 4, 0x8001_0000, NOW);
        assert_eq!(devices.port_read(PCI_CONFIG_DATA, 2, NOW), 0xffff, "bus 1");
        // Without a disk, its slot is empty.
        let mut diskless = Devices::new(4 << 20, None);
        assert_eq!(config_read(&mut diskless, VIRTIO_BLOCK_SLOT, 0), 0xffff_ffff);
    }

    /// Sets up the virtio function in `slot` as a driver would: enables
    /// it, routes its pin to `vector` (level, active low), places queue
    /// `n` at page `pages[n]` and says the driver is ready; returns its
    /// register block.
    fn virtio_ready(devices: &mut Devices, slot: u8, vector: u32, pages: &[u32]) -> u16 {
        select(devices, slot, 4);
        devices.port_write(PCI_CONFIG_DATA, 2, 0x5, NOW); // I/O space, bus master
        let bar = config_read(devices, slot, 0x10) as u16 & !3;
        let pin = FIRST_INTERRUPT_PIN + slot;
        devices.mmio_write(IO_APIC, 0x10 + 2 * u64::from(pin), NOW);
        devices.mmio_write(IO_APIC + 0x10, u64::from(vector) | (1 << 13) | (1 << 15), NOW);
        let found = status::ACKNOWLEDGE | status::DRIVER;
        devices.port_write(bar + legacy::STATUS, 1, u32::from(found), NOW);
        for (queue, page) in pages.iter().enumerate() {
            devices.port_write(bar + legacy::QUEUE_SELECT, 2, queue as u32, NOW);
            devices.port_write(bar + legacy::QUEUE_ADDRESS, 4, *page, NOW);
        }
        devices.port_write(bar + legacy::STATUS, 1, u32::from(found | status::DRIVER_OK), NOW);
        bar
    }

    /// [`virtio_ready`] for a 4 KiB disk with its queue at page 2 and
    /// vector 0x51, checking what it offers on the way.
    fn disk_ready(devices: &mut Devices) -> u16 {
        let bar = virtio_ready(devices, VIRTIO_BLOCK_SLOT, 0x51, &[2]);
        let features = feature::SEGMENT_LIMIT | feature::BLOCK_SIZE | feature::FLUSH;
        assert_eq!(devices.port_read(bar + legacy::DEVICE_FEATURES, 4, NOW), features);
        assert_eq!(devices.port_read(bar + legacy::QUEUE_SIZE, 2, NOW), 128, "queue 0's size");
        assert_eq!(devices.port_read(bar + legacy::CONFIGURATION, 4, NOW), 8, "capacity: 8 sectors");
        bar
    }

    /// Where [`DiskGuest::offer_request`] puts a request's parts.
    const HEADER: u64 = 0x10000;
    const DATA: u64 = 0x11000;
    const STATUS: u64 = 0x12000;

    /// A guest with 1 MiB of RAM and a 4 KiB disk of `MemoryDisk`, which
    /// its driver has set up ([`disk_ready`]).
    struct DiskGuest {
        ram: Ram,
        devices: Devices,
        /// The disk's register block.
        bar: u16,
        disk: MemoryDisk,
        /// The driver's side of the disk's queue.
        driver: Driver,
    }

    impl DiskGuest {
        /// A guest whose disk's bytes are all `fill`.
        fn new(fill: u8) -> Self {
            let mut devices = Devices::new(1 << 20, Some(4096));
            let bar = disk_ready(&mut devices);
            Self {
                ram: Ram::new(1 << 20),
                devices,
                bar,
                disk: MemoryDisk::new(alloc::vec![fill; 4096]),
                driver: Driver::new(128, 2),
            }
        }

        /// Makes a request available as descriptors 0, 1, ...: `header`
        /// at [`HEADER`], `data_bytes` for the device to write at
        /// [`DATA`] if any, the status byte at [`STATUS`].
        fn offer_request(&mut self, header: RequestHeader, data_bytes: u32) {
            self.ram.write(HEADER, &header.to_bytes()).unwrap();
            let mut parts = alloc::vec![(HEADER, RequestHeader::BYTES as u32, 0)];
            if data_bytes > 0 {
                parts.push((DATA, data_bytes, descriptor_flag::WRITE));
            }
            parts.push((STATUS, 1, descriptor_flag::WRITE));
            let last = parts.len() as u16 - 1;
            for (index, (address, length, flags)) in (0u16..).zip(parts) {
                let next = if index < last { descriptor_flag::NEXT } else { 0 };
                self.driver.describe(&self.ram, index, address, length, flags | next, index + 1);
            }
            self.driver.offer(&self.ram, 0);
        }

        /// Tells the disk its queue has buffers.
        fn notify(&mut self) {
            self.devices.port_write(self.bar + legacy::QUEUE_NOTIFY, 2, 0, NOW);
        }

        /// Serves the queues after the exit, as the machine does.
        fn serve(&mut self) -> Vec<Effect> {
            self.devices.serve_virtio(&self.ram, Some(&mut self.disk), NOW)
        }
    }

    #[test]
    fn a_disk_request_completes_with_a_level_interrupt_until_the_isr_is_read() {
        let mut guest = DiskGuest::new(7);
        let read = RequestHeader {
            request_type: request_type::READ,
            sector: 1,
        };
        guest.offer_request(read, 512);
        guest.notify();
        assert_eq!(guest.devices.pending_interrupt(), None, "served after the exit");
        assert_eq!(guest.serve(), []);
        assert_eq!(guest.driver.used(&guest.ram, 0), (1, 0, 513));
        let (ram, devices, bar) = (&guest.ram, &mut guest.devices, guest.bar);
        let mut data = [0; 513];
        ram.read(DATA, &mut data[..512]).unwrap();
        ram.read(STATUS, &mut data[512..]).unwrap();
        assert!(data[..512].iter().all(|byte| *byte == 7) && data[512] == request_status::OK);
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x51)));
        assert_eq!(config_read(devices, VIRTIO_BLOCK_SLOT, 4) >> 16 & 8, 8, "interrupt status");
        devices.acknowledge(Interrupt::Local(0x51));
        let interrupt_status = bar + legacy::INTERRUPT_STATUS;
        assert_eq!(devices.port_read(interrupt_status, 1, NOW), 1, "the queue's interrupt");
        assert_eq!(devices.port_read(interrupt_status, 1, NOW), 0, "read clears it");
        devices.mmio_write(LOCAL_APIC + 0xb0, 0, NOW);
        assert_eq!(devices.pending_interrupt(), None, "the line is low at the end of interrupt");
    }

    #[test]
    fn a_looping_chain_makes_the_disk_need_a_reset_and_a_reset_revives_it() {
        let mut guest = DiskGuest::new(0);
        guest.driver.describe(&guest.ram, 0, HEADER, 16, descriptor_flag::NEXT, 0);
        guest.driver.offer(&guest.ram, 0);
        guest.notify();
        assert_eq!(
            guest.serve(),
            [Effect::Ignored(String::from(
                "virtio disk: a descriptor chain loops; the device needs a reset"
            ))]
        );
        let bar = guest.bar;
        let ready = status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK;
        let device_status = guest.devices.port_read(bar + legacy::STATUS, 1, NOW);
        assert_eq!(device_status, u32::from(ready | status::NEEDS_RESET));
        assert_eq!(guest.devices.port_read(bar + legacy::INTERRUPT_STATUS, 1, NOW), 2, "a configuration interrupt");
        guest.notify();
        assert_eq!(guest.serve(), [], "ignored until reset");
        assert_eq!(guest.driver.used(&guest.ram, 0).0, 0, "nothing used");
        guest.devices.port_write(bar + legacy::STATUS, 1, 0, NOW);
        assert_eq!(guest.devices.port_read(bar + legacy::STATUS, 1, NOW), 0);
        assert_eq!(guest.devices.port_read(bar + legacy::QUEUE_ADDRESS, 4, NOW), 0, "the queue is gone");
        // The same device, set up again, serves a good request.
        disk_ready(&mut guest.devices);
        guest.driver = Driver::new(128, 2);
        let flush = RequestHeader {
            request_type: request_type::FLUSH,
            sector: 0,
        };
        guest.offer_request(flush, 0);
        guest.notify();
        assert_eq!(guest.serve(), []);
        assert_eq!((guest.driver.used(&guest.ram, 0), guest.disk.flushes), ((1, 0, 1), 1));
    }

    #[test]
    fn input_goes_to_com1_until_the_guest_writes_to_the_virtio_console() {
        let ram = Ram::new(1 << 20);
        let mut devices = Devices::new(1 << 20, None);
        let bar = virtio_ready(&mut devices, VIRTIO_CONSOLE_SLOT, 0x52, &[2, 4]);
        let (mut receive, mut transmit) = (Driver::new(64, 2), Driver::new(64, 4));
        receive.describe(&ram, 0, 0x10000, 64, descriptor_flag::WRITE, 0);
        receive.offer(&ram, 0);
        devices.port_write(bar + legacy::QUEUE_NOTIFY, 2, 0, NOW);
        let mut input = Input::new();
        input.offer(b"a").unwrap();
        devices.receive(&mut input, &ram);
        assert!(input.is_empty(), "COM1 took it");
        assert_eq!(devices.uart.room(), 0);
        // The guest writes a prompt to the console: input goes there now.
        ram.write(0x20000, b"# ").unwrap();
        transmit.describe(&ram, 0, 0x20000, 2, 0, 0);
        transmit.offer(&ram, 0);
        devices.port_write(bar + legacy::QUEUE_NOTIFY, 2, 1, NOW);
        assert_eq!(devices.serve_virtio(&ram, None, NOW), []);
        assert_eq!(transmit.used(&ram, 0), (1, 0, 0));
        assert_eq!(devices.unfinished_line(QUIET).as_deref(), Some("# "));
        input.offer(b"ls\n").unwrap();
        devices.receive(&mut input, &ram);
        assert!(input.is_empty());
        assert_eq!(receive.used(&ram, 0), (1, 0, 3));
        let mut typed = [0; 3];
        ram.read(0x10000, &mut typed).unwrap();
        assert_eq!(&typed, b"ls\n");
        assert_eq!(devices.pending_interrupt(), Some(Interrupt::Local(0x52)));
        // A reset sends input back to COM1.
        devices.port_write(bar + legacy::STATUS, 1, 0, NOW);
        devices.port_read(COM1, 1, NOW);
        input.offer(b"b").unwrap();
        devices.receive(&mut input, &ram);
        assert_eq!(devices.port_read(COM1, 1, NOW), u32::from(b'b'));
    }

    #[test]
    fn unknown_addresses_have_no_device_and_pages_read_all_ones() {
        let mut devices = Devices::new(4 << 20, None);
        assert_eq!(devices.mmio_read(0xe000_0000, 4, NOW), None);
        assert_eq!(devices.mmio_read(TEST_DEVICE + 8, 2, NOW), Some(0xffff));
        assert_eq!(devices.mmio_read(LOCAL_APIC + 0x30, 4, NOW), Some(0x0005_0014));
        assert_eq!(devices.port_read(SYSTEM_CONTROL, 1, NOW), u32::from(A20_ENABLED));
    }
}
