//! The VMM in QEMU on AMD-V (TCG's SVM with nested paging): the test
//! guest's suite, two guests at once, hostile guests that must be
//! stopped without harm to the host or to a guest running beside them,
//! a multiboot kernel with modules beside images the loader refuses, and
//! the console attached to guests' serial lines (`vm console`).
//! The suite, two guests and the hostile guests run on Intel VT-x (EPT,
//! unrestricted guest) in Bochs too, whose release build of
//! systems/vmm-bochs.toml boots in seconds.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::{DataDisk, Firmware};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::{BOOT_TIMEOUT, Machine, assert_clean, guest_disk, guest_disk_with, with_system};

/// The checks the test guest runs.
const CHECKS: [&str; 9] = [
    "cpuid",
    "port-io",
    "mmio",
    "hypercall",
    "pit-timer-and-hlt",
    "lapic-timer-and-hlt",
    "ioapic",
    "cmos",
    "control-registers",
];
/// Time for one guest: making its machine, loading it, running it.
const GUEST_TIMEOUT: Duration = Duration::from_secs(240);

/// The checks the multiboot guest runs.
const MULTIBOOT_CHECKS: [&str; 5] = [
    "multiboot-magic",
    "multiboot-memory",
    "multiboot-mmap",
    "multiboot-cmdline",
    "multiboot-modules",
];

/// Boots the default system with the guest images on its disk, at the shell.
fn boot(name: &str) -> (Machine, PathBuf) {
    let options = BuildOptions::default();
    boot_with_disk(guest_disk(name, 32, &options))
}

/// Boots the default system with `disk`, at the shell.
fn boot_with_disk(disk: PathBuf) -> (Machine, PathBuf) {
    let options = BuildOptions::default();
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    (machine, disk)
}

/// Asserts that instance `instance` printed every check's PASS line and no
/// FAIL line. The shell's prompt shares the console, so a guest's line may
/// follow a prompt: lines are matched by their ends.
fn assert_suite_passed(output: &str, instance: &str) {
    assert_checks_passed(output, instance, &CHECKS);
}

/// [`assert_suite_passed`] for the checks `checks`.
fn assert_checks_passed(output: &str, instance: &str, checks: &[&str]) {
    let failures: Vec<&str> = output
        .lines()
        .filter(|line| line.contains(&format!("{instance}: FAIL")))
        .collect();
    assert!(failures.is_empty(), "{instance} failed checks: {failures:?}\n{output}");
    for check in checks {
        let pass = format!("{instance}: PASS {check}");
        assert!(
            output.lines().any(|line| line.trim_end().ends_with(&pass)),
            "no '{pass}':\n{output}"
        );
    }
}

/// Boots systems/vmm-bochs.toml (the release build) in Bochs with the
/// guest images on its disk, at the shell.
fn boot_bochs(name: &str) -> (Machine, PathBuf) {
    let options = BuildOptions {
        release: true,
        ..with_system("systems/vmm-bochs.toml")
    };
    let disk = guest_disk(name, 16, &options);
    let mut machine = Machine::boot_bochs(&options, &disk);
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    assert!(
        machine.output().contains("virtualisation: Intel VT-x"),
        "{}",
        machine.output()
    );
    (machine, disk)
}

#[test]
fn the_guest_suite_passes_on_amd_v_on_two_guests_at_once() {
    let (machine, disk) = boot("vmm-suite");
    two_guests(machine, &disk);
}

#[test]
fn the_guest_suite_passes_on_vt_x_on_two_guests_at_once() {
    let (machine, disk) = boot_bochs("vmm-bochs-two");
    two_guests(machine, &disk);
}

/// Runs the suite on two guests with different RAM sizes, which the CMOS
/// must report, then powers off. The first guest echoes after its checks
/// until told to quit, so it is alive for all of the second's suite. The
/// second command is typed once the first guest's suite is done: the
/// shell echoes what is typed (at a human pace under Bochs) on the console
/// the guests print to, and a PASS line split by that echo would not match.
fn two_guests(mut machine: Machine, disk: &Path) {
    machine.type_text("vm start -m 4 /guests/test-guest checks echo ram-mib=4\n");
    machine.wait_for("vm0: echo: ready", GUEST_TIMEOUT);
    machine.type_text("vm start -m 6 /guests/test-guest checks ram-mib=6\n");
    machine.wait_for("vmm: vm1: guest /guests/test-guest exited", GUEST_TIMEOUT);
    machine.type_text("vm console vm0\nquit\n");
    machine.wait_for("vm0: the guest ended", GUEST_TIMEOUT);
    machine.type_text("vm list\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    for instance in ["vm0", "vm1"] {
        assert_suite_passed(output, instance);
        let ended = format!("vmm: {instance}: guest /guests/test-guest exited with status 0");
        assert!(output.contains(&ended), "no '{ended}':\n{output}");
    }
    assert!(!output.contains("KERNEL"), "{output}");
    assert_clean(disk);
}

#[test]
fn hostile_guests_are_stopped_and_the_host_and_a_neighbour_carry_on() {
    let (machine, disk) = boot("vmm-hostile");
    hostile_guests(machine, &disk);
}

#[test]
fn hostile_guests_are_stopped_on_vt_x_and_the_host_and_a_neighbour_carry_on() {
    let (machine, disk) = boot_bochs("vmm-bochs-hostile");
    hostile_guests(machine, &disk);
}

/// Stops hostile guests one after another beside a neighbour flooding
/// itself with timer interrupts, checks the host still serves files, then
/// powers off.
fn hostile_guests(mut machine: Machine, disk: &Path) {
    // A neighbour that floods itself with timer interrupts until stopped.
    machine.type_text("vm start -m 4 /guests/test-guest interrupt-storm\n");
    machine.wait_for("vm0: test-guest: running interrupt-storm", GUEST_TIMEOUT);
    let hostile = [
        ("triple-fault", "shut down (triple fault)"),
        ("mmio-unmapped", "killed: no device at guest-physical 0xe0000000"),
        ("wild-page-tables", "killed: no device at guest-physical 0x1000000000"),
        ("garbage-hypercalls", "exited with status 0"),
    ];
    for (mode, end) in hostile {
        machine.type_text(&format!("vm start -m 4 /guests/test-guest {mode}\n"));
        machine.wait_for(&format!("vmm: vm1: guest /guests/test-guest {end}"), GUEST_TIMEOUT);
    }
    // The host still serves files and its shell while the storm goes on.
    machine.type_text("write /after.txt still-here\ncat /after.txt\nvm list\n");
    // (a guest's console line may come between the command and its output)
    machine.wait_for("\nstill-here", BOOT_TIMEOUT);
    machine.type_text("vm stop vm0\n");
    machine.wait_for("vmm: vm0: guest /guests/test-guest stopped", GUEST_TIMEOUT);
    machine.type_text("sync\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    assert!(output.contains("vm1: PASS garbage-hypercalls"), "{output}");
    assert_suite_passed(output, "vm1");
    assert!(!output.contains("FAIL"), "{output}");
    assert!(!output.contains("KERNEL"), "{output}");
    assert_clean(disk);
}

#[test]
fn a_multiboot_kernel_boots_with_modules_and_bad_images_are_refused() {
    let options = BuildOptions::default();
    // The multiboot guest with its header's checksum broken.
    let kernel_path = tests::images(&options).disk_contents.join("guests/multiboot-guest");
    let mut bad_checksum = std::fs::read(&kernel_path).expect("the multiboot guest is built");
    let magic = 0x1bad_b002u32.to_le_bytes();
    let header = (0..8192)
        .step_by(4)
        .find(|&offset| bad_checksum[offset..offset + 4] == magic)
        .expect("a multiboot header");
    bad_checksum[header + 8] ^= 1;
    let disks = image_builder::workspace_root().join("target/disks");
    let bad_path = disks.join("bad-checksum");
    std::fs::create_dir_all(&disks)
        .and_then(|()| std::fs::write(&bad_path, bad_checksum))
        .expect("target/disks is writable");
    let disk = guest_disk_with("vmm-multiboot", 32, &options, &[("guests/bad-checksum", bad_path)]);
    let (mut machine, disk) = boot_with_disk(disk);
    machine.type_text("write /module.txt hello-module\n");
    let refused = [
        ("vm start /module.txt", "vm: vm0: bad image: neither a 64-bit ELF image"),
        ("vm start /guests/bad-checksum", "has a bad checksum"),
        ("vm start -m 1 /guests/multiboot-guest", "past the guest's 1 MiB of RAM"),
        ("vm start --module /nowhere /guests/multiboot-guest", "vm: vm0: no image: /nowhere"),
    ];
    for (command, reason) in refused {
        machine.type_text(&format!("{command}\n"));
        machine.wait_for(reason, GUEST_TIMEOUT);
    }
    // The VMM carries on: the kernel, its command line and two modules.
    machine.type_text(
        "vm start -m 8 --module /guests/test-guest,elf --module /module.txt,expect=hello-module \
         /guests/multiboot-guest ram-mib=8 modules=2\n",
    );
    machine.wait_for("vmm: vm0: guest /guests/multiboot-guest exited", GUEST_TIMEOUT);
    machine.type_text("vm list\nsync\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    assert_checks_passed(output, "vm0", &MULTIBOOT_CHECKS);
    assert!(
        output.contains("vm0: multiboot-guest: command line: /guests/multiboot-guest ram-mib=8 modules=2"),
        "{output}"
    );
    assert!(
        output.contains("vmm: vm0: guest /guests/multiboot-guest exited with status 0"),
        "{output}"
    );
    assert!(!output.contains("KERNEL"), "{output}");
    assert_clean(&disk);
}

/// A line of `vm list` output for `instance`: the shell's prompt may come
/// before it.
fn list_row<'a>(output: &'a str, instance: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter(|line| line.trim_start_matches("> ").starts_with(&format!("{instance} ")))
        .collect()
}

#[test]
fn the_console_types_to_guests_and_returns_on_ctrl_bracket_or_their_end() {
    let (mut machine, disk) = boot("vmm-console");
    machine.type_text(
        "vm start -m 4 /guests/test-guest echo\n\
         vm start -m 4 /guests/test-guest echo-polled\n",
    );
    machine.wait_for("vm0: echo: ready", GUEST_TIMEOUT);
    machine.wait_for("vm1: echo: ready", GUEST_TIMEOUT);
    // The interrupt-driven guest, then Ctrl-] back to the shell while it
    // runs on.
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);
    machine.type_text("hello guest\nsecond line, longer than the sixteen-byte FIFO\n");
    machine.wait_for("vm0: echo: second line, longer than the sixteen-byte FIFO", GUEST_TIMEOUT);
    machine.type_text("\x1d");
    machine.wait_for("vm0: console detached", BOOT_TIMEOUT);
    machine.type_text("vm list\n");
    machine.wait_for("vm1   running", BOOT_TIMEOUT);
    // The polling guest ends while attached: the shell notices.
    machine.type_text("vm console vm1\n");
    machine.wait_for("vm1: console attached", BOOT_TIMEOUT);
    machine.type_text("polled\nquit\n");
    machine.wait_for("vm1: the guest ended (exited with status 0)", GUEST_TIMEOUT);
    // What is typed right after the command reaches the guest too.
    machine.type_text("vm console vm0\nquit\n");
    machine.wait_for("vm0: the guest ended (exited with status 0)", GUEST_TIMEOUT);
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm: vm0: no guest runs (exited with status 0)", BOOT_TIMEOUT);
    machine.type_text("vm list\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    for line in ["vm0: echo: hello guest", "vm1: echo: polled"] {
        assert!(output.lines().any(|row| row.trim_end().ends_with(line)), "no '{line}':\n{output}");
    }
    assert!(!output.contains("echo: quit"), "{output}");
    let rows = list_row(output, "vm0");
    assert!(rows.first().is_some_and(|row| row.contains("running")), "{rows:?}\n{output}");
    assert!(
        rows.last().is_some_and(|row| row.contains("ended") && row.contains("(exited with status 0)")),
        "{rows:?}\n{output}"
    );
    for instance in ["vm0", "vm1"] {
        let ended = format!("vmm: {instance}: guest /guests/test-guest exited with status 0");
        assert!(output.contains(&ended), "no '{ended}':\n{output}");
    }
    assert!(!output.contains("KERNEL"), "{output}");
    assert_clean(&disk);
}

#[test]
fn the_guest_suite_passes_on_vt_x_under_bochs() {
    let started = Instant::now();
    let (mut machine, disk) = boot_bochs("vmm-bochs");
    machine.type_text("vm start -m 4 /guests/test-guest checks ram-mib=4\n");
    // However it ends: the assertions below say what went wrong.
    machine.wait_for("vmm: vm0: guest /guests/test-guest ", GUEST_TIMEOUT);
    machine.type_text("vm list\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    assert_suite_passed(output, "vm0");
    let ended = "vmm: vm0: guest /guests/test-guest exited with status 0";
    assert!(output.contains(ended), "no '{ended}':\n{output}");
    assert!(!output.contains("KERNEL"), "{output}");
    assert_clean(&disk);
    // The figures: the whole run's wall time and the guest's exits.
    let exits = output
        .lines()
        .find(|line| line.starts_with("vm0 ") && line.contains("test-guest"))
        .unwrap_or("vm0: no row in 'vm list'");
    eprintln!(
        "VT-x under Bochs: boot, suite and power-off in {:?}; {exits}",
        started.elapsed()
    );
}
