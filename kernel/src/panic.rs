//! The kernel's panic handler: report, backtrace, stop with a failure code.

use crate::arch::{backtrace, power};
use crate::log::write_emergency;
use abi::debug_exit::Outcome;
use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    write_emergency(format_args!("KERNEL PANIC: {info}\n"));
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    let here = panic as *const () as u64;
    backtrace::print(here, rbp);
    power::exit(Outcome::KernelPanic)
}

/// Test-only: takes a page fault in ring 0 a few calls deep, so the tests
/// can check the exception report and its symbolised backtrace.
#[cfg(feature = "kernel-fault-test")]
pub fn trigger_test_fault() {
    #[inline(never)]
    fn outer() {
        middle();
        core::hint::black_box(());
    }
    #[inline(never)]
    fn middle() {
        inner();
        core::hint::black_box(());
    }
    #[inline(never)]
    fn inner() {
        let address = core::hint::black_box(0x0000_0dea_dbee_f000u64) as *const u64;
        // SAFETY: deliberately unsound: this read faults, which is the test.
        let value = unsafe { address.read_volatile() };
        core::hint::black_box(value);
    }
    crate::log::write_raw(b"kernel: fault test: reading unmapped memory from ring 0\n");
    outer();
}
