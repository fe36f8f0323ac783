//! The legacy PCI interface (section 4.1.4.8): the registers the device's
//! I/O BAR 0 decodes, by offset, each little-endian.

/// Features the device offers (32 bits, read only).
pub const DEVICE_FEATURES: u16 = 0x00;
/// Features the driver accepts, among those offered (32 bits).
pub const DRIVER_FEATURES: u16 = 0x04;
/// The selected queue's address over [`crate::queue::ALIGNMENT`], a page
/// number; 0 takes the queue away (32 bits).
pub const QUEUE_ADDRESS: u16 = 0x08;
/// The selected queue's size, which the device fixes (16 bits, read only).
pub const QUEUE_SIZE: u16 = 0x0c;
/// Which queue the two registers above refer to (16 bits).
pub const QUEUE_SELECT: u16 = 0x0e;
/// Written with a queue's index when the driver has made buffers
/// available in it (16 bits).
pub const QUEUE_NOTIFY: u16 = 0x10;
/// The device status, [`crate::status`] bits (8 bits).
pub const STATUS: u16 = 0x12;
/// The interrupt status; reading it clears it and lowers the interrupt
/// line (8 bits).
pub const INTERRUPT_STATUS: u16 = 0x13;
/// Where the device type's own configuration starts (with MSI-X off).
pub const CONFIGURATION: u16 = 0x14;
