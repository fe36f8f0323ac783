//! The fault campaign in QEMU: userland/faultinj injects faults into the
//! block driver, the serial driver and pci while a workload writes, reads
//! and verifies checksummed files through fs; the host's `e2fsck` then
//! checks the disk.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::{DataDisk, Firmware};
use std::io::Write;
use std::time::Duration;
use tests::{BOOT_TIMEOUT, Machine, assert_clean, fresh_disk, with_system};

/// Faults in the CI campaign, and its seed.
const FAULTS: u32 = 1000;
const SEED: u64 = 20261129;

/// The number after `label` on the report line that starts with it.
fn figure(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in the report:\n{output}"));
    line.trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{label}': {line}"))
}

#[test]
fn a_thousand_faults_lose_no_acknowledged_write_and_fsck_is_clean() {
    let disk = fresh_disk("faults", 64);
    // The release build: a campaign of this length must stay a few minutes.
    let options = BuildOptions {
        release: true,
        ..with_system("systems/faults.toml")
    };
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("faultinj: ready", BOOT_TIMEOUT);
    machine.type_text(&format!("{FAULTS} {SEED}\n"));
    let finished = machine.wait_exit(Duration::from_secs(1500));
    let output = &finished.output;
    let report: String = output
        .lines()
        .filter(|line| line.starts_with("faultinj:") || line.starts_with("faultinj-json:"))
        .collect::<Vec<_>>()
        .join("\n");
    // Straight to the process's stderr, past the test harness's capture, so
    // that the figures appear in every run's log.
    let _ = writeln!(std::io::stderr(), "{report}");
    assert_eq!(
        finished.outcome,
        Some(Outcome::Success),
        "the system did not power off cleanly:\n{output}"
    );
    assert_eq!(
        figure(output, "faultinj: faults injected:"),
        u64::from(FAULTS),
        "{report}"
    );
    assert_eq!(figure(output, "faultinj: data mismatches:"), 0, "{report}");
    assert!(figure(output, "faultinj: restarts:") > 0, "{report}");
    assert!(output.contains("faultinj-json: {"), "{report}");
    assert!(!output.contains("KERNEL PANIC"), "{output}");
    assert_clean(&disk);
}
