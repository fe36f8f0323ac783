//! The data disk: an ext2 image made by the host's `mke2fs`, which QEMU
//! attaches as a virtio block device for the filesystem server, and which
//! the host's `e2fsck` checks afterwards.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of a disk made by [`create`] unless the caller says otherwise.
pub const DEFAULT_MIB: u64 = 64;
/// Block size of the filesystem. 4 KiB blocks put an indirect block in
/// the middle of file data every 4 MiB (1 KiB blocks: every 256 KiB), so
/// sequential transfers split less often.
const BLOCK_SIZE: &str = "4096";

/// Finds an e2fsprogs tool (Debian keeps them in `/sbin`, outside a user's
/// `PATH`).
fn tool(name: &str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::MissingTool(format!(
                "{name} not found: install it with `sudo apt-get install e2fsprogs`"
            ))
        })
}

/// Checks that `mke2fs` and `e2fsck` are installed.
///
/// # Errors
/// [`Error::MissingTool`] naming the package to install.
pub fn check_tools() -> Result<(), Error> {
    tool("mke2fs").and(tool("e2fsck")).map(drop)
}

/// Writes a fresh ext2 filesystem of `mib` MiB to `path` (replacing it);
/// the filesystem takes `filesystem_mib` of it (the rest, if any, is left
/// for raw-disk benchmarks). With `contents`, the filesystem starts with a
/// copy of that directory's tree (guest images, say).
///
/// # Errors
/// [`Error::MissingTool`] without e2fsprogs; [`Error::Build`] if it fails.
pub fn create(path: &Path, mib: u64, filesystem_mib: u64, contents: Option<&Path>) -> Result<(), Error> {
    let mke2fs = tool("mke2fs")?;
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory).map_err(|error| Error::Io(directory.to_path_buf(), error))?;
    }
    let file = std::fs::File::create(path).map_err(|error| Error::Io(path.to_path_buf(), error))?;
    file.set_len(mib << 20)
        .map_err(|error| Error::Io(path.to_path_buf(), error))?;
    let output = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-b", BLOCK_SIZE, "-L", "data"])
        .args(
            contents
                .map(|directory| [std::ffi::OsStr::new("-d"), directory.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .arg(path)
        .arg(format!("{}k", filesystem_mib.min(mib) << 10))
        .output()
        .map_err(|error| Error::Build(format!("cannot run mke2fs: {error}")))?;
    if !output.status.success() {
        return Err(Error::Build(format!(
            "mke2fs failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// Where `cargo xtask guest-linux` writes the Linux guest.
pub fn linux_guest_directory() -> PathBuf {
    crate::workspace_root().join("target/guest-linux")
}

/// The Linux guest's files as a data disk holds them, each with the file in
/// [`linux_guest_directory`] it is a copy of: the paths the shell's
/// `vm start linux` boots.
pub fn linux_guest_files() -> [(&'static str, PathBuf); 2] {
    let directory = linux_guest_directory();
    [
        ("vmlinuz", directory.join("vmlinuz")),
        ("initrd.img", directory.join("initramfs.cpio")),
    ]
}

/// Fills the directory `into` (emptied first) with a copy of the tree
/// `base` and the `extra` files, each a path relative to the disk's root
/// and the host file to copy: what [`create`] then puts on a disk.
///
/// # Errors
/// [`Error::Io`] if a file cannot be read or written.
pub fn assemble(base: &Path, extra: &[(&str, PathBuf)], into: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(into) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io(into.to_path_buf(), error)),
        _ => {}
    }
    copy_tree(base, into)?;
    for (path, from) in extra {
        let file = into.join(path);
        if let Some(directory) = file.parent() {
            std::fs::create_dir_all(directory).map_err(|error| Error::Io(directory.to_path_buf(), error))?;
        }
        std::fs::copy(from, &file).map_err(|error| Error::Io(from.clone(), error))?;
    }
    Ok(())
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|error| Error::Io(to.to_path_buf(), error))?;
    let entries = std::fs::read_dir(from).map_err(|error| Error::Io(from.to_path_buf(), error))?;
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|error| Error::Io(target.clone(), error))?;
        }
    }
    Ok(())
}

/// Runs `e2fsck -fn` on the image: returns whether it is clean, and what
/// e2fsck printed.
///
/// # Errors
/// [`Error::MissingTool`] without e2fsprogs, or if e2fsck cannot run.
pub fn check(path: &Path) -> Result<(bool, String), Error> {
    let output = Command::new(tool("e2fsck")?)
        .arg("-fn")
        .arg(path)
        .output()
        .map_err(|error| Error::Build(format!("cannot run e2fsck: {error}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}
