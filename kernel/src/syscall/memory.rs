//! Object creation and memory mapping: Create, Map, Unmap.

use super::{Arguments, Completion, capability, empty_slot, wrong_type};
use crate::arch::fpu::FpuState;
use crate::memory::frames;
use crate::memory::layout::USER_END;
use crate::object::address_space::{AddressSpace, MapError};
use crate::object::frame::{Frame, MappedIn};
use crate::object::guest_memory::GuestMemory;
use crate::object::memory::{
    CSPACE_BASE_COST, CSPACE_SLOT_COST, ENDPOINT_COST, FRAME_COST, NOTIFICATION_COST, THREAD_COST, VCPU_COST,
};
use crate::object::thread::{Thread, reference};
use crate::object::vcpu::{self, Vcpu};
use crate::object::{ObjectRef, Objects, original};
use abi::{Error, ErrorKind, ObjectType, Rights};
use alloc::boxed::Box;
use alloc::format;
use kernel_core::ipc::{EndpointId, NotificationId};
use kernel_core::scheduler::ThreadId;
use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags};

/// The most slots a CSpace may have.
const MAX_CSPACE_SLOTS: u64 = 1 << 16;

/// Create: makes an object from a pool; its capability is a child of the
/// pool's, so revoking the pool capability destroys everything made from it.
pub fn create(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (pool_slot, pool_capability) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let ObjectRef::Memory(pool) = pool_capability.object else {
        return Err(wrong_type(0));
    };
    let kind = ObjectType::from_number(arguments.get(1)).ok_or(Error::in_argument(ErrorKind::InvalidArgument, 1))?;
    let destination = empty_slot(objects, caller, arguments.get(2), 2)?;
    let size = arguments.get(3);
    if kind == ObjectType::Frame && size > 1 {
        return create_contiguous_frames(objects, caller, (pool_slot, pool), arguments.get(2), size);
    }
    let out_of_memory = Error::new(ErrorKind::OutOfMemory);
    let cost = match kind {
        ObjectType::Thread => THREAD_COST,
        ObjectType::Endpoint => ENDPOINT_COST,
        ObjectType::Notification => NOTIFICATION_COST,
        ObjectType::Frame => FRAME_COST,
        ObjectType::CSpace if (1..=MAX_CSPACE_SLOTS).contains(&size) => CSPACE_BASE_COST + size * CSPACE_SLOT_COST,
        ObjectType::CSpace => return Err(Error::in_argument(ErrorKind::InvalidArgument, 3)),
        ObjectType::Memory if size > 0 => 0, // charged by `create_child`
        ObjectType::Memory => return Err(Error::in_argument(ErrorKind::InvalidArgument, 3)),
        ObjectType::AddressSpace => 0, // charged by `AddressSpace::new`
        ObjectType::GuestMemory => 0,  // charged by `GuestMemory::new`
        ObjectType::Vcpu if crate::arch::virt::backend().is_none() => {
            return Err(Error::in_argument(ErrorKind::NotSupported, 1));
        }
        ObjectType::Vcpu => VCPU_COST,
        _ => return Err(Error::in_argument(ErrorKind::InvalidArgument, 1)),
    };
    if objects.pools.available(pool) < cost {
        return Err(out_of_memory);
    }
    // Everything is checked; from here on only memory can run short, and
    // each branch undoes its charge if it does.
    objects.pools.charge(pool, cost).map_err(|_| out_of_memory)?;
    let refund = |objects: &mut Objects| objects.pools.refund(Some(pool), cost);
    let object = match kind {
        ObjectType::Thread => {
            let references = objects.capabilities.create_cspace(reference::SLOTS);
            let priority = objects.ipc.priority(caller).unwrap_or(0);
            let thread = Thread::new(format!("thread-{}", objects.threads.len()), references, Some(pool));
            let Some(id) = objects.threads.insert(Box::new(thread)) else {
                let _ = objects.capabilities.destroy_cspace(references);
                refund(objects);
                return Err(out_of_memory);
            };
            if let Some(thread) = objects.threads.get_mut(id) {
                thread.name = format!("thread-{id}");
            }
            objects.ipc.add_thread(ThreadId(id), priority);
            ObjectRef::Thread(ThreadId(id))
        }
        ObjectType::Endpoint => {
            let Some(id) = objects.endpoints.insert(pool) else {
                refund(objects);
                return Err(out_of_memory);
            };
            objects.ipc.add_endpoint(EndpointId(id));
            ObjectRef::Endpoint(EndpointId(id))
        }
        ObjectType::Notification => {
            let Some(id) = objects.notifications.insert(pool) else {
                refund(objects);
                return Err(out_of_memory);
            };
            objects.ipc.add_notification(NotificationId(id));
            ObjectRef::Notification(NotificationId(id))
        }
        ObjectType::Frame => {
            let Some(page) = frames::allocate_zeroed() else {
                refund(objects);
                return Err(out_of_memory);
            };
            let Some(id) = objects.frames.insert(Frame::ram(page, pool)) else {
                frames::free(page);
                refund(objects);
                return Err(out_of_memory);
            };
            ObjectRef::Frame(id)
        }
        ObjectType::CSpace => {
            let cspace = objects.capabilities.create_cspace(size as u32);
            objects.cspace_charges.insert(cspace.0, (pool, cost));
            ObjectRef::CSpace(cspace)
        }
        ObjectType::Memory => ObjectRef::Memory(objects.pools.create_child(pool, size).map_err(|_| out_of_memory)?),
        ObjectType::GuestMemory => {
            // `backend` is checked above for vcpus; guest memory without a
            // backend is refused the same way.
            let Some(backend) = crate::arch::virt::backend() else {
                return Err(Error::in_argument(ErrorKind::NotSupported, 1));
            };
            let format = crate::arch::virt::TableFormat::of(backend);
            let memory = GuestMemory::new(&mut objects.pools, pool, format).map_err(|_| out_of_memory)?;
            match objects.guest_memories.insert(memory) {
                Some(id) => ObjectRef::GuestMemory(id),
                None => return Err(out_of_memory),
            }
        }
        ObjectType::Vcpu => {
            let Some(hardware) = crate::arch::virt::Hardware::new() else {
                refund(objects);
                return Err(out_of_memory);
            };
            let vcpu = Vcpu {
                hardware,
                fpu: FpuState::new(),
                binding: None,
                seen_generation: None,
                references: objects.capabilities.create_cspace(vcpu::reference::SLOTS),
                pool,
            };
            let references = vcpu.references;
            match objects.vcpus.insert(Box::new(vcpu)) {
                Some(id) => ObjectRef::Vcpu(id),
                None => {
                    let _ = objects.capabilities.destroy_cspace(references);
                    refund(objects);
                    return Err(out_of_memory);
                }
            }
        }
        _ => {
            let space = AddressSpace::new(&mut objects.pools, Some(pool)).map_err(|_| out_of_memory)?;
            match objects.address_spaces.insert(space) {
                Some(id) => ObjectRef::AddressSpace(id),
                None => return Err(out_of_memory),
            }
        }
    };
    // The slot was checked empty and the parent present above.
    if objects
        .capabilities
        .insert_child(pool_slot, destination, original(object))
        .is_err()
    {
        objects.destroy(alloc::vec![object]);
        return Err(Error::new(ErrorKind::InvalidState));
    }
    Ok(Completion::Done)
}

/// The most frames one Create makes for DMA.
const MAX_CONTIGUOUS_FRAMES: u64 = 256;

/// Create of `count` physically consecutive frames, in the caller's slots
/// `first..first + count`.
fn create_contiguous_frames(
    objects: &mut Objects,
    caller: ThreadId,
    (pool_slot, pool): (kernel_core::capability_table::SlotRef, u32),
    first: u64,
    count: u64,
) -> Result<Completion, Error> {
    if count > MAX_CONTIGUOUS_FRAMES {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 3));
    }
    let mut destinations = alloc::vec::Vec::new();
    for index in 0..count {
        let slot = first
            .checked_add(index)
            .ok_or(Error::in_argument(ErrorKind::InvalidSlot, 2))?;
        destinations.push(empty_slot(objects, caller, slot, 2)?);
    }
    let cost = count * FRAME_COST;
    objects
        .pools
        .charge(pool, cost)
        .map_err(|_| Error::new(ErrorKind::OutOfMemory))?;
    let Some(run) = frames::allocate_contiguous_zeroed(count) else {
        objects.pools.refund(Some(pool), cost);
        return Err(Error::new(ErrorKind::OutOfMemory));
    };
    for (page, destination) in (0..count).map(|index| run + index).zip(destinations) {
        // Each frame is its own object, refunded and freed on its own; the
        // run is for a device, so every frame of it counts as handed out.
        match objects.frames.insert(Frame::dma(page, pool)) {
            Some(id) => {
                let _ = objects
                    .capabilities
                    .insert_child(pool_slot, destination, original(ObjectRef::Frame(id)));
            }
            None => {
                frames::free(page);
                objects.pools.refund(Some(pool), FRAME_COST);
            }
        }
    }
    Ok(Completion::Done)
}

/// Map: maps a frame into an address space with at most the frame
/// capability's rights. Read is always needed (x86 has no write-only).
pub fn map(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (_, space_capability) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let ObjectRef::AddressSpace(space) = space_capability.object else {
        return Err(wrong_type(0));
    };
    let (_, frame_capability) = capability(objects, caller, arguments.get(1), Rights::READ, 1)?;
    let ObjectRef::Frame(frame) = frame_capability.object else {
        return Err(wrong_type(1));
    };
    let address = arguments.get(2);
    if address % 4096 != 0 || address >= USER_END {
        return Err(Error::in_argument(ErrorKind::InvalidAddress, 2));
    }
    let rights = u32::try_from(arguments.get(3))
        .ok()
        .and_then(Rights::from_bits)
        .filter(|rights| rights.contains(Rights::READ) && !rights.contains(Rights::GRANT))
        .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 3))?;
    if !Rights::from_bits_truncate(frame_capability.rights).contains(rights) {
        return Err(Error::in_argument(ErrorKind::InsufficientRights, 3));
    }
    let page = Page::containing_address(VirtAddr::new(address));
    let Some(frame_object) = objects.frames.get(frame) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    let physical = frame_object.physical();
    let mut flags = PageTableFlags::empty();
    if rights.contains(Rights::WRITE) {
        flags |= PageTableFlags::WRITABLE;
    }
    if !rights.contains(Rights::EXECUTE) {
        flags |= PageTableFlags::NO_EXECUTE;
    }
    if frame_object.is_device() {
        flags |= PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
    }
    let Some(target) = objects.address_spaces.get_mut(space) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    target
        .map_frame(&mut objects.pools, page, frame, physical, flags)
        .map_err(|error| match error {
            MapError::AlreadyMapped => Error::in_argument(ErrorKind::AlreadyMapped, 2),
            MapError::NotUserAddress => Error::in_argument(ErrorKind::InvalidAddress, 2),
            MapError::OutOfMemory => Error::new(ErrorKind::OutOfMemory),
        })?;
    if let Some(frame_object) = objects.frames.get_mut(frame) {
        frame_object.add_mapping(MappedIn::AddressSpace(space), address);
    }
    Ok(Completion::Done)
}

/// Unmap: removes the frame mapped at an address of an address space.
pub fn unmap(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (_, space_capability) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let ObjectRef::AddressSpace(space) = space_capability.object else {
        return Err(wrong_type(0));
    };
    let address = arguments.get(1);
    if address % 4096 != 0 || address >= USER_END {
        return Err(Error::in_argument(ErrorKind::InvalidAddress, 1));
    }
    let target = objects
        .address_spaces
        .get_mut(space)
        .ok_or(Error::new(ErrorKind::InvalidState))?;
    let frame = target
        .unmap_frame(address)
        .ok_or(Error::in_argument(ErrorKind::NotMapped, 1))?;
    if let Some(frame) = objects.frames.get_mut(frame) {
        frame.forget_mapping(MappedIn::AddressSpace(space), address);
    }
    Ok(Completion::Done)
}
