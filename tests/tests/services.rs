//! Boots names, the example key-value server and a probe process, all
//! started by init from the system description: the probe uses what it was
//! given, is refused what it was not, and the system stays up.

use abi::debug_exit::Outcome;
use image_builder::qemu::Firmware;
use tests::{BOOT_TIMEOUT, Machine, assert_checks_passed, assert_contains, with_system};

#[test]
fn processes_get_exactly_the_authority_described() {
    let finished = Machine::boot(&with_system("systems/services.toml"), Firmware::Bios).wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_checks_passed(output, 16);
    assert_contains(
        output,
        &[
            "probe: written through the serial driver",
            "authority-probe: all checks passed",
            "init: powering off",
        ],
    );
    assert!(!output.contains("KERNEL"), "kernel trouble:\n{output}");
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}
