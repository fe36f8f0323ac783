//! The virtio definitions both sides of our virtio share, written from
//! the virtio 1.x specification: the driver (`servers/virtio-blk`) and
//! the VMM's device models (`servers/vmm`, `devices::virtio`).
//!
//! Both speak the legacy ("transitional") PCI interface ([`legacy`],
//! section 4.1.4.8) with split virtqueues in their legacy layout
//! ([`queue`], section 2.7); [`block`] is the block device (section 5.2).
//! What only one side needs stays on that side.

#![cfg_attr(not(test), no_std)]

pub mod block;
pub mod legacy;
pub mod queue;

/// The PCI vendor ID of every virtio device (Red Hat's); a legacy device
/// gives it as its subsystem vendor ID too.
pub const VENDOR: u16 = 0x1af4;

/// Device types (section 5); a legacy device gives its type as its PCI
/// subsystem ID.
pub mod device_type {
    /// A block device.
    pub const BLOCK: u16 = 2;
    /// A console.
    pub const CONSOLE: u16 = 3;
}

/// The PCI device IDs of transitional devices (section 4.1.2.1), which
/// offer the legacy interface.
pub mod transitional_device_id {
    /// A block device.
    pub const BLOCK: u16 = 0x1001;
    /// A console.
    pub const CONSOLE: u16 = 0x1003;
}

/// Device status bits (section 2.1): the driver sets them as it brings
/// the device up; writing 0 resets the device.
pub mod status {
    /// The driver has seen the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: the device may use its queues.
    pub const DRIVER_OK: u8 = 4;
    /// Set by the device: it met an error it cannot recover from until
    /// the driver resets it.
    pub const NEEDS_RESET: u8 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}
