//! A writer for the "newc" cpio format, the format of a Linux initramfs.
//!
//! Each entry is a 110-byte ASCII header (the magic `070701`, then 13
//! fields of 8 hex digits), the path and a NUL padded to a multiple of 4
//! bytes, then the contents padded the same way; an entry named
//! `TRAILER!!!` ends the archive (the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//! The kernel creates entries in archive order and does not make missing
//! parent directories, so this writer adds each parent before its first
//! child. Entries belong to root and carry time 0, so the same inputs give
//! the same archive.

use std::collections::BTreeSet;

/// The file-type bits of `st_mode`.
const TYPE_DIRECTORY: u32 = 0o040_000;
const TYPE_REGULAR: u32 = 0o100_000;
const TYPE_SYMLINK: u32 = 0o120_000;
const TYPE_CHARACTER_DEVICE: u32 = 0o020_000;
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// An archive being written in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    /// The inode number of the last entry; each entry gets its own.
    last_inode: u32,
    directories: BTreeSet<String>,
}

/// The fields of one header that differ between entries.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    links: u32,
    size: u32,
    device: (u32, u32),
}

impl Archive {
    /// Adds a directory with permissions `permissions` (e.g. `0o755`).
    /// Paths are relative to the archive's root; a leading `/` is ignored.
    pub fn directory(&mut self, path: &str, permissions: u32) {
        let path = path.trim_matches('/');
        self.parents(path);
        if self.directories.insert(path.to_string()) {
            self.entry(&Header {
                name: path,
                mode: TYPE_DIRECTORY | permissions,
                links: 2,
                size: 0,
                device: (0, 0),
            });
        }
    }

    /// Adds a regular file.
    ///
    /// # Errors
    /// If `contents` is 4 GiB or more, which the format cannot record; the
    /// message names the path.
    pub fn file(&mut self, path: &str, permissions: u32, contents: &[u8]) -> Result<(), String> {
        let size = u32::try_from(contents.len())
            .map_err(|_| format!("{path}: too large for a cpio archive (4 GiB or more)"))?;
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.entry(&Header {
            name: path,
            mode: TYPE_REGULAR | permissions,
            links: 1,
            size,
            device: (0, 0),
        });
        self.data(contents);
        Ok(())
    }

    /// Adds a symbolic link at `path` that points to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.entry(&Header {
            name: path,
            mode: TYPE_SYMLINK | 0o777,
            links: 1,
            // A target is a path, far below 4 GiB.
            size: u32::try_from(target.len()).unwrap_or(u32::MAX),
            device: (0, 0),
        });
        self.data(target.as_bytes());
    }

    /// Adds a character device node with number `major`:`minor`.
    pub fn character_device(&mut self, path: &str, permissions: u32, major: u32, minor: u32) {
        let path = path.trim_start_matches('/');
        self.parents(path);
        self.entry(&Header {
            name: path,
            mode: TYPE_CHARACTER_DEVICE | permissions,
            links: 1,
            size: 0,
            device: (major, minor),
        });
    }

    /// Ends the archive with its trailer and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.last_inode = 0;
        self.entry(&Header {
            name: TRAILER,
            mode: 0,
            links: 1,
            size: 0,
            device: (0, 0),
        });
        self.bytes
    }

    /// Adds, with permissions 0755, each directory above `path` not yet in
    /// the archive.
    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            let parent = &path[..end];
            if !self.directories.contains(parent) {
                self.directory(parent, 0o755);
            }
            end += 1;
        }
    }

    /// Writes a header and the name, padded.
    fn entry(&mut self, header: &Header) {
        let inode = if header.name == TRAILER {
            0
        } else {
            self.last_inode += 1;
            self.last_inode
        };
        // The name's length counts its NUL.
        let name_size = u32::try_from(header.name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            inode,
            header.mode,
            0, // uid
            0, // gid
            header.links,
            0, // mtime
            header.size,
            0, // major and minor of the device holding the file
            0,
            header.device.0,
            header.device.1,
            name_size,
            0, // checksum, used only by the "070702" variant
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(header.name.as_bytes());
        self.bytes.push(0);
        self.pad();
    }

    /// Writes an entry's contents, padded.
    fn data(&mut self, contents: &[u8]) {
        self.bytes.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back from an archive.
    #[derive(Debug)]
    struct Entry {
        name: String,
        inode: u32,
        mode: u32,
        links: u32,
        device: (u32, u32),
        contents: Vec<u8>,
    }

    fn field(bytes: &[u8], at: usize, index: usize) -> u32 {
        let start = at + 6 + index * 8;
        let text = std::str::from_utf8(&bytes[start..start + 8]).expect("header fields are ASCII");
        u32::from_str_radix(text, 16).expect("header fields are hex")
    }

    /// Parses an archive as the kernel does, checking the magic and that
    /// every header and every contents start 4-byte aligned.
    fn parse(bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "header at {at} is not aligned");
            assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
            let name_size = field(bytes, at, 11) as usize;
            let size = field(bytes, at, 6) as usize;
            let name_start = at + 110;
            assert_eq!(bytes[name_start + name_size - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(bytes[name_start..name_start + name_size - 1].to_vec()).expect("UTF-8 name");
            let contents_start = (name_start + name_size).next_multiple_of(4);
            assert!(
                bytes[name_start + name_size..contents_start]
                    .iter()
                    .all(|&byte| byte == 0),
                "padding after the name of {name} is zeros"
            );
            let contents = bytes[contents_start..contents_start + size].to_vec();
            entries.push(Entry {
                name: name.clone(),
                inode: field(bytes, at, 0),
                mode: field(bytes, at, 1),
                links: field(bytes, at, 4),
                device: (field(bytes, at, 9), field(bytes, at, 10)),
                contents,
            });
            at = (contents_start + size).next_multiple_of(4);
            if name == TRAILER {
                assert_eq!(at, bytes.len(), "nothing follows the trailer but padding");
                return entries;
            }
        }
    }

    fn sample() -> Vec<u8> {
        let mut archive = Archive::default();
        archive.directory("/dev", 0o755);
        archive.character_device("/dev/console", 0o600, 5, 1);
        archive
            .file("/init", 0o755, b"#!/bin/sh\necho hi\n")
            .expect("small file");
        archive
            .file("bin/busybox", 0o755, &[0x7f, b'E', b'L', b'F', 1])
            .expect("small file");
        archive.symlink("bin/sh", "busybox");
        archive
            .file("lib/modules/6.1/kernel/a.ko", 0o644, b"")
            .expect("empty file");
        archive.finish()
    }

    #[test]
    fn entries_read_back_with_their_names_modes_and_contents() {
        let entries = parse(&sample());
        let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "bin",
                "bin/busybox",
                "bin/sh",
                "lib",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/a.ko",
                TRAILER,
            ]
        );
        let find = |name: &str| entries.iter().find(|entry| entry.name == name).expect(name);
        assert_eq!(find("dev").mode, 0o040_755);
        assert_eq!(find("dev").links, 2);
        assert_eq!(find("dev/console").mode, 0o020_600);
        assert_eq!(find("dev/console").device, (5, 1));
        assert_eq!(find("init").mode, 0o100_755);
        assert_eq!(find("init").contents, b"#!/bin/sh\necho hi\n");
        // Five bytes of contents: the next header must still be aligned,
        // which `parse` checks.
        assert_eq!(find("bin/busybox").contents, [0x7f, b'E', b'L', b'F', 1]);
        assert_eq!(find("bin/sh").mode, 0o120_777);
        assert_eq!(find("bin/sh").contents, b"busybox");
        assert_eq!(find("lib/modules/6.1").mode, 0o040_755);
        assert!(find("lib/modules/6.1/kernel/a.ko").contents.is_empty());
    }

    #[test]
    fn every_entry_has_its_own_inode_and_the_trailer_none() {
        let entries = parse(&sample());
        let (trailer, rest) = entries.split_last().expect("entries");
        assert_eq!(trailer.name, TRAILER);
        assert_eq!((trailer.inode, trailer.mode, trailer.contents.len()), (0, 0, 0));
        let inodes: BTreeSet<u32> = rest.iter().map(|entry| entry.inode).collect();
        assert_eq!(inodes.len(), rest.len());
        assert!(!inodes.contains(&0));
    }

    #[test]
    fn a_directory_is_written_once() {
        let mut archive = Archive::default();
        archive.directory("bin", 0o755);
        archive.directory("/bin/", 0o700);
        archive.symlink("bin/sh", "busybox");
        let entries = parse(&archive.finish());
        assert_eq!(entries.iter().filter(|entry| entry.name == "bin").count(), 1);
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn an_empty_archive_is_only_the_trailer() {
        let bytes = Archive::default().finish();
        // 110 bytes of header, 11 of name with its NUL, padded to 124.
        assert_eq!(bytes.len(), 124);
        assert_eq!(parse(&bytes).len(), 1);
    }

    #[test]
    fn the_host_cpio_lists_what_was_written() {
        // Only where GNU cpio is installed; `parse` above checks the same
        // properties without it.
        let directory = std::env::temp_dir().join(format!("xtask-cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("temporary directory");
        let path = directory.join("sample.cpio");
        std::fs::write(&path, sample()).expect("write the archive");
        let listing = std::process::Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&path)
            .output();
        std::fs::remove_dir_all(&directory).expect("remove the temporary directory");
        let Ok(listing) = listing else {
            eprintln!("cpio is not installed; skipped");
            return;
        };
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(names.len(), 11);
        assert!(names.contains(&String::from("lib/modules/6.1/kernel/a.ko")));
    }
}
