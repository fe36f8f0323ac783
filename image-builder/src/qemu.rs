//! Starting an image in QEMU: the machine every run and test uses.
//!
//! TCG, one CPU, 512 MiB, `-cpu qemu64,+svm,+npt` (AMD-V with nested
//! paging, for the VMM), the serial console on standard input and output,
//! and the `isa-debug-exit` device through which the kernel reports how the
//! run ended (see `abi::debug_exit`).

use crate::Error;
use abi::debug_exit::{Outcome, PORT};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which firmware boots the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF, from Debian's `ovmf` package.
    Uefi,
}

/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";
/// Debian's single-file OVMF build.
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join(program))
            .find(|path| path.is_file())
    })
}

/// Checks that QEMU (and OVMF for UEFI) are installed.
///
/// # Errors
/// [`Error::MissingTool`] naming the Debian package to install.
pub fn check_tools(firmware: Firmware) -> Result<(), Error> {
    if find_in_path(QEMU).is_none() {
        return Err(Error::MissingTool(format!(
            "{QEMU} not found: install it with `sudo apt-get install qemu-system-x86`"
        )));
    }
    if firmware == Firmware::Uefi && !Path::new(OVMF).is_file() {
        return Err(Error::MissingTool(format!(
            "{OVMF} not found: install it with `sudo apt-get install ovmf`"
        )));
    }
    Ok(())
}

/// How the data disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskBus {
    /// A virtio block device on PCI (for `servers/virtio-blk`).
    Virtio,
    /// The master of the secondary IDE channel (for `servers/ata`).
    Ide,
}

/// The data disk: a raw image, written in place.
#[derive(Clone, Copy, Debug)]
pub struct DataDisk<'a> {
    /// The image.
    pub path: &'a Path,
    /// How it is attached.
    pub bus: DiskBus,
}

impl<'a> DataDisk<'a> {
    /// The image at `path` as a virtio disk, as `cargo xtask run` attaches it.
    pub fn virtio(path: &'a Path) -> Self {
        Self {
            path,
            bus: DiskBus::Virtio,
        }
    }
}

/// The QEMU command that boots `image`, with `disk` as the data disk;
/// `gdb` makes QEMU wait for a debugger on TCP port 1234. Standard streams
/// are left to the caller.
///
/// # Errors
/// [`Error::MissingTool`] if QEMU or OVMF is not installed.
pub fn command(image: &Path, firmware: Firmware, disk: Option<DataDisk>, gdb: bool) -> Result<Command, Error> {
    check_tools(firmware)?;
    let mut command = Command::new(QEMU);
    command
        .args(["-accel", "tcg", "-smp", "1", "-m", "512", "-cpu", "qemu64,+svm,+npt"])
        // Nothing writes the disk; `snapshot` lets several QEMUs (parallel
        // tests) boot one image without fighting over its lock.
        .arg("-drive")
        .arg(format!("format=raw,snapshot=on,file={}", image.display()))
        .args(["-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-device", &format!("isa-debug-exit,iobase={PORT:#x},iosize=0x04")]);
    if let Some(disk) = disk {
        command
            .arg("-drive")
            .arg(format!("if=none,id=data,format=raw,file={}", disk.path.display()));
        command.args(match disk.bus {
            DiskBus::Virtio => ["-device", "virtio-blk-pci,drive=data"],
            DiskBus::Ide => ["-device", "ide-hd,drive=data,bus=ide.1,unit=0"],
        });
    }
    if firmware == Firmware::Uefi {
        command.args(["-bios", OVMF]);
    }
    if gdb {
        command.args(["-s", "-S"]);
    }
    Ok(command)
}

/// How a QEMU exit status reads: the kernel's outcome, if it reported one.
pub fn outcome(status: std::process::ExitStatus) -> Option<Outcome> {
    status.code().and_then(Outcome::from_qemu_status)
}
