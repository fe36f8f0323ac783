//! The VMM's clock for emulated timers: the time-stamp counter, scaled by
//! a rate measured against the kernel's timer when the VMM starts.

use runtime::syscall::{cycles, sleep_ms, uptime_ms};
use spin::Once;
pub use vmm::time::Nanoseconds;

struct Rate {
    start_cycles: u64,
    cycles_per_ms: u64,
}

static RATE: Once<Rate> = Once::new();

/// Measures the counter's rate over about 100 ms (once).
pub fn calibrate() {
    RATE.call_once(|| {
        // Start on a tick edge so the kernel's 10 ms resolution costs
        // little.
        let first = uptime_ms();
        while uptime_ms() == first {
            core::hint::spin_loop();
        }
        let (start_ms, start_cycles) = (uptime_ms(), cycles());
        sleep_ms(100);
        let (end_ms, end_cycles) = (uptime_ms(), cycles());
        let elapsed = end_ms.saturating_sub(start_ms).max(1);
        Rate {
            start_cycles,
            cycles_per_ms: (end_cycles.wrapping_sub(start_cycles) / elapsed).max(1),
        }
    });
}

/// The time-stamp counter's rate in kHz (cycles per millisecond), as
/// measured.
pub fn tsc_khz() -> u64 {
    calibrate();
    RATE.get().map_or(0, |rate| rate.cycles_per_ms)
}

/// Now.
pub fn now() -> Nanoseconds {
    at_cycles(cycles())
}

/// When the time-stamp counter reads (or read) `counter`: the start for a
/// value before the VMM started measuring, and the end of time for one
/// too far ahead. A guest's counter is the host's (the kernel enters
/// guests without a TSC offset), so this also converts the guest's
/// IA32_TSC_DEADLINE.
pub fn at_cycles(counter: u64) -> Nanoseconds {
    calibrate();
    let Some(rate) = RATE.get() else {
        return Nanoseconds(0);
    };
    let elapsed = counter.saturating_sub(rate.start_cycles);
    let nanoseconds = u128::from(elapsed) * 1_000_000 / u128::from(rate.cycles_per_ms);
    Nanoseconds(u64::try_from(nanoseconds).unwrap_or(u64::MAX))
}
