//! A guest's virtio disk as a file in our filesystem: checked when the
//! guest is asked for, open while it runs, its sectors read and written
//! in place through the guest thread's filesystem connection.

use alloc::format;
use alloc::string::String;
use fs::{Files, Handle};
use vmm::devices::virtio::block::{Backing, SECTOR_BYTES};

/// Checks that `path` is a file of whole sectors, at least one, and
/// returns its size.
///
/// # Errors
/// Why it cannot be a disk.
pub fn check(files: &Files, path: &str) -> Result<u64, String> {
    let (handle, bytes) = files.open(path, false).map_err(|error| format!("{path}: {error}"))?;
    let _ = files.close(handle);
    if bytes == 0 || bytes % SECTOR_BYTES != 0 {
        return Err(format!(
            "{path} is {bytes} bytes: a disk is a whole number of {SECTOR_BYTES}-byte sectors, at least one"
        ));
    }
    Ok(bytes)
}

/// An open disk file.
pub struct DiskFile<'a> {
    files: &'a Files,
    handle: Handle,
    path: &'a str,
}

impl<'a> DiskFile<'a> {
    /// Opens `path` (checked by [`check`]) for the guest.
    ///
    /// # Errors
    /// Why it cannot be opened.
    pub fn open(files: &'a Files, path: &'a str) -> Result<Self, String> {
        let (handle, _) = files
            .open(path, false)
            .map_err(|error| format!("its disk {path}: {error}"))?;
        Ok(Self { files, handle, path })
    }

    /// Writes back what the filesystem caches of it and closes it.
    ///
    /// # Errors
    /// Why the filesystem could not.
    pub fn close(mut self) -> Result<(), String> {
        let synced = self.flush();
        let closed = self.files.close(self.handle).map_err(|error| format!("{}: {error}", self.path));
        synced.and(closed)
    }
}

impl Backing for DiskFile<'_> {
    fn read(&mut self, offset: u64, into: &mut [u8]) -> Result<(), String> {
        let count = self
            .files
            .read(self.handle, offset, into)
            .map_err(|error| format!("{}: {error}", self.path))?;
        if count < into.len() {
            return Err(format!("{} is shorter than when the guest started", self.path));
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, from: &[u8]) -> Result<(), String> {
        self.files
            .write(self.handle, offset, from)
            .map_err(|error| format!("{}: {error}", self.path))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.files.sync().map_err(|error| format!("{}: {error}", self.path))
    }
}
