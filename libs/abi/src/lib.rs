//! The kernel ABI: the one definition of everything that crosses the line
//! between the kernel and user space.
//!
//! The kernel and every user program depend on this crate, so a syscall
//! number, an error code, a right or a message layout is written here once
//! and nowhere else.
//!
//! # Register convention
//!
//! A user thread enters the kernel with `syscall`:
//!
//! | register | on entry | on return |
//! | --- | --- | --- |
//! | `rax` | [`Syscall`] number | status: 0, or an encoded [`Error`] |
//! | `rdi` | argument 0 (a slot, for IPC) | result 0 (the badge, for IPC) |
//! | `rsi` | argument 1 ([`MessageTag`], for IPC) | result 1 (the tag, for IPC) |
//! | `rdx`, `r10`, `r8`, `r9` | arguments 2..6 / message words 0..4 | results 2..6 / message words 0..4 |
//! | `r12`..`r15` | message words 4..8 | message words 4..8 |
//! | `rcx`, `r11` | (destroyed by `syscall`) | destroyed |
//!
//! A syscall that returns no result leaves every register but `rax`, `rcx`
//! and `r11` as it was. IPC syscalls that receive overwrite `rdi`, `rsi`
//! and the message registers with the message.

#![no_std]

pub mod debug_exit;
mod error;
pub mod fault;
pub mod init;
mod message;
mod object;
mod rights;
mod syscall;
pub mod vcpu;

pub use error::{Error, ErrorKind};
pub use message::{
    IPC_BUFFER_RECEIVE_SLOTS_OFFSET, IPC_BUFFER_SEND_CAPABILITIES_OFFSET, IPC_BUFFER_WORDS_OFFSET, IpcBuffer,
    MAX_CAPABILITIES, MAX_WORDS, MessageTag, REGISTER_WORDS,
};
pub use object::ObjectType;
pub use rights::Rights;
pub use syscall::{DEBUG_WRITE_MAX, KERNEL_PORTS, MAX_SLEEP_TICKS, PORT_STRING_MAX, Syscall};
