//! The I/O APIC (an 82093AA's programming model) at
//! [`IO_APIC`](vm_platform::IO_APIC): the register select at offset 0 and
//! the window at 0x10; ID, version (24 pins), arbitration and the
//! redirection table. Edge-triggered pins deliver on a rising edge;
//! level-triggered ones deliver while high and wait, with remote IRR set,
//! for the local APIC's end of interrupt.
//!
//! Only fixed and lowest-priority delivery reach the one CPU; other modes
//! are stored but deliver nothing.

use super::lapic::Lapic;

/// Pins.
pub const PINS: usize = 24;
/// Version 0x11, highest redirection entry 23.
const VERSION: u32 = 0x11 | ((PINS as u32 - 1) << 16);
/// Redirection entry bits.
const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const REMOTE_IRR: u64 = 1 << 14;
const LOGICAL: u64 = 1 << 11;
/// What a guest may write: vector, delivery and destination modes,
/// polarity, trigger mode, mask, destination. Delivery status (bit 12)
/// always reads idle: delivery is instant here.
const WRITABLE: u64 = 0xff | (0b111 << 8) | LOGICAL | (1 << 13) | LEVEL | MASKED | (0xff << 56);

/// The I/O APIC.
pub struct IoApic {
    select: u8,
    id: u32,
    redirection: [u64; PINS],
    /// Each pin's level.
    levels: u32,
}

impl Default for IoApic {
    /// Every pin masked, edge-triggered; the ID
    /// [`IO_APIC_ID`](vm_platform::IO_APIC_ID).
    fn default() -> Self {
        Self {
            select: 0,
            id: u32::from(vm_platform::IO_APIC_ID) << 24,
            redirection: [MASKED; PINS],
            levels: 0,
        }
    }
}

impl IoApic {
    /// A 32-bit read at `offset` in the I/O APIC's page.
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            0x00 => u32::from(self.select),
            0x10 => match self.select {
                0x00 => self.id,
                0x01 => VERSION,
                0x02 => self.id,
                index => self.entry(index).map_or(0, |(pin, high)| {
                    let entry = self.redirection[pin];
                    (if high { entry >> 32 } else { entry }) as u32
                }),
            },
            _ => 0,
        }
    }

    /// A 32-bit write; unmasking a level-triggered pin that is high
    /// delivers it.
    pub fn write(&mut self, offset: u64, value: u32, lapic: &mut Lapic) {
        match (offset, self.select) {
            (0x00, _) => self.select = value as u8,
            (0x10, 0x00) => self.id = value & 0x0f00_0000,
            (0x10, index) => {
                let Some((pin, high)) = self.entry(index) else { return };
                let entry = &mut self.redirection[pin];
                let (shift, field) = if high { (32, 0xffff_ffff_0000_0000) } else { (0, 0xffff_ffff) };
                let written = (u64::from(value) << shift) & WRITABLE & field;
                *entry = (*entry & !(WRITABLE & field)) | written;
                if *entry & LEVEL == 0 {
                    *entry &= !REMOTE_IRR;
                }
                self.deliver_level(pin, lapic);
            }
            _ => {}
        }
    }

    /// The pin and half (high: bits 32..64) redirection register `index`
    /// names.
    fn entry(&self, index: u8) -> Option<(usize, bool)> {
        let pin = usize::from(index.checked_sub(0x10)? / 2);
        (pin < PINS).then_some((pin, index % 2 == 1))
    }

    /// Sets `pin` high or low; an edge or a level delivers its interrupt
    /// to `lapic` as the pin's entry says.
    pub fn set_line(&mut self, pin: u8, high: bool, lapic: &mut Lapic) {
        let pin = usize::from(pin);
        if pin >= PINS {
            return;
        }
        let was_high = self.levels & (1 << pin) != 0;
        if high {
            self.levels |= 1 << pin;
        } else {
            self.levels &= !(1 << pin);
        }
        let entry = self.redirection[pin];
        if entry & LEVEL != 0 {
            self.deliver_level(pin, lapic);
        } else if high && !was_high && entry & MASKED == 0 {
            self.deliver(entry, lapic);
        }
    }

    /// Raises and lowers `pin`: one edge.
    pub fn pulse(&mut self, pin: u8, lapic: &mut Lapic) {
        self.set_line(pin, true, lapic);
        self.set_line(pin, false, lapic);
    }

    /// The local APIC ended level-triggered `vector`: every pin waiting on
    /// it is free again (and delivers again if still high).
    pub fn end_of_interrupt(&mut self, vector: u8, lapic: &mut Lapic) {
        for pin in 0..PINS {
            let entry = &mut self.redirection[pin];
            if *entry & REMOTE_IRR != 0 && *entry as u8 == vector {
                *entry &= !REMOTE_IRR;
                self.deliver_level(pin, lapic);
            }
        }
    }

    /// Delivers level-triggered `pin` if it is high, unmasked and not
    /// waiting for an end of interrupt.
    fn deliver_level(&mut self, pin: usize, lapic: &mut Lapic) {
        let entry = self.redirection[pin];
        let high = self.levels & (1 << pin) != 0;
        if entry & LEVEL != 0 && high && entry & (MASKED | REMOTE_IRR) == 0 && self.deliver(entry, lapic) {
            self.redirection[pin] |= REMOTE_IRR;
        }
    }

    /// Sends the interrupt `entry` describes; whether it reached the CPU.
    fn deliver(&self, entry: u64, lapic: &mut Lapic) -> bool {
        let fixed_or_lowest = (entry >> 8) & 0b111 <= 1;
        let reaches = fixed_or_lowest && lapic.is_destination((entry >> 56) as u8, entry & LOGICAL != 0);
        if reaches {
            lapic.accept(entry as u8, entry & LEVEL != 0);
        }
        reaches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(ioapic: &mut IoApic, lapic: &mut Lapic, pin: u8, low: u32, high: u32) {
        ioapic.write(0, u32::from(0x10 + pin * 2 + 1), lapic);
        ioapic.write(0x10, high, lapic);
        ioapic.write(0, u32::from(0x10 + pin * 2), lapic);
        ioapic.write(0x10, low, lapic);
    }

    #[test]
    fn identifies_itself_and_reads_back_entries() {
        let (mut ioapic, mut lapic) = (IoApic::default(), Lapic::default());
        assert_eq!(ioapic.read(0x10), u32::from(vm_platform::IO_APIC_ID) << 24, "the ID the MP table names");
        ioapic.write(0, 1, &mut lapic);
        assert_eq!(ioapic.read(0x10), 0x0017_0011);
        ioapic.write(0, 0, &mut lapic);
        ioapic.write(0x10, 0x0500_0000, &mut lapic);
        assert_eq!(ioapic.read(0x10), 0x0500_0000);
        program(&mut ioapic, &mut lapic, 23, 0x0001_a031 | (1 << 12), 0xff00_00ff);
        ioapic.write(0, 0x10 + 46, &mut lapic);
        assert_eq!(ioapic.read(0x10), 0x0001_a031, "delivery status stays idle");
        ioapic.write(0, 0x10 + 47, &mut lapic);
        assert_eq!(ioapic.read(0x10), 0xff00_0000);
        ioapic.write(0, 0x10 + 48, &mut lapic);
        assert_eq!(ioapic.read(0x10), 0, "no pin 24");
    }

    #[test]
    fn edges_deliver_only_when_unmasked() {
        let (mut ioapic, mut lapic) = (IoApic::default(), Lapic::default());
        ioapic.pulse(2, &mut lapic);
        assert_eq!(lapic.pending_vector(), None);
        program(&mut ioapic, &mut lapic, 2, 0x30, 0);
        ioapic.pulse(2, &mut lapic);
        assert_eq!(lapic.pending_vector(), Some(0x30));
    }

    #[test]
    fn a_level_waits_for_the_end_of_interrupt() {
        let (mut ioapic, mut lapic) = (IoApic::default(), Lapic::default());
        program(&mut ioapic, &mut lapic, 4, 0x41 | LEVEL as u32, 0);
        ioapic.set_line(4, true, &mut lapic);
        let vector = lapic.pending_vector().expect("delivered");
        lapic.acknowledge(vector);
        ioapic.write(0, 0x18, &mut lapic);
        assert_ne!(ioapic.read(0x10) & REMOTE_IRR as u32, 0);
        // Still high at the end of interrupt: delivered again.
        let end = lapic.write(0xb0, 0, crate::time::Nanoseconds(0));
        assert_eq!(end, Some(super::super::lapic::Written::LevelEnd(0x41)));
        ioapic.end_of_interrupt(0x41, &mut lapic);
        assert_eq!(lapic.pending_vector(), Some(0x41));
        lapic.acknowledge(0x41);
        ioapic.set_line(4, false, &mut lapic);
        lapic.write(0xb0, 0, crate::time::Nanoseconds(0));
        ioapic.end_of_interrupt(0x41, &mut lapic);
        assert_eq!(lapic.pending_vector(), None);
    }

    #[test]
    fn other_destinations_are_not_reached() {
        let (mut ioapic, mut lapic) = (IoApic::default(), Lapic::default());
        program(&mut ioapic, &mut lapic, 1, 0x51, 0x0300_0000);
        ioapic.pulse(1, &mut lapic);
        assert_eq!(lapic.pending_vector(), None);
    }
}
