//! The 8254 programmable interval timer (ports 0x40..=0x43) and the
//! speaker-gate port 0x61 through which channel 2 is gated and read.
//!
//! Counters run off the VMM's clock at 1.193182 MHz. Channel 0 drives
//! interrupt line 0; channel 2's output shows in bit 5 of port 0x61, which
//! is how Linux calibrates its clocks.

use crate::time::Nanoseconds;

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
    /// When the count was loaded (or the gate rose).
    start: Nanoseconds,
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
        now.0.saturating_sub(self.start.0) * FREQUENCY / 1_000_000_000
    }

    /// The count now.
    fn value(&self, now: Nanoseconds) -> u16 {
        if !self.armed {
            return self.reload as u16;
        }
        let ticks = self.ticks(now);
        let period = self.period();
        match self.mode {
            0 | 1 => period.saturating_sub(ticks) as u16,
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
    }
}

/// The PIT and port 0x61.
#[derive(Default)]
pub struct Pit {
    counters: [Counter; 3],
    /// Port 0x61's writable bits (gate of channel 2, speaker).
    port61: u8,
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
                let gate_rose = value & 1 != 0 && self.port61 & 1 == 0;
                self.port61 = value & 0x0f;
                if gate_rose {
                    // A rising gate restarts channel 2's count.
                    let counter = &mut self.counters[2];
                    counter.start = now;
                }
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

    /// Interrupts channel 0 has raised since the last call (each is an
    /// edge on line 0; several missed periods count once).
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
        if due > counter.reported {
            counter.reported = due;
            return true;
        }
        false
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
