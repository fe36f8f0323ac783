//! fs: serves the files and directories of the ext2 filesystem on the
//! block device, to any number of clients.
//!
//! Each client has its own transfer buffer and its own handles. Blocks are
//! cached and written back on eviction and on `Sync`; after `Sync` returns,
//! every completed write is on the disk. A disk that holds no valid ext2
//! filesystem is refused with the reason, which every request then gets.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod data;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use block::{BufferIndex, Disk, DiskError};
use data::{ClientData, DataPath};
use ext2::{DeviceError, FileKind, FileSystem, InodeNumber};
use fs::{
    ENTRIES_PER_REPLY, Entry, Error, Fs, Handle, Kind, MAX_BUFFER_PAGES, MAX_TRANSFER, Metadata, Reply, Request, Usage,
};
use runtime::capability::{AddressSpace, Endpoint, Memory, Slot, Slots};
use runtime::ipc::Buffer;
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Response};

runtime::entry!(main, heap_kib = 8192);

const OWN_SPACE: AddressSpace = AddressSpace(slot::ADDRESS_SPACE);

/// The block driver, as ext2 sees it.
struct DiskDevice(Disk);

fn device_error(error: DiskError) -> DeviceError {
    // Rare (calls to a restarted driver are retried), and worth a line.
    runtime::println!("fs: the disk failed: {error:?}");
    let code = match error {
        DiskError::Block(block::Error::OutOfRange) => 1,
        DiskError::Block(_) => 2,
        DiskError::Call(_) => 3,
        DiskError::Setup(_) => 4,
    };
    DeviceError { code }
}

impl ext2::BlockDevice for DiskDevice {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }

    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(sector, buffer).map_err(device_error)
    }

    fn write(&mut self, sector: u64, buffer: &[u8]) -> Result<(), DeviceError> {
        self.0.write(sector, buffer).map_err(device_error)
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.0.flush().map_err(device_error)
    }
}

/// One client: its data path and open files.
#[derive(Default)]
struct Client {
    data: ClientData,
    handles: BTreeMap<Handle, InodeNumber>,
    next_handle: Handle,
}

/// The server's state.
struct Server {
    filesystem: Result<FileSystem<DiskDevice>, String>,
    clients: BTreeMap<u64, Client>,
    slots: Slots,
    receive: Slot,
    /// File data on its way between a transfer buffer and ext2: one buffer
    /// for every request, not an allocation each.
    scratch: Vec<u8>,
    /// The next free transfer-buffer index at the driver.
    next_disk_buffer: BufferIndex,
}

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let memory = Memory(slot::MEMORY);
    let filesystem = match Disk::connect(&slots, memory, OWN_SPACE, buffer) {
        Ok(disk) => FileSystem::mount(DiskDevice(disk)).map_err(|error| error.to_string()),
        Err(error) => Err(alloc::format!("no block device ({error:?})")),
    };
    match &filesystem {
        Ok(mounted) => {
            let usage = mounted.statfs();
            runtime::println!(
                "fs: mounted ext2, {} of {} KiB free",
                usage.free_blocks * u64::from(usage.block_size) / 1024,
                usage.total_blocks * u64::from(usage.block_size) / 1024
            );
        }
        Err(reason) => runtime::println!("fs: cannot mount the disk: {reason}"),
    }
    let Ok(receive) = slots.allocate() else { return 1 };
    let endpoint = Endpoint(slot::ENDPOINT);
    if service::names::register("fs", endpoint.0, buffer).is_err() {
        return 1;
    }
    let mut server = Server {
        filesystem,
        clients: BTreeMap::new(),
        slots,
        receive,
        scratch: alloc::vec![0; MAX_TRANSFER],
        next_disk_buffer: 1,
    };
    let error = service::serve::<Fs>(endpoint, buffer, Some(receive), |request| {
        let reply = server.handle(request.badge, request.body, request.capabilities);
        Ok::<_, ErrorCode>(Response::from(reply))
    });
    runtime::println!("fs: stopped serving: {error:?}");
    1
}

/// The protocol's error for one of ext2's.
fn fs_error(error: ext2::Error) -> Error {
    match error {
        ext2::Error::NotFound => Error::NotFound,
        ext2::Error::AlreadyExists => Error::AlreadyExists,
        ext2::Error::NotADirectory => Error::NotADirectory,
        ext2::Error::IsADirectory => Error::IsADirectory,
        ext2::Error::DirectoryNotEmpty => Error::DirectoryNotEmpty,
        ext2::Error::NameTooLong => Error::NameTooLong,
        ext2::Error::InvalidPath => Error::InvalidPath,
        ext2::Error::EscapesRoot => Error::EscapesRoot,
        ext2::Error::NoSpace => Error::NoSpace,
        ext2::Error::NoInodes => Error::NoInodes,
        ext2::Error::FileTooLarge => Error::FileTooLarge,
        ext2::Error::InvalidOperation(reason) => Error::NotAllowed(String::from(reason)),
        ext2::Error::Corrupt(reason) => Error::Corrupt(String::from(reason)),
        ext2::Error::Unsupported(_) | ext2::Error::BadSuperblock(_) => Error::NotMounted(error.to_string()),
        ext2::Error::Device(_) => Error::Io,
    }
}

fn kind(kind: FileKind) -> Kind {
    match kind {
        FileKind::File => Kind::File,
        FileKind::Directory => Kind::Directory,
        FileKind::SymbolicLink | FileKind::Other => Kind::Other,
    }
}

impl Server {
    fn handle(&mut self, badge: u64, request: Request, capabilities: u8) -> Result<Reply, Error> {
        if let Request::Share { page } = request {
            let client = self.clients.entry(badge).or_default();
            return client
                .data
                .transfer
                .accept(
                    (page, MAX_BUFFER_PAGES),
                    capabilities,
                    self.receive,
                    &self.slots,
                    OWN_SPACE,
                )
                .map(|()| Reply::Done)
                .map_err(|_| Error::NoBuffer);
        }
        let filesystem = self
            .filesystem
            .as_mut()
            .map_err(|reason| Error::NotMounted(reason.clone()))?;
        let client = self.clients.entry(badge).or_default();
        let writing = matches!(request, Request::Write { .. });
        match request {
            Request::Share { .. } => Err(Error::NoBuffer),
            Request::Open { path, create } => {
                let inode = match filesystem.lookup(&path) {
                    Err(ext2::Error::NotFound) if create => filesystem.create(&path),
                    other => other,
                }
                .map_err(fs_error)?;
                let metadata = filesystem.stat(inode).map_err(fs_error)?;
                if metadata.kind != FileKind::File {
                    return Err(Error::IsADirectory);
                }
                let handle = client.next_handle;
                client.next_handle = client.next_handle.wrapping_add(1);
                client.handles.insert(handle, inode);
                Ok(Reply::Opened {
                    handle,
                    size: metadata.size,
                })
            }
            Request::Close { handle } => client
                .handles
                .remove(&handle)
                .map(|_| Reply::Done)
                .ok_or(Error::BadHandle),
            Request::Read {
                handle,
                offset,
                length,
                buffer_offset,
            }
            | Request::Write {
                handle,
                offset,
                length,
                buffer_offset,
            } => {
                let inode = *client.handles.get(&handle).ok_or(Error::BadHandle)?;
                let mut path = DataPath {
                    filesystem,
                    scratch: &mut self.scratch,
                    next_disk_buffer: &mut self.next_disk_buffer,
                };
                let (length, at) = (length as usize, buffer_offset as usize);
                let count = match writing {
                    true => path.write(&mut client.data, inode, offset, length, at)?,
                    false => path.read(&mut client.data, inode, offset, length, at)?,
                };
                Ok(Reply::Count(count as u32))
            }
            Request::Truncate { handle, size } => {
                let inode = *client.handles.get(&handle).ok_or(Error::BadHandle)?;
                filesystem.truncate(inode, size).map(|()| Reply::Done).map_err(fs_error)
            }
            Request::MakeDirectory { path } => filesystem.mkdir(&path).map(|_| Reply::Done).map_err(fs_error),
            Request::Remove { path } => {
                let inode = filesystem.lookup(&path).map_err(fs_error)?;
                if self.is_open(inode) {
                    return Err(Error::Busy);
                }
                let filesystem = self
                    .filesystem
                    .as_mut()
                    .map_err(|reason| Error::NotMounted(reason.clone()))?;
                filesystem.remove(&path).map(|()| Reply::Done).map_err(fs_error)
            }
            Request::Rename { from, to } => {
                if let Ok(replaced) = filesystem.lookup(&to)
                    && self.is_open(replaced)
                {
                    return Err(Error::Busy);
                }
                let filesystem = self
                    .filesystem
                    .as_mut()
                    .map_err(|reason| Error::NotMounted(reason.clone()))?;
                filesystem.rename(&from, &to).map(|()| Reply::Done).map_err(fs_error)
            }
            Request::ReadDirectory { path, start } => {
                let inode = filesystem.lookup(&path).map_err(fs_error)?;
                let all = filesystem.read_dir(inode).map_err(fs_error)?;
                let entries: Vec<Entry> = all
                    .iter()
                    .skip(start as usize)
                    .take(ENTRIES_PER_REPLY)
                    .map(|entry| Entry {
                        name: entry.name.clone(),
                        kind: kind(entry.kind),
                    })
                    .collect();
                let more = (start as usize).saturating_add(entries.len()) < all.len();
                Ok(Reply::Entries { entries, more })
            }
            Request::Stat { path } => {
                let inode = filesystem.lookup(&path).map_err(fs_error)?;
                let metadata = filesystem.stat(inode).map_err(fs_error)?;
                Ok(Reply::Metadata(Metadata {
                    kind: kind(metadata.kind),
                    size: metadata.size,
                    links: metadata.links,
                    mode: metadata.permissions,
                    inode: metadata.inode.0,
                    allocated: metadata.blocks * 512,
                }))
            }
            Request::Sync => filesystem.sync().map(|()| Reply::Done).map_err(fs_error),
            Request::Usage => {
                let usage = filesystem.statfs();
                Ok(Reply::Usage(Usage {
                    block_size: usage.block_size,
                    blocks: usage.total_blocks,
                    free_blocks: usage.free_blocks,
                    inodes: usage.total_inodes,
                    free_inodes: usage.free_inodes,
                }))
            }
        }
    }

    /// Whether any client has `inode` open.
    fn is_open(&self, inode: InodeNumber) -> bool {
        self.clients
            .values()
            .any(|client| client.handles.values().any(|&open| open == inode))
    }
}
