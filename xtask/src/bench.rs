//! `cargo xtask bench`: prints IPC costs, disk throughput, and how long
//! each boot stage takes. Figures, not pass/fail: compare them across
//! changes.

use image_builder::qemu::{self, DiskBus, Firmware};
use image_builder::{BuildOptions, Images, data_disk, workspace_root};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The line that marks the first code running in ring 3.
const FIRST_USER_LINE: &str = "init: running in ring 3";
/// The line the shell prints when it is ready for commands.
const SHELL_READY: &str = "shell: type 'help'";
const RUNS: usize = 5;
/// The disk benchmark's scratch disk, relative to the workspace root.
const BENCH_DISK: &str = "target/disks/bench.img";
/// Its size and the part its filesystem takes: diskbench's fs passes need
/// a 16 MiB file in the filesystem, its raw passes the last 16 MiB of the
/// disk outside it.
const BENCH_DISK_MIB: u64 = 96;
const BENCH_FILESYSTEM_MIB: u64 = 48;
/// How long the disk benchmark may run before QEMU is killed.
const DISK_TIMEOUT: Duration = Duration::from_secs(600);

/// Prints the IPC table and the disk table, then times boots on both
/// firmwares.
pub fn run() -> Result<(), String> {
    ipc()?;
    disk("systems/diskbench.toml", DiskBus::Virtio, "virtio-blk")?;
    disk("systems/diskbench-ata.toml", DiskBus::Ide, "ata, programmed I/O")?;
    let images = image_builder::build(&BuildOptions {
        release: true,
        ..BuildOptions::default()
    })
    .map_err(|error| error.to_string())?;
    println!("boot time under QEMU TCG, release build, {RUNS} runs each (wall clock from QEMU start)");
    println!("{:<6} {:>22} {:>22}", "", "to first ring-3 line", "to the shell prompt");
    println!(
        "{:<6} {:>10} {:>11} {:>10} {:>11}",
        "", "min", "median", "min", "median"
    );
    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let mut first_line = Vec::new();
        let mut to_shell = Vec::new();
        for _ in 0..RUNS {
            let (first, ready) = boot_once(&images, firmware)?;
            first_line.push(first);
            to_shell.push(ready);
        }
        let (first_min, first_median) = summary(&mut first_line);
        let (total_min, total_median) = summary(&mut to_shell);
        println!(
            "{:<6} {:>9.2}s {:>10.2}s {:>9.2}s {:>10.2}s",
            format!("{firmware:?}"),
            first_min,
            first_median,
            total_min,
            total_median
        );
    }
    Ok(())
}

/// Boots the ipcbench image (release) and prints its table.
fn ipc() -> Result<(), String> {
    let options = BuildOptions {
        release: true,
        system: Some(String::from("systems/ipcbench.toml")),
        // The test-only in-kernel CPUID path, to compare the VMM's with.
        features: vec![String::from("kernel/kernel-cpuid-exits")],
        ..BuildOptions::default()
    };
    let images = image_builder::build(&options).map_err(|error| error.to_string())?;
    let mut command = qemu::command(&images.bios, Firmware::Bios, None, false).map_err(|error| error.to_string())?;
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot start QEMU: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let table: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("ipcbench: "))
        .collect();
    if table.is_empty() || qemu::outcome(output.status) != Some(abi::debug_exit::Outcome::Success) {
        return Err(format!("ipcbench did not finish cleanly ({}):\n{text}", output.status));
    }
    println!("IPC under QEMU TCG, release build");
    for line in table {
        println!("  {line}");
    }
    println!();
    Ok(())
}

/// Boots the diskbench image of `system` (release) with a fresh scratch
/// disk on `bus` and prints sequential throughput through the block driver
/// (`driver` names it in the table's title) alone and through the
/// filesystem server.
fn disk(system: &str, bus: DiskBus, driver: &str) -> Result<(), String> {
    let options = BuildOptions {
        release: true,
        system: Some(String::from(system)),
        ..BuildOptions::default()
    };
    let images = image_builder::build(&options).map_err(|error| error.to_string())?;
    let disk = workspace_root().join(BENCH_DISK);
    data_disk::create(&disk, BENCH_DISK_MIB, BENCH_FILESYSTEM_MIB, None).map_err(|error| error.to_string())?;
    let mut command = qemu::command(&images.bios, Firmware::Bios, Some(qemu::DataDisk { path: &disk, bus }), false)
        .map_err(|error| error.to_string())?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start QEMU: {error}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DISK_TIMEOUT;
    let mut lines = Vec::new();
    let failure = loop {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let line = line.trim_end().to_string();
                let error = line.starts_with("diskbench: error");
                lines.push(line);
                if error {
                    break Some("diskbench reported an error");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => break Some("diskbench did not finish in time"),
        }
    };
    if failure.is_some() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|error| format!("waiting for QEMU: {error}"))?;
    let text = lines.join("\n");
    let failure = failure.or_else(|| {
        (qemu::outcome(status) != Some(abi::debug_exit::Outcome::Success))
            .then_some("the diskbench image did not power off cleanly")
    });
    if let Some(reason) = failure {
        return Err(format!("{reason} ({status}):\n{text}"));
    }
    let figure = |name: &str| -> Result<f64, String> {
        let prefix = format!("diskbench: {name} ");
        lines
            .iter()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .ok_or_else(|| format!("diskbench printed no '{name}' figure:\n{text}"))
    };
    let setup = lines
        .iter()
        .find_map(|line| {
            line.strip_prefix("diskbench: ")
                .filter(|rest| rest.contains("per pass"))
        })
        .unwrap_or("sequential passes");
    println!("sequential disk throughput, {setup}; release build, QEMU TCG ({driver})");
    println!("{:<6} {:>12} {:>12} {:>10}", "", "raw driver", "through fs", "fs / raw");
    for operation in ["write", "read"] {
        let raw = figure(&format!("raw {operation}"))?;
        let fs = figure(&format!("fs {operation}"))?;
        println!(
            "{operation:<6} {:>6.1} MiB/s {:>6.1} MiB/s {:>8.0} %",
            raw,
            fs,
            fs / raw * 100.0
        );
    }
    println!();
    Ok(())
}

/// Boots once; returns seconds to init's first line and to the shell's
/// prompt, then powers the system off through the shell.
fn boot_once(images: &Images, firmware: Firmware) -> Result<(f64, f64), String> {
    let image = if firmware == Firmware::Uefi {
        &images.uefi
    } else {
        &images.bios
    };
    let mut command = qemu::command(image, firmware, None, false).map_err(|error| error.to_string())?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start QEMU: {error}"))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    let mut first_line = None;
    let mut ready = None;
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line.map_err(|error| format!("reading QEMU's output: {error}"))?;
        if first_line.is_none() && line.contains(FIRST_USER_LINE) {
            first_line = Some(start.elapsed());
        }
        if ready.is_none() && line.contains(SHELL_READY) {
            ready = Some(start.elapsed());
            input
                .write_all(b"poweroff\n")
                .map_err(|error| format!("typing into QEMU: {error}"))?;
        }
    }
    let status = child.wait().map_err(|error| format!("waiting for QEMU: {error}"))?;
    match (first_line, ready, qemu::outcome(status)) {
        (Some(first), Some(ready), Some(abi::debug_exit::Outcome::Success)) => {
            Ok((first.as_secs_f64(), ready.as_secs_f64()))
        }
        _ => Err(format!(
            "{firmware:?} boot did not reach the shell and a clean stop ({status})"
        )),
    }
}

/// Minimum and median, in seconds.
fn summary(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[samples.len() / 2])
}
