//! The 8254 programmable interval timer (ports 0x40..=0x43) and the
//! speaker-gate port 0x61 through which channel 2 is gated and read.
//!
//! Counters run off the VMM's clock at 1.193182 MHz. Channel 0 drives
//! interrupt line 0; channel 2's gate is bit 0 of port 0x61 (low: the
//! count holds, or in modes 1 and 5 a rising edge starts it) and its output
//! shows in bit 5, which is how Linux calibrates its clocks.
//!
//! Channel 0 loses no periods ([`crate::time::pay_one`]):
//! [`Pit::poll_interrupt`] reports them one at a time until it has caught
//! up.

use crate::time::{Nanoseconds, pay_one};

/// The counters' input frequency in Hz.
const FREQUENCY: u64 = 1_193_182;

/// How a counter's value is read or written.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Access {
    #[default]
    LowThenHigh,
    Low,
    High,
}

/// One counter.
#[derive(Clone, Copy, Default)]
struct Counter {
    mode: u8,
    access: Access,
    /// The programmed count (0 means 65536).
    reload: u32,
    /// When the count was loaded (or the gate rose), moved later by the
    /// time the gate held it.
    start: Nanoseconds,
    /// When the gate went low, while it is low: the count holds there.
    held_since: Option<Nanoseconds>,
    /// Loaded and counting.
    armed: bool,
    /// A low byte written, waiting for the high one.
    low_written: Option<u8>,
    /// A latched value and whether its high byte is next.
    latched: Option<u16>,
    read_high_next: bool,
    /// Periods already reported as interrupts (channel 0).
    reported: u64,
}

impl Counter {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            65_536
        } else {
            u64::from(self.reload)
        }
    }

    fn ticks(&self, now: Nanoseconds) -> u64 {
        let now = self.held_since.unwrap_or(now);
        (u128::from(now.0.saturating_sub(self.start.0)) * u128::from(FREQUENCY) / 1_000_000_000) as u64
    }

    /// The count now. Modes 0 and 1 count on past zero, wrapping.
    fn value(&self, now: Nanoseconds) -> u16 {
        if !self.armed {
            return self.reload as u16;
        }
        let ticks = self.ticks(now);
        let period = self.period();
        match self.mode {
            0 | 1 => u64::from(self.reload).wrapping_sub(ticks) as u16,
            _ => (period - ticks % period) as u16,
        }
    }

    /// The output pin now.
    fn output(&self, now: Nanoseconds) -> bool {
        if !self.armed {
            return false;
        }
        let ticks = self.ticks(now);
        match self.mode {
            0 | 1 => ticks >= self.period(),
            3 => ticks % self.period() < self.period() / 2,
            _ => ticks % self.period() != self.period() - 1,
        }
    }

    fn load(&mut self, count: u32, now: Nanoseconds) {
        self.reload = count;
        self.start = now;
        self.armed = true;
        self.reported = 0;
        if self.held_since.is_some() {
            self.held_since = Some(now);
        }
    }

    /// The gate input changed to `high`.
    fn gate(&mut self, high: bool, now: Nanoseconds) {
        match (self.held_since, high) {
            (None, false) => self.held_since = Some(now),
            (Some(since), true) => {
                self.held_since = None;
                if matches!(self.mode, 1 | 5) {
                    // A rising gate triggers these modes: count afresh.
                    self.start = now;
                } else {
                    self.start.0 += now.0.saturating_sub(since.0);
                }
            }
            _ => {}
        }
    }
}

/// The PIT and port 0x61.
pub struct Pit {
    counters: [Counter; 3],
    /// Port 0x61's writable bits (gate of channel 2, speaker).
    port61: u8,
}

impl Default for Pit {
    /// Nothing counting; channel 2's gate low, as port 0x61 reads 0.
    fn default() -> Self {
        let mut counters = [Counter::default(); 3];
        counters[2].held_since = Some(Nanoseconds(0));
        Self { counters, port61: 0 }
    }
}

impl Pit {
    /// Whether it answers `port`.
    pub fn handles(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | 0x61)
    }

    /// A port read.
    pub fn read(&mut self, port: u16, now: Nanoseconds) -> u8 {
        match port {
            0x61 => {
                let out2 = self.counters[2].output(now);
                (self.port61 & 0x0f) | (u8::from(out2) << 5)
            }
            0x40..=0x42 => {
                let counter = &mut self.counters[usize::from(port - 0x40)];
                let value = counter.latched.unwrap_or_else(|| counter.value(now));
                let byte = match counter.access {
                    Access::Low => value as u8,
                    Access::High => (value >> 8) as u8,
                    Access::LowThenHigh => {
                        let high = counter.read_high_next;
                        counter.read_high_next = !high;
                        if high {
                            counter.latched = None;
                            (value >> 8) as u8
                        } else {
                            value as u8
                        }
                    }
                };
                if counter.access != Access::LowThenHigh {
                    counter.latched = None;
                }
                byte
            }
            _ => 0xff,
        }
    }

    /// A port write.
    pub fn write(&mut self, port: u16, value: u8, now: Nanoseconds) {
        match port {
            0x61 => {
                self.port61 = value & 0x0f;
                self.counters[2].gate(value & 1 != 0, now);
            }
            0x43 => self.command(value, now),
            0x40..=0x42 => {
                let counter = &mut self.counters[usize::from(port - 0x40)];
                match counter.access {
                    Access::Low => counter.load(u32::from(value), now),
                    Access::High => counter.load(u32::from(value) << 8, now),
                    Access::LowThenHigh => match counter.low_written.take() {
                        None => counter.low_written = Some(value),
                        Some(low) => counter.load(u32::from(low) | (u32::from(value) << 8), now),
                    },
                }
            }
            _ => {}
        }
    }

    fn command(&mut self, value: u8, now: Nanoseconds) {
        let channel = usize::from(value >> 6);
        if channel == 3 {
            // Read-back: latch the counts of the channels named (bits 1..=3).
            if value & 0x20 == 0 {
                for (index, counter) in self.counters.iter_mut().enumerate() {
                    if value & (2 << index) != 0 {
                        counter.latched = Some(counter.value(now));
                        counter.read_high_next = false;
                    }
                }
            }
            return;
        }
        let counter = &mut self.counters[channel];
        let access = (value >> 4) & 3;
        if access == 0 {
            counter.latched = Some(counter.value(now));
            counter.read_high_next = false;
            return;
        }
        counter.access = match access {
            1 => Access::Low,
            2 => Access::High,
            _ => Access::LowThenHigh,
        };
        counter.mode = match (value >> 1) & 7 {
            6 => 2,
            7 => 3,
            mode => mode,
        };
        counter.armed = false;
        counter.low_written = None;
        counter.read_high_next = false;
    }

    /// Whether channel 0 owes the guest an interrupt (an edge on line 0):
    /// one per call for each period that ended since it was programmed,
    /// until it has caught up (at most
    /// [`MAX_BACKLOG`](crate::time::MAX_BACKLOG) behind).
    pub fn poll_interrupt(&mut self, now: Nanoseconds) -> bool {
        let counter = &mut self.counters[0];
        if !counter.armed {
            return false;
        }
        let periods = counter.ticks(now) / counter.period();
        let due = match counter.mode {
            0 | 1 => u64::from(periods >= 1),
            _ => periods,
        };
        pay_one(counter.reported, due)
            .map(|paid| counter.reported = paid)
            .is_some()
    }

    /// When channel 0 next interrupts, if it will.
    pub fn next_interrupt(&self) -> Option<Nanoseconds> {
        let counter = &self.counters[0];
        if !counter.armed || (matches!(counter.mode, 0 | 1) && counter.reported >= 1) {
            return None;
        }
        let period_ns = counter.period() * 1_000_000_000 / FREQUENCY;
        Some(Nanoseconds(counter.start.0 + (counter.reported + 1) * period_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time `ticks` input ticks after 0 (rounded up).
    fn after(ticks: u64) -> Nanoseconds {
        Nanoseconds((ticks * 1_000_000_000).div_ceil(FREQUENCY))
    }

    fn read_count(pit: &mut Pit, port: u16, now: Nanoseconds) -> u16 {
        let low = pit.read(port, now);
        u16::from_le_bytes([low, pit.read(port, now)])
    }

    /// Programs channel 2 in mode 0 with `count`, as Linux's TSC
    /// calibration does: gate high, speaker off, then the count.
    fn one_shot_on_channel_2(pit: &mut Pit, count: u16, now: Nanoseconds) {
        let port61 = pit.read(0x61, now);
        pit.write(0x61, (port61 & !0x02) | 0x01, now);
        pit.write(0x43, 0xb0, now);
        pit.write(0x42, count as u8, now);
        pit.write(0x42, (count >> 8) as u8, now);
    }

    #[test]
    fn channel_2_counts_down_and_raises_its_output_in_port_0x61() {
        let mut pit = Pit::default();
        one_shot_on_channel_2(&mut pit, 11_932, Nanoseconds(0));
        assert_eq!(pit.read(0x61, Nanoseconds(0)) & 0x21, 0x01, "gate high, output low");
        assert_eq!(pit.read(0x61, after(11_931)) & 0x20, 0, "not yet");
        assert_eq!(pit.read(0x61, after(11_932)) & 0x20, 0x20, "terminal count");
        assert_eq!(pit.read(0x61, after(20_000)) & 0x20, 0x20, "and it stays high");
        // The count as Linux's quick calibration reads it, falling.
        let first = read_count(&mut pit, 0x42, after(1000));
        let later = read_count(&mut pit, 0x42, after(3000));
        assert_eq!((first, later), (10_932, 8_932));
        // Past zero it wraps to 0xffff and counts on.
        assert_eq!(read_count(&mut pit, 0x42, after(11_933)), 0xffff);
    }

    #[test]
    fn a_low_gate_holds_channel_2() {
        let mut pit = Pit::default();
        one_shot_on_channel_2(&mut pit, 1000, Nanoseconds(0));
        pit.write(0x61, 0x00, after(400));
        assert_eq!(
            read_count(&mut pit, 0x42, after(5000)),
            600,
            "held while the gate is low"
        );
        assert_eq!(pit.read(0x61, after(5000)) & 0x20, 0);
        pit.write(0x61, 0x01, after(5000));
        assert_eq!(
            read_count(&mut pit, 0x42, after(5100)),
            500,
            "counting on from where it was"
        );
        assert_eq!(pit.read(0x61, after(5599)) & 0x20, 0);
        assert_eq!(pit.read(0x61, after(5600)) & 0x20, 0x20);
        // Port 0x61 keeps the gate and speaker bits it was given.
        pit.write(0x61, 0x03, after(6000));
        assert_eq!(pit.read(0x61, after(6000)) & 0x0f, 0x03);
    }

    #[test]
    fn a_count_loaded_with_the_gate_low_waits_for_it() {
        let mut pit = Pit::default();
        pit.write(0x43, 0xb0, Nanoseconds(0));
        pit.write(0x42, 100, Nanoseconds(0));
        pit.write(0x42, 0, Nanoseconds(0));
        assert_eq!(pit.read(0x61, after(1000)) & 0x20, 0, "the gate is low at reset");
        pit.write(0x61, 0x01, after(1000));
        assert_eq!(pit.read(0x61, after(1099)) & 0x20, 0);
        assert_eq!(pit.read(0x61, after(1101)) & 0x20, 0x20);
    }

    #[test]
    fn channel_0_owes_every_period_and_pays_them_one_at_a_time() {
        let mut pit = Pit::default();
        // Mode 2, a period of 1193 ticks (1 ms), as Linux's HZ timer.
        pit.write(0x43, 0x34, Nanoseconds(0));
        pit.write(0x40, 0xa9, Nanoseconds(0));
        pit.write(0x40, 0x04, Nanoseconds(0));
        assert!(!pit.poll_interrupt(after(1192)));
        let late = after(3 * 1193);
        let paid = (0..10).filter(|_| pit.poll_interrupt(late)).count();
        assert_eq!(paid, 3, "three periods ended, three interrupts");
        assert_eq!(
            pit.next_interrupt(),
            Some(Nanoseconds(4 * (1193 * 1_000_000_000 / FREQUENCY)))
        );
        // Long unseen: at most the backlog is paid.
        let very_late = after(1000 * 1193);
        let paid = (0..2000).filter(|_| pit.poll_interrupt(very_late)).count();
        assert_eq!(paid as u64, crate::time::MAX_BACKLOG);
    }

    #[test]
    fn a_one_shot_channel_0_interrupts_once() {
        let mut pit = Pit::default();
        pit.write(0x43, 0x30, Nanoseconds(0));
        pit.write(0x40, 100, Nanoseconds(0));
        pit.write(0x40, 0, Nanoseconds(0));
        assert!(!pit.poll_interrupt(after(99)));
        assert!(pit.poll_interrupt(after(500)));
        assert!(!pit.poll_interrupt(after(5000)));
        assert_eq!(pit.next_interrupt(), None);
    }

    #[test]
    fn latched_counts_read_back_whole() {
        let mut pit = Pit::default();
        pit.write(0x43, 0x34, Nanoseconds(0));
        pit.write(0x40, 0x00, Nanoseconds(0));
        pit.write(0x40, 0x10, Nanoseconds(0));
        pit.write(0x43, 0x00, after(0x100));
        // Read later: still the latched value.
        assert_eq!(read_count(&mut pit, 0x40, after(0x800)), 0x0f00);
        assert_eq!(read_count(&mut pit, 0x40, after(0x800)), 0x0800, "the latch is gone");
    }
}
