//! The VMM's protocol, and the platform its guests see.
//!
//! Each VMM instance hosts at most one guest at a time. A client (the
//! shell's `vm` command) asks an idle instance to start a guest image from
//! the filesystem, asks for its status, types to its serial line, or stops
//! it.
//!
//! Input flows with back-pressure: the instance holds at most
//! [`MAX_INPUT`] bytes the guest's UART has not taken yet, and `Input`
//! takes only what fits, so nothing is lost when the guest does not read;
//! the client keeps the rest and offers it again later.
//!
//! What a guest finds (RAM layout, device ports and addresses,
//! hypercalls) is in the `vm-platform` crate, which the test guest shares.
//! The devices that implement it ([`devices`]), what the loaders share
//! ([`boot`]), the multiboot and Linux loaders' image checks and boot
//! information ([`multiboot`], [`linux`]) and the MP table ([`mptable`])
//! live here, apart from the machine, so that they build and test on the
//! host.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod devices;
pub mod input;
pub mod linux;
pub mod mptable;
pub mod multiboot;
pub mod time;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Vmm;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Starts the guest image at `image` (a path in the filesystem) with
    /// `memory_mib` of RAM and the command line `arguments`. The image is a
    /// 64-bit ELF guest, a multiboot kernel or a Linux bzImage; `modules`
    /// go to a multiboot kernel, or one, without arguments, to a Linux
    /// kernel as its initrd.
    Start {
        /// The image's path.
        image: String,
        /// Its command line (a 64-bit ELF guest gets it in `rdi`/`rsi`; a
        /// multiboot kernel gets the image's path, a space and these; a
        /// Linux kernel gets these, or [`linux::DEFAULT_COMMAND_LINE`] if
        /// empty, see [`linux::command_line`]).
        arguments: String,
        /// RAM in MiB (1..=[`MAX_MEMORY_MIB`]).
        memory_mib: u32,
        /// Multiboot modules, in order (at most
        /// [`multiboot::MAX_MODULES`]), or a Linux kernel's initrd.
        modules: Vec<BootModule>,
        /// A file in the filesystem that backs the guest's virtio disk
        /// (a whole number of 512-byte sectors), if it has one. The guest
        /// reads and writes it in place.
        disk: Option<String>,
    },
    /// What this instance is doing.
    Status,
    /// Stops the guest, if one runs.
    Stop,
    /// Types `bytes` on the guest's serial line (COM1), in order. The
    /// instance takes what fits in its input buffer ([`MAX_INPUT`] bytes
    /// not yet in the guest's receive FIFO) and answers
    /// [`Reply::Taken`] with how many; the guest's thread moves them into
    /// the FIFO as it empties, and wakes a halted guest. Not idempotent:
    /// the bytes would arrive twice.
    ///
    /// # Errors
    /// [`Refusal::BadInput`] when `bytes` is empty or longer than
    /// [`MAX_INPUT`]; [`Refusal::NotRunning`] when no guest runs;
    /// [`Refusal::InputFull`] when nothing fits (the guest is not reading):
    /// try again later.
    Input {
        /// What was typed (1..=[`MAX_INPUT`] bytes).
        bytes: Vec<u8>,
    },
}

/// The most bytes one `Input` carries, and the most an instance holds for
/// its guest: one 16550 receive FIFO's worth.
pub const MAX_INPUT: usize = devices::uart::FIFO_BYTES;

/// A module to load with the kernel: a multiboot module, or a Linux
/// kernel's initrd (without arguments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootModule {
    /// The file's path.
    pub path: String,
    /// Its command line: the kernel sees the path, a space and these.
    pub arguments: String,
}

impl BootModule {
    /// The string the kernel finds in the module list.
    pub fn command_line(&self) -> String {
        joined(&self.path, &self.arguments)
    }
}

/// `first`, and `rest` after a space if there is any.
pub fn joined(first: &str, rest: &str) -> String {
    if rest.is_empty() {
        String::from(first)
    } else {
        alloc::format!("{first} {rest}")
    }
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The guest is starting.
    Started,
    /// The instance's guest, if it has had one.
    Status(Option<GuestStatus>),
    /// The guest was stopped (or none ran).
    Stopped,
    /// The first `count` bytes of an `Input` were taken (at least one);
    /// the client offers the rest again.
    Taken {
        /// How many.
        count: u32,
    },
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// A guest runs here already.
    Busy,
    /// The image cannot be read.
    NoImage(String),
    /// The image is not one the VMM can boot, with the reason.
    BadImage(String),
    /// The disk file cannot be read or is not a disk, with the reason.
    BadDisk(String),
    /// Memory size out of range.
    BadMemorySize,
    /// The machine has no VT-x or AMD-V, or memory ran out.
    CannotRun(String),
    /// No guest runs here.
    NotRunning,
    /// An `Input` with no bytes or more than [`MAX_INPUT`].
    BadInput,
    /// The guest has not read the input it was given: nothing more fits.
    InputFull,
}

/// One guest's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStatus {
    /// The image it runs.
    pub image: String,
    /// Still running.
    pub running: bool,
    /// Exits handled so far.
    pub exits: u64,
    /// Exits per second over the last second it ran.
    pub exits_per_second: u64,
    /// Why it ended, once it has.
    pub ended: Option<String>,
}

/// The most RAM one guest gets.
pub const MAX_MEMORY_MIB: u32 = 256;

impl service::Protocol for Vmm {
    const SERVICE: &'static str = "vmm";
    type Request = Request;
    type Reply = Result<Reply, Refusal>;

    /// Status may be asked again; starting, stopping or typing twice may
    /// not.
    fn idempotent(request: &Request) -> bool {
        matches!(request, Request::Status)
    }
}
