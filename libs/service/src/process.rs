//! What a process started by init finds in its CSpace and its start
//! arguments.

use runtime::capability::{AddressSpace, CSpace, Memory, Slots};
use runtime::thread::ThreadSpawn;

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
    /// The endpoint a process that provides services receives on. init
    /// made it, so it outlives the process: a restarted server gets the
    /// same endpoint, and clients queued on it wait for the new copy.
    pub const ENDPOINT: Slot = Slot(7);
    /// The first device capability: its interrupts, then its port ranges,
    /// then its device-memory pages, in the order the description lists
    /// them. The first free slot comes after them; init passes it in `rdi`.
    pub const FIRST_DEVICE: Slot = Slot(8);
}

/// Slots in each process's CSpace.
pub const CSPACE_SLOTS: u64 = 1024;

/// What init tells a process as it starts it (in `rdi` and `rsi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// The first slot of its CSpace not filled by init.
    pub first_free: u64,
    /// Its badge: how servers and init know it.
    pub badge: u32,
    /// 1 for its first start, one more for each restart: a restarted
    /// server may have state to recover.
    pub generation: u32,
}

impl Start {
    /// The two start arguments: `rsi` holds the badge in its low half and
    /// the generation in its high half.
    pub fn arguments(self) -> [u64; 2] {
        [
            self.first_free,
            u64::from(self.badge) | (u64::from(self.generation) << 32),
        ]
    }

    /// What this process was started with.
    pub fn get() -> Self {
        let [first_free, packed] = runtime::start_arguments();
        Self {
            first_free,
            badge: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

/// More threads in this process: paid from its pool, in its address space
/// and CSpace (the slots init filled), their capabilities in `slots`. They
/// take this thread's priority (a thread of higher priority than another of
/// its process could spin for ever on a lock, the heap's, the other holds)
/// and have no fault endpoint.
pub fn thread_spawner(slots: &Slots) -> ThreadSpawn<'_> {
    ThreadSpawn {
        memory: Memory(slot::MEMORY),
        address_space: AddressSpace(slot::ADDRESS_SPACE),
        cspace: CSpace(slot::CSPACE),
        slots,
        fault_endpoint: None,
        priority: None,
        stack_pages: runtime::thread::STACK_PAGES,
    }
}
