//! Frame: one 4 KiB page of memory (or of device registers) that can be
//! mapped into address spaces and guest memories.

use crate::memory::frames;
use alloc::vec::Vec;
use x86_64::structures::paging::PhysFrame;

/// Where a frame is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedIn {
    /// An address space, by id.
    AddressSpace(u32),
    /// A guest memory, by id.
    GuestMemory(u32),
}

/// A frame object.
pub struct Frame {
    physical: PhysFrame,
    /// Device registers rather than RAM: mapped uncached, never freed.
    device: bool,
    /// Its physical address was handed out, so a device may hold it: it
    /// is quarantined when freed (`frames::free_after_quarantine`).
    exposed: bool,
    /// The pool that paid for it (none for device frames).
    pool: Option<u32>,
    /// Where it is mapped, and at which (virtual or guest-physical) address.
    mappings: Vec<(MappedIn, u64)>,
}

impl Frame {
    /// A frame of RAM paid for by `pool`.
    pub fn ram(physical: PhysFrame, pool: u32) -> Self {
        Self {
            physical,
            device: false,
            exposed: false,
            pool: Some(pool),
            mappings: Vec::new(),
        }
    }

    /// A frame of RAM paid for by `pool` that a device will be given
    /// (part of a physically consecutive run): quarantined when freed.
    pub fn dma(physical: PhysFrame, pool: u32) -> Self {
        Self {
            exposed: true,
            ..Self::ram(physical, pool)
        }
    }

    /// A frame of device registers.
    pub fn device(physical: PhysFrame) -> Self {
        Self {
            physical,
            device: true,
            exposed: false,
            pool: None,
            mappings: Vec::new(),
        }
    }

    /// The page it names.
    pub fn physical(&self) -> PhysFrame {
        self.physical
    }

    /// The page it names, for a driver that will hand it to a device.
    pub fn expose(&mut self) -> PhysFrame {
        self.exposed = true;
        self.physical
    }

    /// Whether it is device memory.
    pub fn is_device(&self) -> bool {
        self.device
    }

    /// The pool to refund when it goes.
    pub fn pool(&self) -> Option<u32> {
        self.pool
    }

    /// Where it is mapped.
    pub fn mappings(&self) -> impl Iterator<Item = (MappedIn, u64)> + '_ {
        self.mappings.iter().copied()
    }

    /// Records a new mapping.
    pub fn add_mapping(&mut self, mapper: MappedIn, address: u64) {
        self.mappings.push((mapper, address));
    }

    /// Forgets a mapping (it was unmapped, or what held it died).
    pub fn forget_mapping(&mut self, mapper: MappedIn, address: u64) {
        self.mappings.retain(|&mapping| mapping != (mapper, address));
    }

    /// Gives the page back to the allocator (RAM only). The caller has
    /// removed every mapping first.
    pub fn release(self) {
        match (self.device, self.exposed) {
            (true, _) => {}
            (false, true) => frames::free_after_quarantine(self.physical),
            (false, false) => frames::free(self.physical),
        }
    }
}
