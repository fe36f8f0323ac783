//! The system boots on BIOS and UEFI to the shell, which runs commands
//! typed on the serial console and powers off with init's success.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::{DataDisk, Firmware};
use tests::{BOOT_TIMEOUT, Machine, assert_contains};

const READY: &str = "shell: type 'help' for the commands";

fn boots_to_the_shell(firmware: Firmware) {
    let mut machine = Machine::boot(&BuildOptions::default(), firmware);
    machine.wait_for(READY, BOOT_TIMEOUT);
    machine.type_text("echo hello from the shell\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    assert_contains(
        &finished.output,
        &["init: running in ring 3", "hello from the shell", "init: powering off"],
    );
    assert!(
        !finished.output.contains("KERNEL"),
        "kernel trouble:\n{}",
        finished.output
    );
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{}", finished.output);
}

#[test]
fn bios_boot_reaches_the_shell() {
    boots_to_the_shell(Firmware::Bios);
}

#[test]
fn uefi_boot_reaches_the_shell() {
    boots_to_the_shell(Firmware::Uefi);
}

#[test]
fn shell_commands_work() {
    // With a data disk, as `cargo xtask run` boots it.
    let disk = tests::fresh_disk("shell", 16);
    let mut machine = Machine::boot_with_disk(&BuildOptions::default(), Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for(READY, BOOT_TIMEOUT);
    // Typed all at once, as `printf ... | cargo xtask run` would.
    machine.type_text("help\nps\necho hello\nuptime\nmeminfo\nlspci\nfrobnicate\necx\x7fho edited\n\x1b[A\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_contains(
        output,
        &[
            "commands:",
            "ps         the processes",
            "echo TEXT",
            "poweroff   stops the system",
        ],
    );
    let table: Vec<&str> = output
        .lines()
        .skip_while(|line| !line.starts_with("NAME"))
        .take(12)
        .collect();
    for name in [
        "init ",
        "names ",
        "supervisor ",
        "serial ",
        "pci ",
        "virtio-blk ",
        "fs ",
        "vm0 ",
        "vm1 ",
        "shell ",
    ] {
        assert!(
            table.iter().any(|row| row.starts_with(name) && row.contains("running")),
            "no {name:?} in {table:#?}"
        );
    }
    assert_contains(
        output,
        &[
            "\r\nhello\r\n",
            "frobnicate: unknown command (try 'help')",
            "\r\nup 0:00:",
        ],
    );
    assert_contains(
        output,
        &[
            "free, not given to any process: ",
            "PROCESS          QUOTA      LEFT",
            "serial",
        ],
    );
    // The i440FX host bridge and the PIIX3 IDE controller with its port BAR.
    assert_contains(
        output,
        &[
            "00:00.0 8086:1237 class 06.00.00",
            "00:01.1 8086:7010 class 01.01.80 ports 0x",
        ],
    );
    // Backspace removed the typo; the up arrow brought the line back.
    assert_eq!(output.matches("\r\nedited\r\n").count(), 2, "output:\n{output}");
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}
