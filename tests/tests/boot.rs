//! The system boots on BIOS and UEFI, runs init in ring 3, and stops with
//! init's success.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::Firmware;
use tests::{BOOT_TIMEOUT, Machine, assert_contains, with_features};

fn boots_to_init(firmware: Firmware) {
    let machine = Machine::boot(&BuildOptions::default(), firmware);
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    assert_contains(
        &finished.output,
        &[
            "boot archive: Program 'init'",
            "init: running in ring 3",
            "init: done",
            "thread 'init' exited with status 0",
        ],
    );
    assert!(
        !finished.output.contains("KERNEL"),
        "kernel trouble:\n{}",
        finished.output
    );
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{}", finished.output);
}

#[test]
fn bios_boot_runs_init_in_ring_3() {
    boots_to_init(Firmware::Bios);
}

#[test]
fn uefi_boot_runs_init_in_ring_3() {
    boots_to_init(Firmware::Uefi);
}

#[test]
fn typed_input_reaches_the_kernel_through_the_io_apic() {
    let mut machine = Machine::boot(&with_features(&["kernel/console-input-test"]), Firmware::Bios);
    machine.wait_for("console: waiting for a line of input", BOOT_TIMEOUT);
    machine.type_text("ping\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    assert_contains(&finished.output, &["console: received 5 bytes of input: \"ping\\n\""]);
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{}", finished.output);
}
