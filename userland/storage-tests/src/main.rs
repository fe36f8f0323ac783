//! storage-tests: exercises the filesystem server from ring 3, as a client
//! like any other. `systems/storage.toml` starts [`CLIENTS`] copies at
//! once; each works in a directory named after its badge:
//!
//! 1. writes, renames, truncates and removes hundreds of files, and checks
//!    every byte and every listing;
//! 2. once every copy is done, the copy with the lowest badge checks path
//!    errors and that the block driver refuses bad requests, then fills the
//!    disk: the write that does not fit fails with `NoSpace`, and every
//!    file written before reads back intact;
//! 3. it syncs and powers the machine off; the test then runs the host's
//!    `e2fsck` on the image.
//!
//! Each check prints `PASS ...` or `FAIL ...` for the test harness.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use fs::{Error, Files, FilesError, Kind};
use runtime::capability::{AddressSpace, Memory, Slots};
use runtime::ipc::Buffer;
use runtime::println;
use service::Client;
use service::init::{Init, InitRequest};
use service::process::{CSPACE_SLOTS, slot};

runtime::entry!(main, heap_kib = 1024);

/// Copies of this program that `systems/storage.toml` starts.
const CLIENTS: usize = 2;
/// Files each copy makes.
const FILES: usize = 200;

type Check = Result<String, String>;

/// The bytes of file `index` of client `badge`: its length and content
/// both depend on the two, so a mix-up shows.
fn content(badge: u64, index: usize) -> Vec<u8> {
    let length = 100 + (index * 997) % 3000;
    (0..length)
        .map(|position| (position as u64 * 31 + index as u64 * 7 + badge * 13) as u8)
        .collect()
}

fn failed(what: &str, error: FilesError) -> String {
    format!("{what}: {error}")
}

fn main() -> u64 {
    let service::process::Start { first_free, badge, .. } = service::process::Start::get();
    let badge = u64::from(badge);
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let files = match Files::connect(&slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer) {
        Ok(files) => files,
        Err(error) => {
            println!("FAIL client {badge}: cannot reach the filesystem: {error}");
            return 1;
        }
    };
    let mut failures = report(many_files(&files, badge));
    if let Err(error) = files
        .write_file(&format!("/done-{badge}"), b"done")
        .and_then(|()| files.sync())
    {
        println!("FAIL client {badge}: marking done: {error}");
        return 1;
    }
    let Some(lowest) = wait_for_every_client(&files) else {
        println!("FAIL client {badge}: cannot list /");
        return 1;
    };
    if badge != lowest {
        return u64::from(failures);
    }
    failures += report(path_errors(&files, badge));
    failures += report(bad_block_requests(&slots, buffer));
    failures += report(restart_refused(buffer));
    failures += report(full_disk(&files));
    if failures == 0 {
        println!("storage-tests: all checks passed");
    }
    let _ = Client::<Init>::with_endpoint(slot::INIT, buffer).call(&InitRequest::PowerOff);
    u64::from(failures)
}

fn report(check: Check) -> u32 {
    match check {
        Ok(message) => {
            println!("PASS {message}");
            0
        }
        Err(message) => {
            println!("FAIL {message}");
            1
        }
    }
}

/// Waits until every client left its marker; returns the lowest badge.
fn wait_for_every_client(files: &Files) -> Option<u64> {
    loop {
        let badges: Vec<u64> = files
            .list("/")
            .ok()?
            .iter()
            .filter_map(|entry| entry.name.strip_prefix("done-")?.parse().ok())
            .collect();
        if badges.len() >= CLIENTS {
            return badges.into_iter().min();
        }
        runtime::syscall::sleep_ticks(5);
    }
}

/// Writes [`FILES`] files, moves every second one into a subdirectory,
/// removes every third, cuts every fifth short, then checks all of it.
fn many_files(files: &Files, badge: u64) -> Check {
    let home = format!("/client-{badge}");
    let failed = |what: &str, error| format!("client {badge}: {}", failed(what, error));
    files.make_directory(&home).map_err(|error| failed("mkdir", error))?;
    files
        .make_directory(&format!("{home}/moved"))
        .map_err(|error| failed("mkdir moved", error))?;
    for index in 0..FILES {
        files
            .write_file(&format!("{home}/file-{index}"), &content(badge, index))
            .map_err(|error| failed(&format!("writing file-{index}"), error))?;
    }
    // Where each file is now, and what it should hold (None: removed).
    let mut expected: Vec<(String, Option<Vec<u8>>)> = (0..FILES)
        .map(|index| (format!("{home}/file-{index}"), Some(content(badge, index))))
        .collect();
    for (index, (path, data)) in expected.iter_mut().enumerate() {
        if index % 2 == 0 {
            let moved = format!("{home}/moved/renamed-{index}");
            files
                .rename(path, &moved)
                .map_err(|error| failed(&format!("renaming file-{index}"), error))?;
            *path = moved;
        }
        if index % 3 == 0 {
            files
                .remove(path)
                .map_err(|error| failed(&format!("removing {path}"), error))?;
            *data = None;
        } else if index % 5 == 0 {
            let (handle, _) = files.open(path, false).map_err(|error| failed("open", error))?;
            let cut = files.truncate(handle, 50);
            files.close(handle).map_err(|error| failed("close", error))?;
            cut.map_err(|error| failed("truncate", error))?;
            if let Some(data) = data {
                data.truncate(50);
            }
        }
    }
    files.sync().map_err(|error| failed("sync", error))?;
    let mut kept = 0;
    for (path, data) in &expected {
        match (files.read_file(path), data) {
            (Ok(read), Some(data)) if read == *data => kept += 1,
            (Ok(_), Some(_)) => return Err(format!("client {badge}: {path} reads back different bytes")),
            (Err(FilesError::Fs(Error::NotFound)), None) => {}
            (result, _) => return Err(format!("client {badge}: {path}: unexpected {result:?}")),
        }
    }
    let listed = files.list(&home).map_err(|error| failed("list", error))?.len()
        + files
            .list(&format!("{home}/moved"))
            .map_err(|error| failed("list moved", error))?
            .len();
    // The subdirectory itself is one of the entries of `home`.
    if listed != kept + 1 {
        return Err(format!(
            "client {badge}: listed {listed} entries, expected {}",
            kept + 1
        ));
    }
    Ok(format!(
        "client {badge}: {FILES} files written, {} renamed, {} removed, {kept} verified with their listings",
        FILES.div_ceil(2),
        FILES.div_ceil(3)
    ))
}

/// Bad paths get clear errors and change nothing.
fn path_errors(files: &Files, badge: u64) -> Check {
    let long = "x".repeat(300);
    let cases: [(&str, String, Error); 5] = [
        ("a name of 300 bytes", format!("/{long}"), Error::NameTooLong),
        ("'..' above the root", String::from("/../escape"), Error::EscapesRoot),
        (
            "a missing parent",
            String::from("/no-such-directory/file"),
            Error::NotFound,
        ),
        ("a relative path", String::from("relative"), Error::InvalidPath),
        (
            "a file as a directory",
            format!("/done-{badge}/file"),
            Error::NotADirectory,
        ),
    ];
    for (what, path, expected) in cases {
        match files.open(&path, true) {
            Err(FilesError::Fs(error)) if error == expected => {}
            other => return Err(format!("path errors: {what}: expected {expected:?}, got {other:?}")),
        }
    }
    match files.open("/lost+found", false) {
        Err(FilesError::Fs(Error::IsADirectory)) => {}
        other => return Err(format!("path errors: opening a directory gave {other:?}")),
    }
    let entries = files.list("/").map_err(|error| failed("list /", error))?;
    if entries
        .iter()
        .any(|entry| entry.name.contains("escape") || entry.name.starts_with('x'))
    {
        return Err(String::from("path errors: a refused path left an entry behind"));
    }
    Ok(String::from(
        "path errors: long name, '..' above the root, missing parent, relative path, file as directory and directory as file refused",
    ))
}

/// The block driver refuses requests outside the disk or its buffers,
/// without touching the disk (the filesystem on it stays clean).
fn bad_block_requests(slots: &Slots, buffer: Buffer) -> Check {
    use block::{Disk, DiskError, Error as BlockError};
    let disk = Disk::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer)
        .map_err(|error| format!("block requests: cannot reach the driver: {error:?}"))?;
    let end = disk.sectors();
    let cases: [(&str, Result<(), DiskError>, BlockError); 5] = [
        (
            "a read past the end",
            disk.read_into(0, 0, end, 1),
            BlockError::OutOfRange,
        ),
        (
            "a write across the end",
            disk.write_from(0, 0, end - 1, 2),
            BlockError::OutOfRange,
        ),
        (
            "an unaligned buffer offset",
            disk.read_into(0, 100, 0, 1),
            BlockError::Misaligned,
        ),
        (
            "a transfer larger than the buffer",
            disk.read_into(0, 0, 0, 129),
            BlockError::Misaligned,
        ),
        (
            "a buffer never shared",
            disk.read_into(9, 0, 0, 1),
            BlockError::NoBuffer,
        ),
    ];
    for (what, result, expected) in cases {
        if result != Err(DiskError::Block(expected)) {
            return Err(format!("block requests: {what}: expected {expected:?}, got {result:?}"));
        }
    }
    let mut first = alloc::vec![0; 512];
    disk.read(0, &mut first)
        .map_err(|error| format!("block requests: a good read after the bad ones failed: {error:?}"))?;
    Ok(String::from(
        "block requests: past the end, across the end, unaligned, too large and unshared buffer refused; the driver serves on",
    ))
}

/// Without `control` in its description, a process may not restart others.
fn restart_refused(buffer: Buffer) -> Check {
    let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
    match init.call(&InitRequest::Restart {
        name: String::from("fs"),
    }) {
        Err(service::CallError::Server(service::ErrorCode::Denied)) => {
            Ok(String::from("restart: refused to a process without control"))
        }
        other => Err(format!("restart: a process without control got {other:?}")),
    }
}

/// Fills the disk: the write that does not fit fails with `NoSpace`, the
/// part that fit reads back, and everything else is untouched.
fn full_disk(files: &Files) -> Check {
    let failed = |what: &str, error| format!("full disk: {}", failed(what, error));
    let before = files.usage().map_err(|error| failed("usage", error))?;
    let (handle, _) = files.open("/filler", true).map_err(|error| failed("open", error))?;
    let chunk: Vec<u8> = (0..65536u32).map(|position| (position % 251) as u8).collect();
    let mut written = 0u64;
    let outcome = loop {
        match files.write(handle, written, &chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(error) => break error,
        }
        if written > before.blocks * u64::from(before.block_size) {
            break FilesError::Fs(Error::Io);
        }
    };
    files.close(handle).map_err(|error| failed("close", error))?;
    if outcome != FilesError::Fs(Error::NoSpace) {
        return Err(format!("full disk: the last write gave {outcome}, not 'no space'"));
    }
    let size = files.stat("/filler").map_err(|error| failed("stat", error))?.size;
    if size < written {
        return Err(format!(
            "full disk: {written} bytes were written but the filler holds {size}"
        ));
    }
    let (handle, _) = files.open("/filler", false).map_err(|error| failed("open", error))?;
    let mut offset = 0;
    let mut read = alloc::vec![0; chunk.len()];
    while offset < size {
        let count = files
            .read(handle, offset, &mut read)
            .map_err(|error| failed("reading the filler", error))?;
        if count == 0 || read[..count] != chunk[..count] {
            return Err(format!("full disk: the filler reads back wrong at {offset}"));
        }
        offset += count as u64;
    }
    files.close(handle).map_err(|error| failed("close", error))?;
    // The other client's files and this one's are intact.
    for client in files.list("/").map_err(|error| failed("list", error))? {
        let Some(other) = client
            .name
            .strip_prefix("client-")
            .and_then(|badge| badge.parse::<u64>().ok())
        else {
            continue;
        };
        if client.kind != Kind::Directory {
            return Err(format!("full disk: {} is no longer a directory", client.name));
        }
        for index in (1..FILES).filter(|index| index % 2 == 1 && index % 3 != 0 && index % 5 != 0) {
            let path = format!("/client-{other}/file-{index}");
            match files.read_file(&path) {
                Ok(read) if read == content(other, index) => {}
                other => return Err(format!("full disk: {path} damaged: {other:?}")),
            }
        }
    }
    files
        .remove("/filler")
        .map_err(|error| failed("removing the filler", error))?;
    files.sync().map_err(|error| failed("sync", error))?;
    let after = files.usage().map_err(|error| failed("usage", error))?;
    if after.free_blocks != before.free_blocks {
        return Err(format!(
            "full disk: {} blocks free before, {} after removing the filler",
            before.free_blocks, after.free_blocks
        ));
    }
    files
        .write_file("/after-full", b"space again")
        .and_then(|()| files.sync())
        .map_err(|error| failed("writing after", error))?;
    Ok(format!(
        "full disk: 'no space' after {} KiB; the part written and every other file read back intact; space returns",
        size / 1024
    ))
}
