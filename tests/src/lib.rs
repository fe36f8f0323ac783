//! The harness for tests that boot the real system in QEMU.
//!
//! [`Machine::boot`] builds the image (once per feature set and test
//! binary), starts QEMU on it with the serial console on pipes, and
//! collects everything the system prints. A test then waits for lines,
//! types input, and reads how the run ended from the `isa-debug-exit`
//! device. Every wait has a timeout, after which QEMU is killed and the
//! test fails with the output so far.

use abi::debug_exit::Outcome;
use image_builder::qemu::{self, DataDisk, Firmware};
use image_builder::{BuildOptions, Images};
use image_builder::{bochs, data_disk};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a boot may take before a test gives up. Generous: a test only
/// waits this long when something is already wrong, and a busy machine
/// (parallel tests, a build beside them) slows emulation several times.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds (or reuses) the images for `options`. Builds run one at a time:
/// they share cargo's output directory.
pub fn images(options: &BuildOptions) -> Images {
    static BUILT: Mutex<Option<HashMap<BuildOptions, Images>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = built.get_or_insert_with(HashMap::new);
    if let Some(images) = cache.get(options) {
        return images.clone();
    }
    let images = image_builder::build(options).unwrap_or_else(|error| panic!("building the image failed: {error}"));
    cache.insert(options.clone(), images.clone());
    images
}

/// A debug build with test-only `features` such as `"init/user-fault-test"`.
pub fn with_features(features: &[&str]) -> BuildOptions {
    BuildOptions {
        features: features.iter().map(|feature| feature.to_string()).collect(),
        ..BuildOptions::default()
    }
}

/// A debug build of the system description `system` (a path from the
/// workspace root), whose `init` is a test program.
pub fn with_system(system: &str) -> BuildOptions {
    BuildOptions {
        system: Some(system.to_string()),
        ..BuildOptions::default()
    }
}

/// Output collected so far, with a signal for each new chunk.
#[derive(Default)]
struct Output {
    text: Mutex<String>,
    changed: Condvar,
}

/// Which emulator runs a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Emulator {
    Qemu,
    Bochs,
}

/// A running QEMU or Bochs.
pub struct Machine {
    child: Child,
    emulator: Emulator,
    /// The serial console's input: QEMU's standard input, or Bochs' socket.
    input: Option<Box<dyn Write + Send>>,
    output: Arc<Output>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    /// The kernel's report, or `None` if QEMU ended without one.
    pub outcome: Option<Outcome>,
    /// Everything the system printed.
    pub output: String,
}

impl Machine {
    /// Starts QEMU on the image built with `options`, with `firmware`.
    ///
    /// # Panics
    /// If the image cannot be built or QEMU cannot start.
    pub fn boot(options: &BuildOptions, firmware: Firmware) -> Self {
        Self::boot_with_disk(options, firmware, None)
    }

    /// Like [`Machine::boot`], with `disk` as the data disk.
    ///
    /// # Panics
    /// If the image cannot be built or QEMU cannot start.
    pub fn boot_with_disk(options: &BuildOptions, firmware: Firmware, disk: Option<DataDisk>) -> Self {
        let images = images(options);
        let image = match firmware {
            Firmware::Bios => images.bios,
            Firmware::Uefi => images.uefi,
        };
        let mut command = qemu::command(&image, firmware, disk, false).unwrap_or_else(|error| panic!("{error}"));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start QEMU: {error}"));
        let output = Arc::new(Output::default());
        collect(child.stdout.take().expect("stdout is piped"), &output);
        let input = child.stdin.take().map(|stdin| Box::new(stdin) as Box<dyn Write + Send>);
        Self {
            child,
            emulator: Emulator::Qemu,
            input,
            output,
        }
    }

    /// Starts Bochs (VT-x, IDE disks, no virtio) on the BIOS image built
    /// with `options`, with `disk` on the secondary IDE channel.
    ///
    /// # Panics
    /// If the image cannot be built or Bochs cannot start.
    pub fn boot_bochs(options: &BuildOptions, disk: &Path) -> Self {
        let images = images(options);
        // A free port for the console: bind, note it, let it go.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free TCP port");
        let directory = image_builder::workspace_root().join(format!("target/bochs/{port}"));
        let mut command =
            bochs::command(&images.bios, disk, port, &directory).unwrap_or_else(|error| panic!("{error}"));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start Bochs: {error}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let socket = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(socket) => break socket,
                Err(error) if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) => {
                    kill_group(&mut child);
                    let log = directory.join("bochs.log");
                    panic!("Bochs' console never opened: {error}; see {}", log.display());
                }
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        };
        let output = Arc::new(Output::default());
        collect(socket.try_clone().expect("a second handle on the socket"), &output);
        Self {
            child,
            emulator: Emulator::Bochs,
            input: Some(Box::new(socket)),
            output,
        }
    }

    /// Stops the emulator. Bochs runs under `xvfb-run` and ignores
    /// SIGTERM: its whole process group gets SIGKILL.
    fn kill(&mut self) {
        if self.emulator == Emulator::Bochs {
            kill_group(&mut self.child);
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.text.lock().unwrap().clone()
    }

    /// Waits until the output contains `text`.
    ///
    /// # Panics
    /// After `timeout`, killing QEMU and showing the output so far.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) {
        self.wait_for_more(text, 0, timeout);
    }

    /// Waits until the output contains `text` more than `count` times: the
    /// next answer to a command whose answer has come before.
    ///
    /// # Panics
    /// As [`Machine::wait_for`].
    pub fn wait_for_more(&mut self, text: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = self.output.text.lock().unwrap();
        while seen.matches(text).count() <= count {
            let now = Instant::now();
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if now >= deadline || exited {
                let output = seen.clone();
                drop(seen);
                self.kill();
                panic!("no {text:?} (QEMU exited: {exited}) within {timeout:?}; output:\n{output}");
            }
            // Wake now and then to notice QEMU exiting without output.
            let wait = (deadline - now).min(Duration::from_millis(200));
            seen = self.output.changed.wait_timeout(seen, wait).unwrap().0;
        }
    }

    /// Types `text` on the serial console.
    ///
    /// # Panics
    /// If QEMU no longer reads its input.
    pub fn type_text(&mut self, text: &str) {
        let input = self
            .input
            .as_mut()
            .expect("input is open until the machine is finished");
        // Bochs' UART takes what arrives while its buffer is full as lost:
        // type at a human pace there.
        let pause = match self.emulator {
            Emulator::Qemu => Duration::ZERO,
            Emulator::Bochs => Duration::from_millis(20),
        };
        for byte in text.bytes() {
            input
                .write_all(&[byte])
                .and_then(|()| input.flush())
                .expect("the console's input is closed");
            thread::sleep(pause);
        }
    }

    /// Waits for QEMU to exit and returns how the run ended.
    ///
    /// # Panics
    /// After `timeout`, killing QEMU and showing the output so far.
    pub fn wait_exit(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the emulator") {
                // Let the reader drain the pipe before reporting.
                thread::sleep(Duration::from_millis(50));
                let output = self.output();
                let outcome = match self.emulator {
                    Emulator::Qemu => qemu::outcome(status),
                    // Bochs has no exit device: the kernel names the outcome.
                    Emulator::Bochs => Outcome::from_transcript(&output),
                };
                return Finished { outcome, output };
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{:?} still running after {timeout:?}; output:\n{}",
                    self.emulator,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // A test that failed half-way must not leave an emulator running.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Kills the process group `child` leads (Bochs under `xvfb-run`, which
/// ignores SIGTERM) with SIGKILL, and reaps `child`.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies what `source` prints into `output`, on a thread of its own.
fn collect(mut source: impl Read + Send + 'static, output: &Arc<Output>) {
    let sink = Arc::clone(output);
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count @ 1..) = source.read(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..count]);
            sink.text.lock().unwrap().push_str(&text);
            sink.changed.notify_all();
        }
    });
}

/// Asserts that a test program printed exactly `expected` lines starting
/// with `PASS` and none starting with `FAIL`.
pub fn assert_checks_passed(output: &str, expected: usize) {
    let failures: Vec<&str> = output.lines().filter(|line| line.starts_with("FAIL")).collect();
    assert!(
        failures.is_empty(),
        "failed checks:\n{}\n\noutput:\n{output}",
        failures.join("\n")
    );
    let passed = output.lines().filter(|line| line.starts_with("PASS")).count();
    assert_eq!(
        passed, expected,
        "a run with fewer checks stopped early; output:\n{output}"
    );
}

/// Asserts that `output` contains every one of `texts`, showing it if not.
pub fn assert_contains(output: &str, texts: &[&str]) {
    for text in texts {
        assert!(output.contains(text), "expected {text:?} in the output:\n{output}");
    }
}

/// A fresh ext2 disk of `mib` MiB for test `name`, under `target/disks`.
///
/// # Panics
/// If e2fsprogs is missing or the image cannot be written.
pub fn fresh_disk(name: &str, mib: u64) -> PathBuf {
    let path = image_builder::workspace_root().join(format!("target/disks/test-{name}.img"));
    data_disk::create(&path, mib, mib, None).unwrap_or_else(|error| panic!("{error}"));
    path
}

/// A fresh ext2 disk of `mib` MiB for test `name` holding the guest images
/// the build for `options` made, under `/guests`.
///
/// # Panics
/// If the build fails, e2fsprogs is missing or the image cannot be written.
pub fn guest_disk(name: &str, mib: u64, options: &BuildOptions) -> PathBuf {
    guest_disk_with(name, mib, options, &[])
}

/// [`guest_disk`] with `extra` files besides the guest images: each a path
/// relative to the disk's root and the host file to copy there.
///
/// # Panics
/// If a file cannot be copied or the disk cannot be made.
pub fn guest_disk_with(name: &str, mib: u64, options: &BuildOptions, extra: &[(&str, PathBuf)]) -> PathBuf {
    let root = image_builder::workspace_root();
    let contents = root.join(format!("target/disks/test-{name}-contents"));
    data_disk::assemble(&images(options).disk_contents, extra, &contents).unwrap_or_else(|error| panic!("{error}"));
    let path = root.join(format!("target/disks/test-{name}.img"));
    data_disk::create(&path, mib, mib, Some(&contents)).unwrap_or_else(|error| panic!("{error}"));
    path
}

/// Asserts that the host's `e2fsck -fn` finds `disk` clean.
///
/// # Panics
/// If it does not, with e2fsck's report.
pub fn assert_clean(disk: &Path) {
    let (clean, report) = data_disk::check(disk).unwrap_or_else(|error| panic!("{error}"));
    assert!(clean, "e2fsck finds {} damaged:\n{report}", disk.display());
}
