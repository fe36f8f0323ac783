//! An unmodified Linux guest (Debian's kernel and a busybox initramfs, made
//! by `cargo xtask guest-linux`) on AMD-V under QEMU: `vm start linux`
//! boots it with the console attached, its shell answers `uname -a` and
//! `cat /proc/cpuinfo`, and a guest kernel that panics ends as a triple
//! fault while our shell carries on.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::data_disk;
use image_builder::qemu::{DataDisk, Firmware};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{BOOT_TIMEOUT, Machine, assert_clean, guest_disk_with};

/// From `vm start` to the guest's shell: making its RAM, loading the
/// kernel and initrd, and booting Linux under nested emulation.
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// One command in the guest's shell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// What the guest's `/init` prints before its shell.
const READY: &str = "vm0: guest-init: ready";

/// Makes the Linux guest's files with `cargo xtask guest-linux` (Debian's
/// packages through `apt-get download`, kept under target/guest-linux).
fn build_linux_guest() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let status = Command::new(cargo)
        .current_dir(image_builder::workspace_root())
        .args(["xtask", "guest-linux"])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo xtask guest-linux failed (if apt cannot locate the packages, run apt-get update)"
    );
}

#[test]
fn linux_boots_to_its_shell_and_its_panic_leaves_the_host_running() {
    build_linux_guest();
    let options = BuildOptions::default();
    let disk = guest_disk_with("linux", 32, &options, &data_disk::linux_guest_files());
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);

    let started = Instant::now();
    machine.type_text("vm start linux\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);
    machine.wait_for("RAM made in", LINUX_BOOT_TIMEOUT);
    let made = started.elapsed();
    machine.wait_for(READY, LINUX_BOOT_TIMEOUT);
    let ready = started.elapsed();

    // The guest's shell, through the attached console.
    machine.type_text("uname -a\n");
    machine.wait_for("vm0: Linux (none) 6.", COMMAND_TIMEOUT);
    machine.type_text("cat /proc/cpuinfo\n");
    machine.wait_for("vm0: flags", COMMAND_TIMEOUT);
    // Back to our shell while the guest runs on, and attached again.
    machine.type_text("\x1d");
    machine.wait_for("vm0: console detached", BOOT_TIMEOUT);
    machine.type_text("vm list\n");
    machine.wait_for("vm0   running", BOOT_TIMEOUT);
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);

    // A guest kernel panic (sysrq 'c') restarts the guest at once
    // (`panic=-1`), by a triple fault (`reboot=t`), which ends it.
    machine.type_text("echo c > /proc/sysrq-trigger\n");
    machine.wait_for("vm0: the guest ended (shut down (triple fault)", COMMAND_TIMEOUT);
    machine.type_text("ps\n");
    machine.wait_for("NAME             STATE", BOOT_TIMEOUT);
    // The instance is busy until the kernel has its RAM back, then idle
    // for the next guest.
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !machine.output().contains("vm0   ended") {
        assert!(Instant::now() < deadline, "vm0 never ended:\n{}", machine.output());
        machine.type_text("vm list\n");
        std::thread::sleep(Duration::from_secs(2));
    }
    machine.type_text("echo still-here\n");
    machine.wait_for("\nstill-here", BOOT_TIMEOUT);
    machine.type_text("poweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    for expected in [
        "vm0: guest-init: Linux 6.",
        "vm0: Linux (none) 6.",
        "x86_64 GNU/Linux",
        "vm0: vendor_id",
        "vm0: model name",
        " hypervisor",
        "sysrq: Trigger a crash",
        "Kernel panic - not syncing: sysrq triggered crash",
        "vmm: vm0: guest /vmlinuz shut down (triple fault)",
    ] {
        assert!(output.contains(expected), "no {expected:?}:\n{output}");
    }
    // The shell owns the console as its controlling terminal.
    assert!(!output.contains("can't access tty"), "{output}");
    // Our kernel's own reports (the guest's log says GFP_KERNEL).
    assert!(!output.contains("KERNEL PANIC") && !output.contains("KERNEL EXCEPTION"), "{output}");
    assert_clean(&disk);
    let figures: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("RAM made in") || line.contains("released the guest's"))
        .collect();
    eprintln!("Linux guest: RAM made after {made:?}, {READY:?} after {ready:?} from `vm start linux`; {figures:?}");
}
