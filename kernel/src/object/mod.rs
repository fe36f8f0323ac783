//! Kernel objects, one module each, and the table that holds them all.
//!
//! Every object is reached only through a capability. [`Objects`] holds
//! the capability table, one arena per kind of object and the IPC state
//! machine, behind the one big kernel lock. When the last capability to an
//! object goes, [`Objects::destroy`] takes the object down; destroying one
//! object can release others (a CSpace's capabilities), so destruction
//! works through a list rather than by recursion.

pub mod address_space;
pub mod frame;
pub mod guest_memory;
pub mod irq;
pub mod memory;
pub mod thread;
pub mod vcpu;

use crate::arch::{fpu, paging};
use abi::{ObjectType, Rights};
use address_space::AddressSpace;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use frame::{Frame, MappedIn};
use guest_memory::GuestMemory;
use kernel_core::arena::Arena;
use kernel_core::capability_table::{CSpaceId, Capability, CapabilityTable, SlotRef};
use kernel_core::ipc::{EndpointId, Ipc, NotificationId};
use kernel_core::scheduler::ThreadId;
use memory::Pools;
use spin::Mutex;
use thread::Thread;
use vcpu::Vcpu;

/// What a capability refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectRef {
    /// A thread.
    Thread(ThreadId),
    /// An address space, by id in [`Objects::address_spaces`].
    AddressSpace(u32),
    /// A CSpace.
    CSpace(CSpaceId),
    /// An endpoint.
    Endpoint(EndpointId),
    /// A notification.
    Notification(NotificationId),
    /// A frame, by id in [`Objects::frames`].
    Frame(u32),
    /// A memory pool, by id in [`Pools`].
    Memory(u32),
    /// One interrupt line.
    Irq(u8),
    /// I/O ports `first..first + count`.
    IoPorts {
        /// First port.
        first: u16,
        /// Number of ports.
        count: u16,
    },
    /// Authority to make irq capabilities.
    IrqControl,
    /// Authority to make I/O-port capabilities.
    PortControl,
    /// Authority to make device frames.
    DeviceMemoryControl,
    /// A guest memory, by id in [`Objects::guest_memories`].
    GuestMemory(u32),
    /// A vcpu, by id in [`Objects::vcpus`].
    Vcpu(u32),
}

impl ObjectRef {
    /// The ABI's name for this object's type.
    pub fn object_type(self) -> ObjectType {
        match self {
            Self::Thread(_) => ObjectType::Thread,
            Self::AddressSpace(_) => ObjectType::AddressSpace,
            Self::CSpace(_) => ObjectType::CSpace,
            Self::Endpoint(_) => ObjectType::Endpoint,
            Self::Notification(_) => ObjectType::Notification,
            Self::Frame(_) => ObjectType::Frame,
            Self::Memory(_) => ObjectType::Memory,
            Self::Irq(_) => ObjectType::Irq,
            Self::IoPorts { .. } => ObjectType::IoPorts,
            Self::IrqControl => ObjectType::IrqControl,
            Self::PortControl => ObjectType::PortControl,
            Self::DeviceMemoryControl => ObjectType::DeviceMemoryControl,
            Self::GuestMemory(_) => ObjectType::GuestMemory,
            Self::Vcpu(_) => ObjectType::Vcpu,
        }
    }
}

/// The capability form the kernel uses.
pub type Cap = Capability<ObjectRef>;

/// A capability with every right and no badge: what a new object's first
/// capability carries.
pub fn original(object: ObjectRef) -> Cap {
    Capability {
        object,
        rights: Rights::ALL.bits(),
        badge: 0,
    }
}

/// Every kernel object.
pub struct Objects {
    /// All capabilities and their derivation.
    pub capabilities: CapabilityTable<ObjectRef>,
    /// Thread, endpoint and notification states, and the scheduler.
    pub ipc: Ipc,
    /// Threads (boxed: their saved registers must not move).
    pub threads: Arena<Box<Thread>>,
    /// Address spaces.
    pub address_spaces: Arena<AddressSpace>,
    /// Frames.
    pub frames: Arena<Frame>,
    /// Memory pools.
    pub pools: Pools,
    /// The pool that paid for each CSpace a process made, and how much,
    /// by CSpace id: refunded when the CSpace goes.
    pub cspace_charges: BTreeMap<u32, (u32, u64)>,
    /// Endpoint ids in use, and which pool paid for each.
    pub endpoints: Arena<u32>,
    /// Notification ids in use, and which pool paid for each.
    pub notifications: Arena<u32>,
    /// Interrupt lines and what they signal.
    pub irqs: irq::IrqTable,
    /// Guest memories.
    pub guest_memories: Arena<GuestMemory>,
    /// Vcpus (boxed: their FPU areas must stay aligned and in place).
    pub vcpus: Arena<Box<Vcpu>>,
    /// The thread whose registers and address space are loaded.
    pub on_cpu: Option<ThreadId>,
    /// The first thread; the system stops when it ends.
    pub init: Option<ThreadId>,
    /// The thread whose registers the FPU holds.
    pub fpu_owner: Option<ThreadId>,
}

/// Built at compile time: the tables are large enough that building them
/// on the kernel stack would overflow it.
static OBJECTS: Mutex<Objects> = Mutex::new(Objects {
    capabilities: CapabilityTable::new(),
    ipc: Ipc::new(),
    threads: Arena::new(),
    address_spaces: Arena::new(),
    frames: Arena::new(),
    pools: Pools::new(),
    cspace_charges: BTreeMap::new(),
    endpoints: Arena::new(),
    notifications: Arena::new(),
    irqs: irq::IrqTable::new(),
    guest_memories: Arena::new(),
    vcpus: Arena::new(),
    on_cpu: None,
    init: None,
    fpu_owner: None,
});

/// Runs `f` with the kernel's objects, under the big kernel lock.
pub fn with<R>(f: impl FnOnce(&mut Objects) -> R) -> R {
    f(&mut OBJECTS.lock())
}

impl Objects {
    /// Takes down objects whose last capability went, and whatever their
    /// destruction releases in turn.
    pub fn destroy(&mut self, objects: Vec<ObjectRef>) {
        let mut pending = objects;
        while let Some(object) = pending.pop() {
            match object {
                ObjectRef::Thread(thread) => pending.extend(self.destroy_thread(thread)),
                ObjectRef::AddressSpace(id) => {
                    if let Some(space) = self.address_spaces.remove(id) {
                        // A thread can take its own address space down (its
                        // last capability deleted with it): leave it first.
                        paging::leave_if_loaded(space.root());
                        for (address, frame) in space.frame_mappings() {
                            if let Some(frame) = self.frames.get_mut(frame) {
                                frame.forget_mapping(MappedIn::AddressSpace(id), address);
                            }
                        }
                        self.pools.refund(space.pool(), space.charged());
                    }
                }
                ObjectRef::CSpace(cspace) => {
                    if let Ok(released) = self.capabilities.destroy_cspace(cspace) {
                        pending.extend(released);
                    }
                    if let Some((pool, cost)) = self.cspace_charges.remove(&cspace.0) {
                        self.pools.refund(Some(pool), cost);
                    }
                }
                ObjectRef::Endpoint(endpoint) => {
                    self.ipc.remove_endpoint(endpoint);
                    if let Some(pool) = self.endpoints.remove(endpoint.0) {
                        self.pools.refund(Some(pool), memory::ENDPOINT_COST);
                    }
                    self.deliver_peer_died();
                }
                ObjectRef::Notification(notification) => {
                    self.irqs.forget_notification(notification);
                    self.ipc.remove_notification(notification);
                    if let Some(pool) = self.notifications.remove(notification.0) {
                        self.pools.refund(Some(pool), memory::NOTIFICATION_COST);
                    }
                    self.deliver_peer_died();
                }
                ObjectRef::Frame(id) => {
                    if let Some(frame) = self.frames.remove(id) {
                        for (mapper, address) in frame.mappings() {
                            match mapper {
                                MappedIn::AddressSpace(space) => {
                                    if let Some(space) = self.address_spaces.get_mut(space) {
                                        space.unmap_frame(address);
                                    }
                                }
                                MappedIn::GuestMemory(memory) => {
                                    if let Some(memory) = self.guest_memories.get_mut(memory) {
                                        memory.unmap(address);
                                    }
                                }
                            }
                        }
                        self.pools.refund(frame.pool(), memory::FRAME_COST);
                        frame.release();
                    }
                }
                ObjectRef::Memory(pool) => self.pools.destroy(pool),
                ObjectRef::Irq(line) => pending.extend(self.irqs.release(&mut self.capabilities, line)),
                ObjectRef::GuestMemory(id) => {
                    if let Some(memory) = self.guest_memories.remove(id) {
                        for (address, frame) in memory.frame_mappings() {
                            if let Some(frame) = self.frames.get_mut(frame) {
                                frame.forget_mapping(MappedIn::GuestMemory(id), address);
                            }
                        }
                        self.pools.refund(Some(memory.pool()), memory.charged());
                    }
                }
                ObjectRef::Vcpu(id) => {
                    if let Some(vcpu) = self.vcpus.remove(id) {
                        self.pools.refund(Some(vcpu.pool), memory::VCPU_COST);
                        pending.extend(self.capabilities.destroy_cspace(vcpu.references).unwrap_or_default());
                    }
                }
                ObjectRef::IoPorts { .. }
                | ObjectRef::IrqControl
                | ObjectRef::PortControl
                | ObjectRef::DeviceMemoryControl => {}
            }
        }
    }

    /// Takes a thread down; returns the objects its references held.
    fn destroy_thread(&mut self, id: ThreadId) -> Vec<ObjectRef> {
        self.ipc.remove_thread(id);
        self.deliver_peer_died();
        if self.on_cpu == Some(id) {
            self.on_cpu = None;
        }
        if self.fpu_owner == Some(id) {
            self.fpu_owner = None;
        }
        let Some(thread) = self.threads.remove(id.0) else {
            return Vec::new();
        };
        self.pools.refund(thread.pool, memory::THREAD_COST);
        self.capabilities.destroy_cspace(thread.references).unwrap_or_default()
    }

    /// Gives every thread the IPC layer woke because its peer died the
    /// `PeerDied` status.
    pub fn deliver_peer_died(&mut self) {
        let status = abi::Error::new(abi::ErrorKind::PeerDied).to_status();
        for thread in self.ipc.take_peer_died() {
            if let Some(thread) = self.threads.get_mut(thread.0) {
                thread.context.rax = status;
            }
        }
    }

    /// Gives the FPU to `thread`: saves the owner's registers, loads the
    /// thread's, and stops trapping FPU use.
    pub fn take_fpu(&mut self, thread: ThreadId) {
        fpu::trap_next_use(false);
        if self.fpu_owner == Some(thread) {
            return;
        }
        if let Some(owner) = self.fpu_owner.and_then(|owner| self.threads.get_mut(owner.0)) {
            owner.fpu.save();
        }
        if let Some(next) = self.threads.get(thread.0) {
            next.fpu.restore();
        }
        self.fpu_owner = Some(thread);
    }

    /// Deletes the capability in `slot` and takes down its object if that
    /// was the last capability.
    pub fn delete_capability(&mut self, slot: SlotRef) {
        if let Ok(Some(object)) = self.capabilities.delete(slot) {
            self.destroy(alloc::vec![object]);
        }
    }
}
