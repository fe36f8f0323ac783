//! Starting an image in Bochs, which emulates VT-x (and machines without
//! virtio): the same BIOS image as QEMU boots, a data disk on the
//! secondary IDE channel, and the serial console on a TCP socket.
//!
//! Bochs needs Debian's `bochs`, `bochs-x`, `bochsbios`, `vgabios` and
//! `xvfb`: the bootloader's graphics mode works only with the X display,
//! which runs under `xvfb-run`. Bochs ends when the kernel writes to its
//! shutdown port; it ignores SIGTERM, so a harness stops it with SIGKILL.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";
/// Bochs takes disks of whole cylinders: 16 heads of 63 sectors.
const CYLINDER: u64 = 16 * 63 * 512;

/// Checks that Bochs, its BIOS images and `xvfb-run` are installed.
///
/// # Errors
/// [`Error::MissingTool`] naming the packages to install.
pub fn check_tools() -> Result<(), Error> {
    let found = ["/usr/bin/bochs", "/usr/bin/xvfb-run", BIOS, VGA_BIOS]
        .iter()
        .all(|path| Path::new(path).is_file());
    if found {
        Ok(())
    } else {
        Err(Error::MissingTool(String::from(
            "Bochs not found: install it with `sudo apt-get install bochs bochs-x bochsbios vgabios xvfb`",
        )))
    }
}

/// Removes the lock file Bochs keeps beside a disk image while it runs: a
/// Bochs stopped with SIGKILL leaves it behind, and the next refuses the
/// image ("image locked").
fn unlock(path: &Path) -> Result<(), Error> {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    match std::fs::remove_file(&lock) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::Io(lock, error)),
        _ => Ok(()),
    }
}

/// Pads `path` to whole cylinders (Bochs refuses other sizes).
fn pad(path: &Path) -> Result<(), Error> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| Error::Io(path.to_path_buf(), error))?;
    let length = file
        .metadata()
        .map_err(|error| Error::Io(path.to_path_buf(), error))?
        .len();
    file.set_len(length.div_ceil(CYLINDER) * CYLINDER)
        .map_err(|error| Error::Io(path.to_path_buf(), error))
}

/// The command that boots a copy of `image` (made in `directory`, padded)
/// with `disk` (padded in place) as the master of the secondary IDE
/// channel and COM1 served on TCP `port` of localhost (Bochs waits for the
/// connection before it starts). Stale lock files of both images are
/// removed: the caller runs one Bochs per disk.
///
/// # Errors
/// [`Error::MissingTool`] without Bochs; [`Error::Io`] if the files cannot
/// be written.
pub fn command(image: &Path, disk: &Path, port: u16, directory: &Path) -> Result<Command, Error> {
    check_tools()?;
    std::fs::create_dir_all(directory).map_err(|error| Error::Io(directory.to_path_buf(), error))?;
    let boot = directory.join("boot.img");
    std::fs::copy(image, &boot).map_err(|error| Error::Io(boot.clone(), error))?;
    pad(&boot)?;
    pad(disk)?;
    unlock(&boot)?;
    unlock(disk)?;
    let configuration = format!(
        "megs: 512
cpu: model=corei7_haswell_4770, count=1, ips=200000000
romimage: file={BIOS}
vgaromimage: file={VGA_BIOS}
display_library: x
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=disk, path={boot}, mode=flat
ata1: enabled=1, ioaddr1=0x170, ioaddr2=0x370, irq=15
ata1-master: type=disk, path={disk}, mode=flat
boot: disk
com1: enabled=1, mode=socket-server, dev=localhost:{port}
log: {log}
panic: action=fatal
error: action=report
info: action=ignore
clock: sync=none, time0=local
",
        boot = boot.display(),
        disk = disk.display(),
        log = directory.join("bochs.log").display(),
    );
    let bochsrc = directory.join("bochsrc");
    std::fs::write(&bochsrc, configuration).map_err(|error| Error::Io(bochsrc.clone(), error))?;
    // The debugger build of Bochs stops at the first instruction: `c` goes on.
    let commands: PathBuf = directory.join("commands");
    std::fs::write(&commands, "c\n").map_err(|error| Error::Io(commands.clone(), error))?;
    let mut command = Command::new("xvfb-run");
    command
        .args(["-a", "bochs", "-q", "-f"])
        .arg(&bochsrc)
        .arg("-rc")
        .arg(&commands);
    Ok(command)
}
