//! Typed capability handles and the operations every capability supports.
//!
//! A handle is a slot index plus the type the program believes is there;
//! the kernel checks the type on every use, so a wrong belief is an error
//! (`WrongObjectType`), never undefined behaviour.

use crate::syscall::call;
use abi::{Error, ErrorKind, ObjectType, Rights, Syscall};
use core::sync::atomic::{AtomicU64, Ordering};

/// A slot of this process's CSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(pub u64);

/// Something that names a capability slot.
pub trait Capability: Copy {
    /// The slot.
    fn slot(self) -> Slot;
}

macro_rules! handles {
    ($($(#[$doc:meta])* $name:ident,)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub Slot);

        impl Capability for $name {
            fn slot(self) -> Slot {
                self.0
            }
        }
    )*};
}

handles! {
    /// An IPC endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// A thread.
    Thread,
    /// An address space.
    AddressSpace,
    /// A CSpace.
    CSpace,
    /// A page of memory or device registers.
    Frame,
    /// A memory pool.
    Memory,
    /// An interrupt line.
    Irq,
    /// A range of I/O ports.
    IoPorts,
    /// Authority to make irq capabilities.
    IrqControl,
    /// Authority to make I/O-port capabilities.
    PortControl,
    /// Authority to make device frames.
    DeviceMemoryControl,
    /// A guest's physical memory.
    GuestMemory,
    /// A virtual CPU.
    Vcpu,
}

impl Capability for Slot {
    fn slot(self) -> Slot {
        self
    }
}

/// What a capability refers to, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The object's type.
    pub object_type: Option<ObjectType>,
    /// The capability's rights.
    pub rights: Rights,
    /// Its badge (0 if none).
    pub badge: u64,
    /// For a memory pool, the bytes it has left; 0 for other objects.
    pub available: u64,
    /// For a frame, its physical address (for device DMA); 0 otherwise.
    pub physical: u64,
}

/// Where a capability operation puts its result: a slot of this CSpace, or
/// of another CSpace this process holds a capability to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    cspace: u64,
    index: u64,
}

impl Destination {
    /// A slot of this process's own CSpace.
    pub const fn own(slot: Slot) -> Self {
        Self {
            cspace: 0,
            index: slot.0,
        }
    }

    /// Slot `index` of the CSpace `cspace` names.
    pub const fn in_cspace(cspace: CSpace, index: u64) -> Self {
        Self {
            cspace: cspace.0.0,
            index,
        }
    }
}

/// Copies a capability.
///
/// # Errors
/// As the kernel reports them (empty source, occupied destination, ...).
pub fn copy(source: impl Capability, destination: Destination) -> Result<(), Error> {
    call(
        Syscall::CapabilityCopy,
        &[source.slot().0, destination.cspace, destination.index],
    )
    .map(drop)
}

/// Copies a capability with fewer rights and, if `badge` is non-zero, a badge.
///
/// # Errors
/// As the kernel reports them.
pub fn mint(source: impl Capability, destination: Destination, rights: Rights, badge: u64) -> Result<(), Error> {
    let arguments = [
        source.slot().0,
        destination.cspace,
        destination.index,
        u64::from(rights.bits()),
        badge,
    ];
    call(Syscall::CapabilityMint, &arguments).map(drop)
}

/// Moves a capability.
///
/// # Errors
/// As the kernel reports them.
pub fn move_to(source: impl Capability, destination: Destination) -> Result<(), Error> {
    call(
        Syscall::CapabilityMove,
        &[source.slot().0, destination.cspace, destination.index],
    )
    .map(drop)
}

/// Deletes a capability.
///
/// # Errors
/// As the kernel reports them.
pub fn delete(target: Destination) -> Result<(), Error> {
    call(Syscall::CapabilityDelete, &[target.cspace, target.index]).map(drop)
}

/// Deletes every capability derived from one (not the one itself).
///
/// # Errors
/// As the kernel reports them.
pub fn revoke(target: Destination) -> Result<(), Error> {
    call(Syscall::CapabilityRevoke, &[target.cspace, target.index]).map(drop)
}

/// Says what a capability is.
///
/// # Errors
/// `EmptySlot` or `InvalidSlot` if there is none.
pub fn identify(capability: impl Capability) -> Result<Identity, Error> {
    let [object_type, rights, badge, available, physical] = call(Syscall::CapabilityIdentify, &[capability.slot().0])?;
    Ok(Identity {
        object_type: ObjectType::from_number(object_type),
        rights: Rights::from_bits_truncate(rights as u32),
        badge,
        available,
        physical,
    })
}

/// Hands out free slots of this process's CSpace, from `FIRST_FREE` up.
/// Slots are never reused: a program that needs many should manage its
/// own.
pub struct Slots {
    next: AtomicU64,
    end: u64,
}

impl Slots {
    /// Slots `first..end`.
    pub const fn new(first: u64, end: u64) -> Self {
        Self {
            next: AtomicU64::new(first),
            end,
        }
    }

    /// The next free slot.
    ///
    /// # Errors
    /// `InvalidSlot` when the range is used up.
    pub fn allocate(&self) -> Result<Slot, Error> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        if slot >= self.end {
            return Err(Error::new(ErrorKind::InvalidSlot));
        }
        Ok(Slot(slot))
    }
}
