//! The local APIC of the guest's one CPU, in xAPIC mode at
//! [`LOCAL_APIC`](vm_platform::LOCAL_APIC): ID, version, task priority,
//! end of interrupt, logical destination, spurious vector (software
//! enable), the in-service, trigger-mode and request registers, error
//! status, the interrupt command register (fixed interrupts to itself; other
//! kinds are reported to the caller and ignored), the local vector table
//! and the timer: one-shot, periodic, and TSC-deadline, armed through
//! IA32_TSC_DEADLINE (the caller converts the counter's value to the VMM's
//! clock). With TSC-deadline mode Linux needs no calibration of the timer
//! against the PIT, which interrupts delivered between exits make
//! unreliable.
//!
//! The VMM plays firmware: the APIC starts software-enabled in
//! virtual-wire mode, LINT0 taking the 8259A's interrupts as ExtINT and
//! LINT1 as NMI, as a PC BIOS leaves it. A guest that masks LINT0 or
//! disables the APIC no longer gets the PIC's interrupts.

use crate::time::{Nanoseconds, SECOND, pay_one};
use alloc::format;
use alloc::string::String;
use vm_platform::LOCAL_APIC_TIMER_HZ;

/// Register offsets.
mod register {
    pub const ID: u64 = 0x20;
    pub const VERSION: u64 = 0x30;
    pub const TASK_PRIORITY: u64 = 0x80;
    pub const ARBITRATION_PRIORITY: u64 = 0x90;
    pub const PROCESSOR_PRIORITY: u64 = 0xa0;
    pub const END_OF_INTERRUPT: u64 = 0xb0;
    pub const REMOTE_READ: u64 = 0xc0;
    pub const LOGICAL_DESTINATION: u64 = 0xd0;
    pub const DESTINATION_FORMAT: u64 = 0xe0;
    pub const SPURIOUS: u64 = 0xf0;
    pub const IN_SERVICE: u64 = 0x100;
    pub const TRIGGER_MODE: u64 = 0x180;
    pub const REQUEST: u64 = 0x200;
    pub const ERROR_STATUS: u64 = 0x280;
    pub const COMMAND_LOW: u64 = 0x300;
    pub const COMMAND_HIGH: u64 = 0x310;
    pub const LVT_TIMER: u64 = 0x320;
    pub const LVT_ERROR: u64 = 0x370;
    pub const INITIAL_COUNT: u64 = 0x380;
    pub const CURRENT_COUNT: u64 = 0x390;
    pub const DIVIDE: u64 = 0x3e0;
}

/// Version 0x14 (an integrated APIC), six LVT entries (timer, thermal,
/// performance, LINT0, LINT1, error).
const APIC_VERSION: u32 = 0x0005_0014;
/// An LVT entry's mask bit.
const MASKED: u32 = 1 << 16;
/// The timer LVT's mode field (bits 17 and 18): one-shot, periodic,
/// TSC-deadline.
const TIMER_MODE: u32 = 0b11 << 17;
const PERIODIC: u32 = 1 << 17;
const TSC_DEADLINE: u32 = 1 << 18;
/// SVR: the APIC is software-enabled.
const SOFTWARE_ENABLE: u32 = 1 << 8;
/// LVT delivery modes (bits 8..=10).
const MODE_NMI: u32 = 0b100;
const MODE_EXTINT: u32 = 0b111;
/// Error status: a received or sent illegal vector, an illegal register.
const ERROR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ERROR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ERROR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// Indices in the local vector table, in register order from 0x320
/// (thermal and performance, 1 and 2, are kept but never raise anything).
mod lvt {
    pub const TIMER: usize = 0;
    pub const LINT0: usize = 3;
    pub const LINT1: usize = 4;
    pub const ERROR: usize = 5;
}

/// Bits of each LVT entry a guest may write.
const LVT_WRITABLE: [u32; 6] = [
    0xff | MASKED | TIMER_MODE,
    0xff | 0x700 | MASKED,
    0xff | 0x700 | MASKED,
    0xff | 0x700 | (1 << 13) | (1 << 15) | MASKED,
    0xff | 0x700 | (1 << 13) | (1 << 15) | MASKED,
    0xff | MASKED,
];

/// A set of the 256 vectors, as the APIC's 8 × 32-bit registers hold it.
#[derive(Clone, Copy, Default)]
struct Vectors([u32; 8]);

impl Vectors {
    fn set(&mut self, vector: u8, on: bool) {
        let (word, bit) = (usize::from(vector / 32), vector % 32);
        if on {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
    }

    fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 32)] & (1 << (vector % 32)) != 0
    }

    fn highest(&self) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&word| self.0[word] != 0)
            .map(|word| (word * 32 + 31 - self.0[word].leading_zeros() as usize) as u8)
    }
}

/// The timer: counting since `start` from `initial`, each count taking
/// `divide` input ticks.
#[derive(Clone, Copy, Default)]
struct Timer {
    initial: u32,
    divide_configuration: u32,
    start: Nanoseconds,
    /// Periods already delivered (one-shot: at most one).
    fired: u64,
    /// TSC-deadline mode: the counter value IA32_TSC_DEADLINE holds (0:
    /// disarmed) and when that is on the VMM's clock.
    tsc_deadline: u64,
    deadline: Nanoseconds,
}

impl Timer {
    /// Input ticks per count: 1, 2, 4, ... 128 from bits 0, 1 and 3.
    fn divisor(&self) -> u64 {
        let code = (self.divide_configuration & 0b11) | ((self.divide_configuration & 0b1000) >> 1);
        if code == 0b111 { 1 } else { 2 << code }
    }

    /// One period in nanoseconds (at least one, so a tiny count cannot
    /// stall the arithmetic).
    fn period(&self) -> u64 {
        let ticks = u128::from(self.initial) * u128::from(self.divisor());
        (ticks * u128::from(SECOND) / u128::from(LOCAL_APIC_TIMER_HZ)).max(1) as u64
    }

    /// Whole periods elapsed at `now`.
    fn periods(&self, now: Nanoseconds) -> u64 {
        now.0.saturating_sub(self.start.0) / self.period()
    }

    fn current(&self, now: Nanoseconds, periodic: bool) -> u32 {
        if self.initial == 0 || (!periodic && self.periods(now) >= 1) {
            return 0;
        }
        let into_period = now.0.saturating_sub(self.start.0) % self.period();
        let counted = u128::from(into_period) * u128::from(LOCAL_APIC_TIMER_HZ)
            / (u128::from(SECOND) * u128::from(self.divisor()));
        self.initial.saturating_sub(counted as u32)
    }
}

/// The local APIC.
pub struct Lapic {
    id: u32,
    task_priority: u32,
    logical_destination: u32,
    destination_format: u32,
    spurious: u32,
    in_service: Vectors,
    trigger_mode: Vectors,
    request: Vectors,
    /// The error status register as last latched, and errors since.
    error_status: u32,
    errors_pending: u32,
    command: [u32; 2],
    lvt: [u32; 6],
    timer: Timer,
    /// IA32_APIC_BASE.EN: off, the APIC is gone and the PIC's INTR goes
    /// straight to the CPU.
    hardware_enabled: bool,
}

impl Default for Lapic {
    /// As firmware leaves it: enabled, in virtual-wire mode.
    fn default() -> Self {
        let mut lapic = Self::reset();
        lapic.spurious = SOFTWARE_ENABLE | 0xff;
        lapic.lvt[lvt::LINT0] = MODE_EXTINT << 8;
        lapic.lvt[lvt::LINT1] = MODE_NMI << 8;
        lapic
    }
}

impl Lapic {
    /// The power-on state: software-disabled, every LVT entry masked.
    fn reset() -> Self {
        Self {
            id: 0,
            task_priority: 0,
            logical_destination: 0,
            destination_format: 0xffff_ffff,
            spurious: 0xff,
            in_service: Vectors::default(),
            trigger_mode: Vectors::default(),
            request: Vectors::default(),
            error_status: 0,
            errors_pending: 0,
            command: [0; 2],
            lvt: [MASKED; 6],
            timer: Timer::default(),
            hardware_enabled: true,
        }
    }

    /// Whether the APIC is enabled in IA32_APIC_BASE.
    pub fn hardware_enabled(&self) -> bool {
        self.hardware_enabled
    }

    /// IA32_APIC_BASE.EN written: disabling resets the APIC; enabling again
    /// brings it back in its power-on state.
    pub fn set_hardware_enabled(&mut self, enabled: bool) {
        if enabled != self.hardware_enabled {
            *self = Self::reset();
            self.hardware_enabled = enabled;
        }
    }

    fn software_enabled(&self) -> bool {
        self.hardware_enabled && self.spurious & SOFTWARE_ENABLE != 0
    }

    /// A 32-bit register read at `offset` in the APIC's page.
    pub fn read(&mut self, offset: u64, now: Nanoseconds) -> u32 {
        use register::*;
        let index = ((offset & 0x70) >> 4) as usize;
        match offset & !0xf {
            ID => self.id,
            VERSION => APIC_VERSION,
            TASK_PRIORITY => self.task_priority,
            ARBITRATION_PRIORITY | REMOTE_READ => 0,
            PROCESSOR_PRIORITY => self.processor_priority(),
            LOGICAL_DESTINATION => self.logical_destination,
            DESTINATION_FORMAT => self.destination_format,
            SPURIOUS => self.spurious,
            IN_SERVICE..=0x170 => self.in_service.0[index],
            TRIGGER_MODE..=0x1f0 => self.trigger_mode.0[index],
            REQUEST..=0x270 => self.request.0[index],
            ERROR_STATUS => self.error_status,
            COMMAND_LOW => self.command[0],
            COMMAND_HIGH => self.command[1],
            LVT_TIMER..=LVT_ERROR => self.lvt[((offset - LVT_TIMER) >> 4) as usize],
            INITIAL_COUNT if self.deadline_mode() => 0,
            CURRENT_COUNT if self.deadline_mode() => 0,
            INITIAL_COUNT => self.timer.initial,
            CURRENT_COUNT => self.timer.current(now, self.periodic()),
            DIVIDE => self.timer.divide_configuration,
            END_OF_INTERRUPT => 0,
            _ => {
                self.error(ERROR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    /// A 32-bit register write. Returns an end of interrupt for a
    /// level-triggered vector (the I/O APIC must hear of it), or a note
    /// on an interprocessor interrupt it ignored.
    pub fn write(&mut self, offset: u64, value: u32, now: Nanoseconds) -> Option<Written> {
        use register::*;
        match offset & !0xf {
            ID => self.id = value & 0xff00_0000,
            TASK_PRIORITY => self.task_priority = value & 0xff,
            END_OF_INTERRUPT => return self.end_of_interrupt().map(Written::LevelEnd),
            LOGICAL_DESTINATION => self.logical_destination = value & 0xff00_0000,
            DESTINATION_FORMAT => self.destination_format = value | 0x0fff_ffff,
            SPURIOUS => {
                self.spurious = value & 0x1ff;
                if !self.software_enabled() {
                    for entry in &mut self.lvt {
                        *entry |= MASKED;
                    }
                }
            }
            ERROR_STATUS => {
                self.error_status = self.errors_pending;
                self.errors_pending = 0;
            }
            COMMAND_LOW => {
                self.command[0] = value & !(1 << 12);
                return self.send(value).map(Written::Ignored);
            }
            COMMAND_HIGH => self.command[1] = value & 0xff00_0000,
            LVT_TIMER..=LVT_ERROR => {
                let index = ((offset - LVT_TIMER) >> 4) as usize;
                let forced = if self.software_enabled() { 0 } else { MASKED };
                let old = self.lvt[index];
                self.lvt[index] = (value & LVT_WRITABLE[index]) | forced;
                if index == lvt::TIMER && (old ^ self.lvt[index]) & TIMER_MODE != 0 {
                    // A change of mode disarms the timer.
                    self.timer = Timer {
                        divide_configuration: self.timer.divide_configuration,
                        ..Timer::default()
                    };
                }
            }
            INITIAL_COUNT if self.deadline_mode() => {}
            INITIAL_COUNT => {
                self.timer.initial = value;
                self.timer.start = now;
                self.timer.fired = 0;
            }
            DIVIDE => self.timer.divide_configuration = value & 0b1011,
            VERSION | ARBITRATION_PRIORITY | PROCESSOR_PRIORITY | REMOTE_READ | IN_SERVICE..=0x270
            | CURRENT_COUNT => {}
            _ => self.error(ERROR_ILLEGAL_REGISTER),
        }
        None
    }

    fn periodic(&self) -> bool {
        self.lvt[lvt::TIMER] & TIMER_MODE == PERIODIC
    }

    fn deadline_mode(&self) -> bool {
        self.lvt[lvt::TIMER] & TIMER_MODE == TSC_DEADLINE
    }

    /// IA32_TSC_DEADLINE as the guest reads it: the armed deadline, or 0
    /// (disarmed, fired, or not in TSC-deadline mode).
    pub fn tsc_deadline(&self) -> u64 {
        if self.deadline_mode() { self.timer.tsc_deadline } else { 0 }
    }

    /// IA32_TSC_DEADLINE written: `tsc` (0 disarms) falls `at` on the
    /// VMM's clock. Ignored outside TSC-deadline mode, as the hardware
    /// does.
    pub fn set_tsc_deadline(&mut self, tsc: u64, at: Nanoseconds) {
        if self.deadline_mode() {
            self.timer.tsc_deadline = tsc;
            self.timer.deadline = at;
        }
    }

    /// Records an error and raises the error LVT's interrupt.
    fn error(&mut self, bits: u32) {
        self.errors_pending |= bits;
        self.local_interrupt(lvt::ERROR);
    }

    /// Raises the local interrupt `lvt` if its entry is unmasked.
    fn local_interrupt(&mut self, index: usize) {
        let entry = self.lvt[index];
        if entry & MASKED == 0 && self.software_enabled() {
            self.accept(entry as u8, false);
        }
    }

    /// Takes a fixed interrupt `vector` into the request register (from the
    /// I/O APIC, an IPI or the LVT). Vectors below 16 are illegal.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) {
        if !self.software_enabled() {
            return;
        }
        if vector < 16 {
            self.errors_pending |= ERROR_RECEIVE_ILLEGAL_VECTOR;
            // The error interrupt itself must be legal, or this recurses.
            let error = self.lvt[lvt::ERROR];
            if error & MASKED == 0 && error as u8 >= 16 {
                self.request.set(error as u8, true);
            }
            return;
        }
        self.request.set(vector, true);
        self.trigger_mode.set(vector, level_triggered);
    }

    /// Sends the interprocessor interrupt `low` describes (with the
    /// destination in the high word). This CPU is the only one: fixed and
    /// lowest-priority interrupts that reach it are taken; other kinds
    /// are ignored, and said so.
    fn send(&mut self, low: u32) -> Option<String> {
        let vector = low as u8;
        let mode = (low >> 8) & 7;
        let to_self = match (low >> 18) & 3 {
            0b00 => self.is_destination((self.command[1] >> 24) as u8, low & (1 << 11) != 0),
            0b01 | 0b10 => true,
            _ => false,
        };
        match mode {
            0b000 | 0b001 if vector < 16 => {
                self.error(ERROR_SEND_ILLEGAL_VECTOR);
                None
            }
            0b000 | 0b001 => {
                if to_self {
                    self.accept(vector, false);
                }
                None
            }
            _ => Some(format!("ignored an IPI with delivery mode {mode:#05b} (ICR {low:#x})")),
        }
    }

    /// Whether an interrupt for `destination` (physical or logical) reaches
    /// this APIC.
    pub fn is_destination(&self, destination: u8, logical: bool) -> bool {
        if destination == 0xff {
            return true;
        }
        if !logical {
            return u32::from(destination) == self.id >> 24;
        }
        let mine = (self.logical_destination >> 24) as u8;
        if self.destination_format >> 28 == 0xf {
            destination & mine != 0
        } else {
            // Cluster model: cluster in the high nibble, members below.
            destination >> 4 == mine >> 4 && destination & mine & 0xf != 0
        }
    }

    /// The processor priority: the task priority or the class of the
    /// highest vector in service, whichever is higher.
    fn processor_priority(&self) -> u32 {
        let in_service = self.in_service.highest().map_or(0, |vector| u32::from(vector & 0xf0));
        if self.task_priority & 0xf0 >= in_service {
            self.task_priority
        } else {
            in_service
        }
    }

    /// The vector to deliver now, if any: the highest requested one whose
    /// class is above the processor priority.
    pub fn pending_vector(&self) -> Option<u8> {
        let vector = self.request.highest()?;
        (u32::from(vector & 0xf0) > self.processor_priority() & 0xf0).then_some(vector)
    }

    /// The CPU took `vector` (from [`Self::pending_vector`]): it moves from
    /// request to service.
    pub fn acknowledge(&mut self, vector: u8) {
        self.request.set(vector, false);
        self.in_service.set(vector, true);
    }

    /// Ends the highest vector in service; returns it if it was
    /// level-triggered.
    fn end_of_interrupt(&mut self) -> Option<u8> {
        let vector = self.in_service.highest()?;
        self.in_service.set(vector, false);
        self.trigger_mode.contains(vector).then_some(vector)
    }

    /// Whether the 8259A's output reaches the CPU: through LINT0 in ExtINT
    /// mode, or directly if the APIC is disabled in IA32_APIC_BASE.
    pub fn passes_external_interrupts(&self) -> bool {
        let lint0 = self.lvt[lvt::LINT0];
        !self.hardware_enabled || (self.software_enabled() && lint0 & MASKED == 0 && (lint0 >> 8) & 7 == MODE_EXTINT)
    }

    /// Advances the timer to `now`, requesting its interrupt for a period
    /// that ended: one per call, until every period has had one
    /// ([`pay_one`]).
    pub fn tick(&mut self, now: Nanoseconds) {
        if self.deadline_mode() {
            if self.timer.tsc_deadline != 0 && now >= self.timer.deadline {
                self.timer.tsc_deadline = 0;
                self.local_interrupt(lvt::TIMER);
            }
            return;
        }
        if self.timer.initial == 0 {
            return;
        }
        let periods = self.timer.periods(now);
        let due = if self.periodic() { periods } else { periods.min(1) };
        if let Some(paid) = pay_one(self.timer.fired, due) {
            self.timer.fired = paid;
            self.local_interrupt(lvt::TIMER);
        }
    }

    /// When the timer next expires, if it is counting.
    pub fn next_deadline(&self) -> Option<Nanoseconds> {
        if self.deadline_mode() {
            return (self.timer.tsc_deadline != 0).then_some(self.timer.deadline);
        }
        if self.timer.initial == 0 || (!self.periodic() && self.timer.fired >= 1) {
            return None;
        }
        Some(Nanoseconds(self.timer.start.0 + (self.timer.fired + 1) * self.timer.period()))
    }
}

/// What a register write asks of the rest of the machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The guest ended a level-triggered interrupt with this vector.
    LevelEnd(u8),
    /// An interprocessor interrupt that was ignored, and why.
    Ignored(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMER_VECTOR: u8 = 0x40;

    fn at(nanoseconds: u64) -> Nanoseconds {
        Nanoseconds(nanoseconds)
    }

    #[test]
    fn starts_in_virtual_wire_mode_and_reports_its_version() {
        let mut lapic = Lapic::default();
        assert!(lapic.passes_external_interrupts());
        assert_eq!(lapic.read(register::VERSION, at(0)), APIC_VERSION);
        assert_eq!(lapic.read(register::SPURIOUS, at(0)), 0x1ff);
        lapic.write(0x350, MASKED | (MODE_EXTINT << 8), at(0));
        assert!(!lapic.passes_external_interrupts());
        lapic.set_hardware_enabled(false);
        assert!(lapic.passes_external_interrupts());
    }

    #[test]
    fn software_disable_masks_every_local_interrupt() {
        let mut lapic = Lapic::default();
        lapic.write(register::SPURIOUS, 0xff, at(0));
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR), at(0));
        assert_eq!(lapic.read(register::LVT_TIMER, at(0)) & MASKED, MASKED);
        lapic.accept(0x50, false);
        assert_eq!(lapic.pending_vector(), None);
    }

    #[test]
    fn one_shot_timer_fires_once_and_counts_down() {
        let mut lapic = Lapic::default();
        lapic.write(register::DIVIDE, 0b1011, at(0)); // divide by 1
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR), at(0));
        // 1,000 counts at the timer's rate.
        let period = 1_000 * SECOND / LOCAL_APIC_TIMER_HZ;
        lapic.write(register::INITIAL_COUNT, 1_000, at(0));
        assert_eq!(lapic.next_deadline(), Some(at(period)));
        assert_eq!(lapic.read(register::CURRENT_COUNT, at(period / 2)), 500);
        lapic.tick(at(period - 1));
        assert_eq!(lapic.pending_vector(), None);
        lapic.tick(at(period));
        assert_eq!(lapic.pending_vector(), Some(TIMER_VECTOR));
        assert_eq!(lapic.read(register::CURRENT_COUNT, at(period * 2)), 0);
        assert_eq!(lapic.next_deadline(), None);
    }

    #[test]
    fn periodic_timer_with_a_divisor_fires_every_period() {
        let mut lapic = Lapic::default();
        lapic.write(register::DIVIDE, 0b0001, at(0)); // divide by 4
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR) | PERIODIC, at(0));
        lapic.write(register::INITIAL_COUNT, 250, at(0));
        let period = 1_000 * SECOND / LOCAL_APIC_TIMER_HZ;
        let mut taken = 0;
        for step in 1..=5 {
            lapic.tick(at(period * step));
            if let Some(vector) = lapic.pending_vector() {
                lapic.acknowledge(vector);
                assert_eq!(lapic.write(register::END_OF_INTERRUPT, 0, at(0)), None);
                taken += 1;
            }
        }
        assert_eq!(taken, 5);
        assert_eq!(lapic.next_deadline(), Some(at(period * 6)));
    }

    #[test]
    fn the_tsc_deadline_timer_fires_once_at_its_deadline() {
        let mut lapic = Lapic::default();
        lapic.set_tsc_deadline(1000, at(10));
        assert_eq!(lapic.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR) | TSC_DEADLINE, at(0));
        assert_eq!(lapic.read(register::LVT_TIMER, at(0)), u32::from(TIMER_VECTOR) | TSC_DEADLINE);
        lapic.write(register::INITIAL_COUNT, 500, at(0));
        assert_eq!(lapic.read(register::INITIAL_COUNT, at(0)), 0, "the count registers are unused");
        assert_eq!(lapic.next_deadline(), None);
        lapic.set_tsc_deadline(5000, at(2000));
        assert_eq!((lapic.tsc_deadline(), lapic.next_deadline()), (5000, Some(at(2000))));
        lapic.tick(at(1999));
        assert_eq!(lapic.pending_vector(), None);
        lapic.tick(at(2000));
        assert_eq!(lapic.pending_vector(), Some(TIMER_VECTOR));
        assert_eq!((lapic.tsc_deadline(), lapic.next_deadline()), (0, None), "fired: disarmed");
        lapic.acknowledge(TIMER_VECTOR);
        lapic.write(register::END_OF_INTERRUPT, 0, at(2000));
        lapic.tick(at(9000));
        assert_eq!(lapic.pending_vector(), None, "once");
        // Writing 0 disarms; changing the mode disarms too.
        lapic.set_tsc_deadline(7000, at(3000));
        lapic.set_tsc_deadline(0, at(0));
        lapic.tick(at(9000));
        assert_eq!(lapic.pending_vector(), None);
        lapic.set_tsc_deadline(7000, at(3000));
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR), at(0));
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR) | TSC_DEADLINE, at(0));
        lapic.tick(at(9000));
        assert_eq!(lapic.pending_vector(), None);
    }

    #[test]
    fn a_periodic_timer_seen_late_pays_every_period_it_missed() {
        let mut lapic = Lapic::default();
        lapic.write(register::DIVIDE, 0b1011, at(0));
        lapic.write(register::LVT_TIMER, u32::from(TIMER_VECTOR) | PERIODIC, at(0));
        lapic.write(register::INITIAL_COUNT, 1_000, at(0));
        let period = 1_000 * SECOND / LOCAL_APIC_TIMER_HZ;
        // Looked at only after three periods, as a busy guest's exits come.
        let late = at(period * 3 + period / 2);
        let mut taken = 0;
        for _ in 0..10 {
            lapic.tick(late);
            if let Some(vector) = lapic.pending_vector() {
                lapic.acknowledge(vector);
                lapic.write(register::END_OF_INTERRUPT, 0, late);
                taken += 1;
            }
        }
        assert_eq!(taken, 3, "one interrupt for each period, none more");
        assert_eq!(lapic.next_deadline(), Some(at(period * 4)));
    }

    #[test]
    fn priorities_hold_back_lower_classes_until_the_end_of_interrupt() {
        let mut lapic = Lapic::default();
        lapic.accept(0x61, true);
        lapic.acknowledge(0x61);
        assert_eq!(lapic.read(register::IN_SERVICE + 0x30, at(0)), 1 << 1);
        assert_eq!(lapic.read(register::TRIGGER_MODE + 0x30, at(0)), 1 << 1);
        lapic.accept(0x55, false);
        lapic.accept(0x65, false);
        assert_eq!(lapic.pending_vector(), None, "same class as the one in service");
        assert_eq!(lapic.read(register::PROCESSOR_PRIORITY, at(0)), 0x60);
        assert_eq!(lapic.write(register::END_OF_INTERRUPT, 0, at(0)), Some(Written::LevelEnd(0x61)));
        assert_eq!(lapic.pending_vector(), Some(0x65));
        lapic.write(register::TASK_PRIORITY, 0x70, at(0));
        assert_eq!(lapic.pending_vector(), None);
        lapic.write(register::TASK_PRIORITY, 0x50, at(0));
        lapic.acknowledge(0x65);
        lapic.write(register::END_OF_INTERRUPT, 0, at(0));
        assert_eq!(lapic.pending_vector(), None, "0x55 is in the task priority's class");
        lapic.write(register::TASK_PRIORITY, 0, at(0));
        assert_eq!(lapic.pending_vector(), Some(0x55));
    }

    #[test]
    fn self_ipi_is_taken_and_other_kinds_are_ignored() {
        let mut lapic = Lapic::default();
        assert_eq!(lapic.write(register::COMMAND_LOW, (0b01 << 18) | 0x70, at(0)), None);
        assert_eq!(lapic.pending_vector(), Some(0x70));
        lapic.write(register::COMMAND_HIGH, 0, at(0));
        assert_eq!(lapic.write(register::COMMAND_LOW, 0x71, at(0)), None);
        assert!(lapic.request.contains(0x71));
        assert!(matches!(lapic.write(register::COMMAND_LOW, 0x500, at(0)), Some(Written::Ignored(_))));
    }

    #[test]
    fn illegal_vectors_and_registers_are_errors() {
        let mut lapic = Lapic::default();
        lapic.write(register::LVT_ERROR, 0xfe, at(0));
        lapic.write(register::COMMAND_LOW, (0b01 << 18) | 3, at(0));
        lapic.read(0x3f0, at(0));
        lapic.write(register::ERROR_STATUS, 0, at(0));
        assert_eq!(
            lapic.read(register::ERROR_STATUS, at(0)),
            ERROR_SEND_ILLEGAL_VECTOR | ERROR_ILLEGAL_REGISTER
        );
        assert_eq!(lapic.pending_vector(), Some(0xfe));
    }

    #[test]
    fn logical_destinations_match_flat_and_cluster_models() {
        let mut lapic = Lapic::default();
        lapic.write(register::LOGICAL_DESTINATION, 0x0400_0000, at(0));
        assert!(lapic.is_destination(0x04, true));
        assert!(!lapic.is_destination(0x02, true));
        lapic.write(register::DESTINATION_FORMAT, 0x0fff_ffff, at(0));
        lapic.write(register::LOGICAL_DESTINATION, 0x1200_0000, at(0));
        assert!(lapic.is_destination(0x13, true));
        assert!(!lapic.is_destination(0x23, true));
        assert!(lapic.is_destination(0, false));
    }
}
