//! init: the first user process.
//!
//! For now it announces itself from ring 3 and exits; it grows into the
//! process that reads the system description and starts every server.

#![no_std]
#![no_main]
// Only the test-only fault below may use unsafe code.
#![cfg_attr(not(feature = "user-fault-test"), forbid(unsafe_code))]

use runtime::println;

runtime::entry!(main);

fn main() -> u64 {
    println!("init: running in ring 3");
    #[cfg(feature = "user-fault-test")]
    touch_kernel_memory();
    println!("init: done");
    0
}

/// Test-only: a write to the kernel half, which user mode may not touch.
#[cfg(feature = "user-fault-test")]
#[allow(unsafe_code)]
fn touch_kernel_memory() {
    println!("init: fault test: writing to kernel memory");
    let kernel = core::hint::black_box(0xffff_8000_0000_1000usize) as *mut u64;
    // SAFETY: deliberately unsound: the write must fault, which is the test.
    unsafe { kernel.write_volatile(0x5a5a) };
}
