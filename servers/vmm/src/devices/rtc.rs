//! The CMOS RAM and real-time clock (an MC146818's programming model) at
//! ports 0x70 (index, with the NMI mask in bit 7) and 0x71 (data).
//!
//! The clock: seconds, minutes, hours, day of week and month, month, year
//! and century (register 0x32), in BCD or binary and 24- or 12-hour form as
//! register B says. The VMM has no wall clock (the kernel offers only its
//! uptime), so time starts at [`EPOCH`], 2026-01-01 00:00:00 UTC, when the
//! VMM calibrates its clock, and runs from there; a guest may set it
//! (register B's SET bit stops updates while it writes). Register A's
//! update-in-progress bit is set for the 244 µs before each second ends
//! and the 1,984 µs update after, as on the chip. Register C reports the
//! update-ended flag; the clock raises no interrupts (IRQ 8 is not wired).
//!
//! The memory-size registers give the guest's RAM: base memory
//! (0x15..=0x16, 640 KiB), memory above 1 MiB in KiB (0x17..=0x18 and
//! 0x30..=0x31, at most 0xffff) and above 16 MiB in 64 KiB blocks
//! (0x34..=0x35), with the standard checksum at 0x2e..=0x2f. The rest of
//! the 128 bytes is plain storage.

use crate::time::{Nanoseconds, SECOND};

/// Where the clock starts: 2026-01-01 00:00:00 UTC, in seconds since the
/// Unix epoch.
pub const EPOCH: u64 = 1_767_225_600;

/// Register numbers.
mod register {
    pub const SECONDS: u8 = 0x00;
    pub const MINUTES: u8 = 0x02;
    pub const HOURS: u8 = 0x04;
    pub const DAY_OF_WEEK: u8 = 0x06;
    pub const DAY_OF_MONTH: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    pub const YEAR: u8 = 0x09;
    pub const A: u8 = 0x0a;
    pub const B: u8 = 0x0b;
    pub const C: u8 = 0x0c;
    pub const D: u8 = 0x0d;
    pub const CENTURY: u8 = 0x32;
}

/// Register A: update in progress.
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// Register B: updates stopped for setting; binary (not BCD); 24-hour.
const SET: u8 = 0x80;
const UPDATE_INTERRUPT: u8 = 0x10;
const BINARY: u8 = 0x04;
const HOURS_24: u8 = 0x02;
/// Register C: an update ended; an enabled interrupt flag is set.
const UPDATE_ENDED: u8 = 0x10;
const INTERRUPT_REQUEST: u8 = 0x80;
/// Register D: the battery is good.
const VALID_RAM_AND_TIME: u8 = 0x80;
/// Nanoseconds before and after a second's end during which an update is
/// in progress.
const UPDATE_WARNING: u64 = 244_000;
const UPDATE_CYCLE: u64 = 1_984_000;

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    /// 1 (Sunday) to 7.
    weekday: u64,
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Civil {
    /// The field clock register `index` holds directly, if it is one.
    fn field(&mut self, index: u8) -> Option<&mut u64> {
        Some(match index {
            register::SECONDS => &mut self.second,
            register::MINUTES => &mut self.minute,
            register::DAY_OF_MONTH => &mut self.day,
            register::MONTH => &mut self.month,
            _ => return None,
        })
    }

    /// The time `seconds` after 1970-01-01 00:00:00 UTC.
    fn from_unix(seconds: u64) -> Self {
        let mut days = seconds / 86_400;
        let in_day = seconds % 86_400;
        // 1970-01-01 was a Thursday (5 counting Sunday as 1).
        let weekday = (days + 4) % 7 + 1;
        let mut year = 1970;
        while days >= if is_leap(year) { 366 } else { 365 } {
            days -= if is_leap(year) { 366 } else { 365 };
            year += 1;
        }
        let mut month = 1;
        while days >= days_in_month(year, month) {
            days -= days_in_month(year, month);
            month += 1;
        }
        Self {
            year,
            month,
            day: days + 1,
            hour: in_day / 3600,
            minute: in_day / 60 % 60,
            second: in_day % 60,
            weekday,
        }
    }

    /// Seconds since 1970-01-01 00:00:00 UTC; `None` for a date the clock
    /// cannot hold.
    fn to_unix(self) -> Option<u64> {
        let valid = (1970..10_000).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let year_days: u64 = (1970..self.year).map(|year| if is_leap(year) { 366 } else { 365 }).sum();
        let month_days: u64 = (1..self.month).map(|month| days_in_month(self.year, month)).sum();
        let days = year_days + month_days + self.day - 1;
        Some(days * 86_400 + self.hour * 3600 + self.minute * 60 + self.second)
    }
}

/// The CMOS RAM and clock.
pub struct Rtc {
    /// The selected register.
    index: u8,
    /// Port 0x70's bit 7: NMIs masked (the VMM injects none; kept for
    /// reading back).
    nmi_masked: bool,
    memory: [u8; 128],
    /// Seconds the guest moved the clock by.
    adjustment: i64,
    /// While SET is on: the time being set, in Unix seconds.
    setting: Option<u64>,
    /// The second register C last reported.
    reported_second: u64,
}

impl Rtc {
    /// The CMOS of a machine with `ram_bytes` of RAM from address 0.
    pub fn new(ram_bytes: u64) -> Self {
        let mut memory = [0u8; 128];
        memory[usize::from(register::A)] = 0x26; // 32.768 kHz, 1,024 Hz
        memory[usize::from(register::B)] = HOURS_24;
        let kib = ram_bytes / 1024;
        let base = kib.min(640) as u16;
        let extended = kib.saturating_sub(1024).min(0xffff) as u16;
        let above_16m = (ram_bytes.saturating_sub(16 << 20) / (64 << 10)).min(0xffff) as u16;
        for (at, value) in [(0x15, base), (0x17, extended), (0x30, extended), (0x34, above_16m)] {
            memory[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
        let checksum: u16 = memory[0x10..=0x2d].iter().map(|&byte| u16::from(byte)).sum();
        memory[0x2e..=0x2f].copy_from_slice(&checksum.to_be_bytes());
        Self {
            index: 0,
            nmi_masked: false,
            memory,
            adjustment: 0,
            setting: None,
            reported_second: 0,
        }
    }

    /// Whether it answers `port`.
    pub fn handles(port: u16) -> bool {
        matches!(port, 0x70 | 0x71)
    }

    /// The time the guest sees, in Unix seconds.
    fn unix_seconds(&self, now: Nanoseconds) -> u64 {
        self.setting
            .unwrap_or_else(|| (EPOCH + now.0 / SECOND).saturating_add_signed(self.adjustment))
    }

    fn register_b(&self) -> u8 {
        self.memory[usize::from(register::B)]
    }

    /// A port read.
    pub fn read(&mut self, port: u16, now: Nanoseconds) -> u8 {
        if port == 0x70 {
            return self.index | (u8::from(self.nmi_masked) << 7);
        }
        let civil = Civil::from_unix(self.unix_seconds(now));
        match self.index {
            register::SECONDS => self.encode(civil.second),
            register::MINUTES => self.encode(civil.minute),
            register::HOURS => self.encode_hour(civil.hour),
            register::DAY_OF_WEEK => self.encode(civil.weekday),
            register::DAY_OF_MONTH => self.encode(civil.day),
            register::MONTH => self.encode(civil.month),
            register::YEAR => self.encode(civil.year % 100),
            register::CENTURY => self.encode(civil.year / 100),
            register::A => {
                let into_second = now.0 % SECOND;
                let updating = self.setting.is_none()
                    && (into_second >= SECOND - UPDATE_WARNING || into_second < UPDATE_CYCLE);
                self.memory[usize::from(register::A)] | if updating { UPDATE_IN_PROGRESS } else { 0 }
            }
            register::C => {
                let second = self.unix_seconds(now);
                let mut flags = 0;
                if second != self.reported_second {
                    self.reported_second = second;
                    flags |= UPDATE_ENDED;
                    if self.register_b() & UPDATE_INTERRUPT != 0 {
                        flags |= INTERRUPT_REQUEST;
                    }
                }
                flags
            }
            register::D => VALID_RAM_AND_TIME,
            index => self.memory[usize::from(index)],
        }
    }

    /// A port write.
    pub fn write(&mut self, port: u16, value: u8, now: Nanoseconds) {
        if port == 0x70 {
            self.index = value & 0x7f;
            self.nmi_masked = value & 0x80 != 0;
            return;
        }
        let mut civil = Civil::from_unix(self.unix_seconds(now));
        let changed = match self.index {
            register::HOURS => self.decode_hour(value).map(|hour| civil.hour = hour),
            register::YEAR => self.decode(value).map(|year| civil.year = civil.year / 100 * 100 + year),
            register::CENTURY => self.decode(value).map(|century| civil.year = century * 100 + civil.year % 100),
            register::DAY_OF_WEEK => Some(()), // follows from the date
            register::A => {
                self.memory[usize::from(register::A)] = value & 0x7f;
                None
            }
            register::B => {
                self.set_register_b(value, now);
                None
            }
            register::C | register::D => None,
            // The alarms and everything past register D: storage.
            index if index >= 0x0e || matches!(index, 0x01 | 0x03 | 0x05) => {
                self.memory[usize::from(index)] = value;
                None
            }
            _ => {
                let decoded = self.decode(value);
                match (civil.field(self.index), decoded) {
                    (Some(slot), Some(value)) => {
                        *slot = value;
                        Some(())
                    }
                    _ => None,
                }
            }
        };
        // A write that makes no valid date is dropped.
        if changed.is_some()
            && let Some(seconds) = civil.to_unix()
        {
            self.set_time(seconds, now);
        }
    }

    fn set_register_b(&mut self, value: u8, now: Nanoseconds) {
        let was_set = self.register_b() & SET != 0;
        self.memory[usize::from(register::B)] = value;
        match (was_set, value & SET != 0) {
            (false, true) => self.setting = Some(self.unix_seconds(now)),
            (true, false) => {
                if let Some(seconds) = self.setting.take() {
                    self.set_time(seconds, now);
                }
            }
            _ => {}
        }
    }

    /// Makes the clock read `seconds` now (or, while SET is on, when SET
    /// goes off).
    fn set_time(&mut self, seconds: u64, now: Nanoseconds) {
        if self.setting.is_some() {
            self.setting = Some(seconds);
        } else {
            let running = EPOCH + now.0 / SECOND;
            self.adjustment = seconds as i64 - running as i64;
        }
    }

    /// `value` in the guest's chosen form (BCD unless register B says
    /// binary).
    fn encode(&self, value: u64) -> u8 {
        let value = value as u8;
        if self.register_b() & BINARY != 0 {
            value
        } else {
            ((value / 10) << 4) | (value % 10)
        }
    }

    /// The hour in 24- or 12-hour form (12-hour: 1..=12, bit 7 for PM).
    fn encode_hour(&self, hour: u64) -> u8 {
        if self.register_b() & HOURS_24 != 0 {
            return self.encode(hour);
        }
        let twelve = if hour % 12 == 0 { 12 } else { hour % 12 };
        self.encode(twelve) | if hour >= 12 { 0x80 } else { 0 }
    }

    /// A value written in the guest's form; `None` for a malformed BCD
    /// digit.
    fn decode(&self, value: u8) -> Option<u64> {
        if self.register_b() & BINARY != 0 {
            return Some(u64::from(value));
        }
        let (high, low) = (value >> 4, value & 0xf);
        (high < 10 && low < 10).then_some(u64::from(high * 10 + low))
    }

    fn decode_hour(&self, value: u8) -> Option<u64> {
        if self.register_b() & HOURS_24 != 0 {
            return self.decode(value);
        }
        let twelve = self.decode(value & 0x7f)?;
        if !(1..=12).contains(&twelve) {
            return None;
        }
        Some(twelve % 12 + if value & 0x80 != 0 { 12 } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rtc: &mut Rtc, index: u8, now: Nanoseconds) -> u8 {
        rtc.write(0x70, index, now);
        rtc.read(0x71, now)
    }

    fn write(rtc: &mut Rtc, index: u8, value: u8, now: Nanoseconds) {
        rtc.write(0x70, index, now);
        rtc.write(0x71, value, now);
    }

    const HALF_SECOND: Nanoseconds = Nanoseconds(SECOND / 2);

    #[test]
    fn the_clock_starts_at_the_epoch_in_bcd_and_runs() {
        let mut rtc = Rtc::new(4 << 20);
        let at = Nanoseconds(3_723 * SECOND + SECOND / 2); // 01:02:03
        assert_eq!(read(&mut rtc, register::HOURS, at), 0x01);
        assert_eq!(read(&mut rtc, register::MINUTES, at), 0x02);
        assert_eq!(read(&mut rtc, register::SECONDS, at), 0x03);
        assert_eq!(read(&mut rtc, register::DAY_OF_MONTH, at), 0x01);
        assert_eq!(read(&mut rtc, register::MONTH, at), 0x01);
        assert_eq!(read(&mut rtc, register::YEAR, at), 0x26);
        assert_eq!(read(&mut rtc, register::CENTURY, at), 0x20);
        assert_eq!(read(&mut rtc, register::DAY_OF_WEEK, at), 5, "a Thursday");
        assert_eq!(read(&mut rtc, register::D, at), VALID_RAM_AND_TIME);
    }

    #[test]
    fn binary_and_12_hour_forms_follow_register_b() {
        let mut rtc = Rtc::new(4 << 20);
        let at = Nanoseconds((15 * 3600 + 59) * SECOND);
        write(&mut rtc, register::B, BINARY, at);
        assert_eq!(read(&mut rtc, register::HOURS, at), 0x80 | 3);
        assert_eq!(read(&mut rtc, register::SECONDS, at), 59);
        write(&mut rtc, register::B, HOURS_24, at);
        assert_eq!(read(&mut rtc, register::HOURS, at), 0x15);
    }

    #[test]
    fn update_in_progress_brackets_the_end_of_each_second() {
        let mut rtc = Rtc::new(4 << 20);
        let uip = |rtc: &mut Rtc, at: u64| read(rtc, register::A, Nanoseconds(at)) & UPDATE_IN_PROGRESS != 0;
        assert!(!uip(&mut rtc, SECOND / 2));
        assert!(uip(&mut rtc, SECOND - 100_000));
        assert!(uip(&mut rtc, SECOND + 1_000_000));
        assert!(!uip(&mut rtc, SECOND + 3_000_000));
        assert_eq!(read(&mut rtc, register::A, HALF_SECOND), 0x26);
    }

    #[test]
    fn setting_the_time_holds_it_until_set_ends() {
        let mut rtc = Rtc::new(4 << 20);
        write(&mut rtc, register::B, SET | HOURS_24, HALF_SECOND);
        assert_eq!(read(&mut rtc, register::A, Nanoseconds(SECOND - 1)) & UPDATE_IN_PROGRESS, 0);
        write(&mut rtc, register::YEAR, 0x99, HALF_SECOND);
        write(&mut rtc, register::CENTURY, 0x20, HALF_SECOND);
        write(&mut rtc, register::MONTH, 0x12, HALF_SECOND);
        write(&mut rtc, register::DAY_OF_MONTH, 0x31, HALF_SECOND);
        write(&mut rtc, register::HOURS, 0x23, HALF_SECOND);
        write(&mut rtc, register::MINUTES, 0x59, HALF_SECOND);
        write(&mut rtc, register::SECONDS, 0x58, HALF_SECOND);
        write(&mut rtc, register::MONTH, 0x9a, HALF_SECOND); // malformed: dropped
        let later = Nanoseconds(10 * SECOND);
        assert_eq!(read(&mut rtc, register::SECONDS, later), 0x58, "held while SET");
        write(&mut rtc, register::B, HOURS_24, later);
        let after = Nanoseconds(12 * SECOND);
        assert_eq!(read(&mut rtc, register::SECONDS, after), 0x00);
        assert_eq!(read(&mut rtc, register::YEAR, after), 0x00);
        assert_eq!(read(&mut rtc, register::CENTURY, after), 0x21);
        assert_eq!(read(&mut rtc, register::MONTH, after), 0x01);
    }

    #[test]
    fn memory_size_registers_match_the_ram() {
        let mut rtc = Rtc::new(32 << 20);
        let word = |rtc: &mut Rtc, low: u8| {
            u16::from(read(rtc, low, HALF_SECOND)) | (u16::from(read(rtc, low + 1, HALF_SECOND)) << 8)
        };
        assert_eq!(word(&mut rtc, 0x15), 640);
        assert_eq!(word(&mut rtc, 0x17), 31 * 1024);
        assert_eq!(word(&mut rtc, 0x30), 31 * 1024);
        assert_eq!(word(&mut rtc, 0x34), 256);
        let sum: u16 = (0x10..=0x2d).map(|index| u16::from(read(&mut rtc, index, HALF_SECOND))).sum();
        assert_eq!(read(&mut rtc, 0x2e, HALF_SECOND), (sum >> 8) as u8);
        assert_eq!(read(&mut rtc, 0x2f, HALF_SECOND), sum as u8);
    }

    #[test]
    fn the_rest_is_storage_and_the_index_keeps_the_nmi_mask() {
        let mut rtc = Rtc::new(4 << 20);
        write(&mut rtc, 0x50, 0xab, HALF_SECOND);
        assert_eq!(read(&mut rtc, 0x50, HALF_SECOND), 0xab);
        rtc.write(0x70, 0x80 | 0x50, HALF_SECOND);
        assert_eq!(rtc.read(0x70, HALF_SECOND), 0xd0);
        assert_eq!(rtc.read(0x71, HALF_SECOND), 0xab);
    }

    #[test]
    fn register_c_reports_each_update_once() {
        let mut rtc = Rtc::new(4 << 20);
        assert_eq!(read(&mut rtc, register::C, HALF_SECOND) & UPDATE_ENDED, UPDATE_ENDED);
        assert_eq!(read(&mut rtc, register::C, HALF_SECOND), 0);
    }

    #[test]
    fn civil_dates_round_trip() {
        for seconds in [0, EPOCH, 951_782_400 /* 2000-02-29 */, 4_102_444_799] {
            assert_eq!(Civil::from_unix(seconds).to_unix(), Some(seconds));
        }
        let leap_day = Civil::from_unix(951_782_400);
        assert_eq!((leap_day.year, leap_day.month, leap_day.day), (2000, 2, 29));
    }
}
