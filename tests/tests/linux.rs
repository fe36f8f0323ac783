//! An unmodified Linux guest (Debian's kernel and a busybox initramfs, made
//! by `cargo xtask guest-linux`). On AMD-V under QEMU and on VT-x under
//! Bochs, `vm start linux` boots it with the console attached, its shell
//! answers `uname -a` and `cat /proc/cpuinfo`, and a guest kernel that
//! panics ends as a triple fault while our shell carries on. On AMD-V,
//! with a virtio disk backed by a file in our filesystem, what it writes
//! survives a restart of our block driver in the middle of the write and
//! a reboot of the guest.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::data_disk;
use image_builder::qemu::{DataDisk, Firmware};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};
use tests::{BOOT_TIMEOUT, Machine, assert_clean, guest_disk_with, with_system};

/// From `vm start` to the guest's shell: making its RAM, loading the
/// kernel and initrd, and booting Linux under nested emulation.
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// One command in the guest's shell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// What the guest's `/init` prints before its shell.
const READY: &str = "vm0: guest-init: ready";

/// Makes the Linux guest's files with `cargo xtask guest-linux` (Debian's
/// packages through `apt-get download`, kept under target/guest-linux),
/// once for all the tests here, which run at the same time.
fn build_linux_guest() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
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
    });
}

#[test]
fn linux_boots_to_its_shell_and_its_panic_leaves_the_host_running() {
    build_linux_guest();
    let options = BuildOptions::default();
    let disk = guest_disk_with("linux", 32, &options, &data_disk::linux_guest_files());
    let machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    boot_answer_and_panic(machine, &disk, "virtualisation: AMD SVM");
}

/// The same on VT-x: Bochs runs the release build of
/// systems/vmm-bochs.toml (ATA driver, fs, two VMM instances, shell).
#[test]
fn linux_boots_to_its_shell_on_vt_x_under_bochs_and_its_panic_leaves_the_host_running() {
    build_linux_guest();
    let options = BuildOptions {
        release: true,
        ..with_system("systems/vmm-bochs.toml")
    };
    let disk = guest_disk_with("linux-bochs", 48, &options, &data_disk::linux_guest_files());
    let machine = Machine::boot_bochs(&options, &disk);
    boot_answer_and_panic(machine, &disk, "virtualisation: Intel VT-x");
}

/// At our shell: `vm start linux`, the guest's shell answers `uname -a`
/// and `cat /proc/cpuinfo`, the console detaches and attaches again, and a
/// guest kernel panic ends the guest while our shell answers on. `backend`
/// is our kernel's line naming the hardware virtualisation in use.
fn boot_answer_and_panic(mut machine: Machine, disk: &Path, backend: &str) {
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
    wait_listed_ended(&mut machine);
    machine.type_text("echo still-here\n");
    machine.wait_for("\nstill-here", BOOT_TIMEOUT);
    machine.type_text("poweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    for expected in [
        backend,
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
    assert_clean(disk);
    let figures: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("RAM made in") || line.contains("released the guest's"))
        .collect();
    eprintln!(
        "Linux guest ({backend}): RAM made after {made:?}, {READY:?} after {ready:?} from `vm start linux`; {figures:?}"
    );
}

/// Runs `command` in the attached guest's shell and waits for the line it
/// ends with: `marker` computed by the shell (`$((...))`), so the echo of
/// the command line itself does not match.
fn in_guest(machine: &mut Machine, command: &str, marker: u32) {
    machine.type_text(&format!("{command}; echo =done$(({marker} + 0))=\n"));
    machine.wait_for(&format!("=done{marker}="), COMMAND_TIMEOUT);
}

/// Waits until the attached guest has ended (which returns the console
/// to our shell) and vm0 has given its RAM back.
fn wait_until_ended(machine: &mut Machine) {
    wait_for_new(machine, "vm0: the guest ended");
    wait_listed_ended(machine);
}

/// Asks `vm list` until it shows vm0 ended once more: the instance is
/// busy until the kernel has its guest's RAM back.
fn wait_listed_ended(machine: &mut Machine) {
    let listed = machine.output().matches("vm0   ended").count();
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while machine.output().matches("vm0   ended").count() == listed {
        assert!(Instant::now() < deadline, "vm0 never ended:\n{}", machine.output());
        machine.type_text("vm list\n");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Waits for `text` to appear once more than it has so far.
fn wait_for_new(machine: &mut Machine, text: &str) {
    let seen = machine.output().matches(text).count();
    wait_for_more(machine, text, seen, COMMAND_TIMEOUT);
}

/// Waits until `text` appears more than `seen` times.
fn wait_for_more(machine: &mut Machine, text: &str, seen: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while machine.output().matches(text).count() == seen {
        assert!(Instant::now() < deadline, "no new {text:?}:\n{}", machine.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A host file of `bytes` under target/disks, to put on a test disk.
fn host_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = image_builder::workspace_root().join("target/disks").join(name);
    std::fs::create_dir_all(path.parent().expect("target/disks has a parent")).expect("target/disks");
    std::fs::write(&path, bytes).expect("write a test file");
    path
}

/// The guest's md5sum of what it printed as `vm0: HASH  NAME`.
fn guest_md5(output: &str, name: &str) -> String {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("vm0: "))
        .find_map(|line| line.strip_suffix(&format!("  {name}")).filter(|hash| hash.len() == 32))
        .unwrap_or_else(|| panic!("no md5sum of {name}:\n{output}"))
        .to_owned()
}

/// Linux finds our PCI bus and the virtio disk on its own (`acpi=off`, no
/// `pci=` option). 24 MiB it writes to `/dev/vda` while our block driver
/// is restarted reach the file unharmed (the guest sees no error), read
/// back the same after the guest reboots, and are in the file on the
/// host's copy of our disk afterwards; a shell on the virtio console
/// answers; bad disk files are refused.
#[test]
fn linux_keeps_its_virtio_disk_through_a_driver_restart_and_a_reboot() {
    build_linux_guest();
    let options = BuildOptions::default();
    let [kernel, initrd] = data_disk::linux_guest_files();
    let disk = guest_disk_with(
        "linux-virtio",
        96,
        &options,
        &[
            kernel,
            initrd,
            ("guest.img", host_file("linux-virtio-guest.img", &vec![0; 32 << 20])),
            ("bad.img", host_file("linux-virtio-bad.img", b"oops")),
        ],
    );
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    let start = "vm start -m 160 --module /initrd.img";
    machine.type_text(&format!("{start} --disk /bad.img /vmlinuz\n"));
    machine.wait_for("bad disk: /bad.img is 4 bytes", BOOT_TIMEOUT);
    machine.type_text(&format!("{start} --disk /missing.img /vmlinuz\n"));
    machine.wait_for("bad disk: /missing.img: no such file", BOOT_TIMEOUT);

    let started = Instant::now();
    machine.type_text(&format!("{start} --disk /guest.img /vmlinuz\n"));
    machine.wait_for(READY, LINUX_BOOT_TIMEOUT);
    let ready = started.elapsed();
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);
    in_guest(&mut machine, "cat /sys/block/vda/size", 1);
    in_guest(
        &mut machine,
        "echo written-by-linux > /dev/vda; dd if=/dev/urandom of=/tmp/data bs=64k count=384 2>/dev/null; \
         md5sum /tmp/data",
        2,
    );
    // The write: the same 24 MiB four times over, each pass synced, so it
    // is still going when our shell restarts the block driver.
    in_guest(
        &mut machine,
        "echo 'echo =write-\"\"start=; for pass in 1 2 3 4; do dd if=/tmp/data of=/dev/vda bs=64k seek=16 \
         conv=fsync 2>/dev/null || exit 1; done; echo =write-\"\"ok=' > /tmp/write",
        3,
    );
    machine.type_text("sh /tmp/write &\n");
    wait_for_new(&mut machine, "=write-start=");
    machine.type_text("\x1d");
    machine.wait_for("vm0: console detached", BOOT_TIMEOUT);
    machine.type_text("restart virtio-blk\n");
    machine.wait_for("init: restarted 'virtio-blk'", BOOT_TIMEOUT);
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);
    machine.wait_for("=write-ok=", COMMAND_TIMEOUT);
    let output = machine.output();
    let (restarted, written) = (output.find("init: restarted 'virtio-blk'"), output.find("=write-ok="));
    assert!(restarted < written, "the write ended before the driver restarted:\n{output}");
    in_guest(
        &mut machine,
        "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=64k skip=16 count=384 2>/dev/null | md5sum",
        4,
    );
    // A shell on hvc0: once it writes there, input goes to it.
    machine.type_text("setsid sh -c 'echo =hvc$((40 + 2))=; exec sh -i' </dev/hvc0 >/dev/hvc0 2>&1 &\n");
    machine.wait_for("=hvc42=", COMMAND_TIMEOUT);
    in_guest(&mut machine, "tty", 5);

    // Reboot the guest (a triple fault ends it) and read the disk again.
    machine.type_text("reboot -f\n");
    wait_until_ended(&mut machine);
    let boots = machine.output().matches(READY).count();
    machine.type_text(&format!("{start} --disk /guest.img /vmlinuz\n"));
    wait_for_more(&mut machine, READY, boots, LINUX_BOOT_TIMEOUT);
    machine.type_text("vm console vm0\n");
    machine.wait_for("vm0: console attached", BOOT_TIMEOUT);
    in_guest(
        &mut machine,
        "head -c 16 /dev/vda | tr - +; echo; dd if=/dev/vda bs=64k skip=16 count=384 2>/dev/null | md5sum > /tmp/again; \
         sed 's/-$/again/' /tmp/again",
        6,
    );
    machine.type_text("reboot -f\n");
    wait_until_ended(&mut machine);
    machine.type_text("poweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = &finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    for line in [
        "PCI: Using configuration type 1 for base access",
        "virtio-pci 0000:00:01.0: PCI->APIC IRQ transform: INT A -> IRQ 17",
        "[vda] 65536 512-byte logical blocks",
        "vm0: 65536",
        "vm0: written+by+linux",
        "vm0: /dev/hvc0",
    ] {
        assert!(output.contains(line), "no '{line}':\n{output}");
    }
    let written = guest_md5(output, "/tmp/data");
    assert_eq!(guest_md5(output, "-"), written, "read back before the reboot");
    assert_eq!(guest_md5(output, "again"), written, "read back after the reboot");
    assert!(!output.contains("needs a reset") && !output.contains("I/O error"), "{output}");
    assert!(!output.contains("KERNEL PANIC") && !output.contains("KERNEL EXCEPTION"), "{output}");
    assert_clean(&disk);
    let image = disk.with_extension("guest.img");
    let dumped = Command::new("/sbin/debugfs")
        .arg("-R")
        .arg(format!("dump /guest.img {}", image.display()))
        .arg(&disk)
        .status()
        .expect("debugfs (e2fsprogs) runs");
    assert!(dumped.success());
    let file = std::fs::read(&image).expect("the dumped disk file");
    assert_eq!(file.len(), 32 << 20, "the file kept its size");
    assert!(file.starts_with(b"written-by-linux\n"), "{:?}", &file[..32]);
    eprintln!("Linux guest with a virtio disk: {READY:?} after {ready:?} from `vm start`");
}
