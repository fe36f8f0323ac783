//! Faults: a user program's fault is reported and the kernel carries on; a
//! kernel exception is reported with a symbolised backtrace.

use abi::debug_exit::Outcome;
use image_builder::qemu::Firmware;
use tests::{BOOT_TIMEOUT, Machine, assert_contains, with_features};

#[test]
fn user_fault_is_reported_and_the_kernel_stays_up() {
    let finished = Machine::boot(&with_features(&["init/user-fault-test"]), Firmware::Bios).wait_exit(BOOT_TIMEOUT);
    assert_contains(
        &finished.output,
        &[
            "init: fault test: writing to kernel memory",
            "thread 'init' killed by page fault (vector 14, error code 0x7)",
            "address 0xffff800000001000",
            "the kernel carries on",
            // The kernel went on to its orderly stop, not a panic.
            "kernel: init has ended",
        ],
    );
    assert!(
        !finished.output.contains("init: done"),
        "init ran past its fault:\n{}",
        finished.output
    );
    assert!(
        !finished.output.contains("KERNEL"),
        "kernel trouble:\n{}",
        finished.output
    );
    assert_eq!(
        finished.outcome,
        Some(Outcome::InitFailed),
        "output:\n{}",
        finished.output
    );
}

#[test]
fn kernel_exception_prints_a_symbolised_backtrace() {
    let finished = Machine::boot(&with_features(&["kernel/kernel-fault-test"]), Firmware::Bios).wait_exit(BOOT_TIMEOUT);
    assert_contains(
        &finished.output,
        &[
            "KERNEL EXCEPTION: page fault (vector 14) error code 0x0",
            "cr2 0x00000deadbeef000",
            "backtrace:",
            "trigger_test_fault::inner",
            "trigger_test_fault::middle",
            "trigger_test_fault::outer",
            "kernel::start",
        ],
    );
    assert_eq!(
        finished.outcome,
        Some(Outcome::KernelPanic),
        "output:\n{}",
        finished.output
    );
}
