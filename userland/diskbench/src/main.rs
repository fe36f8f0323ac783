//! diskbench: measures sequential write and read throughput on the data
//! disk, through the block driver alone ("raw") and through the filesystem
//! server ("fs"), prints one line per figure for `cargo xtask bench`, and
//! powers the system off.
//!
//! Raw passes use the last [`PASS_BYTES`] of the disk, which the bench disk
//! leaves outside the filesystem (checked before anything is written); fs
//! passes use the file [`FILE`]. Both move [`CHUNK`] bytes per call. The
//! clock ticks at 100 Hz, so each figure repeats passes until at least
//! [`MIN_SECONDS`] have been timed. Every byte read back is checked against
//! the pattern written; a mismatch is printed as an error and the program
//! exits with status 1 instead of powering off.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Syscall;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use block::{Disk, SECTOR_SIZE};
use core::fmt;
use fs::{Files, Handle};
use runtime::capability::{AddressSpace, Memory, Slots};
use runtime::ipc::Buffer;
use runtime::println;
use service::Client;
use service::init::{Init, InitRequest};
use service::process::{CSPACE_SLOTS, slot};

runtime::entry!(main, heap_kib = 256);

/// Bytes one pass writes or reads: the size of the raw area and of the file.
const PASS_BYTES: u64 = 16 << 20;
/// Bytes per call: the most one request to either server moves.
const CHUNK: usize = 64 * 1024;
/// Each figure is timed over at least this long, so that the clock's
/// resolution (one tick, 10 ms) stays under half a percent.
const MIN_SECONDS: u64 = 2;
/// The file the fs passes write and read.
const FILE: &str = "/bench.dat";

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    if let Err(message) = run(&slots, buffer) {
        println!("diskbench: error: {message}");
        return 1;
    }
    match Client::<Init>::with_endpoint(slot::INIT, buffer).call(&InitRequest::PowerOff) {
        Ok(_) => 0,
        Err(error) => {
            println!("diskbench: error: init did not power off ({error:?})");
            1
        }
    }
}

/// Connects to both servers, measures, and prints the four figures.
fn run(slots: &Slots, buffer: Buffer) -> Result<(), String> {
    let memory = Memory(slot::MEMORY);
    let address_space = AddressSpace(slot::ADDRESS_SPACE);
    let disk = Disk::connect(slots, memory, address_space, buffer)
        .map_err(|error| format!("cannot reach the block driver ({error:?})"))?;
    let files = Files::connect(slots, memory, address_space, buffer)
        .map_err(|error| format!("cannot reach the filesystem server: {error}"))?;
    let clock = Clock::read()?;
    println!(
        "diskbench: {} MiB per pass, {} KiB per call, at least {MIN_SECONDS} s per figure",
        PASS_BYTES >> 20,
        CHUNK / 1024
    );
    let first_sector = raw_area(&disk, &files)?;
    let (raw_write, seed) = measure(clock, |pass| raw_write(&disk, first_sector, pass))?;
    println!("diskbench: raw write {raw_write}");
    let (raw_read, _) = measure(clock, |_| raw_read(&disk, first_sector, seed))?;
    println!("diskbench: raw read {raw_read}");
    let (handle, _) = files
        .open(FILE, true)
        .map_err(|error| format!("cannot create {FILE}: {error}"))?;
    let (fs_write, seed) = measure(clock, |pass| fs_write(&files, handle, pass))?;
    println!("diskbench: fs write {fs_write}");
    // After the last write pass fs's cache (1024 blocks of 1 KiB) holds the
    // file's last MiB, but reading from the start evicts it, least recently
    // used first, before it is reached: every pass reads from the device.
    let (fs_read, _) = measure(clock, |_| fs_read(&files, handle, seed))?;
    println!("diskbench: fs read {fs_read}");
    files
        .close(handle)
        .and_then(|()| files.remove(FILE))
        .and_then(|()| files.sync())
        .map_err(|error| format!("cannot remove {FILE}: {error}"))
}

/// The first sector of the raw area: the last [`PASS_BYTES`] of the disk,
/// which must lie past the filesystem.
fn raw_area(disk: &Disk, files: &Files) -> Result<u64, String> {
    let usage = files
        .usage()
        .map_err(|error| format!("cannot ask the filesystem its size: {error}"))?;
    let filesystem_end = usage.blocks * u64::from(usage.block_size);
    let disk_bytes = disk.sectors() * SECTOR_SIZE as u64;
    match disk_bytes.checked_sub(PASS_BYTES) {
        Some(start) if start >= filesystem_end => Ok(start / SECTOR_SIZE as u64),
        _ => Err(format!(
            "the disk ({} MiB) has no {} MiB free past the filesystem ({} MiB)",
            disk_bytes >> 20,
            PASS_BYTES >> 20,
            filesystem_end >> 20
        )),
    }
}

/// The kernel's clock.
#[derive(Clone, Copy)]
struct Clock {
    per_second: u64,
}

impl Clock {
    fn read() -> Result<Self, String> {
        match runtime::syscall::call(Syscall::Clock, &[]) {
            Ok([_, per_second, ..]) if per_second > 0 => Ok(Self { per_second }),
            _ => Err(String::from("the kernel's clock does not run")),
        }
    }

    /// Timer ticks since boot.
    fn now() -> u64 {
        runtime::syscall::call(Syscall::Clock, &[]).map_or(0, |[ticks, ..]| ticks)
    }
}

/// Bytes moved in a measured time.
struct Throughput {
    bytes: u64,
    ticks: u64,
    per_second: u64,
}

impl fmt::Display for Throughput {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        let ticks = self.ticks.max(1);
        let tenths = self.bytes * 10 * self.per_second / (ticks << 20);
        let hundredths_of_seconds = ticks * 100 / self.per_second;
        write!(
            formatter,
            "{}.{} MiB/s ({} MiB in {}.{:02} s)",
            tenths / 10,
            tenths % 10,
            self.bytes >> 20,
            hundredths_of_seconds / 100,
            hundredths_of_seconds % 100
        )
    }
}

/// Runs passes 1, 2, ... of [`PASS_BYTES`] each (`pass` returns the ticks
/// it timed) until [`MIN_SECONDS`] are timed; returns the throughput and
/// the number of the last pass.
fn measure(clock: Clock, mut pass: impl FnMut(u64) -> Result<u64, String>) -> Result<(Throughput, u64), String> {
    let mut passes = 0;
    let mut ticks = 0;
    while ticks < MIN_SECONDS * clock.per_second {
        passes += 1;
        ticks += pass(passes)?;
    }
    let throughput = Throughput {
        bytes: passes * PASS_BYTES,
        ticks,
        per_second: clock.per_second,
    };
    Ok((throughput, passes))
}

/// Ticks `work` takes.
fn timed(work: impl FnOnce() -> Result<(), String>) -> Result<u64, String> {
    let start = Clock::now();
    work()?;
    Ok(Clock::now() - start)
}

/// Writes the raw area with the pattern of pass `seed` and flushes.
fn raw_write(disk: &Disk, first_sector: u64, seed: u64) -> Result<u64, String> {
    let mut chunk = vec![0; CHUNK];
    timed(|| {
        for offset in (0..PASS_BYTES).step_by(CHUNK) {
            fill(&mut chunk, offset, seed);
            disk.write(first_sector + offset / SECTOR_SIZE as u64, &chunk)
                .map_err(|error| format!("raw write at byte {offset}: {error:?}"))?;
        }
        disk.flush().map_err(|error| format!("raw flush: {error:?}"))
    })
}

/// Reads the raw area back and checks it holds the pattern of pass `seed`.
fn raw_read(disk: &Disk, first_sector: u64, seed: u64) -> Result<u64, String> {
    let mut chunk = vec![0; CHUNK];
    timed(|| {
        for offset in (0..PASS_BYTES).step_by(CHUNK) {
            disk.read(first_sector + offset / SECTOR_SIZE as u64, &mut chunk)
                .map_err(|error| format!("raw read at byte {offset}: {error:?}"))?;
            check(&chunk, offset, seed).map_err(|error| format!("raw read: {error}"))?;
        }
        Ok(())
    })
}

/// Empties the file (untimed), then writes it with the pattern of pass
/// `seed` and syncs: new blocks are allocated on every pass.
fn fs_write(files: &Files, handle: Handle, seed: u64) -> Result<u64, String> {
    files
        .truncate(handle, 0)
        .and_then(|()| files.sync())
        .map_err(|error| format!("cannot empty {FILE}: {error}"))?;
    let mut chunk = vec![0; CHUNK];
    timed(|| {
        for offset in (0..PASS_BYTES).step_by(CHUNK) {
            fill(&mut chunk, offset, seed);
            files
                .write(handle, offset, &chunk)
                .map_err(|error| format!("fs write at byte {offset}: {error}"))?;
        }
        files.sync().map_err(|error| format!("fs sync: {error}"))
    })
}

/// Reads the file back and checks it holds the pattern of pass `seed`.
fn fs_read(files: &Files, handle: Handle, seed: u64) -> Result<u64, String> {
    let mut chunk = vec![0; CHUNK];
    timed(|| {
        for offset in (0..PASS_BYTES).step_by(CHUNK) {
            let count = files
                .read(handle, offset, &mut chunk)
                .map_err(|error| format!("fs read at byte {offset}: {error}"))?;
            if count != CHUNK {
                return Err(format!("fs read at byte {offset}: {count} bytes, not {CHUNK}"));
            }
            check(&chunk, offset, seed).map_err(|error| format!("fs read: {error}"))?;
        }
        Ok(())
    })
}

/// The pattern's word at byte `offset` in pass `seed`: different at every
/// offset and in every pass, so a misplaced or stale block shows.
fn pattern(offset: u64, seed: u64) -> [u8; 8] {
    (offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed).to_le_bytes()
}

/// Fills `chunk`, which starts at byte `offset`, with the pattern.
fn fill(chunk: &mut [u8], offset: u64, seed: u64) {
    for (at, word) in (offset..).step_by(8).zip(chunk.as_chunks_mut::<8>().0) {
        *word = pattern(at, seed);
    }
}

/// Checks that `chunk`, which starts at byte `offset`, holds the pattern.
fn check(chunk: &[u8], offset: u64, seed: u64) -> Result<(), String> {
    match (offset..)
        .step_by(8)
        .zip(chunk.as_chunks::<8>().0)
        .find(|&(at, word)| *word != pattern(at, seed))
    {
        Some((at, _)) => Err(format!("byte {at} does not hold what pass {seed} wrote")),
        None => Ok(()),
    }
}
