//! Time as the emulated devices see it: nanoseconds on the VMM's clock
//! (the binary's `clock` module reads it; devices only compare and
//! subtract), and how a periodic timer pays the interrupts it owes.
//!
//! The VMM sees the clock only between guest exits, often several timer
//! periods late (a busy guest exits at the host's 100 Hz tick). A guest
//! that counts timer interrupts (Linux's jiffies, and its calibration and
//! check of the local APIC timer against them) would fall behind if the
//! periods it missed counted once, so the timers pay them one at a time,
//! one per look at the clock, as KVM's do: the next comes at the next exit,
//! which the guest's end of interrupt makes soon.

/// Nanoseconds since the VMM started measuring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanoseconds(pub u64);

/// Nanoseconds in a second.
pub const SECOND: u64 = 1_000_000_000;

/// The most periods a timer owes the guest; older ones are dropped (after
/// the guest was not scheduled for long, say).
pub const MAX_BACKLOG: u64 = 50;

/// A timer that has paid `paid` periods' interrupts, with `due` periods
/// ended: how many it has paid after raising one more interrupt, or `None`
/// if it owes nothing.
pub fn pay_one(paid: u64, due: u64) -> Option<u64> {
    (due > paid).then(|| paid.max(due.saturating_sub(MAX_BACKLOG)) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_periods_are_paid_one_at_a_time_up_to_the_backlog() {
        assert_eq!(pay_one(3, 3), None);
        assert_eq!(pay_one(3, 5), Some(4));
        assert_eq!(pay_one(4, 5), Some(5));
        assert_eq!(pay_one(0, 1000), Some(1000 - MAX_BACKLOG + 1));
    }
}
