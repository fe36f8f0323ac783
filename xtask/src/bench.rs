//! `cargo xtask bench`: boots the release image and prints how long each
//! stage takes. Figures, not pass/fail: compare them across changes.

use image_builder::qemu::{self, Firmware};
use image_builder::{BuildOptions, Images};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Instant;

/// The line that marks the first code running in ring 3.
const FIRST_USER_LINE: &str = "init: running in ring 3";
/// The line the shell prints when it is ready for commands.
const SHELL_READY: &str = "shell: type 'help'";
const RUNS: usize = 5;

/// Prints the IPC table, then times boots on both firmwares.
pub fn run() -> Result<(), String> {
    ipc()?;
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
