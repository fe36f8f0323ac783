//! An unmodified Linux guest (Debian's kernel and a busybox initramfs, made
//! by `cargo xtask guest-linux`) on both backends: AMD-V under QEMU and
//! VT-x under Bochs. `vm start linux` boots it with the console attached,
//! its shell answers `uname -a` and `cat /proc/cpuinfo`, and a guest
//! kernel that panics ends as a triple fault while our shell carries on.
//! With `--disk /guest.img`, a file in our filesystem as its virtio disk,
//! what it writes survives a restart of our block driver in the middle of
//! the write (virtio-blk under QEMU, ata under Bochs) and the guest's
//! reboot (`reboot -f` under QEMU) or power-off and fresh start
//! (`poweroff -f` under Bochs), and is in the file on the host's copy of
//! our disk afterwards. Under QEMU the guest finally powers off.
//!
//! The tests are built from the steps below, so both backends go through
//! the same sequence; Bochs is slow (a Linux boot there takes minutes), so
//! its one test does everything with two boots.

use abi::debug_exit::Outcome;
use image_builder::BuildOptions;
use image_builder::data_disk;
use image_builder::qemu::{DataDisk, Firmware};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};
use tests::{BOOT_TIMEOUT, Machine, assert_clean, assert_contains, guest_disk_with, with_system};

/// From `vm start` to the guest's shell: making its RAM, loading the
/// kernel and initrd, and booting Linux under nested emulation.
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// One command in the guest's shell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// What the guest's `/init` prints before its shell.
const READY: &str = "vm0: guest-init: ready";

/// The guest's disk, `/guest.img` in our filesystem, in MiB.
const GUEST_DISK_MIB: usize = 32;
/// Where the test data starts on the guest's disk, in `dd`'s 64 KiB
/// blocks: after the mark the guest writes at its start.
const DATA_BLOCK: usize = 16;
/// What the guest writes at the start of its disk.
const MARK: &str = "written-by-linux";

/// What the guest's shell answers to `uname -a` and `cat /proc/cpuinfo`.
const ANSWERS: [&str; 6] = [
    "vm0: guest-init: Linux 6.",
    "vm0: Linux (none) 6.",
    "x86_64 GNU/Linux",
    "vm0: vendor_id",
    "vm0: model name",
    " hypervisor",
];
/// What a guest kernel panic leaves in the output.
const PANIC: [&str; 3] = [
    "sysrq: Trigger a crash",
    "Kernel panic - not syncing: sysrq triggered crash",
    "vmm: vm0: guest /vmlinuz shut down (triple fault)",
];
/// What Linux says about our PCI bus and its virtio disk, and the disk's
/// size in sectors it printed.
const DISK: [&str; 4] = [
    "PCI: Using configuration type 1 for base access",
    "virtio-pci 0000:00:01.0: PCI->APIC IRQ transform: INT A -> IRQ 17",
    "[vda] 65536 512-byte logical blocks",
    "vm0: 65536",
];

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

/// `vm start linux` on AMD-V: the guest answers, the console detaches and
/// attaches again, and its panic leaves our shell answering.
#[test]
fn linux_boots_to_its_shell_and_its_panic_leaves_the_host_running() {
    build_linux_guest();
    let options = BuildOptions::default();
    let disk = guest_disk_with("linux", 32, &options, &data_disk::linux_guest_files());
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    let ready = start_linux(&mut machine, None);
    answer_uname_and_cpuinfo(&mut machine);
    at_our_shell(&mut machine, "vm list\n", "vm0   running");
    panic_and_survive(&mut machine);
    let output = power_off(machine);
    assert_contains(&output, &["virtualisation: AMD SVM"]);
    assert_answered(&output);
    assert_contains(&output, &PANIC);
    assert_clean(&disk);
    report("AMD SVM", &output, &[("guest-init: ready", ready)]);
}

/// Linux finds our PCI bus and the virtio disk on its own (`acpi=off`, no
/// `pci=` option). 24 MiB it writes to `/dev/vda` four times over while
/// our virtio-blk driver is restarted reach the file unharmed (the guest
/// sees no error), read back the same after the guest reboots, and are in
/// the file on the host's copy of our disk afterwards; a shell on the
/// virtio console answers; bad disk files and bad options are refused.
#[test]
fn linux_keeps_its_virtio_disk_through_a_driver_restart_and_a_reboot() {
    build_linux_guest();
    let options = BuildOptions::default();
    let disk = disk_with_guest_image("linux-virtio", &options);
    let mut machine = Machine::boot_with_disk(&options, Firmware::Bios, Some(DataDisk::virtio(&disk)));
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    refuse_bad_disks(&mut machine);
    let data = DiskWrite { mib: 24, passes: 4 };
    let durations = data.keep_through_restart_and_reboot(&mut machine, "virtio-blk", GuestEnd::Reboot);
    // A shell on hvc0: once it writes there, input goes to it.
    machine.type_text("setsid sh -c 'echo =hvc$((40 + 2))=; exec sh -i' </dev/hvc0 >/dev/hvc0 2>&1 &\n");
    machine.wait_for("=hvc42=", COMMAND_TIMEOUT);
    in_guest(&mut machine, "tty");
    GuestEnd::PowerOff.end(&mut machine);
    let output = power_off(machine);
    assert_contains(&output, &["vm0: /dev/hvc0"]);
    // Not assert_answered: the shell on hvc0 has no controlling terminal.
    assert_contains(&output, &ANSWERS);
    data.assert_kept(&output, &disk);
    report("AMD SVM, virtio disk", &output, &durations);
}

/// Everything on VT-x, in one test as Bochs is slow: the release build of
/// systems/vmm-bochs.toml (ATA driver, fs, two VMM instances, shell), the
/// guest's disk a file on the IDE disk. The guest answers, writes to its
/// disk while our ATA driver is restarted, reads it back before and after
/// a reboot, and its panic leaves our shell answering.
#[test]
fn linux_on_vt_x_under_bochs_answers_keeps_its_disk_and_its_panic_leaves_the_host_running() {
    let test_started = Instant::now();
    build_linux_guest();
    let options = BuildOptions {
        release: true,
        ..with_system("systems/vmm-bochs.toml")
    };
    let disk = disk_with_guest_image("linux-bochs", &options);
    let mut machine = Machine::boot_bochs(&options, &disk);
    machine.wait_for("shell: type 'help'", BOOT_TIMEOUT);
    // Written four times, so the write still runs when `restart ata`
    // lands: 3 s after its start, typed at Bochs' pace, while 8 MiB four
    // times over took 16 s (ata moving 16 sectors per interrupt).
    let data = DiskWrite { mib: 8, passes: 4 };
    // Powered off and started again: the guest's reboot here (the panic
    // below ends it by a triple fault, as `reboot -f` does).
    let mut durations = data.keep_through_restart_and_reboot(&mut machine, "ata", GuestEnd::PowerOff);
    panic_and_survive(&mut machine);
    let output = power_off(machine);
    assert_contains(&output, &["virtualisation: Intel VT-x"]);
    assert_answered(&output);
    assert_contains(&output, &PANIC);
    data.assert_kept(&output, &disk);
    durations.push(("the whole test", test_started.elapsed()));
    report("Intel VT-x", &output, &durations);
}

/// A disk of ours for test `name` with the Linux guest's files, a zeroed
/// `/guest.img` of [`GUEST_DISK_MIB`] for its virtio disk and a 4-byte
/// `/bad.img` that cannot be one.
fn disk_with_guest_image(name: &str, options: &BuildOptions) -> PathBuf {
    let [kernel, initrd] = data_disk::linux_guest_files();
    guest_disk_with(
        name,
        96,
        options,
        &[
            kernel,
            initrd,
            (
                "guest.img",
                host_file(&format!("{name}-guest.img"), &vec![0; GUEST_DISK_MIB << 20]),
            ),
            ("bad.img", host_file(&format!("{name}-bad.img"), b"oops")),
        ],
    )
}

/// At our shell: a disk file that is not a whole number of sectors, one
/// that does not exist and a `vm start linux` with a word it does not
/// take are refused, through both forms of `vm start`.
fn refuse_bad_disks(machine: &mut Machine) {
    machine.type_text("vm start -m 160 --module /initrd.img --disk /bad.img /vmlinuz\n");
    machine.wait_for("bad disk: /bad.img is 4 bytes", BOOT_TIMEOUT);
    machine.type_text("vm start linux --disk /missing.img\n");
    machine.wait_for("bad disk: /missing.img: no such file", BOOT_TIMEOUT);
    machine.type_text("vm start linux --disk\n");
    machine.wait_for("vm: vm start linux: --disk needs a FILE", BOOT_TIMEOUT);
    machine.type_text("vm start linux --disk /guest.img now\n");
    machine.wait_for("vm: vm start linux: 'now' is not --disk FILE", BOOT_TIMEOUT);
}

/// At our shell: `vm start linux`, with `--disk disk` if given, until the
/// guest's `/init` is ready with the console attached to it; returns how
/// long that took.
fn start_linux(machine: &mut Machine, disk: Option<&str>) -> Duration {
    let started = Instant::now();
    let option = disk.map(|file| format!(" --disk {file}")).unwrap_or_default();
    type_and_wait(machine, &format!("vm start linux{option}\n"), "vm0: console attached", BOOT_TIMEOUT);
    let boots = machine.output().matches(READY).count();
    machine.wait_for_more(READY, boots, LINUX_BOOT_TIMEOUT);
    started.elapsed()
}

/// In the guest's shell: `uname -a` and `cat /proc/cpuinfo`.
fn answer_uname_and_cpuinfo(machine: &mut Machine) {
    type_and_wait(machine, "uname -a\n", "vm0: Linux (none) 6.", COMMAND_TIMEOUT);
    type_and_wait(machine, "cat /proc/cpuinfo\n", "vm0: flags", COMMAND_TIMEOUT);
}

/// After the run: the guest answered [`answer_uname_and_cpuinfo`], its
/// shell owning the console as its controlling terminal.
fn assert_answered(output: &str) {
    assert_contains(output, &ANSWERS);
    assert!(!output.contains("can't access tty"), "{output}");
}

/// Back to our shell (Ctrl-]) while the guest runs on, `command` there
/// until its `reply`, and the console attached to the guest again.
fn at_our_shell(machine: &mut Machine, command: &str, reply: &str) {
    type_and_wait(machine, "\x1d", "vm0: console detached", BOOT_TIMEOUT);
    type_and_wait(machine, command, reply, BOOT_TIMEOUT);
    type_and_wait(machine, "vm console vm0\n", "vm0: console attached", BOOT_TIMEOUT);
}

/// What the guest writes to its disk: `mib` MiB of random data at
/// [`DATA_BLOCK`], `passes` times over, each pass synced.
struct DiskWrite {
    mib: usize,
    passes: usize,
}

impl DiskWrite {
    /// At our shell: `vm start linux --disk /guest.img`; the guest answers
    /// `uname -a` and `cat /proc/cpuinfo`, writes through a restart of our
    /// block driver `driver`, reads back, ends (`end`), is started again
    /// with the same disk and reads back again. Returns how long the steps
    /// took, named.
    fn keep_through_restart_and_reboot(
        &self,
        machine: &mut Machine,
        driver: &str,
        end: GuestEnd,
    ) -> Vec<(&'static str, Duration)> {
        let ready = start_linux(machine, Some("/guest.img"));
        answer_uname_and_cpuinfo(machine);
        let (back, written) = self.write_through_restart(machine, driver);
        let read = self.read_back(machine, "before-reboot");
        end.end(machine);
        let ready_again = start_linux(machine, Some("/guest.img"));
        let read_again = self.read_back(machine, "after-reboot");
        vec![
            ("guest-init: ready", ready),
            ("the driver back", back),
            ("the write", written),
            ("read back", read),
            ("ready again", ready_again),
            ("read back again", read_again),
        ]
    }

    /// In the guest: notes the disk's size, writes [`MARK`] at its start,
    /// makes the data in `/tmp/data`, then writes it with a script in the
    /// background and meanwhile, at our shell, restarts our block driver
    /// `driver`. The write must still be going when the driver is back,
    /// and must succeed. Returns how long after the write's start the
    /// driver was back (with the console attached again), and how long
    /// the write took.
    fn write_through_restart(&self, machine: &mut Machine, driver: &str) -> (Duration, Duration) {
        in_guest(machine, "cat /sys/block/vda/size");
        let blocks = self.blocks();
        in_guest(
            machine,
            &format!(
                "echo {MARK} > /dev/vda; dd if=/dev/urandom of=/tmp/data bs=64k count={blocks} 2>/dev/null; \
                 md5sum /tmp/data"
            ),
        );
        let passes = self.passes;
        in_guest(
            machine,
            &format!(
                "echo 'echo =write-\"\"start=; for pass in $(seq {passes}); do dd if=/tmp/data of=/dev/vda bs=64k \
                 seek={DATA_BLOCK} conv=fsync 2>/dev/null || exit 1; done; echo =write-\"\"ok=' > /tmp/write"
            ),
        );
        let ok = machine.output().matches("=write-ok=").count();
        type_and_wait(machine, "sh /tmp/write &\n", "=write-start=", COMMAND_TIMEOUT);
        let started = Instant::now();
        let restarted = format!("init: restarted '{driver}'");
        at_our_shell(machine, &format!("restart {driver}\n"), &restarted);
        let back = started.elapsed();
        machine.wait_for_more("=write-ok=", ok, COMMAND_TIMEOUT);
        let written = started.elapsed();
        let output = machine.output();
        assert!(
            output.rfind(&restarted) < output.rfind("=write-ok="),
            "the write ended before {driver} restarted:\n{output}"
        );
        (back, written)
    }

    /// In the guest, after dropping its caches: the disk's first bytes
    /// (as `written+by+linux`, so the command's echo does not match) and
    /// the md5sum of the data read back, named `label`. Returns how long
    /// that took, typing the command included.
    fn read_back(&self, machine: &mut Machine, label: &str) -> Duration {
        let started = Instant::now();
        let blocks = self.blocks();
        in_guest(
            machine,
            &format!(
                "echo 3 > /proc/sys/vm/drop_caches; head -c {} /dev/vda | tr - +; echo; dd if=/dev/vda bs=64k \
                 skip={DATA_BLOCK} count={blocks} 2>/dev/null | md5sum | sed 's/-$/{label}/'",
                MARK.len()
            ),
        );
        started.elapsed()
    }

    /// After the run: the guest found its disk, saw no I/O error, read
    /// back what it wrote before and after the reboot, and the host's copy
    /// of our `disk` is clean and holds it in `/guest.img`.
    fn assert_kept(&self, output: &str, disk: &Path) {
        assert_contains(output, &DISK);
        assert!(!output.contains("needs a reset") && !output.contains("I/O error"), "{output}");
        assert_contains(output, &[&format!("vm0: {}", MARK.replace('-', "+"))]);
        let written = guest_md5(output, "/tmp/data");
        assert_eq!(guest_md5(output, "before-reboot"), written, "read back before the reboot");
        assert_eq!(guest_md5(output, "after-reboot"), written, "read back after the reboot");
        assert_clean(disk);
        let image = disk.with_extension("guest.img");
        let dumped = Command::new("/sbin/debugfs")
            .arg("-R")
            .arg(format!("dump /guest.img {}", image.display()))
            .arg(disk)
            .status()
            .expect("debugfs (e2fsprogs) runs");
        assert!(dumped.success());
        let file = std::fs::read(&image).expect("the dumped disk file");
        assert_eq!(file.len(), GUEST_DISK_MIB << 20, "the file kept its size");
        assert!(file.starts_with(format!("{MARK}\n").as_bytes()), "{:?}", &file[..32]);
        let start = DATA_BLOCK << 16;
        assert_eq!(host_md5(&file[start..start + (self.mib << 20)]), written, "the data in the file");
    }

    /// The data's size in `dd`'s 64 KiB blocks.
    fn blocks(&self) -> usize {
        self.mib << 4
    }
}

/// How the guest's shell ends the guest before it is started again.
#[derive(Clone, Copy)]
enum GuestEnd {
    /// `reboot -f`: a triple fault (`reboot=t`) ends the guest.
    Reboot,
    /// `poweroff -f`: with no ACPI, Linux halts with interrupts off
    /// ("System halted"), and the VMM ends the guest as powered off.
    PowerOff,
}

impl GuestEnd {
    /// Ends the attached guest this way and waits until vm0 is idle again.
    fn end(self, machine: &mut Machine) {
        let (command, ended) = match self {
            Self::Reboot => ("reboot -f\n", "vm0: the guest ended (shut down (triple fault)"),
            Self::PowerOff => ("poweroff -f\n", "vm0: the guest ended (powered off (halted with interrupts off)"),
        };
        type_and_wait(machine, command, ended, COMMAND_TIMEOUT);
        wait_listed_ended(machine);
    }
}

/// In the guest's shell: a kernel panic (sysrq 'c') restarts the guest at
/// once (`panic=-1`) by a triple fault (`reboot=t`), which ends it, and
/// our shell answers `ps`, `vm list` and `echo` until vm0 is idle again.
fn panic_and_survive(machine: &mut Machine) {
    type_and_wait(
        machine,
        "echo c > /proc/sysrq-trigger\n",
        "vm0: the guest ended (shut down (triple fault)",
        COMMAND_TIMEOUT,
    );
    type_and_wait(machine, "ps\n", "NAME             STATE", BOOT_TIMEOUT);
    wait_listed_ended(machine);
    type_and_wait(machine, "echo still-here\n", "\nstill-here", BOOT_TIMEOUT);
}

/// At our shell: `poweroff`; the run must end well, without a report of
/// our kernel's own (the guest's log says GFP_KERNEL). Returns its output.
fn power_off(mut machine: Machine) -> String {
    machine.type_text("poweroff\n");
    let finished = machine.wait_exit(BOOT_TIMEOUT);
    let output = finished.output;
    assert_eq!(finished.outcome, Some(Outcome::Success), "{output}");
    assert!(!output.contains("KERNEL PANIC") && !output.contains("KERNEL EXCEPTION"), "{output}");
    output
}

/// Prints the durations a test measured (each from its step's command;
/// the driver's restart from the write's start), with the VMM's own
/// figures for making and releasing guest RAM.
fn report(test: &str, output: &str, durations: &[(&str, Duration)]) {
    let figures: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("RAM made in") || line.contains("released the guest's"))
        .collect();
    eprintln!("Linux guest ({test}): {durations:?} from the command; {figures:?}");
}

/// Runs `command` in the attached guest's shell and waits for the marker
/// it ends with (`""` inside it, so the command's echo does not match).
fn in_guest(machine: &mut Machine, command: &str) {
    type_and_wait(machine, &format!("{command}; echo =done\"\"=\n"), "=done=", COMMAND_TIMEOUT);
}

/// Types `text` and waits until `reply` appears once more than before.
fn type_and_wait(machine: &mut Machine, text: &str, reply: &str, timeout: Duration) {
    let seen = machine.output().matches(reply).count();
    machine.type_text(text);
    machine.wait_for_more(reply, seen, timeout);
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

/// A host file of `bytes` under target/disks, to put on a test disk.
fn host_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = image_builder::workspace_root().join("target/disks").join(name);
    std::fs::create_dir_all(path.parent().expect("target/disks has a parent")).expect("target/disks");
    std::fs::write(&path, bytes).expect("write a test file");
    path
}

/// The host's md5sum of `bytes`, as the guest prints it.
fn host_md5(bytes: &[u8]) -> String {
    let mut md5sum = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils) runs");
    md5sum
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(bytes)
        .expect("md5sum reads");
    let printed = md5sum.wait_with_output().expect("md5sum ends");
    String::from_utf8_lossy(&printed.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum prints a hash")
        .to_owned()
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
