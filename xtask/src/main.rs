//! `cargo xtask`: build, boot and test the system with one command.
//!
//! ```text
//! cargo xtask run   [--uefi] [--release] [--gdb] [--disk PATH] [--system FILE]   build and boot in QEMU
//! cargo xtask image [--release]                    write the disk images
//! cargo xtask test                                 host unit tests + QEMU tests
//! cargo xtask bench                                IPC and boot-time figures
//! cargo xtask graph [DESCRIPTION]                  the system as SVG
//! cargo xtask guest-linux                          a Debian kernel and initramfs
//! ```

mod bench;
mod cpio;
mod faults;
mod graph;
mod guest_linux;

use abi::debug_exit::Outcome;
use image_builder::data_disk;
use image_builder::qemu::{self, Firmware};
use image_builder::{BuildOptions, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  run     build everything and boot it in QEMU, serial console on this terminal
            --uefi     boot through UEFI (default: BIOS)
            --release  optimised build
            --gdb      QEMU waits for a debugger on localhost:1234
            --disk PATH  the data disk: an ext2 image, kept after the run
                       (made with mke2fs if PATH does not exist); without
                       it a fresh disk is made at target/disks/scratch.img
            --system FILE  boot the system description FILE (a path from
                       the workspace root) instead of system.toml
  image   build everything and write the BIOS and UEFI images
            --release  optimised build
  test    run the host unit tests and the QEMU integration tests
  bench   print ipcbench's table and boot timings (release images)
  faults  a fault campaign (release image): injects faults into the drivers
          under a file workload, then checks every file and the disk
            --count N  faults to inject (default 1000)
            --seed S   the seed that picks targets and faults (default 1)
          prints the report; its JSON goes to target/faults.json
  graph   draw the system description (default system.toml) as SVG
  guest-linux  fetch Debian's kernel and busybox-static (apt-get download),
          write target/guest-linux/vmlinuz and initramfs.cpio";

fn main() -> ExitCode {
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let (disk, system) = match (run_value(&mut arguments, "--disk"), run_value(&mut arguments, "--system")) {
        (Ok(disk), Ok(system)) => (disk.map(std::path::PathBuf::from), system),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let Some((command, options)) = arguments.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let allowed: &[&str] = match command.as_str() {
        "run" => &["--uefi", "--release", "--gdb"],
        "image" => &["--release"],
        _ => &[],
    };
    if command == "faults" {
        return match faults_options(options).and_then(|(count, seed)| faults::run(count, seed)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if command == "graph" {
        return match graph::run(options.first().map_or("system.toml", String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if !matches!(command.as_str(), "run" | "image" | "test" | "bench" | "guest-linux") {
        eprintln!("unknown command '{command}'\n\n{USAGE}");
        return ExitCode::FAILURE;
    }
    if let Some(unknown) = options.iter().find(|option| !allowed.contains(&option.as_str())) {
        eprintln!("'{command}' takes no option '{unknown}'\n\n{USAGE}");
        return ExitCode::FAILURE;
    }
    let has = |flag: &str| options.iter().any(|option| option == flag);
    let build = BuildOptions {
        release: has("--release"),
        system,
        ..BuildOptions::default()
    };
    let result = match command.as_str() {
        "run" => run(
            &build,
            if has("--uefi") { Firmware::Uefi } else { Firmware::Bios },
            disk.as_deref(),
            has("--gdb"),
        ),
        "image" => image(&build),
        "bench" => bench::run().map(|()| ExitCode::SUCCESS),
        "guest-linux" => guest_linux::run().map(|()| ExitCode::SUCCESS),
        _ => test(),
    };
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    })
}

/// Takes `run`'s option `name` and its value out of `arguments`.
fn run_value(arguments: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let Some(index) = arguments.iter().position(|argument| argument == name) else {
        return Ok(None);
    };
    if arguments.first().is_none_or(|command| command != "run") {
        return Ok(None);
    }
    if index + 1 >= arguments.len() {
        return Err(format!("{name} needs a path"));
    }
    let value = arguments.remove(index + 1);
    arguments.remove(index);
    Ok(Some(value))
}

fn image(build: &BuildOptions) -> Result<ExitCode, String> {
    let images = image_builder::build(build).map_err(|error| error.to_string())?;
    println!("BIOS image: {}", images.bios.display());
    println!("UEFI image: {}", images.uefi.display());
    println!("kernel ELF: {}", images.kernel.display());
    Ok(ExitCode::SUCCESS)
}

fn run(build: &BuildOptions, firmware: Firmware, disk: Option<&Path>, gdb: bool) -> Result<ExitCode, String> {
    qemu::check_tools(firmware).map_err(|error| error.to_string())?;
    data_disk::check_tools().map_err(|error| error.to_string())?;
    let images = image_builder::build(build).map_err(|error| error.to_string())?;
    let contents = disk_contents(&images)?;
    let contents = Some(contents.as_path());
    let scratch = workspace_root().join("target/disks/scratch.img");
    let disk = match disk {
        Some(path) if path.exists() => path,
        Some(path) => {
            data_disk::create(path, data_disk::DEFAULT_MIB, data_disk::DEFAULT_MIB, contents)
                .map_err(|error| error.to_string())?;
            eprintln!("made an ext2 disk with the guest images at {}", path.display());
            path
        }
        None => {
            data_disk::create(&scratch, data_disk::DEFAULT_MIB, data_disk::DEFAULT_MIB, contents)
                .map_err(|error| error.to_string())?;
            &scratch
        }
    };
    let image = if firmware == Firmware::Uefi {
        &images.uefi
    } else {
        &images.bios
    };
    let mut command =
        qemu::command(image, firmware, Some(qemu::DataDisk::virtio(disk)), gdb).map_err(|error| error.to_string())?;
    if gdb {
        eprintln!(
            "QEMU waits for a debugger; in another terminal:\n  gdb {} -ex 'target remote localhost:1234'",
            images.kernel.display()
        );
    }
    let status = command
        .status()
        .map_err(|error| format!("cannot start QEMU: {error}"))?;
    Ok(match qemu::outcome(status) {
        Some(Outcome::Success) => ExitCode::SUCCESS,
        Some(Outcome::InitFailed) => {
            eprintln!("init failed (see the log above)");
            ExitCode::from(1)
        }
        Some(Outcome::KernelPanic) => {
            eprintln!("the kernel panicked (see the log above)");
            ExitCode::from(2)
        }
        None => {
            eprintln!("QEMU stopped without a report from the kernel ({status})");
            ExitCode::from(3)
        }
    })
}

/// What a new disk starts with: the guest images under /guests, and the
/// Linux guest as /vmlinuz and /initrd.img once `cargo xtask guest-linux`
/// has made it.
fn disk_contents(images: &image_builder::Images) -> Result<PathBuf, String> {
    let linux = data_disk::linux_guest_files();
    if !linux.iter().all(|(_, file)| file.is_file()) {
        return Ok(images.disk_contents.clone());
    }
    let contents = workspace_root().join("target/disks/run-contents");
    data_disk::assemble(&images.disk_contents, &linux, &contents).map_err(|error| error.to_string())?;
    Ok(contents)
}

fn test() -> Result<ExitCode, String> {
    for firmware in [Firmware::Bios, Firmware::Uefi] {
        qemu::check_tools(firmware).map_err(|error| error.to_string())?;
    }
    data_disk::check_tools().map_err(|error| error.to_string())?;
    image_builder::bochs::check_tools().map_err(|error| error.to_string())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    // Host unit tests, the protocol libraries of the servers (their binaries
    // build only for the bare-metal target), then the QEMU tests.
    let steps: [&[&str]; 3] = [
        &["test"],
        &[
            "test",
            "--lib",
            "--package",
            "pci",
            "--package",
            "ata",
            "--package",
            "vmm",
        ],
        &["test", "--package", "tests"],
    ];
    for step in steps {
        let status = Command::new(&cargo)
            .current_dir(workspace_root())
            .args(step)
            .status()
            .map_err(|error| format!("cannot run cargo: {error}"))?;
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--count N --seed S`, with their defaults.
fn faults_options(options: &[String]) -> Result<(u32, u64), String> {
    let (mut count, mut seed) = (1000, 1);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{option} needs a value\n\n{USAGE}"))?;
        let bad = || format!("{option} takes a number, not '{value}'");
        match option.as_str() {
            "--count" => count = value.parse().map_err(|_| bad())?,
            "--seed" => seed = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("'faults' takes no option '{option}'\n\n{USAGE}")),
        }
    }
    Ok((count, seed))
}
