//! Kernel objects, one module each.

pub mod address_space;
pub mod thread;
