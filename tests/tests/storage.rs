//! The storage stack in QEMU: pci hands the virtio disk to its driver, fs
//! serves an ext2 filesystem on it, and the host's `e2fsck` checks the
//! image afterwards.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::{DataDisk, DiskBus, Firmware};
use std::path::Path;
use std::time::Duration;
use tests::{BOOT_TIMEOUT, Machine, assert_checks_passed, assert_clean, assert_contains, fresh_disk, with_system};

/// Boots the default system on `disk`, types `commands` into the shell and
/// waits for it to power off; returns what it printed.
fn shell_session(disk: &Path, commands: &str) -> String {
    let mut machine = Machine::boot_with_disk(&BuildOptions::default(), Firmware::Bios, Some(DataDisk::virtio(disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    machine.type_text(commands);
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{}", finished.output);
    finished.output
}

#[test]
fn a_file_written_in_one_boot_is_there_in_the_next() {
    let disk = fresh_disk("persist", 32);
    let first = shell_session(&disk, "write /a.txt hello\nsync\ncat /a.txt\nls /\npoweroff\n");
    assert_contains(&first, &["fs: mounted ext2", "> cat /a.txt\r\nhello", "a.txt"]);
    assert_clean(&disk);
    let second = shell_session(
        &disk,
        "cat /a.txt\nmkdir /d\nmv /a.txt /d/b.txt\ncp /d/b.txt /c.txt\nrm /d\nstat /c.txt\nls /d\ndf\nsync\npoweroff\n",
    );
    assert_contains(
        &second,
        &[
            "> cat /a.txt\r\nhello",
            "rm: the directory is not empty",
            "/c.txt: file, 6 bytes, 1 links",
            "> ls /d\r\nb.txt",
            "INODES FREE",
        ],
    );
    assert_clean(&disk);
}

#[test]
fn concurrent_clients_churn_hundreds_of_files_and_fill_the_disk_and_fsck_is_clean() {
    let disk = fresh_disk("churn", 8);
    let finished = Machine::boot_with_disk(
        &with_system("systems/storage.toml"),
        Firmware::Bios,
        Some(DataDisk::virtio(&disk)),
    )
    .wait_exit(Duration::from_secs(900));
    let output = &finished.output;
    // Two clients' workloads, the path errors, bad block requests, a refused
    // restart and the full disk.
    assert_checks_passed(output, 6);
    assert_contains(output, &["storage-tests: all checks passed", "init: powering off"]);
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
    assert_clean(&disk);
}

#[test]
fn a_disk_with_a_corrupt_superblock_is_refused_and_the_system_runs_on() {
    let disk = fresh_disk("corrupt", 8);
    // The superblock is the kilobyte at 1024; scribble over its magic and counts.
    let mut bytes = std::fs::read(&disk).expect("disk image");
    bytes[1024..1024 + 64].fill(0xa5);
    bytes[1024 + 56..1024 + 58].fill(0);
    std::fs::write(&disk, &bytes).expect("disk image");
    let output = shell_session(&disk, "ls /\necho still here\nps\npoweroff\n");
    assert_contains(
        &output,
        &[
            "fs: cannot mount the disk: bad superblock",
            "ls: no filesystem: bad superblock",
            "still here",
            "shell",
        ],
    );
    let after = std::fs::read(&disk).expect("disk image");
    assert!(after == bytes, "the refused disk was written to");
}

#[test]
fn without_a_disk_the_driver_is_reported_and_fs_answers_with_the_reason() {
    let mut machine = Machine::boot(&BuildOptions::default(), Firmware::Bios);
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    machine.type_text("ls /\nps\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_contains(
        output,
        &[
            "init: cannot start 'virtio-blk': no free PCI device 1af4:1001",
            "fs: cannot mount the disk: no block device",
            "ls: no filesystem: no block device",
        ],
    );
    assert!(
        output
            .lines()
            .any(|row| row.starts_with("virtio-blk ") && row.contains("failed")),
        "ps does not show the driver as failed:\n{output}"
    );
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}

#[test]
fn the_ata_driver_serves_the_same_filesystem_from_an_ide_disk() {
    let disk = fresh_disk("ata", 16);
    let ide = DataDisk {
        path: &disk,
        bus: DiskBus::Ide,
    };
    let mut machine = Machine::boot_with_disk(&with_system("systems/ata.toml"), Firmware::Bios, Some(ide));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    machine.type_text("write /ide.txt through ata\nmkdir /d\ncp /ide.txt /d/copy\nsync\ncat /d/copy\nls /\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_contains(
        output,
        &[
            // READ/WRITE MULTIPLE: QEMU's drive takes blocks of 16.
            "ata: 32768 sectors (16 MiB) on the secondary channel, 16 per interrupt",
            "fs: mounted ext2",
            "through ata\r\n",
            "ide.txt",
        ],
    );
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
    assert_clean(&disk);
}

/// Bochs has no virtio: the ATA driver is how storage works there. A
/// release build, because Bochs runs it many times slower than QEMU.
#[test]
fn under_bochs_the_ata_driver_serves_the_filesystem() {
    let disk = fresh_disk("bochs", 16);
    let options = BuildOptions {
        release: true,
        ..with_system("systems/ata.toml")
    };
    let mut machine = Machine::boot_bochs(&options, &disk);
    let slow = Duration::from_secs(900);
    machine.wait_for("fs: mounted ext2", slow);
    machine.wait_for("shell: type 'help'", slow);
    machine.type_text("write /bochs.txt written under bochs\nsync\ncat /bochs.txt\npoweroff\n");
    let finished = machine.wait_exit(slow);
    let output = &finished.output;
    assert_contains(
        output,
        &[", 16 per interrupt", "written under bochs\r\n", "init: powering off"],
    );
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
    assert_clean(&disk);
}

#[test]
fn restarting_the_driver_and_fs_loses_nothing() {
    let disk = fresh_disk("restart", 16);
    let output = shell_session(
        &disk,
        "write /a.txt before\nsync\nrestart fs\ncat /a.txt\nrestart virtio-blk\nwrite /c.txt after both\n\
         sync\nrestart fs\ncat /c.txt\nps\npoweroff\n",
    );
    assert_contains(
        &output,
        &[
            "init: restarted 'fs' (generation 2)",
            "init: restarted 'virtio-blk' (generation 2)",
            "init: restarted 'fs' (generation 3)",
            // No prompt before the commands: a restarted fs's "mounted"
            // line may land between the prompt and the echo.
            "cat /a.txt\r\nbefore",
            "cat /c.txt\r\nafter both",
        ],
    );
    assert!(
        output
            .lines()
            .any(|row| row.starts_with("fs ") && row.contains("running") && row.contains("   3  ")),
        "ps does not show fs in its third generation:\n{output}"
    );
    assert!(!output.contains("failed"), "an error reached the shell:\n{output}");
    assert_clean(&disk);
}
