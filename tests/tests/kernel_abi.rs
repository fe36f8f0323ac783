//! Boots the kernel-tests program as init: it checks every syscall's
//! success path and documented errors from ring 3 and prints one line per
//! check.

use abi::debug_exit::Outcome;
use image_builder::qemu::Firmware;
use tests::{BOOT_TIMEOUT, Machine, assert_checks_passed, with_system};

/// The number of checks kernel-tests runs; a run that prints fewer PASS
/// lines stopped early.
const CHECKS: usize = 30;

#[test]
fn every_syscall_behaves_as_documented() {
    let finished = Machine::boot(&with_system("systems/kernel-tests.toml"), Firmware::Bios).wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_checks_passed(output, CHECKS);
    assert!(
        output.contains(&format!("kernel-tests: {CHECKS} passed, 0 failed")),
        "output:\n{output}"
    );
    assert!(!output.contains("KERNEL"), "kernel trouble:\n{output}");
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}
