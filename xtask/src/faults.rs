//! `cargo xtask faults`: a fault campaign of any length. Boots the
//! campaign image (systems/faults.toml, release build) on a fresh disk,
//! shows a progress bar, prints the report, saves its JSON line and the
//! console transcript, and checks the disk with `e2fsck`.

use image_builder::qemu::{self, DataDisk, Firmware};
use image_builder::{BuildOptions, data_disk, workspace_root};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The campaign's disk, relative to the workspace root.
const DISK: &str = "target/disks/faults.img";
const DISK_MIB: u64 = 64;
/// Where the JSON report goes, relative to the workspace root.
const JSON: &str = "target/faults.json";
/// Where the whole console transcript goes.
const TRANSCRIPT: &str = "target/faults.log";
/// The longest a campaign may run per fault, on top of booting.
const PER_FAULT: Duration = Duration::from_secs(10);
const BOOT: Duration = Duration::from_secs(120);

/// Runs `count` faults from `seed`; fails if data was lost, the system did
/// not end cleanly, or the disk is not clean.
pub fn run(count: u32, seed: u64) -> Result<(), String> {
    qemu::check_tools(Firmware::Bios).map_err(|error| error.to_string())?;
    data_disk::check_tools().map_err(|error| error.to_string())?;
    let images = image_builder::build(&BuildOptions {
        release: true,
        system: Some(String::from("systems/faults.toml")),
        ..BuildOptions::default()
    })
    .map_err(|error| error.to_string())?;
    let root = workspace_root();
    let disk = root.join(DISK);
    data_disk::create(&disk, DISK_MIB, DISK_MIB, None).map_err(|error| error.to_string())?;
    let mut child = qemu::command(&images.bios, Firmware::Bios, Some(DataDisk::virtio(&disk)), false)
        .map_err(|error| error.to_string())?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("cannot start QEMU: {error}"))?;
    let mut input = child.stdin.take().ok_or("no QEMU input")?;
    let output = child.stdout.take().ok_or("no QEMU output")?;
    let deadline = Instant::now() + BOOT + PER_FAULT * count;
    // QEMU is killed if the campaign runs past its time.
    let watchdog_pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let _ = std::process::Command::new("kill")
            .arg(watchdog_pid.to_string())
            .status();
    });
    let transcript_path = root.join(TRANSCRIPT);
    let mut transcript =
        std::fs::File::create(&transcript_path).map_err(|error| format!("{}: {error}", transcript_path.display()))?;
    let mut report = Vec::new();
    let mut json = None;
    let mut mismatches = None;
    for line in BufReader::new(output).split(b'\n') {
        let line = line.map_err(|error| error.to_string())?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        writeln!(transcript, "{line}").map_err(|error| error.to_string())?;
        if line.contains("faultinj: ready") {
            writeln!(input, "{count} {seed}").map_err(|error| error.to_string())?;
        } else if let Some(progress) = line.strip_prefix("faultinj: progress ") {
            show_progress(progress);
        } else if let Some(found) = line.strip_prefix("faultinj-json: ") {
            json = Some(String::from(found));
        } else if line.starts_with("faultinj:") {
            if let Some(figure) = line.strip_prefix("faultinj: data mismatches: ") {
                mismatches = figure.trim().parse::<u64>().ok();
            }
            report.push(String::from(line));
        }
    }
    let status = child.wait().map_err(|error| error.to_string())?;
    eprintln!();
    for line in &report {
        println!("{line}");
    }
    let outcome = qemu::outcome(status);
    let json = json.ok_or("the campaign printed no report (see above)")?;
    let json_path = root.join(JSON);
    std::fs::write(&json_path, format!("{json}\n")).map_err(|error| error.to_string())?;
    println!(
        "JSON report: {}; console transcript: {}",
        json_path.display(),
        transcript_path.display()
    );
    let (clean, fsck) = data_disk::check(&disk).map_err(|error| error.to_string())?;
    println!(
        "e2fsck -fn {}: {}",
        Path::new(DISK).display(),
        if clean { "clean" } else { "NOT clean" }
    );
    if !clean {
        println!("{fsck}");
    }
    match (outcome, mismatches, clean) {
        (Some(abi::debug_exit::Outcome::Success), Some(0), true) => Ok(()),
        (outcome, mismatches, clean) => Err(format!(
            "the campaign failed: outcome {outcome:?}, data mismatches {mismatches:?}, disk clean {clean}"
        )),
    }
}

/// Draws "K/N" as a bar on the terminal's error stream.
fn show_progress(progress: &str) {
    let Some((done, total)) = progress.split_once('/') else {
        return;
    };
    let (Ok(done), Ok(total)) = (done.trim().parse::<u64>(), total.trim().parse::<u64>()) else {
        return;
    };
    const WIDTH: u64 = 40;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0) as usize;
    eprint!(
        "\r[{}{}] {done}/{total} faults",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled)
    );
    let _ = std::io::stderr().flush();
}
