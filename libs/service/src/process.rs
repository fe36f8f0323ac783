//! What a process started by init finds in its CSpace.

/// The fixed slots of a process's CSpace.
pub mod slot {
    use runtime::capability::Slot;

    /// names, badged with the process's identity.
    pub const NAMES: Slot = Slot(1);
    /// Its memory pool (its quota).
    pub const MEMORY: Slot = Slot(2);
    /// Its own first thread.
    pub const THREAD: Slot = Slot(3);
    /// Its address space.
    pub const ADDRESS_SPACE: Slot = Slot(4);
    /// Its CSpace.
    pub const CSPACE: Slot = Slot(5);
    /// init's own service (process table, power off).
    pub const INIT: Slot = Slot(6);
    /// The first device capability: its interrupts, then its port ranges,
    /// then its device-memory pages, in the order the description lists
    /// them. The first free slot comes after them; init passes it in `rdi`.
    pub const FIRST_DEVICE: Slot = Slot(8);
}

/// Slots in each process's CSpace.
pub const CSPACE_SLOTS: u64 = 1024;
