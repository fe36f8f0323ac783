//! The kernel's machine-independent logic.
//!
//! Nothing here touches a register or a page table: every module builds and
//! is tested on the host with plain `cargo test`, and the kernel drives it
//! from `arch` code.

#![no_std]
// No panics on paths a user can reach: every exception carries its reason.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

extern crate alloc;

pub mod arena;
pub mod frame_allocator;
pub mod ipc;
pub mod quarantine;
pub mod queues;
pub mod scheduler;
pub mod slab;

pub mod capability_table;

#[cfg(test)]
mod test_random;
