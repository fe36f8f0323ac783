//! The filesystem protocol, and [`Files`], the client every program uses.
//!
//! Paths are absolute and `/`-separated. Files are opened into handles
//! that belong to the client that opened them. File data moves through a
//! transfer buffer the client shares with the server (as with the block
//! protocol), never in messages.

#![no_std]

extern crate alloc;

mod client;

pub use client::{Files, FilesError};

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Fs;

/// Pages in a client's transfer buffer at most.
pub const MAX_BUFFER_PAGES: u8 = 16;
/// The most bytes one read or write moves.
pub const MAX_TRANSFER: usize = MAX_BUFFER_PAGES as usize * 4096;
/// Directory entries in one reply at most (a reply must fit a message).
pub const ENTRIES_PER_REPLY: usize = 16;

/// A client's handle to an open file.
pub type Handle = u32;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The frame capability sent along becomes page `page` of the caller's
    /// transfer buffer. Idempotent.
    Share {
        /// Page index, below [`MAX_BUFFER_PAGES`].
        page: u8,
    },
    /// Opens a regular file, creating it (empty) if `create` and it does
    /// not exist. Replies [`Reply::Opened`].
    Open {
        /// Absolute path.
        path: String,
        /// Create it if missing.
        create: bool,
    },
    /// Closes a handle.
    Close {
        /// The handle.
        handle: Handle,
    },
    /// Reads up to `length` bytes at `offset` into the transfer buffer at
    /// `buffer_offset`. Replies [`Reply::Count`] (short at the end of the
    /// file). Idempotent.
    Read {
        /// The handle.
        handle: Handle,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes wanted.
        length: u32,
        /// Where in the transfer buffer.
        buffer_offset: u32,
    },
    /// Writes `length` bytes from the transfer buffer at `buffer_offset` to
    /// the file at `offset`, extending it. Replies [`Reply::Count`].
    /// Idempotent (the same bytes land in the same place).
    Write {
        /// The handle.
        handle: Handle,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes to write.
        length: u32,
        /// Where in the transfer buffer.
        buffer_offset: u32,
    },
    /// Sets the file's size: shorter frees its blocks, longer reads as
    /// zeros. Idempotent.
    Truncate {
        /// The handle.
        handle: Handle,
        /// The new size.
        size: u64,
    },
    /// Makes a directory.
    MakeDirectory {
        /// Absolute path; its parent must exist.
        path: String,
    },
    /// Removes a file, or an empty directory. A file some client has open
    /// is refused ([`Error::Busy`]).
    Remove {
        /// Absolute path.
        path: String,
    },
    /// Renames (moves) a file or directory; an existing file at `to` is
    /// replaced.
    Rename {
        /// Absolute path now.
        from: String,
        /// Absolute path after.
        to: String,
    },
    /// Lists a directory from entry `start` on, at most
    /// [`ENTRIES_PER_REPLY`] at a time. Replies [`Reply::Entries`].
    /// Idempotent.
    ReadDirectory {
        /// Absolute path.
        path: String,
        /// Entries to skip.
        start: u32,
    },
    /// What a path is. Replies [`Reply::Metadata`]. Idempotent.
    Stat {
        /// Absolute path.
        path: String,
    },
    /// Writes everything cached to the disk and flushes it: every
    /// completed write is durable when this returns. Idempotent.
    Sync,
    /// Space used and free. Replies [`Reply::Usage`]. Idempotent.
    Usage,
}

/// Successful replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A file was opened.
    Opened {
        /// Its handle.
        handle: Handle,
        /// Its size.
        size: u64,
    },
    /// Bytes read or written.
    Count(u32),
    /// Some entries of a directory.
    Entries {
        /// The entries.
        entries: Vec<Entry>,
        /// Whether more follow.
        more: bool,
    },
    /// What a path is.
    Metadata(Metadata),
    /// Space used and free.
    Usage(Usage),
    /// Done.
    Done,
}

/// What kind of thing a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// Anything else (a symbolic link, a device node).
    Other,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
}

/// What [`Request::Stat`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// What it is.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Names that refer to it.
    pub links: u16,
    /// Permission bits.
    pub mode: u16,
    /// Its inode number.
    pub inode: u32,
    /// Bytes of disk it takes (data and indirect blocks).
    pub allocated: u64,
}

/// What [`Request::Usage`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Inodes in the filesystem.
    pub inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// No such file or directory.
    NotFound,
    /// Something already has that name.
    AlreadyExists,
    /// A path component is not a directory.
    NotADirectory,
    /// The operation needs a file and got a directory.
    IsADirectory,
    /// The directory is not empty.
    DirectoryNotEmpty,
    /// A name is longer than 255 bytes.
    NameTooLong,
    /// The path is not absolute, or has an empty or invalid name.
    InvalidPath,
    /// A `..` would go above `/`.
    EscapesRoot,
    /// The disk is full.
    NoSpace,
    /// No inodes are left.
    NoInodes,
    /// The file would be larger than the format allows.
    FileTooLarge,
    /// The file is open.
    Busy,
    /// The operation is not allowed here: the reason (removing `/`,
    /// moving a directory into itself).
    NotAllowed(String),
    /// Not a handle of this client.
    BadHandle,
    /// The transfer buffer lacks a page the request touches.
    NoBuffer,
    /// The filesystem on disk is inconsistent: the reason.
    Corrupt(String),
    /// The disk failed.
    Io,
    /// There is no filesystem to serve: why the disk was refused.
    NotMounted(String),
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::NotFound => formatter.write_str("no such file or directory"),
            Self::AlreadyExists => formatter.write_str("it already exists"),
            Self::NotADirectory => formatter.write_str("not a directory"),
            Self::IsADirectory => formatter.write_str("is a directory"),
            Self::DirectoryNotEmpty => formatter.write_str("the directory is not empty"),
            Self::NameTooLong => formatter.write_str("a name is longer than 255 bytes"),
            Self::InvalidPath => formatter.write_str("not a valid absolute path"),
            Self::EscapesRoot => formatter.write_str("'..' goes above '/'"),
            Self::NoSpace => formatter.write_str("no space left on the disk"),
            Self::NoInodes => formatter.write_str("no inodes left on the disk"),
            Self::FileTooLarge => formatter.write_str("the file would be too large"),
            Self::Busy => formatter.write_str("the file is open"),
            Self::NotAllowed(reason) => write!(formatter, "not allowed: {reason}"),
            Self::BadHandle => formatter.write_str("not an open file of this client"),
            Self::NoBuffer => formatter.write_str("the transfer buffer is not shared"),
            Self::Corrupt(reason) => write!(formatter, "the filesystem is corrupt: {reason}"),
            Self::Io => formatter.write_str("the disk failed"),
            Self::NotMounted(reason) => write!(formatter, "no filesystem: {reason}"),
        }
    }
}

impl service::Protocol for Fs {
    const SERVICE: &'static str = "fs";
    type Request = Request;
    type Reply = Result<Reply, Error>;

    /// Besides the requests that change nothing twice, `Open` and `Close`
    /// count: a retry happens only after the server died, and a dead
    /// server's handles died with it.
    fn idempotent(request: &Request) -> bool {
        matches!(
            request,
            Request::Share { .. }
                | Request::Open { .. }
                | Request::Close { .. }
                | Request::Read { .. }
                | Request::Write { .. }
                | Request::Truncate { .. }
                | Request::ReadDirectory { .. }
                | Request::Stat { .. }
                | Request::Sync
                | Request::Usage
        )
    }
}
