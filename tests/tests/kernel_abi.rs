//! Boots the kernel-tests program as init: it checks every syscall's
//! success path and documented errors from ring 3 and prints one line per
//! check. In QEMU its vcpu checks run on AMD-V, in Bochs on VT-x.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::Firmware;
use tests::{BOOT_TIMEOUT, Finished, Machine, assert_checks_passed, fresh_disk, with_system};

/// The number of checks kernel-tests runs; a run that prints fewer PASS
/// lines stopped early.
const CHECKS: usize = 32;

#[test]
fn every_syscall_behaves_as_documented() {
    let finished = Machine::boot(&with_system("systems/kernel-tests.toml"), Firmware::Bios).wait_exit(BOOT_TIMEOUT);
    assert_all_passed(&finished);
}

#[test]
fn every_syscall_behaves_as_documented_on_vt_x_under_bochs() {
    let options = BuildOptions {
        release: true,
        ..with_system("systems/kernel-tests.toml")
    };
    // Bochs runs with a data disk; these checks leave it alone.
    let disk = fresh_disk("kernel-tests-bochs", 16);
    let finished = Machine::boot_bochs(&options, &disk).wait_exit(BOOT_TIMEOUT);
    assert!(
        finished.output.contains("virtualisation: Intel VT-x"),
        "{}",
        finished.output
    );
    assert_all_passed(&finished);
}

/// Asserts that every check passed and the run ended cleanly.
fn assert_all_passed(finished: &Finished) {
    let output = &finished.output;
    assert_checks_passed(output, CHECKS);
    assert!(
        output.contains(&format!("kernel-tests: {CHECKS} passed, 0 failed")),
        "output:\n{output}"
    );
    assert!(!output.contains("KERNEL"), "kernel trouble:\n{output}");
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}
