//! The kernel ABI: the one definition of everything that crosses the line
//! between the kernel and user space.
//!
//! The kernel and every user program depend on this crate, so a syscall
//! number, an error code or a register convention is written here once and
//! nowhere else.
//!
//! # Register convention
//!
//! A user thread enters the kernel with `syscall`:
//!
//! | register | on entry            | on return                      |
//! | -------- | ------------------- | ------------------------------ |
//! | `rax`    | [`Syscall`] number  | status: 0, or an encoded [`Error`] |
//! | `rdi`    | argument 0          | preserved                      |
//! | `rsi`    | argument 1          | preserved                      |
//! | `rdx`    | argument 2          | preserved                      |
//! | `r10`    | argument 3          | preserved                      |
//! | `r8`     | argument 4          | preserved                      |
//! | `r9`     | argument 5          | preserved                      |
//! | `rcx`, `r11` | (destroyed by `syscall`) | destroyed              |
//!
//! All other registers are preserved.

#![no_std]

pub mod debug_exit;
mod error;
mod syscall;

pub use error::{Error, ErrorKind};
pub use syscall::{DEBUG_WRITE_MAX, Syscall};
