//! The supervisor in QEMU: faults injected from the shell, the supervisor's
//! own death, and the restart budget.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::qemu::{DataDisk, Firmware};
use tests::{BOOT_TIMEOUT, Machine, assert_clean, assert_contains, fresh_disk, with_system};

/// The shell's `ps` row of process `name`.
fn ps_row<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .rev()
        .find(|row| row.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no ps row for {name}:\n{output}"))
}

/// The GEN and RESTARTS columns of a `ps` row (RESTARTS 0 when "-").
fn generation_and_restarts(row: &str) -> (u32, u32) {
    // NAME STATE PRIORITY GEN RESTARTS MEMORY...; STATE may be two words.
    let numbers: Vec<&str> = row.split_whitespace().skip(1).collect();
    let at = numbers
        .iter()
        .position(|word| word.parse::<u8>().is_ok())
        .unwrap_or_else(|| panic!("no priority in {row:?}"));
    let generation = numbers[at + 1]
        .parse()
        .unwrap_or_else(|_| panic!("no generation in {row:?}"));
    let restarts = numbers[at + 2].parse().unwrap_or(0);
    (generation, restarts)
}

#[test]
fn faults_from_the_shell_are_survived_and_so_is_the_supervisors_own_death() {
    let disk = fresh_disk("supervision", 16);
    let mut machine = Machine::boot_with_disk(&BuildOptions::default(), Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    machine.type_text("write /a.txt kept\nsync\ncrash supervisor panic\n");
    machine.wait_for("init: restarted 'supervisor' (generation 2)", BOOT_TIMEOUT);
    machine.wait_for("supervisor: watching", BOOT_TIMEOUT);
    // The new supervisor handles the next faults: a kill, a hang it must
    // notice by the missed heartbeat, a wild write, a stuck device request.
    machine.type_text("kill virtio-blk\n");
    machine.wait_for("init: restarted 'virtio-blk' (generation 2)", BOOT_TIMEOUT);
    machine.type_text("crash serial hang\n");
    machine.wait_for("init: restarted 'serial' (generation 2)", BOOT_TIMEOUT);
    machine.type_text("crash pci wild-write\n");
    machine.wait_for("init: restarted 'pci' (generation 2)", BOOT_TIMEOUT);
    machine.type_text("crash virtio-blk stuck\ncat /a.txt\n");
    machine.wait_for("init: restarted 'virtio-blk' (generation 3)", BOOT_TIMEOUT);
    machine.type_text("crash virtio-blk garbage\ncat /a.txt\ncrash fs hang\nps\nfaultlog\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
    assert_contains(
        output,
        &[
            "supervisor: injecting panic into myself",
            "init: process 'supervisor' exited with status 101",
            "crash: it cannot take that fault (no endpoint, or no heartbeat to notice a hang)",
            "supervisor started",
            "fault injected: kill",
            "missed its heartbeat: killed",
            "faulted: vector 14",
            "fault injected: stuck",
            "fault injected: garbage",
        ],
    );
    // The file reads back after the stuck request and after the garbage
    // reply (the supervisor's lines may come between command and answer).
    assert_eq!(
        output.lines().filter(|line| line.trim_end() == "kept").count(),
        2,
        "output:\n{output}"
    );
    // At least these generations and restarts (a loaded machine may add a
    // restart for a missed heartbeat).
    let (generation, _) = generation_and_restarts(ps_row(output, "supervisor"));
    assert_eq!(generation, 2, "{output}");
    let (generation, restarts) = generation_and_restarts(ps_row(output, "virtio-blk"));
    assert!(generation >= 3 && restarts >= 2, "{output}");
    let (generation, restarts) = generation_and_restarts(ps_row(output, "serial"));
    assert!(generation >= 2 && restarts >= 1, "{output}");
    assert!(!output.contains("failed"), "an error reached the shell:\n{output}");
    assert_clean(&disk);
}

#[test]
fn a_driver_that_fails_at_every_start_is_backed_off_then_held() {
    // The ATA driver, without an IDE disk: every copy exits at once.
    let mut machine = Machine::boot_with_disk(&with_system("systems/ata.toml"), Firmware::Bios, None);
    machine.wait_for("Held { quick_failures: 5 }", BOOT_TIMEOUT);
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    machine.type_text("ps\nfaultlog\nls /\npoweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
    assert!(ps_row(output, "ata").contains("held"), "{output}");
    assert_contains(
        output,
        &["held after 5 quick failures in a row", "exited with status 1"],
    );
    // Each quick failure doubles the wait before the next copy.
    let delays: Vec<u64> = output
        .lines()
        .filter_map(|line| line.split("restarted, ").nth(1))
        .filter_map(|rest| rest.split(" ms").next()?.parse().ok())
        .collect();
    assert_eq!(delays.len(), 4, "four restarts before the hold:\n{output}");
    for pair in delays.windows(2) {
        assert!(pair[1] > pair[0], "back-off does not grow: {delays:?}");
    }
    // fs runs on without a disk and says why.
    assert_contains(output, &["fs: cannot mount the disk"]);
}
