//! The kernel's machine-independent logic.
//!
//! Nothing here touches a register or a page table: every module builds and
//! is tested on the host with plain `cargo test`, and the kernel drives it
//! from `arch` code.

#![no_std]

extern crate alloc;

pub mod arena;
pub mod frame_allocator;
pub mod ipc;
pub mod queues;
pub mod scheduler;

pub mod capability_table;
