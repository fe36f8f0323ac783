//! Host tests: images made by `mke2fs`, changed through the public API, and
//! checked by `e2fsck -fn` after every scenario.
//!
//! The tests need e2fsprogs; without it they fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

use crate::{BlockDevice, DeviceError, Error, Extent, FileKind, FileSystem, InodeNumber, SECTOR_SIZE};

/// A device in memory, which can be told to fail.
#[derive(Clone)]
struct MemoryDevice {
    bytes: Vec<u8>,
    failing: bool,
    reads: usize,
    writes: usize,
}

impl MemoryDevice {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            failing: false,
            reads: 0,
            writes: 0,
        }
    }

    fn range(&self, sector: u64, length: usize) -> Result<std::ops::Range<usize>, DeviceError> {
        assert_eq!(length % SECTOR_SIZE, 0, "transfers are whole sectors");
        if self.failing {
            return Err(DeviceError { code: 5 });
        }
        let start = usize::try_from(sector).unwrap() * SECTOR_SIZE;
        let end = start + length;
        if end > self.bytes.len() {
            return Err(DeviceError { code: 22 });
        }
        Ok(start..end)
    }
}

impl BlockDevice for MemoryDevice {
    fn sectors(&self) -> u64 {
        (self.bytes.len() / SECTOR_SIZE) as u64
    }

    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DeviceError> {
        let range = self.range(sector, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        self.reads += 1;
        Ok(())
    }

    fn write(&mut self, sector: u64, buffer: &[u8]) -> Result<(), DeviceError> {
        let range = self.range(sector, buffer.len())?;
        self.bytes[range].copy_from_slice(buffer);
        self.writes += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        if self.failing {
            Err(DeviceError { code: 5 })
        } else {
            Ok(())
        }
    }
}

/// The path of an e2fsprogs tool, from `PATH`, `/usr/sbin` or `/sbin`.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} not found in PATH, /usr/sbin or /sbin: install e2fsprogs"))
}

/// A temporary file path unique to this process and call.
fn temporary_path() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ext2-test-{}-{unique}.img", std::process::id()))
}

/// A fresh image of `kib` KiB made by `mke2fs -t ext2` with `options`.
fn make_image(options: &[&str], kib: u32) -> MemoryDevice {
    let path = temporary_path();
    let output = Command::new(tool("mke2fs"))
        .args(["-q", "-F", "-t", "ext2"])
        .args(options)
        .arg(&path)
        .arg(kib.to_string())
        .output()
        .expect("mke2fs runs");
    let bytes = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    MemoryDevice::new(bytes.expect("mke2fs wrote the image"))
}

/// 1 KiB blocks, none of the optional compatible features.
fn small_image(kib: u32, inodes: u32) -> MemoryDevice {
    let inodes = inodes.to_string();
    make_image(
        &["-b", "1024", "-O", "^resize_inode,^dir_index,^ext_attr", "-N", &inodes],
        kib,
    )
}

/// As [`small_image`], in groups of `blocks_per_group` blocks, with
/// 128-byte inodes.
fn grouped_image(kib: u32, inodes: u32, blocks_per_group: u32) -> MemoryDevice {
    let (inodes, blocks_per_group) = (inodes.to_string(), blocks_per_group.to_string());
    let options = [
        "-b",
        "1024",
        "-O",
        "^resize_inode,^dir_index,^ext_attr",
        "-N",
        &inodes,
        "-g",
        &blocks_per_group,
        "-I",
        "128",
    ];
    make_image(&options, kib)
}

fn run_fsck(path: &Path) -> (bool, String) {
    let output = Command::new(tool("e2fsck"))
        .arg("-fn")
        .arg(path)
        .output()
        .expect("e2fsck runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// Fails the test unless `e2fsck -fn` finds the image clean.
fn assert_clean(device: &MemoryDevice) {
    let path = temporary_path();
    std::fs::write(&path, &device.bytes).unwrap();
    let (clean, report) = run_fsck(&path);
    let _ = std::fs::remove_file(&path);
    assert!(clean, "e2fsck -fn found problems:\n{report}");
}

/// Syncs, checks the image with e2fsck and mounts it again.
fn sync_and_check(mut file_system: FileSystem<MemoryDevice>) -> FileSystem<MemoryDevice> {
    file_system.sync().unwrap();
    let device = file_system.into_device();
    assert_clean(&device);
    FileSystem::mount(device).unwrap()
}

fn mount(device: MemoryDevice) -> FileSystem<MemoryDevice> {
    let mut file_system = FileSystem::mount(device).unwrap();
    file_system.set_time(1_700_000_000);
    file_system
}

/// Deterministic bytes that differ between files and offsets.
fn pattern(length: usize, seed: u32) -> Vec<u8> {
    (0..length)
        .map(|index| {
            (index as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503)) as u8
                ^ (index >> 11) as u8
        })
        .collect()
}

fn read_all(file_system: &mut FileSystem<MemoryDevice>, inode: InodeNumber) -> Vec<u8> {
    let size = file_system.stat(inode).unwrap().size as usize;
    let mut buffer = vec![0xAA; size + 100];
    let read = file_system.read(inode, 0, &mut buffer).unwrap();
    assert_eq!(read, size);
    buffer.truncate(read);
    buffer
}

/// Writes `data` in uneven chunks.
fn write_in_chunks(file_system: &mut FileSystem<MemoryDevice>, inode: InodeNumber, data: &[u8], chunk: usize) {
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        assert_eq!(
            file_system.write(inode, offset as u64, &data[offset..end]).unwrap(),
            end - offset
        );
        offset = end;
    }
}

/// Fails unless every extent that carries on from the one before is only
/// separate because the one before is as long as allowed.
fn assert_merged(extents: &[Extent], max_extent: u64) {
    for pair in extents.windows(2) {
        let carries_on = match (pair[0], pair[1]) {
            (Extent::Zeros { offset, length }, Extent::Zeros { offset: next, .. }) => {
                (offset + length == next).then_some(length)
            }
            (
                Extent::Disk { offset, sector, length },
                Extent::Disk {
                    offset: next,
                    sector: next_sector,
                    ..
                },
            ) => (offset + length == next && sector + length / SECTOR_SIZE as u64 == next_sector).then_some(length),
            _ => None,
        };
        assert!(
            carries_on.is_none_or(|length| length == max_extent),
            "unmerged {pair:?}"
        );
    }
}

/// Maps `data.len()` bytes at `offset` with `map_write` and writes `data`
/// where they lie straight to the device, as the filesystem server's driver
/// does. Checks the extents' shape; returns the bytes placed.
fn map_write_by_hand(
    file_system: &mut FileSystem<MemoryDevice>,
    inode: InodeNumber,
    offset: u64,
    data: &[u8],
    max_extent: u64,
) -> Result<usize, Error> {
    let extents = file_system.map_write(inode, offset, data.len() as u64, max_extent)?;
    let mut covered = 0;
    assert_merged(&extents, max_extent);
    for extent in &extents {
        let &Extent::Disk { offset, sector, length } = extent else {
            panic!("map_write returned {extent:?}");
        };
        assert_eq!(offset, covered, "extents are in order and leave no gap");
        assert!(
            length > 0 && length <= max_extent,
            "{extent:?} with a limit of {max_extent}"
        );
        let range = offset as usize..(offset + length) as usize;
        file_system.device().write(sector, &data[range]).unwrap();
        covered += length;
    }
    Ok(covered as usize)
}

/// Reads `length` bytes at `offset` from where `map_read` says they lie,
/// straight from the device, as the filesystem server's driver does.
/// Checks the extents' shape and the clipping at the end of the file.
fn map_read_by_hand(
    file_system: &mut FileSystem<MemoryDevice>,
    inode: InodeNumber,
    offset: u64,
    length: u64,
    max_extent: u64,
) -> Vec<u8> {
    let extents = file_system.map_read(inode, offset, length, max_extent).unwrap();
    let size = file_system.stat(inode).unwrap().size;
    let expected = length.min(size.saturating_sub(offset)) as usize;
    // The last disk extent may be rounded up to a whole sector.
    let mut buffer = vec![0xAA; expected.next_multiple_of(SECTOR_SIZE)];
    let mut covered = 0;
    assert_merged(&extents, max_extent);
    for extent in &extents {
        let (offset, length) = match *extent {
            Extent::Zeros { offset, length } => {
                buffer[offset as usize..(offset + length) as usize].fill(0);
                (offset, length)
            }
            Extent::Disk { offset, sector, length } => {
                assert_eq!(length % SECTOR_SIZE as u64, 0, "{extent:?}");
                let range = offset as usize..(offset + length) as usize;
                file_system.device().read(sector, &mut buffer[range]).unwrap();
                (offset, length)
            }
        };
        assert_eq!(offset, covered, "extents are in order and leave no gap: {extents:?}");
        assert!(
            length > 0 && length <= max_extent,
            "{extent:?} with a limit of {max_extent}"
        );
        covered += length;
    }
    let covered = covered as usize;
    match extents.last() {
        Some(Extent::Disk { .. }) => assert_eq!(covered, buffer.len(), "{extents:?}"),
        _ => assert_eq!(covered, expected, "{extents:?}"),
    }
    buffer.truncate(expected);
    buffer
}

/// A small deterministic random number generator (xorshift64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit as u64) as usize
    }
}

fn names(file_system: &mut FileSystem<MemoryDevice>, path: &str) -> Vec<String> {
    let directory = file_system.lookup(path).unwrap();
    let mut names: Vec<String> = file_system
        .read_dir(directory)
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    names.sort();
    names
}

/// Writes through direct, single, double (and, sparsely, triple) indirect
/// blocks and reads everything back.
fn round_trip(device: MemoryDevice, block_size: usize) {
    let mut file_system = mount(device);
    let pointers = block_size / 4;
    let length = (12 + pointers + pointers + 40) * block_size + 123;
    let data = pattern(length, 1);
    let inode = file_system.create("/big").unwrap();
    write_in_chunks(&mut file_system, inode, &data, 7001);
    assert_eq!(read_all(&mut file_system, inode), data);
    // Uneven reads that straddle block and map boundaries.
    for &(offset, size) in &[
        (0, 1),
        (11 * block_size - 5, 10),
        ((12 + pointers) * block_size - 3, 9000),
        (length - 7, 100),
    ] {
        let mut buffer = vec![0; size];
        let read = file_system.read(inode, offset as u64, &mut buffer).unwrap();
        let expected = &data[offset..(offset + size).min(length)];
        assert_eq!(&buffer[..read], expected);
    }
    let data_blocks = length.div_ceil(block_size);
    let indirect = 1 + 1 + (data_blocks - 12 - pointers).div_ceil(pointers);
    let sectors_per_block = (block_size / 512) as u64;
    assert_eq!(
        file_system.stat(inode).unwrap().blocks,
        (data_blocks + indirect) as u64 * sectors_per_block
    );

    // A sparse file reaching into the triple indirect tree.
    let sparse = file_system.create("/sparse").unwrap();
    let far = ((12 + pointers + pointers * pointers + 5) * block_size) as u64;
    assert_eq!(file_system.write(sparse, far, b"far away").unwrap(), 8);
    let metadata = file_system.stat(sparse).unwrap();
    assert_eq!(metadata.size, far + 8);
    assert_eq!(metadata.blocks, 4 * sectors_per_block);
    let mut buffer = vec![0xFF; 64];
    assert_eq!(file_system.read(sparse, far - 56, &mut buffer).unwrap(), 64);
    assert!(buffer[..56].iter().all(|&byte| byte == 0));
    assert_eq!(&buffer[56..], b"far away");

    let mut file_system = sync_and_check(file_system);
    let inode = file_system.lookup("/big").unwrap();
    assert_eq!(read_all(&mut file_system, inode), data);
}

#[test]
fn round_trip_1k_blocks() {
    round_trip(grouped_image(4096, 128, 1024), 1024);
}

#[test]
fn round_trip_4k_blocks_default_features() {
    round_trip(make_image(&["-b", "4096", "-I", "256"], 32768), 4096);
}

#[test]
fn round_trip_2k_blocks_default_features() {
    round_trip(make_image(&["-b", "2048"], 8192), 2048);
}

#[test]
fn truncate_shrinks_and_grows() {
    let mut file_system = mount(small_image(2048, 64));
    let free_before = file_system.statfs().free_blocks;
    let inode = file_system.create("/file").unwrap();
    let data = pattern(300 * 1024 + 17, 2);
    write_in_chunks(&mut file_system, inode, &data, 65536);
    file_system.truncate(inode, 5000).unwrap();
    assert_eq!(file_system.stat(inode).unwrap().blocks, 5 * 2);
    assert_eq!(file_system.statfs().free_blocks, free_before - 5);
    assert_eq!(read_all(&mut file_system, inode), &data[..5000]);

    // Growing leaves a hole: the old tail and the new range read as zero.
    file_system.truncate(inode, 1 << 20).unwrap();
    let content = read_all(&mut file_system, inode);
    assert_eq!(content.len(), 1 << 20);
    assert_eq!(&content[..5000], &data[..5000]);
    assert!(content[5000..].iter().all(|&byte| byte == 0));
    assert_eq!(file_system.stat(inode).unwrap().blocks, 5 * 2);
    file_system.write(inode, 700_000, b"middle").unwrap();
    let mut file_system = sync_and_check(file_system);

    let inode = file_system.lookup("/file").unwrap();
    file_system.truncate(inode, 0).unwrap();
    assert_eq!(file_system.stat(inode).unwrap().blocks, 0);
    assert_eq!(file_system.statfs().free_blocks, free_before);
    assert!(matches!(
        file_system.truncate(InodeNumber::ROOT, 0),
        Err(Error::IsADirectory)
    ));
    sync_and_check(file_system);
}

#[test]
fn large_sparse_file_sets_large_file() {
    let device = make_image(&["-b", "1024", "-O", "^large_file"], 2048);
    let mut file_system = mount(device);
    let inode = file_system.create("/huge").unwrap();
    for offset in [3 << 30, 5 << 30] {
        assert_eq!(file_system.write(inode, offset, b"tail"), Ok(4));
    }
    assert_eq!(file_system.stat(inode).unwrap().size, (5 << 30) + 4);
    let mut buffer = [1; 8];
    assert_eq!(file_system.read(inode, (5 << 30) - 4, &mut buffer), Ok(8));
    assert_eq!(&buffer, b"\0\0\0\0tail");
    let past_map = 17 << 30;
    assert_eq!(file_system.write(inode, past_map, b"x"), Err(Error::FileTooLarge));
    assert_eq!(file_system.truncate(inode, past_map), Err(Error::FileTooLarge));
    let mut file_system = sync_and_check(file_system);
    let large_file = file_system.device.bytes[1024 + 100] & 0x2 != 0;
    assert!(large_file, "large_file was not set");
    let inode = file_system.lookup("/huge").unwrap();
    file_system.truncate(inode, 1000).unwrap();
    assert_eq!(file_system.stat(inode).unwrap().blocks, 0);
    sync_and_check(file_system);
}

#[test]
fn revision_0_without_file_types() {
    let mut file_system = mount(make_image(&["-r", "0", "-b", "1024"], 1024));
    file_system.mkdir("/dir").unwrap();
    let inode = file_system.create("/dir/file").unwrap();
    file_system.write(inode, 0, b"old format").unwrap();
    let directory = file_system.lookup("/dir").unwrap();
    let listing = file_system.read_dir(directory).unwrap();
    assert_eq!(listing[0].kind, FileKind::File);
    assert_eq!(file_system.truncate(inode, 3 << 30), Err(Error::FileTooLarge));
    sync_and_check(file_system);
}

/// A change to a directory clears its htree index flag.
#[test]
fn changed_directory_loses_index_flag() {
    let mut file_system = mount(small_image(1024, 64));
    let directory = file_system.mkdir("/dir").unwrap();
    file_system.sync().unwrap();
    let mut device = file_system.into_device();
    // One group: the inode table starts at the block in descriptor 0.
    let table = u32::from_le_bytes(device.bytes[2048 + 8..2048 + 12].try_into().unwrap()) as usize;
    let inode_size = u16::from_le_bytes([device.bytes[1024 + 88], device.bytes[1024 + 89]]) as usize;
    let flags = table * 1024 + (directory.0 as usize - 1) * inode_size + 32;
    device.bytes[flags + 1] |= 0x10;
    let mut file_system = mount(device);
    file_system.create("/dir/file").unwrap();
    file_system.sync().unwrap();
    assert_eq!(file_system.device.bytes[flags + 1] & 0x10, 0);
    sync_and_check(file_system);
}

#[test]
fn directories_nest_list_and_count_links() {
    let mut file_system = mount(small_image(2048, 128));
    let a = file_system.mkdir("/a").unwrap();
    let b = file_system.mkdir("/a/b").unwrap();
    file_system.mkdir("/a/b/c").unwrap();
    file_system.mkdir("/a/d").unwrap();
    let file = file_system.create("/a/b/file").unwrap();
    file_system.write(file, 0, b"hello").unwrap();
    assert_eq!(file_system.mkdir("/a/b"), Err(Error::AlreadyExists));
    assert_eq!(file_system.create("/a/b/file"), Err(Error::AlreadyExists));
    assert_eq!(file_system.lookup("/a/b/c/../file"), Ok(file));

    assert_eq!(names(&mut file_system, "/"), ["a", "lost+found"]);
    assert_eq!(names(&mut file_system, "/a"), ["b", "d"]);
    let listing = file_system.read_dir(b).unwrap();
    let kinds: Vec<(String, FileKind)> = listing.into_iter().map(|entry| (entry.name, entry.kind)).collect();
    assert!(kinds.contains(&("c".into(), FileKind::Directory)));
    assert!(kinds.contains(&("file".into(), FileKind::File)));

    let metadata = file_system.stat(a).unwrap();
    assert_eq!(
        (metadata.kind, metadata.links, metadata.permissions),
        (FileKind::Directory, 4, 0o755)
    );
    assert_eq!(metadata.size, 1024);
    let metadata = file_system.stat(file).unwrap();
    assert_eq!(
        (metadata.kind, metadata.links, metadata.permissions, metadata.size),
        (FileKind::File, 1, 0o644, 5)
    );
    assert_eq!(metadata.blocks, 2);
    assert_eq!(file_system.stat(InodeNumber::ROOT).unwrap().links, 4);
    assert_eq!(file_system.read_dir(file), Err(Error::NotADirectory));
    assert_eq!(file_system.read(a, 0, &mut [0; 4]), Err(Error::IsADirectory));
    assert_eq!(file_system.stat(InodeNumber(0)), Err(Error::NotFound));
    assert_eq!(file_system.stat(InodeNumber(100)), Err(Error::NotFound));
    sync_and_check(file_system);
}

#[test]
fn path_errors() {
    let mut file_system = mount(small_image(1024, 64));
    let file = file_system.create("/file").unwrap();
    assert_eq!(file_system.lookup("/"), Ok(InodeNumber::ROOT));
    assert_eq!(file_system.lookup("//file/"), Ok(file));
    assert_eq!(file_system.lookup("/missing"), Err(Error::NotFound));
    assert_eq!(file_system.create("/missing/file"), Err(Error::NotFound));
    assert_eq!(file_system.mkdir("/missing/dir"), Err(Error::NotFound));
    assert_eq!(file_system.create("/file/inner"), Err(Error::NotADirectory));
    assert_eq!(file_system.lookup("/file/inner"), Err(Error::NotADirectory));
    assert_eq!(
        file_system.create(&format!("/{}", "n".repeat(256))),
        Err(Error::NameTooLong)
    );
    assert_eq!(file_system.create("/.."), Err(Error::EscapesRoot));
    assert_eq!(file_system.lookup("/a/../../b"), Err(Error::EscapesRoot));
    assert_eq!(file_system.create("relative"), Err(Error::InvalidPath));
    assert_eq!(file_system.create("/nul\0"), Err(Error::InvalidPath));
    assert_eq!(file_system.create("/"), Err(Error::AlreadyExists));
    assert!(matches!(file_system.remove("/"), Err(Error::InvalidOperation(_))));
    let longest = format!("/{}", "n".repeat(255));
    let inode = file_system.create(&longest).unwrap();
    assert_eq!(file_system.lookup(&longest), Ok(inode));
    assert!(!Error::EscapesRoot.to_string().is_empty());
    sync_and_check(file_system);
}

#[test]
fn remove_files_and_directories() {
    let mut file_system = mount(small_image(2048, 64));
    let before = file_system.statfs();
    file_system.mkdir("/d").unwrap();
    file_system.mkdir("/d/e").unwrap();
    let file = file_system.create("/d/e/f").unwrap();
    write_in_chunks(&mut file_system, file, &pattern(400 * 1024, 3), 50_000);
    assert_eq!(file_system.remove("/d"), Err(Error::DirectoryNotEmpty));
    assert_eq!(file_system.remove("/d/e"), Err(Error::DirectoryNotEmpty));
    assert_eq!(file_system.remove("/d/x"), Err(Error::NotFound));
    file_system.remove("/d/e/f").unwrap();
    assert_eq!(file_system.stat(file), Err(Error::NotFound));
    assert_eq!(file_system.lookup("/d/e/f"), Err(Error::NotFound));
    file_system.remove("/d/e").unwrap();
    let directory = file_system.lookup("/d").unwrap();
    assert_eq!(file_system.stat(directory).unwrap().links, 2);
    let mut file_system = sync_and_check(file_system);
    file_system.remove("/d").unwrap();
    assert_eq!(file_system.statfs(), before);
    file_system.remove("/lost+found").unwrap();
    assert_eq!(file_system.stat(InodeNumber::ROOT).unwrap().links, 2);
    sync_and_check(file_system);
}

#[test]
fn rename_files_and_directories() {
    let mut file_system = mount(grouped_image(2048, 128, 512));
    let a = file_system.mkdir("/a").unwrap();
    let b = file_system.mkdir("/b").unwrap();
    let one = file_system.create("/a/one").unwrap();
    file_system.write(one, 0, &pattern(20_000, 4)).unwrap();
    let two = file_system.create("/b/two").unwrap();
    file_system.write(two, 0, &pattern(30_000, 5)).unwrap();

    // Within a directory, then across.
    file_system.rename("/a/one", "/a/uno").unwrap();
    assert_eq!(file_system.lookup("/a/uno"), Ok(one));
    assert_eq!(file_system.lookup("/a/one"), Err(Error::NotFound));
    file_system.rename("/a/uno", "/b/one").unwrap();
    assert_eq!(names(&mut file_system, "/a"), Vec::<String>::new());
    assert_eq!(names(&mut file_system, "/b"), ["one", "two"]);

    // Replacing a file frees it.
    let free = file_system.statfs().free_blocks;
    file_system.rename("/b/one", "/b/two").unwrap();
    assert_eq!(file_system.lookup("/b/two"), Ok(one));
    assert_eq!(file_system.stat(two), Err(Error::NotFound));
    // 30 data blocks and an indirect block.
    assert_eq!(file_system.statfs().free_blocks, free + 31);
    assert_eq!(read_all(&mut file_system, one), pattern(20_000, 4));
    file_system.rename("/b/two", "/b/two").unwrap();

    // A directory moves with its contents; links and `..` follow.
    let c = file_system.mkdir("/a/c").unwrap();
    file_system.create("/a/c/inner").unwrap();
    file_system.rename("/a/c", "/b/c").unwrap();
    assert_eq!(file_system.stat(a).unwrap().links, 2);
    assert_eq!(file_system.stat(b).unwrap().links, 3);
    assert!(file_system.lookup("/b/c/inner").is_ok());
    assert_eq!(file_system.lookup("/b/c"), Ok(c));
    assert!(matches!(
        file_system.rename("/b", "/b/c/b"),
        Err(Error::InvalidOperation(_))
    ));
    assert_eq!(file_system.rename("/b/c", "/b"), Err(Error::DirectoryNotEmpty));
    assert_eq!(file_system.rename("/b/two", "/b/c"), Err(Error::IsADirectory));
    assert_eq!(file_system.rename("/b/c", "/b/two"), Err(Error::NotADirectory));
    assert_eq!(file_system.rename("/b/none", "/b/x"), Err(Error::NotFound));
    assert!(matches!(file_system.rename("/", "/x"), Err(Error::InvalidOperation(_))));
    let mut file_system = sync_and_check(file_system);

    // A directory replaces an empty directory, in another parent.
    file_system.mkdir("/empty").unwrap();
    file_system.rename("/b/c", "/empty").unwrap();
    assert!(file_system.lookup("/empty/inner").is_ok());
    assert_eq!(file_system.stat(b).unwrap().links, 2);
    assert_eq!(file_system.stat(InodeNumber::ROOT).unwrap().links, 6);
    // The same in one parent.
    file_system.mkdir("/x").unwrap();
    file_system.rename("/a", "/x").unwrap();
    assert_eq!(file_system.stat(InodeNumber::ROOT).unwrap().links, 6);
    sync_and_check(file_system);
}

#[test]
fn many_files() {
    let mut file_system = mount(grouped_image(8192, 1024, 1024));
    let directories = ["/d0", "/d1", "/d2", "/d3", "/d4"];
    for directory in directories {
        file_system.mkdir(directory).unwrap();
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for index in 0..500 {
        let path = format!("{}/file-{index:03}-with-a-longer-name", directories[index % 5]);
        let inode = file_system.create(&path).unwrap();
        let data = pattern(index * 37 % 3000, index as u32);
        file_system.write(inode, 0, &data).unwrap();
        files.push((path, data));
    }
    for (index, (path, _)) in files.iter_mut().enumerate() {
        if index % 2 == 0 {
            let renamed = format!("{}/renamed-{index}", directories[(index + 1) % 5]);
            file_system.rename(path, &renamed).unwrap();
            *path = renamed;
        }
    }
    let mut index = 0;
    files.retain(|(path, _)| {
        index += 1;
        if index % 3 == 0 {
            file_system.remove(path).unwrap();
            false
        } else {
            true
        }
    });
    let mut file_system = sync_and_check(file_system);
    for (path, data) in &files {
        let inode = file_system.lookup(path).unwrap();
        assert_eq!(&read_all(&mut file_system, inode), data, "{path}");
    }
    let listed: usize = directories
        .iter()
        .map(|directory| names(&mut file_system, directory).len())
        .sum();
    assert_eq!(listed, files.len());
}

#[test]
fn full_disk() {
    let mut file_system = mount(grouped_image(1024, 64, 256));
    let kept = pattern(100 * 1024, 6);
    let first = file_system.create("/kept").unwrap();
    write_in_chunks(&mut file_system, first, &kept, 10_000);
    let filler = file_system.create("/filler").unwrap();
    let chunk = pattern(16 * 1024, 7);
    let mut offset = 0u64;
    loop {
        match file_system.write(filler, offset, &chunk) {
            Ok(written) => {
                offset += written as u64;
                if written < chunk.len() {
                    break;
                }
            }
            Err(Error::NoSpace) => break,
            Err(error) => panic!("unexpected {error}"),
        }
    }
    assert_eq!(file_system.write(filler, offset, &chunk), Err(Error::NoSpace));
    assert_eq!(file_system.statfs().free_blocks, 0);
    assert_eq!(file_system.stat(filler).unwrap().size, offset);
    let content = read_all(&mut file_system, filler);
    for (index, piece) in content.chunks(chunk.len()).enumerate() {
        assert_eq!(piece, &chunk[..piece.len()], "chunk {index}");
    }
    assert_eq!(read_all(&mut file_system, first), kept);
    assert_eq!(file_system.mkdir("/no-room"), Err(Error::NoSpace));
    let empty = file_system.create("/empty").unwrap();
    assert_eq!(file_system.write(empty, 0, b"x"), Err(Error::NoSpace));
    let mut file_system = sync_and_check(file_system);

    // Freeing space makes it usable again.
    file_system.remove("/filler").unwrap();
    file_system.mkdir("/room").unwrap();
    let empty = file_system.lookup("/empty").unwrap();
    assert_eq!(file_system.write(empty, 0, b"x"), Ok(1));
    sync_and_check(file_system);
}

#[test]
fn out_of_inodes() {
    let mut file_system = mount(small_image(1024, 16));
    let mut created = 0;
    let error = loop {
        match file_system.create(&format!("/f{created}")) {
            Ok(_) => created += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(error, Error::NoInodes);
    assert!(created > 0);
    assert_eq!(file_system.statfs().free_inodes, 0);
    assert_eq!(file_system.mkdir("/dir"), Err(Error::NoInodes));
    sync_and_check(file_system);
}

/// Runs the same operations with a tiny and a large cache: same image, and
/// still clean after more changes through the tiny cache.
#[test]
fn small_cache_evicts_correctly() {
    let image = grouped_image(4096, 256, 2048);
    let run = |cache_blocks: usize| {
        let mut file_system = FileSystem::mount_with_cache(image.clone(), cache_blocks).unwrap();
        file_system.set_time(1_700_000_000);
        let mut expected = Vec::new();
        for index in 0..12u32 {
            let directory = format!("/dir{}", index % 3);
            if index < 3 {
                file_system.mkdir(&directory).unwrap();
            }
            let inode = file_system.create(&format!("{directory}/file{index}")).unwrap();
            let data = pattern(20_000 + index as usize * 9_000, index);
            write_in_chunks(&mut file_system, inode, &data, 3000);
            expected.push((inode, data));
        }
        for (inode, data) in &expected {
            assert_eq!(&read_all(&mut file_system, *inode), data);
        }
        file_system.sync().unwrap();
        file_system.into_device()
    };
    let small = run(8);
    let large = run(4096);
    let differing: Vec<usize> = (0..small.bytes.len() / 1024)
        .filter(|&block| small.bytes[block * 1024..][..1024] != large.bytes[block * 1024..][..1024])
        .collect();
    assert!(differing.is_empty(), "the cache size changed blocks {differing:?}");
    let mut file_system = FileSystem::mount_with_cache(small, 8).unwrap();
    file_system.remove("/dir1/file4").unwrap();
    file_system.remove("/dir2/file5").unwrap();
    sync_and_check(file_system);
}

#[test]
fn writes_are_contiguous_and_batched() {
    let mut file_system = mount(small_image(4096, 64));
    let inode = file_system.create("/file").unwrap();
    file_system.sync().unwrap();
    let writes_before = file_system.device.writes;
    write_in_chunks(&mut file_system, inode, &pattern(1 << 20, 8), 1 << 16);
    file_system.sync().unwrap();
    // 1 MiB of data in 64 KiB calls, split once more where a call crosses
    // an indirect block (4 times), plus the metadata: 5 indirect blocks in
    // 4 runs, the superblock, descriptors and bitmap in one, an inode table
    // block.
    let writes = file_system.device.writes - writes_before;
    assert!(writes <= 16 + 4 + 6, "{writes} device writes");
    let mut file_system = FileSystem::mount(file_system.into_device()).unwrap();
    let size = file_system.stat(inode).unwrap().size;
    let reads_before = file_system.device.reads;
    let mut data = vec![0; 1 << 20];
    assert_eq!(file_system.read(inode, 0, &mut data), Ok(1 << 20));
    assert_eq!(size, 1 << 20);
    assert_eq!(data, pattern(1 << 20, 8));
    // 16 calls of 64 KiB, one more for the direct blocks before the first
    // indirect block, and the 5 indirect blocks, read once each.
    let reads = file_system.device.reads - reads_before;
    assert!(reads <= 16 + 1 + 5, "{reads} device reads");
    // Whole blocks bypass the cache: only the indirect blocks were cached.
    assert!(
        file_system.cache.len() <= 8,
        "{} blocks cached",
        file_system.cache.len()
    );
}

/// Whole-block reads and writes go around the cache, and must still see
/// (and replace) what partial writes left dirty in it, with a cache small
/// enough to evict in the middle of it all.
#[test]
fn direct_transfers_stay_coherent_with_the_cache() {
    let mut file_system = FileSystem::mount_with_cache(small_image(4096, 64), 8).unwrap();
    file_system.set_time(1_700_000_000);
    let inode = file_system.create("/file").unwrap();
    let mut model = pattern(300 * 1024, 10);
    file_system.write(inode, 0, &model).unwrap();
    // Partial writes leave dirty blocks in the cache, nothing is synced.
    for (index, offset) in [5usize, 1500, 70_001, 150_000, 299_000].into_iter().enumerate() {
        let patch = pattern(700, 20 + index as u32);
        file_system.write(inode, offset as u64, &patch).unwrap();
        model[offset..offset + 700].copy_from_slice(&patch);
    }
    assert_eq!(read_all(&mut file_system, inode), model);
    // A whole-block write over a dirty cached block replaces it: neither
    // its eviction nor a sync may bring the old contents back.
    let whole = pattern(8 * 1024, 30);
    file_system.write(inode, 1024, &whole).unwrap();
    model[1024..1024 + whole.len()].copy_from_slice(&whole);
    assert_eq!(read_all(&mut file_system, inode), model);
    let mut file_system = sync_and_check(file_system);
    assert_eq!(read_all(&mut file_system, inode), model);
}

/// Writes of every alignment, partial and whole blocks mixed, into holes,
/// over existing data and past the end, checked against a model through a
/// small cache, before and after a sync.
#[test]
fn mixed_alignment_writes_match_a_model() {
    for (device, block_size) in [
        (small_image(8192, 64), 1024),
        (make_image(&["-b", "4096"], 16384), 4096),
    ] {
        let mut file_system = FileSystem::mount_with_cache(device, 16).unwrap();
        file_system.set_time(1_700_000_000);
        let inode = file_system.create("/file").unwrap();
        let mut model = Vec::new();
        let mut random = Random(0x1234_5678_9ABC_DEF1 ^ block_size as u64);
        for step in 0..300 {
            // Block-aligned offsets and lengths half the time.
            let mut offset = random.below(600 * 1024);
            let mut length = random.below(40 * 1024) + 1;
            if random.below(2) == 0 {
                offset -= offset % block_size;
                length = length.div_ceil(block_size) * block_size;
            }
            let data = pattern(length, step);
            assert_eq!(file_system.write(inode, offset as u64, &data), Ok(length));
            if model.len() < offset + length {
                model.resize(offset + length, 0);
            }
            model[offset..offset + length].copy_from_slice(&data);
            let from = random.below(model.len());
            let mut buffer = vec![0; random.below(70 * 1024) + 1];
            let read = file_system.read(inode, from as u64, &mut buffer).unwrap();
            assert_eq!(&buffer[..read], &model[from..(from + buffer.len()).min(model.len())]);
        }
        assert_eq!(read_all(&mut file_system, inode), model);
        let mut file_system = sync_and_check(file_system);
        assert_eq!(read_all(&mut file_system, inode), model);
    }
}

/// `map_write` then the caller's own device writes, read back through
/// `read` and `map_read`, across the direct, single and double indirect
/// parts of the block map, over holes and existing blocks.
fn mapped_round_trip(device: MemoryDevice, block_size: usize) {
    let mut file_system = FileSystem::mount_with_cache(device, 32).unwrap();
    file_system.set_time(1_700_000_000);
    let pointers = block_size / 4;
    let sectors_per_block = (block_size / SECTOR_SIZE) as u64;
    let max_extent = 16 * block_size as u64;

    // A fresh file in uneven calls that cross both map boundaries.
    let inode = file_system.create("/mapped").unwrap();
    let blocks = 12 + pointers + 40;
    let mut model = pattern(blocks * block_size, 40);
    let mut offset = 0;
    for chunk in [5, 9, 64, pointers, 3].into_iter().cycle() {
        if offset == model.len() {
            break;
        }
        let end = (offset + chunk * block_size).min(model.len());
        let placed = map_write_by_hand(&mut file_system, inode, offset as u64, &model[offset..end], max_extent);
        assert_eq!(placed, Ok(end - offset));
        offset = end;
    }
    let metadata = file_system.stat(inode).unwrap();
    assert_eq!(metadata.size, model.len() as u64);
    assert_eq!(metadata.blocks, (blocks + 1 + 2) as u64 * sectors_per_block);
    assert_eq!(metadata.modified, 1_700_000_000);
    assert_eq!(read_all(&mut file_system, inode), model);
    let length = model.len() as u64;
    assert_eq!(map_read_by_hand(&mut file_system, inode, 0, length, max_extent), model);

    // Overwriting existing blocks in one call across both boundaries, with
    // another limit; the blocks stay where they were.
    file_system.set_time(1_700_000_100);
    let before = file_system.map_read(inode, 0, length, max_extent).unwrap();
    let from = 10 * block_size;
    let patch = pattern((pointers + 10) * block_size, 41);
    let limit = 3 * block_size as u64;
    assert_eq!(
        map_write_by_hand(&mut file_system, inode, from as u64, &patch, limit),
        Ok(patch.len())
    );
    model[from..from + patch.len()].copy_from_slice(&patch);
    assert_eq!(file_system.map_read(inode, 0, length, max_extent).unwrap(), before);
    assert_eq!(file_system.stat(inode).unwrap().blocks, metadata.blocks);
    assert_eq!(file_system.stat(inode).unwrap().modified, 1_700_000_100);
    assert_eq!(read_all(&mut file_system, inode), model);
    for (offset, length, limit) in [(0, length, block_size as u64), (11, 3, 2), (12 + pointers - 2, 5, 1)] {
        let (offset, length) = (offset * block_size, length as usize * block_size);
        let limit = limit * block_size as u64;
        let read = map_read_by_hand(&mut file_system, inode, offset as u64, length as u64, limit);
        assert_eq!(read, &model[offset..(offset + length).min(model.len())]);
    }

    // Holes in the middle, then a write that fills some of them and
    // overwrites a block between them.
    let sparse = file_system.create("/sparse").unwrap();
    let mut sparse_model = Vec::new();
    for (block, seed) in [(0, 42), (100, 43), (12 + pointers + 3, 44)] {
        let data = pattern(block_size, seed);
        let at = block * block_size;
        assert_eq!(
            map_write_by_hand(&mut file_system, sparse, at as u64, &data, max_extent),
            Ok(block_size)
        );
        sparse_model.resize(at + block_size, 0);
        sparse_model[at..].copy_from_slice(&data);
    }
    let size = sparse_model.len() as u64;
    let extents = file_system
        .map_read(sparse, 0, size, u64::MAX - u64::MAX % 4096)
        .unwrap();
    let holes: Vec<(u64, u64)> = extents
        .iter()
        .filter_map(|extent| match *extent {
            Extent::Zeros { offset, length } => Some((offset, length)),
            Extent::Disk { .. } => None,
        })
        .collect();
    let block = block_size as u64;
    assert_eq!(
        holes,
        [
            (block, 99 * block),
            (101 * block, (12 + pointers as u64 + 2 - 100) * block)
        ]
    );
    assert_eq!(
        map_read_by_hand(&mut file_system, sparse, 0, size, max_extent),
        sparse_model
    );
    let fill = pattern((pointers - 40) * block_size, 45);
    let at = 50 * block_size;
    assert_eq!(
        map_write_by_hand(&mut file_system, sparse, at as u64, &fill, max_extent),
        Ok(fill.len())
    );
    sparse_model[at..at + fill.len()].copy_from_slice(&fill);
    assert_eq!(read_all(&mut file_system, sparse), sparse_model);
    assert_eq!(
        map_read_by_hand(&mut file_system, sparse, 0, size, max_extent),
        sparse_model
    );

    let mut file_system = sync_and_check(file_system);
    for (inode, model) in [(inode, &model), (sparse, &sparse_model)] {
        assert_eq!(&read_all(&mut file_system, inode), model);
        let length = model.len() as u64;
        assert_eq!(&map_read_by_hand(&mut file_system, inode, 0, length, max_extent), model);
    }
}

#[test]
fn mapped_round_trip_1k_blocks() {
    mapped_round_trip(grouped_image(8192, 128, 8192), 1024);
}

#[test]
fn mapped_round_trip_4k_blocks_default_features() {
    mapped_round_trip(make_image(&["-b", "4096"], 32768), 4096);
}

/// `map_read` must see what partial writes left dirty in the cache, and
/// partial writes must see what went straight to the device.
#[test]
fn map_read_sees_dirty_cached_blocks() {
    let mut file_system = FileSystem::mount_with_cache(small_image(4096, 64), 64).unwrap();
    file_system.set_time(1_700_000_000);
    let inode = file_system.create("/file").unwrap();
    let mut model = pattern(300 * 1024, 50);
    file_system.write(inode, 0, &model).unwrap();
    for (index, offset) in [5usize, 1500, 70_001, 150_000, 299_000].into_iter().enumerate() {
        let patch = pattern(700, 51 + index as u32);
        file_system.write(inode, offset as u64, &patch).unwrap();
        model[offset..offset + 700].copy_from_slice(&patch);
    }
    let length = model.len() as u64;
    assert_eq!(map_read_by_hand(&mut file_system, inode, 0, length, 64 * 1024), model);
    let whole = pattern(8 * 1024, 56);
    assert_eq!(
        map_write_by_hand(&mut file_system, inode, 69 * 1024, &whole, 4096),
        Ok(whole.len())
    );
    model[69 * 1024..77 * 1024].copy_from_slice(&whole);
    let patch = pattern(100, 57);
    file_system.write(inode, 70 * 1024 + 3, &patch).unwrap();
    model[70 * 1024 + 3..70 * 1024 + 103].copy_from_slice(&patch);
    assert_eq!(map_read_by_hand(&mut file_system, inode, 0, length, 64 * 1024), model);
    assert_eq!(read_all(&mut file_system, inode), model);
    let mut file_system = sync_and_check(file_system);
    assert_eq!(read_all(&mut file_system, inode), model);
}

/// Holes read as zeros, and the range stops at the end of the file, the
/// last disk extent rounded up to a whole sector.
#[test]
fn map_read_zeros_and_end_of_file() {
    let mut file_system = mount(small_image(2048, 64));
    let inode = file_system.create("/file").unwrap();
    let big = 1 << 20;
    // Logical blocks 3 and 4 hold data; the file ends 476 bytes into 4.
    file_system.write(inode, 3 * 1024, &pattern(1500, 60)).unwrap();
    let extents = file_system.map_read(inode, 0, big, big).unwrap();
    let Some(&Extent::Disk { sector, .. }) = extents.get(1) else {
        panic!("no disk extent in {extents:?}");
    };
    let zeros = |offset, length| Extent::Zeros { offset, length };
    let disk = |offset, sector, length| Extent::Disk { offset, sector, length };
    assert_eq!(extents, [zeros(0, 3 * 1024), disk(3 * 1024, sector, 1536)]);
    // Clipped by the length, then by the end of the file.
    assert_eq!(
        file_system.map_read(inode, 3 * 1024, 100, big),
        Ok(vec![disk(0, sector, 512)])
    );
    assert_eq!(
        file_system.map_read(inode, 4 * 1024, big, big),
        Ok(vec![disk(0, sector + 2, 512)])
    );
    assert_eq!(file_system.map_read(inode, 5 * 1024, big, big), Ok(vec![]));
    assert_eq!(file_system.map_read(inode, 0, 0, big), Ok(vec![]));
    assert_eq!(
        map_read_by_hand(&mut file_system, inode, 0, big, 1024),
        read_all(&mut file_system, inode)
    );

    // Growing leaves a hole at the end; extents are cut at `max_extent`.
    file_system.truncate(inode, 10 * 1024).unwrap();
    assert_eq!(
        file_system.map_read(inode, 0, big, 2048),
        Ok(vec![
            zeros(0, 2048),
            zeros(2048, 1024),
            disk(3 * 1024, sector, 2048),
            zeros(5 * 1024, 2048),
            zeros(7 * 1024, 2048),
            zeros(9 * 1024, 1024),
        ])
    );
    assert_eq!(
        map_read_by_hand(&mut file_system, inode, 0, big, 1024),
        read_all(&mut file_system, inode)
    );
    sync_and_check(file_system);
}

/// `map_write` past the free space places the prefix that fits, then
/// fails with `NoSpace`; the image stays clean and other files intact.
#[test]
fn map_write_fills_the_disk() {
    let mut file_system = mount(grouped_image(1024, 64, 256));
    let kept = pattern(100 * 1024, 70);
    let first = file_system.create("/kept").unwrap();
    write_in_chunks(&mut file_system, first, &kept, 10_000);
    let filler = file_system.create("/filler").unwrap();
    let free = file_system.statfs().free_blocks as usize;
    let mut model = pattern((free + 50) * 1024, 71);
    let placed = map_write_by_hand(&mut file_system, filler, 0, &model, 64 * 1024).unwrap();
    assert!(placed > 0 && placed < model.len(), "placed {placed}");
    model.truncate(placed);
    assert_eq!(file_system.stat(filler).unwrap().size, placed as u64);
    assert_eq!(file_system.statfs().free_blocks, 0);
    for offset in [placed, placed + 10 * 1024] {
        assert_eq!(
            map_write_by_hand(&mut file_system, filler, offset as u64, &pattern(1024, 72), 1024),
            Err(Error::NoSpace)
        );
    }
    assert_eq!(file_system.stat(filler).unwrap().size, placed as u64);
    // Overwriting needs no space.
    let patch = pattern(3 * 1024, 73);
    assert_eq!(
        map_write_by_hand(&mut file_system, filler, 1024, &patch, 1024),
        Ok(patch.len())
    );
    model[1024..4 * 1024].copy_from_slice(&patch);
    assert_eq!(read_all(&mut file_system, filler), model);
    assert_eq!(read_all(&mut file_system, first), kept);
    let mut file_system = sync_and_check(file_system);
    assert_eq!(read_all(&mut file_system, filler), model);
    assert_eq!(read_all(&mut file_system, first), kept);

    // Freeing space makes it usable again.
    file_system.remove("/filler").unwrap();
    let again = file_system.create("/again").unwrap();
    let data = pattern(20 * 1024, 74);
    assert_eq!(
        map_write_by_hand(&mut file_system, again, 0, &data, 8192),
        Ok(data.len())
    );
    let mut file_system = sync_and_check(file_system);
    assert_eq!(read_all(&mut file_system, again), data);
    assert_eq!(read_all(&mut file_system, first), kept);
}

#[test]
fn map_requests_must_be_aligned() {
    let mut file_system = mount(small_image(1024, 64));
    let inode = file_system.create("/file").unwrap();
    file_system.write(inode, 0, &pattern(5000, 80)).unwrap();
    let before = file_system.stat(inode).unwrap();
    let invalid = |result: Result<Vec<Extent>, Error>| matches!(result, Err(Error::InvalidOperation(_)));
    assert!(invalid(file_system.map_read(inode, 1, 1024, 4096)));
    assert!(invalid(file_system.map_read(inode, 0, 1024, 0)));
    assert!(invalid(file_system.map_read(inode, 0, 1024, 1536)));
    assert!(invalid(file_system.map_write(inode, 512, 1024, 4096)));
    assert!(invalid(file_system.map_write(inode, 1024, 100, 4096)));
    assert!(invalid(file_system.map_write(inode, 1024, 1024, 1536)));
    assert!(invalid(file_system.map_write(inode, 1024, 1024, 0)));
    assert_eq!(file_system.stat(inode).unwrap(), before);
    // Only the offset of a read must be aligned.
    assert_eq!(file_system.map_read(inode, 1024, 100, 1024).unwrap().len(), 1);
    assert_eq!(file_system.map_write(inode, 8192, 0, 1024), Ok(vec![]));
    assert_eq!(
        file_system.map_write(InodeNumber::ROOT, 0, 1024, 1024),
        Err(Error::IsADirectory)
    );
    assert_eq!(
        file_system.map_read(InodeNumber::ROOT, 0, 1024, 1024),
        Err(Error::IsADirectory)
    );
    assert_eq!(
        file_system.map_read(InodeNumber(60), 0, 1024, 1024),
        Err(Error::NotFound)
    );
    assert_eq!(file_system.stat(inode).unwrap(), before);
    sync_and_check(file_system);
}

#[test]
fn persists_across_mounts() {
    let mut file_system = mount(small_image(2048, 64));
    file_system.mkdir("/keep").unwrap();
    let inode = file_system.create("/keep/data").unwrap();
    file_system.write(inode, 0, &pattern(50_000, 9)).unwrap();
    file_system.sync().unwrap();
    let usage = file_system.statfs();
    let mut file_system = FileSystem::mount(file_system.into_device()).unwrap();
    assert_eq!(file_system.statfs(), usage);
    let inode = file_system.lookup("/keep/data").unwrap();
    assert_eq!(read_all(&mut file_system, inode), pattern(50_000, 9));

    // Without sync, nothing of the new file reaches the device.
    file_system.create("/lost").unwrap();
    let mut file_system = FileSystem::mount(file_system.into_device()).unwrap();
    assert_eq!(file_system.lookup("/lost"), Err(Error::NotFound));
}

#[test]
fn device_errors_are_reported() {
    let mut file_system = mount(small_image(1024, 64));
    let inode = file_system.create("/file").unwrap();
    file_system.device.failing = true;
    assert_eq!(file_system.sync(), Err(Error::Device(DeviceError { code: 5 })));
    let mut device = file_system.into_device();
    assert!(FileSystem::mount(device.clone()).is_err());
    device.failing = false;
    let mut file_system = FileSystem::mount(device).unwrap();
    assert_eq!(
        file_system.stat(inode).map(|metadata| metadata.size),
        Err(Error::NotFound)
    );
}

fn set_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn mount_refuses_bad_images() {
    let image = small_image(1024, 64);
    let refuse = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut device = image.clone();
        edit(&mut device.bytes);
        match FileSystem::mount(device) {
            Ok(_) => panic!("mounted a bad image"),
            Err(error) => error,
        }
    };
    assert!(matches!(
        refuse(&|bytes| bytes[1024..2048].fill(0)),
        Error::BadSuperblock(_)
    ));
    assert!(matches!(
        refuse(&|bytes| bytes[1024 + 56] = 0x54),
        Error::BadSuperblock(_)
    ));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 1024 + 96, 0x2 | 0x40)),
        Error::Unsupported(_)
    ));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 1024 + 100, 0x3 | 0x400)),
        Error::Unsupported(_)
    ));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 1024 + 24, 7)),
        Error::Unsupported(_)
    ));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 1024 + 32, 0)),
        Error::BadSuperblock(_)
    ));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 1024 + 4, 1 << 30)),
        Error::BadSuperblock(_)
    ));
    assert!(matches!(
        refuse(&|bytes| bytes.truncate(512 * 1024)),
        Error::BadSuperblock(_)
    ));
    assert!(matches!(refuse(&|bytes| bytes.truncate(512)), Error::BadSuperblock(_)));
    assert!(matches!(
        refuse(&|bytes| set_u32(bytes, 2048 + 8, 5000)),
        Error::Corrupt(_)
    ));
    let error = refuse(&|bytes| set_u32(bytes, 1024 + 96, 0x2 | 0x4));
    assert!(error.to_string().contains("needs_recovery"), "{error}");
}

/// Flips random bytes in the metadata of a used image: mounting and using
/// it returns errors or succeeds, and never panics.
#[test]
fn corrupt_metadata_never_panics() {
    let mut file_system = mount(small_image(512, 64));
    for directory in ["/a", "/a/b", "/c"] {
        file_system.mkdir(directory).unwrap();
    }
    for (index, path) in ["/f", "/a/g", "/a/b/h", "/c/i"].iter().enumerate() {
        let inode = file_system.create(path).unwrap();
        file_system
            .write(inode, 0, &pattern(index * 70_000 + 500, index as u32))
            .unwrap();
    }
    file_system.sync().unwrap();
    let image = file_system.into_device();
    // Superblock, descriptors, bitmaps, inode table and the first
    // directory and indirect blocks all lie in the first 64 blocks.
    let metadata_end = 64 * 1024;
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    for _ in 0..400 {
        let mut device = image.clone();
        for _ in 0..1 + random.below(8) {
            let at = 1024 + random.below(metadata_end - 1024);
            device.bytes[at] = random.next() as u8;
        }
        let Ok(mut file_system) = FileSystem::mount_with_cache(device, 16) else {
            continue;
        };
        let mut buffer = vec![0; 80_000];
        for path in ["/f", "/a/g", "/a/b/h", "/c/i", "/a/b", "/lost+found"] {
            if let Ok(inode) = file_system.lookup(path) {
                let _ = file_system.stat(inode);
                let _ = file_system.read(inode, 0, &mut buffer);
                let _ = file_system.read_dir(inode);
            }
        }
        let _ = file_system.read_dir(InodeNumber::ROOT);
        if let Ok(inode) = file_system.create("/a/new") {
            let _ = file_system.write(inode, 5000, &buffer[..20_000]);
            let _ = file_system.truncate(inode, 100);
        }
        let _ = file_system.mkdir("/c/dir");
        let _ = file_system.rename("/a/b/h", "/c/h");
        let _ = file_system.rename("/a/b", "/c/b");
        let _ = file_system.remove("/f");
        let _ = file_system.remove("/a/g");
        let _ = file_system.sync();
    }
}

/// Random operations checked against a model of the tree, through a small
/// cache, then a clean e2fsck.
fn random_operations_match_a_model(image: MemoryDevice, seed: u64) {
    use std::collections::BTreeMap;
    use std::collections::btree_map::Entry;

    let mut file_system = FileSystem::mount_with_cache(image, 32).unwrap();
    let block_size = file_system.statfs().block_size as usize;
    // Path to contents; `None` for a directory.
    let mut model: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut random = Random(seed);
    let directories = ["", "/p", "/q", "/p/r"];
    for directory in &directories[1..] {
        file_system.mkdir(directory).unwrap();
        model.insert(directory.to_string(), None);
    }
    let random_file =
        |random: &mut Random| format!("{}/n{}", directories[random.below(directories.len())], random.below(12));
    for step in 0..1500 {
        let path = random_file(&mut random);
        match random.below(8) {
            0 => {
                let result = file_system.create(&path);
                match model.entry(path) {
                    Entry::Occupied(_) => assert_eq!(result, Err(Error::AlreadyExists)),
                    Entry::Vacant(slot) => {
                        result.unwrap();
                        slot.insert(Some(Vec::new()));
                    }
                }
            }
            1 | 2 => {
                if let Some(Some(contents)) = model.get_mut(&path) {
                    let offset = random.below(150_000);
                    let data = pattern(random.below(20_000), step);
                    let inode = file_system.lookup(&path).unwrap();
                    assert_eq!(file_system.write(inode, offset as u64, &data), Ok(data.len()));
                    if contents.len() < offset + data.len() {
                        contents.resize(offset + data.len(), 0);
                    }
                    contents[offset..offset + data.len()].copy_from_slice(&data);
                }
            }
            3 => {
                if let Some(Some(contents)) = model.get_mut(&path) {
                    let size = random.below(160_000);
                    let inode = file_system.lookup(&path).unwrap();
                    file_system.truncate(inode, size as u64).unwrap();
                    contents.resize(size, 0);
                }
            }
            4 => {
                let target = random_file(&mut random);
                match (model.get(&path).cloned(), model.get(&target)) {
                    (Some(Some(contents)), None | Some(Some(_))) => {
                        file_system.rename(&path, &target).unwrap();
                        model.remove(&path);
                        model.insert(target, Some(contents));
                    }
                    (None, _) => assert_eq!(file_system.rename(&path, &target), Err(Error::NotFound)),
                    _ => {}
                }
            }
            5 => {
                if let Some(Some(contents)) = model.get_mut(&path) {
                    let offset = random.below(150_000) / block_size * block_size;
                    let data = pattern(random.below(20_000) / block_size * block_size, step);
                    let max_extent = (1 + random.below(16)) * block_size;
                    let inode = file_system.lookup(&path).unwrap();
                    let placed = map_write_by_hand(&mut file_system, inode, offset as u64, &data, max_extent as u64);
                    assert_eq!(placed, Ok(data.len()));
                    // Placing nothing does not grow the file.
                    if !data.is_empty() {
                        if contents.len() < offset + data.len() {
                            contents.resize(offset + data.len(), 0);
                        }
                        contents[offset..offset + data.len()].copy_from_slice(&data);
                    }
                }
            }
            6 => {
                if let Some(Some(contents)) = model.get(&path) {
                    let offset = random.below(contents.len() + 2 * block_size) / block_size * block_size;
                    let length = random.below(40_000);
                    let max_extent = (1 + random.below(16)) * block_size;
                    let inode = file_system.lookup(&path).unwrap();
                    let read =
                        map_read_by_hand(&mut file_system, inode, offset as u64, length as u64, max_extent as u64);
                    let expected = contents
                        .get(offset..(offset + length).min(contents.len()))
                        .unwrap_or_default();
                    assert_eq!(read, expected, "{path} at {offset}");
                }
            }
            _ => {
                if model.get(&path).is_some_and(|entry| entry.is_some()) {
                    file_system.remove(&path).unwrap();
                    model.remove(&path);
                } else if !model.contains_key(&path) {
                    assert_eq!(file_system.remove(&path), Err(Error::NotFound));
                }
            }
        }
    }
    let mut file_system = sync_and_check(file_system);
    for (path, contents) in &model {
        let inode = file_system.lookup(path).unwrap();
        match contents {
            Some(contents) => assert_eq!(&read_all(&mut file_system, inode), contents, "{path}"),
            None => assert_eq!(file_system.stat(inode).unwrap().kind, FileKind::Directory),
        }
    }
    for directory in ["/", "/p", "/q", "/p/r"] {
        let prefix = directory.trim_end_matches('/');
        let mut expected: Vec<String> = model
            .keys()
            .filter_map(|path| path.strip_prefix(prefix)?.strip_prefix('/'))
            .filter(|rest| !rest.contains('/'))
            .map(String::from)
            .collect();
        if directory == "/" {
            expected.push("lost+found".into());
        }
        expected.sort();
        assert_eq!(names(&mut file_system, directory), expected, "{directory}");
    }
}

#[test]
fn random_operations_1k_blocks() {
    random_operations_match_a_model(grouped_image(8192, 512, 1024), 0x9E37_79B9_7F4A_7C15);
}

#[test]
fn random_operations_4k_blocks_default_features() {
    random_operations_match_a_model(make_image(&["-b", "4096"], 16384), 0xDEAD_BEEF_1234_5679);
}
